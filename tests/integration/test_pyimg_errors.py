"""pyimg's real error paths end in one stderr line that names what failed
and where, with the right exit status, no Python exception names, errno
notation or command line, and the store as it was: a full disk (a tiny
tmpfs as the store or as the unpack target), an unreadable config file, a
registry that is down, a bad reference, an unknown image."""
import contextlib
import os
import re
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from registry_util import (free_port, make_layer, push_image, pyimg_bin, run_pyimg,  # noqa: E402
                           start_registry, tree_snapshot, write_pyimg_config)

from imagetool import bundle as bundlemod  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounts tmpfs; needs root")

PYTHON_NAMES = re.compile(r"Traceback|\b[A-Z]\w*(Error|Exception|Interrupt)\b|\[Errno|Errno \d")


def _one_line(p, status, *fragments) -> str:
    """p failed with `status` and exactly one stderr line containing every
    fragment, and neither Python's vocabulary nor pyimg's own options."""
    assert p.returncode == status, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    line = lines[0]
    assert line.startswith("pyimg: error: "), line
    assert not PYTHON_NAMES.search(line), line
    assert "--root" not in line and "--config" not in line, line
    for f in fragments:
        assert f in line, (f, line)
    return line


@contextlib.contextmanager
def tiny_tmpfs(path, size: str):
    path.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def _content(root) -> dict:
    """The OCI layout of a store (blobs, index.json, oci-layout), not its
    layer cache's lock and probe files."""
    return {k: v for k, v in tree_snapshot(root).items() if not k.startswith(("layers/", "bundles/"))}


def _no_layer_cached(root):
    """ROOT/layers holds no applied layer, whole or partial."""
    layers = os.path.join(root, "layers")
    names = os.listdir(layers) if os.path.isdir(layers) else []
    assert [n for n in names if n not in ("tmp", ".lock", ".overlay-probe")] == [], names
    if "tmp" in names:
        assert os.listdir(os.path.join(layers, "tmp")) == []


@pytest.fixture
def reg(tmp_path):
    r = start_registry(tmp_path)
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture
def cfg(tmp_path):
    return write_pyimg_config(tmp_path, retries=1)


# A layer of 4 MB of zeros: its gzip blob is a few kB, so it fits a store
# that its unpacked file does not.
ZEROS = 4_000_000


def test_full_disk_as_the_store_during_a_pull(reg, cfg, tmp_path):
    push_image(reg.host, "small", "1", [make_layer({"etc/small": "small\n"})])
    push_image(reg.host, "big", "1", [make_layer({"data/random": os.urandom(3_000_000)})])
    with tiny_tmpfs(tmp_path / "root", "1m") as root:
        p = run_pyimg(root, "pull", f"{reg.host}/small:1", config=cfg)
        assert p.returncode == 0, p.stderr
        before = tree_snapshot(root)
        p = run_pyimg(root, "pull", f"{reg.host}/big:1", config=cfg)
        _one_line(p, 1, f"pyimg: error: pull {reg.host}/big:1: no space left on device (writing {root}/ingest/")
        assert tree_snapshot(root) == before
        assert os.listdir(root / "ingest") == []


def test_full_disk_as_the_unpack_target(reg, cfg, tmp_path):
    ref = f"{reg.host}/zeros:1"
    push_image(reg.host, "zeros", "1", [make_layer({"data/zeros": b"\0" * ZEROS})])
    root = tmp_path / "store"
    assert run_pyimg(root, "pull", ref, config=cfg).returncode == 0
    before = _content(root)
    with tiny_tmpfs(tmp_path / "target", "1m") as target:
        p = run_pyimg(root, "unpack", "--mode", "copy", ref, target, config=cfg)
        _one_line(p, 1, f"pyimg: error: unpack {ref} {target}: no space left on device "
                        f"(writing {target}/rootfs/data/zeros)")
        assert os.listdir(target) == []
    assert _content(root) == before
    assert bundlemod.list_bundles(str(root)) == []


