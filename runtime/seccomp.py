"""Seccomp filters from the OCI ``linux.seccomp`` object (runtime-spec 1.3).

Usage by the container init::

    f = seccomp.compile(cfg)   # validate + build (parent before fork, or init)
    fd = seccomp.load(f)       # install into the calling process

Behaviour follows runc where the spec is silent:

* ``SCMP_ACT_KILL`` means KILL_THREAD; ``SCMP_ACT_ERRNO``/``SCMP_ACT_TRACE``
  return ``errnoRet``/``defaultErrnoRet`` or EPERM when unset; ``errnoRet`` on
  any other action is an error (spec: "MUST print an error and fail").
* Syscall names libseccomp does not know are skipped (kept in
  ``Filter.skipped`` for logging), as are rules whose action equals the
  default action (libseccomp rejects those).
* A rule whose ``args`` name the same argument index more than once is split
  into one single-condition rule per arg (so the conditions are OR-ed),
  exactly like runc; otherwise all conditions of a rule are AND-ed.
* ``SCMP_ACT_NOTIFY`` may not be the default action nor be used on ``write``
  (runc refuses both: the init must be able to hand over the listener fd).
* The filter never sets no_new_privs itself (SCMP_FLTATR_CTL_NNP=0); loading
  therefore needs CAP_SYS_ADMIN unless the caller already set no_new_privs.
* runc's -ENOSYS stub: when ``architectures`` is set and the default action
  is not ALLOW/LOG/TRACE (nor ERRNO(ENOSYS)), syscall numbers above the
  highest one the profile names return ENOSYS (so libc falls back from new
  syscalls the profile predates). Such filters are installed with seccomp(2)
  directly (stub + libseccomp's exported program); all others with
  seccomp_load().

Importing this module is cheap: libseccomp is loaded on first use.
"""


import errno as _errno

from runtime import libseccomp as _L

_FIELD = "linux.seccomp"

# OCI action name -> libseccomp action (ERRNO/TRACE get the errno added later)
_ACTIONS = {
    "SCMP_ACT_KILL": _L.ACT_KILL_THREAD,
    "SCMP_ACT_KILL_THREAD": _L.ACT_KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": _L.ACT_KILL_PROCESS,
    "SCMP_ACT_TRAP": _L.ACT_TRAP,
    "SCMP_ACT_ERRNO": None,
    "SCMP_ACT_TRACE": None,
    "SCMP_ACT_ALLOW": _L.ACT_ALLOW,
    "SCMP_ACT_LOG": _L.ACT_LOG,
    "SCMP_ACT_NOTIFY": _L.ACT_NOTIFY,
}
# minimum libseccomp API level (which folds in kernel support) per action
_ACTION_API = {"SCMP_ACT_KILL_PROCESS": 3, "SCMP_ACT_LOG": 3, "SCMP_ACT_NOTIFY": 6}

_OPERATORS = {
    "SCMP_CMP_NE": _L.CMP_NE,
    "SCMP_CMP_LT": _L.CMP_LT,
    "SCMP_CMP_LE": _L.CMP_LE,
    "SCMP_CMP_EQ": _L.CMP_EQ,
    "SCMP_CMP_GE": _L.CMP_GE,
    "SCMP_CMP_GT": _L.CMP_GT,
    "SCMP_CMP_MASKED_EQ": _L.CMP_MASKED_EQ,
}

