"""Shared test helpers: a real docker-registry (CNCF distribution) on loopback,
a small bearer-token server, and helpers that build images from tar layers and
push them by speaking the distribution API directly.

Stable API (other test modules import it):

    start_registry(tmpdir, *, htpasswd=None, token=None, proxy_remote=None,
                   tls=None) -> Registry
        Registry.url ("http://127.0.0.1:PORT"), .host ("127.0.0.1:PORT"),
        .port, .stop(), .access_log (list of access-log lines so far),
        .blob_gets(repo=None) (count of GET .../blobs/sha256:... requests).
    push_image(registry_host, repo, tag, layers, config, *, media='oci',
               compression='gzip', auth=None, scheme='http') -> manifest digest
    push_index(registry_host, repo, tag, manifests, *, media='oci', ...)
        manifests: list of (digest, size, media_type, platform dict)
    busybox_layer() -> bytes   (tar: bin/busybox + sh/true/echo/cat/ls/sleep)
    start_token_server(tmpdir, *, users=None, service=...) -> TokenServer
        .realm, .service, .issuer, .rootcertbundle, .requests, .stop(),
        .registry_token_config() (the dict start_registry(token=...) wants)
    make_config(layers_uncompressed, *, os='linux', arch='amd64', variant=None,
                cmd=None) -> dict  (an image config with correct diff_ids)

Every helper cleans up what it starts: call Registry.stop()/TokenServer.stop()
(the `registry` fixtures in conftest files do this in a finally block).
The registry's access log is read from its stdout file, so counting blob GETs
needs no mocking: it is what the real server saw.
"""
from __future__ import annotations

import base64
import gzip
import hashlib
import http.client
import http.server
import io
import json
import os
import socket
import subprocess
import tarfile
import threading
import time
import urllib.parse
import warnings

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"

LAYER_MEDIA = {
    ("oci", "gzip"): "application/vnd.oci.image.layer.v1.tar+gzip",
    ("oci", "zstd"): "application/vnd.oci.image.layer.v1.tar+zstd",
    ("oci", "none"): "application/vnd.oci.image.layer.v1.tar",
    ("docker", "gzip"): "application/vnd.docker.image.rootfs.diff.tar.gzip",
    ("docker", "none"): "application/vnd.docker.image.rootfs.diff.tar",
    # Docker has no zstd media type of its own; containerd/buildkit use the
    # OCI one inside Docker manifests, so we do too.
    ("docker", "zstd"): "application/vnd.oci.image.layer.v1.tar+zstd",
}

REGISTRY_BIN = "/usr/bin/docker-registry"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------
# the registry
# --------------------------------------------------------------------------

