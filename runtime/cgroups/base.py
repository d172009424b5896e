"""Pieces shared by the v1 and v2 managers: the runc `events --stats`
schema and the Manager protocol."""


def empty_stats() -> dict:
    """Zeroed stats in the shape of runc's types.Stats (types/events.go)."""
    def mem_entry():
        return {"limit": 0, "usage": 0, "max": 0, "failcnt": 0}
    return {
        "cpu": {
            "usage": {"total": 0, "percpu": [], "percpu_kernel": [], "percpu_user": [],
                      "kernel": 0, "user": 0},
            "throttling": {"periods": 0, "throttledPeriods": 0, "throttledTime": 0},
        },
        "cpuset": {"cpus": [], "cpu_exclusive": 0, "mems": [], "mem_hardwall": 0, "mem_exclusive": 0,
                   "memory_migrate": 0, "memory_spread_page": 0, "memory_spread_slab": 0,
                   "memory_pressure": 0, "sched_load_balance": 0, "sched_relax_domain_level": 0},
        "memory": {"cache": 0, "usage": mem_entry(), "swap": mem_entry(), "kernel": mem_entry(),
                   "kernelTCP": mem_entry(), "raw": {}},
        "pids": {"current": 0, "limit": 0},
        "blkio": {},
        "hugetlb": {},
        "intel_rdt": {},
        "network_interfaces": None,
    }


# Fields that runc's JSON marks `omitempty`: dropped when zero/empty so our
# output matches `runc events --stats` byte for byte in shape.
_OMIT = {
    ("cpu", "usage"): ("total", "percpu", "percpu_kernel", "percpu_user"),
    ("cpu", "throttling"): ("periods", "throttledPeriods", "throttledTime"),
    ("cpuset",): ("cpus", "mems"),
    ("memory",): ("cache", "raw"),
    ("memory", "usage"): ("usage", "max"),
    ("memory", "swap"): ("usage", "max"),
    ("memory", "kernel"): ("usage", "max"),
    ("memory", "kernelTCP"): ("usage", "max"),
    ("pids",): ("current", "limit"),
}


# runc's types.Blkio field order (Go writes a struct's fields in order).
_BLKIO_ORDER = ("ioServiceBytesRecursive", "ioServicedRecursive", "ioQueueRecursive", "ioServiceTimeRecursive",
                "ioWaitTimeRecursive", "ioMergedRecursive", "ioTimeRecursive", "sectorsRecursive")


def runc_shape(st: dict) -> dict:
    """Drop omitempty fields in place (and in blkio/hugetlb entries), put
    blkio's keys in runc's struct order and the keys of what runc holds in
    Go maps (memory.raw, hugetlb) sorted, as Go's encoder writes them;
    returns st."""
    for path, keys in _OMIT.items():
        d = st
        for p in path:
            d = d.get(p, {})
        for k in keys:
            if k in d and not d[k]:
                del d[k]
    for k in list(st.get("blkio", {})):
        entries = st["blkio"][k]
        if not entries:
            del st["blkio"][k]
            continue
        for e in entries:
            for f in ("major", "minor", "op", "value"):
                if f in e and not e[f]:
                    del e[f]
    for h in st.get("hugetlb", {}).values():
        for f in ("usage", "max"):
            if f in h and not h[f]:
                del h[f]
    if st.get("blkio"):
        b = st["blkio"]
        st["blkio"] = {k: b[k] for k in sorted(b, key=lambda k: (_BLKIO_ORDER + (k,)).index(k))}
    mem = st.get("memory") or {}
    if mem.get("raw"):
        mem["raw"] = {k: mem["raw"][k] for k in sorted(mem["raw"])}
    if st.get("hugetlb"):
        st["hugetlb"] = {k: st["hugetlb"][k] for k in sorted(st["hugetlb"])}
    return st


class Manager:
    """Interface every cgroup manager implements (see package docstring)."""

    version = "?"
    null = False  # NullManager: no cgroup at all

    def create(self, cgroup2_only: bool = False) -> list[str]:
        """mkdir the container's cgroup (idempotent); returns warnings. With
        cgroup2_only, only the checks and cgroup2_dir(), which a process is
        cloned into, and create_rest() makes the rest later: `create` forks
        stage1 in between, so the v1 directories are made while it loads."""
        raise NotImplementedError

    def create_rest(self) -> None:
        """What create(cgroup2_only=True) left out (idempotent, no checks)."""

    def add_task(self, pid: int) -> None:
        """Move process `pid` in. Raises CgroupError; its errno is ESRCH when
        the process no longer exists."""
        raise NotImplementedError

    def cgroup2_dir(self) -> str | None:
        """The cgroup2 directory a process can be cloned into (sc.clone3 with CLONE_INTO_CGROUP):
        the container's cgroup on v2, its unified part on hybrid, None on v1."""
        return None

    def join_self(self, in_cgroup2: bool = False) -> None:
        """Move the calling process into the container's cgroup; with
        in_cgroup2 it was cloned into cgroup2_dir() already. The caller must
        be single-threaded (v1 moves the calling thread)."""
        raise NotImplementedError

    def apply(self, resources: dict) -> list[str]: raise NotImplementedError
    def freeze(self) -> None: raise NotImplementedError
    def thaw(self) -> None: raise NotImplementedError
    def is_frozen(self) -> bool: raise NotImplementedError
    def pids(self) -> list[int]: raise NotImplementedError
    def stats(self) -> dict: raise NotImplementedError
    def oom_watcher(self): raise NotImplementedError
    def oom_kill_count(self) -> int: raise NotImplementedError
    def destroy(self) -> None: raise NotImplementedError
    def exists(self) -> bool: raise NotImplementedError
    def to_state(self) -> dict: raise NotImplementedError


class NullManager(Manager):
    """The manager of a container without a cgroup (rootless, where none was
    delegated): nothing to make, join, limit or remove."""

    version = "none"
    null = True

    def create(self, cgroup2_only: bool = False) -> list[str]:
        return []

    def add_task(self, pid: int) -> None:
        pass

    def join_self(self, in_cgroup2: bool = False) -> None:
        pass

    def apply(self, resources: dict) -> list[str]:
        return []

    def pids(self) -> list[int]:
        return []

    def is_frozen(self) -> bool:
        return False

    def destroy(self) -> None:
        pass

    def exists(self) -> bool:
        return False

    def to_state(self) -> None:
        return None
