"""Fault injection: a proxy in front of a real registry corrupts, truncates,
cuts connections and answers 5xx. Digests must be verified, interrupted
downloads resumed with Range, transient errors retried, and a failed pull
must leave the store exactly as it was."""
import hashlib
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from registry_util import (FaultProxy, busybox_layer, make_layer,  # noqa: E402
                           push_image, run_pyimg, sha256, start_registry, tree_snapshot,
                           write_pyimg_config)

from imagetool.store import Store  # noqa: E402


@pytest.fixture
def setup(tmp_path):
    """registry with 'base:1' and 'app:1' (busybox + a 300 kB random layer),
    a fault proxy in front, and a store already holding base:1."""
    reg = start_registry(tmp_path)
    proxy = FaultProxy(reg.host)
    try:
        big = make_layer({"data/blob.bin": os.urandom(300_000)})
        push_image(reg.host, "base", "1", [make_layer({"etc/base": "base\n"})])
        push_image(reg.host, "app", "1", [busybox_layer(), big], compression="none")
        root = tmp_path / "store"
        cfg = write_pyimg_config(tmp_path)
        p = run_pyimg(root, "pull", f"{proxy.host}/base:1", config=cfg)
        assert p.returncode == 0, p.stderr
        yield reg, proxy, root, cfg, sha256(big)
    finally:
        proxy.stop()
        reg.stop()


def _store_intact(root, proxy_host):
    store = Store(str(root))
    _, m = store.resolve(f"{proxy_host}/base:1")
    for d in [m["config"]] + m["layers"]:
        with open(store.blob_path(d["digest"]), "rb") as f:
            assert "sha256:" + hashlib.sha256(f.read()).hexdigest() == d["digest"]
    assert os.listdir(root / "ingest") == []


def _fails(p, *fragments):
    assert p.returncode == 1, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    for f in fragments:
        assert f in lines[0], lines[0]


def test_corrupted_blob_is_rejected(setup):
    reg, proxy, root, cfg, big = setup
    before = tree_snapshot(root)
    proxy.add_rule(f"/blobs/{big}", "corrupt", times=None)
    p = run_pyimg(root, "pull", f"{proxy.host}/app:1", config=cfg)
    _fails(p, f"{proxy.host}/app:1", big, "digest")
    assert tree_snapshot(root) == before
    _store_intact(root, proxy.host)
    # nothing of app:1 became visible, not even its verified busybox layer
    assert not Store(str(root)).has_blob(sha256(busybox_layer()))


def test_truncated_download_resumes_with_range(setup):
    reg, proxy, root, cfg, big = setup
    rule = proxy.add_rule(f"/blobs/{big}", "truncate", at=100_000, times=1)
    p = run_pyimg(root, "pull", f"{proxy.host}/app:1", config=cfg)
    assert p.returncode == 0, p.stderr
    assert rule["hits"] == 1
    gets = proxy.requests("GET", f"/blobs/{big}")
    assert len(gets) == 2
    assert "Range" not in gets[0]["headers"]
    assert gets[1]["headers"]["Range"] == "bytes=100000-"
    # the registry answered the range, so only the rest was sent again
    assert any(f"/blobs/{big}" in ln and '" 206 ' in ln for ln in reg.access_log)
    store = Store(str(root))
    with open(store.blob_path(big), "rb") as f:
        assert sha256(f.read()) == big
    _store_intact(root, proxy.host)


def test_connection_resets_and_5xx_are_retried(setup):
    reg, proxy, root, cfg, big = setup
    proxy.add_rule("/app/manifests/1", "status", status=500, times=2)
    proxy.add_rule(f"/blobs/{big}", "reset", times=2)
    proxy.add_rule("/blobs/", "status", status=502, times=1)
    p = run_pyimg(root, "pull", f"{proxy.host}/app:1", config=cfg)
    assert p.returncode == 0, p.stderr
    assert len(proxy.requests("GET", "/app/manifests/1")) == 3
    assert len(proxy.requests("GET", f"/blobs/{big}")) >= 3
    assert Store(str(root)).has_blob(big)


def test_persistent_500_fails_cleanly(setup):
    reg, proxy, root, cfg, big = setup
    before = tree_snapshot(root)
    proxy.add_rule(f"/blobs/{big}", "status", status=500, times=None)
    p = run_pyimg(root, "pull", f"{proxy.host}/app:1", config=cfg)
    _fails(p, f"{proxy.host}/app:1", "HTTP 500")
    assert len(proxy.requests("GET", f"/blobs/{big}")) == 4  # retries from the config
    assert tree_snapshot(root) == before


def test_short_body_never_enters_store(setup):
    """A server that keeps sending less than the descriptor's size."""
    reg, proxy, root, cfg, big = setup
    before = tree_snapshot(root)
    proxy.add_rule(f"/blobs/{big}", "short", at=1000, times=None)
    p = run_pyimg(root, "pull", f"{proxy.host}/app:1", config=cfg)
    _fails(p, f"{proxy.host}/app:1", "truncated")
    assert tree_snapshot(root) == before


@pytest.mark.parametrize("body, fragment", [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "not a JSON object"),
    (json.dumps({"schemaVersion": 1, "name": "app", "tag": "1", "fsLayers": [],
                 "history": []}).encode(), "schema 1"),
    (json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                 "config": {"digest": "sha256:" + "a" * 64}, "layers": []}).encode(),
     "config descriptor"),
    (b"{" + b" " * (5 * 1024 * 1024) + b"}", "too large"),
], ids=["garbage", "array", "schema1", "no-size", "huge"])
def test_bad_manifests_are_refused(setup, body, fragment):
    reg, proxy, root, cfg, big = setup
    before = tree_snapshot(root)
    ctype = "application/vnd.docker.distribution.manifest.v1+prettyjws" \
        if b'"schemaVersion": 1' in body else "application/vnd.oci.image.manifest.v1+json"
    proxy.add_rule("/manifests/1", "replace", body=body, content_type=ctype, times=None)
    p = run_pyimg(root, "pull", f"{proxy.host}/app:1", config=cfg)
    _fails(p, f"{proxy.host}/app:1", fragment)
    assert tree_snapshot(root) == before


def test_sigterm_during_download_leaves_store_as_it_was(setup):
    import signal
    import subprocess
    import time
    from registry_util import pyimg_bin
    reg, proxy, root, cfg, big = setup
    before = tree_snapshot(root)
    proxy.add_rule(f"/blobs/{big}", "slow", chunk=4096, delay=0.05, times=None)
    proc = subprocess.Popen([pyimg_bin(), "--root", str(root), "--config", cfg, "pull",
                             f"{proxy.host}/app:1"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        # wait (bounded) until the slow blob is being served, then stop pyimg
        for _ in range(400):
            if proxy.requests("GET", f"/blobs/{big}"):
                break
            time.sleep(0.05)
        assert proxy.requests("GET", f"/blobs/{big}")
        time.sleep(0.3)  # let some bytes land in ingest/ (not a timing assertion)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, (out, err)
    assert "interrupted" in err and f"{proxy.host}/app:1" in err
    assert tree_snapshot(root) == before
