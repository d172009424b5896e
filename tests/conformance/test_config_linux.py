"""config-linux.md: namespaces, user mappings, time offsets, devices, cgroups
(path and resources), sysctl, seccomp, rootfs propagation, masked and
readonly paths, mount label, personality, intelRdt."""
import errno
import json
import os
import shutil
import subprocess
import tempfile
import uuid

import pytest

from confutil import make_rootfs, mount_at, mountinfo

NS_FILES = {"pid": "pid", "network": "net", "mount": "mnt", "ipc": "ipc", "uts": "uts",
            "cgroup": "cgroup", "user": "user", "time": "time"}


def _host_ns(kind):
    return os.stat(f"/proc/self/ns/{NS_FILES[kind]}").st_ino


def _set_ns(cfg, types):
    cfg["linux"]["namespaces"] = [{"type": t} for t in types]


# --- default filesystems ----------------------------------------------------

def test_default_filesystems(crt):
    """config-linux.md#default-filesystems: /proc (proc), /sys (sysfs), /dev/pts
    (devpts) and /dev/shm (tmpfs) "SHOULD be made available in each container's
    filesystem" (with the default config)."""
    info = mountinfo(crt.probe()["mountinfo"])
    for path, fstype in (("/proc", "proc"), ("/sys", "sysfs"), ("/dev/pts", "devpts"), ("/dev/shm", "tmpfs")):
        m = mount_at(info, path)
        assert m and m["fstype"] == fstype, (path, m)


# --- namespaces -------------------------------------------------------------

def test_namespaces_created(crt):
    """config-linux.md#namespaces: "If path is not specified, the runtime MUST
    create a new container namespace of type type"."""
    kinds = ("pid", "network", "mount", "ipc", "uts", "cgroup")
    d = crt.probe(mutate=lambda c: _set_ns(c, kinds))
    for k in kinds:
        assert d["ns"][NS_FILES[k]] != _host_ns(k), k
    assert d["pid"] == 1


def test_namespaces_inherited(crt):
    """config-linux.md#namespaces: "If a namespace type is not specified in the
    namespaces array, the container MUST inherit the runtime namespace of that
    type"."""
    def mut(cfg):
        _set_ns(cfg, ("mount",))
        cfg.pop("hostname", None)  # a hostname needs a new uts namespace
    d = crt.probe(mutate=mut)
    assert d["ns"]["mnt"] != _host_ns("mount")
    for k in ("pid", "network", "ipc", "uts", "cgroup", "user"):
        assert d["ns"][NS_FILES[k]] == _host_ns(k), k
    assert d["pid"] != 1


def test_namespace_path_joined(crt):
    """config-linux.md#namespaces: path - "The runtime MUST place the container
    process in the namespace associated with that path"."""
    holder = crt.create_ok(crt.bundle(args=["sleep", "600"], name="holder", out=False))
    hpid = crt.state(holder)["pid"]
    joined = ("network", "ipc", "uts")

    def mut(cfg):
        for ns in cfg["linux"]["namespaces"]:
            if ns["type"] in joined:
                ns["path"] = f"/proc/{hpid}/ns/{NS_FILES[ns['type']]}"
    d = crt.probe(mutate=mut)
    for k in joined:
        assert d["ns"][NS_FILES[k]] == os.stat(f"/proc/{hpid}/ns/{NS_FILES[k]}").st_ino, k
    assert d["ns"]["mnt"] != os.stat(f"/proc/{hpid}/ns/mnt").st_ino


def test_namespace_path_wrong_type(crt):
    """config-linux.md#namespaces: "The runtime MUST generate an error if path is
    not associated with a namespace of type type"."""
    holder = crt.create_ok(crt.bundle(args=["sleep", "600"], name="holder", out=False))
    hpid = crt.state(holder)["pid"]

    def mut(cfg):
        for ns in cfg["linux"]["namespaces"]:
            if ns["type"] == "network":
                ns["path"] = f"/proc/{hpid}/ns/uts"
    cid, p = crt.create(crt.probe_bundle(mutate=mut))
    assert p.returncode != 0
    assert crt("state", cid).returncode != 0


def test_namespace_duplicate_type(crt):
    """config-linux.md#namespaces: "If a namespaces field contains duplicated
    namespaces with same type, the runtime MUST generate an error"."""
    cid, p = crt.create(crt.probe_bundle(mutate=lambda c: c["linux"]["namespaces"].append({"type": "uts"})))
    assert p.returncode != 0
    assert crt("state", cid).returncode != 0


