"""Named volumes (docker volume create/ls/inspect/rm/prune), local driver.

Layout: ROOT/volumes/<name>/volume.json is the record, ROOT/volumes/<name>/_data
the content (the Mountpoint). Entries whose names start with "." are work in
progress (a volume being created or removed) and are never listed.

Contracts:
- create() is idempotent: an existing name returns the existing volume. Two
  processes creating one name at once end with one volume: each builds its
  volume under a staging name and renames it into place; a rename that finds
  the name taken (a non-empty directory) loses, and returns the winner's.
- remove() renames the volume out of the namespace before deleting it, so a
  half-removed volume is never seen under its name; both remove() and seed()
  hold an exclusive flock on the volume's directory.
- seed() copies what the image has at the mount path into the volume the first
  time a container mounts it, if the volume is empty and was never seeded
  (docker's copy-up): owners, modes, xattrs (but trusted.overlay.*), times,
  symlinks (as links), hardlinks, devices and fifos. The source is walked
  with directory file descriptors and O_NOFOLLOW: nothing outside the source
  directory is read, whatever its symlinks say.
- In-use checks are the caller's: it knows the containers; it passes their ids
  (remove) or the names they use (prune).
Messages follow docker 20.10's ("get foo: no such volume",
"remove foo: volume is in use - [id1, id2]").
"""
from __future__ import annotations

import errno
import fcntl
import os
import shutil
import stat
import time

from imagetool.engine.template import quote
from imagetool.errors import BundleError, LayerError, os_message
from imagetool.layer import open_in_root
from runtime.toolkit import fastjson as json

__all__ = ["Volumes", "valid_name"]

RECORD = "volume.json"
DATA = "_data"
# docker's local driver: the option keys it takes, and those each one needs
_OPTIONS = {"type", "device", "o", "size"}
_NEEDS = {"device": ("type",), "type": ("device",), "o": ("device", "type")}
_NAME_FIRST = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_NAME_REST = _NAME_FIRST | frozenset("_.-")


def valid_name(name: str) -> str | None:
    """None for a valid local volume name, else docker's reason."""
    if len(name.encode()) == 1:
        return "volume name is too short, names should be at least two alphanumeric characters"
    if not name or name[0] not in _NAME_FIRST or any(c not in _NAME_REST for c in name):
        return (f"{quote(name)} includes invalid characters for a local volume name, only "
                f'"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, '
                f"use absolute path")
    return None


def _rfc3339(ts: float) -> str:
    # Go's time.RFC3339 in local time: the offset as +hh:mm, "Z" for UTC
    lt = time.localtime(ts)
    off = lt.tm_gmtoff
    zone = "Z" if off == 0 else f"{'+' if off > 0 else '-'}{abs(off) // 3600:02d}:{abs(off) % 3600 // 60:02d}"
    return time.strftime("%Y-%m-%dT%H:%M:%S", lt) + zone


class _Locked:
    """An exclusive flock on a directory, held for a with-block."""

    def __init__(self, path: str):
        self.path = path

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        os.close(self.fd)  # releases the lock


