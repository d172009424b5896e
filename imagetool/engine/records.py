"""Container records: ids, names, the per-store directories and locks.

Layout (``Paths``):

    ROOT/containers/<id>/container.json   the record (docker inspect's shape, see ops)
    ROOT/containers/<id>/bundle/          the OCI bundle (config.json, rootfs mountpoint)
    ROOT/containers/<id>/ctr.log          the log conmon writes (k8s-file format)
    ROOT/containers/<id>/etc/             hosts, hostname, resolv.conf for the container
    ROOT/containers/names/<name>          a symlink to <id>: the name index
    RUN/                                  /run/pyimg/<12 hex of sha256(realpath ROOT)>
    RUN/runtime/                          the OCI runtime's --root (its state)
    RUN/exits/<id>                        the exit status conmon writes
    RUN/s/<id> -> bundle                  conmon's attach socket links
    RUN/locks/<id>                        the container's flock

Contracts:
  * An id is 64 hex digits; a container is named by its full id, a
    unique id prefix, or its name (names first, as docker resolves).
  * A name is taken by creating its symlink (atomic: two creators cannot
    both win) and freed by removing it, so a removed container's name can
    be used again at once. A creator makes the container's directory before
    it takes the name, so a name whose directory is gone (a crash between
    the two steps of rm) is a leftover, and the next creator takes it over.
  * A record is written whole (temp file + rename): readers never see a
    torn record. Every change to one container happens under its lock
    (``Store.locked``), which is an flock: it is released when its holder
    dies, however it dies.
  * Everything a store's containers use lives under its ROOT and RUN, so
    stores never see each other's containers, nor the host's /run/pyrunc.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import secrets
import shutil

from runtime.toolkit import fastjson as json
from imagetool.errors import EngineError, NoSuchContainer, os_message

NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
RECORD = "container.json"
_RUN_BASE = "/run/pyimg"


def run_dir_for(root: str) -> str:
    """The run dir of the store at ``root`` (see the module docstring)."""
    key = hashlib.sha256(os.path.realpath(root).encode()).hexdigest()[:12]
    return os.path.join(os.environ.get("PYIMG_RUN_BASE", _RUN_BASE), key)


class Paths:
    """Where one store keeps its containers' pieces; nothing is created here."""

    def __init__(self, root: str, run: str | None = None):
        self.root = os.path.abspath(root)
        self.run = run or run_dir_for(self.root)
        self.containers = os.path.join(self.root, "containers")
        self.names = os.path.join(self.containers, "names")
        self.runtime_root = os.path.join(self.run, "runtime")
        self.exits = os.path.join(self.run, "exits")
        self.sockets = os.path.join(self.run, "s")
        self.locks = os.path.join(self.run, "locks")

    def cdir(self, cid: str) -> str:
        return os.path.join(self.containers, cid)

    def bundle(self, cid: str) -> str:
        return os.path.join(self.containers, cid, "bundle")

    def log(self, cid: str) -> str:
        return os.path.join(self.containers, cid, "ctr.log")

    def exit_file(self, cid: str) -> str:
        return os.path.join(self.exits, cid)

    def attach_socket(self, cid: str) -> str:
        return os.path.join(self.sockets, cid, "attach")


def new_id() -> str:
    return secrets.token_hex(32)


# Default names are an adjective and a noun, as docker's are; the words are pyimg's own.
_ADJ = ("amber", "brave", "calm", "clever", "crisp", "dapper", "eager", "fluent", "gentle", "happy", "hardy",
        "keen", "kind", "lively", "lucid", "merry", "nimble", "patient", "proud", "quiet", "rapid", "serene",
        "sharp", "steady", "sunny", "swift", "tidy", "vivid", "warm", "witty", "young", "zen")
_NOUN = ("acorn", "badger", "beacon", "cedar", "comet", "delta", "ember", "falcon", "fern", "glacier", "harbor",
         "heron", "island", "juniper", "kestrel", "lagoon", "maple", "meadow", "nebula", "otter", "pebble",
         "quartz", "raven", "river", "sparrow", "summit", "tundra", "valley", "willow", "yarrow", "zephyr")


def random_name() -> str:
    return f"{secrets.choice(_ADJ)}_{secrets.choice(_NOUN)}"


