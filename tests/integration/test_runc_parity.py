"""What a workload notices of how its container was set up, checked against
runc 1.1.5 (the reference): every test runs under pyrunc and, where runc is
installed, under runc too, with the same bundle and the same expectations
(runc's tests/integration/*.bats at v1.1.5 check most of these). A runc run
that fails points at the test, not at pyrunc.

Each test gets its own copy of the busybox rootfs (in a world-traversable
temp dir, for the user namespace cases), so it can change the image."""
import ctypes
import fcntl
import json
import os
import select
import shutil
import socket
import stat
import subprocess
import threading
import uuid

import pytest

from bundles import PYRUNC, Runtime, run_in_pty

RUNC = shutil.which("runc") or "/usr/sbin/runc"


@pytest.fixture(params=["pyrunc", "runc"])
def prt(request, tmp_path, open_tmp, busybox_rootfs):
    """A driver for pyrunc or runc over a private copy of the busybox rootfs."""
    if request.param == "runc" and not os.path.exists(RUNC):
        pytest.skip("runc (the reference) is not installed")
    rootfs = open_tmp / "rootfs"
    shutil.copytree(busybox_rootfs, rootfs, symlinks=True)
    r = Runtime(tmp_path, str(rootfs), binary=PYRUNC if request.param == "pyrunc" else RUNC)
    r.name = request.param
    yield r
    r.cleanup()


def run(rt, args, mutate=None, **proc):
    b = rt.bundle(args, mutate=mutate, **proc)
    return rt("run", "--bundle", b, rt.new_id())


def sh(rt, script, mutate=None, **proc):
    """Run `sh -c script` in the foreground; returns its stdout (rc 0 asserted)."""
    p = run(rt, ["sh", "-c", script], mutate, **proc)
    assert p.returncode == 0, f"{rt.name}: {p.stderr}"
    return p.stdout


def message(rt, p) -> str:
    """The error of a failed verb as one line: pyrunc's stderr, or the msg
    of runc's log line (which runc prefixes with what failed)."""
    text = p.stderr.strip()
    if rt.name == "runc" and 'msg="' in text:
        text = text.split('msg="', 1)[1].rsplit('"', 1)[0].replace('\\"', '"')
    return text


# --- args[0] ------------------------------------------------------------

@pytest.mark.parametrize("args,proc,msg", [
    (["/bin"], {}, 'exec: "/bin": permission denied'),
    (["/etc/passwd"], {}, 'exec: "/etc/passwd": permission denied'),
    (["/bin/rootonly"], {"user": {"uid": 1000, "gid": 1000}}, "exec /bin/rootonly: permission denied"),
    (["rootonly"], {"user": {"uid": 1000, "gid": 1000}}, "exec /bin/rootonly: permission denied"),
    (["sub"], {"env": ["PATH=/pdir:/bin"]}, 'exec: "sub": executable file not found in $PATH'),
    (["sh"], {"env": []}, 'exec: "sh": executable file not found in $PATH'),
    (["bb"], {"env": ["PATH=pdir:/bin"]}, 'exec: "bb": cannot run executable found relative to current directory'),
    (["/nonexist"], {}, 'exec: "/nonexist": stat /nonexist: no such file or directory'),
])
def test_args0_refused_at_create_with_runcs_message(prt, args, proc, msg):
    rootfs = prt.rootfs
    shutil.copy(os.path.join(rootfs, "bin", "busybox"), os.path.join(rootfs, "bin", "rootonly"))
    os.chmod(os.path.join(rootfs, "bin", "rootonly"), 0o700)
    os.makedirs(os.path.join(rootfs, "pdir", "sub"))
    shutil.copy(os.path.join(rootfs, "bin", "busybox"), os.path.join(rootfs, "pdir", "bb"))
    b = prt.bundle(args, **proc)
    cid = prt.new_id()
    p = prt("create", "--bundle", b, cid)
    assert p.returncode == 1
    assert message(prt, p).endswith(msg)
    if prt.name == "pyrunc":
        assert p.stderr == msg + "\n"
    assert not os.path.exists(os.path.join(prt.root, cid))


# --- HOME ---------------------------------------------------------------

