"""docker run's options as the engine checks them (imagetool.engine.spec) and container
records' names and ids (imagetool.engine.records): no root, no containers."""
import os
import threading

import pytest

from imagetool.engine import records, spec
from imagetool.errors import EngineError, NoSuchContainer, UsageError


@pytest.mark.parametrize("arg,kind,target,source,ro", [
    ("/srv:/data", "bind", "/data", "/srv", False),
    ("/srv:/data:ro", "bind", "/data", "/srv", True),
    ("/srv/:/data/:rw", "bind", "/data", "/srv", False),
    ("cache:/var/cache", "volume", "/var/cache", "cache", False),
    ("cache:/var/cache:ro", "volume", "/var/cache", "cache", True),
    ("/anon", "volume", "/anon", "", False),
])
def test_volume_flag(arg, kind, target, source, ro):
    m = spec.parse_volume(arg)
    assert (m.kind, m.target, m.source, m.readonly) == (kind, target, source, ro)
    assert m.anonymous == (source == "")


@pytest.mark.parametrize("arg,fragment", [
    ("/srv:data", "mount path must be absolute"),
    ("/srv:/", "destination can't be '/'"),
    ("/srv:/d:bogus", "invalid mode: bogus"),
    ("a:b:c:d", "invalid volume specification"),
    ("./rel:/d", "includes invalid characters for a local volume name"),
])
def test_volume_flag_errors(arg, fragment):
    with pytest.raises(UsageError) as e:
        spec.parse_volume(arg)
    assert fragment in str(e.value)


def test_mount_flag(tmp_path):
    m = spec.parse_mount(f"type=bind,source={tmp_path},target=/in,readonly")
    assert (m.kind, m.source, m.target, m.readonly) == ("bind", str(tmp_path), "/in", True)
    m = spec.parse_mount("type=tmpfs,target=/t,tmpfs-size=1m")
    assert (m.kind, m.options) == ("tmpfs", ["size=1m"])
    m = spec.parse_mount("type=volume,target=/v")
    assert m.anonymous and m.kind == "volume"
    # docker's --mount, unlike -v, does not create a missing bind source
    with pytest.raises(UsageError) as e:
        spec.parse_mount(f"type=bind,source={tmp_path}/missing,target=/in")
    assert "bind source path does not exist" in str(e.value)
    assert not (tmp_path / "missing").exists()
    with pytest.raises(UsageError):
        spec.parse_mount("type=nfs,target=/x")
    with pytest.raises(UsageError):
        spec.parse_mount("type=bind,source=/x")


@pytest.mark.parametrize("value,out", [
    (None, {"Name": "no", "MaximumRetryCount": 0}),
    ("always", {"Name": "always", "MaximumRetryCount": 0}),
    ("on-failure:3", {"Name": "on-failure", "MaximumRetryCount": 3}),
    ("unless-stopped", {"Name": "unless-stopped", "MaximumRetryCount": 0}),
])
def test_restart_policy(value, out):
    assert spec.parse_restart(value) == out


@pytest.mark.parametrize("value", ["sometimes", "always:2", "on-failure:x"])
def test_restart_policy_errors(value):
    with pytest.raises(UsageError):
        spec.parse_restart(value)


def test_memory_and_cpus():
    assert spec.parse_memory("512m") == 512 * 1024 * 1024
    assert spec.parse_memory("1g") == 1024 ** 3
    assert spec.parse_memory("64MB") == 64 * 1024 * 1024
    for bad in ("lots", "1x"):
        with pytest.raises(UsageError):
            spec.parse_memory(bad)
    with pytest.raises(UsageError) as e:
        spec.parse_memory("1k")
    assert "Minimum memory limit allowed is 6MB" in str(e.value)
    assert spec.parse_cpus("1.5") == 1_500_000_000
    with pytest.raises(UsageError):
        spec.parse_cpus("many")


def test_capabilities_add_drop_and_the_hosts_bounding_set():
    default = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"]
    usable = spec.bounding_caps()
    assert spec.capabilities(default, ["sys_admin"], ["NET_RAW"]) == \
        [c for c in ["CAP_CHOWN", "CAP_KILL", "CAP_SYS_ADMIN"] if c in usable]
    assert spec.capabilities(default, [], ["ALL"]) == []
    every = spec.capabilities([], ["ALL"], [])
    assert set(every) == usable  # never one the host itself lacks
    with pytest.raises(UsageError):
        spec.normalize_cap("CAP_FLY")


def test_env_file(tmp_path, monkeypatch):
    f = tmp_path / "env"
    f.write_text("# comment\nA=1\n\nB=two words\nFROM_CALLER\n")
    assert spec.parse_env_file(str(f)) == ["A=1", "B=two words", "FROM_CALLER"]
    f.write_text("BAD KEY=1\n")
    with pytest.raises(UsageError):
        spec.parse_env_file(str(f))
    with pytest.raises(UsageError):
        spec.parse_env_file(str(tmp_path / "missing"))


