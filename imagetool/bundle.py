"""Turn stored images into OCI runtime bundles (BUNDLE/config.json + BUNDLE/rootfs).

Layout under the store root ROOT (an OCI image layout, see imagetool.store):

    ROOT/layers/<key>            one applied layer (overlayfs "upper" form:
                                 whiteouts are 0/0 char devices, opaque
                                 directories carry trusted.overlay.opaque=y)
    ROOT/layers/<key>.json       {"diff_id", "chain_id", "uid_map", ...}
    ROOT/layers/tmp/             layers being applied (discarded on failure)
    ROOT/bundles/<id>/bundle.json  the record of one bundle (see _record)
    ROOT/bundles/<id>/upper,work   an overlay bundle's private writable layer
    ROOT/bundles/<id>/volumes/     per-bundle volume directories
    ROOT/bundles/<id>/etc/         hosts, hostname, resolv.conf (pyimg run)

Contracts:
  * ``<key>`` is 12 hex digits of sha256 over the layer's chain id (its
    diff_id and those of all layers below it) and the id maps.  The applied
    form of a layer depends on what is below it (whiteouts only record what
    existed, paths through lower symlinks), so a layer is shared by every
    image with the same layers below it and applied only once.
  * A layer is applied on an overlay mount of the layers below it with a
    fresh upperdir; the kernel writes whiteouts, opaque dirs and hardlink
    copy-ups in overlayfs form.  The upperdir is renamed into place only
    after the diff_id was verified, so ROOT/layers never holds a partial layer.
  * An overlay bundle's rootfs is an overlay of those layers (relative
    lowerdirs, resolved from ROOT/layers, so 100+ layers fit in the one page
    of mount options) and its own upper/work directories.
  * A bundle is recorded before its layers are used, so ``layers_in_use``
    (called by the store's gc) always sees the layers of bundles being built.
  * Removing a bundle removes its writable layer, volumes, record, config
    and rootfs mountpoint, never a shared layer.
"""
from __future__ import annotations

import os
import stat
import time

from imagetool.lazy import LazyModule, sha256
from imagetool.errors import BundleError, LayerError, NotFound, StoreError, UsageError, os_message, reason
from imagetool.layer import IdMap, apply_layer, open_in_root
from runtime.toolkit import fastjson as json
from imagetool import store as storemod
# Optional edges, imported where used: runtime.syscalls (only the calls that
# mount), tempfile, subprocess and socket (each by one step that needs it),
# and runtime.specgen/runtime.validate (pyimg works without the runtime
# package).

# Loaded when first used: a second bundle of an unpacked image needs none.
contextlib = LazyModule("contextlib")
hashlib = LazyModule("hashlib")
shutil = LazyModule("shutil")

DEFAULT_ROOT = "/var/lib/pyimg"
RECORD = "bundle.json"
_DOCKER_CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
]
_DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_OPTS_MAX = 4095  # one page of mount data, less the terminating NUL


# --------------------------------------------------------------------------
# reading images from the store


class Image:
    """A resolved image: manifest, config and its layers, bottom first."""

    def __init__(self, root: str, ref: str, platform: str | None = None):

        self.store = storemod.Store(root)
        try:
            self.digest, self.manifest = self.store.resolve(ref, platform=platform)
            self.config = self.store.read_json(self.manifest["config"]["digest"])
        except (KeyError, TypeError):
            raise StoreError(f"{ref}: malformed image manifest") from None
        self.ref = ref
        layers = self.manifest.get("layers") or []
        diff_ids = (self.config.get("rootfs") or {}).get("diff_ids") or []
        if len(layers) != len(diff_ids):
            raise StoreError(f"{ref}: manifest has {len(layers)} layers but the config lists {len(diff_ids)} diff_ids")
        self.layers = [(d["digest"], d.get("mediaType"), diff) for d, diff in zip(layers, diff_ids)]

    def blob_path(self, digest: str) -> str:
        path = self.store.blob_path(digest)
        if not os.path.exists(path):
            raise NotFound(f"{self.ref}: layer blob {digest} is missing from the store {self.store.root}")
        return path


def image_present(root: str, ref: str) -> bool:
    """True when ``ref`` resolves to a manifest in the store at ``root``."""

    try:
        storemod.Store(root).resolve(ref)
        return True
    except storemod.StoreError:
        return False


# --------------------------------------------------------------------------
# mounts


def mount_overlay(cwd: str, lowers: list[str], upper: str, work: str, target: str, extra: str = "") -> None:
    """Mount an overlay at ``target``; lower/upper/work paths are relative to ``cwd``.

    ``lowers`` is topmost first.  Raises BundleError when the options do not
    fit in a page or the kernel refuses the mount.
    """
    from runtime import syscalls  # (ctypes' slice: only calls that mount load it)

    opts = f"lowerdir={':'.join(lowers)},upperdir={upper},workdir={work}{extra}"
    if len(opts.encode()) > _OPTS_MAX:
        raise BundleError(f"{target}: {len(lowers)} layers do not fit in the overlay mount options")
    target = os.path.abspath(target)
    saved = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        # Relative lowerdirs are resolved against the mounting process's
        # cwd: that keeps the option string short.
        os.chdir(cwd)
        syscalls.mount("pyimg", os.fsencode(target), "overlay", 0, opts, label=target)
    except OSError as e:
        raise BundleError(f"{target}: cannot mount overlay: {reason(e)}") from None
    finally:
        os.fchdir(saved)
        os.close(saved)