@pytest.mark.parametrize("uid,env,home", [
    (0, [], "/root"),                 # root's passwd entry
    (1000, [], "/tmp"),               # app's entry (bundles.make_rootfs)
    (1234, [], "/"),                  # no entry: "/"
    (1000, ["HOME="], "/tmp"),        # empty counts as unset
    (1000, ["HOME=/given"], "/given"),  # the config's wins
])
def test_home_from_the_users_passwd_entry(prt, uid, env, home):
    out = sh(prt, 'echo "HOME=$HOME"', env=["PATH=/bin", *env], user={"uid": uid, "gid": uid})
    assert out == f"HOME={home}\n"


def test_home_set_for_exec_too(prt):
    b = prt.bundle(["sleep", "30"], env=["PATH=/bin"])
    cid = prt.new_id()
    prt("run", "-d", "--bundle", b, cid, check=True)
    p = prt("exec", "--user", "1000:1000", cid, "sh", "-c", 'echo "HOME=$HOME"')
    assert (p.returncode, p.stdout) == (0, "HOME=/tmp\n"), p.stderr
    p = prt("exec", cid, "sh", "-c", 'echo "HOME=$HOME"')
    assert (p.returncode, p.stdout) == (0, "HOME=/root\n"), p.stderr


def test_home_passwd_symlink_stays_in_the_container(prt, tmp_path):
    """/etc/passwd a symlink to a host path: the host's file (a canary with
    an entry for uid 1000) is never read; inside, the path does not exist."""
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "passwd").write_text("app:x:1000:1000::/home-from-the-host:/bin/sh\n")
    passwd = os.path.join(prt.rootfs, "etc", "passwd")
    os.unlink(passwd)
    os.symlink(str(canary / "passwd"), passwd)
    out = sh(prt, 'echo "HOME=$HOME"', env=["PATH=/bin"], user={"uid": 1000, "gid": 1000})
    assert out == "HOME=/\n"


# --- stdio and terminal -------------------------------------------------

@pytest.mark.parametrize("uid,gid", [(0, 0), (1000, 100)])
def test_pty_belongs_to_the_process_user(prt, uid, gid):
    """tty.bats "tty owner": uid of the process user, group tty (devpts gid=5)."""
    b = prt.bundle(["sh", "-c", "stat -c %u:%g $(tty)"], terminal=True, user={"uid": uid, "gid": gid})
    code, out = run_in_pty([prt.binary, "--root", prt.root, "run", "--bundle", b, prt.new_id()], timeout=20)
    assert code == 0, out
    assert out.decode().split() == [f"{uid}:5"]


def test_exec_pty_belongs_to_the_process_user(prt):
    b = prt.bundle(["sleep", "30"], user={"uid": 1000, "gid": 100})
    cid = prt.new_id()
    prt("run", "-d", "--bundle", b, cid, check=True)
    code, out = run_in_pty([prt.binary, "--root", prt.root, "exec", "-t", cid, "sh", "-c", "stat -c %u:%g $(tty)"],
                           timeout=20)
    assert code == 0, out
    assert out.decode().split() == ["1000:5"]


def test_stdio_reopenable_by_the_process_user(prt):
    """stdout is a file of root's (mode 0600): the user can reopen it
    through /dev/stdout, because it was given to the user."""
    out = sh(prt, "echo through-reopen >> /dev/stdout", user={"uid": 1000, "gid": 1000})
    assert out == "through-reopen\n"


# --- cwd ----------------------------------------------------------------

def test_missing_cwd_is_created_under_a_readonly_root(prt):
    out = sh(prt, "pwd; stat -c '%a %u' /made/by/runtime /made", cwd="/made/by/runtime")
    assert out.split("\n")[:3] == ["/made/by/runtime", "755 0", "755 0"]
    assert os.path.isdir(os.path.join(prt.rootfs, "made", "by", "runtime"))


def test_cwd_only_root_can_enter_works_for_another_user(prt):
    """cwd.bats: runc enters the cwd before it drops privileges (and again
    after, only where that failed)."""
    os.mkdir(os.path.join(prt.rootfs, "rootonly"), 0o700)
    p = run(prt, ["sh", "-c", "pwd; ls ."], cwd="/rootonly", user={"uid": 1000, "gid": 1000})
    assert p.stdout == "/rootonly\n"
    assert "Permission denied" in p.stderr  # the user still cannot read it


