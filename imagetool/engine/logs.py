"""Reading a container's log, the k8s-file format conmon writes.

Each line of the file is ``TIMESTAMP STREAM TAG CONTENT``: an RFC 3339
time with nanoseconds, ``stdout`` or ``stderr``, ``F`` for a full line
or ``P`` for a part of one (conmon splits long lines and writes what it
has when the container prints without a newline), then the bytes. The
reader joins parts, so each entry is one line as the container printed
it, with the stream it went to. It only reads: conmon is the one writer.
"""
from __future__ import annotations

import os
import time

from imagetool.errors import EngineError, UsageError, os_message
from imagetool.engine import humanize


class Entry:
    __slots__ = ("time", "stamp", "stream", "data")

    def __init__(self, stamp: bytes, stream: str, data: bytes):
        self.stamp, self.stream, self.data = stamp.decode(), stream, data
        self.time = _epoch(self.stamp)


def _epoch(stamp: str) -> float:
    try:
        return humanize.parse_time(stamp) or 0.0
    except UsageError:
        return 0.0  # (a line conmon did not write: kept, with no time)


def docker_stamp(e: Entry) -> str:
    """docker logs -t's time: RFC 3339 with nanoseconds, in UTC."""
    t = e.time
    whole = int(t)
    ns = e.stamp.partition(".")[2][:9] or "000000000"
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{ns}Z"


class Reader:
    """Entries of one log file, from the start, then (``follow``) as they are written."""

    def __init__(self, path: str):
        self.path = path
        self._pending: dict[str, list[bytes]] = {}
        self._buf = b""
        self._pos = 0

    def _parse(self, line: bytes):
        parts = line.split(b" ", 3)
        if len(parts) < 3:
            return None
        stamp, stream, tag = parts[0], parts[1].decode(errors="replace"), parts[2]
        data = parts[3] if len(parts) == 4 else b""
        if tag == b"P":
            self._pending.setdefault(stream, []).append(data)
            return None
        data = b"".join(self._pending.pop(stream, [])) + data + b"\n"
        return Entry(stamp, stream, data)

    def read(self) -> list[Entry]:
        """The entries written since the last call."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self._pos)
                chunk = f.read()
        except FileNotFoundError:
            return []
        except OSError as e:
            raise EngineError(os_message(e, f"reading {self.path}")) from None
        self._pos += len(chunk)
        self._buf += chunk
        *lines, self._buf = self._buf.split(b"\n")
        out = []
        for ln in lines:
            e = self._parse(ln)
            if e is not None:
                out.append(e)
        return out

    def size(self) -> int:
        try:
            return os.stat(self.path).st_size
        except OSError:
            return 0
