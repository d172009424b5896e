"""imagetool.bundle: config.json generation from an image config (conversion.md)."""
import os

import pytest

from imagetool.bundle import (BundleError, _chain_ids, generate_config, layer_key, resolve_user,
                              seccomp_profile)
from imagetool.layer import IdMap

DOCKER_CAPS = {"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
               "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
               "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"}


@pytest.fixture
def rootfs(tmp_path):
    r = tmp_path / "rootfs"
    (r / "etc").mkdir(parents=True)
    (r / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                  "# comment\n"
                                  "app:x:1000:1001:App:/home/app:/bin/sh\n"
                                  "nobody:x:65534:65534::/:/bin/false\n")
    (r / "etc/group").write_text("root:x:0:\napp:x:1001:\nwheel:x:10:root,app\naudio:x:29:app\nstaff:x:50:other\n")
    return str(r)


IMAGE = {
    "architecture": "amd64", "os": "linux", "created": "2024-01-02T03:04:05Z", "author": "someone",
    "config": {
        "Entrypoint": ["/entry.sh", "--flag"], "Cmd": ["serve", "--port", "80"],
        "Env": ["PATH=/opt/bin:/usr/bin", "LANG=C.UTF-8", "EMPTY="],
        "WorkingDir": "/srv", "User": "app",
        "Volumes": {"/data": {}, "/var/log": {}},
        "ExposedPorts": {"80/tcp": {}, "53/udp": {}},
        "StopSignal": "SIGQUIT",
        "Labels": {"org.example.team": "infra", "org.opencontainers.image.author": "label wins"},
    },
    "rootfs": {"type": "layers", "diff_ids": []},
}


def test_fields_convert_per_image_spec(rootfs):
    spec = generate_config(IMAGE, rootfs, volumes={"/data": "/host/vol1", "/var/log": "/host/vol2"})
    p = spec["process"]
    assert p["args"] == ["/entry.sh", "--flag", "serve", "--port", "80"]
    assert p["env"][:3] == ["PATH=/opt/bin:/usr/bin", "LANG=C.UTF-8", "EMPTY="]
    assert not any(e.startswith("TERM=") for e in p["env"])  # no terminal
    assert p["cwd"] == "/srv"
    assert p["user"] == {"uid": 1000, "gid": 1001, "additionalGids": [10, 29]}
    assert p["terminal"] is False
    assert spec["root"] == {"path": "rootfs", "readonly": False}
    a = spec["annotations"]
    assert a["org.opencontainers.image.exposedPorts"] == "53/udp,80/tcp"
    assert a["org.opencontainers.image.stopSignal"] == "SIGQUIT"
    assert a["org.example.team"] == "infra"
    assert a["org.opencontainers.image.author"] == "label wins"  # labels take precedence
    assert a["org.opencontainers.image.os"] == "linux" and a["org.opencontainers.image.architecture"] == "amd64"
    vols = [m for m in spec["mounts"] if m["destination"] in ("/data", "/var/log")]
    assert vols == [{"destination": "/data", "type": "bind", "source": "/host/vol1", "options": ["rbind", "rw"]},
                    {"destination": "/var/log", "type": "bind", "source": "/host/vol2", "options": ["rbind", "rw"]}]
    # non-root user: docker keeps only the bounding set
    assert set(p["capabilities"]["bounding"]) == DOCKER_CAPS
    assert p["capabilities"]["effective"] == [] and "ambient" not in p["capabilities"]
    # the rest comes from `pyrunc spec`'s defaults
    assert {"type": "mount"} in spec["linux"]["namespaces"] and any(m["destination"] == "/proc" for m in spec["mounts"])


def test_command_line_overrides(rootfs):
    spec = generate_config(IMAGE, rootfs, cmd=["sh", "-c", "true"], env=["LANG=fr_FR", "NEW=1"], workdir="/tmp",
                           user="0:50", terminal=True, hostname="box", network="host")
    p = spec["process"]
    assert p["args"] == ["/entry.sh", "--flag", "sh", "-c", "true"]  # CMD replaces Cmd only
    assert "LANG=fr_FR" in p["env"] and "NEW=1" in p["env"] and "LANG=C.UTF-8" not in p["env"]
    assert "TERM=xterm" in p["env"] and "HOSTNAME=box" in p["env"]
    assert p["cwd"] == "/tmp" and p["terminal"] is True
    assert p["user"] == {"uid": 0, "gid": 50}
    assert set(p["capabilities"]["effective"]) == DOCKER_CAPS
    assert spec["hostname"] == "box"
    assert not any(n["type"] == "network" for n in spec["linux"]["namespaces"])
    spec = generate_config(IMAGE, rootfs, entrypoint=[], cmd=["ls"])
    assert spec["process"]["args"] == ["ls"]


def test_default_path_added_only_when_missing(rootfs):
    spec = generate_config({"config": {"Cmd": ["x"], "Env": ["A=1"]}}, rootfs)
    assert spec["process"]["env"][0].startswith("PATH=/usr/local/sbin:")
    assert "A=1" in spec["process"]["env"]
    assert spec["process"]["user"] == {"uid": 0, "gid": 0}
    assert spec["process"]["cwd"] == "/"


