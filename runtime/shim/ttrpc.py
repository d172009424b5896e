"""ttrpc, containerd's RPC for shims: framing, a server side, a client.

A frame is a 10-byte header (payload length and stream id, big-endian
uint32 each; message type, 1 = request and 2 = response; flags), then the
payload: a ttrpc.Request (service, method, payload, timeout, metadata) or
a ttrpc.Response (a google.rpc.Status and the reply's payload). Each call
has its own odd stream id, chosen by the client; replies may come in any
order, which is how a Wait stays open while other calls are answered.
Frames above 4 MiB are refused, as ttrpc itself does.

ServerConn serves one accepted connection on a Loop: for each request it
calls handler(service, method, payload, reply); `reply(payload_bytes)` or
`reply(None, code, message)` answers it, now or later (a reply after the
connection closed is dropped). Client is a blocking caller with a
timeout, for the shim's few calls to containerd (events).

gRPC status codes used by containerd's errdefs: 2 unknown, 3 invalid
argument, 5 not found, 6 already exists, 9 failed precondition, 12
unimplemented.
"""
from __future__ import annotations

import _socket  # the C module: `socket` imports enum and selectors
import struct

from runtime.shim import messages

HEADER = struct.Struct(">IIBB")
MAX_MESSAGE = 4 << 20
REQUEST, RESPONSE = 1, 2

UNKNOWN, INVALID_ARGUMENT, DEADLINE_EXCEEDED, NOT_FOUND, ALREADY_EXISTS = 2, 3, 4, 5, 6
FAILED_PRECONDITION, RESOURCE_EXHAUSTED, UNIMPLEMENTED, UNAVAILABLE = 9, 8, 12, 14


class Error(Exception):
    """An RPC failure with its gRPC status code (raised by handlers and by
    Client.call)."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def frame(stream: int, mtype: int, payload: bytes) -> bytes:
    return HEADER.pack(len(payload), stream, mtype, 0) + payload


def unix_path(address: str) -> str:
    """A socket path from containerd's address forms (unix://PATH, PATH)."""
    return address[len("unix://"):] if address.startswith("unix://") else address


class ServerConn:
    def __init__(self, loop, sock, handler, on_close=None):
        self.loop = loop
        self.sock = sock
        self.fd = sock.fileno()
        self.handler = handler
        self.on_close = on_close
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.closed = False
        sock.setblocking(False)
        loop.add_reader(self.fd, self._readable)

    def _readable(self) -> None:
        try:
            data = self.sock.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.close()
            return
        self.inbuf += data
        while len(self.inbuf) >= HEADER.size and not self.closed:
            length, stream, mtype, _ = HEADER.unpack_from(self.inbuf)
            if length > MAX_MESSAGE:
                # The rest of this stream cannot be framed any more.
                self._respond(stream, None, RESOURCE_EXHAUSTED,
                              f"message length {length} exceed maximum message size of {MAX_MESSAGE}")
                self.close()
                return
            if len(self.inbuf) < HEADER.size + length:
                break
            payload = bytes(self.inbuf[HEADER.size:HEADER.size + length])
            del self.inbuf[:HEADER.size + length]
            if mtype == REQUEST:
                self._request(stream, payload)

    def _request(self, stream: int, payload: bytes) -> None:
        try:
            req = messages.get("ttrpc.Request").FromString(payload)
        except Exception:  # noqa: BLE001 - a garbled frame gets an error reply
            self._respond(stream, None, INVALID_ARGUMENT, "malformed ttrpc request")
            return
        answered = []

        def reply(data: bytes | None, code: int = 0, message: str = "") -> None:
            if answered:
                return
            answered.append(1)
            self._respond(stream, data, code, message)
        self.handler(req.service, req.method, req.payload, reply)

    def _respond(self, stream: int, data: bytes | None, code: int, message: str) -> None:
        if self.closed:
            return
        resp = messages.get("ttrpc.Response")()
        if code:
            resp.status.code = code
            resp.status.message = message
        else:
            resp.payload = data or b""
        self.outbuf += frame(stream, RESPONSE, resp.SerializeToString())
        self._flush()

    def _flush(self) -> None:
        while self.outbuf:
            try:
                n = self.sock.send(self.outbuf)
            except (BlockingIOError, InterruptedError):
                self.loop.add_writer(self.fd, self._flush)
                return
            except OSError:
                self.close()
                return
            del self.outbuf[:n]
        self.loop.remove_writer(self.fd)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.loop.forget(self.fd)
        self.sock.close()
        if self.on_close:
            self.on_close(self)


class Client:
    """Calls on one connection, reconnecting when it broke."""

    def __init__(self, address: str, timeout: float = 10.0):
        self.path = unix_path(address)
        self.timeout = timeout
        self.sock = None
        self.stream = 1

    def _connect(self):
        s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
        s.settimeout(self.timeout)
        try:
            s.connect(self.path)
        except OSError:
            s.close()
            raise
        return s

    def call(self, service: str, method: str, payload: bytes, metadata: dict | None = None) -> bytes:
        req = messages.get("ttrpc.Request")(service=service, method=method, payload=payload,
                                            timeout_nano=int(self.timeout * 1e9))
        for k, v in (metadata or {}).items():
            req.metadata.add(key=k, value=v)
        data = req.SerializeToString()
        for attempt in (0, 1):
            try:
                if self.sock is None:
                    self.sock = self._connect()
                stream = self.stream
                self.stream += 2
                self.sock.sendall(frame(stream, REQUEST, data))
                return self._read_reply(stream)
            except (OSError, EOFError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _read_reply(self, stream: int) -> bytes:
        while True:
            head = self._read_exact(HEADER.size)
            length, sid, mtype, _ = HEADER.unpack(head)
            body = self._read_exact(length)
            if sid != stream or mtype != RESPONSE:
                continue
            resp = messages.get("ttrpc.Response").FromString(body)
            if resp.status.code:
                raise Error(resp.status.code, resp.status.message)
            return resp.payload

    def _read_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError("connection closed")
            buf += chunk
        return bytes(buf)

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None
