"""Hide the kernel's cost of moving a process into a cgroup.

Every write to a cgroup.procs file takes the kernel's global
cgroup_threadgroup_rwsem for writing. That lock sits in a fast mode for
readers (fork, exit) and must first wait for an RCU grace period to switch
to its writer mode: 5-20 ms on this kind of machine, paid by the first
write of a create or exec (runc pays it as well). After a write the lock
stays in writer mode for about one more grace period, so writes that
follow each other closely pay it once.

AttachPrimer starts that switch early, in a background thread, by
writing our own pid to the cgroup we are already in (a move to where we
are: no effect on us or anyone) every few milliseconds, while the runtime
reads the config, validates it and creates the container's cgroups. It is
stopped (and its thread finished) before the runtime forks, and the real
moves that come right after find the lock already in writer mode. Any
failure (no permission, no cgroupfs) just ends the thread: the runtime
then pays the wait itself, as before.
"""
import _thread
import os
import time

_INTERVAL = 0.002   # well inside one grace period
_MAX_RUN = 0.5      # never outlive a slow create by much


def _own_procs_file() -> str | None:
    """cgroup.procs of our own cgroup in one hierarchy (any will do: the
    lock is global). cgroup2 where it is mounted, else the pids hierarchy."""
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for mount, want in (("/sys/fs/cgroup", "0:"), ("/sys/fs/cgroup/unified", "0:"),
                        ("/sys/fs/cgroup/pids", "pids")):
        for line in lines:
            _, ctrls, rel = line.split(":", 2) if line.count(":") >= 2 else ("", "", "")
            if (want == "0:" and line.startswith("0::")) or (want != "0:" and want in ctrls.split(",")):
                path = os.path.join(mount, rel.lstrip("/"), "cgroup.procs")
                if os.path.exists(path) and (want != "0:" or os.path.exists(
                        os.path.join(mount, "cgroup.controllers"))):
                    return path
    return None


class AttachPrimer:
    """start() returns at once; stop() ends the thread and waits for it.
    Idempotent; a primer that could not start is a no-op."""

    def __init__(self):
        self._stop = False
        self._done = _thread.allocate_lock()
        self._running = False

    def start(self) -> "AttachPrimer":
        if os.geteuid() != 0:
            return self  # rootless: our own cgroup is rarely writable, and rarely worth it
        path = _own_procs_file()
        if path is None:
            return self
        self._done.acquire()
        self._running = True
        _thread.start_new_thread(self._run, (path, str(os.getpid()).encode()))
        return self

    def _run(self, path: str, pid: bytes) -> None:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                end = time.monotonic() + _MAX_RUN
                while not self._stop and time.monotonic() < end:
                    os.write(fd, pid)
                    time.sleep(_INTERVAL)
            finally:
                os.close(fd)
        except OSError:
            pass
        finally:
            self._done.release()

    def stop(self) -> None:
        if self._running:
            self._stop = True
            self._done.acquire()  # the thread is finished: safe to fork
            self._done.release()
            self._running = False
