"""pyimg's container verbs, docker's names and flags (the engine: imagetool.engine).

Each verb maps its arguments to one Engine call and prints the result
the way docker prints it; the library raises, and imagetool.cli._call
turns that into one line and docker's exit status (125 when run, create,
start -a or exec fail in the engine, 126/127 when the command cannot run
or is not found, otherwise the container's own status; 1 for the other
verbs). ``volume`` and ``network`` have their own small tables of
sub-verbs. Heavy modules are imported inside the verbs.
"""
import os
import sys

from runtime.toolkit.cmdtable import Arg, Opt, Table, stays


def _engine(g):
    from imagetool.engine.ops import Engine
    return Engine(g["root"], config_path=g.get("config"))


# ------------------------------------------------------------------- run
RUN_OPTS = (
    Opt("-d,--detach", "detach", bool, False, "Run in the background and print the container id."),
    Opt("-i,--interactive", "interactive", bool, False, "Keep stdin open."),
    Opt("-t,--tty", "tty", bool, False, "Allocate a pseudo-terminal."),
    Opt("--rm", "rm", bool, False, "Remove the container when it exits."),
    Opt("--name", "name", str, None, "Container name."),
    Opt("-e,--env", "env", list, None, "Set an environment variable (KEY=VALUE, or KEY from yours)."),
    Opt("--env-file", "env_file", list, None, "Read environment variables from a file."),
    Opt("-w,--workdir", "workdir", str, None, "Working directory (made if missing)."),
    Opt("-u,--user", "user", str, None, "user[:group], names or ids."),
    Opt("--entrypoint", "entrypoint", str, None, "Replace the image's Entrypoint (and its Cmd)."),
    Opt("-v,--volume", "volume", list, None, "Bind mount or volume: SRC:DST[:ro], or DST."),
    Opt("--mount", "mount", list, None, "type=bind|volume|tmpfs,source=...,target=...[,readonly]"),
    Opt("--tmpfs", "tmpfs", list, None, "A tmpfs: DST[:OPTIONS]."),
    Opt("-p,--publish", "publish", list, None, "Publish a port: [IP:][HOST:]CONTAINER[/PROTO]."),
    Opt("-P,--publish-all", "publish_all", bool, False, "Publish every exposed port to a random port."),
    Opt("--expose", "expose", list, None, "Expose a port without publishing it."),
    Opt("--network,--net", "network", str, None, "bridge (default), host, none, container:NAME or a network."),
    Opt("--network-alias", "network_alias", list, None, "Another name on the network."),
    Opt("-h,--hostname", "hostname", str, None, "Container host name."),
    Opt("--add-host", "add_host", list, None, "Add HOST:IP to /etc/hosts."),
    Opt("--restart", "restart", str, None, "no, on-failure[:N], always or unless-stopped."),
    Opt("-m,--memory", "memory", str, None, "Memory limit (e.g. 512m)."),
    Opt("--cpus", "cpus", str, None, "Number of CPUs."),
    Opt("--pids-limit", "pids_limit", int, None, "Most processes."),
    Opt("--read-only", "read_only", bool, False, "Mount the root filesystem read-only."),
    Opt("--cap-add", "cap_add", list, None, "Add a capability."),
    Opt("--cap-drop", "cap_drop", list, None, "Drop a capability."),
    Opt("--privileged", "privileged", bool, False, "All capabilities, devices, no seccomp."),
    Opt("--security-opt", "security_opt", list, None, "no-new-privileges"),
    Opt("--init", "init", bool, False, "Run an init (tini) as PID 1."),
    Opt("--runtime", "runtime", str, None, "OCI runtime: pyrunc (default), runc, crun or a path."),
    Opt("--stop-signal", "stop_signal", str, None, "Signal that stops the container."),
    Opt("--stop-timeout", "stop_timeout", int, None, "Seconds before stop kills it."),
    Opt("-l,--label", "label", list, None, "KEY=VALUE label."),
    Opt("--platform", "platform", str, None, "os/arch[/variant]"),
    Opt("--storage-mode", "storage_mode", str, None, "Rootfs: overlay (default where it works) or copy."),
)