def umount(target: str, detach: bool = False) -> None:
    """Unmount ``target``; silently nothing when it is not a mount point.
    detach: lazily (MNT_DETACH), for a mount that nothing needs any more."""
    from runtime import syscalls

    if not os.path.ismount(target):
        return
    try:
        syscalls.umount2(os.fsencode(target), syscalls.MNT_DETACH if detach else 0)
    except OSError as e:
        raise BundleError(f"{target}: cannot unmount: {reason(e)}") from None


_overlay_ok: dict[str, bool] = {}


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def overlay_supported(root: str) -> bool:
    """True when overlay mounts with upper dirs under ROOT/layers work here.

    Probed once per boot and filesystem: the answer is kept in
    ROOT/layers/.overlay-probe with the boot id and the device of the layers
    directory (a probe is a mount, an unmount and a few directories, which a
    second bundle of an image should not pay for). The probe's overlay is
    mounted volatile where the kernel has it, so its unmount does not sync
    the filesystem under ROOT/layers (other processes' dirty data there)."""
    if os.geteuid() != 0:
        return False
    layers = os.path.join(root, "layers")
    if layers in _overlay_ok:
        return _overlay_ok[layers]
    try:
        os.makedirs(os.path.join(layers, "tmp"), exist_ok=True)
        st_dev = os.stat(layers).st_dev
    except OSError as e:
        raise BundleError(os_message(e, f"creating {os.path.join(layers, 'tmp')}")) from None
    key = f"{_boot_id()} {st_dev}"
    record = os.path.join(layers, ".overlay-probe")
    try:
        with open(record) as f:
            k, _, answer = f.read().rpartition(" ")
        if k == key and answer in ("yes", "no"):
            _overlay_ok[layers] = answer == "yes"
            return _overlay_ok[layers]
    except OSError:
        pass
    ok = False
    import tempfile

    try:
        probe = tempfile.mkdtemp(prefix="probe-", dir=os.path.join(layers, "tmp"))
        try:
            for d in ("l", "u", "w", "m"):
                os.mkdir(os.path.join(probe, d))
            rel = os.path.relpath(probe, layers)
            # volatile (5.10+) first: unmounting an overlay without it syncs
            # the whole upper filesystem, everyone's dirty data included;
            # the probe writes nothing that needs to reach the disk.
            for extra in (",volatile", ""):
                try:
                    mount_overlay(layers, [f"{rel}/l"], f"{rel}/u", f"{rel}/w",
                                  os.path.join(probe, "m"), extra)
                except BundleError:
                    continue
                ok = True
                try:
                    umount(os.path.join(probe, "m"))
                except BundleError:
                    # busy (something scanning mounts has it open): detached,
                    # so the probe directory can go; failing that, the error
                    umount(os.path.join(probe, "m"), detach=True)
                break
        finally:
            shutil.rmtree(probe, ignore_errors=True)
    except OSError as e:
        raise BundleError(os_message(e, f"probing overlayfs in {os.path.join(layers, 'tmp')}")) from None
    _overlay_ok[layers] = ok
    tmp = f"{record}.{os.getpid()}"
    try:
        with open(tmp, "w") as f:
            f.write(f"{key} {'yes' if ok else 'no'}")
        os.replace(tmp, record)
    except OSError:
        pass  # only a cache
    return ok


# --------------------------------------------------------------------------
# layer cache


def _chain_ids(diff_ids: list[str]) -> list[str]:
    # ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))
    out = []
    for d in diff_ids:
        if not out:
            out.append(d)
        else:
            out.append("sha256:" + sha256(f"{out[-1]} {d}".encode()).hexdigest())
    return out


def layer_key(chain_id: str, uid_map: IdMap, gid_map: IdMap) -> str:
    """The short directory name of an applied layer."""
    return sha256(f"{chain_id}|{uid_map}|{gid_map}".encode()).hexdigest()[:12]


def _copy_root_meta(src: str, dst: str) -> None:
    # The root of an overlay shows the upperdir's root attributes, so a new
    # upperdir starts as a copy of the root of the layer below.
    st = os.lstat(src)
    os.chown(dst, st.st_uid, st.st_gid)
    for x in os.listxattr(src):
        if not x.startswith("trusted.overlay."):
            os.setxattr(dst, x, os.getxattr(src, x))
    os.chmod(dst, stat.S_IMODE(st.st_mode))
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))


def _lock(path: str):

    return storemod.Flock(path, error=BundleError)


def planned_keys(image: "Image", uid_map: IdMap, gid_map: IdMap) -> list[str]:
    """The cache keys of ``image``'s layers, bottom first (whether applied yet or not)."""
    chains = _chain_ids([diff for _, _, diff in image.layers])
    return [layer_key(c, uid_map, gid_map) for c in chains]


