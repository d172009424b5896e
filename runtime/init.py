"""The code that runs in the new process, from fork to execve.

Two stages, both forked from the `create` process (no re-exec):

stage1  still in the host's pid namespace. Joins or creates the user
        namespace (the parent writes its id maps), joins/creates the other
        namespaces, then forks init so that init is pid 1 of the new pid
        namespace, reports init's host pid and exits.
init    prepares the rootfs and process, says READY and execs pyrunc-exec
        (exechelper.c) from a sealed memfd: that waits on the start socket
        until `start`, runs the startContainer hooks and execs the user
        process. From READY on, no Python is left in the container.

Usually there is one: `create` clones the child straight into the new pid
namespace (container.clone_init), and after stage1's steps it goes on as
init itself (Context.direct). The second fork is only needed where stage1
must act in the host's pid namespace first: a user namespace, a time
namespace, network devices to move in.

A pid namespace joined by path already holds other processes, which would
see a Python init while it sets up (exechelper.c says why that must not
happen). There stage1 never joins it: it goes on as init in the host's pid
namespace ("outside", Context.outside), and what must happen inside that
namespace pyrunc-exec does there: the proc mounts, the createContainer
hooks, and at the end init itself, forked into it, whose pid then
replaces stage1's in the parent's state (a second INIT_PID after READY).

Any exception is sent to the parent as an ERROR message naming what failed;
after READY, errors go to `start` through the start socket instead.
"""
import _signal as signal  # the C module: `signal` imports enum
import errno
from runtime.toolkit import os_lite as os
import sys

from runtime import exechelper, rootfs, sync
from runtime.toolkit import fastjson as json
from runtime import syscalls as sc


class Context:
    """Everything init needs, prepared by the parent before fork (the child
    builds the Context from it: container._stage1). The order of the
    messages exchanged with the parent is runtime/sync.py's table.
    All fds are close-on-exec and numbered above the preserved-fd range."""

    def __init__(self, **kw):
        self.cid: str = kw["cid"]
        self.config: dict = kw["config"]
        self.bundle: str = kw["bundle"]
        self.rootfs: str = kw["rootfs"]
        self.chan: sync.Channel = kw["chan"]
        self.start_fd: int = kw["start_fd"]
        # the sealed pyrunc-exec memfd (exechelper.sealed_fd), made by the parent
        self.helper_fd: int = kw["helper_fd"]
        self.console_fd: int | None = kw.get("console_fd")
        self.preserve_fds: int = kw.get("preserve_fds", 0)
        # the first listen_fds of them come from socket activation
        self.listen_fds: int = kw.get("listen_fds", 0)
        self.no_pivot: bool = kw.get("no_pivot", False)
        self.no_new_keyring: bool = kw.get("no_new_keyring", False)
        self.cgroup_mount = kw["cgroup_mount"]    # callable(rootfd, dest, target, flags, label)
        self.idmap_fds: dict[int, int] = kw.get("idmap_fds") or {}
        # mount index -> O_PATH fd of a bind mount's source, opened by the
        # parent in our mount namespace (user namespaces: the sources may be
        # out of the mapped root's reach); stage1 receives them
        self.source_fds: dict[int, int] = {}
        self.want_sources: bool = kw.get("want_sources", False)
        # callable() that moves stage1 into the container's cgroup (set by
        # the parent in the child, once it knows how the child was forked)
        self.join_cgroup = kw.get("join_cgroup")
        self.host_pid = 0
        # direct: this process was cloned into its pid namespace already
        # (container.clone_init) and becomes init itself, without a fork.
        self.direct: bool = kw.get("direct", False)
        # outside: the pid namespace is joined by path; this process stays
        # out of it and pidns_fd is that namespace (see the module docstring)
        self.outside: bool = False
        self.pidns_fd: int = -1
        self.exec_args: list[str] = []
        self.exec_env: list[str] = []


def _namespaces(cfg: dict) -> list[dict]:
    return (cfg.get("linux") or {}).get("namespaces") or []


