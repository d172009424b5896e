"""The shim's event loop: one thread, every fd non-blocking, epoll.

One thread because the shim forks: create and exec fork the container's
processes from this process, and fork is only safe where no other thread
holds a lock. Everything that waits (a Wait call, a pty's output, a
signal) is an fd callback or a timer here instead; a handler that calls
into runtime's library blocks the loop for that call, which is what the
runc shim's per-container lock amounts to as well.

Signals arrive through signal.set_wakeup_fd: their handlers run from the
loop, never in the middle of a callback. Contract: callbacks must not
raise (an exception escapes run() and ends the shim); remove_* of an fd
that is not registered is a no-op.
"""
from __future__ import annotations

import _signal as signal  # the C module: `signal` imports enum
import heapq
import select
import time

from runtime.toolkit import os_lite as os

_IN, _OUT = select.EPOLLIN, select.EPOLLOUT


class Loop:
    def __init__(self):
        self.ep = select.epoll()
        self._cbs: dict[int, list] = {}   # fd -> [reader, writer]
        self._mask: dict[int, int] = {}   # fd -> registered epoll mask
        self._timers: list = []
        self._seq = 0
        self._signals: dict[int, object] = {}
        self.running = False
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.add_reader(self._wake_r, self._on_wake)

    # --- fds ---------------------------------------------------------------
    def _update(self, fd: int) -> None:
        r, w = self._cbs.get(fd, (None, None))
        mask = (_IN if r else 0) | (_OUT if w else 0)
        had = self._mask.get(fd)
        if not mask:
            self._cbs.pop(fd, None)
            if had is not None:
                del self._mask[fd]
                try:
                    self.ep.unregister(fd)
                except OSError:
                    pass
        elif had is None:
            self.ep.register(fd, mask)
            self._mask[fd] = mask
        elif had != mask:
            self.ep.modify(fd, mask)
            self._mask[fd] = mask

    def add_reader(self, fd: int, fn) -> None:
        self._cbs.setdefault(fd, [None, None])[0] = fn
        self._update(fd)

    def remove_reader(self, fd: int) -> None:
        if fd in self._cbs:
            self._cbs[fd][0] = None
            self._update(fd)

    def add_writer(self, fd: int, fn) -> None:
        self._cbs.setdefault(fd, [None, None])[1] = fn
        self._update(fd)

    def remove_writer(self, fd: int) -> None:
        if fd in self._cbs:
            self._cbs[fd][1] = None
            self._update(fd)

    def forget(self, fd: int) -> None:
        """Drop both callbacks of fd (call before closing it)."""
        if fd in self._cbs:
            self._cbs[fd] = [None, None]
            self._update(fd)

    # --- timers and signals -----------------------------------------------
    def call_later(self, delay: float, fn) -> None:
        self._seq += 1
        heapq.heappush(self._timers, (time.monotonic() + delay, self._seq, fn))

    def on_signal(self, signum: int, fn) -> None:
        """Run fn(signum) from the loop after signum arrives."""
        self._signals[signum] = fn
        signal.signal(signum, _note)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)

    def _on_wake(self) -> None:
        try:
            data = os.read(self._wake_r, 512)
        except BlockingIOError:
            return
        for signum in dict.fromkeys(data):
            fn = self._signals.get(signum)
            if fn is not None:
                fn(signum)

    # --- running ----------------------------------------------------------
    def stop(self) -> None:
        self.running = False

    def run(self) -> None:
        self.running = True
        while self.running:
            timeout = None
            if self._timers:
                timeout = max(0.0, self._timers[0][0] - time.monotonic())
            for fd, ev in self.ep.poll(-1 if timeout is None else timeout):
                # A hang-up or error wakes both sides: each finds out by its
                # read or write.
                cbs = self._cbs.get(fd)
                if cbs and ev & ~_OUT and cbs[0]:
                    cbs[0]()
                cbs = self._cbs.get(fd)
                if cbs and ev & ~_IN and cbs[1]:
                    cbs[1]()
            now = time.monotonic()
            while self._timers and self._timers[0][0] <= now:
                _, _, fn = heapq.heappop(self._timers)
                fn()


def _note(signum, frame) -> None:
    """The Python-level handler: the wakeup fd already carries signum."""
