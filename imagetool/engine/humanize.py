"""docker's human strings, and the parsers of docker's human input.

Output, as docker 20.10 writes it:
- duration(): go-units HumanDuration ("Less than a second", "About a
  minute", "3 hours", "2 weeks"); ago() adds " ago" (ps CREATED).
- status(): the ps STATUS column, moby's State.String() ("Up 5 minutes
  (Paused)", "Exited (3) 2 minutes ago", "Created", ...).
- size(): go-units HumanSizeWithPrecision, decimal units ("1.5MB"; ps and
  images print 3 significant digits); bytes_size(): BytesSize, binary
  units ("1.5MiB", stats).
- ports(): the ps PORTS column (docker/cli DisplayablePorts).
- command(): the ps COMMAND column: the daemon's joined command line,
  ellipsized to 20 columns and Go-quoted.

Input:
- parse_size(): go-units RAMInBytes ("512m", "1.5g", "100KiB").
- parse_duration(): Go's time.ParseDuration ("10m", "1h30m", "250ms").
- parse_since(): docker's GetTimestamp for --since/--until: a duration
  back from now, an RFC 3339 date or time (local time without a zone), or
  Unix seconds.

Times are Unix seconds (floats); a timestamp may also be given as the
Engine API's RFC 3339 string, and Go's zero time ("0001-01-01T00:00:00Z")
or None means "never".
"""
import time
import unicodedata

from imagetool.engine.template import quote
from imagetool.errors import UsageError

__all__ = ["duration", "ago", "status", "size", "bytes_size", "parse_size", "parse_duration", "parse_since",
           "parse_time", "ports", "command", "command_line", "ellipsis"]


# --------------------------------------------------------------------------
# durations

def duration(seconds: float) -> str:
    """go-units HumanDuration of a span in seconds."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)  # go-units rounds the hours
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def ago(ts, now: float | None = None) -> str:
    """duration(now - ts) + " ago" (ps CREATED, images CREATED)."""
    now = time.time() if now is None else now
    t = _epoch(ts)
    return duration(now - (t if t is not None else 0)) + " ago"


def status(state: dict, now: float | None = None) -> str:
    """The ps STATUS of a container from its inspect State (Running,
    Paused, Restarting, Dead, StartedAt, FinishedAt, ExitCode, Health;
    RemovalInProgress or Status "removing")."""
    now = time.time() if now is None else now
    started, finished = _epoch(state.get("StartedAt")), _epoch(state.get("FinishedAt"))
    code = state.get("ExitCode") or 0
    if state.get("Running"):
        up = duration(now - (started or now))
        if state.get("Paused"):
            return f"Up {up} (Paused)"
        if state.get("Restarting"):
            return f"Restarting ({code}) {duration(now - (finished or now))} ago"
        health = (state.get("Health") or {}).get("Status")
        if health:
            return f"Up {up} ({'health: starting' if health == 'starting' else health})"
        return f"Up {up}"
    if state.get("RemovalInProgress") or state.get("Status") == "removing":
        return "Removal In Progress"
    if state.get("Dead"):
        return "Dead"
    if started is None:
        return "Created"
    if finished is None:
        return ""
    return f"Exited ({code}) {duration(now - finished)} ago"


# --------------------------------------------------------------------------
# sizes

_DECIMAL = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
_BINARY = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")


def _scaled(n: float, base: float, units) -> str:
    i = 0
    while n >= base and i < len(units) - 1:
        n /= base
        i += 1
    return n, units[i]


def size(n: float, precision: int = 3) -> str:
    """go-units HumanSizeWithPrecision: "1.5MB", "999kB", "0B". docker ps
    and images use 3 significant digits (go-units' HumanSize uses 4)."""
    v, unit = _scaled(float(n), 1000.0, _DECIMAL)
    return f"{v:.{precision}g}{unit}"


def bytes_size(n: float) -> str:
    """go-units BytesSize: "1.5MiB", "7.63GiB" (4 significant digits)."""
    v, unit = _scaled(float(n), 1024.0, _BINARY)
    return f"{v:.4g}{unit}"


_RAM_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_size(s: str) -> int:
    """go-units RAMInBytes: a number (decimals allowed), an optional space,
    an optional unit k, m, g, t or p (binary multiples), optional "i" and
    "b", any case. "512m" -> 536870912. UsageError "invalid size: 'x'"."""
    text = s.lower()
    i = 0
    while i < len(text) and (text[i].isdigit() or (text[i] == "." and i > 0)):
        if not text[i].isascii():
            break
        i += 1
    number, rest = text[:i], text[i:]
    if rest.startswith(" "):
        rest = rest[1:]
    unit = rest[:1] if rest[:1] in ("k", "m", "g", "t", "p") else ""
    rest = rest[len(unit):]
    if rest.startswith("i"):
        rest = rest[1:]
    if rest.startswith("b"):
        rest = rest[1:]
    if not number or number.endswith(".") or ".." in number or rest:
        raise UsageError(f"invalid size: '{s}'")
    try:
        value = float(number)
    except ValueError:
        raise UsageError(f"invalid size: '{s}'") from None
    return int(value * _RAM_UNITS[unit])


# --------------------------------------------------------------------------
# time input

_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ms": 1e-3, "s": 1.0,
                   "m": 60.0, "h": 3600.0}


