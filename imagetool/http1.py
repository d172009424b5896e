"""HTTP/1.1 client connections for the registry client.

The part of http.client that imagetool.registry uses: one request at a time
on a persistent connection, bodies framed by Content-Length, chunked
transfer coding or the end of the connection, and a CONNECT tunnel through
a proxy. It exists because http.client imports the email package to parse
headers, a quarter of the instructions of a pull's imports; the interface
and behaviour follow http.client's, so that the registry client reads the
same way:

* Connection(host, port, timeout, context=None, tunnel=None): context, an
  ssl.SSLContext, makes it https (SNI and certificate checks are the
  context's, with the tunnel's host when there is one); tunnel is (host,
  port, headers) to CONNECT to through the proxy at host:port. connect()
  is explicit or done by the first request; .sock is the socket (for the
  caller's progress deadline). request(method, target, body, headers):
  body None, bytes, or a file read in blocks (then headers must give its
  Content-Length). getresponse() -> Response. close().
* Response: .status, .reason, getheader(name, default) (repeated headers
  joined with ", "), read(n=-1), read1(n), close(), isclosed(), and the
  framing state .chunked, .length (bytes left, None: until the connection
  ends), .will_close (the connection cannot carry another request).

* decimal(text): a header's number (Content-Length) or None, ASCII
  digits only.

Bounds, as http.client's: a status, header, chunk-size or trailer line of
at most 65,536 bytes and at most 100 header lines; a request whose target
or header has a control character is refused before anything is sent.
Errors: HTTPException and its kinds below; socket errors pass as OSError.
"""
from __future__ import annotations

import socket

_MAXLINE = 65536
_MAXHEADERS = 100
_BLOCK = 64 * 1024       # a file body is sent, and a long body read, in blocks of this size


def decimal(s: str | None) -> int | None:
    """The number a header or status field writes in ASCII digits (spaces
    around allowed), else None: str.isdigit also takes Latin-1's
    superscripts, which int() refuses."""
    s = (s or "").strip()
    return int(s) if s.isascii() and s.isdigit() else None


class HTTPException(Exception):
    """The peer's answer broke HTTP/1.1 (or the request could not be made)."""


class BadStatusLine(HTTPException):
    pass


class RemoteDisconnected(ConnectionResetError, BadStatusLine):
    """The connection ended before a status line arrived."""


class LineTooLong(HTTPException):
    pass


class IncompleteRead(HTTPException):
    """The body ended early: partial is what did arrive."""

    def __init__(self, partial: bytes, expected: int | None = None):
        self.partial, self.expected = partial, expected
        more = f", {expected} more expected" if expected is not None else ""
        super().__init__(f"{len(partial)} bytes read{more}")


class InvalidRequest(HTTPException):
    """A target or header the request cannot carry (a control character)."""


def _bad(text: str) -> bool:
    return any(c < " " and c != "\t" or c == "\x7f" for c in text)


def _readline(fp, what: str) -> bytes:
    line = fp.readline(_MAXLINE + 1)
    if len(line) > _MAXLINE:
        raise LineTooLong(f"{what} longer than {_MAXLINE} bytes")
    return line


def _read_head(fp) -> tuple[int, int, str, list[tuple[str, str]]]:
    """(version 10 or 11, status, reason, [(lower-case name, value)]) of the
    next response on fp, 1xx interim responses skipped."""
    while True:
        raw = _readline(fp, "status line")
        if not raw:
            raise RemoteDisconnected("connection closed without a response")
        line = raw.decode("iso-8859-1").rstrip("\r\n")
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") \
                or len(parts[1]) != 3 or decimal(parts[1]) is None:
            raise BadStatusLine(line[:200] or repr(raw[:200]))
        version = 10 if parts[0] == "HTTP/1.0" else 11
        status = int(parts[1])
        headers = _read_headers(fp, "header line")
        if not 100 <= status < 200 or status == 101:
            return version, status, parts[2] if len(parts) > 2 else "", headers


