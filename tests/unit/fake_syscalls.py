"""A recording stand-in for runtime.syscalls, so that unit tests can check,
without root and without touching the host, in which order init and
rootfs make the calls that change a process or the mounts.

FakeSyscalls.install() replaces, as module attributes (which is how every
caller reaches them: `sc.mount(...)`, `os.execve(...)`):

* every function of runtime.syscalls that changes something (RECORDED):
  each call is appended to `calls` and does nothing. prctl returns 1 for
  PR_CAPBSET_READ (the capability is there) and 0 otherwise; clone3,
  pidfd_open and open_tree raise ENOSYS (a fake makes no process or fd).
  The read-only ones (PASSED: openat2, faccessat2, statfs_type, capget)
  run for real; openat2 is how rootfs resolves destinations inside the
  rootfs, so that part of its work is real, on a temporary directory;
* the calls of runtime.toolkit.os_lite that change the process's
  identity or root, or replace it (OS_RECORDED: execve, chroot,
  setresuid, setresgid, setgroups, fchown, setsid);
* runtime.seccomp.load (the profile is still compiled, which validates
  it): a filter loaded into the test process would stay.

Each record is a dict: "name", "args", "kw", and "where", the path an
fd-based target names (mount on /proc/self/fd/N, the fd of move_mount or
mount_setattr) relative to `root` when it lies inside it (so "/dev/pts",
not the temporary directory).

What it covers (tests/unit/test_init_order.py): init.init() run whole
in a child interpreter (run_init) on a temporary rootfs with a
Context whose channel is fake: the order of rootfs.prepare_root's
mounts, every config mount, the device nodes (bind mounts, as in a user
namespace), pivot_root and the old root's detach (or --no-pivot's
unmounts and MS_MOVE), the read-only and masked paths, the hostname, the
capability and identity calls of setup_process, no_new_privs and the
seccomp load, the READY message and the execve of pyrunc-exec; and, in
the test process (install(monkeypatch.setattr)), rootfs.mount_all's calls
for single entries and their destinations resolved inside the rootfs.
What it does not cover: what the kernel would refuse (every recorded
call succeeds), stage1 (no namespace is made), anything after the
execve, and what init does through files or ioctls rather than
runtime.syscalls, which a config run under it must leave out as it would
reach the host: linux.sysctl, a network namespace (the loopback is
brought up by ioctl), process.oomScoreAdj, a terminal. After the fake
pivot_root the child still sees the host's "/", so the paths init
touches from then on (masked paths, process.cwd, the executable's lookup)
are stat()ed on the host: tests pass paths that exist there and a cwd of
"/", and nothing is written outside the temporary rootfs.
"""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

RECORDED = ("mount", "umount2", "pivot_root", "unshare", "setns", "sethostname", "setdomainname", "prctl",
            "capset", "close_range_cloexec", "personality", "ioprio_set", "sched_setattr",
            "keyctl_join_session_keyring", "clone3", "pidfd_open", "malloc_trim", "open_tree",
            "mount_setattr", "move_mount")
PASSED = ("openat2", "faccessat2", "statfs_type", "capget")
OS_RECORDED = ("execve", "chroot", "setresuid", "setresgid", "setgroups", "fchown", "setsid")


class FakeSyscalls:
    """The recorder; `calls` in call order. `root`: the directory fd-based
    targets are shown relative to (the rootfs under test)."""

    def __init__(self, root: str | None = None):
        self.root = os.path.realpath(root) if root else None
        self.calls: list[dict] = []
        self.on_execve = None  # callable(record) run by the fake execve (run_init: report, then exit)

    def install(self, setattr=setattr) -> "FakeSyscalls":
        """Put the recorders in place; pass pytest's monkeypatch.setattr to
        have them undone after the test."""
        from runtime import seccomp, syscalls
        from runtime.toolkit import os_lite as _os
        for name in RECORDED:
            setattr(syscalls, name, self._recorder(name))
        setattr(_os, "execve", self._execve)
        for name in OS_RECORDED:
            if name != "execve":
                setattr(_os, name, self._recorder(name))
        setattr(seccomp, "load", self._recorder("seccomp_load"))
        return self

    def _recorder(self, name: str):
        def fake(*args, **kw):
            rec = {"name": name, "args": [_plain(a) for a in args], "kw": {k: _plain(v) for k, v in kw.items()},
                   "where": self._where(name, args)}
            self.calls.append(rec)
            if name in ("clone3", "pidfd_open", "open_tree"):
                raise OSError(38, f"{name}: not in the fake (FakeSyscalls)")
            if name == "prctl":
                from runtime import syscalls
                return 1 if args[0] == syscalls.PR_CAPBSET_READ else 0
            return None
        return fake

    def _execve(self, path, argv, env):
        rec = {"name": "execve", "args": [_plain(path), list(argv)], "kw": {"env": dict(env)}, "where": None}
        self.calls.append(rec)
        if self.on_execve is not None:
            self.on_execve(rec)

    def _where(self, name: str, args: tuple) -> str | None:
        """The path a call's target fd or /proc/self/fd path names, relative
        to self.root when inside it."""
        target = None
        if name == "mount" and len(args) > 1 and isinstance(args[1], str) and args[1].startswith("/proc/self/fd/"):
            target = args[1]
        elif name == "move_mount" and len(args) > 2:
            target = f"/proc/self/fd/{args[2]}"
        elif name == "mount_setattr" and args:
            target = f"/proc/self/fd/{args[0]}"
        if target is None:
            return None
        try:
            path = os.readlink(target)
        except OSError:
            return None
        if self.root and (path == self.root or path.startswith(self.root + "/")):
            return "/" + os.path.relpath(path, self.root).lstrip(".")
        return path

    # -- reading the record

    def names(self) -> list[str]:
        return [c["name"] for c in self.calls]

    def index(self, pred, what: str = "a call") -> int:
        """Index of the first call for which pred(record) holds."""
        for i, c in enumerate(self.calls):
            if pred(c):
                return i
        raise AssertionError(f"no {what} among {self.names()}")


