"""Distribution API v2 client: imagetool.http1 (HTTP/1.1) + ssl.

One RegistryClient serves one registry (as named in references, e.g.
"docker.io" or "127.0.0.1:5000") and is safe to share between threads.

Endpoints: the registry's mirrors (Config.mirrors_for) in order, then the
registry itself (docker.io -> Config.dockerio_endpoint). A mirror that fails
(connection error, 5xx, 404, 401) is skipped for the rest of the client's
life and the next endpoint is tried; the registry itself is last.

Schemes: https first. For insecure registries (Config.is_insecure: listed,
loopback, localhost) TLS is not verified and plain http is tried when the
TLS connection fails; the working scheme is remembered.

TLS: CAs and client certificates from CERTS_DIR/HOST:PORT/ (*.crt are CAs,
client.cert + client.key, Docker's layout), on top of the system CAs.
Proxies: HTTPS_PROXY / HTTP_PROXY / NO_PROXY from the environment (read
once per client; a lower-case name wins, as in Python's urllib).

Connections: HTTP/1.1 keep-alive. A response read to its end on a
connection neither side closes hands the connection back to the client,
and the next request to the same scheme, host, port and proxy takes it,
so a pull's requests share one connection per download thread. A request
that finds its idle connection closed by the server is sent again on a new
one (not counted as a retry); one with a body read from a file always
gets a new connection, as its body could not be sent twice.

Auth: a 401 challenge is answered once per (endpoint, scope): Bearer ->
GET realm?service=S&scope=repository:NAME:ACTIONS (credentials, if any, sent
to the realm as Basic); Basic -> the stored credentials. Authorization is
never sent to another host on a redirect.

Retries: connection errors, timeouts, truncated bodies, 429 and 5xx are
retried with exponential backoff (Config.retries attempts per endpoint); a
blob download interrupted mid-body resumes with a Range request.

Bounds: a blob is read up to its descriptor's size and no further (a body
that is longer, by its Content-Length or by what arrives, is an error and
not retried; a shorter one is retried, then an error); a manifest up to its
descriptor's size when an index gave one, else up to
Config.max_manifest_bytes. Every manifest and blob GET has a progress
deadline (Config.download_progress_timeout, see _Watch): without progress
for that long the connection is shut down and the download retried.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import socket
import ssl
import threading
import time
import urllib.parse

from imagetool import http1
from imagetool.config import Config
from imagetool.errors import AuthError, NotFoundError, RegistryError, StoreError, os_message, reason

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
           "application/vnd.docker.distribution.manifest.v1+prettyjws")
ACCEPT = ", ".join([OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST,
                    SCHEMA1[1] + ";q=0.1", SCHEMA1[0] + ";q=0.1"])
USER_AGENT = "pyimg/0.1"
CHUNK = 256 * 1024
# What counts as progress against the download deadline (see _Watch).
PROGRESS_BYTES = 16 * 1024


# RegistryError, AuthError and NotFoundError are imagetool.errors'; the
# classes here sort the registry's failures for its retry and fallback loops.

class Transient(RegistryError):
    """Worth retrying (connection trouble, 5xx, 429, truncated body)."""


class Stalled(Transient):
    """A download made no progress within its deadline."""


class _Watch:
    """The progress deadline of one download connection.

    Progress is PROGRESS_BYTES of body arriving since the last progress, or
    the response's headers arriving: a peer that sends a byte every few
    seconds keeps the connection (and every socket timeout) alive without
    ever finishing, so single bytes do not count. The deadline is `timeout`
    seconds after the last progress (or after the request was sent); when it
    passes, _Watchdog marks the watch stalled and shuts the socket down,
    which ends any read blocked on it, wherever http1 is reading
    (status line, headers, chunk sizes or body). Times are time.monotonic()."""

    __slots__ = ("sock", "timeout", "deadline", "pending", "stalled", "answered")

    def __init__(self, sock, timeout: float, now: float):
        self.sock = sock
        self.timeout = timeout
        self.deadline = now + timeout
        self.pending = 0            # bytes since the last progress
        self.stalled = False
        self.answered = False       # the response's headers arrived

    def answer(self, now: float) -> None:
        self.answered = True
        self.pending = 0
        self.deadline = now + self.timeout

    def progress(self, n: int, now: float) -> None:
        self.pending += n
        if self.pending >= PROGRESS_BYTES:
            self.pending = 0
            self.deadline = now + self.timeout

    def expired(self, now: float) -> bool:
        return now >= self.deadline

    def reason(self) -> str:
        """Why the download was abandoned (for the error message)."""
        if not self.answered:
            return f"download stalled, no response within {self.timeout:g} s"
        return (f"download stalled, no progress for {self.timeout:g} s "
                f"(less than {PROGRESS_BYTES // 1024} KiB arrived)")


class _Watchdog:
    """Enforces the deadlines of the watched connections from one daemon
    thread, which runs only while something is watched. Progress moves a
    deadline without waking the thread: it wakes at the earliest deadline it
    knew, finds it moved, and sleeps again."""

    def __init__(self):
        self._cond = threading.Condition()
        self._watches: list[_Watch] = []
        self._running = False

    def watch(self, sock, timeout: float) -> _Watch:
        w = _Watch(sock, timeout, time.monotonic())
        with self._cond:
            self._watches.append(w)
            if self._running:
                self._cond.notify()
            else:
                self._running = True
                threading.Thread(target=self._run, name="pyimg-watchdog", daemon=True).start()
        return w

    def unwatch(self, w: _Watch) -> None:
        with self._cond:
            if w in self._watches:
                self._watches.remove(w)

    def _run(self) -> None:
        with self._cond:
            while self._watches:
                now = time.monotonic()
                for w in [w for w in self._watches if w.expired(now)]:
                    w.stalled = True
                    self._watches.remove(w)
                    try:
                        # socket.socket's own shutdown, also for an SSLSocket
                        # (whose override would drop its TLS state under the
                        # reader's feet)
                        socket.socket.shutdown(w.sock, socket.SHUT_RDWR)
                    except OSError:
                        pass
                if self._watches:
                    self._cond.wait(max(0.0, min(w.deadline for w in self._watches) - now))
            self._running = False


def proxies_from_environment(env) -> dict[str, str]:
    """{scheme: proxy URL, "no": NO_PROXY list} from SCHEME_proxy variables
    of any case (http_proxy, HTTPS_PROXY, no_proxy...). The lower-case
    spelling wins over the others, and an empty one unsets the scheme (as
    Python's urllib reads them)."""
    out: dict[str, str] = {}
    lower: dict[str, str] = {}
    for name, value in env.items():
        if name[-6:].lower() != "_proxy":
            continue
        scheme = name[:-6].lower()
        if name == name.lower():
            lower[scheme] = value
        elif value:
            out[scheme] = value
    for scheme, value in lower.items():
        if value:
            out[scheme] = value
        else:
            out.pop(scheme, None)
    return out


def _no_proxy(no_proxy: str, host: str, hostport: str) -> bool:
    """Whether NO_PROXY's list (comma-separated names, ".suffix" or
    "suffix" for a domain and everything in it, optionally with :port;
    "*": every host) exempts host / host:port from the proxy."""
    if no_proxy.strip() == "*":
        return True
    host, hostport = host.lower(), hostport.lower()
    for name in no_proxy.split(","):
        name = name.strip().lstrip(".").lower()
        if not name:
            continue
        for h in (host, hostport):
            if h == name or h.endswith("." + name):
                return True
    return False


def _parse_challenge(header: str) -> tuple[str, dict]:
    scheme, _, rest = header.strip().partition(" ")
    params = {}
    for m in re.finditer(r'([\w-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))', rest):
        params[m.group(1).lower()] = m.group(2) if m.group(2) is not None else m.group(3)
    return scheme.lower(), params


def _error_text(body: bytes) -> tuple[str, str | None]:
    """Message and code from a distribution error body, if it has one."""
    try:
        errs = json.loads(body).get("errors") or []
        if errs:
            e = errs[0]
            msg = e.get("message") or e.get("code") or ""
            return msg, e.get("code")
    except Exception:
        pass
    text = body[:200].decode("utf-8", "replace").strip().splitlines()
    return (text[0] if text else ""), None


class Response:
    """An open HTTP response; the caller must close() it (or use `with`).
    watch: its progress deadline (_Watch) if the request had one.
    release: takes the connection back for another request (keep-alive)
    when close() finds the body read to its end on a connection both sides
    keep open; otherwise close() closes the connection."""

    def __init__(self, conn, resp, url, watch=None, watchdog=None, release=None):
        self.conn = conn
        self.resp = resp
        self.status = resp.status
        self.url = url
        self.watch = watch
        self._watchdog = watchdog
        self._release = release
        self._broken = False        # a read failed: the connection's state is unknown

    def header(self, name, default=None):
        return self.resp.getheader(name, default)

    def read(self, n: int = -1) -> bytes:
        """The body (up to n bytes). Raises Stalled or Transient when the
        connection fails meanwhile."""
        try:
            return self.resp.read(n) if n >= 0 else self.resp.read()
        except (OSError, http1.HTTPException) as e:
            self._broken = True
            if self.watch is not None and self.watch.stalled:
                raise Stalled(self.watch.reason()) from None
            raise Transient(f"reading the answer of {urllib.parse.urlsplit(self.url).netloc} failed: "
                            f"{_oserror_text(e)}") from None

    def read1(self, n: int) -> bytes:
        return self.resp.read1(n)

    def stream(self, limit: int, sink) -> int:
        """Pass the body to sink(chunk) as it arrives, up to limit bytes.
        Returns the body's length, or limit + 1 if it is longer (nothing
        past limit reaches sink, and no more than one byte past it is read).
        Each chunk counts as progress. Raises Stalled when the deadline
        passed, Transient when the connection failed (what reached sink
        stays valid: a download can resume after it)."""
        got = 0
        while True:
            try:
                chunk = self.resp.read1(min(CHUNK, limit + 1 - got))
            except (OSError, http1.HTTPException) as e:
                self._broken = True
                if self.watch is not None and self.watch.stalled:
                    raise Stalled(self.watch.reason()) from None
                raise Transient(f"download interrupted: {_oserror_text(e)}") from None
            if not chunk:
                if self.watch is not None and self.watch.stalled:
                    raise Stalled(self.watch.reason())
                return got
            if got + len(chunk) > limit:
                return limit + 1
            got += len(chunk)
            if self.watch is not None:
                self.watch.progress(len(chunk), time.monotonic())
            sink(chunk)

    def _reusable(self) -> bool:
        """The whole body was read and neither side closes the connection."""
        r = self.resp
        if self._release is None or self._broken or r.will_close \
                or (self.watch is not None and self.watch.stalled):
            return False
        if r.chunked:
            return r.isclosed()     # (http1 closes it after the last chunk)
        return r.length == 0

    def close(self):
        if self.conn is None:
            return                  # closed already: the connection is not ours any more
        if self.watch is not None:
            self._watchdog.unwatch(self.watch)
        reuse = self._reusable()
        try:
            self.resp.close()       # (the response's file, not the socket)
        finally:
            conn, self.conn = self.conn, None
            if reuse:
                self._release(conn)
            else:
                conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Endpoint:
    def __init__(self, base: str, mirror: bool, insecure: bool, host: str):
        # base: "https://host:port[/prefix]" or "host:port" (scheme decided later)
        self.base = base.rstrip("/")
        self.mirror = mirror
        self.insecure = insecure
        self.host = host            # host[:port] used for certs.d and credentials
        self.failed = False
        self._chosen = None         # base URL (scheme) that worked

    def __repr__(self):
        return f"Endpoint({self.base!r}, mirror={self.mirror})"


class RegistryClient:
    def __init__(self, registry: str, config: Config | None = None, credentials=None):
        self.registry = registry
        self.config = config or Config()
        self.credentials = credentials
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, str], str] = {}
        self._basic: dict[str, str] = {}
        self._ctx_cache: dict[tuple[str, bool], ssl.SSLContext] = {}
        # idle keep-alive connections by route (_connect's key): a pull's
        # requests to one registry share a few connections (one per
        # download thread) instead of setting one up per blob
        self._idle: dict[tuple, list] = {}
        self._watchdog = _Watchdog()
        self._proxies = proxies_from_environment(os.environ)
        self.endpoints = self._endpoints()

    # ---- endpoints ----------------------------------------------------------

    def _endpoints(self) -> list[Endpoint]:
        eps = []
        for m in self.config.mirrors_for(self.registry):
            if "://" not in m:
                m = "https://" + m
            host = urllib.parse.urlsplit(m).netloc
            eps.append(Endpoint(m, True, self.config.is_insecure(host), host))
        if self.registry == "docker.io":
            base = self.config.dockerio_endpoint
            if "://" not in base:
                base = "https://" + base
            host = urllib.parse.urlsplit(base).netloc
            eps.append(Endpoint(base, False, self.config.is_insecure(host), "docker.io"))
        else:
            eps.append(Endpoint(self.registry, False, self.config.is_insecure(self.registry),
                                self.registry))
        return eps

    def _bases(self, ep: Endpoint) -> list[str]:
        """Candidate base URLs for an endpoint, in the order to try them."""
        if "://" in ep.base:
            u = urllib.parse.urlsplit(ep.base)
            if u.scheme == "https" and ep.insecure and not ep.mirror:
                return [ep.base, "http://" + ep.base[len("https://"):]]
            return [ep.base]
        if ep.insecure:
            return ["https://" + ep.base, "http://" + ep.base]
        return ["https://" + ep.base]

    # ---- TLS / connections ----------------------------------------------------

    def _ssl_context(self, hostport: str, insecure: bool) -> ssl.SSLContext:
        key = (hostport, insecure)
        with self._lock:
            ctx = self._ctx_cache.get(key)
        if ctx is not None:
            return ctx
        if insecure:
            # Nothing is verified, so the system's CA bundle is not loaded
            # (that alone was ~10% of a small pull).
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        else:
            ctx = ssl.create_default_context()
        d = os.path.join(self.config.certs_dir, hostport)
        if os.path.isdir(d):
            try:
                names = sorted(os.listdir(d))
            except OSError as e:
                raise RegistryError(os_message(e, f"listing {d}")) from None
            for n in names:
                if n.endswith(".crt"):
                    try:
                        ctx.load_verify_locations(os.path.join(d, n))
                    except OSError as e:  # ssl.SSLError included
                        raise RegistryError(f"bad CA certificate {os.path.join(d, n)}: "
                                            f"{reason(e)}") from None
            for n in names:
                if n.endswith(".cert"):
                    keyf = os.path.join(d, n[:-5] + ".key")
                    if not os.path.exists(keyf):
                        raise RegistryError(f"client certificate {os.path.join(d, n)} has no "
                                            f"matching {keyf}")
                    try:
                        ctx.load_cert_chain(os.path.join(d, n), keyf)
                    except OSError as e:  # ssl.SSLError included
                        raise RegistryError(f"bad client certificate in {d}: {reason(e)}") from None
        with self._lock:
            self._ctx_cache[key] = ctx
        return ctx

    def _connect(self, url: str, insecure: bool, reuse: bool = True):
        """(connection, request target, extra headers, route key, reused)
        for url, honouring proxy settings: an idle connection of the same
        route if there is one and reuse allows (reused True), else a new,
        unconnected one."""
        u = urllib.parse.urlsplit(url)
        host = u.hostname or ""
        port = u.port or (443 if u.scheme == "https" else 80)
        hostport = u.netloc
        timeout = self.config.timeout
        target = u.path or "/"
        if u.query:
            target += "?" + u.query
        proxy = self._proxies.get(u.scheme)
        if proxy and _no_proxy(self._proxies.get("no", ""), host, hostport):
            proxy = None
        proxy_headers = {}
        if proxy:
            if "://" not in proxy:
                proxy = "http://" + proxy
            pu = urllib.parse.urlsplit(proxy)
            if pu.username:
                cred = f"{urllib.parse.unquote(pu.username)}:{urllib.parse.unquote(pu.password or '')}"
                proxy_headers["Proxy-Authorization"] = "Basic " + base64.b64encode(cred.encode()).decode()
            pport = pu.port or (443 if pu.scheme == "https" else 80)
        key = (u.scheme, host, port, insecure, proxy or "")
        with self._lock:
            idle = self._idle.get(key) if reuse else None
            conn = idle.pop() if idle else None
        if conn is not None:
            return conn, (url if proxy and u.scheme == "http" else target), \
                (proxy_headers if proxy and u.scheme == "http" else {}), key, True
        if u.scheme == "https":
            ctx = self._ssl_context(hostport, insecure)
            if proxy:
                conn = http1.Connection(pu.hostname, pport, timeout, context=ctx,
                                        tunnel=(host, port, proxy_headers))
            else:
                conn = http1.Connection(host, port, timeout, context=ctx)
            return conn, target, {}, key, False
        if proxy:
            conn = http1.Connection(pu.hostname, pport, timeout)
            return conn, url, proxy_headers, key, False
        return http1.Connection(host, port, timeout), target, {}, key, False

    def _release(self, key: tuple, conn) -> None:
        with self._lock:
            self._idle.setdefault(key, []).append(conn)

    def _raw(self, method: str, url: str, headers: dict, insecure: bool, body=None,
             max_redirects: int = 5, deadline: float | None = None) -> Response:
        """One request, following redirects (Authorization dropped when the
        host changes). Connection problems raise Transient. deadline: the
        progress deadline in seconds (see _Watch), from the moment the
        connection is up; the Response carries its watch for the body."""
        origin = urllib.parse.urlsplit(url).netloc
        hops = 0
        while hops <= max_redirects:
            # (a body read from a file could not be sent again if an idle
            # connection turned out closed: such a request gets a new one)
            conn, target, extra, key, reused = self._connect(
                url, insecure, reuse=body is None or isinstance(body, bytes))
            h = {"User-Agent": USER_AGENT, **extra, **headers}
            if urllib.parse.urlsplit(url).netloc != origin:
                h.pop("Authorization", None)
            watch = None
            try:
                if deadline:
                    if conn.sock is None:
                        conn.connect()
                    watch = self._watchdog.watch(conn.sock, deadline)
                conn.request(method, target, body=body, headers=h)
                resp = conn.getresponse()
            except ssl.SSLCertVerificationError as e:
                self._drop(conn, watch)
                raise RegistryError(f"TLS certificate of {urllib.parse.urlsplit(url).netloc} "
                                    f"not trusted: {e.verify_message}") from None
            except (OSError, http1.HTTPException) as e:
                self._drop(conn, watch)
                if watch is not None and watch.stalled:
                    raise Stalled(watch.reason()) from None
                if reused and isinstance(e, (ConnectionError, http1.RemoteDisconnected)):
                    # the server closed the idle connection meanwhile (its
                    # keep-alive timeout): the request again on a new one
                    continue
                if isinstance(e, ssl.SSLError):
                    raise _TLSFailed(f"TLS handshake with {urllib.parse.urlsplit(url).netloc} "
                                     f"failed: {e.reason or e}") from None
                raise Transient(f"cannot reach {urllib.parse.urlsplit(url).netloc}: "
                                f"{_oserror_text(e)}") from None
            if watch is not None:
                watch.answer(time.monotonic())
            if resp.status in (301, 302, 303, 307, 308) and resp.getheader("Location"):
                loc = resp.getheader("Location")
                try:
                    resp.read(65536)
                except (OSError, http1.HTTPException):
                    pass  # the connection is dropped anyway
                self._drop(conn, watch)
                url = urllib.parse.urljoin(url, loc)
                if resp.status == 303:
                    method, body = "GET", None
                hops += 1
                continue
            return Response(conn, resp, url, watch, self._watchdog,
                            release=lambda c, key=key: self._release(key, c))
        raise RegistryError(f"too many redirects from {origin}")

    def _drop(self, conn, watch) -> None:
        if watch is not None:
            self._watchdog.unwatch(watch)
        conn.close()

    # ---- auth -----------------------------------------------------------------

    def _creds(self, ep: Endpoint) -> tuple[str, str] | None:
        if self.credentials is None:
            return None
        return self.credentials.get(ep.host)

    def _auth_header(self, ep: Endpoint, scope: str) -> str | None:
        with self._lock:
            tok = self._tokens.get((ep.base, scope))
            if tok:
                return "Bearer " + tok
            return self._basic.get(ep.base)

    def _authenticate(self, ep: Endpoint, challenge: str, scope: str, base: str) -> None:
        scheme, params = _parse_challenge(challenge)
        creds = self._creds(ep)
        if scheme == "basic":
            if not creds:
                raise AuthError(f"authentication required by {ep.host} (no credentials; "
                                f"run pyimg login {ep.host})", status=401)
            with self._lock:
                if self._basic.get(ep.base):
                    raise AuthError(f"{ep.host} rejected the credentials for "
                                    f"{creds[0]!r} (wrong username or password)", status=401)
                self._basic[ep.base] = "Basic " + base64.b64encode(
                    f"{creds[0]}:{creds[1]}".encode()).decode()
            return
        if scheme != "bearer" or "realm" not in params:
            raise AuthError(f"{ep.host} sent an unsupported auth challenge: {challenge[:100]}",
                            status=401)
        realm = params["realm"]
        if ep.host == "docker.io" and self.config.dockerio_token_realm:
            realm = self.config.dockerio_token_realm
        q = {}
        if params.get("service"):
            q["service"] = params["service"]
        if scope:
            q["scope"] = scope
        if creds and creds[0] != "<token>":
            q["account"] = creds[0]
        sep = "&" if "?" in realm else "?"
        url = realm + sep + urllib.parse.urlencode(q, quote_via=urllib.parse.quote, safe="/:,")
        headers = {"Accept": "application/json"}
        if creds:
            headers["Authorization"] = "Basic " + base64.b64encode(
                f"{creds[0]}:{creds[1]}".encode()).decode()
        realm_host = urllib.parse.urlsplit(realm).netloc
        last = None
        for attempt in range(self.config.retries):
            try:
                with self._raw("GET", url, headers,
                               insecure=self.config.is_insecure(realm_host)) as r:
                    body = r.read(1 << 20)
                    status = r.status
                break
            except Transient as e:
                last = e
                self._sleep(attempt)
        else:
            raise AuthError(f"token server {realm_host}: {last}")
        if status in (401, 403):
            who = f"for {creds[0]!r} " if creds else ""
            raise AuthError(f"token server {realm_host} rejected the credentials {who}"
                            f"(HTTP {status}: {_error_text(body)[0] or 'unauthorized'})",
                            status=status)
        if status != 200:
            raise AuthError(f"token server {realm_host} answered HTTP {status}: "
                            f"{_error_text(body)[0]}", status=status)
        try:
            data = json.loads(body)
            tok = data.get("token") or data.get("access_token")
        except (ValueError, AttributeError):
            tok = None
        if not tok:
            raise AuthError(f"token server {realm_host} returned no token")
        with self._lock:
            self._tokens[(ep.base, scope)] = tok

    # ---- requests with auth, scheme fallback, endpoint fallback, retries ------

    def _sleep(self, attempt: int) -> None:
        time.sleep(min(8.0, self.config.retry_backoff * (2 ** attempt)))

    def request(self, ep: Endpoint, method: str, path: str, *, scope: str,
                headers: dict | None = None, body=None, ok=(200,),
                download: bool = False) -> Response:
        """One logical request to ep (path starts with /v2/). Handles scheme
        fallback and auth; returns an open Response whose status is in ok,
        raises NotFoundError (404), AuthError, Transient (retryable) or
        RegistryError. download: the request has the progress deadline."""
        deadline = self.config.download_progress_timeout if download else None
        bases = self._bases(ep)
        if getattr(ep, "_chosen", None):
            bases = [ep._chosen]
        last_exc = None
        for base in bases:
            url = base + path
            auth_tries = 0
            while True:
                h = dict(headers or {})
                ah = self._auth_header(ep, scope)
                if ah:
                    h["Authorization"] = ah
                try:
                    r = self._raw(method, url, h, ep.insecure, body=body, deadline=deadline)
                except _TLSFailed as e:
                    last_exc = e
                    break  # try the next scheme
                except Transient as e:
                    if ep.insecure and base.startswith("https://") and len(bases) > 1:
                        last_exc = e
                        break
                    raise
                ep._chosen = base
                if r.status == 401 and auth_tries < 2:
                    chal = r.header("WWW-Authenticate", "")
                    errbody = r.read(65536)
                    r.close()
                    if not chal:
                        raise AuthError(f"{ep.host} answered 401 without a challenge: "
                                        f"{_error_text(errbody)[0]}", status=401)
                    had = ah is not None
                    if had and auth_tries >= 1 and ah.startswith("Basic "):
                        creds = self._creds(ep)
                        raise AuthError(f"{ep.host} rejected the credentials for "
                                        f"{creds[0] if creds else '?'!r} (wrong username or "
                                        f"password)", status=401)
                    if had and auth_tries >= 1:
                        raise AuthError(f"{ep.host} denied access ({_error_text(errbody)[0] or 'unauthorized'}); "
                                        f"check the credentials and that the repository exists",
                                        status=401)
                    with self._lock:
                        self._tokens.pop((ep.base, scope), None)
                    self._authenticate(ep, chal, scope, base)
                    auth_tries += 1
                    continue
                if r.status in ok:
                    return r
                errbody = r.read(65536)
                r.close()
                msg, code = _error_text(errbody)
                if r.status == 401 or r.status == 403:
                    raise AuthError(f"{ep.host} denied access (HTTP {r.status}"
                                    f"{': ' + msg if msg else ''})", status=r.status, code=code)
                if r.status == 404:
                    raise NotFoundError(msg or "not found", status=404, code=code)
                if r.status == 429 or r.status >= 500:
                    raise Transient(f"{ep.host} answered HTTP {r.status}"
                                    f"{': ' + msg if msg else ''}", status=r.status, code=code)
                raise RegistryError(f"{ep.host} answered HTTP {r.status}"
                                    f"{': ' + msg if msg else ''}", status=r.status, code=code)
        raise Transient(str(last_exc) if last_exc else f"cannot reach {ep.host}")

    def _retrying(self, ep: Endpoint, fn):
        """Call fn() with retries on Transient; mirrors get one attempt."""
        attempts = 1 if ep.mirror else self.config.retries
        for attempt in range(attempts):
            try:
                return fn()
            except Transient:
                if attempt + 1 >= attempts:
                    raise
                self._sleep(attempt)

    def _over_endpoints(self, fn, retry: bool = True):
        """fn(endpoint) on each usable endpoint until one succeeds. A mirror's
        failure falls through to the next; the registry's own error is final.
        retry=False: no retries here (the caller has its own loop)."""
        eps = [e for e in self.endpoints if not e.failed] or self.endpoints[-1:]
        for ep in eps:
            try:
                if not retry:
                    return fn(ep)
                return self._retrying(ep, lambda: fn(ep))
            except RegistryError as e:
                if ep.mirror and not isinstance(e, _Fatal):
                    ep.failed = True
                    continue
                raise
        raise RegistryError("no endpoint left")  # not reached

    # ---- API --------------------------------------------------------------------

    def scope(self, repo: str, actions: str = "pull") -> str:
        return f"repository:{repo}:{actions}"

    def _subject(self, what: str, repo: str) -> str:
        return f"{what} (registry {self.registry}, repository {repo})"

    def _gave_up(self, subject: str, e: Exception, attempts: int) -> RegistryError:
        tail = f"; gave up after {attempts} attempts" if attempts > 1 else ""
        return RegistryError(f"{subject}: {e}{tail}", status=getattr(e, "status", None),
                             code=getattr(e, "code", None))

    def get_manifest(self, repo: str, reference: str,
                     size: int | None = None) -> tuple[bytes, str, str]:
        """(body, media type, digest) of a manifest. size: its descriptor's
        size, when an index gave one; the body must have exactly that length
        (a size over max_manifest_bytes is refused without a request).
        Otherwise the body is at most max_manifest_bytes. If reference is a
        digest the body is verified."""
        cap = self.config.max_manifest_bytes
        subject = self._subject(f"manifest {reference}", repo)
        if size is not None and size > cap:
            raise RegistryError(f"{subject} is {size} bytes, over the {cap}-byte limit for "
                                f"manifests (max_manifest_bytes)")
        limit = cap if size is None else size

        def too_long(n):
            if size is not None:
                return _Fatal(f"{subject} is longer than its descriptor's {size} bytes"
                              f"{f' (Content-Length {n})' if n else ''}")
            return _Fatal(f"{subject} is too large ({n} bytes, limit {cap})" if n else
                          f"{subject} is too large (over the limit of {cap} bytes)")

        def once(ep):
            with self.request(ep, "GET", f"/v2/{repo}/manifests/{reference}",
                              scope=self.scope(repo), headers={"Accept": ACCEPT},
                              download=True) as r:
                cl = http1.decimal(r.header("Content-Length"))
                if cl is not None and cl > limit:
                    raise too_long(cl)
                buf = bytearray()
                if r.stream(limit, buf.extend) > limit:
                    raise too_long(None)
                body = bytes(buf)
                if cl is not None and len(body) != cl:
                    raise Transient(f"manifest body truncated ({len(body)} of {cl} bytes)")
                mt = (r.header("Content-Type") or "").split(";")[0].strip()
            if size is not None and len(body) != size:
                raise _Fatal(f"{subject} is shorter than its descriptor's {size} bytes "
                             f"({len(body)})")
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            if reference.startswith("sha256:") and digest != reference:
                raise Transient(f"manifest digest mismatch: got {digest}")
            return body, mt, digest

        try:
            return self._over_endpoints(once)
        except Transient as e:
            if "digest mismatch" in str(e):
                raise RegistryError(str(e)) from None
            raise self._gave_up(subject, e, self.config.retries) from None

    def blob_stream(self, repo: str, digest: str, offset: int = 0,
                    retry: bool = True) -> tuple[Response, int]:
        """Open a blob download at offset; returns (response, start) where
        start is the offset the body begins at (0 if the server ignored the
        Range). The response has the progress deadline; the caller closes it."""
        def once(ep):
            headers = {}
            if offset:
                headers["Range"] = f"bytes={offset}-"
            r = self.request(ep, "GET", f"/v2/{repo}/blobs/{digest}", scope=self.scope(repo),
                             headers=headers, ok=(200, 206, 416), download=True)
            if r.status == 416:
                # closed unread: docker-registry's 416 announces the whole
                # blob's length and sends a few bytes
                r.close()
                raise _RangeRefused(f"the registry has no bytes from offset {offset} on",
                                    status=416)
            start = 0
            if r.status == 206:
                m = re.match(r"bytes (\d+)-", r.header("Content-Range") or "")
                start = int(m.group(1)) if m else -1
                if start != offset:
                    r.close()
                    raise Transient("server answered a Range request with the wrong range")
            return r, start
        return self._over_endpoints(once, retry=retry)

    def fetch_blob(self, repo: str, desc: dict, writer, progress=None) -> None:
        """Download desc's blob into writer (a store BlobWriter), resuming with
        Range after an interruption and retrying transient errors (a stall
        included) up to Config.retries attempts. Never reads past the
        descriptor's size: a longer body is an error at once (the registry
        serves other content; retrying would not help), a shorter one after
        the retries. Errors name the digest, registry and repository. Does
        not commit; the caller commits (which verifies digest and size)."""
        size = desc["size"]
        digest = desc["digest"]
        subject = self._subject(f"blob {digest}", repo)
        attempt = 0

        def sink(chunk):
            writer.write(chunk)
            if progress:
                progress(writer.offset)

        while True:
            try:
                if writer.offset >= size > 0:
                    # all bytes came but the body did not end properly: a
                    # Range request from the end would be unsatisfiable
                    writer.truncate(0)
                r, start = self.blob_stream(repo, digest, writer.offset, retry=False)
                try:
                    if start != writer.offset:
                        writer.truncate(start)
                        if progress:
                            progress(writer.offset)
                    self._check_blob_length(r, start, size, subject)
                    n = r.stream(size - start, sink)
                finally:
                    r.close()
                if n > size - start:
                    raise RegistryError(f"{subject}: longer than its descriptor's {size} bytes")
                if writer.offset < size:
                    raise Transient(f"truncated at {writer.offset} bytes, shorter than its "
                                    f"descriptor's {size} bytes")
                return
            except _RangeRefused as e:
                # a resumed download found the end of what the registry has
                raise RegistryError(f"{subject}: shorter than its descriptor's {size} bytes "
                                    f"({e})") from None
            except Transient as e:
                attempt += 1
                if attempt >= self.config.retries:
                    raise self._gave_up(subject, e, attempt) from None
                self._sleep(attempt - 1)

    @staticmethod
    def _check_blob_length(r: Response, start: int, size: int, subject: str) -> None:
        """Refuse, before reading it, a body whose headers announce more (or,
        for a range, a total other) than the descriptor's size."""
        cl = http1.decimal(r.header("Content-Length"))
        if cl is not None and start + cl > size:
            raise RegistryError(f"{subject}: longer than its descriptor's {size} bytes "
                                f"(Content-Length {cl}{f' from offset {start}' if start else ''})")
        if r.status == 206:
            m = re.match(r"bytes \d+-\d+/(\d+)", r.header("Content-Range") or "")
            if m and int(m.group(1)) != size:
                rel = "longer" if int(m.group(1)) > size else "shorter"
                raise RegistryError(f"{subject}: {rel} than its descriptor's {size} bytes "
                                    f"(Content-Range total {m.group(1)})")

    def blob_exists(self, repo: str, digest: str) -> bool:
        ep = self.endpoints[-1]
        try:
            r = self._retrying(ep, lambda: self.request(ep, "HEAD", f"/v2/{repo}/blobs/{digest}",
                                                        scope=self.scope(repo, "pull,push")))
        except NotFoundError:
            return False
        r.close()
        return True

    def upload_blob(self, repo: str, digest: str, size: int, path: str) -> None:
        """Monolithic upload (POST then PUT ?digest=) of the file at path."""
        ep = self.endpoints[-1]
        scope = self.scope(repo, "pull,push")

        def once():
            r = self.request(ep, "POST", f"/v2/{repo}/blobs/uploads/", scope=scope,
                             headers={"Content-Length": "0"}, body=b"", ok=(202,))
            loc = r.header("Location")
            r.close()
            if not loc:
                raise RegistryError(f"{ep.host} gave no upload location")
            u = urllib.parse.urlsplit(loc)
            q = urllib.parse.parse_qsl(u.query) + [("digest", digest)]
            target = (u.path or "/") + "?" + urllib.parse.urlencode(q)
            if u.netloc and u.netloc != urllib.parse.urlsplit(ep._chosen).netloc:
                raise RegistryError(f"{ep.host} redirected the upload to another host "
                                    f"({u.netloc}); not supported")
            try:
                f = open(path, "rb")
            except OSError as e:
                raise StoreError(os_message(e, f"reading {path}")) from None
            with f:
                r = self.request(ep, "PUT", target, scope=scope, body=f,
                                 headers={"Content-Type": "application/octet-stream",
                                          "Content-Length": str(size)}, ok=(201,))
            r.close()
        self._retrying(ep, once)

    def put_manifest(self, repo: str, reference: str, body: bytes, media_type: str) -> str:
        ep = self.endpoints[-1]

        def once():
            r = self.request(ep, "PUT", f"/v2/{repo}/manifests/{reference}",
                             scope=self.scope(repo, "pull,push"), body=body,
                             headers={"Content-Type": media_type}, ok=(201, 200))
            r.close()
        self._retrying(ep, once)
        return "sha256:" + hashlib.sha256(body).hexdigest()

    def catalog(self, n: int = 1000) -> list[str]:
        ep = self.endpoints[-1]
        with self._retrying(ep, lambda: self.request(ep, "GET", f"/v2/_catalog?n={n}",
                                                     scope="registry:catalog:*")) as r:
            data = _json_object(r.read(8 << 20), f"{ep.host}'s catalog")
        return data.get("repositories") or []

    def tags(self, repo: str) -> list[str]:
        ep = self.endpoints[-1]
        with self._retrying(ep, lambda: self.request(ep, "GET", f"/v2/{repo}/tags/list",
                                                     scope=self.scope(repo))) as r:
            data = _json_object(r.read(8 << 20), f"{ep.host}'s tags list of {repo}")
        return data.get("tags") or []

    def ping(self) -> None:
        """GET /v2/ on the registry itself: raises AuthError if the stored
        credentials are rejected, RegistryError if unreachable."""
        ep = self.endpoints[-1]
        with self._retrying(ep, lambda: self.request(ep, "GET", "/v2/", scope="")) as r:
            r.read(65536)   # what is left unread closes the connection


