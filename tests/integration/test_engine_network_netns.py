"""imagetool.engine.network with real netavark, aardvark-dns and busybox
containers run by pyrunc. Every scenario runs in a fresh network and mount
namespace (`unshare -nm`, netns_scenarios.py): netavark's bridges, veths
and iptables rules are made there, never in the host's namespace."""
import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PYTHON = os.path.join(REPO, ".venv", "bin", "python")
if not os.path.exists(PYTHON):
    PYTHON = sys.executable

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/lib/podman/netavark")
                                or not shutil.which("iptables-save"),
                                reason="needs netavark and iptables")


@pytest.fixture(scope="module")
def net_rootfs(busybox_rootfs, tmp_path_factory):
    """The busybox rootfs plus a web root and an /etc/resolv.conf to bind over."""
    d = tmp_path_factory.mktemp("netfs")
    root = os.path.join(d, "rootfs")
    shutil.copytree(busybox_rootfs, root, symlinks=True)
    os.makedirs(os.path.join(root, "www"))
    with open(os.path.join(root, "www", "index.html"), "w") as f:
        f.write("hello from httpd\n")
    open(os.path.join(root, "etc", "resolv.conf"), "w").close()
    return root


def in_netns(scenario: str, work, rootfs: str) -> dict:
    """Run one scenario of netns_scenarios.py in a new network+mount
    namespace; its JSON facts."""
    script = os.path.join(HERE, "netns_scenarios.py")
    try:
        p = subprocess.run(["unshare", "-nm", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
                            PYTHON, script, scenario, str(work), rootfs],
                           capture_output=True, text=True, timeout=300)
    finally:
        stray = kill_aardvark_of(str(work))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert stray == [], "aardvark-dns outlived the scenario"
    return json.loads(p.stdout.strip().splitlines()[-1])


def kill_aardvark_of(work: str) -> list[int]:
    """Kill (by pid) any aardvark-dns serving a config dir under `work`, the
    one process a scenario's netavark starts that can outlive it."""
    killed = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"aardvark-dns") and any(c.startswith(work.encode()) for c in cmd):
            os.kill(int(pid), signal.SIGKILL)
            killed.append(int(pid))
    return killed


def assert_rules_back(diff: list[str]):
    """The ruleset is what it was before the containers, but for what
    netavark 1.4 itself keeps: the empty NETAVARK-DN-<network hash> chain of
    a network whose last container to leave had no published port (its
    teardown deletes that chain only when the config it is given has port
    mappings: src/firewall/varktables/types.rs, `create` of the DN chain)."""
    for line in diff:
        assert line.startswith("+:NETAVARK-DN-") and line.endswith(" -"), diff


def assert_clean(left: dict):
    assert left == {"netns": [], "records": [], "leases": {}, "mounts": [], "aardvark": False, "links": []}


def test_user_network_dns_default_bridge_and_published_ports(tmp_path, net_rootfs):
    r = in_netns("dns_and_ports", tmp_path, net_rootfs)
    assert r["baseline_has_dnat"] is False
    alpha_ip = r["alpha"]["ip"]
    assert r["alpha"]["dns"] and r["attachment_matches"] is True
    assert r["users_app"] == ["a" * 64, "b" * 64] and r["inspect_containers"] == r["users_app"]
    # by name and alias on the user network (aardvark-dns)
    assert r["beta_by_name"] == [alpha_ip, "hello from httpd\n"]
    assert r["beta_by_alias"] == [alpha_ip, "hello from httpd\n"]
    assert r["beta_by_fqdn"] == [alpha_ip, "hello from httpd\n"]
    # the default bridge: reachable by address, no name resolution
    assert r["gamma_by_ip"] == [0, "hello from httpd\n"]
    assert r["gamma_by_name"][0] != 0
    assert r["gamma_no_dns_servers"] == []
    # published ports: a random one on 127.0.0.1 and 18080 on every address
    ports = r["alpha"]["ports"]
    assert ports[0]["host_ip"] == "127.0.0.1" and ports[0]["host_port"] > 0
    assert ports[1]["host_port"] == 18080
    assert r["host_loopback"] == "hello from httpd\n"
    assert r["host_own_address"] == "hello from httpd\n"
    assert r["dup_port"] == "Bind for 0.0.0.0:18080 failed: port is already allocated"
    assert r["dup_left"] is False
    assert r["remove_in_use"].startswith("error while removing network: network app id ")
    # teardown leaves nothing (netavark's shared chains were there before)
    assert_clean(r["left"])
    assert_rules_back(r["rules_diff"])
    assert r["rules_mention_containers"] == []
    assert r["networks_after"] == ["bridge"]
    assert r["cgroups_left"] == []


def test_teardown_after_sigkill_at_each_stage_of_setup(tmp_path, net_rootfs):
    r = in_netns("sigkill", tmp_path, net_rootfs)
    for stage in ("after_record", "after_netns", "after_netavark"):
        got = r[stage]
        assert got["before"]["killed"] and got["before"]["record"], stage
        assert_clean(got["left"])
        assert_rules_back(got["rules_diff"])
        assert got["users"] == [], stage
    # the last stage really had everything set up when it was killed
    assert r["after_netavark"]["before"]["dnat"] is True
    assert set(r["after_netavark"]["before"]["links"]) >= {"pyimg0", "pyimg1"}


def test_failed_netavark_setup_is_undone(tmp_path, net_rootfs):
    r = in_netns("netavark_fails", tmp_path, net_rootfs)
    assert r["error"].startswith("netavark setup: ")
    assert_clean(r["left"])
    assert_rules_back(r["rules_diff"])
    assert r["attachment"] is None