class Volumes:
    """The volumes of one store: ROOT/volumes."""

    def __init__(self, root: str):
        self.dir = os.path.join(root, "volumes")

    # -- paths and records
    def _path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def mountpoint(self, name: str) -> str:
        """Where the volume's content is (its Mountpoint)."""
        return os.path.join(self._path(name), DATA)

    def _read(self, name: str) -> dict | None:
        if valid_name(name) is not None:
            return None
        try:
            with open(os.path.join(self._path(name), RECORD)) as f:
                return json.loads(f.read())
        except FileNotFoundError:
            return None
        except NotADirectoryError:
            return None
        except OSError as e:
            raise BundleError(os_message(e, f"reading volume {name}")) from None
        except ValueError:
            raise BundleError(f"volume {name}: its record {os.path.join(self._path(name), RECORD)} is corrupt") \
                from None

    def _write(self, dirpath: str, rec: dict) -> None:
        path = os.path.join(dirpath, RECORD)
        tmp = f"{path}.tmp{os.getpid()}"
        try:
            with open(tmp, "w") as f:
                f.write(json.dumps(rec, indent=2) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as e:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise BundleError(os_message(e, f"writing {path}")) from None

    def _inspect(self, rec: dict) -> dict:
        return {"CreatedAt": _rfc3339(rec["CreatedAt"]), "Driver": rec["Driver"], "Labels": rec["Labels"],
                "Mountpoint": self.mountpoint(rec["Name"]), "Name": rec["Name"], "Options": rec["Options"],
                "Scope": "local"}

    # -- the verbs
    def create(self, name: str | None = None, *, labels: dict | None = None, driver: str = "local",
               options: dict | None = None) -> dict:
        """Create a volume (a 64-hex name when `name` is None) and return
        its inspect form; an existing name returns the existing volume.
        Labels and Options are stored as given (None shows as null, as
        docker shows them for a volume made by `run`)."""
        anonymous = name is None
        if anonymous:
            name = os.urandom(32).hex()
        why = valid_name(name)
        if why:
            raise BundleError(f"create {name}: {why}")
        if driver != "local":
            raise BundleError(f'create {name}: error looking up volume plugin {driver}: plugin "{driver}" not found')
        for key in sorted(options or {}):
            if key not in _OPTIONS:
                raise BundleError(f'create {name}: invalid option key: "{key}"')
            for need in _NEEDS.get(key, ()):
                if need not in options:
                    raise BundleError(f'create {name}: missing required option: "{need}"')
        existing = self._read(name)
        if existing is not None:
            return self._inspect(existing)
        rec = {"Name": name, "Driver": driver, "Labels": None if labels is None else dict(labels),
               "Options": None if options is None else dict(options), "CreatedAt": time.time(),
               "Anonymous": anonymous, "Seeded": False}
        stage = os.path.join(self.dir, f".create-{os.getpid()}-{os.urandom(4).hex()}")
        try:
            os.makedirs(self.dir, mode=0o700, exist_ok=True)
            os.mkdir(stage, 0o701)
            os.mkdir(os.path.join(stage, DATA), 0o755)
            self._write(stage, rec)
            try:
                os.rename(stage, self._path(name))
            except OSError as e:
                if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                # another process made it first: that one is the volume
                _rmtree(stage)
                won = self._read(name)
                if won is None:
                    raise BundleError(f"create {name}: {self._path(name)} exists and is not a volume") from None
                return self._inspect(won)
        except OSError as e:
            _rmtree(stage)
            raise BundleError(f"create {name}: " + os_message(e, f"making {self._path(name)}")) from None
        except BaseException:
            _rmtree(stage)
            raise
        return self._inspect(rec)

    def get(self, name: str) -> dict:
        """The inspect form (CreatedAt, Driver, Labels, Mountpoint, Name,
        Options, Scope) of a volume; "get NAME: no such volume"."""
        rec = self._read(name)
        if rec is None:
            raise BundleError(f"get {name}: no such volume")
        return self._inspect(rec)

    def exists(self, name: str) -> bool:
        return self._read(name) is not None

    def list(self) -> list[dict]:
        """Every volume's inspect form, by name."""
        try:
            names = sorted(n for n in os.listdir(self.dir) if not n.startswith("."))
        except FileNotFoundError:
            return []
        except OSError as e:
            raise BundleError(os_message(e, f"listing {self.dir}")) from None
        out = []
        for n in names:
            rec = self._read(n)
            if rec is not None:
                out.append(self._inspect(rec))
        return out

    def remove(self, name: str, *, force: bool = False, in_use=()) -> None:
        """Remove a volume. `in_use`: the ids of the containers using it
        (the caller's finding); with any the volume stays: "remove NAME:
        volume is in use - [ids]". force: a missing volume is no error."""
        if self._read(name) is None:
            if force:
                return
            raise BundleError(f"get {name}: no such volume")
        if in_use:
            raise BundleError(f"remove {name}: volume is in use - [{', '.join(in_use)}]")
        path = self._path(name)
        trash = os.path.join(self.dir, f".remove-{os.getpid()}-{os.urandom(4).hex()}")
        try:
            with _Locked(path):
                os.rename(path, trash)
        except FileNotFoundError:
            if force:
                return
            raise BundleError(f"get {name}: no such volume") from None
        except OSError as e:
            raise BundleError(f"remove {name}: " + os_message(e, f"removing {path}")) from None
        try:
            _rmtree(trash, strict=True)
        except OSError as e:
            raise BundleError(f"remove {name}: " + os_message(e, f"removing {trash}")) from None

    def prune(self, in_use: set, all_: bool = False) -> tuple[list[str], int]:
        """Remove every volume whose name is not in `in_use`; returns the
        names removed and the bytes their content held (docker's
        SpaceReclaimed: file sizes, each inode once). docker 20.10 prunes
        named and anonymous volumes alike, so `all_` (23.0's --all) changes
        nothing here."""
        removed, freed = [], 0
        for v in self.list():
            name = v["Name"]
            if name in in_use:
                continue
            size = _tree_size(self.mountpoint(name))
            try:
                self.remove(name)
            except BundleError:
                continue  # removed by someone else meanwhile, or not removable now
            removed.append(name)
            freed += size
        return removed, freed

    def seed(self, name: str, source, path: str | None = None) -> bool:
        """Copy image content into the volume on its first use: `source` is
        a container rootfs and `path` the mount path in it (resolved with
        symlinks confined to the rootfs), or `source` is an open directory
        fd (or a directory path, opened without following a final symlink)
        and `path` None. Copies only into an empty volume never seeded;
        returns whether it copied. A missing source path copies nothing."""
        vpath, dest = self._path(name), self.mountpoint(name)
        if self._read(name) is None:
            raise BundleError(f"get {name}: no such volume")
        try:
            with _Locked(vpath):
                rec = self._read(name)
                if rec is None:
                    raise BundleError(f"get {name}: no such volume")
                if rec.get("Seeded") or os.listdir(dest):
                    return False
                src_fd = self._open_source(source, path)
                if src_fd is None:
                    return False
                try:
                    _copy_tree(src_fd, dest)
                except BaseException:
                    _empty(dest)  # a partial copy would pass for content and never be redone
                    raise
                finally:
                    if not isinstance(source, int):
                        os.close(src_fd)
                rec["Seeded"] = True
                self._write(vpath, rec)
                return True
        except FileNotFoundError as e:
            if e.filename in (vpath, dest):
                raise BundleError(f"get {name}: no such volume") from None
            raise BundleError(f"volume {name}: cannot seed from the image: {os_message(e)}") from None
        except OSError as e:
            raise BundleError(f"volume {name}: cannot seed from the image: {os_message(e)}") from None

    @staticmethod
    def _open_source(source, path):
        if isinstance(source, int):
            return source
        flags = os.O_RDONLY | os.O_DIRECTORY
        try:
            if path is None:
                return os.open(source, flags | os.O_NOFOLLOW | os.O_CLOEXEC)
            return open_in_root(source, path, flags)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            if e.errno == errno.ELOOP:
                return None  # (the final component is a symlink: not followed)
            raise
        except LayerError:
            return None  # (a symlink loop, or a file on the way: no directory to copy)


def _rmtree(path: str, strict: bool = False) -> None:
    shutil.rmtree(path, ignore_errors=not strict)


def _empty(path: str) -> None:
    for n in os.listdir(path):
        p = os.path.join(path, n)
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p, ignore_errors=True)
        else:
            try:
                os.unlink(p)
            except OSError:
                pass


