"""Preparing the container's root filesystem inside its mount namespace.

Every destination path is resolved inside the rootfs with openat2(2)
RESOLVE_IN_ROOT, so a symlink in the image (say /proc -> /) can never make
us mount over a host path: the kernel resolves ".." and absolute links as if
the rootfs were "/". The mount then targets the resolved O_PATH fd through
/proc/self/fd.
"""
from runtime.toolkit import os_lite as os

from runtime import syscalls as sc
from runtime.errors import RuntimeFailure

_SET, _CLEAR = 1, 0
MOUNT_FLAGS = {
    "ro": (_SET, sc.MS_RDONLY), "rw": (_CLEAR, sc.MS_RDONLY),
    "nosuid": (_SET, sc.MS_NOSUID), "suid": (_CLEAR, sc.MS_NOSUID),
    "nodev": (_SET, sc.MS_NODEV), "dev": (_CLEAR, sc.MS_NODEV),
    "noexec": (_SET, sc.MS_NOEXEC), "exec": (_CLEAR, sc.MS_NOEXEC),
    "sync": (_SET, sc.MS_SYNCHRONOUS), "async": (_CLEAR, sc.MS_SYNCHRONOUS),
    "dirsync": (_SET, sc.MS_DIRSYNC), "remount": (_SET, sc.MS_REMOUNT),
    "mand": (_SET, sc.MS_MANDLOCK), "nomand": (_CLEAR, sc.MS_MANDLOCK),
    "atime": (_CLEAR, sc.MS_NOATIME), "noatime": (_SET, sc.MS_NOATIME),
    "diratime": (_CLEAR, sc.MS_NODIRATIME), "nodiratime": (_SET, sc.MS_NODIRATIME),
    "bind": (_SET, sc.MS_BIND), "rbind": (_SET, sc.MS_BIND | sc.MS_REC),
    "relatime": (_SET, sc.MS_RELATIME), "norelatime": (_CLEAR, sc.MS_RELATIME),
    "strictatime": (_SET, sc.MS_STRICTATIME), "nostrictatime": (_CLEAR, sc.MS_STRICTATIME),
    "lazytime": (_SET, sc.MS_LAZYTIME), "nolazytime": (_CLEAR, sc.MS_LAZYTIME),
    "nosymfollow": (_SET, sc.MS_NOSYMFOLLOW), "symfollow": (_CLEAR, sc.MS_NOSYMFOLLOW),
    "silent": (_SET, sc.MS_SILENT), "loud": (_CLEAR, sc.MS_SILENT),
    "iversion": (_SET, sc.MS_I_VERSION), "noiversion": (_CLEAR, sc.MS_I_VERSION),
    "defaults": (_SET, 0),
}
# Recursive mount attributes (mount_setattr with AT_RECURSIVE): (set, clear).
RECURSIVE_ATTRS = {
    "rro": (sc.MOUNT_ATTR_RDONLY, 0), "rrw": (0, sc.MOUNT_ATTR_RDONLY),
    "rnosuid": (sc.MOUNT_ATTR_NOSUID, 0), "rsuid": (0, sc.MOUNT_ATTR_NOSUID),
    "rnodev": (sc.MOUNT_ATTR_NODEV, 0), "rdev": (0, sc.MOUNT_ATTR_NODEV),
    "rnoexec": (sc.MOUNT_ATTR_NOEXEC, 0), "rexec": (0, sc.MOUNT_ATTR_NOEXEC),
    "rnodiratime": (sc.MOUNT_ATTR_NODIRATIME, 0), "rdiratime": (0, sc.MOUNT_ATTR_NODIRATIME),
    "rrelatime": (sc.MOUNT_ATTR_RELATIME, sc.MOUNT_ATTR__ATIME),
    "rnorelatime": (0, sc.MOUNT_ATTR__ATIME),
    "rnoatime": (sc.MOUNT_ATTR_NOATIME, sc.MOUNT_ATTR__ATIME),
    "ratime": (0, sc.MOUNT_ATTR__ATIME),
    "rstrictatime": (sc.MOUNT_ATTR_STRICTATIME, sc.MOUNT_ATTR__ATIME),
    "rnostrictatime": (0, sc.MOUNT_ATTR__ATIME),
    "rnosymfollow": (sc.MOUNT_ATTR_NOSYMFOLLOW, 0), "rsymfollow": (0, sc.MOUNT_ATTR_NOSYMFOLLOW),
}
PROPAGATION = {
    "private": sc.MS_PRIVATE, "rprivate": sc.MS_PRIVATE | sc.MS_REC,
    "shared": sc.MS_SHARED, "rshared": sc.MS_SHARED | sc.MS_REC,
    "slave": sc.MS_SLAVE, "rslave": sc.MS_SLAVE | sc.MS_REC,
    "unbindable": sc.MS_UNBINDABLE, "runbindable": sc.MS_UNBINDABLE | sc.MS_REC,
}
# Options that only tell the runtime something and must not reach the kernel.
_RUNTIME_ONLY = {"idmap", "ridmap", "tmpcopyup"} | set(RECURSIVE_ATTRS)

