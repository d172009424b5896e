"""Container lifecycle operations: create and run.

Each public function is one CLI verb's library call. They raise
RuntimeFailure (or OSError) with a one-line message; the CLI maps those to
exit codes and log lines. The verbs on an existing container (state, list,
start, kill, delete) live in runtime.lifecycle, which stays light to
import (and which create itself does not load).
"""
from runtime import fastjson as json
from runtime import _os as os  # os.py costs ~1.8 ms per call: runtime._os
import _signal as signal  # the C module: `signal` imports enum (~5 ms)
import sys
import time

from runtime import state as st
from runtime import errors
from runtime.errors import RuntimeFailure
from runtime import log


class Options:
    """Options of create/run, as the CLI parsed them."""

    def __init__(self, root: str, cid: str, bundle: str = ".", pid_file: str | None = None,
                 console_socket: str | None = None, no_pivot: bool = False,
                 no_new_keyring: bool = False, preserve_fds: int = 0,
                 systemd_cgroup: bool = False):
        self.root = root
        self.cid = cid
        self.bundle = os.path.abspath(bundle)
        self.pid_file = pid_file
        self.console_socket = console_socket
        self.no_pivot = no_pivot
        self.no_new_keyring = no_new_keyring
        self.preserve_fds = preserve_fds
        self.systemd_cgroup = systemd_cgroup


def _now_rfc3339() -> str:
    """Now in UTC as Go's time.RFC3339Nano writes it (runc's "created"):
    nanoseconds without their trailing zeros."""
    ns = time.time_ns()
    frac = f".{ns % 10**9:09d}".rstrip("0").rstrip(".")
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + frac + "Z"


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
    from runtime.validate import validate_config
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


# --- create -------------------------------------------------------------

def create(opts: Options, *, foreground_console=None) -> dict:
    """Create the container and leave its init blocked before exec.

    Returns the saved state. On any failure everything made so far (state
    dir, cgroup, processes) is removed before the exception propagates.
    `foreground_console` is a connected socket to use as the console socket
    (the foreground `run` with a terminal passes one end of a socketpair)."""
    st.validate_id(opts.cid)
    cfg = load_bundle(opts.bundle)
    proc = cfg.get("process")
    if not proc:
        raise RuntimeFailure("config.json: process: required to create a container")
    if proc.get("terminal") and not opts.console_socket and foreground_console is None:
        raise RuntimeFailure("cannot allocate tty if runc will detach without setting console socket")
    if not proc.get("terminal") and opts.console_socket:
        raise RuntimeFailure("cannot use console socket if runc will not detach or allocate tty")
    if opts.systemd_cgroup:
        _check_systemd()
    _check_config(cfg)
    cdir = st.make_dir(opts.root, opts.cid)
    lock = st.Lock(cdir, opts.cid)
    b = _Builder(opts, cfg, cdir, lock)
    try:
        data = b.build(foreground_console)
    except BaseException:
        b.abort()
        lock.close()
        raise
    lock.close()
    return data


def _check_systemd() -> None:
    if not os.path.isdir("/run/systemd/system"):
        raise RuntimeFailure("--systemd-cgroup: systemd is not running on this host")


def _check_config(cfg: dict) -> None:
    """Checks the schema cannot express; each names the field."""
    from runtime.syscalls import NAMESPACE_FLAGS
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
    from runtime import caps
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
    from runtime.syscalls import NAMESPACE_PROC_NAMES
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