def _tree_size(path: str) -> int:
    seen, total = set(), 0
    for d, dirs, files in os.walk(path):
        for f in files:
            try:
                st = os.lstat(os.path.join(d, f))
            except OSError:
                continue
            if st.st_nlink > 1:
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


# --------------------------------------------------------------------------
# the copy-up

_ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False
_NOFOLLOW_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _proc(fd: int, name: str | None = None) -> str:
    return f"/proc/self/fd/{fd}" if name is None else f"/proc/self/fd/{fd}/{name}"


def _meta(st, dfd: int, name: str | None, sfd: int, is_link: bool) -> None:
    """Owner, mode, xattrs and times from `st` and the source entry `name`
    in sfd onto the entry `name` in dfd; name None: onto the directory dfd
    itself, from the directory sfd. Never follows a symlink."""
    if name is None:
        target, src, at = dfd, sfd, {}
    else:
        target, src, at = name, _proc(sfd, name), {"dir_fd": dfd, "follow_symlinks": False}
    try:
        os.chown(target, st.st_uid, st.st_gid, **at)
    except PermissionError:
        if _ROOT:
            raise
    if not is_link:
        os.chmod(target, stat.S_IMODE(st.st_mode), **({"dir_fd": dfd} if name is not None else {}))
    xtarget = dfd if name is None else _proc(dfd, name)
    nofollow = {} if name is None else {"follow_symlinks": False}
    try:
        attrs = os.listxattr(src, **nofollow)
    except OSError as e:
        if e.errno not in (errno.ENOTSUP, errno.EPERM):
            raise
        attrs = []
    for x in attrs:
        if x.startswith("trusted.overlay."):
            continue  # overlayfs' own metadata is not content
        try:
            os.setxattr(xtarget, x, os.getxattr(src, x, **nofollow), **nofollow)
        except OSError as e:
            # (an unprivileged copy cannot set trusted.* or security.*; symlinks take no user.*)
            if e.errno not in (errno.ENOTSUP, errno.EPERM):
                raise
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns), **at)