# File types (S_IFMT bits of st_mode, stat(7)): init loads this module
# after the fork, on create's critical path, where `stat` is not worth its
# import (docs/performance.md).
_S_IFMT, _S_IFDIR, _S_IFCHR, _S_IFBLK, _S_IFIFO = 0o170000, 0o040000, 0o020000, 0o060000, 0o010000
_S_IFREG, _S_IFLNK = 0o100000, 0o120000
from errno import EINVAL, EPERM

DEFAULT_DEVICES = [
    # path, type, major, minor, mode
    ("/dev/null", "c", 1, 3, 0o666), ("/dev/zero", "c", 1, 5, 0o666),
    ("/dev/full", "c", 1, 7, 0o666), ("/dev/random", "c", 1, 8, 0o666),
    ("/dev/urandom", "c", 1, 9, 0o666), ("/dev/tty", "c", 5, 0, 0o666),
]
DEV_SYMLINKS = [("/proc/self/fd", "/dev/fd"), ("/proc/self/fd/0", "/dev/stdin"),
                ("/proc/self/fd/1", "/dev/stdout"), ("/proc/self/fd/2", "/dev/stderr")]


def parse_options(options: list[str] | None) -> tuple[int, int, list[str], set[str]]:
    """Split OCI mount options into (flags, propagation flags, fs data, runtime-only opts)."""
    flags = 0
    prop = 0
    data = []
    special = set()
    for o in options or ():
        if o in MOUNT_FLAGS:
            how, bit = MOUNT_FLAGS[o]
            flags = flags | bit if how == _SET else flags & ~bit
        elif o in PROPAGATION:
            prop |= PROPAGATION[o]
        elif o in _RUNTIME_ONLY:
            special.add(o)
        else:
            data.append(o)
    return flags, prop, data, special