@pytest.mark.parametrize("user,expect", [
    ("1000", {"uid": 1000, "gid": 1001}),          # numeric: gid from passwd, no additionalGids
    ("4242", {"uid": 4242, "gid": 0}),              # unknown numeric uid is fine
    ("app:wheel", {"uid": 1000, "gid": 10}),
    ("nobody:7", {"uid": 65534, "gid": 7}),
    ("root", {"uid": 0, "gid": 0, "additionalGids": [10]}),
])
def test_resolve_user(rootfs, user, expect):
    assert resolve_user(rootfs, user) == expect


@pytest.mark.parametrize("user,msg", [("ghost", "unable to find user ghost"), ("app:nogroup", "unable to find group nogroup")])
def test_resolve_user_unknown(rootfs, user, msg):
    with pytest.raises(BundleError, match=msg):
        resolve_user(rootfs, user)


def test_passwd_symlink_cannot_leave_rootfs(tmp_path):
    r = tmp_path / "r"
    (r / "etc").mkdir(parents=True)
    os.symlink("/etc/passwd", r / "etc/passwd")  # points at the host's file: must not be read
    with pytest.raises(BundleError, match="unable to find user root"):
        resolve_user(str(r), "root")


def test_seccomp_is_dockers_default_effect(rootfs):
    sc = generate_config(IMAGE, rootfs)["linux"]["seccomp"]
    assert sc == seccomp_profile()
    assert sc["defaultAction"] == "SCMP_ACT_ERRNO" and sc["defaultErrnoRet"] == 1
    allowed = set(sc["syscalls"][0]["names"])
    assert sc["syscalls"][0]["action"] == "SCMP_ACT_ALLOW"
    for ok in ("read", "write", "openat", "execve", "exit_group", "chown", "chroot", "socket", "ptrace"):
        assert ok in allowed
    for blocked in ("mount", "umount2", "reboot", "kexec_load", "init_module", "bpf", "unshare", "setns",
                    "pivot_root", "swapon", "keyctl", "open_by_handle_at", "userfaultfd", "perf_event_open"):
        assert blocked not in allowed
    clone = [r for r in sc["syscalls"] if r["names"] == ["clone"]][0]
    assert clone["args"][0]["op"] == "SCMP_CMP_MASKED_EQ" and clone["args"][0]["value"] == 0x7E020000


def test_id_maps_add_a_user_namespace(rootfs):
    m = IdMap.parse(["0:100000:65536"])
    spec = generate_config({"config": {"Cmd": ["x"]}}, rootfs, uid_map=m, gid_map=m)
    assert spec["linux"]["uidMappings"] == [{"containerID": 0, "hostID": 100000, "size": 65536}]
    assert {"type": "user"} in spec["linux"]["namespaces"]


def test_required_command(rootfs):
    with pytest.raises(BundleError, match="no command specified"):
        generate_config({"config": {}}, rootfs, require_args=True)
    assert generate_config({"config": {}}, rootfs)["process"]["args"]  # unpack keeps the default


def test_relative_workdir_is_refused(rootfs):
    with pytest.raises(BundleError, match="'srv'"):
        generate_config({"config": {"Cmd": ["x"], "WorkingDir": "srv"}}, rootfs)


def test_layer_keys_depend_on_parents_and_maps():
    a, b, c = ("sha256:" + x * 64 for x in "abc")
    ca = _chain_ids([a, c])
    cb = _chain_ids([b, c])
    assert ca[0] == a and ca[1] != cb[1]  # same layer on different parents
    k = layer_key(ca[1], IdMap(), IdMap())
    assert len(k) == 12 and k != layer_key(ca[1], IdMap.parse(["0:1:1"]), IdMap())


def test_containers_using_reads_pyrunc_and_runc_state_files(tmp_path):
    """rm-bundle's check for live containers: pyrunc's state.json (with its
    checksum member) and runc's (the bundle in its config labels) both
    count; a container whose pid is gone, another bundle and a damaged file
    do not."""
    import json
    from imagetool.bundle import containers_using
    from runtime import state
    bundle = tmp_path / "b"
    bundle.mkdir()
    pyrunc_root, runc_root = tmp_path / "pyrunc", tmp_path / "runc"
    for cid, b, pid in (("py", bundle, os.getpid()), ("other", tmp_path, os.getpid()), ("gone", bundle, 2**22 + 1)):
        state.save(state.make_dir(str(pyrunc_root), cid), {"id": cid, "pid": pid, "bundle": str(b)})
    (pyrunc_root / "bad").mkdir()
    (pyrunc_root / "bad" / state.STATE_FILE).write_bytes(b'{"id": "bad", "bun')
    (runc_root / "rc").mkdir(parents=True)
    (runc_root / "rc" / "state.json").write_text(json.dumps(
        {"id": "rc", "init_process_pid": os.getpid(), "config": {"labels": [f"bundle={bundle}"]}}))
    assert sorted(containers_using(str(bundle), (str(pyrunc_root), str(runc_root)))) == ["py", "rc"]
