"""Unit tests: value conversions and cgroupsPath resolution (no root)."""
import pytest

from runtime import cgroups
from runtime.cgroups import common
from runtime.cgroups.common import CgroupError


@pytest.mark.parametrize("shares,weight", [
    (0, 0),          # unset stays unset
    (2, 1),          # v1 minimum -> v2 minimum
    (262144, 10000),  # v1 maximum -> v2 maximum
    (1024, 39),      # v1 default -> runc 1.1's linear value (not 100)
    (512, 20),
])
def test_shares_to_weight(shares, weight):
    assert common.shares_to_weight(shares) == weight


@pytest.mark.parametrize("blkio,io", [(0, 0), (10, 1), (1000, 10000), (500, 4950), (100, 910)])
def test_blkio_weight_to_io_weight(blkio, io):
    assert common.blkio_weight_to_io_weight(blkio) == io


@pytest.mark.parametrize("swap,mem,want", [
    (0, -1, -1),             # unlimited memory, swap unset -> swap unlimited too
    (-1, 100, -1),           # explicit unlimited swap
    (0, 100, 0),             # unset
    (300, 100, 200),         # memory+swap 300 with memory 100 -> 200 swap
    (100, 100, 0),           # same value -> no swap
])
def test_swap_to_v2(swap, mem, want):
    assert common.swap_to_v2(swap, mem) == want


@pytest.mark.parametrize("swap,mem,msg", [
    (300, 0, "without memory limit"),
    (50, 100, "should be >= memory limit"),
    (300, -5, "invalid memory value"),
])
def test_swap_to_v2_errors(swap, mem, msg):
    with pytest.raises(CgroupError, match=msg):
        common.swap_to_v2(swap, mem)


@pytest.mark.parametrize("quota,period,want", [
    (None, None, None),
    (50000, None, "50000 100000"),
    (50000, 20000, "50000 20000"),
    (-1, 20000, "max 20000"),
    (None, 30000, "max 30000"),
])
def test_cpu_max(quota, period, want):
    assert common.cpu_max(quota, period) == want


def test_num_to_v2():
    assert common.num_to_v2(0) == ""
    assert common.num_to_v2(None) == ""
    assert common.num_to_v2(-1) == "max"
    assert common.num_to_v2(4096) == "4096"


@pytest.mark.parametrize("inp,out", [
    ("/a/b", "/a/b"), ("/a/../../b", "/b"), ("a/b", "a/b"), ("a/../../b", "b"),
    ("../../etc", "etc"), ("", ""), ("/", "/"), ("//x//y/", "/x/y"),
])
def test_clean_path(inp, out):
    assert common.clean_path(inp) == out


def test_pagesize_name_and_hugepage_sizes(tmp_path):
    assert common.pagesize_name(2 * 1024 * 1024) == "2MB"
    assert common.pagesize_name(1 << 30) == "1GB"
    assert common.pagesize_name(64 * 1024) == "64KB"
    (tmp_path / "hugepages-2048kB").mkdir()
    (tmp_path / "hugepages-1048576kB").mkdir()
    (tmp_path / "other").mkdir()
    assert common.hugepage_sizes(str(tmp_path)) == ["1GB", "2MB"]


HYBRID_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""

