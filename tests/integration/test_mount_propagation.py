"""linux.rootfsPropagation and mount propagation between host and container.

The "host" here is a mount namespace of the test's own (`unshare -m
--propagation unchanged`) whose "/" is made rshared, as systemd leaves a
real host: containerd's snapshot of the rootfs is then a shared mount point
of its own. pyrunc runs inside that namespace (through nsenter), and the
test reads the namespace's mountinfo from outside; the real host's
propagation is never changed, and whatever leaks dies with the namespace.

What must hold for every rootfsPropagation value, with pivot_root and with
--no-pivot (MS_MOVE onto "/"):
* the container is created (pivot_root refuses a shared new root);
* nothing the container mounts appears on the host: neither what pyrunc
  mounts for it (proc, dev, sys, the config's bind mounts) nor a tmpfs
  the container process mounts itself;
* a mount the host makes under a bind source reaches the container through
  a bind mount with rshared or rslave propagation when the root's
  propagation lets events in (shared, slave and the default rslave; pyrunc
  applies the mode recursively before pivot_root, so the private and
  unbindable modes cut the container off).
"""
import os
import subprocess
import time

import pytest

from bundles import PYRUNC, Runtime, make_rootfs

PROPAGATIONS = [None, "shared", "rshared", "slave", "rslave", "private", "rprivate", "unbindable",
                "runbindable"]
RECEIVES = {None, "shared", "rshared", "slave", "rslave"}


