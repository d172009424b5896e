"""config.md: root, mounts, process, hostname/domainname, annotations,
extensibility and valid values - checked from inside the container with the
probe (probe.c)."""
import errno
import json
import os
import shutil
import subprocess

import pytest

from confutil import CAP_NUMBERS, caps_to_mask, mount_at, mountinfo


# --- root -------------------------------------------------------------------

def test_root_readonly_true(crt):
    """config.md#root: readonly "If true then the root filesystem MUST be
    read-only inside the container"."""
    d = crt.probe(["-w", "/tmp/", "-w", "/"])
    assert d["writable"]["/tmp/"] == errno.EROFS
    assert "ro" in mount_at(mountinfo(d["mountinfo"]), "/")["opts"]


def test_root_readonly_false(crt, tmp_path, probe_rootfs):
    """config.md#root: readonly "defaults to false" - a writable root."""
    d = crt.probe(["-w", "/tmp/"], mutate=lambda c: c["root"].pop("readonly"))
    assert d["writable"]["/tmp/"] == 0
    assert "rw" in mount_at(mountinfo(d["mountinfo"]), "/")["opts"]


def test_root_path_relative_to_bundle(crt, probe_bin):
    """config.md#root: path "is either an absolute path or a relative path to the
    bundle" - `rootfs` next to config.json is used even when the runtime is
    started from another directory."""
    b = crt.probe_bundle(mutate=lambda c: c["root"].__setitem__("path", "rootfs"))
    rootfs = os.path.join(b, "rootfs")
    for d in ("bin", "out", "proc", "sys", "dev", "tmp"):
        os.makedirs(os.path.join(rootfs, d))
    shutil.copy2(probe_bin, os.path.join(rootfs, "bin", "probe"))
    cid = crt.new_id()
    with open(os.devnull) as dn:
        p = subprocess.run([crt.binary, "--root", crt.root, "run", "--bundle", b, cid],
                           stdin=dn, capture_output=True, text=True, timeout=60, cwd="/")
    assert p.returncode == 0, p.stderr
    with open(os.path.join(crt.out, "probe.json")) as f:
        d = json.load(f)
    assert d["stat"] == {} and d["pid"] == 1


# --- mounts -----------------------------------------------------------------

def test_mounts_in_listed_order(crt):
    """config.md#mounts: "The runtime MUST mount entries in the listed order" -
    a nested mount after its parent, and of two mounts on one destination the
    later one is on top."""
    def mut(cfg):
        cfg["mounts"] += [
            {"destination": "/mnt", "type": "tmpfs", "source": "first", "options": ["size=1m"]},
            {"destination": "/mnt", "type": "tmpfs", "source": "second", "options": ["size=2m"]},
            {"destination": "/mnt/sub", "type": "tmpfs", "source": "third", "options": ["size=3m"]},
        ]
    d = crt.probe(mutate=mut)
    info = mountinfo(d["mountinfo"])
    mnt = [m for m in info if m["mountpoint"] == "/mnt"]
    assert [m["source"] for m in mnt] == ["first", "second"]
    sub = mount_at(info, "/mnt/sub")
    assert sub and sub["source"] == "third" and sub["parent"] == mnt[-1]["id"]


def test_mount_relative_destination(crt):
    """config.md#mounts: destination "MAY be a relative path, in which case it
    MUST be interpreted as relative to "/""."""
    d = crt.probe(mutate=lambda c: c["mounts"].append(
        {"destination": "mnt", "type": "tmpfs", "source": "reldest", "options": ["size=1m"]}))
    m = mount_at(mountinfo(d["mountinfo"]), "/mnt")
    assert m and m["source"] == "reldest"


# (options, expected per-mount flags, expected superblock flags, flags that must be absent)
MOUNT_OPTIONS = [
    (["ro"], {"ro"}, set(), set()),
    (["rw"], {"rw"}, set(), set()),
    (["defaults"], {"rw"}, set(), {"nosuid", "nodev", "noexec"}),
    (["nosuid"], {"nosuid"}, set(), set()),
    (["nodev"], {"nodev"}, set(), set()),
    (["noexec"], {"noexec"}, set(), set()),
    (["nosuid", "suid"], set(), set(), {"nosuid"}),
    (["nodev", "dev"], set(), set(), {"nodev"}),
    (["noexec", "exec"], set(), set(), {"noexec"}),
    (["noatime"], {"noatime"}, set(), {"relatime"}),
    (["nodiratime"], {"nodiratime"}, set(), set()),
    (["nodiratime", "diratime"], set(), set(), {"nodiratime"}),
    (["relatime"], {"relatime"}, set(), {"noatime"}),
    (["strictatime"], set(), set(), {"relatime", "noatime"}),
    (["noatime", "atime"], set(), set(), {"noatime"}),
    (["sync"], set(), {"sync"}, set()),
    (["sync", "async"], set(), set(), {"sync"}),
    (["dirsync"], set(), {"dirsync"}, set()),
    (["lazytime"], set(), {"lazytime"}, set()),
    (["lazytime", "nolazytime"], set(), set(), {"lazytime"}),
    (["nosymfollow"], {"nosymfollow"}, set(), set()),
    (["silent"], set(), set(), set()),
    (["loud"], set(), set(), set()),
    (["iversion"], set(), set(), set()),
    (["noiversion"], set(), set(), set()),
    (["nostrictatime"], set(), set(), set()),
]


