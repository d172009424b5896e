"""Scenarios for test_engine_network_netns.py, each run by it inside a fresh
network (and mount) namespace: `unshare -nm`, so netavark's bridges and
iptables rules never touch the host's. Usage:

    python netns_scenarios.py SCENARIO WORKDIR ROOTFS

prints one JSON object (the facts the test asserts) as its last line."""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
from bundles import Runtime  # noqa: E402

from imagetool.engine import network  # noqa: E402
from imagetool.engine.network import Networks, parse_publish  # noqa: E402
from imagetool.errors import PyimgError  # noqa: E402


def sh(cmd: str) -> str:
    return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout


def iptables() -> list[str]:
    """The ruleset without its timestamps and counters."""
    out = []
    for line in sh("iptables-save").splitlines():
        if line.startswith("#"):
            continue
        out.append(line.split(" [")[0] if line.startswith(":") else line)
    return out


def rules_diff(base: list[str]) -> list[str]:
    """Lines of the ruleset now that are not in `base` ("+line") and the
    other way round ("-line")."""
    now = iptables()
    return ["+" + r for r in now if r not in base] + ["-" + r for r in base if r not in now]


def links() -> list[str]:
    return sorted(link["ifname"] for link in json.loads(sh("ip -j link show") or "[]"))


def mounts_under(path: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(path)]


def aardvark_running(run_dir: str) -> bool:
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and any(b"aardvark-dns" in c for c in cmd[:1]) and run_dir.encode() in b" ".join(cmd):
            return True
    return False


def leftovers(n: Networks) -> dict:
    """What a store's runtime dir holds that teardown should have removed."""
    leases = {}
    if os.path.isdir(n.ipam_dir):
        for f in os.listdir(n.ipam_dir):
            if f.endswith(".json"):
                leases[f] = json.load(open(os.path.join(n.ipam_dir, f)))["leases"]
    return {
        "netns": sorted(os.listdir(n.netns_dir)) if os.path.isdir(n.netns_dir) else [],
        "records": sorted(os.listdir(n.attach_dir)) if os.path.isdir(n.attach_dir) else [],
        "leases": {k: v for k, v in leases.items() if v},
        "mounts": mounts_under(n.run),
        "aardvark": aardvark_running(n.run),
        "links": [x for x in links() if x not in ("lo", "hostv0", "hostv1")],
    }


def teardown_all(n: Networks) -> None:
    """Whatever a failed scenario left attached (aardvark-dns, a process of
    its own, would otherwise outlive the namespace's other users)."""
    if os.path.isdir(n.attach_dir):
        for f in os.listdir(n.attach_dir):
            if f.endswith(".json"):
                try:
                    n.teardown(f[:-5])
                except PyimgError:
                    pass


class Containers:
    """busybox containers joined to a netns made by Networks.setup."""

    def __init__(self, work: str, rootfs: str):
        self.rt = Runtime(os.path.join(work, "rt"), rootfs)
        self.work = work

    def start(self, netns: str, args: list[str], resolv: str = "") -> str:
        conf = os.path.join(self.work, f"resolv-{len(self.rt.ids)}.conf")
        with open(conf, "w") as f:
            f.write(resolv)

        def mutate(cfg):
            cfg["linux"]["namespaces"] = [ns for ns in cfg["linux"]["namespaces"] if ns["type"] != "network"]
            cfg["linux"]["namespaces"].append({"type": "network", "path": netns})
            cfg["mounts"].append({"destination": "/etc/resolv.conf", "type": "bind", "source": conf,
                                  "options": ["bind", "ro"]})
        cid = self.rt.new_id()
        b = self.rt.bundle(args, mutate=mutate)
        self.rt("create", "--bundle", b, cid, check=True)
        self.rt("start", cid, check=True)
        return cid

    def exec(self, cid: str, *args: str) -> tuple[int, str]:
        p = self.rt("exec", cid, *args, timeout=30)
        return p.returncode, p.stdout + p.stderr

    def cleanup(self):
        self.rt.cleanup()

    def cgroups_left(self) -> list[str]:
        """cgroups named after this scenario's containers, in any hierarchy."""
        import glob
        return [p for cid in self.rt.ids
                for p in glob.glob(f"/sys/fs/cgroup/{cid}") + glob.glob(f"/sys/fs/cgroup/*/{cid}")
                + glob.glob(f"/sys/fs/cgroup/*/*/*/{cid}")]


def resolv_for(att: dict) -> str:
    lines = [f"nameserver {s}" for s in att["dns_servers"]]
    if att["dns_search"]:
        lines.append("search " + " ".join(att["dns_search"]))
    return "\n".join(lines) + "\n"


