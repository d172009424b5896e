"""Container networks on netavark + aardvark-dns: configs, IPAM, netns, ports.

netavark (1.4) does the plumbing: the bridge, the veth pair, addresses,
routes, iptables rules, and aardvark-dns for name resolution. This module
keeps what netavark leaves to its caller:

- the network configs, ROOT/networks/<name>.json, in netavark's own format
  (podman's), plus docker's extras (labels, ip_range, created);
- the addresses: netavark does no IPAM, so each network has an allocator,
  RUN/network/ipam/<network id>.json, changed only under its flock;
- the container's network namespace, a nsfs bind mount at RUN/netns/<cid>;
- the attachment record RUN/network/attach/<cid>.json, written before
  anything else is made, so that teardown can undo a setup stopped at any
  point (SIGKILL included) from the record alone;
- host ports: a 0 becomes a free port, and a port another container of this
  store publishes is refused.

netavark changes the firewall of the network namespace its caller is in
(the "host" side); containers only ever get namespaces of their own.

Behaviour follows docker's: the built-in network "bridge" (interface
pyimg0) has no name resolution; user-defined networks resolve container
names and aliases through aardvark-dns. Messages use docker's wording where
docker has one.

Layout under RUN: netns/<cid>, network/lock (configs and records),
network/ipam/, network/attach/, network/netavark/ (netavark's --config
directory; aardvark-dns keeps its per-network files and pid there).
"""
from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import re
import secrets
import shutil
import socket
import struct
import subprocess
import tempfile
import time

from imagetool.errors import RunError, UsageError, os_message
from runtime import syscalls

NETAVARK_PATHS = ("/usr/libexec/podman/netavark", "/usr/lib/podman/netavark")
AARDVARK_PATHS = ("/usr/libexec/podman/aardvark-dns", "/usr/lib/podman/aardvark-dns")

DEFAULT_NAME = "bridge"
DEFAULT_INTERFACE = "pyimg0"
RESERVED = ("bridge", "host", "none")
NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*\Z")
NSFS_MAGIC = 0x6e736673
# Where networks without a --subnet get theirs: docker's 172.17-31/16, then
# 10.88/16 upwards (podman's first pool).
CANDIDATE_POOLS = [f"172.{i}.0.0/16" for i in range(17, 32)] + [f"10.{i}.0.0/16" for i in range(88, 256)]


# --- ports ------------------------------------------------------------------

class PortMapping:
    """One -p mapping. host_ip "" means every address; host_port 0 means a
    free port, chosen at setup; range > 1 maps host_port+i to container_port+i.
    host_port_max (beyond docker's fields) > host_port means "any one free
    port in host_port..host_port_max" (docker's 8000-8010:80)."""
    __slots__ = ("host_ip", "host_port", "container_port", "protocol", "range", "host_port_max")

    def __init__(self, host_ip: str = "", host_port: int = 0, container_port: int = 0,
                 protocol: str = "tcp", range: int = 1, host_port_max: int = 0):  # noqa: A002 - netavark's name
        self.host_ip = host_ip
        self.host_port = host_port
        self.container_port = container_port
        self.protocol = protocol
        self.range = range
        self.host_port_max = host_port_max

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__slots__}

    @classmethod
    def from_dict(cls, d: dict) -> "PortMapping":
        return cls(**{k: d[k] for k in cls.__slots__ if k in d})

    def __eq__(self, other):
        return isinstance(other, PortMapping) and self.to_dict() == other.to_dict()

    def __repr__(self):
        return "PortMapping(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__) + ")"


def _port_range(text: str) -> tuple[int, int]:
    """docker's parsePortRange: "80" or "80-81", each 0..65535, start <= end."""
    start, sep, end = text.partition("-")
    if not start.isdigit() or (sep and not end.isdigit()):
        raise ValueError(text)
    a, b = int(start), int(end) if sep else int(start)
    if a > 65535 or b > 65535 or b < a:
        raise ValueError(text)
    return a, b


