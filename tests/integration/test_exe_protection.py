"""CVE-2019-5736 class: a container process that holds CAP_SYS_PTRACE must
never get a handle to a host executable that it can later reopen for
writing, at any moment of create, start and exec.

The attacker is tests/integration/exe_hunter.c, run inside the container.
The runtime under attack is pyrunc started by a *canary* interpreter: a
copy of the venv's Python in a temp dir (never the host's own binary), so
that a successful attack only ever reaches the copy. The hunter reports
every /proc/PID/exe it could open and every handle it could reopen for
writing."""
import os
import shutil
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
MARKER = "canary-interp"

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def hunter_bin(tmp_path_factory):
    gcc = shutil.which("gcc")
    if not gcc:
        pytest.skip("needs gcc and a static libc")
    out = tmp_path_factory.mktemp("hunter") / "exe_hunter"
    subprocess.run([gcc, "-static", "-O2", "-o", str(out), os.path.join(HERE, "exe_hunter.c")],
                   check=True, capture_output=True)
    return str(out)


@pytest.fixture(scope="module")
def canary_pyrunc(tmp_path_factory):
    """A pyrunc launcher whose interpreter is a private copy of Python."""
    d = tmp_path_factory.mktemp(MARKER)
    venv = d / "venv"
    subprocess.run([sys._base_executable, "-m", "venv", "--copies", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python3"
    assert not os.path.islink(py)
    launcher = d / "pyrunc"
    launcher.write_text(f"#!{py} -ISXutf8\nimport sys\nsys.path.insert(0, {REPO!r})\n"
                        "from runtime.cli import main\nmain()\n")
    launcher.chmod(0o755)
    with open(py, "rb") as f:
        digest = hash(f.read())
    yield str(launcher)
    with open(py, "rb") as f:
        assert hash(f.read()) == digest, "the canary interpreter was modified"


def _rootfs_with(tmp, busybox_rootfs, hunter_bin):
    root = os.path.join(tmp, "rootfs")
    shutil.copytree(busybox_rootfs, root, symlinks=True)
    shutil.copy2(hunter_bin, os.path.join(root, "bin", "exe_hunter"))
    os.makedirs(os.path.join(root, "out"), exist_ok=True)
    return root


def _attacker(cfg):
    """CAP_SYS_PTRACE in every set; a writable rootfs for the hunter's report."""
    cfg["root"]["readonly"] = False
    c = cfg["process"]["capabilities"]
    for k in ("bounding", "effective", "permitted"):
        c[k] = sorted(set(c.get(k) or []) | {"CAP_SYS_PTRACE"})


def _events(outfile, deadline=30):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if os.path.exists(outfile):
            with open(outfile) as f:
                text = f.read()
            if text.endswith("DONE\n"):
                return text.splitlines()
        time.sleep(0.05)
    raise AssertionError(f"the hunter did not finish: {outfile}")


def _wait_ready(outfile):
    end = time.monotonic() + 20
    while not (os.path.exists(outfile) and open(outfile).read().startswith("READY")):
        assert time.monotonic() < end, "the hunter did not start"
        time.sleep(0.02)


def _assert_no_host_exe(events):
    held = [e for e in events if e.startswith(("HELD", "WRITABLE"))]
    assert not held, f"the container got handles to the runtime's interpreter: {held[:4]}"


def test_created_container_init_exe_is_not_the_host_interpreter(rt, hunter_bin, canary_pyrunc):
    """While a container is `created`, its pid 1 must not expose the
    runtime's executable through /proc/1/exe, and after start nothing the
    hunter kept can be reopened for writing."""
    from bundles import Runtime
    c = Runtime(rt.tmp, rt.rootfs, binary=canary_pyrunc)
    root = _rootfs_with(rt.tmp, rt.rootfs, hunter_bin)
    b = c.bundle(["sleep", "30"], rootfs=root, mutate=_attacker)
    cid = c.new_id()
    c("create", "--bundle", b, cid, check=True)
    try:
        c("exec", "-d", cid, "/bin/exe_hunter", "/out/created.txt", "4", MARKER, check=True)
        outfile = os.path.join(root, "out", "created.txt")
        _wait_ready(outfile)
        time.sleep(1)  # the hunter scans while the container is created
        c("start", cid, check=True)
        events = _events(outfile)
    finally:
        c("delete", "--force", cid)
    seen1 = [e for e in events if e.startswith("SEEN 1 ")]
    assert seen1, f"the hunter never saw pid 1, the check proves nothing: {events}"
    _assert_no_host_exe(events)


def test_exec_process_exe_is_never_the_host_interpreter(rt, hunter_bin, canary_pyrunc):
    """Every `exec` into a running container: the process that enters the
    container's pid namespace never exposes the runtime's executable."""
    from bundles import Runtime
    c = Runtime(rt.tmp, rt.rootfs, binary=canary_pyrunc)
    root = _rootfs_with(rt.tmp, rt.rootfs, hunter_bin)
    b = c.bundle(["/bin/exe_hunter", "/out/exec.txt", "8", MARKER], rootfs=root, mutate=_attacker)
    cid = c.new_id()
    c("run", "-d", "--bundle", b, cid, check=True)
    try:
        outfile = os.path.join(root, "out", "exec.txt")
        _wait_ready(outfile)
        n = 0
        end = time.monotonic() + 6
        while time.monotonic() < end:
            c("exec", cid, "/bin/true", check=True)
            n += 1
        events = _events(outfile)
    finally:
        c("delete", "--force", cid)
    seen = [e for e in events if e.startswith("SEEN") and not e.startswith("SEEN 1 ")]
    assert seen, f"the hunter saw none of {n} exec'd processes, the check proves nothing: {events[:5]}"
    _assert_no_host_exe(events)


def _join_pidns_of(pid):
    def mutate(cfg):
        for n in cfg["linux"]["namespaces"]:
            if n["type"] == "pid":
                n["path"] = f"/proc/{pid}/ns/pid"
    return mutate


def test_joining_a_pid_namespace_never_exposes_the_interpreter(rt, hunter_bin, canary_pyrunc, tmp_path):
    """A container that joins another's pid namespace (a pod sharing one):
    the processes already there watch its whole create, createContainer
    hooks and start, and never see the runtime's interpreter."""
    from bundles import Runtime
    c = Runtime(rt.tmp, rt.rootfs, binary=canary_pyrunc)
    root = _rootfs_with(rt.tmp, rt.rootfs, hunter_bin)
    a = c.bundle(["/bin/exe_hunter", "/out/pod.txt", "8", MARKER], rootfs=root, mutate=_attacker)
    aid = c.new_id()
    c("run", "-d", "--bundle", a, aid, check=True)
    try:
        outfile = os.path.join(root, "out", "pod.txt")
        _wait_ready(outfile)
        apid = c.state(aid)["pid"]

        def joined(cfg):
            _join_pidns_of(apid)(cfg)
            hook = {"path": "/bin/sh", "args": ["sh", "-c", "true"]}
            cfg["hooks"] = {"createContainer": [hook], "startContainer": [hook]}
        b = c.bundle(["sleep", "0.5"], mutate=joined)  # ends before pid 1 of the namespace
        bid = c.new_id()
        for _ in range(3):
            c("run", "--bundle", b, bid, check=True, timeout=30)
        events = _events(outfile)
    finally:
        c("delete", "--force", aid)
    seen = [e for e in events if e.startswith("SEEN") and not e.startswith("SEEN 1 ")]
    # pid 1 is the hunter's own container; every other pid is the joined one's
    assert len(seen) >= 3, f"the hunter hardly saw the joined container, the check proves little: {seen}"
    _assert_no_host_exe(events)


def test_container_joining_a_pid_namespace_works(rt, tmp_path):
    """Functional side of the joined pid namespace: the container's /proc
    is that namespace's, its hooks run in it, the state names its init, and
    exec, kill and delete work."""
    a = rt.bundle(["sleep", "60"])
    aid = rt.new_id()
    rt("run", "-d", "--bundle", a, aid, check=True)
    apid = rt.state(aid)["pid"]
    ns = os.readlink(f"/proc/{apid}/ns/pid")
    out = tmp_path / "out"
    out.mkdir()
    os.chmod(out, 0o777)

    def joined(cfg):
        _join_pidns_of(apid)(cfg)
        cfg["root"]["readonly"] = False
        cfg["mounts"].append({"destination": "/out", "type": "bind", "source": str(out), "options": ["rbind"]})
        cfg["hooks"] = {
            "createContainer": [{"path": "/bin/sh", "args": ["sh", "-c", f"readlink /proc/self/ns/pid > {out}/cc"]}],
            "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "readlink /proc/self/ns/pid > /out/sc"]}],
        }
    b = rt.bundle(["sh", "-c", "ls /proc | grep -c '^[0-9]' > /out/n; exec sleep 60"], mutate=joined)
    bid = rt.new_id()
    rt("create", "--bundle", b, bid, check=True)
    st = rt.state(bid)
    assert os.readlink(f"/proc/{st['pid']}/ns/pid") == ns
    assert os.readlink(f"/proc/{st['pid']}/exe").startswith("/memfd:pyrunc-exec")
    rt("start", bid, check=True)
    deadline = time.monotonic() + 10
    while not (out / "n").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert (out / "cc").read_text().strip() == ns
    assert (out / "sc").read_text().strip() == ns
    time.sleep(0.2)
    assert int((out / "n").read_text()) >= 2  # its own shell and container A's sleep
    e = rt("exec", bid, "sh", "-c", "readlink /proc/self/ns/pid", check=True)
    assert e.stdout.strip() == ns
    rt("kill", bid, "KILL", check=True)
    rt("delete", "--force", bid, check=True)
    rt("delete", "--force", aid, check=True)