@pytest.mark.parametrize("options,flags,sb_flags,absent", MOUNT_OPTIONS,
                         ids=["+".join(o[0]) for o in MOUNT_OPTIONS])
def test_mount_options(crt, options, flags, sb_flags, absent):
    """config.md#mounts: "Runtimes MUST/SHOULD/MAY implement the following
    option strings for Linux" - every MUST option of mount(8) is applied as
    mount(8) would (checked in /proc/self/mountinfo)."""
    d = crt.probe(mutate=lambda c: c["mounts"].append(
        {"destination": "/mnt", "type": "tmpfs", "source": "opt", "options": options}))
    m = mount_at(mountinfo(d["mountinfo"]), "/mnt")
    assert m and m["source"] == "opt"
    assert flags <= m["opts"], (options, m["opts"])
    assert sb_flags <= m["super_opts"], (options, m["super_opts"])
    assert not (absent & (m["opts"] | m["super_opts"])), (options, m)


def test_mount_bind_and_rbind(crt, tmp_path):
    """config.md#mounts: `bind` ("Bind mount") and `rbind` ("Recursive bind
    mount") are MUST options: bind does not bring submounts, rbind does."""
    src = tmp_path / "bindsrc"
    (src / "sub").mkdir(parents=True)
    (src / "file").write_text("content")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "subm", str(src / "sub")], check=True)
    crt.extra_cleanup.append(lambda: subprocess.run(["umount", "-l", str(src / "sub")]))
    (src / "sub" / "inner").write_text("x")

    def mut(cfg):
        cfg["mounts"] += [
            {"destination": "/mnt", "type": "none", "source": str(src), "options": ["bind"]},
            {"destination": "/srv", "type": "none", "source": str(src), "options": ["rbind"]},
        ]
    d = crt.probe(["-r", "/mnt/file", "-s", "/mnt/sub/inner", "-s", "/srv/sub/inner"], mutate=mut)
    assert d["files"]["/mnt/file"].get("content") == "content"
    assert d["stat"]["/mnt/sub/inner"].get("errno") == errno.ENOENT
    assert d["stat"]["/srv/sub/inner"].get("type") == "file"


@pytest.mark.parametrize("prop,expect", [
    ("shared", "shared:"), ("rshared", "shared:"), ("private", None), ("rprivate", None),
    ("unbindable", "unbindable"), ("runbindable", "unbindable"), ("slave", "master:"), ("rslave", "master:"),
])
def test_mount_propagation_options(crt, tmp_path, prop, expect):
    """config.md#mounts: propagation options (shared, rshared, private, rprivate,
    slave, rslave, unbindable, runbindable) are MUST options ("Bind mount
    propagation"). The source is a shared mount so that `slave` has a master."""
    src = tmp_path / "propsrc"
    src.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "propsrc", str(src)], check=True)
    crt.extra_cleanup.append(lambda: subprocess.run(["umount", "-l", str(src)]))
    subprocess.run(["mount", "--make-shared", str(src)], check=True)
    d = crt.probe(mutate=lambda c: c["mounts"].append(
        {"destination": "/mnt", "type": "none", "source": str(src), "options": ["rbind", prop]}))
    m = mount_at(mountinfo(d["mountinfo"]), "/mnt")
    opt = " ".join(m["optional"])
    if expect is None:
        assert not any(t in opt for t in ("shared:", "master:", "unbindable")), (prop, opt)
    else:
        assert expect in opt, (prop, opt)