def stage1(ctx: Context) -> None:
    """Runs in the first child; never returns."""
    code = 1
    try:
        nss = _namespaces(ctx.config)
        if not any(n["type"] == "user" for n in nss):
            # Non-dumpable from here to execve: processes in the container
            # cannot open our /proc/PID/{exe,fd,mem} (the host interpreter).
            # In a user namespace that is moot (container root is not host
            # root, so host files stay out of its reach) and would lock us
            # out of our own /proc files and id maps.
            sc.prctl(sc.PR_SET_DUMPABLE, 0)
        user = next((n for n in nss if n["type"] == "user"), None)
        # Without a user namespace, the new namespaces that do not depend on
        # the cgroup are made while the parent is still applying the
        # cgroup's limits (it sends GO when done). A cgroup namespace is
        # rooted where we stand, so it waits for the join.
        early = 0
        if user is None:
            for n in nss:
                if not n.get("path") and n["type"] != "cgroup" and not (ctx.direct and n["type"] == "pid"):
                    early |= sc.NAMESPACE_FLAGS[n["type"]]
            if early:
                sc.unshare(early)
        ctx.chan.expect(sync.GO)
        # Into the container's cgroup before a cgroup namespace exists and
        # before init is forked (it inherits the cgroup).
        if ctx.join_cgroup is not None:
            ctx.join_cgroup()
        # The user namespace comes first: every namespace created after it is
        # owned by it, and joining others may need its capabilities.
        if user is not None:
            if user.get("path"):
                _join(user)
            else:
                sc.unshare(sc.CLONE_NEWUSER)
                ctx.chan.send(sync.USERNS_CREATED)
                ctx.chan.expect(sync.USERNS_MAPPED)
            # Become root of the namespace (the maps now exist).
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        flags = 0
        for n in nss:
            if n["type"] == "user" or (ctx.direct and n["type"] == "pid"):
                continue
            if n["type"] == "pid" and n.get("path"):
                ctx.outside = True
                ctx.pidns_fd = _open_ns(n)
            elif n.get("path"):
                _join(n)
            else:
                flags |= sc.NAMESPACE_FLAGS[n["type"]]
        if flags & ~early:
            sc.unshare(flags & ~early)
        if ctx.want_sources:
            _receive_mount_sources(ctx)
        offsets = (ctx.config.get("linux") or {}).get("timeOffsets")
        if offsets and flags & sc.CLONE_NEWTIME:
            _write_time_offsets(offsets)
        if ctx.direct:
            init(ctx)  # never returns
        if ctx.outside:
            ctx.chan.send(sync.INIT_PID, pid=os.getpid())
            init(ctx)  # never returns
        pid = os.fork()
        if pid == 0:
            init(ctx)  # never returns
        ctx.chan.send(sync.INIT_PID, pid=pid)
        code = 0
    except BaseException as e:  # noqa: BLE001 - everything must reach the parent
        _report(ctx, e)
    finally:
        os._exit(code)


def _receive_mount_sources(ctx: Context) -> None:
    """Have the parent open the bind mounts' sources in our new mount
    namespace with its own (the host's) credentials, as runc does for a
    user namespace: the mapped root may not be able to reach them. The fds
    are kept above the preserved range for init (mount_all)."""
    import fcntl
    low = 3 + ctx.preserve_fds
    ctx.chan.send(sync.MOUNT_SOURCES)
    while True:
        msg = ctx.chan.next(keep_fds=True)
        if msg["type"] != sync.MOUNT_SOURCES:
            raise OSError(errno.EINVAL, f"sync: expected {sync.MOUNT_SOURCES!r}, got {msg['type']!r}")
        for i, fd in zip(msg["indexes"], msg["_fds"]):
            ctx.source_fds[i] = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, low)
            os.close(fd)
        if msg.get("last"):
            return


def _open_ns(ns: dict) -> int:
    path = ns["path"]
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise OSError(e.errno, f"linux.namespaces {ns['type']} path {path}: {e.strerror}") from None


def _join(ns: dict) -> None:
    fd = _open_ns(ns)
    try:
        sc.setns(fd, sc.NAMESPACE_FLAGS[ns["type"]], label=f"{ns['type']} namespace {ns['path']}")
    finally:
        os.close(fd)


def _write_time_offsets(offsets: dict) -> None:
    lines = []
    for clock in ("monotonic", "boottime"):
        o = offsets.get(clock)
        if o:
            lines.append(f"{clock} {o.get('secs', 0)} {o.get('nanosecs', 0)}\n")
    with open("/proc/self/timens_offsets", "w") as f:
        for line in lines:
            f.write(line)  # the kernel takes one clock per write


def _report(ctx: Context, e: BaseException) -> None:
    msg = describe(e)
    try:
        ctx.chan.send(sync.ERROR, msg=msg)
    except OSError:
        pass


