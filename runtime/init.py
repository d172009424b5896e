"""The code that runs in the new process, from fork to execve.

Two stages, both forked from the `create` process (no re-exec):

stage1  still in the host's pid namespace. Joins or creates the user
        namespace (the parent writes its id maps), joins/creates the other
        namespaces, then forks init so that init is pid 1 of the new pid
        namespace, reports init's host pid and exits.
init    prepares the rootfs and process and blocks on exec.sock until
        `start`; then execs the user process. Nothing of Python remains.

Usually there is one: `create` clones the child straight into the new pid
namespace (container.clone_init), and after stage1's steps it goes on as
init itself (Context.direct). The second fork is only needed where stage1
must act in the host's pid namespace first: a user namespace, a time
namespace, a pid namespace joined by path, network devices to move in.

Any exception is sent to the parent as an ERROR message naming what failed;
after READY, errors go to `start` through the start socket instead.
"""
import _signal as signal  # the C module: `signal` imports enum
from runtime import _os as os  # os.py costs ~1.8 ms per call: runtime._os
import sys

from runtime import rootfs, sync
from runtime import syscalls as sc


class Context:
    """Everything init needs, prepared by the parent before fork (the child
    builds the Context from it: container._stage1).
    All fds are close-on-exec and numbered above the preserved-fd range."""

    def __init__(self, **kw):
        self.cid: str = kw["cid"]
        self.config: dict = kw["config"]
        self.bundle: str = kw["bundle"]
        self.rootfs: str = kw["rootfs"]
        self.chan: sync.Channel = kw["chan"]
        self.start_fd: int = kw["start_fd"]
        self.console_fd: int | None = kw.get("console_fd")
        self.preserve_fds: int = kw.get("preserve_fds", 0)
        self.no_pivot: bool = kw.get("no_pivot", False)
        self.no_new_keyring: bool = kw.get("no_new_keyring", False)
        self.cgroup_mount = kw["cgroup_mount"]    # callable(rootfd, dest, target, flags, label)
        self.idmap_fds: dict[int, int] = kw.get("idmap_fds") or {}
        # callable() that moves stage1 into the container's cgroup (set by
        # the parent in the child, once it knows how the child was forked)
        self.join_cgroup = kw.get("join_cgroup")
        self.host_pid = 0
        # direct: this process was cloned into its pid namespace already
        # (container.clone_init) and becomes init itself, without a fork.
        self.direct: bool = kw.get("direct", False)
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
            if n.get("path"):
                _join(n)
            else:
                flags |= sc.NAMESPACE_FLAGS[n["type"]]
        if flags & ~early:
            sc.unshare(flags & ~early)
        offsets = (ctx.config.get("linux") or {}).get("timeOffsets")
        if offsets and flags & sc.CLONE_NEWTIME:
            _write_time_offsets(offsets)
        if ctx.direct:
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


def _join(ns: dict) -> None:
    path = ns["path"]
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise OSError(e.errno, f"linux.namespaces {ns['type']} path {path}: {e.strerror}") from None
    try:
        sc.setns(fd, sc.NAMESPACE_FLAGS[ns["type"]], label=f"{ns['type']} namespace {path}")
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
    try:
        # 1. Only stdio and the preserved fds reach the user process; default
        #    signal dispositions; our own session (needed for a pty).
        clean_process_state(ctx.preserve_fds)
        # 3. Mount namespace: stop our mounts propagating back to the host.
        if "mount" in nstypes:
            rootfs.prepare_root(ctx.rootfs, linux.get("rootfsPropagation"), ctx.no_pivot)
            # (create dropped mountLabel already where SELinux is off)
            rootfs.mount_all(ctx.rootfs, cfg.get("mounts") or [], ctx.bundle, ctx.cgroup_mount,
                             ctx.idmap_fds, linux.get("mountLabel"))
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
        if hooks.get("createContainer"):
            from runtime.hooks import run_hooks
            run_hooks("createContainer", hooks["createContainer"], _hook_state(ctx, "created"))
        # 6. Switch root.
        if "mount" in nstypes:
            if ctx.no_pivot:
                rootfs.move_root(ctx.rootfs)
            else:
                rootfs.pivot(ctx.rootfs)
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
            for key, val in (linux.get("sysctl") or {}).items():
                _sysctl(key, val)
        # 9. Identity of the machine.
        if cfg.get("hostname") is not None and "uts" in nstypes:
            sc.sethostname(cfg["hostname"])
        if cfg.get("domainname") is not None and "uts" in nstypes:
            sc.setdomainname(cfg["domainname"])
        # 10. Terminal: a new pty whose master goes to the console socket.
        if proc.get("terminal"):
            setup_terminal(ctx, proc)
        # 11. Session keyring, so containers do not share the host's.
        if not ctx.no_new_keyring:
            try:
                sc.keyctl_join_session_keyring(None)
            except OSError as e:
                if e.errno not in (38,):  # ENOSYS: kernel without keys
                    raise
        # 11b. In the container's cgroup before the process is set up (its
        #      seccomp profile may not allow reading the socket later).
        if wait_late:
            ctx.chan.expect(sync.APPLIED)
            ctx.chan.send(sync.PRESTART)  # step 4 without hooks: the parent's state
            ctx.host_pid = ctx.chan.expect(sync.PRESTART_DONE)["pid"]
        # 12. Process attributes that need privileges we are about to drop.
        setup_process(ctx, proc, linux)
        # 13. The executable must exist now, so `create` reports it, not `start`.
        ctx.exec_args = list(proc["args"])
        ctx.exec_env = list(proc.get("env") or [])
        ctx.exec_args[0:1] = [lookup(proc["args"][0], ctx.exec_env)]
        # 14. Tell the parent we are ready, and wait for `start`.
        # write(2), not send(2): seccomp may already be on, and profiles allow write.
        os.write(ctx.chan.fileno(), b'{"type": "ready"}')
        ctx.chan.close()
        ready = True
        # Give freed heap back before waiting, maybe for long (RSS of a
        # created container's init).
        sc.malloc_trim()
        listener = sync.from_fd(ctx.start_fd)
        conn = sync.accept(listener)  # close-on-exec, like every fd of ours
        listener.close()
        os.write(conn.fileno(), b"0")
        # 15. startContainer hooks: container namespaces, after start.
        if hooks.get("startContainer"):
            from runtime.hooks import run_hooks
            run_hooks("startContainer", hooks["startContainer"], _hook_state(ctx, "running"))
        # 16. Hand over to the user process; the socket closes on exec, which
        #     is how `start` learns that exec succeeded.
        os.execve(ctx.exec_args[0], proc["args"], env_dict(ctx.exec_env))
    except BaseException as e:  # noqa: BLE001
        if not ready:
            _report(ctx, e)
        else:
            try:
                conn.sendall(("E" + describe(e)).encode())
            except (OSError, NameError):
                sys.stderr.write(f"pyrunc init: {describe(e)}\n")
        os._exit(1 if not isinstance(e, OSError) or e.errno not in (2, 13) else 127)


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
    if cfg.get("hooks"):
        from runtime import hooks  # noqa: F401
        import subprocess, json  # noqa: F401,E401
    if (cfg.get("linux") or {}).get("seccomp"):
        import struct  # noqa: F401 - the -ENOSYS stub is assembled at load time
        from runtime import seccomp
        if check_seccomp:
            seccomp.compile((cfg.get("linux") or {})["seccomp"])


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


