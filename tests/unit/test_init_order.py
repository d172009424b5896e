"""The order of init's and rootfs's system calls, recorded by
tests/unit/fake_syscalls.py (no root; nothing mounted, nothing changed
outside a temporary rootfs)."""
import inspect
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import fake_syscalls as fk  # noqa: E402
from runtime import rootfs as rfs  # noqa: E402
from runtime import syscalls as sc  # noqa: E402
from runtime.specgen import default_spec  # noqa: E402

MASKED_FILE, MASKED_DIR, MASKED_MISSING = "/proc/version", "/proc/sys/kernel", "/pyrunc-test-no-such-path"


def _config(**proc) -> dict:
    cfg = default_spec(args=["true"], terminal=False)
    # no network namespace (init would bring up a loopback), a user namespace
    # (devices are bind mounts then, not mknod, which needs root)
    cfg["linux"]["namespaces"] = [{"type": t} for t in ("pid", "ipc", "uts", "mount", "user")]
    cfg["linux"]["maskedPaths"] = [MASKED_FILE, MASKED_DIR, MASKED_MISSING]
    cfg["linux"]["readonlyPaths"] = ["/proc/sys"]
    cfg["linux"]["rootfsPropagation"] = "rslave"
    cfg["hostname"] = "fake-host"
    cfg["process"].update(proc)
    return cfg


@pytest.fixture
def rootfs(tmp_path):
    r = tmp_path / "rootfs"
    r.mkdir()
    return str(r)


def _run(cfg, rootfs, tmp_path, **kw):
    rec = fk.FakeSyscalls(rootfs)
    out = fk.init_calls(cfg, rootfs, str(tmp_path), **kw)
    rec.calls = out["calls"]
    errors = [c for c in rec.calls if c["name"] == "chan.send" and c["args"] == ["error"]]
    assert not errors, errors
    return rec, out


def _label(c) -> str:
    return c["kw"].get("label") or ""


def _is_mount(c, target=None, label=None, flags=None) -> bool:
    return (c["name"] == "mount" and (target is None or c["args"][1] == target)
            and (label is None or _label(c) == label) and (flags is None or c["args"][3] == flags))


def test_the_fake_replaces_every_wrapper_that_changes_something():
    """A function added to runtime.syscalls must be recorded or, if it only
    reads, passed through: otherwise a test would make the real call."""
    public = {n for n, f in vars(sc).items() if inspect.isfunction(f) and f.__module__ == sc.__name__
              and not n.startswith("_")}
    assert public == set(fk.RECORDED) | set(fk.PASSED)


def test_rootfs_is_mounted_in_config_order_before_pivot_root(rootfs, tmp_path):
    cfg = _config()
    rec, _ = _run(cfg, rootfs, tmp_path)
    calls = rec.calls
    pivot = rec.index(lambda c: c["name"] == "pivot_root", "pivot_root")
    assert calls[pivot]["args"] == [".", "."]
    # rootfs.prepare_root first: the host's mounts slave, the holder private, the rootfs bound on itself
    mounts = [c for c in calls if c["name"] == "mount"]
    assert _is_mount(mounts[0], "/", "/ (propagation)", sc.MS_SLAVE | sc.MS_REC)
    assert _is_mount(mounts[1], rootfs, f"{rootfs} (private)", sc.MS_PRIVATE)
    assert mounts[2]["args"][:2] == [rootfs, rootfs] and mounts[2]["args"][3] == sc.MS_BIND | sc.MS_REC
    # then every config mount, in order, each on its destination inside the rootfs
    done, seen = [], set()
    for i, c in enumerate(calls):
        label = _label(c) if c["name"] == "mount" else c["args"][2] if c["name"] == "cgroup_mount" else ""
        if label.startswith("mounts[") and label not in seen:
            seen.add(label)
            done.append((i, c["where"]))
    assert [w for _, w in done] == [m["destination"] for m in cfg["mounts"]]
    assert all(i < pivot for i, _ in done)
    # the devices (bind mounts of the host's nodes in a user namespace), still before the pivot
    devs = [i for i, c in enumerate(calls) if _label(c) in {p for p, *_ in rfs.DEFAULT_DEVICES}]
    assert len(devs) == len(rfs.DEFAULT_DEVICES) and max(devs) < pivot
    assert all(calls[i]["where"] == _label(calls[i]) for i in devs)
    assert max(i for i, _ in done) < min(devs)
    # the old root: made a slave (its unmount must not reach the host), then detached
    assert _is_mount(calls[pivot + 1], ".", "old root", sc.MS_SLAVE | sc.MS_REC)
    assert calls[pivot + 2]["name"] == "umount2" and calls[pivot + 2]["args"] == [".", sc.MNT_DETACH]
    # what init made for real, inside the temporary rootfs only
    assert os.readlink(os.path.join(rootfs, "dev", "ptmx")) == "pts/ptmx"
    assert os.path.isdir(os.path.join(rootfs, "sys", "fs", "cgroup"))


