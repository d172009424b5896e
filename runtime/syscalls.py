"""Raw Linux system calls the runtime needs and Python 3.11 lacks.

This is the one module that talks to the kernel through ctypes (the slice
of it in runtime.toolkit.ffi, which skips ctypes/__init__.py's import cost). Every
wrapper raises ``OSError`` carrying errno, the call's name and the path it
worked on, so callers can let it propagate and the CLI prints one line
such as ``mount /proc (proc): Operation not permitted``.
"""
import sys

from runtime.toolkit import os_lite as os

from runtime.toolkit import ffi as ctypes

_libc = ctypes.Library(None)
# syscall(2) returns a long; every call made through it here returns an
# int-sized value (0 or -1, an fd, a pid, a key serial), which the default
# c_int return type reads whole. (Setting c_long would make that type in
# create's parent, before its fork: see runtime.toolkit.ffi.)
_syscall = _libc.syscall

# Numbers for calls glibc may not export (or exports only in newer versions).
_NR = {
    "x86_64": {"pivot_root": 155, "openat2": 437, "faccessat2": 439, "mount_setattr": 442, "open_tree": 428,
               "move_mount": 429, "close_range": 436, "ioprio_set": 251,
               "sched_setattr": 314, "keyctl": 250, "pidfd_open": 434, "capget": 125,
               "capset": 126, "clone3": 435},
    "aarch64": {"pivot_root": 41, "openat2": 437, "faccessat2": 439, "mount_setattr": 442, "open_tree": 428,
                "move_mount": 429, "close_range": 436, "ioprio_set": 30,
                "sched_setattr": 274, "keyctl": 219, "pidfd_open": 434, "capget": 90,
                "capset": 91, "clone3": 435},
}[os.uname().machine]

# clone(2) namespace flags, by runtime-spec namespace type.
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x00000080
NAMESPACE_FLAGS = {
    "pid": CLONE_NEWPID, "network": CLONE_NEWNET, "mount": CLONE_NEWNS,
    "ipc": CLONE_NEWIPC, "uts": CLONE_NEWUTS, "user": CLONE_NEWUSER,
    "cgroup": CLONE_NEWCGROUP, "time": CLONE_NEWTIME,
}
# Names of the links under /proc/PID/ns/ for each namespace type.
NAMESPACE_PROC_NAMES = {
    "pid": "pid", "network": "net", "mount": "mnt", "ipc": "ipc", "uts": "uts",
    "user": "user", "cgroup": "cgroup", "time": "time",
}

# mount(2) flags
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_UNBINDABLE = 0x20000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
MS_RELATIME = 0x200000
MS_STRICTATIME = 0x1000000
MS_LAZYTIME = 0x2000000
MS_I_VERSION = 0x800000
MNT_DETACH = 0x2

# openat2(2) resolve flags
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

# prctl(2)
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

CLOSE_RANGE_CLOEXEC = 1 << 2

CLONE_INTO_CGROUP = 0x200000000

# mount_setattr / open_tree
AT_RECURSIVE = 0x8000
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOVE_MOUNT_T_EMPTY_PATH = 0x40
AT_EMPTY_PATH = 0x1000
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR__ATIME = 0x70
MOUNT_ATTR_RELATIME = 0x0
MOUNT_ATTR_NOATIME = 0x10
MOUNT_ATTR_STRICTATIME = 0x20
MOUNT_ATTR_NODIRATIME = 0x80
MOUNT_ATTR_IDMAP = 0x100000
MOUNT_ATTR_NOSYMFOLLOW = 0x200000


def _struct(*fields: tuple[int, int]) -> bytes:
    """A C struct as bytes: `fields` are (value, size in bytes), packed one
    after another in native byte order. Each struct made this way has every
    field at a multiple of its size, so there is no padding to add. Passed
    as is, it is read-only memory for the kernel; a struct the kernel writes
    goes in ctypes.create_string_buffer(_struct(...)). (Not
    ctypes.Structure: defining one is costly, and every create imports this
    module: docs/performance.md.)"""
    return b"".join(v.to_bytes(n, sys.byteorder, signed=v < 0) for v, n in fields)


def _field(raw: bytes, offset: int, size: int) -> int:
    """The unsigned field of `size` bytes at `offset` of a struct."""
    return int.from_bytes(raw[offset:offset + size], sys.byteorder)


def _err(name: str, what: str | None = None) -> OSError:
    e = ctypes.get_errno()
    label = f"{name} {what}" if what else name
    return OSError(e, f"{label}: {os.strerror(e)}", what)


def _b(s: str | bytes | None):
    if s is None:
        return None
    return s if isinstance(s, bytes) else s.encode()


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None, *, label: str | None = None) -> None:
    """mount(2). `label` names the target in errors when `target` is an
    internal /proc/self/fd path."""
    if _libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data)) != 0:
        raise _err("mount", f"{label or target}" + (f" ({fstype})" if fstype else ""))