def describe(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror and e.filename and e.strerror.startswith(str(e.filename)):
        return e.strerror
    if isinstance(e, OSError) and e.strerror:
        return f"{e.strerror}" + (f": {e.filename}" if e.filename and str(e.filename) not in e.strerror else "")
    return str(e) or type(e).__name__


def init(ctx: Context) -> None:
    """Container pid 1 until execve. The checklist, in order."""
    cfg = ctx.config
    linux = cfg.get("linux") or {}
    proc = cfg.get("process") or {}
    nstypes = {n["type"] for n in _namespaces(cfg)}
    ready = False
    ro_later: list = []
    try:
        # 1. Only stdio and the preserved fds reach the user process; default
        #    signal dispositions; our own session (needed for a pty).
        clean_process_state(ctx.preserve_fds)
        if ctx.listen_fds:
            proc["env"] = [*(proc.get("env") or ()), f"LISTEN_FDS={ctx.listen_fds}", "LISTEN_PID=1"]
        # 2. A network namespace made for the container has its loopback
        #    up, as with runc (one joined by path is left as it is).
        if any(n["type"] == "network" and not n.get("path") for n in _namespaces(cfg)):
            _loopback_up()
        # 3. Mount namespace: stop our mounts propagating back to the host.
        if "mount" in nstypes:
            rootfs.prepare_root(ctx.rootfs, linux.get("rootfsPropagation"), ctx.no_pivot)
            # (create dropped mountLabel already where SELinux is off)
            ro_later = rootfs.mount_all(ctx.rootfs, cfg.get("mounts") or [], ctx.bundle, ctx.cgroup_mount,
                                        ctx.idmap_fds, linux.get("mountLabel"), _proc_mounter(ctx),
                                        ctx.source_fds)
            for fd in ctx.source_fds.values():
                os.close(fd)
            rootfs.make_devices(ctx.rootfs, linux.get("devices") or [], "user" in nstypes)
            _ptmx_link(ctx.rootfs)
        # 3b. APPLIED: we are in the container's cgroup already (stage1
        #     joined it before forking us), and this says the parent is done
        #     with what it does for us meanwhile (network devices into our
        #     namespace, the state file). Hooks and sysctls need that; with
        #     neither, nothing before step 12 depends on it, and we wait
        #     there instead, after pivot_root and the rest of the rootfs.
        hooks = cfg.get("hooks") or {}
        wait_late = not (hooks.get("prestart") or hooks.get("createRuntime")
                         or hooks.get("createContainer") or linux.get("netDevices"))
        if not wait_late:
            ctx.chan.expect(sync.APPLIED)
            # 4. prestart/createRuntime hooks run in the runtime namespace (parent).
            #    (We send nothing before APPLIED: stage1's INIT_PID must reach
            #    the parent first, and shares our channel.)
            ctx.chan.send(sync.PRESTART)
            ctx.host_pid = ctx.chan.expect(sync.PRESTART_DONE)["pid"]
        # 5. createContainer hooks: container namespaces, before pivot_root.
        if hooks.get("createContainer") and ctx.outside:
            failed = exechelper.hooks_in_pidns(ctx.helper_fd, ctx.pidns_fd, "createContainer",
                                               json.dumps(_hook_state(ctx, "created")), hooks["createContainer"],
                                               ctx.rootfs)
            if failed:
                from runtime.hooks import HookFailed
                raise HookFailed(failed)
        elif hooks.get("createContainer"):
            from runtime.hooks import run_hooks
            run_hooks("createContainer", hooks["createContainer"], _hook_state(ctx, "created"), cwd=ctx.rootfs)
        # 6. Switch root.
        if "mount" in nstypes:
            if ctx.no_pivot:
                rootfs.move_root(ctx.rootfs)
            else:
                rootfs.pivot(ctx.rootfs)
            _make_cwd(proc)
            # 7. sysctls before /proc/sys becomes read-only.
            for key, val in (linux.get("sysctl") or {}).items():
                _sysctl(key, val)
            # 8. Read-only and masked paths.
            for p in linux.get("readonlyPaths") or ():
                rootfs.readonly_path(p)
            for p in linux.get("maskedPaths") or ():
                rootfs.mask_path(p)
            if linux.get("rootfsPropagation"):
                sc.mount(None, "/", None, rootfs.PROPAGATION[linux["rootfsPropagation"]], None,
                         label="/ (linux.rootfsPropagation)")
            if (cfg.get("root") or {}).get("readonly"):
                rootfs.remount_root_readonly()
        else:
            os.chroot(ctx.rootfs)
            os.chdir("/")
            _make_cwd(proc)
            for key, val in (linux.get("sysctl") or {}).items():
                _sysctl(key, val)
        # 9. Identity of the machine.
        if cfg.get("hostname") is not None and "uts" in nstypes:
            sc.sethostname(cfg["hostname"])
        if cfg.get("domainname") is not None and "uts" in nstypes:
            sc.setdomainname(cfg["domainname"])
        # 10. Terminal: a new pty whose master goes to the console socket.
        if proc.get("terminal"):
            # outside: init, forked later, takes it as its controlling terminal
            setup_terminal(ctx, proc, controlling=not ctx.outside)
        # 10b. What had to stay writable until now (devices, the console,
        #      copied-up content) becomes read-only as the config says.
        if ro_later:
            rootfs.remount_readonly(ro_later)
        # 11. Session keyring, so containers do not share the host's.
        if not ctx.no_new_keyring:
            try:
                sc.keyctl_join_session_keyring(None)
            except OSError as e:
                if e.errno != errno.ENOSYS:  # a kernel without keys
                    raise
        # 11b. In the container's cgroup before the process is set up (its
        #      seccomp profile may not allow reading the socket later).
        if wait_late:
            ctx.chan.expect(sync.APPLIED)
            ctx.chan.send(sync.PRESTART)  # step 4 without hooks: the parent's state
            ctx.host_pid = ctx.chan.expect(sync.PRESTART_DONE)["pid"]
        # 12. Process attributes that need privileges we are about to drop.
        #     outside: our children go into the joined pid namespace from
        #     here on (setns needs privileges too); we fork none ourselves.
        if ctx.outside:
            sc.setns(ctx.pidns_fd, sc.CLONE_NEWPID, label="pid namespace (linux.namespaces)")
        setup_process(ctx, proc, linux)
        # 13. The executable must exist now, so `create` reports it, not `start`.
        ctx.exec_args = list(proc["args"])
        ctx.exec_env = list(proc.get("env") or [])
        ctx.exec_args[0:1] = [lookup(proc["args"][0], ctx.exec_env)]
        # 14. Tell the parent we are ready.
        # write(2), not send(2): seccomp may already be on, and profiles allow write.
        argv = exechelper.start_argv(ctx.start_fd, proc.get("apparmorProfile"),
                                     json.dumps(_hook_state(ctx, "running")),
                                     hooks.get("startContainer") or [], ctx.exec_args[0], proc["args"],
                                     ctx.outside, ctx.chan.fileno(), bool(proc.get("terminal")))
        os.write(ctx.chan.fileno(), b'{"type": "ready"}')
        if ctx.outside:
            # pyrunc-exec reports the pid of the init it forks on the channel
            os.set_inheritable(ctx.chan.fileno(), True)
        else:
            ctx.chan.close()
        ready = True
        # 15. Hand over to pyrunc-exec, which waits for `start` on the start
        #     socket, runs the startContainer hooks (container namespaces,
        #     after start) and execs the user process (the connection is
        #     close-on-exec: that is how `start` learns exec succeeded).
        #     Python's pages go with this exec: a waiting container's pid 1
        #     exposes no host binary through /proc/1/exe.
        os.set_inheritable(ctx.start_fd, True)
        os.execve(ctx.helper_fd, argv, env_dict(ctx.exec_env))
    except BaseException as e:  # noqa: BLE001
        if not ready:
            _report(ctx, e)
        else:
            sys.stderr.write(f"pyrunc init: {describe(e)}\n")
        os._exit(1 if not isinstance(e, OSError) or e.errno not in (errno.ENOENT, errno.EACCES) else 127)


def clean_process_state(preserve_fds: int) -> None:
    """Mark every fd above stdio and the preserved range close-on-exec (the
    preserved ones inheritable), restore the signal dispositions Python
    changed, and start a new session. For init and for exec'd processes."""
    sc.close_range_cloexec(3 + preserve_fds)
    for fd in range(3, 3 + preserve_fds):
        try:
            os.set_inheritable(fd, True)
        except OSError:
            pass
    for s in (signal.SIGINT, signal.SIGPIPE, signal.SIGXFSZ, signal.SIGTERM, signal.SIGCHLD):
        signal.signal(s, signal.SIG_DFL)
    os.setsid()


def preload(cfg: dict, check_seccomp: bool = True) -> None:
    """Import what init will need later (see container._stage1). With
    check_seccomp, also compile linux.seccomp once, which validates it and
    loads libseccomp (create does that in the parent instead, so that a bad
    profile is a config error raised before any process exists)."""
    import resource  # noqa: F401
    from runtime import caps  # noqa: F401
    if (cfg.get("process") or {}).get("terminal"):
        import fcntl, struct, termios  # noqa: F401,E401
    if any(n.get("type") == "network" and not n.get("path") for n in _namespaces(cfg)):
        import fcntl  # noqa: F401,F811 - _loopback_up
    if cfg.get("hooks"):
        from runtime import hooks  # noqa: F401
        import subprocess, json  # noqa: F401,E401
    if (cfg.get("linux") or {}).get("seccomp"):
        import struct  # noqa: F401 - the -ENOSYS stub is assembled at load time
        from runtime import seccomp
        if check_seccomp:
            seccomp.compile((cfg.get("linux") or {})["seccomp"])


def _proc_mounter(ctx: Context):
    """How a proc filesystem is mounted: outside its pid namespace, by
    pyrunc-exec from within it (proc shows its mounter's pid namespace)."""
    if not ctx.outside:
        return None

    def mount_proc(source: str, target_fd: int, flags: int, data: str | None, label: str) -> None:
        exechelper.mount_in_pidns(ctx.helper_fd, ctx.pidns_fd, source, target_fd, "proc", flags, data, label)
    return mount_proc


def _ptmx_link(root: str) -> None:
    rootfd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        devfd = rootfs.resolve(rootfd, "/dev", create="dir")
    finally:
        os.close(rootfd)
    try:
        try:
            os.unlink("ptmx", dir_fd=devfd)
        except FileNotFoundError:
            pass
        os.symlink("pts/ptmx", "ptmx", dir_fd=devfd)
    finally:
        os.close(devfd)


def _loopback_up() -> None:
    """Set IFF_UP on "lo" (SIOCGIFFLAGS, SIOCSIFFLAGS on a datagram socket)."""
    import _socket
    import fcntl
    SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
    name = b"lo".ljust(16, b"\0")  # struct ifreq: ifr_name[16], then a 24-byte union
    s = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM | _socket.SOCK_CLOEXEC, 0)
    try:
        req = fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, name + bytes(24))
        flags = int.from_bytes(req[16:18], sys.byteorder) | IFF_UP
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, name + flags.to_bytes(2, sys.byteorder) + bytes(22))
    except OSError as e:
        raise OSError(e.errno, f"linux.namespaces network: setting up lo: {e.strerror}") from None
    finally:
        s.close()


