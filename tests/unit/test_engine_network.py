"""imagetool.engine.network without root: -p parsing (docker's forms and
wording), the IPAM allocator, config validation, and the network configs
(create/get/remove/prune) that need no namespace."""
import json
import multiprocessing
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from imagetool.engine import network  # noqa: E402
from imagetool.engine.network import Allocator, Networks, PortMapping, parse_publish, publish_all  # noqa: E402
from imagetool.errors import PyimgError, UsageError  # noqa: E402


def pm(ip="", hp=0, cp=0, proto="tcp", rng=1, hmax=0):
    return PortMapping(ip, hp, cp, proto, rng, hmax)


@pytest.mark.parametrize("spec, want", [
    ("80", [pm(cp=80)]),
    ("8080:80", [pm(hp=8080, cp=80)]),
    ("127.0.0.1:8080:80", [pm("127.0.0.1", 8080, 80)]),
    ("127.0.0.1::80", [pm("127.0.0.1", 0, 80)]),
    ("8080:80/udp", [pm(hp=8080, cp=80, proto="udp")]),
    ("8080:80/UDP", [pm(hp=8080, cp=80, proto="udp")]),
    ("8000-8001:80-81", [pm(hp=8000, cp=80, rng=2)]),
    ("8000-8010:80", [pm(hp=8000, cp=80, hmax=8010)]),
    ("80-81", [pm(cp=80), pm(cp=81)]),
    ("[::1]:8080:80", [pm("::1", 8080, 80)]),
])
def test_parse_publish_forms(spec, want):
    assert parse_publish(spec) == want


@pytest.mark.parametrize("spec, msg", [
    ("abc", "invalid containerPort: abc"),
    ("x:80", "invalid hostPort: x"),
    ("80:99999", "invalid containerPort: 99999"),
    ("99999:80", "invalid hostPort: 99999"),
    ("80-70", "invalid containerPort: 80-70"),
    ("8000-8001:80-82", "invalid ranges specified for container and host Ports: 80-82 and 8000-8001"),
    ("1.2.3:80:80", "invalid IP address: 1.2.3"),
    ("80/foo", "invalid proto: foo"),
    ("", "no port specified: <empty>"),
    ("8080:", "no port specified: 8080:<empty>"),
])
def test_parse_publish_errors_use_dockers_wording(spec, msg):
    with pytest.raises(UsageError) as e:
        parse_publish(spec)
    assert str(e.value) == msg


def test_publish_all_maps_every_exposed_port_to_a_random_host_port():
    got = publish_all({"80/tcp": {}, "53/udp": {}, "443": {}})
    assert got == [pm(cp=443), pm(cp=53, proto="udp"), pm(cp=80)]


def test_port_mapping_round_trips_through_its_dict():
    p = pm("127.0.0.1", 8000, 80, "udp", 2)
    assert PortMapping.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    assert p != pm("127.0.0.1", 8001, 80, "udp", 2)


# --- allocator -----------------------------------------------------------

def test_allocator_skips_network_gateway_and_broadcast(tmp_path):
    a = Allocator(str(tmp_path / "n.json"), "10.5.0.0/29", "10.5.0.1")
    got = [a.allocate(f"c{i}") for i in range(5)]
    assert got == ["10.5.0.2", "10.5.0.3", "10.5.0.4", "10.5.0.5", "10.5.0.6"]
    with pytest.raises(PyimgError) as e:
        a.allocate("c6")
    assert "no available IPv4 addresses" in str(e.value)


def test_allocator_gives_a_container_its_address_again_and_releases_it(tmp_path):
    a = Allocator(str(tmp_path / "n.json"), "10.5.0.0/24", "10.5.0.1")
    ip = a.allocate("c1")
    assert a.allocate("c1") == ip
    assert a.leases() == {ip: "c1"}
    a.release("c1")
    assert a.leases() == {}
    a.release("c1")  # idempotent


def test_allocator_does_not_reuse_a_released_address_at_once(tmp_path):
    a = Allocator(str(tmp_path / "n.json"), "10.5.0.0/24", "10.5.0.1")
    first = a.allocate("c1")
    a.release("c1")
    assert a.allocate("c2") != first


def test_allocator_wraps_around_to_released_addresses(tmp_path):
    a = Allocator(str(tmp_path / "n.json"), "10.5.0.0/30", "10.5.0.1")
    assert a.allocate("c1") == "10.5.0.2"
    a.release("c1")
    assert a.allocate("c2") == "10.5.0.2"


