"""Minimal bpf(2) wrapper (ctypes) for cgroup device programs.

Only what a BPF_PROG_TYPE_CGROUP_DEVICE filter needs: load a program,
attach/detach/replace it on a cgroup2 directory, list what is attached.
Every failure raises OSError with the errno and a message naming the bpf
command (and the target, where there is one).

fd ownership: functions returning an fd hand it to the caller, who must
os.close() it. Functions taking fds never close them.
"""

import errno
from runtime.toolkit import os_lite as os
import struct

from runtime.toolkit import ffi as ctypes

# bpf commands (include/uapi/linux/bpf.h)
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_PROG_QUERY = 16

BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6  # attach type

BPF_F_ALLOW_OVERRIDE = 1
BPF_F_ALLOW_MULTI = 2
BPF_F_REPLACE = 4

# struct bpf_cgroup_dev_ctx.access_type fields
BPF_DEVCG_ACC_MKNOD = 1
BPF_DEVCG_ACC_READ = 2
BPF_DEVCG_ACC_WRITE = 4
BPF_DEVCG_DEV_BLOCK = 1
BPF_DEVCG_DEV_CHAR = 2

_SYS_BPF = {"x86_64": 321, "aarch64": 280, "arm64": 280, "ppc64le": 361,
            "s390x": 351, "riscv64": 280, "armv7l": 386, "i686": 357, "i386": 357}

_ATTR_SIZE = 128  # larger than every union member we use; rest stays zero

_libc = None


def _syscall():
    global _libc
    if _libc is None:
        _libc = ctypes.Library(None)
        _libc.syscall.restype = ctypes.c_long
    return _libc


def _nr() -> int:
    m = os.uname().machine
    try:
        return _SYS_BPF[m]
    except KeyError:
        raise OSError(errno.ENOSYS, f"bpf(2): syscall number unknown for architecture {m}") from None


def bpf(cmd: int, attr: ctypes.Array, what: str) -> int:
    """Call bpf(cmd, attr, sizeof attr); return the result or raise OSError
    whose message starts with ``what``."""
    libc = _syscall()
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(_nr()), ctypes.c_int(cmd),
                     ctypes.c_void_p(ctypes.addressof(attr)), ctypes.c_uint(len(attr)))
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")
    return r


def _attr(fmt: str, *vals) -> ctypes.Array:
    buf = ctypes.create_string_buffer(_ATTR_SIZE)
    struct.pack_into(fmt, buf, 0, *vals)
    return buf


def prog_load(insns: bytes, license: str = "Apache", *, prog_type: int = BPF_PROG_TYPE_CGROUP_DEVICE,
              log_size: int = 65536) -> int:
    """Load a program (raw 8-byte instructions). Returns its fd (caller
    closes). On verifier rejection the OSError message carries the log."""
    if len(insns) % 8:
        raise ValueError("bpf instructions must be a multiple of 8 bytes")
    code = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(license.encode())
    log = ctypes.create_string_buffer(log_size)
    # prog_type, insn_cnt, insns, license, log_level, log_size, log_buf
    attr = _attr("=IIQQIIQ", prog_type, len(insns) // 8, ctypes.addressof(code),
                 ctypes.addressof(lic), 0, 0, 0)
    try:
        return bpf(BPF_PROG_LOAD, attr, "bpf(BPF_PROG_LOAD, CGROUP_DEVICE)")
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.EINVAL):  # ask again with a log
            raise
    attr = _attr("=IIQQIIQ", prog_type, len(insns) // 8, ctypes.addressof(code),
                 ctypes.addressof(lic), 1, log_size, ctypes.addressof(log))
    try:
        return bpf(BPF_PROG_LOAD, attr, "bpf(BPF_PROG_LOAD, CGROUP_DEVICE)")
    except OSError as e:
        text = log.value.decode(errors="replace").strip().replace("\n", "; ")
        if text:
            raise OSError(e.errno, f"{e.strerror} (verifier: {text[-400:]})") from None
        raise


def prog_attach(target_fd: int, prog_fd: int, *, attach_type: int = BPF_CGROUP_DEVICE,
                flags: int = BPF_F_ALLOW_MULTI, replace_fd: int = 0, target: str = "") -> None:
    """Attach prog_fd to the cgroup dir fd target_fd."""
    attr = _attr("=IIIII", target_fd, prog_fd, attach_type, flags, replace_fd)
    bpf(BPF_PROG_ATTACH, attr, f"bpf(BPF_PROG_ATTACH) to {target or target_fd}")


