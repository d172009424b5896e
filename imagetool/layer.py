"""Apply OCI image layers (image-spec layer.md) to a directory, confined to it.

Contract of :func:`apply_layer`:

* The blob is decompressed (plain tar, gzip or zstd) and untarred in one
  streaming pass; the uncompressed bytes are hashed on the way and compared
  with the expected ``diff_id`` at the end.  A mismatch raises
  :class:`LayerError` (the directory may then hold a partial layer: callers
  apply into a staging directory they can throw away).
* Every path is resolved component by component below the root directory
  with ``*at`` calls on directory file descriptors.  Symlinks met in
  intermediate components are followed the way a ``chroot`` would (absolute
  targets restart at the root, ``..`` stops at the root), so nothing is ever
  created, changed or removed outside the root.  Entries whose names contain
  ``..`` components and hardlinks whose target names do are refused.
* Whiteouts (``.wh.NAME``) and opaque markers (``.wh..wh..opq``) remove
  entries of the layers below, never entries of the same layer.  When the
  target directory is an overlayfs mount (lower layers + a fresh upperdir),
  these removals make the kernel record them in overlayfs form (0/0 char
  devices, ``trusted.overlay.opaque``) in the upperdir, and hardlinks to
  lower files are materialised by copy-up.
* Ownership is applied before the mode (chown clears setuid/setgid), directory
  mtimes after their contents.  ``trusted.overlay.*`` xattrs from a layer are
  dropped: they would let an image forge overlayfs metadata.
* In ``rootless`` mode ownership is not changed and device nodes are skipped.
* The tar reader (imagetool.tarstream) ignores global pax headers, as
  Docker and containerd do, and refuses sparse entries, which no image
  builder writes, naming them.
"""
from __future__ import annotations

import errno
import os
import stat

from imagetool import tarstream as ts
from imagetool.errors import LayerError, os_message, reason

__all__ = ["LayerError", "IdMap", "apply_layer", "open_in_root", "resolve_in_root"]

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
_MAX_SYMLINKS = 40
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class IdMap:
    """A container-to-host id mapping made of ``(container, host, size)`` ranges."""

    def __init__(self, ranges=()):
        self.ranges = [tuple(int(x) for x in r) for r in ranges]

    @classmethod
    def parse(cls, specs):
        """Build from strings ``C:H:N`` (as given to ``--uid-map``)."""
        ranges = []
        for s in specs or ():
            parts = s.split(":")
            if len(parts) != 3 or not all(p.isdigit() for p in parts) or int(parts[2]) == 0:
                raise ValueError(f"invalid id map {s!r}: expected CONTAINER:HOST:SIZE")
            ranges.append(tuple(int(p) for p in parts))
        return cls(ranges)

    def __bool__(self):
        return bool(self.ranges)

    def to_host(self, cid: int) -> int:
        """Map a container id to its host id; identity when the map is empty."""
        if not self.ranges:
            return cid
        for c, h, n in self.ranges:
            if c <= cid < c + n:
                return h + cid - c
        raise KeyError(cid)

    def to_spec(self):
        """The runtime-spec ``uidMappings``/``gidMappings`` form."""
        return [{"containerID": c, "hostID": h, "size": n} for c, h, n in self.ranges]

    def __str__(self):
        return ",".join(f"{c}:{h}:{n}" for c, h, n in self.ranges)


# --------------------------------------------------------------------------
# path resolution confined to a root


def _split_entry_name(name: str, entry: str) -> list[str]:
    """Normalise a tar entry name into components; refuse ``..``."""
    parts = []
    for p in name.split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            raise LayerError(f"layer entry {entry!r}: path contains '..', refusing to leave the rootfs")
        parts.append(p)
    return parts


_openat2_ok = True