def _make_cwd(proc: dict) -> None:
    """Create process.cwd (and its parents, 0755) when the image lacks it,
    as runc does once inside the new root, before anything is made
    read-only."""
    cwd = proc.get("cwd") or "/"
    if os.path.isdir(cwd):
        return
    path = ""
    for part in cwd.split("/"):
        if not part:
            continue
        path += "/" + part
        try:
            os.mkdir(path, 0o755)
        except FileExistsError:
            if not os.path.isdir(path):
                raise OSError(errno.ENOTDIR, f"process.cwd {cwd}: {path} is not a directory") from None
        except OSError as e:
            raise OSError(e.errno, f"process.cwd {cwd}: {e.strerror}") from None


def _sysctl(key: str, val: str) -> None:
    path = "/proc/sys/" + key.replace(".", "/")
    try:
        with open(path, "w") as f:
            f.write(str(val))
    except OSError as e:
        raise OSError(e.errno, f"linux.sysctl {key}: {e.strerror}") from None


def setup_terminal(ctx: Context, proc: dict, controlling: bool = True) -> None:
    """A new pty: its master goes to the console socket, its slave becomes
    stdio (and, with `controlling`, our controlling terminal)."""
    import fcntl
    import struct
    import termios
    if ctx.console_fd is None:
        raise OSError(errno.EINVAL, "process.terminal is set but no console socket was given")
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    # unlockpt, then the pts number (the termios module lacks both ioctls).
    TIOCSPTLCK, TIOCGPTN = 0x40045431, 0x80045430
    fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
    pts = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0" * 4))[0]
    slave = os.open(f"/dev/pts/{pts}", os.O_RDWR | os.O_NOCTTY)
    size = proc.get("consoleSize")
    if size:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size.get("height", 0), size.get("width", 0), 0, 0))
    sock = sync.from_fd(ctx.console_fd)
    try:
        sync.send_fds(sock, b"/dev/ptmx", [master])
    finally:
        sock.close()
        os.close(master)
    if ctx.start_fd >= 0 and any(n["type"] == "mount" for n in _namespaces(ctx.config)):
        _bind_console(pts)  # container init only: exec must not touch its mounts
    if controlling:
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)