def test_readonly_and_masked_paths_come_after_the_old_root_is_gone(rootfs, tmp_path):
    rec, _ = _run(_config(), rootfs, tmp_path)
    calls = rec.calls
    detached = rec.index(lambda c: c["name"] == "umount2", "umount2")
    ro = [i for i, c in enumerate(calls) if c["name"] == "mount" and c["args"][1] == "/proc/sys"]
    assert len(ro) == 2 and calls[ro[0]]["args"][3] == sc.MS_BIND | sc.MS_REC
    assert calls[ro[1]]["args"][3] & (sc.MS_REMOUNT | sc.MS_RDONLY) == sc.MS_REMOUNT | sc.MS_RDONLY
    masked_file = rec.index(lambda c: _is_mount(c, MASKED_FILE), MASKED_FILE)
    masked_dir = rec.index(lambda c: _is_mount(c, MASKED_DIR), MASKED_DIR)
    assert calls[masked_file]["args"][0] == "/dev/null" and calls[masked_file]["args"][3] == sc.MS_BIND
    assert calls[masked_dir]["args"][2] == "tmpfs" and calls[masked_dir]["args"][3] == sc.MS_RDONLY
    assert not any(MASKED_MISSING in str(c["args"]) for c in calls)
    assert detached < ro[0] < ro[1] < masked_file < masked_dir
    # then the root's own propagation and its read-only remount, both on the new "/"
    prop = rec.index(lambda c: _label(c) == "/ (linux.rootfsPropagation)", "rootfsPropagation")
    ro_root = rec.index(lambda c: _label(c) == "/ (root.readonly)", "root.readonly")
    assert calls[prop]["args"][3] == rfs.PROPAGATION["rslave"]
    assert masked_dir < prop < ro_root
    assert rec.index(lambda c: c["name"] == "sethostname") > detached
    assert calls[rec.index(lambda c: c["name"] == "sethostname")]["args"] == ["fake-host"]


SECCOMP = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["kexec_load"], "action": "SCMP_ACT_ERRNO"}]}


def _nnp_and_seccomp(rec):
    nnp = [i for i, c in enumerate(rec.calls) if c["name"] == "prctl" and c["args"][0] == sc.PR_SET_NO_NEW_PRIVS]
    loads = [i for i, c in enumerate(rec.calls) if c["name"] == "seccomp_load"]
    return nnp, loads


def test_with_no_new_privileges_seccomp_is_loaded_after_it_and_last(rootfs, tmp_path):
    """The profile goes on as the very last step, once the process has no
    privileges left: no_new_privs is what lets it load then."""
    cfg = _config(noNewPrivileges=True)
    cfg["linux"]["seccomp"] = SECCOMP
    rec, _ = _run(cfg, rootfs, tmp_path)
    nnp, loads = _nnp_and_seccomp(rec)
    assert len(nnp) == 1 and len(loads) == 1 and nnp[0] < loads[0]
    assert rec.calls[nnp[0]]["args"][1] == 1
    uid = rec.index(lambda c: c["name"] == "setresuid", "setresuid")
    caps = rec.index(lambda c: c["name"] == "capset", "capset")
    assert uid < caps < nnp[0]
    assert rec.names()[loads[0] + 1:] == ["chan.close", "execve"]


def test_without_no_new_privileges_seccomp_is_loaded_while_privileged(rootfs, tmp_path):
    """Without no_new_privs only a privileged process may load a filter:
    it goes on before the capabilities are dropped and the uid changes."""
    cfg = _config(noNewPrivileges=False)
    cfg["linux"]["seccomp"] = SECCOMP
    rec, _ = _run(cfg, rootfs, tmp_path)
    nnp, loads = _nnp_and_seccomp(rec)
    assert nnp == [] and len(loads) == 1
    first_drop = rec.index(lambda c: c["name"] == "prctl" and c["args"][0] == sc.PR_CAPBSET_DROP, "a bounding drop")
    assert loads[0] < first_drop < rec.index(lambda c: c["name"] == "setresuid", "setresuid")


