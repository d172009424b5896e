"""Integration tests (root): the v2 manager on a real cgroup2 hierarchy.

On a pure-v2 host that is /sys/fs/cgroup; on a hybrid host the unified
hierarchy (/sys/fs/cgroup/unified), which has few or no controllers but
supports mkdir, cgroup.procs, cgroup.freeze and BPF device programs.
"""
import errno
import os

import pytest

from runtime import cgroups
from runtime.cgroups import ebpf
from runtime.cgroups.common import CgroupError, hugepage_sizes

from test_cgroups_helpers import children, make_manager_fixture, pid_cgroups  # noqa: F401

pytestmark = [pytest.mark.root]


def _find_root():
    for r in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
        try:
            if cgroups.detect_layout(r) == "v2":
                return r
        except CgroupError:
            pass
    return None


ROOT = _find_root()
if ROOT is None:
    pytest.skip("no cgroup2 hierarchy mounted", allow_module_level=True)

mgr = make_manager_fixture(ROOT)

OPEN_DEVS = (
    "res = []\n"
    "for dev in ('/dev/null', '/dev/zero'):\n"
    "    try:\n"
    "        os.close(os.open(dev, os.O_RDONLY)); res.append('ok')\n"
    "    except OSError as e:\n"
    "        res.append(str(e.errno))\n"
    "print(' '.join(res))\n")


def controllers():
    with open(os.path.join(ROOT, "cgroup.controllers")) as f:
        return f.read().split()


def test_cgroup2_only_create_is_the_whole_create(mgr):
    # On v2 everything is cgroup2: what a process is cloned into is all there is.
    m = mgr()
    assert m.create(cgroup2_only=True) == []
    assert os.path.isdir(m.path()) and m.cgroup2_dir() == m.path()
    m.create_rest()
    assert os.path.isdir(m.path())


def test_create_add_task_pids_destroy(mgr, children):
    m = mgr()
    assert m.create() == []
    assert os.path.isdir(m.path())
    p = children.start("import time; time.sleep(60)")
    m.add_task(p.pid)
    assert m.pids() == [p.pid]
    assert pid_cgroups(p.pid)[""] == "/" + os.path.relpath(m.path(), ROOT)
    m.destroy()
    assert p.wait(timeout=30) == -9
    assert not os.path.exists(m.path())
    m.destroy()  # idempotent