def test_full_disk_as_the_store_during_an_overlay_unpack(reg, cfg, tmp_path):
    ref = f"{reg.host}/zeros:1"
    push_image(reg.host, "zeros", "1", [make_layer({"data/zeros": b"\0" * ZEROS})])
    with tiny_tmpfs(tmp_path / "root", "2m") as root:
        assert run_pyimg(root, "pull", ref, config=cfg).returncode == 0
        if not bundlemod.overlay_supported(str(root)):
            pytest.skip("no overlayfs over tmpfs here")
        before = _content(root)
        b = tmp_path / "b"
        p = run_pyimg(root, "unpack", "--mode", "overlay", ref, b, config=cfg)
        line = _one_line(p, 1, f"pyimg: error: unpack {ref} {b}: no space left on device (writing {root}/layers/tmp/")
        assert line.endswith("/data/zeros)"), line
        assert not b.exists()
        assert _content(root) == before
        _no_layer_cached(root)
        assert bundlemod.list_bundles(str(root)) == []


def test_an_unreadable_config_file(tmp_path):
    root = tmp_path / "store"
    d = tmp_path / "as-a-dir.json"
    d.mkdir()
    for argv in (["pull", "busybox"], ["search", "x", "--registry", "127.0.0.1:1"]):
        p = run_pyimg(root, *argv, config=d)
        _one_line(p, 1, f"is a directory (reading the config file {d})")
    # unreadable for its mode: pyimg without the capabilities that let root ignore it
    f = tmp_path / "mode-000.json"
    f.write_text("{}")
    f.chmod(0)
    p = subprocess.run(["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search",
                        pyimg_bin(), "--root", str(root), "--config", str(f), "pull", "busybox"],
                       capture_output=True, text=True, timeout=60)
    _one_line(p, 1, "pyimg: error: pull docker.io/library/busybox:latest: permission denied "
                    f"(reading the config file {f})")
    assert not root.exists()


def test_a_registry_that_is_down(tmp_path, cfg):
    root = tmp_path / "store"
    dead = f"127.0.0.1:{free_port()}"
    p = run_pyimg(root, "pull", f"{dead}/app:v1", config=cfg)
    _one_line(p, 1, f"pyimg: error: pull {dead}/app:v1: ", f"cannot reach {dead}: connection refused")
    p = run_pyimg(root, "login", dead, "-u", "u", "--password-stdin", config=cfg, input="pw\n")
    _one_line(p, 1, f"pyimg: error: login {dead}: ", "connection refused")
    p = run_pyimg(root, "search", "app", "--registry", dead, config=cfg)
    _one_line(p, 1, "pyimg: error: search app: ", "connection refused")
    p = run_pyimg(root, "run", "--rm", f"{dead}/app:v1", "echo", "s3cret-arg", config=cfg,
                  env={"PYIMG_RUNTIME": "/bin/true"})
    assert p.returncode == 125, p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith(f"pyimg: error: pull {dead}/app:v1: "), p.stderr
    assert last.endswith(f"cannot reach {dead}: connection refused"), p.stderr
    assert not PYTHON_NAMES.search(p.stderr) and "s3cret-arg" not in p.stderr, p.stderr
    assert not (tmp_path / "docker-config" / "config.json").exists()
    assert not root.exists() or tree_snapshot(root) == {}