def _plain(v):
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v if isinstance(v, (str, int, float, bool, type(None))) else repr(v)


class FakeChannel:
    """init's side of the sync channel: every expect() is answered at once
    (PRESTART_DONE with a pid), sends are recorded in the calls, and
    fileno() is a pipe whose other end the caller reads (READY is written
    to it with os.write)."""

    def __init__(self, fake: FakeSyscalls):
        self.fake = fake
        self.r, self.w = os.pipe()

    def expect(self, kind: str, **_):
        self.fake.calls.append({"name": "chan.expect", "args": [kind], "kw": {}, "where": None})
        return {"type": kind, "pid": 4242}

    def send(self, kind: str, **kw):
        self.fake.calls.append({"name": "chan.send", "args": [kind], "kw": {k: _plain(v) for k, v in kw.items()},
                                "where": None})
        if kind == "error" and self.fake.on_execve is not None:
            self.fake.on_execve(None)  # init failed: report what was recorded

    def fileno(self) -> int:
        return self.w

    def close(self) -> None:
        self.fake.calls.append({"name": "chan.close", "args": [], "kw": {}, "where": None})


def run_init(config: dict, rootfs: str, out: str, no_pivot: bool = False) -> None:
    """In a child interpreter: run init.init() on `config` and `rootfs`
    under the fakes; write the calls (and READY, if it was sent) to the
    file `out` as JSON when init execs or reports an error. Never returns."""
    sys.path.insert(0, REPO)
    from runtime import init
    fake = FakeSyscalls(rootfs).install()
    chan = FakeChannel(fake)
    null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)

    def report(_rec):
        os.set_blocking(chan.r, False)
        try:
            ready = os.read(chan.r, 4096).decode()
        except BlockingIOError:
            ready = ""
        with open(out, "w") as f:
            json.dump({"calls": fake.calls, "ready": ready}, f)
        os._exit(0)
    fake.on_execve = report
    ctx = init.Context(cid="fake", config=config, bundle=os.path.dirname(rootfs), rootfs=rootfs, chan=chan,
                       start_fd=null, helper_fd=null, no_pivot=no_pivot,
                       cgroup_mount=lambda rootfd, dest, target, flags, label: fake.calls.append(
                           {"name": "cgroup_mount", "args": [dest, flags, label], "kw": {},
                            "where": fake._where("mount", (None, target))}))
    init.init(ctx)
    os._exit(3)  # (init never returns)


def init_calls(config: dict, rootfs: str, tmp: str, no_pivot: bool = False) -> dict:
    """run_init in a fresh interpreter (its stdio: pipes of this process);
    returns {"calls": [...], "ready": what init wrote to its channel}."""
    out = os.path.join(tmp, "calls.json")
    prog = (f"import sys; sys.path.insert(0, {HERE!r}); import json, fake_syscalls\n"
            f"fake_syscalls.run_init(json.loads(sys.stdin.read()), {rootfs!r}, {out!r}, {no_pivot!r})")
    p = subprocess.run([sys.executable, "-I", "-S", "-c", prog], input=json.dumps(config), capture_output=True,
                       text=True, timeout=60)
    if not os.path.exists(out):
        raise AssertionError(f"init under the fake wrote no record (exit {p.returncode}): {p.stderr}")
    with open(out) as f:
        return json.load(f)
