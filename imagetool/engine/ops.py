"""The engine's operations: what docker's container verbs do, daemonless.

Each public method of ``Engine`` is one verb's whole effect; the CLI
(imagetool.cli_engine) maps arguments to one call and prints what it
returns. A container is a record (imagetool.engine.records), a bundle
(imagetool.bundle), and while it runs a conmon (imagetool.engine.monitor)
and, on a bridge network, a network namespace (imagetool.engine.network).

Life of a container, and who does what:
  create   validate every option, take the name, write the record in
           state "creating" (holding the container's lock), unpack the
           bundle, make its volumes, write config.json; state "created".
  start    (under the lock) set up the network namespace and the /etc
           files, start conmon (the runtime's create), run the runtime's
           start; state "running". Any failure undoes all of it and the
           state stays what it was.
  exit     conmon records the status and runs ``pyimg container-cleanup``
           (``Engine.cleanup``): state "exited", runtime state deleted,
           network torn down; then --rm removes the container, or the
           restart policy starts it again.
  rm       stops it if forced, then removes the network, runtime state,
           bundle, anonymous volumes (-v), name and record, in that order.

Repair: every read (``get``, ``list``) reconciles a record with the
world, so that a SIGKILL at any point is repaired by the next command: a
record left "creating" by a dead creator is removed; a start whose
starter died is rolled back to "created"; a running container whose
conmon is gone is killed and recorded as exited (137); an exit conmon
recorded but nobody cleaned up is cleaned up.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal as signals
import stat as st_
import subprocess
import sys
import time

from runtime.toolkit import fastjson as json
from imagetool.errors import (BundleError, CommandError, EngineError, NoSuchContainer, PyimgError, UsageError,
                              os_message)
from imagetool import bundle as bundlemod
from imagetool.layer import LayerError, open_in_root
from imagetool.engine import humanize, monitor, spec as specmod
from imagetool.engine.network import Networks, PortMapping
from imagetool.engine.records import Paths, Store, new_id, random_name
from imagetool.engine.volumes import Volumes
# Optional edge, imported where used: imagetool.pull (only when run's image is missing).

ZERO_TIME = "0001-01-01T00:00:00Z"
DEFAULT_STOP_TIMEOUT = 10
_SIGNALS = {n[3:]: int(getattr(signals, n)) for n in dir(signals)
            if n.startswith("SIG") and not n.startswith("SIG_") and isinstance(getattr(signals, n), int)}


def now_rfc3339(t: float | None = None) -> str:
    t = time.time() if t is None else t
    ns = int(round((t % 1) * 1e9))
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{ns:09d}Z"


def parse_signal(value: str | int | None, default: int = signals.SIGKILL) -> int:
    if value is None or value == "":
        return default
    v = str(value).upper()
    if v.isdigit():
        n = int(v)
        if 0 < n < 65:
            return n
    else:
        v = v[3:] if v.startswith("SIG") else v
        if v in _SIGNALS:
            return _SIGNALS[v]
    raise UsageError(f"Invalid signal: {value}")


def signal_name(n: int) -> str:
    try:
        return signals.Signals(n).name
    except ValueError:
        return str(n)


def _alive(pid: int) -> bool:
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def find_runtime(name: str | None) -> str:
    """The OCI runtime binary for --runtime: pyrunc (default), runc, crun, or a path."""
    name = name or os.environ.get("PYIMG_RUNTIME") or "pyrunc"
    if "/" in name:
        if not os.access(name, os.X_OK):
            raise EngineError(f"unknown or invalid runtime name: {name}")
        return os.path.abspath(name)
    if name == "pyrunc":
        cand = os.path.join(os.path.dirname(sys.executable), "pyrunc")
        if os.access(cand, os.X_OK):
            return cand
    found = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}")
                                        if os.access(p, os.X_OK)), None)
    if not found:
        raise EngineError(f"unknown or invalid runtime name: {name}")
    return found


def _pyimg_command() -> str:
    cand = os.path.join(os.path.dirname(sys.executable), "pyimg")
    if os.access(cand, os.X_OK):
        return cand
    found = shutil.which("pyimg")
    if not found:
        raise EngineError("cannot find the pyimg command for conmon's exit command")
    return found


def _init_binary() -> str:
    for p in ("/usr/bin/tini-static", "/usr/bin/docker-init", "/usr/bin/tini"):
        if os.access(p, os.X_OK):
            return p
    raise EngineError("--init needs tini (apt-get install tini)")


class Engine:
    """The containers of one store (see the module docstring)."""

    def __init__(self, root: str, *, config_path: str | None = None, run_dir: str | None = None):
        self.paths = Paths(root, run_dir)
        self.records = Store(self.paths)
        self.config_path = config_path
        self._networks = None
        self._volumes = None

    # ------------------------------------------------------------ helpers
    @property
    def networks(self):
        if self._networks is None:
            self._networks = Networks(self.paths.root, self.paths.run)
        return self._networks

    @property
    def volumes(self):
        if self._volumes is None:
            self._volumes = Volumes(self.paths.root)
        return self._volumes

    def _runtime(self, rec: dict) -> list[str]:
        return [rec["Pyimg"]["runtime_path"], "--root", self.paths.runtime_root]

    def _rt(self, rec: dict, *args: str, check: bool = False) -> subprocess.CompletedProcess:
        try:
            r = subprocess.run(self._runtime(rec) + list(args), stdin=subprocess.DEVNULL, capture_output=True,
                               text=True)
        except OSError as e:
            raise EngineError(os_message(e, f"running {rec['Pyimg']['runtime_path']}")) from None
        if check and r.returncode != 0:
            msg = (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]
            raise EngineError(f"{args[0]}: {msg}")
        return r

    def _runtime_status(self, rec: dict) -> str | None:
        r = self._rt(rec, "state", rec["Id"])
        if r.returncode != 0:
            return None
        try:
            return json.loads(r.stdout).get("status")
        except ValueError:
            return None

    def _save(self, rec: dict) -> None:
        self.records.save(rec)

    # -------------------------------------------------------------- reads
    def get(self, ref: str) -> dict:
        cid = self.records.resolve(ref)
        rec = self.refresh(cid)
        if rec is None:
            raise NoSuchContainer(f"No such container: {ref}")
        return rec

    def list(self) -> list[dict]:
        out = []
        for cid in self.records.ids():
            rec = self.refresh(cid)
            if rec is not None:
                out.append(rec)
        out.sort(key=lambda r: r["Created"], reverse=True)
        return out

    def refresh(self, cid: str) -> dict | None:
        """The record of ``cid`` after repairing what a dead process left (module docstring)."""
        rec = self.records.load(cid)
        if rec is None:
            return None
        st, own = rec["State"], rec["Pyimg"]
        stale_creator = st["Status"] == "creating" and not _alive(own.get("owner", 0))
        stale_starter = own.get("starting") and not _alive(own["starting"])
        running = st["Status"] in ("running", "paused")
        exited = running and monitor.exit_status(self.paths.exit_file(cid), self.paths.cdir(cid)) is not None
        lost = running and not exited and monitor.conmon_pid(self.paths.cdir(cid), cid) is None
        if not (stale_creator or stale_starter or exited or lost):
            return rec
        fd = self.records.try_lock(cid)
        if fd is None:  # someone is at it now; show what conmon recorded, if anything
            if exited:
                code, when = monitor.exit_status(self.paths.exit_file(cid), self.paths.cdir(cid))
                st.update(Status="exited", Running=False, Paused=False, Pid=0, ExitCode=code,
                          FinishedAt=now_rfc3339(when))
            return rec
        try:
            rec = self.records.load(cid)
            if rec is None:
                return None
            st, own = rec["State"], rec["Pyimg"]
            if st["Status"] == "creating" and not _alive(own.get("owner", 0)):
                self._destroy(rec, volumes=True)
                return None
            if own.get("starting") and not _alive(own["starting"]):
                self._rollback_start(rec, "the starting pyimg process died")
                return rec
            if st["Status"] in ("running", "paused"):
                if monitor.exit_status(self.paths.exit_file(cid), self.paths.cdir(cid)) is not None:
                    self._record_exit(rec)
                elif monitor.conmon_pid(self.paths.cdir(cid), cid) is None:
                    # The monitor is gone and nobody will record the exit: end the container, as
                    # containerd does when a shim dies.
                    self._rt(rec, "kill", cid, "KILL")
                    self._record_exit(rec, forced=(137, "the container's monitor (conmon) exited unexpectedly"))
                    if rec["HostConfig"].get("AutoRemove"):  # no exit command will run: --rm is ours
                        self._destroy(rec, volumes=True)
                        return None
            return rec
        finally:
            os.close(fd)

    # ------------------------------------------------------------- create
    def create(self, opts: dict, *, progress=None) -> dict:
        """A new container from docker run's options (``opts``, see cli_engine.run_options)."""
        ref = opts["image"]
        host = opts["host"]
        runtime_path = find_runtime(host.get("Runtime"))
        mode = host.get("NetworkMode") or "bridge"
        if mode.startswith("container:"):
            self.get(mode.split(":", 1)[1])
        elif mode not in ("host", "none", "bridge", "default"):
            self.networks.get(mode)  # a user network must exist: "network X not found"
        if host.get("PortBindings") and mode in ("host", "none") or (
                host.get("PortBindings") and mode.startswith("container:")):
            raise UsageError("conflicting options: port publishing and the container type network mode")
        if not bundlemod.image_present(self.paths.root, ref):
            print(f"Unable to find image '{ref}' locally", file=sys.stderr)
            from imagetool.pull import pull_image
            pull_image(ref, root=self.paths.root, config_path=self.config_path, platform=opts.get("platform"),
                       out=sys.stderr)
        image = bundlemod.Image(self.paths.root, ref, opts.get("platform"))
        icfg = image.config.get("config") or {}
        self.records.ensure_dirs()
        cid = new_id()
        cdir = self.paths.cdir(cid)
        # The directory comes before the name: a name whose container has no
        # directory is taken to be a crash's leftover, and taken over.
        try:
            os.makedirs(cdir, exist_ok=False)
        except OSError as e:
            raise EngineError(os_message(e, f"creating {cdir}")) from None
        name = opts.get("name")
        try:
            if name:
                self.records.take_name(name, cid)
            else:
                for _ in range(20):
                    name = random_name()
                    try:
                        self.records.take_name(name, cid)
                        break
                    except EngineError:
                        name = None
                if not name:
                    name = cid[:12]
                    self.records.take_name(name, cid)
        except BaseException:
            shutil.rmtree(cdir, ignore_errors=True)
            raise
        cfg = dict(opts["config"])
        cfg["Image"] = ref
        entrypoint = cfg.get("Entrypoint")
        cmd = cfg.get("Cmd")
        if entrypoint is None:
            entrypoint = icfg.get("Entrypoint")
            if not cmd:
                cmd = icfg.get("Cmd")
        cfg["Entrypoint"], cfg["Cmd"] = entrypoint, cmd
        args = list(entrypoint or []) + list(cmd or [])
        if not args:
            self.records.free_name(name, cid)
            shutil.rmtree(cdir, ignore_errors=True)
            raise EngineError("No command specified")
        hostname = cfg.get("Hostname") or (os.uname().nodename if mode == "host" else cid[:12])
        cfg["Hostname"] = hostname
        cfg["Env"] = bundlemod.merge_env(icfg.get("Env") or [], cfg.get("Env") or [])
        cfg.setdefault("WorkingDir", "")
        cfg["Labels"] = {**(icfg.get("Labels") or {}), **(cfg.get("Labels") or {})}
        cfg["ExposedPorts"] = {**(icfg.get("ExposedPorts") or {}), **(cfg.get("ExposedPorts") or {})}
        cfg["Volumes"] = {**(icfg.get("Volumes") or {}), **(cfg.get("Volumes") or {})} or None
        cfg.setdefault("StopSignal", icfg.get("StopSignal") or "SIGTERM")
        created = now_rfc3339()
        rec = {
            "Id": cid, "Created": created, "Path": args[0], "Args": args[1:],
            "State": {"Status": "creating", "Running": False, "Paused": False, "Restarting": False,
                      "OOMKilled": False, "Dead": False, "Pid": 0, "ExitCode": 0, "Error": "",
                      "StartedAt": ZERO_TIME, "FinishedAt": ZERO_TIME},
            "Image": image.manifest["config"]["digest"],
            "ResolvConfPath": os.path.join(cdir, "etc", "resolv.conf"),
            "HostnamePath": os.path.join(cdir, "etc", "hostname"),
            "HostsPath": os.path.join(cdir, "etc", "hosts"),
            "LogPath": self.paths.log(cid), "Name": "/" + name, "RestartCount": 0, "Driver": "overlay",
            "Platform": "linux", "MountLabel": "", "ProcessLabel": "", "AppArmorProfile": "", "ExecIDs": None,
            "HostConfig": host, "Mounts": [], "Config": cfg,
            "NetworkSettings": {"Bridge": "", "SandboxID": "", "HairpinMode": False, "Ports": {},
                                "SandboxKey": "", "Networks": {}},
            "Pyimg": {"owner": os.getpid(), "runtime_path": runtime_path, "bundle": self.paths.bundle(cid),
                      "manual_stop": False, "anonymous_volumes": []},
        }
        with self.records.locked(cid):
            self._save(rec)
            try:
                self._build(rec, image, opts, icfg)
            except BaseException:
                with contextlib.suppress(Exception):
                    self._destroy(rec, volumes=True)
                raise
            rec["State"]["Status"] = "created"
            rec["Pyimg"].pop("owner", None)
            self._save(rec)
        return rec

    def _build(self, rec: dict, image, opts: dict, icfg: dict) -> None:
        cid, cfg, host = rec["Id"], rec["Config"], rec["HostConfig"]
        bundle = rec["Pyimg"]["bundle"]
        # create resolved Entrypoint and Cmd against the image: the args are exactly these two
        # (an empty cmd would make the bundle fall back to the image's Cmd)
        run = bundlemod.RunOptions(cmd=list(cfg["Entrypoint"] or []) + list(cfg["Cmd"] or []), entrypoint=[],
                                   env=cfg["Env"], workdir=cfg.get("WorkingDir") or None, user=cfg.get("User") or None,
                                   terminal=bool(cfg.get("Tty")), hostname=cfg["Hostname"], network="none",
                                   etc_files=False, image_volumes=False, require_args=True)
        brec = bundlemod.create_bundle(self.paths.root, cfg["Image"], bundle, mode=opts.get("storage_mode"),
                                       platform=opts.get("platform"), run=run)
        rec["Pyimg"]["bundle_id"] = brec["id"]
        rootfs = brec["rootfs"]
        with open(os.path.join(bundle, "config.json"), "rb") as f:
            oci = json.loads(f.read())
        # mounts: the user's, then an anonymous volume for each image Volume nobody covers
        reqs = [specmod.MountReq.from_dict(m) for m in opts.get("mounts", [])]
        covered = {m.target for m in reqs}
        for path in sorted(icfg.get("Volumes") or {}):
            if os.path.normpath(path) not in covered:
                reqs.append(specmod.MountReq("volume", os.path.normpath(path), anonymous=True))
        oci_mounts, shown = [], []
        for m in reqs:
            if m.kind == "bind":
                if not os.path.exists(m.source):
                    if not m.create_source:
                        raise EngineError(f"invalid mount config for type \"bind\": bind source path does not exist: {m.source}")
                    try:
                        os.makedirs(m.source, 0o755, exist_ok=True)
                    except OSError as e:
                        raise EngineError(os_message(e, f"creating the bind source {m.source}")) from None
                oci_mounts.append(specmod.oci_mount(m, m.source))
                shown.append({"Type": "bind", "Source": m.source, "Destination": m.target, "Mode": "ro" if m.readonly else "",
                              "RW": not m.readonly, "Propagation": "rprivate"})
            elif m.kind == "volume":
                vol = self.volumes.create(m.source or None, labels=None) if m.anonymous or m.source else None
                vname = vol["Name"]
                if m.anonymous:
                    rec["Pyimg"]["anonymous_volumes"].append(vname)
                if "nocopy" not in m.options:
                    self.volumes.seed(vname, rootfs, m.target)
                src = self.volumes.mountpoint(vname)
                oci_mounts.append(specmod.oci_mount(m, src))
                shown.append({"Type": "volume", "Name": vname, "Source": src, "Destination": m.target,
                              "Driver": "local", "Mode": "z" if not m.readonly else "ro", "RW": not m.readonly,
                              "Propagation": ""})
            else:
                oci_mounts.append(specmod.oci_mount(m, ""))
        rec["Mounts"] = shown
        init = None
        if host.get("Init"):
            init = os.path.join(self.paths.cdir(cid), "init")
            shutil.copy2(_init_binary(), init)  # a copy: the container never holds the host's binary
        specmod.apply(oci, host, mounts=oci_mounts, etc_mounts=_etc_mounts(rec), init_binary=init,
                      cgroup_name=f"/pyimg/{cid}")
        if init:
            rec["Path"], rec["Args"] = specmod.INIT_PATH, ["--"] + [rec["Path"]] + rec["Args"]
        # with --init the process is the init (a bind mount, not in the rootfs): check the command it runs
        proc = oci["process"]
        _check_command(rootfs, dict(proc, args=proc["args"][2:]) if init else proc)
        self._write_config(bundle, oci)

    @staticmethod
    def _write_config(bundle: str, oci: dict) -> None:
        path = os.path.join(bundle, "config.json")
        tmp = path + ".tmp"
        try:
            with open(tmp, "w") as f:
                f.write(json.dumps(oci))
            os.replace(tmp, path)
        except OSError as e:
            raise EngineError(os_message(e, f"writing {path}")) from None

    # -------------------------------------------------------------- start
    def start(self, ref: str, *, attach=None) -> dict:
        """Start a created or exited container. ``attach(rec)`` is called once conmon holds the
        container and before its process runs (so nothing it prints is missed)."""
        rec = self.get(ref)
        with self.records.locked(rec["Id"]):
            rec = self.records.load(rec["Id"])
            if rec["State"]["Status"] in ("running", "paused"):
                if attach is not None:
                    attach(rec)
                return rec
            if rec["State"]["Status"] not in ("created", "exited", "restarting"):
                raise EngineError(f"cannot start container {rec['Id'][:12]} in state {rec['State']['Status']}")
            rec["Pyimg"]["manual_stop"] = False
            rec["Pyimg"]["attached"] = attach is not None
            return self._start_locked(rec, attach)

    def _start_locked(self, rec: dict, attach=None) -> dict:
        cid, host = rec["Id"], rec["HostConfig"]
        bundle = rec["Pyimg"]["bundle"]
        rec["Pyimg"]["starting"] = os.getpid()
        self._save(rec)
        try:
            self._rt(rec, "delete", "--force", cid)  # what a previous run left
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.paths.exit_file(cid))
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.paths.cdir(cid), "exit"))
            brec = bundlemod.read_record(self.paths.root, bundle)
            if brec and brec.get("mode") == "overlay" and not os.path.ismount(brec["rootfs"]):
                bundlemod.remount_bundles(self.paths.root, bundle)  # after a reboot
            with open(os.path.join(bundle, "config.json"), "rb") as f:
                oci = json.loads(f.read())
            netns, attachment = self._network_up(rec)
            specmod.set_network(oci, "host" if host.get("NetworkMode") == "host" else "other", netns)
            self._write_etc(rec, attachment)
            self._write_config(bundle, oci)
            pid = monitor.spawn(cid=cid, name=rec["Name"][1:], runtime=rec["Pyimg"]["runtime_path"],
                                runtime_root=self.paths.runtime_root, bundle=bundle, cdir=self.paths.cdir(cid),
                                exits=self.paths.exits, sockets=self.paths.sockets, log_path=rec["LogPath"],
                                terminal=bool(rec["Config"].get("Tty")), stdin=bool(rec["Config"].get("OpenStdin")),
                                exit_command=self._exit_command(cid), env=self._monitor_env())
            if attach is not None:
                attach(rec)
            self._rt(rec, "start", cid, check=True)
        except BaseException as e:
            self._rollback_start(rec, str(e))
            raise
        st = rec["State"]
        st.update(Status="running", Running=True, Paused=False, Restarting=False, Pid=pid, ExitCode=0,
                  Error="", StartedAt=now_rfc3339(), OOMKilled=False)
        rec["Pyimg"].pop("starting", None)
        self._save(rec)
        return rec

    def _rollback_start(self, rec: dict, why: str) -> None:
        cid = rec["Id"]
        with contextlib.suppress(Exception):
            self._rt(rec, "kill", cid, "KILL")
        with contextlib.suppress(Exception):
            self._rt(rec, "delete", "--force", cid)
        self._network_down(rec)
        rec["Pyimg"].pop("starting", None)
        st = rec["State"]
        st.update(Running=False, Paused=False, Restarting=False, Pid=0, Error=why.splitlines()[0] if why else "")
        if st["Status"] not in ("created", "exited"):
            st["Status"] = "exited" if st["StartedAt"] != ZERO_TIME else "created"
        with contextlib.suppress(PyimgError):
            self._save(rec)

    def _exit_command(self, cid: str) -> list[str]:
        cmd = [_pyimg_command(), "--root", self.paths.root]
        if self.config_path:
            cmd += ["--config", self.config_path]
        return cmd + ["container-cleanup", cid]

    @staticmethod
    def _monitor_env() -> dict:
        return {k: v for k, v in os.environ.items() if k in ("PYIMG_RUN_BASE", "PYIMG_CONMON", "PYIMG_DEBUG")}

    # ------------------------------------------------------------ network
    def _network_up(self, rec: dict) -> tuple[str | None, dict | None]:
        mode = rec["HostConfig"].get("NetworkMode") or "bridge"
        ns = rec["NetworkSettings"]
        if mode == "host":
            ns.update(SandboxKey="", Networks={"host": _endpoint({}, "host")})
            return None, None
        if mode == "none":
            ns.update(SandboxKey="", Networks={"none": _endpoint({}, "none")})
            return None, None
        if mode.startswith("container:"):
            other = self.get(mode.split(":", 1)[1])
            if other["State"]["Status"] != "running":
                raise EngineError(f"cannot join network of a non running container: {other['Id'][:12]}")
            path = f"/proc/{other['State']['Pid']}/ns/net"
            ns.update(SandboxKey=path, Networks={})
            return path, None
        nets = self.networks
        netname = "bridge" if mode in ("bridge", "default") else mode
        if netname == "bridge":
            nets.default()
        ports = [PortMapping(**p) for p in rec["Pyimg"].get("ports", [])]
        aliases = [rec["Name"][1:], rec["Id"][:12]] if netname != "bridge" else []
        att = nets.setup(rec["Id"], rec["Name"][1:], [netname], ports=ports, aliases=aliases,
                         hostname=rec["Config"]["Hostname"])
        ns["SandboxKey"] = att["netns"]
        ns["SandboxID"] = rec["Id"][:12]
        ns["Networks"] = {n: _endpoint(e, n) for n, e in att["networks"].items()}
        first = next(iter(att["networks"].values()), {})
        for k in ("IPAddress", "IPPrefixLen", "Gateway", "MacAddress"):
            ns[k] = first.get(k, "")
        ns["Ports"] = _ports_map(att.get("ports") or [], rec["Config"].get("ExposedPorts") or {})
        return att["netns"], att

    def _network_down(self, rec: dict) -> None:
        mode = rec["HostConfig"].get("NetworkMode") or "bridge"
        if mode in ("host", "none") or mode.startswith("container:"):
            return
        with contextlib.suppress(PyimgError, OSError):
            self.networks.teardown(rec["Id"])
        ns = rec["NetworkSettings"]
        ns["SandboxKey"] = ""
        for k in ("IPAddress", "Gateway", "MacAddress"):
            ns.pop(k, None)
        for e in ns.get("Networks", {}).values():
            e.update(IPAddress="", Gateway="", MacAddress="", IPPrefixLen=0)
        ns["Ports"] = {}

    def _write_etc(self, rec: dict, att: dict | None) -> None:
        cfg = rec["Config"]
        mode = rec["HostConfig"].get("NetworkMode") or "bridge"
        etc = os.path.dirname(rec["HostsPath"])
        os.makedirs(etc, exist_ok=True)
        if mode == "host":
            hosts = _read("/etc/hosts") or "127.0.0.1\tlocalhost\n"
        else:
            hosts = bundlemod.ISOLATED_HOSTS
        for extra in rec["HostConfig"].get("ExtraHosts") or []:
            h, _, ip = extra.partition(":")
            hosts += f"{ip}\t{h}\n"
        for e in (att or {}).get("networks", {}).values():
            if e.get("IPAddress"):
                hosts += f"{e['IPAddress']}\t{cfg['Hostname']}\n"
        resolv = _read("/etc/resolv.conf")
        if mode != "host":
            resolv = bundlemod.isolated_resolv_conf(resolv, (att or {}).get("dns_servers") or (),
                                                    (att or {}).get("dns_search") or ())
        for path, text in ((rec["HostsPath"], hosts), (rec["HostnamePath"], cfg["Hostname"] + "\n"),
                           (rec["ResolvConfPath"], resolv)):
            tmp = path + ".tmp"
            with open(tmp, "w") as f:
                f.write(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)

    # --------------------------------------------------------- exit/stop
    def _record_exit(self, rec: dict, forced: tuple[int, str] | None = None) -> None:
        """(under the lock) the container has ended: record how, and release what it held."""
        cid = rec["Id"]
        ex = monitor.exit_status(self.paths.exit_file(cid), self.paths.cdir(cid))
        code, when = ex if ex else (forced[0] if forced else 137, time.time())
        st = rec["State"]
        st.update(Status="exited", Running=False, Paused=False, Restarting=False, Pid=0, ExitCode=code,
                  FinishedAt=now_rfc3339(when))
        if forced and not ex:
            st["Error"] = forced[1]
        st["OOMKilled"] = _oom_killed(rec)
        self._rt(rec, "delete", "--force", cid)
        self._network_down(rec)
        self._save(rec)

    def cleanup(self, cid: str) -> None:
        """conmon's exit command: record the exit, then --rm or the restart policy."""
        try:
            cid = self.records.resolve(cid)
        except NoSuchContainer:
            return
        restart = False
        with self.records.locked(cid):
            rec = self.records.load(cid)
            if rec is None:
                return
            if rec["State"]["Status"] in ("running", "paused"):
                if (monitor.exit_status(self.paths.exit_file(cid), self.paths.cdir(cid)) is None
                        and monitor.conmon_pid(self.paths.cdir(cid), cid) is not None):
                    # conmon records the exit before it runs this command, and start removes that
                    # record: a running container with none and a live conmon is a later run, started
                    # after the run that ran this command was recorded (by stop, restart, or a read)
                    return
                self._record_exit(rec)
            elif rec["State"]["Status"] != "exited":
                return
            if rec["HostConfig"].get("AutoRemove"):
                # an attached `run --rm` still has to read the status: it removes the exit file
                self._destroy(rec, volumes=True, keep_exit=bool(rec["Pyimg"].get("attached")))
                return
            restart = _should_restart(rec)
            if restart:
                rec["State"].update(Status="restarting", Restarting=True, Running=True)
                self._save(rec)
        if not restart:
            return
        ran = (humanize.parse_time(rec["State"]["FinishedAt"]) or 0.0) - \
            (humanize.parse_time(rec["State"]["StartedAt"]) or 0.0)
        n = rec["Pyimg"].get("backoff", 0) if ran < 10 else 0
        time.sleep(min(0.1 * (2 ** n), 60.0))
        with self.records.locked(cid):
            rec = self.records.load(cid)
            if rec is None or rec["State"]["Status"] != "restarting" or rec["Pyimg"].get("manual_stop"):
                return
            rec["RestartCount"] = rec.get("RestartCount", 0) + 1
            rec["Pyimg"]["backoff"] = n + 1
            try:
                self._start_locked(rec)
            except PyimgError as e:
                rec = self.records.load(cid) or rec
                rec["State"].update(Status="exited", Restarting=False, Error=str(e))
                self._save(rec)

    def start_restartable(self) -> list[str]:
        """Start every stopped container whose policy is always, or unless-stopped and not stopped by hand
        (there is no daemon to do it after a reboot: a boot script calls this)."""
        started = []
        for rec in self.list():
            pol = rec["HostConfig"].get("RestartPolicy", {}).get("Name", "no")
            if rec["State"]["Status"] == "exited" and (
                    pol == "always" or (pol == "unless-stopped" and not rec["Pyimg"].get("manual_stop"))):
                self.start(rec["Id"])
                started.append(rec["Id"])
        return started

    def signal(self, cid: str, signum: int) -> None:
        """Send ``signum`` to a container's process, and nothing else (an attached run's proxy)."""
        rec = self.records.load(cid)
        if rec is not None:
            self._rt(rec, "kill", cid, str(signum))

    def kill(self, ref: str, sig: str | int | None = None) -> dict:
        rec = self.get(ref)
        n = parse_signal(sig)
        if rec["State"]["Status"] not in ("running", "paused"):
            raise EngineError(f"Cannot kill container: {ref}: Container {rec['Id']} is not running")
        if n in (signals.SIGKILL, parse_signal(rec["Config"].get("StopSignal"), signals.SIGTERM)):
            self._mark_manual(rec["Id"])
        r = self._rt(rec, "kill", rec["Id"], str(n))
        if r.returncode != 0 and self._runtime_status(rec) not in ("stopped", None):
            raise EngineError(f"Cannot kill container: {ref}: {(r.stderr.strip().splitlines() or ['failed'])[-1]}")
        return rec

    def _mark_manual(self, cid: str) -> None:
        with self.records.locked(cid):
            rec = self.records.load(cid)
            if rec is not None:
                rec["Pyimg"]["manual_stop"] = True
                if rec["State"]["Status"] == "restarting":
                    rec["State"].update(Status="exited", Restarting=False)
                self._save(rec)

    def stop(self, ref: str, timeout: int | None = None) -> dict:
        """The stop signal, then SIGKILL after the grace period; returns once the exit is recorded."""
        rec = self.get(ref)
        cid = rec["Id"]
        self._mark_manual(cid)
        if rec["State"]["Status"] not in ("running", "paused"):
            return self.get(cid)
        if timeout is None:
            timeout = rec["Config"].get("StopTimeout")
            timeout = DEFAULT_STOP_TIMEOUT if timeout is None else timeout
        sig = parse_signal(rec["Config"].get("StopSignal"), signals.SIGTERM)
        if rec["State"]["Status"] == "paused":
            self._rt(rec, "resume", cid)
        self._rt(rec, "kill", cid, str(sig))
        if not self._wait_exit(cid, timeout):
            self._rt(rec, "kill", cid, "KILL")
            self._wait_exit(cid, 30)
        return self._settled(cid)

    def _wait_exit(self, cid: str, timeout: float) -> bool:
        deadline = time.monotonic() + max(timeout, 0)
        while True:
            if monitor.exit_status(self.paths.exit_file(cid), self.paths.cdir(cid)) is not None:
                return True
            if monitor.conmon_pid(self.paths.cdir(cid), cid) is None:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def _settled(self, cid: str) -> dict:
        """The record once the exit has been recorded (by conmon's cleanup, or here)."""
        deadline = time.monotonic() + 5
        while True:
            rec = self.refresh(cid)
            if rec is None or rec["State"]["Status"] not in ("running", "paused"):
                return rec
            if time.monotonic() > deadline:
                with self.records.locked(cid):
                    rec = self.records.load(cid)
                    if rec and rec["State"]["Status"] in ("running", "paused"):
                        self._record_exit(rec)
                return rec
            time.sleep(0.05)

    def restart(self, ref: str, timeout: int | None = None) -> dict:
        self.stop(ref, timeout)
        return self.start(ref)

    def pause(self, ref: str) -> dict:
        rec = self.get(ref)
        if rec["State"]["Status"] != "running":
            raise EngineError(f"Container {rec['Id']} is not running")
        with self.records.locked(rec["Id"]):
            self._rt(rec, "pause", rec["Id"], check=True)
            rec = self.records.load(rec["Id"])
            rec["State"].update(Status="paused", Paused=True)
            self._save(rec)
        return rec

    def unpause(self, ref: str) -> dict:
        rec = self.get(ref)
        if rec["State"]["Status"] != "paused":
            raise EngineError(f"Container {rec['Id']} is not paused")
        with self.records.locked(rec["Id"]):
            self._rt(rec, "resume", rec["Id"], check=True)
            rec = self.records.load(rec["Id"])
            rec["State"].update(Status="running", Paused=False)
            self._save(rec)
        return rec

    def wait(self, ref: str) -> int:
        rec = self.get(ref)
        cid = rec["Id"]
        while True:
            rec = self.refresh(cid)
            if rec is None:
                code = self._exit_code_file(cid)
                return code if code is not None else 0
            if rec["State"]["Status"] in ("exited", "created") and not rec["Pyimg"].get("starting"):
                if rec["State"]["Status"] == "exited" or rec["State"]["StartedAt"] == ZERO_TIME:
                    return rec["State"]["ExitCode"]
            time.sleep(0.1)

    def _exit_code_file(self, cid: str) -> int | None:
        ex = monitor.exit_status(self.paths.exit_file(cid))
        return ex[0] if ex else None

    # ----------------------------------------------------------- remove
    def remove(self, ref: str, *, force: bool = False, volumes: bool = False) -> str:
        rec = self.get(ref)
        cid = rec["Id"]
        if rec["State"]["Status"] in ("running", "paused", "restarting"):
            if not force:
                raise EngineError(f"You cannot remove a {rec['State']['Status']} container {cid}. Stop the "
                                  "container before attempting removal or force remove")
            self._mark_manual(cid)
            if rec["State"]["Status"] != "restarting":
                self._rt(rec, "kill", cid, "KILL")
                self._wait_exit(cid, 30)
        with self.records.locked(cid):
            rec = self.records.load(cid)
            if rec is None:
                return cid
            if rec["State"]["Status"] in ("running", "paused"):
                self._record_exit(rec)
            self._destroy(rec, volumes=volumes)
        return cid

    def _destroy(self, rec: dict, *, volumes: bool, keep_exit: bool = False) -> None:
        """(under the lock) remove everything of a container that is not running."""
        cid = rec["Id"]
        rec["State"]["Status"] = "removing"
        with contextlib.suppress(PyimgError):
            self._save(rec)
        with contextlib.suppress(Exception):
            self._rt(rec, "delete", "--force", cid)
        self._network_down(rec)
        bundle = rec["Pyimg"]["bundle"]
        if bundlemod.read_record(self.paths.root, bundle) is not None:
            bundlemod.remove_bundle(self.paths.root, bundle, force=True)
        if volumes:
            for v in rec["Pyimg"].get("anonymous_volumes", []):
                with contextlib.suppress(PyimgError):
                    self.volumes.remove(v, in_use=self.volume_users(v, but=cid))
        self.records.free_name(rec["Name"][1:], cid)
        self.records.drop(cid, keep_exit=keep_exit)

    def volume_users(self, vname: str, but: str | None = None) -> list[str]:
        out = []
        for cid in self.records.ids():
            if cid == but:
                continue
            r = self.records.load(cid)
            if r and any(m.get("Name") == vname for m in r.get("Mounts", [])):
                out.append(cid)
        return out

    def volumes_in_use(self) -> set[str]:
        return {m["Name"] for r in self.records.all() for m in r.get("Mounts", []) if m.get("Name")}

    def prune(self) -> tuple[list[str], int]:
        removed = []
        for rec in self.list():
            if rec["State"]["Status"] in ("exited", "created", "dead"):
                removed.append(self.remove(rec["Id"]))
        return removed, 0

    def rename(self, ref: str, new: str) -> None:
        rec = self.get(ref)
        with self.records.locked(rec["Id"]):
            rec = self.records.load(rec["Id"])
            old = rec["Name"][1:]
            if old == new:
                raise EngineError("Renaming a container with the same name as its current name")
            self.records.rename(rec["Id"], old, new)
            rec["Name"] = "/" + new
            self._save(rec)

    # -------------------------------------------------------------- exec
    def exec_process(self, ref: str, cmd: list[str], *, tty: bool, env: list[str], user: str | None,
                     workdir: str | None) -> tuple[dict, dict]:
        """The running container and the OCI process for ``exec``; CommandError when cmd cannot run."""
        rec = self.get(ref)
        if rec["State"]["Status"] == "paused":
            raise EngineError(f"Container {rec['Id']} is paused, unpause the container before exec")
        if rec["State"]["Status"] != "running":
            raise EngineError(f"Container {rec['Id']} is not running")
        bundle = rec["Pyimg"]["bundle"]
        with open(os.path.join(bundle, "config.json"), "rb") as f:
            oci = json.loads(f.read())
        proc = dict(oci["process"])
        proc["args"] = list(cmd)
        proc["terminal"] = tty
        proc["env"] = bundlemod.merge_env(proc.get("env") or [], env or [])
        if workdir:
            proc["cwd"] = workdir
        rootfs = os.path.join(bundle, "rootfs")
        if user:
            try:
                proc["user"] = bundlemod.resolve_user(rootfs, user)
            except BundleError as e:
                raise EngineError(str(e)) from None
        proc.pop("consoleSize", None)
        _check_command(rootfs, proc, exec_=True)
        return rec, proc

    def runtime_command(self, rec: dict) -> list[str]:
        """The runtime's command line, with this store's runtime root, for exec."""
        return self._runtime(rec)

    def processes(self, ref: str) -> tuple[dict, list[int]]:
        rec = self.get(ref)
        if rec["State"]["Status"] not in ("running", "paused"):
            raise EngineError(f"Container {rec['Id']} is not running")
        r = self._rt(rec, "ps", "--format", "json", rec["Id"], check=True)
        try:
            pids = json.loads(r.stdout) or []
        except ValueError:
            pids = []
        return rec, [int(p) for p in pids]

    def cgroup_dir(self, rec: dict, controller: str) -> str | None:
        """The container's cgroup directory for ``controller`` on this host (v2 or v1)."""
        name = f"pyimg/{rec['Id']}"
        pid = rec["State"].get("Pid") or 0
        try:
            with open(f"/proc/{pid}/cgroup") as f:
                for line in f:
                    _, ctrls, path = line.rstrip("\n").split(":", 2)
                    if ctrls == "" and os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
                        return "/sys/fs/cgroup" + path
                    if controller in ctrls.split(","):
                        base = "/sys/fs/cgroup/" + ctrls
                        return base + path if os.path.isdir(base + path) else None
        except OSError:
            pass
        cand = os.path.join("/sys/fs/cgroup", name)
        return cand if os.path.isdir(cand) else None

    # ------------------------------------------------------------ other
    def inspect(self, rec: dict) -> dict:
        out = {k: v for k, v in rec.items() if k != "Pyimg"}
        return out


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _etc_mounts(rec: dict) -> list[dict]:
    return [{"destination": f"/etc/{n}", "type": "bind", "source": rec[k], "options": ["rbind", "rprivate", "rw"]}
            for n, k in (("hostname", "HostnamePath"), ("hosts", "HostsPath"), ("resolv.conf", "ResolvConfPath"))]