def fd_path(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


def resolve(rootfd: int, path: str, *, create: str | None = None, label: str = "",
            _depth: int = 0) -> int:
    """Open `path` inside the rootfs as an O_PATH fd without ever leaving it.

    With create="dir" or "file", missing components are made (directories
    0755, a final file 0755 for file bind mounts, runc's modes). A
    dangling symlink on the way is followed by hand as runc's securejoin
    does: its target is taken inside the rootfs (an absolute one from the
    rootfs' top, a relative one from the link's directory, ".." never
    above the top), so the new directory is made where the link points
    *inside* the rootfs. The caller closes the fd."""
    rel = path.strip("/")
    how = sc.RESOLVE_IN_ROOT | sc.RESOLVE_NO_MAGICLINKS
    if not rel:
        return os.dup(rootfd)
    try:
        return sc.openat2(rootfd, rel, os.O_PATH, how)
    except FileNotFoundError:
        if not create:
            raise
    if _depth > 40:
        raise RuntimeFailure(f"{label or path}: too many levels of symbolic links")
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    # `here`: the directory reached so far, as a path from the rootfs' top
    # with every symlink resolved, so that ".." after it is lexical.
    here = ""
    for i, name in enumerate(parts):
        if name == "..":
            here = here.rpartition("/")[0]
            continue
        cand = f"{here}/{name}" if here else name
        try:
            fd = sc.openat2(rootfd, cand, os.O_PATH, how)
        except FileNotFoundError:
            parent = sc.openat2(rootfd, here or ".", os.O_PATH | os.O_DIRECTORY, how)
            try:
                try:
                    target = os.readlink(name, dir_fd=parent)
                except OSError:
                    target = None
                if target is not None:
                    # A dangling link: go on from its target, inside the rootfs.
                    base = target if target.startswith("/") else f"/{here}/{target}"
                    rest = "/".join(parts[i + 1:])
                    return resolve(rootfd, f"{base}/{rest}" if rest else base,
                                   create=create, label=label, _depth=_depth + 1)
                try:
                    if i == len(parts) - 1 and create == "file":
                        os.close(os.open(name, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW
                                         | os.O_CLOEXEC, 0o755, dir_fd=parent))
                    else:
                        os.mkdir(name, 0o755, dir_fd=parent)
                except FileExistsError:
                    pass
            finally:
                os.close(parent)
            fd = sc.openat2(rootfd, cand, os.O_PATH, how)
        if i == len(parts) - 1:
            return fd
        try:
            here = _path_in_root(rootfd, fd).strip("/")
        finally:
            os.close(fd)
    # The path ended in "..": what it names exists.
    return sc.openat2(rootfd, here or ".", os.O_PATH, how)


def _path_in_root(rootfd: int, fd: int) -> str:
    """Path of `fd` relative to the rootfs (both O_PATH directory fds)."""
    root = os.readlink(fd_path(rootfd))
    here = os.readlink(fd_path(fd))
    if here == root:
        return "/"
    return "/" + os.path.relpath(here, root)


# Filesystems that take an SELinux context= at mount time. proc, sysfs,
# mqueue and cgroup keep their own labels (runc labels the same set).
NO_CONTEXT = frozenset(("proc", "sysfs", "mqueue", "cgroup", "cgroup2", "bind"))


def mount_data(mtype: str, data: list[str], mount_label: str | None) -> str | None:
    """The data argument of mount(2) for a non-bind mount: the fs options,
    plus the SELinux context when a mount label applies to this fs type."""
    if mount_label and mtype not in NO_CONTEXT:
        data = [*data, f'context="{mount_label}"']
    return ",".join(data) or None


def mount_all(rootfs: str, mounts: list[dict], bundle: str, cgroup_mount,
              idmap_fds: dict[int, int] | None = None, mount_label: str | None = None,
              proc_mount=None, source_fds: dict[int, int] | None = None) -> list[tuple[str, int]]:
    """Mount every entry of config `mounts` under rootfs, in order.
    `idmap_fds` maps a mount's index to its detached id-mapped tree
    (prepared by the parent), `source_fds` a bind mount's index to an
    O_PATH fd of its source (opened by the parent, see
    container.send_mount_sources); this function closes none of them.
    `mount_label` (linux.mountLabel, only passed where SELinux is enabled)
    labels the filesystems mounted here. `proc_mount(source, target_fd,
    flags, data, label)`, when given, mounts the proc filesystems (init's
    outside mode).

    Returns what is still to be made read-only, for remount_readonly once
    the rest of the root is ready: tmpfs mounts and the filesystem on /dev
    with "ro" are mounted read-write first (runc's order), so that devices,
    the console and copied-up content can be written into them."""
    later: list[tuple[str, int]] = []
    rootfd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for i, m in enumerate(mounts):
            ro = mount_one(rootfd, i, m, bundle, cgroup_mount, (idmap_fds or {}).get(i), mount_label,
                           proc_mount, (source_fds or {}).get(i))
            if ro is not None:
                later.append(ro)
    finally:
        os.close(rootfd)
    return later


def mount_one(rootfd: int, index: int, m: dict, bundle: str, cgroup_mount,
              idmapped: int | None = None, mount_label: str | None = None, proc_mount=None,
              source_fd: int | None = None) -> tuple[str, int] | None:
    """Mount one config entry. `idmapped` is a detached id-mapped tree to
    attach instead of a plain bind (see idmapped_tree); `source_fd` an
    O_PATH fd to bind from instead of the source path. Returns (the
    destination from "/", flags) when the mount is still to be made
    read-only (see mount_all), else None."""
    dest = m["destination"]
    label = f"mounts[{index}] {dest}"
    mtype = m.get("type") or ""
    flags, prop, data, special = parse_options(m.get("options"))
    src = m.get("source") or ""
    is_bind = bool(flags & sc.MS_BIND) or mtype == "bind"
    later = None
    if is_bind:
        flags |= sc.MS_BIND
        if not os.path.isabs(src):
            src = os.path.join(bundle, src)
        held = source_fd if source_fd is not None else idmapped
        try:
            st = os.fstat(held) if held is not None else os.stat(src)
        except FileNotFoundError:
            raise RuntimeFailure(f"mounts[{index}].source: {src} does not exist") from None
        kind = "dir" if st.st_mode & _S_IFMT == _S_IFDIR else "file"
        if source_fd is not None:
            src = fd_path(source_fd)
    else:
        kind = "dir"
        # (normpath keeps the two slashes "/" + "/dev" would start with)
        norm = os.path.normpath("/" + dest.lstrip("/"))
        if flags & sc.MS_RDONLY and (mtype == "tmpfs" or norm == "/dev"):
            flags &= ~sc.MS_RDONLY
            later = (norm, flags)
    copyup = mtype == "tmpfs" and "tmpcopyup" in special and not is_bind
    existed = copyup and _exists_in(rootfd, dest)
    if mtype in ("proc", "sysfs") and not is_bind:
        fd = _ordinary_dir(rootfd, dest, mtype, label)
    else:
        fd = resolve(rootfd, dest, create=kind, label=label)
    try:
        check_proc_mount(_path_in_root(rootfd, fd), mtype, is_bind, src, label)
        target = fd_path(fd)
        if mtype == "cgroup" and not is_bind:
            cgroup_mount(rootfd, dest, target, flags, label)
        elif is_bind and idmapped is not None:
            sc.move_mount(idmapped, "", fd, "", sc.MOVE_MOUNT_F_EMPTY_PATH | sc.MOVE_MOUNT_T_EMPTY_PATH,
                          label=label)
        elif is_bind:
            sc.mount(src, target, None, flags & (sc.MS_BIND | sc.MS_REC), None, label=label)
        elif mtype == "proc" and proc_mount is not None:
            proc_mount(src or mtype, fd, flags, mount_data(mtype, data, mount_label), label)
        elif copyup:
            _tmpfs_copyup(rootfd, fd, dest, src, flags, mount_data(mtype, data, mount_label), label, existed)
        else:
            sc.mount(src or mtype, target, mtype, flags, mount_data(mtype, data, mount_label), label=label)
    finally:
        os.close(fd)
    rest = flags & ~(sc.MS_BIND | sc.MS_REC | sc.MS_REMOUNT)
    rattrs = [RECURSIVE_ATTRS[o] for o in (m.get("options") or ()) if o in RECURSIVE_ATTRS]
    if not ((is_bind and rest) or prop or rattrs):
        return later
    # The fd we mounted on names the directory *under* the new mount;
    # reopen the destination so later calls act on the new mount itself.
    fd = resolve(rootfd, dest, label=label)
    try:
        target = fd_path(fd)
        if is_bind and rest:
            # A bind mount ignores other flags on the first call; remount to apply them.
            sc.mount(None, target, None, sc.MS_REMOUNT | sc.MS_BIND | rest, None, label=label)
        if prop:
            sc.mount(None, target, None, prop, None, label=label)
        if rattrs:
            aset = aclr = 0
            for st_, cl in rattrs:
                aset = (aset & ~cl) | st_
                aclr = (aclr & ~st_) | cl
            sc.mount_setattr(fd, "", sc.AT_EMPTY_PATH | sc.AT_RECURSIVE, aset, attr_clr=aclr, label=label)
    finally:
        os.close(fd)
    return later


def _exists_in(rootfd: int, path: str) -> bool:
    try:
        os.close(resolve(rootfd, path))
        return True
    except OSError:
        return False  # missing (made next), or an error that resolve() reports next


def remount_readonly(mounts: list[tuple[str, int]]) -> None:
    """The second half of mount_all's read-only tmpfs and /dev mounts, by
    their paths in the container's root (after pivot_root): a bind remount,
    which changes only this mount's flags (allowed in a user namespace)."""
    for dest, flags in mounts:
        sc.mount(None, dest, None, flags | sc.MS_REMOUNT | sc.MS_BIND | sc.MS_RDONLY, None,
                 label=f"{dest} (read-only)")


def _tmpfs_copyup(rootfd: int, fd: int, dest: str, src: str, flags: int, data: str | None,
                  label: str, existed: bool) -> None:
    """Mount a tmpfs on `fd` (the destination directory, resolved in the
    rootfs) holding a copy of what that directory had: files with their
    content, directories, symlinks, device nodes and fifos, with their
    owners, modes and (where the filesystems allow) extended attributes.
    The mount's root takes the directory's mode, if the image had it and
    the options set no mode= (runc 1.1.5 gives it the mode even then); its
    owner is the tmpfs' own (root, or uid=/gid=), as with runc. The copy goes through directory fds
    only, never through a path that could follow a link out of the
    rootfs: the covered directory stays readable through its own fd."""
    old = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
    try:
        sc.mount(src or "tmpfs", fd_path(fd), "tmpfs", flags, data, label=label)
        top = resolve(rootfd, dest, label=label)
        try:
            new = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=top)
        finally:
            os.close(top)
        try:
            _copy_dir(old, new, "/" + dest.strip("/"))
            if existed and "mode" not in {o.partition("=")[0] for o in (data or "").split(",")}:
                os.fchmod(new, os.fstat(old).st_mode & 0o7777)
        except OSError as e:
            raise RuntimeFailure(f"{label}: tmpcopyup: {e.strerror or e}"
                                 + (f": {e.filename}" if e.filename else "")) from None
        finally:
            os.close(new)
    finally:
        os.close(old)


