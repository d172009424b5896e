"""docker run's options as an OCI config: parsing them, and editing the bundle's config.json.

The bundle (imagetool.bundle) gives the image's own config: args from
Entrypoint and Cmd, env, cwd, user, docker's default capabilities and
seccomp profile. ``apply`` adds what the command line asked for on top:
mounts, resources, capabilities, privileges, namespaces, the init, the
read-only root and the per-container /etc files. It is pure: it edits the
dict it is given and touches no file, so every option is checked before
anything is made (``parse_*`` raise UsageError with docker's words).
"""
from __future__ import annotations

import os
import re
import stat

from imagetool.errors import UsageError
from imagetool.engine import humanize

ALL_CAPS = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
    "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN",
    "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)
INIT_PATH = "/sbin/docker-init"  # where docker puts its init, so scripts that look for it find it
RESTART_POLICIES = ("no", "on-failure", "always", "unless-stopped")


def bounding_caps() -> set[str]:
    """The capabilities this host's bounding set still has (a container can have no others)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapBnd:"):
                    mask = int(line.split()[1], 16)
                    return {c for i, c in enumerate(ALL_CAPS) if mask >> i & 1}
    except OSError:
        pass
    return set(ALL_CAPS)


def normalize_cap(name: str) -> str:
    n = name.strip().upper()
    if n == "ALL":
        return n
    if not n.startswith("CAP_"):
        n = "CAP_" + n
    if n not in ALL_CAPS:
        raise UsageError(f"invalid capability: {name}")  # (docker's daemon says "unknown capability")
    return n


def capabilities(default: list[str], add: list[str], drop: list[str]) -> list[str]:
    add = [normalize_cap(c) for c in add or ()]
    drop = [normalize_cap(c) for c in drop or ()]
    caps = [] if "ALL" in drop else list(default)
    caps = [c for c in caps if c not in drop]
    for c in (ALL_CAPS if "ALL" in add else add):
        if c not in caps and c != "ALL":
            caps.append(c)
    usable = bounding_caps()
    return [c for c in caps if c in usable]


def parse_restart(value: str | None) -> dict:
    """``--restart`` as docker's RestartPolicy {Name, MaximumRetryCount}."""
    if not value:
        return {"Name": "no", "MaximumRetryCount": 0}
    name, _, count = value.partition(":")
    if name not in RESTART_POLICIES:
        raise UsageError(f"invalid restart policy '{value}'")
    if count:
        if name != "on-failure":
            raise UsageError(f"maximum retry count cannot be used with restart policy '{name}'")
        if not count.isdigit():
            raise UsageError('invalid restart policy format: maximum retry count must be an integer')
    return {"Name": name, "MaximumRetryCount": int(count or 0)}


def parse_cpus(value: str | None) -> int:
    """``--cpus`` as NanoCpus."""
    if not value:
        return 0
    try:
        n = float(value)
    except ValueError:
        raise UsageError(f'invalid argument "{value}" for "--cpus" flag: failed to parse {value} as a rational number') from None
    if n < 0:
        raise UsageError(f"invalid argument \"{value}\" for \"--cpus\" flag: range of CPUs is from 0.01 to {os.cpu_count()}.00")
    return int(n * 1e9)


def parse_memory(value: str | None) -> int:
    """``-m`` (docker's RAMInBytes: b, k, m, g, t, p; case-insensitive; optional trailing b)."""
    if not value:
        return 0
    try:
        n = humanize.parse_size(value)
    except UsageError as e:
        raise UsageError(f'invalid argument "{value}" for "-m, --memory" flag: {e}') from None
    if 0 < n < 6 * 1024 * 1024:
        raise UsageError("Minimum memory limit allowed is 6MB")
    return n