# OCI arch name -> libseccomp's arch name; whether this libseccomp knows it is
# asked at run time (seccomp_arch_resolve_name), so newer names cost nothing.
_ARCHS = {
    "SCMP_ARCH_X86": "x86",
    "SCMP_ARCH_X86_64": "x86_64",
    "SCMP_ARCH_X32": "x32",
    "SCMP_ARCH_ARM": "arm",
    "SCMP_ARCH_AARCH64": "aarch64",
    "SCMP_ARCH_LOONGARCH64": "loongarch64",
    "SCMP_ARCH_M68K": "m68k",
    "SCMP_ARCH_MIPS": "mips",
    "SCMP_ARCH_MIPS64": "mips64",
    "SCMP_ARCH_MIPS64N32": "mips64n32",
    "SCMP_ARCH_MIPSEL": "mipsel",
    "SCMP_ARCH_MIPSEL64": "mipsel64",
    "SCMP_ARCH_MIPSEL64N32": "mipsel64n32",
    "SCMP_ARCH_PPC": "ppc",
    "SCMP_ARCH_PPC64": "ppc64",
    "SCMP_ARCH_PPC64LE": "ppc64le",
    "SCMP_ARCH_S390": "s390",
    "SCMP_ARCH_S390X": "s390x",
    "SCMP_ARCH_PARISC": "parisc",
    "SCMP_ARCH_PARISC64": "parisc64",
    "SCMP_ARCH_RISCV64": "riscv64",
    "SCMP_ARCH_SH": "sh",
    "SCMP_ARCH_SHEB": "sheb",
}

# OCI flag -> (libseccomp attribute, seccomp(2) flag bit)
_FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": (_L.FLTATR_CTL_TSYNC, 1 << 0),
    "SECCOMP_FILTER_FLAG_LOG": (_L.FLTATR_CTL_LOG, 1 << 1),
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": (_L.FLTATR_CTL_SSB, 1 << 2),
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": (_L.FLTATR_CTL_WAITKILL, 1 << 5),
}

_U64 = (1 << 64) - 1
_ERRNO_MAX = 0xFFFF  # SECCOMP_RET_DATA is 16 bits; the kernel clamps to MAX_ERRNO


class Filter:
    """A compiled filter: owns one libseccomp context.

    ``close()`` releases the context and is idempotent; it also runs on garbage
    collection. A Filter may be loaded any number of times before it is closed.
    Attributes: ``uses_notify`` (a NOTIFY rule was added, so :func:`load`
    returns a listener fd), ``skipped`` (syscall names libseccomp did not know),
    ``rules`` (number of libseccomp rules added).
    """

    __slots__ = ("_ctx", "uses_notify", "skipped", "rules", "enosys", "_flag_bits")

    def __init__(self, ctx: int):
        self._ctx = ctx
        self.uses_notify = False
        self.skipped: list[str] = []
        self.rules = 0
        # {audit arch: {libseccomp arch token: highest syscall nr named}} when
        # the runc-style -ENOSYS stub applies (see _enosys_plan), else None
        self.enosys: dict[int, dict[int, int]] | None = None
        self._flag_bits = 0  # seccomp(2) flags requested by linux.seccomp.flags

    @property
    def ctx(self) -> int:
        if self._ctx is None:
            raise ValueError("seccomp filter is closed")
        return self._ctx

    def close(self) -> None:
        ctx, self._ctx = self._ctx, None
        if ctx is not None:
            _L.release(ctx)

    def export_bpf(self) -> bytes:
        """The BPF program libseccomp generates (host-endian struct
        sock_filter array), without the -ENOSYS stub."""
        from runtime.toolkit import os_lite as os
        # a memfd, not a pipe: libseccomp writes the whole program before we
        # read, and a pipe could fill up
        fd = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
        try:
            _L.export_bpf(self.ctx, fd)
            size = os.lseek(fd, 0, os.SEEK_END)
            return os.pread(fd, size, 0)
        finally:
            os.close(fd)

    def program(self) -> bytes:
        """The program :func:`load` installs: the -ENOSYS stub (if any)
        followed by libseccomp's program."""
        bpf = self.export_bpf()
        return _enosys_stub(self.enosys) + bpf if self.enosys else bpf

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


# ---------------------------------------------------------------- validation

