"""Thin ctypes bindings to libseccomp.so.2 (2.5.x API).

Importing this module is cheap: neither ``ctypes`` nor the shared library is
loaded until the first function call (the runtime is a short-lived CLI and
most invocations never touch seccomp).

Conventions:

* libseccomp reports failure as ``-errno``; every wrapper here turns that into
  ``OSError(errno, "<function>: <what failed>: <strerror>")``.
* A filter context is an opaque integer handle (the C pointer) returned by
  :func:`init`. The caller owns it and must pass it to :func:`release` exactly
  once; nothing here releases a context implicitly.
* Constants mirror ``seccomp.h`` of libseccomp 2.5/2.6 so callers never need
  the header.
"""


import errno
from runtime.toolkit import os_lite as os

# --- actions (seccomp.h) -------------------------------------------------
ACT_KILL_PROCESS = 0x80000000
ACT_KILL_THREAD = 0x00000000
ACT_KILL = ACT_KILL_THREAD
ACT_TRAP = 0x00030000
ACT_NOTIFY = 0x7FC00000
ACT_LOG = 0x7FFC0000
ACT_ALLOW = 0x7FFF0000
_ACT_ERRNO_BASE = 0x00050000
_ACT_TRACE_BASE = 0x7FF00000


def ACT_ERRNO(errno_: int) -> int:
    """SCMP_ACT_ERRNO(x): only the low 16 bits of ``errno_`` are kept."""
    return _ACT_ERRNO_BASE | (errno_ & 0xFFFF)


def ACT_TRACE(msg: int) -> int:
    """SCMP_ACT_TRACE(x): only the low 16 bits of ``msg`` are kept."""
    return _ACT_TRACE_BASE | (msg & 0xFFFF)


# --- comparison operators (enum scmp_compare) -----------------------------
CMP_NE = 1
CMP_LT = 2
CMP_LE = 3
CMP_EQ = 4
CMP_GE = 5
CMP_GT = 6
CMP_MASKED_EQ = 7

# --- filter attributes (enum scmp_filter_attr) ----------------------------
FLTATR_ACT_DEFAULT = 1
FLTATR_ACT_BADARCH = 2
FLTATR_CTL_NNP = 3
FLTATR_CTL_TSYNC = 4
FLTATR_API_TSKIP = 5
FLTATR_CTL_LOG = 6
FLTATR_CTL_SSB = 7
FLTATR_CTL_OPTIMIZE = 8
FLTATR_API_SYSRAWRC = 9
FLTATR_CTL_WAITKILL = 10  # libseccomp >= 2.6.0 only

# seccomp_syscall_resolve_name() result for an unknown name (__NR_SCMP_ERROR)
NR_SCMP_ERROR = -1

# syscalls have at most six arguments (ARG_COUNT_MAX)
ARG_COUNT_MAX = 6

_LIBNAME = "libseccomp.so.2"
_lib = None
_ct = None  # runtime.toolkit.ffi (ctypes' core), imported on first use


class _Lib:
    """Holds the loaded CDLL and the ctypes struct type; built once."""

    def __init__(self):
        from runtime.toolkit import ffi as ctypes

        global _ct
        _ct = ctypes
        try:
            so = ctypes.Library(_LIBNAME)
        except OSError as e:
            raise OSError(getattr(e, "errno", None) or 2,
                          f"cannot load {_LIBNAME}: {e}") from None

        class ArgCmp(ctypes.Structure):
            # struct scmp_arg_cmp { unsigned int arg; enum scmp_compare op;
            #                       scmp_datum_t datum_a, datum_b; }
            _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                        ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]

        class Version(ctypes.Structure):
            _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint),
                        ("micro", ctypes.c_uint)]

        self.ArgCmp = ArgCmp
        vp, u32, c_int, c_uint = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint

        def fn(name, restype, *argtypes):
            f = getattr(so, name)
            f.restype = restype
            f.argtypes = list(argtypes)
            return f

        self.init = fn("seccomp_init", vp, u32)
        self.release = fn("seccomp_release", None, vp)
        self.rule_add_array = fn("seccomp_rule_add_array", c_int, vp, u32, c_int,
                                 c_uint, ctypes.POINTER(ArgCmp))
        self.arch_add = fn("seccomp_arch_add", c_int, vp, u32)
        self.arch_exist = fn("seccomp_arch_exist", c_int, vp, u32)
        self.arch_native = fn("seccomp_arch_native", u32)
        self.arch_resolve_name = fn("seccomp_arch_resolve_name", u32, ctypes.c_char_p)
        self.syscall_resolve_name = fn("seccomp_syscall_resolve_name", c_int, ctypes.c_char_p)
        self.syscall_resolve_name_arch = fn("seccomp_syscall_resolve_name_arch", c_int, u32,
                                            ctypes.c_char_p)
        self.syscall_resolve_num_arch = fn("seccomp_syscall_resolve_num_arch", vp, u32, c_int)
        self.free = fn("free", None, vp)  # for strings libseccomp strdup()s for us
        self.attr_set = fn("seccomp_attr_set", c_int, vp, c_int, u32)
        self.attr_get = fn("seccomp_attr_get", c_int, vp, c_int, ctypes.POINTER(u32))
        self.load = fn("seccomp_load", c_int, vp)
        self.notify_fd = fn("seccomp_notify_fd", c_int, vp)
        self.api_get = fn("seccomp_api_get", c_uint)
        self.version = fn("seccomp_version", ctypes.POINTER(Version))
        self.export_bpf = fn("seccomp_export_bpf", c_int, vp, c_int)


def _get() -> _Lib:
    global _lib
    if _lib is None:
        _lib = _Lib()
    return _lib