def _bind_console(n: int) -> None:
    """Make /dev/console the container's terminal, as runc does (bind mount
    of the pts slave), where the container has its own mount namespace."""
    if not os.path.exists("/dev/console"):
        os.close(os.open("/dev/console", os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
    sc.mount(f"/dev/pts/{n}", "/dev/console", None, sc.MS_BIND, None, label="/dev/console")


_RLIMITS = {
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7, "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9,
    "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13,
    "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}
_SCHED_POLICIES = {"SCHED_OTHER": 0, "SCHED_FIFO": 1, "SCHED_RR": 2, "SCHED_BATCH": 3,
                   "SCHED_ISO": 4, "SCHED_IDLE": 5, "SCHED_DEADLINE": 6}
_SCHED_FLAGS = {"SCHED_FLAG_RESET_ON_FORK": 0x1, "SCHED_FLAG_RECLAIM": 0x2, "SCHED_FLAG_DL_OVERRUN": 0x4,
                "SCHED_FLAG_KEEP_POLICY": 0x8, "SCHED_FLAG_KEEP_PARAMS": 0x10,
                "SCHED_FLAG_UTIL_CLAMP_MIN": 0x20, "SCHED_FLAG_UTIL_CLAMP_MAX": 0x40}
_IOPRIO_CLASSES = {"IOPRIO_CLASS_RT": 1, "IOPRIO_CLASS_BE": 2, "IOPRIO_CLASS_IDLE": 3}


def set_oom_score_adj(proc: dict) -> None:
    """process.oomScoreAdj, through this pid namespace's /proc/self (exec
    calls it before joining the container's mount namespace, whose /proc
    does not show a process outside the container's pid namespace)."""
    if proc.get("oomScoreAdj") is None:
        return
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(proc["oomScoreAdj"]))
    except OSError as e:
        raise OSError(e.errno, f"process.oomScoreAdj {proc['oomScoreAdj']}: {e.strerror}") from None


def setup_process(ctx: Context, proc: dict, linux: dict, oom: bool = True) -> None:
    """The process's identity and limits, in runc's order (init step 12;
    exec). `oom`: also set process.oomScoreAdj (exec sets it earlier
    itself). Where proc's environment has no HOME, proc["env"] gets one
    (the caller execs with proc["env"] afterwards)."""
    import resource
    from runtime import caps
    # rlimits (raising a hard limit needs CAP_SYS_RESOURCE: the error says which).
    for rl in proc.get("rlimits") or ():
        try:
            resource.setrlimit(_RLIMITS[rl["type"]], (rl["soft"], rl["hard"]))
        except (ValueError, OSError) as e:
            raise OSError(getattr(e, "errno", 1) or 1,
                          f"process.rlimits {rl['type']}: {getattr(e, 'strerror', None) or e}") from None
    if oom:
        set_oom_score_adj(proc)
    if linux.get("personality"):
        p = linux["personality"]
        persona = {"LINUX": 0x0000, "LINUX32": 0x0008}[p["domain"]]
        sc.personality(persona)
    sched = proc.get("scheduler")
    if sched:
        flags = 0
        for fl in sched.get("flags") or ():
            flags |= _SCHED_FLAGS[fl]
        sc.sched_setattr(_SCHED_POLICIES[sched["policy"]], flags, sched.get("nice", 0),
                         sched.get("priority", 0), sched.get("runtime", 0),
                         sched.get("deadline", 0), sched.get("period", 0))
    iop = proc.get("ioPriority")
    if iop:
        sc.ioprio_set(1, 0, (_IOPRIO_CLASSES[iop["class"]] << 13) | iop.get("priority", 0))

    # process.apparmorProfile takes effect at the next execve, so pyrunc-exec
    # sets it right before it execs the process (exechelper.c).
    cwd = proc.get("cwd") or "/"
    # Seccomp is loaded before privileges drop unless no_new_privs lets an
    # unprivileged process load it (runc does the same).
    seccomp_cfg = linux.get("seccomp")
    nnp = proc.get("noNewPrivileges", False)
    user = proc.get("user") or {}
    env = proc.get("env") or []
    if not _env_value(env, "HOME"):
        # As runc's setupUser: HOME from the user's passwd entry when the
        # environment has none (or an empty one). Read before any seccomp
        # profile is on: one may refuse openat2.
        proc["env"] = [*env, "HOME=" + passwd_home(user.get("uid", 0))]
    if seccomp_cfg and not nnp:
        _load_seccomp(ctx, seccomp_cfg)
    # The cwd is entered first with the runtime's privileges, which may
    # reach a directory the process user cannot; only where they do not
    # (EACCES, EPERM: say a directory of the user's on a root-squashing
    # mount) is it entered again as that user, as runc does.
    chdir_as_user = False
    try:
        os.chdir(cwd)
    except PermissionError:
        chdir_as_user = True
    except OSError as e:
        raise OSError(e.errno, f"process.cwd {cwd}: {e.strerror}") from None
    capsets = proc.get("capabilities")
    unknown: list[str] = []
    masks = {k: caps.to_mask((capsets or {}).get(k), unknown)
             for k in ("bounding", "effective", "permitted", "inheritable", "ambient")}
    if capsets is not None:
        caps.drop_bounding(masks["bounding"])
    user = proc.get("user") or {}
    uid, gid = user.get("uid", 0), user.get("gid", 0)
    if capsets is not None:
        # Keep permitted caps across the uid change; they are set exactly below.
        sc.prctl(sc.PR_SET_KEEPCAPS, 1)
    fix_stdio_owner(uid)
    _setgroups(user.get("additionalGids") or [])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if chdir_as_user:
        try:
            os.chdir(cwd)
        except OSError as e:
            raise OSError(e.errno, f"process.cwd {cwd}: {e.strerror}") from None
    if capsets is not None:
        sc.prctl(sc.PR_SET_KEEPCAPS, 0)
        try:
            caps.apply_final(masks["effective"], masks["permitted"], masks["inheritable"], masks["ambient"])
        except OSError as e:
            raise OSError(e.errno, f"process.capabilities: {e.strerror}") from None
    if user.get("umask") is not None:
        os.umask(user["umask"])
    else:
        os.umask(0o022)
    if nnp:
        sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)
    if seccomp_cfg and nnp:
        _load_seccomp(ctx, seccomp_cfg)


def _env_value(env: list[str], name: str) -> str:
    """The value `name` has in an OCI env list: the last entry wins, as
    with setenv in order."""
    value = ""
    prefix = name + "="
    for kv in env:
        if kv.startswith(prefix):
            value = kv[len(prefix):]
    return value


def passwd_home(uid: int) -> str:
    """The home directory of `uid` in the container's /etc/passwd ("/" when
    it has no entry or there is no readable file), read as runc's
    user.GetExecUserPath reads it: the first line whose third field is the
    uid wins; blank lines are skipped, and a field that is not a number
    counts as 0. Resolved in this process's root ("/" is the container's
    by now) without following a link out of it."""
    try:
        rootfd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fd = sc.openat2(rootfd, "etc/passwd", os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC,
                            sc.RESOLVE_IN_ROOT | sc.RESOLVE_NO_MAGICLINKS)
        finally:
            os.close(rootfd)
    except OSError:
        return "/"
    try:
        if os.fstat(fd).st_mode & 0o170000 != 0o100000:  # S_ISREG: never block on a fifo
            return "/"
        chunks = []
        while True:
            b = os.read(fd, 65536)
            if not b:
                break
            chunks.append(b)
    except OSError:
        return "/"
    finally:
        os.close(fd)
    for line in b"".join(chunks).split(b"\n"):
        line = line.strip()
        if not line:
            continue
        f = line.split(b":")
        if _atoi(f[2] if len(f) > 2 else b"") == uid:
            return (f[5] if len(f) > 5 else b"").decode("utf-8", "surrogateescape")
    return "/"


def _atoi(b: bytes) -> int:
    # Go's strconv.Atoi, with 0 for what it refuses (as runc ignores the error).
    digits = b[1:] if b[:1] in (b"+", b"-") else b
    if not digits or not digits.isdigit():
        return 0
    return -int(digits) if b[:1] == b"-" else int(digits)


def fix_stdio_owner(uid: int) -> None:
    """Give stdin, stdout and stderr to the process user, as runc does
    before it changes uid: the user can then reopen them (/dev/stdout,
    /proc/self/fd/N) and control its terminal. The group stays (a pty keeps
    devpts' tty group). /dev/null and what is owned by `uid` already are
    left alone; so is what this user namespace cannot chown (unmapped
    owner or group, read-only filesystem)."""
    null = os.makedev(1, 3)
    try:
        null = os.stat("/dev/null").st_rdev
    except OSError:
        pass
    for fd in (0, 1, 2):
        try:
            st = os.fstat(fd)
        except OSError:
            continue
        if st.st_uid == uid or st.st_rdev in (null, os.makedev(1, 3)):
            continue
        try:
            os.fchown(fd, uid, st.st_gid)
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.EINVAL, errno.EROFS):
                raise OSError(e.errno, f"process.user.uid {uid}: cannot give fd {fd} to the user: "
                                       f"{e.strerror}") from None


