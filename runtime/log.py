"""runc-compatible logging: `--log FILE`, `--log-format text|json`, `--debug`.

Lines have the shape of runc's logger (logrus): text is
`time="2006-01-02T15:04:05Z" level=debug msg="..." key=value`, a value
quoted as Go's %q does when it holds anything but letters, digits and
`-._/@^+`; json is one object with the keys sorted,
{"level":"debug","msg":"...","time":"..."}. The time is RFC 3339 in local
time, to the second.

containerd's shim reads the last {"level":"error","msg":...} line of the log
file to explain a failure, so errors always reach the log file in the chosen
format; the plain message also goes to stderr for people. Debug lines
(--debug) and warnings go to the log file, or to stderr without one.
"""
from runtime.toolkit import os_lite as os
import sys
import time

_path: str | None = None
_format = "text"
_debug = False


def configure(path: str | None, fmt: str = "text", debug: bool = False) -> None:
    global _path, _format, _debug
    if fmt not in ("text", "json", ""):
        raise ValueError(f"invalid log-format: {fmt}")
    _path, _format, _debug = path, fmt or "text", debug


def _stamp() -> str:
    """Go's time.RFC3339 of now, in local time ("Z" for UTC)."""
    lt = time.localtime()
    off = lt.tm_gmtoff or 0
    if off == 0:
        zone = "Z"
    else:
        a = abs(off) // 60
        zone = f"{'+' if off > 0 else '-'}{a // 60:02d}:{a % 60:02d}"
    return time.strftime("%Y-%m-%dT%H:%M:%S", lt) + zone


# What logrus leaves unquoted (a string constant: nothing built at import).
_BARE = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._/@^+"
_SHORT = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v",
          '"': '\\"', "\\": "\\\\"}


def go_quote(s: str) -> str:
    """Go's strconv.Quote (fmt's %q) of a string."""
    out = ['"']
    for ch in s:
        o = ord(ch)
        esc = _SHORT.get(ch)
        if esc:
            out.append(esc)
        elif 0x20 <= o < 0x7f:
            out.append(ch)
        elif o < 0x20 or o == 0x7f:
            out.append(f"\\x{o:02x}")
        elif ch.isprintable():
            out.append(ch)
        elif o < 0x10000:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    out.append('"')
    return "".join(out)


def _text_value(v) -> str:
    s = v if isinstance(v, str) else ("true" if v is True else "false" if v is False else str(v))
    return s if s and not s.strip(_BARE) else go_quote(s)  # (strip: "" when every character is bare)


def _line(level: str, msg: str, fields: dict | None = None) -> str:
    if _format == "json":
        # (the JSON encoder loads here: most calls never log)
        from runtime.toolkit import fastjson as json
        d = dict(fields or ())
        d.update(level=level, msg=msg, time=_stamp())
        return json.go_dumps({k: d[k] for k in sorted(d)}) + "\n"
    parts = [f"time={_text_value(_stamp())}", f"level={level}"]
    if msg:
        parts.append(f"msg={_text_value(msg)}")
    for k in sorted(fields or ()):
        parts.append(f"{k}={_text_value(fields[k])}")
    return " ".join(parts) + "\n"


def _emit(level: str, msg: str, fields: dict | None = None) -> None:
    line = _line(level, msg, fields)
    if _path:
        try:
            fd = os.open(_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
            return
        except OSError:
            pass
    sys.stderr.write(line)


def error(msg: str) -> None:
    """Log an error. People get the bare message on stderr; the log file (or
    stderr, with --log-format json) gets the formatted line."""
    if _path or _format == "json":
        _emit("error", msg)
    if _path or _format != "json":
        sys.stderr.write(msg + "\n")


def warning(msg: str) -> None:
    _emit("warning", msg)


def debug(msg: str, **fields) -> None:
    """A debug line (with --debug only); `fields` follow the message, as
    logrus' WithFields does."""
    if _debug:
        _emit("debug", msg, fields)
