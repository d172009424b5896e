"""Unit tests: how the managers dispatch linux.resources to hierarchies,
against synthetic trees (no root, no real cgroupfs)."""
import pytest

from runtime.cgroups.common import CgroupError
from runtime.cgroups.v1 import V1Manager
from runtime.cgroups.v2 import V2Manager


def _mk(d, *files):
    d.mkdir(parents=True, exist_ok=True)
    for f in files:
        (d / f).write_text("")
    return str(d)


@pytest.fixture
def hybrid(tmp_path):
    """memory + pids as v1 hierarchies; hugetlb only in the unified one."""
    mem = _mk(tmp_path / "memory" / "c", "memory.limit_in_bytes", "memory.soft_limit_in_bytes",
              "cgroup.procs")
    (tmp_path / "memory" / "c" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    pids = _mk(tmp_path / "pids" / "c", "pids.max", "cgroup.procs")
    uni = _mk(tmp_path / "unified" / "c", "hugetlb.2MB.max", "cgroup.procs", "cgroup.controllers")
    m = V1Manager({"memory": mem, "pids": pids},
                  {"memory": str(tmp_path / "memory"), "pids": str(tmp_path / "pids")},
                  unified=uni, unified_mount=str(tmp_path / "unified"), unified_controllers=["hugetlb"])
    return m, tmp_path


def test_hybrid_routes_v1_and_unified(hybrid):
    m, root = hybrid
    assert m.version == "hybrid"
    w = m.apply({"memory": {"limit": 4096, "reservation": 1024}, "pids": {"limit": 7},
                 "hugepageLimits": [{"pageSize": "2MB", "limit": 2097152}]})
    assert w == []
    assert (root / "memory/c/memory.limit_in_bytes").read_text() == "4096"
    assert (root / "memory/c/memory.soft_limit_in_bytes").read_text() == "1024"
    assert (root / "pids/c/pids.max").read_text() == "7"
    # the v2 file name (.max), in the unified dir
    assert (root / "unified/c/hugetlb.2MB.max").read_text() == "2097152"


def test_hybrid_missing_controller_is_named(hybrid):
    m, _ = hybrid
    with pytest.raises(CgroupError, match="cannot set cpu limits: the cpu cgroup controller is not mounted"):
        m.apply({"cpu": {"shares": 100}})
    with pytest.raises(CgroupError, match="net_cls cgroup controller is not mounted"):
        m.apply({"network": {"classID": 1}})
    # unset values for missing controllers are fine
    assert m.apply({"cpu": {}, "network": {}, "blockIO": {}, "rdma": {}}) == []


def test_hybrid_unified_keys(hybrid):
    m, root = hybrid
    m.apply({"unified": {"hugetlb.2MB.max": "4194304"}})
    assert (root / "unified/c/hugetlb.2MB.max").read_text() == "4194304"
    with pytest.raises(CgroupError, match="^invalid configuration: linux.resources.unified.*controller 'memory' is not in the unified hierarchy"):
        m.apply({"unified": {"memory.high": "1"}})


def test_pure_v1_refuses_unified(tmp_path):
    m = V1Manager({"pids": _mk(tmp_path / "pids" / "c", "pids.max")}, {"pids": str(tmp_path / "pids")})
    assert m.version == "v1"
    with pytest.raises(CgroupError, match="^invalid configuration: linux.resources.unified: cannot be used with cgroup v1"):
        m.apply({"unified": {"pids.max": "3"}})


def test_kernel_memory_warning_only(hybrid):
    """kmem and kmem.tcp limits are set where the kernel still has the files
    and are warnings (runc's words for kmem) where it does not."""
    m, root = hybrid
    w = m.apply({"memory": {"kernel": 1 << 20, "kernelTCP": 1 << 20}})
    kmem = root / "memory/c/memory.kmem.limit_in_bytes"
    tcp = root / "memory/c/memory.kmem.tcp.limit_in_bytes"
    if kmem.exists():
        assert kmem.read_text() == str(1 << 20)
    else:
        assert "Kernel memory settings are ignored and will be removed" in w
    if tcp.exists():
        assert tcp.read_text() == str(1 << 20)
    else:
        assert any("kernelTCP" in x for x in w)
    assert (root / "memory/c/memory.limit_in_bytes").read_text().startswith("92233")


def test_v2_manager_apply_full_set(tmp_path):
    files = ["cgroup.controllers", "memory.max", "memory.swap.max", "memory.low", "cpu.weight", "cpu.max",
             "cpuset.cpus", "cpuset.mems", "pids.max", "io.weight", "hugetlb.2MB.max"]
    d = _mk(tmp_path / "c", *files)
    m = V2Manager(d, str(tmp_path))
    w = m.apply({
        "memory": {"limit": 1 << 30, "swap": 2 << 30, "swappiness": 60},
        "cpu": {"shares": 2048, "quota": 150000, "period": 100000, "cpus": "1", "mems": "0"},
        "pids": {"limit": 100},
        "blockIO": {"weight": 1000},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 0}],
        "network": {"classID": 3},
    })
    got = {f: (tmp_path / "c" / f).read_text() for f in files if f != "cgroup.controllers"}
    assert got == {"memory.max": str(1 << 30), "memory.swap.max": str(1 << 30), "memory.low": "",
                   "cpu.weight": "79", "cpu.max": "150000 100000", "cpuset.cpus": "1", "cpuset.mems": "0",
                   "pids.max": "100", "io.weight": "10000", "hugetlb.2MB.max": "0"}
    assert len(w) == 2 and "swappiness" in w[0] and "network" in w[1]


