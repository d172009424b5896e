"""Pull orchestration: reference -> registry -> verified blobs -> store.

pull_image() is all-or-nothing: every blob is downloaded into the store's
ingest/ directory and verified (digest and size) first; only when all of them
verified are they renamed into blobs/ and the reference written to
index.json. Durability (the store's contracts): each download thread fsyncs
its blob once verified; publishing renames them all and fsyncs blobs/ once,
before index.json is written. A failed pull therefore leaves the store as it was (partial
downloads are deleted). Blobs the store already has are never downloaded
again ("Already exists"), whichever image brought them.

Errors are those of the step that failed (imagetool.errors: registry,
store, config, reference), named "pull REFERENCE: ..."; PullError is what
the pull itself finds wrong with the image it was served.
"""
from __future__ import annotations

import json
import sys
import threading

from imagetool import reference as refmod
from imagetool.config import Config
from imagetool.credentials import Credentials
from imagetool.registry import RegistryClient
from imagetool.errors import NotFoundError, PullError, PyimgError, ReferenceError_
from imagetool.store import (DOCKER_LIST, DOCKER_MANIFEST, INDEX_TYPES, MANIFEST_TYPES,
                             OCI_INDEX, OCI_MANIFEST, Store, default_platform, match_platform,
                             parse_platform, platform_string)

LAYER_TYPES = {
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar.zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
}


MAX_CONFIG_BYTES = 8 * 1024 * 1024  # configs are read into memory


# ---------------------------------------------------------------------------
# progress output
# ---------------------------------------------------------------------------

def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.3g}{unit}" if unit != "B" else f"{int(n)}B"
        n /= 1000.0
    return f"{n}"


class Progress:
    """docker-pull-like progress. On a TTY each layer has one line that is
    rewritten in place (ANSI cursor movement); otherwise each status change
    is printed once as a plain line. quiet prints nothing."""

    def __init__(self, out, quiet: bool = False):
        self.out = out
        self.quiet = quiet
        try:
            self.tty = out.isatty()
        except Exception:
            self.tty = False
        self.lock = threading.Lock()
        self.order: list[str] = []
        self.lines: dict[str, str] = {}
        self.last_status: dict[str, str] = {}

    def line(self, text: str) -> None:
        if self.quiet:
            return
        with self.lock:
            self.out.write(text + "\n")
            self.out.flush()

    def status(self, ident: str, status: str, detail: str = "") -> None:
        if self.quiet:
            return
        with self.lock:
            text = f"{ident}: {status}" + (f" {detail}" if detail else "")
            if not self.tty:
                if self.last_status.get(ident) != status:
                    self.last_status[ident] = status
                    self.out.write(f"{ident}: {status}\n")
                    self.out.flush()
                return
            if ident not in self.lines:
                self.order.append(ident)
                self.lines[ident] = text
                self.out.write(text + "\n")
            else:
                self.lines[ident] = text
                up = len(self.order) - self.order.index(ident)
                # up N lines, clear it, write, back down
                self.out.write(f"\x1b[{up}A\r\x1b[2K{text}\r\x1b[{up}B")
            self.out.flush()

    def bar(self, ident: str, done: int, total: int | None) -> None:
        if self.quiet or not self.tty:
            self.status(ident, "Downloading")
            return
        if total:
            width = 50
            filled = int(width * done / total) if total else 0
            bar = "[" + "=" * max(0, filled - 1) + (">" if filled else "") + \
                " " * (width - filled) + "]"
            self.status(ident, "Downloading", f"{bar} {_human(done)}/{_human(total)}")
        else:
            self.status(ident, "Downloading", _human(done))


# ---------------------------------------------------------------------------
# manifest helpers
# ---------------------------------------------------------------------------

