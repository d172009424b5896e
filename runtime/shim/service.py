"""The Task service (containerd.task.v2.Task) over runtime's library.

Every container operation is the call the pyrunc CLI makes for the same
verb: runtime.container.create, runtime.lifecycle.start/kill/delete/state,
runtime.execproc.exec_detached, runtime.manage.pause/resume/pids/update,
so a container runs exactly as under `pyrunc create/start`, and its state
lives under the same --root (`pyrunc --root ROOT list` shows it). What the
shim adds is what the runc shim adds around runc: stdio, the rootfs
mounts containerd passes, the processes' states and exit statuses (the
shim is their parent or subreaper and reaps them), events, and OOM
notifications.

Process states follow the runc shim's: created -> running -> stopped,
with paused read from the container; the errors containerd tells apart
carry their gRPC codes (not found, already exists, failed precondition),
and a runtime failure comes back as "OCI runtime VERB failed: MESSAGE",
the message pyrunc prints for the same failure.

Exit statuses: a process's status is taken only by the loop's reaper
(SIGCHLD, waitpid(-1)); before a library call that would wait for a
process itself (delete of a created container), the shim kills and reaps
it first, so no status is lost to the library.
"""
from __future__ import annotations

import _signal as signal  # the C module: `signal` imports enum
import time

from runtime.toolkit import fastjson as json
from runtime.toolkit import os_lite as os

from runtime import cgroups
from runtime import container as rcontainer
from runtime import execproc, lifecycle, manage
from runtime import state as rstate
from runtime import errors as rerrors
from runtime import rootfs as rrootfs
from runtime import syscalls as sc
from runtime import sync as rsync
from runtime import log
from runtime.version import VERSION
from runtime.shim import messages as pb
from runtime.shim import ttrpc
from runtime.shim.bundle import OPTIONS_FILE, runtime_root, unmount_rootfs
from runtime.shim.ttrpc import Error
from runtime.shim.stdio import Stdio, StdioError

TASK = "containerd.task.v2.Task"
EVENTS = "containerd.services.events.ttrpc.v1.Events"
RUNC_OPTIONS = "containerd.runc.v1.Options"
_DEFER = object()

_STATUS = {"created": 1, "running": 2, "stopped": 3, "paused": 4, "pausing": 5}


def _runtime_error(verb: str, e: BaseException) -> Error:
    return Error(ttrpc.UNKNOWN, f"OCI runtime {verb} failed: {e}")


def _ts(msg, ns_time: int | None) -> None:
    if ns_time:
        msg.seconds, msg.nanos = divmod(ns_time, 10**9)


def exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


class Proc:
    """The init process or an exec'd one."""

    def __init__(self, container: "Container", exec_id: str, stdin: str, stdout: str, stderr: str,
                 terminal: bool, spec_file: str | None = None):
        self.container = container
        self.exec_id = exec_id
        self.io = (stdin, stdout, stderr)
        self.terminal = terminal
        self.spec_file = spec_file
        self.stdio: Stdio | None = None
        self.pid = 0
        self.state = "created"
        self.exit_status = 0
        self.exited_at = 0
        self.waiters: list = []

    @property
    def ident(self) -> str:
        return self.exec_id or self.container.id


class Container:
    def __init__(self, cid: str, bundle: str, root: str, opts: dict):
        self.id = cid
        self.bundle = bundle
        self.root = root
        self.opts = opts
        self.init: Proc | None = None
        self.execs: dict[str, Proc] = {}
        self.oom = None
        self.own_pid_ns = True


