"""cgroup v1 resource writers and stat readers.

One ``set_<group>(dirpath, resources)`` per controller. ``resources`` is
the OCI ``linux.resources`` dict; each writer looks only at its own part
and writes nothing for values that are absent (or, where runc treats it
so, zero). Writers return a list of warning strings (usually empty) and
raise CgroupError naming the OCI field and the file on failure. They take
a plain directory so tests can aim them at a synthetic tree.
"""

from runtime.toolkit import os_lite as os

from .common import EBUSY, EINVAL, CgroupError, read_file, read_kv, read_uint, write_file
from .common import exists as _exists
from .common import rdma_line, set_cpuset, set_rdma  # noqa: F401  (same files on v1 and v2)


def network_needs(res: dict) -> list[str]:
    net = res.get("network") or {}
    out = []
    if net.get("classID") is not None:
        out.append("net_cls")
    if net.get("priorities"):
        out.append("net_prio")
    return out


def cpu_needs(res: dict) -> list[str]:
    """cpu.cpus/mems live in cpuset, the rest in cpu."""
    cpu = res.get("cpu") or {}
    out = []
    if cpu.get("cpus") or cpu.get("mems"):
        out.append("cpuset")
    if any(cpu.get(k) not in (None, 0) for k in ("shares", "quota", "period", "realtimeRuntime",
                                                  "realtimePeriod")) or \
            cpu.get("burst") is not None or cpu.get("idle") is not None:
        out.append("cpu")
    return out


# ------------------------------------------------------------- memory

def set_memory(d: str, res: dict) -> list[str]:
    mem = res.get("memory") or {}
    warnings: list[str] = []
    if not mem:
        return warnings
    limit = int(mem.get("limit") or 0)
    swap = int(mem.get("swap") or 0)
    if limit == -1 and swap == 0 and _exists(d, "memory.memsw.limit_in_bytes"):
        # "unlimited memory" also lifts memory+swap, where swap accounting exists.
        swap = -1

    def set_limit():
        if limit == 0:
            return
        try:
            write_file(d, "memory.limit_in_bytes", str(limit), what="linux.resources.memory.limit")
        except CgroupError as e:
            if getattr(e, "errno", None) != EBUSY:
                raise
            usage = _try_uint(d, "memory.usage_in_bytes")
            peak = _try_uint(d, "memory.max_usage_in_bytes")
            raise CgroupError(f"linux.resources.memory.limit: unable to set memory limit to {limit} "
                              f"(current usage: {usage}, peak usage: {peak}) in {d}") from None

    def set_swap():
        if swap == 0:
            return
        write_file(d, "memory.memsw.limit_in_bytes", str(swap), what="linux.resources.memory.swap")

    done = False
    if limit != 0 and swap != 0:
        # memsw must stay >= memory at every step: raise it first when it
        # grows (or goes unlimited), lower memory first otherwise.
        cur = read_uint(d, "memory.limit_in_bytes")
        if swap == -1 or cur < swap:
            set_swap()
            set_limit()
            done = True
    if not done:
        set_limit()
        set_swap()

    if mem.get("reservation"):
        write_file(d, "memory.soft_limit_in_bytes", str(int(mem["reservation"])),
                   what="linux.resources.memory.reservation")
    if mem.get("disableOOMKiller"):
        write_file(d, "memory.oom_control", "1", what="linux.resources.memory.disableOOMKiller")
    sw = mem.get("swappiness")
    if sw is not None and int(sw) != -1:
        sw = int(sw)
        if not 0 <= sw <= 100:
            raise CgroupError(f"linux.resources.memory.swappiness: invalid value {sw} (valid range is 0-100)")
        write_file(d, "memory.swappiness", str(sw), what="linux.resources.memory.swappiness")
    if mem.get("kernel") is not None:
        # Deprecated in the kernel (runc 1.1 ignores it with a warning); set it
        # where the file still takes it, since the spec asks for an applied
        # value or an error, and warn where it does not.
        applied = False
        if _exists(d, "memory.kmem.limit_in_bytes"):
            try:
                write_file(d, "memory.kmem.limit_in_bytes", str(int(mem["kernel"])),
                           what="linux.resources.memory.kernel")
                # Kernels since 5.16 take the write and keep no limit.
                applied = _try_uint(d, "memory.kmem.limit_in_bytes") == int(mem["kernel"])
            except CgroupError:
                pass
        if not applied:
            warnings.append("Kernel memory settings are ignored and will be removed")
    if mem.get("kernelTCP") is not None:
        # The TCP buffer limit still exists on v1 kernels; set it where it does.
        if _exists(d, "memory.kmem.tcp.limit_in_bytes"):
            write_file(d, "memory.kmem.tcp.limit_in_bytes", str(int(mem["kernelTCP"])),
                       what="linux.resources.memory.kernelTCP")
        else:
            warnings.append("linux.resources.memory.kernelTCP: memory.kmem.tcp.limit_in_bytes "
                            "does not exist on this kernel; ignored")
    return warnings


