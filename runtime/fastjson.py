"""JSON for the runtime's hot paths, on the C accelerator alone.

`import json` pulls in `re` and `enum` (~15 ms on a cold interpreter, paid
by every verb containerd runs); `_json`'s scanner and encoder do the same
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


def _pretty(o, pad: str, step: str) -> str:
    # The C encoder has no indent mode; documents printed indented are small.
    if isinstance(o, dict) and o:
        inner = pad + step
        items = (f"{inner}{_json.encode_basestring_ascii(str(k))}: {_pretty(v, inner, step)}" for k, v in o.items())
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(o, (list, tuple)) and o:
        inner = pad + step
        return "[\n" + ",\n".join(inner + _pretty(v, inner, step) for v in o) + "\n" + pad + "]"
    return "".join(_COMPACT(o, 0))


def dumps(obj, indent: int | None = None) -> str:
    """Serialise like json.dumps(obj) (or with indent)."""
    if indent is not None:
        return _pretty(obj, "", " " * indent)
    return "".join(_COMPACT(obj, 0))


def load(f):
    """json.load: parse the whole of file object `f`."""
    return loads(f.read())


def dump(obj, f, indent: int | None = None) -> None:
    """json.dump: write dumps(obj, indent) to file object `f`."""
    f.write(dumps(obj, indent=indent))