class _Builder:
    """State of one `create` while it runs; abort() undoes all of it."""

    def __init__(self, opts: Options, cfg: dict, cdir: str, lock):
        self.lock = lock
        self.opts = opts
        self.cfg = cfg
        self.cdir = cdir
        self.cgroup = None
        self.cgroup_rest = False  # create_rest() still to do, after the fork
        self.stage1 = 0
        self.init_pid = 0
        self.hooks_started = False
        self.direct = False  # init is our own child (clone_init), not stage1's

    def build(self, foreground_console) -> dict:
        from runtime import cgroups, sync
        opts, cfg = self.opts, self.cfg
        linux = cfg["linux"]
        nstypes = {n["type"] for n in linux.get("namespaces") or ()}
        # One read of the mount table, for the cgroup paths and for the
        # hierarchies a "cgroup" mount shows the container (_cgroup_mounter).
        from runtime.cgroups.common import read_mountinfo
        mounts = read_mountinfo()
        self.cgroup = cgroups.open_manager(linux.get("cgroupsPath"), opts.cid,
                                           systemd=opts.systemd_cgroup, mounts=mounts)
        # Parent directories this create makes are ours to remove on delete.
        self.cgroup_parents = _missing_parents(st.cgroup_dirs(self.cgroup.to_state()))
        # Saved before the cgroup or any process exists, so `delete --force`
        # can clean up after a create that was killed at any point; kept as
        # state.FIRST_FILE, it names the cgroup if the state file is damaged.
        early = {"id": opts.cid, "pid": 0, "bundle": opts.bundle, "rootfs": cfg["_rootfs"],
                 "created": _now_rfc3339(), "cgroup": self.cgroup.to_state(),
                 "cgroup_parents": self.cgroup_parents}
        st.save_first(self.cdir, early)
        try:
            # As root, only what stage1 is cloned into: the v1 hierarchies'
            # directories are made after the fork, while it loads init
            # (create_rest). Rootless needs to know now whether it has
            # cgroups at all (the fallback below).
            self.cgroup_rest = os.geteuid() == 0
            for w in self.cgroup.create(cgroup2_only=self.cgroup_rest) or ():
                log.warning(w)
        except RuntimeFailure as e:
            if getattr(e, "frozen", False):
                # Refused before anything was made: the cgroup, if it
                # exists, is someone else's and abort() must leave it.
                self.cgroup = None
                raise
            # Rootless: cgroups are used only where they were delegated to us.
            if os.geteuid() == 0 or _wants_limits(linux):
                raise
            log.debug(f"rootless: running without a cgroup ({e})")
            self.cgroup = _NoCgroup()
            st.save_first(self.cdir, dict(early, cgroup=None))
        # init waits in accept() on this socket until `start` connects. A
        # socket bound here before pivot_root needs no /proc access later,
        # which a non-dumpable init running as another uid would not have.
        start_sock = sync.unix_socket()
        st.at_start_sock(start_sock.bind, self.cdir)
        start_sock.listen(1)
        # Socket activation: fds the caller got from systemd go first, then
        # --preserve-fds after them, as with runc.
        listen_fds = _listen_fds()
        preserve = listen_fds + opts.preserve_fds
        low = 3 + preserve
        # Internal fds live above the preserved range so they never collide
        # with an fd the caller asked us to pass on.
        start_fd = _dup_above(start_sock.detach(), low)
        parent_chan, child_chan = sync.Channel.pair()
        _move_sock_above(child_chan, low)
        console_fd = None
        if opts.console_socket:
            console_fd = _connect_console(opts.console_socket, low)
        elif foreground_console is not None:
            console_fd = _dup_above(os.dup(foreground_console.fileno()), low)
        idmap_fds = _idmap_userns_fds(cfg, low)
        from runtime import exechelper
        helper_fd = exechelper.sealed_fd(low)
        ctx_kw = dict(cid=opts.cid, config=cfg, bundle=opts.bundle, rootfs=cfg["_rootfs"],
                      idmap_fds=idmap_fds, helper_fd=helper_fd,
                      chan=child_chan, start_fd=start_fd, console_fd=console_fd,
                      preserve_fds=preserve, listen_fds=listen_fds, no_pivot=opts.no_pivot,
                      no_new_keyring=opts.no_new_keyring,
                      cgroup_mount=_cgroup_mounter("cgroup" in nstypes, self.cgroup.to_state(), mounts),
                      want_sources=_wants_mount_sources(cfg, nstypes))
        _drop_ungrantable_caps(cfg, "user" in nstypes)
        if linux.get("seccomp"):
            # Compiled here: a profile that libseccomp or this kernel refuses
            # is a config error, raised before any process exists; the child
            # inherits the loaded library (init.preload imports the rest).
            from runtime import seccomp
            seccomp.compile(linux["seccomp"])
        sys.stdout.flush()
        sys.stderr.flush()
        # A pid namespace joined by path is entered only by pyrunc-exec
        # (init.py's outside mode).
        outside = any(n["type"] == "pid" and n.get("path") for n in linux.get("namespaces") or ())
        forked = clone_init(self.cgroup.cgroup2_dir(), "pid" in nstypes) if _direct_ok(linux) else None
        direct = self.direct = forked is not None
        if forked is None:
            forked = fork_into(self.cgroup.cgroup2_dir())
        pid, cloned = forked
        if pid == 0:
            # The flock belongs to this create; a forked copy would hold it
            # until exec and block `start`.
            self.lock.close()
            parent_chan.close()
            ctx_kw["direct"] = direct
            _stage1(ctx_kw, cfg, lambda: self.cgroup.join_self(cloned))  # never returns
        if direct:
            self.init_pid = pid
        else:
            self.stage1 = pid
        # --debug: runc's debug lines at the same steps, in its words (its
        # tests look for them): setup forked, init running, init done.
        log.debug(f"=> nsexec container setup (pid {pid})")
        child_chan.close()
        os.close(start_fd)
        os.close(helper_fd)
        for fd in idmap_fds.values():
            os.close(fd)
        if console_fd is not None:
            os.close(console_fd)
        chan = parent_chan
        try:
            # The v1 directories are made while stage1 loads init (on the
            # other CPU): it joins them itself, first thing after GO and
            # before it forks init (see join_self and fork_into: neither
            # waits for the RCU grace period a cgroup.procs write from here
            # would, 5-20 ms). The limits go on after GO, while the child
            # makes the namespaces and init mounts the rootfs (runc, too,
            # sets them while its init prepares the rootfs): init cannot
            # exec anything before APPLIED, which is sent after them.
            # Two exceptions go first. The device rules: init makes device
            # nodes and opens them, and v1 rules are written as a deny-all
            # followed by the allows, so they must be whole before the
            # child joins the v1 devices hierarchy at GO (on v2 the child is
            # born in the cgroup, but touches no device before GO). And a
            # realtime budget: a realtime task (a caller running
            # SCHED_FIFO) can only join a cgroup that already has one.
            res = None
            if not isinstance(self.cgroup, _NoCgroup):
                if self.cgroup_rest:
                    self.cgroup.create_rest()
                res = _resources_with_default_devices(cfg)
                if (res.get("cpu") or {}).get("realtimeRuntime"):
                    self._apply(res)
                    res = None
                else:
                    self._apply({"devices": res.pop("devices")})
            chan.send(sync.GO)
            if res is not None:
                self._apply(res)
            if not direct:
                msg = chan.next()
                if msg["type"] == sync.USERNS_CREATED:
                    _write_id_maps(pid, linux)
                    chan.send(sync.USERNS_MAPPED)
                    msg = chan.next()
                if msg["type"] == sync.MOUNT_SOURCES:
                    _send_mount_sources(chan, pid, cfg)
                    msg = chan.next()
                if msg["type"] != sync.INIT_PID:
                    raise errors.InitFailure(f"sync: unexpected {msg['type']!r}")
                self.init_pid = msg["pid"]
                if not outside:
                    _reap(pid)
                    self.stage1 = 0
            if linux.get("netDevices"):
                _move_net_devices(linux["netDevices"], self.init_pid)
            # init waits for this before its hooks and pivot_root: it is in
            # its cgroup, under its limits, with its network devices.
            chan.send(sync.APPLIED)
            data = {
                "id": opts.cid, "pid": self.init_pid, "start_time": st.proc_start_time(self.init_pid),
                "bundle": opts.bundle, "rootfs": cfg["_rootfs"], "created": _now_rfc3339(),
                "owner": "", "ociVersion": cfg.get("ociVersion"),
                "annotations": cfg.get("annotations") or {},
                "cgroup": self.cgroup.to_state(),
                "cgroup_parents": self.cgroup_parents,
                "hooks": {k: v for k, v in (cfg.get("hooks") or {}).items() if k in ("poststart", "poststop")},
                "namespaces": sorted(nstypes),
                "config": _exec_defaults(cfg),
            }
            st.save(self.cdir, data)
            chan.expect(sync.PRESTART)
            log.debug(f"child process in init() (pid {self.init_pid}, rootfs ready)")
            self.hooks_started = True
            hooks = cfg.get("hooks") or {}
            if hooks.get("prestart") or hooks.get("createRuntime"):
                from runtime.hooks import run_hooks
                # Spec lifecycle: these hooks run at steps 3-4, after the
                # environment exists (step 2), when the status is "created".
                s = st.oci_state(dict(data, _dir=self.cdir), "created")
                run_hooks("prestart", hooks.get("prestart"), s)
                run_hooks("createRuntime", hooks.get("createRuntime"), s)
            chan.send(sync.PRESTART_DONE, pid=self.init_pid)
            while True:
                msg = chan.next(keep_fds=True)
                if msg["type"] == sync.SECCOMP_FD:
                    _send_seccomp_fd(cfg, data, msg["_fds"])
                    chan.send(sync.SECCOMP_DONE)
                    continue
                if msg["type"] != sync.READY:
                    raise errors.InitFailure(f"sync: unexpected {msg['type']!r}")
                log.debug("init: closing the pipe to signal completion")
                break
            if outside:
                # stage1 set up the container from outside its pid namespace
                # and has now forked init into it (init.py's outside mode).
                self.init_pid = chan.expect(sync.INIT_PID)["pid"]
                _reap(self.stage1)
                self.stage1 = 0
                data.update(pid=self.init_pid, start_time=st.proc_start_time(self.init_pid))
                st.save(self.cdir, data)
        finally:
            chan.close()
        if self.opts.pid_file:
            _write_pid_file(self.opts.pid_file, self.init_pid)
        data["_dir"] = self.cdir
        return data

    def _apply(self, resources: dict) -> None:
        for w in self.cgroup.apply(resources) or ():
            log.warning(w)

    def abort(self) -> None:
        """Undo a failed create: kill our processes, remove cgroup and state."""
        from runtime.lifecycle import _remove_parents, _rmtree, _wait_gone
        for pid in (self.init_pid, self.stage1):
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self.stage1:
            _reap(self.stage1)
        if self.init_pid and self.direct:
            _reap(self.init_pid)  # our child: no zombie left for whoever inherits it
        elif self.init_pid:
            _wait_gone(self.init_pid)
        if self.cgroup is not None:
            try:
                self.cgroup.destroy()
                _remove_parents(getattr(self, "cgroup_parents", []))
            except (OSError, RuntimeFailure):
                pass
        poststop = (self.cfg.get("hooks") or {}).get("poststop")
        if self.hooks_started and poststop:
            # Spec: a failed create hook stops the container and the lifecycle
            # continues with the poststop hooks.
            from runtime.hooks import run_hooks
            st_ = {"ociVersion": self.cfg.get("ociVersion"), "id": self.opts.cid, "status": "stopped",
                   "bundle": self.opts.bundle, "annotations": self.cfg.get("annotations") or {}}
            run_hooks("poststop", poststop, st_, warn=log.warning)
        _rmtree(self.cdir)