def run_options(a: dict) -> dict:
    """docker run's flags as the engine's options; every check happens here, before anything is made."""
    from imagetool.engine import spec
    from imagetool.errors import UsageError

    env = []
    for f in a["env_file"] or []:
        env += spec.parse_env_file(f)
    env += a["env"] or []
    mounts = [spec.parse_volume(v) for v in a["volume"] or []]
    mounts += [spec.parse_mount(m) for m in a["mount"] or []]
    mounts += [spec.parse_tmpfs(t) for t in a["tmpfs"] or []]
    seen = set()
    for m in mounts:
        if m.target in seen:
            raise UsageError(f"Duplicate mount point: {m.target}")
        seen.add(m.target)
    ports = []
    if a["publish"]:
        from imagetool.engine.network import parse_publish
        for p in a["publish"]:
            ports += parse_publish(p)
    exposed = {}
    for e in a["expose"] or []:
        port, _, proto = e.partition("/")
        if not port.isdigit():
            raise UsageError(f"invalid range format for --expose: {e}")
        exposed[f"{port}/{proto or 'tcp'}"] = {}
    for p in ports:
        exposed[f"{p.container_port}/{p.protocol}"] = {}
    for h in a["add_host"] or []:
        spec.parse_add_host(h)
    labels = {}
    for lab in a["label"] or []:
        k, _, v = lab.partition("=")
        labels[k] = v
    restart = spec.parse_restart(a["restart"])
    if a["rm"] and restart["Name"] != "no":
        raise UsageError("Conflicting options: --restart and --rm")
    entrypoint = None
    if a["entrypoint"] is not None:
        entrypoint = [a["entrypoint"]] if a["entrypoint"] else []
    if a["stop_signal"]:
        from imagetool.engine.ops import parse_signal
        parse_signal(a["stop_signal"])
    for c in (a["cap_add"] or []) + (a["cap_drop"] or []):
        spec.normalize_cap(c)
    from imagetool.engine.records import NAME_RE
    if a["name"] is not None and not NAME_RE.fullmatch(a["name"]):
        raise UsageError(f"Invalid container name ({a['name']}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    network = a["network"] or "bridge"
    if network.startswith("container:") and (a["hostname"] or ports):
        raise UsageError("conflicting options: hostname and the network mode" if a["hostname"] else
                         "conflicting options: port publishing and the container type network mode")
    host = {
        "Binds": [v for v in a["volume"] or []] or None, "NetworkMode": network,
        "PortBindings": _port_bindings(ports), "RestartPolicy": restart, "AutoRemove": a["rm"],
        "Privileged": a["privileged"], "ReadonlyRootfs": a["read_only"], "CapAdd": a["cap_add"],
        "CapDrop": a["cap_drop"], "Init": a["init"] or None, "Runtime": a["runtime"] or os.environ.get("PYIMG_RUNTIME") or "pyrunc",
        "Memory": spec.parse_memory(a["memory"]), "NanoCpus": spec.parse_cpus(a["cpus"]),
        "PidsLimit": a["pids_limit"], "ExtraHosts": a["add_host"], "SecurityOpt": a["security_opt"],
        "PublishAllPorts": a["publish_all"], "Tmpfs": {t.partition(":")[0]: t.partition(":")[2]
                                                        for t in a["tmpfs"] or []} or None,
    }
    config = {
        "Hostname": a["hostname"] or "", "User": a["user"] or "", "Tty": a["tty"],
        "OpenStdin": a["interactive"], "AttachStdin": a["interactive"] and not a["detach"],
        "AttachStdout": not a["detach"], "AttachStderr": not a["detach"], "StdinOnce": a["interactive"] and not a["detach"],
        "Env": env, "Cmd": list(a["cmd"] or []) or None, "Entrypoint": entrypoint,
        "WorkingDir": a["workdir"] or "", "Labels": labels, "ExposedPorts": exposed,
        "StopSignal": a["stop_signal"], "StopTimeout": a["stop_timeout"],
    }
    if a["stop_signal"] is None:
        config.pop("StopSignal")
    return {"image": a["ref"], "host": host, "config": config, "mounts": [m.as_dict() for m in mounts],
            "ports": ports, "publish_all": a["publish_all"], "aliases": a["network_alias"] or [],
            "platform": a["platform"], "storage_mode": a["storage_mode"], "name": a["name"]}


def _port_bindings(ports) -> dict:
    out: dict = {}
    for p in ports:
        for i in range(p.range or 1):
            key = f"{p.container_port + i}/{p.protocol}"
            out.setdefault(key, []).append({"HostIp": p.host_ip, "HostPort": str(p.host_port + i) if p.host_port else ""})
    return out


def run(g, a):
    """Create and start a container (docker run)."""
    from imagetool.engine import attach

    opts = run_options(a)
    if not a["detach"]:
        stays()
    from imagetool.errors import PyimgError

    eng = _engine(g)
    rec = attach.create(eng, opts)
    try:
        if a["detach"]:
            eng.start(rec["Id"])
            print(rec["Id"])
            return 0
        return attach.run_attached(eng, rec["Id"], interactive=a["interactive"], tty=a["tty"], remove=a["rm"])
    except PyimgError:
        _discard_unstarted(eng, rec["Id"])
        raise


def _discard_unstarted(eng, cid: str) -> None:
    """A run whose start was refused (port taken, no address left, command
    not found) leaves nothing behind (issue 17's bad-input rule): the
    container it created, never started, is removed with its anonymous
    volumes. A container that did start is left to its own exit path."""
    from imagetool.errors import PyimgError

    try:
        if eng.get(cid)["State"]["Status"] == "created":
            eng.remove(cid, force=True, volumes=True)
    except PyimgError:
        pass


def create(g, a):
    """Create a container without starting it (docker create)."""
    from imagetool.engine import attach

    rec = attach.create(_engine(g), run_options(a))
    print(rec["Id"])


START = (Arg("containers", "Containers.", many=True, required=False),
         Opt("-a,--attach", "attach", bool, False, "Attach stdout/stderr and forward signals."),
         Opt("-i,--interactive", "interactive", bool, False, "Attach stdin."),
         Opt("--all-restartable", "all_restartable", bool, False,
             "Start every container whose restart policy says so (for a boot script: there is no daemon)."))


def start(g, a):
    """Start stopped containers."""
    from imagetool.engine import attach
    from imagetool.errors import UsageError

    eng = _engine(g)
    if a["all_restartable"]:
        for cid in eng.start_restartable():
            print(cid[:12])
        return 0
    if not a["containers"]:
        raise UsageError('"start" requires at least 1 argument.')
    if a["attach"] or a["interactive"]:
        if len(a["containers"]) > 1:
            raise UsageError("you cannot start and attach multiple containers at once")
        stays()
        return attach.start_attached(eng, a["containers"][0], interactive=a["interactive"])
    return _each(a["containers"], lambda c: (eng.start(c), print(c)))


def _each(refs, fn) -> int:
    """docker's many-container verbs: an error per failed one on stderr, the others still done."""
    from imagetool.errors import PyimgError
    rc = 0
    for r in refs:
        try:
            fn(r)
        except PyimgError as e:
            sys.stderr.write(f"pyimg: error: {e}\n")
            rc = 1
    return rc


STOP = (Arg("containers", "Containers.", many=True),
        Opt("-t,--time", "time", int, None, "Seconds to wait before killing it."))


def stop(g, a):
    """Stop containers: the stop signal, then SIGKILL after the grace period."""
    eng = _engine(g)
    return _each(a["containers"], lambda c: (eng.stop(c, a["time"]), print(c)))


def restart(g, a):
    """Stop, then start, containers."""
    eng = _engine(g)
    return _each(a["containers"], lambda c: (eng.restart(c, a["time"]), print(c)))


KILL = (Arg("containers", "Containers.", many=True),
        Opt("-s,--signal", "signal", str, "KILL", "Signal to send."))


def kill(g, a):
    """Send a signal to containers."""
    from imagetool.engine.ops import parse_signal
    parse_signal(a["signal"])
    eng = _engine(g)
    return _each(a["containers"], lambda c: (eng.kill(c, a["signal"]), print(c)))


def pause(g, a):
    """Freeze containers."""
    eng = _engine(g)
    return _each(a["containers"], lambda c: (eng.pause(c), print(c)))


def unpause(g, a):
    """Thaw containers."""
    eng = _engine(g)
    return _each(a["containers"], lambda c: (eng.unpause(c), print(c)))


RM = (Arg("containers", "Containers.", many=True),
      Opt("-f,--force", "force", bool, False, "Kill it first if it runs."),
      Opt("-v,--volumes", "volumes", bool, False, "Remove its anonymous volumes too."))


def rm(g, a):
    """Remove containers."""
    eng = _engine(g)
    return _each(a["containers"], lambda c: (eng.remove(c, force=a["force"], volumes=a["volumes"]), print(c)))


WAIT = (Arg("containers", "Containers.", many=True),)


def wait(g, a):
    """Wait for containers to stop; print their exit codes."""
    eng = _engine(g)
    stays()
    return _each(a["containers"], lambda c: print(eng.wait(c)))


def cleanup(g, a):
    """(conmon's exit command) record a container's exit; --rm and restart policies."""
    _engine(g).cleanup(a["container"])


# ------------------------------------------------------------ reading
PS = (Opt("-a,--all", "all", bool, False, "Show all containers (default: running)."),
      Opt("-q,--quiet", "quiet", bool, False, "Only ids."),
      Opt("--no-trunc", "no_trunc", bool, False, "Don't truncate."),
      Opt("-l,--latest", "latest", bool, False, "Only the latest created."),
      Opt("-n,--last", "last", int, None, "Only the N last created."),
      Opt("-s,--size", "size", bool, False, "Show sizes."),
      Opt("-f,--filter", "filter", list, None, "status=, name=, id=, label=, exited=, ancestor="),
      Opt("--format", "fmt", str, None, "Go template."))

PS_HEADERS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
              "RunningFor": "CREATED", "Ports": "PORTS", "Status": "STATUS", "Size": "SIZE", "Names": "NAMES",
              "Labels": "LABELS", "Mounts": "MOUNTS", "Networks": "NETWORKS", "State": "STATE",
              "LocalVolumes": "LOCAL VOLUMES", "Label": "LABEL"}