def test_identity_changes_in_runc_s_order(rootfs, tmp_path):
    """Bounding set, keep-caps across the uid change, stdio to the user,
    groups, gid, uid, then the exact capability sets and the ambient ones."""
    cfg = _config(user={"uid": 4321, "gid": 4322, "additionalGids": [5]})
    rec, _ = _run(cfg, rootfs, tmp_path)

    def at(pred, what):
        return rec.index(pred, what)
    drops = [i for i, c in enumerate(rec.calls) if c["name"] == "prctl" and c["args"][0] == sc.PR_CAPBSET_DROP]
    keep_on = at(lambda c: c["name"] == "prctl" and c["args"][:2] == [sc.PR_SET_KEEPCAPS, 1], "KEEPCAPS 1")
    keep_off = at(lambda c: c["name"] == "prctl" and c["args"][:2] == [sc.PR_SET_KEEPCAPS, 0], "KEEPCAPS 0")
    groups = at(lambda c: c["name"] == "setgroups", "setgroups")
    gid = at(lambda c: c["name"] == "setresgid", "setresgid")
    uid = at(lambda c: c["name"] == "setresuid", "setresuid")
    capset = at(lambda c: c["name"] == "capset", "capset")
    ambient = at(lambda c: c["name"] == "prctl" and c["args"][:2] == [sc.PR_CAP_AMBIENT,
                                                                      sc.PR_CAP_AMBIENT_CLEAR_ALL], "ambient")
    assert drops and max(drops) < keep_on < groups < gid < uid < keep_off < capset < ambient
    assert rec.calls[groups]["args"] == [[5]]
    assert rec.calls[gid]["args"] == [4322] * 3 and rec.calls[uid]["args"] == [4321] * 3
    # stdio (pipes this test's user owns) goes to the process user before the uid changes
    chowns = [i for i, c in enumerate(rec.calls) if c["name"] == "fchown"]
    assert {rec.calls[i]["args"][0] for i in chowns} >= {1, 2} and max(chowns) < uid
    # the bounding set keeps exactly the configured capabilities
    from runtime import caps
    kept = {caps.NUMBERS[n] for n in cfg["process"]["capabilities"]["bounding"]}
    assert {rec.calls[i]["args"][1] for i in drops} == set(range(caps.last_cap() + 1)) - kept


def test_init_ends_by_exec_ing_the_helper_after_ready(rootfs, tmp_path):
    rec, out = _run(_config(), rootfs, tmp_path)
    assert out["ready"] == '{"type": "ready"}'
    last = rec.calls[-1]
    assert last["name"] == "execve" and rec.names().count("execve") == 1
    assert isinstance(last["args"][0], int)  # the sealed memfd (fexecve), not a path of the host
    argv = last["args"][1]
    assert argv[:2] == ["pyrunc-exec", "start"]
    assert argv[-3] == "--" and argv[-1] == "true" and argv[-2].startswith("/") and argv[-2].endswith("/true")
    assert "HOME=/root" in [f"{k}={v}" for k, v in last["kw"]["env"].items()]
    assert rec.names()[-2] == "chan.close"
    # nothing from the config is left to do once APPLIED has been awaited late (no hooks)
    applied = rec.index(lambda c: c["name"] == "chan.expect" and c["args"] == ["applied"], "APPLIED")
    assert applied > rec.index(lambda c: c["name"] == "keyctl_join_session_keyring", "keyring")
    assert applied < rec.index(lambda c: c["name"] == "setresuid", "setresuid")


def test_no_pivot_unmounts_the_old_root_s_proc_and_sysfs_then_moves_the_rootfs(rootfs, tmp_path):
    """--no-pivot (runc's msMoveRoot): every full proc and sysfs mount
    outside the rootfs is made a slave and detached before the rootfs is
    moved over "/" and chrooted into; the masks come after."""
    expected = rfs._full_proc_sysfs_mounts(rootfs)
    assert expected, "this host should have a proc mount outside the rootfs"
    rec, _ = _run(_config(), rootfs, tmp_path, no_pivot=True)
    calls = rec.calls
    assert "pivot_root" not in rec.names()
    move = rec.index(lambda c: _is_mount(c, "/", "rootfs", sc.MS_MOVE), "the MS_MOVE")
    assert calls[move]["args"][0] == rootfs
    assert calls[move + 1]["name"] == "chroot" and calls[move + 1]["args"] == ["."]
    detached = [c["args"][0] for c in calls[:move] if c["name"] == "umount2"]
    assert detached == expected
    for mp in expected:
        slave = rec.index(lambda c: _is_mount(c, mp, flags=sc.MS_SLAVE | sc.MS_REC), f"{mp} made a slave")
        gone = rec.index(lambda c: c["name"] == "umount2" and c["args"] == [mp, sc.MNT_DETACH], f"{mp} detached")
        assert slave < gone < move
    assert move < rec.index(lambda c: _is_mount(c, MASKED_FILE), MASKED_FILE)