def test_a_bad_reference(reg, cfg, tmp_path):
    root = tmp_path / "store"
    push_image(reg.host, "app", "1", [make_layer({"etc/app": "app\n"})])
    assert run_pyimg(root, "pull", f"{reg.host}/app:1", config=cfg).returncode == 0
    before = tree_snapshot(root)
    p = run_pyimg(root, "pull", "Not/A/Valid//Ref", config=cfg)
    _one_line(p, 1, "pyimg: error: pull Not/A/Valid//Ref: invalid reference format 'Not/A/Valid//Ref'")
    p = run_pyimg(root, "tag", f"{reg.host}/app:1", "bad ref", config=cfg)
    _one_line(p, 1, "invalid reference format 'bad ref'", "whitespace")
    p = run_pyimg(root, "push", "UPPER/Case", config=cfg)
    _one_line(p, 1, "invalid reference format 'UPPER/Case'")
    p = run_pyimg(root, "run", "--rm", "Not//x", config=cfg, env={"PYIMG_RUNTIME": "/bin/true"})
    assert p.returncode == 125, p.stderr
    assert p.stderr.strip().splitlines()[-1].startswith("pyimg: error: invalid reference format 'Not//x'")
    assert not PYTHON_NAMES.search(p.stderr), p.stderr
    assert tree_snapshot(root) == before


def test_an_unknown_image(reg, cfg, tmp_path):
    root = tmp_path / "store"
    push_image(reg.host, "app", "1", [make_layer({"etc/app": "app\n"})])
    assert run_pyimg(root, "pull", f"{reg.host}/app:1", config=cfg).returncode == 0
    before = tree_snapshot(root)
    p = run_pyimg(root, "pull", f"{reg.host}/app:nope", config=cfg)
    _one_line(p, 1, f"pyimg: error: pull {reg.host}/app:nope: tag 'nope' not found")
    p = run_pyimg(root, "pull", f"{reg.host}/nosuch/repo", config=cfg)
    _one_line(p, 1, f"pyimg: error: pull {reg.host}/nosuch/repo:latest: ", "not found")
    p = run_pyimg(root, "inspect", "nosuch:1", config=cfg)  # a container, image, volume or network: docker's words
    assert (p.returncode, p.stderr, p.stdout) == (1, "Error: No such object: nosuch:1\n", "[]\n")
    for argv in (["unpack", "nosuch:1", tmp_path / "b"], ["rmi", "nosuch:1"],
                 ["save", "-o", tmp_path / "out.tar", "nosuch:1"], ["tag", "nosuch:1", "other:1"]):
        p = run_pyimg(root, *argv, config=cfg)
        _one_line(p, 1, f"no such image in the store {root}: nosuch:1")
    assert not (tmp_path / "b").exists() and not (tmp_path / "out.tar").exists()
    p = run_pyimg(root, "run", "--rm", f"{reg.host}/app:nope", config=cfg, env={"PYIMG_RUNTIME": "/bin/true"})
    assert p.returncode == 125, p.stderr
    err = p.stderr.strip().splitlines()
    assert err[0] == f"Unable to find image '{reg.host}/app:nope' locally"
    assert err[-1].startswith(f"pyimg: error: pull {reg.host}/app:nope: tag 'nope' not found"), err
    assert not PYTHON_NAMES.search(p.stderr), p.stderr
    assert tree_snapshot(root) == before
    assert bundlemod.list_bundles(str(root)) == []


def test_run_with_a_runtime_that_cannot_be_executed(reg, cfg, tmp_path):
    root = tmp_path / "store"
    ref = f"{reg.host}/app:1"
    push_image(reg.host, "app", "1", [make_layer({"etc/app": "app\n"})])
    assert run_pyimg(root, "pull", ref, config=cfg).returncode == 0
    notexec = tmp_path / "runtime"
    notexec.write_text("not a program\n")
    notexec.chmod(0o644)
    try:
        p = run_pyimg(root, "run", "--rm", ref, "true", config=cfg, env={"PYIMG_RUNTIME": str(notexec)})
        _one_line(p, 125, f"pyimg: error: unknown or invalid runtime name: {notexec}")
        assert bundlemod.list_bundles(str(root)) == []  # --rm: the bundle went
    finally:
        for rec in bundlemod.list_bundles(str(root)):  # (its overlay is mounted)
            bundlemod.remove_bundle(str(root), rec["bundle"], force=True)