def test_user_namespace_mappings(crt, probe_bin):
    """config-linux.md#user-namespace-mappings: uidMappings/gidMappings "describes
    the user namespace uid mappings from the host to the container"; the
    container gets a new user namespace with exactly these maps; devices still
    work (config-linux.md#default-devices) even though mknod is not allowed.
    The rootfs and /out live in a world-traversable directory because the
    container's root is an unprivileged host user."""
    pub = tempfile.mkdtemp(prefix="pyrunc-conf-userns-", dir="/tmp")
    crt.extra_cleanup.append(lambda: shutil.rmtree(pub, ignore_errors=True))
    os.chmod(pub, 0o755)
    root = make_rootfs(os.path.join(pub, "rootfs"))
    shutil.copy2(probe_bin, os.path.join(root, "bin", "probe"))
    os.makedirs(os.path.join(root, "out"))
    crt.out = os.path.join(pub, "out")
    os.makedirs(crt.out)
    os.chmod(crt.out, 0o777)

    def mut(cfg):
        cfg["linux"]["namespaces"].append({"type": "user"})
        cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
        cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 300000, "size": 65536}]
        cfg["mounts"] = [m for m in cfg["mounts"] if m["destination"] != "/sys/fs/cgroup"]
        cfg["mounts"] = [dict(m, options=[o for o in m.get("options", []) if o != "gid=5"])
                         if m["destination"] == "/dev/pts" else m for m in cfg["mounts"]]
    d = crt.probe(["-w", "/dev/null"], mutate=mut, rootfs=root)
    assert d["ns"]["user"] != _host_ns("user")
    assert d["uid_map"].split() == ["0", "200000", "65536"]
    assert d["gid_map"].split() == ["0", "300000", "65536"]
    assert d["uid"] == 0 and d["gid"] == 0
    assert d["writable"]["/dev/null"] == 0


def test_time_namespace_offsets(crt):
    """config-linux.md#offset-for-time-namespace: timeOffsets "sets the offset
    for Time Namespace" - monotonic and boottime offsets of a new time namespace."""
    crt.require("timeOffsets")
    if not os.path.exists("/proc/self/ns/time"):
        pytest.skip("kernel without time namespaces")
    off = {"monotonic": {"secs": 864000, "nanosecs": 0}, "boottime": {"secs": 1728000, "nanosecs": 0}}

    def mut(cfg):
        cfg["linux"]["namespaces"].append({"type": "time"})
        cfg["linux"]["timeOffsets"] = off
    d = crt.probe(mutate=mut)
    assert d["ns"]["time"] != _host_ns("time")
    lines = {ln.split()[0]: ln.split()[1:] for ln in d["timens_offsets"].splitlines()}
    assert lines["monotonic"] == ["864000", "0"]
    assert lines["boottime"] == ["1728000", "0"]
    assert d["monotonic_s"] >= 864000


# --- devices ----------------------------------------------------------------

def test_devices_created(crt):
    """config-linux.md#devices: devices "lists devices that MUST be available in
    the container" with the given type, major/minor, fileMode, uid and gid."""
    devs = [{"path": "/dev/conf-null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o640, "uid": 1000, "gid": 5},
            {"path": "/dev/conf-loop", "type": "b", "major": 7, "minor": 200, "fileMode": 0o600, "uid": 0, "gid": 0},
            {"path": "/dev/sub/conf-zero", "type": "c", "major": 1, "minor": 5, "fileMode": 0o666}]
    d = crt.probe(["-s", "/dev/sub/conf-zero", "-w", "/dev/sub/conf-zero"],
                  mutate=lambda c: c["linux"].__setitem__("devices", devs))
    got = d["dev"]
    assert got["conf-null"]["type"] == "c" and (got["conf-null"]["major"], got["conf-null"]["minor"]) == (1, 3)
    assert got["conf-null"]["mode"] == 0o640
    assert (got["conf-null"]["uid"], got["conf-null"]["gid"]) == (1000, 5)
    assert got["conf-loop"]["type"] == "b" and (got["conf-loop"]["major"], got["conf-loop"]["minor"]) == (7, 200)
    assert got["conf-loop"]["mode"] == 0o600
    z = d["stat"]["/dev/sub/conf-zero"]
    assert z["type"] == "c" and (z["major"], z["minor"]) == (1, 5)
    assert z["mode"] == 0o666, oct(z["mode"])  # not reduced by a umask
    # listed devices are usable (the default device cgroup must let them through)
    assert d["writable"]["/dev/sub/conf-zero"] == 0


def test_device_fifo(crt):
    """config-linux.md#devices: type `p` (FIFO) needs no major/minor."""
    d = crt.probe(mutate=lambda c: c["linux"].__setitem__(
        "devices", [{"path": "/dev/conf-fifo", "type": "p", "fileMode": 0o666, "uid": 1000, "gid": 5}]))
    fifo = d["dev"]["conf-fifo"]
    assert fifo["type"] == "p"
    # fileMode exactly, not reduced by the runtime's umask
    assert (fifo["mode"], fifo["uid"], fifo["gid"]) == (0o666, 1000, 5), fifo


def test_device_path_conflict(crt, tmp_path, probe_bin):
    """config-linux.md#devices: "If a file already exists at path that does not
    match the requested device, the runtime MUST generate an error". (A private
    rootfs: a runtime that overwrites the file must not damage the shared one.)"""
    root = make_rootfs(tmp_path / "privroot")
    os.makedirs(os.path.join(root, "out"))
    with open(os.path.join(root, "etc", "notadevice"), "w") as f:
        f.write("regular file\n")
    b = crt.bundle(args=["true"], rootfs=root, mutate=lambda c: c["linux"].__setitem__(
        "devices", [{"path": "/etc/notadevice", "type": "c", "major": 1, "minor": 3}]))
    cid, p = crt.create(b)
    assert p.returncode != 0
    assert crt("state", cid).returncode != 0


DEFAULT_DEVICES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8),
                   "urandom": (1, 9), "tty": (5, 0)}