def _endpoint(e: dict, name: str) -> dict:
    return {"IPAMConfig": None, "Links": None, "Aliases": e.get("Aliases"), "NetworkID": e.get("NetworkID", ""),
            "EndpointID": e.get("EndpointID", ""), "Gateway": e.get("Gateway", ""),
            "IPAddress": e.get("IPAddress", ""), "IPPrefixLen": e.get("IPPrefixLen", 0),
            "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
            "MacAddress": e.get("MacAddress", ""), "DriverOpts": None}


def _ports_map(ports: list, exposed: dict) -> dict:
    out: dict = {k: None for k in exposed}
    for p in ports:
        for i in range(getattr(p, "range", 1) or 1):
            key = f"{p.container_port + i}/{p.protocol}"
            out.setdefault(key, None)
            out[key] = (out[key] or []) + [{"HostIp": p.host_ip or "0.0.0.0", "HostPort": str(p.host_port + i)}]
    return out


def _should_restart(rec: dict) -> bool:
    pol = rec["HostConfig"].get("RestartPolicy") or {}
    name = pol.get("Name", "no")
    if rec["Pyimg"].get("manual_stop") or name in ("", "no"):
        return False
    if name in ("always", "unless-stopped"):
        return True
    if name == "on-failure":
        most = pol.get("MaximumRetryCount", 0)
        return rec["State"]["ExitCode"] != 0 and (most == 0 or rec.get("RestartCount", 0) < most)
    return False


