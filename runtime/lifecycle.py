"""The verbs that act on an existing container: state, list, start, kill
and delete (create and run are in runtime.container).

containerd's shim runs these once or more per container, each in a fresh
interpreter, so this module and everything it loads stay off `os`
(runtime.toolkit.os_lite: the same posix functions without os.py's import cost) and
off anything else `create` alone needs. Each public function is one CLI
verb's library call; they raise RuntimeFailure (or OSError) with a one-line
message, which the CLI maps to exit codes and log lines.

A damaged state file (truncated, overwritten, of the wrong shape, or gone
while create's first record is still there: runtime.state.load raises
StateDamaged) means the container's processes may still run, so the
container is never forgotten:

* `list` leaves it out of its table and says so on stderr, one
  `load container ID: ...` line each, as runc does;
* `state`, `start`, `kill` and a plain `delete` fail, naming it, as in runc;
* `delete --force`, where runc fails too (it cannot load the container,
  and leaves the directory), finds the processes through the cgroup that
  create recorded before any process existed (state.FIRST_FILE), kills
  everything in it, removes it and the state directory. That is what a
  forced delete of a healthy container does as well, except the poststop
  hooks, which only the damaged file recorded. Without a readable record
  of a cgroup there is nothing that tells the container's processes from
  others: it fails as runc does, keeps the directory, and says so.
"""
import _signal as signal  # the C module: `signal` imports enum
import time

from runtime.toolkit import os_lite as os
from runtime import state as st
from runtime import errors
from runtime.errors import RuntimeFailure
import sys
from runtime import log
# Optional edges, imported where used, so each verb loads only its own: the
# cgroups package (kill, delete, a running container's state), hooks (only
# when the config has them), _socket (start), pwd (list), shutil (a tree
# left by a failed create).


# --- state / list ------------------------------------------------------------

def state(root: str, cid: str) -> dict:
    data = st.load(root, cid)
    return st.oci_state(data)


def list_containers(root: str) -> list[dict]:
    """runc's list entries: the state of each container, with the owner of
    its state directory by name ("#UID" for a uid without one). One that
    cannot be loaded is reported on stderr (runc's `load container ID:
    ...`) and left out: listing the others must not fail for it."""
    out = []
    names: dict[int, str] = {}
    for cid in st.list_ids(root):
        try:
            data = st.load(root, cid)
            uid = os.stat(data["_dir"]).st_uid
        except RuntimeFailure as e:
            why = e.detail if isinstance(e, errors.StateDamaged) else str(e)
            sys.stderr.write(f"load container {cid}: {why}\n")
            continue
        except OSError:
            continue  # removed meanwhile
        if uid not in names:
            import pwd
            try:
                names[uid] = pwd.getpwuid(uid).pw_name
            except KeyError:
                names[uid] = f"#{uid}"
        item = st.oci_state(data)
        item["owner"] = names[uid]
        out.append(item)
    return out