def ensure_layers(root: str, image: Image, uid_map: IdMap, gid_map: IdMap, *, out=None) -> list[str]:
    """Make sure every layer of ``image`` is in the cache; return their keys, bottom first."""
    layers_dir = os.path.join(root, "layers")
    try:
        os.makedirs(os.path.join(layers_dir, "tmp"), exist_ok=True)
    except OSError as e:
        raise BundleError(os_message(e, f"creating {os.path.join(layers_dir, 'tmp')}")) from None
    chains = _chain_ids([diff for _, _, diff in image.layers])
    keys: list[str] = []
    for (digest, media_type, diff_id), chain in zip(image.layers, chains):
        key = layer_key(chain, uid_map, gid_map)
        final = os.path.join(layers_dir, key)
        if not os.path.isdir(final):
            with _lock(os.path.join(layers_dir, ".lock")):
                _clean_stale_stages(layers_dir)
                if not os.path.isdir(final):
                    if out is not None:
                        print(f"Applying layer {diff_id[7:19]}", file=out)
                    _apply_cached(layers_dir, key, keys, image.blob_path(digest), media_type, diff_id, chain, uid_map, gid_map)
        keys.append(key)
    return keys


def _clean_stale_stages(layers_dir: str) -> None:
    # Called with the layers lock held: every stage left is from a process
    # that died while applying; its view may still be mounted.
    tmp = os.path.join(layers_dir, "tmp")
    try:
        names = os.listdir(tmp)
    except OSError as e:
        raise BundleError(os_message(e, f"listing {tmp}")) from None
    for name in names:
        if name.startswith("probe-"):
            continue  # probes run without the lock and clean up after themselves
        stage = os.path.join(tmp, name)
        with contextlib.suppress(BundleError):
            umount(os.path.join(stage, "m"))
        if not os.path.ismount(os.path.join(stage, "m")):
            shutil.rmtree(stage, ignore_errors=True)


