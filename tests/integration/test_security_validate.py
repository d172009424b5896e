"""Configs and bundles that would make pyrunc change the host, or run a
container with less isolation than it asked for: each must be refused (or
made harmless) with one line naming what is wrong, and leave nothing behind.

Namespaced settings are probed from inside namespaces the test makes
(`unshare -n/-i/-u`): there, "the host's" namespace is a private one, so a
runtime that wrongly writes to it changes nothing outside the test. Keys
that are not namespaced at all (kernel.*, vm.*) are probed with names that
do not exist, so nothing can be written even before the check existed."""
import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest

from bundles import PYRUNC
from test_rootless import launcher  # noqa: F401 - the fixture

_NO_NET = ("pid", "ipc", "uts", "mount", "cgroup")


def _sh(script: str, unshare: tuple[str, ...] = (), timeout: int = 60) -> tuple[int, str, str]:
    """Run `script` with sh, in new namespaces when `unshare` names them.
    Output goes through files: a container the script creates keeps its
    stdio open, which would hold a pipe open past the script's end."""
    cmd = (["unshare", *unshare] if unshare else []) + ["sh", "-c", script]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        p = subprocess.run(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, text=True, timeout=timeout)
        out.seek(0)
        err.seek(0)
        return p.returncode, out.read(), err.read()


def _namespaces(*types, **paths):
    return [{"type": t} for t in types] + [{"type": t, "path": p} for t, p in paths.items()]


def _hook_canary(c, path):
    """A prestart hook that leaves `path`: it runs once init exists, so its
    absence shows create refused before making any process."""
    c.setdefault("hooks", {})["prestart"] = [{"path": "/bin/sh", "args": ["sh", "-c", f"touch {path}"]}]


def _nothing_left(rt):
    assert not os.path.isdir(rt.root) or not os.listdir(rt.root), os.listdir(rt.root)


# --- sysctl -----------------------------------------------------------------

def _create_in(rt, unshare, cid, bundle, before_after: str) -> tuple[list[str], str]:
    """create in new namespaces; `before_after` is a command whose output
    (the value the container must not change) is printed before and after
    create. Returns the words printed and create's stderr."""
    rc, out, err = _sh(f"{before_after}; {PYRUNC} --root {rt.root} create --bundle {bundle} {cid}; "
                       f"echo rc=$?; {before_after}", unshare)
    assert rc == 0, err
    return out.split(), err