class Registry:
    """A running docker-registry process. stop() kills it and waits."""

    def __init__(self, proc, port, workdir, stdout_path, stderr_path, scheme):
        self.proc = proc
        self.port = port
        self.host = f"127.0.0.1:{port}"
        self.url = f"{scheme}://{self.host}"
        self.scheme = scheme
        self.workdir = workdir
        self.stdout_path = stdout_path
        self.stderr_path = stderr_path

    @property
    def access_log(self) -> list[str]:
        """Access-log lines (combined log format) written so far."""
        with open(self.stdout_path, errors="replace") as f:
            return [ln for ln in f.read().splitlines() if '"' in ln and "HTTP/" in ln]

    def requests(self, method: str | None = None, contains: str = "") -> list[str]:
        """Access-log lines whose request line matches method and contains text."""
        out = []
        for ln in self.access_log:
            try:
                req = ln.split('"')[1]
            except IndexError:
                continue
            if method and not req.startswith(method + " "):
                continue
            if contains in req:
                out.append(ln)
        return out

    def blob_gets(self, repo: str | None = None, digest: str | None = None) -> int:
        """Number of GET requests for blobs (optionally of one repo / digest)."""
        n = 0
        for ln in self.requests("GET", "/blobs/sha256:"):
            req = ln.split('"')[1]
            if repo and f"/v2/{repo}/blobs/" not in req:
                continue
            if digest and digest not in req:
                continue
            n += 1
        return n

    def stderr_text(self) -> str:
        with open(self.stderr_path, errors="replace") as f:
            return f.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def htpasswd_line(user: str, password: str) -> str:
    """One htpasswd line with a bcrypt hash (what distribution accepts).

    Uses the system crypt(3) (libxcrypt does bcrypt) through the stdlib
    `crypt` module, falling back to the `bcrypt` package when present."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt
        h = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 4))
        if h and h.startswith("$2"):
            return f"{user}:{h}"
    except Exception:
        pass
    import bcrypt  # type: ignore
    return f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()}"


def start_registry(tmpdir, *, htpasswd=None, token=None, proxy_remote=None, tls=None,
                   extra_config: dict | None = None) -> Registry:
    """Start docker-registry on 127.0.0.1:<free port>, storage under tmpdir.

    htpasswd: dict {user: password} or a path to an htpasswd file.
    token: dict with realm, service, issuer, rootcertbundle (see
           TokenServer.registry_token_config()).
    proxy_remote: URL string, or dict {remoteurl, username, password}; makes
           this registry a pull-through cache of that registry.
    tls: (certfile, keyfile[, client CA file]) to serve HTTPS instead of
           HTTP (with a client CA: client certificates are required).
    Returns once /v2/ answers. The caller must call .stop()."""
    tmpdir = str(tmpdir)
    workdir = os.path.join(tmpdir, f"registry-{os.getpid()}-{time.monotonic_ns()}")
    os.makedirs(workdir)
    storage = os.path.join(workdir, "storage")
    os.makedirs(storage)
    last_err = ""
    for _attempt in range(5):
        port = free_port()
        cfg = {
            "version": 0.1,
            "log": {"level": "info", "accesslog": {"disabled": False}, "formatter": "text"},
            "storage": {"filesystem": {"rootdirectory": storage}, "delete": {"enabled": True},
                        "maintenance": {"uploadpurging": {"enabled": False}}},
            "http": {"addr": f"127.0.0.1:{port}", "secret": "pyimg-test-secret"},
        }
        if htpasswd is not None:
            if isinstance(htpasswd, dict):
                path = os.path.join(workdir, "htpasswd")
                with open(path, "w") as f:
                    for u, p in htpasswd.items():
                        f.write(htpasswd_line(u, p) + "\n")
            else:
                path = str(htpasswd)
            cfg["auth"] = {"htpasswd": {"realm": "pyimg-test", "path": path}}
        if token is not None:
            cfg["auth"] = {"token": dict(token)}
        if proxy_remote is not None:
            cfg["proxy"] = ({"remoteurl": proxy_remote} if isinstance(proxy_remote, str)
                            else dict(proxy_remote))
        if tls is not None:
            cfg["http"]["tls"] = {"certificate": str(tls[0]), "key": str(tls[1])}
            if len(tls) > 2 and tls[2]:
                cfg["http"]["tls"]["clientcas"] = [str(tls[2])]
        if extra_config:
            cfg.update(extra_config)
        cfgpath = os.path.join(workdir, "config.yml")
        with open(cfgpath, "w") as f:
            json.dump(cfg, f, indent=1)  # JSON is YAML
        out = os.path.join(workdir, f"stdout-{port}.log")
        err = os.path.join(workdir, f"stderr-{port}.log")
        with open(out, "wb") as fo, open(err, "wb") as fe:
            proc = subprocess.Popen([REGISTRY_BIN, "serve", cfgpath], stdout=fo, stderr=fe,
                                    stdin=subprocess.DEVNULL)
        reg = Registry(proc, port, workdir, out, err, "https" if tls else "http")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return reg
            except OSError:
                time.sleep(0.05)
        reg.stop()
        last_err = reg.stderr_text()[-2000:]
    raise RuntimeError(f"docker-registry did not start: {last_err}")


# --------------------------------------------------------------------------
# building and pushing images
# --------------------------------------------------------------------------

def _tarinfo(name, *, type_=tarfile.REGTYPE, mode=0o644, size=0, linkname=""):
    ti = tarfile.TarInfo(name)
    ti.type = type_
    ti.mode = mode
    ti.size = size
    ti.linkname = linkname
    ti.mtime = 1_600_000_000  # fixed: identical input -> identical digest
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    return ti


def make_layer(files: dict[str, bytes | str], *, symlinks: dict[str, str] | None = None,
               dirs: list[str] = (), modes: dict[str, int] | None = None) -> bytes:
    """A deterministic uncompressed tar layer.

    files: path -> content (bytes or str); symlinks: path -> target."""
    buf = io.BytesIO()
    modes = modes or {}
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        seen = set()

        def add_parents(path):
            parts = path.strip("/").split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in seen:
                    seen.add(d)
                    tf.addfile(_tarinfo(d + "/", type_=tarfile.DIRTYPE, mode=0o755))

        for d in dirs:
            add_parents(d.strip("/") + "/x")
        for path, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            add_parents(path)
            tf.addfile(_tarinfo(path.strip("/"), mode=modes.get(path, 0o644), size=len(data)),
                       io.BytesIO(data))
        for path, target in (symlinks or {}).items():
            add_parents(path)
            tf.addfile(_tarinfo(path.strip("/"), type_=tarfile.SYMTYPE, mode=0o777,
                                linkname=target))
    return buf.getvalue()


_BUSYBOX_CACHE: bytes | None = None


def busybox_layer() -> bytes:
    """Uncompressed tar: bin/busybox (from /bin/busybox, busybox-static) and
    symlinks bin/{sh,true,echo,cat,ls,sleep} -> busybox. Deterministic."""
    global _BUSYBOX_CACHE
    if _BUSYBOX_CACHE is None:
        with open("/bin/busybox", "rb") as f:
            bb = f.read()
        _BUSYBOX_CACHE = make_layer(
            {"bin/busybox": bb},
            symlinks={f"bin/{n}": "busybox" for n in ("sh", "true", "echo", "cat", "ls", "sleep")},
            dirs=["tmp", "etc"], modes={"bin/busybox": 0o755})
    return _BUSYBOX_CACHE


def compress(data: bytes, compression: str) -> bytes:
    if compression == "gzip":
        # mtime=0: deterministic output, so equal layers share a digest
        return gzip.compress(data, compresslevel=6, mtime=0)
    if compression == "zstd":
        import zstandard
        return zstandard.ZstdCompressor(level=3).compress(data)
    if compression == "none":
        return data
    raise ValueError(f"unknown compression {compression!r}")


def make_config(layers: list[bytes], *, os_="linux", arch="amd64", variant=None,
                cmd=None, env=None, created="2024-01-01T00:00:00Z", **extra) -> dict:
    """An image config whose rootfs.diff_ids match the uncompressed layers."""
    cfg = {
        "created": created,
        "architecture": arch,
        "os": os_,
        "config": {"Env": env or ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                   "Cmd": cmd or ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [sha256(l) for l in layers]},
        "history": [{"created": created, "created_by": f"layer {i}"} for i in range(len(layers))],
    }
    if variant:
        cfg["variant"] = variant
    cfg.update(extra)
    return cfg


class _Client:
    """Minimal distribution-API client used only for pushing test fixtures."""

    def __init__(self, host, auth=None, scheme="http", ssl_context=None):
        self.host = host
        self.scheme = scheme
        self.ssl_context = ssl_context
        self.basic = None
        self.bearer = {}
        if auth:
            self.basic = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        self.auth = auth

    def _conn(self, host=None):
        host = host or self.host
        if self.scheme == "https":
            return http.client.HTTPSConnection(host, timeout=60, context=self.ssl_context)
        return http.client.HTTPConnection(host, timeout=60)

    def request(self, method, path, body=None, headers=None, repo=None):
        headers = dict(headers or {})
        for attempt in range(2):
            h = dict(headers)
            if repo and repo in self.bearer:
                h["Authorization"] = "Bearer " + self.bearer[repo]
            elif self.basic:
                h["Authorization"] = self.basic
            c = self._conn()
            try:
                c.request(method, path, body=body, headers=h)
                r = c.getresponse()
                data = r.read()
            finally:
                c.close()
            if r.status == 401 and attempt == 0 and repo:
                chal = r.getheader("WWW-Authenticate", "")
                if chal.lower().startswith("bearer"):
                    self.bearer[repo] = self._token(chal, repo)
                    continue
            return r, data
        return r, data

    def _token(self, chal, repo):
        params = dict(_parse_challenge(chal))
        q = {"service": params.get("service", ""),
             "scope": f"repository:{repo}:pull,push"}
        u = urllib.parse.urlsplit(params["realm"])
        path = u.path + "?" + urllib.parse.urlencode(q)
        c = (http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection)(
            u.netloc, timeout=30)
        h = {}
        if self.basic:
            h["Authorization"] = self.basic
        c.request("GET", path, headers=h)
        r = c.getresponse()
        body = json.loads(r.read())
        c.close()
        return body.get("token") or body.get("access_token")


def _parse_challenge(value: str):
    import re
    for m in re.finditer(r'(\w+)="([^"]*)"', value):
        yield m.group(1), m.group(2)


def push_blob(client: _Client, repo: str, data: bytes) -> str:
    digest = sha256(data)
    r, _ = client.request("HEAD", f"/v2/{repo}/blobs/{digest}", repo=repo)
    if r.status == 200:
        return digest
    r, body = client.request("POST", f"/v2/{repo}/blobs/uploads/", body=b"",
                             headers={"Content-Length": "0"}, repo=repo)
    if r.status != 202:
        raise RuntimeError(f"upload start failed: {r.status} {body[:300]!r}")
    loc = r.getheader("Location")
    u = urllib.parse.urlsplit(loc)
    q = urllib.parse.parse_qsl(u.query) + [("digest", digest)]
    path = u.path + "?" + urllib.parse.urlencode(q)
    r, body = client.request("PUT", path, body=data,
                             headers={"Content-Type": "application/octet-stream",
                                      "Content-Length": str(len(data))}, repo=repo)
    if r.status != 201:
        raise RuntimeError(f"upload failed: {r.status} {body[:300]!r}")
    return digest


def put_manifest(client: _Client, repo: str, ref: str, body: bytes, media_type: str) -> str:
    r, resp = client.request("PUT", f"/v2/{repo}/manifests/{ref}", body=body,
                             headers={"Content-Type": media_type}, repo=repo)
    if r.status != 201:
        raise RuntimeError(f"manifest put failed: {r.status} {resp[:300]!r}")
    return sha256(body)


def push_image(registry_host: str, repo: str, tag: str | None, layers: list[bytes],
               config: dict | None = None, *, media: str = "oci", compression: str = "gzip",
               auth: tuple[str, str] | None = None, scheme: str = "http",
               ssl_context=None, return_manifest: bool = False):
    """Push an image built from uncompressed tar layers; returns its manifest
    digest (or (digest, manifest bytes) with return_manifest=True).

    config defaults to make_config(layers). compression applies to every
    layer; it may also be a list, one entry per layer. tag None pushes by
    digest only. Idempotent: existing blobs are not uploaded again."""
    if media not in ("oci", "docker"):
        raise ValueError(media)
    client = _Client(registry_host, auth=auth, scheme=scheme, ssl_context=ssl_context)
    if config is None:
        config = make_config(layers)
    comps = compression if isinstance(compression, list) else [compression] * len(layers)
    descs = []
    for raw, comp in zip(layers, comps):
        blob = compress(raw, comp)
        d = push_blob(client, repo, blob)
        descs.append({"mediaType": LAYER_MEDIA[(media, comp)], "digest": d, "size": len(blob)})
    cfg_bytes = json.dumps(config, sort_keys=True).encode()
    cfg_digest = push_blob(client, repo, cfg_bytes)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST if media == "oci" else DOCKER_MANIFEST,
        "config": {"mediaType": OCI_CONFIG if media == "oci" else DOCKER_CONFIG,
                   "digest": cfg_digest, "size": len(cfg_bytes)},
        "layers": descs,
    }
    body = json.dumps(manifest, indent=2).encode()
    digest = put_manifest(client, repo, tag or sha256(body), body, manifest["mediaType"])
    return (digest, body) if return_manifest else digest


def push_index(registry_host: str, repo: str, tag: str | None, manifests: list, *,
               media: str = "oci", auth=None, scheme="http", ssl_context=None) -> str:
    """Push an OCI index / Docker manifest list over manifests already in repo.

    manifests: list of (digest, size, platform dict) or
    (digest, size, media_type, platform dict). Returns the index digest."""
    entries = []
    for m in manifests:
        if len(m) == 3:
            d, size, plat = m
            mt = OCI_MANIFEST if media == "oci" else DOCKER_MANIFEST
        else:
            d, size, mt, plat = m
        entries.append({"mediaType": mt, "digest": d, "size": size, "platform": plat})
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX if media == "oci" else DOCKER_LIST,
             "manifests": entries}
    body = json.dumps(index, indent=2).encode()
    client = _Client(registry_host, auth=auth, scheme=scheme, ssl_context=ssl_context)
    return put_manifest(client, repo, tag or sha256(body), body, index["mediaType"])


def push_multiarch(registry_host: str, repo: str, tag: str, platforms: list[str], *,
                   media="oci", compression="gzip", auth=None) -> tuple[str, dict[str, str]]:
    """Push one image per platform ("linux/amd64", "linux/arm/v7", ...), each
    with a busybox layer plus a small layer naming its platform, and an index
    over them. Returns (index digest, {platform: manifest digest})."""
    per = {}
    entries = []
    for p in platforms:
        parts = p.split("/")
        os_, arch = parts[0], parts[1]
        variant = parts[2] if len(parts) > 2 else None
        marker = make_layer({"etc/platform": p + "\n"})
        layers = [busybox_layer(), marker]
        cfg = make_config(layers, os_=os_, arch=arch, variant=variant)
        d, body = push_image(registry_host, repo, None, layers, cfg, media=media,
                             compression=compression, auth=auth, return_manifest=True)
        per[p] = d
        plat = {"os": os_, "architecture": arch}
        if variant:
            plat["variant"] = variant
        entries.append((d, len(body), plat))
    idx = push_index(registry_host, repo, tag, entries, media=media, auth=auth)
    return idx, per


# --------------------------------------------------------------------------
# a bearer token server (docker token auth), signing RS256 with openssl
# --------------------------------------------------------------------------

def _b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class TokenServer:
    """A token endpoint as in Docker's token auth spec, for tests.

    GET /token?service=S&scope=repository:NAME:ACTIONS with optional Basic
    credentials; users=None grants anonymous pull to everyone, else the
    Basic credentials must match (401 otherwise) and grant pull+push.
    Every request is recorded in .requests as dict(path, query, auth_user).
    Tokens are JWTs with an x5c header holding the self-signed cert, which is
    also the registry's rootcertbundle."""

    def __init__(self, tmpdir, *, users=None, service="pyimg-test-registry",
                 issuer="pyimg-test-issuer", anonymous=True):
        self.dir = os.path.join(str(tmpdir), f"token-{time.monotonic_ns()}")
        os.makedirs(self.dir)
        self.key = os.path.join(self.dir, "key.pem")
        self.rootcertbundle = os.path.join(self.dir, "cert.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-keyout", self.key, "-out", self.rootcertbundle, "-days", "2",
                        "-subj", "/CN=pyimg-test-token"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        der = subprocess.run(["openssl", "x509", "-in", self.rootcertbundle, "-outform", "DER"],
                             check=True, capture_output=True).stdout
        self.x5c = base64.b64encode(der).decode()
        self.users = users
        self.anonymous = anonymous
        self.service = service
        self.issuer = issuer
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                u = urllib.parse.urlsplit(self.path)
                q = urllib.parse.parse_qs(u.query)
                user = None
                pw = None
                ah = self.headers.get("Authorization", "")
                if ah.startswith("Basic "):
                    user, _, pw = base64.b64decode(ah[6:]).decode().partition(":")
                with server._lock:
                    server.requests.append({"path": u.path, "query": q, "auth_user": user,
                                            "raw_query": u.query})
                if server.users is not None:
                    if user is None and not server.anonymous:
                        return self._deny()
                    if user is not None and server.users.get(user) != pw:
                        return self._deny()
                access = []
                for scope in q.get("scope", []):
                    for one in scope.split(" "):
                        parts = one.split(":")
                        if len(parts) < 3:
                            continue
                        typ, name, actions = parts[0], ":".join(parts[1:-1]), parts[-1]
                        allowed = [a for a in actions.split(",")
                                   if a == "pull" or (user is not None and a == "push")
                                   or server.users is None]
                        access.append({"type": typ, "name": name, "actions": allowed})
                tok = server.sign(user or "", access)
                body = json.dumps({"token": tok, "access_token": tok, "expires_in": 300}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _deny(self):
                body = b'{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}'
                self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.realm = f"http://127.0.0.1:{self.port}/token"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def sign(self, subject: str, access: list) -> str:
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        claims = {"iss": self.issuer, "sub": subject, "aud": self.service,
                  "exp": now + 600, "nbf": now - 60, "iat": now,
                  "jti": _b64url(os.urandom(12)), "access": access}
        signing_input = (_b64url(json.dumps(header).encode()) + "."
                         + _b64url(json.dumps(claims).encode()))
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", self.key],
                             input=signing_input.encode(), check=True,
                             capture_output=True).stdout
        return signing_input + "." + _b64url(sig)

    def registry_token_config(self) -> dict:
        return {"realm": self.realm, "service": self.service, "issuer": self.issuer,
                "rootcertbundle": self.rootcertbundle}

    def scopes(self) -> list[str]:
        with self._lock:
            return [s for r in self.requests for s in r["query"].get("scope", [])]

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def start_token_server(tmpdir, **kw) -> TokenServer:
    return TokenServer(tmpdir, **kw)


def make_tls_cert(tmpdir, cn="127.0.0.1") -> tuple[str, str]:
    """Self-signed server cert for 127.0.0.1/localhost; returns (cert, key)."""
    d = os.path.join(str(tmpdir), f"tls-{time.monotonic_ns()}")
    os.makedirs(d)
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "2", "-subj", f"/CN={cn}",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cert, key


# --------------------------------------------------------------------------
# a fault-injecting reverse proxy in front of a registry
# --------------------------------------------------------------------------

class FaultProxy:
    """HTTP reverse proxy to upstream "host:port" that can misbehave.

    add_rule(contains, action, *, method="GET", times=1, **kw) — the first
    `times` requests whose path contains `contains` get `action`:
      "status"   answer kw["status"] (default 500) with a small error body
      "corrupt"  flip one byte of the body (same length)
      "truncate" send full headers but only kw["at"] bytes, then close
      "short"    send a Content-Length and body that are both shorter
      "reset"    close the connection without answering
      "replace"  answer 200 with kw["body"] and kw.get("content_type")
      "redirect" answer 307 to the same path on kw["to"] (another host)
      "slow"     send the body kw["chunk"] bytes at a time, kw["delay"] s apart
                 (chunk=1 and a long delay is a drip)
      "extra"    the body with kw["extra"] more bytes, Content-Length saying so
      "lying-length"  a Content-Length kw["plus"] bytes longer than the body,
                 the body, then the connection held open kw.get("hold", 10) s
      "chunked"  the body in chunked encoding (no Content-Length), followed by
                 kw.get("extra", b"") and, with endless=True, by random
                 chunks until the client goes away; unterminated=True holds
                 the connection open kw.get("hold", 10) s instead of ending
                 the body
      "hang"     read the request, answer nothing for kw.get("hold", 10) s
      "drip-headers"  the status line and headers one byte every kw["delay"] s
      "close-after"  answer as usual, then close the connection without a
                 Connection: close (a keep-alive timeout passing meanwhile)
    times=None means forever. Misbehaving answers stop when stop() is called
    (or the client goes away), so no test waits for a held connection. Every request is recorded in .log as dict(method,
    path, headers, conn: the client's address and port, one per connection). Loopback only; stop() shuts it down."""

    def __init__(self, upstream: str):
        self.upstream = upstream
        self.rules: list[dict] = []
        self.log: list[dict] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _hold(self, seconds):
                proxy._stopping.wait(seconds)
                self.close_connection = True

            def _handle(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                with proxy._lock:
                    proxy.log.append({"method": self.command, "path": self.path,
                                      "headers": dict(self.headers.items()),
                                      "conn": self.client_address})
                    rule = None
                    for r in proxy.rules:
                        if r["contains"] in self.path and r["method"] in (self.command, "*") \
                                and (r["times"] is None or r["times"] > 0):
                            if r["times"] is not None:
                                r["times"] -= 1
                            r["hits"] += 1
                            rule = r
                            break
                action = rule["action"] if rule else None
                if action == "reset":
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                if action == "status":
                    msg = b'{"errors":[{"code":"UNAVAILABLE","message":"injected failure"}]}'
                    self.send_response(rule.get("status", 500))
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(msg)))
                    self.end_headers()
                    self.wfile.write(msg)
                    return
                if action == "replace":
                    data = rule["body"]
                    self.send_response(200)
                    self.send_header("Content-Type", rule.get("content_type") or "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                    return
                if action == "hang":
                    self._hold(rule.get("hold", 10))
                    return
                if action == "redirect":
                    self.send_response(307)
                    self.send_header("Location", f"http://{rule['to']}{self.path}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "connection", "accept-encoding")}
                c = http.client.HTTPConnection(proxy.upstream, timeout=60)
                try:
                    c.request(self.command, self.path, body=body, headers=headers)
                    r = c.getresponse()
                    try:
                        data = r.read()
                    except http.client.IncompleteRead as e:
                        # docker-registry's 416 announces the blob's length
                        # but sends a short error body
                        data = e.partial
                    status, rh = r.status, r.getheaders()
                finally:
                    c.close()
                if action == "corrupt" and data:
                    i = min(len(data) - 1, rule.get("at", len(data) // 2))
                    data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
                if action == "short" and data:
                    data = data[:rule.get("at", len(data) // 2)]
                if action == "extra":
                    data += rule.get("extra", b"x" * 1000)
                if action == "drip-headers":
                    head = f"HTTP/1.1 {status} OK\r\nContent-Length: {len(data)}\r\n\r\n".encode()
                    try:
                        for i in range(len(head)):
                            if proxy._stopping.wait(rule.get("delay", 0.5)):
                                break
                            self.wfile.write(head[i:i + 1])
                            self.wfile.flush()
                    except OSError:
                        pass
                    self.close_connection = True
                    return
                self.send_response(status)
                for k, v in rh:
                    if k.lower() in ("content-length", "connection", "transfer-encoding"):
                        continue
                    if k.lower() == "location" and proxy.upstream in v:
                        v = v.replace(proxy.upstream, proxy.host)
                    self.send_header(k, v)
                if action == "chunked":
                    self.send_header("Transfer-Encoding", "chunked")
                elif action == "lying-length":
                    self.send_header("Content-Length", str(len(data) + rule.get("plus", 1000)))
                else:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command == "HEAD":
                    return
                if action == "chunked":
                    try:
                        for part in (data, rule.get("extra", b"")):
                            if part:
                                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                        while rule.get("endless") and not proxy._stopping.is_set():
                            part = os.urandom(65536)
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                        if rule.get("unterminated"):
                            self.wfile.flush()
                            self._hold(rule.get("hold", 10))
                            return
                        self.wfile.write(b"0\r\n\r\n")
                    except OSError:
                        pass  # the client went away
                    self.close_connection = True
                    return
                if action == "lying-length":
                    try:
                        self.wfile.write(data)
                        self.wfile.flush()
                    except OSError:
                        return
                    self._hold(rule.get("hold", 10))
                    return
                if action == "slow":
                    step = rule.get("chunk", 8192)
                    try:
                        for i in range(0, len(data), step):
                            self.wfile.write(data[i:i + step])
                            self.wfile.flush()
                            if proxy._stopping.wait(rule.get("delay", 0.05)):
                                break
                    except OSError:
                        pass  # the client went away
                    return
                if action == "truncate":
                    self.wfile.write(data[:rule.get("at", len(data) // 2)])
                    self.wfile.flush()
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                self.wfile.write(data)
                if action == "close-after":
                    self.wfile.flush()
                    self.close_connection = True

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def add_rule(self, contains: str, action: str, *, method: str = "GET", times=1, **kw) -> dict:
        rule = {"contains": contains, "action": action, "method": method, "times": times,
                "hits": 0, **kw}
        with self._lock:
            self.rules.append(rule)
        return rule

    def requests(self, method: str | None = None, contains: str = "") -> list[dict]:
        with self._lock:
            return [r for r in self.log if (method is None or r["method"] == method)
                    and contains in r["path"]]

    def stop(self) -> None:
        self._stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()


# --------------------------------------------------------------------------
# running the real pyimg CLI
# --------------------------------------------------------------------------

def pyimg_bin() -> str:
    import sys
    return os.path.join(os.path.dirname(sys.executable), "pyimg")


def write_pyimg_config(tmpdir, **settings) -> str:
    """Write a pyimg config.json (keys as in imagetool/config.py; use
    registry_mirrors= for "registry-mirrors" and insecure_registries= for
    "insecure-registries"). Tests get fast retries and a private Docker
    credentials dir and certs dir unless given. Returns its path."""
    tmpdir = str(tmpdir)
    cfg = {"retry_backoff": 0.05, "retries": 4,
           "docker_config": os.path.join(tmpdir, "docker-config"),
           "certs_dir": os.path.join(tmpdir, "certs.d"), "timeout": 20}
    for k, v in settings.items():
        cfg[{"registry_mirrors": "registry-mirrors",
             "insecure_registries": "insecure-registries"}.get(k, k)] = v
    path = os.path.join(tmpdir, f"pyimg-config-{time.monotonic_ns()}.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    return path


def run_pyimg(root, *args, config=None, input=None, env=None, timeout=240):
    """Run `pyimg --root ROOT [--config CONFIG] ARGS...`; returns CompletedProcess (text)."""
    cmd = [pyimg_bin(), "--root", str(root)]
    if config:
        cmd += ["--config", str(config)]
    cmd += [str(a) for a in args]
    e = dict(os.environ)
    for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        e.pop(k, None)
    e.update(env or {})
    return subprocess.run(cmd, capture_output=True, text=True, input=input, env=e, timeout=timeout)


def tree_snapshot(root) -> dict:
    """{relative path: (size, sha256)} of every file under root (store-untouched checks)."""
    snap = {}
    for dp, _dn, fns in os.walk(str(root)):
        for fn in fns:
            p = os.path.join(dp, fn)
            rel = os.path.relpath(p, str(root))
            with open(p, "rb") as f:
                snap[rel] = hashlib.sha256(f.read()).hexdigest()
    return snap


def ok(p):
    """Assert a pyimg run succeeded; return it."""
    assert p.returncode == 0, p.stderr
    return p


def fail_one_line(p, *fragments):
    """Assert a pyimg run failed with exactly one stderr line containing
    every fragment; return that line."""
    assert p.returncode == 1, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]