def _is_uint(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _uint(obj: dict, key: str, field: str, maximum: int, required: bool = False):
    if key not in obj or obj[key] is None:
        if required:
            raise ValueError(f"{field}.{key}: required")
        return None
    v = obj[key]
    if not _is_uint(v) or v > maximum:
        raise ValueError(f"{field}.{key}: must be an integer in 0..{maximum}, got {v!r}")
    return v


def _action(name, errno_ret, field: str, errno_field: str) -> int:
    """OCI action name (+ errnoRet) -> libseccomp action value."""
    if not isinstance(name, str) or name not in _ACTIONS:
        raise ValueError(f'{field}: unknown action "{name}"')
    base = _ACTIONS[name]
    if base is None:  # ERRNO / TRACE carry an errno, EPERM by default (runc)
        ret = _errno.EPERM if errno_ret is None else errno_ret
        return _L.ACT_ERRNO(ret) if name == "SCMP_ACT_ERRNO" else _L.ACT_TRACE(ret)
    if errno_ret is not None:
        raise ValueError(f"{errno_field}: only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE, "
                         f'not "{name}"')
    return base


def _check_action_supported(name: str, field: str) -> None:
    need = _ACTION_API.get(name)
    if need is not None:
        have = _L.api_get()
        if have < need:
            raise ValueError(f'{field}: action "{name}" needs libseccomp API level {need}, '
                             f"this libseccomp/kernel provides {have}")


def _list(obj: dict, key: str, field: str) -> list:
    v = obj.get(key)
    if v is None:
        return []
    if not isinstance(v, list):
        raise ValueError(f"{field}.{key}: must be an array")
    return v


def _parse_args(args: list, field: str) -> list[tuple[int, int, int, int]]:
    out = []
    for j, a in enumerate(args):
        af = f"{field}.args[{j}]"
        if not isinstance(a, dict):
            raise ValueError(f"{af}: must be an object")
        index = _uint(a, "index", af, _L.ARG_COUNT_MAX - 1, required=True)
        value = _uint(a, "value", af, _U64, required=True)
        value2 = _uint(a, "valueTwo", af, _U64) or 0
        op = a.get("op")
        if op is None:
            raise ValueError(f"{af}.op: required")
        if op not in _OPERATORS:
            raise ValueError(f'{af}.op: unknown operator "{op}"')
        # MASKED_EQ: datum_a is the mask (value), datum_b the compared value
        # (valueTwo); other operators only look at datum_a.
        out.append((index, _OPERATORS[op], value, value2))
    return out


def _conditions(conds: list[tuple[int, int, int, int]]) -> list[list[tuple[int, int, int, int]]]:
    """Group conditions into libseccomp rules. libseccomp refuses two
    conditions on one argument in a rule (EINVAL), so, like runc, when any
    index repeats every condition becomes its own rule (OR semantics)."""
    if not conds:
        return [[]]
    indexes = [c[0] for c in conds]
    if len(set(indexes)) != len(indexes):
        return [[c] for c in conds]
    return [conds]


# ------------------------------------------------------------------- public

def uses_notify(cfg: dict | None) -> bool:
    """True iff :func:`compile` of ``cfg`` yields a filter with a NOTIFY rule,
    i.e. :func:`load` will return a listener fd. Entries whose names are all
    unknown to libseccomp do not count (they are skipped). Does not validate
    the rest of ``cfg``; libseccomp is only loaded if a NOTIFY entry exists."""
    if not isinstance(cfg, dict):
        return False
    if cfg.get("defaultAction") == "SCMP_ACT_NOTIFY":
        return True  # compile() rejects this; say "yes" so callers don't skip the fd path
    for entry in cfg.get("syscalls") or ():
        if isinstance(entry, dict) and entry.get("action") == "SCMP_ACT_NOTIFY":
            for name in entry.get("names") or ():
                if isinstance(name, str) and name and \
                        _L.syscall_resolve_name(name) != _L.NR_SCMP_ERROR:
                    return True
    return False


def compile(cfg: dict) -> Filter:  # noqa: A001 - the team's agreed API name
    """Validate ``linux.seccomp`` and build a libseccomp filter context.

    Raises ValueError with one line naming the offending field for any
    invalid or unsupported input (including flags/actions that this
    libseccomp or kernel cannot do). Does not touch the calling process's
    seccomp state. The returned Filter owns the context (see Filter.close).
    """
    if not isinstance(cfg, dict):
        raise ValueError(f"{_FIELD}: must be an object")

    # --- validate everything before creating the context
    default_name = cfg.get("defaultAction")
    if default_name is None:
        raise ValueError(f"{_FIELD}.defaultAction: required")
    default_errno = _uint(cfg, "defaultErrnoRet", _FIELD, _ERRNO_MAX)
    default_act = _action(default_name, default_errno, f"{_FIELD}.defaultAction",
                          f"{_FIELD}.defaultErrnoRet")
    if default_name == "SCMP_ACT_NOTIFY":
        raise ValueError(f"{_FIELD}.defaultAction: SCMP_ACT_NOTIFY cannot be the default action")

    arch_names = _list(cfg, "architectures", _FIELD)
    for i, a in enumerate(arch_names):
        if not isinstance(a, str) or a not in _ARCHS:
            raise ValueError(f'{_FIELD}.architectures[{i}]: unknown architecture "{a}"')

    flags = _list(cfg, "flags", _FIELD)
    for i, fl in enumerate(flags):
        if not isinstance(fl, str) or fl not in _FLAGS:
            raise ValueError(f'{_FIELD}.flags[{i}]: unknown flag "{fl}"')

    if cfg.get("listenerPath") is not None and not isinstance(cfg["listenerPath"], str):
        raise ValueError(f"{_FIELD}.listenerPath: must be a string")
    if cfg.get("listenerMetadata") is not None and not cfg.get("listenerPath"):
        raise ValueError(f"{_FIELD}.listenerMetadata: must not be set without listenerPath")

    # (names, action value, action name, rule groups, field)
    plan = []
    for i, entry in enumerate(_list(cfg, "syscalls", _FIELD)):
        sf = f"{_FIELD}.syscalls[{i}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{sf}: must be an object")
        names = entry.get("names")
        if not isinstance(names, list) or not names:
            raise ValueError(f"{sf}.names: must be a non-empty array of syscall names")
        for j, n in enumerate(names):
            if not isinstance(n, str) or not n:
                raise ValueError(f"{sf}.names[{j}]: must be a non-empty string")
        act_name = entry.get("action")
        if act_name is None:
            raise ValueError(f"{sf}.action: required")
        act = _action(act_name, _uint(entry, "errnoRet", sf, _ERRNO_MAX),
                      f"{sf}.action", f"{sf}.errnoRet")
        if act_name == "SCMP_ACT_NOTIFY" and "write" in names:
            raise ValueError(f"{sf}.names: SCMP_ACT_NOTIFY cannot be used for the write syscall")
        groups = _conditions(_parse_args(_list(entry, "args", sf), sf))
        plan.append((names, act, act_name, groups, sf))

    # --- checks that need libseccomp
    _check_action_supported(default_name, f"{_FIELD}.defaultAction")
    for _names, _act, act_name, _g, sf in plan:
        _check_action_supported(act_name, f"{sf}.action")
    arch_tokens = []
    for i, a in enumerate(arch_names):
        tok = _L.arch_resolve_name(_ARCHS[a])
        if not tok:
            raise ValueError(f'{_FIELD}.architectures[{i}]: "{a}" is not supported by '
                             f"libseccomp {'.'.join(map(str, _L.version()))}")
        arch_tokens.append(tok)

    f = Filter(_L.init(default_act))
    try:
        ctx = f.ctx
        # The runtime sets no_new_privs itself when process.noNewPrivileges asks.
        _L.attr_set(ctx, _L.FLTATR_CTL_NNP, 0)
        try:
            # report the kernel's errno from seccomp_load instead of ECANCELED
            _L.attr_set(ctx, _L.FLTATR_API_SYSRAWRC, 1)
        except OSError:
            pass
        for i, tok in enumerate(arch_tokens):
            if not _L.arch_exist(ctx, tok):
                try:
                    _L.arch_add(ctx, tok)
                except OSError as e:
                    # e.g. EDOM: libseccomp cannot mix endianness in one filter
                    raise ValueError(f'{_FIELD}.architectures[{i}]: cannot add "{arch_names[i]}" '
                                     f"to a filter for this machine: {e.strerror}") from None
        for i, fl in enumerate(flags):
            attr, bit = _FLAGS[fl]
            f._flag_bits |= bit
            try:
                _L.attr_set(ctx, attr, 1)
            except OSError as e:
                raise ValueError(
                    f'{_FIELD}.flags[{i}]: "{fl}" is not supported by libseccomp '
                    f"{'.'.join(map(str, _L.version()))} on this kernel ({e.strerror})") from None

        for names, act, act_name, groups, sf in plan:
            if act == default_act:
                continue  # redundant; libseccomp would refuse it
            for j, name in enumerate(names):
                nr = _L.syscall_resolve_name(name)
                if nr == _L.NR_SCMP_ERROR:
                    f.skipped.append(name)
                    continue
                for conds in groups:
                    try:
                        _L.rule_add_array(ctx, act, nr, conds)
                    except OSError as e:
                        raise ValueError(f'{sf}.names[{j}]: cannot add rule for "{name}": '
                                         f"{e.strerror}") from None
                    f.rules += 1
                if act == _L.ACT_NOTIFY:
                    f.uses_notify = True

        f.enosys = _enosys_plan(default_name, default_errno, arch_tokens,
                                [n for names, *_ in plan for n in names])

        if f.rules > 32:
            # binary-tree dispatch for long rule sets (as runc; libseccomp
            # <= 2.5.4 misbehaves with it on empty filters, hence the bound)
            try:
                _L.attr_set(ctx, _L.FLTATR_CTL_OPTIMIZE, 2)
            except OSError:
                pass
    except BaseException:
        f.close()
        raise
    return f


