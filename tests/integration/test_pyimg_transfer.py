"""push, save/load, search, TLS client certificates (certs.d) and HTTP_PROXY."""
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from registry_util import ok as _ok  # noqa: E402
from registry_util import (FaultProxy, busybox_layer, make_layer, make_tls_cert,  # noqa: E402
                           push_image, push_multiarch, run_pyimg, start_registry,
                           write_pyimg_config)

from imagetool.store import Store  # noqa: E402


@pytest.fixture
def registry(tmp_path):
    reg = start_registry(tmp_path)
    try:
        yield reg
    finally:
        reg.stop()


def _skopeo_inspect(ref, raw=False):
    args = ["skopeo", "inspect", "--tls-verify=false"] + (["--raw"] if raw else []) + [ref]
    p = subprocess.run(args, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_push_to_another_registry_and_read_back(registry, tmp_path):
    other = start_registry(tmp_path)
    try:
        root = tmp_path / "store"
        cfg = write_pyimg_config(tmp_path)
        layers = [busybox_layer(), make_layer({"etc/app": "x\n"})]
        d = push_image(registry.host, "app", "v1", layers, compression=["gzip", "zstd"])
        _ok(run_pyimg(root, "pull", f"{registry.host}/app:v1", config=cfg))
        dst = f"{other.host}/copies/app:v2"
        _ok(run_pyimg(root, "tag", f"{registry.host}/app:v1", dst, config=cfg))
        p = _ok(run_pyimg(root, "push", dst, config=cfg))
        assert f"The push refers to repository [{other.host}/copies/app]" in p.stdout
        assert p.stdout.count(": Pushed") == 2
        assert f"v2: digest: {d}" in p.stdout
        # read back with skopeo: same manifest digest and layers
        info = _skopeo_inspect(f"docker://{dst}")
        assert info["Digest"] == d
        assert info["Layers"] == [l["digest"] for l in Store(str(root)).resolve(dst)[1]["layers"]]
        # pushing again uploads nothing
        p = _ok(run_pyimg(root, "push", dst, config=cfg))
        assert p.stdout.count("Layer already exists") == 2
        assert len(other.requests("PUT", "/blobs/uploads/")) == 3  # 2 layers + config, once
        # a fresh store pulls what was pushed
        _ok(run_pyimg(tmp_path / "store2", "pull", dst, config=cfg))
        p = run_pyimg(root, "push", f"{other.host}/missing:1", config=cfg)
        assert p.returncode == 1 and "no such image" in p.stderr
    finally:
        other.stop()


@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_save_and_load_roundtrip(registry, tmp_path, fmt):
    root = tmp_path / "store"
    cfg = write_pyimg_config(tmp_path)
    layers = [busybox_layer(), make_layer({"etc/x": "y\n"})]
    d = push_image(registry.host, "app", "v1", layers, compression=["gzip", "zstd"])
    push_image(registry.host, "other", "1", [busybox_layer()], media="docker")
    ref1, ref2 = f"{registry.host}/app:v1", f"{registry.host}/other:1"
    _ok(run_pyimg(root, "pull", ref1, config=cfg))
    _ok(run_pyimg(root, "pull", ref2, config=cfg))
    out = tmp_path / f"images.{fmt}.tar"
    _ok(run_pyimg(root, "save", "--format", fmt, "-o", out, ref1, ref2, config=cfg))

    # skopeo reads the archive
    transport = "docker-archive" if fmt == "docker-archive" else "oci-archive"
    p = subprocess.run(["skopeo", "inspect", f"{transport}:{out}:{ref1}"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout)
    if fmt == "oci-archive":
        assert info["Digest"] == d
    s = Store(str(root))
    cfg_digest = s.resolve(ref1)[1]["config"]["digest"]

    root2 = tmp_path / "store2"
    p = _ok(run_pyimg(root2, "load", "-i", out, config=cfg))
    assert f"Loaded image: {ref1}" in p.stdout and f"Loaded image: {ref2}" in p.stdout
    s2 = Store(str(root2))
    _, m2 = s2.resolve(ref1)
    assert m2["config"]["digest"] == cfg_digest  # same image id either way
    if fmt == "oci-archive":
        assert s2.resolve(ref1)[0] == d
    for b in [m2["config"]] + m2["layers"]:
        assert s2.has_blob(b["digest"], b["size"])

    # a damaged archive is refused and loads nothing
    bad = tmp_path / "bad.tar"
    bad.write_bytes(out.read_bytes()[:len(out.read_bytes()) // 2])
    root3 = tmp_path / "store3"
    p = run_pyimg(root3, "load", "-i", bad, config=cfg)
    assert p.returncode == 1 and len(p.stderr.strip().splitlines()) == 1
    assert Store(str(root3)).entries() == []


def test_search_catalog_and_hub_api(registry, tmp_path):
    root = tmp_path / "store"
    push_image(registry.host, "team/webapp", "v1", [busybox_layer()])
    push_image(registry.host, "team/webapp", "v2", [busybox_layer()])
    push_image(registry.host, "other", "1", [busybox_layer()])
    cfg = write_pyimg_config(tmp_path)
    p = _ok(run_pyimg(root, "search", "web", "--registry", registry.host, config=cfg))
    lines = p.stdout.splitlines()
    assert lines[0].split() == ["NAME", "TAGS"]
    assert len(lines) == 2
    assert lines[1].split() == [f"{registry.host}/team/webapp", "v1,", "v2"]

    # Docker Hub's search API, served locally
    seen = []

    class Hub(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            seen.append(self.path)
            body = json.dumps({"num_results": 1, "results": [
                {"name": "busybox", "description": "Busybox base image.", "star_count": 3000,
                 "is_official": True, "is_automated": False}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    hub = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    t = threading.Thread(target=hub.serve_forever, daemon=True)
    t.start()
    try:
        cfg2 = write_pyimg_config(tmp_path, dockerio_index=f"http://127.0.0.1:{hub.server_address[1]}")
        p = _ok(run_pyimg(root, "search", "busy", config=cfg2))
        assert seen == ["/v1/search?q=busy&n=25"]
        assert p.stdout.splitlines()[0].split() == ["NAME", "DESCRIPTION", "STARS", "OFFICIAL"]
        assert p.stdout.splitlines()[1].split() == ["busybox", "Busybox", "base", "image.",
                                                    "3000", "[OK]"]
    finally:
        hub.shutdown()
        hub.server_close()

    # a server without the catalog API: clear error
    proxy = FaultProxy(registry.host)
    proxy.add_rule("/v2/_catalog", "status", status=404, times=None)
    try:
        p = run_pyimg(root, "search", "x", "--registry", proxy.host, config=cfg)
        assert p.returncode == 1
        assert "does not support search" in p.stderr
    finally:
        proxy.stop()


def test_tls_client_certificate_from_certs_d(tmp_path):
    """A registry requiring client certificates: certs.d/HOST:PORT/client.cert
    and client.key (Docker's layout) are presented; without them it fails."""
    cert, key = make_tls_cert(tmp_path)
    ca_dir = tmp_path / "clientca"
    ca_dir.mkdir()
    ccert, ckey = str(ca_dir / "client.cert"), str(ca_dir / "client.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ckey,
                    "-out", ccert, "-days", "2", "-subj", "/CN=pyimg-client"],
                   check=True, capture_output=True)
    reg = start_registry(tmp_path, tls=(cert, key, ccert))
    try:
        import ssl
        ctx = ssl.create_default_context(cafile=cert)
        ctx.load_cert_chain(ccert, ckey)
        push_image(reg.host, "secure/app", "v1", [busybox_layer()], scheme="https",
                   ssl_context=ctx)
        root = tmp_path / "store"
        certs = tmp_path / "certs.d"
        cfg = write_pyimg_config(tmp_path, certs_dir=str(certs))
        ref = f"{reg.host}/secure/app:v1"
        p = run_pyimg(root, "pull", ref, config=cfg)
        assert p.returncode == 1, p.stdout
        assert ref in p.stderr
        (certs / reg.host).mkdir(parents=True)
        shutil.copy(cert, certs / reg.host / "ca.crt")
        shutil.copy(ccert, certs / reg.host / "client.cert")
        shutil.copy(ckey, certs / reg.host / "client.key")
        _ok(run_pyimg(root, "pull", ref, config=cfg))
        assert Store(str(root)).resolve(ref)
    finally:
        reg.stop()


def test_http_proxy_and_no_proxy(registry, tmp_path):
    push_image(registry.host, "app", "v1", [busybox_layer()])
    proxy = FaultProxy(registry.host)
    try:
        cfg = write_pyimg_config(tmp_path)
        ref = f"{registry.host}/app:v1"
        _ok(run_pyimg(tmp_path / "s1", "pull", ref, config=cfg,
                      env={"HTTP_PROXY": proxy.url, "NO_PROXY": ""}))
        via = proxy.requests("GET")
        assert via and all(r["path"].startswith(f"http://{registry.host}/v2/") for r in via)
        n = len(proxy.log)
        _ok(run_pyimg(tmp_path / "s2", "pull", ref, config=cfg,
                      env={"HTTP_PROXY": proxy.url, "NO_PROXY": "127.0.0.1"}))
        assert len(proxy.log) == n
    finally:
        proxy.stop()


def test_multiarch_push_preserves_platform_manifest(registry, tmp_path):
    """An image pulled from an index is pushed as the chosen platform's manifest."""
    other = start_registry(tmp_path)
    try:
        idx, per = push_multiarch(registry.host, "multi", "latest", ["linux/amd64", "linux/arm64"])
        root = tmp_path / "store"
        cfg = write_pyimg_config(tmp_path)
        _ok(run_pyimg(root, "pull", "--platform", "linux/arm64", f"{registry.host}/multi",
                      config=cfg))
        _ok(run_pyimg(root, "tag", f"{registry.host}/multi", f"{other.host}/m:arm", config=cfg))
        _ok(run_pyimg(root, "push", f"{other.host}/m:arm", config=cfg))
        raw = _skopeo_inspect(f"docker://{other.host}/m:arm", raw=True)
        assert "layers" in raw
        info = _skopeo_inspect(f"docker://{other.host}/m:arm")
        assert info["Digest"] == per["linux/arm64"] and info["Architecture"] == "arm64"
    finally:
        other.stop()


def test_tls_verification_uses_certs_d_ca(tmp_path):
    """For a registry that is not insecure, the server certificate must verify;
    certs.d/HOST:PORT/ca.crt makes it trusted. (Loopback is insecure by
    default, as in Docker, so the policy is overridden here; the TLS server,
    the handshake and the verification are real.)"""
    from imagetool.config import Config
    from imagetool.registry import RegistryClient, RegistryError

    class Strict(Config):
        def is_insecure(self, hostport):
            return False

    cert, key = make_tls_cert(tmp_path)
    reg = start_registry(tmp_path, tls=(cert, key))
    try:
        import ssl
        ctx = ssl.create_default_context(cafile=cert)
        d = push_image(reg.host, "app", "v1", [busybox_layer()], scheme="https", ssl_context=ctx)
        certs = tmp_path / "certs.d"
        cfg = Strict(certs_dir=str(certs), retries=1)
        with pytest.raises(RegistryError) as ei:
            RegistryClient(reg.host, cfg).get_manifest("app", "v1")
        assert "not trusted" in str(ei.value)
        (certs / reg.host).mkdir(parents=True)
        shutil.copy(cert, certs / reg.host / "ca.crt")
        body, mt, digest = RegistryClient(reg.host, cfg).get_manifest("app", "v1")
        assert digest == d
        assert not reg.requests(contains="/v2/app/manifests/v1") == []
    finally:
        reg.stop()


class _ConnectProxy:
    """A CONNECT (HTTPS) proxy on loopback that records the tunnels it opens."""

    def __init__(self):
        import select
        import socket
        self.tunnels = []
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_CONNECT(self):
                outer.tunnels.append(self.path)
                host, port = self.path.rsplit(":", 1)
                up = socket.create_connection((host, int(port)), timeout=30)
                self.send_response(200, "Connection established")
                self.end_headers()
                conns = [self.connection, up]
                try:
                    while True:
                        r, _, _ = select.select(conns, [], [], 30)
                        if not r:
                            break
                        done = False
                        for s in r:
                            data = s.recv(65536)
                            if not data:
                                done = True
                                break
                            (up if s is self.connection else self.connection).sendall(data)
                        if done:
                            break
                finally:
                    up.close()
                self.close_connection = True

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_https_proxy_tunnels_tls(tmp_path):
    cert, key = make_tls_cert(tmp_path)
    reg = start_registry(tmp_path, tls=(cert, key))
    proxy = _ConnectProxy()
    try:
        import ssl
        d = push_image(reg.host, "app", "v1", [busybox_layer()], scheme="https",
                       ssl_context=ssl.create_default_context(cafile=cert))
        cfg = write_pyimg_config(tmp_path)
        root = tmp_path / "store"
        _ok(run_pyimg(root, "pull", f"{reg.host}/app:v1", config=cfg,
                      env={"HTTPS_PROXY": proxy.url, "NO_PROXY": ""}))
        assert Store(str(root)).resolve(f"{reg.host}/app:v1")[0] == d
        assert proxy.tunnels and set(proxy.tunnels) == {reg.host}
    finally:
        proxy.stop()
        reg.stop()


def test_load_archives_written_by_skopeo(registry, tmp_path):
    layers = [busybox_layer(), make_layer({"etc/x": "1\n"})]
    d = push_image(registry.host, "app", "v1", layers)
    src = f"docker://{registry.host}/app:v1"
    oci_tar, dock_tar = tmp_path / "o.tar", tmp_path / "d.tar"
    for dest in (f"oci-archive:{oci_tar}:example.com/app:v1",
                 f"docker-archive:{dock_tar}:example.com/app:v1"):
        p = subprocess.run(["skopeo", "copy", "--src-tls-verify=false", src, dest],
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
    cfg = write_pyimg_config(tmp_path)
    root = tmp_path / "s1"
    p = _ok(run_pyimg(root, "load", "-i", oci_tar, config=cfg))
    assert "Loaded image: example.com/app:v1" in p.stdout
    assert Store(str(root)).resolve("example.com/app:v1")[0] == d
    root = tmp_path / "s2"
    p = _ok(run_pyimg(root, "load", "-i", dock_tar, config=cfg))
    assert "Loaded image: example.com/app:v1" in p.stdout
    _, m = Store(str(root)).resolve("example.com/app:v1")
    with open(Store(str(root)).blob_path(m["config"]["digest"]), "rb") as f:
        cfgjson = json.load(f)
    assert cfgjson["rootfs"]["diff_ids"][0].startswith("sha256:")
    assert len(m["layers"]) == 2