def _kind(media_type: str, m: dict) -> str:
    """'index', 'manifest' or 'schema1' (raises ValueError if unrecognised)."""
    mt = m.get("mediaType") or media_type
    if m.get("schemaVersion") == 1 or mt.startswith("application/vnd.docker.distribution.manifest.v1"):
        return "schema1"
    if mt in INDEX_TYPES or (not mt and isinstance(m.get("manifests"), list)):
        return "index"
    if mt in MANIFEST_TYPES or (not mt and isinstance(m.get("layers"), list)
                                and isinstance(m.get("config"), dict)):
        return "manifest"
    raise ValueError(f"unsupported manifest media type {mt or '(none)'!r}")


MAX_DESCRIPTOR_SIZE = 2 ** 63 - 1  # the OCI descriptor's size is an int64


def _check_descriptor(d, what: str) -> None:
    if not isinstance(d, dict) or not isinstance(d.get("digest"), str) \
            or not isinstance(d.get("size"), int) or isinstance(d["size"], bool) \
            or not 0 <= d["size"] <= MAX_DESCRIPTOR_SIZE:
        raise ValueError(f"{what} descriptor lacks a valid digest/size")
    if not refmod.is_digest(d["digest"]):
        raise ValueError(f"{what} has unsupported digest {d['digest'][:80]!r}")


def validate_manifest(m: dict) -> None:
    """Structural checks of an image manifest (raises ValueError)."""
    _check_descriptor(m.get("config"), "config")
    layers = m.get("layers")
    if not isinstance(layers, list):
        raise ValueError("manifest has no layers list")
    for i, l in enumerate(layers):
        _check_descriptor(l, f"layer {i}")
        mt = l.get("mediaType", "")
        if mt and mt not in LAYER_TYPES:
            raise ValueError(f"layer {i} has unsupported media type {mt!r}")


def _load_json(body: bytes, what: str) -> dict:
    try:
        m = json.loads(body)
    except ValueError as e:
        raise ValueError(f"{what} is not valid JSON ({e})") from None
    if not isinstance(m, dict):
        raise ValueError(f"{what} is not a JSON object")
    return m


# ---------------------------------------------------------------------------
# pull
# ---------------------------------------------------------------------------

def pull_image(ref: str, *, root: str, config_path: str | None = None,
               platform: str | None = None, quiet: bool = False, out=None,
               max_layer_size: int | None = None,
               download_progress_timeout: float | None = None) -> str:
    """Pull ref into the store at root; returns the image manifest digest
    (for a multi-platform image: the chosen platform's manifest).

    platform: "os/arch[/variant]"; default this machine's. max_layer_size
    (bytes) and download_progress_timeout (seconds, 0: none) override the
    config's max-layer-size and download-progress-timeout. Raises a
    PyimgError (imagetool.errors; one line, "pull REFERENCE: ...") on any
    failure, leaving the store as it was. Progress goes to out (default
    sys.stdout); quiet suppresses it."""
    r = refmod.parse(ref)
    full = str(r)
    try:
        return _pull_image(r, full, root, config_path, platform, quiet,
                           out if out is not None else sys.stdout, max_layer_size,
                           download_progress_timeout)
    except PyimgError as e:
        raise e.within(f"pull {full}")


def _pull_image(r, full, root, config_path, platform, quiet, out, max_layer_size,
                download_progress_timeout) -> str:

    try:
        want = parse_platform(platform) if platform else parse_platform(default_platform())
    except ValueError as e:
        raise ReferenceError_(str(e)) from None
    cfg = Config.load(config_path)
    if max_layer_size is not None:
        cfg.max_layer_size = max_layer_size
    if download_progress_timeout is not None:
        cfg.download_progress_timeout = download_progress_timeout
    client = RegistryClient(r.registry, cfg, Credentials(cfg.docker_config))
    store = Store(root)
    prog = Progress(out, quiet)
    if r.tag and not r.digest:
        prog.line(f"{r.tag}: Pulling from {r.repository}")
    elif r.digest:
        prog.line(f"{r.digest}: Pulling from {r.repository}")

    try:
        digest = _pull(r, full, client, store, cfg, want, bool(platform), prog)
    except ValueError as e:  # (validate_manifest and friends)
        if isinstance(e, PyimgError):
            raise
        raise PullError(str(e)) from None
    if quiet:
        out.write(full + "\n")
        out.flush()
    return digest