def _read_headers(fp, what: str) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    n = 0
    while True:
        raw = _readline(fp, what)
        if raw in (b"\r\n", b"\n", b""):
            return headers
        n += 1
        if n > _MAXHEADERS:
            raise HTTPException(f"more than {_MAXHEADERS} header lines")
        line = raw.decode("iso-8859-1").rstrip("\r\n")
        if line[:1] in (" ", "\t"):  # a folded continuation of the previous one
            if headers:
                name, value = headers[-1]
                headers[-1] = (name, f"{value} {line.strip()}")
            continue
        name, sep, value = line.partition(":")
        if sep and name and name == name.strip():
            headers.append((name.lower(), value.strip()))


class Response:
    def __init__(self, fp, method: str):
        self.fp = fp
        self._method = method
        self.version, self.status, self.reason, self._headers = _read_head(fp)
        te = (self.getheader("transfer-encoding") or "").strip().lower()
        self.chunked = te == "chunked"
        self.chunk_left: int | None = None
        self.length: int | None = None
        if not self.chunked:
            self.length = decimal(self.getheader("content-length"))
        if self.status in (204, 304) or method == "HEAD":
            self.length = 0       # no body, whatever the headers announce
            self.chunked = False
        tokens = {t.strip().lower() for t in (self.getheader("connection") or "").split(",")}
        if self.version == 11:
            self.will_close = "close" in tokens
        else:
            self.will_close = "keep-alive" not in tokens
        if not self.chunked and self.length is None:
            self.will_close = True  # the body ends with the connection

    def getheader(self, name: str, default=None):
        name = name.lower()
        values = [v for n, v in self._headers if n == name]
        return ", ".join(values) if values else default

    def isclosed(self) -> bool:
        return self.fp is None

    def close(self) -> None:
        """Closes the response's reader (not the connection's socket)."""
        if self.fp is not None:
            fp, self.fp = self.fp, None
            fp.close()

    # ---- bodies ----

    def _exactly(self, n: int) -> bytes:
        # In blocks: a file's read(n) allocates n bytes before anything
        # arrives, and n is the peer's number.
        parts = []
        got = 0
        while got < n:
            part = self.fp.read(min(_BLOCK, n - got))
            if not part:
                break
            parts.append(part)
            got += len(part)
        data = b"".join(parts)   # (one part: that part itself, not a copy)
        if len(data) < n:
            raise IncompleteRead(data, n - len(data))
        return data

    def read(self, n: int = -1) -> bytes:
        """Up to n bytes of the body (n < 0: all of it). A body that ends
        before its Content-Length raises IncompleteRead when all was asked
        for; otherwise the shorter read is returned."""
        if self.fp is None:
            return b""
        if self.length == 0:
            self.close()
            return b""
        if self.chunked:
            return self._read_chunked(n)
        if n < 0:
            if self.length is None:
                data = self.fp.read()
            else:
                data = self._exactly(self.length)
                self.length = 0
            self.close()
            return data
        if self.length is not None:
            n = min(n, self.length)
        data = self.fp.read(n)
        if not data and n:
            self.close()
        elif self.length is not None:
            self.length -= len(data)
            if not self.length:
                self.close()
        return data

    def read1(self, n: int) -> bytes:
        """What is at hand of the body, at most n bytes (at least one unless
        the body is over), with at most one read from the socket."""
        if self.fp is None or self._method == "HEAD":
            return b""
        if self.chunked:
            left = self._chunk_left()
            if left is None or n == 0:
                return b""
            data = self.fp.read1(min(n, left) if n > 0 else left)
            if not data:
                raise IncompleteRead(b"")
            self.chunk_left -= len(data)
            return data
        if self.length is not None and (n < 0 or n > self.length):
            n = self.length
        data = self.fp.read1(n) if n else b""
        if not data and n:
            self.close()
        elif self.length is not None:
            self.length -= len(data)
        return data

    def _chunk_left(self) -> int | None:
        """Bytes left in the current chunk, reading the next chunk's size
        when it is used up; None once the last chunk and the trailer were
        read (the response is then closed)."""
        left = self.chunk_left
        if left:
            return left
        if left is not None:
            self._exactly(2)  # the CRLF after a chunk's data
        line = _readline(self.fp, "chunk size").split(b";", 1)[0].strip()
        try:
            size = int(line, 16)
        except ValueError:
            size = -1
        if size < 0 or not line or line[:1] in (b"+", b"-"):
            self.close()
            raise IncompleteRead(b"")
        if size == 0:
            _read_headers(self.fp, "trailer line")
            self.close()
            self.chunk_left = None
            return None
        self.chunk_left = size
        return size

    def _read_chunked(self, n: int) -> bytes:
        out = bytearray()
        try:
            while n < 0 or len(out) < n:
                left = self._chunk_left()
                if left is None:
                    break
                take = left if n < 0 else min(left, n - len(out))
                out += self._exactly(take)
                self.chunk_left -= take
        except IncompleteRead as e:
            raise IncompleteRead(bytes(out) + e.partial) from None
        return bytes(out)


