"""imagetool.engine.volumes: docker's local named volumes (no root needed)."""
import multiprocessing
import os
import shutil
import stat
import time

import pytest

from imagetool.engine.volumes import Volumes, valid_name
from imagetool.errors import BundleError


@pytest.fixture
def vols(tmp_path):
    return Volumes(str(tmp_path / "root"))


def test_create_and_inspect_shape(vols, tmp_path):
    before = time.time()
    v = vols.create("data", labels={"a": "1"}, options={})
    assert list(v) == ["CreatedAt", "Driver", "Labels", "Mountpoint", "Name", "Options", "Scope"]
    assert v["Name"] == "data" and v["Driver"] == "local" and v["Scope"] == "local"
    assert v["Labels"] == {"a": "1"} and v["Options"] == {}
    assert v["Mountpoint"] == str(tmp_path / "root" / "volumes" / "data" / "_data")
    assert os.path.isdir(v["Mountpoint"]) and os.listdir(v["Mountpoint"]) == []
    assert v["CreatedAt"][:4].isdigit() and v["CreatedAt"][10] == "T"
    assert vols.get("data") == v
    assert vols.mountpoint("data") == v["Mountpoint"]
    assert time.strftime("%Y", time.localtime(before)) == v["CreatedAt"][:4]


def test_create_is_idempotent(vols):
    v1 = vols.create("data", labels={"a": "1"})
    open(os.path.join(v1["Mountpoint"], "keep"), "w").close()
    v2 = vols.create("data", labels={"other": "x"})
    assert v2 == v1  # the existing volume, unchanged
    assert os.listdir(v1["Mountpoint"]) == ["keep"]


def test_anonymous_volume_has_a_64_hex_name_and_null_labels(vols):
    v = vols.create()
    assert len(v["Name"]) == 64 and all(c in "0123456789abcdef" for c in v["Name"])
    assert v["Labels"] is None and v["Options"] is None
    assert vols.create()["Name"] != v["Name"]


@pytest.mark.parametrize("name,msg", [
    ("x/y", 'create x/y: "x/y" includes invalid characters for a local volume name, only '
            '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use absolute path'),
    ("a", "create a: volume name is too short, names should be at least two alphanumeric characters"),
    (".", "create .: volume name is too short, names should be at least two alphanumeric characters"),
    ("..", 'create ..: ".." includes invalid characters'),
    ("_x", 'create _x: "_x" includes invalid characters'),
    ("a b", 'create a b: "a b" includes invalid characters'),
    ("é1", 'create é1: "é1" includes invalid characters'),
])
def test_bad_names_in_dockers_words(vols, name, msg, tmp_path):
    with pytest.raises(BundleError) as e:
        vols.create(name)
    assert str(e.value).startswith(msg)
    vdir = tmp_path / "root" / "volumes"
    assert not vdir.exists() or os.listdir(vdir) == []


def test_valid_names():
    for ok in ("ab", "a.b-c_d", "0x", "My.Volume"):
        assert valid_name(ok) is None


@pytest.mark.parametrize("kw,msg", [
    ({"driver": "nfs"}, 'create v1: error looking up volume plugin nfs: plugin "nfs" not found'),
    ({"options": {"foo": "1"}}, 'create v1: invalid option key: "foo"'),
    ({"options": {"device": "tmpfs"}}, 'create v1: missing required option: "type"'),
    ({"options": {"o": "size=1m", "type": "tmpfs"}}, 'create v1: missing required option: "device"'),
])
def test_bad_driver_and_options_leave_nothing(vols, kw, msg):
    with pytest.raises(BundleError) as e:
        vols.create("v1", **kw)
    assert str(e.value) == msg
    assert vols.list() == [] and not vols.exists("v1")