def _copy_data(sfd: int, name: str, dfd: int) -> None:
    src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=sfd)
    try:
        dst = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd)
        try:
            while True:
                try:
                    n = os.copy_file_range(src, dst, 1 << 30)
                except OSError as e:
                    if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                        raise
                    n = None
                if n is None:
                    while True:
                        chunk = os.read(src, 1 << 20)
                        if not chunk:
                            break
                        os.write(dst, chunk)
                    break
                if n == 0:
                    break
        finally:
            os.close(dst)
    finally:
        os.close(src)


def _copy_tree(src_fd: int, dest: str) -> None:
    """Copy the directory open at src_fd into the empty directory dest."""
    dfd = os.open(dest, _NOFOLLOW_DIR)
    links = {}  # (dev, ino) of a multiply-linked file -> its path in dest
    try:
        _copy_dir(src_fd, dfd, "", links, dfd)
        _meta(os.fstat(src_fd), dfd, None, src_fd, False)
    finally:
        os.close(dfd)


def _copy_dir(sfd: int, dfd: int, rel: str, links: dict, root_fd: int) -> None:
    with os.scandir(sfd) as it:
        names = sorted(e.name for e in it)
    for name in names:
        st = os.lstat(name, dir_fd=sfd)
        mode = st.st_mode
        key = (st.st_dev, st.st_ino)
        if not stat.S_ISDIR(mode) and st.st_nlink > 1 and key in links:
            os.link(links[key], name, src_dir_fd=root_fd, dst_dir_fd=dfd, follow_symlinks=False)
            continue
        if stat.S_ISDIR(mode):
            os.mkdir(name, 0o700, dir_fd=dfd)
            csfd = os.open(name, _NOFOLLOW_DIR, dir_fd=sfd)
            try:
                cdfd = os.open(name, _NOFOLLOW_DIR, dir_fd=dfd)
                try:
                    _copy_dir(csfd, cdfd, f"{rel}{name}/", links, root_fd)
                    _meta(st, cdfd, None, csfd, False)
                finally:
                    os.close(cdfd)
            finally:
                os.close(csfd)
            continue
        if stat.S_ISREG(mode):
            _copy_data(sfd, name, dfd)
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(name, dir_fd=sfd), name, dir_fd=dfd)
        elif stat.S_ISFIFO(mode):
            os.mkfifo(name, 0o600, dir_fd=dfd)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            try:
                os.mknod(name, stat.S_IFMT(mode) | 0o600, st.st_rdev, dir_fd=dfd)
            except PermissionError:
                if _ROOT:
                    raise
                continue  # (devices need privilege; an unprivileged copy skips them)
        else:
            continue  # sockets are not content
        _meta(st, dfd, name, sfd, stat.S_ISLNK(mode))
        if st.st_nlink > 1:
            links[key] = rel + name
