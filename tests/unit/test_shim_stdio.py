"""The shim's stdio (fifos, files, end of input) and its metrics
conversion, without root or containerd."""
import os

import pytest

pytest.importorskip("google.protobuf")

from runtime.cgroups.base import empty_stats  # noqa: E402
from runtime.shim import service  # noqa: E402
from runtime.shim.loop import Loop  # noqa: E402
from runtime.shim.stdio import Stdio, StdioError  # noqa: E402


def _fifo(tmp_path, name):
    p = str(tmp_path / name)
    os.mkfifo(p)
    return p


def _run_until(loop, pred, limit=2.0):
    import time
    end = time.monotonic() + limit

    def tick():
        if pred() or time.monotonic() > end:
            loop.stop()
        else:
            loop.call_later(0.01, tick)
    loop.call_later(0, tick)
    loop.run()


def test_stdin_is_copied_and_ends_when_the_client_closes_its_end(tmp_path):
    loop = Loop()
    fin = _fifo(tmp_path, "in")
    io = Stdio(loop, fin, "", "", False)
    child_in, child_out, child_err = io.child_fds()
    # no writer has come yet: no end of input
    _run_until(loop, lambda: False, 0.05)
    assert io.pipe_w >= 0
    w = os.open(fin, os.O_WRONLY)
    os.write(w, b"hello\n")
    os.close(w)
    _run_until(loop, lambda: io.pipe_w < 0)
    assert os.read(child_in, 100) == b"hello\n"
    assert os.read(child_in, 100) == b""  # EOF reached the process's end
    io.spawned()
    io.close()


def test_close_io_ends_input_while_the_client_keeps_the_fifo_open(tmp_path):
    loop = Loop()
    fin = _fifo(tmp_path, "in")
    io = Stdio(loop, fin, "", "", False)
    w = os.open(fin, os.O_WRONLY)
    os.write(w, b"abc")
    _run_until(loop, lambda: False, 0.05)
    io.close_stdin()
    r = io.child_fds()[0]
    assert os.read(r, 10) == b"abc" and os.read(r, 10) == b""
    os.close(w)
    io.close()


def test_outputs_fifo_file_and_null(tmp_path):
    loop = Loop()
    fout = _fifo(tmp_path, "out")
    reader = os.open(fout, os.O_RDONLY | os.O_NONBLOCK)
    log = tmp_path / "d" / "err.log"
    io = Stdio(loop, "", fout, f"file://{log}", False)
    _, out, err = io.child_fds()
    os.write(out, b"to-fifo")
    os.write(err, b"to-file")
    io.spawned()
    assert os.read(reader, 100) == b"to-fifo"
    assert log.read_bytes() == b"to-file"
    io.close()
    os.close(reader)


def test_unknown_scheme_is_refused_by_name(tmp_path):
    with pytest.raises(StdioError, match="unsupported STDIO scheme binary: binary:///usr/bin/logger"):
        Stdio(Loop(), "", "binary:///usr/bin/logger", "", False)


def test_missing_fifo_names_its_path(tmp_path):
    with pytest.raises(StdioError, match=f"open {tmp_path}/nope: No such file"):
        Stdio(Loop(), "", str(tmp_path / "nope"), "", False)


def test_metrics_from_runtime_stats():
    s = empty_stats()
    s["pids"] = {"current": 3, "limit": 64}
    s["cpu"]["usage"].update(total=5_000_000, kernel=1_000_000, user=4_000_000, percpu=[2_000_000, 3_000_000])
    s["memory"]["usage"].update(usage=4096, limit=1 << 30, max=8192, failcnt=2)
    s["memory"]["cache"] = 100
    v1 = service.metrics_v1(s)
    assert (v1.pids.current, v1.pids.limit) == (3, 64)
    assert list(v1.cpu.usage.per_cpu) == [2_000_000, 3_000_000] and v1.cpu.usage.total == 5_000_000
    assert (v1.memory.usage.usage, v1.memory.usage.limit, v1.memory.usage.failcnt) == (4096, 1 << 30, 2)
    v2 = service.metrics_v2(s)
    assert (v2.cpu.usage_usec, v2.cpu.user_usec, v2.cpu.system_usec) == (5000, 4000, 1000)
    assert (v2.memory.usage, v2.memory.usage_limit) == (4096, 1 << 30)