class Store:
    """The container records of one store (ROOT and its RUN dir)."""

    def __init__(self, paths: Paths):
        self.paths = paths

    # -- records ---------------------------------------------------------
    def ensure_dirs(self) -> None:
        p = self.paths
        try:
            for d in (p.containers, p.names, p.runtime_root, p.exits, p.sockets, p.locks):
                os.makedirs(d, exist_ok=True)
            os.chmod(p.run, 0o700)
        except OSError as e:
            raise EngineError(os_message(e)) from None

    def ids(self) -> list[str]:
        try:
            names = os.listdir(self.paths.containers)
        except FileNotFoundError:
            return []
        except OSError as e:
            raise EngineError(os_message(e, f"listing {self.paths.containers}")) from None
        return sorted(n for n in names if len(n) == 64 and
                      os.path.exists(os.path.join(self.paths.containers, n, RECORD)))

    def load(self, cid: str) -> dict | None:
        path = os.path.join(self.paths.cdir(cid), RECORD)
        try:
            with open(path, "rb") as f:
                rec = json.loads(f.read())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None  # (a record is only ever replaced whole: this is a damaged disk)
        return rec if isinstance(rec, dict) else None

    def save(self, rec: dict) -> None:
        d = self.paths.cdir(rec["Id"])
        path = os.path.join(d, RECORD)
        tmp = f"{path}.tmp{os.getpid()}"
        try:
            with open(tmp, "w") as f:
                f.write(json.dumps(rec, indent=2))
                f.write("\n")
            os.replace(tmp, path)
        except OSError as e:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise EngineError(os_message(e, f"writing {path}")) from None

    def all(self) -> list[dict]:
        out = []
        for cid in self.ids():
            rec = self.load(cid)
            if rec is not None:
                out.append(rec)
        return out

    # -- names -----------------------------------------------------------
    def name_owner(self, name: str) -> str | None:
        try:
            cid = os.readlink(os.path.join(self.paths.names, name))
        except OSError:
            return None
        return cid if os.path.exists(os.path.join(self.paths.cdir(cid), RECORD)) or \
            os.path.isdir(self.paths.cdir(cid)) else None

    def take_name(self, name: str, cid: str) -> None:
        """Claim ``name`` for ``cid``, or raise docker's conflict error."""
        if not NAME_RE.fullmatch(name):
            raise EngineError(f'Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed')
        link = os.path.join(self.paths.names, name)
        for _ in range(3):
            try:
                os.symlink(cid, link)
                return
            except FileExistsError:
                owner = self.name_owner(name)
                if owner is not None and owner != cid:
                    raise EngineError(f'Conflict. The container name "/{name}" is already in use by container '
                                      f'"{owner}". You have to remove (or rename) that container to be able to '
                                      'reuse that name.') from None
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(link)  # its container is gone: a crash between the two steps
            except OSError as e:
                raise EngineError(os_message(e, f"creating {link}")) from None
        raise EngineError(f"cannot claim the container name {name!r}")

    def free_name(self, name: str, cid: str) -> None:
        link = os.path.join(self.paths.names, name)
        with contextlib.suppress(OSError):
            if os.readlink(link) == cid:
                os.unlink(link)

    def rename(self, cid: str, old: str, new: str) -> None:
        self.take_name(new, cid)
        self.free_name(old, cid)

    # -- lookup ----------------------------------------------------------
    def resolve(self, ref: str) -> str:
        """The id that ``ref`` (name, id or unique id prefix) names; NoSuchContainer otherwise."""
        ref = ref.lstrip("/") if ref.startswith("/") and NAME_RE.fullmatch(ref[1:]) else ref
        if NAME_RE.fullmatch(ref):
            owner = self.name_owner(ref)
            if owner is not None:
                return owner
        if re.fullmatch(r"[0-9a-f]+", ref):
            hits = [c for c in self.ids() if c.startswith(ref)]
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                raise EngineError(f"multiple IDs found with provided prefix: {ref}")
        raise NoSuchContainer(f"No such container: {ref}")

    # -- locks -----------------------------------------------------------
    @contextlib.contextmanager
    def locked(self, cid: str):
        """Hold ``cid``'s lock for the block (an flock, freed if the holder dies)."""
        os.makedirs(self.paths.locks, exist_ok=True)
        fd = os.open(os.path.join(self.paths.locks, cid), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def try_lock(self, cid: str) -> int | None:
        """The lock's fd if it was free (the caller closes it), else None."""
        os.makedirs(self.paths.locks, exist_ok=True)
        fd = os.open(os.path.join(self.paths.locks, cid), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            os.close(fd)
            return None

    def drop(self, cid: str, *, keep_exit: bool = False) -> None:
        """Remove a container's directory and lock file; ``keep_exit`` leaves its exit status
        for an attached caller still to read (it removes the file)."""
        d = self.paths.cdir(cid)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(d, RECORD))
        shutil.rmtree(d, ignore_errors=True)
        for p in ((() if keep_exit else (self.paths.exit_file(cid),)) + (os.path.join(self.paths.sockets, cid),
                  os.path.join(self.paths.locks, cid))):
            with contextlib.suppress(OSError):
                os.unlink(p)
