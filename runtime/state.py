"""Per-container state under --root: one directory per container.

Layout of ROOT/ID/:
  state.json     what later verbs need (pid, start time, bundle, cgroup,
                 hooks), as one line of JSON, readable with cat or jq.
                 Carries "version" so a newer pyrunc can read an older
                 file; `pyrunc state` prints the OCI state, not this file.
                 Its last member, "crc32", is the CRC-32 of the bytes
                 before it: a file that is truncated, overwritten or
                 edited is refused as damaged before it is parsed.
  create.json    the state as create saved it first, before any cgroup or
                 process existed (id, bundle, cgroup): a second name (hard
                 link) for that file, which keeps it when create's final
                 save replaces state.json. Never rewritten, it still names
                 the container's cgroup when state.json has been damaged
                 (runtime.lifecycle.delete).
  exec.sock      exists from create until start: a listening unix socket on
                 which the waiting init blocks in accept().

Writes are atomic (temporary file + rename). Every verb that changes a
container holds an exclusive flock on its directory, so concurrent commands
on one container are serialised.
"""
import binascii  # built into the interpreter
import fcntl
from runtime.toolkit import os_lite as os

from runtime import errors
from runtime.errors import RuntimeFailure
import _json
from runtime.log import go_quote
# Optional edges, imported where used: fastjson (writing a state file: the
# verbs that only read one never load it), the cgroups package (status of a
# running container) and errno (an error path).

STATE_VERSION = 1
STATE_FILE = "state.json"
FIRST_FILE = "create.json"
START_SOCK = "exec.sock"
# runc 1.1's rule (`^[\w+-\.]+$`: letters, digits and _ + , - .; the range
# +-. holds the comma), checked without importing `re`.
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+,-.")


