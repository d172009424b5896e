"""Shared helpers for the cgroup managers and writers.

Everything here is stdlib-only and cheap to import: the runtime is a
short-lived CLI, so nothing heavy is loaded at module level.
"""

from runtime.toolkit import os_lite as os
import time

MOUNTINFO = "/proc/self/mountinfo"
PROC_SELF_CGROUP = "/proc/self/cgroup"

# v1 controllers the managers know about, in the order runc's fs manager
# walks its subsystems (cpuset first: it must be populated before tasks join).
V1_CONTROLLERS = (
    "cpuset", "devices", "memory", "cpu", "cpuacct", "pids", "blkio",
    "hugetlb", "net_cls", "net_prio", "perf_event", "freezer", "rdma", "misc",
    "name=systemd",
)


from runtime.errors import RuntimeFailure

# errno values these modules test for.
from errno import EACCES, EBUSY, EINVAL, ENODEV, ENOENT, EPERM  # noqa: F401 - also for the managers


class CgroupError(RuntimeFailure):
    """A cgroup operation failed; the message is one line naming the path."""


def write_file(dirpath: str, name: str, value: str, *, what: str | None = None) -> None:
    """Write ``value`` to ``dirpath/name`` in a single write(2).

    cgroupfs parses each write separately, so the value must arrive in one
    call. On failure raises CgroupError naming the file and, when given,
    the OCI field (``what``) the value came from.
    """
    path = os.path.join(dirpath, name)
    data = value.encode() if isinstance(value, str) else value
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    except OSError as e:
        raise _err(e, "open", path, what, value) from None
    try:
        os.write(fd, data)
    except OSError as e:
        raise _err(e, "write", path, what, value) from None
    finally:
        os.close(fd)


def _err(e: OSError, op: str, path: str, what: str | None, value) -> CgroupError:
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    label = f"{what}: " if what else ""
    if e.errno == ENOENT and op == "open" and not os.path.isdir(os.path.dirname(path)):
        msg = f"{label}cannot set {value!r}: cgroup directory {os.path.dirname(path)} does not exist"
    elif e.errno == ENOENT and op == "open":
        msg = f"{label}cannot set {value!r}: {path} does not exist (controller or knob not available on this kernel)"
    else:
        msg = f"{label}{op} {value!r} to {path}: {os.strerror(e.errno)}"
    err = CgroupError(msg)
    err.errno = e.errno  # type: ignore[attr-defined]
    return err


def read_file(dirpath: str, name: str = "") -> str:
    """Return the text of ``dirpath/name``; raises OSError as-is (callers
    decide whether ENOENT/ENODEV mean 'not there')."""
    path = os.path.join(dirpath, name) if name else dirpath
    with open(path, "r") as f:
        return f.read()


def read_uint(dirpath: str, name: str) -> int:
    """Parse a single-value cgroup file; 'max' maps to 2**64-1 like runc."""
    s = read_file(dirpath, name).strip()
    if s == "max":
        return (1 << 64) - 1
    try:
        v = int(s)
    except ValueError:
        raise CgroupError(f"unable to parse {os.path.join(dirpath, name)}: {s!r}") from None
    # Negative values (e.g. -1 for "no limit" on v1) clamp to 0 like runc's
    # ParseUint fallback does for negative numbers.
    return v if v >= 0 else 0


def read_kv(dirpath: str, name: str, *, max_value: int | None = (1 << 64) - 1) -> dict[str, int]:
    """Parse a flat-keyed file ("key value" per line) into a dict. A "max"
    value becomes `max_value` (dropped when that is None), as do other
    non-integers."""
    out: dict[str, int] = {}
    for line in read_file(dirpath, name).splitlines():
        parts = line.split()
        if len(parts) != 2:
            continue
        if parts[1] == "max":
            if max_value is not None:
                out[parts[0]] = max_value
            continue
        try:
            out[parts[0]] = int(parts[1])
        except ValueError:
            continue
    return out


def exists(dirpath: str, name: str) -> bool:
    return os.path.exists(os.path.join(dirpath, name))


# Writers whose files are the same on v1 and v2 ------------------------------

