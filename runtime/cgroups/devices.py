"""Device access rules: OCI rule lists, the cgroup v1 devices semantics
emulated in memory, and the minimal v1 transition / v2 program rule set.

The emulation follows what runc's devices emulator does (and the kernel's
devices cgroup does for v1): a cgroup is either an allow-list (default
deny, "exceptions" are allowed devices) or a deny-list (default allow,
exceptions are denied devices). Writing a wildcard "a" rule resets the
mode; other rules add to / remove from the exception set. Applying an OCI
rule list in order therefore means later rules override earlier ones.
"""

from .common import CgroupError

WILDCARD = -1
_PERMS = "rwm"


class Rule(tuple):
    """One device rule (immutable). type is 'a', 'b' or 'c'; major/minor -1 = '*'.
    A bare tuple subclass: `dataclasses` or `typing` would be imported on
    every `create`."""

    __slots__ = ()
    _fields = ("type", "major", "minor", "access", "allow")

    def __new__(cls, type: str, major: int, minor: int, access: str, allow: bool):
        return tuple.__new__(cls, (type, major, minor, access, allow))

    type = property(lambda self: self[0])
    major = property(lambda self: self[1])
    minor = property(lambda self: self[2])
    access = property(lambda self: self[3])
    allow = property(lambda self: self[4])

    def __repr__(self) -> str:
        return "Rule(" + ", ".join(f"{k}={v!r}" for k, v in zip(self._fields, self)) + ")"

    def cgroup_string(self) -> str:
        """The v1 devices.allow/devices.deny line, e.g. 'c 1:3 rwm'."""
        maj = "*" if self.major == WILDCARD else str(self.major)
        mnr = "*" if self.minor == WILDCARD else str(self.minor)
        return f"{self.type} {maj}:{mnr} {self.access}"


def _norm_perms(p: str) -> str:
    return "".join(c for c in _PERMS if c in p)


def rule_from_oci(d: dict, idx: int = 0) -> Rule:
    """Convert one linux.resources.devices[] entry (runc's specconv rules:
    missing type = 'a', missing major/minor = wildcard, empty access is an
    error). Access is taken as runc 1.1 takes it: the set of r, w and m in
    it, in any order, other letters ignored ("rwa" is "rw", "mr" is "rm");
    one with none of the three grants nothing and is refused (runc fails
    such a rule when it checks the cgroup it wrote)."""
    t = d.get("type") or "a"
    if t not in ("a", "b", "c"):
        # 'u' and 'p' are valid for linux.devices but not for cgroup rules.
        raise CgroupError(f"linux.resources.devices[{idx}].type: invalid cgroup device type {t!r}")
    access = d.get("access") or ""
    if access == "":
        raise CgroupError(f"linux.resources.devices[{idx}].access: device access cannot be empty")
    if not _norm_perms(access):
        raise CgroupError(f"linux.resources.devices[{idx}].access: invalid access {access!r} "
                          "(none of r, w and m)")
    major = d.get("major")
    minor = d.get("minor")
    major = WILDCARD if major is None else int(major)
    minor = WILDCARD if minor is None else int(minor)
    return Rule(t, major, minor, _norm_perms(access), bool(d.get("allow", False)))


def rules_from_oci(lst) -> list[Rule]:
    return [rule_from_oci(d, i) for i, d in enumerate(lst or [])]


# runc 1.1 appends these to every container's rule list (specconv's
# AllowedDevices): mknod of anything, plus the standard /dev nodes.
RUNC_DEFAULT_RULES: tuple[dict, ...] = (
    {"allow": True, "type": "c", "access": "m"},
    {"allow": True, "type": "b", "access": "m"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},   # /dev/null
    {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},   # /dev/random
    {"allow": True, "type": "c", "major": 1, "minor": 7, "access": "rwm"},   # /dev/full
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},   # /dev/tty
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},   # /dev/zero
    {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},   # /dev/urandom
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},             # /dev/pts/*
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},   # /dev/ptmx
    {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rwm"},   # /dev/net/tun
)


def with_runc_defaults(oci_rules) -> list[dict]:
    """The user's rules followed by runc's default device rules (what runc
    hands its cgroup managers). Returns a new list."""
    return list(oci_rules or []) + [dict(r) for r in RUNC_DEFAULT_RULES]


def resources_with_runc_defaults(resources: dict | None) -> dict:
    """A copy of linux.resources whose device rules are with_runc_defaults().
    A node made from linux.devices gets no rule of its own, as in runc:
    linux.resources.devices alone decides whether it opens."""
    res = dict(resources or {})
    res["devices"] = with_runc_defaults(res.get("devices"))
    return res