def start(root: str, cid: str) -> None:
    """Release a created container's init; run poststart hooks.
    Fails unless the container is `created`."""
    data = st.load(root, cid)
    with st.Lock(data["_dir"], cid):
        status = st.status(data)
        if status != "created":  # (runc's words)
            raise errors.InvalidState("cannot start a container that has stopped" if status == "stopped" else
                                      "cannot start an already running container" if status == "running" else
                                      f"cannot start a container in the {status} state")
        _release(data)
    hooks = (data.get("hooks") or {}).get("poststart")
    if hooks:
        from runtime.hooks import HookFailed, run_hooks
        try:
            run_hooks("poststart", hooks, st.oci_state(data, "running"))
        except HookFailed:
            # Spec (1.3): a failed poststart hook is an error; the container
            # is stopped and the lifecycle goes on at delete/poststop.
            try:
                os.kill(data["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass
            raise


def _release(data: dict) -> None:
    """Connect to the waiting init and collect its verdict: init sends "0",
    then either execs (the socket is close-on-exec, so we read EOF) or sends
    "E" and an error message."""
    import _socket  # the C module: `socket` imports enum, a cost `start` need not pay
    path = os.path.join(data["_dir"], st.START_SOCK)
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        try:
            st.at_start_sock(s.connect, data["_dir"])
        except (ConnectionRefusedError, FileNotFoundError):
            raise errors.InvalidState("cannot start a container whose init has exited") from None
        os.unlink(path)
        got = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
    finally:
        s.close()
    if not got:
        raise errors.InitFailure("container init exited before starting the process")
    if got[1:2] == b"E":
        raise errors.InitFailure(got[2:].decode(errors="replace"))


# --- kill / delete ----------------------------------------------------------


def parse_signal(sig: str) -> int:
    s = sig.strip().upper()
    if s.isdigit():
        n = int(s)
        if 0 <= n < 65:  # 0: only checks that init exists, as kill(2) does (runc passes it on too)
            return n
        raise RuntimeFailure(f'invalid signal "{sig}"')
    if not s.startswith("SIG"):
        s = "SIG" + s
    n = getattr(signal, s, None)
    if isinstance(n, int) and "_" not in s and 0 < n < 65:
        return n
    if s.startswith("SIGRTMIN") or s.startswith("SIGRTMAX"):
        base = signal.SIGRTMIN if s.startswith("SIGRTMIN") else signal.SIGRTMAX
        off = s[8:]
        try:
            return int(base) + (int(off) if off else 0)
        except ValueError:
            pass
    raise RuntimeFailure(f'unknown signal "{sig}"')  # runc's words


def kill(root: str, cid: str, sig: str = "SIGTERM", all_procs: bool = False) -> None:
    """Signal the container's init; with all_procs, every process in its
    cgroup, which (as in runc) also works once init is gone: containerd's
    shim calls `kill --all ID KILL` after each exit of a container that
    shares a pid namespace, for what it left behind."""
    signum = parse_signal(sig)
    data = st.load(root, cid)
    status = st.status(data)
    if all_procs and data.get("cgroup"):
        from runtime import cgroups
        m = cgroups.manager_from_state(data["cgroup"])
        if status == "stopped" and not m.exists():
            return
        _signal_all(m, signum, status == "paused")
        return
    if status == "stopped":
        if all_procs:
            return  # no cgroup (rootless): nothing left to signal
        raise errors.InvalidState("container not running")
    try:
        os.kill(data["pid"], signum)
    except ProcessLookupError:
        raise errors.InvalidState("container not running") from None
    if status == "paused" and signum == signal.SIGKILL and data.get("cgroup"):
        # Frozen tasks only die once thawed (runc thaws too); otherwise a
        # `delete --force` after this kill waits forever. The cgroup manager
        # only here: a plain signal to init is the common call.
        from runtime import cgroups
        cgroups.manager_from_state(data["cgroup"]).thaw()


def _signal_all(m, signum: int, paused: bool) -> None:
    """runc's signalAllProcesses: freeze the cgroup so nothing forks while
    its pids are read, signal each, thaw. A paused container stays paused,
    except for SIGKILL, which frozen tasks only act on once thawed. A
    cgroup that cannot be frozen (no freezer) is signalled as it is."""
    frozen = paused
    if not paused:
        try:
            m.freeze()
            frozen = True
        except (OSError, RuntimeFailure) as e:
            log.warning(str(e))
    try:
        for pid in m.pids():
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass
    finally:
        if frozen and (not paused or signum == signal.SIGKILL):
            try:
                m.thaw()
            except (OSError, RuntimeFailure) as e:
                log.warning(str(e))


def delete(root: str, cid: str, force: bool = False) -> None:
    """Remove a stopped (or, like runc, created) container. --force also
    kills a running one and succeeds when the container is half-made or gone."""
    try:
        data = st.load(root, cid)
    except RuntimeFailure as e:
        if not force:
            raise
        if isinstance(e, errors.StateDamaged):
            _destroy_damaged(e)
            return
        if not isinstance(e, errors.ContainerNotFound):
            raise  # (a newer pyrunc's state: its processes may run)
        # Half-created (no state file yet) or already gone: clear what may remain.
        rmtree(st.container_dir(root, cid))
        return
    with st.Lock(data["_dir"], cid):
        status = st.status(data)
        if status in ("running", "paused") and not force:
            raise errors.InvalidState(f"cannot delete container {cid} that is not stopped: {status}")
        _destroy(data, status)


def _destroy(data: dict, status: str) -> None:
    cg = data.get("cgroup")
    # A stopped container's cgroups are empty when init took its pid
    # namespace down with it: then one rmdir each, and the cgroup managers
    # are not even loaded. Anything still in use goes the long way.
    gone = bool(cg) and status == "stopped" and os.rmdir_all(st.cgroup_dirs(cg))
    m = None
    if cg and not gone:
        from runtime import cgroups
        m = cgroups.manager_from_state(cg)
    if status != "stopped":
        if m is not None and status == "paused":
            m.thaw()
        try:
            os.kill(data["pid"], signal.SIGKILL)
        except ProcessLookupError:
            pass
        wait_gone(data["pid"])
    if m is not None:
        m.destroy()
    if cg:
        remove_parents(data.get("cgroup_parents") or [])
    hooks = (data.get("hooks") or {}).get("poststop")
    if hooks:
        from runtime.hooks import run_hooks
        # Spec: a failed poststop hook is a warning; deletion still completes.
        run_hooks("poststop", hooks, st.oci_state(data, "stopped"), warn=_warn)
    rmtree(data["_dir"])


def _destroy_damaged(err) -> None:
    """delete --force of a container whose state file is damaged (`err`, a
    StateDamaged): kill what runs in the cgroup create recorded first and
    remove it, or refuse when there is no such record (module docstring)."""
    cdir = err.cdir
    with st.Lock(cdir, err.cid):
        first = st.read_first(cdir)
        cg = (first or {}).get("cgroup")
        if not cg:
            raise RuntimeFailure(f"{err}; no cgroup was recorded to find its processes by, so it is not "
                                 f"deleted: stop them, then remove {cdir}")
        from runtime import cgroups
        # (thaws it, kills every process in it, waits until it is empty)
        cgroups.manager_from_state(cg).destroy()
        remove_parents(first.get("cgroup_parents") or [])
        rmtree(cdir)


def wait_gone(pid: int, timeout: float = 10.0) -> None:
    """Wait until pid no longer runs (a zombie counts as gone)."""
    end = time.monotonic() + timeout
    while st.proc_start_time(pid) is not None and time.monotonic() < end:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            pass
        time.sleep(0.002)


def rmtree(path: str) -> None:
    """Remove a state directory (flat: a few files); idempotent. shutil is
    only imported for the unexpected case of subdirectories."""
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return
    for n in names:
        try:
            os.unlink(os.path.join(path, n))
        except IsADirectoryError:
            import shutil
            shutil.rmtree(os.path.join(path, n), ignore_errors=True)
        except FileNotFoundError:
            pass
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass


def remove_parents(parents: list[str]) -> None:
    """rmdir the cgroup parents a create made, deepest first; one that another
    container still uses (not empty) stays."""
    for p in parents:
        try:
            os.rmdir(p)
        except OSError:
            pass


def exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _warn(msg: str) -> None:
    log.warning(msg)
