"""Container lifecycle operations: create and run.

Each public function is one CLI verb's library call. They raise
RuntimeFailure (or OSError) with a one-line message; the CLI maps those to
exit codes and log lines. The verbs on an existing container (state, list,
start, kill, delete) live in runtime.lifecycle, which stays light to
import (and which create itself does not load).
"""
from runtime.toolkit import fastjson as json
from runtime.toolkit import os_lite as os
import _signal as signal  # the C module: `signal` imports enum
import sys
import time

from runtime import state as st
from runtime import errors
from runtime.errors import RuntimeFailure
from runtime import config, log, netdev, spawn, userns
from runtime.cgroups import mounts as cgmounts
from runtime import cgroups, exechelper, sync
from runtime import syscalls as sc
from runtime.cgroups.base import NullManager
from runtime.cgroups.common import read_mountinfo
from runtime.cgroups.devices import resources_with_runc_defaults
# Optional edges, imported inside the functions that use them: init (loaded
# by the child only, _stage1); seccomp, hooks and tty (only when the config
# has them); runtime.lifecycle (only by run and by a failed create's abort).


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


def now_rfc3339() -> str:
    """Now in UTC as Go's time.RFC3339Nano writes it (runc's "created"):
    nanoseconds without their trailing zeros."""
    ns = time.time_ns()
    frac = f".{ns % 10**9:09d}".rstrip("0").rstrip(".")
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + frac + "Z"


# --- create -------------------------------------------------------------

def create(opts: Options, *, foreground_console=None) -> dict:
    """Create the container and leave its init blocked before exec.

    Returns the saved state. On any failure everything made so far (state
    dir, cgroup, processes) is removed before the exception propagates.
    `foreground_console` is a connected socket to use as the console socket
    (the foreground `run` with a terminal passes one end of a socketpair)."""
    st.validate_id(opts.cid)
    cfg = config.load_bundle(opts.bundle)
    proc = cfg.get("process")
    if not proc:
        raise RuntimeFailure("config.json: process: required to create a container")
    if proc.get("terminal") and not opts.console_socket and foreground_console is None:
        raise RuntimeFailure("cannot allocate tty if runc will detach without setting console socket")
    if not proc.get("terminal") and opts.console_socket:
        raise RuntimeFailure("cannot use console socket if runc will not detach or allocate tty")
    if opts.systemd_cgroup:
        config.check_systemd()
    config.check_config(cfg)
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