def test_default_devices(crt):
    """config-linux.md#default-devices: "the runtime MUST also supply: /dev/null,
    /dev/zero, /dev/full, /dev/random, /dev/urandom, /dev/tty, ... /dev/ptmx. A
    bind-mount or symlink of the container's /dev/pts/ptmx"."""
    d = crt.probe(["-s", "/dev/ptmx", "-w", "/dev/null", "-w", "/dev/zero", "-w", "/dev/full",
                   "-w", "/dev/urandom", "-r", "/dev/zero"])
    for name, (ma, mi) in DEFAULT_DEVICES.items():
        dev = d["dev"].get(name)
        assert dev and dev["type"] == "c" and (dev["major"], dev["minor"]) == (ma, mi), (name, dev)
    for w in ("/dev/null", "/dev/zero", "/dev/full", "/dev/urandom"):
        assert d["writable"][w] == 0, w
    ptmx = d["stat"]["/dev/ptmx"]
    info = mountinfo(d["mountinfo"])
    pts = mount_at(info, "/dev/pts")
    if ptmx["type"] == "symlink":
        assert ptmx["target"] in ("pts/ptmx", "/dev/pts/ptmx")
    else:
        # a bind mount of the container's devpts ptmx: same device as /dev/pts
        assert ptmx["type"] == "c" and (ptmx["major"], ptmx["minor"]) == (5, 2)
        assert f"{ptmx['dev_major']}:{ptmx['dev_minor']}" == pts["devno"]


# --- cgroups ----------------------------------------------------------------

def _cg_name(crt):
    return f"pyrunc-conf-{crt.name}-{uuid.uuid4().hex[:8]}"


def _proc_cgroup(pid):
    res = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            for c in ctrls.split(","):
                res[c] = path
    return res


def test_cgroups_path_absolute(crt):
    """config-linux.md#cgroups-path: "In the case of an absolute path (starting
    with /), the runtime MUST take the path to be relative to the cgroups mount
    point"; "If the value is specified, the runtime MUST consistently attach to
    the same place in the cgroups hierarchy given the same value of cgroupsPath"."""
    path = "/" + _cg_name(crt)
    for _ in range(2):
        cid = crt.create_ok(crt.bundle(args=["true"], mutate=lambda c: c["linux"].__setitem__("cgroupsPath", path)))
        pid = crt.state(cid)["pid"]
        cg = _proc_cgroup(pid)
        for ctrl in ("memory", "pids", "cpu", "devices"):
            assert cg[ctrl] == path, (ctrl, cg)
        assert os.path.isdir(f"/sys/fs/cgroup/memory{path}")
        crt("delete", "--force", cid, check=True)
        assert not os.path.exists(f"/sys/fs/cgroup/memory{path}")


def test_cgroups_path_invalid(crt):
    """config-linux.md#cgroups-path: "Runtimes MAY consider certain cgroupsPath
    values to be invalid, and MUST generate an error if this is the case" - a
    path escaping the hierarchy is either refused or kept inside it."""
    name = _cg_name(crt)
    cid, p = crt.create(crt.bundle(args=["true"], mutate=lambda c: c["linux"].__setitem__(
        "cgroupsPath", f"/../../../../tmp/{name}")))
    assert not os.path.exists(f"/tmp/{name}")
    if p.returncode == 0:
        cg = _proc_cgroup(crt.state(cid)["pid"])
        assert ".." not in cg["memory"]


