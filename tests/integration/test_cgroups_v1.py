"""Integration tests (root): the v1 / hybrid manager on the real kernel.

Every test cgroup lives at a unique absolute path and is destroyed by the
fixture finalizer (which also asserts no directory is left anywhere);
every child is killed and reaped by the `children` finalizer.
"""
import errno
import os

import pytest

from runtime import cgroups
from runtime.cgroups.common import CgroupError, hugepage_sizes

from test_cgroups_helpers import children, make_manager_fixture, pid_cgroups  # noqa: F401

ROOT = "/sys/fs/cgroup"

pytestmark = [pytest.mark.root]

try:
    LAYOUT = cgroups.detect_layout(ROOT)
except Exception:  # no cgroups mounted at all
    LAYOUT = None

if LAYOUT not in ("v1", "hybrid"):
    pytest.skip(f"host cgroup layout is {LAYOUT}, not v1/hybrid", allow_module_level=True)

mgr = make_manager_fixture(ROOT)


def rd(m, ctrl, name):
    with open(os.path.join(m.path(ctrl), name)) as f:
        return f.read().strip()


def test_create_in_two_steps_as_create_does_around_the_fork(mgr):
    """create(cgroup2_only=True) makes only what a process is cloned into
    (the unified dir on hybrid); create_rest() the v1 directories, without
    repeating the checks (the cloned process would count as "not empty")."""
    m = mgr()
    assert m.create(cgroup2_only=True) == []
    assert not any(os.path.isdir(d) for d in dict.fromkeys(m.paths.values()))
    assert os.path.isdir(m.unified) if m.unified else m.cgroup2_dir() is None
    m.create_rest()
    for d in m._dirs():
        assert os.path.isdir(d)
    m.create_rest()  # idempotent


def test_create_apply_add_task_readback(mgr, children):
    m = mgr()
    assert m.create() == []
    for d in m._dirs():
        assert os.path.isdir(d)
    res = {"memory": {"limit": 64 << 20, "reservation": 32 << 20, "swappiness": 10},
           "pids": {"limit": 20},
           "cpu": {"shares": 512, "quota": 20000, "period": 100000, "cpus": "0", "mems": "0"}}
    if "memory" in m.paths and os.path.exists(os.path.join(m.path("memory"), "memory.memsw.limit_in_bytes")):
        res["memory"]["swap"] = 96 << 20
    assert m.apply(res) == []
    p = children.start("import time; time.sleep(60)")
    m.add_task(p.pid)
    assert rd(m, "memory", "memory.limit_in_bytes") == str(64 << 20)
    assert rd(m, "memory", "memory.soft_limit_in_bytes") == str(32 << 20)
    assert rd(m, "memory", "memory.swappiness") == "10"
    if "swap" in res["memory"]:
        assert rd(m, "memory", "memory.memsw.limit_in_bytes") == str(96 << 20)
    assert rd(m, "pids", "pids.max") == "20"
    assert rd(m, "cpu", "cpu.shares") == "512"
    assert rd(m, "cpu", "cpu.cfs_quota_us") == "20000"
    assert rd(m, "cpu", "cpu.cfs_period_us") == "100000"
    assert rd(m, "cpuset", "cpuset.cpus") == "0"
    assert m.pids() == [p.pid]
    cg = pid_cgroups(p.pid)
    rel = "/" + os.path.relpath(m.path("memory"), "/sys/fs/cgroup/memory")
    assert cg["memory"] == rel and cg["pids"] == rel and cg["devices"] == rel
    if m.unified:
        assert cg[""] == rel


def test_update_changes_values(mgr):
    m = mgr()
    m.create()
    m.apply({"memory": {"limit": 64 << 20}, "pids": {"limit": 10}})
    m.apply({"memory": {"limit": 128 << 20}})
    assert rd(m, "memory", "memory.limit_in_bytes") == str(128 << 20)
    assert rd(m, "pids", "pids.max") == "10"      # untouched by the update
    m.apply({"pids": {"limit": -1}})
    assert rd(m, "pids", "pids.max") == "max"
    if os.path.exists(os.path.join(m.path("cpu"), "cpu.cfs_burst_us")):
        m.apply({"cpu": {"quota": 20000, "period": 100000, "burst": 5000}})
        assert rd(m, "cpu", "cpu.cfs_burst_us") == "5000"
        # burst above the quota is refused by the kernel: clear error
        with pytest.raises(CgroupError, match=r"cpu.burst: write '50000' to .*cpu.cfs_burst_us"):
            m.apply({"cpu": {"burst": 50000}})
    if os.path.exists(os.path.join(m.path("cpu"), "cpu.idle")):
        m.apply({"cpu": {"idle": 1}})
        assert rd(m, "cpu", "cpu.idle") == "1"