def _try_uint(d, name):
    try:
        return read_uint(d, name)
    except (OSError, CgroupError):
        return "unknown"


# ---------------------------------------------------------------- cpu

def set_cpu(d: str, res: dict) -> list[str]:
    cpu = res.get("cpu") or {}
    if not cpu:
        return []
    shares = int(cpu.get("shares") or 0)
    if shares:
        write_file(d, "cpu.shares", str(shares), what="linux.resources.cpu.shares")
        got = read_uint(d, "cpu.shares")
        # The kernel clamps silently; report it like runc instead.
        if shares > got:
            raise CgroupError(f"linux.resources.cpu.shares: the maximum allowed cpu-shares is {got}")
        if shares < got:
            raise CgroupError(f"linux.resources.cpu.shares: the minimum allowed cpu-shares is {got}")
    quota = int(cpu.get("quota") or 0)
    period = int(cpu.get("period") or 0)
    pending_period = ""
    if period:
        try:
            write_file(d, "cpu.cfs_period_us", str(period), what="linux.resources.cpu.period")
        except CgroupError as e:
            # A new period can be refused (EINVAL) while the old quota would
            # exceed the parent's; retry it after the quota is written.
            if getattr(e, "errno", None) != EINVAL or not quota:
                raise
            pending_period = str(period)
    burst = cpu.get("burst")
    pending_burst = ""
    if burst is not None:
        try:
            write_file(d, "cpu.cfs_burst_us", str(int(burst)), what="linux.resources.cpu.burst")
        except CgroupError as e:
            if getattr(e, "errno", None) != EINVAL or not quota:
                raise
            pending_burst = str(int(burst))
    if quota:
        write_file(d, "cpu.cfs_quota_us", str(quota), what="linux.resources.cpu.quota")
        if pending_period:
            write_file(d, "cpu.cfs_period_us", pending_period, what="linux.resources.cpu.period")
        if pending_burst:
            write_file(d, "cpu.cfs_burst_us", pending_burst, what="linux.resources.cpu.burst")
    if cpu.get("idle") is not None:
        write_file(d, "cpu.idle", str(int(cpu["idle"])), what="linux.resources.cpu.idle")
    set_rt(d, res)
    return []


def set_rt(d: str, res: dict) -> None:
    """Realtime budget. runc writes it before moving a task in as well
    (a RT task cannot join a cgroup with no RT runtime)."""
    cpu = res.get("cpu") or {}
    if cpu.get("realtimePeriod"):
        write_file(d, "cpu.rt_period_us", str(int(cpu["realtimePeriod"])),
                   what="linux.resources.cpu.realtimePeriod")
    if cpu.get("realtimeRuntime"):
        write_file(d, "cpu.rt_runtime_us", str(int(cpu["realtimeRuntime"])),
                   what="linux.resources.cpu.realtimeRuntime")



def cpuset_copy_if_needed(cur: str, parent: str) -> None:
    """A new v1 cpuset starts with empty cpus/mems and refuses tasks;
    inherit the parent's values where ours are empty."""
    for f in ("cpuset.cpus", "cpuset.mems"):
        if read_file(cur, f).strip() == "":
            val = read_file(parent, f).strip()
            if val:
                write_file(cur, f, val, what=f)


