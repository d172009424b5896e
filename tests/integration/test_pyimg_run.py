"""Bundles from `pyimg unpack` run by runc, and `pyimg run` end to end."""
import json
import re
import time
import os
import shutil
import socket
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from registry_util import busybox_layer, push_image, run_pyimg, start_registry, write_pyimg_config  # noqa: E402
from test_unpack_support import E, GZIP, Layout, tar  # noqa: E402

from imagetool import bundle as bundlemod  # noqa: E402

REF = "docker.io/library/busybox:latest"
RUNC = shutil.which("runc")
PYRUNC = shutil.which("pyrunc") or os.path.join(os.path.dirname(sys.executable), "pyrunc")
DOCKER_CAPS_MASK = "00000000a80425fb"  # docker's 14 default capabilities

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.skipif(RUNC is None, reason="runc is not installed")]


def _extra_layer():
    return tar(E("etc", "dir"),
               E("etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\nbob:x:1234:1235::/home/bob:/bin/sh\n"),
               E("etc/group", data=b"root:x:0:\nbob:x:1235:\nextra:x:4000:bob\n"),
               E("home", "dir"), E("home/bob", "dir", uid=1234, gid=1235),
               E("data", "dir"), E("data/seed", data=b"seeded from the image\n"))


@pytest.fixture
def store(tmp_path):
    lay = Layout(tmp_path / "store")
    lay.add_image([REF], [busybox_layer(), _extra_layer()], media_type=GZIP,
                  config={"Cmd": ["echo", "hi"], "Env": ["PATH=/bin", "FOO=from-image"], "WorkingDir": "/tmp",
                          "Volumes": {"/data": {}}, "Labels": {"purpose": "test"}})
    yield lay
    for rec in bundlemod.list_bundles(lay.root):
        bundlemod.remove_bundle(lay.root, rec["bundle"])


def _state_ids(runtime):
    r = subprocess.run([runtime, "list", "-q"], capture_output=True, text=True)
    return set(r.stdout.split())


def _run_runtime(runtime, bundle, cid, args=None):
    """Run a bundle in the foreground with `runtime run`; always deletes the container."""
    if args is not None:
        cfg = json.load(open(os.path.join(bundle, "config.json")))
        cfg["process"]["args"] = args
        json.dump(cfg, open(os.path.join(bundle, "config.json"), "w"))
    try:
        return subprocess.run([runtime, "run", "--bundle", str(bundle), cid], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=120)
    finally:
        subprocess.run([runtime, "delete", "--force", cid], capture_output=True)


@pytest.mark.parametrize("mode", ["copy", "overlay"])
def test_runc_runs_an_unpacked_bundle(store, tmp_path, mode):
    b = tmp_path / "b"
    r = run_pyimg(store.root, "unpack", "--mode", mode, "busybox", b)
    assert r.returncode == 0, r.stderr
    cid = f"pyimg-test-{mode}-{os.getpid()}"
    r = _run_runtime(RUNC, b, cid)
    assert (r.returncode, r.stdout) == (0, "hi\n"), r.stderr
    # Docker's capability set and a seccomp filter are in force; volume seeded
    r = _run_runtime(RUNC, b, cid, ["sh", "-c", "grep -E '^(CapBnd|CapEff|Seccomp):' /proc/self/status; "
                                                "cat /data/seed; echo $FOO; pwd"])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split("\n")
    assert lines[0].split() == ["CapEff:", DOCKER_CAPS_MASK]  # /proc lists CapEff before CapBnd
    assert lines[1].split() == ["CapBnd:", DOCKER_CAPS_MASK]
    assert lines[2].split() == ["Seccomp:", "2"]
    assert lines[3:6] == ["seeded from the image", "from-image", "/tmp"]
    # the filter denies what Docker's profile denies (unshare) with EPERM,
    # and only the filter does: without it the same call succeeds
    probe = ["sh", "-c", "busybox unshare -U true 2>&1; echo rc=$?"]
    r = _run_runtime(RUNC, b, cid, probe)
    assert "Operation not permitted" in r.stdout and r.stdout.endswith("rc=1\n"), r.stdout + r.stderr
    cfg = json.load(open(b / "config.json"))
    seccomp = cfg["linux"].pop("seccomp")
    json.dump(cfg, open(b / "config.json", "w"))
    r = _run_runtime(RUNC, b, cid, probe)
    assert r.stdout == "rc=0\n", r.stdout + r.stderr
    cfg["linux"]["seccomp"] = seccomp
    json.dump(cfg, open(b / "config.json", "w"))
    # the volume lives outside the rootfs
    r = _run_runtime(RUNC, b, cid, ["sh", "-c", "echo written > /data/new"])
    assert r.returncode == 0, r.stderr
    assert not (b / "rootfs/data/new").exists()
    assert cid not in _state_ids(RUNC)
    assert run_pyimg(store.root, "rm-bundle", b).returncode == 0
    assert not b.exists()