def _parent_in_root(root_fd: int, parts: list[str]) -> int | None:
    """The parent directory of ``parts`` in one openat2(RESOLVE_IN_ROOT)
    call: symlinks are followed with the root as "/", exactly as the walk in
    _resolve does, but by the kernel, in one syscall instead of one open per
    component. None when that is not possible (a component is missing or is
    no directory, or no openat2 here): the caller walks instead, which
    creates what is missing and names what is wrong."""
    global _openat2_ok
    if not _openat2_ok:
        return None
    from runtime import syscalls as sc
    try:
        return sc.openat2(root_fd, "/".join(parts[:-1]), os.O_RDONLY | os.O_DIRECTORY,
                          sc.RESOLVE_IN_ROOT | sc.RESOLVE_NO_MAGICLINKS)
    except OSError as e:
        if e.errno in (errno.ENOSYS, errno.EPERM):  # old kernel, or a seccomp filter
            _openat2_ok = False
        return None


def _resolve(root_fd: int, parts: list[str], *, create: bool, entry: str, follow_last: bool = False):
    """Walk ``parts`` below ``root_fd`` and return ``(parent_fd, last_name)``.

    Intermediate symlinks are followed scoped to the root; missing
    intermediate directories are created (mode 0755) when ``create``.  The
    returned fd is new and owned by the caller.  ``last_name`` is ``None``
    when the path resolves to the root itself.
    """
    if len(parts) > 1 and not follow_last and ".." not in parts:
        fd = _parent_in_root(root_fd, parts)
        if fd is not None:
            return fd, parts[-1]
    stack = [os.dup(root_fd)]
    todo = list(reversed(parts))  # pop() from the end = next component
    links = 0
    try:
        while todo:
            comp = todo.pop()
            if comp in ("", "."):
                continue
            if comp == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                continue
            cur = stack[-1]
            last = not todo
            try:
                st = os.lstat(comp, dir_fd=cur)
            except FileNotFoundError:
                st = None
            if last and not (follow_last and st is not None and stat.S_ISLNK(st.st_mode)):
                fd = stack.pop()
                return fd, comp
            if st is None:
                if not create:
                    raise FileNotFoundError(errno.ENOENT, "no such file or directory", comp)
                os.mkdir(comp, 0o755, dir_fd=cur)
                st = os.lstat(comp, dir_fd=cur)
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > _MAX_SYMLINKS:
                    raise LayerError(f"layer entry {entry!r}: too many levels of symbolic links")
                target = os.readlink(comp, dir_fd=cur)
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                todo.extend(reversed([p for p in target.split("/") if p]))
                continue
            if not stat.S_ISDIR(st.st_mode):
                raise LayerError(f"layer entry {entry!r}: path component {comp!r} is not a directory")
            stack.append(os.open(comp, _DIR_FLAGS, dir_fd=cur))
        fd = stack.pop()
        return fd, None
    finally:
        for fd in stack:
            os.close(fd)


def resolve_in_root(root: str, path: str, *, create: bool = False, follow_last: bool = False):
    """Public form of the confined walk: ``(parent_fd, name)`` for ``path`` in ``root``."""
    rfd = os.open(root, _DIR_FLAGS)
    try:
        return _resolve(rfd, [p for p in path.split("/") if p], create=create, entry=path, follow_last=follow_last)
    finally:
        os.close(rfd)


def open_in_root(root: str, path: str, flags: int = os.O_RDONLY):
    """Open ``path`` inside ``root`` following symlinks only within ``root``.

    Returns a file descriptor; raises FileNotFoundError when missing.
    """
    pfd, name = resolve_in_root(root, path, follow_last=True)
    try:
        if name is None:
            return os.open(".", flags | os.O_CLOEXEC, dir_fd=pfd)
        return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
    finally:
        os.close(pfd)


def _proc(fd: int, name: str | None = None) -> str:
    # /proc/self/fd/N names the directory the fd refers to; the final name
    # is then looked up without following it (follow_symlinks=False).
    return f"/proc/self/fd/{fd}" if name is None else f"/proc/self/fd/{fd}/{name}"


def _remove(pfd: int, name: str):
    try:
        st = os.lstat(name, dir_fd=pfd)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        import shutil

        shutil.rmtree(name, dir_fd=pfd)
    else:
        os.unlink(name, dir_fd=pfd)


