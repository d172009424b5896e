"""The engine's container lifecycle end to end: real conmon, real pyrunc, pyimg as a subprocess.

Every test runs in a temp store of its module and only with ``--network none``
or ``--network host`` (the bridge network is tested inside a test-made network
namespace elsewhere). After each test every container is removed with
``rm -f`` and the fixture checks that nothing of the store is left: no conmon
or container process, no mount under the store, no runtime state in RUN.
"""
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]

from registry_util import busybox_layer, make_layer, pyimg_bin, write_pyimg_config  # noqa: E402
from test_unpack_support import GZIP, Layout  # noqa: E402

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.skipif(not os.path.exists("/usr/bin/conmon"), reason="conmon is not installed")]

NONE = ["--network", "none"]
HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _extra_layer():
    return make_layer({"etc/passwd": b"root:x:0:0:root:/root:/bin/sh\nbob:x:1234:1235::/tmp:/bin/sh\n",
                       "etc/group": b"root:x:0:\nbob:x:1235:\n",
                       "data/seed": b"seeded from the image\n",
                       "notexec": b"just data\n"},
                      symlinks={f"bin/{n}": "busybox" for n in ("id", "grep", "tr", "kill", "ln")},
                      dirs=["data", "tmp", "etc", "bin"])


def _run_dir(root):
    return os.path.join("/run/pyimg", hashlib.sha256(os.path.realpath(root).encode()).hexdigest()[:12])


