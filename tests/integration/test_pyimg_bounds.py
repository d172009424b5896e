"""Bounded downloads: a registry (here a misbehaving proxy in front of a real
one) that drips, stalls, sends more than a descriptor says or declares huge
sizes must make `pyimg pull` fail quickly with one line naming the blob,
and leave the store exactly as it was.

Every test runs with a progress deadline of 1 s and at most 2 attempts, so
each one ends within a few seconds even when pyimg does the right thing
only after waiting out the deadline."""
import json
import os
import re
import sys
import time
import urllib.request

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from registry_util import (OCI_INDEX, OCI_MANIFEST, FaultProxy, busybox_layer,  # noqa: E402
                           make_layer, push_image, run_pyimg, sha256, start_registry,
                           tree_snapshot, write_pyimg_config)

from imagetool.store import Store  # noqa: E402

DEADLINE = 1
ATTEMPTS = 2
BIG = 300_000


@pytest.fixture
def setup(tmp_path):
    """registry with 'base:1' and 'app:1' (busybox + a 300 kB random layer,
    uncompressed), a fault proxy in front, a store already holding base:1,
    and a config with a 1 s progress deadline and 2 attempts."""
    reg = start_registry(tmp_path)
    proxy = FaultProxy(reg.host)
    try:
        big = make_layer({"data/blob.bin": os.urandom(BIG)})
        push_image(reg.host, "base", "1", [make_layer({"etc/base": "base\n"})])
        push_image(reg.host, "app", "1", [busybox_layer(), big], compression="none")
        root = tmp_path / "store"
        cfg = write_pyimg_config(tmp_path, retries=ATTEMPTS,
                                 **{"download-progress-timeout": DEADLINE})
        p = run_pyimg(root, "pull", f"{proxy.host}/base:1", config=cfg)
        assert p.returncode == 0, p.stderr
        yield reg, proxy, root, cfg, sha256(big)
    finally:
        proxy.stop()
        reg.stop()


def _pull(root, cfg, ref, *extra, timeout=30):
    """pyimg pull; returns (CompletedProcess, seconds it took)."""
    t0 = time.monotonic()
    p = run_pyimg(root, "pull", *extra, ref, config=cfg, timeout=timeout)
    return p, time.monotonic() - t0


_PYTHON_NAMES = re.compile(r"Traceback|[A-Z]\w*(Error|Exception)\b|IncompleteRead|"
                           r"RemoteDisconnected|socket\.|http\.client")


def _fails(p, *fragments) -> str:
    assert p.returncode == 1, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    line = lines[0]
    for f in fragments:
        assert f in line, line
    assert not _PYTHON_NAMES.search(line), line
    return line


def _untouched(root, before):
    assert tree_snapshot(root) == before
    assert os.listdir(root / "ingest") == []


def _manifest(reg, repo, ref) -> dict:
    req = urllib.request.Request(f"{reg.url}/v2/{repo}/manifests/{ref}",
                                 headers={"Accept": OCI_MANIFEST})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def _serve_manifest(proxy, path, m):
    proxy.add_rule(path, "replace", body=json.dumps(m).encode(),
                   content_type=m.get("mediaType") or OCI_MANIFEST, times=None)


# ---- the progress deadline --------------------------------------------------

def test_drip_fed_blob_stalls_retries_and_fails(setup):
    """One byte every 0.4 s never stops the connection from being 'alive';
    it is still no progress."""
    reg, proxy, root, cfg, big = setup
    before = tree_snapshot(root)
    proxy.add_rule(f"/blobs/{big}", "slow", chunk=1, delay=0.4, times=None)
    p, took = _pull(root, cfg, f"{proxy.host}/app:1")
    _fails(p, f"blob {big}", f"registry {proxy.host}", "repository app", "stalled",
           f"no progress for {DEADLINE} s", f"after {ATTEMPTS} attempts")
    assert len(proxy.requests("GET", f"/blobs/{big}")) == ATTEMPTS
    assert took < 15, took
    _untouched(root, before)