def _move_net_devices(devices: dict, pid: int) -> None:
    """linux.netDevices: move each host interface into the container's network
    namespace (renamed when asked). Physical devices return to the host when
    that namespace goes away."""
    import subprocess
    for host_name, spec in devices.items():
        cmd = ["ip", "link", "set", "dev", host_name, "netns", str(pid)]
        if (spec or {}).get("name"):
            cmd += ["name", spec["name"]]
        name = (spec or {}).get("name") or host_name
        # Spec: the device is set "up" once it is in the container.
        up = ["nsenter", f"--net=/proc/{pid}/ns/net", "ip", "link", "set", "dev", name, "up"]
        for c in (cmd, up):
            p = subprocess.run(c, capture_output=True, text=True)
            if p.returncode != 0:
                raise RuntimeFailure(f"config.json: linux.netDevices.{host_name}: "
                                     f"{p.stderr.strip() or 'ip link failed'}")


def _drop_ungrantable_caps(cfg: dict, userns: bool) -> None:
    """Spec (config.md capabilities): a capability that cannot be granted is
    a warning, not a failure. Outside a user namespace that means one that
    is not in our own bounding set (CAP_SYS_RESOURCE on some hosts)."""
    from runtime import caps
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


def _dup_above(fd: int, low: int) -> int:
    import fcntl
    if fd >= low:
        return fd
    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, low)
    os.close(fd)
    return new