def test_memory_hog_is_oom_killed(mgr, children):
    m = mgr()
    m.create()
    m.apply({"memory": {"limit": 48 << 20}})
    if os.path.exists(os.path.join(m.path("memory"), "memory.memsw.limit_in_bytes")):
        m.apply({"memory": {"limit": 48 << 20, "swap": 48 << 20}})
    watcher = m.oom_watcher()
    try:
        p = children.start("x = b'\\x01' * (256 << 20)\nprint('survived')")
        m.add_task(p.pid)
        out, _ = children.go(p)
        assert p.returncode == -9, (p.returncode, out)
        assert "survived" not in out
        assert watcher.wait(timeout=30) >= 1
    finally:
        watcher.close()
    assert m.oom_kill_count() >= 1
    # the peak reached the limit (failcnt is not bumped by every kernel on OOM)
    assert int(rd(m, "memory", "memory.max_usage_in_bytes")) == 48 << 20
    assert "oom_kill 1" in rd(m, "memory", "memory.oom_control")


def test_fork_stops_at_pids_max(mgr, children):
    m = mgr()
    m.create()
    m.apply({"pids": {"limit": 5}})
    p = children.start(
        "import time\n"
        "kids = []\n"
        "err = None\n"
        "try:\n"
        "    for _ in range(50):\n"
        "        pid = os.fork()\n"
        "        if pid == 0:\n"
        "            time.sleep(60); os._exit(0)\n"
        "        kids.append(pid)\n"
        "except OSError as e:\n"
        "    err = e.errno\n"
        "for k in kids: os.kill(k, 9)\n"
        "for k in kids: os.waitpid(k, 0)\n"
        "print(err, len(kids))\n")
    m.add_task(p.pid)
    out, err = children.go(p)
    code, n = out.split()
    assert int(code) == errno.EAGAIN, err
    assert int(n) == 4   # 5 tasks including the forking parent itself


