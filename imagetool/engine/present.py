"""What the container verbs print, in docker's columns and words.

Pure presentation over ops/volumes/network: rows for ps, inspect's
documents, top, port, stats, version, info, and the volume and network
sub-verbs (each has its own small command table). Everything a verb
prints goes through ``table`` (docker's --format, ``table`` prefix and
tabwriter alignment) or ``inspect``'s JSON.
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import time

from runtime.toolkit import fastjson as json
from runtime.toolkit.cmdtable import Arg, Opt, Table
from runtime.version import VERSION
from imagetool.config import Config
from imagetool.errors import EngineError, PyimgError, StoreError, UsageError
from imagetool.store import Store
from imagetool.engine import humanize, template
from imagetool.engine.monitor import conmon_path
from imagetool.engine.ops import find_runtime


def table(fmt: str, headers: dict, rows: list) -> str:
    """Rows through a --format (docker's: "table ..." gets a header and aligned columns)."""
    is_table, _ = template.prepare(fmt)
    header, tmpl = template.table_format(fmt, headers)
    lines = [tmpl.render(r) for r in rows]
    if not is_table:
        return "".join(ln + "\n" for ln in lines)
    return template.tabwrite([header] + lines)


def _go_time(s: str) -> str:
    """docker's CreatedAt: "2024-01-02 03:04:05 +0000 UTC"."""
    t = humanize.parse_time(s) or 0
    return time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(t))


def _ports_list(rec: dict) -> list[dict]:
    out = []
    for key, binds in sorted((rec["NetworkSettings"].get("Ports") or {}).items()):
        port, _, proto = key.partition("/")
        if not binds:
            out.append({"PrivatePort": int(port), "Type": proto})
        for b in binds or []:
            out.append({"IP": b.get("HostIp") or "0.0.0.0", "PrivatePort": int(port),
                        "PublicPort": int(b["HostPort"]), "Type": proto})
    if not out and rec["State"]["Status"] != "running":
        return []
    return out


def ps_row(rec: dict, trunc: bool = True) -> template.Struct:
    cfg = rec["Config"]
    labels = dict(sorted((cfg.get("Labels") or {}).items()))
    args = [rec["Path"]] + rec["Args"]
    row = template.Struct("*formatter.containerContext", {
        "ID": rec["Id"][:12] if trunc else rec["Id"],
        "Image": cfg.get("Image", ""),
        "Command": humanize.command(args, trunc=trunc),
        "CreatedAt": _go_time(rec["Created"]),
        "RunningFor": humanize.ago(humanize.parse_time(rec["Created"])),
        "Ports": humanize.ports(_ports_list(rec)) if rec["State"]["Status"] == "running" else "",
        "Status": humanize.status(rec["State"]),
        "State": rec["State"]["Status"],
        "Size": "0B",
        "Names": rec["Name"][1:],
        "Labels": ",".join(f"{k}={v}" for k, v in labels.items()),
        "Mounts": ",".join(m.get("Name") or m.get("Source", "") for m in rec.get("Mounts", [])),
        "Networks": ",".join(sorted(rec["NetworkSettings"].get("Networks") or {})),
        "LocalVolumes": str(sum(1 for m in rec.get("Mounts", []) if m.get("Type") == "volume")),
    })
    row["Label"] = lambda name: labels.get(name, "")
    return row


def ps_filter(recs: list[dict], filters: list[str], *, all_: bool) -> list[dict]:
    want: dict[str, list[str]] = {}
    for f in filters:
        k, eq, v = f.partition("=")
        if not eq or k not in ("status", "name", "id", "label", "exited", "ancestor"):
            raise UsageError(f"invalid filter '{f}'" if not eq else f"Invalid filter '{k}'")
        want.setdefault(k, []).append(v)
    out = []
    for r in recs:
        st = r["State"]["Status"]
        if not all_ and "status" not in want and st not in ("running", "paused", "restarting"):
            continue
        if "status" in want and st not in want["status"]:
            continue
        if "name" in want and not any(n in r["Name"][1:] for n in want["name"]):
            continue
        if "id" in want and not any(r["Id"].startswith(i) for i in want["id"]):
            continue
        if "exited" in want and not (st == "exited" and str(r["State"]["ExitCode"]) in want["exited"]):
            continue
        if "ancestor" in want and r["Config"].get("Image") not in want["ancestor"]:
            continue
        if "label" in want:
            labels = r["Config"].get("Labels") or {}
            ok = True
            for lab in want["label"]:
                k, eq, v = lab.partition("=")
                ok = ok and k in labels and (not eq or labels[k] == v)
            if not ok:
                continue
        out.append(r)
    return out


