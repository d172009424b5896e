"""Container state: ids, atomic saves, and status robust to pid reuse."""
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from runtime import state as st  # noqa: E402
from runtime.errors import ContainerExists, RuntimeFailure  # noqa: E402


@pytest.mark.parametrize("cid", ["", ".", "..", "a/b", "a b", "x\n"])
def test_invalid_ids(cid):
    with pytest.raises(RuntimeFailure):
        st.validate_id(cid)


def test_valid_ids():
    for cid in ("abc", "a.b-c_d+e", "0123456789abcdef" * 4):
        st.validate_id(cid)


def test_make_dir_refuses_duplicates(tmp_path):
    st.make_dir(str(tmp_path), "c1")
    with pytest.raises(ContainerExists):
        st.make_dir(str(tmp_path), "c1")


def test_save_is_atomic_and_versioned(tmp_path):
    d = st.make_dir(str(tmp_path), "c1")
    st.save(d, {"id": "c1", "pid": 0, "bundle": "/b", "cg": {"paths": ("/a", "/b"), 3: None}})
    data = st.load(str(tmp_path), "c1")
    assert data["version"] == st.STATE_VERSION and data["id"] == "c1"
    # JSON's data model, as a JSON file would give it back
    assert data["cg"] == {"paths": ["/a", "/b"], "3": None}
    assert os.listdir(d) == [st.STATE_FILE]


def test_state_file_is_one_line_of_json_any_json_reader_takes(tmp_path):
    """What cat and jq show: the saved fields, then the checksum member."""
    d = st.make_dir(str(tmp_path), "c1")
    st.save(d, {"id": "c1", "pid": 7, "bundle": "/b\u00e9", "cgroup": {"version": "v2", "path": "/x"}})
    with open(os.path.join(d, st.STATE_FILE), "rb") as f:
        raw = f.read()
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1
    doc = json.loads(raw)
    assert list(doc) == ["id", "pid", "bundle", "cgroup", "version", "crc32"]
    assert doc["bundle"] == "/b\u00e9" and doc["cgroup"] == {"version": "v2", "path": "/x"}
    assert len(doc["crc32"]) == 8 and int(doc["crc32"], 16) >= 0
    assert "crc32" not in st.load(str(tmp_path), "c1")


def _write_checksummed(path: str, body: bytes) -> None:
    """A file whose checksum is right for `body`, whatever `body` holds."""
    import binascii
    with open(path, "wb") as f:
        f.write(body[:-1] + b', "crc32": "%08x"}\n' % binascii.crc32(body[:-1]))


def test_state_from_newer_version_refused(tmp_path):
    d = st.make_dir(str(tmp_path), "c1")
    _write_checksummed(os.path.join(d, st.STATE_FILE), b'{"version": 99, "id": "c1"}')
    with pytest.raises(RuntimeFailure, match="newer"):
        st.load(str(tmp_path), "c1")


@pytest.mark.parametrize("content", [b"", b"\xff\x00garbage", b'[1, 2, "crc32": "00000000"}\n',
                                     b'{"version": 1, "id": "c1", "pid": 0, "bundle": "/b"}\n'])
def test_corrupt_state_file_is_one_error_naming_the_directory(tmp_path, content):
    d = st.make_dir(str(tmp_path), "c1")
    with open(os.path.join(d, st.STATE_FILE), "wb") as f:
        f.write(content)
    with pytest.raises(RuntimeFailure, match=f"state file in {d} is corrupt"):
        st.load(str(tmp_path), "c1")


def test_status_compares_start_time(tmp_path):
    """A pid that now belongs to another process (other start time) is stopped."""
    d = st.make_dir(str(tmp_path), "c1")
    me = os.getpid()
    data = {"id": "c1", "pid": me, "start_time": st.proc_start_time(me), "bundle": "/b", "_dir": d}
    assert st.status(data) == "running"
    open(os.path.join(d, st.START_SOCK), "w").close()
    assert st.status(data) == "created"
    data["start_time"] += 1
    assert st.status(data) == "stopped"
    assert st.oci_state(data)["pid"] == 0


def test_proc_start_time_of_gone_pid():
    assert st.proc_start_time(2**22 + 12345) is None