def _sysctl(key: str, val: str) -> None:
    path = "/proc/sys/" + key.replace(".", "/")
    try:
        with open(path, "w") as f:
            f.write(str(val))
    except OSError as e:
        raise OSError(e.errno, f"linux.sysctl {key}: {e.strerror}") from None


def setup_terminal(ctx: Context, proc: dict) -> None:
    import fcntl
    import struct
    import termios
    if ctx.console_fd is None:
        raise OSError(22, "process.terminal is set but no console socket was given")
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


def setup_process(ctx: Context, proc: dict, linux: dict) -> None:
    import resource
    from runtime import caps
    # rlimits (raising a hard limit needs CAP_SYS_RESOURCE: the error says which).
    for rl in proc.get("rlimits") or ():
        try:
            resource.setrlimit(_RLIMITS[rl["type"]], (rl["soft"], rl["hard"]))
        except (ValueError, OSError) as e:
            raise OSError(getattr(e, "errno", 1) or 1,
                          f"process.rlimits {rl['type']}: {getattr(e, 'strerror', None) or e}") from None
    if proc.get("oomScoreAdj") is not None:
        try:
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write(str(proc["oomScoreAdj"]))
        except OSError as e:
            raise OSError(e.errno, f"process.oomScoreAdj {proc['oomScoreAdj']}: {e.strerror}") from None
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

    if proc.get("apparmorProfile"):
        # Takes effect at execve; the profile must be loaded on the host.
        try:
            with open("/proc/self/attr/apparmor/exec", "w") as f:
                f.write("exec " + proc["apparmorProfile"])
        except OSError as e:
            raise OSError(e.errno, f"process.apparmorProfile {proc['apparmorProfile']}: {e.strerror}") from None
    cwd = proc.get("cwd") or "/"
    # Seccomp is loaded before privileges drop unless no_new_privs lets an
    # unprivileged process load it (runc does the same).
    seccomp_cfg = linux.get("seccomp")
    nnp = proc.get("noNewPrivileges", False)
    if seccomp_cfg and not nnp:
        _load_seccomp(ctx, seccomp_cfg)
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
    _setgroups(user.get("additionalGids") or [])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
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
    try:
        os.chdir(cwd)
    except OSError as e:
        raise OSError(e.errno, f"process.cwd {cwd}: {e.strerror}") from None
    if nnp:
        sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)
    if seccomp_cfg and nnp:
        _load_seccomp(ctx, seccomp_cfg)


def _setgroups(gids: list[int]) -> None:
    try:
        os.setgroups(gids)
    except PermissionError:
        # In a user namespace with setgroups denied only an empty list is possible.
        if gids:
            raise OSError(1, "process.user.additionalGids: setgroups is denied in this user namespace") from None


def _load_seccomp(ctx: Context, cfg: dict) -> None:
    from runtime import seccomp
    f = seccomp.compile(cfg)
    fd = seccomp.load(f)
    if fd is not None:
        ctx.chan.send(sync.SECCOMP_FD, fds=[fd])
        os.close(fd)
        ctx.chan.expect(sync.SECCOMP_DONE)


def lookup(name: str, env: list[str]) -> str:
    """Find args[0] on the container's PATH, as execvp would (runc's message on failure)."""
    if "/" in name:
        if not os.path.exists(name):
            raise OSError(2, f'exec: "{name}": stat {name}: no such file or directory')
        return name
    path = next((e[5:] for e in env if e.startswith("PATH=")), "/usr/local/bin:/usr/bin:/bin")
    for d in path.split(":"):
        cand = os.path.join(d or ".", name)
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    raise OSError(2, f'exec: "{name}": executable file not found in $PATH')


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