def _apply_cached(layers_dir, key, lower_keys, blob, media_type, diff_id, chain, uid_map, gid_map):
    import tempfile

    try:
        stage = tempfile.mkdtemp(prefix=f"{key}-", dir=os.path.join(layers_dir, "tmp"))
    except OSError as e:
        raise BundleError(os_message(e, f"creating a directory in {os.path.join(layers_dir, 'tmp')}")) from None
    rel = os.path.relpath(stage, layers_dir)
    upper = os.path.join(stage, "fs")
    mnt = os.path.join(stage, "m")
    try:
        os.mkdir(upper, 0o755)
        if not lower_keys:
            apply_layer(upper, blob, media_type=media_type, diff_id=diff_id, uid_map=uid_map, gid_map=gid_map)
        else:
            os.mkdir(os.path.join(stage, "w"))
            os.mkdir(mnt)
            _copy_root_meta(os.path.join(layers_dir, lower_keys[-1]), upper)
            # index/metacopy off: the upperdir must be a complete, standalone
            # layer (no metadata-only copies pointing into the lowers).
            # volatile: no syncfs of the upper filesystem at umount (which
            # flushes the whole filesystem); like a layer applied without an
            # overlay, the files reach the disk with normal writeback.
            lowers = list(reversed(lower_keys))
            for extra in (",index=off,metacopy=off,redirect_dir=off,volatile",  # 5.10+
                          ",index=off,metacopy=off,redirect_dir=off", ""):
                try:
                    mount_overlay(layers_dir, lowers, f"{rel}/fs", f"{rel}/w", mnt, extra)
                    break
                except BundleError:
                    # a kernel without these features cannot have them on either
                    if not extra:
                        raise
            try:
                apply_layer(mnt, blob, media_type=media_type, diff_id=diff_id, uid_map=uid_map, gid_map=gid_map)
            finally:
                umount(mnt)
        meta = {"diff_id": diff_id, "chain_id": chain, "uid_map": str(uid_map), "gid_map": str(gid_map),
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        _atomic_json(os.path.join(layers_dir, f"{key}.json"), meta)
        os.rename(upper, os.path.join(layers_dir, key))
    except OSError as e:  # (the layer's own errors are LayerErrors already)
        raise BundleError(os_message(e) if e.filename else
                          os_message(e, f"caching layer {diff_id} in {layers_dir}")) from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _atomic_json(path: str, obj) -> None:
    """Write obj to path through a temp file and a rename; raises
    BundleError naming path (the temp file is gone then)."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        try:
            with open(tmp, "w") as f:
                json.dump(obj, f, indent=2)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as e:
        raise BundleError(os_message(e, f"writing {path}")) from None


# --------------------------------------------------------------------------
# config.json


def _read_db(rootfs: str, path: str) -> list[list[str]]:
    try:
        fd = open_in_root(rootfs, path)
    except (FileNotFoundError, NotADirectoryError, LayerError):
        return []
    with os.fdopen(fd, "r", encoding="utf-8", errors="replace") as f:
        return [line.rstrip("\n").split(":") for line in f if line.strip() and not line.startswith("#")]


def resolve_user(rootfs: str, spec: str | None) -> dict:
    """``process.user`` for an image/CLI user ``user[:group]`` (names or numbers).

    Names are looked up in the rootfs's /etc/passwd and /etc/group; an
    unknown name raises BundleError.  additionalGids are filled only for a
    named user without an explicit group (conversion.md).
    """
    if not spec:
        return {"uid": 0, "gid": 0}
    user, _, group = spec.partition(":")
    passwd = [e for e in _read_db(rootfs, "/etc/passwd") if len(e) >= 4]
    entry = None
    if user.isdigit():
        uid = int(user)
        entry = next((e for e in passwd if e[2] == user), None)
    else:
        entry = next((e for e in passwd if e[0] == user), None)
        if entry is None:
            raise BundleError(f"unable to find user {user}: no matching entries in passwd file")
        uid = int(entry[2])
    gid = int(entry[3]) if entry and entry[3].isdigit() else 0
    out: dict = {"uid": uid, "gid": gid}
    if group:
        if group.isdigit():
            out["gid"] = int(group)
        else:
            g = next((e for e in _read_db(rootfs, "/etc/group") if len(e) >= 3 and e[0] == group), None)
            if g is None:
                raise BundleError(f"unable to find group {group}: no matching entries in group file")
            out["gid"] = int(g[2])
    elif not user.isdigit():
        extra = []
        for g in _read_db(rootfs, "/etc/group"):
            if len(g) >= 4 and g[2].isdigit() and user in g[3].split(","):
                gid_ = int(g[2])
                if gid_ != out["gid"] and gid_ not in extra:
                    extra.append(gid_)
        if extra:
            out["additionalGids"] = extra
    return out


def _base_spec(terminal: bool) -> dict:
    try:
        from runtime.specgen import default_spec
    except ImportError:  # the runtime package is optional for pyimg
        default_spec = None
    if default_spec is not None:
        # An unprivileged caller gets a config it can run (user namespace).
        return default_spec(rootless=os.geteuid() != 0, args=None, terminal=terminal)
    # The defaults of `runc spec`, for a pyimg installed without pyrunc.
    return {
        "ociVersion": "1.0.2",
        "process": {"terminal": terminal, "user": {"uid": 0, "gid": 0}, "args": ["sh"],
                    "env": [_DEFAULT_PATH, "TERM=xterm"], "cwd": "/",
                    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                    "noNewPrivileges": True},
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "runc",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        ],
        "linux": {"resources": {"devices": [{"allow": False, "access": "rwm"}]},
                  "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
                  "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                                  "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
                  "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]},
    }


def seccomp_profile() -> dict:
    """pyimg's rendering of Docker's default seccomp profile (runtime-spec ``linux.seccomp``)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seccomp_default.json")
    with open(path) as f:
        prof = json.load(f)
    prof.pop("_comment", None)
    return prof


def merge_env(base: list[str], override: list[str]) -> list[str]:
    """``override`` over ``base`` by variable name, as docker run's -e does
    (a bare ``NAME`` takes the caller's value, or nothing)."""
    out: dict[str, str] = {}
    for e in base:
        k, _, v = e.partition("=")
        out[k] = e
    for e in override:
        k, sep, v = e.partition("=")
        if not sep:  # `-e NAME`: take it from the caller's environment, as docker does
            if k in os.environ:
                out[k] = f"{k}={os.environ[k]}"
            continue
        out[k] = e
    return list(out.values())


def generate_config(image_config: dict, rootfs: str, *, cmd: list[str] | None = None,
                    entrypoint: list[str] | None = None, env: list[str] = (), workdir: str | None = None,
                    user: str | None = None, terminal: bool = False, hostname: str | None = None,
                    uid_map: IdMap | None = None, gid_map: IdMap | None = None,
                    volumes: dict[str, str] | None = None, network: str | None = None,
                    extra_mounts: list[dict] = (), require_args: bool = False) -> dict:
    """The runtime config.json for an image config (image-spec conversion.md).

    Starts from ``runtime.specgen.default_spec`` and sets: args = Entrypoint
    + Cmd (``cmd`` replaces Cmd, ``entrypoint`` replaces Entrypoint), env
    (image Env over the defaults, ``env`` over both), cwd, user (resolved in
    ``rootfs``), root.readonly false, Docker's default capabilities and
    seccomp profile, annotations from labels/ExposedPorts/StopSignal/
    platform fields (labels win), ``volumes`` {container path: host dir} as
    bind mounts, id maps with a user namespace, ``network`` "host" (no
    network namespace) or "none".  Without any command the default spec's
    args stay, unless ``require_args`` (then BundleError, like docker run).
    """
    cfg = image_config.get("config") or {}
    spec = _base_spec(terminal)
    proc = spec["process"]
    ep = list(entrypoint) if entrypoint is not None else list(cfg.get("Entrypoint") or [])
    args = ep + (list(cmd) if cmd else list(cfg.get("Cmd") or []))
    if not args and require_args:
        raise BundleError("no command specified: the image has no Entrypoint/Cmd and none was given")
    if args:  # otherwise keep the default spec's shell, as `pyrunc spec` writes it
        proc["args"] = args
    proc["terminal"] = bool(terminal)
    image_env = list(cfg.get("Env") or [])
    defaults = [_DEFAULT_PATH] + (["TERM=xterm"] if terminal else [])
    if hostname:
        defaults.append(f"HOSTNAME={hostname}")
    proc["env"] = merge_env(defaults, image_env + list(env))
    proc["cwd"] = workdir or cfg.get("WorkingDir") or "/"
    if not proc["cwd"].startswith("/"):
        raise BundleError(f"working directory {proc['cwd']!r} is not an absolute path")
    proc["user"] = resolve_user(rootfs, user if user is not None else cfg.get("User"))
    caps = list(_DOCKER_CAPS)
    if proc["user"]["uid"] == 0:
        proc["capabilities"] = {"bounding": caps, "effective": list(caps), "permitted": list(caps)}
    else:
        # Like docker: a non-root user keeps only the bounding set.
        proc["capabilities"] = {"bounding": caps, "effective": [], "permitted": []}
    spec["root"] = {"path": "rootfs", "readonly": False}
    if hostname:
        spec["hostname"] = hostname
    linux = spec.setdefault("linux", {})
    linux["seccomp"] = seccomp_profile()
    if uid_map or gid_map:
        linux["uidMappings"] = (uid_map or IdMap()).to_spec()
        linux["gidMappings"] = (gid_map or IdMap()).to_spec()
        ns = linux.setdefault("namespaces", [])
        if not any(n.get("type") == "user" for n in ns):
            ns.append({"type": "user"})
    if network == "host":
        linux["namespaces"] = [n for n in linux.get("namespaces", []) if n.get("type") != "network"]
    ann: dict[str, str] = {}
    for field, key in (("os", "os"), ("architecture", "architecture"), ("variant", "variant"),
                       ("os.version", "os.version"), ("author", "author"), ("created", "created")):
        if image_config.get(field):
            ann[f"org.opencontainers.image.{key}"] = str(image_config[field])
    if image_config.get("os.features"):
        ann["org.opencontainers.image.os.features"] = ",".join(image_config["os.features"])
    if cfg.get("ExposedPorts"):
        ann["org.opencontainers.image.exposedPorts"] = ",".join(sorted(cfg["ExposedPorts"]))
    if cfg.get("StopSignal"):
        ann["org.opencontainers.image.stopSignal"] = cfg["StopSignal"]
    ann.update(cfg.get("Labels") or {})  # labels take precedence (conversion.md)
    if ann:
        spec["annotations"] = ann
    mounts = spec.setdefault("mounts", [])
    for dest, src in sorted((volumes or {}).items()):
        mounts.append({"destination": dest, "type": "bind", "source": src, "options": ["rbind", "rw"]})
    mounts.extend(extra_mounts)
    try:
        from runtime.validate import validate_config
    except ImportError:
        validate_config = None
    if validate_config is not None:
        try:
            validate_config(spec)
        except Exception as e:  # their error type; keep ours one line
            raise BundleError(f"generated config.json is invalid: {e}") from None
    return spec


# --------------------------------------------------------------------------
# bundles


def bundle_id(bundle: str) -> str:
    """The record id of a bundle directory (stable for its real path)."""
    return sha256(os.path.realpath(bundle).encode()).hexdigest()[:16]


def _bundles_dir(root: str) -> str:
    return os.path.join(root, "bundles")


def _record_path(root: str, bid: str) -> str:
    return os.path.join(_bundles_dir(root), bid, RECORD)


def read_record(root: str, bundle: str) -> dict | None:
    """The record of ``bundle`` (a path), or None when it is not a pyimg bundle."""
    path = _record_path(root, bundle_id(bundle))
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise BundleError(os_message(e, f"reading {path}")) from None
    except ValueError:
        raise BundleError(f"{path} is not valid JSON") from None


class RunOptions:
    """What `pyimg run` adds on top of the image config."""

    def __init__(self, *, cmd=None, entrypoint=None, env=(), workdir=None, user=None, terminal=False,
                 hostname=None, network="host", etc_files=True, image_volumes=True, require_args=None):
        self.cmd, self.entrypoint, self.env, self.workdir = cmd, entrypoint, list(env), workdir
        self.user, self.terminal, self.hostname, self.network = user, terminal, hostname, network
        # etc_files: write and mount hosts/hostname/resolv.conf; image_volumes:
        # a bundle-private seeded directory for each of the image's Volumes
        # (the engine makes real volumes instead, and its own /etc files).
        self.etc_files, self.image_volumes = etc_files, image_volumes
        self.require_args = etc_files if require_args is None else require_args


def _seed_volume(rootfs: str, path: str, dest: str) -> None:
    import subprocess

    try:
        fd = open_in_root(rootfs, path, os.O_RDONLY | os.O_DIRECTORY)
    except (FileNotFoundError, NotADirectoryError, LayerError, OSError):
        os.mkdir(dest, 0o755)
        return
    try:
        # cp -a keeps owners, modes, xattrs and links; the fd keeps the
        # source confined to the rootfs even if the image has symlinks there.
        r = subprocess.run(["cp", "-a", f"/proc/self/fd/{fd}/.", dest], pass_fds=(fd,),
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise BundleError(f"volume {path}: cannot seed from the image: {r.stderr.strip()}")
        st = os.fstat(fd)
        os.chown(dest, st.st_uid, st.st_gid)
        os.chmod(dest, stat.S_IMODE(st.st_mode))
    finally:
        os.close(fd)


# /etc/hosts of a container with a network namespace of its own (docker's lines)
ISOLATED_HOSTS = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
                  "ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")


def isolated_resolv_conf(host_text: str, servers=(), search=()) -> str:
    """resolv.conf for a container in its own network namespace, from the
    host's: ``servers`` (and ``search``) replace the host's when given; a
    loopback resolver of the host is unreachable from another namespace, so
    it is dropped, and with none left docker's public fallbacks are used."""
    lines = [ln for ln in host_text.splitlines() if not (ln.split()[:1] == ["nameserver"] and
             (ln.split()[1:2] or [""])[0].startswith(("127.", "::1")))]
    if servers:
        lines = [ln for ln in lines if not ln.startswith(("nameserver", "search"))]
        lines = ([f"search {' '.join(search)}"] if search else []) + [f"nameserver {s}" for s in servers] + lines
    if not any(ln.startswith("nameserver") for ln in lines):
        lines += ["nameserver 8.8.8.8", "nameserver 8.8.4.4"]
    return "\n".join(lines) + "\n"


def _etc_files(wdir: str, hostname: str, network: str) -> list[dict]:
    """Write hosts/hostname/resolv.conf for a container and return their bind mounts (as docker does)."""
    etc = os.path.join(wdir, "etc")
    os.makedirs(etc, exist_ok=True)
    if network == "host":
        try:
            with open("/etc/hosts") as f:
                hosts = f.read()
        except OSError:
            hosts = "127.0.0.1\tlocalhost\n"
    else:
        hosts = ISOLATED_HOSTS
    try:
        with open("/etc/resolv.conf") as f:
            resolv = f.read()
    except OSError:
        resolv = ""
    if network != "host":
        resolv = isolated_resolv_conf(resolv)
    files = {"hosts": hosts, "hostname": hostname + "\n", "resolv.conf": resolv}
    mounts = []
    for name, text in files.items():
        p = os.path.join(etc, name)
        with open(p, "w") as f:
            f.write(text)
        os.chmod(p, 0o644)
        mounts.append({"destination": f"/etc/{name}", "type": "bind", "source": p, "options": ["rbind", "rw"]})
    return mounts


def create_bundle(root: str, ref: str, bundle: str, *, mode: str | None = None, uid_map: IdMap | None = None,
                  gid_map: IdMap | None = None, platform: str | None = None, run: RunOptions | None = None,
                  out=None) -> dict:
    """Unpack image ``ref`` from the store at ``root`` into the bundle directory ``bundle``.

    ``mode`` is "overlay", "copy" or None (overlay where it works).  Writes
    BUNDLE/rootfs and BUNDLE/config.json and records the bundle; returns the
    record.  On failure nothing of the bundle is left behind (except a
    pre-existing empty BUNDLE directory).
    """
    uid_map, gid_map = uid_map or IdMap(), gid_map or IdMap()
    root = os.path.abspath(root)
    bundle = os.path.abspath(bundle)
    if mode not in (None, "overlay", "copy"):
        raise UsageError(f"unknown unpack mode {mode!r}: use overlay or copy")
    rootfs = os.path.join(bundle, "rootfs")
    for p in (rootfs, os.path.join(bundle, "config.json")):
        if os.path.lexists(p):
            raise BundleError(f"bundle {bundle} already exists ({p} is present)")
    image = Image(root, ref, platform)
    if mode is None:
        mode = "overlay" if overlay_supported(root) else "copy"
    elif mode == "overlay" and not overlay_supported(root):
        raise BundleError(f"bundle {bundle}: overlay mode is not available here (needs root and overlayfs)")
    bid = bundle_id(bundle)
    wdir = os.path.join(_bundles_dir(root), bid)
    if os.path.exists(os.path.join(wdir, RECORD)):
        raise BundleError(f"bundle {bundle} is already recorded in {wdir}")
    made_bundle = not os.path.exists(bundle)
    try:
        os.makedirs(wdir, exist_ok=True)
    except OSError as e:
        raise BundleError(os_message(e, f"creating {wdir}")) from None
    record = {"id": bid, "bundle": bundle, "rootfs": rootfs, "mode": mode, "ref": ref,
              "manifest": image.digest, "diff_ids": [d for _, _, d in image.layers],
              "layers": planned_keys(image, uid_map, gid_map) if mode == "overlay" else [],
              "uid_map": str(uid_map), "gid_map": str(gid_map), "state": "creating",
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    _atomic_json(os.path.join(wdir, RECORD), record)  # before any layer is used: gc sees it
    try:
        os.makedirs(rootfs, exist_ok=True)
        if mode == "copy":
            os.chmod(rootfs, 0o755)
            for digest, media_type, diff_id in image.layers:
                if out is not None:
                    print(f"Applying layer {diff_id[7:19]}", file=out)
                apply_layer(rootfs, image.blob_path(digest), media_type=media_type, diff_id=diff_id,
                            uid_map=uid_map, gid_map=gid_map)
        else:
            if ensure_layers(root, image, uid_map, gid_map, out=out) != record["layers"]:
                raise BundleError(f"bundle {bundle}: layer cache keys changed while unpacking")
            _mount_bundle(root, record, fresh=True)
        run = run or RunOptions(etc_files=False)
        volumes = {}
        for path in sorted((image.config.get("config") or {}).get("Volumes") or {} if run.image_volumes else ()):
            if not path.startswith("/"):
                raise BundleError(f"{ref}: volume path {path!r} is not absolute")
            dest = os.path.join(wdir, "volumes", sha256(path.encode()).hexdigest()[:12])
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            _seed_volume(rootfs, path, dest)
            volumes[path] = dest
        hostname = run.hostname
        if run.etc_files and run.network == "host":
            import socket

            hostname = socket.gethostname()  # docker: host networking shows the host's name
        extra = _etc_files(wdir, hostname or bid[:12], run.network) if run.etc_files else []
        spec = generate_config(image.config, rootfs, cmd=run.cmd, entrypoint=run.entrypoint, env=run.env,
                               workdir=run.workdir, user=run.user, terminal=run.terminal, hostname=hostname,
                               uid_map=uid_map, gid_map=gid_map, volumes=volumes, network=run.network,
                               extra_mounts=extra, require_args=run.require_args)
        if uid_map or gid_map:
            # The container's root must own its rootfs and writable layer.
            for p in ([rootfs] if mode == "copy" else [os.path.join(wdir, "upper")]):
                _chown_mapped_root(p, uid_map, gid_map)
        _atomic_json(os.path.join(bundle, "config.json"), spec)
        record["state"] = "ready"
        _atomic_json(os.path.join(wdir, RECORD), record)
        return record
    except BaseException as e:
        with contextlib.suppress(Exception):
            _destroy(root, record, remove_bundle_dir=made_bundle)
        if isinstance(e, OSError):  # one the steps above did not name better
            raise BundleError(os_message(e)) from None
        raise


def _chown_mapped_root(path: str, uid_map: IdMap, gid_map: IdMap) -> None:
    with contextlib.suppress(KeyError):
        os.lchown(path, uid_map.to_host(0) if uid_map else -1, gid_map.to_host(0) if gid_map else -1)


def _mount_bundle(root: str, record: dict, *, fresh: bool = False) -> None:
    layers_dir = os.path.join(root, "layers")
    wdir = os.path.join(_bundles_dir(root), record["id"])
    upper, work = os.path.join(wdir, "upper"), os.path.join(wdir, "work")
    missing = [k for k in record["layers"] if not os.path.isdir(os.path.join(layers_dir, k))]
    if missing:
        raise BundleError(f"bundle {record['bundle']}: layer {missing[0]} is missing from {layers_dir}")
    lowers = list(reversed(record["layers"]))
    try:
        if fresh:
            os.makedirs(upper, exist_ok=True)
            os.makedirs(work, exist_ok=True)
            if record["layers"]:
                _copy_root_meta(os.path.join(layers_dir, record["layers"][-1]), upper)
        if not lowers:  # an image without layers: overlay needs one lowerdir
            os.makedirs(os.path.join(layers_dir, "empty"), exist_ok=True)
            lowers = ["empty"]
        os.makedirs(record["rootfs"], exist_ok=True)
    except OSError as e:
        raise BundleError(os_message(e)) from None
    mount_overlay(layers_dir, lowers, os.path.relpath(upper, layers_dir), os.path.relpath(work, layers_dir),
                  record["rootfs"])


def _destroy(root: str, record: dict, *, remove_bundle_dir: bool) -> None:
    wdir = os.path.join(_bundles_dir(root), record["id"])
    bundle, rootfs = record["bundle"], record["rootfs"]
    if record["mode"] == "overlay":
        umount(rootfs)
        if os.path.isdir(rootfs) and not os.path.ismount(rootfs):
            with contextlib.suppress(OSError):
                os.rmdir(rootfs)
    elif os.path.lexists(rootfs):
        shutil.rmtree(rootfs)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(bundle, "config.json"))
    # The record goes last, so a failure halfway leaves it for a retry.
    for name in sorted(os.listdir(wdir)) if os.path.isdir(wdir) else []:
        if name != RECORD:
            p = os.path.join(wdir, name)
            shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.unlink(p)
    shutil.rmtree(wdir, ignore_errors=True)
    if remove_bundle_dir:
        with contextlib.suppress(OSError):
            os.rmdir(bundle)


_STATE_ROOTS = ("/run/pyrunc", "/run/runc")


def containers_using(bundle: str, state_roots=_STATE_ROOTS) -> list[str]:
    """Ids of live containers (pyrunc or runc state) whose bundle is ``bundle``.
    Both runtimes keep ROOT/ID/state.json; a file that is not JSON is skipped."""
    bundle = os.path.realpath(bundle)
    found = []
    for sroot in state_roots:
        try:
            names = os.listdir(sroot)
        except OSError:
            continue
        for cid in names:
            try:
                with open(os.path.join(sroot, cid, "state.json"), "rb") as f:
                    st = json.loads(f.read())
            except (OSError, ValueError):
                continue
            if not isinstance(st, dict):
                continue
            # pyrunc writes "bundle"/"pid"; runc keeps "bundle=..." in its config labels
            b = st.get("bundle") or next((lab[7:] for lab in (st.get("config") or {}).get("labels") or []
                                          if lab.startswith("bundle=")), None)
            pid = st.get("pid") or st.get("init_process_pid") or 0
            if b and os.path.realpath(b) == bundle and pid and os.path.exists(f"/proc/{pid}"):
                found.append(cid)
    return found


def remove_bundle(root: str, bundle: str, *, force: bool = False) -> dict:
    """Unmount ``bundle``'s rootfs and delete its writable layer, volumes, config and record.

    Shared layers stay in ROOT/layers.  The bundle directory itself is
    removed when it is left empty.  Raises BundleError for an unknown bundle
    and, unless ``force``, for a bundle a live container still runs from.
    """
    root = os.path.abspath(root)
    record = read_record(root, bundle)
    if record is None:
        raise BundleError(f"{bundle}: not a bundle recorded in {os.path.join(root, 'bundles')}")
    if not force:
        users = containers_using(record["bundle"])
        if users:
            raise BundleError(f"bundle {record['bundle']} is in use by container {users[0]} (delete it first)")
    try:
        _destroy(root, record, remove_bundle_dir=True)
    except OSError as e:
        raise BundleError(os_message(e, f"removing bundle {record['bundle']}")) from None
    return record


def list_bundles(root: str) -> list[dict]:
    """All recorded bundles, each record plus ``mounted`` (bool), oldest first."""
    out = []
    bdir = _bundles_dir(os.path.abspath(root))
    try:
        ids = sorted(os.listdir(bdir)) if os.path.isdir(bdir) else []
    except OSError as e:
        raise BundleError(os_message(e, f"listing {bdir}")) from None
    for bid in ids:
        try:
            with open(os.path.join(bdir, bid, RECORD)) as f:
                rec = json.load(f)
        except (OSError, ValueError):
            continue
        rec["mounted"] = rec.get("mode") == "overlay" and os.path.ismount(rec["rootfs"])
        out.append(rec)
    out.sort(key=lambda r: r.get("created", ""))
    return out


def remount_bundles(root: str, bundle: str | None = None) -> list[str]:
    """Mount the rootfs of every ready overlay bundle (or just ``bundle``) that is not mounted.

    Used after a reboot.  Returns the bundle paths mounted.
    """
    root = os.path.abspath(root)
    done = []
    want = bundle_id(bundle) if bundle else None
    for rec in list_bundles(root):
        if want and rec["id"] != want:
            continue
        if rec.get("mode") != "overlay" or rec["mounted"] or rec.get("state") != "ready":
            continue
        _mount_bundle(root, rec)
        done.append(rec["bundle"])
    if want and not done and not any(r["id"] == want for r in list_bundles(root)):
        raise BundleError(f"{bundle}: not a bundle recorded in {_bundles_dir(root)}")
    return done


def layers_in_use(root: str) -> set[str]:
    """diff_ids of every layer that a recorded bundle uses (gc must keep these).

    Includes bundles still being created, so a concurrent gc is safe.
    """
    used: set[str] = set()
    for rec in list_bundles(root):
        used.update(rec.get("diff_ids") or [])
    return used


def manifests_in_use(root: str) -> set[str]:
    """Manifest digests of the images recorded bundles were made from.

    ``Store(root).gc(keep=manifests_in_use(root))`` keeps their blobs too.
    """
    return {rec["manifest"] for rec in list_bundles(root) if rec.get("manifest")}


def prune_layer_cache(root: str) -> list[str]:
    """Delete cached layers that no recorded overlay bundle uses; return their keys."""
    root = os.path.abspath(root)
    layers_dir = os.path.join(root, "layers")
    if not os.path.isdir(layers_dir):
        return []
    removed = []
    with _lock(os.path.join(layers_dir, ".lock")):
        keep = set()
        for rec in list_bundles(root):
            keep.update(rec.get("layers") or [])
        try:
            for name in os.listdir(layers_dir):
                if name.endswith(".json") or name in ("tmp", "empty") or name.startswith("."):
                    continue
                if name not in keep and os.path.isdir(os.path.join(layers_dir, name)):
                    shutil.rmtree(os.path.join(layers_dir, name))
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(layers_dir, f"{name}.json"))
                    removed.append(name)
        except OSError as e:
            raise BundleError(os_message(e, f"pruning the layer cache {layers_dir}")) from None
    return removed