def _oom_killed(rec: dict) -> bool:
    return False if not rec["HostConfig"].get("Memory") else rec["State"]["ExitCode"] == 137 and \
        _oom_events(rec["Id"])


def _oom_events(cid: str) -> bool:
    for p in (f"/sys/fs/cgroup/pyimg/{cid}/memory.events", f"/sys/fs/cgroup/unified/pyimg/{cid}/memory.events"):
        text = _read(p)
        for line in text.splitlines():
            k, _, v = line.partition(" ")
            if k == "oom_kill" and v.strip() not in ("", "0"):
                return True
    return False


def _check_command(rootfs: str, proc: dict, exec_: bool = False) -> None:
    """docker's 127 (not found) and 126 (cannot be run) for the process's first arg, resolved in the rootfs."""
    arg0 = (proc.get("args") or [""])[0]
    if not arg0:
        raise CommandError("No command specified", 127)
    cands = []
    if "/" in arg0:
        cands = [arg0 if arg0.startswith("/") else os.path.join(proc.get("cwd") or "/", arg0)]
    else:
        path = next((e[5:] for e in proc.get("env") or [] if e.startswith("PATH=")), "/usr/bin:/bin")
        cands = [os.path.join(d or ".", arg0) for d in path.split(":") if d.startswith("/")]
    what = "OCI runtime exec failed" if exec_ else "OCI runtime create failed"
    found_dir = None
    for c in cands:
        try:
            fd = open_in_root(rootfs, c, os.O_PATH)
        except (OSError, LayerError):
            continue
        try:
            s = os.fstat(fd)
        finally:
            os.close(fd)
        if st_.S_ISREG(s.st_mode):
            if s.st_mode & 0o111:
                return
            raise CommandError(f'{what}: exec: "{arg0}": permission denied', 126)
        found_dir = c
    # docker 20.10's exec gives 126 for every command it cannot start, a missing one included
    missing = 126 if exec_ else 127
    if found_dir is not None and "/" in arg0:
        # runc's words: execve of a directory fails with EACCES
        raise CommandError(f'{what}: exec: "{arg0}": permission denied', 126)
    if "/" in arg0:
        raise CommandError(f'{what}: exec: "{arg0}": stat {arg0}: no such file or directory', missing)
    raise CommandError(f'{what}: exec: "{arg0}": executable file not found in $PATH', missing)
