"""cgroup v1 manager, including hybrid mode (v1 controllers plus a cgroup2
'unified' hierarchy holding whatever controllers live only there)."""

from runtime.toolkit import os_lite as os
import time

# The writers are imported inside the methods that need them: delete and
# pause only reopen a manager and never pay for parsing them.
from .procs import tree_pids
from .base import Manager, empty_stats, runc_shape
from .common import (ENODEV, ENOENT, CgroupError, create_v2_path, hugepage_sizes, kill_pids,
                     read_file, refuse_frozen, remove_if_empty, remove_paths, wait_empty, write_file)


class V1Manager(Manager):
    """Manages one container cgroup across every v1 hierarchy.

    ``paths`` maps controller name ('memory', 'cpu', 'name=systemd', ...)
    to the container's directory in that hierarchy; ``mounts`` maps the
    controller to its hierarchy's mountpoint (needed for cpuset parents).
    ``unified`` is the container's dir in the cgroup2 hierarchy in hybrid
    mode (None on pure v1); ``unified_controllers`` what that hierarchy
    offers (e.g. {'hugetlb'} on this kind of machine).
    """

    version = "v1"

    def __init__(self, paths: dict[str, str], mounts: dict[str, str], unified: str | None = None,
                 unified_mount: str | None = None, unified_controllers=()):
        self.paths = dict(paths)
        self.mounts = dict(mounts)
        self.unified = unified
        self.unified_mount = unified_mount
        self.unified_controllers = set(unified_controllers)
        if unified:
            self.version = "hybrid"

    # ------------------------------------------------------------ helpers
    def path(self, controller: str) -> str | None:
        return self.paths.get(controller)

    def _dirs(self) -> list[str]:
        """Distinct dirs (co-mounted controllers share one), unified last."""
        out = list(dict.fromkeys(self.paths.values()))
        if self.unified:
            out.append(self.unified)
        return out

    def exists(self) -> bool:
        return any(os.path.isdir(d) for d in self._dirs())

    # ------------------------------------------------------------- create
    def create(self, cgroup2_only: bool = False) -> list[str]:
        """mkdir the container cgroup in every hierarchy (idempotent); with
        cgroup2_only, only the unified one (see Manager.create).

        Refuses (CgroupError) a cgroup that is frozen, by the v1 freezer or
        the unified hierarchy's cgroup.freeze, itself or through an ancestor
        (common.refuse_frozen), before it makes anything; an existing one
        that already holds processes only yields a warning, as in runc 1.1.
        Returns the warnings.

        Usual order: create(), apply(resources), then the process joins
        (join_self, or add_task(pid) from outside), so limits hold before it
        runs (a realtime task can only join a cgroup that already has an RT
        budget). On error, destroy() rolls back."""
        warnings: list[str] = []
        if "freezer" in self.paths:
            refuse_frozen(self.paths["freezer"], self.mounts.get("freezer") or "/", False)
        if self.unified:
            refuse_frozen(self.unified, self.unified_mount, True)
        if self.exists():
            pids = self.pids()
            if pids:
                warnings.append(f"container's cgroup is not empty: {len(pids)} process(es) found")
        if self.unified:
            create_v2_path(self.unified_mount, self.unified)
        if not cgroup2_only:
            self.create_rest()
        return warnings

    def create_rest(self) -> None:
        from . import v1_writers as w1
        for ctrl, d in self.paths.items():
            try:
                if ctrl == "cpuset":
                    # New cpusets start empty and refuse tasks; fill every level.
                    w1.cpuset_ensure_parents(d, self.mounts[ctrl])
                else:
                    os.makedirs(d, 0o755, exist_ok=True)
            except OSError as e:
                raise CgroupError(f"mkdir {d}: {os.strerror(e.errno)}") from None

    def add_task(self, pid: int) -> None:
        """Move ``pid`` (the whole process) into every hierarchy."""
        for d in self._dirs():
            _write_procs(d, pid)

    def cgroup2_dir(self) -> str | None:
        return self.unified

    def join_self(self, in_cgroup2: bool = False) -> None:
        """Move the calling, single-threaded process into every hierarchy.

        v1 hierarchies are joined by writing "0" (this thread) to `tasks`:
        for a thread moving itself the kernel skips the threadgroup lock
        and with it the RCU grace period a cgroup.procs write waits for
        (docs/performance.md). With one thread, the thread is the
        process. The unified dir is joined through cgroup.procs, unless the
        process was cloned into it (in_cgroup2)."""
        pid = os.getpid()
        for d in dict.fromkeys(self.paths.values()):
            _write_procs(d, pid, "tasks", "0")
        if self.unified and not in_cgroup2:
            # "0" is the writing process, in whatever pid namespace it is
            # (one cloned into a new namespace is pid 1 there).
            _write_procs(self.unified, pid, value="0")

    # -------------------------------------------------------------- apply
    def apply(self, resources: dict) -> list[str]:
        """Write OCI linux.resources to every hierarchy that has the
        controller; on hybrid, controllers only present in the unified
        hierarchy are written there with the v2 writers. Returns warnings."""
        from . import v1_writers as w1
        res = resources or {}
        warnings: list[str] = []
        if res.get("unified"):
            self._check_unified_keys(res)  # refuse before writing anything
        mem = res.get("memory") or {}
        mem_set = any(mem.get(k) not in (None, 0) for k in ("limit", "swap", "reservation", "kernel", "kernelTCP")) or \
            mem.get("disableOOMKiller") or (mem.get("swappiness") not in (None, -1))
        cpu_needs = w1.cpu_needs(res)
        b = res.get("blockIO") or {}
        steps = [
            # (v1 controller, is the value set?, v1 writer, v2 controller,
            #  v2 writer's name: v2_writers is imported only on hybrid hosts
            #  that need it)
            ("cpuset", "cpuset" in cpu_needs, w1.set_cpuset, "cpuset", "set_cpuset"),
            ("devices", res.get("devices") is not None, w1.set_devices, None, "set_devices"),
            ("memory", bool(mem_set), w1.set_memory, "memory", "set_memory"),
            ("cpu", "cpu" in cpu_needs, w1.set_cpu, "cpu", "set_cpu"),
            ("pids", bool((res.get("pids") or {}).get("limit")), w1.set_pids, "pids", "set_pids"),
            ("blkio", any(b.get(k) for k in b), w1.set_blkio, "io", "set_io"),
            ("hugetlb", bool(res.get("hugepageLimits")), w1.set_hugetlb, "hugetlb", "set_hugetlb"),
            ("net_cls", "net_cls" in w1.network_needs(res), w1.set_net_cls, None, None),
            ("net_prio", "net_prio" in w1.network_needs(res), w1.set_net_prio, None, None),
            ("rdma", bool(res.get("rdma")), w1.set_rdma, "rdma", "set_rdma"),
        ]
        for ctrl, is_set, v1w, v2ctrl, v2w in steps:
            d = self.paths.get(ctrl)
            if d is not None:
                if is_set or ctrl == "devices":
                    warnings += v1w(d, res)
                continue
            if not is_set:
                continue
            if self.unified and v2w is not None and (v2ctrl in self.unified_controllers or ctrl == "devices"):
                # Hybrid: this controller exists only on the cgroup2 side.
                from . import v2_writers as w2
                warnings += getattr(w2, v2w)(self.unified, res)
                continue
            raise CgroupError(f"cannot set {ctrl} limits: the {ctrl} cgroup controller is not mounted "
                              f"(no v1 hierarchy{' and not in the unified hierarchy' if self.unified else ''})")
        if res.get("unified"):
            # Last, as on v2: raw unified values override converted ones.
            from . import v2_writers as w2
            warnings += w2.set_unified(self.unified, res)
        return warnings

    def _check_unified_keys(self, res: dict) -> None:
        if not self.unified:
            raise CgroupError("invalid configuration: linux.resources.unified: cannot be used with cgroup v1 "
                              "(the host is not on cgroup v2)")
        for k in res["unified"]:
            ctrl = k.partition(".")[0]
            if ctrl != "cgroup" and ctrl not in self.unified_controllers:
                # (runc's validator words such refusals "invalid configuration")
                raise CgroupError(f"invalid configuration: linux.resources.unified[{k!r}]: controller {ctrl!r} is "
                                  f"not in the unified hierarchy of this hybrid host ({self.unified_mount})")

    # ------------------------------------------------------------- freezer
    def freeze(self) -> None:
        """Freeze and wait until the kernel reports FROZEN (retrying
        FREEZING like runc; on failure the cgroup is thawed again)."""
        d = self.paths.get("freezer")
        if not d:
            raise CgroupError("cannot freeze: the freezer cgroup controller is not mounted")
        try:
            for i in range(1000):
                if i % 50 == 49:
                    # A task stuck in a syscall can hold FREEZING forever;
                    # a thaw/freeze cycle lets it reach the fridge.
                    write_file(d, "freezer.state", "THAWED")
                    time.sleep(0.01)
                write_file(d, "freezer.state", "FROZEN")
                if i % 25 == 24:
                    time.sleep(0.00001)
                state = read_file(d, "freezer.state").strip()
                if state == "FROZEN":
                    return
                if state != "FREEZING":
                    raise CgroupError(f"unexpected freezer state {state!r} in {d}")
            raise CgroupError(f"unable to freeze {d}")
        except BaseException:
            try:
                write_file(d, "freezer.state", "THAWED")
            except CgroupError:
                pass
            raise

    def thaw(self) -> None:
        d = self.paths.get("freezer")
        if not d:
            raise CgroupError("cannot thaw: the freezer cgroup controller is not mounted")
        write_file(d, "freezer.state", "THAWED")

    def is_frozen(self) -> bool:
        """True when this cgroup itself is frozen (not merely a parent)."""
        d = self.paths.get("freezer")
        if not d:
            return False
        deadline = time.monotonic() + 10.0
        while True:
            try:
                state = read_file(d, "freezer.state").strip()
            except OSError as e:
                if e.errno in (ENOENT, ENODEV):
                    return False
                raise
            if state == "FREEZING":
                # Someone is freezing it; report frozen if it never settles
                # (so destroy() still thaws before killing).
                if time.monotonic() > deadline:
                    return True
                time.sleep(0.001)
                continue
            if state != "FROZEN":
                return False
            try:
                return read_file(d, "freezer.self_freezing").strip() == "1"
            except OSError:
                return True

    # --------------------------------------------------------------- pids
    def pids(self) -> list[int]:
        """Every pid in the container cgroup and below, across hierarchies."""
        return tree_pids(self._dirs())

    # -------------------------------------------------------------- stats
    def stats(self) -> dict:
        from . import v1_writers as w1
        from . import v2_writers as w2
        st = empty_stats()
        p = self.paths
        if "cpu" in p:
            w1.stat_cpu(p["cpu"], st)
        if "cpuacct" in p:
            w1.stat_cpuacct(p["cpuacct"], st)
        if "cpuset" in p:
            w1.stat_cpuset(p["cpuset"], st)
        if "memory" in p:
            w1.stat_memory(p["memory"], st)
        if "pids" in p:
            w1.stat_pids(p["pids"], st)
        if "blkio" in p:
            w1.stat_blkio(p["blkio"], st)
        sizes = hugepage_sizes()
        if "hugetlb" in p:
            w1.stat_hugetlb(p["hugetlb"], st, sizes)
        elif self.unified and "hugetlb" in self.unified_controllers:
            w2.stat_hugetlb(self.unified, st, sizes)
        return runc_shape(st)

    # ---------------------------------------------------------------- oom
    def oom_watcher(self):
        from .oom import OOMWatcherV1
        d = self.paths.get("memory")
        if not d:
            raise CgroupError("OOM notification needs the memory cgroup controller, which is not mounted")
        return OOMWatcherV1(d)

    def oom_kill_count(self) -> int:
        d = self.paths.get("memory")
        if not d:
            return 0
        from .common import read_kv
        try:
            return read_kv(d, "memory.oom_control").get("oom_kill", 0)
        except FileNotFoundError:
            return 0

    # ------------------------------------------------------------ destroy
    def destroy(self) -> None:
        """Kill everything left (thawing first), then rmdir every
        hierarchy's dir. Idempotent; succeeds when already gone."""
        if remove_if_empty(self._dirs()):
            return
        if self.is_frozen():
            self.thaw()
        for _ in range(3):
            pids = self.pids()
            if not pids:
                break
            kill_pids(pids)
            if wait_empty(self.pids, timeout=10.0):
                break
        else:
            left = self.pids()
            if left:
                raise CgroupError(f"processes {left[:5]} survived SIGKILL in {self._dirs()[0]}")
        remove_paths(self._dirs())

    # -------------------------------------------------------------- state
    def to_state(self) -> dict:
        return {
            "version": self.version,
            "paths": dict(self.paths),
            "mounts": dict(self.mounts),
            "unified": self.unified,
            "unified_mount": self.unified_mount,
            "unified_controllers": sorted(self.unified_controllers),
        }

    @classmethod
    def from_state(cls, d: dict) -> "V1Manager":
        return cls(d["paths"], d.get("mounts") or {}, d.get("unified"), d.get("unified_mount"),
                   d.get("unified_controllers") or ())


def _write_procs(d: str, pid: int, name: str = "cgroup.procs", value: str | None = None) -> None:
    # EINTR/EAGAIN-free in practice; ESRCH means the pid is gone.
    try:
        write_file(d, name, value or str(pid))
    except CgroupError as e:
        err = CgroupError(f"cannot add pid {pid} to {d}: {str(e).split(': ')[-1]}")
        err.errno = getattr(e, "errno", None)  # ESRCH: the process is gone
        raise err from None