def prog_detach(target_fd: int, prog_fd: int, *, attach_type: int = BPF_CGROUP_DEVICE,
                target: str = "") -> None:
    attr = _attr("=IIII", target_fd, prog_fd, attach_type, 0)
    bpf(BPF_PROG_DETACH, attr, f"bpf(BPF_PROG_DETACH) from {target or target_fd}")


def prog_query(target_fd: int, *, attach_type: int = BPF_CGROUP_DEVICE, target: str = "") -> list[int]:
    """ids of the programs attached directly to the cgroup (not inherited)."""
    cnt = 64
    for _ in range(8):
        ids = (ctypes.c_uint32 * cnt)()
        # target_fd, attach_type, query_flags, attach_flags, prog_ids, prog_cnt
        attr = _attr("=IIIIQI", target_fd, attach_type, 0, 0, ctypes.addressof(ids), cnt)
        try:
            bpf(BPF_PROG_QUERY, attr, f"bpf(BPF_PROG_QUERY) on {target or target_fd}")
        except OSError as e:
            if e.errno == errno.ENOSPC:  # prog_cnt now says how many
                cnt = struct.unpack_from("=I", attr, 24)[0]
                continue
            raise
        n = struct.unpack_from("=I", attr, 24)[0]
        return list(ids[:n])
    raise OSError(errno.ENOSPC, f"bpf(BPF_PROG_QUERY) on {target or target_fd}: list kept growing")


def prog_get_fd_by_id(prog_id: int) -> int:
    """fd for an already-loaded program id (caller closes)."""
    attr = _attr("=III", prog_id, 0, 0)
    return bpf(BPF_PROG_GET_FD_BY_ID, attr, f"bpf(BPF_PROG_GET_FD_BY_ID, {prog_id})")


def prog_id(prog_fd: int) -> int:
    """The kernel id of a loaded program (bpf_prog_info.id)."""
    info = ctypes.create_string_buffer(256)
    attr = _attr("=IIQ", prog_fd, len(info), ctypes.addressof(info))
    bpf(BPF_OBJ_GET_INFO_BY_FD, attr, "bpf(BPF_OBJ_GET_INFO_BY_FD)")
    # struct bpf_prog_info { __u32 type; __u32 id; ... }
    return struct.unpack_from("=II", info, 0)[1]


def replace_device_program(cgroup_dir: str, insns: bytes, license: str = "Apache") -> int:
    """Load ``insns`` and make it the only device program attached directly
    to ``cgroup_dir``: with exactly one old program it is swapped atomically
    (BPF_F_REPLACE), otherwise the new one is attached first and every old
    one detached afterwards, so there is never a window with no filter.
    Returns the new program's id. Holds no fds on return (an attached
    program stays alive while attached)."""
    # Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; raising it is
    # best-effort (needs CAP_SYS_RESOURCE to go past the hard limit).
    try:
        import resource
        _soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (hard, hard))
    except (OSError, ValueError):
        pass
    dfd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        old_ids = prog_query(dfd, target=cgroup_dir)
        pfd = prog_load(insns, license)
        try:
            new_id = prog_id(pfd)
            old_fds = []
            try:
                for i in old_ids:
                    try:
                        old_fds.append(prog_get_fd_by_id(i))
                    except OSError as e:
                        # A program we may not touch (LSM policy) can only add
                        # restrictions; leave it, as runc does.
                        if e.errno not in (errno.EPERM, errno.EACCES, errno.ENOENT):
                            raise
                if len(old_fds) == 1:
                    try:
                        prog_attach(dfd, pfd, flags=BPF_F_ALLOW_MULTI | BPF_F_REPLACE,
                                    replace_fd=old_fds[0], target=cgroup_dir)
                        return new_id
                    except OSError as e:
                        if e.errno != errno.EINVAL:  # a kernel without BPF_F_REPLACE
                            raise
                prog_attach(dfd, pfd, flags=BPF_F_ALLOW_MULTI, target=cgroup_dir)
                for ofd in old_fds:
                    try:
                        prog_detach(dfd, ofd, target=cgroup_dir)
                    except OSError as e:
                        if e.errno != errno.ENOENT:  # detached meanwhile
                            raise
                return new_id
            finally:
                for ofd in old_fds:
                    os.close(ofd)
        finally:
            os.close(pfd)
    finally:
        os.close(dfd)
