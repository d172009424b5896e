"""The device cgroup as the container meets it: v1 devices.allow/deny on
this host's v1 hybrid layout, the eBPF program on pure v2 (the v2 view of
test_cgroup_v2_mode).

A device the config creates (linux.devices) or the container makes with
mknod is still subject to linux.resources.devices: a deny-all rule set
denies it (runc's tests/integration/dev.bats), before and after an
`update`. Only open(2) is tried on the nodes, for reading and for writing;
nothing is written.

The rules are complete before init can reach a device: `create` writes
them before it releases the child (GO), which joins the v1 devices
hierarchy only then; on v2, where the child is born in the cgroup, the
program is attached before GO, and the child touches no device before GO.
Recorded from the runtime's own cgroup writes, so the order shows whatever
the timing.

`update` leaves the device rules alone, as runc 1.1.5's does, so it never
briefly denies (or allows) a device.
"""
import json
import os
import subprocess
import sys

import pytest

from bundles import PYRUNC, REPO, make_rootfs
from test_cgroup_v2_mode import in_v2_view

V1_DEVICES = "/sys/fs/cgroup/devices"

KMSG = {"path": "/dev/kmsg", "type": "c", "major": 1, "minor": 11}
# In a user namespace /dev/kmsg refuses even reading without CAP_SYSLOG in
# the host's namespace, so the device cgroup would not be what denies it;
# /dev/loop-control opens for anyone its mode lets in.
LOOP_CONTROL = {"path": "/dev/loop-control", "type": "c", "major": 10, "minor": 237}
EPERM = "Operation not permitted"


def _probe(files) -> str:
    """Shell that opens each file for writing and for reading (nothing is
    written): one line per open, "<file> <w|r> ok" or the shell's error."""
    return "; ".join(f"(exec 3{op}{f}) 2>/tmp/err && echo {f} {m} ok || echo {f} {m} $(cat /tmp/err)"
                     for f in files for m, op in (("w", ">>"), ("r", "<")))


def _probe_script(userns: bool) -> str:
    """Opens of the node the runtime made from linux.devices and, outside a
    user namespace, of a 1:11 node the container makes itself."""
    if userns:
        return _probe([LOOP_CONTROL["path"], "/dev/null"])
    return "rm -f /tmp/kmsg-mknod; mknod /tmp/kmsg-mknod c 1 11; " + _probe(["/dev/kmsg", "/tmp/kmsg-mknod",
                                                                            "/dev/null"])


def _check_denied(out: str) -> None:
    """Every open denied by the device cgroup (EPERM), /dev/null's allowed."""
    lines = {}
    for line in out.strip().split("\n"):
        f, mode, result = line.split(" ", 2)
        lines[f"{f} {mode}"] = result
    assert lines.pop("/dev/null w") == lines.pop("/dev/null r") == "ok", out
    assert len(lines) >= 2, out
    for what, result in lines.items():
        assert result.endswith(EPERM), f"{what}: {result} (under a deny-all rule set)"


def _deny_all_config(userns: bool):
    def m(c):
        c["root"]["readonly"] = False
        c["linux"]["resources"]["devices"] = [{"allow": False, "access": "rwm"}]
        for k in ("bounding", "effective", "permitted"):
            c["process"]["capabilities"][k] += ["CAP_SYSLOG", "CAP_MKNOD"]
        if userns:
            # linux.devices are bind mounts of the host's nodes here. Root
            # is mapped to root so that the node's mode lets it in.
            c["linux"]["devices"] = [dict(LOOP_CONTROL)]
            c["linux"]["namespaces"].append({"type": "user"})
            c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 0, "size": 65536}]
            c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 0, "size": 65536}]
            c["mounts"] = [x for x in c["mounts"] if x["destination"] not in ("/sys", "/sys/fs/cgroup")]
        else:
            c["linux"]["devices"] = [dict(KMSG)]
    return m


@pytest.fixture
def own_rootfs(open_tmp):
    """A rootfs of the test's own: these containers write to theirs."""
    return make_rootfs(open_tmp / "rootfs")


def _skip_without(userns: bool) -> None:
    if userns and not os.path.exists(LOOP_CONTROL["path"]):
        pytest.skip("no /dev/loop-control on this host")


def _probe_in(rt, cid, userns):
    p = rt("exec", cid, "sh", "-c", _probe_script(userns))
    assert p.returncode == 0, p.stderr
    return p.stdout


