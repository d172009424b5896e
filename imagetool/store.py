"""The shared content store: an OCI image layout directory.

    ROOT/oci-layout          {"imageLayoutVersion": "1.0.0"}
    ROOT/index.json          one descriptor per reference, each an image
                             manifest (or an index, for archives loaded with
                             `pyimg load`), annotated with
                             org.opencontainers.image.ref.name = the full
                             normalised reference (docker.io/library/busybox:latest)
    ROOT/blobs/sha256/HEX    content, named by its digest
    ROOT/ingest/             partial downloads (never read as content)
    ROOT/index.lock          flock: serialises index.json read-modify-write
    ROOT/gc.lock             flock: shared while content is being added,
                             exclusive while gc deletes blobs

Contracts:
  * A blob is visible under blobs/ only after its bytes were verified against
    the expected digest and size, written to a temp file in ingest/, fsynced
    and renamed into place (atomic). Nothing unverified is ever visible, and
    what is visible has its bytes on disk.
  * Nothing refers to a blob before its name is durable too: blobs/sha256 is
    fsynced after the rename and before index.json (or anything else) names
    the blob. A writer that publishes several blobs at once renames them all
    and fsyncs the directory once (BlobWriter.publish(sync_dir=False), then
    Store.sync_blobs()); that fsync also covers blobs another process renamed
    and has not fsynced yet, which is why a pull that found every blob
    present calls it as well before it writes index.json. A crash in between
    can lose a blob's name (never its bytes under its name): then nothing
    names it yet, and the next pull downloads it again.
  * index.json is replaced atomically (temp file, fsync, rename, fsync of
    the directory) while index.lock is held, so concurrent pyimg processes
    never lose an update or see a torn file.
  * Adding content is idempotent: a blob already present is not rewritten.
  * gc never deletes a blob that another process is about to reference:
    writers hold gc.lock shared (Store.writing()) from first blob to index
    update, gc holds it exclusive.

skopeo and umoci read this layout directly, e.g.
    skopeo inspect oci:/var/lib/pyimg:docker.io/library/busybox:latest
(skopeo splits "oci:DIR:REF" at the first ':' after "oci:", so the REF part
may itself contain ':' and '/').
"""
from __future__ import annotations

import errno
import fcntl
import os
import re
import time

from imagetool.lazy import LazyModule
from imagetool.errors import DigestMismatch, NotFound, StoreError, os_message
from runtime.toolkit import fastjson as json
from imagetool import reference as refmod

# Loaded when first used (bulk hashing, error paths): a
# call that only reads the store does not pay for them.
contextlib = LazyModule("contextlib")
hashlib = LazyModule("hashlib")

REF_NAME = "org.opencontainers.image.ref.name"
REPO_DIGEST = "io.pyimg.repo.digest"      # digest the registry served for the ref
PULLED_AT = "io.pyimg.pulled"             # RFC 3339 time the ref was (re)stored

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)

_HEX64 = re.compile(r"[a-f0-9]{64}\Z")


def split_digest(digest: str) -> tuple[str, str]:
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or not _HEX64.match(hexpart):
        raise StoreError(f"unsupported or malformed digest {digest!r}")
    return algo, hexpart


def _mkstemp(d: str, prefix: str) -> tuple[int, str]:
    """(fd, path) of a new file in d, mode 0600, opened for reading and
    writing (tempfile.mkstemp's contract, without importing tempfile and
    random on every pull)."""
    for _ in range(100):
        path = os.path.join(d, prefix + os.urandom(6).hex())
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600), path
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no unused temporary name", d)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str, data: bytes, mode: int = 0o644, sync_dir: bool = True) -> None:
    """Write data to path atomically: temp file in the same dir, fsync,
    rename, and (sync_dir) fsync of the directory, which makes the new name
    durable; without it a crash may bring back the file's previous version,
    or none, but never a torn one."""
    d = os.path.dirname(path) or "."
    fd, tmp = _mkstemp(d, ".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if sync_dir:
        _fsync_dir(d)


def platform_string(p: dict | None) -> str:
    if not p:
        return ""
    s = f"{p.get('os', '')}/{p.get('architecture', '')}"
    if p.get("variant"):
        s += "/" + p["variant"]
    return s


def default_platform() -> str:
    """This machine's platform as os/arch[/variant], Go/OCI naming."""
    m = os.uname().machine.lower()  # (what platform.machine() reads)
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
            "armv7l": "arm", "armv6l": "arm", "i386": "386", "i686": "386",
            "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}.get(m, m)
    if arch == "arm":
        return "linux/arm/v6" if m == "armv6l" else "linux/arm/v7"
    return f"linux/{arch}"


def parse_platform(s: str) -> dict:
    """"os/arch[/variant]" -> OCI platform dict; raises ValueError."""
    parts = s.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"invalid platform {s!r}: expected os/arch[/variant]")
    p = {"os": parts[0].lower(), "architecture": parts[1].lower()}
    if p["architecture"] in ("x86_64", "x86-64"):
        p["architecture"] = "amd64"
    if p["architecture"] == "aarch64":
        p["architecture"] = "arm64"
    if len(parts) == 3:
        p["variant"] = parts[2].lower()
    return p


