"""User namespaces: id maps and what a user-namespaced container needs
from the runtime before it can mount.

- write_id_maps: the parent writes stage1's uid/gid maps (through
  newuidmap/newgidmap when rootless and beyond the caller's own ids).
- id-mapped mounts: make_userns builds a user namespace with a mount's
  own maps, and idmap_userns_fds prepares each id-mapped tree before fork.
- mount sources: a root runtime opens the bind sources the container's
  mapped root could not reach (plain_binds, wants_mount_sources,
  send_mount_sources), inside the container's mount namespace, and passes
  the fds to init (sync.MOUNT_SOURCES).
"""
from runtime.toolkit import os_lite as os
import _signal as signal
import sys

from runtime import errors, log
from runtime.errors import RuntimeFailure
from runtime.spawn import dup_above, reap
from runtime import sync
from runtime import syscalls as sc
# Optional edges, imported where used: runtime.rootfs (id-mapped mounts; init
# loads it after the fork) and shutil/subprocess (newuidmap, rootless only).


def idmap_userns_fds(cfg: dict, low: int) -> dict[int, int]:
    """A detached id-mapped mount tree per idmap mount, mapped through a user
    namespace holding that mount's id maps (or the container's own when the
    mount gives none). The caller closes the fds."""
    out: dict[int, int] = {}
    linux = cfg["linux"]
    for i, m in enumerate(cfg.get("mounts") or ()):
        if not needs_idmap(m):
            continue
        from runtime import rootfs  # only here: init loads it after the fork
        uids = m.get("uidMappings") or linux.get("uidMappings")
        gids = m.get("gidMappings") or linux.get("gidMappings")
        if not uids or not gids:
            raise RuntimeFailure(f"config.json: mounts[{i}]: idmap needs uidMappings and gidMappings "
                                 "(on the mount or in linux)")
        src = m.get("source") or ""
        if not os.path.isabs(src):
            src = os.path.join(cfg["_bundle"], src)
        userns = make_userns(uids, gids, f"mounts[{i}]")
        try:
            out[i] = dup_above(rootfs.idmapped_tree(src, m.get("options"), userns, f"mounts[{i}] {m['destination']}"),
                                low)
        except BaseException:
            for fd in out.values():
                os.close(fd)
            raise
        finally:
            os.close(userns)
    return out


def needs_idmap(m: dict) -> bool:
    opts = m.get("options") or ()
    return "idmap" in opts or "ridmap" in opts or bool(m.get("uidMappings"))


def make_userns(uids: list[dict], gids: list[dict], label: str) -> int:
    """Open a new user namespace with the given maps: a child unshares it and
    waits while we write its maps and open /proc/CHILD/ns/user."""
    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            sc.unshare(sc.CLONE_NEWUSER)
            os.write(w, b"1")
            os.close(w)
            signal.pause()
        finally:
            os._exit(0)
    os.close(w)
    try:
        if os.read(r, 1) != b"1":
            raise RuntimeFailure(f"{label}: could not create a user namespace for the id mapping")
        write_id_maps(pid, {"uidMappings": uids, "gidMappings": gids})
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(r)
        os.kill(pid, signal.SIGKILL)
        reap(pid)


def write_id_maps(pid: int, linux: dict) -> None:
    """Write the user namespace maps of `pid`.

    As root the kernel takes any map. Unprivileged, it takes only a single
    line mapping our own id, after setgroups is denied; anything else goes
    through the setuid newuidmap/newgidmap helpers (shadow's uidmap), which
    check /etc/subuid and /etc/subgid."""
    import shutil
    import subprocess
    for kind in ("uid", "gid"):
        maps = linux.get(f"{kind}Mappings") or []
        if not maps:
            continue
        own = os.geteuid() if kind == "uid" else os.getegid()
        simple = len(maps) == 1 and maps[0]["hostID"] == own and maps[0]["size"] == 1
        if os.geteuid() != 0 and not simple:
            helper = shutil.which(f"new{kind}map")
            if not helper:
                raise RuntimeFailure(f"config.json: linux.{kind}Mappings: mapping more than your own id "
                                     f"needs new{kind}map (package uidmap)")
            args = [helper, str(pid)] + [str(x) for m in maps for x in (m["containerID"], m["hostID"], m["size"])]
            p = subprocess.run(args, capture_output=True, text=True)
            if p.returncode != 0:
                raise RuntimeFailure(f"config.json: linux.{kind}Mappings: new{kind}map: {p.stderr.strip()}")
            continue
        try:
            if kind == "gid" and os.geteuid() != 0:
                with open(f"/proc/{pid}/setgroups", "w") as f:
                    f.write("deny")
            with open(f"/proc/{pid}/{kind}_map", "w") as f:
                f.write("".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in maps))
        except OSError as e:
            raise RuntimeFailure(f"config.json: linux.{kind}Mappings: writing {kind}_map: {e.strerror}") from None


def plain_binds(cfg: dict):
    """(index, source path) of the bind mounts that are not id-mapped."""
    for i, m in enumerate(cfg.get("mounts") or ()):
        opts = m.get("options") or ()
        if (m.get("type") == "bind" or "bind" in opts or "rbind" in opts) and not needs_idmap(m):
            src = m.get("source") or ""
            yield i, src if os.path.isabs(src) else os.path.join(cfg["_bundle"], src)


def wants_mount_sources(cfg: dict, nstypes: set[str]) -> bool:
    """Whether the bind sources are opened for init by us (runc 1.1.5's
    rule): a user and a mount namespace, bind mounts, and a runtime that
    is root, whose reach the container's mapped root may lack."""
    return ("user" in nstypes and "mount" in nstypes and os.geteuid() == 0
            and next(plain_binds(cfg), None) is not None)


def send_mount_sources(chan, stage1: int, cfg: dict) -> None:
    """Open each plain bind mount's source as an O_PATH fd with our own
    credentials, inside the mount namespace stage1 has just made (through
    its /proc root, so the mounts are that namespace's, as a bind needs),
    and send them over, at most four to a message (what Channel.recv
    takes)."""
    root = os.open(f"/proc/{stage1}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    idx: list[int] = []
    fds: list[int] = []
    try:
        for i, src in plain_binds(cfg):
            try:
                # In that root, as open(2) would resolve the path there.
                fds.append(sc.openat2(root, src.lstrip("/") or ".", os.O_PATH | os.O_CLOEXEC, sc.RESOLVE_IN_ROOT))
            except FileNotFoundError:
                raise RuntimeFailure(f"mounts[{i}].source: {src} does not exist") from None
            except OSError as e:
                raise RuntimeFailure(f"mounts[{i}].source {src}: {e.strerror}") from None
            idx.append(i)
            if len(fds) == 4:
                chan.send(sync.MOUNT_SOURCES, fds=fds, indexes=idx, last=False)
                for fd in fds:
                    os.close(fd)
                idx, fds = [], []
        chan.send(sync.MOUNT_SOURCES, fds=fds, indexes=idx, last=True)
    finally:
        for fd in fds:
            os.close(fd)
        os.close(root)
