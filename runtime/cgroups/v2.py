"""cgroup v2 (unified hierarchy) manager."""

from runtime.toolkit import os_lite as os
import time

from .procs import tree_pids
from .base import Manager, empty_stats, runc_shape
from .common import (ENODEV, ENOENT, CgroupError, create_v2_path, hugepage_sizes, kill_pids,
                     read_file, read_kv, refuse_frozen, remove_if_empty, remove_paths, wait_empty, write_file)


class V2Manager(Manager):
    """Manages one container cgroup in a cgroup2 hierarchy.

    ``path`` is the container dir, ``mount`` the cgroup2 mountpoint it
    lives under. ``devices_prog`` is the id of the eBPF device program we
    attached last (informational; replacement queries the kernel)."""

    version = "v2"

    def __init__(self, path: str, mount: str):
        self.path_ = path
        self.mount = mount

    def path(self, _controller: str = "") -> str:
        return self.path_

    def exists(self) -> bool:
        return os.path.isdir(self.path_)

    def create(self, cgroup2_only: bool = False) -> list[str]:
        """mkdir (idempotent; all of it is cgroup2). Refuses, before making
        anything, a cgroup that is frozen or below one that is
        (common.refuse_frozen); an existing one with processes yields a
        warning (runc 1.1).

        Usual order: create(), apply(resources), then the process joins
        (join_self, or add_task(pid) from outside), so limits hold before it
        runs (a realtime task can only join a cgroup that already has an RT
        budget). On error, destroy() rolls back."""
        warnings = []
        refuse_frozen(self.path_, self.mount, True)
        if self.exists():
            pids = self.pids()
            if pids:
                warnings.append(f"container's cgroup is not empty: {len(pids)} process(es) found")
        create_v2_path(self.mount, self.path_)
        return warnings

    def add_task(self, pid: int) -> None:
        """Move process `pid` in; pid 0 is the calling process."""
        try:
            write_file(self.path_, "cgroup.procs", str(pid))
        except CgroupError as e:
            who = f"pid {pid}" if pid else "this process"
            err = CgroupError(f"cannot add {who} to {self.path_}: {str(e).split(': ')[-1]}")
            err.errno = getattr(e, "errno", None)  # ESRCH: the process is gone
            raise err from None

    def cgroup2_dir(self) -> str | None:
        return self.path_

    def join_self(self, in_cgroup2: bool = False) -> None:
        if not in_cgroup2:
            # pid 0: the writing process, in whatever pid namespace it is
            # (one cloned into a new namespace is pid 1 there).
            self.add_task(0)

    def apply(self, resources: dict) -> list[str]:
        """Write OCI linux.resources with runc's v1->v2 conversions.
        Returns warnings for values with no v2 equivalent."""
        from . import v2_writers as w2
        res = resources or {}
        d = self.path_
        warnings: list[str] = []
        for fn in (w2.set_pids, w2.set_memory, w2.set_io, w2.set_cpu, w2.set_devices, w2.set_cpuset,
                   w2.set_hugetlb, w2.set_rdma, w2.set_network, w2.set_unified):
            warnings += fn(d, res)
        return warnings

    # ------------------------------------------------------------ freezer
    def freeze(self) -> None:
        self._set_freeze("1")

    def thaw(self) -> None:
        self._set_freeze("0")

    def _set_freeze(self, v: str) -> None:
        try:
            write_file(self.path_, "cgroup.freeze", v, what="freezer")
        except CgroupError as e:
            if v == "0" and getattr(e, "errno", None) == ENOENT:
                return
            raise
        if v == "1" and not self._wait_frozen(True):
            try:
                write_file(self.path_, "cgroup.freeze", "0")
            except CgroupError:
                pass
            raise CgroupError(f"timeout waiting for {os.path.join(self.path_, 'cgroup.events')} to report frozen 1")

    def _wait_frozen(self, want: bool, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            try:
                ev = read_kv(self.path_, "cgroup.events")
            except OSError:
                return False
            if bool(ev.get("frozen", 0)) == want:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)

    def is_frozen(self) -> bool:
        try:
            if read_file(self.path_, "cgroup.freeze").strip() != "1":
                return False
        except OSError as e:
            if e.errno in (ENOENT, ENODEV):
                return False
            raise
        # Frozen was requested: report it once the kernel has got there.
        return self._wait_frozen(True)

    # --------------------------------------------------------------- pids
    def pids(self) -> list[int]:
        return tree_pids([self.path_])

    def stats(self) -> dict:
        from . import v2_writers as w2
        st = empty_stats()
        d = self.path_
        w2.stat_pids(d, st)
        w2.stat_memory(d, st)
        w2.stat_io(d, st)
        w2.stat_cpu(d, st)
        w2.stat_hugetlb(d, st, hugepage_sizes())
        return runc_shape(st)

    def oom_watcher(self):
        from .oom import OOMWatcherV2
        return OOMWatcherV2(self.path_)

    def oom_kill_count(self) -> int:
        try:
            return read_kv(self.path_, "memory.events").get("oom_kill", 0)
        except FileNotFoundError:
            return 0

    def destroy(self) -> None:
        """Kill everything (cgroup.kill where the kernel has it), wait until
        empty, rmdir the tree. Idempotent."""
        if remove_if_empty([self.path_]):
            return
        if self.is_frozen():
            # SIGKILL is delivered to frozen tasks on v2, but thaw anyway
            # so nothing waits on us in the fridge.
            self.thaw()
        for _ in range(3):
            if not self.pids():
                break
            if os.path.exists(os.path.join(self.path_, "cgroup.kill")):
                try:
                    write_file(self.path_, "cgroup.kill", "1")
                except CgroupError:
                    kill_pids(self.pids())
            else:
                kill_pids(self.pids())
            if wait_empty(self.pids, timeout=10.0):
                break
        else:
            left = self.pids()
            if left:
                raise CgroupError(f"processes {left[:5]} survived SIGKILL in {self.path_}")
        remove_paths([self.path_])

    def to_state(self) -> dict:
        return {"version": "v2", "path": self.path_, "mount": self.mount}

    @classmethod
    def from_state(cls, d: dict) -> "V2Manager":
        return cls(d["path"], d["mount"])
