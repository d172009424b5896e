"""The bundle and its config: loading, the checks made before any process
exists, and the defaults create derives from it.

- load_bundle: config.json read, validated against specs/ and resolved
  (rootfs path, defaults).
- check_config: what the schema cannot say (runc's validator): sysctls
  outside the container's namespaces (check_sysctl), systemd cgroups,
  SELinux and AppArmor settings this host cannot apply (selinux_enabled,
  apparmor_enabled).
- drop_ungrantable_caps: capabilities outside the runtime's own bounding
  set are dropped with a warning (runtime-spec: SHOULD NOT fail).
- exec_defaults, wants_limits: what later verbs and rootless create need
  to know of the config.
"""
from runtime.toolkit import fastjson as json
from runtime.toolkit import os_lite as os
import sys

from runtime import errors, log
from runtime.errors import RuntimeFailure
from runtime import caps
from runtime.syscalls import NAMESPACE_FLAGS, NAMESPACE_PROC_NAMES
from runtime.validate import validate_config


def load_bundle(bundle: str) -> dict:
    """Read and validate BUNDLE/config.json; errors name the file or field."""
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise RuntimeFailure(f"bundle {bundle}: config.json not found") from None
    try:
        cfg = json.loads(raw)
    except ValueError as e:
        raise RuntimeFailure(f"{path}: invalid JSON: {e}") from None
    validate_config(cfg)
    linux = cfg.get("linux")
    if linux is None:
        raise RuntimeFailure("config.json: linux: required on this platform")
    root = cfg.get("root") or {}
    rootfs = root.get("path")
    if not rootfs:
        raise RuntimeFailure("config.json: root.path: required")
    if not os.path.isabs(rootfs):
        rootfs = os.path.join(bundle, rootfs)
    if not os.path.isdir(rootfs):
        raise RuntimeFailure(f"config.json: root.path: {rootfs} does not exist or is not a directory")
    cfg["_rootfs"] = os.path.realpath(rootfs)
    cfg["_bundle"] = bundle
    return cfg


def check_systemd() -> None:
    if not os.path.isdir("/run/systemd/system"):
        raise RuntimeFailure("--systemd-cgroup: systemd is not running on this host")


def check_config(cfg: dict) -> None:
    """Checks the schema cannot express; each names the field."""
    seen = set()
    for i, ns in enumerate(cfg["linux"].get("namespaces") or ()):
        t = ns.get("type")
        if t not in NAMESPACE_FLAGS:
            raise RuntimeFailure(f"config.json: linux.namespaces[{i}].type: unknown namespace type {t!r}")
        if t in seen:
            raise RuntimeFailure(f"config.json: linux.namespaces[{i}].type: duplicate namespace {t!r}")
        seen.add(t)
        if ns.get("path") and not os.path.exists(ns["path"]):
            raise RuntimeFailure(f"config.json: linux.namespaces[{i}].path: {ns['path']} does not exist")
    linux = cfg["linux"]
    if ("uidMappings" in linux or "gidMappings" in linux) and "user" not in seen:
        raise RuntimeFailure("config.json: linux.uidMappings: user namespace mappings given without a user namespace")
    if linux.get("timeOffsets") and "time" not in seen:
        raise RuntimeFailure("config.json: linux.timeOffsets: time offsets given without a time namespace")
    if cfg.get("hostname") and "uts" not in seen:
        raise RuntimeFailure("config.json: hostname: setting the hostname needs a uts namespace")
    nss = {ns["type"]: ns for ns in linux.get("namespaces") or ()}
    uts_path = (nss.get("uts") or {}).get("path")
    for field in ("hostname", "domainname"):
        if cfg.get(field) and uts_path and _is_runtime_ns("uts", uts_path):
            raise RuntimeFailure(f"config.json: {field}: the uts namespace {uts_path} is the runtime's own: "
                                 f"setting the {field} there would change the host's")
    if linux.get("netDevices"):
        # They are moved into init's network namespace and renamed there:
        # the runtime's own would be the host's interfaces, renamed.
        net = nss.get("network")
        if net is None:
            raise RuntimeFailure("unable to move network devices without a NET namespace")
        if net.get("path") and _is_runtime_ns("network", net["path"]):
            raise RuntimeFailure(f"config.json: linux.netDevices: the network namespace {net['path']} is the "
                                 "runtime's own: the devices would stay on the host, renamed")
    if (linux.get("maskedPaths") or linux.get("readonlyPaths")) and "mount" not in seen:
        # init applies them in its own mount namespace only (runc's wording)
        raise RuntimeFailure("unable to restrict sys entries without a private MNT namespace")
    if linux.get("sysctl"):
        check_sysctl(linux["sysctl"], nss)
    for kind, hooks in (cfg.get("hooks") or {}).items():
        for i, h in enumerate(hooks or ()):
            p = h.get("path", "")
            if not os.path.isabs(p):
                raise RuntimeFailure(f"config.json: hooks.{kind}[{i}].path: {p!r} is not absolute")
            if kind not in ("createContainer", "startContainer"):
                try:
                    mode = os.stat(p).st_mode
                except FileNotFoundError:
                    raise RuntimeFailure(f"config.json: hooks.{kind}[{i}].path: {p} does not exist") from None
                if mode & 0o170000 != 0o100000 or not os.access(p, os.X_OK):  # S_ISREG
                    raise RuntimeFailure(f"config.json: hooks.{kind}[{i}].path: {p} is not executable")
    proc = cfg.get("process") or {}
    bad = caps.unknown_error(proc.get("capabilities"))
    if bad:
        raise RuntimeFailure(f"config.json: {bad}")
    selinux = selinux_enabled()
    if proc.get("selinuxLabel") and not selinux:
        raise RuntimeFailure("config.json: process.selinuxLabel: a label is set but SELinux is disabled "
                             "or not supported on this host")
    if linux.get("mountLabel") and not selinux:
        # A mount label only means something to SELinux; without it there is
        # nothing to label and the mounts are the same (crun also goes on).
        # The process label above is different: it confines the process.
        log.warning("linux.mountLabel: SELinux is disabled on this host; mounts are not labelled")
        del linux["mountLabel"]
    if proc.get("apparmorProfile") and not apparmor_enabled():
        raise RuntimeFailure(f"config.json: process.apparmorProfile: cannot apply profile "
                             f"{proc['apparmorProfile']!r}: AppArmor is not enabled on this host")
    if linux.get("intelRdt") and not os.path.isdir("/sys/fs/resctrl/info"):
        raise RuntimeFailure("config.json: linux.intelRdt: resctrl is not mounted on this host")