@pytest.fixture
def runtime_env(store):
    yield {"PYIMG_RUNTIME": RUNC}
    assert not [n for n in _state_ids(RUNC) if n.startswith("pyimg-run-")]


def test_pyimg_run_passes_exit_code_and_options(store, runtime_env):
    name = f"pyimg-run-{os.getpid()}"
    r = run_pyimg(store.root, "run", "--rm", "--network", "host", "--name", name, "-e", "FOO=cli", "-e", "NEW=1", "-w", "/home/bob",
                  "-u", "bob", "busybox", "sh", "-c",
                  "echo $FOO $NEW; pwd; id -u; id -g; id -G; cat /etc/hostname; test $(hostname) = $(cat /etc/hostname) || exit 9; "
                  "grep -c localhost /etc/hosts; test -s /etc/resolv.conf && echo resolv; exit 7",
                  env=runtime_env)
    assert r.returncode == 7, r.stderr
    # --network host: the host's hostname, as docker does
    assert r.stdout.split("\n") == ["cli 1", "/home/bob", "1234", "1235", "1235 4000", socket.gethostname(),
                                    "1", "resolv", ""], r.stdout
    # --rm: no bundle, record or writable layer is left; shared layers are
    assert bundlemod.list_bundles(store.root) == []
    assert not os.path.exists(os.path.join(store.root, "containers", name))
    assert len([n for n in os.listdir(os.path.join(store.root, "layers")) if len(n) == 12]) == 2


def test_pyimg_run_writes_etc_files(store, runtime_env):
    name = f"pyimg-run-etc-{os.getpid()}"
    r = run_pyimg(store.root, "run", "--rm", "--name", name, "--network", "none", "busybox", "sh", "-c",
                  "cat /etc/hostname; cat /etc/hosts; cat /etc/resolv.conf; ls /sys/class/net", env=runtime_env)
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert re.fullmatch(r"[0-9a-f]{12}", out[0]), out  # docker: the short id, not the name
    assert "127.0.0.1\tlocalhost" in out
    assert any(line.startswith("nameserver ") for line in out)
    assert out[-1].split() == ["lo"]  # --network none: a private namespace with loopback only


def test_pyimg_run_without_rm_keeps_the_bundle(store, runtime_env):
    name = f"pyimg-run-keep-{os.getpid()}"
    r = run_pyimg(store.root, "run", "--network", "none", "--name", name, "busybox", "sh", "-c", "echo kept > /kept",
                  env=runtime_env)
    assert r.returncode == 0, r.stderr
    cid = run_pyimg(store.root, "inspect", "-f", "{{.Id}}", name).stdout.strip()
    bundle = os.path.join(store.root, "containers", cid, "bundle")
    assert open(os.path.join(bundle, "rootfs/kept")).read() == "kept\n"
    r = run_pyimg(store.root, "run", "--network", "none", "--name", name, "busybox", env=runtime_env)
    assert r.returncode == 125 and "is already in use by container" in r.stderr
    assert run_pyimg(store.root, "rm", name).returncode == 0
    assert not os.path.exists(bundle) and bundlemod.list_bundles(store.root) == []


def test_pyimg_run_reports_a_missing_command_inside(store, runtime_env):
    r = run_pyimg(store.root, "run", "--rm", "--network", "none", "--name", f"pyimg-run-nocmd-{os.getpid()}",
                  "busybox", "/no/such/binary", env=runtime_env)
    assert r.returncode == 127 and "/no/such/binary" in r.stderr  # docker's status for a command not found
    assert bundlemod.list_bundles(store.root) == []


def test_pyimg_run_pulls_a_missing_image(tmp_path):
    reg = start_registry(tmp_path)
    try:
        layer = busybox_layer()
        push_image(reg.host, "tools/bb", "v1", [layer],
                   {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["echo", "pulled and ran"]},
                    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + __import__("hashlib").sha256(layer).hexdigest()]}})
        root = tmp_path / "store"
        cfg = write_pyimg_config(tmp_path)
        ref = f"{reg.host}/tools/bb:v1"
        env = {"PYIMG_RUNTIME": RUNC}
        r = run_pyimg(root, "run", "--rm", "--network", "none", ref, config=cfg, env=env)
        assert r.returncode == 0, r.stderr
        assert f"Unable to find image '{ref}' locally" in r.stderr
        assert r.stdout.strip().splitlines()[-1] == "pulled and ran"
        r = run_pyimg(root, "run", "--rm", "--network", "none", ref, "echo", "again", config=cfg, env=env)
        assert r.returncode == 0 and "Unable to find" not in r.stderr
        assert r.stdout == "again\n"
        assert bundlemod.list_bundles(str(root)) == []
    finally:
        reg.stop()


