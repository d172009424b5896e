"""cgroup v2 resource writers and stat readers.

Same contract as v1_writers: ``set_<group>(dirpath, resources)`` reads its
part of the OCI ``linux.resources`` dict, writes nothing for absent
values, returns warnings, raises CgroupError naming field and file. The
OCI values are v1-shaped, so the runc conversions live here: cpu.shares
-> cpu.weight, blkio weight -> io.weight, memory+swap -> swap only,
quota/period -> cpu.max.
"""

from runtime.toolkit import os_lite as os

from .common import (EACCES, EINVAL, ENOENT, EPERM, CgroupError, blkio_weight_to_io_weight, cpu_max, num_to_v2,
                     read_file, read_kv, read_uint, shares_to_weight, swap_to_v2, write_file)
from .common import exists as _exists
from .common import set_cpuset, set_rdma  # noqa: F401  (same files on v1 and v2)


# ---------------------------------------------------------------- pids

def set_pids(d: str, res: dict) -> list[str]:
    limit = (res.get("pids") or {}).get("limit")
    if not limit:
        return []
    limit = int(limit)
    write_file(d, "pids.max", "max" if limit < 0 else str(limit), what="linux.resources.pids.limit")
    return []


# -------------------------------------------------------------- memory

def check_memory_usage(d: str, limit: int, swap: int) -> None:
    """memory.checkBeforeUpdate: refuse a limit at or below current usage
    (best effort: an unreadable memory.current skips the check, as runc)."""
    try:
        usage = read_uint(d, "memory.current")
    except (OSError, CgroupError):
        return
    if swap > 0 and swap <= usage:
        raise CgroupError(f"linux.resources.memory.swap: rejecting memory+swap limit {swap} <= usage {usage} ({d})")
    if limit > 0 and limit <= usage:
        raise CgroupError(f"linux.resources.memory.limit: rejecting memory limit {limit} <= usage {usage} ({d})")


def set_memory(d: str, res: dict) -> list[str]:
    mem = res.get("memory") or {}
    warnings: list[str] = []
    if not mem:
        return warnings
    limit = int(mem.get("limit") or 0)
    swap = int(mem.get("swap") or 0)
    reservation = int(mem.get("reservation") or 0)
    if limit or swap or reservation:
        if mem.get("checkBeforeUpdate"):
            check_memory_usage(d, limit, swap)
        v2swap = swap_to_v2(swap, limit)
        swap_str = num_to_v2(v2swap)
        if swap_str == "" and v2swap == 0 and swap > 0:
            swap_str = "0"  # memory == memory+swap: no swap at all
        if swap_str:
            try:
                write_file(d, "memory.swap.max", swap_str, what="linux.resources.memory.swap")
            except CgroupError as e:
                # Without swap accounting, "max" and "0" already hold (runc).
                if not (getattr(e, "errno", None) == ENOENT and swap_str in ("max", "0")):
                    raise
        if num_to_v2(limit):
            write_file(d, "memory.max", num_to_v2(limit), what="linux.resources.memory.limit")
        if num_to_v2(reservation):
            write_file(d, "memory.low", num_to_v2(reservation), what="linux.resources.memory.reservation")
    if mem.get("kernel") is not None or mem.get("kernelTCP") is not None:
        warnings.append("Kernel memory settings are ignored and will be removed")
    sw = mem.get("swappiness")
    if sw is not None and int(sw) != -1:
        warnings.append("linux.resources.memory.swappiness has no cgroup v2 equivalent; ignored")
    if mem.get("disableOOMKiller"):
        warnings.append("linux.resources.memory.disableOOMKiller has no cgroup v2 equivalent; ignored")
    return warnings


# ----------------------------------------------------------------- cpu