def test_options_are_kept(vols):
    v = vols.create("tmp", options={"type": "tmpfs", "device": "tmpfs", "o": "size=1m"})
    assert v["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}


@pytest.mark.parametrize("name", ["nope", "../volumes", "x/y", ""])
def test_get_missing(vols, name):
    vols.create("real")
    with pytest.raises(BundleError) as e:
        vols.get(name)
    assert str(e.value) == f"get {name}: no such volume"


def test_list_is_sorted_and_skips_work_in_progress(vols, tmp_path):
    assert vols.list() == []
    for n in ("zz", "aa", "mm"):
        vols.create(n)
    os.mkdir(tmp_path / "root" / "volumes" / ".create-1-abcd")
    os.mkdir(tmp_path / "root" / "volumes" / "stray")  # no record: not a volume
    assert [v["Name"] for v in vols.list()] == ["aa", "mm", "zz"]


def test_remove(vols):
    v = vols.create("data")
    open(os.path.join(v["Mountpoint"], "f"), "w").close()
    vols.remove("data")
    assert not os.path.exists(os.path.dirname(v["Mountpoint"]))
    assert vols.list() == []
    assert not [n for n in os.listdir(os.path.dirname(os.path.dirname(v["Mountpoint"])))]


def test_remove_in_use_and_missing(vols):
    vols.create("data")
    with pytest.raises(BundleError) as e:
        vols.remove("data", in_use=["4f6a1b", "9c8d7e"])
    assert str(e.value) == "remove data: volume is in use - [4f6a1b, 9c8d7e]"
    assert vols.exists("data")
    with pytest.raises(BundleError) as e:
        vols.remove("nope")
    assert str(e.value) == "get nope: no such volume"
    vols.remove("nope", force=True)  # no error
    with pytest.raises(BundleError, match="in use"):
        vols.remove("data", force=True, in_use=["4f6a1b"])


def test_prune_removes_unused_and_counts_bytes(vols):
    a = vols.create("aa")
    vols.create("bb")
    anon = vols.create()
    with open(os.path.join(a["Mountpoint"], "f"), "wb") as f:
        f.write(b"x" * 1000)
    os.link(os.path.join(a["Mountpoint"], "f"), os.path.join(a["Mountpoint"], "g"))  # one inode, counted once
    with open(os.path.join(anon["Mountpoint"], "h"), "wb") as f:
        f.write(b"y" * 24)
    names, freed = vols.prune({"bb"})
    assert sorted(names) == sorted(["aa", anon["Name"]])
    assert freed == 1024
    assert [v["Name"] for v in vols.list()] == ["bb"]
    assert vols.prune({"bb"}) == ([], 0)


def _create_racer(root, barrier, q):
    barrier.wait()
    try:
        q.put(Volumes(root).create("shared", labels={"pid": str(os.getpid())})["Labels"]["pid"])
    except Exception as e:  # reported to the test
        q.put(f"error: {e}")


def test_concurrent_creates_end_with_one_volume(tmp_path):
    root = str(tmp_path / "root")
    ctx = multiprocessing.get_context("fork")
    n = 6
    barrier, q = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_create_racer, args=(root, barrier, q)) for _ in range(n)]
    for p in procs:
        p.start()
    results = [q.get(timeout=30) for _ in range(n)]
    for p in procs:
        p.join(10)
    assert not [r for r in results if r.startswith("error")], results
    assert len(set(results)) == 1  # every process got the one volume that won
    assert os.listdir(os.path.join(root, "volumes")) == ["shared"]  # no staging left behind


# -- seeding (docker's copy-up)

def _image_dir(base):
    """A directory like an image's content at a mount path."""
    src = base / "src"
    (src / "sub").mkdir(parents=True)
    (src / "file").write_bytes(b"content")
    os.chmod(src / "file", 0o640)
    (src / "sub" / "deep").write_text("deep")
    os.chmod(src / "sub", 0o751)
    os.link(src / "file", src / "hard")
    os.symlink("file", src / "rel-link")
    os.mkfifo(src / "fifo")
    os.utime(src / "file", ns=(1_000_000_000, 2_000_000_000))
    os.utime(src / "sub", ns=(3_000_000_000, 4_000_000_000))
    os.chmod(src, 0o750)
    return src


def test_seed_copies_content_modes_links_and_times(vols, tmp_path):
    src = _image_dir(tmp_path)
    v = vols.create("data")
    assert vols.seed("data", str(src)) is True
    mp = v["Mountpoint"]
    assert sorted(os.listdir(mp)) == ["fifo", "file", "hard", "rel-link", "sub"]
    assert open(os.path.join(mp, "file"), "rb").read() == b"content"
    assert stat.S_IMODE(os.stat(os.path.join(mp, "file")).st_mode) == 0o640
    assert stat.S_IMODE(os.stat(os.path.join(mp, "sub")).st_mode) == 0o751
    assert stat.S_IMODE(os.stat(mp).st_mode) == 0o750  # the root takes the source's mode
    assert os.stat(os.path.join(mp, "file")).st_ino == os.stat(os.path.join(mp, "hard")).st_ino
    assert os.readlink(os.path.join(mp, "rel-link")) == "file"
    assert stat.S_ISFIFO(os.lstat(os.path.join(mp, "fifo")).st_mode)
    assert os.stat(os.path.join(mp, "file")).st_mtime_ns == 2_000_000_000
    assert os.stat(os.path.join(mp, "sub")).st_mtime_ns == 4_000_000_000
    assert open(os.path.join(mp, "sub", "deep")).read() == "deep"