def parse_publish(spec: str) -> list[PortMapping]:
    """docker's -p forms: "80", "8080:80", "127.0.0.1:8080:80",
    "127.0.0.1::80", "8080:80/udp", "8000-8001:80-81", "8000-8010:80".
    Bad input raises UsageError with docker's wording (go-connections/nat)."""
    parts = spec.split(":")
    if len(parts) == 1:
        ip, host, cont = "", "", parts[0]
    elif len(parts) == 2:
        ip, host, cont = "", parts[0], parts[1]
    else:
        ip, host, cont = ":".join(parts[:-2]), parts[-2], parts[-1]
    cont, _, proto = cont.partition("/")
    if cont == "":
        raise UsageError(f"no port specified: {spec}<empty>")
    proto = (proto or "tcp").lower()
    if proto not in ("tcp", "udp", "sctp"):
        raise UsageError(f"invalid proto: {proto}")
    if proto == "sctp":
        raise UsageError(f"invalid proto: {proto} (pyimg publishes tcp and udp only)")
    if ip.startswith("[") and ip.endswith("]"):
        ip = ip[1:-1]
    if ip:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise UsageError(f"invalid IP address: {ip}") from None
    try:
        c0, c1 = _port_range(cont)
        if c0 == 0:
            raise ValueError(cont)
    except ValueError:
        raise UsageError(f"invalid containerPort: {cont}") from None
    h0 = h1 = 0
    if host:
        try:
            h0, h1 = _port_range(host)
        except ValueError:
            raise UsageError(f"invalid hostPort: {host}") from None
        if (c1 - c0) != (h1 - h0) and c1 != c0:
            raise UsageError(f"invalid ranges specified for container and host Ports: {cont} and {host}")
    count = c1 - c0 + 1
    if not host or h0 == 0:
        # every container port gets a random host port of its own
        return [PortMapping(ip, 0, c0 + i, proto) for i in range(count)]
    if count == 1 and h1 != h0:
        return [PortMapping(ip, h0, c0, proto, 1, h1)]
    return [PortMapping(ip, h0, c0, proto, count)]


def publish_all(exposed: dict) -> list[PortMapping]:
    """-P: the image's ExposedPorts ({"80/tcp": {}, "53/udp": {}}), each on
    a random host port."""
    out = []
    for key in sorted(exposed or {}):
        port, _, proto = str(key).partition("/")
        try:
            a, b = _port_range(port)
        except ValueError:
            raise UsageError(f"invalid containerPort: {port}") from None
        proto = (proto or "tcp").lower()
        if proto not in ("tcp", "udp"):
            continue
        out.extend(PortMapping("", 0, p, proto) for p in range(a, b + 1) if p)
    return out


# --- IPAM ---------------------------------------------------------------------

class Allocator:
    """The addresses of one network: a JSON file {"last": ip, "leases":
    {ip: cid}} changed under the flock of PATH.lock. Addresses are handed
    out in order after the last one given (so a released address is not
    reused at once, as docker does), skipping the network and broadcast
    addresses and the gateway, within ip_range when one is set."""

    def __init__(self, path: str, subnet: str, gateway: str | None, ip_range: str | None = None):
        self.path = path
        self.subnet = ipaddress.ip_network(subnet)
        self.gateway = ipaddress.ip_address(gateway) if gateway else None
        self.pool = ipaddress.ip_network(ip_range) if ip_range else self.subnet

    def _locked(self):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd

    def _read(self) -> dict:
        try:
            with open(self.path) as f:
                data = json.load(f)
        except FileNotFoundError:
            return {"last": None, "leases": {}}
        except ValueError:
            # a torn file is not possible (written by rename); anything else
            # unreadable is treated as empty rather than blocking every start
            return {"last": None, "leases": {}}
        data.setdefault("leases", {})
        return data

    def _write(self, data: dict) -> None:
        tmp = f"{self.path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(data, f)
        os.replace(tmp, self.path)

    def leases(self) -> dict:
        fd = self._locked()
        try:
            return dict(self._read()["leases"])
        finally:
            os.close(fd)

    def allocate(self, cid: str) -> str:
        """The next free address for cid (the one it holds already, if any)."""
        fd = self._locked()
        try:
            data = self._read()
            for ip, owner in data["leases"].items():
                if owner == cid:
                    return ip
            first, last = int(self.pool.network_address), int(self.pool.broadcast_address)
            reserved = {int(self.subnet.network_address), int(self.subnet.broadcast_address)}
            if self.gateway is not None:
                reserved.add(int(self.gateway))
            taken = {int(ipaddress.ip_address(ip)) for ip in data["leases"]}
            start = first
            if data.get("last"):
                prev = int(ipaddress.ip_address(data["last"]))
                if first <= prev <= last:
                    start = prev + 1
            size = last - first + 1
            for i in range(size):
                n = first + (start - first + i) % size
                if n in reserved or n in taken:
                    continue
                ip = str(ipaddress.ip_address(n))
                data["leases"][ip] = cid
                data["last"] = ip
                self._write(data)
                return ip
            raise RunError(f"no available IPv4 addresses on this network's address pools: {self.pool}")
        finally:
            os.close(fd)

    def release(self, cid: str) -> None:
        fd = self._locked()
        try:
            data = self._read()
            kept = {ip: owner for ip, owner in data["leases"].items() if owner != cid}
            if kept != data["leases"]:
                data["leases"] = kept
                self._write(data)
        finally:
            os.close(fd)