# ----------------------------------------------------------------- inspect
def image_inspect(root: str, ref: str, platform: str | None = None) -> dict:
    """A stored image as `pyimg inspect` shows it: digests, platform, config, layers."""
    store = Store(root)
    desc = store.descriptor(ref)
    digest, m = store.resolve(ref, platform)
    try:
        cfg = store.read_json(m["config"]["digest"])
    except (KeyError, TypeError):
        raise StoreError(f"{ref}: malformed image manifest {digest}") from None
    ann = desc.get("annotations") or {}
    plat = {k: cfg[k] for k in ("os", "architecture", "variant") if cfg.get(k)}
    return {
        "Reference": ann.get("org.opencontainers.image.ref.name", ref),
        "Id": m["config"]["digest"],
        "ManifestDigest": digest,
        "RepoDigest": ann.get("io.pyimg.repo.digest", digest),
        "MediaType": m.get("mediaType") or desc.get("mediaType"),
        "Platform": plat,
        "Created": cfg.get("created"),
        "Size": sum(l["size"] for l in m.get("layers", [])) + m["config"]["size"],
        "Layers": [{"digest": l["digest"], "size": l["size"], "mediaType": l.get("mediaType")}
                   for l in m.get("layers", [])],
        "DiffIDs": (cfg.get("rootfs") or {}).get("diff_ids", []),
        "Config": cfg.get("config") or {},
        "Manifest": m,
    }


def inspect(eng, refs: list[str], *, fmt: str | None, kind: str | None, platform: str | None,
            image_inspect) -> int:
    if kind not in (None, "container", "image", "volume", "network"):
        raise UsageError(f'"{kind}" is not a valid value for --type')
    docs, missing = [], []
    for ref in refs:
        doc = None
        for k in ([kind] if kind else ["container", "image", "volume", "network"]):
            try:
                if k == "container":
                    doc = eng.inspect(eng.get(ref))
                elif k == "image":
                    doc = image_inspect(ref, platform)
                elif k == "volume":
                    doc = eng.volumes.get(ref)
                else:
                    if ref == "bridge":
                        eng.networks.default()  # made on first use
                    doc = eng.networks.get(ref)
                break
            except PyimgError:
                continue
        if doc is None:
            missing.append(ref)
        else:
            docs.append(doc)
    _docs_out(docs, fmt)
    if missing:
        what = {"container": "container", "image": "image", "volume": "volume", "network": "network"}.get(kind, "object")
        for m in missing:
            sys.stderr.write(f"Error: No such {what}: {m}\n")
        return 1
    return 0


# --------------------------------------------------------- top, port, stats
def top(eng, ref: str, _ps_args) -> str:
    rec, pids = eng.processes(ref)
    r = subprocess.run(["ps", "-ef"], capture_output=True, text=True)
    lines = r.stdout.splitlines()
    if not lines:
        raise EngineError("ps -ef printed nothing")
    head = lines[0]
    col = head.split().index("PID")
    keep = [ln for ln in lines[1:] if len(ln.split()) > col and ln.split()[col].isdigit()
            and int(ln.split()[col]) in pids]
    return "\n".join([head] + keep) + "\n"


def port(rec: dict, private: str | None) -> list[str]:
    out = []
    ports = rec["NetworkSettings"].get("Ports") or {}
    if private:
        p, _, proto = private.partition("/")
        key = f"{p}/{proto or 'tcp'}"
        binds = ports.get(key)
        if not binds:
            raise EngineError(f"No public port '{key}' published for {rec['Name'][1:]}")
        return [f"{b['HostIp'] or '0.0.0.0'}:{b['HostPort']}" for b in binds]
    for key in sorted(ports, key=lambda k: (int(k.partition('/')[0]), k)):
        for b in ports[key] or []:
            out.append(f"{key} -> {b['HostIp'] or '0.0.0.0'}:{b['HostPort']}")
    return out


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            v = f.read().split()[0]
        return None if v == "max" else int(v)
    except (OSError, ValueError, IndexError):
        return None