def _check(rc: int, what: str) -> int:
    """Raise OSError for a libseccomp ``-errno`` return; pass other values."""
    if rc < 0:
        err = -rc
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return rc


def available() -> bool:
    """True when libseccomp.so.2 can be loaded. Never raises."""
    try:
        _get()
        return True
    except OSError:
        return False


def version() -> tuple[int, int, int]:
    """(major, minor, micro) of the loaded libseccomp."""
    v = _get().version().contents
    return (v.major, v.minor, v.micro)


def api_get() -> int:
    """libseccomp API level (depends on the kernel too): 1 basic, 2 TSYNC,
    3 LOG flag/action + KILL_PROCESS, 4 SPEC_ALLOW, 5 NOTIFY, 6 TSYNC+NOTIFY,
    7 WAITKILL (libseccomp 2.6)."""
    return int(_get().api_get())


def init(default_action: int) -> int:
    """seccomp_init: a new filter context handle; caller must :func:`release` it."""
    ctx = _get().init(default_action & 0xFFFFFFFF)
    if not ctx:
        # seccomp_init returns NULL for an invalid action or out of memory
        raise OSError(errno.EINVAL, f"seccomp_init: cannot create filter with default action "
                          f"0x{default_action & 0xFFFFFFFF:08x}")
    return ctx


def release(ctx: int) -> None:
    """seccomp_release: frees the context. Not idempotent (C free())."""
    _get().release(ctx)


def rule_add_array(ctx: int, action: int, syscall: int,
                   args: list[tuple[int, int, int, int]] | tuple = ()) -> None:
    """seccomp_rule_add_array. ``args`` items are (arg_index, op, datum_a, datum_b);
    for CMP_MASKED_EQ datum_a is the mask and datum_b the value."""
    lib = _get()
    n = len(args)
    arr = (lib.ArgCmp * n)(*[lib.ArgCmp(a, op, da & 0xFFFFFFFFFFFFFFFF, db & 0xFFFFFFFFFFFFFFFF)
                             for a, op, da, db in args]) if n else None
    _check(lib.rule_add_array(ctx, action & 0xFFFFFFFF, syscall, n, arr),
           f"seccomp_rule_add_array(syscall={syscall}, action=0x{action & 0xFFFFFFFF:08x}, "
           f"{n} args)")


def arch_native() -> int:
    """Token (AUDIT_ARCH_*) of the native architecture."""
    return int(_get().arch_native())


def arch_resolve_name(name: str) -> int:
    """libseccomp arch name (e.g. "x86_64") -> token; 0 if unknown to this libseccomp."""
    return int(_get().arch_resolve_name(name.encode()))


def arch_exist(ctx: int, arch: int) -> bool:
    """True if ``arch`` is in the filter; -EEXIST from libseccomp means absent."""
    rc = _get().arch_exist(ctx, arch)
    if rc == 0:
        return True
    if rc == -17:  # -EEXIST: "does not exist" in libseccomp's convention
        return False
    _check(rc, f"seccomp_arch_exist(0x{arch:08x})")
    return False


def arch_add(ctx: int, arch: int) -> None:
    """seccomp_arch_add; raises OSError(EEXIST) if already present."""
    _check(_get().arch_add(ctx, arch), f"seccomp_arch_add(0x{arch:08x})")


def syscall_resolve_name(name: str) -> int:
    """Syscall number for the native arch (negative pseudo-numbers for syscalls
    multiplexed on this arch); NR_SCMP_ERROR (-1) if libseccomp does not know it."""
    return int(_get().syscall_resolve_name(name.encode()))


def syscall_resolve_name_arch(arch: int, name: str) -> int:
    """Like :func:`syscall_resolve_name` for arch token ``arch`` (x32 numbers
    include the 0x40000000 x32 bit)."""
    return int(_get().syscall_resolve_name_arch(arch, name.encode()))


def syscall_resolve_num_arch(arch: int, nr: int) -> str | None:
    """Name of syscall ``nr`` on arch token ``arch`` (0 = native), None if unknown."""
    lib = _get()
    p = lib.syscall_resolve_num_arch(arch, nr)
    if not p:
        return None
    try:
        return _ct.string_at(p).decode()
    finally:
        lib.free(p)


def attr_set(ctx: int, attr: int, value: int) -> None:
    """seccomp_attr_set; libseccomp itself refuses (EOPNOTSUPP/EINVAL) attributes
    the library or the kernel does not support."""
    _check(_get().attr_set(ctx, attr, value & 0xFFFFFFFF), f"seccomp_attr_set(attr={attr})")


def attr_get(ctx: int, attr: int) -> int:
    lib = _get()
    out = _ct.c_uint32(0)
    _check(lib.attr_get(ctx, attr, _ct.byref(out)), f"seccomp_attr_get(attr={attr})")
    return out.value


def load(ctx: int) -> None:
    """seccomp_load: installs the filter into the calling thread (all threads
    with CTL_TSYNC). Set FLTATR_API_SYSRAWRC first to get the kernel's errno
    instead of ECANCELED on failure."""
    rc = _get().load(ctx)
    if rc < 0:
        err = -rc
        raise OSError(err, f"seccomp_load: {os.strerror(err)}")


def notify_fd(ctx: int) -> int:
    """seccomp_notify_fd: the listener fd created by the last :func:`load` of a
    filter using ACT_NOTIFY in this process, or -1. libseccomp keeps this fd in
    per-process global state and never closes it except on seccomp_reset(NULL)."""
    return int(_get().notify_fd(ctx))


def export_bpf(ctx: int, fd: int) -> None:
    """seccomp_export_bpf: writes the raw BPF program to ``fd`` (not closed)."""
    _check(_get().export_bpf(ctx, fd), "seccomp_export_bpf")