def test_stalled_download_resumes_on_the_next_attempt(setup):
    reg, proxy, root, cfg, big = setup
    proxy.add_rule(f"/blobs/{big}", "slow", chunk=1, delay=0.3, times=1)
    p, _ = _pull(root, cfg, f"{proxy.host}/app:1")
    assert p.returncode == 0, p.stderr
    gets = proxy.requests("GET", f"/blobs/{big}")
    assert len(gets) == 2
    # the bytes that did arrive were kept: the retry asks for the rest
    assert re.fullmatch(r"bytes=[1-9]\d*-", gets[1]["headers"].get("Range", "")), gets[1]
    with open(Store(str(root)).blob_path(big), "rb") as f:
        assert sha256(f.read()) == big


def test_body_that_never_ends_after_its_last_byte_is_fetched_again(setup):
    """All the bytes arrive, the chunked body's end does not: the retry
    cannot resume past the end, so it starts over."""
    reg, proxy, root, cfg, big = setup
    proxy.add_rule(f"/blobs/{big}", "chunked", unterminated=True, hold=20, times=1)
    p, _ = _pull(root, cfg, f"{proxy.host}/app:1")
    assert p.returncode == 0, p.stderr
    gets = proxy.requests("GET", f"/blobs/{big}")
    assert len(gets) == 2 and "Range" not in gets[1]["headers"], gets
    with open(Store(str(root)).blob_path(big), "rb") as f:
        assert sha256(f.read()) == big


def test_slow_but_steady_download_is_not_a_stall(setup):
    """~160 kB/s for a 300 kB blob takes longer than the deadline in total,
    but each deadline sees progress."""
    reg, proxy, root, cfg, big = setup
    proxy.add_rule(f"/blobs/{big}", "slow", chunk=8192, delay=0.05, times=None)
    p, _ = _pull(root, cfg, f"{proxy.host}/app:1")
    assert p.returncode == 0, p.stderr
    assert len(proxy.requests("GET", f"/blobs/{big}")) == 1
    assert Store(str(root)).has_blob(big)


@pytest.mark.parametrize("action", ["hang", "drip-headers"])
def test_registry_that_never_answers_stalls(setup, action):
    reg, proxy, root, cfg, big = setup
    before = tree_snapshot(root)
    proxy.add_rule(f"/blobs/{big}", action, delay=0.3, hold=20, times=None)
    p, took = _pull(root, cfg, f"{proxy.host}/app:1")
    _fails(p, f"blob {big}", f"registry {proxy.host}", "repository app", "stalled",
           f"after {ATTEMPTS} attempts")
    assert len(proxy.requests("GET", f"/blobs/{big}")) == ATTEMPTS
    assert took < 15, took
    _untouched(root, before)


def test_drip_fed_manifest_stalls(setup):
    reg, proxy, root, cfg, big = setup
    before = tree_snapshot(root)
    proxy.add_rule("/app/manifests/1", "slow", chunk=1, delay=0.4, times=None)
    p, took = _pull(root, cfg, f"{proxy.host}/app:1")
    _fails(p, "manifest 1", f"registry {proxy.host}", "repository app", "stalled")
    assert len(proxy.requests("GET", "/app/manifests/1")) == ATTEMPTS
    assert took < 15, took
    _untouched(root, before)


def test_progress_deadline_flag_overrides_the_config(setup, tmp_path):
    reg, proxy, root, _cfg, big = setup
    cfg = write_pyimg_config(tmp_path, retries=1)  # the default deadline (30 s)
    before = tree_snapshot(root)
    proxy.add_rule(f"/blobs/{big}", "hang", hold=20, times=None)
    p, took = _pull(root, cfg, f"{proxy.host}/app:1", "--download-progress-timeout", "0.5")
    _fails(p, f"blob {big}", "stalled", "no response within 0.5 s")
    assert took < 10, took
    _untouched(root, before)


# ---- more (or less) than the descriptor says --------------------------------