def _copy_dir(src: int, dst: int, where: str) -> None:
    """Copy the entries of directory fd `src` into directory fd `dst`
    (both readable directory fds), recursively; see _tmpfs_copyup. Sockets
    are skipped (nothing of them can be copied). `where` is the directory's
    path, for error messages."""
    for name in os.listdir(src):
        st = os.stat(name, dir_fd=src, follow_symlinks=False)
        kind = st.st_mode & _S_IFMT
        try:
            if kind == _S_IFDIR:
                os.mkdir(name, 0o700, dir_fd=dst)
                s2 = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src)
                try:
                    d2 = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dst)
                    try:
                        _copy_dir(s2, d2, f"{where}/{name}")
                        _copy_attrs(s2, d2, st)
                    finally:
                        os.close(d2)
                finally:
                    os.close(s2)
            elif kind == _S_IFREG:
                s2 = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=src)
                try:
                    d2 = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                                 0o600, dir_fd=dst)
                    try:
                        while os.sendfile(d2, s2, None, 1 << 30):
                            pass
                        _copy_attrs(s2, d2, st)
                    finally:
                        os.close(d2)
                finally:
                    os.close(s2)
            elif kind == _S_IFLNK:
                os.symlink(os.readlink(name, dir_fd=src), name, dir_fd=dst)
                os.chown(name, st.st_uid, st.st_gid, dir_fd=dst, follow_symlinks=False)
            elif kind in (_S_IFCHR, _S_IFBLK, _S_IFIFO):
                if kind == _S_IFIFO:
                    os.mkfifo(name, 0o600, dir_fd=dst)
                else:
                    os.mknod(name, kind | 0o600, st.st_rdev, dir_fd=dst)
                os.chown(name, st.st_uid, st.st_gid, dir_fd=dst, follow_symlinks=False)
                os.chmod(name, st.st_mode & 0o7777, dir_fd=dst)
        except OSError as e:
            if e.filename is None:
                e.filename = f"{where}/{name}"
            raise


