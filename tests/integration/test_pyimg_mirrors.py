"""Mirrors: registry-mirrors for docker.io (a real pull-through cache) and
per-registry mirrors, with fallback past failing mirrors."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from registry_util import ok as _ok  # noqa: E402
from registry_util import (FaultProxy, busybox_layer, free_port, make_layer,  # noqa: E402
                           push_image, run_pyimg, start_registry, write_pyimg_config)

from imagetool.store import Store  # noqa: E402


def _pyimg_requests(reg):
    return [ln for ln in reg.access_log if '"pyimg/' in ln]


@pytest.fixture
def hub_and_cache(tmp_path):
    """upstream: stands in for Docker Hub; cache: docker-registry with
    proxy.remoteurl = upstream (a pull-through cache, as real mirrors are)."""
    upstream = start_registry(tmp_path)
    cache = None
    try:
        cache = start_registry(tmp_path, proxy_remote=upstream.url)
        yield upstream, cache
    finally:
        if cache:
            cache.stop()
        upstream.stop()


def test_registry_mirrors_pull_through_cache(hub_and_cache, tmp_path):
    upstream, cache = hub_and_cache
    d = push_image(upstream.host, "library/busybox", "latest", [busybox_layer()], media="docker")
    root = tmp_path / "store"
    # docker.io itself is unreachable: the pull must be served by the mirror
    dead = f"http://127.0.0.1:{free_port()}"
    cfg = write_pyimg_config(tmp_path, registry_mirrors=[cache.url], dockerio_endpoint=dead)
    p = _ok(run_pyimg(root, "pull", "busybox", config=cfg))
    assert "Status: Downloaded newer image for docker.io/library/busybox:latest" in p.stdout
    assert Store(str(root)).resolve("docker.io/library/busybox:latest")[0] == d
    # pyimg asked the cache for library/busybox; the cache fetched it upstream
    assert any("GET /v2/library/busybox/manifests/latest" in ln for ln in _pyimg_requests(cache))
    assert cache.blob_gets(repo="library/busybox") == 2
    assert _pyimg_requests(upstream) == []
    assert upstream.blob_gets(repo="library/busybox") >= 1


def test_failing_mirrors_fall_back_to_registry(hub_and_cache, tmp_path):
    upstream, cache = hub_and_cache
    d = push_image(upstream.host, "library/busybox", "latest", [busybox_layer()])
    broken = FaultProxy(cache.host)
    broken.add_rule("/v2/", "status", status=503, times=None)
    try:
        root = tmp_path / "store"
        dead_mirror = f"http://127.0.0.1:{free_port()}"
        cfg = write_pyimg_config(tmp_path, registry_mirrors=[dead_mirror, broken.url],
                                 dockerio_endpoint=upstream.url)
        p = _ok(run_pyimg(root, "pull", "busybox", config=cfg))
        assert Store(str(root)).resolve("busybox")[0] == d
        assert "Downloaded newer image for docker.io/library/busybox:latest" in p.stdout
        # the broken mirror was tried (once: a failed mirror is not retried) ...
        assert len(broken.requests("GET", "/manifests/latest")) == 1
        # ... and the registry itself served everything
        assert upstream.blob_gets() == 2
        assert any("/manifests/latest" in ln for ln in _pyimg_requests(upstream))
    finally:
        broken.stop()


def test_per_registry_mirror(hub_and_cache, tmp_path):
    upstream, cache = hub_and_cache
    d = push_image(upstream.host, "team/app", "v1", [busybox_layer(), make_layer({"a": "1"})])
    root = tmp_path / "store"
    cfg = write_pyimg_config(tmp_path, mirrors={upstream.host: [cache.url]})
    ref = f"{upstream.host}/team/app:v1"
    _ok(run_pyimg(root, "pull", ref, config=cfg))
    assert Store(str(root)).resolve(ref)[0] == d
    assert cache.blob_gets(repo="team/app") == 3
    assert _pyimg_requests(upstream) == []