def umount2(target: str, flags: int = 0) -> None:
    if _libc.umount2(_b(target), flags) != 0:
        raise _err("umount", target)


def pivot_root(new_root: str, put_old: str) -> None:
    if _syscall(_NR["pivot_root"], _b(new_root), _b(put_old)) != 0:
        raise _err("pivot_root", new_root)


def unshare(flags: int) -> None:
    if _libc.unshare(flags) != 0:
        raise _err("unshare", hex(flags))


def setns(fd: int, nstype: int = 0, *, label: str | None = None) -> None:
    if _libc.setns(fd, nstype) != 0:
        raise _err("setns", label)


def sethostname(name: str) -> None:
    b = name.encode()
    if _libc.sethostname(b, len(b)) != 0:
        raise _err("sethostname", name)


def setdomainname(name: str) -> None:
    b = name.encode()
    if _libc.setdomainname(b, len(b)) != 0:
        raise _err("setdomainname", name)


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    r = _libc.prctl(option, ctypes.c_ulong(arg2), ctypes.c_ulong(arg3),
                    ctypes.c_ulong(arg4), ctypes.c_ulong(arg5))
    if r < 0:
        raise _err("prctl", str(option))
    return r


_CAP_V3 = 0x20080522
# struct __user_cap_header_struct {u32 version; int pid}, then for version 3
# two struct __user_cap_data_struct {u32 effective, permitted, inheritable}:
# the low 32 capabilities, then the high ones.


def capget(pid: int = 0) -> tuple[int, int, int]:
    """Return (effective, permitted, inheritable) as 64-bit masks."""
    # (the kernel writes its preferred version into a header it refuses)
    hdr = ctypes.create_string_buffer(_struct((_CAP_V3, 4), (pid, 4)), 8)
    data = ctypes.create_string_buffer(24)
    if _syscall(_NR["capget"], hdr, data) != 0:
        raise _err("capget")
    raw = data.raw
    return tuple(_field(raw, 12 + 4 * i, 4) << 32 | _field(raw, 4 * i, 4) for i in range(3))


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """Set the calling thread's capability sets (64-bit masks)."""
    hdr = ctypes.create_string_buffer(_struct((_CAP_V3, 4), (0, 4)), 8)
    data = _struct(*[(m >> sh & 0xFFFFFFFF, 4) for sh in (0, 32) for m in (effective, permitted, inheritable)])
    if _syscall(_NR["capset"], hdr, data) != 0:
        raise _err("capset")


def close_range_cloexec(first: int) -> None:
    """Mark every fd >= first close-on-exec (one syscall, whatever the fd count)."""
    if _syscall(_NR["close_range"], ctypes.c_uint(first), ctypes.c_uint(0xFFFFFFFF),
                ctypes.c_uint(CLOSE_RANGE_CLOEXEC)) != 0:
        raise _err("close_range")


OPENAT2_RETRIES = 32
_EAGAIN = 11  # (asm-generic errno: every architecture pyrunc runs on)