def _setgroups(gids: list[int]) -> None:
    try:
        os.setgroups(gids)
    except PermissionError:
        # In a user namespace with setgroups denied only an empty list is possible.
        if gids:
            raise OSError(errno.EPERM, "process.user.additionalGids: setgroups is denied in this user namespace") from None


def _load_seccomp(ctx: Context, cfg: dict) -> None:
    from runtime import seccomp
    f = seccomp.compile(cfg)
    fd = seccomp.load(f)
    if fd is not None:
        ctx.chan.send(sync.SECCOMP_FD, fds=[fd])
        os.close(fd)
        ctx.chan.expect(sync.SECCOMP_DONE)


def lookup(name: str, env: list[str]) -> str:
    """The file to execve for args[0], found and checked as runc 1.1.5 does
    before it reports ready (Go's exec.LookPath, then an access check), so
    that `create` fails with runc's message rather than `start`:

    * a name with a slash is used as it is; any other is searched on the
      PATH of `env` (the last PATH= entry; none means nothing is found), and
      a match in a relative PATH entry ("" and "." included) is refused;
    * a candidate qualifies when it is no directory and has an execute bit;
      for a name with a slash anything else is `permission denied`;
    * the file found must then be executable by this process (its uid
      after setup_process, a noexec mount)."""
    if "/" in name:
        try:
            mode = os.stat(name).st_mode
        except OSError as e:
            raise OSError(e.errno, f'exec: "{name}": stat {name}: {_go_strerror(e.errno)}') from None
        if not _exec_candidate(mode):
            raise OSError(errno.EACCES, f'exec: "{name}": permission denied')
        found = name
    else:
        path = ""
        for e in env:
            if e.startswith("PATH="):
                path = e[5:]
        found = None
        for d in path.split(":") if path else ():
            cand = os.path.join(d or ".", name)
            try:
                if not _exec_candidate(os.stat(cand).st_mode):
                    continue
            except OSError:
                continue
            if not cand.startswith("/"):
                raise OSError(errno.EACCES, f'exec: "{name}": cannot run executable found relative to current directory')
            found = os.path.normpath(cand)
            break
        if found is None:
            raise OSError(errno.ENOENT, f'exec: "{name}": executable file not found in $PATH')
    if not _may_exec(found):
        raise OSError(errno.EACCES, f"exec {found}: permission denied")
    return found