PS_DEFAULT = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"


def ps(g, a):
    """List containers (docker ps)."""
    from imagetool.engine import present

    recs = _engine(g).list()
    recs = present.ps_filter(recs, a["filter"] or [], all_=a["all"] or bool(a["last"]) or a["latest"])
    if a["latest"]:
        recs = recs[:1]
    elif a["last"]:
        recs = recs[:a["last"]]
    if a["quiet"]:
        for r in recs:
            print(r["Id"] if a["no_trunc"] else r["Id"][:12])
        return
    fmt = a["fmt"] or (PS_DEFAULT + ("\t{{.Size}}" if a["size"] else ""))
    sys.stdout.write(present.table(fmt, PS_HEADERS, [present.ps_row(r, trunc=not a["no_trunc"]) for r in recs]))


LOGS = (Arg("container", "Container."),
        Opt("-f,--follow", "follow", bool, False, "Follow the output."),
        Opt("--tail,-n", "tail", str, "all", "Lines from the end (all)."),
        Opt("-t,--timestamps", "timestamps", bool, False, "Show timestamps."),
        Opt("--since", "since", str, None, "Since a time or a duration ago."),
        Opt("--until", "until", str, None, "Until a time or a duration ago."),
        Opt("--details", "details", bool, False, "(ignored)"))