@pytest.mark.parametrize("userns", [False, True], ids=["mknod", "userns-bind"])
def test_deny_all_denies_created_devices_v1(rt, own_rootfs, userns):
    """runc's dev.bats "device cgroup deny": linux.devices makes the node,
    the rules decide whether it opens, before and after an update."""
    if not os.path.isdir(V1_DEVICES):
        pytest.skip("no v1 devices hierarchy")
    _skip_without(userns)
    b = rt.bundle(["sleep", "60"], mutate=_deny_all_config(userns), rootfs=own_rootfs)
    cid = rt.new_id()
    rt("run", "-d", "--bundle", b, cid, check=True)
    _check_denied(_probe_in(rt, cid, userns))
    rt("update", "--pids-limit", "42", cid, check=True)
    _check_denied(_probe_in(rt, cid, userns))
    lst = open(f"{V1_DEVICES}/{cid}/devices.list").read().split("\n")
    assert "c 1:11 rwm" not in lst and "c 10:237 rwm" not in lst and "a *:* rwm" not in lst, lst
    rt("delete", "--force", cid, check=True)


@pytest.mark.parametrize("userns", [False, True], ids=["mknod", "userns-bind"])
def test_deny_all_denies_created_devices_v2(rt, own_rootfs, userns):
    _skip_without(userns)
    cid = rt.new_id()

    def m(c):
        _deny_all_config(userns)(c)
        c["linux"]["cgroupsPath"] = f"/{cid}"
    b = rt.bundle(["sleep", "60"], mutate=m, rootfs=own_rootfs)
    P = f"{PYRUNC} --root {rt.root}"
    probe = f"{P} exec {cid} sh -c '{_probe_script(userns)}'"
    # (The v2 view has no pids controller: an update that changes nothing.)
    p = in_v2_view(f"{{ {P} run -d --bundle {b} {cid} && {probe} && echo -- && "
                   f"echo '{{}}' | {P} update --resources - {cid} && {probe}; }} || echo FAILED; "
                   f"{P} delete --force {cid}")
    assert p.returncode == 0 and "FAILED" not in p.stdout, p.stdout + p.stderr
    first, second = p.stdout.split("--\n")
    _check_denied(first)
    _check_denied(second)


# A pyrunc whose cgroup writes, device program attachments and GO are
# appended to a log, one line each, by whichever process does them.
RECORDER = """
import os, sys
sys.path.insert(0, {repo!r})
LOG = {log!r}
def rec(line):
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(fd, f"{{os.getpid()}} {{line}}\\n".encode())
    os.close(fd)
from runtime import sync
from runtime.cgroups import common, ebpf, v1, v1_writers, v2, v2_writers
real_write = common.write_file
def write_file(d, name, value, **kw):
    rec(f"write {{os.path.join(d, name)}} {{value}}")
    real_write(d, name, value, **kw)
for mod in (common, v1, v1_writers, v2, v2_writers):
    if hasattr(mod, "write_file"):
        mod.write_file = write_file
real_replace = ebpf.replace_device_program
def replace_device_program(d, *a, **kw):
    r = real_replace(d, *a, **kw)
    rec(f"bpf-attached {{d}}")
    return r
ebpf.replace_device_program = replace_device_program
real_send = sync.Channel.send
def send(self, t, **kw):
    if t == sync.GO:
        rec("GO")
    return real_send(self, t, **kw)
sync.Channel.send = send
sys.argv[0] = "pyrunc"
from runtime.cli import main
main()
"""


def _recorder(tmp_path) -> tuple[str, str]:
    log = str(tmp_path / "writes.log")
    script = tmp_path / "recording-pyrunc"
    script.write_text(RECORDER.format(repo=REPO, log=log))
    return str(script), log


def _records(log: str) -> list[tuple[int, str, str]]:
    out = []
    with open(log) as f:
        for line in f:
            pid, what, *rest = line.rstrip("\n").split(" ", 2)
            out.append((int(pid), what, rest[0] if rest else ""))
    return out


def test_v1_device_rules_written_before_init_joins(rt, tmp_path):
    """Every devices.allow/deny write of `create` comes before GO, and the
    child's join of the devices hierarchy after it: no mknod of init's can
    meet the half-written rules (deny-all, before the allows)."""
    if not os.path.isdir(V1_DEVICES):
        pytest.skip("no v1 devices hierarchy")
    script, log = _recorder(tmp_path)
    b = rt.bundle(["true"], mutate=lambda c: c["linux"].update(devices=[dict(KMSG)]))
    cid = rt.new_id()
    with open(tmp_path / "err", "w+") as err:
        # Files, not pipes: the created init keeps the caller's stdio.
        p = subprocess.run([sys.executable, script, "--root", rt.root, "create", "--bundle", b, cid],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, timeout=60)
        err.seek(0)
        assert p.returncode == 0, err.read()
    recs = _records(log)
    go = next(i for i, r in enumerate(recs) if r[1] == "GO")
    parent = recs[go][0]
    dev_dir = f"{V1_DEVICES}/{cid}/"
    rules = [i for i, r in enumerate(recs) if r[1] == "write" and
             r[2].startswith((dev_dir + "devices.allow", dev_dir + "devices.deny"))]
    joins = [i for i, r in enumerate(recs) if r[1] == "write" and r[0] != parent and
             r[2].startswith((dev_dir + "tasks", dev_dir + "cgroup.procs"))]
    assert rules and joins, recs
    assert max(rules) < go < min(joins), "\n".join(f"{r[0]} {r[1]} {r[2]}" for r in recs)
    lst = open(dev_dir + "devices.list").read().split("\n")
    assert "c 1:3 rwm" in lst and "c 1:11 rwm" not in lst
    rt("delete", "--force", cid, check=True)