def load(f: Filter) -> int | None:
    """Install ``f`` into the calling process (all threads if compiled with
    SECCOMP_FILTER_FLAG_TSYNC). Everything after this call runs under the filter.

    Returns the seccomp user-notification listener fd if the filter has a
    NOTIFY rule, else None. The caller owns that fd and must close it.
    A process can have only one listener (the kernel refuses a second with
    EBUSY; libseccomp would silently skip it, so we check first): loading a
    second NOTIFY filter raises OSError(EBUSY).
    Raises OSError naming the failure (e.g. EACCES without CAP_SYS_ADMIN and
    without no_new_privs). Does not close or release ``f``.
    """
    ctx = f.ctx
    if f.enosys:
        return _load_patched(f)
    if f.uses_notify and _L.notify_fd(ctx) >= 0:
        raise OSError(_errno.EBUSY, "seccomp load: libseccomp already created a notify listener "
                                    "in this process; cannot create a second one")
    try:
        _L.load(ctx)
    except OSError as e:
        if e.errno == _errno.EACCES:
            raise OSError(e.errno, f"{e.strerror} (loading a seccomp filter needs CAP_SYS_ADMIN "
                                   "or no_new_privs)") from None
        raise
    if not f.uses_notify:
        return None
    fd = _L.notify_fd(ctx)
    if fd < 0:
        raise OSError(_errno.EOPNOTSUPP, "seccomp load: filter uses SCMP_ACT_NOTIFY but no "
                                         "listener fd was created")
    return fd