def test_seed_keeps_user_xattrs(vols, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    try:
        os.setxattr(src / "f", "user.test", b"v1")
    except OSError:
        pytest.skip("no user xattrs on this filesystem")
    vols.create("data")
    vols.seed("data", str(src))
    assert os.getxattr(os.path.join(vols.mountpoint("data"), "f"), "user.test") == b"v1"


def test_seed_happens_once_and_only_into_an_empty_volume(vols, tmp_path):
    src = _image_dir(tmp_path)
    vols.create("once")
    assert vols.seed("once", str(src)) is True
    shutil.rmtree(vols.mountpoint("once"))
    os.mkdir(vols.mountpoint("once"))
    assert vols.seed("once", str(src)) is False  # emptied, but already seeded once
    assert os.listdir(vols.mountpoint("once")) == []
    vols.create("full")
    open(os.path.join(vols.mountpoint("full"), "mine"), "w").close()
    assert vols.seed("full", str(src)) is False
    assert os.listdir(vols.mountpoint("full")) == ["mine"]


def test_seed_of_a_missing_source_copies_nothing_and_can_seed_later(vols, tmp_path):
    vols.create("data")
    assert vols.seed("data", str(tmp_path / "rootfs"), "/no/such/dir") is False
    src = _image_dir(tmp_path)
    assert vols.seed("data", str(src)) is True


def test_seed_missing_volume(vols, tmp_path):
    with pytest.raises(BundleError, match="get nope: no such volume"):
        vols.seed("nope", str(tmp_path))


def test_seed_does_not_follow_symlinks_out_of_the_rootfs(vols, tmp_path):
    """The image's mount path and the entries under it are symlinks to a
    host directory holding a canary: the walk stays in the rootfs."""
    host = tmp_path / "host-secret"
    host.mkdir()
    (host / "canary").write_text("host data")
    rootfs = tmp_path / "rootfs"
    (rootfs / "data").mkdir(parents=True)
    (rootfs / "data" / "ok").write_text("image data")
    os.symlink(str(host), rootfs / "data" / "abs-link")              # absolute, to the host
    os.symlink("../../host-secret", rootfs / "data" / "rel-link")    # relative, climbing out
    os.symlink(str(host), rootfs / "mnt")                            # the mount path itself
    vols.create("data")
    assert vols.seed("data", str(rootfs), "/data") is True
    mp = vols.mountpoint("data")
    assert sorted(os.listdir(mp)) == ["abs-link", "ok", "rel-link"]
    assert os.path.islink(os.path.join(mp, "abs-link")) and os.path.islink(os.path.join(mp, "rel-link"))
    assert os.readlink(os.path.join(mp, "abs-link")) == str(host)  # copied as a link, not followed
    # the mount path /mnt -> HOST resolves inside the rootfs, where HOST does not exist
    vols.create("mnt")
    assert vols.seed("mnt", str(rootfs), "/mnt") is False
    assert os.listdir(vols.mountpoint("mnt")) == []
    # and when the rootfs has that path, its content is what is copied, never the host's
    (rootfs / host.relative_to("/")).mkdir(parents=True)
    (rootfs / host.relative_to("/") / "image-file").write_text("in the image")
    assert vols.seed("mnt", str(rootfs), "/mnt") is True
    assert os.listdir(vols.mountpoint("mnt")) == ["image-file"]


def test_seed_from_a_path_does_not_follow_a_final_symlink(vols, tmp_path):
    host = tmp_path / "host"
    host.mkdir()
    (host / "canary").write_text("x")
    os.symlink(str(host), tmp_path / "link")
    vols.create("data")
    assert vols.seed("data", str(tmp_path / "link")) is False
    assert os.listdir(vols.mountpoint("data")) == []


def test_seed_from_an_open_fd(vols, tmp_path):
    src = _image_dir(tmp_path)
    fd = os.open(src, os.O_RDONLY | os.O_DIRECTORY)
    try:
        vols.create("data")
        assert vols.seed("data", fd) is True
        os.fstat(fd)  # the caller's fd stays open
    finally:
        os.close(fd)
    assert "file" in os.listdir(vols.mountpoint("data"))


def test_a_failed_seed_leaves_the_volume_empty_and_unseeded(vols, tmp_path, monkeypatch):
    from imagetool.engine import volumes as vmod

    src = _image_dir(tmp_path)
    vols.create("data")
    real = vmod._copy_data
    calls = []

    def failing(sfd, name, dfd):
        calls.append(name)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(sfd, name, dfd)

    monkeypatch.setattr(vmod, "_copy_data", failing)
    with pytest.raises(BundleError) as e:
        vols.seed("data", str(src))
    assert str(e.value) == "volume data: cannot seed from the image: no space left on device"
    assert os.listdir(vols.mountpoint("data")) == []
    monkeypatch.setattr(vmod, "_copy_data", real)
    assert vols.seed("data", str(src)) is True  # a later mount seeds it


def test_seed_of_a_volume_removed_meanwhile(vols, tmp_path):
    vols.create("data")
    os.rename(os.path.dirname(vols.mountpoint("data")), tmp_path / "elsewhere")
    with pytest.raises(BundleError) as e:
        vols.seed("data", str(tmp_path))
    assert str(e.value) == "get data: no such volume"