def test_v2_device_program_attached_before_go(rt, tmp_path):
    """On v2 the child is cloned into the cgroup; the device program is on
    it before GO lets the child past its first step."""
    script, log = _recorder(tmp_path)
    cid = rt.new_id()
    b = rt.bundle(["true"], mutate=lambda c: c["linux"].update(cgroupsPath=f"/{cid}"))
    p = in_v2_view(f"{sys.executable} {script} --root {rt.root} create --bundle {b} {cid} || echo FAILED; "
                   f"{PYRUNC} --root {rt.root} delete --force {cid}")
    assert p.returncode == 0 and "FAILED" not in p.stdout, p.stdout + p.stderr
    recs = _records(log)
    go = next(i for i, r in enumerate(recs) if r[1] == "GO")
    attached = [i for i, r in enumerate(recs) if r[1] == "bpf-attached" and r[2] == f"/sys/fs/cgroup/{cid}"]
    assert attached and max(attached) < go, "\n".join(f"{r[0]} {r[1]} {r[2]}" for r in recs)


# Opens /dev/null and /dev/zero for writing in a loop, and counts the
# failures, until /tmp/stop appears; then stays.
HAMMER = ("n=0; f=0; touch /tmp/started; while [ ! -e /tmp/stop ]; do n=$((n+1)); "
          "{ : >/dev/null && : </dev/zero; } 2>/dev/null || f=$((f+1)); done; echo $n $f > /tmp/result; "
          "exec sleep 60")


def test_update_leaves_device_rules_alone_v1(rt, own_rootfs):
    """runc 1.1.5's update skips the devices: a resources file that has
    them, deny-all or allow-all, changes neither devices.list nor what the
    container can open, and nothing it opens fails meanwhile."""
    if not os.path.isdir(V1_DEVICES):
        pytest.skip("no v1 devices hierarchy")
    b = rt.bundle(["sh", "-c", HAMMER], mutate=lambda c: c["root"].update(readonly=False), rootfs=own_rootfs)
    cid = rt.new_id()
    rt("run", "-d", "--bundle", b, cid, check=True)
    lst = f"{V1_DEVICES}/{cid}/devices.list"
    before = open(lst).read()
    rt("exec", cid, "sh", "-c", "while [ ! -e /tmp/started ]; do sleep 0.01; done", check=True)
    for devices in ([{"allow": False, "access": "rwm"}], [{"allow": True, "access": "rwm"}]) * 5:
        rt("update", "--resources", "-", cid, input=json.dumps({"devices": devices, "pids": {"limit": 99}}),
           check=True)
        assert open(lst).read() == before
    rt("exec", cid, "sh", "-c", "touch /tmp/stop; while [ ! -e /tmp/result ]; do sleep 0.01; done", check=True)
    n, failed = rt("exec", cid, "cat", "/tmp/result", check=True).stdout.split()
    assert int(n) > 0 and failed == "0", f"{failed} of {n} opens of /dev/null, /dev/zero failed"
    rt("delete", "--force", cid, check=True)


def test_update_leaves_device_program_alone_v2(rt, own_rootfs):
    """The same on v2: the attached program stays; allow-all in an update
    does not open a block device up, deny-all does not close /dev/null."""
    cid = rt.new_id()

    def m(c):
        c["root"]["readonly"] = False
        c["linux"]["cgroupsPath"] = f"/{cid}"
        for k in ("bounding", "effective", "permitted"):
            c["process"]["capabilities"][k].append("CAP_MKNOD")
    b = rt.bundle(["sleep", "60"], mutate=m, rootfs=own_rootfs)
    P = f"{PYRUNC} --root {rt.root}"
    check = (f"{P} exec {cid} sh -c '(exec 3</tmp/blk) 2>/dev/null && echo blk-open || echo blk-denied; "
             f"(exec 3>/dev/null) 2>/dev/null && echo null-open || echo null-denied'")
    def upd(devices):
        return f"echo '{json.dumps({'devices': devices})}' | {P} update --resources - {cid}"
    p = in_v2_view(f"{{ {P} run -d --bundle {b} {cid} && {P} exec {cid} mknod /tmp/blk b 7 0 && {check} && "
                   f"{upd([{'allow': True, 'access': 'rwm'}])} && {check} && "
                   f"{upd([{'allow': False, 'access': 'rwm'}])} && {check}; }} || echo FAILED; "
                   f"{P} delete --force {cid}")
    assert p.returncode == 0 and "FAILED" not in p.stdout, p.stdout + p.stderr
    assert p.stdout.split() == ["blk-denied", "null-open"] * 3, p.stdout
