"""pyimg save / load: docker-archive and oci-archive tar files.

docker-archive (what `docker save` wrote before Docker 25, read by `docker
load` and skopeo's docker-archive: transport):
    manifest.json  [{"Config": "<hex>.json", "RepoTags": [...], "Layers": ["<hex>/layer.tar"]}]
    <config hex>.json, <diff id hex>/layer.tar (uncompressed), repositories
oci-archive: a tar of an OCI image layout whose index.json names each image
with org.opencontainers.image.ref.name = the full reference (as the store).

save writes to a temp file next to the output and renames it (atomic).
load verifies every blob against its digest (and docker-archive layers
against the config's diff_ids) before anything enters the store, and names
the images it loads; names in docker-archives are normalised.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tarfile
import tempfile

from imagetool import reference as refmod
from imagetool.errors import ArchiveError, PyimgError, UsageError, os_message
from imagetool.tarstream import LayerStream
from imagetool.store import DOCKER_MANIFEST, INDEX_TYPES, OCI_INDEX, REF_NAME, Store

DOCKER_CONFIG_MT = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def _add_file(tf: tarfile.TarFile, name: str, path: str | None = None, data: bytes | None = None,
              stream=None, size: int | None = None):
    ti = tarfile.TarInfo(name)
    ti.mode = 0o644
    ti.mtime = 0
    if data is not None:
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    elif path is not None:
        ti.size = os.path.getsize(path)
        with open(path, "rb") as f:
            tf.addfile(ti, f)
    else:
        ti.size = size
        tf.addfile(ti, stream)


def save(root: str, refs: list[str], output: str, fmt: str = "docker-archive") -> None:
    """Write the stored images refs to the archive output (atomically).
    Errors name "save REF...", then what failed."""
    try:
        _save(root, refs, output, fmt)
    except PyimgError as e:
        raise e.within(f"save {' '.join(refs)}")


def _save(root: str, refs: list[str], output: str, fmt: str) -> None:
    if fmt not in ("docker-archive", "oci-archive"):
        raise UsageError(f"unknown format {fmt!r} (docker-archive or oci-archive)")
    store = Store(root)
    chosen = []
    for ref in refs:
        desc = store.descriptor(ref)
        digest, m = store.resolve(ref)
        chosen.append((ref, desc, digest, m))
    out_dir = os.path.dirname(os.path.abspath(output))
    try:
        fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".pyimg-save-")
    except OSError as e:
        raise ArchiveError(os_message(e, f"creating a file in {out_dir}")) from None
    os.close(fd)
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tf:
            if fmt == "oci-archive":
                _save_oci(store, chosen, tf)
            else:
                _save_docker(store, chosen, tf)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, output)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):  # a blob it names, or the archive being written
            raise ArchiveError(os_message(e) if e.filename else os_message(e, f"writing {output}")) from None
        if isinstance(e, tarfile.TarError):
            raise ArchiveError(f"writing {output}: {e}") from None
        raise


def _save_oci(store, chosen, tf):
    added = set()
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}

    def add_blob(digest):
        if digest in added:
            return
        added.add(digest)
        _add_file(tf, "blobs/sha256/" + digest[7:], path=store.blob_path(digest))

    for ref, desc, digest, m in chosen:
        for b in [m["config"]] + m["layers"]:
            add_blob(b["digest"])
        add_blob(digest)
        name = (desc.get("annotations") or {}).get(REF_NAME) or ref
        entry = {"mediaType": m.get("mediaType") or desc.get("mediaType"), "digest": digest,
                 "size": os.path.getsize(store.blob_path(digest)),
                 "annotations": {REF_NAME: name}}
        if desc.get("platform"):
            entry["platform"] = desc["platform"]
        index["manifests"].append(entry)
    _add_file(tf, "oci-layout", data=b'{"imageLayoutVersion":"1.0.0"}')
    _add_file(tf, "index.json", data=json.dumps(index).encode())


def _save_docker(store, chosen, tf):
    manifest = []
    repos: dict = {}
    added = set()
    for ref, desc, digest, m in chosen:
        cfg_digest = m["config"]["digest"]
        cfg = store.read_json(cfg_digest)
        diff_ids = (cfg.get("rootfs") or {}).get("diff_ids") or []
        if len(diff_ids) != len(m["layers"]):
            raise ArchiveError(f"{ref}: config lists {len(diff_ids)} diff ids for "
                               f"{len(m['layers'])} layers")
        cfg_name = cfg_digest[7:] + ".json"
        if cfg_name not in added:
            added.add(cfg_name)
            _add_file(tf, cfg_name, path=store.blob_path(cfg_digest))
        layer_names = []
        for l, diff_id in zip(m["layers"], diff_ids):
            name = diff_id[7:] + "/layer.tar"
            layer_names.append(name)
            if name in added:
                continue
            added.add(name)
            # uncompress to a temp file: the tar header needs the size first,
            # and the diff id must be checked before the layer is written
            # (compression told by the blob's magic bytes, as for the layers of a load)
            with tempfile.TemporaryFile() as tmp, LayerStream(store.blob_path(l["digest"]), None) as src:
                while chunk := src.read_chunk():
                    tmp.write(chunk)
                hexdigest, size = src.finish()
                if "sha256:" + hexdigest != diff_id:
                    raise ArchiveError(f"{ref}: layer {l['digest']} does not uncompress "
                                       f"to its diff id {diff_id}")
                tmp.seek(0)
                _add_file(tf, name, stream=tmp, size=size)
        name = (desc.get("annotations") or {}).get(REF_NAME) or ref
        tags = []
        try:
            r = refmod.parse(name)
            if r.tag:
                tags.append(refmod.Reference(r.registry, r.repository, r.tag, None).familiar())
                repos.setdefault(tags[-1].rsplit(":", 1)[0], {})[r.tag] = layer_names[-1].split("/")[0] \
                    if layer_names else cfg_digest[7:]
        except refmod.ReferenceError_:
            pass
        manifest.append({"Config": cfg_name, "RepoTags": tags or None, "Layers": layer_names})
    _add_file(tf, "manifest.json", data=json.dumps(manifest).encode())
    _add_file(tf, "repositories", data=json.dumps(repos).encode())


def load(root: str, path: str) -> list[str]:
    """Load every image of the archive at path into the store; returns the
    references (or image ids, for unnamed images) loaded. Errors name
    "load PATH", then what failed."""
    try:
        return _load(root, path)
    except PyimgError as e:
        raise e.within(f"load {path}")


def _load(root: str, path: str) -> list[str]:
    store = Store(root)
    try:
        tf = tarfile.open(path, "r:*")
    except OSError as e:
        raise ArchiveError(os_message(e, f"reading {path}")) from None
    except tarfile.TarError:
        raise ArchiveError("not a readable tar archive") from None
    try:
        work_dir = tempfile.TemporaryDirectory(prefix="pyimg-load-")
    except OSError as e:
        tf.close()
        raise ArchiveError(os_message(e, "creating a temporary directory")) from None
    with tf, work_dir as work:
        try:
            names = set(tf.getnames())  # reads the whole archive: a truncated one fails here
            if "oci-layout" in names and "index.json" in names:
                return _load_oci(store, tf, work, path)
            if "manifest.json" in names:
                return _load_docker(store, tf, work, path)
        except PyimgError:
            raise
        except OSError as e:
            raise ArchiveError(os_message(e)) from None
        except tarfile.TarError as e:
            raise ArchiveError(f"not a readable tar archive ({str(e).splitlines()[0]})") from None
        except KeyError as e:  # a member or a key the archive lacks
            raise ArchiveError(f"not a valid image archive: {e.args[0] if e.args else e}") from None
        except (ValueError, TypeError) as e:
            raise ArchiveError(f"not a valid image archive: {e}") from None
        raise ArchiveError("neither a docker-archive (manifest.json) nor an "
                           "oci-archive (oci-layout, index.json)")


def _extract(tf, member_name: str, work: str) -> str:
    m = tf.getmember(member_name)
    if not m.isfile():
        raise ValueError(f"{member_name} is not a regular file in the archive")
    src = tf.extractfile(m)
    fd, dst = tempfile.mkstemp(dir=work)
    with os.fdopen(fd, "wb") as f:
        shutil.copyfileobj(src, f, 1 << 20)
    return dst


def _load_oci(store, tf, work, path) -> list[str]:
    index = json.load(tf.extractfile("index.json"))
    loaded = []
    with store.writing():
        def import_tree(digest):
            p = _extract(tf, "blobs/sha256/" + digest[7:], work)
            store.import_blob_file(p, digest)
            os.unlink(p)
            m = store.read_json(digest)
            children = [m["config"]] + m.get("layers", []) if "config" in m else []
            for c in children:
                if not store.has_blob(c["digest"], c["size"]):
                    cp = _extract(tf, "blobs/sha256/" + c["digest"][7:], work)
                    store.import_blob_file(cp, c["digest"])
                    os.unlink(cp)
            for c in m.get("manifests", []) or []:
                if "blobs/sha256/" + c["digest"][7:] in tf.getnames():
                    import_tree(c["digest"])
        for desc in index.get("manifests", []):
            import_tree(desc["digest"])
            ann = desc.get("annotations") or {}
            name = ann.get("io.containerd.image.name") or ann.get(REF_NAME)
            full = None
            if name:
                try:
                    r = refmod.parse(name)
                    # a bare tag ("latest") is not a name
                    if "/" in name or ":" in name or "@" in name or "." in name:
                        full = str(r)
                except refmod.ReferenceError_:
                    full = None
            if full:
                store.set_ref(full, desc)
                loaded.append(full)
            else:
                loaded.append(desc["digest"])
    return loaded


def _load_docker(store, tf, work, path) -> list[str]:
    entries = json.load(tf.extractfile("manifest.json"))
    if not isinstance(entries, list):
        raise ValueError("manifest.json is not a list")
    loaded = []
    with store.writing():
        for e in entries:
            cfg_path = _extract(tf, e["Config"], work)
            cfg_digest, cfg_size = store.import_blob_file(cfg_path)
            with open(cfg_path, "rb") as f:
                cfg = json.load(f)
            diff_ids = (cfg.get("rootfs") or {}).get("diff_ids") or []
            if len(diff_ids) != len(e["Layers"]):
                raise ValueError(f"{e['Config']} lists {len(diff_ids)} diff ids for "
                                 f"{len(e['Layers'])} layers")
            layers = []
            for lname, diff_id in zip(e["Layers"], diff_ids):
                lp = _extract(tf, lname, work)
                with LayerStream(lp, None) as src:
                    hexdigest, _ = src.finish()
                    gz = src.kind == "gzip"
                if "sha256:" + hexdigest != diff_id:
                    raise ValueError(f"layer {lname} does not match its diff id {diff_id}")
                d, size = store.import_blob_file(lp)
                os.unlink(lp)
                layers.append({"mediaType": DOCKER_LAYER_GZIP if gz else DOCKER_LAYER_TAR,
                               "digest": d, "size": size})
            manifest = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                        "config": {"mediaType": DOCKER_CONFIG_MT, "digest": cfg_digest,
                                   "size": cfg_size},
                        "layers": layers}
            body = json.dumps(manifest, indent=3).encode()
            mdigest = store.put_blob(body)
            desc = {"mediaType": DOCKER_MANIFEST, "digest": mdigest, "size": len(body)}
            if cfg.get("os"):
                desc["platform"] = {k: cfg[k] for k in ("os", "architecture", "variant")
                                    if cfg.get(k)}
            tags = e.get("RepoTags") or []
            for t in tags:
                full = refmod.normalize(t)
                store.set_ref(full, desc)
                loaded.append(full)
            if not tags:
                loaded.append(cfg_digest)
    return loaded