class Service:
    def __init__(self, loop, namespace: str, events_address: str, on_empty=None):
        self.loop = loop
        self.namespace = namespace
        self.containers: dict[str, Container] = {}
        self.by_pid: dict[int, Proc] = {}
        self.events = ttrpc.Client(events_address, timeout=5.0) if events_address else None
        self.queue: list = []
        self.retry_armed = False
        self.on_empty = on_empty
        self.methods = {
            "Create": ("CreateTaskRequest", self.create), "Start": ("StartRequest", self.start),
            "Delete": ("DeleteRequest", self.delete), "Exec": ("ExecProcessRequest", self.exec),
            "ResizePty": ("ResizePtyRequest", self.resize_pty), "CloseIO": ("CloseIORequest", self.close_io),
            "State": ("StateRequest", self.state), "Pids": ("PidsRequest", self.pids),
            "Pause": ("PauseRequest", self.pause), "Resume": ("ResumeRequest", self.resume),
            "Kill": ("KillRequest", self.kill), "Update": ("UpdateTaskRequest", self.update),
            "Wait": ("WaitRequest", self.wait), "Stats": ("StatsRequest", self.stats),
            "Connect": ("ConnectRequest", self.connect), "Shutdown": ("ShutdownRequest", self.shutdown),
            "Checkpoint": ("CheckpointTaskRequest", self.checkpoint),
        }

    # --- dispatch ----------------------------------------------------------
    def handle(self, service: str, method: str, payload: bytes, reply) -> None:
        if service != TASK or method not in self.methods:
            reply(None, ttrpc.UNIMPLEMENTED, f"{service}/{method}: not implemented")
            return
        req_name, fn = self.methods[method]
        try:
            req = pb.get(f"containerd.task.v2.{req_name}").FromString(payload)
            resp = fn(req, reply)
        except Error as e:
            reply(None, e.code, e.message)
            return
        except (rerrors.RuntimeFailure, OSError, StdioError) as e:
            reply(None, ttrpc.UNKNOWN, str(e))
            return
        except Exception as e:  # noqa: BLE001 - one call fails, the shim and its containers go on
            log.error(f"{method}: {type(e).__name__}: {e}")
            reply(None, ttrpc.UNKNOWN, f"{method}: internal error: {e}")
            return
        if resp is not _DEFER:
            reply(resp.SerializeToString() if resp is not None else b"")

    def _container(self, cid: str) -> Container:
        c = self.containers.get(cid)
        if c is None:
            raise Error(ttrpc.NOT_FOUND, f"container {cid}: container not created")
        return c

    def _proc(self, cid: str, exec_id: str) -> Proc:
        c = self._container(cid)
        if not exec_id:
            return c.init
        p = c.execs.get(exec_id)
        if p is None:
            raise Error(ttrpc.NOT_FOUND, f"process {exec_id} does not exist")
        return p

    # --- events ------------------------------------------------------------
    def publish(self, topic: str, name: str, **fields) -> None:
        if self.events is None:
            return
        ev = pb.get(f"containerd.events.{name}")()
        for k, v in fields.items():
            if k == "exited_at":
                _ts(ev.exited_at, v)
            elif k == "io":
                ev.io.CopyFrom(v)
            elif k == "rootfs":
                ev.rootfs.extend(v)
            else:
                setattr(ev, k, v)
        env = pb.get("containerd.services.events.ttrpc.v1.Envelope")(namespace=self.namespace, topic=topic)
        _ts(env.timestamp, time.time_ns())
        env.event.type_url = f"containerd.events.{name}"
        env.event.value = ev.SerializeToString()
        self.queue.append(pb.get("containerd.services.events.ttrpc.v1.ForwardRequest")(envelope=env)
                          .SerializeToString())
        self._send_events()

    def _send_events(self) -> None:
        while self.queue:
            try:
                self.events.call(EVENTS, "Forward", self.queue[0])
            except (OSError, EOFError, Error) as e:
                if not self.retry_armed:
                    log.warning(f"publish event: {e}; retrying")
                    self.retry_armed = True
                    self.loop.call_later(1.0, self._retry)
                return
            self.queue.pop(0)

    def _retry(self) -> None:
        self.retry_armed = False
        self._send_events()

    # --- stdio around a spawn ------------------------------------------------
    def _spawn_with(self, stdio: Stdio, fn):
        """Run fn with the process's stdio as fds 0-2 (the child inherits
        them), then put the shim's own back."""
        saved = [os.dup(i) for i in range(3)]
        try:
            for i, fd in enumerate(stdio.child_fds()):
                if fd is None:
                    fd = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
                    os.dup2(fd, i)
                    os.close(fd)
                else:
                    os.dup2(fd, i)
            return fn()
        finally:
            for i, fd in enumerate(saved):
                os.dup2(fd, i)
                os.close(fd)

    def _console_pair(self, terminal: bool):
        return rsync.socketpair() if terminal else None

    def _take_console(self, pair, stdio: Stdio) -> None:
        if pair is None:
            return
        pair[1].close()
        _, fds = rsync.recv_fds(pair[0], 1024, 1)
        pair[0].close()
        stdio.attach_console(fds[0])

    # --- Create / Start ------------------------------------------------------
    def _options(self, any_opts) -> dict:
        opts = {}
        if any_opts is not None and any_opts.type_url.rsplit("/", 1)[-1] == RUNC_OPTIONS:
            o = pb.get(RUNC_OPTIONS).FromString(any_opts.value)
            opts = {"root": o.root, "systemd_cgroup": o.systemd_cgroup, "no_pivot_root": o.no_pivot_root,
                    "no_new_keyring": o.no_new_keyring}
        return opts

    def _mount_rootfs(self, mounts, bundle: str) -> None:
        target = os.path.join(bundle, "rootfs")
        for m in mounts:
            flags, prop, data, _ = rrootfs.parse_options(list(m.options))
            if "bind" in m.options or m.type == "bind":
                flags |= sc.MS_BIND
            if "rbind" in m.options:
                flags |= sc.MS_BIND | sc.MS_REC
            data = [d for d in data if d not in ("bind", "rbind")]
            text = ",".join(data)
            if len(text) >= 4096:
                raise Error(ttrpc.INVALID_ARGUMENT, f"rootfs mount {m.type}: options too long ({len(text)} bytes)")
            os.makedirs(target, exist_ok=True)
            try:
                sc.mount(m.source, target, m.type if m.type != "bind" else None, flags, text or None)
            except OSError as e:
                raise Error(ttrpc.UNKNOWN, f"mount {m.type} {m.source} on {target}: {e.strerror}") from None

    def create(self, r, reply):
        if r.id in self.containers:
            raise Error(ttrpc.ALREADY_EXISTS, f"container {r.id}: already exists")
        if r.checkpoint:
            raise Error(ttrpc.UNIMPLEMENTED, "checkpoint restore is not supported by pyrunc")
        opts = self._options(r.options if r.HasField("options") else None)
        root = runtime_root(opts, self.namespace)
        with open(os.path.join(r.bundle, OPTIONS_FILE), "w") as f:
            f.write(json.dumps(opts))
        c = Container(r.id, r.bundle, root, opts)
        p = Proc(c, "", r.stdin, r.stdout, r.stderr, r.terminal)
        c.init = p
        mounted = False
        try:
            if r.rootfs:
                mounted = True
                self._mount_rootfs(r.rootfs, r.bundle)
            p.stdio = Stdio(self.loop, r.stdin, r.stdout, r.stderr, r.terminal)
            pair = self._console_pair(r.terminal)
            o = rcontainer.Options(root, r.id, r.bundle, pid_file=os.path.join(r.bundle, "init.pid"),
                                   no_pivot=bool(opts.get("no_pivot_root")),
                                   no_new_keyring=bool(opts.get("no_new_keyring")),
                                   systemd_cgroup=bool(opts.get("systemd_cgroup")))
            try:
                data = self._spawn_with(p.stdio, lambda: rcontainer.create(
                    o, foreground_console=pair[1] if pair else None))
            except (rerrors.RuntimeFailure, OSError) as e:
                raise _runtime_error("create", e) from None
            p.stdio.spawned()
            self._take_console(pair, p.stdio)
        except BaseException:
            if p.stdio is not None:
                p.stdio.close()
            if mounted:
                unmount_rootfs(r.bundle)
            raise
        p.pid = data["pid"]
        c.own_pid_ns = "pid" in (data.get("namespaces") or ())
        self.by_pid[p.pid] = p
        self.containers[r.id] = c
        tio = pb.get("containerd.events.TaskIO")(stdin=r.stdin, stdout=r.stdout, stderr=r.stderr,
                                                terminal=r.terminal)
        self.publish("/tasks/create", "TaskCreate", container_id=r.id, bundle=r.bundle,
                     rootfs=list(r.rootfs), io=tio, checkpoint=r.checkpoint, pid=p.pid)
        return pb.get("containerd.task.v2.CreateTaskResponse")(pid=p.pid)

    def start(self, r, reply):
        p = self._proc(r.id, r.exec_id)
        c = p.container
        if p.state == "stopped":
            raise Error(ttrpc.FAILED_PRECONDITION, "cannot start a stopped process")
        if p.state != "created":
            raise Error(ttrpc.FAILED_PRECONDITION, "cannot start a running process")
        if not r.exec_id:
            try:
                lifecycle.start(c.root, c.id)
            except (rerrors.RuntimeFailure, OSError) as e:
                raise _runtime_error("start", e) from None
            if p.state == "created":
                p.state = "running"
            self._watch_oom(c)
            self.publish("/tasks/start", "TaskStart", container_id=c.id, pid=p.pid)
        else:
            self._start_exec(p)
            self.publish("/tasks/exec-started", "TaskExecStarted", container_id=c.id, exec_id=p.exec_id,
                         pid=p.pid)
        return pb.get("containerd.task.v2.StartResponse")(pid=p.pid)

    def _start_exec(self, p: Proc) -> None:
        c = p.container
        if c.init.state == "stopped":
            raise Error(ttrpc.FAILED_PRECONDITION, f"container {c.id} is not running")
        p.stdio = Stdio(self.loop, *p.io, p.terminal)
        pair = self._console_pair(p.terminal)
        o = execproc.ExecOptions(process=p.spec_file, detach=True, console=pair[1] if pair else None)
        try:
            pid = self._spawn_with(p.stdio, lambda: execproc.exec_detached(c.root, c.id, o))
        except (rerrors.RuntimeFailure, OSError) as e:
            p.stdio.close()
            if pair:
                for s in pair:
                    s.close()
            raise _runtime_error("exec", e) from None
        p.stdio.spawned()
        self._take_console(pair, p.stdio)
        p.pid = pid
        p.state = "running"
        self.by_pid[pid] = p
        # It may have exited already: its status waits for the reaper.

    def exec(self, r, reply):
        c = self._container(r.id)
        if r.exec_id in c.execs:
            raise Error(ttrpc.ALREADY_EXISTS, f"id {r.exec_id}: already exists")
        if not r.exec_id or "/" in r.exec_id or r.exec_id in (".", ".."):
            raise Error(ttrpc.INVALID_ARGUMENT, f"invalid exec id {r.exec_id!r}")
        if c.init.state == "stopped":
            raise Error(ttrpc.FAILED_PRECONDITION, f"container {c.id} is not running")
        spec_file = os.path.join(c.bundle, f".pyrunc-exec-{r.exec_id}.json")
        with open(spec_file, "wb") as f:
            f.write(r.spec.value)
        c.execs[r.exec_id] = Proc(c, r.exec_id, r.stdin, r.stdout, r.stderr, r.terminal, spec_file)
        self.publish("/tasks/exec-added", "TaskExecAdded", container_id=c.id, exec_id=r.exec_id)
        return pb.get(pb.EMPTY)()

    # --- exits ---------------------------------------------------------------
    def reap(self, _signum=None) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            p = self.by_pid.pop(pid, None)
            if p is not None:
                self._exited(p, exit_code(status))

    def _exited(self, p: Proc, code: int) -> None:
        c = p.container
        p.state = "stopped"
        p.exit_status = code
        p.exited_at = time.time_ns()
        if p.stdio is not None:
            if p.terminal:
                p.stdio.drain()
            p.stdio.close_stdin()
        if p is c.init:
            self._check_oom(c)
            if not c.own_pid_ns:
                # No pid namespace of its own: nothing else ends its other
                # processes when init goes (as the runc shim does).
                try:
                    lifecycle.kill(c.root, c.id, "SIGKILL", all_procs=True)
                except (rerrors.RuntimeFailure, OSError):
                    pass
        self.publish("/tasks/exit", "TaskExit", container_id=c.id, id=p.ident, pid=p.pid,
                     exit_status=code, exited_at=p.exited_at)
        waiters, p.waiters = p.waiters, []
        for reply in waiters:
            reply(self._wait_response(p).SerializeToString())

    def _kill_and_reap(self, p: Proc) -> None:
        """End a process that never ran its program (created) and take its
        status ourselves."""
        if p.state == "stopped" or not p.pid:
            return
        try:
            os.kill(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            _, status = os.waitpid(p.pid, 0)
            code = exit_code(status)
        except ChildProcessError:
            code = 128 + signal.SIGKILL
        self.by_pid.pop(p.pid, None)
        self._exited(p, code)

    # --- OOM -----------------------------------------------------------------
    def _watch_oom(self, c: Container) -> None:
        try:
            data = rstate.load(c.root, c.id)
            if not data.get("cgroup"):
                return
            c.oom = cgroups.manager_from_state(data["cgroup"]).oom_watcher()
        except (rerrors.RuntimeFailure, OSError, NotImplementedError) as e:
            log.warning(f"container {c.id}: no OOM notifications: {e}")
            c.oom = None
            return
        self.loop.add_reader(c.oom.fileno(), lambda: self._check_oom(c))

    def _check_oom(self, c: Container) -> None:
        if c.oom is None:
            return
        try:
            n = c.oom.read()
        except OSError:
            n = 0
        if n:
            self.publish("/tasks/oom", "TaskOOM", container_id=c.id)

    def _drop_oom(self, c: Container) -> None:
        if c.oom is not None:
            self.loop.forget(c.oom.fileno())
            c.oom.close()
            c.oom = None

    # --- the rest of the API -------------------------------------------------
    def delete(self, r, reply):
        p = self._proc(r.id, r.exec_id)
        c = p.container
        if p.state == "running":
            raise Error(ttrpc.FAILED_PRECONDITION, f"cannot delete a running process {p.ident}")
        if r.exec_id:
            if p.state == "created":
                # Never started: its waiters get the status it ends with.
                p.state, p.exit_status, p.exited_at = "stopped", 0, time.time_ns()
                waiters, p.waiters = p.waiters, []
                for reply in waiters:
                    reply(self._wait_response(p).SerializeToString())
            if p.stdio is not None:
                p.stdio.close()
            del c.execs[r.exec_id]
            self._remove_spec(p)
        else:
            # (exec'd processes still running die with the container's pid
            # namespace, or with its cgroup in the runtime's delete)
            self._kill_and_reap(p)
            try:
                lifecycle.delete(c.root, c.id, force=False)
            except rerrors.ContainerNotFound:
                pass
            except (rerrors.RuntimeFailure, OSError) as e:
                raise _runtime_error("delete", e) from None
            self._drop_oom(c)
            for e in c.execs.values():
                if e.stdio is not None:
                    e.stdio.close()
                self._remove_spec(e)
            if p.stdio is not None:
                p.stdio.close()
            unmount_rootfs(c.bundle)
            del self.containers[c.id]
            self.publish("/tasks/delete", "TaskDelete", container_id=c.id, pid=p.pid,
                         exit_status=p.exit_status, exited_at=p.exited_at)
        resp = pb.get("containerd.task.v2.DeleteResponse")(pid=p.pid, exit_status=p.exit_status)
        _ts(resp.exited_at, p.exited_at)
        return resp

    def _remove_spec(self, p: Proc) -> None:
        if p.spec_file:
            try:
                os.unlink(p.spec_file)
            except FileNotFoundError:
                pass

    def state(self, r, reply):
        p = self._proc(r.id, r.exec_id)
        c = p.container
        status = p.state
        if p is c.init and status == "running":
            try:
                status = lifecycle.state(c.root, c.id)["status"]
            except rerrors.RuntimeFailure:
                pass
            if status == "stopped":
                status = "running"  # exited, not reaped yet: the reaper reports it
        resp = pb.get("containerd.task.v2.StateResponse")(
            id=c.id if not r.exec_id else r.exec_id, bundle=c.bundle, pid=p.pid, status=_STATUS[status],
            stdin=p.io[0], stdout=p.io[1], stderr=p.io[2], terminal=p.terminal,
            exit_status=p.exit_status, exec_id=r.exec_id)
        _ts(resp.exited_at, p.exited_at)
        return resp

    def kill(self, r, reply):
        p = self._proc(r.id, r.exec_id)
        c = p.container
        if p.state == "stopped":
            raise Error(ttrpc.NOT_FOUND, "process already finished")
        if p is c.init:
            try:
                lifecycle.kill(c.root, c.id, str(r.signal), all_procs=r.all)
            except rerrors.RuntimeFailure as e:
                if "not running" in str(e) or "does not exist" in str(e):
                    raise Error(ttrpc.NOT_FOUND, "process already finished") from None
                raise _runtime_error("kill", e) from None
        else:
            if not p.pid:
                raise Error(ttrpc.FAILED_PRECONDITION, f"process {p.exec_id} is not started")
            try:
                os.kill(p.pid, r.signal)
            except ProcessLookupError:
                raise Error(ttrpc.NOT_FOUND, "process already finished") from None
        return pb.get(pb.EMPTY)()

    def pids(self, r, reply):
        c = self._container(r.id)
        try:
            pids = manage.pids(c.root, c.id)
        except rerrors.RuntimeFailure as e:
            raise _runtime_error("ps", e) from None
        execs = {p.pid: p.exec_id for p in c.execs.values() if p.pid}
        resp = pb.get("containerd.task.v2.PidsResponse")()
        for pid in pids:
            info = resp.processes.add(pid=pid)
            if pid in execs:
                info.info.type_url = "containerd.runc.v1.ProcessDetails"
                info.info.value = pb.get("containerd.runc.v1.ProcessDetails")(exec_id=execs[pid]).SerializeToString()
        return resp

    def pause(self, r, reply):
        return self._freezer(r.id, manage.pause, "pause", "/tasks/paused", "TaskPaused")

    def resume(self, r, reply):
        return self._freezer(r.id, manage.resume, "resume", "/tasks/resumed", "TaskResumed")

    def _freezer(self, cid: str, op, verb: str, topic: str, event: str):
        c = self._container(cid)
        try:
            op(c.root, c.id)
        except rerrors.RuntimeFailure as e:
            raise _runtime_error(verb, e) from None
        self.publish(topic, event, container_id=c.id)
        return pb.get(pb.EMPTY)()

    def close_io(self, r, reply):
        p = self._proc(r.id, r.exec_id)
        if r.stdin and p.stdio is not None:
            p.stdio.close_stdin()
        return pb.get(pb.EMPTY)()

    def resize_pty(self, r, reply):
        p = self._proc(r.id, r.exec_id)
        if p.stdio is None or not p.terminal:
            raise Error(ttrpc.FAILED_PRECONDITION, f"process {p.ident} has no terminal")
        p.stdio.resize(r.width, r.height)
        return pb.get(pb.EMPTY)()

    def update(self, r, reply):
        c = self._container(r.id)
        path = os.path.join(c.bundle, ".pyrunc-update.json")
        with open(path, "wb") as f:
            f.write(r.resources.value or b"{}")
        try:
            for w in manage.update(c.root, c.id, path, {}) or ():
                log.warning(w)
        except rerrors.RuntimeFailure as e:
            raise _runtime_error("update", e) from None
        finally:
            os.unlink(path)
        return pb.get(pb.EMPTY)()

    def _wait_response(self, p: Proc):
        resp = pb.get("containerd.task.v2.WaitResponse")(exit_status=p.exit_status)
        _ts(resp.exited_at, p.exited_at)
        return resp

    def wait(self, r, reply):
        p = self._proc(r.id, r.exec_id)
        if p.state == "stopped":
            return self._wait_response(p)
        p.waiters.append(reply)
        return _DEFER

    def stats(self, r, reply):
        c = self._container(r.id)
        try:
            data = rstate.load(c.root, c.id)
        except rerrors.RuntimeFailure as e:
            raise _runtime_error("events", e) from None
        if not data.get("cgroup"):
            raise Error(ttrpc.NOT_FOUND, "cgroup does not exist")
        m = cgroups.manager_from_state(data["cgroup"])
        s = m.stats()
        resp = pb.get("containerd.task.v2.StatsResponse")()
        v2 = m.version == "v2"
        metrics = metrics_v2(s) if v2 else metrics_v1(s)
        resp.stats.type_url = f"io.containerd.cgroups.{'v2' if v2 else 'v1'}.Metrics"
        resp.stats.value = metrics.SerializeToString()
        return resp

    def connect(self, r, reply):
        c = self.containers.get(r.id)
        return pb.get("containerd.task.v2.ConnectResponse")(
            shim_pid=os.getpid(), task_pid=c.init.pid if c else 0, version=VERSION)

    def shutdown(self, r, reply):
        if self.containers and not r.now:
            return pb.get(pb.EMPTY)()
        if self.on_empty:
            self.loop.call_later(0, self.on_empty)
        return pb.get(pb.EMPTY)()

    def checkpoint(self, r, reply):
        raise Error(ttrpc.UNIMPLEMENTED, "checkpoint is not supported by pyrunc")


def metrics_v1(s: dict):
    m = pb.get("io.containerd.cgroups.v1.Metrics")()
    pids, cpu, mem = s.get("pids") or {}, s.get("cpu") or {}, s.get("memory") or {}
    m.pids.current, m.pids.limit = pids.get("current", 0), pids.get("limit", 0)
    u = cpu.get("usage") or {}
    m.cpu.usage.total, m.cpu.usage.kernel, m.cpu.usage.user = u.get("total", 0), u.get("kernel", 0), u.get("user", 0)
    m.cpu.usage.per_cpu.extend(u.get("percpu") or [])
    t = cpu.get("throttling") or {}
    m.cpu.throttling.periods = t.get("periods", 0)
    m.cpu.throttling.throttled_periods = t.get("throttledPeriods", 0)
    m.cpu.throttling.throttled_time = t.get("throttledTime", 0)
    raw = mem.get("raw") or {}
    m.memory.cache = mem.get("cache", 0)
    m.memory.rss = raw.get("rss", 0)
    m.memory.mapped_file = raw.get("mapped_file", 0)
    m.memory.total_cache = raw.get("total_cache", mem.get("cache", 0))
    m.memory.total_rss = raw.get("total_rss", 0)
    for name, field in (("usage", "usage"), ("swap", "swap"), ("kernel", "kernel"), ("kernelTCP", "kernel_tcp")):
        e = mem.get(name) or {}
        entry = getattr(m.memory, field)
        entry.limit, entry.usage, entry.max, entry.failcnt = (e.get("limit", 0), e.get("usage", 0),
                                                              e.get("max", 0), e.get("failcnt", 0))
    return m


def metrics_v2(s: dict):
    m = pb.get("io.containerd.cgroups.v2.Metrics")()
    pids, cpu, mem = s.get("pids") or {}, s.get("cpu") or {}, s.get("memory") or {}
    m.pids.current, m.pids.limit = pids.get("current", 0), pids.get("limit", 0)
    u = cpu.get("usage") or {}
    m.cpu.usage_usec = u.get("total", 0) // 1000
    m.cpu.user_usec = u.get("user", 0) // 1000
    m.cpu.system_usec = u.get("kernel", 0) // 1000
    t = cpu.get("throttling") or {}
    m.cpu.nr_periods = t.get("periods", 0)
    m.cpu.nr_throttled = t.get("throttledPeriods", 0)
    m.cpu.throttled_usec = t.get("throttledTime", 0) // 1000
    raw = mem.get("raw") or {}
    usage = mem.get("usage") or {}
    swap = mem.get("swap") or {}
    m.memory.anon, m.memory.file = raw.get("anon", 0), raw.get("file", 0)
    m.memory.usage, m.memory.usage_limit = usage.get("usage", 0), usage.get("limit", 0)
    m.memory.swap_usage, m.memory.swap_limit = swap.get("usage", 0), swap.get("limit", 0)
    # memory.events' "max" count is what runtime's stats keep (as failcnt)
    m.memory_events.max = usage.get("failcnt", 0)
    return m