# --------------------------------------------------------------------------
# applying one layer


class _Applier:
    """Applies entries one at a time; owns root_fd and the cached parent fd.

    The parent directory of the previous entry is kept open: tar streams
    list a directory's files together, and the parent of the next entry is
    then the same one, without resolving it again.  The cache is emptied by
    anything that removes or replaces an entry (whiteouts, opaque markers,
    an entry replacing another), since only a removal can change what a
    path that resolved before resolves to."""

    def __init__(self, root: str, *, rootless: bool, uid_map: IdMap, gid_map: IdMap):
        self.root = root
        self.root_fd = os.open(root, _DIR_FLAGS)
        self.rootless = rootless
        self.uid_map = uid_map
        self.gid_map = gid_map
        # Paths written by this layer, with all their ancestors: whiteouts of
        # this same layer must not remove them.
        self.touched: set[str] = set()
        self.dir_times: list[tuple[str, int, int]] = []
        self.skipped: list[str] = []
        self._pkey: str | None = None  # parent path of the cached fd
        self._pfd: int | None = None

    def close(self):
        """Close root_fd and the cached fd. Idempotent."""
        if self._pfd is not None:
            os.close(self._pfd)
            self._pfd = self._pkey = None
        if self.root_fd >= 0:
            os.close(self.root_fd)
            self.root_fd = -1

    # -- helpers
    def _parent(self, parts: list[str], entry: str, create: bool = True) -> int:
        """The directory that holds (or will hold) parts[-1], its missing
        ancestors created when ``create``. The fd belongs to the applier
        (callers do not close it)."""
        key = "/".join(parts[:-1])
        if key == self._pkey:
            return self._pfd
        fd, _ = _resolve(self.root_fd, parts, create=create, entry=entry)
        if self._pfd is not None:
            os.close(self._pfd)
        self._pkey, self._pfd = key, fd
        return fd

    def _invalidate(self):
        # An entry that removes something has a parent other than the
        # entries below what it removes, so the cached key has already
        # moved on by then; this keeps the cache safe should that change.
        # The fd stays open (a caller may be using it) until the next _parent.
        self._pkey = None

    def _clear(self, pfd: int, name: str) -> None:
        """Remove whatever is at name (an entry of this layer replaces it)."""
        self._invalidate()
        _remove(pfd, name)

    def _mark(self, rel: str):
        while rel and rel not in self.touched:
            self.touched.add(rel)
            rel = rel.rpartition("/")[0]

    def _ids(self, e: ts.Entry, entry: str):
        try:
            return self.uid_map.to_host(e.uid), self.gid_map.to_host(e.gid)
        except KeyError as err:
            raise LayerError(f"layer entry {entry!r}: owner id {err.args[0]} is not in the id map") from None

    def _set_xattrs(self, e: ts.Entry, entry: str, fd: int | None, path: str | None):
        for xname, value in e.xattrs.items():
            if xname.startswith("trusted.overlay."):
                continue  # would let an image forge overlayfs metadata
            try:
                if fd is not None:
                    os.setxattr(fd, xname, value)
                else:
                    os.setxattr(path, xname, value, follow_symlinks=False)
            except OSError as err:
                # user.* xattrs cannot exist on symlinks; a layer carrying
                # them there is tolerated (the attribute is dropped).
                if e.type == ts.SYM and err.errno in (errno.EPERM, errno.ENOTSUP):
                    continue
                raise LayerError(f"layer entry {entry!r}: cannot set xattr {xname}: {reason(err)}") from None

    def _metadata(self, pfd: int, name: str | None, e: ts.Entry, entry: str, *, fd: int | None = None):
        """chown, then xattrs, then chmod (chown clears set-id bits), then
        times; a directory's times are returned, to be set by finish().

        With fd, the calls go to the open file.  Otherwise to name in pfd:
        without following a symlink where the call can (chown, utime); chmod
        never meets one, because the entry was just made (or found to be)
        a directory, device or fifo and nothing else writes to the tree."""
        uid, gid = self._ids(e, entry)
        if fd is not None:
            if not self.rootless:
                os.fchown(fd, uid, gid)
            if e.xattrs:
                self._set_xattrs(e, entry, fd, None)
            os.fchmod(fd, e.mode & 0o7777)
            if e.type == ts.DIR:
                return (e.atime_ns, e.mtime_ns)
            os.utime(fd, ns=(e.atime_ns, e.mtime_ns))
            return None
        if not self.rootless:
            os.chown(name, uid, gid, dir_fd=pfd, follow_symlinks=False)
        if e.xattrs:
            self._set_xattrs(e, entry, None, _proc(pfd, name))
        if e.type != ts.SYM:
            os.chmod(name, e.mode & 0o7777, dir_fd=pfd)
        if e.type == ts.DIR:
            return (e.atime_ns, e.mtime_ns)
        os.utime(name, ns=(e.atime_ns, e.mtime_ns), dir_fd=pfd, follow_symlinks=False)
        return None

    def _remove_lower(self, pfd: int, name: str, rel: str):
        """Remove what lower layers put at rel, keeping this layer's entries."""
        if rel not in self.touched:
            _remove(pfd, name)
            return
        try:
            st = os.lstat(name, dir_fd=pfd)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            self._remove_lower_children(pfd, name, rel)

    def _remove_lower_children(self, pfd: int, name: str, rel: str) -> None:
        """_remove_lower for every entry of the directory `name` (at `rel`)."""
        dfd = os.open(name, _DIR_FLAGS, dir_fd=pfd)
        try:
            for child in os.listdir(dfd):
                self._remove_lower(dfd, child, f"{rel}/{child}")
        finally:
            os.close(dfd)

    def _opaque(self, parts: list[str], entry: str):
        self._invalidate()
        rel = "/".join(parts)
        pfd, name = _resolve(self.root_fd, parts, create=True, entry=entry)
        try:
            if name is None:  # opaque root: drop every lower entry
                for child in os.listdir(pfd):
                    self._remove_lower(pfd, child, child)
                return
            try:
                st = os.lstat(name, dir_fd=pfd)
            except FileNotFoundError:
                st = None
            if st is not None and not stat.S_ISDIR(st.st_mode):
                _remove(pfd, name)
                st = None
            if st is None:
                os.mkdir(name, 0o755, dir_fd=pfd)
                self._mark(rel)
                return
            if not any(t.startswith(rel + "/") for t in self.touched):
                # Nothing of this layer below it yet: recreate the directory
                # with its metadata.  On an overlay mount this yields an
                # opaque directory in the upperdir, as the marker means.
                path = _proc(pfd, name)
                xattrs = [(x, os.getxattr(path, x, follow_symlinks=False)) for x in os.listxattr(path, follow_symlinks=False)]
                _remove(pfd, name)
                os.mkdir(name, 0o755, dir_fd=pfd)
                if not self.rootless:
                    os.chown(path, st.st_uid, st.st_gid, follow_symlinks=False)
                for x, v in xattrs:
                    try:
                        os.setxattr(path, x, v, follow_symlinks=False)
                    except OSError:
                        pass  # e.g. overlay-private names the mount refuses
                os.chmod(path, stat.S_IMODE(st.st_mode))
                os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
                self._mark(rel)
                return
            self._remove_lower_children(pfd, name, rel)
        finally:
            os.close(pfd)

    def _whiteout(self, parts: list[str], entry: str):
        self._invalidate()
        try:
            pfd, name = _resolve(self.root_fd, parts, create=False, entry=entry)
        except FileNotFoundError:
            return  # nothing below to hide
        except LayerError:
            return  # a parent is not a directory: nothing below to hide either
        try:
            if name is None:
                raise LayerError(f"layer entry {entry!r}: whiteout of the root directory")
            self._remove_lower(pfd, name, "/".join(parts))
        finally:
            os.close(pfd)

    # -- entries
    def entry(self, reader: ts.TarReader, e: ts.Entry):
        entry = e.name
        parts = _split_entry_name(entry, entry)
        if parts:
            base = parts[-1]
            if base.startswith(WHITEOUT_PREFIX):
                if base == OPAQUE:
                    self._opaque(parts[:-1], entry)
                    return
                target = base[len(WHITEOUT_PREFIX):]
                if not target or target in (".", ".."):
                    raise LayerError(f"layer entry {entry!r}: invalid whiteout name")
                self._whiteout(parts[:-1] + [target], entry)
                return
        elif e.type != ts.DIR:
            raise LayerError(f"layer entry {entry!r}: the root can only be a directory")
        else:  # the root directory itself ("./")
            times = self._metadata(self.root_fd, None, e, entry, fd=self.root_fd)
            self.dir_times.append(("", *times))
            return
        if e.type in (ts.CHR, ts.BLK) and self.rootless:
            # An unprivileged user cannot create device nodes (and must not
            # get them from an image); like rootless Docker, skip them.
            self.skipped.append(entry)
            return
        pfd = self._parent(parts, entry)
        rel = "/".join(parts)
        try:
            self._write(reader, e, pfd, parts[-1], rel, entry)
        except FileExistsError as err:
            raise LayerError(f"layer entry {entry!r}: {reason(err)}") from None
        self._mark(rel)

    def _write(self, reader, e, pfd, name, rel, entry):
        t = e.type
        if t == ts.REG:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            try:
                fd = os.open(name, flags, 0o600, dir_fd=pfd)
            except FileExistsError:
                self._clear(pfd, name)
                fd = os.open(name, flags, 0o600, dir_fd=pfd)
            try:
                if e.size:
                    reader.copy_to(fd, e.size)
                self._metadata(pfd, name, e, entry, fd=fd)
            finally:
                os.close(fd)
        elif t == ts.DIR:
            try:
                os.mkdir(name, 0o700, dir_fd=pfd)
            except FileExistsError:
                if not stat.S_ISDIR(os.lstat(name, dir_fd=pfd).st_mode):
                    self._clear(pfd, name)  # a file replaced by a directory
                    os.mkdir(name, 0o700, dir_fd=pfd)
            times = self._metadata(pfd, name, e, entry)
            self.dir_times.append((rel, *times))
        elif t == ts.SYM:
            try:
                os.symlink(e.linkname, name, dir_fd=pfd)
            except FileExistsError:
                self._clear(pfd, name)
                os.symlink(e.linkname, name, dir_fd=pfd)
            self._metadata(pfd, name, e, entry)
        elif t == ts.LNK:
            self._hardlink(e, pfd, name, entry)
        elif t in (ts.CHR, ts.BLK, ts.FIFO):
            kind = stat.S_IFCHR if t == ts.CHR else stat.S_IFBLK if t == ts.BLK else stat.S_IFIFO
            dev = os.makedev(e.devmajor, e.devminor) if t != ts.FIFO else 0
            try:
                os.mknod(name, kind | 0o600, dev, dir_fd=pfd)
            except FileExistsError:
                self._clear(pfd, name)
                os.mknod(name, kind | 0o600, dev, dir_fd=pfd)
            self._metadata(pfd, name, e, entry)
        else:
            raise LayerError(f"layer entry {entry!r}: unsupported tar entry type {t!r}")

    def _hardlink(self, e, pfd, name, entry):
        tparts = _split_entry_name(e.linkname, entry)
        if not tparts:
            raise LayerError(f"layer entry {entry!r}: hardlink to the root directory")
        try:
            tfd, tname = _resolve(self.root_fd, tparts, create=False, entry=entry)
        except (FileNotFoundError, NotADirectoryError):
            raise LayerError(f"layer entry {entry!r}: hardlink target {e.linkname!r} does not exist") from None
        try:
            try:
                tst = os.lstat(tname, dir_fd=tfd)
            except FileNotFoundError:
                raise LayerError(f"layer entry {entry!r}: hardlink target {e.linkname!r} does not exist") from None
            if stat.S_ISDIR(tst.st_mode):
                raise LayerError(f"layer entry {entry!r}: hardlink target {e.linkname!r} is a directory")
            try:
                st = os.lstat(name, dir_fd=pfd)
            except FileNotFoundError:
                st = None
            if st is not None:
                if (st.st_dev, st.st_ino) == (tst.st_dev, tst.st_ino):
                    return
                self._clear(pfd, name)
            # linkat without AT_SYMLINK_FOLLOW: a link to a symlink links the
            # symlink itself, never what it points at (possibly outside).
            os.link(tname, name, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(tfd)

    def finish(self):
        # Deepest directories first, so setting a child's time cannot be
        # undone by later work in it; every entry is written by now.
        self._invalidate()
        depth = lambda t: t[0].count("/") + (1 if t[0] else 0)  # noqa: E731
        for rel, atime_ns, mtime_ns in sorted(self.dir_times, key=depth, reverse=True):
            if not rel:
                os.utime(self.root_fd, ns=(atime_ns, mtime_ns))
                continue
            parts = rel.split("/")
            try:
                pfd = self._parent(parts, rel, create=False)
            except (FileNotFoundError, LayerError):
                continue  # removed again later in the same layer
            try:
                os.utime(parts[-1], ns=(atime_ns, mtime_ns), dir_fd=pfd, follow_symlinks=False)
            except FileNotFoundError:
                pass


def apply_layer(
    root: str,
    blob_path: str,
    *,
    media_type: str | None = None,
    diff_id: str | None = None,
    rootless: bool | None = None,
    uid_map: IdMap | None = None,
    gid_map: IdMap | None = None,
) -> dict:
    """Apply the layer blob at ``blob_path`` onto the directory ``root``.

    ``diff_id`` (``algo:hex``) is checked against the uncompressed stream;
    ``rootless`` defaults to "not running as root".  Returns a small report
    ``{"diff_id": ..., "size": uncompressed bytes, "skipped": [entries]}``.
    Raises :class:`LayerError` naming the entry or the blob on any refusal.
    The blob is read once, decompressed and hashed on a helper thread
    (imagetool.tarstream) that has ended when this returns or raises.
    """
    if rootless is None:
        rootless = os.geteuid() != 0
    algo = diff_id.split(":", 1)[0] if diff_id else "sha256"
    if algo not in ("sha256", "sha384", "sha512"):
        raise LayerError(f"layer {blob_path}: unsupported digest algorithm in {diff_id!r}")
    try:
        stream = ts.LayerStream(blob_path, media_type, algo)
    except OSError as e:
        raise LayerError(os_message(e, f"reading layer {blob_path}")) from None
    applier = None
    try:
        try:
            applier = _Applier(root, rootless=rootless, uid_map=uid_map or IdMap(), gid_map=gid_map or IdMap())
        except OSError as err:
            raise LayerError(os_message(err, f"opening {root}")) from None
        reader = ts.TarReader(stream)
        e = None
        try:
            for e in ts.entries(reader):
                applier.entry(reader, e)
            hexdigest, size = stream.finish()
            e = None
            applier.finish()
        except ts.StreamError as err:
            raise LayerError(f"layer {blob_path}: {err}") from None
        except ts.TarError as err:
            raise LayerError(f"layer {blob_path}: corrupt tar stream: {err}") from None
        except OSError as err:
            # what failed and where: the entry's path under root
            where = (f"writing {os.path.normpath(os.path.join(root, e.name.lstrip('/')))}"
                     if e is not None else f"applying layer {blob_path} to {root}")
            raise LayerError(os_message(err, where)) from None
        except (ValueError, OverflowError) as err:
            # a value the system calls refuse (the reader checks the usual ones)
            what = f"layer entry {e.name!r}" if e is not None else f"layer {blob_path}"
            raise LayerError(f"{what}: {err}") from None
    finally:
        stream.close()
        if applier is not None:
            applier.close()
    got = f"{algo}:{hexdigest}"
    if diff_id and got != diff_id:
        raise LayerError(f"layer {blob_path}: uncompressed digest {got} does not match diff_id {diff_id}")
    return {"diff_id": got, "size": size, "skipped": applier.skipped}