def test_mount_recursive_readonly(crt, tmp_path):
    """config.md#mounts: `rro` (SHOULD, "Recursive ro") makes submounts of an
    rbind mount read-only too."""
    src = tmp_path / "rrosrc"
    (src / "sub").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "rrosub", str(src / "sub")], check=True)
    crt.extra_cleanup.append(lambda: subprocess.run(["umount", "-l", str(src / "sub")]))
    d = crt.probe(["-w", "/mnt/sub/", "-w", "/mnt/"], mutate=lambda c: c["mounts"].append(
        {"destination": "/mnt", "type": "none", "source": str(src), "options": ["rbind", "rro"]}))
    assert d["writable"]["/mnt/"] == errno.EROFS
    assert d["writable"]["/mnt/sub/"] == errno.EROFS


# --- process ----------------------------------------------------------------

def test_process_args_env_cwd(crt):
    """config.md#process: args "with similar semantics to IEEE Std 1003.1-2008
    execvp's argv"; env "with the same semantics as IEEE Std 1003.1-2008's
    environ"; cwd "the working directory that will be set for the executable"."""
    env = ["PATH=/bin", "FOO=bar baz", "EMPTY="]
    d = crt.probe(["-s", "/"], cwd="/tmp", env=env)
    assert d["argv"][:3] == ["/bin/probe", "-o", "/out/probe.json"]
    for e in env:
        assert e in d["env"], (e, d["env"])
    assert d["cwd"] == "/tmp"


def test_process_args_path_lookup(crt):
    """config.md#process: args[0] is looked up in PATH like execvp."""
    d = crt.probe(mutate=lambda c: c["process"].__setitem__("args", ["probe", "-o", "/out/probe.json"]),
                  env=["PATH=/usr/local/bin:/bin"])
    assert d["argv"][0] == "probe"


def test_process_user(crt):
    """config.md#user (POSIX): uid, gid, umask and additionalGids of the process."""
    d = crt.probe(user={"uid": 1000, "gid": 1000, "umask": 0o027, "additionalGids": [5, 65534]})
    assert (d["uid"], d["euid"], d["suid"]) == (1000, 1000, 1000)
    assert (d["gid"], d["egid"], d["sgid"]) == (1000, 1000, 1000)
    assert d["umask"] == 0o027
    assert {5, 65534} <= set(d["groups"])


def test_process_rlimits(crt):
    """config.md#posix-process: rlimits "For each entry in rlimits, a getrlimit(3)
    on type MUST succeed"; "rlim.rlim_cur MUST match the configured value";
    "rlim.rlim_max MUST match the configured value"."""
    rl = [{"type": "RLIMIT_NOFILE", "soft": 3000, "hard": 4000},
          {"type": "RLIMIT_CORE", "soft": 4096, "hard": 8192},
          {"type": "RLIMIT_NPROC", "soft": 300, "hard": 400},
          {"type": "RLIMIT_MSGQUEUE", "soft": 1000, "hard": 2000}]
    d = crt.probe(rlimits=rl)
    for r in rl:
        assert d["rlimits"][r["type"]] == {"soft": r["soft"], "hard": r["hard"]}, r


def test_process_rlimits_unknown_type(crt):
    """config.md#posix-process: "The runtime MUST generate an error for any
    values which cannot be mapped to a relevant kernel interface"."""
    b = crt.probe_bundle(rlimits=[{"type": "RLIMIT_NOSUCHTHING", "soft": 1, "hard": 1}])
    cid, p = crt.create(b)
    assert p.returncode != 0
    assert crt("state", cid).returncode != 0


def test_process_rlimits_duplicate(crt):
    """config.md#posix-process: "If rlimits contains duplicated entries with same
    type, the runtime MUST generate an error"."""
    b = crt.probe_bundle(rlimits=[{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 100},
                                  {"type": "RLIMIT_NOFILE", "soft": 200, "hard": 200}])
    cid, p = crt.create(b)
    assert p.returncode != 0
    assert crt("state", cid).returncode != 0


def test_process_capabilities(crt):
    """config.md#linux-process: capabilities - the effective, bounding,
    inheritable, permitted and ambient sets are the configured ones."""
    # For uid 0 without file capabilities execve(2) gives P' = I | B and
    # E' = P', so a consistent config for root has permitted = effective =
    # bounding (and inheritable, ambient within them).
    main = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW", "CAP_SETUID", "CAP_SETGID"]
    caps = {"bounding": main, "permitted": main, "effective": main,
            "inheritable": ["CAP_KILL", "CAP_NET_RAW"], "ambient": ["CAP_KILL"]}
    d = crt.probe(capabilities=caps, noNewPrivileges=False)
    st = d["status"]
    for field, key in (("CapBnd", "bounding"), ("CapPrm", "permitted"), ("CapEff", "effective"),
                       ("CapInh", "inheritable"), ("CapAmb", "ambient")):
        assert int(st[field], 16) == caps_to_mask(caps[key]), (field, st[field])