def test_allocator_stays_in_ip_range(tmp_path):
    a = Allocator(str(tmp_path / "n.json"), "10.5.0.0/16", "10.5.0.1", "10.5.7.0/30")
    got = [a.allocate(f"c{i}") for i in range(4)]
    assert got == ["10.5.7.0", "10.5.7.1", "10.5.7.2", "10.5.7.3"]


def _grab(path, n, q):
    a = Allocator(path, "10.6.0.0/16", "10.6.0.1")
    q.put([a.allocate(f"{os.getpid()}-{i}") for i in range(n)])


def test_allocator_hands_out_each_address_once_across_processes(tmp_path):
    path = str(tmp_path / "n.json")
    q = multiprocessing.get_context("fork").Queue()
    procs = [multiprocessing.get_context("fork").Process(target=_grab, args=(path, 30, q)) for _ in range(4)]
    for p in procs:
        p.start()
    got = [ip for _ in procs for ip in q.get(timeout=30)]
    for p in procs:
        p.join()
    assert len(got) == 120 and len(set(got)) == 120
    assert len(Allocator(path, "10.6.0.0/16", "10.6.0.1").leases()) == 120


# --- validation -----------------------------------------------------------

@pytest.mark.parametrize("kw, msg", [
    ({"name": "bad name"}, "invalid network name 'bad name'"),
    ({"name": "n", "driver": "macvlan"}, 'plugin "macvlan" not found'),
    ({"name": "n", "subnet": "abc"}, "invalid CIDR address: abc"),
    ({"name": "n", "subnet": "10.1.2.3/24"}, "invalid subnet 10.1.2.3/24: it has host bits set"),
    ({"name": "n", "subnet": "10.1.2.0/31"}, "invalid subnet 10.1.2.0/31"),
    ({"name": "n", "subnet": "fd00::/64"}, "invalid subnet fd00::/64: IPv6"),
    ({"name": "n", "gateway": "10.0.0.1"}, "every ip-range or gateway must have a corresponding subnet"),
    ({"name": "n", "subnet": "10.1.0.0/16", "gateway": "10.2.0.1"}, "no matching subnet for gateway 10.2.0.1"),
    ({"name": "n", "subnet": "10.1.0.0/16", "gateway": "nope"}, "invalid gateway nope"),
    ({"name": "n", "subnet": "10.1.0.0/16", "gateway": "10.1.255.255"}, "invalid gateway 10.1.255.255"),
    ({"name": "n", "subnet": "10.1.0.0/16", "ip_range": "10.2.0.0/24"}, "no matching subnet for range 10.2.0.0/24"),
    ({"name": "n", "labels": {"a": 1}}, "invalid labels for network n"),
])
def test_validate_config_names_the_bad_field(kw, msg):
    with pytest.raises(UsageError) as e:
        network.validate_config(**kw)
    assert str(e.value).startswith(msg)


def test_validate_config_defaults_the_gateway_to_the_first_address():
    got = network.validate_config("n", "10.1.0.0/16", ip_range="10.1.4.0/24")
    assert got == {"subnet": "10.1.0.0/16", "gateway": "10.1.0.1", "ip_range": "10.1.4.0/24"}


def test_host_routes_parses_proc_net_route(tmp_path):
    f = tmp_path / "route"
    f.write_text("Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n"
                 "eth0\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
                 "eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
                 "br0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n")
    assert [str(n) for n in network.host_routes(str(f))] == ["192.168.0.0/24", "172.17.0.0/16"]


# --- configs (no namespace needed) ------------------------------------------

@pytest.fixture
def nets(tmp_path, monkeypatch):
    monkeypatch.setattr(network, "host_routes", lambda path="/proc/net/route": [])
    return Networks(str(tmp_path / "root"), str(tmp_path / "run"))


def test_create_returns_dockers_inspect_shape(nets):
    got = nets.create("web", subnet="10.77.0.0/24", labels={"a": "b"})
    assert got["Name"] == "web" and len(got["Id"]) == 64 and int(got["Id"], 16) >= 0
    assert got["Scope"] == "local" and got["Driver"] == "bridge" and got["EnableIPv6"] is False
    assert got["IPAM"] == {"Driver": "default", "Options": {},
                           "Config": [{"Subnet": "10.77.0.0/24", "Gateway": "10.77.0.1"}]}
    assert got["Internal"] is False and got["Containers"] == {} and got["Labels"] == {"a": "b"}
    assert got["Created"].endswith("Z")
    conf = json.load(open(os.path.join(nets.conf_dir, "web.json")))
    assert conf["dns_enabled"] is True and conf["network_interface"] == "pyimg1"


