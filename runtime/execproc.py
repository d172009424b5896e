"""`pyrunc exec`: start another process inside a running container.

A child of ours (stage1) becomes non-dumpable, joins the container's
namespaces (user first; the namespace files are opened before the fork),
and sets up the process's identity (terminal, rlimits, caps, user,
no_new_privs, seccomp, cwd) with the same code as the container's init.
Joining a pid namespace only moves children, so stage1 stays in the
host's: no process in the container ever sees it. It then execs
pyrunc-exec (exechelper.c) from a sealed memfd, which forks the process
into the container's pid namespace as our own child (CLONE_PARENT),
reports its pid, and execs it once we say it is in its cgroup. So
nothing in the container can reach the host's interpreter through
/proc/PID/exe. A close-on-exec pipe carries a setup error back to the
caller; its EOF without a message means execve succeeded.
"""
from runtime.toolkit import fastjson as json
from runtime.toolkit import os_lite as os
import _signal as signal  # the C module: `signal` imports enum

from runtime import spawn
from runtime import state as st
from runtime.errors import InitFailure, InvalidState, RuntimeFailure
from runtime import caps, cgroups, exechelper, init, log, sync
from runtime import syscalls as sc
# Optional edges, imported where used: runtime.validate (only for --process)
# and tty (only for a terminal).


class ExecOptions:
    def __init__(self, process: str | None = None, args: list[str] | None = None, detach: bool = False,
                 pid_file: str | None = None, console_socket: str | None = None, tty: bool = False,
                 cwd: str | None = None, env: list[str] | None = None, user: str | None = None,
                 additional_gids: list[str] | None = None, caps: list[str] | None = None,
                 no_new_privs: bool = False, preserve_fds: int = 0, ignore_paused: bool = False,
                 cgroup: list[str] | None = None, console=None):
        # console: a connected socket to send the terminal's master to, in
        # place of console_socket (the shim's in-process exec).
        self.__dict__.update(locals())
        del self.__dict__["self"]


def sub_cgroup_paths(args: list[str]) -> dict[str, str]:
    """--cgroup values as runc 1.1 reads them: PATH (one value only: every
    controller) or CONTROLLER[,CONTROLLER]:PATH; controller "" -> path."""
    paths: dict[str, str] = {}
    for c in args:
        cs = c.split(":")
        if len(cs) > 2:
            raise RuntimeFailure(f"invalid --cgroup argument: {c}")
        if len(cs) == 1:
            if len(args) != 1:
                raise RuntimeFailure(f"invalid --cgroup argument: {c} (missing <controller>: prefix)")
            paths[""] = c
        else:
            for ctrl in cs[0].split(","):
                paths[ctrl] = cs[1]
    return paths


def sub_cgroup_dirs(cg: dict | None, paths: dict[str, str]) -> list[str]:
    """The directories an exec with --cgroup joins: the container's cgroup
    in each hierarchy (v1 controllers, and "" for the unified one of a
    hybrid or v2 host) with the sub-paths applied; a changed one after the
    others, so that where two controllers share a hierarchy the sub-cgroup
    is joined last and holds the process."""
    if not cg:
        raise RuntimeFailure("--cgroup: the container has no cgroup")
    if cg.get("version") == "v2":
        base = {"": cg["path"]}
    else:
        base = dict(cg.get("paths") or {})
        if cg.get("unified"):
            base[""] = cg["unified"]
    targets = dict(base)
    # A path for controller "" is one for all of them (runc: the others are
    # then not looked at).
    items = [(k, paths[""]) for k in base] if "" in paths else list(paths.items())
    for ctrl, add in items:
        top = base.get(ctrl)
        if top is None:
            raise RuntimeFailure(f"unknown controller {ctrl} in SubCgroupPaths")
        sub = os.path.normpath(top + "/" + add)
        if sub != top and not sub.startswith(top.rstrip("/") + "/"):
            raise RuntimeFailure(f"{add} is not a sub cgroup path")
        targets[ctrl] = sub
    same = [d for k, d in targets.items() if d == base[k]]
    moved = [d for k, d in targets.items() if d != base[k]]
    return list(dict.fromkeys(same + moved))