def test_cgroup_resources_applied(crt):
    """config-linux.md#control-groups: memory limit/reservation/swap/swappiness,
    cpu shares/quota/period, cpuset cpus/mems and pids limit are written to the container's cgroup (the
    create operation "MUST" apply all properties, runtime.md#create)."""
    path = "/" + _cg_name(crt)
    res = {"memory": {"limit": 64 * 1024 * 1024, "reservation": 32 * 1024 * 1024, "swappiness": 10},
           "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
           "pids": {"limit": 42}}
    memsw = os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
    if memsw:
        res["memory"]["swap"] = 128 * 1024 * 1024

    def mut(cfg):
        cfg["linux"]["cgroupsPath"] = path
        cfg["linux"]["resources"].update(res)
    crt.create_ok(crt.bundle(args=["true"], mutate=mut))

    def rd(ctrl, f):
        with open(f"/sys/fs/cgroup/{ctrl}{path}/{f}") as fh:
            return fh.read().strip()
    assert int(rd("memory", "memory.limit_in_bytes")) == 64 * 1024 * 1024
    assert int(rd("memory", "memory.soft_limit_in_bytes")) == 32 * 1024 * 1024
    assert int(rd("cpu", "cpu.shares")) == 512
    assert int(rd("cpu", "cpu.cfs_quota_us")) == 50000
    assert int(rd("cpu", "cpu.cfs_period_us")) == 100000
    assert rd("cpuset", "cpuset.cpus") == "0"
    assert rd("cpuset", "cpuset.mems") == "0"
    assert int(rd("memory", "memory.swappiness")) == 10
    if memsw:
        assert int(rd("memory", "memory.memsw.limit_in_bytes")) == 128 * 1024 * 1024
    assert int(rd("pids", "pids.max")) == 42


def test_cgroup_memory_kernel_tcp(crt):
    """config-linux.md#memory: kernelTCP "sets hard limit for kernel TCP buffer
    memory" (NOT RECOMMENDED, but valid); the v1 knob works on this kernel, so
    runtime.md#create applies: the value is written, or create fails."""
    knob = "memory.kmem.tcp.limit_in_bytes"
    if not os.path.exists(f"/sys/fs/cgroup/memory/{knob}"):
        pytest.skip(f"no {knob} here")
    path = "/" + _cg_name(crt)

    def mut(cfg):
        cfg["linux"]["cgroupsPath"] = path
        cfg["linux"]["resources"]["memory"] = {"kernelTCP": 50593792}
    cid, p = crt.create(crt.bundle(args=["true"], mutate=mut))
    if p.returncode == 0:
        assert int(_read(f"/sys/fs/cgroup/memory{path}/{knob}")) == 50593792, "kernelTCP silently ignored"