COMOUNT_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 /docker/abc /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
"""

V2_MOUNTINFO = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"

OWN = {"cpu": "/", "cpuacct": "/", "memory": "/process_api/abc", "devices": "/",
       "name=systemd": "/", "": "/"}


def test_layout_detection():
    mi = common.parse_mountinfo
    assert cgroups._layout("/sys/fs/cgroup", mi(HYBRID_MOUNTINFO)) == "hybrid"
    assert cgroups._layout("/sys/fs/cgroup", mi(COMOUNT_MOUNTINFO)) == "v1"
    assert cgroups._layout("/sys/fs/cgroup", mi(V2_MOUNTINFO)) == "v2"
    with pytest.raises(CgroupError, match="no cgroup hierarchy mounted at /nowhere"):
        cgroups._layout("/nowhere", mi(V2_MOUNTINFO))


def test_detect_layout_reads_given_mountinfo(tmp_path):
    f = tmp_path / "mi"
    f.write_text(V2_MOUNTINFO)
    assert cgroups.detect_layout("/sys/fs/cgroup", mountinfo=str(f)) == "v2"
    f.write_text(HYBRID_MOUNTINFO)
    assert cgroups.detect_layout("/sys/fs/cgroup", mountinfo=str(f)) == "hybrid"


def test_resolve_absolute_hybrid():
    r = cgroups.resolve_paths("/ctr/x", "id", mounts=common.parse_mountinfo(HYBRID_MOUNTINFO), own=OWN)
    assert r["layout"] == "hybrid"
    assert r["paths"]["memory"] == "/sys/fs/cgroup/memory/ctr/x"
    assert r["paths"]["cpu"] == "/sys/fs/cgroup/cpu/ctr/x"
    assert r["paths"]["name=systemd"] == "/sys/fs/cgroup/systemd/ctr/x"
    assert r["unified"] == "/sys/fs/cgroup/unified/ctr/x"


def test_resolve_relative_is_under_own_cgroup_v1():
    # runc 1.1 fs driver: relative paths join the runtime's own cgroup of
    # each controller.
    r = cgroups.resolve_paths("ctr", "id", mounts=common.parse_mountinfo(HYBRID_MOUNTINFO), own=OWN)
    assert r["paths"]["memory"] == "/sys/fs/cgroup/memory/process_api/abc/ctr"
    assert r["paths"]["cpu"] == "/sys/fs/cgroup/cpu/ctr"


def test_resolve_default_is_container_id_relative():
    r = cgroups.resolve_paths(None, "myid", mounts=common.parse_mountinfo(HYBRID_MOUNTINFO), own=OWN)
    assert r["paths"]["memory"] == "/sys/fs/cgroup/memory/process_api/abc/myid"
    assert r["paths"]["devices"] == "/sys/fs/cgroup/devices/myid"


def test_resolve_dotdot_cannot_escape():
    r = cgroups.resolve_paths("../../../etc", "id", mounts=common.parse_mountinfo(HYBRID_MOUNTINFO), own=OWN)
    assert r["paths"]["devices"] == "/sys/fs/cgroup/devices/etc"
    r = cgroups.resolve_paths("/../../etc", "id", mounts=common.parse_mountinfo(HYBRID_MOUNTINFO), own=OWN)
    assert r["paths"]["devices"] == "/sys/fs/cgroup/devices/etc"


def test_resolve_comounted_and_nested_root():
    own = {"cpu": "/", "cpuacct": "/", "memory": "/docker/abc/inner"}
    r = cgroups.resolve_paths("c1", "id", mounts=common.parse_mountinfo(COMOUNT_MOUNTINFO), own=own)
    assert r["paths"]["cpu"] == r["paths"]["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct/c1"
    # The memory mount's root is /docker/abc: our cgroup is 'inner' in it.
    assert r["paths"]["memory"] == "/sys/fs/cgroup/memory/inner/c1"
    assert r["unified"] is None


def test_resolve_v2_relative_uses_parent_of_own():
    mounts = common.parse_mountinfo(V2_MOUNTINFO)
    r = cgroups.resolve_paths("ctr", "id", mounts=mounts, own={"": "/user.slice/session-1.scope"})
    assert r == {"layout": "v2", "path": "/sys/fs/cgroup/user.slice/ctr", "mount": "/sys/fs/cgroup"}
    r = cgroups.resolve_paths("/a/b", "id", mounts=mounts, own={"": "/x/y"})
    assert r["path"] == "/sys/fs/cgroup/a/b"


def test_root_path_refused():
    with pytest.raises(CgroupError, match="hierarchy root"):
        cgroups.resolve_paths("/", "id", mounts=common.parse_mountinfo(V2_MOUNTINFO), own={"": "/"})


def test_open_manager_systemd_without_systemd(monkeypatch):
    monkeypatch.setattr(cgroups, "_systemd_running", lambda: False)
    with pytest.raises(CgroupError, match="systemd is not running"):
        cgroups.open_manager(None, "x", systemd=True)


def test_manager_state_roundtrip():
    m = cgroups.open_manager("/a", "x", mounts=common.parse_mountinfo(V2_MOUNTINFO), own={"": "/"})
    st = m.to_state()
    import json
    m2 = cgroups.manager_from_state(json.loads(json.dumps(st)))
    assert type(m2) is type(m) and m2.to_state() == st
    m = cgroups.open_manager("/a", "x", mounts=common.parse_mountinfo(HYBRID_MOUNTINFO), own=OWN)
    st = m.to_state()
    assert st["version"] == "hybrid"
    assert cgroups.manager_from_state(json.loads(json.dumps(st))).to_state() == st
    with pytest.raises(CgroupError, match="unknown cgroup manager state"):
        cgroups.manager_from_state({"version": "v9"})


def test_features_shape():
    f = cgroups.features()
    assert set(f) == {"v1", "v2", "systemd", "systemdUser", "rdma"}
    assert f["v1"] is True and f["v2"] is True and f["systemd"] is False


def test_features_match_spec_schema():
    import json
    import pathlib

    import jsonschema
    spec = pathlib.Path(__file__).resolve().parents[2] / "specs" / "features-schema.json"
    schema = json.loads(spec.read_text())

    def find(o):
        if isinstance(o, dict):
            if "cgroup" in o.get("properties", {}):
                return o["properties"]["cgroup"]
            for v in o.values():
                r = find(v)
                if r:
                    return r
        return None
    sub = dict(find(schema), **{"$defs": schema.get("$defs", {})})
    jsonschema.validate(cgroups.features(), sub)


def test_parse_proc_cgroup():
    got = common.parse_proc_cgroup("4:memory:/a\n2:cpu,cpuacct:/b\n1:name=systemd:/c\n0::/d\n")
    assert got == {"memory": "/a", "cpu": "/b", "cpuacct": "/b", "name=systemd": "/c", "": "/d"}


def test_import_is_light():
    import subprocess
    import sys
    code = ("import sys; import runtime.cgroups as c; "
            "bad=[m for m in ('runtime.cgroups.v1','runtime.cgroups.v2','runtime.cgroups.ebpf','ctypes','psutil') "
            "if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