# --- config validation ------------------------------------------------------

def _net(text: str):
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise UsageError(f"invalid CIDR address: {text}") from None


def validate_config(name: str, subnet=None, gateway=None, ip_range=None, driver="bridge", labels=None) -> dict:
    """Checks what `network create` was given (without looking at other
    networks or the host); returns {"subnet", "gateway", "ip_range"} in
    canonical form (subnet None = pick one)."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise UsageError(f"invalid network name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    if driver != "bridge":
        raise UsageError(f'plugin "{driver}" not found')
    if labels is not None and not (isinstance(labels, dict)
                                   and all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items())):
        raise UsageError(f"invalid labels for network {name}: want a map of strings")
    if subnet is None:
        if gateway:
            raise UsageError("every ip-range or gateway must have a corresponding subnet")
        if ip_range:
            raise UsageError("every ip-range or gateway must have a corresponding subnet")
        return {"subnet": None, "gateway": None, "ip_range": None}
    net = _net(subnet)
    if net.version != 4:
        raise UsageError(f"invalid subnet {subnet}: IPv6 networks are not supported")
    if str(net) != subnet.strip():
        raise UsageError(f"invalid subnet {subnet}: it has host bits set (the network is {net})")
    if net.prefixlen > 30:
        raise UsageError(f"invalid subnet {subnet}: too small for a gateway and a container")
    if gateway:
        try:
            gw = ipaddress.ip_address(gateway)
        except ValueError:
            raise UsageError(f"invalid gateway {gateway}: not an IPv4 address") from None
        if gw not in net:
            raise UsageError(f"no matching subnet for gateway {gateway}")
        if gw in (net.network_address, net.broadcast_address):
            raise UsageError(f"invalid gateway {gateway}: it is the network or broadcast address of {net}")
    else:
        gw = net.network_address + 1
    rng = None
    if ip_range:
        rng = _net(ip_range)
        if rng.version != 4 or not rng.subnet_of(net):
            raise UsageError(f"no matching subnet for range {ip_range}")
    return {"subnet": str(net), "gateway": str(gw), "ip_range": str(rng) if rng else None}


def host_routes(path: str = "/proc/net/route") -> list:
    """The IPv4 routes of the current network namespace (but the default
    route), as networks."""
    out = []
    try:
        with open(path) as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        return out
    for line in lines:
        fields = line.split()
        if len(fields) < 8:
            continue
        dest = struct.unpack("<I", bytes.fromhex(fields[1]))[0]
        mask = struct.unpack("<I", bytes.fromhex(fields[7]))[0]
        if mask == 0:
            continue
        prefix = bin(mask).count("1")
        out.append(ipaddress.ip_network((dest, prefix), strict=False))
    return out


def _now() -> str:
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + f".{ns % 1_000_000_000:09d}Z"


# --- netns --------------------------------------------------------------------

def _loopback_up() -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        ifr = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(s, 0x8913, ifr))[1]  # SIOCGIFFLAGS
        fcntl.ioctl(s, 0x8914, struct.pack("16sH22x", b"lo", flags | 0x1))  # SIOCSIFFLAGS, IFF_UP
    finally:
        s.close()


def make_netns(path: str) -> None:
    """A new network namespace (loopback up) bound at `path`: a child
    process unshares it and bind-mounts its /proc/self/ns/net there."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o444))
    except OSError as e:
        raise RunError(os_message(e, f"creating {path}")) from None
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(r)
            syscalls.unshare(syscalls.CLONE_NEWNET)
            _loopback_up()
            syscalls.mount("/proc/self/ns/net", path, None, syscalls.MS_BIND)
            os._exit(0)
        except BaseException as e:  # noqa: BLE001 - reported through the pipe
            msg = os_message(e, f"making the network namespace {path}") if isinstance(e, OSError) else str(e)
            try:
                os.write(w, msg.encode()[:4000])
            finally:
                os._exit(1)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        msg = f.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise RunError(msg or f"making the network namespace {path}: child failed ({status})")