def _join_dirs(dirs: list[str]) -> None:
    """Move the calling process into each of `dirs` (cgroup.procs, "0": the
    writer); a failure names the file, as runc's does."""
    pid = os.getpid()
    for d in dirs:
        path = d + "/cgroup.procs"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)
        except OSError as e:
            why = os.strerror(e.errno)
            raise RuntimeFailure(f"error adding pid {pid} to cgroups: write {path}: {why[:1].lower()}{why[1:]}") \
                from None


def build_process(data: dict, o: ExecOptions) -> dict:
    """The process object to run: --process FILE, or the container's own
    process config with the command line's overrides (as runc does)."""
    if o.process:
        try:
            with open(o.process) as f:
                proc = json.loads(f.read())
        except OSError as e:
            raise RuntimeFailure(f"--process {o.process}: {e.strerror}") from None
        except ValueError as e:
            raise RuntimeFailure(f"--process {o.process}: invalid JSON: {e}") from None
        from runtime.validate import validate_config
        # Validate as the process member of a minimal config, so errors name the field.
        validate_config({"ociVersion": "1.3.0", "root": {"path": "rootfs"}, "process": proc})
    else:
        if not o.args:
            raise RuntimeFailure("exec: a command to run is required (or --process)")
        base = (data.get("config") or {}).get("process") or {}
        proc = {k: v for k, v in base.items() if v is not None}
        proc["args"] = list(o.args)
        proc["terminal"] = o.tty
        proc.setdefault("cwd", "/")
    if o.tty:
        proc["terminal"] = True
    if o.env:
        proc["env"] = list(proc.get("env") or []) + list(o.env)
    if o.cwd:
        proc["cwd"] = o.cwd
    if o.user:
        u, _, g = o.user.partition(":")
        try:
            proc["user"] = dict(proc.get("user") or {}, uid=int(u), gid=int(g) if g else 0)
        except ValueError:
            raise RuntimeFailure(f"--user {o.user!r}: want UID[:GID] as numbers") from None
    if o.additional_gids:
        try:
            proc.setdefault("user", {"uid": 0, "gid": 0})["additionalGids"] = [int(x) for x in o.additional_gids]
        except ValueError:
            raise RuntimeFailure("--additional-gids: want numbers") from None
    if o.caps:
        c = proc.setdefault("capabilities", {})
        for k in ("bounding", "effective", "permitted", "ambient", "inheritable"):
            if k == "inheritable" and k not in c:
                continue
            c[k] = list(dict.fromkeys(list(c.get(k) or []) + list(o.caps)))
    if o.no_new_privs:
        proc["noNewPrivileges"] = True
    if not proc.get("args"):
        raise RuntimeFailure("process.args: must not be empty")
    bad = caps.unknown_error(proc.get("capabilities"), o.caps or ())
    if bad:
        raise RuntimeFailure(bad)
    return proc


def parse_cpu_list(text: str, field: str) -> set[int]:
    """'0-3,7' -> {0, 1, 2, 3, 7} (the kernel's cpu list format); errors name
    `field`."""
    cpus: set[int] = set()
    for part in text.split(","):
        lo, dash, hi = part.strip().partition("-")
        try:
            a = int(lo)
            b = int(hi) if dash else a
        except ValueError:
            raise RuntimeFailure(f"{field}: {text!r} is not a CPU list such as 0-3,7") from None
        if a < 0 or b < a:
            raise RuntimeFailure(f"{field}: {text!r} is not a CPU list such as 0-3,7")
        cpus.update(range(a, b + 1))
    return cpus


def _cpu_affinity(proc: dict) -> tuple[set[int] | None, set[int] | None]:
    """(initial, final) of process.execCPUAffinity; None where not set."""
    aff = proc.get("execCPUAffinity") or {}
    return tuple(parse_cpu_list(aff[k], f"process.execCPUAffinity.{k}") if aff.get(k) else None
                 for k in ("initial", "final"))


def _set_affinity(pid: int, cpus: set[int], field: str) -> None:
    try:
        os.sched_setaffinity(pid, cpus)
    except ProcessLookupError:
        pass  # the process is gone; its reason comes through the error pipe
    except OSError as e:
        raise RuntimeFailure(f"{field}: cannot set CPU affinity {sorted(cpus)}: {e.strerror}") from None