def test_process_capabilities_non_root(crt):
    """config.md#linux-process: the configured sets hold for a non-root user too
    (ambient capabilities survive the execve)."""
    caps = {"bounding": ["CAP_NET_BIND_SERVICE", "CAP_KILL"],
            "permitted": ["CAP_NET_BIND_SERVICE"], "effective": ["CAP_NET_BIND_SERVICE"],
            "inheritable": ["CAP_NET_BIND_SERVICE"], "ambient": ["CAP_NET_BIND_SERVICE"]}
    d = crt.probe(capabilities=caps, user={"uid": 1000, "gid": 1000})
    st = d["status"]
    want = caps_to_mask(["CAP_NET_BIND_SERVICE"])
    assert int(st["CapEff"], 16) == want and int(st["CapPrm"], 16) == want
    assert int(st["CapAmb"], 16) == want
    assert int(st["CapBnd"], 16) == caps_to_mask(caps["bounding"])


def test_process_capability_not_grantable_is_a_warning(crt):
    """config.md#linux-process: a capability that "cannot be granted otherwise
    MUST be logged as a warning by the runtime. Runtimes SHOULD NOT fail if the
    container configuration requests capabilities that cannot be granted".
    CAP_SYS_RESOURCE is outside this machine's bounding set: the runtime names
    it in its log, and (SHOULD) runs the container with the others."""
    with open("/proc/self/status") as f:
        bnd = int(next(ln for ln in f if ln.startswith("CapBnd:")).split()[1], 16)
    if bnd & (1 << CAP_NUMBERS["CAP_SYS_RESOURCE"]):
        pytest.skip("CAP_SYS_RESOURCE is grantable here")
    caps = {k: ["CAP_KILL", "CAP_SYS_RESOURCE"] for k in ("bounding", "permitted", "effective")}
    b = crt.probe_bundle(capabilities=caps)
    cid, p = crt.run_fg(b)
    assert "CAP_SYS_RESOURCE" in p.stderr, f"the ungrantable capability is not named in the log: {p.stderr!r}"
    assert p.returncode == 0, f"run failed: {p.stderr}"
    with open(os.path.join(crt.out, "probe.json")) as f:
        d = json.load(f)
    assert int(d["status"]["CapEff"], 16) == caps_to_mask(["CAP_KILL"])


def test_process_capability_unknown_name_is_an_error(crt):
    """config.md#linux-process: capabilities "Valid values are defined in the
    capabilities(7) man page". A name that is no capability at all (a typo)
    is an invalid value, not a restriction of the host: create fails naming
    the field and the value (crun does the same; runtime-tools'
    process_capabilities_fail expects it), and no container is left."""
    caps = {k: ["CAP_KILL", "CAP_TEST"] for k in ("bounding", "permitted", "effective")}
    cid, p = crt.create(crt.bundle(args=["true"], capabilities=caps))
    assert p.returncode != 0, "an unknown capability name was accepted"
    assert "CAP_TEST" in p.stderr and "capabilities" in p.stderr, p.stderr
    assert crt("state", cid).returncode != 0


@pytest.mark.parametrize("nnp", [True, False])
def test_process_no_new_privileges(crt, nnp):
    """config.md#linux-process: noNewPrivileges "setting noNewPrivileges to true
    prevents the process from gaining additional privileges"."""
    d = crt.probe(noNewPrivileges=nnp)
    assert d["no_new_privs"] == int(nnp)


def test_process_oom_score_adj_set(crt):
    """config.md#linux-process: "If oomScoreAdj is set, the runtime MUST set
    oom_score_adj to the given value"."""
    d = crt.probe(oomScoreAdj=345)
    assert d["oom_score_adj"] == 345


