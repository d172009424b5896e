"""pyimg's container verbs beside a real docker 20.10 engine, the same commands on both.

test_docker.py's private dockerd (Debian's docker.io, a private containerd, a local registry
serving busybox, `--bridge=none --iptables=false --ip-masq=false`) is reused through its `dk`
fixture; the same busybox is pulled from that registry into a temp pyimg store. Every
container on both sides runs with `--network none`. The assertions compare docker's answer
with pyimg's (exit statuses, columns, shapes of human strings, split of stdout/stderr);
where pyimg differs and the fix is not a few lines, the test is `xfail(strict=True)` with
the difference in its reason.

Skips, as test_docker.py does, without root, docker.io or containerd.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from containerd_util import mounts_under, short_tmpdir, unmount_all  # noqa: E402
from registry_util import run_pyimg  # noqa: E402
from test_docker import DOCKER, DOCKERD, dk  # noqa: E402,F401  (dk: the private dockerd fixture)

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(DOCKERD is None or DOCKER is None,
                       reason="dockerd/docker not installed: apt-get install -y docker.io"),
    pytest.mark.skipif(shutil.which("containerd") is None, reason="containerd is not installed"),
    pytest.mark.skipif(shutil.which("conmon") is None, reason="conmon is not installed"),
    pytest.mark.timeout(300),
]

NET = ("--network", "none")
HEADER = ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]


class Pair:
    """The same command line given to docker and to pyimg."""

    def __init__(self, dk, root):
        self.dk, self.root, self.image = dk, root, dk.image

    def docker(self, *args, **kw):
        return self.dk.docker(*args, **kw)

    def pyimg(self, *args, input=None, timeout=120):
        return run_pyimg(self.root, *args, input=input, timeout=timeout)

    def both(self, *args, **kw):
        return self.docker(*args, **kw), self.pyimg(*args, **kw)

    def run(self, *args):
        """`run --network none ARGS` on both (image named by the caller)."""
        return self.both("run", *NET, *args)


@pytest.fixture(scope="module")
def pair(dk):  # noqa: F811
    root = short_tmpdir("pvd")
    p = Pair(dk, root)
    try:
        r = p.pyimg("pull", dk.image, timeout=180)
        assert r.returncode == 0, r.stderr
        yield p
    finally:
        ids = p.pyimg("ps", "-aq").stdout.split()
        if ids:
            p.pyimg("rm", "-f", "-v", *ids)
        for v in p.pyimg("volume", "ls", "-q").stdout.split():
            p.pyimg("volume", "rm", "-f", v)
        left = p.pyimg("ps", "-aq").stdout.split()
        mounts = mounts_under(root)
        unmount_all(root)
        shutil.rmtree(root, ignore_errors=True)
        import hashlib
        run_dir = os.path.join("/run/pyimg", hashlib.sha256(os.path.realpath(root).encode()).hexdigest()[:12])
        shutil.rmtree(run_dir, ignore_errors=True)
        assert left == [] and mounts == [], (left, mounts)


@pytest.fixture
def names(pair, request):
    """Container names a test uses on both sides; removed from both after it."""
    used = []

    def make(tag):
        n = f"edk-{tag}-{os.getpid()}"
        used.append(n)
        return n
    yield make
    for n in used:
        pair.docker("rm", "-f", "-v", n)
        pair.pyimg("rm", "-f", "-v", n)
    for n in used:
        assert n not in pair.docker("ps", "-a", "--format", "{{.Names}}").stdout.split()
        assert n not in pair.pyimg("ps", "-a", "--format", "{{.Names}}").stdout.split()


def _codes(d, p):
    return (d.returncode, p.returncode), (d.stderr, p.stderr)


# ------------------------------------------------------------------ exit statuses

@pytest.mark.parametrize("cmd,code,words", [
    (["sh", "-c", "exit 3"], 3, None),
    (["nosuchcmd"], 127, 'exec: "nosuchcmd": executable file not found in $PATH'),
    (["/etc"], 126, 'exec: "/etc": permission denied'),
    (["/etc/passwd"], 126, 'exec: "/etc/passwd": permission denied'),
])
def test_run_exit_status(pair, cmd, code, words):
    d, p = pair.run("--rm", pair.image, *cmd)
    assert (d.returncode, p.returncode) == (code, code), (d.stderr, p.stderr)
    if words is None:
        assert (d.stderr, p.stderr) == ("", "")
    else:
        # docker wraps the runtime's words: "docker: Error response from daemon: failed to create
        # shim task: OCI runtime create failed: runc create failed: unable to start container
        # process: <words>: unknown."; pyimg: "pyimg: error: OCI runtime create failed: <words>"
        for r in (d, p):
            assert "OCI runtime create failed" in r.stderr and words in r.stderr, r.stderr


def test_unknown_flag_is_125(pair):
    d, p = pair.both("run", "--nope", pair.image, "true")
    assert (d.returncode, p.returncode) == (125, 125), (d.stderr, p.stderr)
    assert "unknown flag: --nope" in d.stderr and "unknown flag: --nope" in p.stderr, (d.stderr, p.stderr)


def test_missing_image_from_unreachable_registry_is_125(pair):
    d, p = pair.run("--rm", "127.0.0.1:1/nosuch/image:latest", "true")
    assert (d.returncode, p.returncode) == (125, 125), (d.stderr, p.stderr)
    assert "Unable to find image '127.0.0.1:1/nosuch/image:latest' locally" in d.stderr
    assert "Unable to find image '127.0.0.1:1/nosuch/image:latest' locally" in p.stderr


def test_exec_of_missing_command(pair, names):
    n = names("exec")
    d, p = pair.run("-d", "--name", n, pair.image, "sleep", "300")
    assert (d.returncode, p.returncode) == (0, 0), (d.stderr, p.stderr)
    d, p = pair.both("exec", n, "nosuchcmd")
    # docker 20.10 with runc 1.1: the runtime's exec fails and the client exits 126 (not 127),
    # printing the runtime's error on its stdout; pyimg keeps errors on stderr
    assert d.returncode == 126, (d.stdout, d.stderr)
    assert p.returncode == d.returncode, (d.stdout, p.stderr)
    assert 'exec: "nosuchcmd": executable file not found in $PATH' in d.stdout
    assert 'exec: "nosuchcmd": executable file not found in $PATH' in p.stderr
    for arg0, words in (("/no/such/path", "stat /no/such/path: no such file or directory"),
                        ("/etc", "permission denied"), ("/etc/passwd", "permission denied")):
        d, p = pair.both("exec", n, arg0)
        assert d.returncode == 126, (d.stdout, d.stderr)
        assert p.returncode == d.returncode, (d.stdout, p.stderr)
        assert f'OCI runtime exec failed: exec failed: unable to start container process: exec: "{arg0}": {words}' in d.stdout
        assert f'OCI runtime exec failed: exec: "{arg0}": {words}' in p.stderr
    d, p = pair.both("exec", n, "sh", "-c", "exit 5")
    assert (d.returncode, p.returncode) == (5, 5), (d.stderr, p.stderr)


def test_rm_running_without_force(pair, names):
    n = names("rmrun")
    d, p = pair.run("-d", "--name", n, pair.image, "sleep", "300")
    assert (d.returncode, p.returncode) == (0, 0), (d.stderr, p.stderr)
    d, p = pair.both("rm", n)
    assert (d.returncode, p.returncode) == (1, 1), (d.stderr, p.stderr)
    assert "You cannot remove a running container" in d.stderr
    assert "You cannot remove a running container" in p.stderr
    # both still run it
    for r in pair.both("inspect", "-f", "{{.State.Running}}", n):
        assert r.stdout == "true\n"


@pytest.mark.parametrize("verb", ["stop", "rm", "logs"])
def test_missing_name(pair, verb):
    n = f"edk-missing-{os.getpid()}"
    d, p = pair.both(verb, n)
    assert (d.returncode, p.returncode) == (1, 1), (d.stderr, p.stderr)
    assert f"No such container: {n}" in d.stderr
    assert f"No such container: {n}" in p.stderr


# ------------------------------------------------------------------ ps

def _ps_line(out, name):
    return next((ln for ln in out.splitlines() if ln.rstrip().endswith(name)), None)


def test_ps_columns_and_status_shapes(pair, names):
    up, ex, cr = names("up"), names("ex"), names("cr")
    for side in (pair.docker, pair.pyimg):
        assert side("run", "-d", *NET, "--name", up, pair.image, "sleep", "300").returncode == 0
        assert side("run", *NET, "--name", ex, pair.image, "sh", "-c", "exit 3").returncode == 3
        assert side("create", *NET, "--name", cr, pair.image, "true").returncode == 0
    d, p = pair.both("ps", "-a")
    assert d.returncode == p.returncode == 0, (d.stderr, p.stderr)
    dh, ph = d.stdout.splitlines()[0], p.stdout.splitlines()[0]
    assert re.split(r"\s{2,}", dh.strip()) == HEADER
    assert re.split(r"\s{2,}", ph.strip()) == HEADER
    # same widths up to CREATED (same image and commands on both); CREATED's width follows
    # its texts ("1 second ago", "Less than a second ago"), which timing decides
    assert ph[:ph.index("CREATED")] == dh[:dh.index("CREATED")]
    for out in (d.stdout, p.stdout):
        assert "Up " in _ps_line(out, up)
        assert re.search(r"Exited \(3\) .* ago", _ps_line(out, ex)), out
        assert re.search(r"\sCreated\s", _ps_line(out, cr)), out
    d, p = pair.both("ps", "-a", "--format", "{{.Names}} {{.Status}}")
    shapes = {up: r"Up (Less than a second|\d+ seconds?|About a minute)",
              ex: r"Exited \(3\) (Less than a second|\d+ seconds?|About a minute) ago",
              cr: r"Created"}
    for out in (d.stdout, p.stdout):
        got = {ln.split(" ", 1)[0]: ln.split(" ", 1)[1] for ln in out.splitlines() if ln.startswith("edk-")}
        for n, shape in shapes.items():
            assert re.fullmatch(shape, got[n]), (n, got)
    d, p = pair.both("ps", "-q")
    for out in (d.stdout, p.stdout):
        ids = out.split()
        assert ids and all(re.fullmatch(r"[0-9a-f]{12}", i) for i in ids), out
    did = pair.docker("inspect", "-f", "{{.Id}}", up).stdout.strip()[:12]
    pid = pair.pyimg("inspect", "-f", "{{.Id}}", up).stdout.strip()[:12]
    assert did in d.stdout.split() and pid in p.stdout.split()


# ------------------------------------------------------------------ inspect

def test_inspect_state_and_cmd(pair, names):
    cr, up, ex = names("icr"), names("iup"), names("iex")
    for side in (pair.docker, pair.pyimg):
        assert side("create", *NET, "--name", cr, pair.image, "echo", "a b", "c").returncode == 0
        assert side("run", "-d", *NET, "--name", up, pair.image, "sleep", "300").returncode == 0
        assert side("run", *NET, "--name", ex, pair.image, "sh", "-c", "exit 3").returncode == 3
    fmt = "{{.State.Status}} {{.State.ExitCode}} {{.State.Running}}"
    want = {cr: "created 0 false\n", up: "running 0 true\n", ex: "exited 3 false\n"}
    for n, w in want.items():
        d, p = pair.both("inspect", "-f", fmt, n)
        assert (d.stdout, p.stdout) == (w, w), (n, d.stderr, p.stderr)
    d, p = pair.both("inspect", "-f", "{{json .Config.Cmd}}", cr)
    assert d.stdout == '["echo","a b","c"]\n'
    assert p.stdout == d.stdout


# ------------------------------------------------------------------ logs

def test_logs_split_tail_timestamps(pair, names):
    n = names("logs")
    # the pause orders the two lines in the log: stdout and stderr are separate pipes
    d, p = pair.run("--name", n, pair.image, "sh", "-c", "echo out; sleep 0.2; echo err >&2")
    assert (d.returncode, p.returncode) == (0, 0), (d.stderr, p.stderr)
    assert (d.stdout, d.stderr) == ("out\n", "err\n")
    assert (p.stdout, p.stderr) == (d.stdout, d.stderr)
    d, p = pair.both("logs", n)
    assert (d.stdout, d.stderr) == ("out\n", "err\n")
    assert (p.stdout, p.stderr) == (d.stdout, d.stderr)
    d, p = pair.both("logs", "--tail", "1", n)
    assert (d.stdout, d.stderr) == ("", "err\n")
    assert (p.stdout, p.stderr) == (d.stdout, d.stderr)
    d, p = pair.both("logs", "-t", n)
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z "
    for r in (d, p):
        assert re.fullmatch(stamp + "out\n", r.stdout), r.stdout
        assert re.fullmatch(stamp + "err\n", r.stderr), r.stderr


# ------------------------------------------------------------------ run options

def test_run_options(pair):
    d, p = pair.run("--rm", "--entrypoint", "echo", pair.image, "a", "b")
    assert d.stdout == "a b\n" and p.stdout == d.stdout, (d.stderr, p.stderr)
    d, p = pair.run("--rm", "-w", "/new/dir", pair.image, "pwd")
    assert d.stdout == "/new/dir\n" and p.stdout == d.stdout, (d.stderr, p.stderr)
    d, p = pair.run("--rm", "-e", "A=1", pair.image, "sh", "-c", "echo $A")
    assert d.stdout == "1\n" and p.stdout == d.stdout, (d.stderr, p.stderr)


def test_rm_leaves_nothing_in_ps(pair):
    n = f"edk-rm-{os.getpid()}"
    d, p = pair.run("--rm", "--name", n, pair.image, "true")
    assert (d.returncode, p.returncode) == (0, 0), (d.stderr, p.stderr)
    time.sleep(0.5)
    for r in pair.both("ps", "-a", "--format", "{{.Names}}"):
        assert r.returncode == 0 and n not in r.stdout.split(), r.stdout


# ------------------------------------------------------------------ volumes

def test_volumes(pair, names):
    v = f"edkvol{os.getpid()}"
    try:
        d, p = pair.both("volume", "create", v)
        assert (d.returncode, p.returncode) == (0, 0), (d.stderr, p.stderr)
        assert d.stdout == f"{v}\n" and p.stdout == d.stdout
        d, p = pair.both("volume", "ls")
        assert d.stdout.splitlines()[0].split() == ["DRIVER", "VOLUME", "NAME"]
        assert p.stdout.splitlines()[0] == d.stdout.splitlines()[0]
        assert any(ln.split() == ["local", v] for ln in p.stdout.splitlines()), p.stdout
        d, p = pair.both("volume", "inspect", "-f", "{{.Name}} {{.Driver}} {{.Scope}}", v)
        assert d.stdout == f"{v} local local\n" and p.stdout == d.stdout, (d.stderr, p.stderr)
        n = names("vol")
        d, p = pair.run("-d", "--name", n, "-v", f"{v}:/data", pair.image, "sleep", "300")
        assert (d.returncode, p.returncode) == (0, 0), (d.stderr, p.stderr)
        d, p = pair.both("volume", "rm", v)
        assert (d.returncode, p.returncode) == (1, 1), (d.stderr, p.stderr)
        assert "volume is in use" in d.stderr and "volume is in use" in p.stderr, (d.stderr, p.stderr)
        pair.both("rm", "-f", n)
        d, p = pair.both("volume", "rm", v)
        assert (d.returncode, p.returncode) == (0, 0), (d.stderr, p.stderr)
    finally:
        pair.both("volume", "rm", "-f", v)