@pytest.mark.parametrize("case", ["no-netns", "host-netns-by-path"])
def test_net_sysctl_refused_in_the_hosts_network_namespace(rt, open_tmp, case):
    """runc's validator: net.* only where the container has a network
    namespace of its own (a new one, or a joined one that is not the
    runtime's). Probed in a network namespace this test made."""
    canary = open_tmp / "hook-ran"

    def m(c):
        extra = {"network": "/proc/self/ns/net"} if case == "host-netns-by-path" else {}
        c["linux"]["namespaces"] = _namespaces(*_NO_NET, **extra)
        c["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
        _hook_canary(c, canary)
    cid = rt.new_id()
    out, err = _create_in(rt, ("-n",), cid, rt.bundle(["true"], mutate=m),
                          "cat /proc/sys/net/ipv4/ip_forward")
    before, rc, after = out
    assert rc == "rc=1"
    assert err.strip() == 'sysctl "net.ipv4.ip_forward" not allowed in host network namespace'
    assert after == before, "the network namespace pyrunc runs in was changed"
    assert not canary.exists()
    _nothing_left(rt)


def test_net_sysctl_allowed_in_a_joined_private_network_namespace(rt):
    """A joined network namespace that is not the runtime's own takes net.*."""
    holder = subprocess.Popen(["unshare", "-n", "sleep", "60"])
    try:
        ns = f"/proc/{holder.pid}/ns/net"
        for _ in range(100):
            if os.path.exists(ns) and os.readlink(ns) != os.readlink("/proc/self/ns/net"):
                break
            time.sleep(0.02)

        def m(c):
            c["linux"]["namespaces"] = _namespaces(*_NO_NET, network=ns)
            c["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
        p = rt("run", "--bundle", rt.bundle(["cat", "/proc/sys/net/ipv4/ip_forward"], mutate=m), rt.new_id())
        assert p.returncode == 0, p.stderr
        assert p.stdout.split() == ["1"]
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("key", ["kernel.pyrunc_canary", "vm.pyrunc_canary", "fs.pyrunc_canary",
                                 "dev.pyrunc_canary"])
def test_non_namespaced_sysctl_refused_before_any_process(rt, open_tmp, key):
    """Keys outside every namespace (kernel.core_pattern, vm.*) would be the
    host's: refused by create, naming the key, before init exists. The
    probe uses keys that do not exist, so nothing is written either way."""
    canary = open_tmp / "hook-ran"

    def m(c):
        c["linux"]["sysctl"] = {key: "1"}
        _hook_canary(c, canary)
    p = rt("create", "--bundle", rt.bundle(["true"], mutate=m), rt.new_id())
    assert p.returncode == 1
    assert p.stderr.strip() == f'sysctl "{key}" is not in a separate kernel namespace'
    assert not canary.exists()
    _nothing_left(rt)


@pytest.mark.parametrize("key,value,probe", [
    ("kernel.msgmax", "12345", "cat /proc/sys/kernel/msgmax"),
    ("fs.mqueue.msg_max", "77", "cat /proc/sys/fs/mqueue/msg_max"),
])
@pytest.mark.parametrize("case", ["no-ipcns", "host-ipcns-by-path"])
def test_ipc_sysctl_refused_in_the_hosts_ipc_namespace(rt, key, value, probe, case):
    """The ipc sysctls need an ipc namespace of the container's own (probed
    inside an ipc namespace this test made)."""
    def m(c):
        extra = {"ipc": "/proc/self/ns/ipc"} if case == "host-ipcns-by-path" else {}
        c["linux"]["namespaces"] = _namespaces("pid", "network", "uts", "mount", "cgroup", **extra)
        c["linux"]["sysctl"] = {key: value}
    out, err = _create_in(rt, ("-i",), rt.new_id(), rt.bundle(["true"], mutate=m), probe)
    before, rc, after = out
    assert rc == "rc=1"
    assert err.strip() == f'sysctl "{key}" is not allowed in the hosts ipc namespace'
    assert after == before
    _nothing_left(rt)


@pytest.mark.parametrize("case", ["no-utsns", "host-utsns-by-path"])
def test_domainname_sysctl_refused_in_the_hosts_uts_namespace(rt, case):
    def m(c):
        extra = {"uts": "/proc/self/ns/uts"} if case == "host-utsns-by-path" else {}
        c["linux"]["namespaces"] = _namespaces("pid", "network", "ipc", "mount", "cgroup", **extra)
        c["linux"]["sysctl"] = {"kernel.domainname": "pyrunc-canary"}
        del c["hostname"]
    out, err = _create_in(rt, ("-u",), rt.new_id(), rt.bundle(["true"], mutate=m),
                          "cat /proc/sys/kernel/domainname")
    before, rc, after = out
    assert rc == "rc=1"
    assert err.strip() == 'sysctl "kernel.domainname" is not in a separate kernel namespace'
    assert after == before
    _nothing_left(rt)


def test_hostname_sysctl_conflicts_with_the_hostname_field(rt):
    """runc: kernel.hostname is namespaced, but config.json has a field for it."""
    def m(c):
        c["linux"]["sysctl"] = {"kernel.hostname": "other"}
    p = rt("create", "--bundle", rt.bundle(["true"], mutate=m), rt.new_id())
    assert p.returncode == 1
    assert p.stderr.strip() == 'sysctl "kernel.hostname" is not allowed as it conflicts with the OCI "hostname" field'
    _nothing_left(rt)


def test_hostname_refused_in_the_hosts_uts_namespace(rt):
    """A joined uts namespace that is the runtime's own: setting the
    hostname there would rename the host (probed in a private one)."""
    def m(c):
        c["linux"]["namespaces"] = _namespaces("pid", "network", "ipc", "mount", "cgroup",
                                               uts="/proc/self/ns/uts")
        c["hostname"] = "pyrunc-canary"
    out, err = _create_in(rt, ("-u",), rt.new_id(), rt.bundle(["true"], mutate=m), "hostname")
    before, rc, after = out
    assert rc == "rc=1"
    assert "hostname" in err and "/proc/self/ns/uts" in err and len(err.strip().splitlines()) == 1
    assert after == before
    _nothing_left(rt)


@pytest.mark.parametrize("key", ["net/../kernel/msgmax", "net.//.kernel.msgmax", "net.ipv4/../../kernel/msgmax"])
def test_sysctl_key_cannot_climb_out_of_its_namespace(rt, key):
    """A key that passes as net.* must not name another file under
    /proc/sys through "..": every '.' of a key is a separator, so no ".."
    reaches the path. Probed with an ipc sysctl of an ipc namespace this
    test made, the container having its own network namespace only."""
    def m(c):
        c["linux"]["namespaces"] = _namespaces("pid", "network", "uts", "mount", "cgroup")
        c["linux"]["sysctl"] = {key: "12345"}
    out, err = _create_in(rt, ("-i",), rt.new_id(), rt.bundle(["true"], mutate=m),
                          "cat /proc/sys/kernel/msgmax")
    before, rc, after = out
    assert rc == "rc=1"
    assert err.startswith(f"linux.sysctl {key}: ") and len(err.strip().splitlines()) == 1
    assert after == before
    _nothing_left(rt)


def test_namespaced_sysctls_still_set(rt):
    def m(c):
        c["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.msgmax": "12345",
                                "kernel/shmmni": "1234", "net/ipv4/conf/lo/forwarding": "1",
                                "kernel.domainname": "pyrunc.test"}
    p = rt("run", "--bundle", rt.bundle(["cat", "/proc/sys/net/ipv4/ip_forward", "/proc/sys/kernel/msgmax",
                                         "/proc/sys/kernel/shmmni", "/proc/sys/net/ipv4/conf/lo/forwarding",
                                         "/proc/sys/kernel/domainname"], mutate=m), rt.new_id())
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["1", "12345", "1234", "1", "pyrunc.test"]


@pytest.mark.parametrize("case", ["no-netns", "host-netns-by-path"])
def test_net_devices_refused_in_the_hosts_network_namespace(rt, case):
    """linux.netDevices moves and renames interfaces: in the runtime's own
    network namespace that renames the host's (runc: a NET namespace is
    required). Probed on a veth pair of a namespace this test made."""
    if not shutil.which("ip"):
        pytest.skip("iproute2 (ip) is not installed")

    def m(c):
        extra = {"network": "/proc/self/ns/net"} if case == "host-netns-by-path" else {}
        c["linux"]["namespaces"] = _namespaces(*_NO_NET, **extra)
        c["linux"]["netDevices"] = {"pyrdummy0": {"name": "pyrmoved0"}}
    b = rt.bundle(["true"], mutate=m)
    rc, out, err = _sh(f"ip link add pyrdummy0 type veth peer name pyrpeer0 || exit 1; "
                       f"{PYRUNC} --root {rt.root} create --bundle {b} {rt.new_id()}; echo rc=$?; "
                       f"ip -o link show | cut -d: -f2 | cut -d@ -f1", ("-n",))
    assert rc == 0, err
    words = out.split()
    assert "rc=1" in words
    assert "pyrdummy0" in words and "pyrmoved0" not in words
    assert len(err.strip().splitlines()) == 1 and "network" in err.lower()
    if case == "no-netns":
        assert err.strip() == "unable to move network devices without a NET namespace"
    _nothing_left(rt)


# --- proc and sysfs destinations ---------------------------------------------

@pytest.fixture
def own_rootfs(tmp_path, busybox_rootfs):
    r = tmp_path / "rootfs"
    shutil.copytree(busybox_rootfs, r, symlinks=True)
    return r


@pytest.mark.parametrize("name,fstype", [("proc", "proc"), ("sys", "sysfs")])
@pytest.mark.parametrize("target", ["/dev/shm", "../outside", "/etc/passwd"])
def test_proc_and_sysfs_refused_on_a_symlink(rt, tmp_path, own_rootfs, name, fstype, target):
    """rootfs/proc (or /sys) a symlink: the filesystem is not mounted
    wherever it points (a later mount could cover it, leaving the container
    a fake /proc); runc: 'must be mounted on ordinary directory'."""
    (tmp_path / "outside").mkdir()
    shutil.rmtree(own_rootfs / name)
    os.symlink(target, own_rootfs / name)
    p = rt("create", "--bundle", rt.bundle(["true"], rootfs=str(own_rootfs)), rt.new_id())
    assert p.returncode == 1
    assert p.stderr.strip() == f'mounts[{0 if name == "proc" else 5}] /{name}: ' \
                               f'filesystem "{fstype}" must be mounted on ordinary directory'
    assert os.listdir(tmp_path / "outside") == []
    assert not (own_rootfs / "outside").exists() and not (own_rootfs / "dev" / "shm").exists()
    _nothing_left(rt)


def test_proc_refused_on_a_file(rt, own_rootfs):
    shutil.rmtree(own_rootfs / "proc")
    (own_rootfs / "proc").write_text("")
    p = rt("create", "--bundle", rt.bundle(["true"], rootfs=str(own_rootfs)), rt.new_id())
    assert p.returncode == 1
    assert p.stderr.strip() == 'mounts[0] /proc: filesystem "proc" must be mounted on ordinary directory'
    _nothing_left(rt)


def test_proc_may_be_missing(rt, own_rootfs):
    """A missing /proc is made (a directory), as before."""
    shutil.rmtree(own_rootfs / "proc")
    p = rt("run", "--bundle", rt.bundle(["cat", "/proc/self/comm"], rootfs=str(own_rootfs)), rt.new_id())
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "cat"


def test_fake_proc_bind_mount_refused(rt, tmp_path):
    """A bind mount over /proc must come from a procfs: a directory of
    fake files there would receive the runtime's and the LSM's /proc
    writes (runc's checkProcMount)."""
    fake = tmp_path / "fakeproc"
    (fake / "sys").mkdir(parents=True)

    def m(c):
        c["mounts"].append({"destination": "/proc", "type": "bind", "source": str(fake), "options": ["rbind"]})
    p = rt("create", "--bundle", rt.bundle(["true"], mutate=m), rt.new_id())
    assert p.returncode == 1
    assert p.stderr.strip() == 'mounts[7] /proc: "/proc" cannot be mounted because it is not of type proc'
    _nothing_left(rt)


def test_mount_through_a_symlink_to_proc_refused(rt, tmp_path, own_rootfs):
    """The check is on where the destination resolves to, not its name."""
    os.symlink("/proc", own_rootfs / "innocent")
    fake = tmp_path / "fakeproc"
    fake.mkdir()

    def m(c):
        c["mounts"].append({"destination": "/innocent", "type": "bind", "source": str(fake), "options": ["rbind"]})
    p = rt("create", "--bundle", rt.bundle(["true"], mutate=m, rootfs=str(own_rootfs)), rt.new_id())
    assert p.returncode == 1
    assert p.stderr.strip() == 'mounts[7] /innocent: "/proc" cannot be mounted because it is not of type proc'
    _nothing_left(rt)


@pytest.mark.parametrize("mtype", ["bind", "tmpfs"])
def test_mount_inside_proc_refused(rt, tmp_path, mtype):
    """Nothing may be mounted inside /proc but the files lxcfs emulates: a
    tmpfs over /proc/sys would take the sysctls and hide the read-only
    /proc/sys, a bind could stand in for any of the runtime's /proc files."""
    d = tmp_path / "d"
    d.mkdir()

    def m(c):
        c["mounts"].append({"destination": "/proc/sys", "type": mtype, "source": str(d) if mtype == "bind" else "tmpfs",
                            "options": ["rbind"] if mtype == "bind" else []})
    p = rt("create", "--bundle", rt.bundle(["true"], mutate=m), rt.new_id())
    assert p.returncode == 1
    assert p.stderr.strip() == 'mounts[7] /proc/sys: "/proc/sys" cannot be mounted because it is inside /proc'
    _nothing_left(rt)


def test_lxcfs_style_mounts_over_proc_files_allowed(rt, tmp_path):
    up = tmp_path / "uptime"
    up.write_text("12345.00 0.00\n")

    def m(c):
        c["mounts"].append({"destination": "/proc/uptime", "type": "bind", "source": str(up), "options": ["bind"]})
        c["mounts"].append({"destination": "/proc", "type": "bind", "source": "/proc", "options": ["rbind"]})
        c["mounts"].append({"destination": "/proc/uptime", "type": "bind", "source": str(up), "options": ["bind"]})
    p = rt("run", "--bundle", rt.bundle(["cat", "/proc/uptime"], mutate=m), rt.new_id())
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "12345.00 0.00"


# --- masked and read-only paths -------------------------------------------------

@pytest.mark.parametrize("field", ["maskedPaths", "readonlyPaths"])
def test_a_path_that_cannot_be_masked_is_an_error(rt, field):
    """Only a missing path is skipped: one that cannot be masked or made
    read-only (here a component is not a directory) is an error naming the
    entry, as in runc."""
    def m(c):
        c["linux"][field].append("/etc/passwd/x")
    p = rt("create", "--bundle", rt.bundle(["true"], mutate=m), rt.new_id())
    assert p.returncode == 1
    assert p.stderr.strip() == f"linux.{field} /etc/passwd/x: Not a directory"
    _nothing_left(rt)


def test_masked_paths_need_a_mount_namespace(rt):
    """runc: masks and read-only paths without a mount namespace of the
    container's own cannot be applied, and are refused, not skipped."""
    def m(c):
        c["linux"]["namespaces"] = _namespaces("pid", "network", "ipc", "uts", "cgroup")
    p = rt("create", "--bundle", rt.bundle(["true"], mutate=m), rt.new_id())
    assert p.returncode == 1
    assert p.stderr.strip() == "unable to restrict sys entries without a private MNT namespace"
    _nothing_left(rt)


# --- --no-pivot ---------------------------------------------------------------

def _nested_proc_bundle(rt):
    def m(c):
        caps = c["process"]["capabilities"]
        for k in ("bounding", "effective", "permitted"):
            caps[k].append("CAP_SETFCAP")  # to map uid 0 in the nested user namespace
        c["root"]["readonly"] = False
    return rt.bundle(["unshare", "-mrpf", "sh", "-c", "echo nested; mount -t proc none /proc && echo MOUNTED"],
                     mutate=m)


@pytest.mark.parametrize("pivot", [True, False])
def test_no_fresh_proc_from_a_nested_user_namespace(rt, pivot):
    """CVE-2023-27561 class (runc's no_pivot.bats): the kernel lets a new
    user namespace mount a fresh (unmasked) procfs when a full proc mount is
    visible in its mount namespace; with --no-pivot the host's /proc stays
    under the moved root unless the runtime removes it."""
    args = ["run"] + ([] if pivot else ["--no-pivot"])
    p = rt(*args, "--bundle", _nested_proc_bundle(rt), rt.new_id())
    assert "nested" in p.stdout.split(), p.stderr  # the nested namespaces were made
    assert "MOUNTED" not in p.stdout.split()
    assert p.returncode != 0


def test_no_fresh_proc_from_a_nested_user_namespace_rootless(launcher, open_tmp, busybox_rootfs):
    """The same as an unprivileged user: there the old root's proc and
    sysfs mounts are locked and cannot be unmounted, so they are covered."""
    from test_rootless import NOBODY, _as_nobody
    from runtime.specgen import default_spec
    xdg = open_tmp / "xdg"
    xdg.mkdir()
    os.chown(xdg, NOBODY, NOBODY)
    bundle = open_tmp / "bundle"
    bundle.mkdir()
    cfg = default_spec(rootless=True, terminal=False,
                       args=["unshare", "-mrpf", "sh", "-c", "echo nested; mount -t proc none /proc && echo MOUNTED"])
    cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": NOBODY, "size": 1}]
    cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": NOBODY, "size": 1}]
    cfg["root"] = {"path": busybox_rootfs, "readonly": True}
    for k in ("bounding", "effective", "permitted"):
        cfg["process"]["capabilities"][k].append("CAP_SETFCAP")
    (bundle / "config.json").write_text(json.dumps(cfg))
    env = {"PATH": "/usr/bin:/bin", "XDG_RUNTIME_DIR": str(xdg)}
    p = _as_nobody([launcher, "run", "--no-pivot", "--bundle", str(bundle), "rlnp"], env)
    assert "nested" in p.stdout.split(), p.stderr
    assert "MOUNTED" not in p.stdout.split()


# --- frozen cgroups -------------------------------------------------------------

def _freezer_base():
    if os.path.isdir("/sys/fs/cgroup/freezer"):
        return "/sys/fs/cgroup/freezer"
    pytest.skip("no v1 freezer")


def _cg_dirs(name):
    return [d for d in (os.path.join(b, name) for b in
                        [os.path.join("/sys/fs/cgroup", x) for x in os.listdir("/sys/fs/cgroup")] +
                        ["/sys/fs/cgroup"]) if os.path.isdir(d)]


@pytest.mark.parametrize("how", ["v1-self", "v1-parent", "unified-self", "unified-parent"])
def test_create_refuses_a_frozen_cgroup(rt, how):
    """runc: "container's cgroup unexpectedly frozen"; pyrunc also refuses a
    cgroup below a frozen one (its init would freeze on joining and create
    wait forever). Nothing is left, and the frozen cgroup is untouched."""
    name = f"pyrunc-frozen-{os.getpid()}-{how}"
    if how.startswith("v1"):
        base = _freezer_base()
        fdir, file, val = os.path.join(base, name), "freezer.state", "FROZEN"
    else:
        if not os.path.isdir("/sys/fs/cgroup/unified"):
            pytest.skip("no hybrid unified hierarchy")
        fdir, file, val = os.path.join("/sys/fs/cgroup/unified", name), "cgroup.freeze", "1"
    cgpath = "/" + name + ("/child" if how.endswith("parent") else "")
    cid = rt.new_id()
    os.mkdir(fdir)
    try:
        with open(os.path.join(fdir, file), "w") as f:
            f.write(val)
        p = rt("create", "--bundle", rt.bundle(["true"], mutate=lambda c: c["linux"].update(cgroupsPath=cgpath)),
               cid, timeout=30)
        assert p.returncode == 1
        assert p.stderr.startswith("container's cgroup unexpectedly frozen"), p.stderr
        assert fdir in p.stderr and len(p.stderr.strip().splitlines()) == 1
        _nothing_left(rt)
        assert _cg_dirs(name) == [fdir], "create made cgroups or removed the frozen one"
        with open(os.path.join(fdir, file)) as f:
            assert f.read().strip() == val
    finally:
        _thaw_and_remove(rt, cid, name)


def _thaw_and_remove(rt, cid, name):
    for d in _cg_dirs(name):
        for sub in (os.path.join(d, "child"), d):
            for file, val in (("freezer.state", "THAWED"), ("cgroup.freeze", "0")):
                if os.path.exists(os.path.join(sub, file)):
                    with open(os.path.join(sub, file), "w") as f:
                        f.write(val)
    rt("delete", "--force", cid)
    for d in _cg_dirs(name):
        for sub in (os.path.join(d, "child"), d):
            if os.path.isdir(sub):
                os.rmdir(sub)


@pytest.mark.parametrize("parent", [False, True])
def test_create_refuses_a_frozen_cgroup_on_pure_v2(rt, parent):
    from test_cgroup_v2_mode import in_v2_view
    if not os.path.isdir("/sys/fs/cgroup/unified") and \
            open("/proc/self/mountinfo").read().find(" /sys/fs/cgroup rw") < 0:
        pytest.skip("no cgroup2 hierarchy to build a v2 view from")
    name = f"pyrunc-v2-frozen-{os.getpid()}"
    cgpath = f"/{name}/child" if parent else f"/{name}"
    b = rt.bundle(["true"], mutate=lambda c: c["linux"].update(cgroupsPath=cgpath))
    cid = rt.new_id()
    d = f"/sys/fs/cgroup/{name}"
    try:
        p = in_v2_view(f"mkdir {d}; echo 1 > {d}/cgroup.freeze; rc=0; "
                       f"timeout 30 {PYRUNC} --root {rt.root} create --bundle {b} {cid} || rc=$?; echo rc=$rc; "
                       f"cat {d}/cgroup.freeze; ls {d} | grep -c child || true")
        out = p.stdout.split()
        assert out[:3] == ["rc=1", "1", "0"], (p.stdout, p.stderr)
        assert "container's cgroup unexpectedly frozen" in p.stderr and d in p.stderr
        _nothing_left(rt)
    finally:
        host = f"/sys/fs/cgroup/unified/{name}" if os.path.isdir("/sys/fs/cgroup/unified") else d
        if os.path.isdir(host):
            with open(f"{host}/cgroup.freeze", "w") as f:
                f.write("0")
        rt("delete", "--force", cid)
        for x in (f"{host}/child", host):
            if os.path.isdir(x):
                os.rmdir(x)


# --- damaged state files ----------------------------------------------------------

def _pids_of(cgroup_dir):
    with open(os.path.join(cgroup_dir, "cgroup.procs")) as f:
        return [int(x) for x in f.read().split()]


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "wrong-type", "missing"])
def test_damaged_state_file_never_forgets_a_running_container(rt, damage):
    """A state file that cannot be read: the container's processes may run,
    so it stays listed (runc: a 'load container' line on stderr), `delete`
    refuses, and `delete --force` finds the processes through the cgroup
    create recorded, kills them and removes everything."""
    from runtime.state import STATE_FILE
    name = f"pyrunc-damaged-{os.getpid()}-{damage}"
    b = rt.bundle(["sleep", "600"], mutate=lambda c: c["linux"].update(cgroupsPath="/" + name))
    cid = rt.new_id()
    rt("run", "-d", "--bundle", b, cid, check=True)
    pid = rt.state(cid)["pid"]
    pids = _pids_of(f"/sys/fs/cgroup/pids/{name}") if os.path.isdir("/sys/fs/cgroup/pids") else [pid]
    assert pid in pids
    sf = os.path.join(rt.root, cid, STATE_FILE)
    size = os.path.getsize(sf)
    if damage == "truncated":
        os.truncate(sf, size // 2)
    elif damage == "garbage":
        import random
        with open(sf, "wb") as f:
            f.write(random.Random(damage).randbytes(size))
    elif damage == "empty":
        os.truncate(sf, 0)
    elif damage == "wrong-type":
        from runtime.state import save
        save(os.path.dirname(sf), {"id": cid, "pid": "not a pid"})
    else:
        os.unlink(sf)
    try:
        p = rt("list")
        assert p.returncode == 0
        assert p.stderr.startswith(f"load container {cid}: "), p.stderr
        p = rt("state", cid)
        assert p.returncode == 1 and cid in p.stderr and len(p.stderr.strip().splitlines()) == 1
        p = rt("delete", cid)
        assert p.returncode == 1 and cid in p.stderr and len(p.stderr.strip().splitlines()) == 1
        assert _alive(pid)
        p = rt("delete", "--force", cid)
        assert p.returncode == 0, p.stderr
        for _ in range(200):
            if not any(_alive(x) for x in pids):
                break
            time.sleep(0.02)
        assert not any(_alive(x) for x in pids), "delete --force left the container's processes running"
        assert not _cg_dirs(name), "delete --force left the container's cgroups"
        assert not os.path.exists(os.path.join(rt.root, cid))
        assert rt("list", "-q").stdout == ""
    finally:
        for x in pids:
            try:
                os.kill(x, 9)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
        for d in _cg_dirs(name):
            try:
                os.rmdir(d)
            except OSError:
                pass
        shutil.rmtree(os.path.join(rt.root, cid), ignore_errors=True)


def test_damaged_state_without_a_record_is_refused_not_forgotten(rt):
    """When neither the state nor create's first record can be read, there
    is no telling which processes are the container's: `delete --force`
    refuses (as runc does), keeps the directory, and says what to do."""
    from runtime.state import FIRST_FILE, STATE_FILE
    name = f"pyrunc-norecord-{os.getpid()}"
    b = rt.bundle(["sleep", "600"], mutate=lambda c: c["linux"].update(cgroupsPath="/" + name))
    cid = rt.new_id()
    rt("run", "-d", "--bundle", b, cid, check=True)
    pid = rt.state(cid)["pid"]
    cdir = os.path.join(rt.root, cid)
    try:
        for n in (STATE_FILE, FIRST_FILE):
            assert os.path.isfile(os.path.join(cdir, n))
            with open(os.path.join(cdir, n), "wb") as f:
                f.write(b"\x00garbage")
        p = rt("delete", "--force", cid)
        assert p.returncode == 1
        assert cid in p.stderr and cdir in p.stderr and len(p.stderr.strip().splitlines()) == 1
        assert os.path.isdir(cdir)
        assert _alive(pid)
        assert rt("list").stderr.startswith(f"load container {cid}: ")
    finally:
        os.kill(pid, 9)
        for _ in range(200):
            if not _alive(pid):
                break
            time.sleep(0.02)
        # With the state unreadable, the test removes what pyrunc could not.
        for d in _cg_dirs(name):
            try:
                os.rmdir(d)
            except OSError:
                pass
        shutil.rmtree(cdir, ignore_errors=True)