def cpuset_ensure_parents(path: str, mount: str) -> None:
    """mkdir each level from the mountpoint down to ``path``, filling empty
    cpuset.cpus/mems from the parent on the way (runc cpusetEnsureParent)."""
    rel = os.path.relpath(path, mount)
    cur = mount
    if rel == ".":
        return
    for part in rel.split(os.sep):
        parent, cur = cur, os.path.join(cur, part)
        try:
            os.mkdir(cur, 0o755)
        except FileExistsError:
            pass
        except OSError as e:
            raise CgroupError(f"mkdir {cur}: {os.strerror(e.errno)}") from None
        cpuset_copy_if_needed(cur, parent)


# --------------------------------------------------------------- pids

def set_pids(d: str, res: dict) -> list[str]:
    pids = res.get("pids") or {}
    limit = pids.get("limit")
    if limit is None or int(limit) == 0:
        # runc: 0 means unset (OCI: "0 or -1 is unlimited" is read as no-op for 0).
        return []
    limit = int(limit)
    write_file(d, "pids.max", "max" if limit < 0 else str(limit), what="linux.resources.pids.limit")
    return []


# -------------------------------------------------------------- blkio

def blkio_weight_files(d: str) -> tuple[str, str]:
    """CFQ's blkio.weight if present, else BFQ's blkio.bfq.weight (runc)."""
    if _exists(d, "blkio.weight"):
        return "blkio.weight", "blkio.weight_device"
    return "blkio.bfq.weight", "blkio.bfq.weight_device"


def set_blkio(d: str, res: dict) -> list[str]:
    b = res.get("blockIO") or {}
    if not b:
        return []
    wfile, wdfile = blkio_weight_files(d)
    if b.get("weight"):
        write_file(d, wfile, str(int(b["weight"])), what="linux.resources.blockIO.weight")
    if b.get("leafWeight"):
        write_file(d, "blkio.leaf_weight", str(int(b["leafWeight"])), what="linux.resources.blockIO.leafWeight")
    for i, wd in enumerate(b.get("weightDevice") or []):
        dev = f"{int(wd['major'])}:{int(wd['minor'])}"
        if wd.get("weight"):
            write_file(d, wdfile, f"{dev} {int(wd['weight'])}",
                       what=f"linux.resources.blockIO.weightDevice[{i}].weight")
        if wd.get("leafWeight"):
            write_file(d, "blkio.leaf_weight_device", f"{dev} {int(wd['leafWeight'])}",
                       what=f"linux.resources.blockIO.weightDevice[{i}].leafWeight")
    for key, fname in (("throttleReadBpsDevice", "blkio.throttle.read_bps_device"),
                       ("throttleWriteBpsDevice", "blkio.throttle.write_bps_device"),
                       ("throttleReadIOPSDevice", "blkio.throttle.read_iops_device"),
                       ("throttleWriteIOPSDevice", "blkio.throttle.write_iops_device")):
        for i, td in enumerate(b.get(key) or []):
            write_file(d, fname, f"{int(td['major'])}:{int(td['minor'])} {int(td['rate'])}",
                       what=f"linux.resources.blockIO.{key}[{i}]")
    return []


# ------------------------------------------------------------ hugetlb

def set_hugetlb(d: str, res: dict) -> list[str]:
    from .common import write_hugetlb
    return write_hugetlb(d, res, ".limit_in_bytes", ".rsvd.limit_in_bytes")


# ------------------------------------------------------------ network

def set_net_cls(d: str, res: dict) -> list[str]:
    net = res.get("network") or {}
    if net.get("classID") is not None and int(net["classID"]) != 0:
        write_file(d, "net_cls.classid", str(int(net["classID"])), what="linux.resources.network.classID")
    return []


def set_net_prio(d: str, res: dict) -> list[str]:
    net = res.get("network") or {}
    for i, p in enumerate(net.get("priorities") or []):
        write_file(d, "net_prio.ifpriomap", f"{p['name']} {int(p['priority'])}",
                   what=f"linux.resources.network.priorities[{i}]")
    return []