def test_exec_as_root_without_dac_caps_into_a_private_cwd(prt):
    """cwd.bats "runc exec --user with no access to cwd": the cwd belongs to
    uid 42, mode 0700; root without CAP_DAC_OVERRIDE gets in all the same."""
    home = os.path.join(prt.rootfs, "home42")
    os.mkdir(home, 0o700)
    os.chown(home, 42, 42)
    b = prt.bundle(["sleep", "30"], cwd="/home42", user={"uid": 42, "gid": 42})
    cid = prt.new_id()
    prt("run", "-d", "--bundle", b, cid, check=True)
    p = prt("exec", "--user", "0", cid, "pwd")
    assert (p.returncode, p.stdout) == (0, "/home42\n"), p.stderr


# --- network ------------------------------------------------------------

def test_loopback_up_in_a_new_network_namespace(prt):
    def m(c):
        for k in ("bounding", "effective", "permitted"):
            c["process"]["capabilities"][k].append("CAP_NET_RAW")  # ping's raw socket
    out = sh(prt, "cat /sys/class/net/lo/flags; ping -c 1 -W 2 127.0.0.1 >/dev/null && echo ping-ok", mutate=m)
    flags, ping = out.split()
    assert int(flags, 16) & 0x1, "IFF_UP"
    assert ping == "ping-ok"


# --- LISTEN_FDS -----------------------------------------------------------

def test_socket_activation_fds_and_listen_pid(prt, tmp_path):
    """Fds from systemd's socket activation (LISTEN_FDS, LISTEN_PID = the
    runtime's pid) reach init from fd 3 on, before the --preserve-fds ones,
    and init's environment says LISTEN_FDS=N, LISTEN_PID=1."""
    (tmp_path / "a").write_text("from-fd-3")
    (tmp_path / "b").write_text("from-fd-4")
    b = prt.bundle(["sh", "-c", "env | grep ^LISTEN_ | sort; cat <&3; echo; cat <&4"], env=["PATH=/bin"])
    cid = prt.new_id()
    # exec keeps the shell's pid, which LISTEN_PID names
    cmd = (f'exec 3<{tmp_path}/a 4<{tmp_path}/b; export LISTEN_FDS=1 LISTEN_PID=$$; '
           f'exec {prt.binary} --root {prt.root} run --preserve-fds 1 --bundle {b} {cid}')
    p = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split("\n") == ["LISTEN_FDS=1", "LISTEN_PID=1", "from-fd-3", "from-fd-4"]


def test_listen_fds_for_another_process_are_ignored(prt, tmp_path):
    b = prt.bundle(["sh", "-c", "env | grep ^LISTEN_ ; ls /proc/self/fd | wc -l"], env=["PATH=/bin"])
    cid = prt.new_id()
    p = subprocess.run([prt.binary, "--root", prt.root, "run", "--bundle", b, cid], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=60,
                       env=dict(os.environ, LISTEN_FDS="1", LISTEN_PID="1"))
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["4"]  # stdio and ls's own directory fd


# --- seccomp notify -----------------------------------------------------

class _Notif(ctypes.Structure):
    _fields_ = [("id", ctypes.c_uint64), ("pid", ctypes.c_uint32), ("flags", ctypes.c_uint32),
                ("nr", ctypes.c_int32), ("arch", ctypes.c_uint32), ("ip", ctypes.c_uint64),
                ("args", ctypes.c_uint64 * 6)]


class _Resp(ctypes.Structure):
    _fields_ = [("id", ctypes.c_uint64), ("val", ctypes.c_int64), ("error", ctypes.c_int32),
                ("flags", ctypes.c_uint32)]


def _iowr(nr, size):
    return (3 << 30) | (size << 16) | (ord("!") << 8) | nr


_NOTIF_RECV, _NOTIF_SEND = _iowr(0, ctypes.sizeof(_Notif)), _iowr(1, ctypes.sizeof(_Resp))