# ------------------------------------------------------------ -ENOSYS stub
#
# runc prepends a small BPF stub to libseccomp's program: for every
# architecture listed in linux.seccomp.architectures, a syscall number above
# the highest one the profile names fails with ENOSYS instead of getting the
# default action. libc treats ENOSYS as "kernel too old, use the fallback"
# (clone3 -> clone, fchmodat2 -> fchmodat, ...), so new syscalls a profile
# predates do not break programs. Same conditions as runc: the default action
# is not ALLOW/LOG/TRACE, defaultErrnoRet is not already ENOSYS, and only the
# listed architectures get a check (none listed: no stub).

_SECCOMP_SET_MODE_FILTER = 1
_FILTER_FLAG_TSYNC = 1 << 0
_FILTER_FLAG_NEW_LISTENER = 1 << 3
_FILTER_FLAG_TSYNC_ESRCH = 1 << 4
_X32_SYSCALL_BIT = 0x40000000

_BPF_LD_W_ABS = 0x20   # BPF_LD | BPF_W | BPF_ABS
_BPF_JA = 0x05         # BPF_JMP | BPF_JA
_BPF_JEQ = 0x15        # BPF_JMP | BPF_JEQ | BPF_K
_BPF_JGT = 0x25        # BPF_JMP | BPF_JGT | BPF_K
_BPF_JSET = 0x45       # BPF_JMP | BPF_JSET | BPF_K
_BPF_RET = 0x06        # BPF_RET | BPF_K
_OFF_NR, _OFF_ARCH = 0, 4  # struct seccomp_data