def test_cgroup_device_rules(crt):
    """config-linux.md#allowed-device-list: "The runtime MUST apply entries in
    the listed order" - a later deny narrows an earlier allow (checked in the
    v1 devices cgroup's effective list), and the container can open a listed
    device."""
    if not os.path.isdir("/sys/fs/cgroup/devices"):
        pytest.skip("no v1 devices controller")
    path = "/" + _cg_name(crt)
    rules = [{"allow": False, "access": "rwm"},
             {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
             {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "w"},
             {"allow": True, "type": "b", "major": 7, "minor": 201, "access": "r"}]

    def mut(cfg):
        cfg["linux"]["cgroupsPath"] = path
        cfg["linux"]["resources"]["devices"] = rules
    crt.create_ok(crt.bundle(args=["true"], mutate=mut))
    lst = _read(f"/sys/fs/cgroup/devices{path}/devices.list").split("\n")
    assert "c 10:229 rm" in lst, "\n".join(lst)
    assert "b 7:201 r" in lst, lst
    assert "a *:* rwm" not in lst, lst


def _unified_controllers() -> list[str]:
    try:
        return _read("/sys/fs/cgroup/unified/cgroup.controllers").split()
    except OSError:
        return []


def _child_cgroup_has(ctrl: str, names: tuple[str, ...]) -> bool:
    """Whether a fresh child cgroup of the v1 `ctrl` hierarchy has any of `names`."""
    base = f"/sys/fs/cgroup/{ctrl}"
    if not os.path.isdir(base):
        return False
    probe = os.path.join(base, f"conf-probe-{uuid.uuid4().hex[:8]}")
    os.mkdir(probe)
    try:
        return any(os.path.exists(os.path.join(probe, n)) for n in names)
    finally:
        os.rmdir(probe)


def test_cgroup_hugetlb_in_unified_hierarchy(crt):
    """config-linux.md#huge-page-limits: the limit MUST be applied; on a hybrid
    host whose only hugetlb controller is on the cgroup2 side, it is applied
    there (or create fails, which test_cgroup_unavailable_controller_is_an_error
    covers on hosts without it)."""
    if os.path.isdir("/sys/fs/cgroup/hugetlb") or "hugetlb" not in _unified_controllers():
        pytest.skip("not a hybrid host with hugetlb only in the unified hierarchy")
    if not os.path.exists("/sys/fs/cgroup/unified/hugetlb.2MB.max") and \
            not os.path.isdir("/sys/kernel/mm/hugepages/hugepages-2048kB"):
        pytest.skip("no 2MB huge pages")
    path = "/" + _cg_name(crt)

    def mut(cfg):
        cfg["linux"]["cgroupsPath"] = path
        cfg["linux"]["resources"]["hugepageLimits"] = [{"pageSize": "2MB", "limit": 4194304}]
    crt.create_ok(crt.bundle(args=["true"], mutate=mut))
    assert _read(f"/sys/fs/cgroup/unified{path}/hugetlb.2MB.max").strip() == "4194304"


@pytest.mark.parametrize("what", ["network-classid", "hugetlb", "blkio-weight", "unified-pids"])
def test_cgroup_unavailable_controller_is_an_error(crt, what):
    """runtime.md#create: "If the runtime cannot apply a property as specified in
    the configuration, it MUST generate an error and a new container MUST NOT be
    created"; config-linux.md#unified: "The runtime MUST generate an error when
    the configuration refers to a cgroup controller that is not present or that
    cannot be enabled". This machine has no net_cls or hugetlb v1 controller,
    no blkio weight files and only hugetlb on cgroup2."""
    checks = {
        "network-classid": (lambda: not os.path.isdir("/sys/fs/cgroup/net_cls"),
                            {"network": {"classID": 1048577}}),
        # Hybrid hosts may offer hugetlb on the cgroup2 side only; runtimes
        # may drive it there (test_cgroup_hugetlb_in_unified_hierarchy).
        "hugetlb": (lambda: not os.path.isdir("/sys/fs/cgroup/hugetlb")
                    and "hugetlb" not in _unified_controllers(),
                    {"hugepageLimits": [{"pageSize": "2MB", "limit": 2097152}]}),
        # BFQ's weight files exist only below the root of the hierarchy.
        "blkio-weight": (lambda: not _child_cgroup_has("blkio", ("blkio.weight", "blkio.bfq.weight")),
                         {"blockIO": {"weight": 300}}),
        "unified-pids": (lambda: "pids" not in _read("/sys/fs/cgroup/unified/cgroup.controllers"),
                         {"unified": {"pids.max": "10"}}),
    }
    missing, res = checks[what]
    if not missing():
        pytest.skip(f"{what}: the controller exists on this machine")
    path = "/" + _cg_name(crt)

    def mut(cfg):
        cfg["linux"]["cgroupsPath"] = path
        cfg["linux"]["resources"].update(res)
    cid, p = crt.create(crt.bundle(args=["true"], mutate=mut))
    assert p.returncode != 0, f"{what} was silently ignored"
    assert crt("state", cid).returncode != 0
    assert not os.path.exists(f"/sys/fs/cgroup/memory{path}")


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def test_cgroup_ns_view(crt):
    """config-linux.md#namespaces: cgroup - "the container will have an isolated
    view of the cgroup hierarchy": its own cgroup is / inside."""
    def mut(c):
        c["linux"]["cgroupsPath"] = "/" + _cg_name(crt)
        _set_ns(c, ("pid", "network", "ipc", "uts", "mount", "cgroup"))
    d = crt.probe(mutate=mut)
    for line in d["cgroup"].splitlines():
        _, ctrl, path = line.split(":", 2)
        if ctrl in ("memory", "pids", "cpu,cpuacct", "devices"):
            assert path == "/", line


# --- sysctl -----------------------------------------------------------------

def test_sysctl(crt):
    """config-linux.md#sysctl: sysctl "allows kernel parameters to be modified at
    runtime for the container" - namespaced parameters are set inside, the host
    keeps its own."""
    host_fwd = _read("/proc/sys/net/ipv4/ip_forward").strip()
    want_fwd = "0" if host_fwd == "1" else "1"
    sysctl = {"kernel.shmmax": "123456789", "net.ipv4.ip_forward": want_fwd, "kernel.msgmax": "4242"}
    d = crt.probe(["-r", "/proc/sys/kernel/shmmax", "-r", "/proc/sys/net/ipv4/ip_forward",
                   "-r", "/proc/sys/kernel/msgmax"],
                  mutate=lambda c: c["linux"].__setitem__("sysctl", sysctl))
    f = d["files"]
    assert f["/proc/sys/kernel/shmmax"]["content"].strip() == "123456789"
    assert f["/proc/sys/net/ipv4/ip_forward"]["content"].strip() == want_fwd
    assert f["/proc/sys/kernel/msgmax"]["content"].strip() == "4242"
    assert _read("/proc/sys/net/ipv4/ip_forward").strip() == host_fwd


# --- seccomp ----------------------------------------------------------------

def test_seccomp_errno(crt):
    """config-linux.md#seccomp: syscalls matching a rule get its action; errnoRet
    "is the errno return code to use"; the process runs in seccomp filter mode."""
    seccomp = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EXDEV}]}
    b = crt.bundle(args=["sh", "-c", "/bin/probe -o /out/probe.json; mkdir /tmp/x 2> /out/err; echo $? > /out/rc"],
                   mutate=lambda c: c["linux"].__setitem__("seccomp", seccomp))
    cid, p = crt.run_fg(b)
    assert p.returncode == 0, p.stderr
    with open(os.path.join(crt.out, "probe.json")) as f:
        d = json.load(f)
    assert d["status"]["Seccomp"] == "2"
    assert _read(os.path.join(crt.out, "rc")).strip() != "0"
    assert os.strerror(errno.EXDEV) in _read(os.path.join(crt.out, "err"))