def test_process_oom_score_adj_unset(crt):
    """config.md#linux-process: "If oomScoreAdj is not set, the runtime MUST NOT
    change the value of oom_score_adj" - the container keeps the value of the
    process that ran the runtime."""
    b = crt.probe_bundle()
    cid = crt.new_id()
    with open(os.devnull) as dn:
        p = subprocess.run(["sh", "-c", 'echo 123 > /proc/self/oom_score_adj && exec "$@"', "sh",
                            crt.binary, "--root", crt.root, "run", "--bundle", b, cid],
                           stdin=dn, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    with open(os.path.join(crt.out, "probe.json")) as f:
        assert json.load(f)["oom_score_adj"] == 123


def test_process_console_size_ignored_without_terminal(crt):
    """config.md#process: "Runtimes MUST ignore consoleSize if terminal is false
    or unset"."""
    d = crt.probe(consoleSize={"height": 40, "width": 100})  # asserts the run succeeded
    assert not any(v.startswith(("/dev/pts", "/dev/console")) for v in d["fds"].values()), d["fds"]


def test_process_io_priority(crt):
    """config.md#linux-process: ioPriority "configures the I/O priority settings
    for the container's processes" (class and priority)."""
    crt.require("ioPriority")
    d = crt.probe(ioPriority={"class": "IOPRIO_CLASS_BE", "priority": 6})
    assert d["ioprio"] == (2 << 13) | 6


def test_process_scheduler(crt):
    """config.md#linux-process: scheduler - policy (and nice) of the process."""
    crt.require("scheduler")
    d = crt.probe(scheduler={"policy": "SCHED_BATCH", "nice": 5})
    assert d["sched_policy"] == 3  # SCHED_BATCH


# --- hostname, domainname ---------------------------------------------------

def test_hostname(crt):
    """config.md#hostname: "specifies the container's hostname as seen by
    processes running inside the container"."""
    d = crt.probe(mutate=lambda c: c.__setitem__("hostname", "conf-host"))
    assert d["hostname"] == "conf-host"


def test_domainname(crt):
    """config.md#domainname: "specifies the container's domainname as seen by
    processes running inside the container"."""
    crt.require("domainname")
    d = crt.probe(mutate=lambda c: c.__setitem__("domainname", "conf.example"))
    assert d["domainname"] == "conf.example"


# --- extensibility, valid values --------------------------------------------

def test_unknown_properties_are_ignored(crt):
    """config.md#extensibility: "Runtimes MAY log unknown properties but MUST
    otherwise ignore them. That includes not generating errors if they encounter
    an unknown property"; "Runtimes MUST handle unknown annotation keys like any
    other unknown property"."""
    def mut(cfg):
        cfg["org.example.unknown"] = {"x": 1}
        cfg["process"]["org.example.field"] = True
        cfg["linux"]["org.example.field"] = [1, 2]
        cfg["annotations"] = {"org.example.whatever": "1"}
    d = crt.probe(mutate=mut)
    assert d["pid"] == 1


@pytest.mark.parametrize("what", ["namespace", "seccomp-action", "mount-type-missing-source", "personality"])
def test_invalid_values_are_errors(crt, what):
    """config.md#valid-values: "Runtimes MUST generate an error when invalid or
    unsupported values are encountered"."""
    def mut(cfg):
        if what == "namespace":
            cfg["linux"]["namespaces"].append({"type": "nosuchns"})
        elif what == "seccomp-action":
            cfg["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_NOSUCH"}
        elif what == "mount-type-missing-source":
            cfg["mounts"].append({"destination": "/mnt", "type": "nosuchfs", "source": "x"})
        elif what == "personality":
            crt.require("personality")
            cfg["linux"]["personality"] = {"domain": "NOSUCHDOMAIN"}
    cid, p = crt.create(crt.probe_bundle(mutate=mut))
    assert p.returncode != 0
    assert crt("state", cid).returncode != 0


# --- terminal ---------------------------------------------------------------

def test_terminal_console(crt):
    """config.md#process: terminal "specifies whether a terminal is attached to
    the process"; config-linux.md#default-devices: "/dev/console is set up if
    terminal is enabled in the config by bind mounting the pseudoterminal pty to
    /dev/console". The pty master comes back over --console-socket."""
    import socket
    import threading
    sock_path = os.path.join(crt.tmp, "console.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(sock_path)
    srv.listen(1)
    srv.settimeout(60)
    got = {}

    def accept():
        try:
            conn, _ = srv.accept()
            with conn:
                _msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 4)
                got["fds"] = fds
        except OSError as e:
            got["error"] = e
    t = threading.Thread(target=accept, daemon=True)
    t.start()
    b = crt.probe_bundle(["-s", "/dev/console"], terminal=True)
    cid, p = crt.create(b, None, "--console-socket", sock_path)
    t.join(60)
    srv.close()
    fds = got.get("fds", [])
    crt.extra_cleanup.append(lambda: [os.close(fd) for fd in fds])
    assert p.returncode == 0, p.stderr
    assert len(fds) == 1, got
    crt("start", cid, check=True)
    crt.wait_stopped(cid)
    with open(os.path.join(crt.out, "probe.json")) as f:
        d = json.load(f)
    con = d["stat"]["/dev/console"]
    assert con.get("type") == "c" and con.get("major") == 136, con
    # the process' stdio is that same pty
    assert d["fds"]["0"].startswith("/dev/pts/") or d["fds"]["0"] == "/dev/console", d["fds"]
