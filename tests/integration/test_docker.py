"""pyrunc as a Docker runtime: a private dockerd with `runtimes.pyrunc`.

Needs Debian's docker.io package (`apt-get install -y docker.io`; it depends
on the containerd and runc packages already installed and does not conflict
with them). The test starts:

  * a docker-registry on 127.0.0.1 with the busybox image (Docker media types),
  * a private containerd (tests/integration/containerd_util.py),
  * dockerd with --data-root/--exec-root/-H unix:// under temp dirs,
    --containerd pointing at that containerd, --bridge=none
    --iptables=false --ip-masq=false, and a daemon.json registering
    {"runtimes": {"pyrunc": {"path": .venv/bin/pyrunc}}},

then `docker run --runtime pyrunc --network none busybox echo hi`.

The exec-root is a temp dir exactly as long as dockerd's default
(/var/run/docker, 15 characters): dockerd gives the shim the runtime root
EXEC_ROOT/runtime-runc/moby and 64-character container ids, so paths the
runtime derives from its --root are as long here as on a default install.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from containerd_util import (PYRUNC, Containerd, cgroup_dirs_named, is_pyrunc_state, runtime_state,  # noqa: E402
                             kill_pids, mounts_under, push_busybox,
                             shim_pids, short_tmpdir, unmount_all, wait_for)
from registry_util import start_registry  # noqa: E402

DOCKERD = "/usr/sbin/dockerd" if os.path.exists("/usr/sbin/dockerd") else shutil.which("dockerd")
# The docker.io package's client; /usr/local/bin may hold another version.
DOCKER = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else shutil.which("docker")
DEFAULT_EXEC_ROOT = "/var/run/docker"
MOBY_NS = "moby"  # dockerd's containerd namespace

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(DOCKERD is None or DOCKER is None,
                       reason="dockerd/docker not installed: apt-get install -y docker.io "
                              "(Debian 12 package docker.io 20.10.24; needs containerd, runc, "
                              "tini, iptables)"),
    pytest.mark.skipif(shutil.which("containerd") is None, reason="containerd is not installed"),
    pytest.mark.timeout(300),
]


def _exec_root_like_default() -> str:
    """A fresh dir whose path is exactly as long as /var/run/docker."""
    want = len(DEFAULT_EXEC_ROOT)
    prefix = "d" * (want - len("/tmp/") - 8)  # mkdtemp adds 8 random characters
    d = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    assert len(d) == want, d
    return d


class Docker:
    def __init__(self, base, exec_root, registry, containerd):
        self.base = base
        self.exec_root = exec_root
        self.registry = registry
        self.cd = containerd
        self.data_root = os.path.join(base, "data")
        self.sock = os.path.join(base, "docker.sock")
        self.log_path = os.path.join(base, "dockerd.log")
        self.proc = None
        self.image = None

    def start(self, timeout=60):
        cfg = {
            "runtimes": {"pyrunc": {"path": PYRUNC}},
            # not /etc/docker/key.json
            "deprecated-key-path": os.path.join(self.base, "key.json"),
        }
        conf = os.path.join(self.base, "daemon.json")
        with open(conf, "w") as f:
            json.dump(cfg, f)
        cmd = [DOCKERD, "--config-file", conf, "--data-root", self.data_root,
               "--exec-root", self.exec_root, "-H", f"unix://{self.sock}",
               "--pidfile", os.path.join(self.base, "docker.pid"),
               "--containerd", self.cd.address, "--containerd-namespace", MOBY_NS,
               "--bridge=none", "--iptables=false", "--ip-masq=false", "--ip6tables=false",
               "--userland-proxy=false", "--exec-opt", "native.cgroupdriver=cgroupfs",
               "--debug"]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         start_new_session=True)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dockerd exited {self.proc.returncode}: {self.log_tail()}")
            if os.path.exists(self.sock) and self.docker("version", timeout=20).returncode == 0:
                return self
            time.sleep(0.2)
        raise RuntimeError(f"dockerd did not come up: {self.log_tail()}")

    def log_tail(self, n=4000):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-n:]
        except OSError:
            return ""

    def docker(self, *args, timeout=120, check=False, input=None):
        env = dict(os.environ, DOCKER_HOST=f"unix://{self.sock}",
                   DOCKER_CONFIG=os.path.join(self.base, "client"))
        for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            env.pop(k, None)
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            p = subprocess.run([DOCKER, *args], stdout=out, stderr=err, text=True, env=env,
                               timeout=timeout, input=input,
                               stdin=subprocess.DEVNULL if input is None else None)
            out.seek(0)
            err.seek(0)
            p.stdout, p.stderr = out.read(), err.read()
        if check and p.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed ({p.returncode}): {p.stderr}"
                                 f"\n--- dockerd log ---\n{self.log_tail(2000)}")
        return p

    def container_ids(self):
        p = self.docker("ps", "-aq", "--no-trunc", timeout=60)
        return p.stdout.split()

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def dk():
    base = short_tmpdir("pdk")
    exec_root = _exec_root_like_default()
    made = [d for d in ("/run/docker", "/run/containerd", "/sys/fs/cgroup/memory/docker")
            if not os.path.exists(d)]
    registry = cd = d = None
    try:
        registry = start_registry(base)
        image = push_busybox(registry.host, "busybox", "latest", media="docker")
        cd = Containerd(base).start()
        d = Docker(base, exec_root, registry, cd)
        try:
            d.start()
        except RuntimeError as e:
            pytest.skip(f"dockerd does not run on this machine: {e}")
        # 127.0.0.0/8 is an insecure registry for dockerd by default: plain http
        d.docker("pull", image, check=True, timeout=180)
        d.image = image
        yield d
    finally:
        if d is not None:
            if d.proc is not None and d.proc.poll() is None:
                ids = d.container_ids()
                if ids:
                    d.docker("rm", "-f", *ids, timeout=120)
                d.docker("rmi", "-f", image, timeout=60)
            d.stop()
        if cd is not None:
            cd.cleanup_namespace(MOBY_NS)
            cd.destroy()
        if registry is not None:
            registry.stop()
        for root in (exec_root, base):
            unmount_all(root)
            shutil.rmtree(root, ignore_errors=True)
        # dirs dockerd/the shim create at fixed places, if they were not there before
        for top in made:
            if top.startswith("/sys/fs/cgroup/"):
                name = os.path.basename(top)
                for h in os.listdir("/sys/fs/cgroup"):
                    for p in (os.path.join("/sys/fs/cgroup", h, name),):
                        try:
                            os.rmdir(p)
                        except OSError:
                            pass
                continue
            for dp, _dn, _fn in sorted(os.walk(top), key=lambda t: len(t[0]), reverse=True):
                try:
                    os.rmdir(dp)  # empty dirs only
                except OSError:
                    pass


def _leftovers(dk, cid):
    found = []
    if cid in dk.container_ids():
        found.append(f"docker container {cid}")
    for pid in shim_pids(dk.cd.address, cid):
        found.append(f"shim pid {pid}")
    d = os.path.join(dk.exec_root, "runtime-runc", MOBY_NS, cid)
    if os.path.exists(d):
        found.append(f"runtime state dir {d}")
    for m in mounts_under(dk.base) + mounts_under(dk.exec_root):
        if cid in m or "/merged" in m:
            found.append(f"mount {m}")
    for cg in cgroup_dirs_named(cid):
        found.append(f"cgroup {cg}")
    return found


@pytest.fixture
def track(dk, request):
    """Container ids a test made; checked for leftovers and removed after."""
    ids = []
    failed_before = request.session.testsfailed
    yield ids
    left = []
    for cid in ids:
        try:
            wait_for(lambda: not _leftovers(dk, cid), timeout=15, what="cleanup")
        except AssertionError:
            pass
        left += _leftovers(dk, cid)
        dk.docker("rm", "-f", cid, timeout=60)
        kill_pids(shim_pids(dk.cd.address, cid))
        for cg in sorted(cgroup_dirs_named(cid), key=len, reverse=True):
            try:
                os.rmdir(cg)
            except OSError:
                pass
    if (request.session.testsfailed == failed_before
            and request.node.get_closest_marker("xfail") is None):
        assert left == [], f"left behind: {left}"


def test_docker_run_echo_hi(dk):
    p = dk.docker("run", "--rm", "--runtime", "pyrunc", "--network", "none", dk.image,
                  "echo", "hi")
    assert p.returncode == 0, p.stderr
    assert p.stdout == "hi\n"


def test_docker_run_exit_code(dk):
    p = dk.docker("run", "--rm", "--runtime", "pyrunc", "--network", "none", dk.image,
                  "sh", "-c", "echo out; exit 3")
    assert p.returncode == 3, p.stderr
    assert p.stdout == "out\n"


def test_docker_detached_exec_stop(dk, track):
    p = dk.docker("run", "-d", "--runtime", "pyrunc", "--network", "none", dk.image,
                  "sleep", "300")
    assert p.returncode == 0, p.stderr
    cid = p.stdout.strip()
    track.append(cid)
    info = json.loads(dk.docker("inspect", cid, check=True).stdout)[0]
    assert info["HostConfig"]["Runtime"] == "pyrunc"
    assert info["State"]["Running"] is True
    pid = info["State"]["Pid"]
    # the shim ran pyrunc: its state, under dockerd's runtime root
    state_dir = os.path.join(dk.exec_root, "runtime-runc", MOBY_NS, cid)
    st = runtime_state(os.path.join(dk.exec_root, "runtime-runc"), MOBY_NS, cid)
    assert is_pyrunc_state(st), st
    assert st["pid"] == pid
    # --network none still gets its own network namespace (only lo)
    assert os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")
    p = dk.docker("exec", cid, "sh", "-c", "echo exec-ok; cat /proc/1/cmdline")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("exec-ok\nsleep")
    p = dk.docker("top", cid)
    assert p.returncode == 0 and "sleep 300" in p.stdout, p.stderr
    # sleep as pid 1 ignores SIGTERM: docker stop escalates to SIGKILL
    p = dk.docker("stop", "-t", "1", cid)
    assert p.returncode == 0, p.stderr
    info = json.loads(dk.docker("inspect", cid, check=True).stdout)[0]
    assert info["State"]["Running"] is False
    assert info["State"]["ExitCode"] == 137
    dk.docker("rm", cid, check=True)
    assert not os.path.exists(state_dir)


def test_docker_pause_unpause(dk, track):
    p = dk.docker("run", "-d", "--runtime", "pyrunc", "--network", "none", dk.image,
                  "sh", "-c", "while :; do date > /tmp/t; sleep 0.1; done")
    assert p.returncode == 0, p.stderr
    cid = p.stdout.strip()
    track.append(cid)
    dk.docker("pause", cid, check=True)
    assert json.loads(dk.docker("inspect", cid, check=True).stdout)[0]["State"]["Paused"]
    dk.docker("unpause", cid, check=True)
    assert not json.loads(dk.docker("inspect", cid, check=True).stdout)[0]["State"]["Paused"]
    p = dk.docker("exec", cid, "cat", "/tmp/t")
    assert p.returncode == 0 and p.stdout.strip(), p.stderr
    dk.docker("rm", "-f", cid, check=True)


def test_no_shims_left(dk):
    assert shim_pids(dk.cd.address) == []