def _copy_attrs(src: int, dst: int, st) -> None:
    """Owner, then mode (a chown clears set-id bits), then the extended
    attributes that can be read and set (security.capability after the
    chown, which clears it)."""
    os.fchown(dst, st.st_uid, st.st_gid)
    os.fchmod(dst, st.st_mode & 0o7777)
    try:
        names = os.listxattr(src)
    except OSError:
        return
    for n in names:
        try:
            os.setxattr(dst, n, os.getxattr(src, n))
        except OSError:
            pass  # a namespace this filesystem or user namespace refuses (trusted.*, ...)


def _ordinary_dir(rootfd: int, dest: str, mtype: str, label: str) -> int:
    """O_PATH fd of the directory a proc or sysfs mount goes on, made if
    missing. The destination itself must not be anything but a directory:
    a symlink there (rootfs/proc -> /dev/shm) would put the filesystem
    where a later mount can cover it and leave the container, and the
    runtime's own /proc writes, a stand-in (runc refuses it too)."""
    name = os.path.basename(dest.rstrip("/"))
    if not name:
        return resolve(rootfd, dest, label=label)
    parent = resolve(rootfd, os.path.dirname(dest.rstrip("/")), create="dir", label=label)
    try:
        try:
            st = os.lstat(name, dir_fd=parent)
        except FileNotFoundError:
            try:
                os.mkdir(name, 0o755, dir_fd=parent)
            except FileExistsError:
                pass
        else:
            if st.st_mode & _S_IFMT != _S_IFDIR:
                raise RuntimeFailure(f'{label}: filesystem "{mtype}" must be mounted on ordinary directory')
        return sc.openat2(parent, name, os.O_PATH | os.O_DIRECTORY, sc.RESOLVE_BENEATH | sc.RESOLVE_NO_SYMLINKS)
    finally:
        os.close(parent)


# What may be mounted inside /proc: the files lxcfs stands in for (runc's list).
_PROC_FILES_ALLOWED = frozenset(("/proc/cpuinfo", "/proc/diskstats", "/proc/meminfo", "/proc/stat",
                                 "/proc/swaps", "/proc/uptime", "/proc/loadavg", "/proc/slabinfo",
                                 "/proc/net/dev", "/proc/sys/kernel/ns_last_pid"))