def _go_quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_duration(s: str) -> float:
    """Go's time.ParseDuration, in seconds: "300ms", "-1.5h", "2h45m", "0".
    UsageError in Go's words ('time: invalid duration "x"')."""
    orig, i, n = s, 0, len(s)
    neg = False
    if s[:1] in ("+", "-"):
        neg = s[0] == "-"
        i = 1
    if s[i:] == "0":
        return 0.0
    if i >= n:
        raise UsageError(f"time: invalid duration {_go_quote(orig)}")
    total = 0.0
    while i < n:
        j = i
        while j < n and s[j].isascii() and s[j].isdigit():
            j += 1
        whole = s[i:j]
        frac = ""
        if j < n and s[j] == ".":
            k = j + 1
            while k < n and s[k].isascii() and s[k].isdigit():
                k += 1
            frac, j = s[j + 1:k], k
        if not whole and not frac:
            raise UsageError(f"time: invalid duration {_go_quote(orig)}")
        k = j
        while k < n and not (s[k].isascii() and (s[k].isdigit() or s[k] == ".")):
            k += 1
        unit = s[j:k]
        if not unit:
            raise UsageError(f"time: missing unit in duration {_go_quote(orig)}")
        if unit not in _DURATION_UNITS:
            raise UsageError(f"time: unknown unit {_go_quote(unit)} in duration {_go_quote(orig)}")
        total += float(f"{whole or 0}.{frac or 0}") * _DURATION_UNITS[unit]
        i = k
    return -total if neg else total


def _days_from_civil(y: int, m: int, d: int) -> int:
    # days since 1970-01-01 of a proleptic Gregorian date
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _month_days(y: int, m: int) -> int:
    if m == 2:
        return 29 if (y % 4 == 0 and y % 100 != 0) or y % 400 == 0 else 28
    return 30 if m in (4, 6, 9, 11) else 31


class _BadTime(Exception):
    pass


def _fixed(text: str, i: int, width: int) -> tuple[int, int]:
    part = text[i:i + width]
    if len(part) != width or not (part.isascii() and part.isdigit()):
        raise _BadTime("cannot parse")
    return int(part), i + width


def _expect(text: str, i: int, ch: str) -> int:
    if text[i:i + 1] != ch:
        raise _BadTime("cannot parse")
    return i + 1


def _parse_layout(text: str, fields: int, zoned: bool, local_offset: int) -> float:
    """A time of the shape YYYY-MM-DD[THH[:MM[:SS[.frac]]]] (`fields` = 3
    to 6 parts), then a zone (Z or +hh:mm) when `zoned`, else the local
    offset. Returns Unix seconds."""
    y, i = _fixed(text, 0, 4)
    i = _expect(text, i, "-")
    mo, i = _fixed(text, i, 2)
    i = _expect(text, i, "-")
    d, i = _fixed(text, i, 2)
    hh = mm = ss = 0
    nanos = 0
    if fields >= 4:
        i = _expect(text, i, "T")
        hh, i = _fixed(text, i, 2)
    if fields >= 5:
        i = _expect(text, i, ":")
        mm, i = _fixed(text, i, 2)
    if fields >= 6:
        i = _expect(text, i, ":")
        ss, i = _fixed(text, i, 2)
        if text[i:i + 1] == ".":
            j = i + 1
            while j < len(text) and text[j].isascii() and text[j].isdigit():
                j += 1
            digits = text[i + 1:j]
            if not digits:
                raise _BadTime("cannot parse")
            nanos = int(digits[:9].ljust(9, "0"))
            i = j
    offset = local_offset
    if zoned:
        if text[i:i + 1] in ("Z", "z"):
            offset, i = 0, i + 1
        elif text[i:i + 1] in ("+", "-"):
            sign = -1 if text[i] == "-" else 1
            oh, i = _fixed(text, i + 1, 2)
            i = _expect(text, i, ":")
            om, i = _fixed(text, i, 2)
            offset = sign * (oh * 3600 + om * 60)
        else:
            raise _BadTime("cannot parse")
    if i != len(text):
        raise _BadTime(f"extra text: {_go_quote(text[i:])}")
    if not 1 <= mo <= 12:
        raise _BadTime("month out of range")
    if not 1 <= d <= _month_days(y, mo):
        raise _BadTime("day out of range")
    if hh > 23:
        raise _BadTime("hour out of range")
    if mm > 59:
        raise _BadTime("minute out of range")
    if ss > 59:
        raise _BadTime("second out of range")
    return _days_from_civil(y, mo, d) * 86400 + hh * 3600 + mm * 60 + ss - offset + nanos / 1e9


