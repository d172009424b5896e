"""imagetool.layer: applying layer tars to a directory, confined to it."""
import gzip
import hashlib
import os
import stat

import pytest

from imagetool.layer import IdMap, LayerError, apply_layer, open_in_root

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown, mknod, trusted xattrs)")


from tarbuild import E, tar  # noqa: E402  (shared with tests/integration)


@pytest.fixture
def env(tmp_path):
    root = tmp_path / "rootfs"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("host data\n")
    n = [0]

    def apply(data: bytes, compress=None, **kw):
        n[0] += 1
        blob = tmp_path / f"layer{n[0]}"
        raw = gzip.compress(data) if compress == "gzip" else data
        if compress == "zstd":
            import zstandard
            raw = zstandard.ZstdCompressor().compress(data)
        blob.write_bytes(raw)
        kw.setdefault("diff_id", "sha256:" + hashlib.sha256(data).hexdigest())
        return apply_layer(str(root), str(blob), **kw)

    return root, outside, apply


def snapshot(path):
    out = {}
    for dirpath, dirs, files in os.walk(path):
        for n in dirs + files:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            out[os.path.relpath(p, path)] = (stat.S_IFMT(st.st_mode), st.st_size, st.st_mtime_ns)
    return out


def test_basic_types_modes_and_metadata(env):
    root, _, apply = env
    apply(tar(
        E("./", "dir", mode=0o755),
        E("bin", "dir"),
        E("bin/su", data=b"su", mode=0o4755),
        E("bin/sg", data=b"sg", mode=0o2711),
        E("tmp", "dir", mode=0o1777),
        E("etc", "dir", mtime=1_500_000_000),
        E("etc/motd", data=b"hello\n", mtime=1_234_567_890),
        E("etc/link", "sym", link="motd"),
        E("etc/hard", "hard", link="etc/motd"),
        E("etc/xa", data=b"x", xattrs={"user.comment": "a comment"}),
    ), compress="gzip")
    assert stat.S_IMODE(os.lstat(root / "bin/su").st_mode) == 0o4755
    assert stat.S_IMODE(os.lstat(root / "bin/sg").st_mode) == 0o2711
    assert stat.S_IMODE(os.lstat(root / "tmp").st_mode) == 0o1777
    assert (root / "etc/motd").read_bytes() == b"hello\n"
    assert os.lstat(root / "etc/motd").st_mtime == 1_234_567_890
    # directory times are set after their contents were written
    assert os.lstat(root / "etc").st_mtime == 1_500_000_000
    assert os.readlink(root / "etc/link") == "motd"
    assert os.lstat(root / "etc/hard").st_ino == os.lstat(root / "etc/motd").st_ino
    assert os.getxattr(root / "etc/xa", "user.comment") == b"a comment"


@ROOT_ONLY
def test_ownership_before_setuid_and_devices(env):
    root, _, apply = env
    apply(tar(
        E("su", data=b"x", mode=0o6755, uid=1000, gid=1001),
        E("null", "chr", mode=0o666, dev=(1, 3)),
        E("loop9", "blk", mode=0o660, dev=(7, 9), gid=6),
        E("pipe", "fifo", mode=0o600, uid=5),
    ))
    st = os.lstat(root / "su")
    # chown after chmod would have cleared the set-id bits
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1001, 0o6755)
    st = os.lstat(root / "null")
    assert stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 3
    st = os.lstat(root / "loop9")
    assert stat.S_ISBLK(st.st_mode) and os.minor(st.st_rdev) == 9 and st.st_gid == 6
    assert stat.S_ISFIFO(os.lstat(root / "pipe").st_mode) and os.lstat(root / "pipe").st_uid == 5


def test_long_and_non_ascii_names(env):
    root, _, apply = env
    deep = "/".join(["d" * 60] * 5) + "/" + "f" * 200
    apply(tar(E("ünïcødé-日本", data=b"u"), E(deep, data=b"deep")), compress="zstd")
    assert (root / "ünïcødé-日本").read_bytes() == b"u"
    assert (root / deep).read_bytes() == b"deep"