def check_proc_mount(where: str, mtype: str, is_bind: bool, src: str, label: str) -> None:
    """runc's checkProcMount, for a mount that lands at `where` (the
    destination as resolved inside the rootfs): on /proc itself only a
    procfs (a new one, or a bind of one), inside it only the files lxcfs
    emulates. Anything else would stand in for the files the runtime and
    the LSMs write through /proc (attr/, sys/, oom_score_adj) or hide the
    masks and read-only paths put there. runc 1.1.5 checks bind and
    generic mounts; this checks every type (as later runc does)."""
    if where != "/proc" and not where.startswith("/proc/"):
        return
    if where == "/proc":
        if is_bind:
            try:
                ok = sc.statfs_type(src) == sc.PROC_SUPER_MAGIC
            except OSError:
                ok = False
        else:
            ok = mtype == "proc"
        if not ok:
            raise RuntimeFailure(f'{label}: "{where}" cannot be mounted because it is not of type proc')
    elif where not in _PROC_FILES_ALLOWED:
        raise RuntimeFailure(f'{label}: "{where}" cannot be mounted because it is inside /proc')


def idmapped_tree(src: str, options: list[str] | None, userns_fd: int, label: str) -> int:
    """A detached, id-mapped copy of the `src` mount tree (open_tree +
    mount_setattr). Made by the parent, in the host's user namespace, which
    the kernel requires; init attaches it with move_mount. Caller closes it."""
    flags, _, _, special = parse_options(options)
    tree_flags = sc.OPEN_TREE_CLONE | sc.OPEN_TREE_CLOEXEC
    if flags & sc.MS_REC:
        tree_flags |= sc.AT_RECURSIVE
    tree = sc.open_tree(-100, src, tree_flags)
    try:
        at = sc.AT_EMPTY_PATH | (sc.AT_RECURSIVE if "ridmap" in special else 0)
        try:
            sc.mount_setattr(tree, "", at, sc.MOUNT_ATTR_IDMAP, userns_fd, label=label)
        except OSError as e:
            raise OSError(e.errno, f"{label}: id-mapping the mount: {os.strerror(e.errno)} "
                                   f"(the filesystem of {src} may not support idmapped mounts)") from None
        return tree
    except BaseException:
        os.close(tree)
        raise


def make_devices(rootfs: str, devices: list[dict], in_userns: bool) -> None:
    """Create the default devices and linux.devices under rootfs/dev.

    Inside a user namespace mknod is not allowed, so (as runc does) the host
    device is bind-mounted onto an empty file instead."""
    rootfd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        seen = set()
        wanted = [(d["path"], d["type"], d.get("major", 0), d.get("minor", 0), d.get("fileMode", 0o666),
                   d.get("uid"), d.get("gid")) for d in devices or ()]
        explicit = {w[0] for w in wanted}
        for p, t, ma, mi, mode in DEFAULT_DEVICES:
            if p not in explicit:
                wanted.append((p, t, ma, mi, mode, None, None))
        for path, t, major, minor, mode, uid, gid in wanted:
            if path in seen:
                continue
            seen.add(path)
            _make_device(rootfd, path, t, major, minor, mode, uid, gid, in_userns, path in explicit)
        devfd = resolve(rootfd, "/dev", create="dir")
        try:
            for target, name in DEV_SYMLINKS:
                try:
                    os.symlink(target, os.path.basename(name), dir_fd=devfd)
                except FileExistsError:
                    pass
            if os.path.exists("/proc/kcore"):
                try:
                    os.symlink("/proc/kcore", "core", dir_fd=devfd)
                except FileExistsError:
                    pass
        finally:
            os.close(devfd)
    finally:
        os.close(rootfd)