def netns_mounted(path: str) -> bool:
    try:
        return syscalls.statfs_type(path) == NSFS_MAGIC
    except OSError:
        return False


def remove_netns(path: str) -> None:
    """Unmount (every layer) and remove a netns file made by make_netns; no
    error if it is already gone."""
    for _ in range(8):
        if not netns_mounted(path):
            break
        try:
            syscalls.umount2(path, syscalls.MNT_DETACH)
        except OSError as e:
            raise RunError(os_message(e, f"unmounting {path}")) from None
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise RunError(os_message(e, f"removing {path}")) from None


# --- networks -----------------------------------------------------------------

class Networks:
    """The networks of one store: configs in ROOT/networks, runtime state
    under RUN (see the module docstring)."""

    def __init__(self, root: str, run_dir: str, *, netavark: str | None = None, aardvark: str | None = None):
        self.root = root
        self.run = run_dir
        self.conf_dir = os.path.join(root, "networks")
        self.netns_dir = os.path.join(run_dir, "netns")
        self.state_dir = os.path.join(run_dir, "network")
        self.attach_dir = os.path.join(self.state_dir, "attach")
        self.ipam_dir = os.path.join(self.state_dir, "ipam")
        self.netavark_dir = os.path.join(self.state_dir, "netavark")
        self._netavark = netavark
        self._aardvark = aardvark

    # locking and files

    def _lock(self):
        """An exclusive flock on RUN/network/lock: held while configs or
        records change (not while netavark runs). Close the fd to release."""
        try:
            os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
            fd = os.open(os.path.join(self.state_dir, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise RunError(os_message(e, f"opening {self.state_dir}/lock")) from None
        fcntl.flock(fd, fcntl.LOCK_EX)
        return _Held(fd)

    @staticmethod
    def _write_json(path: str, data: dict) -> None:
        tmp = f"{path}.{os.getpid()}.tmp"
        try:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            with open(tmp, "w") as f:
                json.dump(data, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as e:
            raise RunError(os_message(e, f"writing {path}")) from None

    @staticmethod
    def _read_json(path: str) -> dict | None:
        try:
            with open(path) as f:
                return json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            msg = os_message(e, f"reading {path}") if isinstance(e, OSError) else f"{path}: not valid JSON"
            raise RunError(msg) from None

    def _configs(self) -> list[dict]:
        try:
            names = sorted(n for n in os.listdir(self.conf_dir) if n.endswith(".json"))
        except FileNotFoundError:
            return []
        out = []
        for n in names:
            c = self._read_json(os.path.join(self.conf_dir, n))
            if c:
                out.append(c)
        return out

    def _records(self) -> list[dict]:
        try:
            names = sorted(n for n in os.listdir(self.attach_dir) if n.endswith(".json"))
        except FileNotFoundError:
            return []
        out = []
        for n in names:
            try:
                r = self._read_json(os.path.join(self.attach_dir, n))
            except RunError:
                continue
            if r:
                out.append(r)
        return out

    def _record_path(self, cid: str) -> str:
        return os.path.join(self.attach_dir, cid + ".json")

    def _allocator(self, conf: dict) -> Allocator:
        sub = conf["subnets"][0]
        return Allocator(os.path.join(self.ipam_dir, conf["id"] + ".json"), sub["subnet"], sub.get("gateway"),
                         conf.get("ip_range"))

    # configs

    def _pick_subnet(self, configs: list[dict]) -> str:
        used = [ipaddress.ip_network(s["subnet"]) for c in configs for s in c.get("subnets", [])]
        used += host_routes()
        for cand in CANDIDATE_POOLS:
            net = ipaddress.ip_network(cand)
            if not any(net.overlaps(u) for u in used):
                return cand
        raise RunError("could not find an available, non-overlapping IPv4 address pool among the defaults "
                       "to assign to the network")

    def _interface(self, configs: list[dict]) -> str:
        used = {c.get("network_interface") for c in configs}
        n = 1
        while f"pyimg{n}" in used or os.path.exists(f"/sys/class/net/pyimg{n}"):
            n += 1
        return f"pyimg{n}"

    def _new_config(self, name, subnet, gateway, ip_range, internal, labels, dns, interface, options) -> dict:
        return {
            "name": name, "id": secrets.token_hex(32), "driver": "bridge",
            "network_interface": interface, "created": _now(),
            "subnets": [{"subnet": subnet, "gateway": gateway}],
            "ip_range": ip_range, "ipv6_enabled": False, "internal": bool(internal),
            "dns_enabled": bool(dns), "labels": dict(labels or {}), "options": options,
            "ipam_options": {"driver": "host-local"},
        }

    def create(self, name, *, subnet=None, gateway=None, ip_range=None, internal=False, labels=None,
               driver="bridge", dns=True) -> dict:
        v = validate_config(name, subnet, gateway, ip_range, driver, labels)
        with self._lock():
            configs = self._configs()
            if name in RESERVED or any(c["name"] == name for c in configs):
                raise UsageError(f"network with name {name} already exists")
            if v["subnet"] is None:
                v["subnet"] = self._pick_subnet(configs)
                v["gateway"] = str(ipaddress.ip_network(v["subnet"]).network_address + 1)
            else:
                net = ipaddress.ip_network(v["subnet"])
                others = [ipaddress.ip_network(s["subnet"]) for c in configs for s in c.get("subnets", [])]
                if any(net.overlaps(o) for o in others + host_routes()):
                    raise UsageError("Pool overlaps with other one on this address space")
            conf = self._new_config(name, v["subnet"], v["gateway"], v["ip_range"], internal, labels, dns,
                                    self._interface(configs), {})
            self._write_json(os.path.join(self.conf_dir, name + ".json"), conf)
        return self._inspect(conf)

    def default(self) -> dict:
        """The built-in "bridge" network, made on first use."""
        return self._inspect(self._default_config())

    def _default_config(self, locked: bool = False) -> dict:
        """The "bridge" config, written on first use (`locked`: the caller
        holds the lock already; a second flock would wait for itself)."""
        path = os.path.join(self.conf_dir, DEFAULT_NAME + ".json")
        conf = self._read_json(path)
        if conf:
            return conf
        if not locked:
            with self._lock():
                return self._default_config(locked=True)
        subnet = self._pick_subnet(self._configs())
        gateway = str(ipaddress.ip_network(subnet).network_address + 1)
        conf = self._new_config(DEFAULT_NAME, subnet, gateway, None, False, {}, False, DEFAULT_INTERFACE, {})
        self._write_json(path, conf)
        return conf

    def _find(self, name_or_id: str, locked: bool = False) -> dict:
        if name_or_id == DEFAULT_NAME:
            return self._default_config(locked)
        configs = self._configs()
        for c in configs:
            if c["name"] == name_or_id:
                return c
        for c in configs:
            if c["id"] == name_or_id:
                return c
        if name_or_id and re.fullmatch(r"[0-9a-f]+", name_or_id):
            hits = [c for c in configs if c["id"].startswith(name_or_id)]
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                raise UsageError(f"network {name_or_id} is ambiguous ({len(hits)} matches found based on ID)")
        raise UsageError(f"network {name_or_id} not found")

    def _inspect(self, conf: dict, records: list[dict] | None = None) -> dict:
        if records is None:
            records = self._records()
        containers = {}
        for r in records:
            att = r.get("networks", {}).get(conf["name"])
            if not att or att.get("id") != conf["id"]:
                continue
            prefix = ipaddress.ip_network(conf["subnets"][0]["subnet"]).prefixlen
            containers[r["cid"]] = {
                "Name": r.get("name", ""), "EndpointID": att.get("endpoint_id", ""),
                "MacAddress": att.get("mac", ""),
                "IPv4Address": f"{att['ip']}/{prefix}" if att.get("ip") else "", "IPv6Address": "",
            }
        ipam_conf = []
        for s in conf.get("subnets", []):
            entry = {"Subnet": s["subnet"]}
            if conf.get("ip_range"):
                entry["IPRange"] = conf["ip_range"]
            if s.get("gateway"):
                entry["Gateway"] = s["gateway"]
            ipam_conf.append(entry)
        options = {"com.docker.network.bridge.name": conf.get("network_interface", "")}
        if conf["name"] == DEFAULT_NAME:
            options["com.docker.network.bridge.default_bridge"] = "true"
        return {
            "Name": conf["name"], "Id": conf["id"], "Created": conf.get("created", ""), "Scope": "local",
            "Driver": conf.get("driver", "bridge"), "EnableIPv6": bool(conf.get("ipv6_enabled")),
            "IPAM": {"Driver": "default", "Options": {}, "Config": ipam_conf},
            "Internal": bool(conf.get("internal")), "Attachable": False, "Ingress": False,
            "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Containers": containers,
            "Options": options, "Labels": dict(conf.get("labels") or {}),
        }

    def list(self) -> list[dict]:
        """Every network's inspect dict, "bridge" first (made if need be).
        `network ls` prints Id[:12], Name, Driver, Scope."""
        self._default_config()
        records = self._records()
        configs = self._configs()
        configs.sort(key=lambda c: (c["name"] != DEFAULT_NAME, c["name"]))
        return [self._inspect(c, records) for c in configs]

    def get(self, name_or_id: str) -> dict:
        return self._inspect(self._find(name_or_id))

    def _users(self, conf: dict, records=None) -> list[str]:
        return [r["cid"] for r in (self._records() if records is None else records)
                if r.get("networks", {}).get(conf["name"], {}).get("id") == conf["id"]]

    def users(self, name_or_id) -> list[str]:
        return self._users(self._find(name_or_id))

    def _remove(self, conf: dict) -> None:
        try:
            os.unlink(os.path.join(self.conf_dir, conf["name"] + ".json"))
        except FileNotFoundError:
            pass
        except OSError as e:
            raise RunError(os_message(e, f"removing network {conf['name']}")) from None
        for suffix in (".json", ".json.lock"):
            try:
                os.unlink(os.path.join(self.ipam_dir, conf["id"] + suffix))
            except OSError:
                pass

    def remove(self, name_or_id: str) -> None:
        with self._lock():
            conf = self._find(name_or_id, locked=True)
            if conf["name"] == DEFAULT_NAME:
                raise UsageError(f"{DEFAULT_NAME} is a pre-defined network and cannot be removed")
            if self._users(conf):
                raise UsageError(f"error while removing network: network {conf['name']} id {conf['id']} "
                                 "has active endpoints")
            self._remove(conf)

    def prune(self) -> list[str]:
        removed = []
        with self._lock():
            records = self._records()
            for conf in self._configs():
                if conf["name"] != DEFAULT_NAME and not self._users(conf, records):
                    self._remove(conf)
                    removed.append(conf["name"])
        return removed

    # containers

    def attachment(self, cid) -> dict | None:
        r = self._read_json(self._record_path(cid)) if _valid_cid(cid) else None
        if not r or r.get("phase") != "up":
            return None
        return _status(r)

    def _binary(self, given, paths, what) -> str:
        for p in ([given] if given else []) + list(paths):
            if os.access(p, os.X_OK):
                return p
        found = shutil.which(what)
        if found:
            return found
        raise RunError(f"{what} not found (looked in {', '.join(paths)})")

    def _run_netavark(self, verb: str, netns: str, options: dict) -> dict:
        """netavark VERB NETNS with options on stdin; its JSON answer. Its
        stdio are files: aardvark-dns, which it may start, inherits them."""
        netavark = self._binary(self._netavark, NETAVARK_PATHS, "netavark")
        aardvark = self._binary(self._aardvark, AARDVARK_PATHS, "aardvark-dns")
        os.makedirs(os.path.join(self.netavark_dir, "aardvark-dns"), mode=0o700, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID")}
        env.setdefault("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        with tempfile.TemporaryFile() as stdin, tempfile.TemporaryFile() as out, \
                tempfile.TemporaryFile() as err:
            stdin.write(json.dumps(options).encode())
            stdin.seek(0)
            try:
                p = subprocess.run([netavark, "--config", self.netavark_dir, "--aardvark-binary", aardvark,
                                    verb, netns], stdin=stdin, stdout=out, stderr=err, cwd="/", env=env,
                                   timeout=120)
            except (OSError, subprocess.SubprocessError) as e:
                raise RunError(f"netavark {verb}: {e}") from None
            out.seek(0)
            err.seek(0)
            text, errtext = out.read().decode(errors="replace"), err.read().decode(errors="replace")
        try:
            answer = json.loads(text) if text.strip() else {}
        except ValueError:
            answer = {}
        if p.returncode != 0:
            msg = answer.get("error") if isinstance(answer, dict) else None
            if not msg:
                lines = [ln for ln in errtext.splitlines() if ln.strip() and "syslog" not in ln]
                msg = lines[-1] if lines else f"exit status {p.returncode}"
            raise RunError(f"netavark {verb}: " + " ".join(msg.split()))
        return answer if isinstance(answer, dict) else {}

    def _resolve_ports(self, cid: str, ports, records) -> list[PortMapping]:
        used = set()
        for r in records:
            if r["cid"] == cid:
                continue
            for pm in r.get("ports", []):
                for i in range(pm.get("range", 1)):
                    used.add((pm["protocol"], pm["host_port"] + i, pm.get("host_ip", "")))

        def clash(proto, port, ip):
            return any(u_proto == proto and u_port == port and (not u_ip or not ip or u_ip == ip)
                       for u_proto, u_port, u_ip in used)

        out = []
        for pm in ports:
            pm = PortMapping.from_dict(pm.to_dict())
            kind = socket.SOCK_DGRAM if pm.protocol == "udp" else socket.SOCK_STREAM
            if pm.host_port == 0 or pm.host_port_max > pm.host_port:
                lo, hi = (pm.host_port, pm.host_port_max) if pm.host_port else (0, 0)
                pm.host_port = _free_port(pm.host_ip, kind, lo, hi,
                                          lambda p, pm=pm: clash(pm.protocol, p, pm.host_ip))
                pm.host_port_max = 0
                if not pm.host_port:
                    raise RunError(f"Bind for {pm.host_ip or '0.0.0.0'}:{lo}-{hi} failed: "
                                   "port range is already allocated" if lo else "no free host port")
            else:
                for i in range(pm.range):
                    if clash(pm.protocol, pm.host_port + i, pm.host_ip):
                        raise RunError(f"Bind for {pm.host_ip or '0.0.0.0'}:{pm.host_port + i} failed: "
                                       "port is already allocated")
            out.append(pm)
            for i in range(pm.range):
                used.add((pm.protocol, pm.host_port + i, pm.host_ip))
        return out

    def setup(self, cid: str, name: str, networks: list[str], *, ports=(), aliases=(),
              hostname: str | None = None) -> dict:
        """Give container cid a network namespace attached to `networks`
        (names or ids, in order: eth0, eth1, ...; none = loopback only); see
        the module docstring. On a DNS-enabled network the container answers
        to `name`, `aliases` and its short id (docker's names); `hostname`
        is only recorded (docker does not publish it). dns_servers is empty
        when no network has DNS: the caller then uses the host's resolvers.
        On failure everything done is undone before the error propagates."""
        if not _valid_cid(cid):
            raise UsageError(f"invalid container id {cid!r}")
        path = self._record_path(cid)
        netns = os.path.join(self.netns_dir, cid)
        started = False
        try:
            with self._lock():
                if os.path.exists(path):
                    raise RunError(f"container {cid} already has its network set up")
                confs, seen = [], set()
                for n in networks:
                    c = self._find(n, locked=True)
                    if c["id"] in seen:
                        raise UsageError(f"container {name} is already attached to network {c['name']}")
                    seen.add(c["id"])
                    confs.append(c)
                record = {"cid": cid, "name": name, "hostname": hostname, "netns": netns, "phase": "allocating",
                          "networks": {c["name"]: {"id": c["id"], "interface": f"eth{i}",
                                                   "endpoint_id": secrets.token_hex(32)}
                                       for i, c in enumerate(confs)},
                          "aliases": list(aliases), "ports": []}
                # the record first: from here on teardown can find whatever follows
                self._write_json(path, record)
                started = True
                for c in confs:
                    record["networks"][c["name"]]["ip"] = self._allocator(c).allocate(cid)
                resolved = self._resolve_ports(cid, list(ports), self._records())
                record["ports"] = [p.to_dict() for p in resolved]
                record["phase"] = "netns"
                self._write_json(path, record)
            make_netns(netns)
            options = self._options(record, confs, resolved)
            record["options"] = options
            record["phase"] = "setup"
            self._write_json(path, record)
            answer = self._run_netavark("setup", netns, options) if confs else {}
            for c in confs:
                att = record["networks"][c["name"]]
                block = answer.get(c["name"], {})
                iface = (block.get("interfaces") or {}).get(att["interface"], {})
                att["mac"] = iface.get("mac_address", "")
                att["gateway"] = c["subnets"][0].get("gateway", "")
                att["prefix"] = ipaddress.ip_network(c["subnets"][0]["subnet"]).prefixlen
                att["aliases"] = (list(aliases) + [cid[:12]]) if c.get("dns_enabled") else []
                att["dns_servers"] = [str(s) for s in block.get("dns_server_ips") or []] \
                    if c.get("dns_enabled") else []
                att["dns_search"] = list(block.get("dns_search_domains") or []) if c.get("dns_enabled") else []
            record["phase"] = "up"
            self._write_json(path, record)
            return _status(record)
        except BaseException:
            if started:
                try:
                    self._teardown(cid, quiet=True)
                except Exception:  # noqa: BLE001 - the first error is the one to report
                    pass
            raise

    @staticmethod
    def _options(record: dict, confs: list[dict], ports: list[PortMapping]) -> dict:
        """netavark's NetworkOptions for the record."""
        net_keys = ("name", "id", "driver", "network_interface", "subnets", "ipv6_enabled", "internal",
                    "dns_enabled", "options", "ipam_options")
        info, per = {}, {}
        for c in confs:
            att = record["networks"][c["name"]]
            info[c["name"]] = {k: c.get(k) for k in net_keys}
            info[c["name"]]["subnets"] = [{"subnet": s["subnet"], "gateway": s.get("gateway")}
                                          for s in c["subnets"]]
            per[c["name"]] = {"interface_name": att["interface"], "static_ips": [att["ip"]],
                              "aliases": (list(record.get("aliases") or []) + [record["cid"][:12]])
                              if c.get("dns_enabled") else []}
        opts = {"container_id": record["cid"], "container_name": record.get("name") or record["cid"][:12],
                "networks": per, "network_info": info}
        if ports:
            opts["port_mappings"] = [{"host_ip": p.host_ip, "host_port": p.host_port,
                                      "container_port": p.container_port, "protocol": p.protocol,
                                      "range": p.range} for p in ports]
        return opts

    def teardown(self, cid: str) -> None:
        """Undo setup from the record alone; a no-op when there is none."""
        if not _valid_cid(cid):
            raise UsageError(f"invalid container id {cid!r}")
        self._teardown(cid, quiet=False)

    def _teardown(self, cid: str, quiet: bool) -> None:
        path = self._record_path(cid)
        record = self._read_json(path) or {}
        netns = record.get("netns") or os.path.join(self.netns_dir, cid)
        error = None
        if record.get("phase") in ("setup", "up") and record.get("options", {}).get("network_info") \
                and netns_mounted(netns):
            try:
                self._run_netavark("teardown", netns, record["options"])
            except RunError as e:
                # a setup that did not finish leaves pieces missing, which
                # netavark reports while removing the rest
                if record["phase"] == "up":
                    error = e
            record["phase"] = "down"
            self._write_json(path, record)
        remove_netns(netns)
        with self._lock():
            ids = {att.get("id") for att in record.get("networks", {}).values()}
            for conf in self._configs():
                if conf["id"] in ids:
                    self._allocator(conf).release(cid)
                    ids.discard(conf["id"])
            for nid in ids:  # a network removed meanwhile: its lease file only
                if nid and os.path.exists(os.path.join(self.ipam_dir, nid + ".json")):
                    Allocator(os.path.join(self.ipam_dir, nid + ".json"), "0.0.0.0/32", None).release(cid)
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        if error is not None and not quiet:
            raise RunError(f"network teardown of container {record.get('name') or cid}: {error}")


class _Held:
    """A held flock; released on exit (closing the fd)."""

    def __init__(self, fd: int):
        self.fd = fd

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        os.close(self.fd)
        return False


def _valid_cid(cid) -> bool:
    return isinstance(cid, str) and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", cid) is not None


def _status(record: dict) -> dict:
    nets, dns, search = {}, [], []
    for name, att in record.get("networks", {}).items():
        nets[name] = {"NetworkID": att.get("id", ""), "IPAddress": att.get("ip", ""),
                      "IPPrefixLen": att.get("prefix", 0), "Gateway": att.get("gateway", ""),
                      "MacAddress": att.get("mac", ""), "Aliases": list(att.get("aliases") or [])}
        dns += [s for s in att.get("dns_servers", []) if s not in dns]
        search += [s for s in att.get("dns_search", []) if s not in search]
    return {"netns": record.get("netns"), "networks": nets,
            "ports": [PortMapping.from_dict(p) for p in record.get("ports", [])],
            "dns_servers": dns, "dns_search": search}


def _free_port(host_ip: str, kind: int, lo: int, hi: int, taken) -> int:
    """A port nothing listens on now (and `taken` does not refuse): the
    kernel's choice when lo == 0, else the first free one in lo..hi."""
    candidates = range(lo, hi + 1) if lo else [0] * 64
    for want in candidates:
        s = socket.socket(socket.AF_INET6 if ":" in host_ip else socket.AF_INET, kind)
        try:
            s.bind((host_ip or "0.0.0.0", want))
            port = s.getsockname()[1]
        except OSError:
            continue
        finally:
            s.close()
        if not taken(port):
            return port
    return 0
