"""The parent <-> init sync channel: named messages over a SOCK_SEQPACKET pair.

Each message is one JSON object with a "type"; file descriptors ride along
with SCM_RIGHTS. A peer that dies closes its end, so a blocked recv() ends
with EOF (raised as InitFailure on the parent side) instead of a hang.

The order of `create` (parent: container._Builder.sync_until_ready; child:
init.stage1 and init.init). Rows in brackets happen only where their
condition holds; ERROR may replace any child message, and the child then
exits.

  #  from    message          when / why
  1  parent  GO               the device rules (and a realtime budget) are
                              in force: the child may join the cgroup and
                              make its namespaces; the other limits are
                              written while it works
 [2] child   USERNS_CREATED   a new user namespace: parent writes the maps
 [3] parent  USERNS_MAPPED
 [4] child   MOUNT_SOURCES    user + mount namespaces as root: the parent
     parent  (fds)            opens the bind sources in the child's mount
                              namespace and sends them (userns.py)
 [5] child   INIT_PID         two stages (not a direct clone): init's host
                              pid; in outside mode, stage1's own
  6  parent  APPLIED          limits written, network devices moved in,
                              state saved with init's pid. It comes before
                              init's hooks and pivot_root (they need the
                              cgroup and the devices), or, with no create
                              hooks and no netDevices, at init's step 11b
                              (after pivot_root, before the process's
                              identity is set up): nothing earlier needs it
  7  child   PRESTART         right after APPLIED: the rootfs is mounted,
                              run prestart/createRuntime (both hook kinds
                              mean APPLIED came early, before pivot_root)
  8  parent  PRESTART_DONE    {"pid"}
 [9] child   SECCOMP_FD       a listenerPath: the notify fd, which the
[10] parent  SECCOMP_DONE     parent forwards to the agent
 11  child   READY            set up; init now execs pyrunc-exec, which
                              waits on the start socket
[12] child   INIT_PID         outside mode: pyrunc-exec forked init into
                              the joined pid namespace (init.py)

`exec` (execproc.py) uses GO, INIT_PID (from pyrunc-exec's spawn mode),
APPLIED (the process waits for it before execve), SECCOMP_FD/DONE and
ERROR; EARLY_OK lets APPLIED overtake the seccomp exchange.
"""
import _socket  # the C module: `socket` imports enum
from runtime.toolkit import os_lite as os
import sys

from runtime.toolkit import fastjson as json
from runtime import errors

AF_UNIX = _socket.AF_UNIX
STREAM = _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC
SEQPACKET = _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC


def unix_socket(kind: int = STREAM):
    """A new close-on-exec unix socket."""
    return _socket.socket(AF_UNIX, kind)


def from_fd(fd: int):
    """Wrap an fd we own as a socket object (which then owns it)."""
    return _socket.socket(fileno=fd)


def socketpair(kind: int = STREAM):
    return _socket.socketpair(AF_UNIX, kind)


def accept(sock):
    """Accept one connection; the new socket is close-on-exec."""
    fd, _ = sock._accept()
    return from_fd(fd)


# SCM_RIGHTS carries C ints. They are packed by hand: the array module
# would import collections on every create, start and exec.
_INT = 4


def send_fds(sock, data: bytes, fds: list[int]) -> None:
    """Send `data` with `fds` attached (SCM_RIGHTS); we keep our copies."""
    packed = b"".join(fd.to_bytes(_INT, sys.byteorder, signed=True) for fd in fds)
    sock.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, packed)])


def recv_fds(sock, bufsize: int, maxfds: int) -> tuple[bytes, list[int]]:
    """Receive a message and the fds it carried (the caller closes them)."""
    msg, anc, _flags, _addr = sock.recvmsg(bufsize, _socket.CMSG_LEN(maxfds * _INT))
    fds = []
    for level, kind, data in anc:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds += [int.from_bytes(data[i:i + _INT], sys.byteorder, signed=True)
                    for i in range(0, len(data) - _INT + 1, _INT)]
    return msg, fds

# Message names, in the order they normally flow.
GO = "go"                          # parent -> stage1: the cgroup's limits are on:
                                   #   join it, then fork init
