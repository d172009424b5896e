"""Building blocks of the schema validators generated into
runtime/_config_validator.py by scripts/gen_validator.py: small check
constructors the generated code composes. Standard library only, so the
runtime's cold path stays cheap."""

class Invalid(ValueError):
    """A value violates the schema: `field` names where, `problem` says what (one line)."""

    def __init__(self, field, problem):
        super().__init__(field, problem)
        self.field = field
        self.problem = problem

    def __str__(self):
        return f"{self.field}: {self.problem}"


_M = object()  # "property absent" marker; None is a legitimate JSON value


def _k(key):
    # Plain names join with "."; names with dots, spaces etc. are quoted so the
    # path stays unambiguous: linux.sysctl["net.ipv4.ip_forward"].
    if key and key.isascii() and key.replace("_", "a").replace("-", "a").isalnum():
        return "." + key
    return '["' + key.encode("unicode_escape").decode("ascii").replace('"', '\\"') + '"]'


def _finish(field):
    if not field:
        return "(document)"
    return field[1:] if field[0] == "." else field


def _jtype(v):
    if v is None:
        return "null"
    if v is True or v is False:
        return "boolean"
    if isinstance(v, str):
        return "string"
    if isinstance(v, dict):
        return "object"
    if isinstance(v, list):
        return "array"
    if type(v) is int:
        return "integer"
    if type(v) is float:
        return "number"
    return type(v).__name__


def _show(v):
    # repr() escapes newlines, so the message stays on one line.
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


# An "integer" is an integer literal in the JSON text (int after json.loads):
# 2.0 and 1e3 are refused, as Go's encoding/json (runc) refuses them.
_IS = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: type(v) is int,
    "number": lambda v: type(v) is int or type(v) is float,
    "boolean": lambda v: v is True or v is False,
    "null": lambda v: v is None,
}
_NOUN = {"object": "an object", "array": "an array", "string": "a string", "integer": "an integer",
         "number": "a number", "boolean": "a boolean", "null": "null"}


def _bad_type(types, v):
    return Invalid("", "must be " + " or ".join(_NOUN[t] for t in types) + " (got " + _jtype(v) + ")")


def _any(v):
    pass


def _types(types):
    tests = tuple(_IS[t] for t in types)

    def check(v):
        for test in tests:
            if test(v):
                return
        raise _bad_type(types, v)
    return check


def _int(lo, hi, msg):
    lo = float("-inf") if lo is None else lo
    hi = float("inf") if hi is None else hi

    def check(v):
        if type(v) is not int:
            raise _bad_type(("integer",), v)
        if not lo <= v <= hi:
            raise Invalid("", msg + " (got " + _show(v) + ")")
    return check


_SEMVER_ID = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-")


def _semver_ids(s):
    return s != "" and all(x != "" and _SEMVER_ID.issuperset(x) for x in s.split("."))


def _semver_num(p):
    return p.isascii() and p.isdigit() and (p == "0" or p[0] != "0")


def _is_semver(v):
    core, plus, build = v.partition("+")
    if plus and not _semver_ids(build):
        return False
    core, dash, pre = core.partition("-")
    if dash and not _semver_ids(pre):
        return False
    parts = core.split(".")
    return len(parts) == 3 and all(_semver_num(p) for p in parts)


def _is_hugepage_size(v):
    n = v[:-2]
    return (len(v) >= 3 and v[-1] == "B" and v[-2] in "KMGTPE" and n.isascii() and n.isdigit()
            and n[0] != "0")


# Plain-Python equivalents of the patterns specs/ uses, so that validating a
# config never imports `re` (and `enum` with it) on create. Each one is
# checked against re on a corpus in tests/unit/test_schema_patterns.py; any
# other pattern falls back to re.
KNOWN_PATTERNS = {
    r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?"
    r"(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(?!\n)$": _is_semver,
    r"^[^\n]*(?!\n)$": lambda v: "\n" not in v,
    r"^[rwm]*(?!\n)$": lambda v: frozenset("rwm").issuperset(v),
    r"^MB:[^\n]*(?!\n)$": lambda v: v.startswith("MB:") and "\n" not in v,
    r"^[1-9][0-9]*[KMGTPE]B(?!\n)$": _is_hugepage_size,
}


