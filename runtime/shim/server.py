"""The shim's serving process: the Task service on its socket.

serve(sock, flags) runs in the process that containerd's `start` left
behind (forked by main or by the zygote): it becomes the subreaper of its
containers' processes, logs to the bundle's `log` fifo (which containerd
copies into its own log), accepts containerd's ttrpc connections on sock
and runs the loop until Shutdown finds no container left or SIGTERM
arrives; then it removes its socket. adjust_oom_score() puts the shim one
above containerd in the OOM killer's order, as the runc shim does.
"""
from __future__ import annotations

import _signal as signal  # the C module: `signal` imports enum
import _socket
import posix
import sys

from runtime import log
from runtime import syscalls as sc
from runtime.shim import ttrpc
from runtime.shim.loop import Loop
from runtime.shim.service import Service
from runtime.toolkit import os_lite as os
from runtime.toolkit.cmdtable import stays


def adjust_oom_score() -> None:
    """The shim one above containerd (its OOM score), as the runc shim: the
    kernel picks it after the containers and before containerd."""
    try:
        with open("/proc/self/oom_score_adj") as f:
            score = int(f.read().strip())
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(min(score + 1, 1000)))
    except (OSError, ValueError):
        pass


class _LogWriter:
    """sys.stderr for the server: the bundle's `log` fifo, which containerd
    reads into its own log. Writes never block the loop; a full or absent
    reader loses the line rather than the shim."""

    def __init__(self):
        try:
            self.fd = os.open("log", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            self.fd = os.open("/dev/null", os.O_WRONLY | os.O_CLOEXEC)

    def write(self, s: str) -> int:
        try:
            os.write(self.fd, s.encode(errors="replace"))
        except OSError:
            pass
        return len(s)

    def flush(self) -> None:
        pass


def serve(sock, flags: dict) -> int:
    stays()  # a shim lives as long as its containers: the collector back on
    sys.stderr = _LogWriter()
    log.configure(None, "text", debug=bool(flags.get("debug")))
    sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
    loop = Loop()
    path = sock.getsockname()
    service = Service(loop, flags.get("namespace", ""), posix.environ.get(b"TTRPC_ADDRESS", b"").decode(),
                      on_empty=loop.stop)
    conns = set()

    def accept():
        try:
            fd, _ = sock._accept()  # (socket.socket.accept is this plus a Python wrapper)
        except (BlockingIOError, InterruptedError):
            return
        conn = _socket.socket(fileno=fd)
        conns.add(ttrpc.ServerConn(loop, conn, service.handle, on_close=conns.discard))

    sock.setblocking(False)
    loop.add_reader(sock.fileno(), accept)
    loop.on_signal(signal.SIGCHLD, service.reap)
    loop.on_signal(signal.SIGTERM, lambda _s: loop.stop())
    loop.on_signal(signal.SIGINT, lambda _s: loop.stop())
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    service.reap()
    try:
        loop.run()
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
        for c in list(conns):
            c.close()
    return 0