def test_first_record_survives_the_final_save(tmp_path):
    """create's first save is kept as FIRST_FILE: the final save replaces
    state.json by rename, and damage to it leaves the record readable."""
    d = st.make_dir(str(tmp_path), "c1")
    st.save_first(d, {"id": "c1", "pid": 0, "bundle": "/b", "cgroup": {"version": "v2", "path": "/x"}})
    st.save(d, {"id": "c1", "pid": 42, "bundle": "/b", "cgroup": {"version": "v2", "path": "/x"}})
    with open(os.path.join(d, st.STATE_FILE), "wb") as f:
        f.write(b"\x00garbage")
    assert st.read_first(d)["cgroup"] == {"version": "v2", "path": "/x"}
    assert st.read_first(d)["pid"] == 0
    # a second first save (rootless without cgroups) replaces the record
    st.save_first(d, {"id": "c1", "pid": 0, "bundle": "/b", "cgroup": None})
    assert st.read_first(d)["cgroup"] is None


@pytest.mark.parametrize("data,field", [
    ({"pid": 1, "bundle": "/b"}, "id"), ({"id": "c1", "pid": "1", "bundle": "/b"}, "pid"),
    ({"id": "c1", "pid": True, "bundle": "/b"}, "pid"), ({"id": "c1", "pid": 1}, "bundle"),
    ({"id": "c1", "pid": 1, "bundle": "/b", "cgroup": "v2"}, "cgroup"),
    ({"id": "c1", "pid": 1, "bundle": "/b", "start_time": "x"}, "start_time"),
])
def test_state_without_the_fields_verbs_use_is_damaged(tmp_path, data, field):
    from runtime import errors
    d = st.make_dir(str(tmp_path), "c1")
    st.save(d, data)
    with pytest.raises(errors.StateDamaged, match=f"corrupt \\({field} is missing or of the wrong type\\)"):
        st.load(str(tmp_path), "c1")


def test_state_file_gone_but_first_record_there_is_damaged_not_absent(tmp_path):
    from runtime import errors
    d = st.make_dir(str(tmp_path), "c1")
    st.save_first(d, {"id": "c1", "pid": 0, "bundle": "/b"})
    os.unlink(os.path.join(d, st.STATE_FILE))
    assert st.list_ids(str(tmp_path)) == ["c1"]
    with pytest.raises(errors.StateDamaged, match=r"corrupt \(missing\)"):
        st.load(str(tmp_path), "c1")
    os.unlink(os.path.join(d, st.FIRST_FILE))
    with pytest.raises(errors.ContainerNotFound):
        st.load(str(tmp_path), "c1")


def test_a_damaged_state_file_is_refused_before_it_is_parsed(tmp_path):
    """The checksum member: a flipped byte, an edit, a lost end or a
    checksum that is not hex are refused, as are JSON documents with a
    right checksum that are not one object ending with it."""
    from runtime import errors
    d = st.make_dir(str(tmp_path), "c1")
    st.save(d, {"id": "c1", "pid": 0, "bundle": "/b"})
    path = os.path.join(d, st.STATE_FILE)
    good = open(path, "rb").read()

    def refused(raw: bytes, why: str):
        open(path, "wb").write(raw)
        with pytest.raises(errors.StateDamaged, match=f"corrupt \\({why}\\)"):
            st.load(str(tmp_path), "c1")
    flipped = bytearray(good)
    flipped[len(flipped) // 3] ^= 0x20
    refused(bytes(flipped), "its checksum does not match")
    refused(good.replace(b'"pid": 0', b'"pid": 1'), "its checksum does not match")
    refused(good[:-11] + b"zzzzzzzz" + good[-3:], "its checksum does not match")
    refused(good[:len(good) // 2], "truncated")
    refused(good[:-1], "truncated")
    refused(b'{"version": 1, "id": "c1", "pid": 0, "bundle": "/b"}\n', "it has no checksum")
    for body in (b'{"id": "c1"} {"x": 1}', b'{"id": "c1", "id": {]}', b"[" + b"[" * 100000 + b"}"):
        _write_checksummed(path, body)
        with pytest.raises(errors.StateDamaged, match=r"corrupt \(not a state file\)"):
            st.load(str(tmp_path), "c1")
    open(path, "wb").write(good)
    assert st.load(str(tmp_path), "c1")["pid"] == 0