class Connection:
    def __init__(self, host: str, port: int, timeout: float | None = None,
                 context=None, tunnel: tuple | None = None):
        self.host, self.port, self.timeout = host, port, timeout
        self.context = context
        self.tunnel = tunnel
        self.sock = None
        self._response: Response | None = None

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            server = self.host
            if self.tunnel is not None:
                server = self.tunnel[0]
                self._open_tunnel(sock)
            if self.context is not None:
                sock = self.context.wrap_socket(sock, server_hostname=server)
        except BaseException:
            sock.close()
            raise
        self.sock = sock

    def _open_tunnel(self, sock) -> None:
        host, port, headers = self.tunnel
        lines = [f"CONNECT {_host_port(host, port)} HTTP/1.0"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        fp = sock.makefile("rb")
        try:
            _version, status, reason, _headers = _read_head(fp)
        finally:
            fp.close()
        if status != 200:
            raise OSError(f"tunnel connection failed: {status} {reason}".strip())

    def _host_header(self, target: str) -> str:
        if target.startswith(("http://", "https://")):  # through a plain-http proxy
            return target.split("/", 3)[2].rpartition("@")[2]
        host, port = (self.tunnel[0], self.tunnel[1]) if self.tunnel else (self.host, self.port)
        return _host_port(host, port, 443 if self.context is not None else 80)

    def request(self, method: str, target: str, body=None, headers: dict | None = None) -> None:
        if self._response is not None and not self._response.isclosed():
            raise HTTPException("a request before the previous response was read")
        given = {k.lower() for k in (headers or {})}
        h = {}
        if "host" not in given:
            h["Host"] = self._host_header(target)
        if "accept-encoding" not in given:
            h["Accept-Encoding"] = "identity"
        if "content-length" not in given:
            if isinstance(body, (bytes, bytearray)):
                h["Content-Length"] = str(len(body))
            elif body is None and method in ("POST", "PUT", "PATCH"):
                h["Content-Length"] = "0"
            elif body is not None:
                raise InvalidRequest("a body read from a file needs a Content-Length")
        h.update(headers or {})
        if _bad(target) or " " in target or not target:
            raise InvalidRequest(f"request target {target[:100]!r}")
        for k, v in h.items():
            if not k or _bad(k) or any(c in k for c in " :") or _bad(str(v)):
                raise InvalidRequest(f"header {k[:100]!r}")
        head = "".join([f"{method} {target} HTTP/1.1\r\n"] +
                       [f"{k}: {v}\r\n" for k, v in h.items()] + ["\r\n"])
        try:
            data = head.encode("latin-1")
        except UnicodeEncodeError:
            raise InvalidRequest("a header that is not Latin-1") from None
        if self.sock is None:
            self.connect()
        self._method = method
        if isinstance(body, (bytes, bytearray)):
            self.sock.sendall(data + body)
            return
        self.sock.sendall(data)
        if body is not None:
            while True:
                block = body.read(_BLOCK)
                if not block:
                    break
                self.sock.sendall(block)

    def getresponse(self) -> Response:
        fp = self.sock.makefile("rb")
        try:
            resp = Response(fp, self._method)
        except BaseException:
            fp.close()
            raise
        self._response = resp
        return resp

    def close(self) -> None:
        if self._response is not None:
            self._response.close()
            self._response = None
        if self.sock is not None:
            sock, self.sock = self.sock, None
            sock.close()


def _host_port(host: str, port: int, default: int | None = None) -> str:
    if not host.isascii():
        host = host.encode("idna").decode("ascii")
    if ":" in host:
        host = f"[{host}]"
    return host if port == default else f"{host}:{port}"