def set_cpu(d: str, res: dict) -> list[str]:
    cpu = res.get("cpu") or {}
    if not cpu:
        return []
    for k in ("realtimeRuntime", "realtimePeriod"):
        if cpu.get(k):
            raise CgroupError(f"linux.resources.cpu.{k}: realtime scheduling limits are not supported on cgroup v2")
    if cpu.get("idle") is not None:
        write_file(d, "cpu.idle", str(int(cpu["idle"])), what="linux.resources.cpu.idle")
    weight = shares_to_weight(int(cpu.get("shares") or 0))
    if weight:
        write_file(d, "cpu.weight", str(weight), what="linux.resources.cpu.shares")
    burst = cpu.get("burst")
    pending_burst = ""
    quota = int(cpu.get("quota") or 0)
    if burst is not None:
        try:
            write_file(d, "cpu.max.burst", str(int(burst)), what="linux.resources.cpu.burst")
        except CgroupError as e:
            # A larger burst can be refused until the new quota is in place.
            if getattr(e, "errno", None) != EINVAL or not quota:
                raise
            pending_burst = str(int(burst))
    s = cpu_max(quota, int(cpu.get("period") or 0))
    if s is not None:
        write_file(d, "cpu.max", s, what="linux.resources.cpu.quota/period")
        if pending_burst:
            write_file(d, "cpu.max.burst", pending_burst, what="linux.resources.cpu.burst")
    return []



# ------------------------------------------------------------------ io

def _bfq_takes_devices(d: str) -> bool:
    # Newer io.bfq.weight shows "default N" plus per-device lines and takes
    # "maj:min weight"; the old one holds a bare number.
    try:
        text = read_file(d, "io.bfq.weight").strip()
    except OSError:
        return False
    try:
        int(text)
        return False
    except ValueError:
        return True


def set_io(d: str, res: dict) -> list[str]:
    b = res.get("blockIO") or {}
    warnings: list[str] = []
    if not b:
        return warnings
    bfq = _exists(d, "io.bfq.weight")
    if b.get("weight"):
        w = int(b["weight"])
        if bfq:
            # BFQ takes the v1 range directly.
            write_file(d, "io.bfq.weight", str(w), what="linux.resources.blockIO.weight")
        else:
            write_file(d, "io.weight", str(blkio_weight_to_io_weight(w)), what="linux.resources.blockIO.weight")
    wds = [wd for wd in (b.get("weightDevice") or []) if wd.get("weight")]
    if wds:
        if not _bfq_takes_devices(d):
            raise CgroupError("linux.resources.blockIO.weightDevice: per-device weights need a BFQ "
                              f"io.bfq.weight that accepts devices; {os.path.join(d, 'io.bfq.weight')} does not")
        for i, wd in enumerate(wds):
            write_file(d, "io.bfq.weight", f"{int(wd['major'])}:{int(wd['minor'])} {int(wd['weight'])}",
                       what=f"linux.resources.blockIO.weightDevice[{i}]")
    if b.get("leafWeight") or any(wd.get("leafWeight") for wd in (b.get("weightDevice") or [])):
        warnings.append("linux.resources.blockIO.leafWeight has no cgroup v2 equivalent; ignored")
    for key, op in (("throttleReadBpsDevice", "rbps"), ("throttleWriteBpsDevice", "wbps"),
                    ("throttleReadIOPSDevice", "riops"), ("throttleWriteIOPSDevice", "wiops")):
        for i, td in enumerate(b.get(key) or []):
            write_file(d, "io.max", f"{int(td['major'])}:{int(td['minor'])} {op}={int(td['rate'])}",
                       what=f"linux.resources.blockIO.{key}[{i}]")
    return warnings


# ------------------------------------------------------------- hugetlb

def set_hugetlb(d: str, res: dict) -> list[str]:
    from .common import write_hugetlb
    return write_hugetlb(d, res, ".max", ".rsvd.max")



def set_network(d: str, res: dict) -> list[str]:
    net = res.get("network") or {}
    if net.get("classID") is not None or net.get("priorities"):
        return ["linux.resources.network (net_cls/net_prio) has no cgroup v2 equivalent; ignored"]
    return []


def set_unified(d: str, res: dict) -> list[str]:
    """linux.resources.unified: raw 'controller.knob' -> value writes."""
    uni = res.get("unified") or {}
    if not uni:
        return []
    try:
        avail = set(read_file(d, "cgroup.controllers").split())
    except OSError:
        avail = set()
    for k, v in uni.items():
        if "/" in k:
            raise CgroupError(f"linux.resources.unified: key {k!r} must be a file name (no slashes)")
        try:
            write_file(d, k, str(v), what=f"linux.resources.unified[{k!r}]")
        except CgroupError as e:
            if getattr(e, "errno", None) in (ENOENT, EPERM, EACCES):
                ctrl, dot, _ = k.partition(".")
                if not dot:
                    raise CgroupError(f"linux.resources.unified: key {k!r} must be CONTROLLER.PARAMETER") from None
                if ctrl not in avail and ctrl != "cgroup":
                    raise CgroupError(f"linux.resources.unified[{k!r}]: controller {ctrl!r} not available "
                                      f"in {d}") from None
            raise
    return []