def exec_process(root: str, cid: str, o: ExecOptions) -> int:
    """Run the process; with --detach return once it execs (0), else wait and
    return its exit code."""
    exec_pid, pair = _launch(root, cid, o)
    if o.detach:
        return 0
    fwd = spawn.install_forwarding(exec_pid)
    if pair is not None:
        pair[1].close()
        _, fds = sync.recv_fds(pair[0], 1024, 1)
        pair[0].close()
        from runtime import tty
        return tty.proxy(fds[0], exec_pid, fwd)
    return _wait(exec_pid)


def exec_detached(root: str, cid: str, o: ExecOptions) -> int:
    """exec --detach, returning the process's pid once it has exec'd: our
    child, whose exit status is ours to reap (the shim's call)."""
    o.detach = True
    return _launch(root, cid, o)[0]


def _launch(root: str, cid: str, o: ExecOptions):
    """Start the process; returns its pid and, for a terminal without a
    console socket, the socketpair its master comes through."""
    data = st.load(root, cid)
    status = st.status(data)
    if status == "stopped":
        raise InvalidState("cannot exec in a stopped container")
    if status == "paused" and not o.ignore_paused:
        raise InvalidState("cannot exec in a paused container (use --ignore-paused)")
    proc = build_process(data, o)
    sub_dirs = sub_cgroup_dirs(data.get("cgroup"), sub_cgroup_paths(o.cgroup)) if o.cgroup else None
    if proc.get("terminal") and o.detach and not o.console_socket and o.console is None:
        raise RuntimeFailure("cannot allocate tty if runc will detach without setting console socket")
    if not proc.get("terminal") and o.console_socket:
        raise RuntimeFailure("cannot use console socket if runc will not detach or allocate tty")
    initial_cpus, final_cpus = _cpu_affinity(proc)
    pid = data["pid"]
    low = 3 + o.preserve_fds
    console_fd = None
    pair = None
    if proc.get("terminal"):
        if o.console_socket:
            console_fd = spawn.connect_console(o.console_socket, low)
        elif o.console is not None:
            console_fd = spawn.dup_above(os.dup(o.console.fileno()), low)
        else:
            pair = sync.socketpair()
            console_fd = spawn.dup_above(os.dup(pair[1].fileno()), low)
    if not o.detach:
        sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
    # Namespace files are opened before forking: after joining the mount
    # namespace /proc/PID would name a different (or no) process.
    order = sorted(data.get("namespaces") or [], key=lambda t: (t != "user", t == "mount"))
    ns_fds = []
    for t in order:
        fd = os.open(f"/proc/{pid}/ns/{sc.NAMESPACE_PROC_NAMES[t]}", os.O_RDONLY | os.O_CLOEXEC)
        ns_fds.append((t, spawn.dup_above(fd, low)))
    parent_chan, child_chan = sync.Channel.pair()
    spawn.move_sock_above(child_chan, low)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    err_w = spawn.dup_above(err_w, low)
    # The container's seccomp profile applies to every process in it.
    cfg = {"process": proc, "linux": {"seccomp": (data.get("config") or {}).get("seccomp")}}
    init.preload(cfg)
    helper_fd = exechelper.sealed_fd(low)
    m = cgroups.manager_from_state(data["cgroup"]) if data.get("cgroup") else None
    # execCPUAffinity.initial applies before the process enters the
    # container's cgroup: a stage1 born in it (v2: its cpuset) would get
    # `initial` inside the cpuset instead, so it is forked plainly then;
    # so is one that goes to sub-cgroups (--cgroup).
    target = m.cgroup2_dir() if m is not None and initial_cpus is None and sub_dirs is None else None
    child, cloned = spawn.fork_into(target)
    if child == 0:
        parent_chan.close()
        os.close(err_r)
        if sub_dirs is not None:
            join = lambda: _join_dirs(sub_dirs)  # noqa: E731
        else:
            join = (lambda: m.join_self(cloned)) if m is not None else None
        _stage1(ns_fds, child_chan, err_w, proc, cfg, console_fd, o.preserve_fds, cid, data, join, helper_fd)
    # --debug: runc's lines at the same steps, in its words (its tests look
    # for them): setup forked, the process forked in the container, exec.
    log.debug(f"=> nsexec container setup (pid {child})")
    child_chan.close()
    os.close(err_w)
    os.close(helper_fd)
    for _, fd in ns_fds:
        os.close(fd)
    if console_fd is not None:
        os.close(console_fd)
    try:
        # execCPUAffinity: the new process runs on `initial` until it is in
        # the container's cgroup (entering a cpuset resets its affinity),
        # then on `final` if given, else on what the kernel chose. stage1
        # joins the cgroup itself after GO (join_self: no RCU grace period),
        # before the namespaces and before it forks the process.
        if initial_cpus is not None:
            _set_affinity(child, initial_cpus, "process.execCPUAffinity.initial")
        parent_chan.send(sync.GO)
        exec_pid = 0
        while True:
            # Until both children closed the channel: the process itself may
            # still send its seccomp fd after stage1 reported its pid.
            msg, fds = parent_chan.recv(eof_ok=bool(exec_pid))
            if msg is None:
                break
            if msg["type"] == sync.ERROR:
                raise InitFailure(msg.get("msg", "exec failed"))
            if msg["type"] == sync.SECCOMP_FD:
                spawn.send_seccomp_fd({"linux": {"seccomp": cfg["linux"]["seccomp"]}}, data, fds)
                parent_chan.send(sync.SECCOMP_DONE)
                continue
            if msg["type"] == sync.INIT_PID:
                exec_pid = msg["pid"]
                log.debug(f"child process in init() (pid {exec_pid})")
                if final_cpus is not None:
                    _set_affinity(exec_pid, final_cpus, "process.execCPUAffinity.final")
                try:
                    parent_chan.send(sync.APPLIED)
                    log.debug("setns_init: about to exec")
                except InitFailure:
                    pass  # the process is gone; its reason comes through the error pipe
    except BaseException:
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass
        spawn.reap(child)
        os.close(err_r)
        raise
    finally:
        parent_chan.close()
    spawn.reap(child)
    # Wait for execve (EOF) or an error message.
    chunks = []
    while True:
        b = os.read(err_r, 4096)
        if not b:
            break
        chunks.append(b)
    os.close(err_r)
    if chunks:
        if not o.detach:
            _wait(exec_pid)
        raise InitFailure(b"".join(chunks).decode(errors="replace"))
    if o.pid_file:
        spawn.write_pid_file(o.pid_file, exec_pid)
    return exec_pid, pair


