"""Test images for the image and containerd groups, written as OCI layouts
by hand (tar + gzip + JSON), and a private docker-registry on loopback."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import shutil
import socket
import tarfile
import time
import urllib.request

import harness as H
from runtimes import make_busybox_rootfs

CACHE = "/var/cache/pyrunc-bench"
DEBIAN_TAR = os.path.join(CACHE, "bookworm-minbase.tar")
DEBIAN_LAYER = os.path.join(CACHE, "bookworm-minbase-layer.tar.gz")
MIRROR = os.environ.get("PYRUNC_BENCH_MIRROR", "http://deb.debian.org/debian")

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZ = "application/vnd.oci.image.layer.v1.tar+gzip"


class Layer:
    def __init__(self, gz_path: str, digest: str, size: int, diff_id: str):
        self.gz_path, self.digest, self.size, self.diff_id = gz_path, digest, size, diff_id


def _hash_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


class _HashWriter(io.RawIOBase):
    def __init__(self, f):
        self.f, self.h, self.n = f, hashlib.sha256(), 0

    def writable(self):
        return True

    def write(self, b):
        self.h.update(b)
        self.n += len(b)
        return self.f.write(b)


def layer_from_tar_writer(out_gz: str, fill) -> Layer:
    """fill(tarfile) adds members; writes a gzip layer and computes both digests."""
    with open(out_gz, "wb") as raw:
        hw_gz = _HashWriter(raw)
        with gzip.GzipFile(fileobj=hw_gz, mode="wb", compresslevel=6, mtime=0) as gz:
            hw_tar = _HashWriter(gz)
            with tarfile.open(fileobj=hw_tar, mode="w|", format=tarfile.PAX_FORMAT) as tf:
                fill(tf)
    return Layer(out_gz, "sha256:" + hw_gz.h.hexdigest(), os.path.getsize(out_gz),
                 "sha256:" + hw_tar.h.hexdigest())


def _ti(name, kind=tarfile.REGTYPE, size=0, mode=0o644, link=""):
    t = tarfile.TarInfo(name)
    t.type, t.size, t.mode, t.linkname = kind, size, mode, link
    t.mtime = 1700000000
    t.uid = t.gid = 0
    t.uname = t.gname = "root"
    return t


def add_dir(tf, name, mode=0o755):
    tf.addfile(_ti(name, tarfile.DIRTYPE, mode=mode))


def add_file(tf, name, data: bytes, mode=0o644):
    tf.addfile(_ti(name, size=len(data), mode=mode), io.BytesIO(data))


def add_whiteout(tf, path):
    d, b = os.path.split(path)
    add_file(tf, os.path.join(d, ".wh." + b), b"")


# ---------------------------------------------------------------- layouts

class Layout:
    """An OCI image layout being written."""

    def __init__(self, path):
        self.path = path
        os.makedirs(os.path.join(path, "blobs", "sha256"), exist_ok=True)
        with open(os.path.join(path, "oci-layout"), "w") as f:
            json.dump({"imageLayoutVersion": "1.0.0"}, f)
        self.manifests = []

    def put_bytes(self, data: bytes) -> str:
        d = "sha256:" + hashlib.sha256(data).hexdigest()
        p = os.path.join(self.path, "blobs", "sha256", d[7:])
        if not os.path.exists(p):
            with open(p, "wb") as f:
                f.write(data)
        return d

    def put_layer(self, layer: Layer):
        p = os.path.join(self.path, "blobs", "sha256", layer.digest[7:])
        if not os.path.exists(p):
            try:
                os.link(layer.gz_path, p)
            except OSError:
                shutil.copyfile(layer.gz_path, p)

    def add_image(self, tag: str, layers: list[Layer], cmd=("/bin/sh",)):
        for l in layers:
            self.put_layer(l)
        cfg = {
            "created": "2024-01-01T00:00:00Z",
            "architecture": "amd64", "os": "linux",
            "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                       "Cmd": list(cmd), "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": [l.diff_id for l in layers]},
            "history": [{"created": "2024-01-01T00:00:00Z", "created_by": f"pyrunc-bench layer {i}"}
                        for i in range(len(layers))],
        }
        cb = json.dumps(cfg, sort_keys=True).encode()
        cd = self.put_bytes(cb)
        man = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
               "config": {"mediaType": OCI_CONFIG, "digest": cd, "size": len(cb)},
               "layers": [{"mediaType": OCI_LAYER_GZ, "digest": l.digest, "size": l.size} for l in layers]}
        mb = json.dumps(man, sort_keys=True).encode()
        md = self.put_bytes(mb)
        self.manifests.append({"mediaType": OCI_MANIFEST, "digest": md, "size": len(mb),
                               "annotations": {"org.opencontainers.image.ref.name": tag}})
        with open(os.path.join(self.path, "index.json"), "w") as f:
            json.dump({"schemaVersion": 2, "manifests": self.manifests}, f)


# ---------------------------------------------------------------- the images

def busybox_layer(workdir) -> Layer:
    root = os.path.join(workdir, "bb-rootfs")
    make_busybox_rootfs(root)

    def fill(tf):
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            rel = os.path.relpath(dirpath, root)
            if rel != ".":
                tf.add(dirpath, arcname=rel, recursive=False, filter=_root_owner)
            for fn in sorted(filenames):
                tf.add(os.path.join(dirpath, fn), arcname=os.path.normpath(os.path.join(rel, fn)),
                       recursive=False, filter=_root_owner)
    return layer_from_tar_writer(os.path.join(workdir, "busybox.tar.gz"), fill)


def _root_owner(t: tarfile.TarInfo):
    t.uid = t.gid = 0
    t.uname = t.gname = "root"
    t.mtime = 1700000000
    return t


def ensure_debian_tar(report) -> str | None:
    """debootstrap --variant=minbase bookworm, cached as a tarball."""
    if os.path.exists(DEBIAN_TAR):
        return DEBIAN_TAR
    if not shutil.which("debootstrap"):
        report.note("debian images skipped: debootstrap not installed (apt-get install debootstrap)")
        return None
    os.makedirs(CACHE, exist_ok=True)
    d = os.path.join(CACHE, "rootfs.tmp")
    shutil.rmtree(d, ignore_errors=True)
    print(f"  debootstrap --variant=minbase bookworm (cached afterwards in {CACHE}) ...", flush=True)
    r = H.run(["debootstrap", "--variant=minbase", "bookworm", d, MIRROR], timeout=1800)
    if r.rc != 0:
        shutil.rmtree(d, ignore_errors=True)
        report.note(f"debian images skipped: debootstrap could not build bookworm from {MIRROR}: "
                    f"{r.err.decode(errors='replace').strip()[-300:]}")
        return None
    H.run(["tar", "-C", d, "--numeric-owner", "-cf", DEBIAN_TAR + ".part", "."]).check()
    os.rename(DEBIAN_TAR + ".part", DEBIAN_TAR)
    shutil.rmtree(d, ignore_errors=True)
    return DEBIAN_TAR


_DEB_SKIP = ("./var/cache/apt/archives/", "./var/lib/apt/lists/")


def debian_layer(report) -> Layer | None:
    """The minbase rootfs as one gzip layer, without apt's package caches
    (as Docker's debian images), cached next to the tarball."""
    meta = DEBIAN_LAYER + ".json"
    if os.path.exists(DEBIAN_LAYER) and os.path.exists(meta):
        with open(meta) as f:
            m = json.load(f)
        return Layer(DEBIAN_LAYER, m["digest"], m["size"], m["diff_id"])
    src = ensure_debian_tar(report)
    if src is None:
        return None
    print("  building the debian layer (gzip, cached) ...", flush=True)

    def fill(tf):
        with tarfile.open(src, "r|") as inp:
            for m in inp:
                if m.name.startswith(_DEB_SKIP) and not m.isdir():
                    continue
                tf.addfile(m, inp.extractfile(m) if m.isfile() else None)
    lay = layer_from_tar_writer(DEBIAN_LAYER + ".part", fill)
    os.rename(DEBIAN_LAYER + ".part", DEBIAN_LAYER)
    lay.gz_path = DEBIAN_LAYER
    with open(meta, "w") as f:
        json.dump({"digest": lay.digest, "size": lay.size, "diff_id": lay.diff_id}, f)
    return lay


def whiteout_layers(workdir) -> list[Layer]:
    """Five layers on top of debian: adds, whiteouts, an opaque directory,
    hard links and symlinks, many small files. Deterministic."""
    rnd = random.Random(1234)

    def blob(n):
        return rnd.randbytes(n // 2) + b"x" * (n - n // 2)  # half compressible

    def l2(tf):
        add_dir(tf, "opt")
        add_dir(tf, "opt/app")
        for i in range(200):
            add_file(tf, f"opt/app/file{i}", blob(20000))
        add_file(tf, "opt/app/big.bin", rnd.randbytes(8 << 20))
        add_dir(tf, "opt/keep")
        add_file(tf, "opt/keep/a", b"a\n")

    def l3(tf):
        add_dir(tf, "usr")
        add_dir(tf, "usr/share")
        add_whiteout(tf, "usr/share/doc")
        add_whiteout(tf, "usr/share/man")
        add_dir(tf, "etc")
        add_file(tf, "etc/bench.conf", b"layer=3\n")

    def l4(tf):
        add_dir(tf, "opt")
        add_dir(tf, "opt/app")
        add_file(tf, "opt/app/.wh..wh..opq", b"")
        for i in range(50):
            add_file(tf, f"opt/app/new{i}", blob(10000))
        tf.addfile(_ti("opt/app/hardlink0", tarfile.LNKTYPE, link="opt/app/new0"))
        tf.addfile(_ti("opt/app/symlink0", tarfile.SYMTYPE, mode=0o777, link="new1"))

    def l5(tf):
        add_dir(tf, "opt")
        add_dir(tf, "opt/app")
        add_whiteout(tf, "opt/app/new3")
        add_whiteout(tf, "opt/keep")
        add_dir(tf, "etc")
        add_file(tf, "etc/bench.conf", b"layer=5\n")
        add_file(tf, "etc/motd", b"pyrunc bench\n")

    def l6(tf):
        add_dir(tf, "var")
        add_dir(tf, "var/lib")
        add_dir(tf, "var/lib/bench")
        for i in range(20):
            add_dir(tf, f"var/lib/bench/d{i}")
            for j in range(50):
                add_file(tf, f"var/lib/bench/d{i}/f{j}", f"{i}-{j}\n".encode())
        add_dir(tf, "var/log")
        add_whiteout(tf, "var/log/apt")

    return [layer_from_tar_writer(os.path.join(workdir, f"wl{i}.tar.gz"), fn)
            for i, fn in enumerate((l2, l3, l4, l5, l6), start=2)]


def spread_layers(workdir, n: int, total: int = 10 << 20, name: str = "spread") -> list[Layer]:
    """The same files (total bytes, half of each incompressible, in 40
    directories of 25 files) as n layers, each with an equal share of the
    directories. Deterministic: n=1 and n=20 differ only in how the files
    are layered, so comparing their pulls shows the cost per layer."""
    rnd = random.Random(20)
    dirs = 40
    per = total // (dirs * 25)
    files = [(f"data/d{d}/f{i}", rnd.randbytes(per // 2) + b"z" * (per - per // 2))
             for d in range(dirs) for i in range(25)]
    layers = []
    for k in range(n):
        mine = [f for j, f in enumerate(files) if (j // 25) % n == k]

        def fill(tf, mine=mine):
            add_dir(tf, "data")
            for d in sorted({os.path.dirname(p) for p, _ in mine}):
                add_dir(tf, d)
            for p, data in mine:
                add_file(tf, p, data)
        layers.append(layer_from_tar_writer(os.path.join(workdir, f"{name}{n}-{k}.tar.gz"), fill))
    return layers


# ---------------------------------------------------------------- registry

def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Registry:
    def __init__(self, workdir):
        self.dir = os.path.join(workdir, "registry")
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        cfg = os.path.join(workdir, "registry.yml")
        with open(cfg, "w") as f:
            f.write(f"""version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {self.dir}
  delete:
    enabled: true
http:
  addr: {self.host}
""")
        self.proc = H.spawn(["docker-registry", "serve", cfg], capture=False, wrap=False)
        H.CLEANUP.push(self.stop)
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("docker-registry did not come up")
            time.sleep(0.1)

    def push_layout(self, layout: str, tag: str, repo: str):
        H.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{layout}:{tag}",
               f"docker://{self.host}/{repo}"], timeout=1200).check()
        return f"{self.host}/{repo}"

    def stop(self):
        H.kill_pid(self.proc.pid, 15)
        try:
            H.reaper().wait(self.proc.pid, 10)
        except TimeoutError:
            H.kill_pid(self.proc.pid)


def busybox_archive(tmp: str) -> str:
    """A busybox image as a docker-archive in tmp (docker.io/bench/busybox:latest), made with skopeo."""
    work = os.path.join(tmp, "build")
    os.makedirs(work, exist_ok=True)
    lay = Layout(os.path.join(tmp, "layout"))
    lay.add_image("busybox", [busybox_layer(work)])
    archive = os.path.join(tmp, "busybox.tar")
    H.run(["skopeo", "copy", "--quiet", f"oci:{lay.path}:busybox",
           f"docker-archive:{archive}:bench/busybox:latest"]).check()
    return archive