def set_cpuset(d: str, res: dict) -> list[str]:
    cpu = res.get("cpu") or {}
    if cpu.get("cpus"):
        write_file(d, "cpuset.cpus", str(cpu["cpus"]), what="linux.resources.cpu.cpus")
    if cpu.get("mems"):
        write_file(d, "cpuset.mems", str(cpu["mems"]), what="linux.resources.cpu.mems")
    return []


def rdma_line(device: str, limits: dict) -> str:
    s = device
    if limits.get("hcaHandles") is not None:
        s += f" hca_handle={int(limits['hcaHandles'])}"
    if limits.get("hcaObjects") is not None:
        s += f" hca_object={int(limits['hcaObjects'])}"
    return s


def set_rdma(d: str, res: dict) -> list[str]:
    for dev, lim in (res.get("rdma") or {}).items():
        write_file(d, "rdma.max", rdma_line(dev, lim or {}), what=f"linux.resources.rdma.{dev}")
    return []


def refuse_frozen(path: str, mount: str, v2: bool) -> None:
    """Raise CgroupError ("container's cgroup unexpectedly frozen", runc's
    words) when a process put in cgroup `path` would be frozen: `path` is
    frozen, or, where it does not exist yet, the closest ancestor that does
    (a new cgroup starts in its parent's freezer state); on v2 also when
    any ancestor below `mount` asks to freeze. init would freeze on joining
    it and create wait for it forever. runc only looks at `path` itself;
    the error's `frozen` attribute tells the caller nothing was made."""
    d = path
    while len(d) > len(mount) and not os.path.isdir(d):
        d = os.path.dirname(d)
    frozen = None
    while len(d) > len(mount):  # the hierarchy's root cannot be frozen
        try:
            if v2:
                if read_file(d, "cgroup.freeze").strip() == "1":
                    frozen = d
            elif read_file(d, "freezer.state").strip() in ("FROZEN", "FREEZING"):
                frozen = d  # v1 reports a frozen ancestor's state too
        except OSError as e:
            if e.errno not in (ENOENT, ENODEV):
                raise
        if frozen or not v2:
            break
        d = os.path.dirname(d)
    if frozen:
        err = CgroupError(f"container's cgroup unexpectedly frozen: {frozen}"
                          + ("" if frozen == path else f" (an ancestor of {path})"))
        err.frozen = True  # type: ignore[attr-defined]
        raise err


def create_v2_path(mount: str, path: str) -> None:
    """mkdir -p ``path`` below the cgroup2 ``mount``, enabling in each
    ancestor's cgroup.subtree_control every controller it offers (like
    runc's CreateCgroupPath), so the leaf gets all of them. Idempotent.
    Enabling is best effort per controller: a level that holds processes
    refuses domain controllers (no-internal-process rule) and then the
    leaf simply lacks them; apply() reports a missing file clearly.
    (Here rather than in v2: a v1 manager on a hybrid host makes its
    unified directory with it, without loading the v2 manager.)"""
    mount = os.path.normpath(mount)
    path = os.path.normpath(path)
    if path != mount and not path.startswith(mount + "/"):
        raise CgroupError(f"invalid cgroup path {path}: not under the cgroup2 mount {mount}")
    rel = os.path.relpath(path, mount)
    parts = [] if rel == "." else rel.split("/")
    cur = mount
    created: list[str] = []
    try:
        for part in parts:
            _enable_all(cur)
            cur = os.path.join(cur, part)
            try:
                os.mkdir(cur, 0o755)
                created.append(cur)
            except FileExistsError:
                pass
            except OSError as e:
                raise CgroupError(f"mkdir {cur}: {os.strerror(e.errno)}") from None
            try:
                t = read_file(cur, "cgroup.type").strip()
            except OSError:
                t = "domain"
            if t == "domain invalid":
                raise CgroupError(f"cannot enter cgroup v2 {cur}: it is in an invalid state (domain invalid)")
    except BaseException:
        for c in reversed(created):
            try:
                os.rmdir(c)
            except OSError:
                pass
        raise


