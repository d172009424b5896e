"""imagetool.http1 against a loopback server that answers canned bytes:
framing (Content-Length, chunked, until close), keep-alive, the bounds on
lines and headers, broken answers, what a request refuses to send, and the
CONNECT tunnel."""
import socket
import threading

import pytest

from imagetool import http1


class Close(bytes):
    """An answer after which the server closes the connection."""


class Canned:
    """A loopback server: connection i gets answers[i] (a list of byte
    strings, one sent after each request it reads; None: close at once;
    Close(b"..."): send, then close). .requests holds (connection number,
    request head) in order."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.requests = []
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(8)
        self.port = self.srv.getsockname()[1]
        self.t = threading.Thread(target=self._serve, daemon=True)
        self.t.start()

    def _serve(self):
        for i, script in enumerate(self.answers):
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            with c:
                f = c.makefile("rb")
                for answer in script:
                    head = b""
                    while not head.endswith(b"\r\n\r\n"):
                        line = f.readline()
                        if not line:
                            break
                        head += line
                    if not head:
                        break
                    self.requests.append((i, head.decode("latin-1")))
                    if answer is None:
                        break
                    c.sendall(answer)
                    if isinstance(answer, Close):
                        break
                f.close()

    def conn(self, **kw):
        return http1.Connection("127.0.0.1", self.port, 5, **kw)

    def close(self):
        self.srv.close()


@pytest.fixture
def canned():
    made = []

    def make(*answers):
        s = Canned(answers)
        made.append(s)
        return s
    yield make
    for s in made:
        s.close()


def _get(c, target="/x", **kw):
    c.request(kw.pop("method", "GET"), target, **kw)
    return c.getresponse()


def test_content_length_bodies_on_one_kept_connection(canned):
    s = canned([b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nX-A: 2\r\n\r\nhello",
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nnop"])
    c = s.conn()
    r = _get(c, headers={"User-Agent": "t"})
    assert (r.status, r.reason, r.getheader("x-a"), r.getheader("nope", "d")) == (200, "OK", "1, 2", "d")
    assert not r.will_close and r.read() == b"hello" and r.isclosed()
    r = _get(c, "/y")
    assert r.status == 404 and r.read(2) == b"no" and r.read(10) == b"p" and r.isclosed()
    c.close()
    assert [i for i, _ in s.requests] == [0, 0]
    head = s.requests[0][1]
    assert head.startswith("GET /x HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{s.port}\r\n" in head and "User-Agent: t\r\n" in head


def test_read1_stops_at_the_length_without_closing(canned):
    s = canned([b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcd"])
    r = _get(s.conn())
    got = b""
    while True:
        chunk = r.read1(3)
        if not chunk:
            break
        got += chunk
    assert got == b"abcd" and r.length == 0 and not r.will_close


def test_chunked_body_with_extensions_and_trailer(canned):
    body = b"3;ext=1\r\nabc\r\n5\r\nde\r\nf\r\n0\r\nX-Trailer: t\r\n\r\n"
    s = canned([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body,
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body])
    c = s.conn()
    r = _get(c)
    assert r.chunked and r.read() == b"abcde\r\nf" and r.isclosed()
    r = _get(c)
    parts = []
    while True:
        p = r.read1(2)
        if not p:
            break
        parts.append(p)
    assert b"".join(parts) == b"abcde\r\nf" and max(map(len, parts)) <= 2 and r.isclosed()
    assert len({i for i, _ in s.requests}) == 1  # the trailer read: the connection goes on


def test_a_body_without_length_ends_with_the_connection(canned):
    s = canned([Close(b"HTTP/1.1 200 OK\r\n\r\nall of it")])
    r = _get(s.conn())
    assert r.will_close and r.length is None and r.read() == b"all of it"


@pytest.mark.parametrize("head,closes", [
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", True),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", True),
    (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", False),
    (b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive, Upgrade\r\nContent-Length: 0\r\n\r\n", False),
])
def test_which_answers_close_the_connection(canned, head, closes):
    r = _get(canned([head]).conn())
    assert r.will_close is closes


def test_head_204_and_interim_answers_have_no_body(canned):
    s = canned([b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"])
    c = s.conn()
    r = _get(c, method="HEAD")
    assert r.length == 0 and r.read() == b"" and r.read1(10) == b""
    r.close()
    r = _get(c, method="HEAD")
    assert not r.chunked and r.length == 0 and not r.will_close and r.read() == b""
    r = _get(c)
    assert r.status == 204 and r.read() == b""
    assert len({i for i, _ in s.requests}) == 1


@pytest.mark.parametrize("answer,error", [
    (b"SSH-2.0-OpenSSH\r\n\r\n", http1.BadStatusLine),
    (b"HTTP/1.1 2000 OK\r\n\r\n", http1.BadStatusLine),
    (b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 101 + b"\r\n", http1.HTTPException),
    (b"HTTP/1.1 200 OK\r\nX: " + b"y" * 70000 + b"\r\n\r\n", http1.LineTooLong),
    (b"HTTP/1.1 200 " + b"y" * 70000 + b"\r\n\r\n", http1.LineTooLong),
])
def test_broken_answers_are_refused(canned, answer, error):
    with pytest.raises(error):
        _get(canned([Close(answer)]).conn())


def test_a_connection_closed_without_an_answer(canned):
    c = canned([None]).conn()
    with pytest.raises(http1.RemoteDisconnected) as e:
        _get(c)
    assert isinstance(e.value, ConnectionResetError)


def test_a_short_body_is_an_incomplete_read(canned):
    r = _get(canned([Close(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")]).conn())
    with pytest.raises(http1.IncompleteRead) as e:
        r.read()
    assert e.value.partial == b"abc" and e.value.expected == 7


@pytest.mark.parametrize("body", [b"zz\r\nab\r\n0\r\n\r\n", b"-1\r\n", b"5\r\nab"])
def test_a_bad_or_cut_chunk_is_an_incomplete_read(canned, body):
    r = _get(canned([Close(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body)]).conn())
    with pytest.raises(http1.IncompleteRead):
        r.read()


@pytest.mark.parametrize("target,headers", [
    ("/a b", {}), ("/a\r\nX: y", {}), ("/ok", {"X-Bad": "v\r\nInjected: 1"}),
    ("/ok", {"Bad Name": "v"}), ("/ok", {"X": "\u20ac"}),
])
def test_requests_that_cannot_be_sent_safely_are_refused(canned, target, headers):
    s = canned([b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"])
    c = s.conn()
    with pytest.raises(http1.InvalidRequest):
        c.request("GET", target, headers=headers)
    c.close()
    assert s.requests == []


def test_bodies_bytes_and_file(canned, tmp_path):
    s = canned([b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"] * 2 + [None])
    c = s.conn()
    r = _get(c, method="PUT", body=b"12345")
    assert r.status == 201 and r.read() == b""
    f = tmp_path / "f"
    f.write_bytes(b"x" * 100_000)
    with open(f, "rb") as fh:
        with pytest.raises(http1.InvalidRequest):
            c.request("PUT", "/f", body=fh)
        c.request("PUT", "/f", body=fh, headers={"Content-Length": "100000"})
    assert c.getresponse().status == 201
    c.close()
    assert "Content-Length: 5\r\n" in s.requests[0][1]


def test_connect_tunnel(canned):
    s = canned([b"HTTP/1.1 200 Connection established\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"],
               [b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n"])
    c = s.conn(tunnel=("registry.example", 5000, {"Proxy-Authorization": "Basic eA=="}))
    r = _get(c, "/v2/")
    assert r.read() == b"ok"
    connect, get = s.requests[0][1], s.requests[1][1]
    assert connect.startswith("CONNECT registry.example:5000 HTTP/1.0\r\n")
    assert "Proxy-Authorization: Basic eA==\r\n" in connect
    assert "Host: registry.example:5000\r\n" in get
    with pytest.raises(OSError, match="407"):
        s.conn(tunnel=("registry.example", 5000, {})).connect()


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 \xb200 OK\r\nContent-Length: 0\r\n\r\n",          # a superscript two in the status
    b"HTTP/1.1 2\xb30 OK\r\nContent-Length: 0\r\n\r\n",
])
def test_a_status_in_digits_that_are_not_ascii_is_a_bad_status_line(canned, answer):
    s = canned([Close(answer)])
    with pytest.raises(http1.BadStatusLine):
        _get(s.conn())


def test_a_content_length_in_digits_that_are_not_ascii_is_no_length(canned):
    s = canned([Close(b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\nbody")])
    r = _get(s.conn())
    assert r.length is None and r.will_close
    assert r.read() == b"body"


def test_a_huge_chunk_size_reads_what_came_and_raises_incomplete_read(canned):
    """A chunk size beyond any memory: the client reads the bytes that did
    come, in blocks, and reports the body short (no allocation of that size,
    no OverflowError)."""
    s = canned([Close(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"ffffffffffffffffffff\r\nabc")])
    r = _get(s.conn())
    with pytest.raises(http1.IncompleteRead) as e:
        r.read()
    assert e.value.partial == b"abc"


def test_a_long_content_length_is_read_in_blocks(canned):
    body = bytes(range(256)) * 1024   # 256 KiB: several blocks
    s = canned([b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body])
    r = _get(s.conn())
    assert r.read() == body and r.isclosed() and not r.will_close


def test_a_registry_response_closed_twice_releases_its_connection_once(canned):
    """imagetool.registry.Response.close() a second time does nothing: the
    connection is handed back for reuse (or closed) only once, so two
    requests can never share it."""
    from imagetool import registry
    s = canned([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"])
    c = s.conn()
    released = []
    r = registry.Response(c, _get(c), "http://127.0.0.1/x", release=released.append)
    assert r.read() == b"abc"
    r.close()
    r.close()
    assert released == [c]
    c.close()