def logs(g, a):
    """Print a container's output: stdout to stdout, stderr to stderr."""
    from imagetool.engine import attach
    stays()
    attach.logs(_engine(g), a["container"], follow=a["follow"], tail=a["tail"], timestamps=a["timestamps"],
                since=a["since"], until=a["until"])


INSPECT = (Arg("refs", "Containers, images, volumes or networks.", many=True),
           Opt("-f,--format", "fmt", str, None, "Go template."),
           Opt("--type", "type", str, None, "container, image, volume or network."),
           Opt("-s,--size", "size", bool, False, "(ignored)"),
           Opt("--platform", "platform", str, None, "os/arch[/variant] for an image."))


def inspect(g, a):
    """Low-level information on containers, images, volumes or networks, as JSON or through --format."""
    from imagetool.engine import present
    return present.inspect(_engine(g), a["refs"], fmt=a["fmt"], kind=a["type"], platform=a["platform"],
                           image_inspect=lambda ref, platform: present.image_inspect(g["root"], ref, platform))


def top(g, a):
    """The processes of a container (docker top)."""
    from imagetool.engine import present
    sys.stdout.write(present.top(_engine(g), a["container"], a["ps_args"]))


def port(g, a):
    """A container's published ports."""
    from imagetool.engine import present
    for line in present.port(_engine(g).get(a["container"]), a["private"]):
        print(line)


