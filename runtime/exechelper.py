"""pyrunc-exec, the helper that takes the last step into a container
(exechelper.c says why and what it does), and the sealed memfd it runs from.

Contract:
- `sealed_fd(low)` returns a new close-on-exec memfd, numbered at or above
  `low`, holding a copy of the built helper, sealed so that nothing (not
  even its creator) can change, grow, shrink or re-seal it; the caller
  closes it. It is made by the runtime's parent process, before it forks:
  the child that execs it may no longer see the host's files, and may
  already be under a seccomp profile that refuses memfd_create.
- `start_argv` and `spawn_argv` build the helper's command lines; the
  caller execs `os.execve(fd, argv, env)` (fexecve: execveat with
  AT_EMPTY_PATH) with the process's environment, after making the fds
  named in the command line inheritable.
- A missing helper binary is an installation error named with its path.
"""
import fcntl
from runtime.toolkit import os_lite as os

from runtime.errors import RuntimeFailure

# Built from exechelper.c by setup.sh (and by the package build).
PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pyrunc-exec")

_MFD_CLOEXEC = 0x1
_MFD_ALLOW_SEALING = 0x2
_MFD_EXEC = 0x10          # Linux 6.3+: executable even where vm.memfd_noexec defaults memfds to noexec
_F_ADD_SEALS = 1033
_F_SEAL_SEAL, _F_SEAL_SHRINK, _F_SEAL_GROW, _F_SEAL_WRITE = 0x1, 0x2, 0x4, 0x8
_F_SEAL_EXEC = 0x20       # Linux 6.3+: the mode bits cannot change either


def sealed_fd(low: int) -> int:
    try:
        src = os.open(PATH, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise RuntimeFailure(f"{PATH}: {e.strerror} (pyrunc is not fully installed: run setup.sh)") from None
    try:
        data = os.read(src, 1 << 20)
    finally:
        os.close(src)
    try:
        fd = os.memfd_create("pyrunc-exec", _MFD_CLOEXEC | _MFD_ALLOW_SEALING | _MFD_EXEC)
        exec_seal = _F_SEAL_EXEC
    except OSError:
        fd = os.memfd_create("pyrunc-exec", _MFD_CLOEXEC | _MFD_ALLOW_SEALING)
        exec_seal = 0
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        seals = _F_SEAL_SHRINK | _F_SEAL_GROW | _F_SEAL_WRITE | exec_seal | _F_SEAL_SEAL
        try:
            fcntl.fcntl(fd, _F_ADD_SEALS, seals)
        except OSError:
            fcntl.fcntl(fd, _F_ADD_SEALS, seals & ~_F_SEAL_EXEC)
        if fd < low:
            new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, low)
            os.close(fd)
            fd = new
    except BaseException:
        os.close(fd)
        raise
    return fd


def _profile(apparmor: str | None) -> str:
    return apparmor or "-"


def _hook_words(hooks: list[dict]) -> list[str]:
    words = [str(len(hooks))]
    for h in hooks:
        hargs = list(h.get("args") or [h["path"]])
        henv = list(h.get("env") or ())
        words += [h["path"], str(int(h.get("timeout") or 0)), str(len(hargs)), *hargs, str(len(henv)), *henv]
    return words


def start_argv(listen_fd: int, apparmor: str | None, state_json: str, hooks: list[dict],
               path: str, args: list[str], fork_init: bool = False, chan_fd: int = -1,
               tty: bool = False) -> list[str]:
    """init's hand-over (mode "start"): wait for `start` on listen_fd, run
    the startContainer `hooks` with `state_json` on stdin, exec path. With
    `fork_init`, first fork init into the pid namespace joined for children
    and report its pid on `chan_fd` (`tty`: init takes fd 0 as its
    controlling terminal)."""
    return ["pyrunc-exec", "start", str(listen_fd), "1" if fork_init else "0", str(chan_fd), "1" if tty else "0",
            _profile(apparmor), state_json, *_hook_words(hooks), "--", path, *args]


def spawn_argv(chan_fd: int, err_fd: int, apparmor: str | None, tty: bool,
               path: str, args: list[str]) -> list[str]:
    """exec's hand-over (mode "spawn"): fork the process into the pid
    namespace joined for children, report its pid on chan_fd, exec path
    once the parent's next message arrives."""
    return ["pyrunc-exec", "spawn", str(chan_fd), str(err_fd), _profile(apparmor), "1" if tty else "0",
            "--", path, *args]


def run_in_pidns(helper_fd: int, argv: list[str], fds: list[int], cwd: str | None = None) -> tuple[int, str]:
    """Run the helper in mode "mount" or "hooks" (their argv name the pid
    namespace's fd) and wait: (exit status, what it wrote to stderr). The
    fork is ours, in our own pid namespace; only the helper's children
    enter the other one. `fds` are passed on (inheritable in the child);
    `cwd` is where it works."""
    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        try:
            if cwd:
                os.chdir(cwd)
            os.dup2(w, 2)
            for fd in fds:
                os.set_inheritable(fd, True)
            os.execve(helper_fd, argv, {})
        finally:
            os._exit(127)
    os.close(w)
    err = b""
    while chunk := os.read(r, 4096):
        err += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), err.decode(errors="replace")


def mount_in_pidns(helper_fd: int, pidns_fd: int, source: str, target_fd: int, fstype: str,
                   flags: int, data: str | None, label: str) -> None:
    """mount(2) onto the directory `target_fd`, done by a process of the pid
    namespace `pidns_fd` (a proc mount shows its mounter's pid namespace);
    OSError(errno, label) on failure."""
    argv = ["pyrunc-exec", "mount", str(pidns_fd), source, f"/proc/self/fd/{target_fd}", fstype, str(flags),
            data or ""]
    rc, err = run_in_pidns(helper_fd, argv, [pidns_fd, target_fd])
    if rc:
        raise OSError(rc, f"mount {label} ({fstype}): {os.strerror(rc)}")


def hooks_in_pidns(helper_fd: int, pidns_fd: int, kind: str, state_json: str, hooks: list[dict],
                   cwd: str | None = None) -> str | None:
    """Run the `kind` hooks from processes of the pid namespace `pidns_fd`,
    working in `cwd`; the first failure's message, or None."""
    argv = ["pyrunc-exec", "hooks", str(pidns_fd), kind, state_json, *_hook_words(hooks)]
    rc, err = run_in_pidns(helper_fd, argv, [pidns_fd], cwd)
    return (err.strip() or f"hooks: pyrunc-exec exited {rc}") if rc else None