def _sample(eng, rec: dict) -> dict:
    cpu_dir = eng.cgroup_dir(rec, "cpuacct")
    mem_dir = eng.cgroup_dir(rec, "memory")
    pids_dir = eng.cgroup_dir(rec, "pids")
    cpu = None
    if cpu_dir:
        cpu = _read_int(os.path.join(cpu_dir, "cpuacct.usage"))
        if cpu is None:
            try:
                with open(os.path.join(cpu_dir, "cpu.stat")) as f:
                    for ln in f:
                        if ln.startswith("usage_usec"):
                            cpu = int(ln.split()[1]) * 1000
            except OSError:
                pass
    mem = limit = None
    if mem_dir:
        mem = _read_int(os.path.join(mem_dir, "memory.current")) or _read_int(os.path.join(mem_dir, "memory.usage_in_bytes"))
        limit = _read_int(os.path.join(mem_dir, "memory.max")) or _read_int(os.path.join(mem_dir, "memory.limit_in_bytes"))
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if not limit or limit > total:
        limit = total
    pids = _read_int(os.path.join(pids_dir, "pids.current")) if pids_dir else None
    rx = tx = 0
    try:
        with open(f"/proc/{rec['State']['Pid']}/net/dev") as f:
            for ln in f.readlines()[2:]:
                name, _, rest = ln.partition(":")
                if name.strip() == "lo":
                    continue
                v = rest.split()
                rx += int(v[0])
                tx += int(v[8])
    except (OSError, ValueError, IndexError):
        pass
    return {"cpu": cpu, "t": time.monotonic(), "mem": mem or 0, "limit": limit, "pids": pids or 0, "rx": rx, "tx": tx}


STATS_HEADERS = {"Container": "CONTAINER", "ID": "CONTAINER ID", "Name": "NAME", "CPUPerc": "CPU %",
                 "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O", "BlockIO": "BLOCK I/O",
                 "PIDs": "PIDS"}
STATS_DEFAULT = ("table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t"
                 "{{.BlockIO}}\t{{.PIDs}}")


def stats(eng, refs: list[str], *, all_: bool, fmt: str | None) -> str:
    if refs:
        recs = [eng.get(r) for r in refs]
    else:
        recs = [r for r in eng.list() if all_ or r["State"]["Status"] == "running"]
    first = {r["Id"]: _sample(eng, r) for r in recs if r["State"]["Status"] == "running"}
    if first:
        time.sleep(0.5)
    rows = []
    ncpu = os.cpu_count() or 1
    for r in recs:
        a = first.get(r["Id"])
        b = _sample(eng, r) if a else None
        if a and b and a["cpu"] is not None and b["cpu"] is not None:
            perc = (b["cpu"] - a["cpu"]) / ((b["t"] - a["t"]) * 1e9) * 100.0
            perc = min(perc, 100.0 * ncpu)
        else:
            perc = 0.0
        s = b or {"mem": 0, "limit": 0, "pids": 0, "rx": 0, "tx": 0}
        rows.append(template.Struct("*formatter.containerStatsContext", {
            "Container": r["Id"][:12], "ID": r["Id"][:12], "Name": r["Name"][1:] if b else "--",
            "CPUPerc": f"{perc:.2f}%", "MemUsage": f"{humanize.bytes_size(s['mem'])} / {humanize.bytes_size(s['limit'])}",
            "MemPerc": f"{(s['mem'] / s['limit'] * 100.0) if s['limit'] else 0:.2f}%",
            "NetIO": f"{humanize.size(s['rx'])} / {humanize.size(s['tx'])}", "BlockIO": "0B / 0B",
            "PIDs": str(s["pids"])}))
    return table(fmt or STATS_DEFAULT, STATS_HEADERS, rows)


# ----------------------------------------------------------- volume verbs
VOL = Table("pyimg volume", "Manage volumes.", [])


