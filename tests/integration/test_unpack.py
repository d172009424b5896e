"""`pyimg unpack` in copy and overlay mode, compared with `umoci unpack`."""
import json
import os
import stat
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from test_unpack_support import E, GZIP, PLAIN, ZSTD, Layout, diff_trees, tar, tree, umoci_unpack  # noqa: E402

from imagetool import bundle as bundlemod  # noqa: E402

PYIMG = os.path.join(os.path.dirname(sys.executable), "pyimg")
REF = "docker.io/library/cases:latest"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def pyimg(*args, root, check=True):
    r = subprocess.run([PYIMG, "--root", str(root), *args], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError(f"pyimg {' '.join(args)} failed ({r.returncode}): {r.stderr}")
    return r


def case_layers():
    """Three layers covering every layer.md case."""
    l1 = tar(
        E("./", "dir", mode=0o755),
        E("bin", "dir"), E("bin/su", data=b"setuid", mode=0o4755, uid=0, gid=0),
        E("bin/sg", data=b"setgid", mode=0o2755, gid=50),
        E("etc", "dir"), E("etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"),
        E("etc/group", data=b"root:x:0:\napp:x:1000:\nwheel:x:10:app\n"),
        E("home", "dir"), E("home/app", "dir", mode=0o700, uid=1000, gid=1000),
        E("home/app/.profile", data=b"export A=1\n", uid=1000, gid=1000, mode=0o600),
        E("tmp", "dir", mode=0o1777),
        E("dev", "dir"), E("dev/null", "chr", mode=0o666, dev=(1, 3)), E("dev/loop7", "blk", mode=0o660, dev=(7, 7), gid=6),
        E("run", "dir"), E("run/fifo", "fifo", mode=0o620),
        E("lib", "dir"), E("lib/libc.so", data=b"libc" * 100, mode=0o755),
        E("lib/libc.so.6", "sym", link="libc.so"), E("abs-link", "sym", link="/etc/passwd"),
        E("dangling", "sym", link="/nonexistent/x"),
        E("lib/libc-copy", "hard", link="lib/libc.so"),
        E("xattr-file", data=b"x", xattrs={"user.comment": "hello", "user.bin": "\udcff\udc80raw",
                                           "security.capability": "\x01\x00\x00\x02" + "\x00\x04\x00\x00" + "\x00" * 12}),
        E("ünïcødé-名前", data=b"utf8 name"),
        E("/".join(["long-directory-name"] * 8), "dir"),
        E("/".join(["long-directory-name"] * 8) + "/" + "f" * 180, data=b"long"),
        E("gone", data=b"to be removed"), E("gonedir", "dir"), E("gonedir/sub", "dir"), E("gonedir/sub/f", data=b"f"),
        E("opq", "dir"), E("opq/a", data=b"a"), E("opq/sub", "dir"), E("opq/sub/b", data=b"b"),
        E("dir2file", "dir"), E("dir2file/child", data=b"c"),
        E("file2dir", data=b"plain file"),
        E("shared", data=b"lower hardlink target", mode=0o640, uid=7, gid=8),
        E("modme", data=b"m", mode=0o600),
        E("replaced", data=b"old content"),
    )
    l2 = tar(
        E(".wh.gone"), E(".wh.gonedir"),
        E("opq", "dir", mode=0o750), E("opq/.wh..wh..opq"), E("opq/new", data=b"new"),
        E("dir2file", data=b"now a file"),
        E("file2dir", "dir", mode=0o711), E("file2dir/inner", data=b"inner"),
        E("link-to-lower", "hard", link="shared"),
        E("modme", data=b"m2", mode=0o4711, uid=3, gid=4),
        E("replaced", data=b"new content"),
        E("etc", "dir", mode=0o755), E("etc/hostname", data=b"cases\n"),
        E("lib/.wh.libc.so.6"), E("lib/libc.so.6", "sym", link="libc-copy"),
    )
    l3 = tar(
        E("opq/sub2", "dir"), E("opq/sub2/deep", data=b"deep"),
        E("bin/.wh.sg"),
        E("later-hardlink", "hard", link="lib/libc.so"),
    )
    return [l1, l2, l3]


@pytest.fixture
def store(tmp_path):
    lay = Layout(tmp_path / "store")
    yield lay
    # whatever a test left mounted under the store or its bundles
    for rec in bundlemod.list_bundles(lay.root):
        bundlemod.remove_bundle(lay.root, rec["bundle"])


@pytest.fixture
def umoci_tree(tmp_path):
    lay = Layout(tmp_path / "ref-layout")
    lay.add_image(["latest"], case_layers(), media_type=GZIP)
    umoci_unpack(lay.root, "latest", tmp_path / "umoci-bundle")
    return tree(tmp_path / "umoci-bundle" / "rootfs")


@pytest.mark.parametrize("mode", ["copy", "overlay"])
def test_unpack_matches_umoci(store, tmp_path, umoci_tree, mode):
    store.add_image([REF], case_layers(), media_type=GZIP)
    b = tmp_path / f"bundle-{mode}"
    pyimg("unpack", "--mode", mode, "cases", str(b), root=store.root)
    mine = tree(b / "rootfs")
    if mode == "overlay":
        # overlayfs copies a lower file up before linking to it, so links
        # made by later layers no longer share the inode with links in
        # lower layers (lib/libc-copy); contents and metadata stay equal.
        assert os.lstat(b / "rootfs/later-hardlink").st_ino == os.lstat(b / "rootfs/lib/libc.so").st_ino
        for t in (mine, umoci_tree):
            for v in t.values():
                v.pop("links", None)
    assert "\n".join(diff_trees(mine, umoci_tree)) == ""
    # spot checks, so an equal-but-wrong pair of trees cannot pass unnoticed
    assert not os.path.lexists(b / "rootfs/gone") and not os.path.lexists(b / "rootfs/gonedir")
    assert sorted(os.listdir(b / "rootfs/opq")) == ["new", "sub2"]
    assert stat.S_IMODE(os.lstat(b / "rootfs/modme").st_mode) == 0o4711
    assert os.lstat(b / "rootfs/link-to-lower").st_ino == os.lstat(b / "rootfs/shared").st_ino
    assert (b / "config.json").exists()
    pyimg("rm-bundle", str(b), root=store.root)
    assert not b.exists()


@pytest.mark.parametrize("mode", ["copy", "overlay"])
def test_zstd_twin_matches_gzip(tmp_path, mode):
    trees = {}
    for mt in (GZIP, ZSTD, PLAIN):
        lay = Layout(tmp_path / f"store-{mt[-4:]}")
        lay.add_image([REF], case_layers(), media_type=mt)
        b = tmp_path / f"b-{mt[-4:]}"
        pyimg("unpack", "--mode", mode, REF, str(b), root=lay.root)
        try:
            trees[mt] = tree(b / "rootfs")
        finally:
            pyimg("rm-bundle", str(b), root=lay.root)
    assert diff_trees(trees[ZSTD], trees[GZIP]) == []
    assert diff_trees(trees[PLAIN], trees[GZIP]) == []
    assert "xattr-file" in trees[ZSTD]


def _overlay_opts(mountpoint):
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == str(mountpoint):
                return fields[fields.index("-") + 3]
    return None


def test_overlay_cache_is_in_overlayfs_form(store, tmp_path):
    store.add_image([REF], case_layers(), media_type=GZIP)
    b = tmp_path / "b"
    pyimg("unpack", REF, str(b), root=store.root)  # overlay is the default here
    rec = bundlemod.read_record(store.root, str(b))
    assert rec["mode"] == "overlay" and len(rec["layers"]) == 3
    l2 = os.path.join(store.root, "layers", rec["layers"][1])
    st = os.lstat(os.path.join(l2, "gone"))
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(os.path.join(l2, "opq"), "trusted.overlay.opaque") == b"y"
    # the hardlink to a lower file was materialised inside this layer
    assert open(os.path.join(l2, "link-to-lower"), "rb").read() == b"lower hardlink target"
    assert not os.path.lexists(os.path.join(l2, "bin"))  # untouched dirs are not copied up
    opts = _overlay_opts(b / "rootfs")
    lowers = opts.split("lowerdir=")[1].split(",")[0].split(":")
    assert [os.path.basename(x) for x in lowers] == list(reversed(rec["layers"]))
    assert all(len(x) <= 12 for x in lowers), lowers
    pyimg("rm-bundle", str(b), root=store.root)
    assert _overlay_opts(b / "rootfs") is None
    assert os.path.isdir(l2)  # shared layers survive the bundle


def test_two_overlay_bundles_share_layers_not_writes(store, tmp_path):
    store.add_image([REF], case_layers(), media_type=GZIP)
    b1, b2 = tmp_path / "one", tmp_path / "two"
    pyimg("unpack", "--mode", "overlay", REF, str(b1), root=store.root)
    pyimg("unpack", "--mode", "overlay", REF, str(b2), root=store.root)
    o1, o2 = _overlay_opts(b1 / "rootfs"), _overlay_opts(b2 / "rootfs")
    low = lambda o: o.split("lowerdir=")[1].split(",")[0]  # noqa: E731
    assert low(o1) == low(o2)
    upper = lambda o: o.split("upperdir=")[1].split(",")[0]  # noqa: E731
    assert upper(o1) != upper(o2)
    assert len(os.listdir(os.path.join(store.root, "layers", "tmp"))) == 0
    (b1 / "rootfs/etc/passwd").write_text("changed in one\n")
    (b1 / "rootfs/only-in-one").write_text("1")
    os.unlink(b1 / "rootfs/replaced")
    assert (b2 / "rootfs/etc/passwd").read_text().startswith("root:x:0:0")
    assert not (b2 / "rootfs/only-in-one").exists()
    assert (b2 / "rootfs/replaced").read_bytes() == b"new content"
    rec = bundlemod.read_record(store.root, str(b1))
    assert bundlemod.layers_in_use(store.root) == set(rec["diff_ids"])
    # bundles lists both; removing one leaves the other intact
    listing = pyimg("bundles", "-q", root=store.root).stdout.split()
    assert sorted(listing) == sorted([str(b1), str(b2)])
    pyimg("rm-bundle", str(b1), root=store.root)
    assert (b2 / "rootfs/replaced").read_bytes() == b"new content"
    assert bundlemod.prune_layer_cache(store.root) == []  # b2 still uses every layer
    pyimg("rm-bundle", str(b2), root=store.root)
    assert bundlemod.layers_in_use(store.root) == set()
    assert sorted(bundlemod.prune_layer_cache(store.root)) == sorted(rec["layers"])


def test_remount_after_unmount(store, tmp_path):
    store.add_image([REF], case_layers(), media_type=GZIP)
    b = tmp_path / "b"
    pyimg("unpack", REF, str(b), root=store.root)
    (b / "rootfs/written").write_text("kept in the writable layer")
    subprocess.run(["umount", str(b / "rootfs")], check=True)  # what a reboot does
    assert not (b / "rootfs/written").exists()
    assert "no" in pyimg("bundles", root=store.root).stdout.splitlines()[1].split()
    pyimg("bundles", "--remount", root=store.root)
    assert (b / "rootfs/written").read_text() == "kept in the writable layer"
    pyimg("rm-bundle", str(b), root=store.root)


def test_many_layers_fit_in_one_mount(store, tmp_path):
    layers = [tar(E(f"f{i:03d}", data=str(i).encode())) for i in range(130)]
    store.add_image([REF], layers, media_type=GZIP)
    b = tmp_path / "b"
    pyimg("unpack", "--mode", "overlay", REF, str(b), root=store.root, check=True)
    assert len([n for n in os.listdir(b / "rootfs") if n.startswith("f")]) == 130
    assert (b / "rootfs/f129").read_text() == "129"
    pyimg("rm-bundle", str(b), root=store.root)


@pytest.mark.parametrize("mode", ["copy", "overlay"])
@pytest.mark.parametrize("hostile,entry", [
    (lambda out: [tar(E("../../escape", data=b"x"))], "../../escape"),
    (lambda out: [tar(E("ok", data=b"")), tar(E("h", "hard", link="../" * 10 + out.lstrip("/") + "/secret"))], "h"),
    (lambda out: [tar(E("a", "sym", link="b"), E("b", "sym", link="a"), E("a/f", data=b""))], "a/f"),
])
def test_hostile_layers_fail_naming_the_entry(store, tmp_path, mode, hostile, entry):
    out = tmp_path / "outside"
    out.mkdir()
    (out / "secret").write_text("host\n")
    store.add_image([REF], hostile(str(out)), media_type=GZIP)
    b = tmp_path / "b"
    r = pyimg("unpack", "--mode", mode, REF, str(b), root=store.root, check=False)
    assert r.returncode != 0
    assert repr(entry) in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert os.listdir(out) == ["secret"] and (out / "secret").read_text() == "host\n"
    assert not b.exists()  # nothing of the failed bundle is left
    assert bundlemod.list_bundles(store.root) == []
    assert os.listdir(os.path.join(store.root, "layers", "tmp")) == [] if mode == "overlay" else True


@pytest.mark.parametrize("mode", ["copy", "overlay"])
def test_symlinks_out_of_rootfs_are_confined(store, tmp_path, mode):
    out = tmp_path / "outside"
    out.mkdir()
    (out / "secret").write_text("host\n")
    layers = [tar(E("evil", "sym", link=str(out)), E("up", "sym", link="../../../../../.." + str(out))),
              tar(E("evil/secret", data=b"pwned"), E("up/new", data=b"new"), E("evil/.wh.gone")),
              tar(E("hl", "hard", link="evil/secret"))]
    store.add_image([REF], layers, media_type=GZIP)
    b = tmp_path / "b"
    pyimg("unpack", "--mode", mode, REF, str(b), root=store.root)
    assert sorted(os.listdir(out)) == ["secret"] and (out / "secret").read_text() == "host\n"
    inside = b / "rootfs" / str(out).lstrip("/")
    assert (inside / "secret").read_bytes() == b"pwned" and (inside / "new").read_bytes() == b"new"
    assert (b / "rootfs/hl").read_bytes() == b"pwned"
    pyimg("rm-bundle", str(b), root=store.root)


def test_diff_id_mismatch_leaves_no_cached_layer(store, tmp_path):
    store.add_image([REF], [tar(E("f", data=b"x"))], media_type=GZIP)
    cfg_digest = json.load(open(os.path.join(store.root, "blobs/sha256", store.index["manifests"][0]["digest"][7:])))
    # rewrite the config with a wrong diff_id (and point a new manifest at it)
    cfg = json.load(open(os.path.join(store.root, "blobs/sha256", cfg_digest["config"]["digest"][7:])))
    cfg["rootfs"]["diff_ids"] = ["sha256:" + "1" * 64]
    cb = json.dumps(cfg).encode()
    cfg_digest["config"].update(digest=store.blob(cb), size=len(cb))
    mb = json.dumps(cfg_digest).encode()
    store.index["manifests"] = [{"mediaType": cfg_digest["mediaType"], "digest": store.blob(mb), "size": len(mb),
                                 "annotations": {"org.opencontainers.image.ref.name": REF}}]
    store._save()
    for mode in ("copy", "overlay"):
        b = tmp_path / f"b-{mode}"
        r = pyimg("unpack", "--mode", mode, REF, str(b), root=store.root, check=False)
        assert r.returncode == 1 and "does not match diff_id" in r.stderr
        assert not b.exists()
    layers = os.path.join(store.root, "layers")
    # (.overlay-probe: the remembered answer of the overlay probe, no layer)
    assert [n for n in os.listdir(layers) if n not in ("tmp", ".lock", ".overlay-probe")] == []


def test_uid_map_shifts_owners_and_config(store, tmp_path):
    store.add_image([REF], case_layers(), media_type=GZIP, config={"Cmd": ["/bin/sh"]})
    b = tmp_path / "b"
    pyimg("unpack", "--mode", "copy", "--uid-map", "0:200000:65536", "--gid-map", "0:300000:65536", REF, str(b),
          root=store.root)
    st = os.lstat(b / "rootfs/home/app")
    assert (st.st_uid, st.st_gid) == (201000, 301000)
    st = os.lstat(b / "rootfs/modme")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (200003, 300004, 0o4711)
    cfg = json.load(open(b / "config.json"))
    assert cfg["linux"]["uidMappings"] == [{"containerID": 0, "hostID": 200000, "size": 65536}]
    assert cfg["linux"]["gidMappings"] == [{"containerID": 0, "hostID": 300000, "size": 65536}]
    assert {"type": "user"} in cfg["linux"]["namespaces"]
    pyimg("rm-bundle", str(b), root=store.root)


def test_unpack_errors_are_one_line(store, tmp_path):
    r = pyimg("unpack", "nosuch:tag", str(tmp_path / "b"), root=store.root, check=False)
    assert r.returncode == 1 and "nosuch" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    store.add_image([REF], [tar(E("f", data=b"x"))])
    (tmp_path / "b2" / "rootfs").mkdir(parents=True)
    r = pyimg("unpack", REF, str(tmp_path / "b2"), root=store.root, check=False)
    assert r.returncode == 1 and "already exists" in r.stderr
    r = pyimg("rm-bundle", str(tmp_path / "b2"), root=store.root, check=False)
    assert r.returncode == 1 and "not a bundle" in r.stderr


def test_store_gc_keeps_what_bundles_use(store, tmp_path):
    from imagetool.store import Store

    md = store.add_image([REF], case_layers(), media_type=GZIP)
    b = tmp_path / "b"
    pyimg("unpack", REF, str(b), root=store.root)
    st = Store(store.root)
    st.remove(REF)  # like `pyimg rmi` without pruning
    assert bundlemod.manifests_in_use(store.root) == {md}
    removed, _ = st.gc(keep=bundlemod.manifests_in_use(store.root))
    assert removed == 0 and st.has_blob(md)
    subprocess.run(["umount", str(b / "rootfs")], check=True)
    pyimg("remount", root=store.root)  # the layer cache is enough to mount again
    assert (b / "rootfs/etc/hostname").read_text() == "cases\n"
    pyimg("rm-bundle", str(b), root=store.root)
    removed, _ = st.gc(keep=bundlemod.manifests_in_use(store.root))
    assert removed == 5  # manifest, config, three layers


@pytest.mark.parametrize("mode", ["copy", "overlay"])
def test_whiteouts_spare_entries_of_their_own_layer(store, tmp_path, mode):
    layers = [tar(E("a", data=b"lower"), E("d", "dir"), E("d/lower", data=b"l"), E("e", "dir"), E("e/x", data=b"x")),
              tar(E("a", data=b"upper"), E(".wh.a"), E("d/mine", data=b"m"), E("d/.wh..wh..opq"),
                  E(".wh.b"), E("b", data=b"b"), E(".wh.e"), E("e", "dir", mode=0o700), E("e/y", data=b"y"))]
    store.add_image([REF], layers, media_type=GZIP)
    b = tmp_path / "b"
    pyimg("unpack", "--mode", mode, REF, str(b), root=store.root)
    r = b / "rootfs"
    assert (r / "a").read_bytes() == b"upper" and (r / "b").read_bytes() == b"b"
    assert sorted(os.listdir(r / "d")) == ["mine"]
    assert sorted(os.listdir(r / "e")) == ["y"] and stat.S_IMODE(os.lstat(r / "e").st_mode) == 0o700
    pyimg("rm-bundle", str(b), root=store.root)


def test_concurrent_unpacks_share_one_cache(store, tmp_path):
    store.add_image([REF], case_layers(), media_type=GZIP)
    bundles = [tmp_path / f"b{i}" for i in range(3)]
    procs = [subprocess.Popen([PYIMG, "--root", store.root, "unpack", "--mode", "overlay", REF, str(b)],
                              stderr=subprocess.PIPE, text=True) for b in bundles]
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errs
    opts = {_overlay_opts(b / "rootfs").split("upperdir=")[0] for b in bundles}
    assert len(opts) == 1  # same lowerdirs
    layers = [n for n in os.listdir(os.path.join(store.root, "layers")) if len(n) == 12]
    assert len(layers) == 3 and os.listdir(os.path.join(store.root, "layers", "tmp")) == []
    for b in bundles:
        pyimg("rm-bundle", str(b), root=store.root)


def test_stale_stage_of_a_crashed_unpack_is_cleaned(store, tmp_path):
    store.add_image([REF], case_layers(), media_type=GZIP)
    stage = os.path.join(store.root, "layers", "tmp", "abcdef012345-dead")
    os.makedirs(os.path.join(stage, "fs", "half-written"))
    b = tmp_path / "b"
    pyimg("unpack", "--mode", "overlay", REF, str(b), root=store.root)
    assert not os.path.exists(stage)
    pyimg("rm-bundle", str(b), root=store.root)


@pytest.mark.parametrize("mode", ["copy", "overlay"])
def test_image_without_layers(store, tmp_path, mode):
    store.add_image([REF], [], media_type=GZIP, config={"Cmd": ["/app"]})
    b = tmp_path / "b"
    pyimg("unpack", "--mode", mode, REF, str(b), root=store.root)
    assert os.listdir(b / "rootfs") == []
    assert json.load(open(b / "config.json"))["process"]["args"] == ["/app"]
    out = pyimg("bundles", root=store.root).stdout.splitlines()
    assert len(out) == 2 and out[1].split()[1:4] == [mode, "ready", "yes" if mode == "overlay" else "-"]
    pyimg("rm-bundle", str(b), root=store.root)
    assert pyimg("bundles", "-q", root=store.root).stdout == ""


def _sectors_written(dev: str) -> int:
    """Sectors written to block device dev (/sys/block/DEV/stat, field 7)."""
    with open(f"/sys/block/{dev}/stat") as f:
        return int(f.read().split()[6])


@pytest.fixture
def scratch_fs(tmp_path):
    """A private ext4 on a loop device: what is written to it can be read
    off the device's own counters, whatever else the machine is doing."""
    img = tmp_path / "fs.img"
    with open(img, "wb") as f:
        f.truncate(512 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(img)], check=True)
    dev = subprocess.run(["losetup", "--find", "--show", str(img)], check=True,
                         capture_output=True, text=True).stdout.strip()
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    try:
        subprocess.run(["mount", dev, str(mnt)], check=True)
        try:
            yield mnt, os.path.basename(dev)
        finally:
            for rec in bundlemod.list_bundles(str(mnt / "store")) if (mnt / "store").exists() else []:
                bundlemod.remove_bundle(str(mnt / "store"), rec["bundle"])
            if subprocess.run(["umount", str(mnt)]).returncode != 0:
                subprocess.run(["umount", "-l", str(mnt)], check=True)  # (busy a moment longer)
    finally:
        subprocess.run(["losetup", "-d", dev], check=True)  # (deferred while still in use)