def test_seccomp_default_errno(crt):
    """config-linux.md#seccomp: defaultAction applies to every syscall no rule
    matches; defaultErrnoRet "is the errno return code to use" for it."""
    allowed = ["execve", "brk", "arch_prctl", "mmap", "munmap", "mprotect", "exit", "exit_group",
               "write", "writev", "read", "openat", "open", "close", "fstat", "newfstatat", "getpid",
               "set_tid_address", "set_robust_list", "rseq", "prlimit64", "uname", "readlinkat",
               "getrandom", "rt_sigaction", "rt_sigprocmask", "futex", "fcntl", "lseek", "stat", "lstat",
               "ioctl", "statx", "access", "faccessat", "faccessat2", "getuid", "getgid", "geteuid",
               "getegid", "getppid", "getsid", "getpgid", "getresuid", "getresgid", "getgroups",
               "umask", "getcwd", "personality", "prctl", "ioprio_get", "sched_getscheduler",
               "sched_getaffinity", "getrlimit", "clock_gettime", "getdents64", "readlink",
               "capget", "sched_yield", "mremap", "madvise", "pread64", "dup", "dup2", "dup3",
               "setgroups", "setresuid", "setresgid", "setuid", "setgid", "capset", "chdir", "fchdir",
               "close_range", "epoll_pwait", "getdents", "nanosleep", "clock_nanosleep", "sigaltstack",
               "rt_sigreturn", "tgkill", "gettid", "seccomp", "mount", "fstatfs", "statfs", "keyctl",
               "sethostname", "setdomainname", "setrlimit", "socket", "connect", "sendmsg", "recvmsg",
               "pipe2", "wait4", "clone", "clone3", "kill", "poll", "ppoll", "select", "pselect6",
               "setsid", "setpgid", "chroot", "pivot_root", "umount2", "symlink", "symlinkat",
               "unlink", "unlinkat", "fchown", "fchownat", "fchmod", "fchmodat", "mknod", "mknodat",
               "sched_setaffinity", "ioprio_set", "sched_setscheduler", "sched_setattr", "setns",
               "unshare", "getpriority", "setpriority", "dup3", "mlock", "munlock"]
    seccomp = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": errno.ENOTSUP,
               "architectures": ["SCMP_ARCH_X86_64"],
               "syscalls": [{"names": allowed, "action": "SCMP_ACT_ALLOW"}]}
    # chmod/fchmodat are not in the list: busybox chmod gets defaultErrnoRet
    b = crt.bundle(args=["/bin/busybox", "chmod", "700", "/out"],
                   mutate=lambda c: c["linux"].__setitem__("seccomp", seccomp))
    cid, p = crt.run_fg(b)
    assert p.returncode != 0
    assert os.strerror(errno.ENOTSUP) in p.stderr, p.stderr
    assert oct(os.stat(crt.out).st_mode & 0o777) == oct(0o777)


