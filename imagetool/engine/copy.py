"""docker cp, both ways, confined to the container's rootfs.

Into a container: the source is packed as a tar stream and applied at
the destination with imagetool.layer's confined writer, the same code
that applies image layers: every path is resolved below the rootfs with
``*at`` calls, so a symlink in the container (even one planted by the
container while the copy runs) never makes a write land outside it.
Out of a container: the source is opened inside the rootfs the same
confined way, and copied from that descriptor, so its symlinks cannot
point the copy at the host's files. Host paths are the caller's own.
"""
from __future__ import annotations

import json
import os
import stat
import subprocess
import tarfile
import tempfile

from imagetool.errors import EngineError, LayerError, UsageError, os_message
from imagetool.layer import apply_layer, open_in_root, resolve_in_root


def _split(arg: str) -> tuple[str | None, str]:
    if ":" in arg and not arg.startswith(("/", ".")):
        name, _, path = arg.partition(":")
        return name, path
    return None, arg


def cp(eng, src: str, dst: str, *, archive: bool = False, follow: bool = False) -> None:
    sref, spath = _split(src)
    dref, dpath = _split(dst)
    if (sref is None) == (dref is None):
        raise UsageError("copying between containers is not supported" if sref else
                         "must specify at least one container source")
    if sref is not None:
        _out(eng, eng.get(sref), spath or "/", dpath, follow)
    else:
        _in(eng, eng.get(dref), spath, dpath or "/", archive)


def _rootfs(rec) -> str:
    root = os.path.join(rec["Pyimg"]["bundle"], "rootfs")
    if not os.path.isdir(root):
        raise EngineError(f"container {rec['Id'][:12]}: its filesystem is not mounted")
    return root


def _locate(rec, cpath: str) -> tuple[str, str]:
    """(root, path inside it) for a container path: the bind mount (volume, /etc file) that
    covers it, as the container sees it, else the rootfs."""
    cpath = os.path.normpath("/" + cpath.lstrip("/"))
    try:
        with open(os.path.join(rec["Pyimg"]["bundle"], "config.json")) as f:
            mounts = json.load(f).get("mounts") or []
    except (OSError, ValueError):
        mounts = []
    best = None
    for m in mounts:
        d = m.get("destination", "")
        if m.get("type") == "bind" and (cpath == d or cpath.startswith(d.rstrip("/") + "/")):
            if best is None or len(d) > len(best["destination"]):
                best = m
    if best is None:
        return _rootfs(rec), cpath
    src, rest = best["source"], cpath[len(best["destination"]):]
    if os.path.isdir(src):
        return src, rest or "/"
    if rest:
        raise EngineError(f"Could not find the file {cpath} in container {rec['Name'][1:]}")
    return os.path.dirname(src), "/" + os.path.basename(src)


def _out(eng, rec, cpath: str, host: str, follow: bool) -> None:
    shown = cpath
    root, cpath = _locate(rec, cpath)
    try:
        if follow:
            fd = open_in_root(root, cpath, os.O_PATH)
        else:
            pfd, name = resolve_in_root(root, cpath)
            try:
                fd = os.open(name or ".", os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
            finally:
                os.close(pfd)
    except (FileNotFoundError, NotADirectoryError, LayerError):
        raise EngineError(f"Could not find the file {shown} in container {rec['Name'][1:]}") from None
    try:
        target = host
        if os.path.isdir(host) and not host.endswith("/."):
            target = os.path.join(host, os.path.basename(shown.rstrip("/")) or "root")
        if stat.S_ISLNK(os.fstat(fd).st_mode):  # the link itself, as docker copies it (its text, read at the fd)
            r = subprocess.run(["ln", "-s", "-f", "-T", "--", os.readlink("", dir_fd=fd), target],
                               capture_output=True, text=True)
        else:  # -H: cp follows the fd's magic link (the source), never a link below it
            r = subprocess.run(["cp", "-a", "-H", "-T", "--remove-destination", f"/proc/self/fd/{fd}", target],
                               pass_fds=(fd,), capture_output=True, text=True)
        if r.returncode != 0:
            raise EngineError(f"copying {cpath} to {host}: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else 'failed'}")
    finally:
        os.close(fd)


def _in(eng, rec, host: str, cpath: str, archive: bool) -> None:
    if not os.path.lexists(host):
        raise EngineError(f"lstat {host}: no such file or directory")
    slash = cpath.endswith("/")
    root, cpath = _locate(rec, cpath)
    cpath += "/" if slash and not cpath.endswith("/") else ""
    # docker: an existing directory receives the source inside it; otherwise the source takes that name
    dest = cpath.rstrip("/") or "/"
    try:
        fd = open_in_root(root, dest, os.O_PATH)
        is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
        os.close(fd)
    except (FileNotFoundError, NotADirectoryError, LayerError):
        is_dir = False
        if cpath.endswith("/"):
            raise EngineError(f"no such directory: {cpath}") from None
    name = os.path.join(dest, os.path.basename(os.path.normpath(host))) if is_dir else dest
    arcname = name.lstrip("/")
    if not arcname:
        raise UsageError("cannot copy over the container's root directory")
    with tempfile.NamedTemporaryFile(prefix="pyimg-cp-", suffix=".tar") as tmp:
        try:
            with tarfile.open(fileobj=tmp, mode="w") as tar:
                def owner(ti):
                    if not archive:
                        ti.uid = ti.gid = 0
                        ti.uname = ti.gname = "root"
                    return ti
                tar.add(host, arcname=arcname, filter=owner)
            tmp.flush()
        except OSError as e:
            raise EngineError(os_message(e, f"reading {host}")) from None
        try:
            apply_layer(root, tmp.name, media_type="application/vnd.oci.image.layer.v1.tar")
        except LayerError as e:
            raise EngineError(f"copying {host} into {rec['Name'][1:]}:{cpath}: {e}") from None