def _enosys_plan(default_name, default_errno, arch_tokens, names):
    """{audit arch: {arch token: highest syscall nr among ``names``}}, or None
    when no stub applies. x32 shares AUDIT_ARCH_X86_64 with x86_64 (its
    syscall numbers carry the x32 bit), so that audit arch may hold two."""
    if default_name in ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_TRACE"):
        return None
    if default_name == "SCMP_ACT_ERRNO" and default_errno == _errno.ENOSYS:
        return None
    x86_64, x32 = _L.arch_resolve_name("x86_64"), _L.arch_resolve_name("x32")
    plan: dict[int, dict[int, int]] = {}
    for tok in dict.fromkeys(arch_tokens):
        best = max((_L.syscall_resolve_name_arch(tok, n) for n in set(names)), default=-1)
        if best > 0:  # unknown names are -1, multiplexed pseudo-syscalls < 0
            plan.setdefault(x86_64 if tok == x32 else tok, {})[tok] = best
    return plan or None


def _enosys_stub(plan: dict[int, dict[int, int]]) -> bytes:
    """Assemble the stub; it ends by falling through into the filter."""
    import struct
    x86_64, x32 = _L.arch_resolve_name("x86_64"), _L.arch_resolve_name("x32")
    s390 = {_L.arch_resolve_name("s390"), _L.arch_resolve_name("s390x")}
    prog: list[list] = []  # [code, jt, jf, k]; jt/jf/k of jumps may be labels
    labels: dict[str, int] = {}

    def emit(code, k=0, jt=0, jf=0):
        prog.append([code, jt, jf, k])

    emit(_BPF_LD_W_ABS, _OFF_ARCH)
    for i, audit in enumerate(plan):
        emit(_BPF_JEQ, audit, jt=f"arch{i}")
    emit(_BPF_JA, "filter")  # other archs: libseccomp's bad-arch handling
    for i, (audit, maxes) in enumerate(plan.items()):
        labels[f"arch{i}"] = len(prog)
        emit(_BPF_LD_W_ABS, _OFF_NR)
        if audit in s390:
            # s390 multiplexes unknown large syscalls through nr 0
            emit(_BPF_JEQ, 0, jt="enosys")
        if audit == x86_64:
            emit(_BPF_JSET, _X32_SYSCALL_BIT, jt=f"x32_{i}")
            if x86_64 in maxes:
                emit(_BPF_JGT, maxes[x86_64], jt="enosys")
            emit(_BPF_JA, "filter")
            labels[f"x32_{i}"] = len(prog)
            if x32 in maxes:
                emit(_BPF_JGT, maxes[x32], jt="enosys")
            emit(_BPF_JA, "filter")
        else:
            (top,) = maxes.values()
            emit(_BPF_JGT, top, jt="enosys")
            emit(_BPF_JA, "filter")
    labels["enosys"] = len(prog)
    emit(_BPF_RET, _L.ACT_ERRNO(_errno.ENOSYS))
    labels["filter"] = len(prog)

    out = []
    for pc, (code, jt, jf, k) in enumerate(prog):
        def rel(x):  # BPF jumps are relative to the next instruction
            return labels[x] - pc - 1 if isinstance(x, str) else x
        jt, jf = rel(jt), rel(jf)
        if code == _BPF_JA:
            k = rel(k)
        if not (0 <= jt <= 255 and 0 <= jf <= 255):
            raise ValueError(f"{_FIELD}.architectures: too many for the -ENOSYS stub")
        out.append(struct.pack("=HBBI", code, jt, jf, k))
    return b"".join(out)