def _make_device(rootfd, path, t, major, minor, mode, uid, gid, in_userns, strict) -> None:
    parent = resolve(rootfd, os.path.dirname(path), create="dir", label=path)
    name = os.path.basename(path)
    try:
        try:
            st_ = os.lstat(name, dir_fd=parent)
        except FileNotFoundError:
            st_ = None
        if st_ is not None:
            kinds = {"c": _S_IFCHR, "u": _S_IFCHR, "b": _S_IFBLK, "p": _S_IFIFO}
            same = st_.st_mode & _S_IFMT == kinds[t] and (t == "p" or os.major(st_.st_rdev) == major
                                                          and os.minor(st_.st_rdev) == minor)
            if not same and (strict or st_.st_mode & _S_IFMT == _S_IFDIR):
                # Spec: a file at the path that is not the requested device is an error.
                raise RuntimeFailure(f"linux.devices {path}: a different file already exists there")
            os.unlink(name, dir_fd=parent)
        if t == "p":
            old = os.umask(0)  # fileMode is exact, as for mknod below
            try:
                os.mkfifo(name, mode & 0o7777, dir_fd=parent)
            finally:
                os.umask(old)
        elif in_userns:
            os.close(os.open(name, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644, dir_fd=parent))
            fd = sc.openat2(parent, name, os.O_PATH, sc.RESOLVE_BENEATH | sc.RESOLVE_NO_SYMLINKS)
            try:
                sc.mount(path, fd_path(fd), None, sc.MS_BIND, None, label=path)
            finally:
                os.close(fd)
            return
        else:
            kind = _S_IFCHR if t in ("c", "u") else _S_IFBLK
            old = os.umask(0)
            try:
                os.mknod(name, kind | (mode & 0o7777), os.makedev(major, minor), dir_fd=parent)
            finally:
                os.umask(old)
        if uid is not None or gid is not None:
            os.chown(name, uid if uid is not None else -1, gid if gid is not None else -1,
                     dir_fd=parent, follow_symlinks=False)
    except OSError as e:
        raise RuntimeFailure(f"linux.devices {path}: {e.strerror}") from None
    finally:
        os.close(parent)


# linux.rootfsPropagation as applied to the namespace's copy of the host's
# mounts before anything is mounted. It decides how the bind mounts of host
# paths relate to the host. Always recursive, so that no copy stays a peer
# of the host unless the mode is a shared one. The unbindable modes count
# as private here: an unbindable copy of the host could not be a bind
# source. Their unbindable part, like every mode, is applied to the
# container's "/" after pivot_root (PROPAGATION).
_BEFORE_PIVOT = {
    "shared": sc.MS_SHARED, "rshared": sc.MS_SHARED,
    "slave": sc.MS_SLAVE, "rslave": sc.MS_SLAVE,
    "private": sc.MS_PRIVATE, "rprivate": sc.MS_PRIVATE,
    "unbindable": sc.MS_PRIVATE, "runbindable": sc.MS_PRIVATE,
}


def prepare_root(rootfs: str, propagation: str | None, no_pivot: bool = False) -> None:
    """First step in the container's new mount namespace: set the
    propagation of the host's mounts (rslave when linux.rootfsPropagation
    is unset), make the mount that holds `rootfs` private, then bind
    `rootfs` onto itself, which pivot_root needs (a mount point).

    The holding mount is the rootfs itself when it is a mount point of its
    own (containerd's snapshots are), else the nearest mount above it.
    Private, the bind of it is private too: a new mount of a shared one
    would join the host's peer group, so that everything mounted in the
    container (proc, dev, sys, the config's binds, what the container
    mounts later) would show on the host, and pivot_root refuses a shared
    new root or one whose parent is shared (EINVAL). Only this namespace's
    copy changes; the host's mount stays as it is.

    With no_pivot the bind is later moved onto "/" (move_root): a move
    onto a shared mount is copied to its peers, the host's "/" among them,
    so "/" itself becomes a slave here (still receiving the host's
    mounts, sending nothing back)."""
    flag = _BEFORE_PIVOT[propagation] if propagation else sc.MS_SLAVE
    sc.mount(None, "/", None, flag | sc.MS_REC, None, label="/ (propagation)")
    if no_pivot and flag == sc.MS_SHARED:
        sc.mount(None, "/", None, sc.MS_SLAVE, None, label="/ (propagation)")
    make_holder_private(rootfs)
    sc.mount(rootfs, rootfs, None, sc.MS_BIND | sc.MS_REC, None, label="rootfs")


def make_holder_private(path: str) -> None:
    """Make the mount that holds `path` (path itself if it is a mount point)
    private. Changing the propagation of a directory that is no mount's
    root fails with EINVAL, so the walk up stops at the holding mount."""
    while True:
        try:
            sc.mount(None, path, None, sc.MS_PRIVATE, None, label=f"{path} (private)")
            return
        except OSError as e:
            if e.errno != EINVAL or path == "/":
                raise
        path = os.path.dirname(path)