class Store:
    def __init__(self, root, config):
        self.root = str(root)
        self.config = config
        self.run_dir = _run_dir(self.root)

    def cmd(self, *args):
        return [pyimg_bin(), "--root", self.root, "--config", self.config] + [str(a) for a in args]

    def __call__(self, *args, input=None, timeout=60):
        return subprocess.run(self.cmd(*args), capture_output=True, text=True, input=input,
                              stdin=None if input is not None else subprocess.DEVNULL, timeout=timeout)

    def ok(self, *args, **kw):
        r = self(*args, **kw)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
        return r

    def out(self, *args, **kw):
        return self.ok(*args, **kw).stdout

    def inspect(self, name, fmt):
        return self.out("inspect", "-f", fmt, name).strip()

    def ids(self):
        return self.out("ps", "-aq", "--no-trunc").split()

    def wait_status(self, name, want, timeout=20):
        deadline = time.monotonic() + timeout
        st = None
        while time.monotonic() < deadline:
            st = self("inspect", "-f", "{{.State.Status}}", name).stdout.strip()
            if st == want:
                return
            time.sleep(0.1)
        raise AssertionError(f"{name}: state {st!r}, wanted {want!r}")

    # what the store leaves in the world
    def processes(self):
        """pids of this store's conmons, and of processes in a mount namespace of their own
        whose mounts come from the store (its containers)."""
        found = []
        own_ns = os.readlink("/proc/self/ns/mnt")
        for p in os.listdir("/proc"):
            if not p.isdigit() or int(p) == os.getpid():
                continue
            try:
                with open(f"/proc/{p}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
                ns = os.readlink(f"/proc/{p}/ns/mnt")
                if argv and os.path.basename(argv[0]) == b"conmon":
                    if any(self.root.encode() in a or self.run_dir.encode() in a for a in argv):
                        found.append(int(p))
                elif ns != own_ns:
                    with open(f"/proc/{p}/mountinfo") as f:
                        if self.root + "/" in f.read():
                            found.append(int(p))
            except OSError:
                continue
        return found

    def mounts(self):
        with open("/proc/self/mountinfo") as f:
            return [ln.split()[4] for ln in f if ln.split()[4].startswith(self.root + "/")]

    def runtime_state(self):
        d = os.path.join(self.run_dir, "runtime")
        return os.listdir(d) if os.path.isdir(d) else []

    def clean_all(self):
        ids = self.ids()
        if ids:
            self("rm", "-f", "-v", *ids, timeout=120)
        left = {"containers": self.ids(), "processes": [], "mounts": [], "runtime": []}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            left.update(processes=self.processes(), mounts=self.mounts(), runtime=self.runtime_state())
            if not any(left.values()):
                return left
            time.sleep(0.2)
        for pid in left["processes"]:  # don't leak them into other tests
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        return left


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("engine")
    lay = Layout(tmp / "store")
    lay.add_image(["docker.io/library/busybox:latest"], [busybox_layer(), _extra_layer()], media_type=GZIP,
                  config={"Cmd": ["echo", "from-cmd"], "Env": ["PATH=/bin", "FOO=from-image"]})
    lay.add_image(["docker.io/library/vol:latest"], [busybox_layer(), _extra_layer()], media_type=GZIP,
                  config={"Cmd": ["sh"], "Env": ["PATH=/bin"], "Volumes": {"/data": {}}})
    # no registry answers: a config with fast retries against a registry that cannot be reached
    cfg = write_pyimg_config(tmp, retries=0, timeout=2, registry_mirrors=[])
    yield tmp, Store(lay.root, cfg)
    subprocess.run([pyimg_bin(), "--root", lay.root, "volume", "prune", "-f"], capture_output=True)


@pytest.fixture
def s(store_dir):
    st = store_dir[1]
    yield st
    left = st.clean_all()
    assert not any(left.values()), f"left behind: {left}"


@pytest.fixture
def tmp(store_dir, tmp_path):
    return tmp_path


def one_line(r, code, *fragments):
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    for f in fragments:
        assert f in lines[0], lines[0]
    assert "Traceback" not in r.stderr
    return lines[0]


# ---------------------------------------------------------------- run in the foreground

def test_run_keeps_stdout_and_stderr_apart_and_passes_the_status(s):
    r = s("run", "--rm", *NONE, "busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (r.returncode, r.stdout, r.stderr) == (3, "out\n", "err\n")


def test_run_missing_command_is_127(s):
    one_line(s("run", "--rm", *NONE, "busybox", "nosuchcmd"), 127, "nosuchcmd")


def test_run_non_executable_is_126(s):
    one_line(s("run", "--rm", *NONE, "busybox", "/notexec"), 126, "/notexec")


def test_run_bad_flag_is_125(s):
    one_line(s("run", "--no-such-flag", "busybox", "true"), 125, "--no-such-flag")


def test_run_unknown_image_without_registry_is_125(s):
    r = s("run", "--rm", *NONE, "127.0.0.1:1/nosuch/image:latest", "true")
    assert r.returncode == 125, r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines[0] == "Unable to find image '127.0.0.1:1/nosuch/image:latest' locally"
    assert lines[-1].startswith("pyimg: error: ") and "127.0.0.1:1" in lines[-1]
    assert s.ids() == []


def test_run_rm_leaves_no_record_and_the_name_is_reusable(s):
    for _ in range(2):
        r = s("run", "--rm", "--name", "reused", *NONE, "busybox", "echo", "x")
        assert (r.returncode, r.stdout) == (0, "x\n"), r.stderr
        assert s.ids() == []
    assert not os.listdir(os.path.join(s.root, "containers", "names")) if os.path.isdir(
        os.path.join(s.root, "containers", "names")) else True


def test_run_d_rm_removes_the_container_when_it_exits(s):
    s.ok("run", "-d", "--rm", "--name", "drm", *NONE, "busybox", "sleep", "0.3")
    deadline = time.monotonic() + 15
    while s.ids() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert s.ids() == []
    s.ok("run", "--rm", "--name", "drm", *NONE, "busybox", "true")


def test_network_none_has_only_loopback_up_and_host_shares_the_hosts(s):
    assert s.out("run", "--rm", *NONE, "busybox", "sh", "-c", "ls /sys/class/net; cat /sys/class/net/lo/flags") \
        == "lo\n0x9\n"  # IFF_UP | IFF_LOOPBACK
    out = s.out("run", "--rm", "--network", "host", "busybox", "ls", "-l", "/proc/self/ns/net")
    assert out.split("-> ")[1].strip() == os.readlink("/proc/self/ns/net")


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 4), (signal.SIGUSR1, 5)])
def test_run_forwards_signals_to_the_container(s, sig, code):
    p = subprocess.Popen(s.cmd("run", "--rm", *NONE, "busybox", "sh", "-c",
                               "trap 'exit 4' TERM; trap 'exit 5' USR1; echo ready; while :; do sleep 0.1; done"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    assert p.stdout.readline() == "ready\n"
    p.send_signal(sig)
    assert p.wait(timeout=20) == code, p.stderr.read()


def test_run_interactive_piped_stdin(s):
    r = subprocess.run("echo hi | " + " ".join(s.cmd("run", "--rm", "-i", *NONE, "busybox", "cat")),
                       shell=True, capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout) == (0, "hi\n"), r.stderr


def test_run_image_cmd_and_entrypoint_clears_it(s):
    assert s.out("run", "--rm", *NONE, "busybox") == "from-cmd\n"
    assert s.out("run", "--rm", *NONE, "--entrypoint", "echo", "busybox") == "\n"
    assert s.out("run", "--rm", *NONE, "--entrypoint", "echo", "busybox", "a", "b") == "a b\n"


def test_run_workdir_is_created(s):
    assert s.out("run", "--rm", *NONE, "-w", "/new/dir", "busybox", "sh", "-c", "pwd") == "/new/dir\n"


def test_run_user(s):
    assert s.out("run", "--rm", *NONE, "-u", "1234:1235", "busybox", "sh", "-c", "id -u; id -g") == "1234\n1235\n"
    assert s.out("run", "--rm", *NONE, "-u", "bob", "busybox", "id", "-u") == "1234\n"


def test_run_env_and_env_file(s, tmp):
    f = tmp / "envs"
    f.write_text("# comment\nA=from-file\nB=two words\n")
    out = s.out("run", "--rm", *NONE, "-e", "C=flag", "--env-file", f, "busybox",
                "sh", "-c", 'echo "$A|$B|$C|$FOO"')
    assert out == "from-file|two words|flag|from-image\n"


def test_run_env_passthrough_and_bad_options(s, tmp):
    r = subprocess.run(s.cmd("run", "--rm", *NONE, "-e", "PASSED", "busybox", "sh", "-c", 'echo "$PASSED"'),
                       capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60,
                       env=dict(os.environ, PASSED="from the caller"))
    assert (r.returncode, r.stdout) == (0, "from the caller\n"), r.stderr
    one_line(s("run", "--rm", *NONE, "--env-file", tmp / "nonexist", "busybox", "true"), 125,
             str(tmp / "nonexist"))
    one_line(s("run", "--rm", *NONE, "-w", "rel", "busybox", "true"), 125, "rel")
    one_line(s("run", "--rm", *NONE, "-u", "nosuch", "busybox", "true"), 125,
             "unable to find user nosuch: no matching entries in passwd file")
    assert s.ids() == []


def test_run_read_only(s):
    r = s("run", "--rm", *NONE, "--read-only", "busybox", "sh", "-c", "echo x > /f")
    assert r.returncode != 0 and "Read-only file system" in r.stderr


def _cap_eff(s, *flags):
    out = s.out("run", "--rm", *NONE, *flags, "busybox", "sh", "-c", "grep CapEff /proc/self/status")
    return int(out.split()[1], 16)


def test_run_cap_drop_and_add(s):
    default = _cap_eff(s)
    assert default == 0x00000000a80425fb
    CHOWN, SYS_ADMIN = 1 << 0, 1 << 21
    assert _cap_eff(s, "--cap-drop", "CHOWN") == default & ~CHOWN
    assert _cap_eff(s, "--cap-add", "SYS_ADMIN") == default | SYS_ADMIN
    assert _cap_eff(s, "--cap-drop", "ALL") == 0


def test_run_memory_and_pids_limit_are_visible_inside(s):
    out = s.out("run", "--rm", *NONE, "-m", "64m", "--pids-limit", "42", "busybox", "sh", "-c",
                "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes;"
                "cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max")
    assert out.split() == [str(64 << 20), "42"]


def test_run_init_is_pid_1(s):
    out = s.out("run", "--rm", *NONE, "--init", "busybox", "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '")
    assert out.split()[0] == "/sbin/docker-init"
    assert "sh" in out.split()[1:]
    one_line(s("run", "--rm", *NONE, "--init", "busybox", "nosuchcmd"), 127, "nosuchcmd")


def test_run_privileged_cpus_hostname_add_host(s):
    with open("/proc/self/status") as f:  # privileged: every capability this host's bounding set has
        host_bnd = int(next(ln for ln in f if ln.startswith("CapBnd:")).split()[1], 16)
    assert _cap_eff(s, "--privileged") == host_bnd
    out = s.out("run", "--rm", *NONE, "--cpus", "0.5", "busybox", "sh", "-c",
                "cat /sys/fs/cgroup/cpu.max 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us")
    assert out.split()[0] == "50000"
    out = s.out("run", "--rm", *NONE, "--hostname", "hh", "--add-host", "foo:1.2.3.4", "busybox", "sh", "-c",
                "cat /etc/hostname; grep foo /etc/hosts")
    assert out.split() == ["hh", "1.2.3.4", "foo"]


def test_run_t_gives_a_terminal(s):
    r = s("run", "-t", "--rm", *NONE, "busybox", "sh", "-c", "test -t 0 && test -t 1 && echo tty")
    assert (r.returncode, r.stdout.replace("\r", "")) == (0, "tty\n"), r.stderr


def test_create_then_start_attached(s):
    cid = s.out("create", "--name", "cr", *NONE, "busybox", "sh", "-c", "echo created; exit 2").strip()
    assert HEX64.match(cid)
    assert s.inspect("cr", "{{.State.Status}}") == "created"
    r = s("start", "-a", "cr")
    assert (r.returncode, r.stdout) == (2, "created\n"), r.stderr
    assert s.inspect("cr", "{{.State.Status}} {{.State.ExitCode}}") == "exited 2"


def test_run_tmpfs(s):
    out = s.out("run", "--rm", *NONE, "--tmpfs", "/scratch", "busybox", "sh", "-c",
                "grep ' /scratch ' /proc/mounts")
    assert out.split()[2] == "tmpfs"


def test_run_bind_mounts_ro_and_rw(s, tmp):
    src = tmp / "bind"
    src.mkdir()
    (src / "in").write_text("host\n")
    assert s.out("run", "--rm", *NONE, "-v", f"{src}:/b", "busybox", "sh", "-c",
                 "cat /b/in; echo c > /b/out") == "host\n"
    assert (src / "out").read_text() == "c\n"
    r = s("run", "--rm", *NONE, "-v", f"{src}:/b:ro", "busybox", "sh", "-c", "echo d > /b/out")
    assert r.returncode != 0 and "Read-only file system" in r.stderr
    assert (src / "out").read_text() == "c\n"


def test_run_missing_mount_bind_source_is_an_error_and_leaves_nothing(s, tmp):
    missing = tmp / "missing"
    r = s("run", "--rm", *NONE, "--mount", f"type=bind,source={missing},target=/m", "busybox", "true")
    one_line(r, 125, str(missing))
    assert not missing.exists()
    assert s.ids() == []


def test_run_v_creates_a_missing_bind_source(s, tmp):
    missing = tmp / "made"
    s.ok("run", "--rm", *NONE, "-v", f"{missing}:/m", "busybox", "true")
    assert missing.is_dir()


def test_named_volume_persists_and_is_seeded_from_the_image(s):
    try:
        assert s.out("run", "--rm", *NONE, "-v", "nv1:/data", "busybox", "sh", "-c",
                     "cat /data/seed; echo kept > /data/new") == "seeded from the image\n"
        assert s.out("run", "--rm", *NONE, "-v", "nv1:/other", "busybox", "cat", "/other/new") == "kept\n"
    finally:
        s("volume", "rm", "nv1")


def test_named_volume_read_only_kept_by_rm_v_and_by_prune_while_in_use(s):
    try:
        r = s("run", "--rm", *NONE, "-v", "nvro:/d:ro", "busybox", "sh", "-c", "touch /d/x")
        assert r.returncode == 1 and "Read-only file system" in r.stderr
        s.ok("run", "-d", "--name", "vu", *NONE, "-v", "nvro:/d", "busybox", "sleep", "100")
        s.ok("volume", "prune", "-f")
        assert "nvro" in s.out("volume", "ls", "-q").split()
        s.ok("rm", "-f", "-v", "vu")
        assert "nvro" in s.out("volume", "ls", "-q").split()  # rm -v removes anonymous volumes only
    finally:
        s("volume", "rm", "-f", "nvro")
    one_line(s("volume", "rm", "nvro"), 1, "get nvro: no such volume")


def test_anonymous_volume_is_removed_by_rm_v(s):
    s.ok("run", "--name", "anon", *NONE, "vol", "sh", "-c", "cat /data/seed")
    mounts = json.loads(s.inspect("anon", "{{json .Mounts}}"))
    vols = [m["Name"] for m in mounts if m.get("Type") == "volume"]
    assert len(vols) == 1 and HEX64.match(vols[0]), mounts
    assert vols[0] in s.out("volume", "ls", "-q").split()
    s.ok("rm", "-v", "anon")
    assert vols[0] not in s.out("volume", "ls", "-q").split()


def test_volume_verbs(s):
    assert s.out("volume", "create", "v-one") == "v-one\n"
    try:
        ls = s.out("volume", "ls").splitlines()
        assert ls[0].split() == ["DRIVER", "VOLUME", "NAME"]
        assert ["local", "v-one"] in [ln.split() for ln in ls[1:]]
        info = json.loads(s.out("volume", "inspect", "v-one"))
        assert info[0]["Name"] == "v-one" and info[0]["Driver"] == "local"
        assert info[0]["Mountpoint"] == os.path.join(s.root, "volumes", "v-one", "_data")
        s.ok("run", "-d", "--name", "user", *NONE, "-v", "v-one:/v", "busybox", "sleep", "100")
        cid = s.inspect("user", "{{.Id}}")
        r = s("volume", "rm", "v-one")
        one_line(r, 1, "remove v-one: volume is in use", cid)
        s.ok("rm", "-f", "user")
        assert s.out("volume", "rm", "v-one") == "v-one\n"
        one_line(s("volume", "inspect", "v-one"), 1, "No such volume: v-one")
        s.ok("volume", "create", "v-two")
        out = s.out("volume", "prune", "-f")
        assert "v-two" in out and "Total reclaimed space" in out
        assert "v-two" not in s.out("volume", "ls", "-q").split()
    finally:
        s("volume", "rm", "-f", "v-one")


# ---------------------------------------------------------------- detached

def test_run_d_ps_columns_and_formats(s):
    cid = s.out("run", "-d", "--name", "det", *NONE, "busybox", "sleep", "100").strip()
    assert HEX64.match(cid)
    ps = s.out("ps").splitlines()
    header = ps[0]
    cols = ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    pos = [header.index(c) for c in cols]
    assert pos == sorted(pos)
    row = [ln for ln in ps[1:] if ln.startswith(cid[:12])]
    assert len(row) == 1
    assert row[0][pos[4]:].startswith("Up ")
    assert row[0].rstrip().endswith("det")
    assert '"sleep 100"' in row[0]
    assert s.out("ps", "-q").split() == [cid[:12]]
    # what the fixture checks after each test is there while the container runs
    pid = int(s.inspect("det", "{{.State.Pid}}"))
    assert pid in s.processes() and len(s.processes()) >= 2  # the container and its conmon
    assert s.mounts() and s.runtime_state()
    assert cid in s.out("ps", "--no-trunc")
    assert s.out("ps", "--format", "{{.Names}} {{.Status}}").startswith("det Up ")
    table = s.out("ps", "--format", "table {{.Names}}\t{{.Status}}").splitlines()
    assert table[0].split() == ["NAMES", "STATUS"] and table[1].startswith("det ")
    assert s("run", "--name", "done", *NONE, "busybox", "sh", "-c", "exit 5").returncode == 5
    assert "done" not in s.out("ps")
    line = [ln for ln in s.out("ps", "-a").splitlines() if ln.rstrip().endswith("done")][0]
    assert re.search(r"Exited \(5\) .* ago", line), line


def test_logs_streams_tail_timestamps_and_follow(s):
    s.ok("run", "-d", "--name", "lg", *NONE, "busybox", "sh", "-c",
         "for i in 1 2 3; do echo out$i; sleep 0.05; echo err$i >&2; sleep 0.05; done; sleep 2; echo last")
    time.sleep(1)
    r = s.ok("logs", "lg")
    assert (r.stdout, r.stderr) == ("out1\nout2\nout3\n", "err1\nerr2\nerr3\n")
    r = s.ok("logs", "--tail", "2", "lg")
    assert (r.stdout, r.stderr) == ("out3\n", "err3\n")
    r = s.ok("logs", "-t", "lg")
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z out1$", r.stdout.splitlines()[0]), r.stdout
    t0 = time.monotonic()
    r = s.ok("logs", "-f", "lg", timeout=30)
    assert r.stdout.endswith("last\n")
    assert time.monotonic() - t0 < 15
    assert s.inspect("lg", "{{.State.Status}}") == "exited"


def test_exec(s):
    s.ok("run", "-d", "--name", "ex", *NONE, "busybox", "sleep", "100")
    assert s("exec", "ex", "sh", "-c", "exit 4").returncode == 4
    one_line(s("exec", "ex", "nosuchcmd"), 126, "nosuchcmd")  # docker 20.10: 126 for any exec it cannot start
    one_line(s("exec", "ex", "/notexec"), 126, "/notexec")
    out = s.out("exec", "-e", "X=1", "-u", "1234", "-w", "/tmp", "ex", "sh", "-c", 'echo "$X $(id -u) $(pwd)"')
    assert out == "1 1234 /tmp\n"
    r = s("exec", "-i", "ex", "cat", input="piped\n")
    assert (r.returncode, r.stdout) == (0, "piped\n"), r.stderr


def test_exec_detached_and_with_a_terminal(s):
    s.ok("run", "-d", "--name", "ed", *NONE, "busybox", "sleep", "100")
    s.ok("exec", "-d", "ed", "sh", "-c", "sleep 0.2; echo d > /tmp/d")
    deadline = time.monotonic() + 10
    while s("exec", "ed", "cat", "/tmp/d").stdout != "d\n" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert s.out("exec", "ed", "cat", "/tmp/d") == "d\n"
    assert s.out("exec", "-t", "ed", "sh", "-c", "test -t 1 && echo tty").replace("\r", "") == "tty\n"


def test_kill_defaults_to_sigkill_and_restart_of_an_exited_container(s):
    s.ok("run", "-d", "--name", "kd", *NONE, "busybox", "sleep", "100")
    s.ok("kill", "kd")
    assert s.out("wait", "kd") == "137\n"
    assert s.out("restart", "kd") == "kd\n"
    assert s.inspect("kd", "{{.State.Status}}") == "running"


def test_stop_kills_after_the_grace_period(s):
    s.ok("run", "-d", "--name", "sl", *NONE, "busybox", "sleep", "100")
    t0 = time.monotonic()
    s.ok("stop", "-t", "1", "sl")
    took = time.monotonic() - t0
    assert 0.9 < took < 8, took
    assert s.inspect("sl", "{{.State.Status}} {{.State.ExitCode}}") == "exited 137"


def test_stop_of_a_container_that_traps_term_is_prompt(s):
    s.ok("run", "-d", "--name", "tr", *NONE, "busybox", "sh", "-c",
         "trap 'exit 0' TERM; while true; do sleep 0.1; done")
    time.sleep(0.5)
    t0 = time.monotonic()
    s.ok("stop", "-t", "10", "tr")
    assert time.monotonic() - t0 < 5
    assert s.inspect("tr", "{{.State.Status}} {{.State.ExitCode}}") == "exited 0"


def test_start_again_keeps_the_rootfs(s):
    s.ok("run", "-d", "--name", "keep", *NONE, "busybox", "sh", "-c",
         "cat /tmp/mark 2>/dev/null; echo written > /tmp/mark; sleep 100")
    time.sleep(0.5)
    s.ok("stop", "-t", "0", "keep")
    assert s.out("start", "keep").strip() == "keep"
    time.sleep(0.5)
    assert s.out("exec", "keep", "cat", "/tmp/mark") == "written\n"
    assert s.out("logs", "keep") == "written\n"


def test_stop_signal_and_stop_timeout(s):
    s.ok("run", "-d", "--name", "ss", *NONE, "--stop-signal", "USR1", "--stop-timeout", "1", "busybox", "sh", "-c",
         "trap 'exit 5' USR1; while :; do sleep 0.1; done")
    time.sleep(0.5)
    s.ok("stop", "ss")
    assert s.inspect("ss", "{{.State.ExitCode}}") == "5"
    s.ok("run", "-d", "--name", "st", *NONE, "--stop-timeout", "1", "busybox", "sleep", "100")
    t0 = time.monotonic()
    s.ok("stop", "st")
    assert 0.9 < time.monotonic() - t0 < 8
    assert s.inspect("st", "{{.State.ExitCode}}") == "137"


def test_cp_into_a_stopped_container(s, tmp):
    s.ok("run", "--name", "cps", *NONE, "busybox", "true")
    (tmp / "f").write_text("while stopped\n")
    s.ok("cp", tmp / "f", "cps:/tmp/f")
    s.ok("cp", "cps:/tmp/f", tmp / "back")
    assert (tmp / "back").read_text() == "while stopped\n"


def test_restart_kill_wait(s):
    s.ok("run", "-d", "--name", "rk", *NONE, "busybox", "sh", "-c", "trap 'exit 7' USR1; sleep 100 & wait")
    pid1 = s.inspect("rk", "{{.State.Pid}}")
    s.ok("restart", "-t", "1", "rk")
    assert s.inspect("rk", "{{.State.Status}}") == "running"
    assert s.inspect("rk", "{{.State.Pid}}") != pid1
    time.sleep(0.5)
    assert s.out("kill", "-s", "USR1", "rk").strip() == "rk"
    assert s.out("wait", "rk") == "7\n"
    assert s.inspect("rk", "{{.State.Status}} {{.State.ExitCode}} {{.RestartCount}}") == "exited 7 0"


def test_rm_of_a_running_container(s):
    cid = s.out("run", "-d", "--name", "rr", *NONE, "busybox", "sleep", "100").strip()
    r = s("rm", "rr")
    line = one_line(r, 1, f"You cannot remove a running container {cid}. "
                          "Stop the container before attempting removal or force remove")
    assert s.inspect("rr", "{{.State.Status}}") == "running", line
    assert s.out("rm", "-f", "rr") == "rr\n"
    assert s.ids() == []


def test_rename(s):
    s.ok("run", "-d", "--name", "old", *NONE, "busybox", "sleep", "100")
    s.ok("rename", "old", "new")
    assert s.out("ps", "--format", "{{.Names}}").split() == ["new"]
    one_line(s("inspect", "old"), 1, "old")
    s.ok("run", "--rm", "--name", "old", *NONE, "busybox", "true")


def test_top(s):
    s.ok("run", "-d", "--name", "tp", *NONE, "busybox", "sleep", "123")
    out = s.out("top", "tp").splitlines()
    assert "PID" in out[0].split() and "CMD" in out[0].split()
    assert any("sleep 123" in ln for ln in out[1:])


def test_cp_both_ways_and_a_planted_symlink(s, tmp):
    canary = tmp / "canary"
    canary.mkdir()
    s.ok("run", "-d", "--name", "cpc", *NONE, "busybox", "sh", "-c",
         f"echo inside > /tmp/file; ln -s {canary} /tmp/evil; sleep 100")
    time.sleep(0.5)
    s.ok("cp", "cpc:/tmp/file", tmp / "got")
    assert (tmp / "got").read_text() == "inside\n"
    s.ok("exec", "cpc", "sh", "-c", "mkdir -p /tmp/dir/sub && echo deep > /tmp/dir/sub/f")
    s.ok("cp", "cpc:/tmp/dir", tmp / "gotdir")
    # copies, never links into the container's rootfs
    assert not os.path.islink(tmp / "got") and not os.path.islink(tmp / "gotdir")
    assert (tmp / "gotdir" / "sub" / "f").read_text() == "deep\n"
    (tmp / "send").write_text("from host\n")
    s.ok("cp", tmp / "send", "cpc:/tmp/sent")
    assert s.out("exec", "cpc", "cat", "/tmp/sent") == "from host\n"
    s("cp", tmp / "send", "cpc:/tmp/evil/send")
    s("cp", tmp / "send", "cpc:/tmp/evil/")
    s("cp", tmp / "send", "cpc:/tmp/evil")
    assert os.listdir(canary) == []
    # and out: a link to a host file copies what the container's own path holds, never the host's file
    (tmp / "secret").write_text("host secret\n")
    s.ok("exec", "cpc", "ln", "-s", str(tmp / "secret"), "/tmp/leak")
    s("cp", "cpc:/tmp/leak/", tmp / "out1")
    s("cp", "cpc:/tmp/leak", tmp / "out2")
    for dp, _dn, fns in os.walk(tmp):
        for fn in fns:
            p = os.path.join(dp, fn)
            if p != str(tmp / "secret") and not os.path.islink(p):
                assert open(p).read() != "host secret\n", p


def test_container_prune(s):
    s.ok("run", "--name", "pr1", *NONE, "busybox", "true")
    s.ok("run", "-d", "--name", "pr2", *NONE, "busybox", "sleep", "100")
    cid1 = s.inspect("pr1", "{{.Id}}")
    out = s.out("container", "prune", "-f")
    assert cid1 in out and "Total reclaimed space" in out
    assert s.out("ps", "-a", "--format", "{{.Names}}").split() == ["pr2"]


# ---------------------------------------------------------------- restart policies

def test_restart_on_failure_with_a_limit(s):
    s.ok("run", "-d", "--name", "of", *NONE, "--restart", "on-failure:2", "busybox", "sh", "-c", "exit 1")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        st = s.inspect("of", "{{.State.Status}} {{.State.ExitCode}} {{.RestartCount}}")
        if st == "exited 1 2":
            break
        time.sleep(0.2)
    time.sleep(1)
    assert s.inspect("of", "{{.State.Status}} {{.State.ExitCode}} {{.RestartCount}}") == "exited 1 2"


def test_restart_always_and_stop_for_good(s):
    s.ok("run", "-d", "--name", "al", *NONE, "--restart", "always", "busybox", "sh", "-c", "sleep 0.3")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and int(s.inspect("al", "{{.RestartCount}}")) < 2:
        time.sleep(0.2)
    assert int(s.inspect("al", "{{.RestartCount}}")) >= 2
    s.ok("stop", "-t", "1", "al")
    n = s.inspect("al", "{{.RestartCount}}")
    time.sleep(1.5)
    assert s.inspect("al", "{{.State.Status}} {{.RestartCount}}") == f"exited {n}"


def test_start_all_restartable(s):
    s.ok("run", "-d", "--name", "ar1", *NONE, "--restart", "always", "busybox", "sleep", "100")
    s.ok("run", "-d", "--name", "ar2", *NONE, "busybox", "sleep", "100")
    s.ok("run", "-d", "--name", "ar3", *NONE, "--restart", "unless-stopped", "busybox", "sleep", "100")
    s.ok("stop", "-t", "0", "ar1", "ar2", "ar3")
    # a boot starts the containers whose policy says so: always even when stopped, unless-stopped not
    s.ok("start", "--all-restartable")
    st = {n: s.inspect(n, "{{.State.Status}}") for n in ("ar1", "ar2", "ar3")}
    assert st == {"ar1": "running", "ar2": "exited", "ar3": "exited"}


def test_rm_f_of_a_container_in_a_restart_loop(s):
    s.ok("run", "-d", "--name", "loop", *NONE, "--restart", "always", "busybox", "sh", "-c", "exit 1")
    time.sleep(0.7)
    assert s.out("rm", "-f", "loop") == "loop\n"
    time.sleep(1)  # an exit command of the loop still running must not bring it back
    assert s.ids() == []


def test_concurrent_runs_with_one_name(s):
    procs = [subprocess.Popen(s.cmd("run", "-d", "--name", "race", *NONE, "busybox", "sleep", "100"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
             for _ in range(4)]
    res = [(p.wait(timeout=60), p.stdout.read(), p.stderr.read()) for p in procs]
    assert sorted(r[0] for r in res) == [0, 125, 125, 125], res
    for rc, _out, err in res:
        if rc:
            assert 'The container name "/race" is already in use' in err, err
    assert len(s.ids()) == 1
    assert s.inspect("race", "{{.State.Status}}") == "running"


# ---------------------------------------------------------------- faults

def _pid(s, name):
    return int(s.inspect(name, "{{.State.Pid}}"))


def _conmon_of(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def test_sigkill_of_the_container_process(s):
    s.ok("run", "-d", "--name", "k1", *NONE, "busybox", "sleep", "100")
    os.kill(_pid(s, "k1"), signal.SIGKILL)
    time.sleep(1)
    line = [ln for ln in s.out("ps", "-a").splitlines() if ln.rstrip().endswith("k1")][0]
    assert "Exited (137)" in line
    assert s.out("rm", "k1") == "k1\n"


def test_sigkill_of_conmon(s):
    s.ok("run", "-d", "--name", "k2", *NONE, "busybox", "sleep", "100")
    pid = _pid(s, "k2")
    conmon = _conmon_of(pid)
    with open(f"/proc/{conmon}/cmdline", "rb") as f:
        assert os.path.basename(f.read().split(b"\0")[0]) == b"conmon"
    os.kill(conmon, signal.SIGKILL)
    time.sleep(0.5)
    assert s.inspect("k2", "{{.State.Status}} {{.State.ExitCode}}") == "exited 137"
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split(") ")[1][0] == "Z"
    assert s.out("rm", "k2") == "k2\n"


def test_sigkill_of_conmon_of_an_rm_container_removes_it(s):
    s.ok("run", "-d", "--rm", "--name", "k3", *NONE, "busybox", "sleep", "100")
    os.kill(_conmon_of(_pid(s, "k3")), signal.SIGKILL)
    time.sleep(0.5)
    s.ok("ps", "-a")  # the repair ends it; --rm says an ended container is removed
    assert s.ids() == []
    s.ok("run", "--rm", "--name", "k3", *NONE, "busybox", "true")


def test_sigkill_of_the_process_of_an_rm_container_removes_it(s):
    s.ok("run", "-d", "--rm", "--name", "k4", *NONE, "busybox", "sleep", "100")
    os.kill(_pid(s, "k4"), signal.SIGKILL)
    deadline = time.monotonic() + 10
    while s.ids() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert s.ids() == []


@pytest.mark.parametrize("delay", [0.02, 0.05, 0.08, 0.11, 0.14, 0.2, 0.4])
def test_sigkill_of_run_d_midway(s, delay):
    p = subprocess.Popen(s.cmd("run", "-d", "--name", f"mid{int(delay * 100)}", *NONE, "busybox", "sleep", "100"),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    time.sleep(delay)
    p.kill()
    p.wait()
    r = s.ok("ps", "-a")
    assert "Traceback" not in r.stderr
    for cid in s.ids():
        st = s.inspect(cid, "{{.State.Status}}")
        assert st in ("created", "running", "exited"), st
    # the fixture removes everything and checks that nothing is left


@pytest.mark.parametrize("delay", [0.05, 0.1, 0.2, 0.4])
def test_sigkill_of_foreground_run_midway(s, delay):
    p = subprocess.Popen(s.cmd("run", "--name", f"fg{int(delay * 100)}", *NONE, "busybox", "sleep", "100"),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    time.sleep(delay)
    p.kill()
    p.wait()
    r = s.ok("ps", "-a")
    assert "Traceback" not in r.stderr
    for cid in s.ids():
        assert s.inspect(cid, "{{.State.Status}}") in ("created", "running", "exited")


@pytest.mark.parametrize("delay", [0.03, 0.08, 0.15])
def test_sigkill_of_rm_f_midway(s, delay):
    s.ok("run", "-d", "--name", "rmk", *NONE, "-v", "/data", "busybox", "sleep", "100")
    p = subprocess.Popen(s.cmd("rm", "-f", "-v", "rmk"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    p.kill()
    p.wait()
    r = s("ps", "-a")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    # the fixture's rm -f of everything must still leave nothing


# ---------------------------------------------------------------- bad input

def test_name_in_use(s):
    cid = s.out("run", "-d", "--name", "dup", *NONE, "busybox", "sleep", "100").strip()
    r = s("run", "--name", "dup", *NONE, "busybox", "true")
    one_line(r, 125, f'Conflict. The container name "/dup" is already in use by container "{cid}". '
                     "You have to remove (or rename) that container to be able to reuse that name.")
    assert s.ids() == [cid]
    s.ok("run", "-d", "--name", "other", *NONE, "busybox", "sleep", "100")
    one_line(s("rename", "other", "dup"), 1, 'The container name "/dup" is already in use')


def test_invalid_restart_policy_leaves_nothing(s):
    one_line(s("run", "--restart", "bogus", *NONE, "busybox", "true"), 125, "bogus")
    assert s.ids() == []


def test_verbs_on_missing_or_stopped_containers(s):
    one_line(s("rm", "nosuch"), 1, "No such container: nosuch")
    one_line(s("inspect", "nosuch"), 1, "nosuch")
    s.ok("run", "--name", "stopped", *NONE, "busybox", "true")
    cid = s.inspect("stopped", "{{.Id}}")
    one_line(s("kill", "stopped"), 1, f"Cannot kill container: stopped: Container {cid} is not running")
    assert s.out("stop", "stopped") == "stopped\n"


def test_wait_blocks_until_the_exit(s):
    s.ok("run", "-d", "--name", "wt", *NONE, "busybox", "sh", "-c", "sleep 1; exit 9")
    t0 = time.monotonic()
    assert s.out("wait", "wt") == "9\n"
    assert time.monotonic() - t0 > 0.5


# ---------------------------------------------------------------- stores are isolated

def test_stores_are_isolated(s, store_dir, tmp):
    other = Layout(tmp / "other")
    other.add_image(["docker.io/library/busybox:latest"], [busybox_layer()], media_type=GZIP,
                    config={"Cmd": ["sh"], "Env": ["PATH=/bin"]})
    b = Store(other.root, s.config)
    try:
        s.ok("run", "-d", "--name", "same", *NONE, "busybox", "sleep", "100")
        b.ok("run", "-d", "--name", "same", *NONE, "busybox", "sleep", "100")
        assert s.inspect("same", "{{.Id}}") != b.inspect("same", "{{.Id}}")
        assert len(s.ids()) == 1 and len(b.ids()) == 1
        assert s.ids()[0] != b.ids()[0]
        host = subprocess.run([os.path.join(os.path.dirname(sys.executable), "pyrunc"), "list", "-q"],
                              capture_output=True, text=True).stdout.split()
        assert s.ids()[0] not in host and b.ids()[0] not in host  # nor in the host's /run/pyrunc
        b.ok("rm", "-f", "same")
        assert s.inspect("same", "{{.State.Status}}") == "running"
    finally:
        left = b.clean_all()
        assert not any(left.values()), left
