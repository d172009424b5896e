"""Pods through containerd's CRI plugin (kubelet's API), on three runtimes.

A private containerd 1.6 with the CRI plugin on runs inside a network
namespace this module makes, so the pods' network (CNI: ptp + host-local,
IPAM data under the temp dir) and the streaming server never touch the
host's interfaces; pod netns bind mounts go under containerd's state dir.
The images are built offline from busybox-static and imported with `ctr
images import`: a sandbox ("pause") image whose entrypoint blocks until
SIGTERM, and a busybox workload image. The tests speak runtime.v1's gRPC
API on containerd's socket (cri_util.CriClient), parametrized over the CRI
runtime handlers:

    runc              io.containerd.runc.v2 with plain runc: the reference
                      that shows the test itself is right
    pyrunc-runc-shim  io.containerd.runc.v2 with BinaryName = .venv/bin/pyrunc
    pyrunc-shim       io.containerd.pyrunc.v1: containerd-shim-pyrunc-v1,
                      found on containerd's PATH (.venv/bin first)

After each test nothing of its pods is left: no task, container or shim,
no runtime state, no mount under the temp dir, no cgroup, no pod netns,
no veth in containerd's namespace, no CNI cache entry, no process.
"""
from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import uuid

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from containerd_util import (PYRUNC, PYRUNC_SHIM, REPO, SHIM, Containerd,  # noqa: E402
                             alive, any_shim_pids, busybox_image_layers, cgroup_dirs_named, cri_plugin_toml,
                             is_pyrunc_state, kill_pids, make_netns, mounts_under, pids_matching,
                             remove_cgroup_tree, runtime_state, shim_pids, short_tmpdir,
                             unmount_all, wait_for, write_docker_archive)

grpc = pytest.importorskip("grpc")
from cri_util import CriClient, exec_stream  # noqa: E402
from registry_util import make_config, make_layer  # noqa: E402

RUNC = shutil.which("runc") or "/usr/sbin/runc"
VENV_BIN = os.path.join(REPO, ".venv", "bin")
CNI_BIN = "/usr/lib/cni"
# containerd finds shims on its PATH: this checkout's first, then only the
# system's own dirs (no /usr/local/bin, where another checkout's may be)
CONTAINERD_PATH = [VENV_BIN, "/usr/sbin", "/usr/bin", "/sbin", "/bin"]

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(shutil.which("containerd") is None or shutil.which("ctr") is None,
                       reason="containerd/ctr are not installed (apt-get install containerd)"),
    pytest.mark.skipif(shutil.which(SHIM) is None, reason=f"{SHIM} is not installed"),
    pytest.mark.skipif(not all(os.access(os.path.join(CNI_BIN, p), os.X_OK)
                               for p in ("ptp", "host-local", "loopback")),
                       reason="CNI plugins missing (apt-get install containernetworking-plugins)"),
    pytest.mark.timeout(300),
]

NS = "k8s.io"  # the CRI plugin's containerd namespace
SANDBOX_IMAGE = "pyrunc.test/pause:1"
IMAGE = "pyrunc.test/busybox:1"
SUBNET = "10.254.77"  # the pods' /24, only inside the module's network namespace
STREAM_PORT = 10010   # the streaming server's, inside that namespace too
CGROUP_PARENT = f"pyrunc-cri-{os.getpid()}"
HANDLERS = ("runc", "pyrunc-runc-shim", "pyrunc-shim")


HANDLER_PARAMS = [
    pytest.param("runc", id="runc"),
    pytest.param("pyrunc-runc-shim", id="pyrunc-runc-shim"),
    pytest.param("pyrunc-shim", id="pyrunc-shim"),
]