class _TLSFailed(Transient):
    pass


class _Fatal(RegistryError):
    """Do not fall back to another endpoint or retry."""


class _RangeRefused(_Fatal):
    """A Range request answered 416: the blob ends before the offset."""


def _json_object(body: bytes, what: str) -> dict:
    """A JSON object a registry answered (an empty body is {}); raises
    RegistryError naming `what` when it is something else."""
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        raise RegistryError(f"{what} is not valid JSON") from None
    if not isinstance(data, dict):
        raise RegistryError(f"{what} is not a JSON object")
    return data


def _oserror_text(e: BaseException) -> str:
    """A connection failure in words (no exception names)."""
    if isinstance(e, socket.timeout):
        return "timed out"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, http1.IncompleteRead):
        return f"connection closed early ({len(e.partial)} bytes read)"
    if isinstance(e, http1.RemoteDisconnected):
        return "server closed the connection"
    if isinstance(e, OSError):
        return reason(e)
    if isinstance(e, http1.InvalidRequest):
        return f"cannot send the request ({str(e)[:80]})"
    if isinstance(e, http1.HTTPException):
        detail = str(e).splitlines()[0][:80] if str(e) else ""
        return "invalid HTTP response" + (f" ({detail})" if detail else "")
    return str(e).splitlines()[0][:200] if str(e) else "connection failed"
