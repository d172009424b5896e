"""Container state: ids, atomic saves, and status robust to pid reuse."""
import marshal
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
    with open(os.path.join(d, st.STATE_FILE), "rb") as f:
        assert marshal.loads(f.read())["bundle"] == "/b"


def test_state_from_newer_version_refused(tmp_path):
    d = st.make_dir(str(tmp_path), "c1")
    with open(os.path.join(d, st.STATE_FILE), "wb") as f:
        f.write(marshal.dumps({"version": 99, "id": "c1"}))
    with pytest.raises(RuntimeFailure, match="newer"):
        st.load(str(tmp_path), "c1")


def test_state_json_of_an_older_pyrunc_is_still_read(tmp_path):
    d = st.make_dir(str(tmp_path), "c1")
    with open(os.path.join(d, "state.json"), "w") as f:
        f.write('{"version": 1, "id": "c1", "pid": 0, "bundle": "/b"}')
    assert st.load(str(tmp_path), "c1")["bundle"] == "/b"
    assert st.list_ids(str(tmp_path)) == ["c1"]


@pytest.mark.parametrize("content", [b"", b"\xff\x00garbage", marshal.dumps([1, 2])])
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
    state.marshal by rename, and damage to it leaves the record readable."""
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
    with open(os.path.join(d, st.STATE_FILE), "wb") as f:
        f.write(marshal.dumps(data))
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
    """save() ends the file with a checksum: a flipped byte is refused, and
    garbage that would make marshal allocate gigabytes (a tuple claiming
    2**31-1 items) is refused at once, with or without a dict's first byte
    (which sends it down the path for an older pyrunc's files)."""
    import time
    from runtime import errors
    d = st.make_dir(str(tmp_path), "c1")
    st.save(d, {"id": "c1", "pid": 0, "bundle": "/b"})
    path = os.path.join(d, st.STATE_FILE)
    raw = bytearray(open(path, "rb").read())
    raw[len(raw) // 3] ^= 0x20
    open(path, "wb").write(bytes(raw))
    with pytest.raises(errors.StateDamaged, match=r"corrupt \(its checksum does not match\)"):
        st.load(str(tmp_path), "c1")
    for garbage in (b"(\xff\xff\xff\x7f" + b"N" * 64, b"{" + b"(\xff\xff\xff\x7f" + b"N" * 64):
        open(path, "wb").write(garbage)
        t = time.monotonic()
        with pytest.raises(errors.StateDamaged, match=r"corrupt \((not a state file|truncated)\)"):
            st.load(str(tmp_path), "c1")
        assert time.monotonic() - t < 0.5


def test_state_file_without_the_trailer_is_still_read(tmp_path):
    """An older pyrunc's file (no trailer) of a container still running."""
    d = st.make_dir(str(tmp_path), "c1")
    with open(os.path.join(d, st.STATE_FILE), "wb") as f:
        f.write(marshal.dumps({"version": 1, "id": "c1", "pid": 0, "bundle": "/b"}, 4))
    assert st.load(str(tmp_path), "c1")["bundle"] == "/b"