USERNS_CREATED = "userns-created"  # stage1 -> parent: write my uid/gid maps
USERNS_MAPPED = "userns-mapped"    # parent -> stage1
MOUNT_SOURCES = "mount-sources"    # stage1 -> parent: open the bind sources in my mount namespace;
                                   #   parent -> stage1: {"indexes": [...], "last": bool}, fds attached
INIT_PID = "init-pid"              # stage1 -> parent: {"pid": host pid of init}
APPLIED = "applied"                # parent -> init: init is in its cgroup, limits in force
PRESTART = "prestart"              # init -> parent: rootfs mounted, run prestart/createRuntime hooks
PRESTART_DONE = "prestart-done"    # parent -> init
SECCOMP_FD = "seccomp-fd"          # init -> parent: notify fd attached; forward to listener
SECCOMP_DONE = "seccomp-done"      # parent -> init
READY = "ready"                    # init -> parent: blocked before exec, waiting for start
ERROR = "error"                    # either way: {"msg": ...}; the sender then exits


class Channel:
    """One end of the channel. Not thread-safe; closes its fd on close()."""

    # Messages the parent may send before the one being waited for: exec's
    # parent sends APPLIED as soon as the process is in its cgroup, which
    # can overtake the seccomp exchange. They are kept for a later expect().
    EARLY_OK = frozenset(("applied",))

    def __init__(self, sock):
        self.sock = sock
        self._early: list[dict] = []

    @classmethod
    def pair(cls) -> tuple["Channel", "Channel"]:
        a, b = socketpair(SEQPACKET)
        return cls(a), cls(b)

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, mtype: str, fds: list[int] | None = None, **fields) -> None:
        """Send one message. If the peer is gone, the error it sent before
        going (an ERROR message still queued for us) is raised as
        InitFailure instead of the broken pipe."""
        fields["type"] = mtype
        data = json.dumps(fields).encode()
        try:
            if fds:
                send_fds(self.sock, data, fds)
            else:
                os.write(self.sock.fileno(), data)
        except (BrokenPipeError, ConnectionResetError):
            self.sock.setblocking(False)
            try:
                self.next()  # raises the peer's ERROR, if it sent one
            except OSError:
                pass  # nothing queued (EAGAIN), or the connection is gone too
            finally:
                self.sock.setblocking(True)
            raise errors.InitFailure("container init exited unexpectedly during setup") from None

    def recv(self, eof_ok: bool = False) -> tuple[dict | None, list[int]]:
        """Next message and any fds it carried (caller closes them).
        On EOF (every peer closed its end) return (None, []) if `eof_ok`,
        else raise InitFailure."""
        try:
            data, fds = recv_fds(self.sock, 65536, 4)
        except ConnectionResetError:
            # The peer exited with a message of ours unread: the kernel then
            # reports ECONNRESET once, ahead of whatever the peer sent before
            # it went (its ERROR, say), which the next read returns.
            try:
                data, fds = recv_fds(self.sock, 65536, 4)
            except (ConnectionResetError, BlockingIOError):
                data, fds = b"", []
        if not data:
            if eof_ok:
                return None, []
            raise errors.InitFailure("container init exited unexpectedly during setup")
        return json.loads(data), fds

    def next(self, keep_fds: bool = False) -> dict:
        """The next message; an ERROR message is raised as InitFailure. Fds it
        carried are closed, or with `keep_fds` returned under "_fds" for the
        caller to close."""
        msg, fds = self.recv()
        if msg["type"] == ERROR or not keep_fds:
            for fd in fds:
                os.close(fd)
        if msg["type"] == ERROR:
            raise errors.InitFailure(msg.get("msg", "unknown error"))
        if keep_fds:
            msg["_fds"] = fds
        return msg

    def expect(self, mtype: str) -> dict:
        """Receive a message that must be `mtype`; an ERROR message is raised.
        A message of EARLY_OK that comes first is kept for its own expect()."""
        for i, msg in enumerate(self._early):
            if msg["type"] == mtype:
                return self._early.pop(i)
        while True:
            msg = self.next()
            if msg["type"] == mtype:
                return msg
            if msg["type"] not in self.EARLY_OK:
                raise errors.InitFailure(f"sync: expected {mtype!r}, got {msg['type']!r}")
            self._early.append(msg)

    def close(self) -> None:
        self.sock.close()