@VOL.verb("create", Arg("name", "Volume name.", required=False),
          Opt("-d,--driver", "driver", str, "local", "local"),
          Opt("-o,--opt", "opt", list, None, "Driver options."),
          Opt("--label", "label", list, None, "KEY=VALUE"))
def _vol_create(eng, a):
    labels = dict(lab.partition("=")[::2] for lab in a["label"] or [])
    opts = dict(o.partition("=")[::2] for o in a["opt"] or [])
    print(eng.volumes.create(a["name"], labels=labels or None, driver=a["driver"], options=opts or None)["Name"])


@VOL.verb("ls", Opt("-q,--quiet", "quiet", bool, False, "Only names."),
          Opt("--format", "fmt", str, None, "Go template."), Opt("-f,--filter", "filter", list, None, "dangling=true"))
def _vol_ls(eng, a):
    vols = eng.volumes.list()
    for f in a["filter"] or []:
        if f in ("dangling=true", "dangling=1"):
            used = eng.volumes_in_use()
            vols = [v for v in vols if v["Name"] not in used]
    if a["quiet"]:
        for v in vols:
            print(v["Name"])
        return
    rows = [template.Struct("*formatter.volumeContext", {"Driver": v["Driver"], "Name": v["Name"],
                                                           "Mountpoint": v["Mountpoint"], "Scope": v["Scope"],
                                                           "Labels": ",".join(f"{k}={x}" for k, x in sorted((v.get("Labels") or {}).items()))})
            for v in vols]
    sys.stdout.write(table(a["fmt"] or "table {{.Driver}}\t{{.Name}}",
                           {"Driver": "DRIVER", "Name": "VOLUME NAME", "Mountpoint": "MOUNTPOINT",
                            "Scope": "SCOPE", "Labels": "LABELS"}, rows))


@VOL.verb("inspect", Arg("names", "Volumes.", many=True), Opt("-f,--format", "fmt", str, None, "Go template."))
def _vol_inspect(eng, a):
    return inspect(eng, a["names"], fmt=a["fmt"], kind="volume", platform=None, image_inspect=None)


@VOL.verb("rm", Arg("names", "Volumes.", many=True), Opt("-f,--force", "force", bool, False, "Ignore missing."))
def _vol_rm(eng, a):
    rc = 0
    for n in a["names"]:
        try:
            eng.volumes.remove(n, force=a["force"], in_use=eng.volume_users(n))
            print(n)
        except PyimgError as e:
            sys.stderr.write(f"pyimg: error: {e}\n")
            rc = 1
    return rc


@VOL.verb("prune", Opt("-f,--force", "force", bool, False, "Don't ask."),
          Opt("-a,--all", "all", bool, False, "(docker 23's; 20.10 prunes every unused volume)"))
def _vol_prune(eng, a):
    if not a["force"] and not _confirm("WARNING! This will remove all local volumes not used by at least one container."):
        return 0
    _pruned("Volumes", *eng.volumes.prune(eng.volumes_in_use(), all_=a["all"]))


def container_prune(eng, force: bool) -> int:
    """docker container prune: every container that is not running."""
    if not force and not _confirm("WARNING! This will remove all stopped containers."):
        return 0
    _pruned("Containers", *eng.prune())
    return 0


def _pruned(kind: str, names: list[str], freed: int) -> None:
    if names:
        print(f"Deleted {kind}:")
        for n in names:
            print(n)
        print()
    print(f"Total reclaimed space: {humanize.size(freed)}")


def _confirm(warning: str) -> bool:
    if not sys.stdin.isatty():
        return True
    sys.stdout.write(warning + "\nAre you sure you want to continue? [y/N] ")
    sys.stdout.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def _docs_out(docs, fmt):
    if fmt:
        tmpl = template.parse(template.prepare(fmt)[1], missingkey="error")
        for d in docs:
            sys.stdout.write(tmpl.render(d) + "\n")
    else:
        sys.stdout.write(json.dumps(docs, indent=4) + "\n")


def _sub(table_: Table, eng, action: str, args: list[str]):
    g, v, a = table_.parse([action] + list(args))
    if v in (None, "--help"):
        names = ", ".join(table_.verbs)
        print(f"Usage: {table_.prog} COMMAND\n\nCommands: {names}")
        return 0
    rc = table_.func(v)(eng, a)
    return rc if isinstance(rc, int) else 0