def at_start_sock(fn, cdir: str):
    """fn(path) with `path` naming cdir's exec.sock through a short alias,
    for unix socket calls (bind, connect: 108 bytes at most, which Docker's
    state dirs with 64-character ids come close to): /proc/self/fd/N/exec.sock
    of an O_PATH fd of cdir, held during the call and then closed."""
    fd = os.open(cdir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return fn(f"/proc/self/fd/{fd}/{START_SOCK}")
    finally:
        os.close(fd)


def cgroup_dirs(cgroup_state: dict | None) -> list[str]:
    """Absolute cgroup directories of the container, from its manager's state."""
    out = []
    for k, v in (cgroup_state or {}).items():
        if "mount" in k:
            continue
        vals = v.values() if isinstance(v, dict) else [v]
        out += [x for x in vals if isinstance(x, str) and x.startswith("/")]
    return out


def validate_id(cid: str) -> None:
    """Refuse ids that could escape --root or confuse tools ("", ".", "..", "/"),
    in runc's words."""
    if not cid:
        raise RuntimeFailure("container id cannot be empty")
    if cid in (".", "..") or not _ID_CHARS.issuperset(cid):
        raise RuntimeFailure(f"invalid container ID format: {go_quote(cid)} (letters, digits and _ + , - . only)")


def container_dir(root: str, cid: str) -> str:
    validate_id(cid)
    return os.path.join(root, cid)


def make_dir(root: str, cid: str) -> str:
    """Create ROOT/ID, failing with ContainerExists if it is already there.
    Atomic: mkdir either creates it for us alone or fails."""
    d = container_dir(root, cid)
    os.makedirs(root, mode=0o711, exist_ok=True)
    try:
        os.mkdir(d, 0o711)
    except FileExistsError:
        raise errors.ContainerExists(cid) from None
    return d


class Lock:
    """Exclusive flock on a container directory; released on close/exit."""

    def __init__(self, path: str, cid: str):
        try:
            self.fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise errors.ContainerNotFound(cid) from None
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def save(cdir: str, data: dict) -> None:
    """Atomically replace the state file with `data` as JSON, followed by
    the checksum member (_SUM) that _decode verifies."""
    from runtime.toolkit import fastjson as json  # create has it loaded already
    data["version"] = STATE_VERSION
    body = json.dumps(data).encode()[:-1]  # (ASCII) all but the closing brace
    tmp = os.path.join(cdir, "." + STATE_FILE + ".tmp")
    with open(tmp, "wb") as f:
        f.write(b'%s%s%08x"}\n' % (body, _SUM, binascii.crc32(body)))
    os.rename(tmp, os.path.join(cdir, STATE_FILE))


# A state file ends with _SUM, the CRC-32 of all that precedes it in 8 hex
# digits, '"}' and a newline: _TAIL bytes.
_SUM = b', "crc32": "'
_TAIL = len(_SUM) + 11


def _decode(raw: bytes) -> dict:
    """The state in a state file's bytes; ValueError (a short reason) when
    they are not one. The checksum is verified before anything is parsed."""
    if len(raw) <= _TAIL or raw[-_TAIL:-11] != _SUM or raw[-3:] != b'"}\n':
        if raw[:1] != b"{" and raw:
            raise ValueError("not a state file")
        whole = raw.rstrip().endswith(b"}") and _SUM not in raw[-_TAIL - 1:]
        raise ValueError("it has no checksum" if whole else "truncated")
    try:
        ok = binascii.crc32(memoryview(raw)[:-_TAIL]) == int(raw[-11:-3], 16)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError("its checksum does not match")
    try:
        text = raw.decode()
        data, end = _scanner()(text, 0)
    except (ValueError, StopIteration, TypeError, RecursionError):
        raise ValueError("not a state file") from None
    if not isinstance(data, dict) or end != len(text) - 1 or "crc32" not in data:
        raise ValueError("not a state file")
    del data["crc32"]
    return data


_scan = None


def _scanner():
    """_json's scanner, set up here rather than through
    runtime.toolkit.fastjson: start, kill and delete read a state file and
    nothing else in JSON, and one module less to load is a measurable part
    of what they cost (docs/performance.md, "Container state as JSON")."""
    global _scan
    if _scan is None:

        class Ctx:  # the attributes make_scanner reads from a JSONDecoder
            strict = True
            object_hook = object_pairs_hook = None
            parse_float = parse_constant = float
            parse_int = int
        _scan = _json.make_scanner(Ctx())
    return _scan


def save_first(cdir: str, data: dict) -> None:
    """save(), and keep that file as FIRST_FILE too (replacing an older one)."""
    save(cdir, data)
    first = os.path.join(cdir, FIRST_FILE)
    try:
        os.unlink(first)
    except FileNotFoundError:
        pass
    os.link(os.path.join(cdir, STATE_FILE), first)


def read_first(cdir: str) -> dict | None:
    """The record FIRST_FILE holds, or None if it is missing or unreadable."""
    try:
        with open(os.path.join(cdir, FIRST_FILE), "rb") as f:
            data = _decode(f.read())
    except (OSError, ValueError):
        return None
    if data.get("version", 0) > STATE_VERSION or not isinstance(data.get("cgroup"), (dict, type(None))):
        return None
    return data


def read_file(d: str) -> dict:
    """The state saved in container directory `d`. Raises FileNotFoundError
    when there is none, ValueError (a short reason) when it is not a state
    file."""
    with open(os.path.join(d, STATE_FILE), "rb") as f:
        return _decode(f.read())


def load(root: str, cid: str) -> dict:
    """The state of container `cid`. Raises ContainerNotFound when there is
    none, and StateDamaged when its state file is unreadable, has lost
    the fields every verb relies on, or is gone while create's first
    record (FIRST_FILE) is still there."""
    d = container_dir(root, cid)
    try:
        data = read_file(d)
    except FileNotFoundError:
        if os.path.exists(os.path.join(d, FIRST_FILE)):
            raise errors.StateDamaged(cid, d, "missing") from None
        raise errors.ContainerNotFound(cid) from None
    except ValueError as e:
        raise errors.StateDamaged(cid, d, str(e)) from None
    if data.get("version", 0) > STATE_VERSION:
        raise RuntimeFailure(f"container {cid!r}: state written by a newer pyrunc (version {data['version']})")
    bad = _bad_field(data)
    if bad:
        raise errors.StateDamaged(cid, d, f"{bad} is missing or of the wrong type")
    data["_dir"] = d
    return data


def _bad_field(data: dict) -> str | None:
    """The first field the verbs index without checking that is absent or
    of the wrong type in `data`, or None."""
    for k, types in (("id", str), ("pid", int), ("bundle", str)):
        if not isinstance(data.get(k), types) or isinstance(data.get(k), bool):
            return k
    for k in ("start_time", "cgroup", "hooks", "config"):
        v = data.get(k)
        if v is not None and not isinstance(v, int if k == "start_time" else dict):
            return k
    return None


def proc_start_time(pid: int) -> int | None:
    """Start time of pid in clock ticks since boot, or None if it is gone or a
    zombie. Comparing it with the recorded value makes status checks robust
    against pid reuse."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    fields = raw[raw.rindex(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def init_alive(data: dict) -> bool:
    pid = data.get("pid") or 0
    return pid > 0 and proc_start_time(pid) == data.get("start_time")


def status(data: dict) -> str:
    """created | running | paused | stopped, derived from the live system."""
    if not init_alive(data):
        return "stopped"
    if os.path.exists(os.path.join(data["_dir"], START_SOCK)):
        return "created"
    cg = data.get("cgroup")
    if cg:
        from runtime import cgroups  # (the package alone; a manager only if it may be frozen)
        if not cgroups.surely_thawed(cg):
            try:
                if cgroups.manager_from_state(cg).is_frozen():
                    return "paused"
            except OSError:
                pass
    return "running"


def oci_state(data: dict, st: str | None = None) -> dict:
    """The runtime-spec state object (plus runc's extra fields)."""
    st = st or status(data)
    out = {
        "ociVersion": data.get("ociVersion", "1.3.0"),
        "id": data["id"],
        "pid": data["pid"] if st != "stopped" else 0,
        "status": st,
        "bundle": data["bundle"],
        "rootfs": data.get("rootfs", ""),
        "created": data.get("created", ""),
    }
    if data.get("annotations"):
        # runc's order (its containerState struct): annotations, then owner;
        # Go writes a map's keys sorted.
        out["annotations"] = {k: data["annotations"][k] for k in sorted(data["annotations"])}
    out["owner"] = data.get("owner", "")
    return out


def list_ids(root: str) -> list[str]:
    try:
        return sorted(n for n in os.listdir(root)
                      if os.path.isfile(os.path.join(root, n, STATE_FILE))
                      or os.path.isfile(os.path.join(root, n, FIRST_FILE)))
    except FileNotFoundError:
        return []
    except OSError as e:
        import errno  # only on this error path: the hot verbs never load it
        if e.errno == errno.ENOTDIR:
            raise RuntimeFailure(f"--root {root} is not a directory") from None
        raise