def pivot(rootfs: str) -> None:
    """Make rootfs the new "/" and detach the old root entirely.

    pivot_root(".", ".") stacks the old root under the new one; we then
    unmount it lazily so nothing of the host stays reachable."""
    oldroot = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    newroot = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fchdir(newroot)
        sc.pivot_root(".", ".")
        os.fchdir(oldroot)
        # Keep unmount events of the old root from propagating to the host.
        sc.mount(None, ".", None, sc.MS_SLAVE | sc.MS_REC, None, label="old root")
        sc.umount2(".", sc.MNT_DETACH)
    finally:
        os.close(oldroot)
        os.close(newroot)
    os.chdir("/")


def move_root(rootfs: str) -> None:
    """--no-pivot: move the rootfs mount over "/" and chroot into it.

    The old root's mounts stay in this mount namespace, under the moved
    one: out of reach by path, but not out of the kernel's sight. A full
    proc or sysfs mount among them (one showing its filesystem's root)
    lets a process that makes a new user and mount namespace mount a
    fresh, unmasked procfs or sysfs (the kernel allows that where one is
    fully visible; CVE-2023-27561). So, as runc's msMoveRoot does, each
    such mount outside the rootfs is unmounted first, after making it a
    slave so the unmount stays in this namespace, or, where the kernel
    will not unmount it (a mount locked by a user namespace), covered with
    a tmpfs."""
    for mp in _full_proc_sysfs_mounts(rootfs):
        try:
            sc.mount(None, mp, None, sc.MS_SLAVE | sc.MS_REC, None)
        except FileNotFoundError:
            continue  # under one unmounted already
        try:
            sc.umount2(mp, sc.MNT_DETACH)
        except OSError as e:
            if e.errno not in (EINVAL, EPERM):
                raise
            sc.mount("tmpfs", mp, "tmpfs", 0, None)
    os.chdir(rootfs)
    sc.mount(rootfs, "/", None, sc.MS_MOVE, None, label="rootfs")
    os.chroot(".")
    os.chdir("/")


def _full_proc_sysfs_mounts(rootfs: str) -> list[str]:
    """Mount points of the proc and sysfs mounts of this namespace that
    show their filesystem's root and are not under `rootfs`, in mountinfo
    order (parents first)."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split(" ")
            if len(fields) < 5 or right.split(" ", 1)[0] not in ("proc", "sysfs") or fields[3] != "/":
                continue
            mp = _unescape(fields[4])
            if mp != rootfs and not mp.startswith(rootfs.rstrip("/") + "/"):
                out.append(mp)
    return out


def _unescape(s: str) -> str:
    """A mountinfo path field: space, tab, newline and backslash are \\ooo."""
    if "\\" not in s:
        return s
    parts = s.split("\\")
    out = [parts[0]]
    for p in parts[1:]:
        out.append(chr(int(p[:3], 8)) + p[3:] if p[:3].isdigit() else "\\" + p)
    return "".join(out)


def readonly_path(path: str) -> None:
    """Bind `path` onto itself read-only. Only a missing path is skipped;
    one that exists but cannot be made read-only is an error naming it."""
    try:
        sc.mount(path, path, None, sc.MS_BIND | sc.MS_REC, None)
    except FileNotFoundError:
        return
    except OSError as e:
        raise OSError(e.errno, f"linux.readonlyPaths {path}: {os.strerror(e.errno)}") from None
    flags = sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY
    try:
        try:
            sc.mount(None, path, None, flags | sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC, None)
        except PermissionError:
            # Locked flags (inside a user namespace) cannot be added; ro alone is enough.
            sc.mount(None, path, None, flags, None)
    except OSError as e:
        raise OSError(e.errno, f"linux.readonlyPaths {path}: {os.strerror(e.errno)}") from None


def mask_path(path: str) -> None:
    """Hide `path`: /dev/null over a file, an empty read-only tmpfs over a
    directory. Only a missing path is skipped; one that exists but cannot
    be masked (a component that is not a directory, a mount that fails) is
    an error naming it, as in runc. This runs after pivot_root, so a
    symlink can only lead to another path of the container, never to the
    host."""
    try:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return
        if st.st_mode & _S_IFMT == _S_IFDIR:
            sc.mount("tmpfs", path, "tmpfs", sc.MS_RDONLY, None)
        else:
            sc.mount("/dev/null", path, None, sc.MS_BIND, None)
    except OSError as e:
        raise OSError(e.errno, f"linux.maskedPaths {path}: {os.strerror(e.errno)}") from None


def remount_root_readonly() -> None:
    sc.mount(None, "/", None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY, None, label="/ (root.readonly)")