class HostNS:
    """A mount namespace that stands in for the host."""

    def __init__(self):
        self.proc = subprocess.Popen(
            ["unshare", "-m", "--propagation", "unchanged", "sh", "-c",
             "mount --make-rshared / && echo ready && exec sleep 600"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = self.proc.stdout.readline()
        assert line == b"ready\n", self.proc.stderr.read()
        self.pid = self.proc.pid

    def sh(self, script: str) -> str:
        p = subprocess.run(["nsenter", "-t", str(self.pid), "-m", "sh", "-ec", script],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, f"{script}: {p.stderr}"
        return p.stdout

    def mounts(self, under: str) -> dict[str, tuple[str, str, str]]:
        """mount id -> (mount point, fstype, source) as the host sees them,
        for the mounts where a container's could land: "/", anything
        under `under` (where the test keeps the rootfs and the bind
        sources), and a tmpfs the test's containers name rtcanary. Mounts
        other tests make on the real host meanwhile may reach this
        namespace through peers it copied; they are left out."""
        out = {}
        with open(f"/proc/{self.pid}/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fields = left.split()
                fstype, source = right.split()[:2]
                mp = fields[4]
                if mp == "/" or mp == under or mp.startswith(under + "/") or source == "rtcanary":
                    out[fields[0]] = (mp, fstype, source)
        return out

    def close(self):
        self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()


@pytest.fixture
def host():
    h = HostNS()
    yield h
    h.close()


@pytest.fixture
def host_rt(tmp_path, host):
    """pyrunc run inside the host namespace, with its own --root."""
    wrapper = tmp_path / "pyrunc-in-host"
    wrapper.write_text(f'#!/bin/sh\nexec nsenter -t {host.pid} -m -- {PYRUNC} "$@"\n')
    wrapper.chmod(0o755)
    rootfs = make_rootfs(tmp_path / "rootfs")
    os.makedirs(os.path.join(rootfs, "mnt", "rt"))
    r = Runtime(tmp_path, rootfs, binary=str(wrapper))
    yield r
    r.cleanup()  # before the host namespace goes


def _wait_for(path: str, proc_check=None, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if proc_check is not None:
            proc_check()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


# --no-pivot with a private root is refused by runc ("not safe without
# pivot_root"): those combinations are left out.
CASES = [(prop, pivot) for pivot in (True, False) for prop in PROPAGATIONS
         if pivot or prop not in ("private", "rprivate")]


@pytest.mark.parametrize("own_mount", [True, False], ids=["rootfs-own-mount", "rootfs-plain-dir"])
@pytest.mark.parametrize("prop,pivot", CASES,
                         ids=[f"{p or 'default'}{'' if v else '-no-pivot'}" for p, v in CASES])
def test_container_mounts_never_reach_the_host(host, host_rt, tmp_path, prop, pivot, own_mount):
    rootfs = host_rt.rootfs
    src = str(tmp_path / "src")  # bind sources: a shared tmpfs of the host
    os.makedirs(src)
    if own_mount:
        # As containerd's snapshotter leaves it: the rootfs is a mount point
        # of its own, shared with its peer in the host.
        host.sh(f"mount --bind {rootfs} {rootfs}; mount --make-shared {rootfs}")
    host.sh(f"mount -t tmpfs srcfs {src}; mount --make-shared {src}; mkdir {src}/rs {src}/rsl {src}/plain")

    def m(c):
        if prop:
            c["linux"]["rootfsPropagation"] = prop
        for k in ("bounding", "effective", "permitted"):
            c["process"]["capabilities"][k].append("CAP_SYS_ADMIN")
        c["mounts"] += [
            {"destination": "/hostrs", "type": "bind", "source": f"{src}/rs", "options": ["rbind", "rshared"]},
            {"destination": "/hostrsl", "type": "bind", "source": f"{src}/rsl", "options": ["rbind", "rslave"]},
            {"destination": "/plain", "type": "bind", "source": f"{src}/plain", "options": ["rbind"]},
        ]
    b = host_rt.bundle(["sh", "-c", "mount -t tmpfs rtcanary /mnt/rt && touch /plain/ready && exec sleep 60"],
                       mutate=m)
    before = host.mounts(str(tmp_path))
    cid = host_rt.new_id()
    p = host_rt("run", "-d", *(() if pivot else ("--no-pivot",)), "--bundle", b, cid)
    leaked = {v for k, v in host.mounts(str(tmp_path)).items() if k not in before}
    assert p.returncode == 0, f"{p.stderr.strip()}; leaked into the host: {sorted(leaked)}"

    def alive():
        st = host_rt("state", cid)
        assert st.returncode == 0 and '"running"' in st.stdout, st.stdout + st.stderr
    _wait_for(f"/proc/{host.pid}/root{src}/plain/ready", alive)
    leaked = {v for k, v in host.mounts(str(tmp_path)).items() if k not in before}
    assert not leaked, f"container mounts appeared on the host: {sorted(leaked)}"

    # Host -> container, through the rshared and rslave bind mounts.
    host.sh(f"mkdir {src}/rs/sub {src}/rsl/sub; "
            f"mount -t tmpfs hostcanary {src}/rs/sub; mount -t tmpfs hostcanary {src}/rsl/sub")
    e = host_rt("exec", cid, "cat", "/proc/self/mountinfo")
    assert e.returncode == 0, e.stderr
    inside = {line.split()[4]: line for line in e.stdout.splitlines()}
    got = {d for d in ("/hostrs/sub", "/hostrsl/sub") if d in inside}
    if prop in RECEIVES:
        assert got == {"/hostrs/sub", "/hostrsl/sub"}, "host mounts did not reach the container"
    else:
        assert got == set(), f"host mounts reached a container with {prop} root propagation"
    root = inside["/"].split(" - ")[0].split()[6:]
    if prop in ("shared", "rshared"):
        assert any(t.startswith("shared:") for t in root), inside["/"]
    elif prop in ("unbindable", "runbindable"):
        assert "unbindable" in root, inside["/"]

    leaked = {v for k, v in host.mounts(str(tmp_path)).items() if k not in before and v[2] != "hostcanary"}
    assert not leaked, f"container mounts appeared on the host: {sorted(leaked)}"
    host_rt("delete", "--force", cid, check=True)
    leaked = {v for k, v in host.mounts(str(tmp_path)).items() if k not in before and v[2] != "hostcanary"}
    assert not leaked, f"container mounts left on the host: {sorted(leaked)}"
