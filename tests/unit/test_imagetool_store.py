"""The OCI-layout content store: verification, atomic index updates under
concurrency, resolve with platforms, tag/remove/gc."""
import hashlib
import json
import multiprocessing
import os

import pytest

from imagetool.store import (DigestMismatch, NotFound, Store, StoreError, match_platform,
                             parse_platform)


def _digest(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def _image(store, tag_text=b"layer", arch="amd64", os_="linux"):
    layer = b"layer-bytes-" + tag_text
    cfg = json.dumps({"architecture": arch, "os": os_, "created": "2024-01-01T00:00:00Z",
                      "rootfs": {"type": "layers", "diff_ids": [_digest(layer)]}}).encode()
    store.put_blob(layer)
    store.put_blob(cfg)
    m = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
         "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": _digest(cfg), "size": len(cfg)},
         "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                     "digest": _digest(layer), "size": len(layer)}]}
    body = json.dumps(m).encode()
    d = store.put_blob(body)
    return {"mediaType": m["mediaType"], "digest": d, "size": len(body)}, m


def test_reads_create_nothing(tmp_path):
    s = Store(str(tmp_path / "none"))
    assert s.entries() == [] and s.images() == []
    with pytest.raises(NotFound):
        s.resolve("busybox")
    assert not (tmp_path / "none").exists()


def test_writer_verifies_digest_and_size(tmp_path):
    s = Store(str(tmp_path))
    data = b"hello world"
    w = s.writer(_digest(data), len(data))
    w.write(b"hello")
    w.write(b" there")  # wrong content, same length
    with pytest.raises(DigestMismatch):
        w.commit()
    assert not s.has_blob(_digest(data))
    assert os.listdir(tmp_path / "ingest") == []

    w = s.writer(_digest(data), len(data))
    with pytest.raises(DigestMismatch):
        w.write(data + b"!")  # more than the expected size
    w.abort()
    w = s.writer(_digest(data), len(data) + 1)
    w.write(data)
    with pytest.raises(DigestMismatch, match="size"):
        w.commit()
    # resume semantics: truncate and rewrite
    w = s.writer(_digest(data), len(data))
    w.write(b"garbage")
    w.truncate(0)
    w.write(data)
    path = w.commit()
    assert open(path, "rb").read() == data
    assert os.stat(path).st_mode & 0o777 == 0o644
    assert os.listdir(tmp_path / "ingest") == []
    with pytest.raises(DigestMismatch):
        s.put_blob(b"x", _digest(b"y"))
    # a download resumed in the middle: the kept prefix counts, the rest not
    w = s.writer(_digest(data), len(data))
    w.write(b"hello XXXXX")
    w.truncate(6)
    w.write(b"world")
    assert open(w.commit(), "rb").read() == data
    w = s.writer(_digest(data), len(data))
    w.write(b"hello")
    w.truncate(2)
    w.write(b"XXo world")  # what is written after the cut is what is hashed
    with pytest.raises(DigestMismatch):
        w.commit()


def test_layout_is_valid_oci(tmp_path):
    s = Store(str(tmp_path))
    desc, _ = _image(s)
    s.set_ref("docker.io/library/busybox:latest", desc)
    assert json.load(open(tmp_path / "oci-layout")) == {"imageLayoutVersion": "1.0.0"}
    idx = json.load(open(tmp_path / "index.json"))
    assert idx["schemaVersion"] == 2
    assert idx["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == \
        "docker.io/library/busybox:latest"
    assert s.resolve("busybox")[0] == desc["digest"]
    assert s.resolve("docker.io/library/busybox")[0] == desc["digest"]
    with pytest.raises(StoreError):
        s.set_ref("x/y:z", {"digest": _digest(b"absent"), "size": 1, "mediaType": "x"})


def _set_many(root, start, n):
    s = Store(root)
    desc, _ = _image(s)
    for i in range(start, start + n):
        s.set_ref(f"docker.io/library/img{i}:latest", desc)


def test_concurrent_index_updates_lose_nothing(tmp_path):
    root = str(tmp_path)
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_set_many, args=(root, k * 25, 25)) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    names = {e["annotations"]["org.opencontainers.image.ref.name"] for e in Store(root).entries()}
    assert names == {f"docker.io/library/img{i}:latest" for i in range(100)}