def _pull(r, full, client, store, cfg, want, explicit_platform, prog) -> str:
    try:
        body, mt, repo_digest = client.get_manifest(r.repository, r.reference)
    except NotFoundError as e:
        what = f"manifest {r.reference}" if r.digest else f"tag {r.tag!r}"
        raise PullError(f"{what} not found in {r.name} ({e})") from None
    m = _load_json(body, "manifest")
    kind = _kind(mt, m)
    if kind == "schema1":
        raise PullError("image uses Docker manifest schema 1, which is "
                        "deprecated and not supported; re-push it as schema 2 or OCI")
    to_store = [(body, repo_digest, m.get("mediaType") or mt)]
    manifest_desc = {"mediaType": m.get("mediaType") or mt, "digest": repo_digest,
                     "size": len(body)}
    if kind == "index":
        entries = [e for e in m.get("manifests", []) if isinstance(e, dict)]
        for e in entries:
            _check_descriptor(e, "index entry")
        chosen = match_platform(entries, want)
        if chosen is None:
            avail = ", ".join(sorted({platform_string(e.get("platform")) for e in entries})) or "none"
            raise PullError(f"no image for platform {platform_string(want)} "
                            f"(available: {avail})")
        try:
            # read no further than the index's size for it
            cbody, cmt, cdigest = client.get_manifest(r.repository, chosen["digest"],
                                                      size=chosen["size"])
        except NotFoundError:
            raise PullError(f"manifest {chosen['digest']} listed in the index "
                            f"is missing from {r.name}") from None
        m = _load_json(cbody, "manifest")
        if _kind(cmt or chosen.get("mediaType", ""), m) != "manifest":
            raise PullError(f"index entry {cdigest} is not an image manifest")
        to_store.append((cbody, cdigest, m.get("mediaType") or cmt))
        manifest_desc = {"mediaType": m.get("mediaType") or cmt or chosen.get("mediaType"),
                         "digest": cdigest, "size": len(cbody),
                         "platform": chosen.get("platform")}
    validate_manifest(m)
    if m["config"]["size"] > MAX_CONFIG_BYTES:
        raise PullError(f"image config is too large ({m['config']['size']} bytes, "
                        f"limit {MAX_CONFIG_BYTES})")
    # every layer, stored or not: whether an image is refused does not
    # depend on what the store happens to hold
    limit = cfg.max_layer_size
    for l in m["layers"]:
        if limit is not None and l["size"] > limit:
            raise PullError(f"layer {l['digest']} is {l['size']} bytes, over "
                            f"max-layer-size ({limit} bytes)")
    manifest_digest = manifest_desc["digest"]

    prev = store.lookup(full)
    blobs = [m["config"]] + list(m["layers"])
    with store.writing():
        missing = [d for d in blobs if not store.has_blob(d["digest"], d["size"])]
        # a config or layer listed twice is fetched once
        seen = set()
        missing = [d for d in missing if not (d["digest"] in seen or seen.add(d["digest"]))]
        for l in m["layers"]:
            ident = l["digest"][7:19]
            if any(x["digest"] == l["digest"] for x in missing):
                prog.status(ident, "Pulling fs layer")
            else:
                prog.status(ident, "Already exists")
        writers = _download_all(r, client, store, cfg, missing, m["config"]["digest"], prog)
        try:
            # config platform check for single-manifest images
            cfg_blob = None
            cdesc = m["config"]
            if cdesc["digest"] in writers:
                w = writers[cdesc["digest"]]
                w.f.seek(0)
                cfg_blob = w.f.read()
            else:
                cfg_blob = store.read_blob(cdesc["digest"])
            try:
                image_cfg = json.loads(cfg_blob)
            except ValueError:
                image_cfg = None
            if not isinstance(image_cfg, dict):
                raise PullError(f"image config {cdesc['digest']} is not a JSON object")
            if kind == "manifest" and explicit_platform:
                got = {"os": image_cfg.get("os"), "architecture": image_cfg.get("architecture")}
                if image_cfg.get("variant"):
                    got["variant"] = image_cfg["variant"]
                if match_platform([{"platform": got}], want) is None:
                    raise PullError(f"image is for {platform_string(got)}, "
                                    f"not the requested {platform_string(want)}")
            if "platform" not in manifest_desc and image_cfg.get("os"):
                manifest_desc["platform"] = {k: image_cfg[k] for k in
                                             ("os", "architecture", "variant")
                                             if image_cfg.get(k)}
            # everything verified: publish blobs, then manifests, make their
            # names durable with one fsync of blobs/ (their bytes were synced
            # by the download threads), then the ref
            for d in missing:
                writers.pop(d["digest"]).publish(sync_dir=False)
                if d is not m["config"] and d["digest"] != m["config"]["digest"]:
                    prog.status(d["digest"][7:19], "Pull complete")
            for b, dg, _mt in to_store:
                store.put_blob(b, dg, sync_dir=False)
            # (also when this pull published nothing: blobs another pull
            # renamed into place are durable before index.json names them)
            store.sync_blobs()
            unchanged = (prev is not None and prev.get("digest") == manifest_digest
                         and (prev.get("annotations") or {}).get("io.pyimg.repo.digest")
                         == repo_digest)
            if not unchanged:  # an up-to-date pull leaves index.json alone
                store.set_ref(full, manifest_desc, repo_digest=repo_digest)
        finally:
            for w in writers.values():
                w.abort()
    prog.line(f"Digest: {repo_digest}")
    if prev and prev.get("digest") == manifest_digest and not missing:
        prog.line(f"Status: Image is up to date for {full}")
    else:
        prog.line(f"Status: Downloaded newer image for {full}")
    return manifest_digest


