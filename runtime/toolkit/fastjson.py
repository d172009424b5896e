"""JSON for the runtime's hot paths, on the C accelerator alone.

`import json` pulls in `re` and `enum` (paid by every verb containerd
runs); `_json`'s scanner and encoder do the same
work without them. Output matches json.dumps with the same options.
"""
import _json

_WS = " \t\n\r"


class _Ctx:
    # The attributes _json.make_scanner reads from a JSONDecoder.
    strict = True
    object_hook = None
    object_pairs_hook = None
    memo: dict = {}
    parse_float = float
    parse_int = int
    parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}.__getitem__


_scan = _json.make_scanner(_Ctx())


def loads(s: str | bytes):
    """Parse one JSON document; raises ValueError (naming the offset) if malformed."""
    if isinstance(s, (bytes, bytearray)):
        # (not the utf-8-sig codec: loading it is an import on every call)
        s = (s[3:] if s[:3] == b"\xef\xbb\xbf" else s).decode("utf-8")
    i = 0
    n = len(s)
    while i < n and s[i] in _WS:
        i += 1
    try:
        obj, end = _scan(s, i)
    except StopIteration as e:
        raise ValueError(f"expecting value at offset {e.value}") from None
    while end < n and s[end] in _WS:
        end += 1
    if end != n:
        raise ValueError(f"extra data at offset {end}")
    return obj


def _default(o):
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


_COMPACT = _json.make_encoder(None, _default, _json.encode_basestring_ascii, None,
                              ": ", ", ", False, True, True)


def _pretty(o, pad: str, step: str, quote=_json.encode_basestring_ascii, compact=None) -> str:
    """o indented by `step` from `pad`: keys through `quote`, everything
    that is not a non-empty container through the C encoder `compact`
    (default _COMPACT). The C encoder has no indent mode; documents printed
    indented are small."""
    if isinstance(o, dict) and o:
        inner = pad + step
        items = (f"{inner}{quote(str(k))}: {_pretty(v, inner, step, quote, compact)}" for k, v in o.items())
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(o, (list, tuple)) and o:
        inner = pad + step
        return "[\n" + ",\n".join(inner + _pretty(v, inner, step, quote, compact) for v in o) + "\n" + pad + "]"
    return "".join((compact or _COMPACT)(o, 0))


def dumps(obj, indent: int | None = None) -> str:
    """Serialise like json.dumps(obj) (or with indent)."""
    if indent is not None:
        return _pretty(obj, "", " " * indent)
    return "".join(_COMPACT(obj, 0))


# --- Go's encoding/json, for what pyrunc prints where runc prints Go's output

# Go escapes these beyond what JSON needs (HTML-safe output, and the two
# line separators JavaScript does not take raw); its 1.19 encoder, runc
# 1.1.5's, writes \b and \f as \u0008 and \u000c. Everything else that is
# not ASCII it writes as UTF-8, as _json.encode_basestring does.
_GO_ESC = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029",
           "\b": "\\u0008", "\f": "\\u000c"}
_GO_SPECIAL = frozenset(_GO_ESC)


def _go_str(s: str) -> str:
    if _GO_SPECIAL.isdisjoint(s):
        return _json.encode_basestring(s)
    return '"' + "".join(_GO_ESC.get(c) or _json.encode_basestring(c)[1:-1] for c in s) + '"'


_GO_COMPACT = _json.make_encoder(None, _default, _go_str, None, ":", ",", False, True, True)


def go_dumps(obj, indent: str | None = None) -> str:
    """What Go's json.Marshal (or json.MarshalIndent with prefix "" and
    `indent`) writes for `obj`: no spaces, HTML characters escaped, keys in
    the dict's order (Go sorts map keys: sort those dicts first)."""
    if indent is not None:
        return _pretty(obj, "", indent, _go_str, _GO_COMPACT)
    return "".join(_GO_COMPACT(obj, 0))


def load(f):
    """json.load: parse the whole of file object `f`."""
    return loads(f.read())


def dump(obj, f, indent: int | None = None) -> None:
    """json.dump: write dumps(obj, indent) to file object `f`."""
    f.write(dumps(obj, indent=indent))