def test_resolve_index_by_platform(tmp_path):
    s = Store(str(tmp_path))
    amd, _ = _image(s, b"amd", "amd64")
    arm, _ = _image(s, b"arm", "arm64")
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [dict(amd, platform={"os": "linux", "architecture": "amd64"}),
                           dict(arm, platform={"os": "linux", "architecture": "arm64",
                                               "variant": "v8"}),
                           {"mediaType": amd["mediaType"], "digest": _digest(b"s390x"),
                            "size": 5, "platform": {"os": "linux", "architecture": "s390x"}}]}
    body = json.dumps(index).encode()
    d = s.put_blob(body)
    s.set_ref("example.com/multi:1", {"mediaType": index["mediaType"], "digest": d,
                                      "size": len(body)})
    assert s.resolve("example.com/multi:1", "linux/amd64")[0] == amd["digest"]
    assert s.resolve("example.com/multi:1", "linux/arm64")[0] == arm["digest"]
    assert s.resolve("example.com/multi:1", "linux/aarch64/v8")[0] == arm["digest"]
    with pytest.raises(NotFound, match="linux/s390x"):  # listed, but not in the store
        s.resolve("example.com/multi:1", "linux/s390x")
    assert s.resolve(f"example.com/multi@{d}", "linux/amd64")[0] == amd["digest"]


def test_platform_matching():
    c = [{"platform": {"os": "linux", "architecture": "arm", "variant": "v6"}, "n": 6},
         {"platform": {"os": "linux", "architecture": "arm", "variant": "v7"}, "n": 7}]
    assert match_platform(c, parse_platform("linux/arm"))["n"] == 7
    assert match_platform(c, parse_platform("linux/arm/v6"))["n"] == 6
    assert match_platform(c, parse_platform("linux/arm/v5")) is None
    assert match_platform(c, parse_platform("windows/arm")) is None
    with pytest.raises(ValueError):
        parse_platform("linux")


def test_tag_remove_gc_keep(tmp_path):
    s = Store(str(tmp_path))
    d1, m1 = _image(s, b"one")
    d2, m2 = _image(s, b"two")
    s.set_ref("docker.io/library/one:1", d1)
    s.set_ref("docker.io/library/two:1", d2)
    assert s.tag("one:1", "other/name:x") == "docker.io/other/name:x"
    assert s.resolve("other/name:x")[0] == d1["digest"]
    assert s.remove("one:1") == ["docker.io/library/one:1"]
    assert s.gc() == (0, 0)  # still tagged as other/name:x
    s.remove("other/name:x")
    s.remove("two:1")
    # keep protects a manifest and everything it reaches
    removed, freed = s.gc(keep={d2["digest"]})
    assert removed == 3 and freed > 0
    assert s.has_blob(d2["digest"]) and s.has_blob(m2["layers"][0]["digest"])
    assert not s.has_blob(d1["digest"]) and not s.has_blob(m1["config"]["digest"])
    with pytest.raises(NotFound):
        s.remove("two:1")
    # stale ingest files go too
    (tmp_path / "ingest" / "stale").write_bytes(b"x")
    s.gc()
    assert os.listdir(tmp_path / "ingest") == []
    assert os.listdir(tmp_path / "blobs" / "sha256") == []


def test_image_id_prefix_and_images(tmp_path):
    s = Store(str(tmp_path))
    d1, m1 = _image(s, b"one")
    s.set_ref("docker.io/library/one:1", d1)
    cfg = m1["config"]["digest"]
    assert s.resolve(cfg[7:19])[0] == d1["digest"]
    assert s.resolve(cfg)[0] == d1["digest"]
    [row] = s.images()
    assert row["id"] == cfg and row["repository"] == "docker.io/library/one"
    assert row["tag"] == "1" and row["created"] == "2024-01-01T00:00:00Z"
    assert row["size"] == m1["layers"][0]["size"] + m1["config"]["size"]