def match_platform(candidates: list[dict], want: dict) -> dict | None:
    """Pick the index entry best matching want (like containerd's matcher):
    os and architecture must equal; a wanted variant must equal, with arm64's
    default variant v8 matching an entry without one; without a wanted
    variant, an entry with none or the architecture default is preferred."""
    defaults = {"arm64": "v8", "arm": "v7"}
    best, best_score = None, -1
    for c in candidates:
        p = c.get("platform") or {}
        if p.get("os") != want["os"] or p.get("architecture") != want["architecture"]:
            continue
        wv = want.get("variant") or defaults.get(want["architecture"], "")
        cv = p.get("variant") or defaults.get(p.get("architecture"), "")
        if want.get("variant"):
            if cv != wv:
                continue
            score = 2
        else:
            score = 2 if cv == wv else 1
        if score > best_score:
            best, best_score = c, score
    return best


class BlobWriter:
    """Writes one blob into ingest/ and, on commit(), verifies and publishes it.

    The caller must call commit() or abort() (use it as a context manager:
    leaving the block without commit aborts). Supports resuming: offset is the
    number of bytes written so far; truncate(0) restarts."""

    def __init__(self, store: "Store", digest: str, size: int | None):
        split_digest(digest)
        self.store = store
        self.digest = digest
        self.size = size
        # only ingest/ now: the layout itself appears when something is published
        try:
            os.makedirs(store.ingest_dir, exist_ok=True)
            fd, self.tmp = _mkstemp(store.ingest_dir, digest[7:19] + ".")
        except OSError as e:
            raise StoreError(os_message(e, f"creating a file in {store.ingest_dir}")) from None
        self.f = os.fdopen(fd, "w+b")
        self.offset = 0
        self._done = False
        self._synced = False
        # Hashed as it is written, so verify() need not read the blob back.
        self._hash = hashlib.sha256()

    def write(self, data: bytes) -> None:
        if self.size is not None and self.offset + len(data) > self.size:
            raise DigestMismatch(f"blob {self.digest}: more data than the expected {self.size} bytes")
        try:
            self.f.write(data)
        except OSError as e:
            raise StoreError(os_message(e, f"writing {self.tmp}")) from None
        self._hash.update(data)
        self.offset += len(data)

    def truncate(self, offset: int = 0) -> None:
        """Keep only the first `offset` bytes (a resumed download restarts
        there); the running hash is rebuilt from what is kept."""
        try:
            self._truncate(offset)
        except OSError as e:
            raise StoreError(os_message(e, f"writing {self.tmp}")) from None

    def _truncate(self, offset: int) -> None:
        self.f.seek(offset)
        self.f.truncate(offset)
        self.offset = offset
        self._hash = hashlib.sha256()
        if offset:
            self.f.flush()
            self.f.seek(0)
            left = offset
            while left:
                chunk = self.f.read(min(left, 1 << 20))
                if not chunk:
                    break
                self._hash.update(chunk)
                left -= len(chunk)
            self.f.seek(offset)

    def verify(self) -> None:
        """Check size and digest of what was written (raises DigestMismatch,
        after which the writer is aborted). The blob is not yet visible."""
        try:
            try:
                self.f.flush()
            except OSError as e:
                raise StoreError(os_message(e, f"writing {self.tmp}")) from None
            if self.size is not None and self.offset != self.size:
                raise DigestMismatch(
                    f"blob {self.digest}: size {self.offset} bytes, expected {self.size}")
            got = "sha256:" + self._hash.hexdigest()
            if got != self.digest:
                raise DigestMismatch(f"blob {self.digest}: content has digest {got}")
            self._verified = True
        except BaseException:
            self.abort()
            raise

    def sync(self) -> None:
        """fsync the verified blob's bytes (still in ingest/, not visible).
        publish() does it if it was not done; a caller with several blobs
        calls it for each where it waits anyway (a download thread), so that
        publishing them all does not wait for each in turn."""
        if not getattr(self, "_verified", False):
            raise StoreError(f"blob {self.digest}: sync() before verify()")
        if self._synced:
            return
        try:
            os.fsync(self.f.fileno())
        except OSError as e:
            self.abort()
            raise StoreError(os_message(e, f"writing {self.tmp}")) from None
        self._synced = True

    def publish(self, sync_dir: bool = True) -> str:
        """sync() and rename the verified blob into blobs/ (atomic). Returns
        its path. sync_dir: fsync blobs/sha256 too, making the name durable;
        a caller that passes False calls Store.sync_blobs() before anything
        names the blob (the store's contract)."""
        if not getattr(self, "_verified", False):
            raise StoreError(f"blob {self.digest}: publish() before verify()")
        dest = self.store.blob_path(self.digest)
        try:
            self.store._ensure_layout()
            self.sync()
            try:
                self.f.close()
                os.chmod(self.tmp, 0o644)
                os.replace(self.tmp, dest)
                if sync_dir:
                    _fsync_dir(os.path.dirname(dest))
            except OSError as e:
                raise StoreError(os_message(e, f"storing {dest}")) from None
            self._done = True
            return dest
        except BaseException:
            self.abort()
            raise

    def commit(self, sync_dir: bool = True) -> str:
        """verify() then publish(sync_dir). Returns the blob's path."""
        self.verify()
        return self.publish(sync_dir)

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        with contextlib.suppress(Exception):
            self.f.close()
        with contextlib.suppress(OSError):
            os.unlink(self.tmp)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.abort()