def _move_sock_above(chan, low: int) -> None:
    from runtime import sync
    fd = chan.sock.fileno()
    if fd >= low:
        return
    new = _dup_above(os.dup(fd), low)
    chan.sock.close()
    chan.sock = sync.from_fd(new)


def _idmap_userns_fds(cfg: dict, low: int) -> dict[int, int]:
    """A detached id-mapped mount tree per idmap mount, mapped through a user
    namespace holding that mount's id maps (or the container's own when the
    mount gives none). The caller closes the fds."""
    out: dict[int, int] = {}
    linux = cfg["linux"]
    for i, m in enumerate(cfg.get("mounts") or ()):
        if not _needs_idmap(m):
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
        userns = _make_userns(uids, gids, f"mounts[{i}]")
        try:
            out[i] = _dup_above(rootfs.idmapped_tree(src, m.get("options"), userns, f"mounts[{i}] {m['destination']}"),
                                low)
        except BaseException:
            for fd in out.values():
                os.close(fd)
            raise
        finally:
            os.close(userns)
    return out


def _plain_binds(cfg: dict):
    """(index, source path) of the bind mounts that are not id-mapped."""
    for i, m in enumerate(cfg.get("mounts") or ()):
        opts = m.get("options") or ()
        if (m.get("type") == "bind" or "bind" in opts or "rbind" in opts) and not _needs_idmap(m):
            src = m.get("source") or ""
            yield i, src if os.path.isabs(src) else os.path.join(cfg["_bundle"], src)