class Emulator:
    """In-memory model of a v1 devices cgroup.

    default_allow True = deny-list mode. ``rules`` maps (type, major, minor)
    to the permission string of that exception.
    """

    def __init__(self, default_allow: bool = False):
        self.default_allow = default_allow
        self.rules: dict[tuple[str, int, int], str] = {}

    def __eq__(self, other):
        return (isinstance(other, Emulator) and self.default_allow == other.default_allow
                and self.rules == other.rules)

    # -- building
    def apply(self, rule: Rule) -> None:
        if rule.type == "a":
            # A wildcard resets the cgroup into the given mode.
            self.default_allow = rule.allow
            self.rules = {}
            return
        meta = (rule.type, rule.major, rule.minor)
        if rule.allow == self.default_allow:
            self._remove(meta, rule.access)
        else:
            self._add(meta, rule.access)

    def _add(self, meta, perms: str) -> None:
        self.rules[meta] = _norm_perms(self.rules.get(meta, "") + perms)

    def _remove(self, meta, perms: str) -> None:
        t, maj, mnr = meta
        # The kernel silently ignores removing part of a wildcard exception;
        # runc turns that into an error so users don't think they punched a
        # hole they didn't. Do the same.
        for partial in ((t, WILDCARD, mnr), (t, maj, WILDCARD), (t, WILDCARD, WILDCARD)):
            if partial == meta:
                continue
            have = self.rules.get(partial, "")
            if any(c in have for c in perms):
                raise CgroupError(
                    f"device rule {Rule(t, maj, mnr, perms, True).cgroup_string()!r} not supported by "
                    f"devices cgroup v1: cannot punch a hole in existing wildcard rule "
                    f"{Rule(partial[0], partial[1], partial[2], have, True).cgroup_string()!r}")
        left = "".join(c for c in self.rules.get(meta, "") if c not in perms)
        if left:
            self.rules[meta] = left
        else:
            self.rules.pop(meta, None)

    @classmethod
    def from_rules(cls, rules) -> "Emulator":
        """State after replaying ``rules`` on a fresh *deny-all* cgroup."""
        e = cls(default_allow=False)
        for r in rules:
            e.apply(r)
        return e

    @classmethod
    def from_list(cls, text: str) -> "Emulator":
        """State described by a v1 devices.list. A deny-list cgroup shows
        only 'a *:* rwm' (its denials are invisible), so it reads back as
        allow-all, as with runc."""
        e = cls(default_allow=False)
        for line in text.splitlines():
            line = line.strip()
            if not line:
                continue
            f = line.replace(":", " ").split()
            if len(f) != 4:
                raise CgroupError(f"malformed devices.list line {line!r}")
            t, maj, mnr, perms = f
            if t == "a":
                e = cls(default_allow=True)
                continue
            if t not in ("b", "c"):
                raise CgroupError(f"devices.list: unknown device type in {line!r}")
            e.apply(Rule(t, WILDCARD if maj == "*" else int(maj),
                         WILDCARD if mnr == "*" else int(mnr), _norm_perms(perms), True))
        return e

    def _ordered(self):
        # In the order the rules were first added: the config's order, which
        # the kernel keeps in devices.list (spec: "apply entries in the
        # listed order"). Deterministic, since the input is a list.
        return list(self.rules.items())

    def transition(self, target: "Emulator") -> list[Rule]:
        """Rules to write to move a cgroup from this state to ``target``,
        least disruptive first-principles: only write the mode-resetting
        'a' rule when the mode changes or when we are a deny-list (whose
        real contents we cannot know)."""
        out: list[Rule] = []
        old = self.rules
        if self.default_allow or self.default_allow != target.default_allow:
            out.append(Rule("a", WILDCARD, WILDCARD, "rwm", target.default_allow))
            old = {}
        for (t, maj, mnr), perms in sorted(old.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
            dropped = "".join(c for c in perms if c not in target.rules.get((t, maj, mnr), ""))
            if dropped:
                out.append(Rule(t, maj, mnr, dropped, target.default_allow))
        for (t, maj, mnr), perms in target._ordered():
            gained = "".join(c for c in perms if c not in old.get((t, maj, mnr), ""))
            if gained:
                out.append(Rule(t, maj, mnr, gained, not target.default_allow))
        return out

    def clean_rules(self) -> list[Rule]:
        """Minimal rule list that turns a deny-all cgroup into this state:
        what the v2 eBPF program is generated from."""
        return Emulator(default_allow=False).transition(self)


def v1_writes(current_list: str, oci_rules) -> list[tuple[str, str]]:
    """(file, line) pairs to write for a v1 devices cgroup currently showing
    ``current_list`` in devices.list so that it ends up as ``oci_rules``
    replayed on a deny-all cgroup. file is 'devices.allow'/'devices.deny'."""
    target = Emulator.from_rules(rules_from_oci(oci_rules))
    current = Emulator.from_list(current_list)
    return [("devices.allow" if r.allow else "devices.deny", r.cgroup_string())
            for r in current.transition(target)]