def test_whiteouts_opaque_and_replacements(env):
    root, _, apply = env
    apply(tar(
        E("gone", data=b"1"), E("gonedir", "dir"), E("gonedir/x", data=b"x"),
        E("opq", "dir"), E("opq/a", data=b"a"), E("opq/sub", "dir"), E("opq/sub/b", data=b"b"),
        E("d2f", "dir"), E("d2f/child", data=b"c"), E("f2d", data=b"file"),
        E("keep", data=b"k"),
    ))
    apply(tar(
        E(".wh.gone"), E(".wh.gonedir"),
        E("opq", "dir"), E("opq/.wh..wh..opq"), E("opq/new", data=b"n"),
        E("d2f", data=b"now a file"), E("f2d", "dir"), E("f2d/inner", data=b"i"),
    ))
    assert not os.path.lexists(root / "gone") and not os.path.lexists(root / "gonedir")
    assert sorted(os.listdir(root / "opq")) == ["new"]
    assert (root / "d2f").read_bytes() == b"now a file"
    assert (root / "f2d/inner").read_bytes() == b"i"
    assert (root / "keep").read_bytes() == b"k"
    assert not any(n.startswith(".wh.") for n in os.listdir(root))


def test_whiteout_does_not_hide_same_layer_entries(env):
    root, _, apply = env
    apply(tar(E("a", data=b"lower"), E("d", "dir"), E("d/lower", data=b"l")))
    # whiteout after and before the same-layer entry, opaque after a child
    apply(tar(E("a", data=b"upper"), E(".wh.a"),
              E("d/mine", data=b"m"), E("d/.wh..wh..opq"),
              E(".wh.b"), E("b", data=b"b")))
    assert (root / "a").read_bytes() == b"upper"
    assert sorted(os.listdir(root / "d")) == ["mine"]
    assert (root / "b").read_bytes() == b"b"


def test_hardlink_to_lower_layer_file(env):
    root, _, apply = env
    apply(tar(E("usr", "dir"), E("usr/bin", "dir"), E("usr/bin/tool", data=b"tool", mode=0o755)))
    apply(tar(E("usr/bin/alias", "hard", link="usr/bin/tool")))
    assert os.lstat(root / "usr/bin/alias").st_ino == os.lstat(root / "usr/bin/tool").st_ino


def test_diff_id_mismatch_is_refused(env):
    _, _, apply = env
    with pytest.raises(LayerError, match="does not match diff_id"):
        apply(tar(E("f", data=b"x")), compress="gzip", diff_id="sha256:" + "0" * 64)


def test_corrupt_stream_names_the_layer(env, tmp_path):
    root, _, _ = env
    blob = tmp_path / "bad"
    blob.write_bytes(gzip.compress(tar(E("f", data=b"x" * 5000)))[:60])
    with pytest.raises(LayerError, match=str(blob)):
        apply_layer(str(root), str(blob))


# ---------------------------------------------------------------- hostile layers

def test_dotdot_entry_refused(env):
    root, outside, apply = env
    with pytest.raises(LayerError, match=r"'\.\./outside/evil'"):
        apply(tar(E("../outside/evil", data=b"x")))
    assert sorted(os.listdir(outside)) == ["secret"]


def test_absolute_entry_stays_inside(env):
    root, outside, apply = env
    apply(tar(E(str(outside / "secret"), data=b"pwned")))
    assert (outside / "secret").read_text() == "host data\n"
    assert (root / str(outside / "secret").lstrip("/")).read_bytes() == b"pwned"


@pytest.mark.parametrize("target", ["abs", "rel"])
def test_write_through_symlink_stays_inside(env, target):
    root, outside, apply = env
    link = str(outside) if target == "abs" else "../" * 12 + str(outside).lstrip("/")
    before = snapshot(outside)
    apply(tar(E("evil", "sym", link=link), E("evil/secret", data=b"pwned"), E("evil/new", data=b"new")))
    apply(tar(E("evil/.wh.secret")))  # a whiteout through the symlink
    apply(tar(E("evil/sub/deeper", data=b"d")))
    assert snapshot(outside) == before
    assert (outside / "secret").read_text() == "host data\n"
    # the symlink was resolved as if the rootfs were "/"
    inside = root / str(outside).lstrip("/")
    assert (inside / "new").read_bytes() == b"new" and not (inside / "secret").exists()
    assert (inside / "sub/deeper").read_bytes() == b"d"


def test_symlink_loop_is_an_error(env):
    _, _, apply = env
    with pytest.raises(LayerError, match="'a/x'.*symbolic links"):
        apply(tar(E("a", "sym", link="b"), E("b", "sym", link="a"), E("a/x", data=b"")))