def test_bpf_device_filter_enforced_and_replaced(mgr, children):
    m = mgr()
    m.create()
    m.apply({"devices": [{"allow": False, "access": "rwm"},
                         {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"}]})
    fd = os.open(m.path(), os.O_RDONLY | os.O_DIRECTORY)
    try:
        first = ebpf.prog_query(fd)
        assert len(first) == 1
        p = children.start(OPEN_DEVS)
        m.add_task(p.pid)
        out, err = children.go(p)
        assert out.split() == [str(errno.EPERM), "ok"], err

        # update: now /dev/null allowed, /dev/zero denied; the old program
        # must be gone (exactly one attached, a different one).
        m.apply({"devices": [{"allow": False, "access": "rwm"},
                             {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]})
        second = ebpf.prog_query(fd)
        assert len(second) == 1 and second != first
        p2 = children.start(OPEN_DEVS)
        m.add_task(p2.pid)
        out, err = children.go(p2)
        assert out.split() == ["ok", str(errno.EPERM)], err
    finally:
        os.close(fd)


def test_bpf_partial_access_rule(mgr, children):
    m = mgr()
    m.create()
    # /dev/null read-only: opening O_RDONLY works, O_WRONLY is refused
    m.apply({"devices": [{"allow": False, "access": "rwm"},
                         {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "r"}]})
    p = children.start(
        "res = []\n"
        "for fl in (os.O_RDONLY, os.O_WRONLY):\n"
        "    try:\n"
        "        os.close(os.open('/dev/null', fl)); res.append('ok')\n"
        "    except OSError as e:\n"
        "        res.append(str(e.errno))\n"
        "print(' '.join(res))\n")
    m.add_task(p.pid)
    out, err = children.go(p)
    assert out.split() == ["ok", str(errno.EPERM)], err


def test_bpf_deny_list_denies_any_overlap(mgr, children):
    """In a deny-list, an open asking for any denied access is refused, as
    the v1 controller does: /dev/null with "w" denied opens read-only, not
    read-write (which asks for "w" too)."""
    m = mgr()
    m.create()
    m.apply({"devices": [{"allow": True, "access": "rwm"},
                         {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "w"}]})
    p = children.start(
        "res = []\n"
        "for fl in (os.O_RDONLY, os.O_WRONLY, os.O_RDWR):\n"
        "    try:\n"
        "        os.close(os.open('/dev/null', fl)); res.append('ok')\n"
        "    except OSError as e:\n"
        "        res.append(str(e.errno))\n"
        "print(' '.join(res))\n")
    m.add_task(p.pid)
    out, err = children.go(p)
    assert out.split() == ["ok", str(errno.EPERM), str(errno.EPERM)], err


def test_freeze_thaw(mgr, children):
    m = mgr()
    m.create()
    p = children.start("import time; time.sleep(60)")
    m.add_task(p.pid)
    assert not m.is_frozen()
    m.freeze()
    assert m.is_frozen()
    with open(os.path.join(m.path(), "cgroup.events")) as f:
        assert "frozen 1" in f.read()
    m.thaw()
    assert not m.is_frozen()
    # destroy of a frozen cgroup works too
    m.freeze()
    m.destroy()
    assert p.wait(timeout=30) == -9


def test_create_refuses_frozen(mgr, children):
    m = mgr()
    m.create()
    p = children.start("import time; time.sleep(60)")
    m.add_task(p.pid)
    other = cgroups.manager_from_state(m.to_state())
    assert "not empty" in other.create()[0]
    m.freeze()
    with pytest.raises(CgroupError, match="unexpectedly frozen: " + m.path()):
        other.create()
    m.thaw()


def test_stats_and_pids_without_controllers(mgr, children):
    m = mgr()
    m.create()
    p = children.start(
        "s = 0\n"
        "for i in range(3000000): s += i\n"
        "print('ready', flush=True)\n"
        "sys.stdin.readline()\n")
    m.add_task(p.pid)
    p.stdin.write("go\n")
    p.stdin.flush()
    assert p.stdout.readline().strip() == "ready"
    st = m.stats()
    assert st["cpu"]["usage"]["total"] > 0     # cpu.stat exists without the cpu controller
    assert st["pids"]["current"] == 1
    p.stdin.write("done\n")
    p.stdin.flush()


@pytest.mark.skipif("2MB" not in hugepage_sizes(), reason="no 2MB huge pages")
def test_hugetlb(mgr):
    if "hugetlb" not in controllers():
        pytest.skip("no hugetlb controller in this cgroup2 hierarchy")
    m = mgr()
    m.create()
    m.apply({"hugepageLimits": [{"pageSize": "2MB", "limit": 6 << 20}]})
    with open(os.path.join(m.path(), "hugetlb.2MB.max")) as f:
        assert f.read().strip() == str(6 << 20)
    rsvd = os.path.join(m.path(), "hugetlb.2MB.rsvd.max")
    if os.path.exists(rsvd):
        with open(rsvd) as f:
            assert f.read().strip() == str(6 << 20)
    assert m.stats()["hugetlb"]["2MB"]["failcnt"] == 0


def test_missing_controller_is_clear_error(mgr):
    m = mgr()
    m.create()
    if "pids" not in controllers():
        with pytest.raises(CgroupError, match=r"pids.limit: .*pids.max does not exist"):
            m.apply({"pids": {"limit": 5}})
    if "memory" not in controllers():
        with pytest.raises(CgroupError, match="memory.events does not exist"):
            m.oom_watcher()
        with pytest.raises(CgroupError, match=r"unified\['memory.high'\]: controller 'memory' not available"):
            m.apply({"unified": {"memory.high": "1000"}})


@pytest.mark.parametrize("rules", [
    [],
    [{"allow": True, "access": "rwm"}],
    [{"allow": True, "access": "rwm"}, {"allow": False, "type": "b", "major": 8, "access": "w"}],
    [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 4, "minor": 64, "access": "rw"},
     {"allow": True, "type": "b", "major": 7, "access": "r"}],
], ids=["deny-all", "allow-all", "deny-list", "allow-list"])
def test_verifier_accepts_generated_programs(rules):
    from runtime.cgroups.devicefilter import device_filter
    from runtime.cgroups.devices import with_runc_defaults
    for lst in (rules, with_runc_defaults(rules)):
        fd = ebpf.prog_load(device_filter(lst))
        try:
            assert ebpf.prog_id(fd) > 0
        finally:
            os.close(fd)


def test_runc_default_rules_enforced(mgr, children):
    from runtime.cgroups.devices import with_runc_defaults
    m = mgr()
    m.create()
    m.apply({"devices": with_runc_defaults([{"allow": False, "access": "rwm"}])})
    p = children.start(
        "res = []\n"
        "for dev in ('/dev/null', '/dev/urandom', '/dev/kmsg'):\n"
        "    try:\n"
        "        os.close(os.open(dev, os.O_RDONLY)); res.append('ok')\n"
        "    except OSError as e:\n"
        "        res.append(str(e.errno))\n"
        "print(' '.join(res))\n")
    m.add_task(p.pid)
    out, err = children.go(p)
    assert out.split() == ["ok", "ok", str(errno.EPERM)], err


def test_bpf_load_error_is_oserror_with_errno():
    # A program that falls off its end is rejected by the verifier: the
    # wrapper must raise OSError carrying the errno, naming the bpf command
    # and quoting the verifier log.
    from runtime.cgroups.devicefilter import ALU_MOV_K, insn
    with pytest.raises(OSError) as ei:
        ebpf.prog_load(insn(ALU_MOV_K, 0, 0, 0, 1))
    assert ei.value.errno == errno.EINVAL
    assert "BPF_PROG_LOAD" in str(ei.value) and "verifier" in str(ei.value)