def test_bare_tags_written_by_other_tools(tmp_path):
    """umoci/skopeo name images with a bare tag; they are listed and found."""
    s = Store(str(tmp_path))
    d1, m1 = _image(s, b"one")
    s.set_ref("latest", d1)
    assert s.resolve("latest")[0] == d1["digest"]
    [row] = s.images()
    assert (row["repository"], row["tag"]) == ("<none>", "latest")
    assert row["id"] == m1["config"]["digest"]


def _record_syncs(monkeypatch):
    """[("file", path) | ("dir", path) | ("rename", dst)] as the store does them."""
    import imagetool.store as storemod
    calls = []
    real_fsync, real_dir, real_replace = os.fsync, storemod._fsync_dir, os.replace

    def fsync(fd):
        path = os.readlink(f"/proc/self/fd/{fd}")
        if not os.path.isdir(path):  # (directories: recorded by fsync_dir)
            calls.append(("file", path))
        real_fsync(fd)

    def fsync_dir(path):
        calls.append(("dir", path))
        real_dir(path)

    def replace(src, dst):
        calls.append(("rename", dst))
        real_replace(src, dst)
    monkeypatch.setattr(storemod.os, "fsync", fsync)
    monkeypatch.setattr(storemod, "_fsync_dir", fsync_dir)
    monkeypatch.setattr(storemod.os, "replace", replace)
    return calls


def test_a_published_blob_has_its_bytes_and_its_name_synced(tmp_path, monkeypatch):
    s = Store(str(tmp_path))
    s.put_blob(b"first")  # (the layout exists: only the blob's own calls below)
    calls = _record_syncs(monkeypatch)
    d = s.put_blob(b"second")
    dest = s.blob_path(d)
    assert [c[0] for c in calls] == ["file", "rename", "dir"]
    assert calls[1:] == [("rename", dest), ("dir", s.blobs_dir)]


def test_blobs_published_together_share_one_directory_sync(tmp_path, monkeypatch):
    s = Store(str(tmp_path))
    s.put_blob(b"first")
    calls = _record_syncs(monkeypatch)
    writers = []
    for data in (b"a", b"b", b"c"):
        w = s.writer(_digest(data), 1)
        w.write(data)
        w.verify()
        w.sync()
        writers.append(w)
    assert [c[0] for c in calls] == ["file"] * 3
    for w in writers:
        w.publish(sync_dir=False)  # bytes already synced: a rename each, nothing more
    assert [c[0] for c in calls] == ["file"] * 3 + ["rename"] * 3
    s.sync_blobs()
    assert calls[-1] == ("dir", s.blobs_dir)
    assert all(s.has_blob(_digest(x), 1) for x in (b"a", b"b", b"c"))


def test_publish_syncs_the_bytes_when_the_caller_did_not(tmp_path, monkeypatch):
    s = Store(str(tmp_path))
    s.put_blob(b"first")
    calls = _record_syncs(monkeypatch)
    w = s.writer(_digest(b"x"), 1)
    w.write(b"x")
    w.verify()
    w.publish(sync_dir=False)
    assert [c[0] for c in calls] == ["file", "rename"]
    with pytest.raises(StoreError):
        s.writer(_digest(b"y"), 1).sync()  # not verified: nothing to make durable


def test_sync_blobs_of_an_empty_store_creates_nothing(tmp_path):
    s = Store(str(tmp_path / "none"))
    s.sync_blobs()
    assert not (tmp_path / "none").exists()


def test_temporary_files_are_private_and_distinct(tmp_path):
    from imagetool.store import _mkstemp
    made = [_mkstemp(str(tmp_path), "p.") for _ in range(50)]
    try:
        assert len({p for _, p in made}) == 50
        for fd, p in made:
            assert os.path.basename(p).startswith("p.") and os.path.dirname(p) == str(tmp_path)
            assert os.stat(p).st_mode & 0o777 == 0o600
            os.write(fd, b"x")
            assert os.lseek(fd, 0, os.SEEK_SET) == 0 and os.read(fd, 1) == b"x"
    finally:
        for fd, _ in made:
            os.close(fd)


def test_default_platform_names_this_machine_as_go_does():
    import platform
    from imagetool.store import default_platform
    want = {"x86_64": "linux/amd64", "aarch64": "linux/arm64"}.get(platform.machine())
    if want is None:
        pytest.skip(f"no expectation for {platform.machine()}")
    assert default_platform() == want