def test_v2_state_and_paths(tmp_path):
    m = V2Manager(str(tmp_path / "c"), str(tmp_path))
    assert m.path() == m.path("memory") == str(tmp_path / "c")
    assert not m.exists()
    m.destroy()  # nothing there: no-op
    assert m.pids() == []
    assert m.is_frozen() is False


def _state(d, name, value):
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_text(value + "\n")


@pytest.mark.parametrize("where,state,refused", [
    ("self", "FROZEN", True), ("self", "FREEZING", True), ("self", "THAWED", False),
    ("parent", "FROZEN", True), ("parent", "THAWED", False), ("grandparent", "FROZEN", True),
])
def test_refuse_frozen_v1(tmp_path, where, state, refused):
    """v1: the freezer state of the cgroup, or of its closest existing
    ancestor (a new cgroup inherits it), which reports a frozen ancestor
    as FROZEN too."""
    from runtime.cgroups.common import refuse_frozen
    mount = tmp_path / "freezer"
    target = mount / "a" / "b" / "c"
    at = {"self": target, "parent": target.parent, "grandparent": target.parent.parent}[where]
    _state(at, "freezer.state", state)
    if refused:
        with pytest.raises(CgroupError, match=f"^container's cgroup unexpectedly frozen: {at}") as e:
            refuse_frozen(str(target), str(mount), False)
        assert e.value.frozen
    else:
        refuse_frozen(str(target), str(mount), False)


def test_refuse_frozen_v2_any_ancestor(tmp_path):
    """v2: cgroup.freeze of the cgroup or any ancestor below the mount; the
    mount's own (root) files are never read."""
    from runtime.cgroups.common import refuse_frozen
    mount = tmp_path / "cg"
    _state(mount, "cgroup.freeze", "1")  # not a real root file: ignored
    _state(mount / "a", "cgroup.freeze", "1")
    _state(mount / "a" / "b", "cgroup.freeze", "0")
    with pytest.raises(CgroupError, match=f"frozen: {mount / 'a'} \\(an ancestor of {mount / 'a' / 'b' / 'c'}\\)"):
        refuse_frozen(str(mount / "a" / "b" / "c"), str(mount), True)
    (mount / "a" / "cgroup.freeze").write_text("0\n")
    refuse_frozen(str(mount / "a" / "b" / "c"), str(mount), True)


def test_create_refuses_a_frozen_unified_cgroup_before_making_anything(tmp_path):
    """hybrid: a cgroup.freeze of the unified side freezes the process as
    surely as the v1 freezer; nothing is made in any hierarchy."""
    _state(tmp_path / "unified" / "pod", "cgroup.freeze", "1")
    (tmp_path / "memory").mkdir()
    m = V1Manager({"memory": str(tmp_path / "memory" / "pod" / "c")}, {"memory": str(tmp_path / "memory")},
                  unified=str(tmp_path / "unified" / "pod" / "c"), unified_mount=str(tmp_path / "unified"))
    with pytest.raises(CgroupError, match="unexpectedly frozen"):
        m.create()
    assert not (tmp_path / "memory" / "pod").exists() and not (tmp_path / "unified" / "pod" / "c").exists()


@pytest.mark.parametrize("version,name,value,thawed", [
    ("v1", "freezer.state", "THAWED\n", True), ("v1", "freezer.state", "FROZEN\n", False),
    ("v1", "freezer.state", "FREEZING\n", False), ("v1", None, None, False),
    ("v2", "cgroup.freeze", "0\n", True), ("v2", "cgroup.freeze", "1\n", False), ("v2", None, None, False),
])
def test_surely_thawed_reads_the_freezer_file_of_a_managers_state(tmp_path, version, name, value, thawed):
    """surely_thawed agrees with the manager's is_frozen where it answers
    True, and says False (ask the manager) whenever it cannot be sure."""
    from runtime import cgroups
    d = tmp_path / "c"
    d.mkdir()
    if name:
        (d / name).write_text(value)
    if version == "v2":
        (d / "cgroup.events").write_text("populated 1\nfrozen %s\n" % ("1" if value == "1\n" else "0"))
        m = V2Manager(str(d), str(tmp_path))
    else:
        m = V1Manager({"freezer": str(d)}, {"freezer": str(tmp_path)})
    state = m.to_state()
    assert cgroups.surely_thawed(state) is thawed
    if thawed:
        assert not m.is_frozen()
    if value in ("FROZEN\n", "1\n"):
        assert m.is_frozen()


def test_surely_thawed_without_a_freezer_hierarchy(tmp_path):
    """A v1 state with no freezer controller: no file to read, ask the manager."""
    from runtime import cgroups
    m = V1Manager({"pids": str(tmp_path)}, {"pids": str(tmp_path)})
    assert cgroups.surely_thawed(m.to_state()) is False