def parse_time(text: str) -> float | None:
    """Unix seconds of an RFC 3339 time with a zone (the Engine API's
    StartedAt), None for Go's zero time. UsageError naming it otherwise."""
    if text.startswith("0001-01-01T00:00:00"):
        return None
    try:
        return _parse_layout(text, 6, True, 0)
    except _BadTime as e:
        raise UsageError(f"parsing time {_go_quote(text)}: {e}") from None


def _epoch(ts) -> float | None:
    if ts is None or ts == "" or ts == 0:
        return None
    if isinstance(ts, str):
        return parse_time(ts)
    return float(ts)


def parse_since(value: str, now: float | None = None) -> float:
    """docker's GetTimestamp for --since/--until, as Unix seconds: a Go
    duration back from now (whole seconds), an RFC 3339 date or date-time
    (a value without Z, + or a third "-" is local time), or Unix seconds
    with an optional fraction."""
    now = time.time() if now is None else now
    if value != "0":
        try:
            return float(int((now - parse_duration(value)) // 1))
        except UsageError:
            pass
    in_location = not any(c in value for c in "zZ+") and value.count("-") != 3
    if "." in value:
        fields = 6
    elif "T" in value:
        colons = value.count(":")
        if not in_location and not any(c in value for c in "zZ") and colons > 0:
            colons -= 1  # the zone offset's colon
        fields = 4 + min(colons, 2)
    else:
        fields = 3
    local = time.localtime(now).tm_gmtoff
    try:
        return _parse_layout(value, fields, not in_location, local)
    except _BadTime as e:
        if "-" in value:
            raise UsageError(f"parsing time {_go_quote(value)}: {e}") from None
    sec, dot, frac = value.partition(".")
    digits = sec[1:] if sec[:1] in "+-" else sec
    if digits and digits.isascii() and digits.isdigit() and (not dot or (frac.isascii() and frac.isdigit())):
        return int(sec) + (int(frac) / 10 ** len(frac) if frac else 0.0) * (-1 if sec.startswith("-") else 1)
    raise UsageError(f"failed to parse value as time or duration: {_go_quote(value)}")


# --------------------------------------------------------------------------
# ps columns

def _host_port(ip: str, port) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def ports(port_list) -> str:
    """The ps PORTS column from the Engine API's Ports list (dicts with IP,
    PrivatePort, PublicPort, Type): published ports whose host and
    container numbers match are grouped into ranges per address and
    protocol ("0.0.0.0:8000-8001->8000-8001/tcp"), exposed ones per
    protocol ("80-81/tcp"); others are listed one by one after the groups
    ("127.0.0.1:8080->80/tcp")."""
    def key(p):
        return (p.get("PrivatePort") or 0, p.get("IP") or "", p.get("PublicPort") or 0, p.get("Type") or "")

    groups, order, result, mappings = {}, [], [], []
    for p in sorted(port_list, key=key):
        private, ip, public, proto = key(p)
        gkey = proto
        if ip:
            if public != private:
                mappings.append(f"{_host_port(ip, public)}->{private}/{proto}")
                continue
            gkey = f"{ip}/{proto}"
        g = groups.get(gkey)
        if g is None:
            groups[gkey] = [private, private]
            order.append(gkey)
        elif private == g[1] + 1:
            g[1] = private
        else:
            result.append(_group(gkey, *g))
            groups[gkey] = [private, private]
    result.extend(_group(k, *groups[k]) for k in order)
    return ", ".join(result + mappings)


def _group(gkey: str, first: int, last: int) -> str:
    ip, _, proto = gkey.rpartition("/")
    span = str(first) if first == last else f"{first}-{last}"
    return f"{_host_port(ip, span)}->{span}/{proto}" if ip else f"{span}/{proto}"


def _width(ch: str) -> int:
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def ellipsis(s: str, width: int) -> str:
    """docker/cli's Ellipsis: `s` cut to `width` display columns, the last
    one an ellipsis ("…") when anything was cut (wide characters count 2)."""
    if width <= 0:
        return ""
    if width == 1:
        return s[:1]
    if s.isascii():
        return s if len(s) <= width else s[:width - 1] + "\u2026"
    total, cut = 0, None
    for i, ch in enumerate(s):
        total += _width(ch)
        if cut is None and total > width - 1:
            cut = i
    if total <= width:
        return s
    return s[:cut] + "\u2026"


def command_line(args: list[str]) -> str:
    """The Engine API's Command of a container: the path, then the
    arguments, each one that holds a space in single quotes."""
    if not args:
        return ""
    return " ".join([args[0]] + [f"'{a}'" if " " in a else a for a in args[1:]])


def command(args: list[str], trunc: bool = True) -> str:
    """The ps COMMAND column: command_line(args), ellipsized to 20 columns
    unless trunc is False, Go-quoted: "nginx -g 'daemon of…"."""
    line = command_line(args)
    return quote(ellipsis(line, 20) if trunc else line)