def test_denied_device_cannot_be_opened(mgr, children):
    m = mgr()
    m.create()
    m.apply({"devices": [{"allow": False, "access": "rwm"},
                         {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"}]})
    assert rd(m, "devices", "devices.list") == "c 1:5 rwm"
    p = children.start(
        "res = []\n"
        "for dev in ('/dev/null', '/dev/zero'):\n"
        "    try:\n"
        "        os.close(os.open(dev, os.O_RDONLY)); res.append('ok')\n"
        "    except OSError as e:\n"
        "        res.append(str(e.errno))\n"
        "print(' '.join(res))\n")
    m.add_task(p.pid)
    out, err = children.go(p)
    assert out.split() == [str(errno.EPERM), "ok"], err


def test_deny_list_blocks_only_char_1_3(mgr, children):
    # deny-list mode: everything allowed except c 1:3 (/dev/null)
    m = mgr()
    m.create()
    m.apply({"devices": [{"allow": True, "access": "rwm"},
                         {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]})
    p = children.start(
        "res = []\n"
        "for dev in ('/dev/null', '/dev/zero'):\n"
        "    try:\n"
        "        os.close(os.open(dev, os.O_RDONLY)); res.append('ok')\n"
        "    except OSError as e:\n"
        "        res.append(str(e.errno))\n"
        "print(' '.join(res))\n")
    m.add_task(p.pid)
    out, err = children.go(p)
    assert out.split() == [str(errno.EPERM), "ok"], err


def test_device_rules_replaced_on_update(mgr):
    m = mgr()
    m.create()
    m.apply({"devices": [{"allow": False, "access": "rwm"},
                         {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                         {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"}]})
    m.apply({"devices": [{"allow": False, "access": "rwm"},
                         {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "r"}]})
    assert rd(m, "devices", "devices.list") == "c 1:3 r"
    # allow-all: back to the kernel default
    m.apply({"devices": [{"allow": True, "access": "rwm"}]})
    assert rd(m, "devices", "devices.list") == "a *:* rwm"


def test_freeze_thaw(mgr, children):
    m = mgr()
    m.create()
    p = children.start("import time; time.sleep(60)")
    m.add_task(p.pid)
    assert not m.is_frozen()
    m.freeze()
    assert m.is_frozen()
    assert rd(m, "freezer", "freezer.state") == "FROZEN"
    m.thaw()
    assert not m.is_frozen()
    assert rd(m, "freezer", "freezer.state") == "THAWED"


def test_create_refuses_frozen_and_warns_nonempty(mgr, children):
    m = mgr()
    m.create()
    p = children.start("import time; time.sleep(60)")
    m.add_task(p.pid)
    again = cgroups.manager_from_state(m.to_state())
    warns = again.create()
    assert len(warns) == 1 and "not empty: 1 process" in warns[0]
    m.freeze()
    with pytest.raises(CgroupError, match="unexpectedly frozen: .*" + os.path.basename(m.path("freezer"))):
        again.create()
    m.thaw()


def test_stats_plausible(mgr, children):
    m = mgr()
    m.create()
    m.apply({"pids": {"limit": 50}, "memory": {"limit": 256 << 20}})
    p = children.start(
        "buf = b'\\x01' * (16 << 20)\n"
        "s = 0\n"
        "for i in range(3000000): s += i\n"
        "print('ready', flush=True)\n"
        "sys.stdin.readline()\n")
    m.add_task(p.pid)
    p.stdin.write("go\n")
    p.stdin.flush()
    assert p.stdout.readline().strip() == "ready"
    st = m.stats()
    assert st["cpu"]["usage"]["total"] > 0
    assert len(st["cpu"]["usage"]["percpu"]) == os.cpu_count()
    assert st["cpu"]["usage"]["user"] + st["cpu"]["usage"]["kernel"] > 0
    assert st["memory"]["usage"]["usage"] >= 16 << 20
    assert st["memory"]["usage"]["limit"] == 256 << 20
    assert "rss" in st["memory"]["raw"] or "anon" in st["memory"]["raw"]
    assert st["pids"] == {"current": 1, "limit": 50}
    assert "hugetlb" in st and "blkio" in st
    import json
    json.dumps(st)  # serialisable for `events --stats`
    p.stdin.write("done\n")
    p.stdin.flush()


def test_destroy_kills_everything_and_removes_dirs(mgr, children):
    m = mgr()
    m.create()
    p = children.start("import time\nif os.fork() == 0: time.sleep(60)\nelse: time.sleep(60)\n")
    m.add_task(p.pid)
    p.stdin.write("go\n")
    p.stdin.flush()
    # wait for the grandchild to show up (pids.current counts both)
    from runtime.cgroups.common import wait_empty
    assert wait_empty(lambda: len(m.pids()) < 2, timeout=30)
    m.freeze()
    m.destroy()
    assert p.wait(timeout=30) == -9
    for d in m._dirs():
        assert not os.path.exists(d), d
    m.destroy()  # idempotent


def test_nested_subcgroups_are_removed(mgr):
    m = mgr()
    m.create()
    for d in m._dirs():
        os.makedirs(os.path.join(d, "sub", "deeper"))
    m.destroy()
    assert not any(os.path.exists(d) for d in m._dirs())


def test_missing_controller_and_files_are_clear_errors(mgr):
    m = mgr()
    m.create()
    if not os.path.exists(os.path.join(m.path("blkio"), "blkio.weight")) and \
            not os.path.exists(os.path.join(m.path("blkio"), "blkio.bfq.weight")):
        with pytest.raises(CgroupError, match=r"blockIO.weight: .*blkio.bfq.weight does not exist"):
            m.apply({"blockIO": {"weight": 500}})
    if "net_cls" not in m.paths:
        with pytest.raises(CgroupError, match="net_cls cgroup controller is not mounted"):
            m.apply({"network": {"classID": 1}})
    # unset values never touch missing files
    m.apply({"blockIO": {}, "network": {}, "memory": {}})


def test_unified_resources_on_v1(mgr):
    m = mgr()
    m.create()
    if not m.unified:
        with pytest.raises(CgroupError, match="cannot be used with cgroup v1"):
            m.apply({"unified": {"memory.high": "1"}})
    else:
        with pytest.raises(CgroupError, match="controller 'memory' is not in the unified hierarchy"):
            m.apply({"unified": {"memory.high": "1"}})


@pytest.mark.skipif("2MB" not in hugepage_sizes(), reason="no 2MB huge pages")
def test_hugetlb_limit(mgr):
    m = mgr()
    m.create()
    m.apply({"hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 20}]})
    if "hugetlb" in m.paths:
        assert rd(m, "hugetlb", "hugetlb.2MB.limit_in_bytes") == str(4 << 20)
    else:
        assert m.unified, "hugetlb is neither a v1 hierarchy nor in the unified one"
        with open(os.path.join(m.unified, "hugetlb.2MB.max")) as f:
            assert f.read().strip() == str(4 << 20)
        st = m.stats()
        assert "2MB" in st["hugetlb"] and st["hugetlb"]["2MB"]["failcnt"] == 0


def test_realtime_budget(mgr):
    m = mgr()
    m.create()
    if not os.path.exists(os.path.join(m.path("cpu"), "cpu.rt_runtime_us")):
        pytest.skip("kernel without RT group scheduling")
    m.apply({"cpu": {"realtimePeriod": 1000000, "realtimeRuntime": 1000}})
    assert rd(m, "cpu", "cpu.rt_runtime_us") == "1000"


def _in_child(fn) -> int:
    """Run fn() in a forked child; its exit status (0: fn returned True)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = 0 if fn() else 3
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_join_self_moves_the_calling_process_everywhere(mgr):
    """join_self (create's and exec's stage1): the v1 hierarchies through
    `tasks` ("0": this thread), the unified one through cgroup.procs."""
    from runtime.cgroups.common import own_cgroups
    m = mgr()
    m.create()

    def joined():
        m.join_self()
        own = own_cgroups()
        v1 = all(own.get(c) and d.endswith(own[c]) for c, d in m.paths.items())
        return v1 and (not m.unified or m.unified.endswith(own[""]))
    assert _in_child(joined) == 0
    assert m.pids() == []  # the child has exited; nothing else moved in


def test_join_self_after_a_clone_into_the_unified_dir(mgr):
    """On hybrid, a child cloned into the unified part (fork_into) joins only
    the v1 hierarchies; it is in all of them afterwards."""
    from runtime.cgroups.common import own_cgroups
    from runtime.spawn import fork_into
    m = mgr()
    m.create()
    if not m.cgroup2_dir():
        pytest.skip("pure v1: nothing to clone into")
    pid, cloned = fork_into(m.cgroup2_dir())
    if pid == 0:
        code = 1
        try:
            before = own_cgroups()[""]
            m.join_self(cloned)
            own = own_cgroups()
            ok = (m.unified.endswith(before) and
                  all(own.get(c) and d.endswith(own[c]) for c, d in m.paths.items()))
            code = 0 if ok else 3
        finally:
            os._exit(code)
    assert cloned is True
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


def test_join_self_names_the_cgroup_that_refused(mgr):
    m = mgr()
    m.create()
    d = m.paths["cpu"]
    os.rmdir(d)

    def join():
        try:
            m.join_self()
        except CgroupError as e:
            os.write(2, str(e).encode())
            return d in str(e) and "cannot add pid" in str(e)
        return False
    assert _in_child(join) == 0



def test_remove_if_empty_stops_at_a_cgroup_in_use(mgr, children):
    """delete's fast path: empty (or missing) dirs go with one rmdir each; a
    dir with a task is left alone (False), and destroy() then kills and
    removes as before."""
    from runtime.cgroups.common import remove_if_empty
    m = mgr()
    m.create()
    p = children.start("import time; time.sleep(60)")
    m.add_task(p.pid)
    assert remove_if_empty(m._dirs()) is False
    assert all(os.path.isdir(d) for d in m._dirs())
    m.destroy()
    assert p.wait(timeout=30) == -9
    assert not any(os.path.isdir(d) for d in m._dirs())
    m2 = mgr()
    m2.create()
    assert remove_if_empty(m2._dirs() + ["/sys/fs/cgroup/pids/pyrunc-test-never-made"]) is True
    assert not any(os.path.isdir(d) for d in m2._dirs())
