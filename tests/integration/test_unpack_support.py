"""Builders and comparers for the unpack/run tests (no tests in here).

Images are written as OCI image layouts by hand: tar layers made with
tarfile, compressed with gzip or zstd, config/manifest/index JSON with
their digests.  Each image is tagged twice in index.json: with the full
normalised reference (what pyimg's store looks up) and with a bare tag
(what `umoci unpack --image LAYOUT:TAG` looks up).
"""
import gzip
import hashlib
import json
import os
import stat
import subprocess

GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
PLAIN = "application/vnd.oci.image.layer.v1.tar"


from tarbuild import E, tar  # noqa: E402,F401  (shared with tests/unit/test_layer.py)


def compress(data: bytes, media_type: str) -> bytes:
    if media_type == GZIP:
        return gzip.compress(data, mtime=0)
    if media_type == ZSTD:
        import zstandard
        return zstandard.ZstdCompressor().compress(data)
    return data


def _digest(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


class Layout:
    """An OCI image layout (also usable as a pyimg store root)."""

    def __init__(self, root):
        self.root = str(root)
        os.makedirs(os.path.join(self.root, "blobs", "sha256"), exist_ok=True)
        with open(os.path.join(self.root, "oci-layout"), "w") as f:
            json.dump({"imageLayoutVersion": "1.0.0"}, f)
        self.index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}
        self._save()

    def _save(self):
        with open(os.path.join(self.root, "index.json"), "w") as f:
            json.dump(self.index, f)

    def blob(self, data: bytes) -> str:
        d = _digest(data)
        with open(os.path.join(self.root, "blobs", "sha256", d[7:]), "wb") as f:
            f.write(data)
        return d

    def add_image(self, names, layers, *, media_type=GZIP, config=None, arch="amd64") -> str:
        """Store an image made of the uncompressed tar ``layers``; return its manifest digest."""
        cfg = {"architecture": arch, "os": "linux", "config": config or {},
               "rootfs": {"type": "layers", "diff_ids": [_digest(t) for t in layers]},
               "created": "2024-01-02T03:04:05Z"}
        cfg_bytes = json.dumps(cfg).encode()
        descs = []
        for t in layers:
            blob = compress(t, media_type)
            descs.append({"mediaType": media_type, "digest": self.blob(blob), "size": len(blob)})
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                               "digest": self.blob(cfg_bytes), "size": len(cfg_bytes)},
                    "layers": descs}
        mbytes = json.dumps(manifest).encode()
        md = self.blob(mbytes)
        for n in names:
            self.index["manifests"].append({"mediaType": manifest["mediaType"], "digest": md, "size": len(mbytes),
                                            "annotations": {"org.opencontainers.image.ref.name": n}})
        self._save()
        return md


def umoci_unpack(layout, tag, bundle):
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:{tag}", str(bundle)], check=True,
                   capture_output=True, text=True)


def tree(root):
    """{relative path: description} of everything under root (not following links).

    The description covers type, mode, owner, xattrs, link target, device
    numbers, content digest, file mtime and the hardlink group.
    """
    out = {}
    inodes = {}
    root = str(root)
    for dirpath, dirs, files in os.walk(root):
        for n in sorted(dirs + files) + ([] if dirpath != root else ["."]):
            p = os.path.join(dirpath, n) if n != "." else root
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            d = {"type": stat.S_IFMT(st.st_mode), "mode": oct(stat.S_IMODE(st.st_mode)), "uid": st.st_uid,
                 "gid": st.st_gid}
            try:
                names = os.listxattr(p, follow_symlinks=False)
            except OSError:
                names = []
            d["xattrs"] = {x: os.getxattr(p, x, follow_symlinks=False) for x in sorted(names)
                           if not x.startswith(("security.selinux", "trusted.overlay."))}
            if stat.S_ISLNK(st.st_mode):
                d["link"] = os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    d["sha256"] = hashlib.sha256(f.read()).hexdigest()
                if st.st_nlink > 1:
                    inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                d["rdev"] = (os.major(st.st_rdev), os.minor(st.st_rdev))
            if not stat.S_ISDIR(st.st_mode):
                d["mtime"] = st.st_mtime_ns
            out[rel] = d
    for group in inodes.values():
        for rel in group:
            out[rel]["links"] = sorted(group)
    return out


def diff_trees(a, b):
    """Human-readable differences between two tree() results (empty when equal)."""
    lines = []
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            lines.append(f"{k}: {a.get(k)} != {b.get(k)}")
    return lines
