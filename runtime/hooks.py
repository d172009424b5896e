"""Running OCI hooks (config.md "POSIX-platform Hooks").

A hook gets the container state JSON on stdin, its own env (nothing
inherited) and args; a timeout kills it. Output is captured and only shown
when the hook fails, as runc does.
"""
from runtime.toolkit import fastjson as json
import subprocess

from runtime.errors import RuntimeFailure


class HookFailed(RuntimeFailure):
    pass


# How Go's os/exec words a death by signal N ("signal: NAME"), which runc's
# hook errors carry and its tests match (exechelper.c has the same table).
SIGNAL_NAMES = ("", "hangup", "interrupt", "quit", "illegal instruction", "trace/breakpoint trap", "aborted",
                "bus error", "floating point exception", "killed", "user defined signal 1", "segmentation fault",
                "user defined signal 2", "broken pipe", "alarm clock", "terminated", "stack fault", "child exited",
                "continued", "stopped (signal)", "stopped", "stopped (tty input)", "stopped (tty output)",
                "urgent I/O condition", "CPU time limit exceeded", "file size limit exceeded",
                "virtual timer expired", "profiling timer expired", "window changed", "I/O possible",
                "power failure", "bad system call")


def failure(kind: str, index: int, path: str, what: str) -> str:
    """A hook's failure in runc's words ("error running hook #N: ..."),
    naming the kind of hook and its path too."""
    return f"error running hook #{index}: {kind} {path}: {what}"


def run_hooks(kind: str, hooks: list[dict] | None, state: dict, warn=None, cwd: str | None = None) -> None:
    """Run each hook of `kind` in order. Without `warn`, raise HookFailed on
    the first failure; with it (poststart, poststop: the spec says a failure
    there is only a warning), report each failure to `warn` and go on.
    A hook works in `cwd`, or where its caller does (as runc's hooks do:
    the runtime's directory, and for createContainer the rootfs)."""
    if not hooks:
        return
    payload = json.dumps(state).encode()
    for i, h in enumerate(hooks):
        try:
            run_one(kind, i, h, payload, cwd)
        except HookFailed as e:
            if warn is None:
                raise
            warn(str(e))


def run_one(kind: str, index: int, hook: dict, payload: bytes, cwd: str | None = None) -> None:
    path = hook["path"]
    argv = hook.get("args") or [path]
    env = {}
    for kv in hook.get("env") or ():
        k, _, v = kv.partition("=")
        env[k] = v
    timeout = hook.get("timeout")
    try:
        p = subprocess.Popen(argv, executable=path, env=env, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             close_fds=True, cwd=cwd)
    except OSError as e:
        raise HookFailed(failure(kind, index, path, e.strerror.lower())) from None
    try:
        out, err = p.communicate(payload, timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise HookFailed(failure(kind, index, path, f"hook ran past specified timeout of {timeout:.1f}s")) from None
    except BrokenPipeError:
        # The hook need not read its stdin.
        out, err = p.communicate()
    if p.returncode != 0:
        n = -p.returncode
        what = (f"exit status {p.returncode}" if p.returncode > 0
                else f"signal: {SIGNAL_NAMES[n] if n < len(SIGNAL_NAMES) else f'signal {n}'}")
        raise HookFailed(failure(kind, index, path, f"{what}, stdout: {out.decode(errors='replace').strip()}, "
                                 f"stderr: {err.decode(errors='replace').strip()}"))