# --- rootfs alone, in this process (monkeypatch undoes the fake)

def test_a_read_only_bind_is_bound_then_remounted_on_the_new_mount(tmp_path, monkeypatch):
    """A bind mount ignores every flag but MS_REC: the read-only and
    propagation flags and the recursive attributes follow on the mount just
    made (reopened at its destination), in that order."""
    root, src = tmp_path / "rootfs", tmp_path / "src"
    root.mkdir()
    src.mkdir()
    fake = fk.FakeSyscalls(str(root)).install(monkeypatch.setattr)
    m = {"destination": "/data/x", "type": "bind", "source": str(src),
         "options": ["rbind", "ro", "nosuid", "rprivate", "rnoexec"]}
    later = rfs.mount_all(str(root), [m], str(tmp_path), None)
    assert later == []
    assert fake.names() == ["mount", "mount", "mount", "mount_setattr"]
    bind, remount, prop, attrs = fake.calls
    assert bind["args"][0] == str(src) and bind["args"][3] == sc.MS_BIND | sc.MS_REC
    assert remount["args"][3] == sc.MS_REMOUNT | sc.MS_BIND | sc.MS_RDONLY | sc.MS_NOSUID
    assert prop["args"][3] == sc.MS_PRIVATE | sc.MS_REC
    assert attrs["args"][2] == sc.AT_EMPTY_PATH | sc.AT_RECURSIVE and attrs["args"][3] == sc.MOUNT_ATTR_NOEXEC
    assert {c["where"] for c in fake.calls} == {"/data/x"}
    assert os.path.isdir(root / "data" / "x")


def test_a_read_only_tmpfs_is_mounted_writable_and_returned_for_later(tmp_path, monkeypatch):
    """tmpfs (and /dev) with "ro": mounted read-write so that devices and
    copied-up content can be written, and handed back for remount_readonly."""
    root = tmp_path / "rootfs"
    root.mkdir()
    fake = fk.FakeSyscalls(str(root)).install(monkeypatch.setattr)
    later = rfs.mount_all(str(root), [{"destination": "/run", "type": "tmpfs", "source": "tmpfs",
                                       "options": ["ro", "nodev"]}], str(tmp_path), None)
    assert fake.names() == ["mount"] and fake.calls[0]["args"][3] == sc.MS_NODEV
    assert later == [("/run", sc.MS_NODEV)]
    rfs.remount_readonly(later)
    assert fake.calls[1]["args"][1:4] == ["/run", None, sc.MS_NODEV | sc.MS_REMOUNT | sc.MS_BIND | sc.MS_RDONLY]


def test_a_read_only_dev_of_any_type_is_mounted_writable_first(tmp_path, monkeypatch):
    """runc's rule: a "ro" mount on /dev, whatever its type, is mounted
    read-write, for the device nodes, and made read-only afterwards."""
    root = tmp_path / "rootfs"
    root.mkdir()
    fake = fk.FakeSyscalls(str(root)).install(monkeypatch.setattr)
    later = rfs.mount_all(str(root), [{"destination": "/dev", "type": "ramfs", "source": "ramfs",
                                       "options": ["ro", "nosuid"]}], str(tmp_path), None)
    assert fake.calls[0]["args"][2:4] == ["ramfs", sc.MS_NOSUID] and fake.calls[0]["where"] == "/dev"
    assert later == [("/dev", sc.MS_NOSUID)]


def test_a_symlink_in_the_image_cannot_send_a_mount_out_of_the_rootfs(tmp_path, monkeypatch):
    """The destination is resolved in the rootfs: /etc -> / in the image
    puts the mount on the rootfs' own directory, never the host's."""
    root = tmp_path / "rootfs"
    root.mkdir()
    os.symlink("/", root / "etc")
    os.symlink("../../..", root / "up")
    fake = fk.FakeSyscalls(str(root)).install(monkeypatch.setattr)
    rfs.mount_all(str(root), [{"destination": "/etc/hosts-dir", "type": "tmpfs", "source": "tmpfs"},
                              {"destination": "/up/escape", "type": "tmpfs", "source": "tmpfs"}],
                  str(tmp_path), None)
    assert [c["where"] for c in fake.calls] == ["/hosts-dir", "/escape"]
    assert not os.path.exists("/hosts-dir") and os.path.isdir(root / "hosts-dir")
