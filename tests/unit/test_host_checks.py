"""Which linux.sysctl keys a container's namespaces allow, so that create
never writes one to the host (runc 1.1.5's rules and wording)."""
import pytest

from runtime.config import check_sysctl
from runtime.errors import RuntimeFailure


def _ns(*types, **paths):
    out = {t: {"type": t} for t in types}
    out.update({t: {"type": t, "path": p} for t, p in paths.items()})
    return out


ALL = _ns("pid", "network", "ipc", "uts", "mount", "cgroup")


@pytest.mark.parametrize("key", ["net.ipv4.ip_forward", "net/ipv4/ip_forward", "net.core.somaxconn",
                                 "kernel.msgmax", "kernel.shm_rmid_forced", "kernel/sem",
                                 "fs.mqueue.msg_max", "kernel.domainname"])
def test_namespaced_keys_allowed_with_the_namespaces(key):
    check_sysctl({key: "1"}, ALL)


@pytest.mark.parametrize("key,shown", [
    ("kernel.core_pattern", "kernel.core_pattern"), ("kernel/core_pattern", "kernel.core_pattern"),
    ("vm.swappiness", "vm.swappiness"), ("fs.file-max", "fs.file-max"), ("kernel.pid_max", "kernel.pid_max"),
    ("kernel.modprobe", "kernel.modprobe"), ("dev.tty.ldisc_autoload", "dev.tty.ldisc_autoload"),
    ("kernel", "kernel"), ("", ""), ("fs.mqueue", "fs.mqueue"), ("netfoo.x", "netfoo.x"),
])
def test_keys_in_no_namespace_refused(key, shown):
    with pytest.raises(RuntimeFailure) as e:
        check_sysctl({key: "1"}, ALL)
    assert str(e.value) == f'sysctl "{shown}" is not in a separate kernel namespace'


def test_net_needs_a_network_namespace():
    with pytest.raises(RuntimeFailure) as e:
        check_sysctl({"net.ipv4.ip_forward": "1"}, _ns("ipc", "uts", "mount"))
    assert str(e.value) == 'sysctl "net.ipv4.ip_forward" not allowed in host network namespace'


def test_net_in_a_joined_namespace_that_is_the_runtimes():
    with pytest.raises(RuntimeFailure, match="not allowed in host network namespace"):
        check_sysctl({"net.ipv4.ip_forward": "1"}, _ns("ipc", network="/proc/self/ns/net"))
    with pytest.raises(RuntimeFailure, match=r"linux.namespaces network path /nonexistent: No such file"):
        check_sysctl({"net.ipv4.ip_forward": "1"}, _ns("ipc", network="/nonexistent"))


@pytest.mark.parametrize("key", ["kernel.msgmax", "kernel.shmmax", "fs.mqueue.queues_max", "kernel/msgmnb"])
def test_ipc_keys_need_an_ipc_namespace(key):
    shown = key.replace("/", ".")
    for nss in (_ns("network", "uts"), _ns("network", ipc="/proc/self/ns/ipc")):
        with pytest.raises(RuntimeFailure) as e:
            check_sysctl({key: "1"}, nss)
        assert str(e.value) == f'sysctl "{shown}" is not allowed in the hosts ipc namespace'


def test_uts_keys():
    with pytest.raises(RuntimeFailure) as e:
        check_sysctl({"kernel.hostname": "x"}, ALL)
    assert str(e.value) == 'sysctl "kernel.hostname" is not allowed as it conflicts with the OCI "hostname" field'
    for nss in (_ns("network", "ipc"), _ns("network", uts="/proc/self/ns/uts")):
        with pytest.raises(RuntimeFailure) as e:
            check_sysctl({"kernel.domainname": "x"}, nss)
        assert str(e.value) == 'sysctl "kernel.domainname" is not in a separate kernel namespace'


def test_slash_names_are_read_as_sysctl_d_does():
    # '/' separates, '.' is part of a name (an interface "eth0.100")
    with pytest.raises(RuntimeFailure, match='"net.ipv4.conf.eth0/100.rp_filter" not allowed'):
        check_sysctl({"net/ipv4/conf/eth0.100/rp_filter": "1"}, _ns("ipc"))


def test_quotes_in_a_key_are_escaped():
    with pytest.raises(RuntimeFailure) as e:
        check_sysctl({'vm."x\\': "1"}, ALL)
    assert str(e.value) == 'sysctl "vm.\\"x\\\\" is not in a separate kernel namespace'