def http_get(url: str) -> str:
    for _ in range(50):
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.read().decode()
        except OSError as e:
            last = str(e)
            time.sleep(0.1)
    return "ERROR " + last


def wait_http(c: Containers, cid: str, ip: str) -> tuple[int, str]:
    """GET / from http://IP:80 in the container: (status, body). With nc:
    the static busybox's wget looks up "http" through glibc's NSS, which a
    busybox rootfs lacks (it crashes)."""
    for _ in range(30):
        rc, out = c.exec(cid, "sh", "-c", f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {ip} 80")
        out = out.replace("\r\n", "\n")
        if rc == 0 and "\n\n" in out:
            return rc, out.split("\n\n", 1)[1]
        time.sleep(0.1)
    return rc, out


def by_name(c: Containers, cid: str, name: str) -> list:
    """[address NAME resolves to in the container (busybox nslookup, through
    its /etc/resolv.conf; the static busybox's getaddrinfo would need glibc's
    NSS modules), the body an HTTP GET to that address returns]."""
    rc, out = c.exec(cid, "nslookup", name)
    addrs = [line.split()[-1] for line in out.split("Name:", 1)[-1].splitlines()
             if line.startswith("Address") and "Name:" in out]
    if rc != 0 or not addrs:
        return [None, out]
    rc, body = wait_http(c, cid, addrs[0])
    return [addrs[0], body if rc == 0 else f"rc={rc} {body}"]


def cycle_baseline(n: Networks) -> list[str]:
    """A setup and teardown of a throwaway container, then the ruleset:
    netavark keeps its shared chains (NETAVARK-HOSTPORT-*, NETAVARK_FORWARD)
    once made, so "what teardown leaves" is measured against this."""
    n.setup("0" * 64, "warmup", ["bridge"], ports=parse_publish("127.0.0.1::9"))
    n.teardown("0" * 64)
    return iptables()


def scenario_dns_and_ports(work: str, rootfs: str) -> dict:
    # an address of this namespace's own besides loopback (a veth pair: the
    # module netavark needs anyway)
    sh("ip link add hostv0 type veth peer name hostv1 && ip addr add 10.250.0.1/24 dev hostv0"
       " && ip link set hostv0 up && ip link set hostv1 up")
    n = Networks(os.path.join(work, "root"), os.path.join(work, "run"))
    c = Containers(work, rootfs)
    res = {}
    try:
        base = cycle_baseline(n)
        res["baseline_has_dnat"] = any("DNAT" in line and "--to-destination" in line for line in base)
        n.create("app")
        a = n.setup("a" * 64, "alpha", ["app"], aliases=["web"],
                    ports=parse_publish("127.0.0.1::80") + parse_publish("18080:80"))
        alpha = c.start(a["netns"], ["httpd", "-f", "-p", "80", "-h", "/www"], resolv_for(a))
        b = n.setup("b" * 64, "beta", ["app"])
        beta = c.start(b["netns"], ["sleep", "1000"], resolv_for(b))
        g = n.setup("c" * 64, "gamma", ["bridge"])
        gamma = c.start(g["netns"], ["sleep", "1000"], resolv_for(g))
        d = n.setup("d" * 64, "delta", ["bridge"])
        delta = c.start(d["netns"], ["httpd", "-f", "-p", "80", "-h", "/www"], resolv_for(d))
        res["alpha"] = {"ip": a["networks"]["app"]["IPAddress"], "dns": a["dns_servers"],
                        "ports": [p.to_dict() for p in a["ports"]]}
        res["beta_ip"] = b["networks"]["app"]["IPAddress"]
        res["gamma_dns"] = g["dns_servers"]
        res["attachment_matches"] = n.attachment("a" * 64) == a
        res["users_app"] = sorted(n.users("app"))
        res["inspect_containers"] = sorted(n.get("app")["Containers"])
        # beta reaches alpha by name and by alias, through aardvark-dns
        res["beta_by_name"] = by_name(c, beta, "alpha")
        res["beta_by_alias"] = by_name(c, beta, "web")
        res["beta_by_fqdn"] = by_name(c, beta, "alpha.dns.podman")
        # on the default bridge: the address works, the name does not
        dip = d["networks"]["bridge"]["IPAddress"]
        res["gamma_by_ip"] = wait_http(c, gamma, dip)
        res["gamma_by_name"] = c.exec(gamma, "nslookup", "delta", d["networks"]["bridge"]["Gateway"])
        res["gamma_no_dns_servers"] = g["dns_servers"]
        # published ports, from the "host" (this namespace)
        lport = a["ports"][0].host_port
        res["host_loopback"] = http_get(f"http://127.0.0.1:{lport}/")
        res["host_own_address"] = http_get("http://10.250.0.1:18080/")
        # a second container asking for the same host port is refused and leaves nothing
        try:
            n.setup("e" * 64, "eps", ["app"], ports=parse_publish("18080:80"))
            res["dup_port"] = "no error"
        except PyimgError as e:
            res["dup_port"] = str(e)
        res["dup_left"] = os.path.exists(os.path.join(n.netns_dir, "e" * 64)) or \
            os.path.exists(os.path.join(n.attach_dir, "e" * 64 + ".json"))
        try:
            n.remove("app")
            res["remove_in_use"] = "no error"
        except PyimgError as e:
            res["remove_in_use"] = str(e)
        for cid in (alpha, beta, gamma, delta):
            c.rt("delete", "--force", cid)
        for x in "abcd":
            n.teardown(x * 64)
        n.teardown("a" * 64)  # idempotent
        res["left"] = leftovers(n)
        res["rules_diff"] = rules_diff(base)
        res["rules_mention_containers"] = [r for r in iptables() if "18080" in r or "--to-destination" in r]
        n.remove("app")
        res["networks_after"] = [x["Name"] for x in n.list()]
    finally:
        for cid in c.rt.ids:
            c.rt("delete", "--force", cid)
        teardown_all(n)
        c.cleanup()
    for _ in range(50):  # the reaper of the killed containers may be slow
        res["cgroups_left"] = c.cgroups_left()
        if not res["cgroups_left"]:
            break
        time.sleep(0.1)
    return res


def scenario_sigkill(work: str, rootfs: str) -> dict:
    """Kill the process doing setup at each stage; teardown from the record
    must still clean everything."""
    n = Networks(os.path.join(work, "root"), os.path.join(work, "run"))
    n.create("app")
    base = cycle_baseline(n)
    res = {}
    try:
        return _sigkill_stages(n, base, res)
    finally:
        teardown_all(n)


def _sigkill_stages(n: Networks, base: list[str], res: dict) -> dict:
    for stage in ("after_record", "after_netns", "after_netavark"):
        cid = {"after_record": "1", "after_netns": "2", "after_netavark": "3"}[stage] * 64
        pid = os.fork()
        if pid == 0:
            def die(*a, **k):
                os.kill(os.getpid(), signal.SIGKILL)
            if stage == "after_record":
                network.make_netns = die
            elif stage == "after_netns":
                Networks._run_netavark = lambda self, *a: die()
            else:
                real = Networks._run_netavark

                def run_then_die(self, *a):
                    real(self, *a)
                    die()
                Networks._run_netavark = run_then_die
            try:
                n.setup(cid, "victim", ["app", "bridge"], ports=parse_publish("127.0.0.1:18181:80"))
            finally:
                os._exit(3)
        _, status = os.waitpid(pid, 0)
        before = {"killed": os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL,
                  "record": os.path.exists(os.path.join(n.attach_dir, cid + ".json")),
                  "links": [x for x in links() if x != "lo"],
                  "dnat": any("18181" in r for r in iptables())}
        n.teardown(cid)
        res[stage] = {"before": before, "left": leftovers(n), "rules_diff": rules_diff(base),
                      "users": n.users("app")}
    return res


def scenario_netavark_fails(work: str, rootfs: str) -> dict:
    """netavark refuses the second network (its bridge name is taken by a
    dummy interface); setup must undo the first one and everything of its own."""
    n = Networks(os.path.join(work, "root"), os.path.join(work, "run"))
    n.default()
    conf = n.create("broken")
    iface = conf["Options"]["com.docker.network.bridge.name"]
    sh(f"ip link add {iface} type veth peer name {iface}x")
    base = cycle_baseline(n)
    res = {}
    try:
        n.setup("f" * 64, "f", ["bridge", "broken"], ports=parse_publish("18282:80"))
        res["error"] = "no error"
    except PyimgError as e:
        res["error"] = str(e)
    finally:
        sh(f"ip link del {iface}")
    res["left"] = leftovers(n)
    res["rules_diff"] = rules_diff(base)
    res["attachment"] = n.attachment("f" * 64)
    teardown_all(n)
    return res


if __name__ == "__main__":
    name, work, rootfs = sys.argv[1:4]
    out = globals()["scenario_" + name](work, rootfs)
    print(json.dumps(out, default=str))
