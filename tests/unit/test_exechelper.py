"""pyrunc-exec (runtime/exechelper.c) run directly, without a container:
its command lines, the start-socket protocol `pyrunc start` relies on,
startContainer hooks, exec failures, and the sealed memfd it runs from."""
import fcntl
import json
import os
import socket
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from runtime import exechelper  # noqa: E402

pytestmark = pytest.mark.skipif(not os.path.exists(exechelper.PATH), reason="pyrunc-exec not built (setup.sh)")


def _start(tmp_path, hooks, path, args, env=None):
    """Run mode "start" on a listening socket; connect as `pyrunc start` does
    and return (what the connection got, exit status)."""
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sp = str(tmp_path / f"start-{os.urandom(4).hex()}.sock")
    lsock.bind(sp)
    lsock.listen(1)
    fd = lsock.fileno()
    argv = exechelper.start_argv(fd, None, json.dumps({"id": "c1", "status": "running"}), hooks, path, args)
    p = subprocess.Popen(argv, executable=exechelper.PATH, pass_fds=[fd], env=env or {"X": "1"},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lsock.close()
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect(sp)
    got = b""
    while chunk := c.recv(4096):
        got += chunk
    c.close()
    out, err = p.communicate(timeout=20)
    return got, p.returncode, out


def test_start_execs_the_process_with_its_environment(tmp_path):
    got, rc, out = _start(tmp_path, [], "/bin/sh", ["sh", "-c", 'echo "x=$X"'], env={"X": "42"})
    assert got == b"0"  # "0", then EOF at exec: what `pyrunc start` reads as success
    assert rc == 0 and out == b"x=42\n"


def test_start_runs_hooks_in_order_with_the_state(tmp_path):
    log = tmp_path / "log"
    hooks = [{"path": "/bin/sh", "args": ["sh", "-c", f'echo "one $V $(cat)" >> {log}'], "env": ["V=v1"]},
             {"path": "/bin/sh", "args": ["sh", "-c", f"echo two >> {log}"]}]
    got, rc, _ = _start(tmp_path, hooks, "/bin/true", ["true"])
    assert got == b"0" and rc == 0
    lines = log.read_text().splitlines()
    assert lines[0].startswith("one v1 {") and json.loads(lines[0][len("one v1 "):])["id"] == "c1"
    assert lines[1] == "two"


def test_start_hook_failure_is_reported_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran"
    hooks = [{"path": "/bin/sh", "args": ["sh", "-c", "echo out; echo err >&2; exit 3"]}]
    got, rc, _ = _start(tmp_path, hooks, "/bin/touch", ["touch", str(marker)])
    assert got == b"0Eerror running hook #0: startContainer /bin/sh: exit status 3, stdout: out, stderr: err"
    assert rc == 1 and not marker.exists()


def test_start_hook_killed_by_a_signal_is_worded_as_go_does(tmp_path):
    got, rc, _ = _start(tmp_path, [{"path": "/bin/sh", "args": ["sh", "-c", "kill -SYS $$"]}], "/bin/true", ["true"])
    assert got.startswith(b"0Eerror running hook #0: startContainer /bin/sh: signal: bad system call, stdout: ")


def test_start_hook_timeout_and_missing_hook(tmp_path):
    t0 = time.monotonic()
    got, rc, _ = _start(tmp_path, [{"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}],
                        "/bin/true", ["true"])
    assert got == b"0Eerror running hook #0: startContainer /bin/sleep: hook ran past specified timeout of 1.0s" and rc == 1
    assert time.monotonic() - t0 < 10
    got, rc, _ = _start(tmp_path, [{"path": "/nonexistent/hook"}], "/bin/true", ["true"])
    assert got == b"0Eerror running hook #0: startContainer /nonexistent/hook: no such file or directory" and rc == 1


def test_start_exec_failure_names_the_path(tmp_path):
    got, rc, _ = _start(tmp_path, [], str(tmp_path), ["x"])
    assert got.startswith(b"0Eexec " + str(tmp_path).encode() + b": permission denied")
    assert rc == 127


def test_spawn_reports_the_pid_and_execs_on_the_go_message():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    err_r, err_w = os.pipe()
    argv = exechelper.spawn_argv(b.fileno(), err_w, None, False, "/bin/sh", ["sh", "-c", "echo $$; exit 7"])
    p = subprocess.Popen(argv, executable=exechelper.PATH, pass_fds=[b.fileno(), err_w], env={},
                         stdout=subprocess.PIPE)
    b.close()
    os.close(err_w)
    assert p.wait(10) == 0  # the spawner itself exits at once
    msg = json.loads(a.recv(512))
    assert msg["type"] == "init-pid" and msg["pid"] > 0
    # The process is our child (CLONE_PARENT) and waits for the message.
    a.send(b'{"type": "applied"}')
    _, status = os.waitpid(msg["pid"], 0)
    assert os.waitstatus_to_exitcode(status) == 7
    assert int(p.stdout.read()) == msg["pid"]
    assert os.read(err_r, 100) == b""  # EOF without a message: exec succeeded
    a.close()


def test_spawn_exec_failure_goes_to_the_error_pipe():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    err_r, err_w = os.pipe()
    argv = exechelper.spawn_argv(b.fileno(), err_w, None, False, "/nonexistent", ["x"])
    p = subprocess.Popen(argv, executable=exechelper.PATH, pass_fds=[b.fileno(), err_w], env={})
    b.close()
    os.close(err_w)
    p.wait(10)
    pid = json.loads(a.recv(512))["pid"]
    a.send(b'{"type": "applied"}')
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 127
    assert os.read(err_r, 200).startswith(b"exec /nonexistent: no such file or directory")


def test_helper_refuses_unknown_usage():
    p = subprocess.run([exechelper.PATH, "bogus"], capture_output=True)
    assert p.returncode == 2 and b"run by pyrunc only" in p.stderr


def test_sealed_fd_cannot_be_changed():
    fd = exechelper.sealed_fd(20)
    try:
        assert fd >= 20
        assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        F_GET_SEALS, F_SEAL_SEAL, F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_WRITE = 1034, 1, 2, 4, 8
        want = F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE
        assert fcntl.fcntl(fd, F_GET_SEALS) & want == want
        with open(exechelper.PATH, "rb") as f:
            assert os.pread(fd, 1 << 20, 0) == f.read()
        w = os.open(f"/proc/self/fd/{fd}", os.O_WRONLY)
        try:
            with pytest.raises(PermissionError):
                os.write(w, b"x")
        finally:
            os.close(w)
        with pytest.raises(PermissionError):
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)