def test_seccomp_args(crt):
    """config-linux.md#seccomp: syscalls[].args - a rule applies only when the
    argument comparison matches (index, value, op): chmod to 0700 is refused,
    chmod to 0755 is not."""
    rules = [{"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EXDEV,
              "args": [{"index": 1, "value": 0o700, "op": "SCMP_CMP_EQ"}]},
             {"names": ["fchmodat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EXDEV,
              "args": [{"index": 2, "value": 0o700, "op": "SCMP_CMP_EQ"}]}]
    seccomp = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"], "syscalls": rules}
    for name in ("a", "b"):
        with open(os.path.join(crt.out, name), "w"):
            pass
    script = "chmod 700 /out/a 2> /out/err; echo $? > /out/rc; chmod 755 /out/b; echo $? >> /out/rc"
    cid, p = crt.run_fg(crt.bundle(args=["sh", "-c", script],
                                   mutate=lambda c: c["linux"].__setitem__("seccomp", seccomp)))
    assert p.returncode == 0, p.stderr
    rc = _read(os.path.join(crt.out, "rc")).split()
    assert rc[0] != "0" and rc[1] == "0", rc
    assert os.strerror(errno.EXDEV) in _read(os.path.join(crt.out, "err"))
    assert os.stat(os.path.join(crt.out, "a")).st_mode & 0o777 != 0o700
    assert os.stat(os.path.join(crt.out, "b")).st_mode & 0o777 == 0o755


def test_seccomp_errno_ret_with_kill_action_is_an_error(crt):
    """config-linux.md#seccomp: errnoRet - "When the action doesn't support an
    errno, the runtime MUST print and error and fail"."""
    seccomp = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_KILL", "errnoRet": 1}]}
    cid, p = crt.create(crt.bundle(args=["true"], mutate=lambda c: c["linux"].__setitem__("seccomp", seccomp)))
    assert p.returncode != 0
    assert p.stderr.strip()
    assert crt("state", cid).returncode != 0


# --- rootfs propagation -----------------------------------------------------

PROPAGATION_SCRIPT = """
mkdir -p /target /mnt1 /test && touch /test/f || { echo setupfail > /out/res; exit 0; }
mount --rbind / /target 2> /out/err || { echo bindfail > /out/res; exit 0; }
mount --bind /test /mnt1 || { echo mountfail > /out/res; exit 0; }
if [ -e /target/mnt1/f ]; then echo exposed > /out/res; else echo hidden > /out/res; fi
"""


@pytest.mark.parametrize("prop,expect", [("shared", "exposed"), ("slave", "hidden"),
                                         ("private", "hidden"), ("unbindable", "bindfail")])
def test_rootfs_propagation(crt, tmp_path, prop, expect):
    """config-linux.md#rootfs-mount-propagation: rootfsPropagation "sets the
    rootfs's mount propagation. Its value is either shared, slave, private or
    unbindable". Inside the container, / is bind-mounted at /target and a mount
    is then made under /: it shows in the copy only when / is shared; binding an
    unbindable / fails."""
    root = make_rootfs(tmp_path / "proproot")
    os.makedirs(os.path.join(root, "out"))

    def mut(cfg):
        cfg["linux"]["rootfsPropagation"] = prop
        # a cgroup namespace: /sys/fs/cgroup is then a fresh mount, not a
        # bind of the host's hierarchies, which an unbindable / refuses
        cfg["linux"]["namespaces"].append({"type": "cgroup"})
        cfg["root"]["readonly"] = False
        caps = cfg["process"]["capabilities"]
        for k in ("bounding", "effective", "permitted"):
            caps[k] = caps[k] + ["CAP_SYS_ADMIN"]
    b = crt.bundle(args=["sh", "-c", PROPAGATION_SCRIPT], rootfs=root, mutate=mut)
    cid, p = crt.run_fg(b)
    assert p.returncode == 0, p.stderr
    assert _read(os.path.join(crt.out, "res")).strip() == expect, _read(os.path.join(crt.out, "err"))


# --- masked and readonly paths ----------------------------------------------

def test_masked_paths(crt):
    """config-linux.md#masked-paths: maskedPaths "will mask over the provided
    paths inside the container so that they cannot be read" - files read empty,
    directories list empty."""
    masked = ["/proc/kcore", "/proc/keys", "/sys/firmware", "/etc/group"]
    d = crt.probe(["-r", "/proc/keys", "-r", "/etc/group", "-l", "/sys/firmware", "-s", "/proc/kcore"],
                  mutate=lambda c: c["linux"].__setitem__("maskedPaths", masked))
    assert d["files"]["/proc/keys"].get("content", "") == ""
    assert d["files"]["/etc/group"].get("content", "") == ""
    assert d["dirs"]["/sys/firmware"] in ({},) or "errno" in d["dirs"]["/sys/firmware"]
    assert d["stat"]["/proc/kcore"].get("size", 0) == 0


def test_readonly_paths(crt):
    """config-linux.md#readonly-paths: readonlyPaths "will set the provided paths
    as readonly inside the container"."""
    def mut(cfg):
        cfg["linux"]["readonlyPaths"] = ["/proc/sys", "/out/ro"]
        cfg["root"]["readonly"] = True
    os.makedirs(os.path.join(crt.out, "ro"))
    d = crt.probe(["-w", "/proc/sys/kernel/hostname", "-w", "/out/ro/", "-w", "/out/"], mutate=mut)
    assert d["writable"]["/proc/sys/kernel/hostname"] == errno.EROFS
    assert d["writable"]["/out/ro/"] == errno.EROFS
    assert d["writable"]["/out/"] == 0


# --- mount label, personality, intelRdt -------------------------------------

def test_mount_label_needs_selinux(crt):
    """config-linux.md#mount-label: mountLabel "will set the Selinux context for
    the mounts in the container" - only checkable with SELinux enabled."""
    if not os.path.exists("/sys/fs/selinux/enforce"):
        pytest.skip("SELinux is not enabled on this machine; mountLabel cannot be observed")
    d = crt.probe(mutate=lambda c: c["linux"].__setitem__("mountLabel", "system_u:object_r:container_file_t:s0"))
    m = mount_at(mountinfo(d["mountinfo"]), "/dev/shm")
    assert any(o.startswith("context=") for o in m["super_opts"])


@pytest.mark.parametrize("domain,value", [("LINUX", 0), ("LINUX32", 8)])
def test_personality(crt, domain, value):
    """config-linux.md#personality: personality "sets the Linux execution
    personality" - domain LINUX or LINUX32."""
    crt.require("personality")
    d = crt.probe(mutate=lambda c: c["linux"].__setitem__("personality", {"domain": domain}))
    assert d["personality"] & 0xff == value


def test_intel_rdt_without_resctrl_is_an_error(crt):
    """config-linux.md#intelrdt: "If no mounted resctrl pseudo-filesystem is
    available in the runtime mount namespace, the runtime MUST generate an error"."""
    with open("/proc/self/mountinfo") as f:
        if " resctrl " in f.read():
            pytest.skip("resctrl is mounted here")
    cid, p = crt.create(crt.bundle(args=["true"], mutate=lambda c: c["linux"].__setitem__(
        "intelRdt", {"closID": "conf", "l3CacheSchema": "L3:0=f"})))
    assert p.returncode != 0
    assert crt("state", cid).returncode != 0


# --- netDevices -------------------------------------------------------------

def test_net_devices(crt):
    """config-linux.md#network-devices: netDevices "A set of network devices that
    MUST be made available in the container"; name "the name of the network
    device inside the container namespace"; "The runtime MUST set the network
    device state to "up" after moving it"."""
    crt.require("netDevices")
    if not shutil.which("ip"):
        pytest.skip("iproute2 (ip) is not installed")
    host = f"cv{uuid.uuid4().hex[:6]}"
    p = subprocess.run(["ip", "link", "add", host, "type", "veth", "peer", "name", host + "p"],
                       capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot create a veth pair: {p.stderr.strip()}")
    crt.extra_cleanup.append(lambda: subprocess.run(["ip", "link", "del", host + "p"], capture_output=True))
    subprocess.run(["ip", "addr", "add", "192.0.2.10/24", "dev", host], check=True)
    d = crt.probe(["-l", "/sys/class/net", "-r", "/sys/class/net/ctr0/flags"],
                  mutate=lambda c: c["linux"].__setitem__("netDevices", {host: {"name": "ctr0"}}))
    assert "ctr0" in d["dirs"]["/sys/class/net"], d["dirs"]
    assert int(d["files"]["/sys/class/net/ctr0/flags"]["content"], 16) & 0x1  # IFF_UP
    # it left the host namespace (and is not moved back: the netns is gone)
    assert subprocess.run(["ip", "link", "show", host], capture_output=True).returncode != 0


# --- LSM labels that cannot be applied ------------------------------------

def _apparmor_enabled() -> bool:
    return _read("/sys/module/apparmor/parameters/enabled").strip() == "Y"


def test_apparmor_profile_without_apparmor_is_an_error(crt):
    """config.md#linux-process: apparmorProfile "specifies the name of the
    AppArmor profile for the process"; without AppArmor it cannot be applied,
    so runtime.md#create: "it MUST generate an error and a new container MUST
    NOT be created"."""
    if _apparmor_enabled():
        pytest.skip("AppArmor is enabled here")
    cid, p = crt.create(crt.bundle(args=["true"], apparmorProfile="conformance_profile"))
    assert p.returncode != 0, "apparmorProfile silently ignored"
    assert "apparmor" in p.stderr.lower(), f"create failed for another reason: {p.stderr}"
    assert crt("state", cid).returncode != 0


def test_selinux_process_label_without_selinux_is_an_error(crt):
    """config.md#linux-process: selinuxLabel "specifies the SELinux label for
    the process"; without SELinux the process cannot be confined as asked,
    so runtime.md#create: "it MUST generate an error"."""
    if os.path.exists("/sys/fs/selinux/enforce"):
        pytest.skip("SELinux is enabled here")
    cid, p = crt.create(crt.bundle(args=["true"], selinuxLabel="system_u:system_r:container_t:s0:c1,c2"))
    assert p.returncode != 0, "selinuxLabel silently ignored"
    assert "selinux" in p.stderr.lower(), f"create failed for another reason: {p.stderr}"
    assert crt("state", cid).returncode != 0


def test_mount_label_without_selinux_is_a_warning(crt):
    """config-linux.md#mount-label: mountLabel "will set the Selinux context for
    the mounts in the container". Without SELinux there are no contexts: the
    mounts are the same either way, so the runtime says so and goes on (crun
    does the same), and no mount carries a context= option."""
    if os.path.exists("/sys/fs/selinux/enforce"):
        pytest.skip("SELinux is enabled here")
    b = crt.probe_bundle(mutate=lambda c: c["linux"].__setitem__(
        "mountLabel", "system_u:object_r:container_file_t:s0:c1,c2"))
    cid, p = crt.run_fg(b)
    assert p.returncode == 0, f"run failed: {p.stderr}"
    assert "mountLabel" in p.stderr, f"no warning about the unapplied label: {p.stderr!r}"
    with open(os.path.join(crt.out, "probe.json")) as f:
        d = json.load(f)
    assert not any(o.startswith("context=") for m in mountinfo(d["mountinfo"]) for o in m["super_opts"])