def _download_all(r, client, store, cfg, missing, config_digest, prog) -> dict:
    """Download and verify every descriptor in missing concurrently. Returns
    {digest: verified BlobWriter}; on any failure aborts all and raises."""

    writers: dict = {}
    cancel = threading.Event()

    class _Cancelled(Exception):
        pass

    def one(d):
        ident = d["digest"][7:19]
        is_layer = d["digest"] != config_digest
        w = store.writer(d["digest"], d["size"])
        writers[d["digest"]] = w

        def progress(n):
            if cancel.is_set():
                raise _Cancelled()
            if is_layer:
                prog.bar(ident, n, d["size"])
        try:
            client.fetch_blob(r.repository, d, w, progress)
        except NotFoundError:
            raise PullError(f"blob {d['digest']} not found in {r.name}") from None
        if is_layer:
            prog.status(ident, "Verifying Checksum")
        w.verify()
        # its bytes to disk here, while other downloads go on, rather than
        # one blob after another when they are published
        w.sync()
        if is_layer:
            prog.status(ident, "Download complete")

    # A few plain threads taking descriptors from a list (concurrent.futures
    # would import logging on every pull).
    todo = list(missing)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker():
        while not cancel.is_set():
            with lock:
                if not todo:
                    return
                d = todo.pop(0)
            try:
                one(d)
            except _Cancelled:
                return
            except BaseException as e:  # noqa: BLE001 - the first one is raised below
                with lock:
                    errors.append(e)
                cancel.set()
                return

    ok = False
    try:
        threads = [threading.Thread(target=worker, name=f"pyimg-dl-{i}", daemon=True)
                   for i in range(max(1, min(cfg.max_concurrent_downloads, len(todo))))]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(0.25)  # with a timeout, so that Ctrl-C reaches us
        except BaseException:
            # e.g. Ctrl-C: stop the workers at their next chunk, then unwind
            cancel.set()
            for t in threads:
                t.join()
            raise
        if errors:
            raise errors[0]
        ok = True
        return writers
    finally:
        if not ok:
            for w in writers.values():
                w.abort()