def _load_patched(f: Filter) -> int | None:
    """load() for filters with an -ENOSYS stub: install stub + libseccomp's
    program with seccomp(2) ourselves (as runc does), with the requested
    flags, plus NEW_LISTENER for NOTIFY rules. No no_new_privs is set."""
    from runtime.toolkit import ffi as ctypes
    code = f.program()
    ninsn = len(code) // 8
    if ninsn > 4096:  # BPF_MAXINSNS
        raise OSError(_errno.EINVAL, f"seccomp load: program has {ninsn} instructions, "
                                     "the kernel takes at most 4096")

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    buf = ctypes.create_string_buffer(code, len(code))
    fprog = SockFprog(ninsn, ctypes.addressof(buf))
    flags = f._flag_bits
    if f.uses_notify:
        flags |= _FILTER_FLAG_NEW_LISTENER
        if flags & _FILTER_FLAG_TSYNC:
            # TSYNC reports failure as a TID, which would be ambiguous with the
            # listener fd; TSYNC_ESRCH makes it -ESRCH instead
            flags |= _FILTER_FLAG_TSYNC_ESRCH
    nr = _L.syscall_resolve_name("seccomp")
    libc = ctypes.Library(None)
    sysc = libc.syscall
    sysc.restype = ctypes.c_long
    args = (ctypes.c_long(nr), ctypes.c_ulong(_SECCOMP_SET_MODE_FILTER), ctypes.c_ulong(flags),
            ctypes.byref(fprog))
    # everything is prepared: from here on the filter applies
    rc = sysc(*args)
    if rc < 0:
        err = ctypes.get_errno()
        msg = f"seccomp load: {_os_strerror(err)}"
        if err == _errno.EACCES:
            msg += " (loading a seccomp filter needs CAP_SYS_ADMIN or no_new_privs)"
        raise OSError(err, msg)
    if f.uses_notify:
        return rc
    if rc > 0:  # TSYNC without listener: rc is the thread that could not sync
        raise OSError(_errno.ESRCH, f"seccomp load: thread {rc} could not be synchronized (TSYNC)")
    return None


def _os_strerror(err: int) -> str:
    import posix  # a builtin module: importable after pivot_root too
    return posix.strerror(err)


def _kernel_flag_supported(bit: int) -> bool:
    """seccomp(SECCOMP_SET_MODE_FILTER, bit, NULL) fails with EFAULT when the
    kernel knows the flag (it got as far as reading the NULL program) and with
    EINVAL when it does not. Nothing is installed either way."""
    from runtime.toolkit import ffi as ctypes
    nr = _L.syscall_resolve_name("seccomp")
    if nr < 0:
        return False
    libc = ctypes.Library(None)
    libc.syscall.restype = ctypes.c_long
    rc = libc.syscall(ctypes.c_long(nr), ctypes.c_ulong(1), ctypes.c_ulong(bit),
                      ctypes.c_void_p(None))
    return rc == -1 and ctypes.get_errno() == _errno.EFAULT


def features() -> dict:
    """The ``linux.seccomp`` object of runtime-spec features.md, for this
    libseccomp and kernel. Lists are sorted (as runc prints them). If
    libseccomp cannot be loaded: {"enabled": False}."""
    if not _L.available():
        return {"enabled": False}
    api = _L.api_get()
    actions = sorted(a for a in _ACTIONS if api >= _ACTION_API.get(a, 0))
    supported = []
    archs = []
    ctx = _L.init(_L.ACT_ALLOW)
    try:
        # an arch is usable if this libseccomp knows it and can put it in a
        # filter next to the native one (it refuses mixed endianness)
        for oci, name in _ARCHS.items():
            tok = _L.arch_resolve_name(name)
            if not tok:
                continue
            probe = _L.init(_L.ACT_ALLOW)
            try:
                if not _L.arch_exist(probe, tok):
                    _L.arch_add(probe, tok)
                archs.append(oci)
            except OSError:
                pass
            finally:
                _L.release(probe)
        for name, (attr, bit) in _FLAGS.items():
            try:
                _L.attr_set(ctx, attr, 1)
            except OSError:
                continue  # libseccomp (or the kernel, as libseccomp probes it) can't
            if _kernel_flag_supported(bit):
                supported.append(name)
    finally:
        _L.release(ctx)
    return {
        "enabled": True,
        "actions": actions,
        "operators": sorted(_OPERATORS),
        "archs": sorted(archs),
        "knownFlags": sorted(_FLAGS),
        "supportedFlags": sorted(supported),
    }