def _wants_mount_sources(cfg: dict, nstypes: set[str]) -> bool:
    """Whether the bind sources are opened for init by us (runc 1.1.5's
    rule): a user and a mount namespace, bind mounts, and a runtime that
    is root, whose reach the container's mapped root may lack."""
    return ("user" in nstypes and "mount" in nstypes and os.geteuid() == 0
            and next(_plain_binds(cfg), None) is not None)


def _send_mount_sources(chan, stage1: int, cfg: dict) -> None:
    """Open each plain bind mount's source as an O_PATH fd with our own
    credentials, inside the mount namespace stage1 has just made (through
    its /proc root, so the mounts are that namespace's, as a bind needs),
    and send them over, at most four to a message (what Channel.recv
    takes)."""
    from runtime import sync
    from runtime import syscalls as sc
    root = os.open(f"/proc/{stage1}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    idx: list[int] = []
    fds: list[int] = []
    try:
        for i, src in _plain_binds(cfg):
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


def _needs_idmap(m: dict) -> bool:
    opts = m.get("options") or ()
    return "idmap" in opts or "ridmap" in opts or bool(m.get("uidMappings"))


def _make_userns(uids: list[dict], gids: list[dict], label: str) -> int:
    """Open a new user namespace with the given maps: a child unshares it and
    waits while we write its maps and open /proc/CHILD/ns/user."""
    from runtime import syscalls as sc
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
        _write_id_maps(pid, {"uidMappings": uids, "gidMappings": gids})
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(r)
        os.kill(pid, signal.SIGKILL)
        _reap(pid)


def _connect_console(path: str, low: int) -> int:
    from runtime import sync
    s = sync.unix_socket()
    try:
        s.connect(path)
    except OSError as e:
        s.close()
        raise RuntimeFailure(f"--console-socket {path}: {e.strerror}") from None
    return _dup_above(s.detach(), low)


class _NoCgroup:
    """Stands in for a cgroup manager when a rootless container has none."""

    def cgroup2_dir(self):
        return None

    def join_self(self, in_cgroup2=False):
        pass

    def destroy(self):
        pass

    def to_state(self):
        return None


def fork_into(cgroup2_dir: str | None) -> tuple[int, bool]:
    """os.fork, but the child is born in the cgroup2 directory `cgroup2_dir`
    when the kernel can do that (clone3 CLONE_INTO_CGROUP); returns (pid,
    cloned_into_it), pid 0 in the child. Falls back to a plain fork (and
    cloned False) for v1, an old kernel, a seccomp filter that refuses
    clone3, or a second thread in this process."""
    return clone_init(cgroup2_dir, False) or (os.fork(), False)


def _direct_ok(linux: dict) -> bool:
    """Whether init can be the first child itself (clone_init): not with a
    user namespace (created in a second step, after the parent maps its ids,
    and owning the namespaces made after it), a time namespace (offsets are
    set before any process enters it), a pid namespace joined by path
    (setns moves only the caller's later children), or network devices to
    move in."""
    if linux.get("netDevices"):
        # Moved in after GO, into the network namespace init makes before
        # it: only a separate init's INIT_PID tells the parent it exists.
        return False
    for n in linux.get("namespaces") or ():
        t = n.get("type")
        if t in ("user", "time") or (t == "pid" and n.get("path")):
            return False
    return True


def clone_init(cgroup2_dir: str | None, new_pid_ns: bool) -> tuple[int, bool] | None:
    """os.fork through clone3: the child is born in the cgroup2 directory
    `cgroup2_dir` when given and the kernel can (CLONE_INTO_CGROUP), and
    pid 1 of a new pid namespace when new_pid_ns (CLONE_NEWPID), so that it
    can be the container's init itself: one fork of this process less on
    create's critical path. Returns (pid, cloned_into_cgroup2), pid 0 in the
    child, or None where clone3 adds nothing or cannot do it (a second
    thread, an old kernel, a seccomp filter, a cgroup the kernel refuses
    without new_pid_ns): the caller forks as usual."""
    threading = sys.modules.get("threading")
    if not (cgroup2_dir or new_pid_ns) or (threading is not None and threading.active_count() != 1):
        return None
    from runtime import syscalls as sc
    flags = sc.CLONE_NEWPID if new_pid_ns else 0
    fd = -1
    if cgroup2_dir:
        try:
            fd = os.open(cgroup2_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            fd = -1
    try:
        if fd >= 0:
            try:
                return sc.clone3(flags | sc.CLONE_INTO_CGROUP, fd), True
            except OSError:
                pass
        if not flags:
            return None
        try:
            return sc.clone3(flags), False
        except OSError:
            return None
    finally:
        if fd >= 0:
            os.close(fd)


def _stage1(ctx_kw: dict, cfg: dict, join_cgroup) -> None:
    """The child's first steps; never returns.

    init's code is loaded here rather than before fork: on the other CPU,
    while the parent applies the cgroup's limits (1-1.5 ms off every
    create). The child is still in the host's namespaces, so this is also
    where everything init will import must be loaded: inside a user
    namespace the host's Python library may be unreadable, and after
    pivot_root it is out of reach (init.preload)."""
    try:
        from runtime import init
        init.preload(cfg, check_seccomp=False)
        ctx = init.Context(join_cgroup=join_cgroup, **ctx_kw)
    except BaseException as e:  # noqa: BLE001 - must reach the parent as an error
        from runtime import sync
        try:
            ctx_kw["chan"].send(sync.ERROR, msg=f"container init: cannot load pyrunc's init: {e}")
        except OSError:
            pass
        os._exit(1)
    init.stage1(ctx)


def _listen_fds() -> int:
    """How many fds systemd's socket activation passed to this process
    (sd_listen_fds(3): LISTEN_FDS fds from 3 on, meant for us when
    LISTEN_PID is our pid); they are handed on to the container's init,
    whose environment then says LISTEN_FDS=N, LISTEN_PID=1 (runc's rule:
    init is pid 1 of its namespace). 0 when there are none."""
    import posix
    env = posix.environ  # bytes keys; runtime._os has no environ
    fds, pid = env.get(b"LISTEN_FDS", b""), env.get(b"LISTEN_PID", b"")
    if not (fds.isdigit() and pid.isdigit()) or int(pid) != os.getpid():
        return 0
    return int(fds)


def _wants_limits(linux: dict) -> bool:
    res = linux.get("resources") or {}
    return any(v for k, v in res.items() if k != "devices")


def _write_id_maps(pid: int, linux: dict) -> None:
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


def _reap(pid: int) -> int:
    try:
        _, status = os.waitpid(pid, 0)
        return status
    except ChildProcessError:
        return 0


def _write_pid_file(path: str, pid: int) -> None:
    path = os.path.abspath(path)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.rename(tmp, path)


def _resources_with_default_devices(cfg: dict) -> dict:
    """linux.resources with runc's default device rules after the config's
    own. A node made from linux.devices gets no rule of its own, as in
    runc: linux.resources.devices alone decides whether it opens."""
    from runtime.cgroups.devices import with_runc_defaults
    res = dict(cfg["linux"].get("resources") or {})
    res["devices"] = with_runc_defaults(res.get("devices"))
    return res


def _exec_defaults(cfg: dict) -> dict:
    """What `exec` needs from the original config later."""
    linux = cfg["linux"]
    return {"process": {k: cfg["process"].get(k) for k in ("env", "user", "capabilities",
                                                           "noNewPrivileges", "apparmorProfile",
                                                           "rlimits", "cwd", "execCPUAffinity")},
            "seccomp": linux.get("seccomp"), "rootfs": cfg["_rootfs"]}


def _send_seccomp_fd(cfg: dict, data: dict, fds: list[int]) -> None:
    """Forward the seccomp notify fd to linux.seccomp.listenerPath with the
    container process state, as runtime-spec config-linux.md describes."""
    from runtime import sync
    sec = cfg["linux"]["seccomp"]
    path = sec.get("listenerPath")
    try:
        if not path:
            raise RuntimeFailure("linux.seccomp: SCMP_ACT_NOTIFY needs linux.seccomp.listenerPath")
        s = sync.unix_socket()
        try:
            try:
                s.connect(path)
            except OSError as e:
                # runc's words, which agents' tests look for
                raise RuntimeFailure(f"linux.seccomp.listenerPath {path}: failed to connect with seccomp "
                                     f"agent: {e.strerror or e}") from None
            pstate = {"ociVersion": cfg.get("ociVersion", "1.3.0"), "fds": ["seccompFd"],
                      "pid": data["pid"], "metadata": sec.get("listenerMetadata", ""),
                      "state": st.oci_state(dict(data, _dir="/nonexistent"), "creating")}
            sync.send_fds(s, json.dumps(pstate).encode(), fds[:1])
        except OSError as e:
            raise RuntimeFailure(f"linux.seccomp.listenerPath {path}: {e.strerror}") from None
        finally:
            s.close()
    finally:
        for fd in fds:
            os.close(fd)


def _cgroup_mounter(own_ns: bool, cgroup_state: dict | None, mounts: list[dict]):
    """Return the function init calls for a mount of type "cgroup".

    Everything is worked out here, in the parent: the host's hierarchies
    and, for each, the container's own cgroup directory. With a cgroup
    namespace, fresh cgroup filesystems show that directory as their root;
    without one (or where a user namespace forbids mounting a v1
    hierarchy) the directory itself is bind-mounted. A hierarchy the
    container has no cgroup in (rootless) is left empty, never the host's."""
    hier = _host_hierarchies(mounts)
    dirs = st.cgroup_dirs(cgroup_state)

    def own_dir(mnt: str) -> str | None:
        return next((d for d in dirs if d == mnt or d.startswith(mnt + "/")), None)

    def bind(src, dst, flags, base, label):
        from runtime import syscalls as sc
        sc.mount(src, dst, None, sc.MS_BIND | sc.MS_REC, None, label=label)
        if flags & sc.MS_RDONLY:
            sc.mount(None, dst, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | base, None, label=label)

    def mount_cgroups(rootfd: int, dest: str, target: str, flags: int, label: str) -> None:
        from runtime import rootfs
        from runtime import syscalls as sc
        base = flags & ~(sc.MS_RDONLY | sc.MS_BIND | sc.MS_REC | sc.MS_REMOUNT)
        v2root = next((h for h in hier if h[1] == "cgroup2" and h[0] == "/sys/fs/cgroup"), None)
        if v2root:
            src = own_dir(v2root[0])
            if own_ns:
                sc.mount("cgroup2", target, "cgroup2", flags, None, label=label)
            elif src:
                # `target` names the directory the bind covers: the
                # read-only remount needs the new mount, reopened.
                sc.mount(src, target, None, sc.MS_BIND | sc.MS_REC, None, label=label)
                if flags & sc.MS_RDONLY:
                    fd = rootfs.resolve(rootfd, dest)
                    try:
                        sc.mount(None, rootfs.fd_path(fd), None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | base,
                                 None, label=label)
                    finally:
                        os.close(fd)
            return
        sc.mount("tmpfs", target, "tmpfs", base, "mode=755", label=label)
        # The old fd still names the directory under the tmpfs: reopen.
        fd = rootfs.resolve(rootfd, dest)
        try:
            _mount_v1_tree(rootfs.fd_path(fd), flags, base, label)
        finally:
            os.close(fd)

    def _mount_v1_tree(target, flags, base, label):
        from runtime import syscalls as sc
        for mnt, fstype, opts, name in hier:
            sub = os.path.join(target, name)
            os.makedirs(sub, exist_ok=True)
            src = own_dir(mnt)
            if src is None:
                continue
            if own_ns:
                try:
                    sc.mount("cgroup", sub, fstype, flags & ~sc.MS_BIND, None if fstype == "cgroup2" else opts,
                             label=f"{label}/{name}")
                    continue
                except PermissionError:
                    pass  # a user namespace cannot mount a v1 hierarchy: bind it below
            bind(src, sub, flags, base, f"{label}/{name}")
        for name, link in _host_cgroup_links():
            try:
                os.symlink(link, os.path.join(target, name))
            except FileExistsError:
                pass
        if flags & sc.MS_RDONLY:
            sc.mount(None, target, None, sc.MS_REMOUNT | sc.MS_RDONLY | base, "mode=755", label=label)

    return mount_cgroups


def _missing_parents(dirs: list[str]) -> list[str]:
    """Ancestors of `dirs` that do not exist yet, deepest first."""
    out = []
    for d in dirs:
        p = os.path.dirname(d)
        while p not in ("/", "") and not os.path.exists(p):
            if p not in out:
                out.append(p)
            p = os.path.dirname(p)
    return sorted(out, key=lambda x: -x.count("/"))


def _host_hierarchies(mounts: list[dict]) -> list[tuple[str, str, str, str]]:
    """(mountpoint, fstype, controller options, name under /sys/fs/cgroup)
    of the host's cgroup mounts; `mounts` is read_mountinfo()'s."""
    return [(m["mountpoint"], m["fstype"], ",".join(m["controllers"]), os.path.basename(m["mountpoint"]))
            for m in mounts if m["mountpoint"].startswith("/sys/fs/cgroup")]


def _host_cgroup_links() -> list[tuple[str, str]]:
    out = []
    try:
        for n in os.listdir("/sys/fs/cgroup"):
            p = os.path.join("/sys/fs/cgroup", n)
            if os.path.islink(p):
                out.append((n, os.readlink(p)))
    except OSError:
        pass
    return out


# --- start / run ----------------------------------------------------------

def run(opts: Options, detach: bool = False, keep: bool = False) -> int:
    """create + start; in the foreground, wait for the container, forward
    signals, and delete it afterwards unless `keep` (runc's --keep: it stays,
    stopped, with its cgroup, until `delete`). Returns the exit code to use.
    A start that fails deletes the container in either case."""
    from runtime import sync
    from runtime.lifecycle import delete, start
    from runtime import syscalls as sc
    proc_terminal = False
    console_pair = None
    if not detach:
        # Become the reaper of init, which is orphaned when stage1 exits.
        sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
        try:
            with open(os.path.join(opts.bundle, "config.json"), "rb") as f:
                proc_terminal = bool((json.loads(f.read()).get("process") or {}).get("terminal"))
        except (OSError, ValueError):
            pass
        if proc_terminal and not opts.console_socket:
            console_pair = sync.socketpair()
    data = create(opts, foreground_console=console_pair[1] if console_pair else None)
    master = None
    if console_pair:
        console_pair[1].close()
        _, fds = sync.recv_fds(console_pair[0], 1024, 1)
        console_pair[0].close()
        master = fds[0]
    try:
        if not detach:
            forward = _install_forwarding(data["pid"])
        start(opts.root, opts.cid)
    except BaseException:
        try:
            delete(opts.root, opts.cid, force=True)
        except RuntimeFailure:
            pass
        raise
    if detach:
        return 0
    try:
        if master is not None:
            from runtime import tty
            status = tty.proxy(master, data["pid"], forward)
        else:
            status = _wait_init(data["pid"])
        log.debug("process exited", pid=data["pid"], status=status)
    finally:
        if not keep:
            try:
                delete(opts.root, opts.cid, force=True)
            except RuntimeFailure as e:
                log.warning(str(e))
    return status


_FORWARDED = [signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1,
              signal.SIGUSR2, signal.SIGWINCH, signal.SIGCONT, signal.SIGTSTP, signal.SIGTTIN,
              signal.SIGTTOU, signal.SIGALRM, signal.SIGPIPE]


def _install_forwarding(pid: int):
    """Forward the signals a user sends to `pyrunc run` to the container's init."""
    def fwd(signum, _frame):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass
    for s in _FORWARDED:
        signal.signal(s, fwd)
    return fwd


def _wait_init(pid: int) -> int:
    """Reap children until init exits; return its status as a shell would."""
    from runtime.lifecycle import exit_code
    while True:
        try:
            p, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 255
        if p == pid:
            return exit_code(status)