def test_hardlinks_cannot_reach_outside(env):
    root, outside, apply = env
    with pytest.raises(LayerError, match="'h1'"):
        apply(tar(E("h1", "hard", link="../outside/secret")))
    with pytest.raises(LayerError, match="'h2'.*does not exist"):
        apply(tar(E("h2", "hard", link=str(outside / "secret"))))
    # through a symlinked directory: the link target is looked up in the rootfs
    with pytest.raises(LayerError, match="'h3'.*does not exist"):
        apply(tar(E("o", "sym", link=str(outside)), E("h3", "hard", link="o/secret")))
    # a hardlink to a symlink links the symlink, not what it points to
    apply(tar(E("s", "sym", link=str(outside / "secret")), E("h4", "hard", link="s")))
    assert os.path.islink(root / "h4")
    assert os.lstat(outside / "secret").st_nlink == 1
    assert (outside / "secret").read_text() == "host data\n"


def test_file_over_symlink_replaces_the_symlink(env):
    root, outside, apply = env
    apply(tar(E("passwd", "sym", link=str(outside / "secret"))))
    apply(tar(E("passwd", data=b"root\n")))
    assert not os.path.islink(root / "passwd") and (root / "passwd").read_bytes() == b"root\n"
    assert (outside / "secret").read_text() == "host data\n"


def test_rootless_skips_devices_and_ownership(env):
    root, _, apply = env
    r = apply(tar(E("dev", "dir"), E("dev/sda", "blk", dev=(8, 0)), E("dev/null", "chr", dev=(1, 3)),
                  E("f", data=b"x", uid=4242)), rootless=True)
    assert sorted(r["skipped"]) == ["dev/null", "dev/sda"]
    assert os.listdir(root / "dev") == []
    assert os.lstat(root / "f").st_uid == os.geteuid()


@ROOT_ONLY
def test_id_maps(env):
    root, _, apply = env
    m = IdMap.parse(["0:100000:65536"])
    apply(tar(E("f", data=b"x", uid=0, gid=5), E("g", data=b"y", uid=1000, gid=1000)), uid_map=m, gid_map=m)
    assert (os.lstat(root / "f").st_uid, os.lstat(root / "f").st_gid) == (100000, 100005)
    assert os.lstat(root / "g").st_uid == 101000
    with pytest.raises(LayerError, match="'big'.*not in the id map"):
        apply(tar(E("big", data=b"", uid=70000)), uid_map=m, gid_map=m)


def test_idmap_parse_rejects_garbage():
    with pytest.raises(ValueError, match="1:2"):
        IdMap.parse(["1:2"])
    assert IdMap.parse(["0:1000:1"]).to_spec() == [{"containerID": 0, "hostID": 1000, "size": 1}]


def test_open_in_root_follows_symlinks_inside_only(tmp_path):
    root = tmp_path / "r"
    (root / "etc").mkdir(parents=True)
    (root / "real").write_text("inside\n")
    (tmp_path / "real").write_text("outside\n")
    os.symlink("/real", root / "etc/passwd")
    os.symlink("../../../../real", root / "etc/group")
    for p in ("/etc/passwd", "etc/group"):
        fd = open_in_root(str(root), p)
        with os.fdopen(fd) as f:
            assert f.read() == "inside\n"


@ROOT_ONLY
def test_layer_cannot_forge_overlay_xattrs(env):
    root, _, apply = env
    apply(tar(E("d", "dir", xattrs={"trusted.overlay.opaque": "y", "trusted.other": "kept"}),
              E("f", data=b"", xattrs={"trusted.overlay.redirect": "/etc"})))
    assert "trusted.overlay.opaque" not in os.listxattr(root / "d")
    assert os.getxattr(root / "d", "trusted.other") == b"kept"
    assert os.listxattr(root / "f") == []


def test_replaced_parent_is_resolved_again(env):
    """A directory replaced by a symlink within one layer: later entries
    below that name go where the symlink leads (inside the rootfs), not into
    the directory that was removed (the applier keeps the previous entry's
    parent open and must not reuse it here)."""
    root, _, apply = env
    apply(tar(
        E("b", "dir"),
        E("a", "dir"),
        E("a/x", data=b"x"),
        E("a", "sym", link="/b"),
        E("a/y", data=b"y"),
    ))
    assert os.readlink(root / "a") == "/b"
    assert (root / "b/y").read_bytes() == b"y"
    assert sorted(os.listdir(root / "b")) == ["y"]


def test_error_midway_stops_the_reader_thread(env):
    import threading
    _, _, apply = env
    before = threading.active_count()
    many = [E(f"d/f{i}", data=os.urandom(50_000)) for i in range(100)]
    with pytest.raises(LayerError, match=r"'\.\./evil'"):
        apply(tar(E("d", "dir"), *many[:10], E("../evil", data=b"x"), *many[10:]), compress="gzip")
    assert threading.active_count() == before
