"""The parent <-> init sync channel: named messages over a SOCK_SEQPACKET pair.

Each message is one JSON object with a "type"; file descriptors ride along
with SCM_RIGHTS. A peer that dies closes its end, so a blocked recv() ends
with EOF (raised as InitFailure on the parent side) instead of a hang.
"""
from runtime import fastjson as json
import os
import socket

from runtime.errors import InitFailure

# Message names, in the order they normally flow.
GO = "go"                          # parent -> stage1: cgroup joined, proceed
USERNS_CREATED = "userns-created"  # stage1 -> parent: write my uid/gid maps
USERNS_MAPPED = "userns-mapped"    # parent -> stage1
INIT_PID = "init-pid"              # stage1 -> parent: {"pid": host pid of init}
APPLIED = "applied"                # parent -> init: cgroup limits (device rules) in force
PRESTART = "prestart"              # init -> parent: rootfs mounted, run prestart/createRuntime hooks
PRESTART_DONE = "prestart-done"    # parent -> init
SECCOMP_FD = "seccomp-fd"          # init -> parent: notify fd attached; forward to listener
SECCOMP_DONE = "seccomp-done"      # parent -> init
READY = "ready"                    # init -> parent: blocked before exec, waiting for start
ERROR = "error"                    # either way: {"msg": ...}; the sender then exits


class Channel:
    """One end of the channel. Not thread-safe; closes its fd on close()."""

    def __init__(self, sock: socket.socket):
        self.sock = sock

    @classmethod
    def pair(cls) -> tuple["Channel", "Channel"]:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        return cls(a), cls(b)

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, mtype: str, fds: list[int] | None = None, **fields) -> None:
        fields["type"] = mtype
        data = json.dumps(fields).encode()
        if fds:
            socket.send_fds(self.sock, [data], fds)
        else:
            self.sock.send(data)

    def recv(self, eof_ok: bool = False) -> tuple[dict | None, list[int]]:
        """Next message and any fds it carried (caller closes them).
        On EOF (every peer closed its end) return (None, []) if `eof_ok`,
        else raise InitFailure."""
        data, fds, _flags, _addr = socket.recv_fds(self.sock, 65536, 4)
        if not data:
            if eof_ok:
                return None, []
            raise InitFailure("container init exited unexpectedly during setup")
        return json.loads(data), fds

    def expect(self, mtype: str) -> dict:
        """Receive a message that must be `mtype`; an ERROR message is raised."""
        msg, fds = self.recv()
        for fd in fds:
            os.close(fd)
        if msg["type"] == ERROR:
            raise InitFailure(msg.get("msg", "unknown error"))
        if msg["type"] != mtype:
            raise InitFailure(f"sync: expected {mtype!r}, got {msg['type']!r}")
        return msg

    def close(self) -> None:
        self.sock.close()