class Agent:
    """A seccomp agent that takes the listener fd exactly as runc's
    contrib/cmd/seccompagent does (one recvmsg of at most 4096 bytes with
    room for one fd, a specs.ContainerProcessState naming "seccompFd") and
    answers every notified syscall with ENOMEDIUM, as that agent does for
    chmod."""

    def __init__(self, path):
        self.path = path
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(path)
        self.srv.listen(4)
        self.states: list[dict] = []
        self.errors: list[str] = []
        self.stop_r, self.stop_w = os.pipe()
        self.t = threading.Thread(target=self.loop, daemon=True)
        self.t.start()

    def loop(self):
        listeners = []
        try:
            while True:
                r, _, _ = select.select([self.srv, self.stop_r, *listeners], [], [])
                if self.stop_r in r:
                    return
                if self.srv in r:
                    conn, _ = self.srv.accept()
                    with conn:
                        msg, anc, _, _ = conn.recvmsg(4096, socket.CMSG_SPACE(4))
                    fds = [int.from_bytes(d[:4], "little", signed=True) for lvl, kind, d in anc
                           if lvl == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS]
                    if len(msg) >= 4096 or len(fds) != 1:
                        self.errors.append(f"message of {len(msg)} bytes with {len(fds)} fds")
                        continue
                    state = json.loads(msg)
                    self.states.append(state)
                    if state.get("fds") != ["seccompFd"]:
                        self.errors.append(f"fds {state.get('fds')}")
                    listeners.append(fds[0])
                for fd in [f for f in listeners if f in r]:
                    req = _Notif()
                    try:
                        fcntl.ioctl(fd, _NOTIF_RECV, req)
                    except OSError:  # the filter's last user is gone
                        listeners.remove(fd)
                        os.close(fd)
                        continue
                    try:
                        fcntl.ioctl(fd, _NOTIF_SEND, _Resp(id=req.id, val=-1, error=-123, flags=0))  # ENOMEDIUM
                    except OSError:
                        pass  # the task is gone
        finally:
            for fd in listeners:
                os.close(fd)

    def close(self):
        os.write(self.stop_w, b"x")
        self.t.join(10)
        self.srv.close()
        os.close(self.stop_r)
        os.close(self.stop_w)


