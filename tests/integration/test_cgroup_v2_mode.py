"""pyrunc on a pure cgroup v2 host. These machines run hybrid cgroups, so the
test builds a v2 view in a private mount namespace: /sys/fs/cgroup replaced
by the cgroup2 hierarchy (which holds only the controllers not bound to v1,
but enough for paths, freezing, the BPF device filter and cgroup.procs)."""
import json
import os
import subprocess

import pytest

from bundles import PYRUNC


def in_v2_view(script: str) -> subprocess.CompletedProcess:
    wrapper = ("set -e; umount -R /sys/fs/cgroup; mount -t cgroup2 none /sys/fs/cgroup; " + script)
    return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", wrapper],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def v2_bundle(rt):
    if not os.path.isdir("/sys/fs/cgroup/unified") and \
            open("/proc/self/mountinfo").read().find(" /sys/fs/cgroup rw") < 0:
        pytest.skip("no cgroup2 hierarchy to build a v2 view from")

    def m(c):
        c["root"]["readonly"] = False
        caps = c["process"]["capabilities"]
        for k in ("bounding", "effective", "permitted"):
            caps[k].append("CAP_MKNOD")
        c["linux"]["cgroupsPath"] = "/pyrunc-v2-test"
        c["linux"]["namespaces"].append({"type": "cgroup"})
    return rt.bundle(["sh", "-c", "cat /proc/self/cgroup; mknod /tmp/blk b 7 0; "
                      "head -c 1 /tmp/blk >/dev/null 2>/tmp/err; cat /tmp/err; rm -f /tmp/blk /tmp/err; "
                      "echo hi > /dev/null && echo null-ok"], mutate=m)


def test_run_on_pure_v2(rt, v2_bundle):
    cid = rt.new_id()
    root = rt.root
    p = in_v2_view(f"{PYRUNC} --root {root} features > /tmp/feat-{cid}; "
                   f"{PYRUNC} --root {root} run --bundle {v2_bundle} {cid}; "
                   f"test ! -e /sys/fs/cgroup/pyrunc-v2-test && echo cgroup-removed")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().split("\n")
    # In its cgroup namespace the container sees itself at the root.
    assert "0::/" in lines
    # The BPF device program denies a block device no rule allows, but not /dev/null.
    assert "Operation not permitted" in p.stdout
    assert "null-ok" in lines
    assert lines[-1] == "cgroup-removed"
    feat = json.loads(open(f"/tmp/feat-{cid}").read())
    os.unlink(f"/tmp/feat-{cid}")
    assert feat["linux"]["cgroup"]["v2"] is True


def test_pause_resume_on_pure_v2(rt):
    b = rt.bundle(["sleep", "30"], mutate=lambda c: c["linux"].update(cgroupsPath="/pyrunc-v2-pause"))
    cid = rt.new_id()
    P = f"{PYRUNC} --root {rt.root}"
    p = in_v2_view(f"{P} run -d --bundle {b} {cid}; {P} pause {cid}; cat /sys/fs/cgroup/pyrunc-v2-pause/cgroup.freeze; "
                   f"{P} state {cid} | grep status; {P} resume {cid}; {P} state {cid} | grep status; "
                   f"{P} ps --format json {cid}; {P} delete --force {cid}; "
                   f"test ! -e /sys/fs/cgroup/pyrunc-v2-pause && echo gone")
    assert p.returncode == 0, p.stderr
    out = p.stdout.split("\n")
    assert out[0] == "1"
    assert '"paused"' in out[1] and '"running"' in out[2]
    assert len(json.loads(out[3])) == 1
    assert out[4] == "gone"


def test_exec_joins_the_container_cgroup_on_pure_v2(rt):
    """exec's stage1 is cloned into the container's cgroup (CLONE_INTO_CGROUP)
    on v2: the process it forks is in it too."""
    def m(c):
        c["linux"]["cgroupsPath"] = "/pyrunc-v2-exec"
        c["linux"]["namespaces"].append({"type": "cgroup"})
    b = rt.bundle(["sleep", "30"], mutate=m)
    cid = rt.new_id()
    P = f"{PYRUNC} --root {rt.root}"
    d = "/sys/fs/cgroup/pyrunc-v2-exec"
    p = in_v2_view(f"{P} run -d --bundle {b} {cid}; {P} exec {cid} grep ^0:: /proc/self/cgroup; "
                   f"{P} exec -d {cid} sleep 30; wc -l < {d}/cgroup.procs; "
                   f"{P} delete --force {cid}; test ! -e {d} && echo gone")
    assert p.returncode == 0, p.stderr
    out = p.stdout.split("\n")
    assert out[0] == "0::/"          # inside its cgroup namespace: the root
    assert out[1].strip() == "2"     # init and the exec'd sleep
    assert out[2] == "gone"


def test_run_on_pure_v2_without_a_cgroup_namespace(rt):
    """Without a cgroup namespace (runc spec's default has none) the
    "cgroup" mount is the container's own cgroup bind-mounted, read-only as
    the mount asks."""
    def m(c):
        c["linux"]["cgroupsPath"] = "/pyrunc-v2-nons"
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "cgroup"]
    b = rt.bundle(["sh", "-c", "grep ^0:: /proc/self/cgroup; grep ' /sys/fs/cgroup ' /proc/self/mountinfo; "
                   "mkdir /sys/fs/cgroup/x 2>/dev/null || echo read-only"], mutate=m)
    p = in_v2_view(f"{PYRUNC} --root {rt.root} run --bundle {b} {rt.new_id()}; "
                   "test ! -e /sys/fs/cgroup/pyrunc-v2-nons && echo gone")
    assert p.returncode == 0, p.stderr
    out = p.stdout.strip().split("\n")
    assert out[0] == "0::/pyrunc-v2-nons"
    assert out[1].split()[3:6] == ["/pyrunc-v2-nons", "/sys/fs/cgroup", "ro,nosuid,nodev,noexec,relatime"], out[1]
    assert out[2:] == ["read-only", "gone"]