def parse_env_file(path: str) -> list[str]:
    """docker's --env-file: KEY=VALUE lines, # comments, a bare KEY takes the caller's value."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise UsageError(f"open {path}: {os.strerror(e.errno) if e.errno else e}") from None
    out = []
    for ln in lines:
        s = ln.lstrip()
        if not s or s.startswith("#"):
            continue
        key, eq, val = s.partition("=")
        if not key or " " in key.strip():
            raise UsageError(f"variable '{key}' contains whitespaces" if key else
                             f"invalid environment variable: {ln}")
        out.append(f"{key}={val}" if eq else key)
    return out


def parse_add_host(value: str) -> tuple[str, str]:
    host, sep, ip = value.partition(":")
    if not sep or not host or not ip:
        raise UsageError(f"bad format for add-host: {value!r}")
    if not re.fullmatch(r"[0-9.]+|[0-9a-fA-F:]+", ip):
        raise UsageError(f"invalid IP address in add-host: {ip!r}")
    return host, ip


class MountReq:
    """One mount the command line asked for: kind bind, volume or tmpfs."""

    def __init__(self, kind: str, target: str, source: str = "", readonly: bool = False, *,
                 create_source: bool = False, options: list[str] | None = None, anonymous: bool = False):
        self.kind, self.target, self.source, self.readonly = kind, target, source, readonly
        self.create_source, self.options, self.anonymous = create_source, list(options or ()), anonymous

    def as_dict(self) -> dict:
        return {"Type": self.kind, "Source": self.source, "Target": self.target, "ReadOnly": self.readonly,
                "Anonymous": self.anonymous, "Options": self.options, "CreateSource": self.create_source}

    @classmethod
    def from_dict(cls, d: dict) -> "MountReq":
        return cls(d["Type"], d["Target"], d.get("Source", ""), d.get("ReadOnly", False),
                   options=d.get("Options"), anonymous=d.get("Anonymous", False),
                   create_source=d.get("CreateSource", False))


def _check_target(t: str, flag: str) -> str:
    if not t.startswith("/"):
        raise UsageError(f"invalid mount config for type \"{flag}\": invalid mount path: '{t}' mount path must be absolute")
    if t == "/":
        raise UsageError("invalid specification: destination can't be '/'")
    return os.path.normpath(t)


def parse_volume(spec: str) -> MountReq:
    """``-v``: /host:/ctr[:opts], name:/ctr[:opts] or /ctr (an anonymous volume)."""
    parts = spec.split(":")
    if len(parts) == 1:
        return MountReq("volume", _check_target(parts[0], "volume"), anonymous=True)
    if len(parts) > 3 or not parts[0] or not parts[1]:
        raise UsageError(f"invalid volume specification: '{spec}'")
    src, dst = parts[0], parts[1]
    mode = parts[2] if len(parts) == 3 else ""
    ro = False
    for m in filter(None, mode.split(",")):
        if m in ("ro", "rw"):
            ro = m == "ro"
        elif m not in ("z", "Z", "private", "rprivate", "shared", "rshared", "slave", "rslave", "nocopy",
                       "consistent", "cached", "delegated"):
            raise UsageError(f"invalid mode: {m}")
    dst = _check_target(dst, "bind" if src.startswith("/") else "volume")
    if src.startswith("/"):
        return MountReq("bind", dst, os.path.normpath(src), ro, create_source=True)
    if src.startswith("."):
        raise UsageError(f'create {src}: "{src}" includes invalid characters for a local volume name, only '
                         '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, '
                         'use absolute path')
    return MountReq("volume", dst, src, ro, options=["nocopy"] if "nocopy" in mode.split(",") else [])


def parse_mount(spec: str) -> MountReq:
    """``--mount type=bind|volume|tmpfs,source=,target=,readonly,...`` (a missing bind source is an error)."""
    fields = {}
    for item in spec.split(","):
        k, eq, v = item.partition("=")
        k = k.strip().lower()
        if not eq and k in ("readonly", "ro"):
            v = "true"
        elif not eq:
            raise UsageError(f"invalid field '{item}' must be a key=value pair")
        fields[k] = v
    kind = fields.pop("type", "volume")
    src = fields.pop("source", fields.pop("src", ""))
    dst = fields.pop("target", fields.pop("destination", fields.pop("dst", "")))
    ro = fields.pop("readonly", fields.pop("ro", "false")).lower() in ("1", "true")
    if not dst:
        raise UsageError(f'invalid argument "{spec}" for "--mount" flag: target is required')
    if kind not in ("bind", "volume", "tmpfs"):
        raise UsageError(f"invalid mount type: {kind!r}")
    dst = _check_target(dst, kind)
    if kind == "tmpfs":
        if src:
            raise UsageError("invalid mount config for type \"tmpfs\": field Source must not be specified")
        opts = []
        if "tmpfs-size" in fields:
            opts.append(f"size={fields.pop('tmpfs-size')}")
        if "tmpfs-mode" in fields:
            opts.append(f"mode={fields.pop('tmpfs-mode')}")
        return MountReq("tmpfs", dst, "", ro, options=opts)
    if kind == "bind":
        if not src:
            raise UsageError("invalid mount config for type \"bind\": field Source must not be empty")
        if not os.path.isabs(src):
            raise UsageError(f"invalid mount config for type \"bind\": invalid mount path: '{src}' mount path must be absolute")
        if not os.path.exists(src):
            raise UsageError(f"invalid mount config for type \"bind\": bind source path does not exist: {src}")
        return MountReq("bind", dst, os.path.normpath(src), ro)
    nocopy = fields.pop("volume-nocopy", "false").lower() in ("1", "true")
    return MountReq("volume", dst, src, ro, anonymous=not src, options=["nocopy"] if nocopy else [])


def parse_tmpfs(spec: str) -> MountReq:
    dst, _, opts = spec.partition(":")
    return MountReq("tmpfs", _check_target(dst, "tmpfs"), "", options=[o for o in opts.split(",") if o])


def _host_devices() -> list[dict]:
    """The host's character and block devices directly under /dev (for --privileged)."""
    out = []
    try:
        entries = list(os.scandir("/dev"))
    except OSError:
        return out
    for e in entries:
        try:
            st = e.stat(follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            if e.name in ("console", "ptmx", "tty") or e.name.startswith("tty"):
                continue  # the container has its own
            out.append({"path": e.path, "type": "c" if stat.S_ISCHR(st.st_mode) else "b",
                        "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
                        "fileMode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid})
    return out


def apply(spec: dict, host: dict, *, mounts: list[dict], etc_mounts: list[dict], init_binary: str | None,
          cgroup_name: str) -> dict:
    """Edit the bundle's config ``spec`` for docker's HostConfig ``host`` (see the module docstring).

    ``mounts`` are OCI mount entries for the user's binds, volumes and
    tmpfs (already resolved to host paths); ``etc_mounts`` the
    container's hosts/hostname/resolv.conf, dropped where the user
    mounts the same path.
    """
    proc = spec["process"]
    linux = spec.setdefault("linux", {})
    targets = {m["destination"] for m in mounts}
    base = [m for m in spec.get("mounts", []) if m["destination"] not in targets and
            not any(m["destination"].startswith(t + "/") for t in targets)]
    etc = [m for m in etc_mounts if m["destination"] not in targets]
    spec["mounts"] = base + etc + sorted(mounts, key=lambda m: m["destination"].count("/"))
    # capabilities
    caps = proc.setdefault("capabilities", {})
    default = caps.get("bounding", [])
    if host.get("Privileged"):
        new = capabilities([], ["ALL"], [])
    else:
        new = capabilities(default, host.get("CapAdd") or [], host.get("CapDrop") or [])
    root_user = proc.get("user", {}).get("uid", 0) == 0
    caps["bounding"] = list(new)
    caps["effective"] = list(new) if root_user else []
    caps["permitted"] = list(new) if root_user else []
    if "inheritable" in caps:
        caps.pop("inheritable")
    if host.get("Privileged"):
        linux.pop("seccomp", None)
        linux["maskedPaths"] = []
        linux["readonlyPaths"] = []
        linux.setdefault("resources", {})["devices"] = [{"allow": True, "access": "rwm"}]
        linux["devices"] = _host_devices()
        for m in spec["mounts"]:
            if m["type"] in ("sysfs", "cgroup") and "ro" in m.get("options", []):
                m["options"] = [o for o in m["options"] if o != "ro"] + ["rw"]
        proc["noNewPrivileges"] = False
    elif "no-new-privileges" in (host.get("SecurityOpt") or []):
        proc["noNewPrivileges"] = True
    else:
        proc["noNewPrivileges"] = False  # docker's default
    # resources
    res = linux.setdefault("resources", {})
    if host.get("Memory"):
        res["memory"] = {"limit": host["Memory"]}
    if host.get("NanoCpus"):
        res["cpu"] = {"quota": host["NanoCpus"] * 100000 // 1_000_000_000, "period": 100000}
    if host.get("PidsLimit"):
        res["pids"] = {"limit": host["PidsLimit"]}
    linux["cgroupsPath"] = cgroup_name
    spec["root"]["readonly"] = bool(host.get("ReadonlyRootfs"))
    if init_binary:
        spec["mounts"].append({"destination": INIT_PATH, "type": "bind", "source": init_binary,
                               "options": ["rbind", "ro", "nosuid", "nodev"]})
        proc["args"] = [INIT_PATH, "--"] + list(proc.get("args") or [])
    return spec


def oci_mount(m: MountReq, source: str) -> dict:
    """The OCI mount entry for a resolved request (``source`` is the host path, or empty for tmpfs)."""
    if m.kind == "tmpfs":
        opts = ["nosuid", "nodev", "noexec"] + [o for o in m.options if o not in ("nosuid", "nodev", "noexec")]
        if m.readonly:
            opts.append("ro")
        return {"destination": m.target, "type": "tmpfs", "source": "tmpfs", "options": opts}
    return {"destination": m.target, "type": "bind", "source": source,
            "options": ["rbind", "ro" if m.readonly else "rw", "rprivate"]}


def set_network(spec: dict, mode: str, netns: str | None) -> None:
    """The network namespace entry: host (none), a new empty one, or a path to join."""
    ns = [n for n in spec["linux"].get("namespaces", []) if n.get("type") != "network"]
    if mode != "host":
        ns.append({"type": "network", "path": netns} if netns else {"type": "network"})
    spec["linux"]["namespaces"] = ns
