"""Cgroup management for pyrunc (cgroup v1, hybrid v1+unified, and v2).

Entry points:

    detect_layout(root)                      -> "v1" | "hybrid" | "v2"
    open_manager(cgroups_path, container_id, root=..., systemd=False) -> Manager
    manager_from_state(dict)                 -> Manager (from Manager.to_state())
    features()                               -> runtime-spec features linux.cgroup
    resolve_paths(...)                       -> where a container's cgroup lives
    surely_thawed(dict)                      -> the freezer file of a to_state() says "not frozen"
    pids(dict)                               -> the pids of a to_state()'s cgroup and its sub-cgroups

Manager methods: create, add_task, cgroup2_dir, join_self, apply, freeze,
thaw, is_frozen, pids, stats, oom_watcher, oom_kill_count,
destroy, exists, to_state. All raise common.CgroupError (one line naming the path/field).

cgroupsPath semantics follow runc 1.1 (cgroupfs driver): the path is
cleaned so '..' cannot escape; an absolute path is taken below each
hierarchy's mountpoint; a relative one below the runtime's own cgroup
(v1: own cgroup of each controller; v2: the *parent* of our own cgroup,
since our own one already has processes); no path means the container id
as a relative path.

Only this module loads at import, so that `state` and `kill` can call
surely_thawed() for the price of one small module (and `ps` pids(), with
.procs, the reader the managers share): .common (where
CgroupError lives), the managers, writers and bpf code are imported when
first used.
"""

from runtime.toolkit import os_lite as os

DEFAULT_ROOT = "/sys/fs/cgroup"

__all__ = ["detect_layout", "open_manager", "manager_from_state", "features", "resolve_paths",
           "surely_thawed", "pids"]


def detect_layout(root: str = DEFAULT_ROOT, *, mountinfo: str = "/proc/self/mountinfo") -> str:
    """'v2' if ``root`` is a cgroup2 mount, 'hybrid' if v1 hierarchies are
    mounted below it together with a cgroup2 one (root/unified), else 'v1'.
    One read of mountinfo."""
    from .common import read_mountinfo
    root = os.path.normpath(root)
    mounts = read_mountinfo(mountinfo)
    return _layout(root, mounts)


def _layout(root: str, mounts: list[dict]) -> str:
    has_v1 = False
    has_unified = False
    for m in mounts:
        mp = os.path.normpath(m["mountpoint"])
        if m["fstype"] == "cgroup2" and mp == root:
            return "v2"
        if os.path.dirname(mp) != root:
            continue
        if m["fstype"] == "cgroup":
            has_v1 = True
        elif m["fstype"] == "cgroup2":
            has_unified = True
    if has_v1:
        return "hybrid" if has_unified else "v1"
    from .common import CgroupError
    raise CgroupError(f"no cgroup hierarchy mounted at {root}")


def _inner(cgroups_path: str | None, container_id: str) -> str:
    from .common import CgroupError, clean_path
    if cgroups_path:
        inner = clean_path(cgroups_path)
    else:
        inner = clean_path(container_id)
    if not inner or inner == "/":
        raise CgroupError(f"cgroupsPath {cgroups_path!r}: resolves to the hierarchy root")
    return inner


def resolve_paths(cgroups_path: str | None, container_id: str, *, root: str = DEFAULT_ROOT,
                  mounts: list[dict] | None = None, own: dict[str, str] | None = None) -> dict:
    """Compute where the container's cgroup lives (no filesystem changes).

    Returns {"layout", "paths" (v1 controller -> dir), "mounts" (controller
    -> mountpoint), "unified", "unified_mount"} for v1/hybrid, or
    {"layout": "v2", "path", "mount"}. ``mounts``/``own`` default to this
    process's mountinfo and /proc/self/cgroup (tests pass their own)."""
    from .common import own_cgroups, read_mountinfo
    root = os.path.normpath(root)
    if mounts is None:
        mounts = read_mountinfo()
    if own is None:
        own = own_cgroups()
    layout = _layout(root, mounts)
    inner = _inner(cgroups_path, container_id)

    def under(m: dict, own_path: str | None, parent: bool) -> str:
        mp = os.path.normpath(m["mountpoint"])
        if inner.startswith("/"):
            return os.path.normpath(mp + inner)
        base = own_path or "/"
        if parent:
            base = os.path.dirname(base.rstrip("/")) or "/"
        # Our cgroup as seen from this mount (differs from / inside a
        # container whose cgroup namespace/bind mount starts lower).
        rel = os.path.relpath(base, m["root"] or "/")
        if rel.startswith(".."):
            rel = "."
        return os.path.normpath(os.path.join(mp, rel, inner))

    if layout == "v2":
        m = next(m for m in mounts if m["fstype"] == "cgroup2" and os.path.normpath(m["mountpoint"]) == root)
        return {"layout": "v2", "path": under(m, own.get(""), True), "mount": os.path.normpath(m["mountpoint"])}

    paths: dict[str, str] = {}
    mnts: dict[str, str] = {}
    unified = unified_mount = None
    for m in mounts:
        mp = os.path.normpath(m["mountpoint"])
        if os.path.dirname(mp) != root:
            continue
        if m["fstype"] == "cgroup2":
            unified_mount = mp
            # runc's v1 manager joins the unified hierarchy at its *own*
            # cgroup there (not the parent), like any v1 hierarchy.
            unified = under(m, own.get(""), False)
            continue
        for c in m["controllers"]:
            if c in paths:
                continue
            paths[c] = under(m, own.get(c), False)
            mnts[c] = mp
    return {"layout": layout, "paths": paths, "mounts": mnts, "unified": unified,
            "unified_mount": unified_mount}