def stats(g, a):
    """CPU, memory, network and pids of running containers (--no-stream: one sample)."""
    from imagetool.engine import present
    from imagetool.errors import UsageError
    if not a["no_stream"]:
        raise UsageError("only --no-stream is supported: pyimg has no daemon to stream from")
    sys.stdout.write(present.stats(_engine(g), a["containers"], all_=a["all"], fmt=a["fmt"]))


def exec_(g, a):
    """Run a command in a running container (docker exec)."""
    from imagetool.engine import attach
    from imagetool.engine.spec import parse_env_file
    stays()
    env = []
    for f in a["env_file"] or []:
        env += parse_env_file(f)
    env += a["env"] or []
    return attach.exec_(_engine(g), a["container"], a["cmd"], interactive=a["interactive"], tty=a["tty"],
                        detach=a["detach"], env=env, user=a["user"], workdir=a["workdir"],
                        privileged=a["privileged"])


def cp(g, a):
    """Copy files between a container and the host: CONTAINER:SRC DEST or SRC CONTAINER:DEST."""
    from imagetool.engine import copy
    copy.cp(_engine(g), a["src"], a["dst"], archive=a["archive"], follow=a["follow"])


def rename(g, a):
    """Rename a container."""
    _engine(g).rename(a["container"], a["name"])


def container(g, a):
    """Manage containers: prune (and ls, the same as ps)."""
    from imagetool.errors import UsageError
    sub, rest = a["action"], a["args"]
    if sub == "prune":
        from imagetool.engine import present
        return present.container_prune(_engine(g), any(x in ("-f", "--force") for x in rest))
    raise UsageError(f"unknown command {sub!r} for \"pyimg container\"")  # (cli routes ls, run, ... itself)


def volume(g, a):
    """Manage volumes: create, ls, inspect, rm, prune."""
    from imagetool.engine import present
    return present.volume_cmd(_engine(g), a["action"], a["args"])


def network(g, a):
    """Manage networks: create, ls, inspect, rm, prune."""
    from imagetool.engine import present
    return present.network_cmd(_engine(g), a["action"], a["args"])


