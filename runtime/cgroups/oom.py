"""OOM notification for the `events` verb.

Both watchers expose the same small interface:

    w.fileno()        -> an fd that becomes readable when something happened
                         (use with select/poll/selectors)
    w.read() -> int   -> number of new OOM kills since the last read (may
                         be 0 for a spurious wake-up); never blocks after a
                         readable fileno()
    w.wait(timeout)   -> int, blocking helper around fileno()/read()
    w.close()         -> release the fds (idempotent); also a context manager

v1: memory.oom_control registered through cgroup.event_control with an
eventfd (each OOM event bumps the eventfd counter).
v2: inotify IN_MODIFY on memory.events, comparing the oom_kill counter.
The watcher owns its fds; the caller must close() it.
"""

from runtime.toolkit import os_lite as os
import select

from runtime.toolkit import ffi as ctypes

from .common import CgroupError, read_kv


class _Base:
    _fd = -1

    def fileno(self) -> int:
        return self._fd

    def wait(self, timeout: float | None = None) -> int:
        if self._fd < 0:
            raise CgroupError("OOM watcher is closed")
        r, _, _ = select.select([self._fd], [], [], timeout)
        return self.read() if r else 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class OOMWatcherV1(_Base):
    def __init__(self, memory_dir: str):
        self.dir = memory_dir
        ctl = os.path.join(memory_dir, "memory.oom_control")
        try:
            ofd = os.open(ctl, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise CgroupError(f"open {ctl}: {os.strerror(e.errno)}") from None
        efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        try:
            ev = os.path.join(memory_dir, "cgroup.event_control")
            try:
                fd = os.open(ev, os.O_WRONLY | os.O_CLOEXEC)
                try:
                    os.write(fd, f"{efd} {ofd}".encode())
                finally:
                    os.close(fd)
            except OSError as e:
                raise CgroupError(f"register OOM eventfd via {ev}: {os.strerror(e.errno)}") from None
        except BaseException:
            os.close(efd)
            os.close(ofd)
            raise
        # oom_control's fd must stay open for as long as the registration.
        self._ofd = ofd
        self._fd = efd

    def read(self) -> int:
        try:
            return os.eventfd_read(self._fd)
        except BlockingIOError:
            return 0

    def close(self) -> None:
        for a in ("_fd", "_ofd"):
            fd = getattr(self, a, -1)
            if fd >= 0:
                os.close(fd)
                setattr(self, a, -1)


_IN_MODIFY = 0x2
_IN_NONBLOCK = 0o4000
_IN_CLOEXEC = 0o2000000


class OOMWatcherV2(_Base):
    def __init__(self, cgroup_dir: str):
        self.dir = cgroup_dir
        self._events = os.path.join(cgroup_dir, "memory.events")
        if not os.path.exists(self._events):
            raise CgroupError(f"OOM events need the memory controller: {self._events} does not exist")
        libc = ctypes.Library(None)
        fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            e = ctypes.get_errno()
            raise CgroupError(f"inotify_init1: {os.strerror(e)}")
        wd = libc.inotify_add_watch(fd, self._events.encode(), _IN_MODIFY)
        if wd < 0:
            e = ctypes.get_errno()
            os.close(fd)
            raise CgroupError(f"inotify_add_watch {self._events}: {os.strerror(e)}")
        self._fd = fd
        self._last = self._count()

    def _count(self) -> int:
        try:
            return read_kv(self.dir, "memory.events").get("oom_kill", 0)
        except OSError:
            return self._last if hasattr(self, "_last") else 0

    def read(self) -> int:
        # Drain the inotify queue; the counter is the source of truth.
        while True:
            try:
                if not os.read(self._fd, 4096):
                    break
            except BlockingIOError:
                break
        cur = self._count()
        n = max(0, cur - self._last)
        self._last = cur
        return n

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