class _Builder:
    """State of one `create` while it runs; abort() undoes all of it.

    build() runs the phases in order; the parent <-> child messages of
    sync_until_ready are in the order runtime/sync.py's table gives."""

    def __init__(self, opts: Options, cfg: dict, cdir: str, lock):
        self.lock = lock
        self.opts = opts
        self.cfg = cfg
        self.cdir = cdir
        self.nstypes = {n["type"] for n in cfg["linux"].get("namespaces") or ()}
        self.cgroup = None
        self.cgroup_parents: list[str] = []
        self.cgroup_rest = False  # create_rest() still to do, after the fork
        self.mounts: list = []    # the host's mount table, read once
        self.stage1 = 0
        self.init_pid = 0
        self.hooks_started = False
        self.direct = False  # init is our own child (clone_init), not stage1's
        # A pid namespace joined by path is entered only by pyrunc-exec
        # (init.py's outside mode): init's pid comes after READY.
        self.outside = any(n["type"] == "pid" and n.get("path") for n in cfg["linux"].get("namespaces") or ())

    def build(self, foreground_console) -> dict:
        self.open_cgroup()
        fds = self.prepare_fds(foreground_console)
        chan = self.spawn(fds)
        try:
            data = self.sync_until_ready(chan)
        finally:
            chan.close()
        if self.opts.pid_file:
            spawn.write_pid_file(self.opts.pid_file, self.init_pid)
        data["_dir"] = self.cdir
        return data

    # 1. The cgroup manager and the first state record ------------------

    def open_cgroup(self) -> None:
        opts, linux = self.opts, self.cfg["linux"]
        # One read of the mount table, for the cgroup paths and for the
        # hierarchies a "cgroup" mount shows the container (cgroup_mounter).
        self.mounts = read_mountinfo()
        self.cgroup = cgroups.open_manager(linux.get("cgroupsPath"), opts.cid,
                                           systemd=opts.systemd_cgroup, mounts=self.mounts)
        # Parent directories this create makes are ours to remove on delete.
        self.cgroup_parents = cgmounts.missing_parents(st.cgroup_dirs(self.cgroup.to_state()))
        # Saved before the cgroup or any process exists, so `delete --force`
        # can clean up after a create that was killed at any point; kept as
        # state.FIRST_FILE, it names the cgroup if the state file is damaged.
        early = {"id": opts.cid, "pid": 0, "bundle": opts.bundle, "rootfs": self.cfg["_rootfs"],
                 "created": now_rfc3339(), "cgroup": self.cgroup.to_state(),
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
            if os.geteuid() == 0 or config.wants_limits(linux):
                raise
            log.debug(f"rootless: running without a cgroup ({e})")
            self.cgroup = NullManager()
            st.save_first(self.cdir, dict(early, cgroup=None))

    # 2. Everything the child inherits: fds above the preserved range -----

    def prepare_fds(self, foreground_console) -> dict:
        opts, cfg = self.opts, self.cfg
        # init waits in accept() on this socket until `start` connects. A
        # socket bound here before pivot_root needs no /proc access later,
        # which a non-dumpable init running as another uid would not have.
        start_sock = sync.unix_socket()
        st.at_start_sock(start_sock.bind, self.cdir)
        start_sock.listen(1)
        # Socket activation: fds the caller got from systemd go first, then
        # --preserve-fds after them, as with runc.
        listen_fds = spawn.listen_fds()
        preserve = listen_fds + opts.preserve_fds
        low = 3 + preserve
        # Internal fds live above the preserved range so they never collide
        # with an fd the caller asked us to pass on.
        fds = {"start": spawn.dup_above(start_sock.detach(), low), "console": None}
        fds["parent_chan"], fds["child_chan"] = sync.Channel.pair()
        spawn.move_sock_above(fds["child_chan"], low)
        if opts.console_socket:
            fds["console"] = spawn.connect_console(opts.console_socket, low)
        elif foreground_console is not None:
            fds["console"] = spawn.dup_above(os.dup(foreground_console.fileno()), low)
        fds["idmap"] = userns.idmap_userns_fds(cfg, low)
        fds["helper"] = exechelper.sealed_fd(low)
        fds["ctx"] = dict(cid=opts.cid, config=cfg, bundle=opts.bundle, rootfs=cfg["_rootfs"],
                          idmap_fds=fds["idmap"], helper_fd=fds["helper"],
                          chan=fds["child_chan"], start_fd=fds["start"], console_fd=fds["console"],
                          preserve_fds=preserve, listen_fds=listen_fds, no_pivot=opts.no_pivot,
                          no_new_keyring=opts.no_new_keyring,
                          cgroup_mount=cgmounts.cgroup_mounter("cgroup" in self.nstypes, self.cgroup.to_state(),
                                                               self.mounts),
                          want_sources=userns.wants_mount_sources(cfg, self.nstypes))
        return fds

    # 3. The child: init itself where it can be, else stage1 --------------

    def spawn(self, fds: dict):
        cfg, linux = self.cfg, self.cfg["linux"]
        config.drop_ungrantable_caps(cfg, "user" in self.nstypes)
        if linux.get("seccomp"):
            # Compiled here: a profile that libseccomp or this kernel refuses
            # is a config error, raised before any process exists; the child
            # inherits the loaded library (init.preload imports the rest).
            from runtime import seccomp
            seccomp.compile(linux["seccomp"])
        sys.stdout.flush()
        sys.stderr.flush()
        forked = (spawn.clone_init(self.cgroup.cgroup2_dir(), "pid" in self.nstypes)
                  if spawn.direct_ok(linux) else None)
        self.direct = forked is not None
        if forked is None:
            forked = spawn.fork_into(self.cgroup.cgroup2_dir())
        pid, cloned = forked
        if pid == 0:
            # The flock belongs to this create; a forked copy would hold it
            # until exec and block `start`.
            self.lock.close()
            fds["parent_chan"].close()
            fds["ctx"]["direct"] = self.direct
            _stage1(fds["ctx"], cfg, lambda: self.cgroup.join_self(cloned))  # never returns
        if self.direct:
            self.init_pid = pid
        else:
            self.stage1 = pid
        # --debug: runc's debug lines at the same steps, in its words (its
        # tests look for them): setup forked, init running, init done.
        log.debug(f"=> nsexec container setup (pid {pid})")
        fds["child_chan"].close()
        for fd in (fds["start"], fds["helper"], fds["console"], *fds["idmap"].values()):
            if fd is not None:
                os.close(fd)
        return fds["parent_chan"]

    # 4. Limits, the child's messages until READY, the state record -------

    def sync_until_ready(self, chan) -> dict:
        cfg, linux = self.cfg, self.cfg["linux"]
        # The v1 directories are made while stage1 loads init (on the other
        # CPU): it joins them itself, first thing after GO and before it
        # forks init (see join_self and fork_into: neither waits for the
        # RCU grace period a cgroup.procs write from here would).
        # The limits go on after GO, while the child makes the namespaces
        # and init mounts the rootfs (runc, too, sets them while its init
        # prepares the rootfs): init cannot exec anything before APPLIED,
        # which is sent after them. Two exceptions go first. The device
        # rules: init makes device nodes and opens them, and v1 rules are
        # written as a deny-all followed by the allows, so they must be
        # whole before the child joins the v1 devices hierarchy at GO (on
        # v2 the child is born in the cgroup, but touches no device before
        # GO). And a realtime budget: a realtime task (a caller running
        # SCHED_FIFO) can only join a cgroup that already has one.
        res = None
        if not self.cgroup.null:
            if self.cgroup_rest:
                self.cgroup.create_rest()
            res = resources_with_runc_defaults(linux.get("resources"))
            if (res.get("cpu") or {}).get("realtimeRuntime"):
                self._apply(res)
                res = None
            else:
                self._apply({"devices": res.pop("devices")})
        chan.send(sync.GO)
        if res is not None:
            self._apply(res)
        if not self.direct:
            pid = self.stage1
            msg = chan.next()
            if msg["type"] == sync.USERNS_CREATED:
                userns.write_id_maps(pid, linux)
                chan.send(sync.USERNS_MAPPED)
                msg = chan.next()
            if msg["type"] == sync.MOUNT_SOURCES:
                userns.send_mount_sources(chan, pid, cfg)
                msg = chan.next()
            if msg["type"] != sync.INIT_PID:
                raise errors.InitFailure(f"sync: unexpected {msg['type']!r}")
            self.init_pid = msg["pid"]
            if not self.outside:
                spawn.reap(pid)
                self.stage1 = 0
        if linux.get("netDevices"):
            netdev.move_net_devices(linux["netDevices"], self.init_pid)
        # init waits for this before its hooks and pivot_root: it is in
        # its cgroup, under its limits, with its network devices.
        chan.send(sync.APPLIED)
        data = self.state_record()
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
                spawn.send_seccomp_fd(cfg, data, msg["_fds"])
                chan.send(sync.SECCOMP_DONE)
                continue
            if msg["type"] != sync.READY:
                raise errors.InitFailure(f"sync: unexpected {msg['type']!r}")
            log.debug("init: closing the pipe to signal completion")
            break
        if self.outside:
            # stage1 set up the container from outside its pid namespace
            # and has now forked init into it (init.py's outside mode).
            self.init_pid = chan.expect(sync.INIT_PID)["pid"]
            spawn.reap(self.stage1)
            self.stage1 = 0
            data.update(pid=self.init_pid, start_time=st.proc_start_time(self.init_pid))
            st.save(self.cdir, data)
        return data

    def state_record(self) -> dict:
        opts, cfg = self.opts, self.cfg
        return {
            "id": opts.cid, "pid": self.init_pid, "start_time": st.proc_start_time(self.init_pid),
            "bundle": opts.bundle, "rootfs": cfg["_rootfs"], "created": now_rfc3339(),
            "owner": "", "ociVersion": cfg.get("ociVersion"),
            "annotations": cfg.get("annotations") or {},
            "cgroup": self.cgroup.to_state(),
            "cgroup_parents": self.cgroup_parents,
            "hooks": {k: v for k, v in (cfg.get("hooks") or {}).items() if k in ("poststart", "poststop")},
            "namespaces": sorted(self.nstypes),
            "config": config.exec_defaults(cfg),
        }

    def _apply(self, resources: dict) -> None:
        for w in self.cgroup.apply(resources) or ():
            log.warning(w)

    def abort(self) -> None:
        """Undo a failed create: kill our processes, remove cgroup and state."""
        from runtime.lifecycle import remove_parents, rmtree, wait_gone
        for pid in (self.init_pid, self.stage1):
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self.stage1:
            spawn.reap(self.stage1)
        if self.init_pid and self.direct:
            spawn.reap(self.init_pid)  # our child: no zombie left for whoever inherits it
        elif self.init_pid:
            wait_gone(self.init_pid)
        if self.cgroup is not None:
            try:
                self.cgroup.destroy()
                remove_parents(self.cgroup_parents)
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
        rmtree(self.cdir)


def _stage1(ctx_kw: dict, cfg: dict, join_cgroup) -> None:
    """The child's first steps; never returns.

    init's code is loaded here rather than before fork: on the other CPU,
    while the parent applies the cgroup's limits (off create's critical
    path). The child is still in the host's namespaces, so this is also
    where everything init will import must be loaded: inside a user
    namespace the host's Python library may be unreadable, and after
    pivot_root it is out of reach (init.preload)."""
    try:
        from runtime import init
        init.preload(cfg, check_seccomp=False)
        ctx = init.Context(join_cgroup=join_cgroup, **ctx_kw)
    except BaseException as e:  # noqa: BLE001 - must reach the parent as an error
        try:
            ctx_kw["chan"].send(sync.ERROR, msg=f"container init: cannot load pyrunc's init: {e}")
        except OSError:
            pass
        os._exit(1)
    init.stage1(ctx)


# --- start / run ----------------------------------------------------------

def run(opts: Options, detach: bool = False, keep: bool = False) -> int:
    """create + start; in the foreground, wait for the container, forward
    signals, and delete it afterwards unless `keep` (runc's --keep: it stays,
    stopped, with its cgroup, until `delete`). Returns the exit code to use.
    A start that fails deletes the container in either case."""
    from runtime.lifecycle import delete, start
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
            forward = spawn.install_forwarding(data["pid"])
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
            status = spawn.wait_init(data["pid"])
        log.debug("process exited", pid=data["pid"], status=status)
    finally:
        if not keep:
            try:
                delete(opts.root, opts.cid, force=True)
            except RuntimeFailure as e:
                log.warning(str(e))
    return status