def volume_cmd(eng, action: str, args: list[str]):
    return _sub(VOL, eng, {"list": "ls", "remove": "rm"}.get(action, action), args)


# ---------------------------------------------------------- network verbs
NET = Table("pyimg network", "Manage networks.", [])


@NET.verb("create", Arg("name", "Network name."),
          Opt("-d,--driver", "driver", str, "bridge", "bridge"),
          Opt("--subnet", "subnet", str, None, "CIDR"), Opt("--gateway", "gateway", str, None, "IP"),
          Opt("--ip-range", "ip_range", str, None, "CIDR"), Opt("--internal", "internal", bool, False, "No outside access."),
          Opt("--label", "label", list, None, "KEY=VALUE"))
def _net_create(eng, a):
    labels = dict(lab.partition("=")[::2] for lab in a["label"] or [])
    print(eng.networks.create(a["name"], subnet=a["subnet"], gateway=a["gateway"], ip_range=a["ip_range"],
                              internal=a["internal"], labels=labels or None, driver=a["driver"])["Id"])


@NET.verb("ls", Opt("-q,--quiet", "quiet", bool, False, "Only ids."), Opt("--no-trunc", "no_trunc", bool, False, ""),
          Opt("--format", "fmt", str, None, "Go template."), Opt("-f,--filter", "filter", list, None, ""))
def _net_ls(eng, a):
    eng.networks.default()
    nets = sorted(eng.networks.list(), key=lambda n: n["Name"])
    if a["quiet"]:
        for n in nets:
            print(n["Id"] if a["no_trunc"] else n["Id"][:12])
        return
    rows = [template.Struct("*formatter.networkContext", {
        "ID": n["Id"] if a["no_trunc"] else n["Id"][:12], "Name": n["Name"], "Driver": n["Driver"],
        "Scope": n["Scope"], "IPv6": str(n.get("EnableIPv6", False)).lower(),
        "Internal": str(n.get("Internal", False)).lower(), "CreatedAt": n.get("Created", "")}) for n in nets]
    sys.stdout.write(table(a["fmt"] or "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}",
                           {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE",
                            "IPv6": "IPV6", "Internal": "INTERNAL", "CreatedAt": "CREATED"}, rows))


@NET.verb("inspect", Arg("names", "Networks.", many=True), Opt("-f,--format", "fmt", str, None, "Go template."))
def _net_inspect(eng, a):
    return inspect(eng, a["names"], fmt=a["fmt"], kind="network", platform=None, image_inspect=None)


@NET.verb("rm", Arg("names", "Networks.", many=True))
def _net_rm(eng, a):
    rc = 0
    for n in a["names"]:
        try:
            eng.networks.remove(n)
            print(n)
        except PyimgError as e:
            sys.stderr.write(f"pyimg: error: {e}\n")
            rc = 1
    return rc


@NET.verb("prune", Opt("-f,--force", "force", bool, False, "Don't ask."))
def _net_prune(eng, a):
    if not a["force"] and not _confirm("WARNING! This will remove all custom networks not used by at least one container."):
        return 0
    names = eng.networks.prune()
    if names:
        print("Deleted Networks:")
        for n in names:
            print(n)


def network_cmd(eng, action: str, args: list[str]):
    return _sub(NET, eng, {"list": "ls", "remove": "rm"}.get(action, action), args)


# ------------------------------------------------------- version and info
def version(fmt: str | None) -> str:
    doc = {"Client": {"Version": VERSION, "ApiVersion": "1.41", "GoVersion": "python" + platform.python_version(),
                      "Os": "linux", "Arch": _arch(), "Platform": {"Name": "pyimg"}},
           "Server": {"Platform": {"Name": "pyimg (daemonless)"},
                      "Components": [{"Name": "Engine", "Version": VERSION}, {"Name": "conmon", "Version": _conmon_version()}],
                      "Version": VERSION, "ApiVersion": "1.41", "MinAPIVersion": "1.12", "Os": "linux", "Arch": _arch()}}
    if fmt:
        return template.render(template.prepare(fmt)[1], doc) + "\n"
    c, s = doc["Client"], doc["Server"]
    return (f"Client:\n Version:           {c['Version']}\n API version:       {c['ApiVersion']}\n"
            f" Go version:        {c['GoVersion']}\n OS/Arch:           linux/{c['Arch']}\n\n"
            f"Server: pyimg (daemonless)\n Engine:\n  Version:          {s['Version']}\n"
            f"  API version:      {s['ApiVersion']} (minimum version {s['MinAPIVersion']})\n"
            f"  OS/Arch:          linux/{s['Arch']}\n conmon:\n  Version:          {_conmon_version()}\n")