def _wait(pid: int) -> int:
    return spawn.wait_init(pid)


def _stage1(ns_fds, chan, err_w, proc, cfg, console_fd, preserve_fds, cid, data, join_cgroup,
            helper_fd) -> None:
    """The child: join the container, set up the process, hand over to
    pyrunc-exec. Never returns."""
    try:
        sc.prctl(sc.PR_SET_DUMPABLE, 0)
        chan.expect(sync.GO)
        if join_cgroup is not None:
            join_cgroup()  # before setns: the cgroup namespace is rooted in the container's
        init.set_oom_score_adj(proc)  # the container's /proc has no /proc/self for us
        for t, fd in ns_fds:
            sc.setns(fd, sc.NAMESPACE_FLAGS[t], label=f"{t} namespace of container {cid}")
            os.close(fd)
        init.clean_process_state(preserve_fds)
        ctx = init.Context(cid=cid, config=cfg, bundle=data["bundle"], rootfs="/", chan=chan,
                           start_fd=-1, helper_fd=helper_fd, console_fd=console_fd,
                           preserve_fds=preserve_fds, cgroup_mount=None)
        if proc.get("terminal"):
            # The process takes the terminal as its controlling one itself,
            # in its own session (pyrunc-exec): this process's session ends
            # when it exits.
            init.setup_terminal(ctx, proc, controlling=False)
        init.setup_process(ctx, proc, {"seccomp": cfg["linux"].get("seccomp")}, oom=False)
        env = list(proc.get("env") or [])
        path = init.lookup(proc["args"][0], env)
        argv = exechelper.spawn_argv(chan.fileno(), err_w, proc.get("apparmorProfile"),
                                     bool(proc.get("terminal")), path, proc["args"])
        os.set_inheritable(chan.fileno(), True)
        os.set_inheritable(err_w, True)
        os.execve(helper_fd, argv, init.env_dict(env))
    except BaseException as e:  # noqa: BLE001
        try:
            chan.send(sync.ERROR, msg=init.describe(e))
        except OSError:
            pass
        os._exit(1)
