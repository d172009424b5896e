"""Linux capabilities: names to numbers, and applying the five OCI sets."""
from runtime import syscalls as sc

NAMES = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
]
NUMBERS = {n: i for i, n in enumerate(NAMES)}


_last_cap: int | None = None


def last_cap() -> int:
    """Highest capability number the running kernel knows. Read once per
    process (init asks for every capability set it applies)."""
    global _last_cap
    if _last_cap is None:
        try:
            with open("/proc/sys/kernel/cap_last_cap", "rb") as f:
                _last_cap = int(f.read())
        except (OSError, ValueError):
            _last_cap = len(NAMES) - 1
    return _last_cap


def unknown_name(capsets: dict | None) -> tuple[str, int, str] | None:
    """The first (set, index, name) in `capsets` that is not a capability of
    capabilities(7) at all (a typo such as CAP_TEST), or None. Such a value
    is an invalid configuration and is refused; a real capability the host
    cannot grant is only a warning (see to_mask)."""
    for k, names in (capsets or {}).items():
        for i, n in enumerate(names or ()):
            if n not in NUMBERS:
                return k, i, n
    return None


def unknown_error(capsets: dict | None, cli_names=()) -> str | None:
    """The one-line error for the first unknown name in `capsets` (naming
    the field, or --cap when the name came from `cli_names`), or None."""
    bad = unknown_name(capsets)
    if bad is None:
        return None
    k, i, n = bad
    where = "--cap" if n in cli_names else f"process.capabilities.{k}[{i}]"
    return f"{where}: unknown capability {n!r}"


def to_mask(names: list[str] | None, unknown: list[str]) -> int:
    """Mask for `names`; names this kernel does not know are appended to
    `unknown` and ignored, as runc does (it only warns)."""
    mask = 0
    top = last_cap()
    for n in names or ():
        i = NUMBERS.get(n)
        if i is None or i > top:
            unknown.append(n)
            continue
        mask |= 1 << i
    return mask


def drop_bounding(keep: int) -> None:
    """Drop every capability not in `keep` from the bounding set (needs CAP_SETPCAP)."""
    for i in range(last_cap() + 1):
        if not keep >> i & 1:
            # Dropping one that is not there is a no-op, so no
            # PR_CAPBSET_READ first; without CAP_SETPCAP every drop fails,
            # which only matters for a capability still in the set.
            try:
                sc.prctl(sc.PR_CAPBSET_DROP, i)
            except PermissionError:
                if sc.prctl(sc.PR_CAPBSET_READ, i) == 1:
                    raise


def apply_final(effective: int, permitted: int, inheritable: int, ambient: int) -> None:
    """Set the process's capability sets, then raise the ambient ones.

    The kernel only lets a capability be ambient when it is also permitted
    and inheritable; runc only warns about the others (its default spec asks
    for ambient caps without inheritable ones), so they are skipped here."""
    sc.capset(effective, permitted, inheritable)
    sc.prctl(sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_CLEAR_ALL)
    for i in range(last_cap() + 1):
        if (ambient & permitted & inheritable) >> i & 1:
            sc.prctl(sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_RAISE, i)