def test_pyimg_run_with_pyrunc(store):
    if not os.access(PYRUNC, os.X_OK):
        pytest.skip("pyrunc is not installed")
    name = f"pyimg-run-pyrunc-{os.getpid()}"
    try:
        r = run_pyimg(store.root, "run", "--rm", "--network", "none", "--name", name, "busybox", "sh", "-c",
                      "echo $FOO; exit 3", env={"PYIMG_RUNTIME": ""}, timeout=120)
    finally:
        run_pyimg(store.root, "rm", "-f", name)
    assert r.returncode == 3, r.stderr
    assert r.stdout == "from-image\n"
    assert bundlemod.list_bundles(store.root) == []


def test_pyimg_run_detached(store):
    if not os.access(PYRUNC, os.X_OK):
        pytest.skip("pyrunc is not installed")
    name = f"pyimg-run-d-{os.getpid()}"
    try:
        r = run_pyimg(store.root, "run", "-d", "--network", "none", "--name", name, "busybox", "sh", "-c",
                      "echo started; sleep 30", env={"PYIMG_RUNTIME": ""}, timeout=120)
        assert r.returncode == 0, r.stderr
        cid = r.stdout.strip()
        assert re.fullmatch(r"[0-9a-f]{64}", cid), r.stdout
        st = run_pyimg(store.root, "inspect", "-f", "{{.State.Status}} {{.Name}}", name).stdout
        assert st == f"running /{name}\n"
        for _ in range(100):
            if "started" in run_pyimg(store.root, "logs", name).stdout:
                break
            time.sleep(0.05)
        assert run_pyimg(store.root, "logs", name).stdout == "started\n"
    finally:
        run_pyimg(store.root, "rm", "-f", name)
    assert bundlemod.list_bundles(store.root) == []


def test_rm_bundle_refuses_while_a_container_runs(store, tmp_path):
    b = tmp_path / "b"
    assert run_pyimg(store.root, "unpack", "busybox", b).returncode == 0
    cid = f"pyimg-test-busy-{os.getpid()}"
    cfg = json.load(open(b / "config.json"))
    cfg["process"]["args"] = ["sleep", "600"]
    json.dump(cfg, open(b / "config.json", "w"))
    try:
        # files, not pipes: the detached container keeps its stdio open
        with open(tmp_path / "runc.err", "w+") as err:
            r = subprocess.run([RUNC, "run", "-d", "--bundle", str(b), cid], stdout=subprocess.DEVNULL,
                               stderr=err, stdin=subprocess.DEVNULL, timeout=60)
        assert r.returncode == 0, (tmp_path / "runc.err").read_text()
        r = run_pyimg(store.root, "rm-bundle", b)
        assert r.returncode == 1 and cid in r.stderr and len(r.stderr.strip().splitlines()) == 1
        assert (b / "rootfs/bin/busybox").exists()  # untouched
    finally:
        subprocess.run([RUNC, "delete", "--force", cid], capture_output=True)
    assert run_pyimg(store.root, "rm-bundle", b).returncode == 0
    assert not b.exists()


def test_pyimg_run_tty(store, runtime_env):
    from bundles import run_in_pty
    name = f"pyimg-run-tty-{os.getpid()}"
    code, out = run_in_pty([os.path.join(os.path.dirname(sys.executable), "pyimg"), "--root", store.root,
                            "run", "--rm", "-it", "--network", "none", "--name", name, "busybox",
                            "sh", "-c", "test -t 0 && test -t 1 && echo is-a-tty; echo $TERM"],
                           env=runtime_env, timeout=60)
    assert code == 0, out
    assert b"is-a-tty\r\nxterm\r\n" in out
    assert bundlemod.list_bundles(store.root) == []


def test_pyimg_run_interactive_stdin_and_entrypoint(store, runtime_env):
    name = f"pyimg-run-i-{os.getpid()}"
    r = run_pyimg(store.root, "run", "--rm", "-i", "--network", "none", "--name", name, "busybox", "cat", input="through stdin\n",
                  env=runtime_env)
    assert (r.returncode, r.stdout) == (0, "through stdin\n"), r.stderr
    # without -i the container's stdin is empty, like docker run
    r = run_pyimg(store.root, "run", "--rm", "--network", "none", "--name", name, "busybox", "cat", input="not passed\n",
                  env=runtime_env)
    assert (r.returncode, r.stdout) == (0, ""), r.stderr
    r = run_pyimg(store.root, "run", "--rm", "--network", "none", "--name", name, "--entrypoint", "echo", "busybox", "via", "entrypoint",
                  env=runtime_env)
    assert (r.returncode, r.stdout) == (0, "via entrypoint\n"), r.stderr