# --------------------------------------------------------------- rdma



# ------------------------------------------------------------ devices

def set_devices(d: str, res: dict) -> list[str]:
    """Make devices.list match res['devices'] replayed on a deny-all cgroup.

    Absent key = leave devices alone (an update without devices). Writes
    only the transition from the current state, then reads devices.list
    back to check the kernel agrees (as runc does)."""
    if "devices" not in res or res["devices"] is None:
        return []
    from .devices import Emulator, rules_from_oci, v1_writes
    for fname, line in v1_writes(read_file(d, "devices.list"), res["devices"]):
        write_file(d, fname, line, what="linux.resources.devices")
    target = Emulator.from_rules(rules_from_oci(res["devices"]))
    after = Emulator.from_list(read_file(d, "devices.list"))
    if not target.default_allow and after != target:
        raise CgroupError(f"linux.resources.devices: resulting {os.path.join(d, 'devices.list')} does not match the rules")
    if target.default_allow != after.default_allow:
        raise CgroupError(f"linux.resources.devices: resulting {os.path.join(d, 'devices.list')} is in the wrong mode")
    return []


# ------------------------------------------------------------- stats

def stat_cpu(d: str, st: dict) -> None:
    try:
        kv = read_kv(d, "cpu.stat", max_value=None)
    except FileNotFoundError:
        return
    th = st["cpu"]["throttling"]
    th["periods"] = kv.get("nr_periods", 0)
    th["throttledPeriods"] = kv.get("nr_throttled", 0)
    th["throttledTime"] = kv.get("throttled_time", 0)


def stat_cpuacct(d: str, st: dict) -> None:
    if not os.path.isdir(d):
        return
    u = st["cpu"]["usage"]
    f = read_file(d, "cpuacct.stat").split()
    # user/system are in USER_HZ ticks (100/s on Linux) -> nanoseconds.
    vals = dict(zip(f[0::2], f[1::2]))
    hz = os.sysconf("SC_CLK_TCK") or 100
    u["user"] = int(vals.get("user", 0)) * 1_000_000_000 // hz
    u["kernel"] = int(vals.get("system", 0)) * 1_000_000_000 // hz
    u["total"] = read_uint(d, "cpuacct.usage")
    u["percpu"] = [int(x) for x in read_file(d, "cpuacct.usage_percpu").split()]
    try:
        lines = read_file(d, "cpuacct.usage_all").splitlines()[1:]
    except FileNotFoundError:
        lines = []
    pk, pu = [], []
    for line in lines:
        p = line.split()
        if len(p) == 3:
            pu.append(int(p[1]))
            pk.append(int(p[2]))
    u["percpu_kernel"] = pk
    u["percpu_user"] = pu


def _mem_entry(d: str, module: str, optional: bool) -> dict:
    try:
        usage = read_uint(d, module + ".usage_in_bytes")
    except FileNotFoundError:
        if optional:
            return {"limit": 0, "failcnt": 0}
        raise
    # key order as in runc's MemoryEntry (limit, usage, max, failcnt)
    return {
        "limit": read_uint(d, module + ".limit_in_bytes"),
        "usage": usage,
        "max": read_uint(d, module + ".max_usage_in_bytes"),
        "failcnt": read_uint(d, module + ".failcnt"),
    }


def stat_memory(d: str, st: dict) -> None:
    try:
        raw = read_kv(d, "memory.stat", max_value=None)
    except FileNotFoundError:
        return
    m = st["memory"]
    m["raw"] = raw
    m["cache"] = raw.get("cache", 0)
    m["usage"] = _mem_entry(d, "memory", False)
    m["swap"] = _mem_entry(d, "memory.memsw", True)
    m["kernel"] = _mem_entry(d, "memory.kmem", True)
    m["kernelTCP"] = _mem_entry(d, "memory.kmem.tcp", True)


def stat_pids(d: str, st: dict) -> None:
    if not os.path.isdir(d):
        return
    st["pids"]["current"] = read_uint(d, "pids.current")
    mx = read_uint(d, "pids.max")
    st["pids"]["limit"] = 0 if mx == (1 << 64) - 1 else mx