class Store:
    """An OCI image layout at root, shared by all pyimg processes.

    Read methods never create anything; the layout is created on first write."""

    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        self.blobs_dir = os.path.join(self.root, "blobs", "sha256")
        self.ingest_dir = os.path.join(self.root, "ingest")
        self.index_path = os.path.join(self.root, "index.json")

    # ---- layout -----------------------------------------------------------

    def _ensure_layout(self) -> None:
        lp = os.path.join(self.root, "oci-layout")
        try:
            os.makedirs(self.blobs_dir, exist_ok=True)
            os.makedirs(self.ingest_dir, exist_ok=True)
            # (their names become durable with index.json's first real
            # update, which fsyncs ROOT; lost before it, they are written again)
            if not os.path.exists(lp):
                atomic_write(lp, b'{"imageLayoutVersion":"1.0.0"}', sync_dir=False)
        except OSError as e:
            raise StoreError(os_message(e, f"creating the store layout in {self.root}")) from None
        if not os.path.exists(self.index_path):
            with self._index_lock():
                if not os.path.exists(self.index_path):
                    self._write_index({"schemaVersion": 2, "mediaType": OCI_INDEX,
                                       "manifests": []}, sync_dir=False)

    def _flock(self, name: str, mode: int) -> "Flock":
        try:
            os.makedirs(self.root, exist_ok=True)
        except OSError as e:
            raise StoreError(os_message(e, f"creating the store {self.root}")) from None
        return Flock(os.path.join(self.root, name), mode, StoreError)

    def _index_lock(self):
        return self._flock("index.lock", fcntl.LOCK_EX)

    def writing(self):
        """Context manager held while adding content (blocks a concurrent gc)."""
        return self._flock("gc.lock", fcntl.LOCK_SH)

    # ---- blobs ------------------------------------------------------------

    def blob_path(self, digest: str) -> str:
        """Path of the blob (whether or not it exists)."""
        _, hexpart = split_digest(digest)
        return os.path.join(self.blobs_dir, hexpart)

    def has_blob(self, digest: str, size: int | None = None) -> bool:
        try:
            st = os.stat(self.blob_path(digest))
        except (OSError, StoreError):
            return False
        return size is None or st.st_size == size

    def read_blob(self, digest: str) -> bytes:
        path = self.blob_path(digest)
        try:
            with open(path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise NotFound(f"blob {digest} is not in the store {self.root}") from None
        except OSError as e:
            raise StoreError(os_message(e, f"reading {path}")) from None

    def read_json(self, digest: str):
        data = self.read_blob(digest)
        try:
            return json.loads(data)
        except ValueError as e:
            raise StoreError(f"blob {digest} is not valid JSON: {e}") from None

    def writer(self, digest: str, size: int | None = None) -> BlobWriter:
        return BlobWriter(self, digest, size)

    def put_blob(self, data: bytes, digest: str | None = None, sync_dir: bool = True) -> str:
        """Store bytes (verified against digest if given); idempotent.
        sync_dir as for BlobWriter.publish."""
        d = "sha256:" + hashlib.sha256(data).hexdigest()
        if digest is not None and d != digest:
            raise DigestMismatch(f"blob {digest}: content has digest {d}")
        if not self.has_blob(d, len(data)):
            with self.writer(d, len(data)) as w:
                w.write(data)
                w.commit(sync_dir)
        return d

    def sync_blobs(self) -> None:
        """fsync blobs/sha256: every name renamed into it so far, by any
        process, is durable afterwards (see the contracts above)."""
        try:
            _fsync_dir(self.blobs_dir)
        except FileNotFoundError:
            pass  # nothing was ever published
        except OSError as e:
            raise StoreError(os_message(e, f"syncing {self.blobs_dir}")) from None

    def import_blob_file(self, path: str, digest: str | None = None) -> tuple[str, int]:
        """Copy a file into the store, verifying digest if given. Returns (digest, size)."""
        h = hashlib.sha256()
        try:
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            size = os.path.getsize(path)
        except OSError as e:
            raise StoreError(os_message(e, f"reading {path}")) from None
        d = "sha256:" + h.hexdigest()
        if digest is not None and d != digest:
            raise DigestMismatch(f"blob {digest}: content has digest {d}")
        if not self.has_blob(d, size):
            with self.writer(d, size) as w:
                try:
                    with open(path, "rb") as f:
                        for chunk in iter(lambda: f.read(1 << 20), b""):
                            w.write(chunk)  # (its own OSErrors are StoreErrors)
                except OSError as e:
                    raise StoreError(os_message(e, f"reading {path}")) from None
                w.commit()
        return d, size

    # ---- index.json -------------------------------------------------------

    def _read_index(self) -> dict:
        try:
            with open(self.index_path, "rb") as f:
                idx = json.load(f)
        except FileNotFoundError:
            return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
        except OSError as e:
            raise StoreError(os_message(e, f"reading {self.index_path}")) from None
        except ValueError as e:
            raise StoreError(f"{self.index_path} is not valid JSON: {e}") from None
        idx.setdefault("manifests", [])
        return idx

    def _write_index(self, idx: dict, sync_dir: bool = True) -> None:
        try:
            atomic_write(self.index_path, json.dumps(idx, indent=2).encode() + b"\n",
                         sync_dir=sync_dir)
        except OSError as e:
            raise StoreError(os_message(e, f"writing {self.index_path}")) from None

    def _update_index(self) -> "_IndexUpdate":
        """Read-modify-write index.json under index.lock: the with block gets
        the dict, which is written back unless the block raised."""
        self._ensure_layout()
        return _IndexUpdate(self)

    def entries(self) -> list[dict]:
        """The descriptors in index.json (copies)."""
        return [dict(d) for d in self._read_index()["manifests"]]

    def set_ref(self, ref: str, descriptor: dict, *, repo_digest: str | None = None) -> None:
        """Point the normalised reference ref at descriptor (replacing what it
        pointed at). Atomic; the descriptor's blob must already be stored."""
        if not self.has_blob(descriptor["digest"]):
            raise StoreError(f"{ref}: manifest {descriptor['digest']} is not in the store")
        desc = {k: descriptor[k] for k in ("mediaType", "digest", "size", "platform")
                if k in descriptor}
        ann = {REF_NAME: ref, PULLED_AT: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        if repo_digest:
            ann[REPO_DIGEST] = repo_digest
        desc["annotations"] = ann
        with self._update_index() as idx:
            idx["manifests"] = [d for d in idx["manifests"]
                                if (d.get("annotations") or {}).get(REF_NAME) != ref]
            idx["manifests"].append(desc)

    def lookup(self, ref: str) -> dict | None:
        """The index.json descriptor whose ref.name is exactly ref, or None."""
        for d in self._read_index()["manifests"]:
            if (d.get("annotations") or {}).get(REF_NAME) == ref:
                return d
        return None

    def _find(self, ref: str) -> list[dict]:
        """Descriptors ref designates: a reference (short or full, by tag or
        digest) or an image/manifest id prefix (like docker rmi ID)."""
        entries = self._read_index()["manifests"]
        # a name exactly as written in index.json (also bare tags other tools write)
        hits = [d for d in entries if (d.get("annotations") or {}).get(REF_NAME) == ref]
        if hits:
            return hits
        try:
            r = refmod.parse(ref)
        except refmod.ReferenceError_:
            r = None
        if r is not None:
            full = str(r)
            hits = [d for d in entries if (d.get("annotations") or {}).get(REF_NAME) == full]
            if not hits and r.digest:
                for d in entries:
                    name = (d.get("annotations") or {}).get(REF_NAME, "")
                    try:
                        rr = refmod.parse(name)
                    except refmod.ReferenceError_:
                        continue
                    if rr.name != r.name:
                        continue
                    if r.digest in (d["digest"], (d.get("annotations") or {}).get(REPO_DIGEST)):
                        if r.tag and rr.tag and r.tag != rr.tag:
                            continue
                        hits.append(d)
                if hits:
                    hits = hits[:1]
            if hits:
                return hits
        # an id: config digest (what `images` shows) or manifest digest prefix
        m = re.fullmatch(r"(?:sha256:)?([a-f0-9]{4,64})", ref)
        if m:
            prefix = m.group(1)
            for d in entries:
                ids = {d["digest"][7:]}
                cfg = self._config_digest(d)
                if cfg:
                    ids.add(cfg[7:])
                if any(i.startswith(prefix) for i in ids):
                    hits.append(d)
            if len({self._config_digest(d) or d["digest"] for d in hits}) > 1:
                raise StoreError(f"{ref}: ambiguous image id prefix")
        return hits

    def _config_digest(self, desc: dict) -> str | None:
        try:
            m = self.read_json(desc["digest"])
        except StoreError:
            return None
        return (m.get("config") or {}).get("digest")

    def resolve(self, ref: str, platform: str | None = None) -> tuple[str, dict]:
        """(manifest digest, image manifest) for ref. If ref is stored as an
        index, the entry for platform (default: this machine) is chosen; its
        manifest must be in the store. Raises NotFound naming ref."""
        hits = self._find(ref)
        if not hits:
            raise NotFound(f"no such image in the store {self.root}: {ref}")
        desc = hits[0]
        digest = desc["digest"]
        m = self.read_json(digest)
        mt = m.get("mediaType") or desc.get("mediaType")
        if mt in INDEX_TYPES or ("manifests" in m and "layers" not in m):
            want = parse_platform(platform or default_platform())
            present = [c for c in m.get("manifests", []) if self.has_blob(c["digest"])]
            c = match_platform(present, want)
            if c is None:
                raise NotFound(f"no manifest for platform {platform_string(want)} in the store "
                               f"{self.root}: {ref}")
            digest = c["digest"]
            m = self.read_json(digest)
        return digest, m

    def descriptor(self, ref: str) -> dict:
        """The index.json descriptor for ref (raises NotFound)."""
        hits = self._find(ref)
        if not hits:
            raise NotFound(f"no such image in the store {self.root}: {ref}")
        return dict(hits[0])

    def images(self) -> list[dict]:
        """One dict per stored reference: ref, repository, tag, digest
        (manifest), repo_digest, id (config digest), created, size (sum of
        compressed blob sizes), platform."""
        out = []
        for d in self._read_index()["manifests"]:
            ann = d.get("annotations") or {}
            name = ann.get(REF_NAME, "")
            if re.fullmatch(r"[\w][\w.-]*", name):
                # a bare tag, as umoci/skopeo write them: no repository
                repo, tag = "<none>", name
            else:
                try:
                    r = refmod.parse(name)
                    repo, tag = r.name, r.tag or None
                except refmod.ReferenceError_:
                    repo, tag = name or "<none>", None
            item = {"ref": name, "repository": repo, "tag": tag or "<none>",
                    "digest": d["digest"], "repo_digest": ann.get(REPO_DIGEST, d["digest"]),
                    "id": "", "created": "", "size": 0,
                    "platform": platform_string(d.get("platform"))}
            try:
                _, m = self.resolve(name) if name else (d["digest"], self.read_json(d["digest"]))
                cfgd = m.get("config", {}).get("digest", "")
                item["id"] = cfgd
                item["size"] = sum(l.get("size", 0) for l in m.get("layers", [])) + \
                    m.get("config", {}).get("size", 0)
                try:
                    cfg = self.read_json(cfgd)
                    item["created"] = cfg.get("created", "")
                    if not item["platform"]:
                        item["platform"] = platform_string(cfg)
                except StoreError:
                    pass
            except StoreError:
                pass
            out.append(item)
        return out

    def tag(self, src: str, dst: str) -> str:
        """Make the normalised reference dst point where src points. Returns dst."""
        desc = self.descriptor(src)
        dst_full = refmod.normalize(dst)
        ann = desc.get("annotations") or {}
        self.set_ref(dst_full, desc, repo_digest=None if ann.get(REPO_DIGEST) is None
                     else ann.get(REPO_DIGEST))
        return dst_full

    def remove(self, ref: str) -> list[str]:
        """Remove every index.json entry ref designates (blobs stay until gc).
        Returns the removed reference names; raises NotFound if none."""
        hits = self._find(ref)
        if not hits:
            raise NotFound(f"no such image in the store {self.root}: {ref}")
        names = [(d.get("annotations") or {}).get(REF_NAME, d["digest"]) for d in hits]
        drop = {(d["digest"], (d.get("annotations") or {}).get(REF_NAME)) for d in hits}
        with self._update_index() as idx:
            idx["manifests"] = [d for d in idx["manifests"]
                                if (d["digest"], (d.get("annotations") or {}).get(REF_NAME))
                                not in drop]
        return names

    # ---- garbage collection ----------------------------------------------

    def _mark(self, digest: str, live: set) -> None:
        if digest in live:
            return
        live.add(digest)
        try:
            m = self.read_json(digest)
        except StoreError:
            return
        if not isinstance(m, dict):
            return
        if "config" in m and isinstance(m["config"], dict) and "digest" in m["config"]:
            live.add(m["config"]["digest"])
        for l in m.get("layers", []) or []:
            if isinstance(l, dict) and "digest" in l:
                live.add(l["digest"])
        for c in m.get("manifests", []) or []:
            if isinstance(c, dict) and "digest" in c:
                self._mark(c["digest"], live)
        if isinstance(m.get("subject"), dict):
            pass  # referrers are not kept alive by their subject

    def gc(self, keep=()) -> tuple[int, int]:
        """Delete blobs no index.json entry (nor keep) reaches, and stale ingest
        files. Takes gc.lock exclusively, so writers finish first. Returns
        (blobs removed, bytes freed)."""
        if not os.path.isdir(self.root):
            return 0, 0
        removed = freed = 0
        with self._flock("gc.lock", fcntl.LOCK_EX):
            live: set[str] = set()
            for d in self._read_index()["manifests"]:
                self._mark(d["digest"], live)
            for k in keep:
                self._mark(k, live)
            try:
                names = os.listdir(self.blobs_dir)
            except FileNotFoundError:
                names = []
            except OSError as e:
                raise StoreError(os_message(e, f"listing {self.blobs_dir}")) from None
            for name in names:
                if "sha256:" + name in live:
                    continue
                p = os.path.join(self.blobs_dir, name)
                try:
                    size = os.path.getsize(p)
                    os.unlink(p)
                except OSError as e:
                    if e.errno != errno.ENOENT:
                        raise StoreError(os_message(e, f"removing {p}")) from None
                    continue
                removed += 1
                freed += size
            # no writer holds gc.lock now, so every ingest file is abandoned
            with contextlib.suppress(FileNotFoundError):
                for name in os.listdir(self.ingest_dir):
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(self.ingest_dir, name))
        return removed, freed


class Flock:
    """flock(2) on a lock file (created if missing) for the length of a with
    block; the lock goes with the fd when the block ends, however it ends.
    An OSError is raised as `error` (the caller's kind) naming the file."""

    def __init__(self, path: str, mode: int = fcntl.LOCK_EX, error: type = StoreError):
        self.path, self.mode, self.error, self.fd = path, mode, error, -1

    def __enter__(self) -> "Flock":
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise self.error(os_message(e, f"locking {self.path}")) from None
        try:
            fcntl.flock(self.fd, self.mode)
        except BaseException as e:
            os.close(self.fd)
            if isinstance(e, OSError):
                raise self.error(os_message(e, f"locking {self.path}")) from None
            raise
        return self

    def __exit__(self, *exc) -> None:
        os.close(self.fd)


class _IndexUpdate:
    def __init__(self, store: "Store"):
        self.store = store
        self.lock = store._index_lock()
        self.idx: dict = {}

    def __enter__(self) -> dict:
        self.lock.__enter__()
        try:
            self.idx = self.store._read_index()
        except BaseException:
            self.lock.__exit__(None, None, None)
            raise
        return self.idx

    def __exit__(self, et, e, tb) -> None:
        try:
            if et is None:
                self.store._write_index(self.idx)
        finally:
            self.lock.__exit__(et, e, tb)
