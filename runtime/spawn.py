"""Process spawning, shared by `create` and `exec`.

The primitives that make the runtime's children and hand fds to them:
- fork_into / clone_init: os.fork through clone3, the child born in its
  cgroup2 directory (CLONE_INTO_CGROUP) and, for create, straight into its
  new pid namespace; direct_ok says when create's init can be that child.
- fd plumbing: every internal fd above the preserved range (dup_above,
  move_sock_above), the console socket (connect_console), systemd's
  LISTEN_FDS (listen_fds), the seccomp notify fd to its listener
  (send_seccomp_fd).
- after the fork: reaping (reap, wait_init), the pid file (write_pid_file),
  and signal forwarding for a process in the foreground
  (install_forwarding).
The hand-over into the container itself is exechelper's (pyrunc-exec).
"""
from runtime.toolkit import os_lite as os
import _signal as signal
import sys

from runtime import errors, log
from runtime import state as st
from runtime.toolkit import fastjson as json
from runtime.errors import RuntimeFailure
import fcntl
import posix
from runtime import sync
from runtime import syscalls as sc
# Optional edge: runtime.lifecycle (wait_init, used by run and a foreground exec;
# create and a detached exec do not load it).


def dup_above(fd: int, low: int) -> int:
    if fd >= low:
        return fd
    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, low)
    os.close(fd)
    return new


def move_sock_above(chan, low: int) -> None:
    fd = chan.sock.fileno()
    if fd >= low:
        return
    new = dup_above(os.dup(fd), low)
    chan.sock.close()
    chan.sock = sync.from_fd(new)


def connect_console(path: str, low: int) -> int:
    s = sync.unix_socket()
    try:
        s.connect(path)
    except OSError as e:
        s.close()
        raise RuntimeFailure(f"--console-socket {path}: {e.strerror}") from None
    return dup_above(s.detach(), low)


def fork_into(cgroup2_dir: str | None) -> tuple[int, bool]:
    """os.fork, but the child is born in the cgroup2 directory `cgroup2_dir`
    when the kernel can do that (clone3 CLONE_INTO_CGROUP); returns (pid,
    cloned_into_it), pid 0 in the child. Falls back to a plain fork (and
    cloned False) for v1, an old kernel, a seccomp filter that refuses
    clone3, or a second thread in this process."""
    return clone_init(cgroup2_dir, False) or (os.fork(), False)


def direct_ok(linux: dict) -> bool:
    """Whether init can be the first child itself (clone_init): not with a
    user namespace (created in a second step, after the parent maps its ids,
    and owning the namespaces made after it), a time namespace (offsets are
    set before any process enters it), a pid namespace joined by path
    (setns moves only the caller's later children), or network devices to
    move in."""
    if linux.get("netDevices"):
        # Moved in after GO, into the network namespace init makes before
        # it: only a separate init's INIT_PID tells the parent it exists.
        return False
    for n in linux.get("namespaces") or ():
        t = n.get("type")
        if t in ("user", "time") or (t == "pid" and n.get("path")):
            return False
    return True


def clone_init(cgroup2_dir: str | None, new_pid_ns: bool) -> tuple[int, bool] | None:
    """os.fork through clone3: the child is born in the cgroup2 directory
    `cgroup2_dir` when given and the kernel can (CLONE_INTO_CGROUP), and
    pid 1 of a new pid namespace when new_pid_ns (CLONE_NEWPID), so that it
    can be the container's init itself: one fork of this process less on
    create's critical path. Returns (pid, cloned_into_cgroup2), pid 0 in the
    child, or None where clone3 adds nothing or cannot do it (a second
    thread, an old kernel, a seccomp filter, a cgroup the kernel refuses
    without new_pid_ns): the caller forks as usual."""
    threading = sys.modules.get("threading")
    if not (cgroup2_dir or new_pid_ns) or (threading is not None and threading.active_count() != 1):
        return None
    flags = sc.CLONE_NEWPID if new_pid_ns else 0
    fd = -1
    if cgroup2_dir:
        try:
            fd = os.open(cgroup2_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            fd = -1
    try:
        if fd >= 0:
            try:
                return sc.clone3(flags | sc.CLONE_INTO_CGROUP, fd), True
            except OSError:
                pass
        if not flags:
            return None
        try:
            return sc.clone3(flags), False
        except OSError:
            return None
    finally:
        if fd >= 0:
            os.close(fd)


def listen_fds() -> int:
    """How many fds systemd's socket activation passed to this process
    (sd_listen_fds(3): LISTEN_FDS fds from 3 on, meant for us when
    LISTEN_PID is our pid); they are handed on to the container's init,
    whose environment then says LISTEN_FDS=N, LISTEN_PID=1 (runc's rule:
    init is pid 1 of its namespace). 0 when there are none."""
    env = posix.environ  # bytes keys; runtime.toolkit.os_lite has no environ
    fds, pid = env.get(b"LISTEN_FDS", b""), env.get(b"LISTEN_PID", b"")
    if not (fds.isdigit() and pid.isdigit()) or int(pid) != os.getpid():
        return 0
    return int(fds)


def reap(pid: int) -> int:
    try:
        _, status = os.waitpid(pid, 0)
        return status
    except ChildProcessError:
        return 0


def write_pid_file(path: str, pid: int) -> None:
    path = os.path.abspath(path)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.rename(tmp, path)


def send_seccomp_fd(cfg: dict, data: dict, fds: list[int]) -> None:
    """Forward the seccomp notify fd to linux.seccomp.listenerPath with the
    container process state, as runtime-spec config-linux.md describes."""
    sec = cfg["linux"]["seccomp"]
    path = sec.get("listenerPath")
    try:
        if not path:
            raise RuntimeFailure("linux.seccomp: SCMP_ACT_NOTIFY needs linux.seccomp.listenerPath")
        s = sync.unix_socket()
        try:
            try:
                s.connect(path)
            except OSError as e:
                # runc's words, which agents' tests look for
                raise RuntimeFailure(f"linux.seccomp.listenerPath {path}: failed to connect with seccomp "
                                     f"agent: {e.strerror or e}") from None
            pstate = {"ociVersion": cfg.get("ociVersion", "1.3.0"), "fds": ["seccompFd"],
                      "pid": data["pid"], "metadata": sec.get("listenerMetadata", ""),
                      "state": st.oci_state(dict(data, _dir="/nonexistent"), "creating")}
            sync.send_fds(s, json.dumps(pstate).encode(), fds[:1])
        except OSError as e:
            raise RuntimeFailure(f"linux.seccomp.listenerPath {path}: {e.strerror}") from None
        finally:
            s.close()
    finally:
        for fd in fds:
            os.close(fd)


FORWARDED = [signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1,
              signal.SIGUSR2, signal.SIGWINCH, signal.SIGCONT, signal.SIGTSTP, signal.SIGTTIN,
              signal.SIGTTOU, signal.SIGALRM, signal.SIGPIPE]


def install_forwarding(pid: int):
    """Forward the signals a user sends to `pyrunc run` to the container's init."""
    def fwd(signum, _frame):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass
    for s in FORWARDED:
        signal.signal(s, fwd)
    return fwd


def wait_init(pid: int) -> int:
    """Reap children until init exits; return its status as a shell would."""
    from runtime.lifecycle import exit_code
    while True:
        try:
            p, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 255
        if p == pid:
            return exit_code(status)