class Env:
    def __init__(self, base):
        self.base = base
        self.netns = os.path.join(base, "netns")
        self.cni_conf = os.path.join(base, "cni")
        self.ipam = os.path.join(base, "ipam")
        self.logs = os.path.join(base, "logs")
        self.roots = {"runc": os.path.join(base, "rr-runc"),
                      "pyrunc-runc-shim": os.path.join(base, "rr-pyrunc")}
        self.cd: Containerd | None = None
        self.cri: CriClient | None = None

    def runtimes(self) -> dict:
        return {
            "runc": {"runtime_type": "io.containerd.runc.v2",
                     "options": {"BinaryName": RUNC, "Root": self.roots["runc"]}},
            "pyrunc-runc-shim": {"runtime_type": "io.containerd.runc.v2",
                                 "options": {"BinaryName": PYRUNC, "Root": self.roots["pyrunc-runc-shim"]}},
            "pyrunc-shim": {"runtime_type": "io.containerd.pyrunc.v1"},
        }

    def write_cni_config(self):
        os.makedirs(self.cni_conf)
        conf = {"cniVersion": "0.4.0", "name": "pyrunc-cri", "plugins": [{
            "type": "ptp", "ipMasq": False,
            "ipam": {"type": "host-local", "dataDir": self.ipam,
                     "ranges": [[{"subnet": f"{SUBNET}.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]}}]}
        with open(os.path.join(self.cni_conf, "10-pyrunc-cri.conflist"), "w") as f:
            json.dump(conf, f)

    def import_images(self):
        bb = busybox_image_layers()
        pause_layer = make_layer({}, dirs=["proc", "sys", "dev", "etc"])
        # the pod's init: blocks until SIGTERM (a pid 1 ignores signals it
        # has no handler for), then exits 0
        pause_cfg = make_config([bb[0], pause_layer], cmd=[
            "sh", "-c", "trap 'exit 0' TERM INT; sleep 2147483647 & wait"])
        images = {SANDBOX_IMAGE: ([bb[0], pause_layer], pause_cfg),
                  IMAGE: (bb, make_config(bb, cmd=["sh"]))}
        for name, (layers, cfg) in images.items():
            path = write_docker_archive(os.path.join(self.base, f"{len(name)}-{uuid.uuid4().hex[:6]}.tar"),
                                        name, layers, cfg)
            self.cd.ctr("images", "import", path, ns=NS, check=True, timeout=120)
            os.unlink(path)
        # the CRI plugin learns of them through containerd's image events
        for name in images:
            wait_for(lambda: self.cri.ImageStatus(image={"image": name}).image.id,
                     what=f"CRI to see image {name}")

    def containerd_links(self) -> list[str]:
        p = subprocess.run(["nsenter", f"--net={self.netns}", "ip", "-o", "link"], capture_output=True,
                           text=True, check=True)
        return [ln.split(":")[1].strip().split("@")[0] for ln in p.stdout.splitlines()]


@pytest.fixture(scope="module")
def env():
    base = short_tmpdir("pcri")
    e = Env(base)
    run_dir_existed = os.path.isdir("/run/containerd")
    cni_dir_existed = os.path.isdir("/var/lib/cni")  # libcni's result cache
    netns_before = set(os.listdir("/var/run/netns")) if os.path.isdir("/var/run/netns") else set()
    try:
        make_netns(e.netns)
        e.write_cni_config()
        os.makedirs(e.logs)
        e.cd = Containerd(base, netns=e.netns, path=CONTAINERD_PATH, cri=cri_plugin_toml(
            sandbox_image=SANDBOX_IMAGE, runtimes=e.runtimes(), default_runtime="runc",
            cni_conf_dir=e.cni_conf, cni_bin_dir=CNI_BIN, stream_port=STREAM_PORT)).start()
        e.cri = CriClient(e.cd.address)
        wait_for(lambda: _network_ready(e.cri), timeout=30, what="CRI runtime and network ready")
        e.import_images()
        yield e
    finally:
        if e.cri is not None:
            try:
                for p in e.cri.ListPodSandbox().items:
                    e.cri.StopPodSandbox(pod_sandbox_id=p.id)
                    e.cri.RemovePodSandbox(pod_sandbox_id=p.id)
            except grpc.RpcError as err:
                print("module cleanup: CRI:", err)
            e.cri.close()
        if e.cd is not None:
            notes = e.cd.cleanup_namespace(NS)
            if notes:
                print("module cleanup had to remove:", notes)
            e.cd.destroy()
        unmount_all(base)
        shutil.rmtree(base, ignore_errors=True)
        remove_cgroup_tree(CGROUP_PARENT)
        if not run_dir_existed:
            for d in ("/run/containerd/s", "/run/containerd/runc", "/run/containerd/fifo",
                      "/run/containerd"):
                try:
                    os.rmdir(d)  # only if empty: never anything of someone else's
                except OSError:
                    pass
        if not cni_dir_existed:
            for d in ("/var/lib/cni/results", "/var/lib/cni"):
                try:
                    os.rmdir(d)
                except OSError:
                    pass
        if os.path.isdir("/var/run/netns"):
            assert set(os.listdir("/var/run/netns")) <= netns_before, "pod netns left in /var/run/netns"


def _network_ready(cri) -> bool:
    conds = {c.type: c.status for c in cri.Status().status.conditions}
    return conds.get("RuntimeReady") and conds.get("NetworkReady")


# ---------------------------------------------------------------------------
# a test's pods, and what must be gone after them
# ---------------------------------------------------------------------------

class Pods:
    def __init__(self, env: Env, handler: str):
        self.env = env
        self.cri = env.cri
        self.m = env.cri.m
        self.handler = handler
        self.sandboxes: list[str] = []
        self.containers: list[str] = []
        self.netns_paths: list[str] = []
        self.pids: list[int] = []

    def sandbox_config(self, name: str) -> dict:
        uid = uuid.uuid4().hex
        return {"metadata": {"name": name, "uid": uid, "namespace": "pyrunc-test", "attempt": 0},
                "hostname": f"{name}-host", "log_directory": os.path.join(self.env.logs, uid),
                "labels": {"test": "pyrunc-cri"},
                "linux": {"cgroup_parent": f"/{CGROUP_PARENT}",
                          "security_context": {"namespace_options": {"network": 0, "pid": 1, "ipc": 0}}}}

    def run_pod(self, name: str) -> tuple[str, dict]:
        cfg = self.sandbox_config(name)
        sid = self.cri.RunPodSandbox(config=cfg, runtime_handler=self.handler).pod_sandbox_id
        self.sandboxes.append(sid)
        return sid, cfg

    def create(self, sid: str, sandbox_cfg: dict, name: str, command: list[str], log: str,
               resources: dict | None = None) -> str:
        cfg = {"metadata": {"name": name}, "image": {"image": IMAGE}, "command": command,
               "envs": [{"key": "GREETING", "value": "hello from cri"}], "log_path": log,
               "labels": {"test": "pyrunc-cri"},
               "linux": {"resources": resources or {},
                         "security_context": {"namespace_options": {"network": 0, "pid": 1, "ipc": 0}}}}
        cid = self.cri.CreateContainer(pod_sandbox_id=sid, config=cfg,
                                       sandbox_config=sandbox_cfg).container_id
        self.containers.append(cid)
        return cid

    def status(self, cid: str, verbose=False):
        r = self.cri.ContainerStatus(container_id=cid, verbose=verbose)
        return r.status, (json.loads(r.info["info"]) if verbose else None)

    def state(self, cid: str) -> str:
        return self.m.ContainerState.Name(self.status(cid)[0].state)

    def sandbox_info(self, sid: str):
        r = self.cri.PodSandboxStatus(pod_sandbox_id=sid, verbose=True)
        return r.status, json.loads(r.info["info"])

    def ids(self) -> list[str]:
        return self.sandboxes + self.containers

    def leftovers(self) -> list[str]:
        env, found = self.env, []
        tasks = env.cd.task_list(NS)
        ctrs = env.cd.container_list(NS)
        snaps = env.cd.ctr("snapshots", "ls", ns=NS).stdout.split()
        mounts = mounts_under(env.base)
        for i in self.ids():
            if i in tasks:
                found.append(f"task {i}")
            if i in ctrs:
                found.append(f"container {i}")
            if i in snaps:
                found.append(f"snapshot {i}")
            for pid in any_shim_pids(env.cd.address, i):
                found.append(f"shim pid {pid} for {i}")
            for root in env.roots.values():
                if os.path.exists(os.path.join(root, NS, i)):
                    found.append(f"runtime state {root}/{NS}/{i}")
            found += [f"mount {m}" for m in mounts if i in m]
            found += [f"cgroup {d}" for d in cgroup_dirs_named(i)]
            cache = "/var/lib/cni/results"
            if os.path.isdir(cache):
                found += [f"CNI cache {cache}/{f}" for f in os.listdir(cache) if i in f]
        found += [f"pod netns {p}" for p in self.netns_paths if os.path.exists(p)]
        found += [f"pid {p} alive" for p in self.pids if alive(p)]
        found += [f"link {ln} in containerd's netns" for ln in env.containerd_links() if ln != "lo"]
        if os.path.isdir(env.ipam):
            for d, _dn, files in os.walk(env.ipam):
                found += [f"IP lease {os.path.join(d, f)}" for f in files if f.startswith(SUBNET)]
        return found

    def force_cleanup(self) -> None:
        for sid in self.sandboxes:
            for call in (self.cri.StopPodSandbox, self.cri.RemovePodSandbox):
                try:
                    call(pod_sandbox_id=sid)
                except grpc.RpcError:
                    pass
        self.env.cd.cleanup_namespace(NS, images=False)
        for i in self.ids():
            kill_pids(any_shim_pids(self.env.cd.address, i))
        kill_pids([p for p in self.pids if alive(p)])


def _cmdline(pid: int) -> list[bytes]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []



@pytest.fixture
def pods(env, request):
    handler = request.node.callspec.params["handler"]
    p = Pods(env, handler)
    failed_before = request.session.testsfailed
    try:
        yield p
    finally:
        try:
            wait_for(lambda: not p.leftovers(), timeout=15, what="cleanup")
        except AssertionError:
            pass
        left = p.leftovers()
        if left:
            p.force_cleanup()
    if request.session.testsfailed > failed_before or request.node.get_closest_marker("xfail"):
        if left:
            print(f"cleaned up after the failed test: {left}")
        return
    assert left == [], f"left behind after the test: {left}"


# ---------------------------------------------------------------------------
# checks
# ---------------------------------------------------------------------------

LOG_LINE = re.compile(r"^(\S+) (stdout|stderr) ([FP]) (.*)$")


def read_log(path: str) -> list[tuple[str, str, str]]:
    """(stream, tag, text) of each line of a CRI log file, checking the
    timestamp is RFC 3339 with nanoseconds as kubelet's parser expects."""
    out = []
    with open(path) as f:
        for line in f.read().splitlines():
            m = LOG_LINE.match(line)
            assert m, f"not a CRI log line: {line!r}"
            ts = m.group(1)
            assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$", ts), ts
            datetime.datetime.fromisoformat(re.sub(r"(\.\d{6})\d*", r"\1", ts).replace("Z", "+00:00"))
            out.append((m.group(2), m.group(3), m.group(4)))
    return out


MEMORY_LIMIT = 96 * 1024 * 1024


def cgroup_value(cid: str, controller: str, v1_file: str | None, v2_file: str | None = None) -> int | None:
    """An integer from the container's cgroup: the v1 controller's file
    (/sys/fs/cgroup/CONTROLLER/PARENT/ID/FILE), else the v2 one (its first
    field: cpu.max is "QUOTA PERIOD")."""
    for path in ([f"/sys/fs/cgroup/{controller}/{CGROUP_PARENT}/{cid}/{v1_file}"] if v1_file else []) + \
            ([f"/sys/fs/cgroup/{CGROUP_PARENT}/{cid}/{v2_file}"] if v2_file else []):
        try:
            with open(path) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError):
            continue
    return None


def ns_inode(pid_or_path, kind="net") -> int:
    path = pid_or_path if isinstance(pid_or_path, str) else f"/proc/{pid_or_path}/ns/{kind}"
    return os.stat(path).st_ino


def assert_runs_under(env: Env, handler: str, cid: str, sandbox_id: str, pid: int) -> None:
    """The process `pid` of task `cid` was made by the runtime the handler
    names: pyrunc's or runc's state for it under the handler's Root, or the
    pyrunc shim serving the pod."""
    if handler == "pyrunc-shim":
        # the process descends from a shim of our containerd that is this
        # checkout's containerd-shim-pyrunc-v1, and no runc shim runs
        shims = shim_pids(env.cd.address, kind="pyrunc")
        assert shim_pids(env.cd.address, kind="runc") == [], "a runc shim runs for a pyrunc-shim pod"
        parent = _ancestor_in(pid, shims)
        assert parent, f"pid {pid} descends from no shim of ours ({shims})"
        # containerd ran VENV_BIN/containerd-shim-pyrunc-v1, a launcher that
        # may exec the venv's interpreter: argv[0] names one or the other
        argv = [a.decode(errors="replace") for a in _cmdline(parent)]
        venv = os.path.dirname(VENV_BIN) + "/"
        assert argv and (os.path.basename(argv[0]) == PYRUNC_SHIM
                         or os.path.abspath(argv[0]).startswith(venv)), argv[:3]
        assert not os.path.realpath(f"/proc/{parent}/exe").endswith("/" + SHIM)
        return
    st = runtime_state(env.roots[handler], NS, cid)
    assert st is not None, f"no runtime state for {cid} under {env.roots[handler]}/{NS}"
    if handler == "pyrunc-runc-shim":
        assert is_pyrunc_state(st), st
        assert st["pid"] == pid
    else:
        assert not is_pyrunc_state(st) and st["init_process_pid"] == pid, st
    # containerd groups a pod's containers under the sandbox's runc shim
    shims = shim_pids(env.cd.address, sandbox_id, kind="runc")
    assert len(shims) == 1 and _ancestor_in(pid, shims) == shims[0]
    assert shim_pids(env.cd.address, kind="pyrunc") == []


def _ancestor_in(pid: int, candidates) -> int | None:
    """The first of candidates among pid's ancestors."""
    for _ in range(20):
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(") ", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return None
        if pid in candidates:
            return pid
        if pid <= 1:
            return None
    return None


# ---------------------------------------------------------------------------
# the tests
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("handler", HANDLER_PARAMS)
def test_pod_and_containers_lifecycle(pods, env, handler):
    cri, m = pods.cri, pods.m
    sid, scfg = pods.run_pod("web")

    # --- the sandbox ---------------------------------------------------------
    st, info = pods.sandbox_info(sid)
    assert m.PodSandboxState.Name(st.state) == "SANDBOX_READY"
    assert st.runtime_handler == handler and info["runtimeHandler"] == handler
    assert st.metadata.name == "web" and st.labels["test"] == "pyrunc-cri"
    assert st.network.ip.startswith(f"{SUBNET}."), st.network.ip
    pause_pid = info["pid"]
    pods.pids.append(pause_pid)
    # the runtime's init execs the image's entrypoint right after start
    wait_for(lambda: _cmdline(pause_pid)[:2] == [b"sh", b"-c"], what="the pause's entrypoint")
    netns = [n["path"] for n in info["runtimeSpec"]["linux"]["namespaces"] if n["type"] == "network"][0]
    pods.netns_paths.append(netns)
    assert netns.startswith(env.cd.state + "/"), netns  # not the host's /var/run/netns
    # the pause runs in the pod's own netns, which is neither the host's
    # nor containerd's, and has the pod IP CNI gave it
    assert ns_inode(pause_pid) == ns_inode(netns)
    assert ns_inode(netns) not in (ns_inode(os.getpid()), ns_inode(env.netns))
    addrs = subprocess.run(["nsenter", f"--net={netns}", "ip", "-o", "-4", "addr"], capture_output=True,
                           text=True, check=True).stdout
    assert f"{st.network.ip}/" in addrs and "eth0" in addrs, addrs
    # the pod's cgroup is below the parent it asked for
    assert any(d.endswith(f"/{CGROUP_PARENT}/{sid}") for d in cgroup_dirs_named(sid)), cgroup_dirs_named(sid)
    assert_runs_under(env, handler, sid, sid, pause_pid)

    # --- a long-running container ------------------------------------------
    app = pods.create(sid, scfg, "app", [
        "sh", "-c", 'echo "$GREETING"; echo to-stderr >&2; '
                    "trap 'echo got-term; exit 3' TERM; while :; do sleep 0.1; done"], "app.log",
        resources={"memory_limit_in_bytes": MEMORY_LIMIT, "cpu_shares": 512,
                   "cpu_period": 100000, "cpu_quota": 50000})
    assert pods.state(app) == "CONTAINER_CREATED"
    cri.StartContainer(container_id=app)
    cst, cinfo = pods.status(app, verbose=True)
    assert m.ContainerState.Name(cst.state) == "CONTAINER_RUNNING"
    assert cst.started_at >= cst.created_at > 0
    assert cst.image.image and cst.metadata.name == "app"
    app_pid = cinfo["pid"]
    pods.pids.append(app_pid)
    assert cinfo["sandboxID"] == sid
    # same pod netns as the pause; its own pid namespace (pid CONTAINER)
    assert ns_inode(app_pid) == ns_inode(netns)
    assert ns_inode(app_pid, "pid") != ns_inode(pause_pid, "pid")
    wait_for(lambda: _cmdline(app_pid)[:2] == [b"sh", b"-c"], what="the app's command")
    assert os.readlink(f"/proc/{app_pid}/exe").endswith("/bin/busybox")
    assert any(d.endswith(f"/{CGROUP_PARENT}/{app}") for d in cgroup_dirs_named(app)), cgroup_dirs_named(app)
    assert_runs_under(env, handler, app, sid, app_pid)
    # kubelet's resources reach the container's cgroup
    assert cgroup_value(app, "memory", "memory.limit_in_bytes", "memory.max") == MEMORY_LIMIT
    assert cgroup_value(app, "cpu", "cpu.cfs_quota_us") == 50000 or \
        cgroup_value(app, "cpu", None, "cpu.max") == 50000  # v2: "QUOTA PERIOD"
    if os.path.isdir("/sys/fs/cgroup/cpu"):
        assert cgroup_value(app, "cpu", "cpu.shares") == 512

    # --- its log file ---------------------------------------------------------
    log = os.path.join(scfg["log_directory"], "app.log")
    assert cst.log_path == log
    wait_for(lambda: os.path.exists(log) and len(read_log(log)) >= 2, what="two log lines")
    assert sorted(read_log(log)) == [("stderr", "F", "to-stderr"), ("stdout", "F", "hello from cri")]

    # --- ExecSync -------------------------------------------------------------
    r = cri.ExecSync(container_id=app, cmd=["sh", "-c", "echo exec-out; echo exec-err >&2; exit 7"],
                     timeout=30)
    assert (r.stdout, r.stderr, r.exit_code) == (b"exec-out\n", b"exec-err\n", 7)
    r = cri.ExecSync(container_id=app, cmd=["sh", "-c", "hostname; cat /proc/1/cmdline; echo; id -u"],
                     timeout=30)
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert lines[0] == "web-host"  # the pod's hostname (uts namespace of the pod)
    assert lines[1].split("\0")[:2] == ["sh", "-c"]  # pid 1 of the container is its own command
    assert lines[2] == "0"
    # a command that cannot start is the runtime's exec error, passed back
    with pytest.raises(grpc.RpcError) as ei:
        cri.ExecSync(container_id=app, cmd=["/no/such/binary"], timeout=30)
    assert "/no/such/binary" in ei.value.details(), ei.value.details()
    assert pods.state(app) == "CONTAINER_RUNNING"
    # past its timeout an ExecSync fails, and its process is killed
    with pytest.raises(grpc.RpcError) as ei:
        cri.ExecSync(container_id=app, cmd=["sleep", "31"], timeout=1)
    assert "timeout" in ei.value.details() or ei.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED, \
        ei.value.details()
    wait_for(lambda: not pids_matching(lambda cl: cl == ["sleep", "31"]), what="the timed-out exec killed")
    assert pods.state(app) == "CONTAINER_RUNNING"

    # --- Exec, through the streaming server --------------------------------------
    url = cri.Exec(container_id=app, cmd=["sh", "-c", "echo stream-out; echo stream-err >&2; exit 4"],
                   stdout=True, stderr=True).url
    assert url.startswith(f"http://127.0.0.1:{STREAM_PORT}/exec/"), url
    res = exec_stream(url, netns=env.netns)
    assert (res.stdout, res.stderr, res.exit_code) == (b"stream-out\n", b"stream-err\n", 4), res.status
    res = exec_stream(cri.Exec(container_id=app, cmd=["cat", "/etc/hostname"], stdout=True,
                               stderr=True).url, netns=env.netns)
    assert (res.stdout, res.exit_code) == (b"web-host\n", 0), res.status
    res = exec_stream(cri.Exec(container_id=app, cmd=["sh", "-c", "read x; echo got-$x"], stdin=True,
                               stdout=True, stderr=True).url, netns=env.netns, stdin=b"abc\n")
    assert (res.stdout, res.exit_code) == (b"got-abc\n", 0), res.status

    # --- a container that exits by itself ----------------------------------------
    job = pods.create(sid, scfg, "job", ["sh", "-c", "echo job-done; exit 5"], "job.log")
    cri.StartContainer(container_id=job)
    wait_for(lambda: pods.state(job) == "CONTAINER_EXITED", what="job to exit")
    jst, _ = pods.status(job)
    assert (jst.exit_code, jst.reason) == (5, "Error")
    # (started_at is taken when Start returns, which a quick exit can precede)
    assert jst.finished_at > jst.created_at > 0 and jst.started_at > 0
    assert read_log(os.path.join(scfg["log_directory"], "job.log")) == [("stdout", "F", "job-done")]
    assert pods.state(app) == "CONTAINER_RUNNING"  # the other container is unaffected

    # --- StopContainer: SIGTERM, then the exit code -------------------------------
    cri.StopContainer(container_id=app, timeout=20)
    ast, _ = pods.status(app)
    assert m.ContainerState.Name(ast.state) == "CONTAINER_EXITED"
    assert (ast.exit_code, ast.reason) == (3, "Error")  # the trap ran: SIGTERM came first
    assert not alive(app_pid)
    assert ("stdout", "F", "got-term") in read_log(log)
    listed = {c.id: m.ContainerState.Name(c.state)
              for c in cri.ListContainers(filter={"pod_sandbox_id": sid}).containers}
    assert listed == {app: "CONTAINER_EXITED", job: "CONTAINER_EXITED"}

    # --- RemoveContainer --------------------------------------------------------
    for c in (app, job):
        cri.RemoveContainer(container_id=c)
        with pytest.raises(grpc.RpcError) as ei:
            cri.ContainerStatus(container_id=c)
        assert ei.value.code() == grpc.StatusCode.NOT_FOUND
        assert c not in env.cd.container_list(NS)
        for root in env.roots.values():
            assert not os.path.exists(os.path.join(root, NS, c))
    assert list(cri.ListContainers(filter={"pod_sandbox_id": sid}).containers) == []
    assert cgroup_dirs_named(app) == [] and cgroup_dirs_named(job) == []

    # --- StopPodSandbox, RemovePodSandbox ------------------------------------------
    cri.StopPodSandbox(pod_sandbox_id=sid)
    st, _ = pods.sandbox_info(sid)
    assert m.PodSandboxState.Name(st.state) == "SANDBOX_NOTREADY"
    assert not alive(pause_pid)
    assert not os.path.exists(netns), "the pod netns outlived StopPodSandbox"
    assert env.containerd_links() == ["lo"]  # CNI DEL removed the pod's veth
    cri.RemovePodSandbox(pod_sandbox_id=sid)
    with pytest.raises(grpc.RpcError) as ei:
        cri.PodSandboxStatus(pod_sandbox_id=sid)
    assert ei.value.code() == grpc.StatusCode.NOT_FOUND
    assert sid not in [p.id for p in cri.ListPodSandbox().items]
    # the leak check of the fixture then finds nothing of the pod
    wait_for(lambda: not pods.leftovers(), timeout=15, what="nothing of the pod left")


@pytest.mark.parametrize("handler", HANDLER_PARAMS)
def test_remove_pod_with_running_container(pods, env, handler):
    """RemovePodSandbox on a pod that still runs: containerd stops and
    removes the containers and the sandbox (kubelet's force path)."""
    sid, scfg = pods.run_pod("gone")
    c = pods.create(sid, scfg, "sleeper", ["sleep", "300"], "s.log")
    pods.cri.StartContainer(container_id=c)
    _, info = pods.status(c, verbose=True)
    pods.pids.append(info["pid"])
    _, sinfo = pods.sandbox_info(sid)
    pods.pids.append(sinfo["pid"])
    pods.netns_paths += [n["path"] for n in sinfo["runtimeSpec"]["linux"]["namespaces"]
                         if n["type"] == "network"]
    assert pods.state(c) == "CONTAINER_RUNNING"
    pods.cri.StopPodSandbox(pod_sandbox_id=sid)
    assert pods.state(c) == "CONTAINER_EXITED"
    assert pods.status(c)[0].exit_code == 137  # SIGKILL: sleep has no handler
    pods.cri.RemovePodSandbox(pod_sandbox_id=sid)
    with pytest.raises(grpc.RpcError) as ei:
        pods.cri.ContainerStatus(container_id=c)
    assert ei.value.code() == grpc.StatusCode.NOT_FOUND
    assert not any(alive(p) for p in pods.pids)
    wait_for(lambda: not pods.leftovers(), timeout=15, what="nothing of the pod left")


@pytest.mark.parametrize("handler", HANDLER_PARAMS)
def test_start_error_reaches_cri(pods, env, handler):
    """A container whose command does not exist: the runtime's error comes
    back from StartContainer naming the command, the container is EXITED
    with a non-zero code, and its removal leaves nothing."""
    sid, scfg = pods.run_pod("bad")
    _, sinfo = pods.sandbox_info(sid)
    pods.pids.append(sinfo["pid"])
    pods.netns_paths += [n["path"] for n in sinfo["runtimeSpec"]["linux"]["namespaces"]
                         if n["type"] == "network"]
    c = pods.create(sid, scfg, "bad", ["/no/such/command"], "bad.log")
    with pytest.raises(grpc.RpcError) as ei:
        pods.cri.StartContainer(container_id=c)
    assert "/no/such/command" in ei.value.details(), ei.value.details()
    st, _ = pods.status(c)
    assert pods.m.ContainerState.Name(st.state) == "CONTAINER_EXITED" and st.exit_code != 0, st
    # the pod is unaffected
    assert pods.m.PodSandboxState.Name(pods.sandbox_info(sid)[0].state) == "SANDBOX_READY"
    pods.cri.RemoveContainer(container_id=c)
    pods.cri.StopPodSandbox(pod_sandbox_id=sid)
    pods.cri.RemovePodSandbox(pod_sandbox_id=sid)
    wait_for(lambda: not pods.leftovers(), timeout=15, what="nothing of the pod left")


def test_no_shims_or_pod_mounts_left_by_module(env):
    """Runs last: after every earlier test no shim of our containerd runs,
    no task or container is left, and nothing but the module's own netns
    file is mounted under the temp dir."""
    assert any_shim_pids(env.cd.address) == []
    assert env.cd.task_list(NS) == {}
    assert env.cd.container_list(NS) == []
    assert mounts_under(env.base) == [env.netns]
    assert pids_matching(lambda cl: any(CGROUP_PARENT in a for a in cl)) == []
    assert env.containerd_links() == ["lo"]