@pytest.mark.parametrize("action, kw", [
    ("extra", {"extra": b"x" * 5000}),      # Content-Length says so, up front
    ("lying-length", {"plus": 5000}),       # Content-Length says so, body does not
    ("chunked", {"extra": b"x" * 5000}),    # no Content-Length: found while reading
    ("chunked", {"endless": True}),         # a body without end
], ids=["extra", "lying-length", "chunked-extra", "chunked-endless"])
def test_blob_longer_than_its_descriptor_is_refused(setup, action, kw):
    reg, proxy, root, cfg, big = setup
    before = tree_snapshot(root)
    proxy.add_rule(f"/blobs/{big}", action, times=None, **kw)
    p, took = _pull(root, cfg, f"{proxy.host}/app:1")
    size = _manifest(reg, "app", "1")["layers"][1]["size"]
    _fails(p, f"blob {big}", f"registry {proxy.host}", "repository app",
           f"longer than its descriptor's {size} bytes")
    # a registry serving other content is not retried
    assert len(proxy.requests("GET", f"/blobs/{big}")) == 1
    assert took < 10, took
    _untouched(root, before)


def test_blob_shorter_than_its_descriptor_is_refused(setup):
    reg, proxy, root, cfg, big = setup
    before = tree_snapshot(root)
    proxy.add_rule(f"/blobs/{big}", "short", at=1000, times=None)
    p, _ = _pull(root, cfg, f"{proxy.host}/app:1")
    _fails(p, f"blob {big}", f"registry {proxy.host}", "repository app",
           "shorter than its descriptor", f"after {ATTEMPTS} attempts")
    _untouched(root, before)


# ---- declared sizes ---------------------------------------------------------

def test_huge_declared_layer_without_a_limit_is_not_stored(setup):
    """The manifest claims 10^12 bytes; the registry has 300 kB."""
    reg, proxy, root, cfg, big = setup
    m = _manifest(reg, "app", "1")
    m["layers"][1]["size"] = 10 ** 12
    _serve_manifest(proxy, "/app/manifests/1", m)
    before = tree_snapshot(root)
    p, took = _pull(root, cfg, f"{proxy.host}/app:1")
    _fails(p, f"blob {big}", "shorter than its descriptor")
    assert took < 10, took
    _untouched(root, before)


def test_max_layer_size_refuses_before_downloading(setup, tmp_path):
    reg, proxy, root, _cfg, big = setup
    cfg = write_pyimg_config(tmp_path, retries=ATTEMPTS, **{"max-layer-size": "1GB"})
    m = _manifest(reg, "app", "1")
    m["layers"][1]["size"] = 10 ** 12
    _serve_manifest(proxy, "/app/manifests/1", m)
    before = tree_snapshot(root)
    p, _ = _pull(root, cfg, f"{proxy.host}/app:1")
    _fails(p, f"layer {big}", "1000000000000 bytes", "max-layer-size", "1000000000")
    assert proxy.requests("GET", "/app/blobs/") == []  # nothing at all was downloaded
    _untouched(root, before)


def test_max_layer_size_flag(setup):
    """app:1's busybox layer is about 2 MB."""
    reg, proxy, root, cfg, big = setup
    bb = sha256(busybox_layer())
    before = tree_snapshot(root)
    p, _ = _pull(root, cfg, f"{proxy.host}/app:1", "--max-layer-size", "1MB")
    _fails(p, f"layer {bb}", f"{len(busybox_layer())} bytes", "max-layer-size", "1000000")
    assert proxy.requests("GET", "/app/blobs/") == []
    _untouched(root, before)
    # into a store that does not exist yet: it still does not
    fresh = root.parent / "fresh-store"
    p, _ = _pull(fresh, cfg, f"{proxy.host}/app:1", "--max-layer-size", "1MB")
    _fails(p, f"layer {bb}", "max-layer-size")
    assert not fresh.exists()
    # a limit the image fits under changes nothing
    p, _ = _pull(root, cfg, f"{proxy.host}/app:1", "--max-layer-size", "2MiB")
    assert p.returncode == 0, p.stderr


@pytest.mark.parametrize("flag, value", [("--max-layer-size", "lots"),
                                         ("--max-layer-size", "-5"),
                                         ("--download-progress-timeout", "soon"),
                                         ("--download-progress-timeout", "-1")])