def _notify_chmod(c, path, nnp):
    c["process"]["noNewPrivileges"] = nnp
    c["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW", "listenerPath": path, "listenerMetadata": "bar",
        "architectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["chmod", "fchmod", "fchmodat"], "action": "SCMP_ACT_NOTIFY"}]}


@pytest.mark.parametrize("nnp", [False, True])
def test_seccomp_agent_gets_the_listener_and_answers(prt, open_tmp, nnp):
    """seccomp-notify.bats "error chmod", for run and exec."""
    path = str(open_tmp / "agent.sock")
    agent = Agent(path)
    try:
        script = "touch /dev/shm/foo && chmod 777 /dev/shm/foo"
        p = run(prt, ["sh", "-c", script], mutate=lambda c: _notify_chmod(c, path, nnp))
        assert p.returncode != 0
        assert "chmod: /dev/shm/foo: No medium found" in p.stderr
        b = prt.bundle(["sleep", "30"], mutate=lambda c: _notify_chmod(c, path, nnp))
        cid = prt.new_id()
        prt("run", "-d", "--bundle", b, cid, check=True)
        p = prt("exec", cid, "sh", "-c", script)
        assert p.returncode != 0 and "No medium found" in p.stderr, p.stderr
        assert not agent.errors
        assert len(agent.states) == 3  # run, then the detached init and the exec
        assert {s["metadata"] for s in agent.states} == {"bar"}
        assert agent.states[1]["state"]["id"] == cid
    finally:
        agent.close()


def test_seccomp_agent_missing_is_reported_as_runc_does(prt, tmp_path):
    """seccomp-notify.bats "no seccompagent"."""
    path = str(tmp_path / "nobody-listens.sock")
    p = run(prt, ["true"], mutate=lambda c: _notify_chmod(c, path, False))
    assert p.returncode == 1
    assert "failed to connect with seccomp agent" in message(prt, p)
    assert path in message(prt, p)


# --- user namespaces ------------------------------------------------------

def userns(c, host_id=100000):
    c["linux"]["namespaces"].append({"type": "user"})
    c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": host_id, "size": 65534}]
    c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": host_id, "size": 65534}]
    # sysfs and cgroupfs need a namespace this user namespace owns
    c["mounts"] = [m for m in c["mounts"] if m["destination"] not in ("/sys", "/sys/fs/cgroup")]


def test_userns_bind_sources_out_of_the_mapped_roots_reach(prt, open_tmp):
    """userns.bats "2 inaccessible mounts" (+ exec): the sources sit under
    0700 directories of the host's root, which container root (host uid
    100000) cannot traverse; the runtime opens them for it."""
    mounts = []
    for n in (1, 2):
        d = open_tmp / f"inaccessible-{n}" / "dir"
        d.mkdir(parents=True)
        (d / "foo.txt").write_text(f"mount {n}")
        os.chmod(open_tmp / f"inaccessible-{n}", 0o700)
        mounts.append({"source": str(d), "destination": f"/tmp/mount-{n}", "options": ["bind"]})

    def m(c):
        userns(c)
        c["mounts"] += mounts
    out = sh(prt, "cat /tmp/mount-1/foo.txt /tmp/mount-2/foo.txt", mutate=m)
    assert out == "mount 1mount 2"
    b = prt.bundle(["sleep", "30"], mutate=m)
    cid = prt.new_id()
    prt("run", "-d", "--bundle", b, cid, check=True)
    p = prt("exec", cid, "cat", "/tmp/mount-1/foo.txt", "/tmp/mount-2/foo.txt")
    assert (p.returncode, p.stdout) == (0, "mount 1mount 2"), p.stderr


# --- mount destinations ---------------------------------------------------

def test_mount_on_dangling_symlinks_resolves_in_the_rootfs(prt, tmp_path):
    """The destinations are dangling symlinks, relative (with "..") and
    climbing above the top: their targets are made inside the rootfs."""
    top = os.path.join(prt.rootfs, "a")
    os.makedirs(os.path.join(top, "b"))
    os.symlink("../c/d", os.path.join(top, "b", "rel"))
    os.symlink("../f", os.path.join(top, "b", "relparent"))
    escape = f"wl-{uuid.uuid4().hex[:8]}"
    os.symlink("../../../../../../" + escape, os.path.join(top, "b", "up"))
    (tmp_path / "file").write_text("bound")

    def m(c):
        c["mounts"] += [
            {"destination": "/a/b/rel", "type": "tmpfs", "source": "tmpfs"},
            {"destination": "/a/b/relparent/g", "type": "tmpfs", "source": "tmpfs"},
            {"destination": "/a/b/up/h", "type": "bind", "source": str(tmp_path / "file"), "options": ["bind"]}]
    out = sh(prt, f"cut -d' ' -f2 /proc/mounts | grep -E '^/(a|{escape})'; cat /a/b/up/h", mutate=m)
    assert out.split() == ["/a/c/d", "/a/f/g", f"/{escape}/h", "bound"]
    assert not os.path.lexists("/" + escape)


# --- read-only /dev ------------------------------------------------------

def test_readonly_dev_with_pts_under_it(prt):
    """mounts.bats "ro /dev mount": devices, /dev/pts and the rest are made
    on it first, then it is read-only."""
    def m(c):
        next(x for x in c["mounts"] if x["destination"] == "/dev")["options"].append("ro")
    out = sh(prt, "grep -E '^(tmpfs /dev |devpts /dev/pts )' /proc/mounts | cut -d' ' -f2,4 | cut -d, -f1; "
                  "echo > /dev/null && ls /dev/pts/ptmx; touch /dev/x 2>&1 || true", mutate=m)
    assert out.split("\n")[:3] == ["/dev ro", "/dev/pts rw", "/dev/pts/ptmx"]
    assert "Read-only file system" in out


def test_readonly_dev_of_another_type_than_tmpfs(prt):
    """The rule is /dev's, whatever its filesystem: a read-only ramfs there
    still gets the devices and /dev/pts before it becomes read-only."""
    def m(c):
        dev = next(x for x in c["mounts"] if x["destination"] == "/dev")
        dev.update(type="ramfs", source="ramfs", options=["nosuid", "ro"])
    out = sh(prt, "grep -E '^ramfs /dev ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1; "
                  "echo > /dev/null && ls /dev/pts/ptmx", mutate=m)
    assert out.split("\n")[:2] == ["ro", "/dev/pts/ptmx"]


# --- tmpcopyup -----------------------------------------------------------

def _copyup_image(rootfs: str, canary: str) -> None:
    cu = os.path.join(rootfs, "var", "cache", "app")
    os.makedirs(os.path.join(cu, "sub"))
    os.chmod(cu, 0o750)
    with open(os.path.join(cu, "data"), "w") as f:
        f.write("image content")
    os.chown(os.path.join(cu, "data"), 1000, 100)
    os.chmod(os.path.join(cu, "data"), 0o604)
    with open(os.path.join(cu, "sub", "tool"), "w") as f:
        f.write("#!/bin/sh\n")
    os.chmod(os.path.join(cu, "sub", "tool"), 0o4755)
    os.symlink(canary, os.path.join(cu, "sub", "to-host"))  # copied as a link, never followed


def test_tmpcopyup_fills_the_tmpfs_with_the_image_content(prt, tmp_path):
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "secret").write_text("host file")
    _copyup_image(prt.rootfs, str(canary))

    def m(c):
        c["mounts"].append({"destination": "/var/cache/app", "type": "tmpfs", "source": "tmpfs",
                            "options": ["tmpcopyup", "nosuid", "ro"]})
    out = sh(prt, "cd /var/cache/app && grep ' /var/cache/app ' /proc/mounts | cut -d' ' -f3,4 | cut -d, -f1; "
                  "stat -c '%n %a %u:%g' . data sub sub/tool; cat data; echo; readlink sub/to-host; "
                  "ls sub/to-host/ 2>&1; touch new 2>&1 || true", mutate=m)
    lines = out.split("\n")
    assert lines[:7] == ["tmpfs ro", ". 750 0:0", "data 604 1000:100", "sub 755 0:0", "sub/tool 4755 0:0",
                         "image content", str(canary)]
    assert "secret" not in out
    assert "Read-only file system" in lines[8]
    # the image itself is as it was
    assert sorted(os.listdir(os.path.join(prt.rootfs, "var", "cache", "app"))) == ["data", "sub"]