# The kernel.* sysctls an ipc namespace holds (with fs.mqueue.*); runc's list.
_IPC_SYSCTLS = frozenset(("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
                          "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"))


def check_sysctl(sysctl: dict, nss: dict[str, dict]) -> None:
    """Refuse a linux.sysctl key that would be written outside the
    container's own namespaces, i.e. to the host: init writes them through
    /proc/sys, and only the net.*, ipc and uts entries there are per
    namespace. `nss` is linux.namespaces by type.

    runc 1.1.5's rules and wording (libcontainer/configs/validate): net.*
    needs a network namespace that is not the runtime's; the ipc keys an
    ipc namespace; kernel.domainname a uts namespace; kernel.hostname is
    refused (config.json has a field for it); everything else
    (kernel.core_pattern, vm.*, fs.*, ...) is in no namespace at all. runc
    compares a joined network namespace with its own; this does so for ipc
    and uts too, where runc takes any joined one: a joined namespace that
    is the runtime's is the host's."""
    own: dict[str, bool] = {}

    def private(t: str) -> bool:
        if t not in own:
            ns = nss.get(t)
            own[t] = ns is not None and not (ns.get("path") and _is_runtime_ns(t, ns["path"]))
        return own[t]

    for key in sysctl:
        s = _sysctl_dots(key)
        q = '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'  # as Go's %q shows it
        if s in _IPC_SYSCTLS or s.startswith("fs.mqueue."):
            if private("ipc"):
                continue
            raise RuntimeFailure(f"sysctl {q} is not allowed in the hosts ipc namespace")
        if s.startswith("net."):
            if private("network"):
                continue
            raise RuntimeFailure(f"sysctl {q} not allowed in host network namespace")
        if "uts" in nss:
            if s == "kernel.domainname" and private("uts"):
                continue
            if s == "kernel.hostname":
                raise RuntimeFailure(f'sysctl {q} is not allowed as it conflicts with the OCI "hostname" field')
        raise RuntimeFailure(f"sysctl {q} is not in a separate kernel namespace")


def _sysctl_dots(key: str) -> str:
    """A sysctl name in its dotted form: a name written with '/' as the
    separator (sysctl.d(5): "net/ipv4/ip_forward") has its '/' and '.'
    swapped, as runc does before it checks a key."""
    i = next((i for i, ch in enumerate(key) if ch in "./"), -1)
    if i < 0 or key[i] == ".":
        return key
    return key.translate(str.maketrans("./", "/."))


def _is_runtime_ns(nstype: str, path: str) -> bool:
    """Whether the namespace file `path` is this process's own namespace of
    `nstype` (the runtime's, which is the host's to the container)."""
    mine = os.stat(f"/proc/self/ns/{NAMESPACE_PROC_NAMES[nstype]}")
    try:
        other = os.stat(path)
    except OSError as e:
        raise RuntimeFailure(f"config.json: linux.namespaces {nstype} path {path}: {e.strerror}") from None
    return (mine.st_dev, mine.st_ino) == (other.st_dev, other.st_ino)


def selinux_enabled() -> bool:
    return os.path.exists("/sys/fs/selinux/enforce")


def apparmor_enabled() -> bool:
    try:
        with open("/sys/module/apparmor/parameters/enabled") as f:
            return f.read().strip() == "Y"
    except OSError:
        return False


def drop_ungrantable_caps(cfg: dict, userns: bool) -> None:
    """Spec (config.md capabilities): a capability that cannot be granted is
    a warning, not a failure. Outside a user namespace that means one that
    is not in our own bounding set (CAP_SYS_RESOURCE on some hosts)."""
    capsets = (cfg.get("process") or {}).get("capabilities")
    if not capsets or userns:
        return
    with open("/proc/self/status") as f:
        bnd = int(next(line for line in f if line.startswith("CapBnd:")).split()[1], 16)
    dropped = set()
    for k, names in capsets.items():
        keep = []
        for n in names or ():
            i = caps.NUMBERS.get(n)
            if i is not None and not bnd >> i & 1:
                dropped.add(n)
            else:
                keep.append(n)
        capsets[k] = keep
    if dropped:
        log.warning(f"process.capabilities: cannot grant {', '.join(sorted(dropped))} "
                    "(not in the runtime's bounding set); continuing without")


def exec_defaults(cfg: dict) -> dict:
    """What `exec` needs from the original config later."""
    linux = cfg["linux"]
    return {"process": {k: cfg["process"].get(k) for k in ("env", "user", "capabilities",
                                                           "noNewPrivileges", "apparmorProfile",
                                                           "rlimits", "cwd", "execCPUAffinity")},
            "seccomp": linux.get("seccomp"), "rootfs": cfg["_rootfs"]}


def wants_limits(linux: dict) -> bool:
    res = linux.get("resources") or {}
    return any(v for k, v in res.items() if k != "devices")