def test_first_overlay_unpack_does_not_flush_the_filesystem(scratch_fs):
    """The overlay probe of a store's first overlay unpack leaves other dirty
    data on the store's filesystem alone: an overlay unmounted without
    `volatile` would sync its whole upper filesystem (64 MB here)."""
    mnt, dev = scratch_fs
    lay = Layout(mnt / "store")
    lay.add_image([REF], [tar(E("f", data=b"x"))], media_type=GZIP)
    with open(mnt / "unrelated", "wb") as f:
        f.write(os.urandom(64 << 20))  # dirty, not synced
    before = _sectors_written(dev)
    pyimg("unpack", "--mode", "overlay", REF, str(mnt / "b"), root=lay.root)
    written = (_sectors_written(dev) - before) * 512
    assert os.path.ismount(mnt / "b" / "rootfs")  # the probe said yes
    assert written < 16 << 20, f"{written} bytes written to the store's filesystem"


def test_overlay_probe_detaches_a_busy_mount_and_leaves_no_probe(tmp_path, monkeypatch):
    """The probe's own unmount failing (something scanning mounts holds it
    busy): the probe detaches it, answers yes, and leaves neither a mount
    nor a probe directory behind."""
    calls = []
    real = bundlemod.umount

    def busy_once(target, detach=False):
        calls.append(detach)
        if not detach:
            raise bundlemod.BundleError(f"{target}: cannot unmount: Device or resource busy")
        real(target, detach=True)

    monkeypatch.setattr(bundlemod, "umount", busy_once)
    monkeypatch.setattr(bundlemod, "_overlay_ok", {})
    root = tmp_path / "store"
    assert bundlemod.overlay_supported(str(root)) is True
    assert calls == [False, True]
    tmpdir = root / "layers" / "tmp"
    assert list(tmpdir.iterdir()) == []
    assert not [m for m in open("/proc/self/mountinfo").read().splitlines() if str(tmpdir) in m]