def test_tmpcopyup_on_a_symlink_stays_in_the_rootfs(prt, tmp_path):
    """The destination is an absolute symlink to a host directory (a
    canary): resolved inside the rootfs, where it dangles, so an empty
    directory is made there and nothing of the host is copied."""
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "secret").write_text("host file")
    os.symlink(str(canary), os.path.join(prt.rootfs, "cache"))

    def m(c):
        c["mounts"].append({"destination": "/cache", "type": "tmpfs", "source": "tmpfs",
                            "options": ["tmpcopyup"]})
    out = sh(prt, f"ls -A {canary}; grep -c ' {canary} tmpfs' /proc/mounts", mutate=m)
    assert out.split() == ["1"]
    assert os.listdir(canary) == ["secret"]
    assert os.path.isdir(os.path.join(prt.rootfs, str(canary).lstrip("/")))


def test_tmpcopyup_copies_fifos_and_xattrs(rt, open_tmp, busybox_rootfs):
    """pyrunc only: runc 1.1.5 fails on a fifo (it lchowns a file it never
    made) and copies no extended attributes."""
    rootfs = open_tmp / "rootfs"
    shutil.copytree(busybox_rootfs, rootfs, symlinks=True)
    cu = rootfs / "state"
    cu.mkdir()
    os.mkfifo(cu / "pipe")
    os.chmod(cu / "pipe", 0o620)
    (cu / "tagged").write_text("x")
    try:
        os.setxattr(cu / "tagged", "user.origin", b"image")
    except OSError:
        pytest.skip("no user xattrs on the test filesystem")
    b = rt.bundle(["sleep", "30"], rootfs=str(rootfs), mutate=lambda c: c["mounts"].append(
        {"destination": "/state", "type": "tmpfs", "source": "tmpfs", "options": ["tmpcopyup"]}))
    cid = rt.new_id()
    rt("run", "-d", "--bundle", b, cid, check=True)
    inside = f"/proc/{rt.state(cid)['pid']}/root/state"
    st = os.lstat(f"{inside}/pipe")
    assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o620
    assert os.getxattr(f"{inside}/tagged", "user.origin") == b"image"
    assert os.statvfs(inside).f_fsid != os.statvfs(cu).f_fsid  # the tmpfs, not the image


# --- hooks --------------------------------------------------------------

def test_create_container_hook_bind_mount_with_relative_paths(prt, tmp_path):
    """hooks.bats: a createContainer hook runs in the rootfs and bind-mounts
    onto ./lib/..., which the container then sees."""
    (tmp_path / "libhook.so").write_text("from-the-hook")
    os.makedirs(os.path.join(prt.rootfs, "lib"), exist_ok=True)
    hook = f"touch ./lib/libhook.so && mount --bind {tmp_path}/libhook.so ./lib/libhook.so"

    def m(c):
        c["hooks"] = {"createContainer": [{"path": "/bin/sh", "args": ["/bin/sh", "-c", hook]}]}
    out = sh(prt, "cat /lib/libhook.so", mutate=m)
    assert out == "from-the-hook"
