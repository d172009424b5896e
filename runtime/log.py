"""runc-compatible logging: `--log FILE` and `--log-format text|json`.

containerd's shim reads the last {"level":"error","msg":...} line of the log
file to explain a failure, so errors always reach the log file in the chosen
format; the plain message also goes to stderr for people.
"""
from runtime import _os as os  # os.py costs ~1.8 ms per call: runtime._os
import sys
import time

_path: str | None = None
_format = "text"
_debug = False


def configure(path: str | None, fmt: str = "text", debug: bool = False) -> None:
    global _path, _format, _debug
    if fmt not in ("text", "json"):
        raise ValueError(f"--log-format: unknown format {fmt!r} (want text or json)")
    _path, _format, _debug = path, fmt, debug


def _stamp() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


def _line(level: str, msg: str) -> str:
    # (the JSON encoder loads here: most calls never log)
    from runtime import fastjson as json
    if _format == "json":
        return json.dumps({"level": level, "msg": msg, "time": _stamp()}) + "\n"
    return f'time="{_stamp()}" level={level} msg={json.dumps(msg)}\n'


def _emit(level: str, msg: str) -> None:
    line = _line(level, msg)
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


def debug(msg: str) -> None:
    if _debug:
        _emit("debug", msg)