def openat2(dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    """openat2(2); the caller owns (and closes) the returned fd. With RESOLVE_*
    scoping flags the kernel answers EAGAIN when a rename or a mount changed
    the tree during the walk (it cannot then vouch for the result): the walk
    is tried again, as runc's securejoin does, up to OPENAT2_RETRIES times."""
    how = _struct((flags | os.O_CLOEXEC, 8), (mode, 8), (resolve, 8))  # struct open_how
    for _ in range(OPENAT2_RETRIES):
        fd = _syscall(_NR["openat2"], dirfd, _b(path), how, len(how))
        if fd >= 0:
            return fd
        if ctypes.get_errno() != _EAGAIN:
            break
    raise _err("openat2", path)


AT_EACCESS = 0x200


def faccessat2(path: str, mode: int, flags: int = 0) -> None:
    """faccessat2(2) from the current directory; OSError(errno, path) when
    access is refused or the call itself is (os.access cannot tell the two
    apart)."""
    if _syscall(_NR["faccessat2"], -100, _b(path), mode, flags) < 0:  # AT_FDCWD
        raise _err("faccessat2", path)


PROC_SUPER_MAGIC = 0x9FA0


def statfs_type(path: str) -> int:
    """The filesystem type (f_type, a magic number such as PROC_SUPER_MAGIC)
    of the filesystem holding `path`, from statfs(2)."""
    buf = ctypes.create_string_buffer(120)  # struct statfs; f_type is its first field, a long
    if _libc.statfs(_b(path), buf) != 0:
        raise _err("statfs", path)
    return _field(buf.raw, 0, 8)


def personality(persona: int) -> None:
    if _libc.personality(ctypes.c_ulong(persona)) == -1:
        raise _err("personality", hex(persona))


def ioprio_set(which: int, who: int, ioprio: int) -> None:
    if _syscall(_NR["ioprio_set"], which, who, ioprio) != 0:
        raise _err("ioprio_set")


def sched_setattr(policy: int, flags: int = 0, nice: int = 0, priority: int = 0,
                  runtime: int = 0, deadline: int = 0, period: int = 0) -> None:
    # struct sched_attr (48 bytes): u32 size, u32 policy, u64 flags, s32 nice,
    # u32 priority, u64 runtime, u64 deadline, u64 period
    attr = _struct((48, 4), (policy, 4), (flags, 8), (nice, 4), (priority, 4),
                   (runtime, 8), (deadline, 8), (period, 8))
    if _syscall(_NR["sched_setattr"], 0, attr, 0) != 0:
        raise _err("sched_setattr")


def keyctl_join_session_keyring(name: str | None) -> None:
    KEYCTL_JOIN_SESSION_KEYRING = 1
    if _syscall(_NR["keyctl"], KEYCTL_JOIN_SESSION_KEYRING, _b(name), 0, 0, 0) < 0:
        raise _err("keyctl", "join session keyring")


def clone3(flags: int, cgroup_fd: int = 0) -> int:
    """fork(2) through clone3 (Linux 5.7+ for CLONE_INTO_CGROUP), with
    `flags`: CLONE_INTO_CGROUP starts the child in the cgroup2 directory
    `cgroup_fd`; CLONE_NEWPID makes it pid 1 of a new pid namespace.
    Returns the child's pid in the parent and 0 in the child, as os.fork
    does; OSError if the kernel refuses (ENOSYS, E2BIG on older kernels;
    the cgroup's own errors; EPERM without CAP_SYS_ADMIN).

    Why: moving a process with a cgroup.procs write takes the kernel's
    threadgroup lock, whose first writer waits for an RCU grace period
    (on the critical path of every create); a process born
    in the cgroup waits for nothing. And a child born in its pid namespace
    can be the container's init itself (container.clone_init).

    Contract: the caller is single-threaded and not inside an import. The
    child is a copy made without CPython's at-fork handlers, which exist to
    repair the state of other threads (there are none; the runtime
    registers no at-fork hooks of its own); glibc's cached thread id of the
    child is stale, which only its error-checking mutexes read (neither
    CPython nor the runtime uses them). The caller closes cgroup_fd, in
    both processes."""
    sigchld = 17
    # struct clone_args, the version with `cgroup` (88 bytes): flags, pidfd,
    # child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
    # set_tid_size, cgroup. No stack: the child runs on a copy, as with fork.
    args = _struct(*[(v, 8) for v in (flags, 0, 0, 0, sigchld, 0, 0, 0, 0, 0, cgroup_fd)])
    # The size as a plain int: libffi widens an int argument to the full
    # register on both LP64 ABIs, as for the syscall number itself.
    pid = _syscall(_NR["clone3"], args, len(args))
    if pid < 0:
        raise _err("clone3", "CLONE_INTO_CGROUP" if flags & CLONE_INTO_CGROUP else None)
    return pid


def pidfd_open(pid: int) -> int:
    fd = _syscall(_NR["pidfd_open"], pid, 0)
    if fd < 0:
        raise _err("pidfd_open", str(pid))
    return fd


def malloc_trim() -> None:
    """Return free heap memory to the kernel (glibc); best effort."""
    try:
        _libc.malloc_trim(0)
    except AttributeError:
        pass


def open_tree(dirfd: int, path: str, flags: int) -> int:
    fd = _syscall(_NR["open_tree"], dirfd, _b(path), ctypes.c_uint(flags))
    if fd < 0:
        raise _err("open_tree", path)
    return fd


def mount_setattr(dirfd: int, path: str, flags: int, attr_set: int, userns_fd: int = 0,
                  *, attr_clr: int = 0, label: str | None = None) -> None:
    # struct mount_attr: u64 attr_set, attr_clr, propagation, userns_fd
    attr = _struct((attr_set, 8), (attr_clr, 8), (0, 8), (userns_fd, 8))
    if _syscall(_NR["mount_setattr"], dirfd, _b(path), ctypes.c_uint(flags),
                attr, len(attr)) != 0:
        raise _err("mount_setattr", label or path)


def move_mount(from_dirfd: int, from_path: str, to_dirfd: int, to_path: str, flags: int,
               *, label: str | None = None) -> None:
    if _syscall(_NR["move_mount"], from_dirfd, _b(from_path), to_dirfd, _b(to_path),
                ctypes.c_uint(flags)) != 0:
        raise _err("move_mount", label or to_path)