def _enable_all(d: str) -> None:
    try:
        avail = read_file(d, "cgroup.controllers").split()
        on = set(read_file(d, "cgroup.subtree_control").split())
    except OSError:
        return
    want = [c for c in avail if c not in on]
    if not want:
        return
    try:
        write_file(d, "cgroup.subtree_control", " ".join("+" + c for c in want))
    except CgroupError:
        for c in want:
            try:
                write_file(d, "cgroup.subtree_control", "+" + c)
            except CgroupError:
                pass


def rmdir_tree(path: str) -> None:
    """Remove a cgroup dir and its sub-cgroups (deepest first).

    Idempotent: a missing dir is success. cgroupfs dirs cannot be removed
    with unlink of their files, only with rmdir, hence the bottom-up walk.
    """
    try:
        os.rmdir(path)
        return
    except FileNotFoundError:
        return
    except OSError:
        pass
    for cur, dirs, _files in os.walk(path, topdown=False):
        for d in dirs:
            try:
                os.rmdir(os.path.join(cur, d))
            except FileNotFoundError:
                pass
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass


# One rmdir per cgroup directory; False at the first one still in use (tasks
# or sub-cgroups). Most destroys end here: see lifecycle._destroy.
remove_if_empty = os.rmdir_all


def remove_paths(paths, *, attempts: int = 6) -> None:
    """rmdir every path, retrying with backoff while the kernel still sees
    dying tasks (EBUSY right after SIGKILL is normal). Raises CgroupError
    naming the first path that could not be removed."""
    pending = list(dict.fromkeys(p for p in paths if p))
    delay = 0.01
    last: tuple[str, OSError] | None = None
    for i in range(attempts):
        if i:
            time.sleep(delay)
            delay *= 2
        left = []
        for p in pending:
            try:
                rmdir_tree(p)
            except OSError as e:
                last = (p, e)
            if os.path.exists(p):
                left.append(p)
        pending = left
        if not pending:
            return
    p, e = last if last else (pending[0], OSError(EBUSY, "busy"))
    raise CgroupError(f"unable to remove cgroup {p}: {os.strerror(e.errno or EBUSY)}")


def clean_path(path: str) -> str:
    """runc's utils.CleanPath: lexical clean that cannot escape with '..'.

    Absolute stays absolute; a relative path is cleaned as if rooted at '/'
    and made relative again, so 'a/../../b' becomes 'b'.
    """
    if not path:
        return ""
    if path.startswith("/"):
        return os.path.normpath("/" + path.lstrip("/")) if path != "/" else "/"
    cleaned = os.path.normpath("/" + path)
    rel = os.path.relpath(cleaned, "/")
    return "" if rel == "." else rel


# ---------------------------------------------------------------- mounts

def parse_mountinfo(text: str) -> list[dict]:
    """Cgroup entries of a mountinfo text: dicts with mountpoint, root,
    fstype ('cgroup'|'cgroup2') and controllers (list, v1 only)."""
    out = []
    for line in text.splitlines():
        fields = line.split()
        try:
            sep = fields.index("-")
        except ValueError:
            continue
        fstype = fields[sep + 1]
        if fstype not in ("cgroup", "cgroup2"):
            continue
        super_opts = fields[sep + 3].split(",") if len(fields) > sep + 3 else []
        ctrls = []
        if fstype == "cgroup":
            for o in super_opts:
                if o in V1_CONTROLLERS or o.startswith("name="):
                    ctrls.append(o)
        out.append({
            "mountpoint": _unescape(fields[4]),
            "root": _unescape(fields[3]),
            "fstype": fstype,
            "controllers": ctrls,
        })
    return out