class _KnownPattern:
    def __init__(self, pred):
        self.pred = pred

    def search(self, v):
        return True if self.pred(v) else None


def _str(min_len, prefix=None, pattern=None, msg=None):
    # Compiled on first use: sre compilation is the bulk of this module's
    # import time, and validate_state/validate_features may never run.
    regex = _KnownPattern(KNOWN_PATTERNS[pattern]) if pattern in KNOWN_PATTERNS else None

    def check(v):
        nonlocal regex
        if not isinstance(v, str):
            raise _bad_type(("string",), v)
        if len(v) < min_len:
            raise Invalid("", "must not be empty" if min_len == 1
                          else "must be at least %d characters long" % min_len)
        if prefix is not None and not v.startswith(prefix):
            raise Invalid("", msg + " (got " + _show(v) + ")")
        if pattern is not None:
            if regex is None:
                import re
                regex = re.compile(pattern)
            # re.search, like jsonschema: a pattern is unanchored unless it says ^.
            if regex.search(v) is None:
                raise Invalid("", msg + " (got " + _show(v) + ")")
    return check


def _enum(values, msg):
    allowed = frozenset(values)

    def check(v):
        if not isinstance(v, str) or v not in allowed:
            raise Invalid("", msg + " (got " + _show(v) + ")")
    return check


def _arr(item, min_items=0, typed=True, nullable=False):
    def check(v):
        if not isinstance(v, list):
            if not typed or (nullable and v is None):
                return
            raise _bad_type(("array", "null") if nullable else ("array",), v)
        if len(v) < min_items:
            raise Invalid("", "must not be empty" if min_items == 1
                          else "must have at least %d items" % min_items)
        if item is not None:
            for i, y in enumerate(v):
                try:
                    item(y)
                except Invalid as e:
                    e.field = "[" + str(i) + "]" + e.field
                    raise
    return check


def _obj(props=(), required=(), extra=None, closed=False, names_min=0, deps=(),
         any_of=(), any_msg=None, cond=None, then=None, typed=True, nullable=False):
    # props: (name, _k(name), check) triples, the middle one precomputed by
    # the generator (this runs for every schema object at every import).
    table = props
    known = frozenset(p[0] for p in props) if extra is not None or closed else None

    def check(x):
        if not isinstance(x, dict):
            if not typed or (nullable and x is None):
                return
            raise _bad_type(("object", "null") if nullable else ("object",), x)
        for name in required:
            if name not in x:
                raise Invalid(_k(name), "is required")
        for name, part, fn in table:
            v = x.get(name, _M)
            if v is not _M:
                try:
                    fn(v)
                except Invalid as e:
                    e.field = part + e.field
                    raise
        if extra is not None or closed:
            for key, v in x.items():
                if key in known:
                    continue
                if closed:
                    raise Invalid(_k(key), "is not an allowed property")
                try:
                    extra(v)
                except Invalid as e:
                    e.field = _k(key) + e.field
                    raise
        if names_min:
            for key in x:
                if len(key) < names_min:
                    raise Invalid(_k(key), "property name must not be empty" if names_min == 1
                                  else "property name must be at least %d characters long" % names_min)
        for trigger, needs in deps:
            if trigger in x:
                for need in needs:
                    if need not in x:
                        raise Invalid(_k(need), "is required when " + trigger + " is set")
        if any_of:
            for branch in any_of:
                try:
                    branch(x)
                    break
                except Invalid:
                    pass
            else:
                raise Invalid("", any_msg)
        if cond is not None:
            try:
                cond(x)
            except Invalid:
                return
            then(x)
    return check


def _lazy(build):
    """The checker build() returns, built on the first check. The generated
    module wraps every object schema in one: building all of them at import
    would cost every `create`, and a call reaches only the
    objects its document has."""
    real = None

    def check(v):
        nonlocal real
        if real is None:
            real = build()
        real(v)
    return check


__all__ = ['_lazy', 'Invalid', '_k', '_finish', '_jtype', '_show', '_bad_type', '_any', '_types', '_int', '_str', '_enum', '_arr', '_obj', '_M', '_IS', '_NOUN']