def _may_exec(path: str) -> bool:
    """Whether this process (its effective ids) may execute `path`. The
    container's seccomp profile is in force by now and may refuse
    faccessat2 itself (EPERM or ENOSYS): then, as Go's Faccessat does for
    runc, the answer comes from the file's mode, owner and group."""
    try:
        sc.faccessat2(path, os.X_OK, sc.AT_EACCESS)
        return True
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOSYS):
            return False
    st = os.stat(path)
    uid = os.geteuid()
    if uid == 0:
        return bool(st.st_mode & 0o111)
    if st.st_uid == uid:
        return bool(st.st_mode & 0o100)
    if st.st_gid == os.getegid() or st.st_gid in os.getgroups():
        return bool(st.st_mode & 0o010)
    return bool(st.st_mode & 0o001)


def _exec_candidate(mode: int) -> bool:
    # Not a directory, and some execute bit set (the test of Go's LookPath).
    return mode & 0o170000 != 0o040000 and mode & 0o111 != 0


def _go_strerror(errno: int) -> str:
    # Go spells errno texts as libc does, lower-cased at the start.
    text = os.strerror(errno)
    return text[:1].lower() + text[1:]


def env_dict(env: list[str]) -> dict:
    out = {}
    for kv in env:
        k, _, v = kv.partition("=")
        out[k] = v
    return out


def _hook_state(ctx: Context, status: str) -> dict:
    return {"ociVersion": ctx.config.get("ociVersion", "1.3.0"), "id": ctx.cid,
            "pid": os.getpid(), "status": status, "bundle": ctx.bundle,
            "annotations": ctx.config.get("annotations") or {}}