def _arch() -> str:
    m = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


def _conmon_version() -> str:
    try:
        r = subprocess.run([conmon_path(), "--version"], capture_output=True, text=True)
        return r.stdout.split()[2] if r.stdout.startswith("conmon version") else "unknown"
    except (OSError, EngineError, IndexError):
        return "not installed"


def info(eng, config_path: str | None, fmt: str | None) -> str:
    recs = eng.list()
    counts = {s: sum(1 for r in recs if r["State"]["Status"] == s) for s in ("running", "paused")}
    stopped = len(recs) - counts["running"] - counts["paused"]
    try:
        images = len({r["id"] or r["digest"] for r in Store(eng.paths.root).images()})
    except PyimgError:
        images = 0
    cfg = Config.load(config_path)
    mirrors = list(getattr(cfg, "registry_mirrors", None) or [])
    insecure = list(getattr(cfg, "insecure_registries", None) or [])
    runtimes = []
    for n in ("pyrunc", "runc", "crun"):
        try:
            find_runtime(n)
            runtimes.append(n)
        except EngineError:
            pass
    cg = "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1"
    doc = {"Containers": len(recs), "ContainersRunning": counts["running"], "ContainersPaused": counts["paused"],
           "ContainersStopped": stopped, "Images": images, "Driver": "overlay", "DockerRootDir": eng.paths.root,
           "Runtimes": {n: {"path": n} for n in runtimes}, "DefaultRuntime": "pyrunc",
           "RegistryConfig": {"Mirrors": mirrors, "InsecureRegistryCIDRs": insecure},
           "CgroupVersion": cg, "CgroupDriver": "cgroupfs", "KernelVersion": os.uname().release,
           "OperatingSystem": _os_name(), "OSType": "linux", "Architecture": os.uname().machine,
           "NCPU": os.cpu_count(), "MemTotal": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
           "Name": os.uname().nodename, "ServerVersion": VERSION}
    if fmt:
        return template.render(template.prepare(fmt)[1], doc) + "\n"
    lines = ["Client:", " Context:    default", "", "Server:",
             f" Containers: {doc['Containers']}", f"  Running: {doc['ContainersRunning']}",
             f"  Paused: {doc['ContainersPaused']}", f"  Stopped: {doc['ContainersStopped']}",
             f" Images: {images}", f" Server Version: {doc['ServerVersion']}", " Storage Driver: overlay",
             " Logging Driver: k8s-file (conmon)", " Cgroup Driver: cgroupfs", f" Cgroup Version: {cg}",
             " Plugins:", "  Volume: local", "  Network: bridge host none (netavark)",
             f" Runtimes: {' '.join(runtimes)}", " Default Runtime: pyrunc",
             f" Kernel Version: {doc['KernelVersion']}", f" Operating System: {doc['OperatingSystem']}",
             " OSType: linux", f" Architecture: {doc['Architecture']}", f" CPUs: {doc['NCPU']}",
             f" Total Memory: {humanize.bytes_size(doc['MemTotal'])}", f" Name: {doc['Name']}",
             f" Docker Root Dir: {eng.paths.root}", " Insecure Registries:"]
    lines += [f"  {r}" for r in insecure] + ["  127.0.0.0/8"]
    if mirrors:
        lines += [" Registry Mirrors:"] + [f"  {m}" for m in mirrors]
    lines += [" Live Restore Enabled: false", ""]
    return "\n".join(lines)


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            for ln in f:
                if ln.startswith("PRETTY_NAME="):
                    return ln.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"