def _unescape(s: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo.
    if "\\" not in s:
        return s
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 3 < len(s) + 0 and s[i + 1:i + 4].isdigit():
            out.append(chr(int(s[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def read_mountinfo(path: str = MOUNTINFO) -> list[dict]:
    with open(path) as f:
        return parse_mountinfo(f.read())


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """/proc/<pid>/cgroup -> {controller: path}; the v2 entry is key ''."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _hid, ctrls, path = parts
        if ctrls == "":
            out[""] = path
        else:
            for c in ctrls.split(","):
                out[c] = path
    return out


def own_cgroups(path: str = PROC_SELF_CGROUP) -> dict[str, str]:
    with open(path) as f:
        return parse_proc_cgroup(f.read())


def hugepage_sizes(sysdir: str = "/sys/kernel/mm/hugepages") -> list[str]:
    """Huge page sizes as cgroup file infixes ('2MB', '1GB'), like runc."""
    try:
        names = os.listdir(sysdir)
    except OSError:
        return []
    out = []
    for n in sorted(names):
        if not n.startswith("hugepages-") or not n.endswith("kB"):
            continue
        try:
            kb = int(n[len("hugepages-"):-2])
        except ValueError:
            continue
        out.append(pagesize_name(kb * 1024))
    return out


def pagesize_name(nbytes: int) -> str:
    """Bytes -> the unit string the kernel uses in hugetlb file names."""
    units = ["B", "KB", "MB", "GB", "TB", "PB"]
    i = 0
    v = nbytes
    while v >= 1024 and v % 1024 == 0 and i < len(units) - 1:
        v //= 1024
        i += 1
    return f"{v}{units[i]}"


# ----------------------------------------------------------- conversions

def shares_to_weight(shares: int) -> int:
    """cgroup v1 cpu.shares [2..262144] -> v2 cpu.weight [1..10000].

    runc 1.1's linear map (the runc installed as reference here):
    1 + ((shares - 2) * 9999) / 262142, 0 meaning unset.
    """
    if not shares:
        return 0
    return 1 + ((shares - 2) * 9999) // 262142


def blkio_weight_to_io_weight(weight: int) -> int:
    """blkio.weight [10..1000] -> io.weight [1..10000] (runc's linear map)."""
    if not weight:
        return 0
    return 1 + (weight - 10) * 9999 // 990


def swap_to_v2(memory_swap: int, memory: int) -> int:
    """OCI memory.swap (memory+swap) -> cgroup v2 memory.swap.max value.

    Returns -1 for 'max', 0 for 'unset' (caller writes nothing) unless the
    swap equals the limit (caller writes '0', see v2_writers). Mirrors
    runc's ConvertMemorySwapToCgroupV2Value, errors included.
    """
    if memory == -1 and memory_swap == 0:
        return -1
    if memory_swap in (-1, 0):
        return memory_swap
    if memory in (0, -1):
        raise CgroupError("linux.resources.memory.swap: unable to set swap limit without memory limit")
    if memory < 0:
        raise CgroupError(f"linux.resources.memory.limit: invalid memory value {memory}")
    if memory_swap < memory:
        raise CgroupError("linux.resources.memory.swap: memory+swap limit should be >= memory limit")
    return memory_swap - memory


def cpu_max(quota: int | None, period: int | None) -> str | None:
    """OCI cpu quota/period -> the cgroup v2 cpu.max string, None if unset.

    quota <= 0 (or unset with a period) means 'max'; a missing period
    defaults to 100000 as documented for cgroup v2 (runc does the same).
    """
    q = quota or 0
    p = period or 0
    if q == 0 and p == 0:
        return None
    s = str(q) if q > 0 else "max"
    return f"{s} {p if p else 100000}"


def num_to_v2(value: int | None) -> str:
    """runc's numToStr: 0/None -> '' (unset), -1 -> 'max', else decimal."""
    if not value:
        return ""
    if value == -1:
        return "max"
    return str(value)


def wait_empty(get_pids, *, timeout: float = 10.0) -> bool:
    """Poll ``get_pids()`` until it returns nothing; False on timeout."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        if not get_pids():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def kill_pids(pids) -> None:
    import signal
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def write_hugetlb(d: str, res: dict, limit_suffix: str, rsvd_suffix: str) -> list[str]:
    """hugepageLimits for either hierarchy (file names differ by suffix).
    Reservation limits (kernel >= 5.7) get the same value, like runc; kernels
    without them just skip."""
    skip_rsvd = False
    for i, h in enumerate(res.get("hugepageLimits") or []):
        prefix = f"hugetlb.{h['pageSize']}"
        val = str(int(h["limit"]))
        write_file(d, prefix + limit_suffix, val, what=f"linux.resources.hugepageLimits[{i}]")
        if skip_rsvd:
            continue
        if exists(d, prefix + rsvd_suffix):
            write_file(d, prefix + rsvd_suffix, val, what=f"linux.resources.hugepageLimits[{i}]")
        else:
            skip_rsvd = True
    return []