def test_bad_flag_values_are_one_line_errors(setup, flag, value):
    reg, proxy, root, cfg, big = setup
    before = tree_snapshot(root)
    p, _ = _pull(root, cfg, f"{proxy.host}/app:1", flag, value)
    _fails(p, flag, repr(value))
    assert proxy.requests("GET", "/app/") == []
    _untouched(root, before)


@pytest.mark.parametrize("key, value", [("max-layer-size", "lots"),
                                        ("max-layer-size", True),
                                        ("download-progress-timeout", "soon"),
                                        ("download-progress-timeout", -1),
                                        ("max-download-attempts", 0)])
def test_bad_config_values_are_one_line_errors(setup, tmp_path, key, value):
    reg, proxy, root, _cfg, big = setup
    cfg = write_pyimg_config(tmp_path, **{key: value})
    before = tree_snapshot(root)
    p, _ = _pull(root, cfg, f"{proxy.host}/app:1")
    _fails(p, cfg, key)
    _untouched(root, before)


def test_max_download_attempts_is_dockers_name_for_retries(setup, tmp_path):
    reg, proxy, root, _cfg, big = setup
    cfg = write_pyimg_config(tmp_path, **{"max-download-attempts": 3})
    with open(cfg) as f:
        settings = json.load(f)
    del settings["retries"]  # the helper's default; here only Docker's name is set
    with open(cfg, "w") as f:
        json.dump(settings, f)
    proxy.add_rule(f"/blobs/{big}", "status", status=500, times=None)
    p, _ = _pull(root, cfg, f"{proxy.host}/app:1")
    _fails(p, f"blob {big}", "HTTP 500", "after 3 attempts")
    assert len(proxy.requests("GET", f"/blobs/{big}")) == 3


# ---- manifests --------------------------------------------------------------

def _index_over_app(reg, proxy, size):
    """Serve an index as app:multi whose one entry is app:1's manifest, with
    the given declared size. Returns that manifest's digest."""
    req = urllib.request.Request(f"{reg.url}/v2/app/manifests/1",
                                 headers={"Accept": OCI_MANIFEST})
    with urllib.request.urlopen(req, timeout=10) as r:
        body = r.read()
    digest = sha256(body)
    idx = {"schemaVersion": 2, "mediaType": OCI_INDEX,
           "manifests": [{"mediaType": OCI_MANIFEST, "digest": digest, "size": size,
                          "platform": {"os": "linux", "architecture": "amd64"}}]}
    _serve_manifest(proxy, "/app/manifests/multi", idx)
    return digest, len(body)


def test_index_entry_above_the_manifest_cap_is_not_fetched(setup):
    reg, proxy, root, cfg, big = setup
    digest, _ = _index_over_app(reg, proxy, 5 * 1024 * 1024)
    before = tree_snapshot(root)
    p, _ = _pull(root, cfg, f"{proxy.host}/app:multi", "--platform", "linux/amd64")
    _fails(p, f"manifest {digest}", "5242880 bytes", "4194304")
    assert proxy.requests("GET", f"/manifests/{digest}") == []
    _untouched(root, before)


def test_manifest_longer_than_its_index_entry_is_refused(setup):
    reg, proxy, root, cfg, big = setup
    digest, real = _index_over_app(reg, proxy, 100)
    proxy.add_rule(f"/manifests/{digest}", "chunked", endless=True, times=None)
    before = tree_snapshot(root)
    p, took = _pull(root, cfg, f"{proxy.host}/app:multi", "--platform", "linux/amd64")
    _fails(p, f"manifest {digest}", "longer than its descriptor", "100 bytes")
    assert took < 10, took
    _untouched(root, before)


def test_manifest_by_tag_is_capped(setup):
    """No descriptor to go by: the fixed cap (4 MiB, as containerd and the
    distribution registry use) bounds what is read, even without end."""
    reg, proxy, root, cfg, big = setup
    proxy.add_rule("/app/manifests/1", "chunked", endless=True, times=None)
    before = tree_snapshot(root)
    p, took = _pull(root, cfg, f"{proxy.host}/app:1")
    _fails(p, "manifest", "too large", "4194304")
    assert took < 10, took
    _untouched(root, before)