def _blkio_entries(d: str, name: str):
    try:
        text = read_file(d, name)
    except FileNotFoundError:
        return None
    out = []
    for line in text.splitlines():
        f = line.replace(":", " ").split()
        if len(f) < 3:
            continue  # "Total N"
        e = {"major": int(f[0]), "minor": int(f[1])}
        if len(f) == 4:
            e["op"] = f[2]
            e["value"] = int(f[3])
        else:
            e["value"] = int(f[2])
        out.append(e)
    return out


def stat_blkio(d: str, st: dict) -> None:
    """Prefer BFQ, then CFQ, then throttle (recursive), then throttle files,
    filling runc's ioServiceBytesRecursive/ioServicedRecursive keys."""
    b = st["blkio"]
    groups = [
        [("blkio.bfq.io_serviced_recursive", "ioServicedRecursive"),
         ("blkio.bfq.io_service_bytes_recursive", "ioServiceBytesRecursive")],
        [("blkio.sectors_recursive", "sectorsRecursive"),
         ("blkio.io_service_time_recursive", "ioServiceTimeRecursive"),
         ("blkio.io_wait_time_recursive", "ioWaitTimeRecursive"),
         ("blkio.io_merged_recursive", "ioMergedRecursive"),
         ("blkio.io_queued_recursive", "ioQueueRecursive"),
         ("blkio.time_recursive", "ioTimeRecursive"),
         ("blkio.io_serviced_recursive", "ioServicedRecursive"),
         ("blkio.io_service_bytes_recursive", "ioServiceBytesRecursive")],
        [("blkio.throttle.io_serviced_recursive", "ioServicedRecursive"),
         ("blkio.throttle.io_service_bytes_recursive", "ioServiceBytesRecursive")],
        [("blkio.throttle.io_serviced", "ioServicedRecursive"),
         ("blkio.throttle.io_service_bytes", "ioServiceBytesRecursive")],
    ]
    for g in groups:
        first = _blkio_entries(d, g[0][0])
        if first is None:
            continue
        b[g[0][1]] = first
        for fname, key in g[1:]:
            b[key] = _blkio_entries(d, fname) or []
        return


def stat_hugetlb(d: str, st: dict, sizes) -> None:
    if not os.path.isdir(d):
        return
    for ps in sizes:
        p = f"hugetlb.{ps}"
        st["hugetlb"][ps] = {
            "usage": read_uint(d, p + ".usage_in_bytes"),
            "max": read_uint(d, p + ".max_usage_in_bytes"),
            "failcnt": read_uint(d, p + ".failcnt"),
        }


def stat_cpuset(d: str, st: dict) -> None:
    if not os.path.isdir(d):
        return
    cs = st["cpuset"]
    for key, f in (("cpus", "cpuset.cpus"), ("mems", "cpuset.mems")):
        try:
            cs[key] = parse_list(read_file(d, f))
        except FileNotFoundError:
            pass
    for key, f in (("cpu_exclusive", "cpuset.cpu_exclusive"), ("mem_hardwall", "cpuset.mem_hardwall"),
                   ("mem_exclusive", "cpuset.mem_exclusive"), ("memory_migrate", "cpuset.memory_migrate"),
                   ("memory_spread_page", "cpuset.memory_spread_page"),
                   ("memory_spread_slab", "cpuset.memory_spread_slab"),
                   ("memory_pressure", "cpuset.memory_pressure"),
                   ("sched_load_balance", "cpuset.sched_load_balance")):
        try:
            cs[key] = read_uint(d, f)
        except FileNotFoundError:
            pass
    try:
        cs["sched_relax_domain_level"] = int(read_file(d, "cpuset.sched_relax_domain_level").strip())
    except (FileNotFoundError, ValueError):
        pass


def parse_list(text: str) -> list[int]:
    """'0-2,5' -> [0, 1, 2, 5] (cpuset list format)."""
    out: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        if "-" in part:
            a, b = part.split("-", 1)
            out.extend(range(int(a), int(b) + 1))
        else:
            out.append(int(part))
    return out
