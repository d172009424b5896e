"""Download bounds, the pure parts: descriptor sizes, the progress
deadline's bookkeeping, the watchdog on a real socket pair, and reading a
body no further than a limit."""
import socket
import threading
import time

import pytest

from imagetool.pull import _check_descriptor
from imagetool.registry import PROGRESS_BYTES, Response, Stalled, _Watch, _Watchdog


@pytest.mark.parametrize("size", [True, -1, 2 ** 63, 10 ** 30, 1.0, "5"])
def test_descriptor_sizes_outside_int64_are_refused(size):
    with pytest.raises(ValueError, match="size"):
        _check_descriptor({"digest": "sha256:" + "a" * 64, "size": size}, "layer 0")


def test_descriptor_size_at_int64_max_is_valid():
    _check_descriptor({"digest": "sha256:" + "a" * 64, "size": 2 ** 63 - 1}, "layer 0")


# ---- the progress deadline's bookkeeping ---------------------------------------

def test_watch_counts_only_whole_progress_units():
    w = _Watch(None, 10, now=100)
    assert w.deadline == 110 and not w.expired(109.9) and w.expired(110)
    w.answer(105)  # headers arrived: a fresh deadline for the body
    assert w.deadline == 115
    # a drip: bytes arrive, but never a whole unit, so the deadline stays
    for t in range(106, 115):
        w.progress(1, t)
    assert w.deadline == 115 and w.expired(115)
    w.progress(PROGRESS_BYTES - 9, 114)  # the unit completes
    assert w.deadline == 124 and w.pending == 0
    w.progress(3 * PROGRESS_BYTES, 120)
    assert w.deadline == 130


def test_watch_reason_says_what_was_missing():
    w = _Watch(None, 1.5, now=0)
    assert w.reason() == "download stalled, no response within 1.5 s"
    w.answer(0)
    assert w.reason().startswith("download stalled, no progress for 1.5 s")


def test_watchdog_ends_a_blocked_read_and_spares_a_progressing_one():
    dog = _Watchdog()
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    try:
        stalled = dog.watch(a, 0.3)
        alive = dog.watch(c, 0.3)
        stop = threading.Event()

        def feed():  # a whole unit every 0.1 s on c
            while not stop.is_set():
                d.sendall(b"x" * PROGRESS_BYTES)
                time.sleep(0.1)

        def drain():
            while not stop.is_set():
                try:
                    n = len(c.recv(1 << 20))
                except OSError:
                    return
                if not n:
                    return
                alive.progress(n, time.monotonic())

        threads = [threading.Thread(target=feed, daemon=True),
                   threading.Thread(target=drain, daemon=True)]
        for t in threads:
            t.start()
        t0 = time.monotonic()
        a.settimeout(10)
        assert a.recv(10) == b""  # blocked until the watchdog shut it down
        took = time.monotonic() - t0
        assert stalled.stalled and 0.25 <= took < 5, took
        time.sleep(0.4)  # past alive's first deadline: progress kept it going
        assert not alive.stalled
        stop.set()
        dog.unwatch(alive)
        threads[0].join(5)
        d.shutdown(socket.SHUT_WR)  # the drain sees the end
        threads[1].join(5)
        assert not any(t.is_alive() for t in threads)
    finally:
        for s in (a, b, c, d):
            s.close()


# ---- reading a body no further than a limit ---------------------------------------

class _Body:
    """Stands in for http.client.HTTPResponse: read1 hands out `data` in
    the given chunk sizes and records what was asked for."""

    def __init__(self, data, chunk):
        self.data, self.chunk, self.asked, self.read = data, chunk, [], 0

    def read1(self, n):
        self.asked.append(n)
        out = self.data[self.read:self.read + min(n, self.chunk)]
        self.read += len(out)
        return out


class _Resp:
    status = 200

    def __init__(self, body):
        self.body = body

    def read1(self, n):
        return self.body.read1(n)


def _stream(data, limit, chunk=7):
    body = _Body(data, chunk)
    r = Response(None, _Resp(body), "http://x")
    got = bytearray()
    return r.stream(limit, got.extend), bytes(got), body


@pytest.mark.parametrize("n", [0, 1, 50, 99, 100])
def test_stream_passes_a_body_within_the_limit(n):
    data = bytes(range(n))
    length, got, _ = _stream(data, 100)
    assert length == n and got == data


@pytest.mark.parametrize("extra", [1, 5, 10_000])
def test_stream_stops_one_byte_past_the_limit(extra):
    data = b"a" * (100 + extra)
    length, got, body = _stream(data, 100)
    assert length == 101
    assert got == b"a" * len(got) and len(got) <= 100
    assert body.read <= 101 and all(n <= 101 for n in body.asked)


def test_stream_reports_a_stall_rather_than_the_end():
    body = _Body(b"abc", 10)
    w = _Watch(None, 1, now=0)
    w.stalled = True
    r = Response(None, _Resp(body), "http://x", watch=w, watchdog=_Watchdog())
    with pytest.raises(Stalled, match="no response within 1 s"):
        r.stream(100, lambda c: None)
