"""Unit tests: v2 (and v1) resource writers against a synthetic cgroupfs
tree in tmp_path. Each knob file exists empty, as in cgroupfs; after a
writer runs we assert the exact content written (single-write knobs) and
that untouched knobs stay empty."""
import pytest

from runtime.cgroups import v1_writers as w1
from runtime.cgroups import v2_writers as w2
from runtime.cgroups.base import empty_stats, runc_shape
from runtime.cgroups.common import CgroupError

V2_FILES = ["cgroup.controllers", "cgroup.procs", "cgroup.freeze", "cgroup.events",
            "memory.max", "memory.low", "memory.swap.max", "memory.current",
            "cpu.weight", "cpu.max", "cpu.max.burst", "cpu.idle", "cpuset.cpus", "cpuset.mems",
            "pids.max", "io.weight", "io.max", "hugetlb.2MB.max", "hugetlb.2MB.rsvd.max",
            "hugetlb.1GB.max", "hugetlb.1GB.rsvd.max", "rdma.max"]


@pytest.fixture
def v2dir(tmp_path):
    d = tmp_path / "ctr"
    d.mkdir()
    for f in V2_FILES:
        (d / f).write_text("")
    (d / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids rdma\n")
    return d


def content(d, name):
    return (d / name).read_text()


def untouched(d, *names):
    return all((d / n).read_text() == "" for n in names)


def test_v2_memory_limit_swap_reservation(v2dir):
    w = w2.set_memory(str(v2dir), {"memory": {"limit": 100 << 20, "swap": 300 << 20,
                                              "reservation": 50 << 20}})
    assert w == []
    assert content(v2dir, "memory.max") == str(100 << 20)
    assert content(v2dir, "memory.swap.max") == str(200 << 20)   # swap only, not memory+swap
    assert content(v2dir, "memory.low") == str(50 << 20)


def test_v2_memory_swap_equal_limit_disables_swap(v2dir):
    w2.set_memory(str(v2dir), {"memory": {"limit": 1000, "swap": 1000}})
    assert content(v2dir, "memory.swap.max") == "0"


def test_v2_memory_unlimited(v2dir):
    w2.set_memory(str(v2dir), {"memory": {"limit": -1}})
    assert content(v2dir, "memory.max") == "max"
    assert content(v2dir, "memory.swap.max") == "max"


def test_v2_memory_unset_writes_nothing_and_warns(v2dir):
    w = w2.set_memory(str(v2dir), {"memory": {"kernel": 1 << 20, "swappiness": 10,
                                              "disableOOMKiller": True}})
    assert untouched(v2dir, "memory.max", "memory.swap.max", "memory.low")
    assert any("Kernel memory" in x for x in w)
    assert any("swappiness" in x for x in w) and any("disableOOMKiller" in x for x in w)


def test_v2_memory_check_before_update(v2dir):
    (v2dir / "memory.current").write_text("5000\n")
    with pytest.raises(CgroupError, match="rejecting memory limit 4096 <= usage 5000"):
        w2.set_memory(str(v2dir), {"memory": {"limit": 4096, "checkBeforeUpdate": True}})
    assert untouched(v2dir, "memory.max")
    w2.set_memory(str(v2dir), {"memory": {"limit": 8192, "checkBeforeUpdate": True}})
    assert content(v2dir, "memory.max") == "8192"


def test_v2_cpu(v2dir):
    w2.set_cpu(str(v2dir), {"cpu": {"shares": 1024, "quota": 50000, "period": 200000, "burst": 1000,
                                    "idle": 0}})
    assert content(v2dir, "cpu.weight") == "39"
    assert content(v2dir, "cpu.max") == "50000 200000"
    assert content(v2dir, "cpu.max.burst") == "1000"
    assert content(v2dir, "cpu.idle") == "0"


def test_v2_cpu_period_only_and_unset(v2dir):
    w2.set_cpu(str(v2dir), {"cpu": {"period": 50000}})
    assert content(v2dir, "cpu.max") == "max 50000"
    assert untouched(v2dir, "cpu.weight", "cpu.max.burst", "cpu.idle")


def test_v2_cpu_realtime_refused(v2dir):
    with pytest.raises(CgroupError, match="realtimeRuntime: realtime scheduling limits are not supported"):
        w2.set_cpu(str(v2dir), {"cpu": {"realtimeRuntime": 1000}})


def test_v2_cpuset_and_pids(v2dir):
    w2.set_cpuset(str(v2dir), {"cpu": {"cpus": "0-1", "mems": "0"}})
    assert content(v2dir, "cpuset.cpus") == "0-1" and content(v2dir, "cpuset.mems") == "0"
    w2.set_pids(str(v2dir), {"pids": {"limit": 42}})
    assert content(v2dir, "pids.max") == "42"
    w2.set_pids(str(v2dir), {"pids": {"limit": -1}})
    assert content(v2dir, "pids.max") == "max"


def test_v2_pids_zero_is_unset(v2dir):
    w2.set_pids(str(v2dir), {"pids": {"limit": 0}})
    assert untouched(v2dir, "pids.max")


def test_v2_io_weight_and_throttle(v2dir):
    w2.set_io(str(v2dir), {"blockIO": {"weight": 500,
                                       "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 77}]}})
    assert content(v2dir, "io.weight") == "4950"
    assert content(v2dir, "io.max") == "8:0 wiops=77"
    w2.set_io(str(v2dir), {"blockIO": {"throttleReadBpsDevice": [{"major": 8, "minor": 16, "rate": 1048576}]}})
    assert content(v2dir, "io.max") == "8:16 rbps=1048576"


def test_v2_io_bfq_weight_is_unconverted(v2dir):
    (v2dir / "io.bfq.weight").write_text("default 100\n")
    w2.set_io(str(v2dir), {"blockIO": {"weight": 500}})
    assert content(v2dir, "io.bfq.weight") == "500"
    assert untouched(v2dir, "io.weight")


def test_v2_io_weight_device_needs_bfq(v2dir):
    with pytest.raises(CgroupError, match="weightDevice"):
        w2.set_io(str(v2dir), {"blockIO": {"weightDevice": [{"major": 8, "minor": 0, "weight": 10}]}})


def test_v2_io_missing_file_is_clear_error(v2dir):
    (v2dir / "io.weight").unlink()
    with pytest.raises(CgroupError, match=r"blockIO.weight: .*io.weight does not exist"):
        w2.set_io(str(v2dir), {"blockIO": {"weight": 500}})


def test_v2_hugetlb_with_rsvd(v2dir):
    w2.set_hugetlb(str(v2dir), {"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]})
    assert content(v2dir, "hugetlb.2MB.max") == "4194304"
    assert content(v2dir, "hugetlb.2MB.rsvd.max") == "4194304"
    assert untouched(v2dir, "hugetlb.1GB.max")


def test_v2_hugetlb_without_rsvd_files(v2dir):
    (v2dir / "hugetlb.2MB.rsvd.max").unlink()
    w2.set_hugetlb(str(v2dir), {"hugepageLimits": [{"pageSize": "2MB", "limit": 0}]})
    assert content(v2dir, "hugetlb.2MB.max") == "0"


def test_v2_hugetlb_unknown_size(v2dir):
    with pytest.raises(CgroupError, match=r"hugepageLimits\[0\].*hugetlb.64KB.max does not exist"):
        w2.set_hugetlb(str(v2dir), {"hugepageLimits": [{"pageSize": "64KB", "limit": 0}]})


def test_v2_rdma(v2dir):
    w2.set_rdma(str(v2dir), {"rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}}})
    assert content(v2dir, "rdma.max") == "mlx5_1 hca_handle=3 hca_object=10000"
    w2.set_rdma(str(v2dir), {"rdma": {"mlx4_0": {"hcaObjects": 7}}})
    assert content(v2dir, "rdma.max") == "mlx4_0 hca_object=7"


def test_v2_unified(v2dir):
    # absent knob: open(O_WRONLY) without O_CREAT fails with a clear error
    with pytest.raises(CgroupError, match=r"unified\['memory.high'\].*memory.high does not exist"):
        w2.set_unified(str(v2dir), {"unified": {"memory.high": "1000000"}})
    (v2dir / "memory.high").write_text("")
    w2.set_unified(str(v2dir), {"unified": {"memory.high": "1000000"}})
    assert content(v2dir, "memory.high") == "1000000"
    with pytest.raises(CgroupError, match="no slashes"):
        w2.set_unified(str(v2dir), {"unified": {"../x": "1"}})
    with pytest.raises(CgroupError, match="controller 'net' not available"):
        w2.set_unified(str(v2dir), {"unified": {"net.foo": "1"}})


def test_v2_network_warns(v2dir):
    assert w2.set_network(str(v2dir), {"network": {"classID": 5}})
    assert w2.set_network(str(v2dir), {}) == []


def test_v2_stats_from_synthetic_tree(v2dir):
    (v2dir / "cpu.stat").write_text("usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n"
                                     "nr_periods 4\nnr_throttled 1\nthrottled_usec 7\n")
    (v2dir / "memory.stat").write_text("anon 4096\nfile 8192\n")
    (v2dir / "memory.current").write_text("12288\n")
    (v2dir / "memory.max").write_text("max\n")
    (v2dir / "memory.swap.current").write_text("0\n")
    (v2dir / "memory.swap.max").write_text("max\n")
    (v2dir / "pids.current").write_text("3\n")
    (v2dir / "pids.max").write_text("10\n")
    (v2dir / "io.stat").write_text("8:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0 dios=0\n")
    st = empty_stats()
    w2.stat_cpu(str(v2dir), st)
    w2.stat_memory(str(v2dir), st)
    w2.stat_pids(str(v2dir), st)
    w2.stat_io(str(v2dir), st)
    st = runc_shape(st)
    assert st["cpu"]["usage"] == {"total": 1500000, "kernel": 500000, "user": 1000000}
    assert st["cpu"]["throttling"] == {"periods": 4, "throttledPeriods": 1, "throttledTime": 7000}
    assert st["memory"]["cache"] == 8192
    assert st["memory"]["usage"] == {"usage": 12288, "limit": (1 << 64) - 1, "failcnt": 0}
    assert st["memory"]["swap"]["usage"] == 12288      # memory+swap, as runc reports
    assert st["pids"] == {"current": 3, "limit": 10}
    assert {"major": 8, "op": "Read", "value": 100} in st["blkio"]["ioServiceBytesRecursive"]
    assert {"major": 8, "op": "Write", "value": 2} in st["blkio"]["ioServicedRecursive"]


# ------------------------------------------------------------------- v1

V1_FILES = ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.soft_limit_in_bytes",
            "memory.swappiness", "memory.oom_control", "cpu.shares", "cpu.cfs_quota_us",
            "cpu.cfs_period_us", "cpu.cfs_burst_us", "cpu.rt_runtime_us", "cpu.rt_period_us", "cpu.idle",
            "pids.max", "blkio.throttle.read_bps_device", "blkio.weight", "blkio.leaf_weight",
            "net_cls.classid", "net_prio.ifpriomap", "hugetlb.2MB.limit_in_bytes"]


@pytest.fixture
def v1dir(tmp_path):
    d = tmp_path / "v1"
    d.mkdir()
    for f in V1_FILES:
        (d / f).write_text("")
    return d


def test_v1_memory_memsw_is_memory_plus_swap(v1dir):
    (v1dir / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    w1.set_memory(str(v1dir), {"memory": {"limit": 1000, "swap": 3000, "reservation": 500,
                                          "swappiness": 0, "disableOOMKiller": True}})
    assert content(v1dir, "memory.limit_in_bytes") == "1000"
    assert content(v1dir, "memory.memsw.limit_in_bytes") == "3000"
    assert content(v1dir, "memory.soft_limit_in_bytes") == "500"
    assert content(v1dir, "memory.swappiness") == "0"
    assert content(v1dir, "memory.oom_control") == "1"


def test_v1_memory_swappiness_range(v1dir):
    with pytest.raises(CgroupError, match="swappiness: invalid value 101"):
        w1.set_memory(str(v1dir), {"memory": {"swappiness": 101}})


def test_v1_memory_unlimited_lifts_memsw(v1dir):
    (v1dir / "memory.limit_in_bytes").write_text("1000\n")
    w1.set_memory(str(v1dir), {"memory": {"limit": -1}})
    assert content(v1dir, "memory.memsw.limit_in_bytes") == "-1"
    assert content(v1dir, "memory.limit_in_bytes") == "-1"


def test_v1_cpu(v1dir):
    (v1dir / "cpu.shares").write_text("512\n")   # what the kernel would echo back
    w1.set_cpu(str(v1dir), {"cpu": {"shares": 512, "quota": 25000, "period": 50000,
                                    "realtimeRuntime": 1000, "realtimePeriod": 10000, "burst": 5, "idle": 1}})
    # the synthetic file keeps the last write; the kernel would have 512 too
    assert content(v1dir, "cpu.shares") == "512"
    assert content(v1dir, "cpu.cfs_quota_us") == "25000"
    assert content(v1dir, "cpu.cfs_period_us") == "50000"
    assert content(v1dir, "cpu.cfs_burst_us") == "5"
    assert content(v1dir, "cpu.rt_runtime_us") == "1000"
    assert content(v1dir, "cpu.rt_period_us") == "10000"
    assert content(v1dir, "cpu.idle") == "1"


def test_v1_blkio_and_missing_weight_file(v1dir):
    w1.set_blkio(str(v1dir), {"blockIO": {"weight": 300, "leafWeight": 200,
                                          "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1024}]}})
    assert content(v1dir, "blkio.weight") == "300"
    assert content(v1dir, "blkio.leaf_weight") == "200"
    assert content(v1dir, "blkio.throttle.read_bps_device") == "8:0 1024"
    (v1dir / "blkio.weight").unlink()
    # Like this machine: neither CFQ nor BFQ weight knobs -> clear error
    # naming the BFQ file runc falls back to.
    with pytest.raises(CgroupError, match=r"blockIO.weight: .*blkio.bfq.weight does not exist"):
        w1.set_blkio(str(v1dir), {"blockIO": {"weight": 300}})


def test_v1_pids_net_hugetlb(v1dir):
    w1.set_pids(str(v1dir), {"pids": {"limit": -1}})
    assert content(v1dir, "pids.max") == "max"
    w1.set_net_cls(str(v1dir), {"network": {"classID": 0x100001}})
    assert content(v1dir, "net_cls.classid") == str(0x100001)
    w1.set_net_prio(str(v1dir), {"network": {"priorities": [{"name": "eth0", "priority": 5}]}})
    assert content(v1dir, "net_prio.ifpriomap") == "eth0 5"
    w1.set_hugetlb(str(v1dir), {"hugepageLimits": [{"pageSize": "2MB", "limit": 2097152}]})
    assert content(v1dir, "hugetlb.2MB.limit_in_bytes") == "2097152"


def test_v1_writers_ignore_unset(v1dir):
    for fn in (w1.set_memory, w1.set_cpu, w1.set_pids, w1.set_blkio, w1.set_hugetlb, w1.set_net_cls,
               w1.set_net_prio, w1.set_rdma, w1.set_cpuset, w1.set_devices):
        fn(str(v1dir), {})
    assert all(content(v1dir, f) == "" for f in V1_FILES)


def test_parse_list():
    assert w1.parse_list("0-2,5\n") == [0, 1, 2, 5]
    assert w1.parse_list("\n") == []