def set_devices(d: str, res: dict) -> list[str]:
    """Generate and attach the eBPF device filter for res['devices'],
    replacing the program attached earlier. Absent key: untouched."""
    if "devices" not in res or res["devices"] is None:
        return []
    from .devicefilter import LICENSE, device_filter
    from .ebpf import replace_device_program
    code = device_filter(res["devices"])
    try:
        replace_device_program(d, code, LICENSE)
    except OSError as e:
        raise CgroupError(f"linux.resources.devices: device filter for {d}: {e.strerror or e}") from None
    return []


# ---------------------------------------------------------------- stats

def stat_cpu(d: str, st: dict) -> None:
    try:
        kv = read_kv(d, "cpu.stat", max_value=None)
    except FileNotFoundError:
        return
    u, th = st["cpu"]["usage"], st["cpu"]["throttling"]
    u["total"] = kv.get("usage_usec", 0) * 1000
    u["user"] = kv.get("user_usec", 0) * 1000
    u["kernel"] = kv.get("system_usec", 0) * 1000
    th["periods"] = kv.get("nr_periods", 0)
    th["throttledPeriods"] = kv.get("nr_throttled", 0)
    th["throttledTime"] = kv.get("throttled_usec", 0) * 1000


def stat_memory(d: str, st: dict) -> None:
    try:
        raw = read_kv(d, "memory.stat", max_value=None)
    except FileNotFoundError:
        return
    m = st["memory"]
    m["raw"] = raw
    m["cache"] = raw.get("file", 0)
    usage = {"usage": read_uint(d, "memory.current"), "limit": read_uint(d, "memory.max"), "failcnt": 0}
    try:
        usage["max"] = read_uint(d, "memory.peak")
    except FileNotFoundError:
        pass
    try:
        usage["failcnt"] = read_kv(d, "memory.events", max_value=None).get("max", 0)
    except FileNotFoundError:
        pass
    m["usage"] = usage
    # runc reports v2 swap as memory+swap to keep the v1 meaning.
    try:
        su = read_uint(d, "memory.swap.current")
        sl = read_uint(d, "memory.swap.max")
    except FileNotFoundError:
        su, sl = 0, 0
    swap = {"usage": su + usage["usage"], "limit": sl, "failcnt": 0}
    if sl != (1 << 64) - 1:
        swap["limit"] = min(sl + usage["limit"], (1 << 64) - 1)
    m["swap"] = swap


def stat_pids(d: str, st: dict) -> None:
    try:
        cur = read_uint(d, "pids.current")
    except FileNotFoundError:
        # No pids controller: count cgroup.procs like runc.
        try:
            st["pids"]["current"] = len(read_file(d, "cgroup.procs").split())
        except OSError:
            pass
        st["pids"]["limit"] = 0
        return
    mx = read_uint(d, "pids.max")
    st["pids"]["current"] = cur
    st["pids"]["limit"] = 0 if mx == (1 << 64) - 1 else mx


def stat_io(d: str, st: dict) -> None:
    try:
        text = read_file(d, "io.stat")
    except FileNotFoundError:
        return
    b = st["blkio"]
    sb, sv = [], []
    for line in text.splitlines():
        parts = line.split()
        if not parts or ":" not in parts[0]:
            continue
        ma, mi = parts[0].split(":", 1)
        for item in parts[1:]:
            k, _, v = item.partition("=")
            table = {"rbytes": (sb, "Read"), "wbytes": (sb, "Write"),
                     "rios": (sv, "Read"), "wios": (sv, "Write")}.get(k)
            if table is None:
                continue
            table[0].append({"major": int(ma), "minor": int(mi), "op": table[1], "value": int(v)})
    b["ioServiceBytesRecursive"] = sb
    b["ioServicedRecursive"] = sv


def stat_hugetlb(d: str, st: dict, sizes) -> None:
    for ps in sizes:
        p = f"hugetlb.{ps}"
        try:
            usage = read_uint(d, p + ".current")
        except FileNotFoundError:
            return
        try:
            fail = read_kv(d, p + ".events", max_value=None).get("max", 0)
        except FileNotFoundError:
            fail = 0
        st["hugetlb"][ps] = {"usage": usage, "failcnt": fail}