def test_apply_mounts_caps_resources_and_init():
    oci = {"process": {"user": {"uid": 0}, "args": ["sh"], "capabilities": {"bounding": ["CAP_CHOWN"]}},
           "root": {"path": "rootfs"},
           "mounts": [{"destination": "/dev/shm", "type": "tmpfs", "source": "shm"},
                      {"destination": "/proc", "type": "proc", "source": "proc"}],
           "linux": {"seccomp": {"defaultAction": "SCMP_ACT_ERRNO"}}}
    host = {"Memory": 64 << 20, "NanoCpus": 500_000_000, "PidsLimit": 10, "ReadonlyRootfs": True,
            "CapDrop": ["CHOWN"]}
    user = [spec.oci_mount(spec.MountReq("tmpfs", "/dev/shm"), ""),
            spec.oci_mount(spec.MountReq("bind", "/a/b", "/src/b", True), "/src/b"),
            spec.oci_mount(spec.MountReq("bind", "/a", "/src/a"), "/src/a")]
    etc = [{"destination": "/etc/hosts", "type": "bind", "source": "/h", "options": []}]
    out = spec.apply(oci, host, mounts=user, etc_mounts=etc, init_binary="/copy/of/tini", cgroup_name="/pyimg/x")
    dests = [m["destination"] for m in out["mounts"]]
    # the user's /dev/shm replaces the default; a parent mounts before its child
    assert dests.count("/dev/shm") == 1 and dests.index("/a") < dests.index("/a/b")
    assert out["linux"]["resources"]["memory"] == {"limit": 64 << 20}
    assert out["linux"]["resources"]["cpu"] == {"quota": 50000, "period": 100000}
    assert out["linux"]["resources"]["pids"] == {"limit": 10}
    assert out["root"]["readonly"] is True and out["linux"]["cgroupsPath"] == "/pyimg/x"
    assert out["process"]["capabilities"]["bounding"] == []
    assert out["process"]["args"] == [spec.INIT_PATH, "--", "sh"]
    assert any(m["destination"] == spec.INIT_PATH and m["source"] == "/copy/of/tini" and "ro" in m["options"]
               for m in out["mounts"])
    assert "seccomp" in out["linux"]


def test_privileged_drops_seccomp_and_masks():
    oci = {"process": {"user": {"uid": 0}, "args": ["sh"], "capabilities": {"bounding": []}},
           "root": {"path": "rootfs"}, "mounts": [{"destination": "/sys", "type": "sysfs", "source": "sysfs",
                                                   "options": ["nosuid", "ro"]}],
           "linux": {"seccomp": {}, "maskedPaths": ["/proc/kcore"], "readonlyPaths": ["/proc/sys"]}}
    out = spec.apply(oci, {"Privileged": True}, mounts=[], etc_mounts=[], init_binary=None, cgroup_name="/p/x")
    assert "seccomp" not in out["linux"] and out["linux"]["maskedPaths"] == [] and out["linux"]["readonlyPaths"] == []
    assert "ro" not in out["mounts"][0]["options"]
    assert set(out["process"]["capabilities"]["effective"]) == spec.bounding_caps()


def _store(tmp_path):
    s = records.Store(records.Paths(str(tmp_path / "root"), str(tmp_path / "run")))
    s.ensure_dirs()
    return s


def test_names_are_unique_and_free_again_at_once(tmp_path):
    s = _store(tmp_path)
    a, b = records.new_id(), records.new_id()
    for cid in (a, b):
        os.makedirs(s.paths.cdir(cid))
        s.save({"Id": cid})
    s.take_name("web", a)
    with pytest.raises(EngineError) as e:
        s.take_name("web", b)
    assert 'The container name "/web" is already in use by container' in str(e.value) and a in str(e.value)
    s.free_name("web", a)
    s.take_name("web", b)
    assert s.resolve("web") == b and s.resolve(a[:6]) == a and s.resolve(b) == b
    with pytest.raises(NoSuchContainer) as e:
        s.resolve("nope")
    assert str(e.value) == "No such container: nope"
    with pytest.raises(EngineError):
        s.take_name("-bad", a)


def test_a_name_is_won_by_one_of_many_racers(tmp_path):
    s = _store(tmp_path)
    ids = [records.new_id() for _ in range(8)]
    for cid in ids:
        os.makedirs(s.paths.cdir(cid))
    won = []

    def race(cid):
        try:
            s.take_name("same", cid)
            won.append(cid)
        except EngineError:
            pass
    threads = [threading.Thread(target=race, args=(c,)) for c in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and s.name_owner("same") == won[0]


def test_a_name_whose_container_vanished_is_taken_over(tmp_path):
    s = _store(tmp_path)
    gone, new = records.new_id(), records.new_id()
    os.symlink(gone, os.path.join(s.paths.names, "web"))  # a crash between the two steps of rm
    os.makedirs(s.paths.cdir(new))
    s.take_name("web", new)
    assert s.name_owner("web") == new


def test_stores_do_not_share_run_dirs(tmp_path):
    a = records.run_dir_for(str(tmp_path / "a"))
    b = records.run_dir_for(str(tmp_path / "b"))
    assert a != b and os.path.dirname(a) == os.path.dirname(b)