def _systemd_running() -> bool:
    # sd_booted(): systemd creates this directory early at boot.
    return os.path.isdir("/run/systemd/system")


def open_manager(cgroups_path: str | None, container_id: str, *, root: str = DEFAULT_ROOT,
                 systemd: bool = False, mounts: list[dict] | None = None,
                 own: dict[str, str] | None = None):
    """Manager for a container's cgroup (nothing is created until create()).

    systemd=True needs a running systemd and the systemd driver, which
    pyrunc does not implement: both cases raise CgroupError."""
    if systemd:
        from .common import CgroupError
        if not _systemd_running():
            raise CgroupError("systemd cgroup driver requested (--systemd-cgroup) but systemd is not running "
                              "(/run/systemd/system does not exist)")
        raise CgroupError("systemd cgroup driver requested (--systemd-cgroup) but pyrunc only implements the "
                          "cgroupfs driver")
    r = resolve_paths(cgroups_path, container_id, root=root, mounts=mounts, own=own)
    if r["layout"] == "v2":
        from .v2 import V2Manager
        return V2Manager(r["path"], r["mount"])
    from .v1 import V1Manager
    uctrls: list[str] = []
    if r["unified"]:
        try:
            with open(os.path.join(r["unified_mount"], "cgroup.controllers")) as f:
                uctrls = f.read().split()
        except OSError:
            uctrls = []
    return V1Manager(r["paths"], r["mounts"], r["unified"], r["unified_mount"], uctrls)


def manager_from_state(d: dict):
    """Rebuild a manager from Manager.to_state() output (no syscalls)."""
    if d.get("version") == "v2":
        from .v2 import V2Manager
        return V2Manager.from_state(d)
    if d.get("version") in ("v1", "hybrid"):
        from .v1 import V1Manager
        return V1Manager.from_state(d)
    from .common import CgroupError
    raise CgroupError(f"unknown cgroup manager state version {d.get('version')!r}")


def surely_thawed(state: dict) -> bool:
    """True when the cgroup that a manager's to_state() `state` describes
    says, in its own freezer file, that it is not frozen (v1 freezer.state
    THAWED, v2 cgroup.freeze 0): the usual answer for a running container,
    asked by every `state` and `kill`, read without loading a manager.
    False means "ask the manager" (is_frozen): frozen, freezing, no
    freezer, or a file that cannot be read."""
    if state.get("version") == "v2":
        d, name, thawed = state.get("path"), "cgroup.freeze", "0"
    else:
        d, name, thawed = (state.get("paths") or {}).get("freezer"), "freezer.state", "THAWED"
    if not d:
        return False
    try:
        with open(f"{d}/{name}") as f:
            return f.read().strip() == thawed
    except OSError:
        return False


def pids(state: dict) -> list[int]:
    """Every pid in the cgroup that a manager's to_state() `state`
    describes and in its sub-cgroups, across hierarchies, sorted: what the
    manager's pids() returns, read without loading a manager (containerd's
    shim asks for them with `ps --format json`)."""
    from .procs import tree_pids
    version = state.get("version")
    if version == "v2":
        return tree_pids([state["path"]])
    if version in ("v1", "hybrid"):
        dirs = list(dict.fromkeys((state.get("paths") or {}).values()))  # co-mounted controllers share one
        if state.get("unified"):
            dirs.append(state["unified"])
        return tree_pids(dirs)
    return manager_from_state(state).pids()  # (an unknown version: its error)


def features() -> dict:
    """linux.cgroup of the runtime-spec features document: which cgroup
    setups this runtime can drive (a static capability, not what this host
    runs; runc reports the same way)."""
    return {"v1": True, "v2": True, "systemd": False, "systemdUser": False, "rdma": True}