def version(g, a):
    """Client and engine versions, as docker prints them."""
    from imagetool.engine import present
    sys.stdout.write(present.version(a["fmt"]))


def info(g, a):
    """What the engine has and how it is set up."""
    from imagetool.engine import present
    sys.stdout.write(present.info(_engine(g), g.get("config"), a["fmt"]))


def register(T: Table) -> None:
    T.verb("run", Arg("ref", "Image."), Arg("cmd", "Command and arguments.", required=False, many=True),
           *RUN_OPTS, raw_rest=True)(run)
    T.verb("create", Arg("ref", "Image."), Arg("cmd", "Command and arguments.", required=False, many=True),
           *RUN_OPTS, raw_rest=True)(create)
    T.verb("start", *START)(start)
    T.verb("stop", *STOP)(stop)
    T.verb("restart", *STOP)(restart)
    T.verb("kill", *KILL)(kill)
    T.verb("pause", Arg("containers", "Containers.", many=True))(pause)
    T.verb("unpause", Arg("containers", "Containers.", many=True))(unpause)
    T.verb("rm", *RM)(rm)
    T.verb("wait", *WAIT)(wait)
    T.verb("container-cleanup", Arg("container", "Container id."))(cleanup)
    T.verb("ps", *PS)(ps)
    T.verb("logs", *LOGS)(logs)
    T.verb("inspect", *INSPECT)(inspect)
    T.verb("top", Arg("container", "Container."), Arg("ps_args", "ps options (ignored).", required=False, many=True),
           raw_rest=True)(top)
    T.verb("port", Arg("container", "Container."), Arg("private", "PORT[/PROTO]", required=False))(port)
    T.verb("stats", Arg("containers", "Containers.", many=True, required=False),
           Opt("--no-stream", "no_stream", bool, False, "One sample, then exit."),
           Opt("-a,--all", "all", bool, False, "All containers (default: running)."),
           Opt("--no-trunc", "no_trunc", bool, False, "Don't truncate."),
           Opt("--format", "fmt", str, None, "Go template."))(stats)
    T.verb("exec", Arg("container", "Container."), Arg("cmd", "Command and arguments.", many=True),
           Opt("-i,--interactive", "interactive", bool, False, "Keep stdin open."),
           Opt("-t,--tty", "tty", bool, False, "Allocate a pseudo-terminal."),
           Opt("-d,--detach", "detach", bool, False, "Run it in the background."),
           Opt("-e,--env", "env", list, None, "KEY=VALUE"),
           Opt("--env-file", "env_file", list, None, "Environment file."),
           Opt("-u,--user", "user", str, None, "user[:group]"),
           Opt("-w,--workdir", "workdir", str, None, "Working directory."),
           Opt("--privileged", "privileged", bool, False, "All capabilities."),
           raw_rest=True)(exec_)
    T.verb("cp", Arg("src", "CONTAINER:PATH or a host path."), Arg("dst", "CONTAINER:PATH or a host path."),
           Opt("-a,--archive", "archive", bool, False, "Keep uid/gid."),
           Opt("-L,--follow-link", "follow", bool, False, "Follow a symlink in SRC."))(cp)
    T.verb("rename", Arg("container", "Container."), Arg("name", "New name."))(rename)
    T.verb("container", Arg("action", "prune, ls, ..."), Arg("args", "Its arguments.", many=True, required=False),
           raw_rest=True)(container)
    T.verb("volume", Arg("action", "create, ls, inspect, rm, prune"),
           Arg("args", "Its arguments.", many=True, required=False), raw_rest=True)(volume)
    T.verb("network", Arg("action", "create, ls, inspect, rm, prune"),
           Arg("args", "Its arguments.", many=True, required=False), raw_rest=True)(network)
    T.verb("version", Opt("-f,--format", "fmt", str, None, "Go template."))(version)
    T.verb("info", Opt("-f,--format", "fmt", str, None, "Go template."))(info)