def test_create_refuses_a_taken_name_and_overlaps(nets):
    nets.create("web", subnet="10.77.0.0/24")
    with pytest.raises(UsageError, match="^network with name web already exists$"):
        nets.create("web")
    with pytest.raises(UsageError, match="^network with name bridge already exists$"):
        nets.create("bridge")
    with pytest.raises(UsageError, match="^Pool overlaps with other one on this address space$"):
        nets.create("other", subnet="10.77.0.128/25")
    assert sorted(os.listdir(nets.conf_dir)) == ["web.json"]


def test_create_refuses_a_subnet_a_host_route_uses(nets, monkeypatch):
    import ipaddress
    monkeypatch.setattr(network, "host_routes", lambda path=None: [ipaddress.ip_network("10.9.0.0/16")])
    with pytest.raises(UsageError, match="Pool overlaps"):
        nets.create("n", subnet="10.9.3.0/24")


def test_default_bridge_skips_subnets_in_use(nets, monkeypatch):
    import ipaddress
    monkeypatch.setattr(network, "host_routes", lambda path=None: [ipaddress.ip_network("172.17.5.0/24")])
    d = nets.default()
    assert d["Name"] == "bridge" and d["IPAM"]["Config"] == [{"Subnet": "172.18.0.0/16", "Gateway": "172.18.0.1"}]
    conf = json.load(open(os.path.join(nets.conf_dir, "bridge.json")))
    assert conf["network_interface"] == "pyimg0" and conf["dns_enabled"] is False
    assert nets.default()["Id"] == d["Id"]  # made once
    assert nets.create("u")["IPAM"]["Config"][0]["Subnet"] == "172.19.0.0/16"


def test_get_by_name_id_and_prefix(nets):
    a = nets.create("a", subnet="10.1.0.0/24")
    assert nets.get("a")["Id"] == a["Id"]
    assert nets.get(a["Id"])["Name"] == "a"
    assert nets.get(a["Id"][:12])["Name"] == "a"
    with pytest.raises(UsageError, match="^network nope not found$"):
        nets.get("nope")


def test_list_has_bridge_first(nets):
    nets.create("zz", subnet="10.1.0.0/24")
    nets.create("aa", subnet="10.2.0.0/24")
    assert [n["Name"] for n in nets.list()] == ["bridge", "aa", "zz"]


def test_remove_refuses_bridge_and_networks_in_use(nets):
    a = nets.create("net-a", subnet="10.1.0.0/24")
    os.makedirs(nets.attach_dir)
    with open(os.path.join(nets.attach_dir, "c1.json"), "w") as f:
        json.dump({"cid": "c1", "name": "x", "networks": {"net-a": {"id": a["Id"], "ip": "10.1.0.2"}}}, f)
    assert nets.users("net-a") == ["c1"]
    assert nets.get("net-a")["Containers"]["c1"]["IPv4Address"] == "10.1.0.2/24"
    with pytest.raises(UsageError) as e:
        nets.remove("net-a")
    assert str(e.value) == f"error while removing network: network net-a id {a['Id']} has active endpoints"
    with pytest.raises(UsageError, match="bridge is a pre-defined network and cannot be removed"):
        nets.remove("bridge")
    assert nets.prune() == []
    os.unlink(os.path.join(nets.attach_dir, "c1.json"))
    # (a name that is not hex: "a" would then match any id starting with a, as in docker)
    nets.remove(a["Id"][:6])
    with pytest.raises(UsageError, match="not found"):
        nets.get("net-a")


def test_prune_removes_unused_user_networks_only(nets):
    nets.default()
    nets.create("a", subnet="10.1.0.0/24")
    nets.create("b", subnet="10.2.0.0/24")
    assert nets.prune() == ["a", "b"]
    assert [n["Name"] for n in nets.list()] == ["bridge"]


def test_teardown_without_a_record_is_a_no_op(nets):
    nets.teardown("c" * 64)
    assert nets.attachment("c" * 64) is None
    with pytest.raises(UsageError, match="invalid container id"):
        nets.teardown("../x")
