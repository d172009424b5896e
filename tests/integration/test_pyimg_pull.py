"""pyimg pull/images/inspect/tag/rmi/gc against a real docker-registry on loopback."""
import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from registry_util import ok as _ok, fail_one_line as _fail_one_line  # noqa: E402
from registry_util import (busybox_layer, make_config, make_layer, push_image,  # noqa: E402
                           push_multiarch, run_pyimg, start_registry, tree_snapshot,
                           write_pyimg_config)

from imagetool.store import Store, default_platform  # noqa: E402


@pytest.fixture
def registry(tmp_path):
    reg = start_registry(tmp_path)
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture
def env(tmp_path):
    root = tmp_path / "store"
    return root, write_pyimg_config(tmp_path)


def test_pull_by_tag_stores_verified_blobs(registry, env):
    root, cfg = env
    layer = busybox_layer()
    digest = push_image(registry.host, "library/busybox", "latest", [layer], media="docker")
    ref = f"{registry.host}/library/busybox"
    p = _ok(run_pyimg(root, "pull", ref, config=cfg))
    full = f"{registry.host}/library/busybox:latest"
    assert "latest: Pulling from library/busybox" in p.stdout
    assert f"Digest: {digest}" in p.stdout
    assert f"Status: Downloaded newer image for {full}" in p.stdout
    assert "Pull complete" in p.stdout

    store = Store(str(root))
    mdigest, manifest = store.resolve(ref)
    assert mdigest == digest
    # every blob in the store hashes to its name
    for name in os.listdir(root / "blobs" / "sha256"):
        with open(root / "blobs" / "sha256" / name, "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == name
    for d in [manifest["config"]] + manifest["layers"]:
        assert os.path.getsize(store.blob_path(d["digest"])) == d["size"]
    assert os.listdir(root / "ingest") == []
    with open(root / "index.json") as f:
        idx = json.load(f)
    assert [m["annotations"]["org.opencontainers.image.ref.name"] for m in idx["manifests"]] == [full]
    with open(root / "oci-layout") as f:
        assert json.load(f) == {"imageLayoutVersion": "1.0.0"}

    # images: table and json
    p = _ok(run_pyimg(root, "images", config=cfg))
    header, row = p.stdout.splitlines()
    assert header.split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert row.split()[:3] == [f"{registry.host}/library/busybox", "latest",
                               manifest["config"]["digest"][7:19]]
    rows = json.loads(_ok(run_pyimg(root, "images", "--format", "json", config=cfg)).stdout)
    assert rows[0]["id"] == manifest["config"]["digest"]
    assert rows[0]["digest"] == digest
    q = _ok(run_pyimg(root, "images", "-q", "--no-trunc", config=cfg)).stdout.split()
    assert q == [manifest["config"]["digest"]]

    # second pull: nothing downloaded, the store not rewritten
    gets = registry.blob_gets()
    before = tree_snapshot(root)
    p = _ok(run_pyimg(root, "pull", ref, config=cfg))
    assert f"Status: Image is up to date for {full}" in p.stdout
    assert "Already exists" in p.stdout
    assert registry.blob_gets() == gets
    assert tree_snapshot(root) == before


def test_pull_quiet_prints_only_reference(registry, env):
    root, cfg = env
    push_image(registry.host, "app", "v1", [busybox_layer()])
    p = _ok(run_pyimg(root, "pull", "-q", f"{registry.host}/app:v1", config=cfg))
    assert p.stdout == f"{registry.host}/app:v1\n"


def test_pull_by_digest_and_tag_plus_digest(registry, env):
    root, cfg = env
    d1 = push_image(registry.host, "app", "v1", [busybox_layer()])
    d2 = push_image(registry.host, "app", "v2", [busybox_layer(), make_layer({"v": "2"})])
    _ok(run_pyimg(root, "pull", f"{registry.host}/app@{d1}", config=cfg))
    store = Store(str(root))
    assert store.resolve(f"{registry.host}/app@{d1}")[0] == d1
    _ok(run_pyimg(root, "pull", f"{registry.host}/app:v2@{d2}", config=cfg))
    assert store.resolve(f"{registry.host}/app:v2@{d2}")[0] == d2
    # the digest wins over the tag: asking v1's tag with v2's digest gets v2
    assert registry.requests("GET", f"/manifests/{d2}")
    names = {e["annotations"]["org.opencontainers.image.ref.name"] for e in store.entries()}
    assert names == {f"{registry.host}/app@{d1}", f"{registry.host}/app:v2@{d2}"}


def test_pull_by_digest_mismatch_is_refused(registry, env):
    """A digest reference whose manifest does not hash to it is refused."""
    root, cfg = env
    push_image(registry.host, "app", "v1", [busybox_layer()])
    bogus = "sha256:" + "0" * 64
    p = run_pyimg(root, "pull", f"{registry.host}/app@{bogus}", config=cfg)
    _fail_one_line(p, f"{registry.host}/app@{bogus}")
    # a failed first pull creates no layout at all
    assert not os.path.exists(root / "index.json")
    assert not os.path.exists(root / "blobs")


@pytest.mark.parametrize("media", ["oci", "docker"])  # OCI index / Docker manifest list
def test_platform_selection_from_index(registry, env, media):
    root, cfg = env
    idx, per = push_multiarch(registry.host, "multi", "latest",
                              ["linux/amd64", "linux/arm64/v8", "linux/arm/v7"], media=media)
    ref = f"{registry.host}/multi:latest"
    p = _ok(run_pyimg(root, "pull", "--platform", "linux/arm/v7", ref, config=cfg))
    assert f"Digest: {idx}" in p.stdout  # the repo digest is the index's
    store = Store(str(root))
    d, m = store.resolve(ref)
    assert d == per["linux/arm/v7"]
    cfgjson = store.read_json(m["config"]["digest"])
    assert (cfgjson["architecture"], cfgjson["variant"]) == ("arm", "v7")
    # only the chosen platform's blobs were fetched: 2 layers (1 shared) + config
    assert registry.blob_gets() == 3

    # arm64 without a variant matches the v8 entry
    _ok(run_pyimg(root, "pull", "--platform", "linux/arm64", ref, config=cfg))
    assert store.resolve(ref)[0] == per["linux/arm64/v8"]

    # default: this machine
    _ok(run_pyimg(root, "pull", ref, config=cfg))
    mine = default_platform()
    if mine in per:
        assert store.resolve(ref)[0] == per[mine]

    # inspect reports the platform
    info = json.loads(_ok(run_pyimg(root, "inspect", ref, config=cfg)).stdout)[0]
    assert info["ManifestDigest"] == store.resolve(ref)[0]
    assert info["RepoDigest"] == idx

    before = tree_snapshot(root)
    p = run_pyimg(root, "pull", "--platform", "linux/s390x", ref, config=cfg)
    line = _fail_one_line(p, ref, "linux/s390x", "linux/arm64/v8")
    assert "available" in line
    assert tree_snapshot(root) == before


def test_explicit_platform_checked_for_single_manifest(registry, env):
    root, cfg = env
    layers = [busybox_layer()]
    push_image(registry.host, "armonly", "1", layers, make_config(layers, arch="arm64"))
    p = run_pyimg(root, "pull", "--platform", "linux/amd64", f"{registry.host}/armonly:1",
                  config=cfg)
    _fail_one_line(p, "linux/arm64", "linux/amd64")
    # the config was downloaded to be checked, but nothing was published
    assert not os.path.exists(root / "blobs") and not os.path.exists(root / "index.json")
    assert os.listdir(root / "ingest") == []


def test_layers_shared_between_images_are_downloaded_once(registry, env):
    root, cfg = env
    base = busybox_layer()
    push_image(registry.host, "one", "1", [base, make_layer({"one": "1"})])
    push_image(registry.host, "two", "1", [base, make_layer({"two": "2"})], media="docker")
    _ok(run_pyimg(root, "pull", f"{registry.host}/one:1", config=cfg))
    p = _ok(run_pyimg(root, "pull", f"{registry.host}/two:1", config=cfg))
    from registry_util import compress, sha256
    base_digest = sha256(compress(base, "gzip"))
    assert f"{base_digest[7:19]}: Already exists" in p.stdout
    # across both repositories, the shared layer was fetched exactly once
    assert registry.blob_gets(digest=base_digest) == 1
    assert registry.blob_gets() == 5  # base + 2 top layers + 2 configs


@pytest.mark.parametrize("compression", ["zstd", "none"])
def test_zstd_and_uncompressed_layers(registry, env, compression):
    root, cfg = env
    layers = [busybox_layer(), make_layer({"etc/hello": "hi\n"})]
    d = push_image(registry.host, "comp", compression, layers, compression=compression)
    _ok(run_pyimg(root, "pull", f"{registry.host}/comp:{compression}", config=cfg))
    info = json.loads(_ok(run_pyimg(root, "inspect", f"{registry.host}/comp:{compression}",
                                    config=cfg)).stdout)[0]
    assert info["ManifestDigest"] == d
    want = {"zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
            "none": "application/vnd.oci.image.layer.v1.tar"}[compression]
    assert [l["mediaType"] for l in info["Layers"]] == [want, want]
    if compression == "none":
        # an uncompressed layer's blob digest is its diff id
        assert [l["digest"] for l in info["Layers"]] == info["DiffIDs"]


def test_tag_rmi_gc(registry, env):
    root, cfg = env
    base = busybox_layer()
    push_image(registry.host, "a", "1", [base, make_layer({"a": "1"})])
    push_image(registry.host, "b", "1", [base, make_layer({"b": "1"})])
    _ok(run_pyimg(root, "pull", f"{registry.host}/a:1", config=cfg))
    _ok(run_pyimg(root, "pull", f"{registry.host}/b:1", config=cfg))
    store = Store(str(root))
    blobs = lambda: set(os.listdir(root / "blobs" / "sha256"))  # noqa: E731
    all_blobs = blobs()
    assert len(all_blobs) == 7  # 3 layers, 2 configs, 2 manifests

    _ok(run_pyimg(root, "tag", f"{registry.host}/a:1", "mine/a:copy", config=cfg))
    assert store.resolve("mine/a:copy")[0] == store.resolve(f"{registry.host}/a:1")[0]
    assert store.lookup("docker.io/mine/a:copy") is not None

    p = _ok(run_pyimg(root, "rmi", f"{registry.host}/a:1", config=cfg))
    assert f"Untagged: {registry.host}/a:1" in p.stdout
    assert blobs() == all_blobs  # still referenced by mine/a:copy

    p = _ok(run_pyimg(root, "rmi", "mine/a:copy", config=cfg))
    a_only = all_blobs - blobs()
    assert len(a_only) == 3  # a's top layer, config, manifest; the base stays for b
    _, mb = store.resolve(f"{registry.host}/b:1")
    for d in [mb["config"]] + mb["layers"]:
        assert store.has_blob(d["digest"], d["size"])

    # rmi by image id prefix (as `images` shows it)
    img_id = mb["config"]["digest"][7:19]
    _ok(run_pyimg(root, "rmi", "--no-prune", img_id, config=cfg))
    assert store.entries() == []
    assert len(blobs()) == 4
    p = _ok(run_pyimg(root, "gc", config=cfg))
    assert "Deleted 4 blobs" in p.stdout
    assert blobs() == set()

    p = run_pyimg(root, "rmi", "nothing:here", config=cfg)
    _fail_one_line(p, "nothing:here", "no such image")
    p = run_pyimg(root, "inspect", "nothing:here", config=cfg)
    _fail_one_line(p, "nothing:here")


def test_skopeo_and_umoci_read_the_store(registry, env, tmp_path):
    root, cfg = env
    layers = [busybox_layer(), make_layer({"etc/motd": "hello from pyimg\n"})]
    d = push_image(registry.host, "readable", "v1", layers)
    ref = f"{registry.host}/readable:v1"
    _ok(run_pyimg(root, "pull", ref, config=cfg))
    # skopeo: oci:DIR:REF, REF being the full reference (skopeo splits at the first ':')
    p = subprocess.run(["skopeo", "inspect", f"oci:{root}:{ref}"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["Digest"] == d
    # copy it back to the registry under a new name and read it there
    p = subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{root}:{ref}",
                        f"docker://{registry.host}/copied:1"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    p = subprocess.run(["skopeo", "inspect", "--tls-verify=false",
                        f"docker://{registry.host}/copied:1"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["Digest"] == d
    # umoci unpacks OCI-media-type images from the same layout
    if shutil.which("umoci"):
        bundle = tmp_path / "bundle"
        p = subprocess.run(["umoci", "unpack", "--rootless", "--image", f"{root}:{ref}",
                            str(bundle)], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        assert (bundle / "rootfs" / "etc" / "motd").read_text() == "hello from pyimg\n"
        assert os.path.islink(bundle / "rootfs" / "bin" / "sh")


def test_concurrent_pulls_share_one_store(registry, env):
    root, cfg = env
    base = busybox_layer()
    refs = []
    for i in range(4):
        push_image(registry.host, f"c{i}", "1", [base, make_layer({f"f{i}": str(i)})])
        refs.append(f"{registry.host}/c{i}:1")
    from registry_util import pyimg_bin
    procs = [subprocess.Popen([pyimg_bin(), "--root", str(root), "--config", cfg, "pull", "-q", r],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for r in refs]
    for pr in procs:
        out, err = pr.communicate(timeout=240)
        assert pr.returncode == 0, err
    store = Store(str(root))
    names = sorted(e["annotations"]["org.opencontainers.image.ref.name"] for e in store.entries())
    assert names == sorted(refs)
    for r in refs:
        _, m = store.resolve(r)
        for d in [m["config"]] + m["layers"]:
            assert store.has_blob(d["digest"], d["size"])
    assert os.listdir(root / "ingest") == []


def test_errors_are_one_line_and_leave_store_untouched(registry, env):
    root, cfg = env
    push_image(registry.host, "app", "v1", [busybox_layer()])
    _ok(run_pyimg(root, "pull", f"{registry.host}/app:v1", config=cfg))
    before = tree_snapshot(root)

    p = run_pyimg(root, "pull", f"{registry.host}/app:nope", config=cfg)
    _fail_one_line(p, f"{registry.host}/app:nope", "not found")
    p = run_pyimg(root, "pull", f"{registry.host}/nosuch/repo", config=cfg)
    _fail_one_line(p, f"{registry.host}/nosuch/repo:latest", "not found")
    p = run_pyimg(root, "pull", "Not/A/Valid//Ref", config=cfg)
    _fail_one_line(p, "invalid reference format")
    from registry_util import free_port
    dead = f"127.0.0.1:{free_port()}"
    p = run_pyimg(root, "pull", f"{dead}/app:v1", config=cfg)
    _fail_one_line(p, f"{dead}/app:v1", "cannot reach")
    p = run_pyimg(root, "pull", "--platform", "linux", f"{registry.host}/app:v1", config=cfg)
    _fail_one_line(p, "invalid platform")
    assert tree_snapshot(root) == before


def test_progress_on_a_tty_rewrites_lines(registry, env):
    import pty
    from registry_util import pyimg_bin
    root, cfg = env
    push_image(registry.host, "tty", "1", [busybox_layer(), make_layer({"x": "y"})])
    master, slave = pty.openpty()
    proc = subprocess.Popen([pyimg_bin(), "--root", str(root), "--config", cfg, "pull",
                             f"{registry.host}/tty:1"], stdout=slave, stderr=subprocess.PIPE)
    os.close(slave)
    chunks = []
    while True:
        try:
            b = os.read(master, 65536)
        except OSError:  # EIO: the child closed the pty
            break
        if not b:
            break
        chunks.append(b)
    os.close(master)
    assert proc.wait(120) == 0, proc.stderr.read()
    proc.stderr.close()
    text = b"".join(chunks).decode()
    assert "\x1b[" in text  # lines rewritten in place
    assert "Pull complete" in text
    assert f"Status: Downloaded newer image for {registry.host}/tty:1" in text


def test_pull_image_api(registry, tmp_path):
    import io
    from imagetool.pull import PullError, pull_image
    d = push_image(registry.host, "api", "1", [busybox_layer()])
    cfg = write_pyimg_config(tmp_path)
    out = io.StringIO()
    got = pull_image(f"{registry.host}/api:1", root=str(tmp_path / "s"), config_path=cfg,
                     out=out)
    assert got == d
    assert "Pull complete" in out.getvalue()
    out = io.StringIO()
    assert pull_image(f"{registry.host}/api:1", root=str(tmp_path / "s"), config_path=cfg,
                      quiet=True, out=out) == d
    assert out.getvalue() == f"{registry.host}/api:1\n"
    with pytest.raises(PullError, match=f"{registry.host}/api:2"):
        pull_image(f"{registry.host}/api:2", root=str(tmp_path / "s"), config_path=cfg,
                   out=io.StringIO())


def _many_layers(n):
    return [make_layer({f"l{i}/f": f"layer {i}\n" * (i + 1)}) for i in range(n)]


def test_a_pull_reuses_its_connections(registry, tmp_path):
    """The requests of one pull go over a few keep-alive connections (one per
    download thread), not one connection per blob."""
    from registry_util import FaultProxy
    proxy = FaultProxy(registry.host)
    try:
        push_image(registry.host, "many", "1", _many_layers(8))
        root = tmp_path / "store"
        _ok(run_pyimg(root, "pull", f"{proxy.host}/many:1",
                      config=write_pyimg_config(tmp_path, max_concurrent_downloads=3)))
        gets = proxy.requests("GET")
        assert len(proxy.requests("GET", "/blobs/")) == 9  # config + 8 layers
        assert len({r["conn"] for r in gets}) <= 3, [r["conn"] for r in gets]
        _, m = Store(str(root)).resolve(f"{proxy.host}/many:1")
        assert all(Store(str(root)).has_blob(d["digest"], d["size"]) for d in m["layers"])
    finally:
        proxy.stop()


def test_a_connection_the_server_closed_while_idle_is_replaced(registry, tmp_path):
    """A server that closes each connection after its answer (as one whose
    keep-alive timeout passed): every request finds its idle connection
    closed and is sent again on a new one, without a retry of its own."""
    from registry_util import FaultProxy
    proxy = FaultProxy(registry.host)
    try:
        push_image(registry.host, "many", "1", _many_layers(6))
        proxy.add_rule("/v2/", "close-after", times=None)
        root = tmp_path / "store"
        _ok(run_pyimg(root, "pull", f"{proxy.host}/many:1",
                      config=write_pyimg_config(tmp_path, retries=1, max_concurrent_downloads=2)))
        assert len(proxy.requests("GET", "/blobs/")) == 7
        gets = proxy.requests("GET")
        assert len({r["conn"] for r in gets}) == len(gets)  # (each on its own connection)
        _, m = Store(str(root)).resolve(f"{proxy.host}/many:1")
        assert all(Store(str(root)).has_blob(d["digest"], d["size"]) for d in m["layers"])
    finally:
        proxy.stop()


def test_pull_makes_blobs_durable_before_index_json_names_them(registry, tmp_path):
    """The store's durability contract, read off the system calls of a real
    pull (strace -y names each fd's file): every blob's file is fsynced
    before its rename into blobs/, blobs/sha256 is fsynced after the last
    such rename and before index.json is renamed into place, and that is
    one directory fsync for the whole image, not one per blob."""
    import re
    if not shutil.which("strace"):
        pytest.skip("no strace")
    push_image(registry.host, "many", "1", _many_layers(6))
    root = tmp_path / "store"
    log = tmp_path / "strace.log"
    cmd = ["strace", "-f", "-y", "-qq", "-o", str(log), "-e", "trace=fsync,rename,renameat,renameat2",
           sys.executable.rpartition("/")[0] + "/pyimg", "--root", str(root),
           "--config", write_pyimg_config(tmp_path), "pull", "-q", f"{registry.host}/many:1"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    blobs = str(root / "blobs" / "sha256")
    events = []  # ("fsync", path) or ("rename", src, dst), in order
    pending = {}
    for line in open(log):
        pid, rest = line.split(None, 1)  # (strace pads short pids)
        rest = rest.strip()
        if "resumed>" in rest:
            rest = pending.pop(pid, "") + rest.split("resumed>", 1)[1]
        elif rest.endswith("<unfinished ...>"):
            pending[pid] = rest[:-len("<unfinished ...>")]
            continue
        m = re.match(r"fsync\(\d+<([^>]*)>\s*\)\s*= 0", rest)
        if m:
            events.append(("fsync", m.group(1)))
        m = re.match(r'rename(?:at2?)?\((?:[^,]*, )?"([^"]*)", (?:[^,]*, )?"([^"]*)"', rest)
        if m:
            events.append(("rename", m.group(1), m.group(2)))
    into_blobs = [i for i, e in enumerate(events) if e[0] == "rename" and e[2].startswith(blobs + "/")]
    assert len(into_blobs) == 8, open(log).read()[-3000:]  # config, 6 layers, manifest
    for i in into_blobs:
        src = events[i][1]
        assert ("fsync", src) in events[:i], f"{src} renamed into blobs/ before its fsync"
    dir_syncs = [i for i, e in enumerate(events) if e == ("fsync", blobs)]
    index = [i for i, e in enumerate(events) if e[0] == "rename" and e[2] == str(root / "index.json")]
    assert len(dir_syncs) == 1, events
    assert into_blobs[-1] < dir_syncs[0] < index[-1]
    assert _ok(run_pyimg(root, "images", "-q"))
