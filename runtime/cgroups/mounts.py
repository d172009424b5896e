"""What a container sees of cgroups: its "cgroup" mounts (cgroup_mounter:
the v2 tree or each v1 hierarchy, bound from the host where the container
has no cgroup namespace of its own), and the parent directories a create
makes (missing_parents), which delete removes again."""
from runtime.toolkit import os_lite as os

from runtime import state as st
from runtime.errors import RuntimeFailure


def cgroup_mounter(own_ns: bool, cgroup_state: dict | None, mounts: list[dict]):
    """Return the function init calls for a mount of type "cgroup".

    Everything is worked out here, in the parent: the host's hierarchies
    and, for each, the container's own cgroup directory. With a cgroup
    namespace, fresh cgroup filesystems show that directory as their root;
    without one (or where a user namespace forbids mounting a v1
    hierarchy) the directory itself is bind-mounted. A hierarchy the
    container has no cgroup in (rootless) is left empty, never the host's."""
    hier = host_hierarchies(mounts)
    dirs = st.cgroup_dirs(cgroup_state)

    def own_dir(mnt: str) -> str | None:
        return next((d for d in dirs if d == mnt or d.startswith(mnt + "/")), None)

    def bind(src, dst, flags, base, label):
        from runtime import syscalls as sc
        sc.mount(src, dst, None, sc.MS_BIND | sc.MS_REC, None, label=label)
        if flags & sc.MS_RDONLY:
            sc.mount(None, dst, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | base, None, label=label)

    def mount_cgroups(rootfd: int, dest: str, target: str, flags: int, label: str) -> None:
        from runtime import rootfs
        from runtime import syscalls as sc
        base = flags & ~(sc.MS_RDONLY | sc.MS_BIND | sc.MS_REC | sc.MS_REMOUNT)
        v2root = next((h for h in hier if h[1] == "cgroup2" and h[0] == "/sys/fs/cgroup"), None)
        if v2root:
            src = own_dir(v2root[0])
            if own_ns:
                sc.mount("cgroup2", target, "cgroup2", flags, None, label=label)
            elif src:
                # `target` names the directory the bind covers: the
                # read-only remount needs the new mount, reopened.
                sc.mount(src, target, None, sc.MS_BIND | sc.MS_REC, None, label=label)
                if flags & sc.MS_RDONLY:
                    fd = rootfs.resolve(rootfd, dest)
                    try:
                        sc.mount(None, rootfs.fd_path(fd), None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | base,
                                 None, label=label)
                    finally:
                        os.close(fd)
            return
        sc.mount("tmpfs", target, "tmpfs", base, "mode=755", label=label)
        # The old fd still names the directory under the tmpfs: reopen.
        fd = rootfs.resolve(rootfd, dest)
        try:
            _mount_v1_tree(rootfs.fd_path(fd), flags, base, label)
        finally:
            os.close(fd)

    def _mount_v1_tree(target, flags, base, label):
        from runtime import syscalls as sc
        for mnt, fstype, opts, name in hier:
            sub = os.path.join(target, name)
            os.makedirs(sub, exist_ok=True)
            src = own_dir(mnt)
            if src is None:
                continue
            if own_ns:
                try:
                    sc.mount("cgroup", sub, fstype, flags & ~sc.MS_BIND, None if fstype == "cgroup2" else opts,
                             label=f"{label}/{name}")
                    continue
                except PermissionError:
                    pass  # a user namespace cannot mount a v1 hierarchy: bind it below
            bind(src, sub, flags, base, f"{label}/{name}")
        for name, link in host_cgroup_links():
            try:
                os.symlink(link, os.path.join(target, name))
            except FileExistsError:
                pass
        if flags & sc.MS_RDONLY:
            sc.mount(None, target, None, sc.MS_REMOUNT | sc.MS_RDONLY | base, "mode=755", label=label)

    return mount_cgroups


def missing_parents(dirs: list[str]) -> list[str]:
    """Ancestors of `dirs` that do not exist yet, deepest first."""
    out = []
    for d in dirs:
        p = os.path.dirname(d)
        while p not in ("/", "") and not os.path.exists(p):
            if p not in out:
                out.append(p)
            p = os.path.dirname(p)
    return sorted(out, key=lambda x: -x.count("/"))


def host_hierarchies(mounts: list[dict]) -> list[tuple[str, str, str, str]]:
    """(mountpoint, fstype, controller options, name under /sys/fs/cgroup)
    of the host's cgroup mounts; `mounts` is read_mountinfo()'s."""
    return [(m["mountpoint"], m["fstype"], ",".join(m["controllers"]), os.path.basename(m["mountpoint"]))
            for m in mounts if m["mountpoint"].startswith("/sys/fs/cgroup")]


def host_cgroup_links() -> list[tuple[str, str]]:
    out = []
    try:
        for n in os.listdir("/sys/fs/cgroup"):
            p = os.path.join("/sys/fs/cgroup", n)
            if os.path.islink(p):
                out.append((n, os.readlink(p)))
    except OSError:
        pass
    return out
