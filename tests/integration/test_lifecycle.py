"""The runtime core from the outside: lifecycle, state, errors, cleanup."""
import json
import os
import signal
import subprocess
import time

import pytest

from bundles import PYRUNC
from runtime.state import STATE_FILE
from runtime.state import read_file as read_state


def _wait_status(rt, cid, want, timeout=10):
    rt.wait_status(cid, want, timeout)


def _cgroup_dirs(rt, cid):
    cg = read_state(os.path.join(rt.root, cid))["cgroup"]
    dirs = []
    for k, v in cg.items():
        if "mount" in k:
            continue  # hierarchy roots, not the container's own cgroups
        if isinstance(v, dict):
            dirs += [p for p in v.values() if isinstance(p, str) and p.startswith("/sys/fs/cgroup")]
        elif isinstance(v, str) and v.startswith("/sys/fs/cgroup"):
            dirs.append(v)
    return dirs


def test_run_foreground_output_and_exit_code(rt):
    b = rt.bundle(["sh", "-c", "echo hello; echo oops >&2; exit 3"])
    p = rt("run", "--bundle", b, rt.new_id())
    assert p.returncode == 3
    assert p.stdout == "hello\n"
    assert "oops" in p.stderr


def test_run_killed_by_signal_exit_code(rt):
    b = rt.bundle(["sleep", "30"])
    cid = rt.new_id()
    p = subprocess.Popen([PYRUNC, "--root", rt.root, "run", "--bundle", b, cid])
    try:
        _wait_status(rt, cid, "running")
        rt("kill", cid, "KILL", check=True)
        assert p.wait(timeout=10) == 128 + signal.SIGKILL
    finally:
        p.kill()
        p.wait()
    # The foreground run deleted its container.
    assert not os.path.exists(os.path.join(rt.root, cid))


def test_run_forwards_signals(rt):
    b = rt.bundle(["sh", "-c", "trap 'echo got-term; exit 4' TERM; echo ready; while :; do sleep 0.05; done"])
    cid = rt.new_id()
    p = subprocess.Popen([PYRUNC, "--root", rt.root, "run", "--bundle", b, cid],
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == "ready\n"  # the trap is in place
        p.send_signal(signal.SIGTERM)
        out, _ = p.communicate(timeout=10)
        assert p.returncode == 4
        assert "got-term" in out
    finally:
        p.kill()
        p.wait()


def test_create_start_state_delete(rt, tmp_path):
    b = rt.bundle(["sh", "-c", "read x < /dev/stdin; echo done"])
    cid = rt.new_id()
    pidfile = tmp_path / "pid"
    rt("create", "--bundle", b, "--pid-file", str(pidfile), cid, check=True, stdin=subprocess.DEVNULL)
    s = rt.state(cid)
    assert s["status"] == "created"
    assert s["id"] == cid and s["bundle"] == b
    assert int(pidfile.read_text()) == s["pid"]
    # The waiting init is pid 1 of a new pid namespace, and not yet the user process.
    with open(f"/proc/{s['pid']}/status") as f:
        nspid = [line for line in f if line.startswith("NSpid:")][0].split()
    assert nspid[-1] == "1"
    dirs = _cgroup_dirs(rt, cid)
    assert dirs and all(os.path.isdir(d) for d in dirs)
    rt("start", cid, check=True)
    # After exec no Python is left in the container: init is busybox.
    _wait_status(rt, cid, "stopped")
    p = rt("start", cid)
    assert p.returncode == 1 and "stopped" in p.stderr
    rt("delete", cid, check=True)
    assert not os.path.exists(os.path.join(rt.root, cid))
    assert not any(os.path.exists(d) for d in dirs)
    p = rt("state", cid)
    assert p.returncode == 1 and cid in p.stderr


def test_user_process_replaces_runtime(rt):
    b = rt.bundle(["sleep", "30"])
    cid = rt.new_id()
    rt("run", "-d", "--bundle", b, cid, check=True)
    pid = rt.state(cid)["pid"]
    exe = os.readlink(f"/proc/{pid}/exe")
    assert exe.endswith("/bin/busybox"), exe
    # Nothing of pyrunc runs beside the container afterwards.
    out = subprocess.run(["pgrep", "-f", f"pyrunc.*{cid}"], capture_output=True, text=True).stdout.split()
    assert out == []
    rt("kill", cid, "KILL", check=True)
    _wait_status(rt, cid, "stopped")
    rt("delete", cid, check=True)


@pytest.mark.parametrize("sig", ["TERM", "SIGTERM", "15"])
def test_kill_signal_forms(rt, sig):
    # pid 1 of a namespace ignores signals it has no handler for: trap it.
    b = rt.bundle(["sh", "-c", "trap 'exit 0' TERM; touch /dev/shm/ready; while :; do sleep 0.05; done"])
    cid = rt.new_id()
    rt("run", "-d", "--bundle", b, cid, check=True)
    assert rt.state(cid)["status"] == "running"
    for _ in range(250):  # until the trap is in place
        if rt("exec", cid, "test", "-e", "/dev/shm/ready").returncode == 0:
            break
        time.sleep(0.02)
    rt("kill", cid, sig, check=True)
    _wait_status(rt, cid, "stopped")
    p = rt("kill", cid, "TERM")
    assert p.returncode == 1 and "not running" in p.stderr
    rt("delete", cid, check=True)


def test_kill_invalid_signal(rt):
    b = rt.bundle(["sleep", "30"])
    cid = rt.new_id()
    rt("run", "-d", "--bundle", b, cid, check=True)
    p = rt("kill", cid, "SIGNOPE")
    assert p.returncode == 1 and "SIGNOPE" in p.stderr
    assert rt.state(cid)["status"] == "running"


def test_kill_all(rt):
    b = rt.bundle(["sh", "-c", "sleep 30 & sleep 30 & wait"])
    cid = rt.new_id()
    rt("run", "-d", "--bundle", b, cid, check=True)
    for _ in range(200):
        pids = json.loads(rt("ps", "--format", "json", cid, check=True).stdout)
        if len(pids) == 3:
            break
        time.sleep(0.02)
    assert len(pids) == 3
    rt("kill", "--all", cid, "KILL", check=True)
    _wait_status(rt, cid, "stopped")


def test_delete_running_needs_force(rt):
    b = rt.bundle(["sleep", "30"])
    cid = rt.new_id()
    rt("run", "-d", "--bundle", b, cid, check=True)
    p = rt("delete", cid)
    assert p.returncode == 1 and "running" in p.stderr
    dirs = _cgroup_dirs(rt, cid)
    pid = rt.state(cid)["pid"]
    rt("delete", "--force", cid, check=True)
    assert not os.path.exists(f"/proc/{pid}/cmdline") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    assert not any(os.path.exists(d) for d in dirs)
    # containerd calls delete --force again after a successful delete.
    rt("delete", "--force", cid, check=True)


def test_delete_created_container_kills_it(rt):
    b = rt.bundle(["sleep", "30"])
    cid = rt.new_id()
    rt("create", "--bundle", b, cid, check=True)
    pid = rt.state(cid)["pid"]
    rt("delete", cid, check=True)
    assert not os.path.exists(os.path.join(rt.root, cid))
    time.sleep(0.05)
    st = open(f"/proc/{pid}/stat").read().split()[2] if os.path.exists(f"/proc/{pid}") else "gone"
    assert st in ("Z", "gone")


def test_duplicate_and_invalid_ids(rt):
    b = rt.bundle(["sleep", "30"])
    cid = rt.new_id()
    rt("create", "--bundle", b, cid, check=True)
    p = rt("create", "--bundle", b, cid)
    assert p.returncode == 1 and "already exists" in p.stderr
    assert rt.state(cid)["status"] == "created"
    for bad in ("..", "a/b", ".", "x y"):
        p = rt("create", "--bundle", b, bad)
        assert p.returncode == 1 and "invalid container ID format" in p.stderr, bad
    assert sorted(os.listdir(rt.root)) == [cid]


def test_list_formats(rt):
    b = rt.bundle(["sleep", "30"])
    ids = [rt.new_id(), rt.new_id()]
    for cid in ids:
        rt("create", "--bundle", b, cid, check=True)
    table = rt("list", check=True).stdout.splitlines()
    assert table[0].split()[:3] == ["ID", "PID", "STATUS"]
    assert {line.split()[0] for line in table[1:]} == set(ids)
    js = json.loads(rt("list", "--format", "json", check=True).stdout)
    assert {c["id"]: c["status"] for c in js} == {cid: "created" for cid in ids}
    assert rt("list", "-q", check=True).stdout.split() == sorted(ids)


def test_spec_writes_default_config(tmp_path):
    p = subprocess.run([PYRUNC, "spec", "--bundle", str(tmp_path)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["ociVersion"] == "1.3.0" and cfg["process"]["args"] == ["sh"]
    p = subprocess.run([PYRUNC, "spec", "--bundle", str(tmp_path)], capture_output=True, text=True)
    assert p.returncode == 1 and "exists" in p.stderr
    r = tmp_path / "rl"
    r.mkdir()
    subprocess.run([PYRUNC, "spec", "--rootless", "--bundle", str(r)], check=True)
    cfg = json.loads((r / "config.json").read_text())
    assert {"type": "user"} in cfg["linux"]["namespaces"]
    assert cfg["linux"]["uidMappings"][0]["hostID"] == os.getuid()


def test_version_output():
    out = subprocess.run([PYRUNC, "--version"], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0].startswith("pyrunc version ")
    assert out[1].startswith("commit: ")
    assert out[2] == "spec: 1.3.0"


def test_json_log_on_error(rt, tmp_path):
    log = tmp_path / "log.json"
    b = rt.bundle(["/no/such/binary"])
    cid = rt.new_id()
    p = rt("--log", str(log), "--log-format", "json", "create", "--bundle", b, cid)
    assert p.returncode == 1
    last = json.loads(log.read_text().splitlines()[-1])
    assert last["level"] == "error"
    assert "/no/such/binary" in last["msg"]
    assert "time" in last
    assert not os.path.exists(os.path.join(rt.root, cid))


def test_missing_executable_reported_at_create(rt):
    b = rt.bundle(["nosuchcmd"])
    cid = rt.new_id()
    p = rt("create", "--bundle", b, cid)
    assert p.returncode == 1
    assert 'exec: "nosuchcmd": executable file not found in $PATH' in p.stderr
    assert not os.path.exists(os.path.join(rt.root, cid))


def test_exec_in_running_container(rt, tmp_path):
    b = rt.bundle(["sleep", "30"], mutate=lambda c: c.update(hostname="exechost"))
    cid = rt.new_id()
    rt("run", "-d", "--bundle", b, cid, check=True)
    p = rt("exec", cid, "sh", "-c", "hostname; echo $$; cat /proc/1/cmdline | tr '\\0' ' '; exit 5")
    assert p.returncode == 5
    lines = p.stdout.split("\n")
    assert lines[0] == "exechost"
    assert lines[2].startswith("sleep 30")
    # --process, --detach and --pid-file, as containerd uses them.
    proc = {"args": ["sleep", "20"], "cwd": "/tmp", "user": {"uid": 1000, "gid": 1000},
            "env": ["PATH=/bin"]}
    pf = tmp_path / "proc.json"
    pf.write_text(json.dumps(proc))
    pidf = tmp_path / "exec.pid"
    rt("exec", "--process", str(pf), "--detach", "--pid-file", str(pidf), cid, check=True)
    epid = int(pidf.read_text())
    status = open(f"/proc/{epid}/status").read()
    assert "\nUid:\t1000\t1000\t1000\t1000" in status
    assert os.readlink(f"/proc/{epid}/cwd").endswith("/tmp")
    assert os.readlink(f"/proc/{epid}/ns/pid") == os.readlink(f"/proc/{rt.state(cid)['pid']}/ns/pid")
    p = rt("exec", cid, "nosuchcmd")
    assert p.returncode == 255 and "nosuchcmd" in p.stderr  # runc: a process that cannot start is 255


def test_exec_refused_when_paused_or_stopped(rt):
    b = rt.bundle(["sleep", "30"])
    cid = rt.new_id()
    rt("run", "-d", "--bundle", b, cid, check=True)
    rt("pause", cid, check=True)
    assert rt.state(cid)["status"] == "paused"
    p = rt("exec", cid, "true")
    assert p.returncode == 255 and "paused" in p.stderr
    rt("resume", cid, check=True)
    assert rt.state(cid)["status"] == "running"
    rt("kill", cid, "KILL", check=True)
    _wait_status(rt, cid, "stopped")
    p = rt("exec", cid, "true")
    assert p.returncode == 255 and "stopped" in p.stderr


def test_update_applies_live(rt):
    b = rt.bundle(["sleep", "30"])
    cid = rt.new_id()
    rt("run", "-d", "--bundle", b, cid, check=True)
    rt("update", "--resources", "-", cid, input=json.dumps({"pids": {"limit": 42}}), check=True)
    rt("update", "--memory", "64M", cid, check=True)
    dirs = _cgroup_dirs(rt, cid)
    pids_dir = next(d for d in dirs if "/pids/" in d)
    mem_dir = next(d for d in dirs if "/memory/" in d)
    assert open(os.path.join(pids_dir, "pids.max")).read().strip() == "42"
    assert open(os.path.join(mem_dir, "memory.limit_in_bytes")).read().strip() == str(64 * 1024 * 1024)
    ev = json.loads(rt("events", "--stats", cid, check=True).stdout)
    assert ev["type"] == "stats" and ev["data"]["pids"]["current"] >= 1


def test_features_document(rt):
    from runtime.validate import validate_features
    doc = json.loads(rt("features", check=True).stdout)
    validate_features(doc)
    assert "time" in doc["linux"]["namespaces"]
    assert doc["ociVersionMax"] == "1.3.0"


def test_half_created_container_cleaned_by_force_delete(rt, tmp_path):
    """SIGKILL `create` while a prestart hook runs; delete --force cleans up."""
    hook = tmp_path / "hook.sh"
    marker = tmp_path / "hook-started"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\nsleep 30\n")
    hook.chmod(0o755)

    def mutate(cfg):
        cfg["hooks"] = {"prestart": [{"path": str(hook)}]}
    b = rt.bundle(["true"], mutate=mutate)
    cid = rt.new_id()
    p = subprocess.Popen([PYRUNC, "--root", rt.root, "create", "--bundle", b, cid],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.monotonic() + 15
    while not marker.exists() and time.monotonic() < end:
        time.sleep(0.02)
    assert marker.exists()
    dirs = _cgroup_dirs(rt, cid)
    p.kill()
    p.wait()
    subprocess.run(["pkill", "-f", str(hook)])
    rt("delete", "--force", cid, check=True)
    assert not os.path.exists(os.path.join(rt.root, cid))
    assert not any(os.path.exists(d) for d in dirs)


def test_state_survives_concurrent_commands(rt):
    b = rt.bundle(["sleep", "30"])
    cid = rt.new_id()
    rt("create", "--bundle", b, cid, check=True)
    procs = [subprocess.Popen([PYRUNC, "--root", rt.root, verb, cid], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for verb in ("start", "start", "state", "start")]
    rcs = [p.wait() for p in procs]
    # Exactly one start wins; the state stays readable.
    assert [rcs[i] for i in (0, 1, 3)].count(0) == 1
    assert rt.state(cid)["status"] == "running"


def test_long_state_path_and_id(tmp_path, busybox_rootfs):
    """Docker's layout: --root <exec-root>/runtime-runc/moby and 64-char ids
    put the state dir near the unix socket path limit."""
    from bundles import Runtime
    deep = tmp_path / ("d" * 40) / "runtime-runc" / "moby"
    r = Runtime(tmp_path, busybox_rootfs)
    r.root = str(deep)
    b = r.bundle(["sh", "-c", "echo long-ok"])
    cid = "a" * 64
    r.ids.append(cid)
    p = r("run", "--bundle", b, cid)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "long-ok\n"
    r.cleanup()


def test_sigkill_reaches_paused_container(rt):
    b = rt.bundle(["sleep", "30"])
    cid = rt.new_id()
    rt("run", "-d", "--bundle", b, cid, check=True)
    rt("pause", cid, check=True)
    rt("kill", "--all", cid, "KILL", check=True)
    _wait_status(rt, cid, "stopped")
    rt("delete", cid, check=True)


def test_events_reports_oom(rt):
    """`events` streams stats and an "oom" event when the container hits its
    memory limit (containerd reads these)."""
    def m(c):
        c["linux"]["resources"]["memory"] = {"limit": 32 * 1024 * 1024, "swap": 32 * 1024 * 1024}
    b = rt.bundle(["sh", "-c", "sleep 1; x=$(head -c 100000000 /dev/zero | tr '\\0' a); sleep 30"], mutate=m)
    cid = rt.new_id()
    rt("run", "-d", "--bundle", b, cid, check=True)
    p = subprocess.Popen([PYRUNC, "--root", rt.root, "events", "--interval", "200ms", cid],
                         stdout=subprocess.PIPE, text=True)
    try:
        seen = set()
        end = time.monotonic() + 30
        while time.monotonic() < end and "oom" not in seen:
            line = p.stdout.readline()
            if not line:
                break
            ev = json.loads(line)
            assert ev["id"] == cid
            seen.add(ev["type"])
        assert "stats" in seen and "oom" in seen, seen
    finally:
        p.kill()
        p.wait()


@pytest.mark.parametrize("delay_ms", [0, 5, 15, 30, 60])
def test_create_killed_at_any_point_is_cleaned_by_force_delete(rt, delay_ms):
    """SIGKILL `create` after a delay; `delete --force` leaves no state dir,
    cgroup or process behind, wherever create was."""
    b = rt.bundle(["sleep", "30"])
    cid = rt.new_id()
    p = subprocess.Popen([PYRUNC, "--root", rt.root, "create", "--bundle", b, cid],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay_ms / 1000)
    p.kill()
    p.wait()
    time.sleep(0.05)
    dirs = []
    if os.path.exists(os.path.join(rt.root, cid, STATE_FILE)):
        dirs = _cgroup_dirs(rt, cid) if read_state(os.path.join(rt.root, cid)).get("cgroup") else []
    rt("delete", "--force", cid, check=True)
    assert not os.path.exists(os.path.join(rt.root, cid))
    assert not any(os.path.exists(d) for d in dirs)
    left = subprocess.run(["pgrep", "-f", f"create --bundle {b} {cid}"], capture_output=True, text=True).stdout
    assert left.strip() == ""


def test_systemd_cgroup_without_systemd_is_a_clear_error(rt):
    if os.path.isdir("/run/systemd/system"):
        pytest.skip("systemd runs here")
    b = rt.bundle(["true"])
    cid = rt.new_id()
    p = rt("--systemd-cgroup", "create", "--bundle", b, cid)
    assert p.returncode == 1
    assert "systemd" in p.stderr and len(p.stderr.strip().split("\n")) == 1
    assert not os.path.exists(os.path.join(rt.root, cid))


def test_exec_command_line_options(rt, tmp_path):
    b = rt.bundle(["sleep", "30"])
    cid = rt.new_id()
    rt("run", "-d", "--bundle", b, cid, check=True)
    p = rt("exec", "-e", "FOO=bar", "--cwd", "/tmp", "-u", "1000:1000", "-g", "5",
           "--no-new-privs", cid, "sh", "-c",
           "echo $FOO; pwd; id -u; id -g; id -G; grep NoNewPrivs /proc/self/status | tr -d '\\t'")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.split("\n")
    assert lines[:4] == ["bar", "/tmp", "1000", "1000"]
    assert "5" in lines[4].split()
    assert lines[5] == "NoNewPrivs:1"
    p = rt("exec", "--cap", "CAP_SYS_ADMIN", cid, "sh", "-c", "grep CapEff /proc/self/status")
    assert p.returncode == 0, p.stderr
    assert int(p.stdout.split()[1], 16) >> 21 & 1
    f = tmp_path / "fd3"
    f.write_text("via fd 3")
    fd = os.open(str(f), os.O_RDONLY)
    try:
        p = rt("exec", "--preserve-fds", "1", cid, "sh", "-c", "cat <&3",
               pass_fds=(fd, 3), preexec_fn=lambda: os.dup2(fd, 3))
    finally:
        os.close(fd)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "via fd 3"


def test_exec_cpu_affinity(rt, tmp_path):
    """process.execCPUAffinity (runtime-spec 1.2+): `final` is the exec'd
    process's affinity once it is in the container's cgroup; from config.json
    it applies to later execs (not to init); bad lists name the field."""
    ncpu = len(os.sched_getaffinity(0))
    last = max(os.sched_getaffinity(0))
    b = rt.bundle(["sleep", "30"], mutate=lambda c: c["process"].__setitem__(
        "execCPUAffinity", {"initial": str(last), "final": str(last)}))
    cid = rt.new_id()
    rt("run", "-d", "--bundle", b, cid, check=True)
    init_pid = rt.state(cid)["pid"]
    # not for init
    assert len(os.sched_getaffinity(init_pid)) == ncpu
    p = rt("exec", cid, "grep", "Cpus_allowed_list", "/proc/self/status")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["Cpus_allowed_list:", str(last)]
    proc = {"args": ["grep", "Cpus_allowed_list", "/proc/self/status"], "cwd": "/", "env": ["PATH=/bin"],
            "execCPUAffinity": {"final": "0"}}
    pf = tmp_path / "proc.json"
    pf.write_text(json.dumps(proc))
    p = rt("exec", "--process", str(pf), cid)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["Cpus_allowed_list:", "0"]
    proc["execCPUAffinity"] = {"initial": "1-0"}
    pf.write_text(json.dumps(proc))
    p = rt("exec", "--process", str(pf), cid)
    assert p.returncode == 255
    assert "process.execCPUAffinity.initial" in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_delete_of_a_stopped_container_removes_its_cgroups_without_the_managers(rt):
    """init's pid namespace takes every process down with it, so delete's
    fast path (one rmdir per cgroup, no cgroup manager loaded) ends there."""
    import sys
    b = rt.bundle(["true"])
    cid = rt.new_id()
    rt("create", "--bundle", b, cid, check=True)
    dirs = _cgroup_dirs(rt, cid)
    assert dirs and all(os.path.isdir(d) for d in dirs)
    rt("start", cid, check=True)
    _wait_status(rt, cid, "stopped")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = (f"import sys; sys.path.insert(0, {repo!r})\n"
            "from runtime import cli\n"
            f"rc = cli._dispatch(['--root', {rt.root!r}, 'delete', {cid!r}])\n"
            "print(rc, 'runtime.cgroups' in sys.modules)")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True)
    assert out.stdout.split() == ["0", "False"], out.stderr
    assert not any(os.path.exists(d) for d in dirs)
    assert not os.path.exists(os.path.join(rt.root, cid))


def test_delete_force_of_a_running_container_still_kills_and_removes(rt):
    b = rt.bundle(["sleep", "60"])
    cid = rt.new_id()
    rt("run", "-d", "--bundle", b, cid, check=True)
    dirs = _cgroup_dirs(rt, cid)
    rt("exec", "-d", cid, "sleep", "60", check=True)
    rt("delete", "--force", cid, check=True)
    assert not any(os.path.exists(d) for d in dirs)


def test_delete_of_a_stopped_container_kills_what_outlived_init(rt):
    """Without its own pid namespace a container's processes survive init:
    the fast path finds the cgroup in use, and delete kills and removes."""
    def host_pids(cfg):
        cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "pid"]
    b = rt.bundle(["sh", "-c", "sleep 60 >/dev/null 2>&1 </dev/null & exit 0"], mutate=host_pids)
    cid = rt.new_id()
    rt("create", "--bundle", b, cid, check=True)
    dirs = _cgroup_dirs(rt, cid)
    rt("start", cid, check=True)
    _wait_status(rt, cid, "stopped")
    with open(os.path.join(dirs[0], "cgroup.procs")) as f:
        left = [int(x) for x in f.read().split()]
    assert left, "the background sleep should still be in the cgroup"
    rt("delete", cid, check=True)
    assert not any(os.path.exists(d) for d in dirs)
    for pid in left:
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"


def test_kill_signals_init_without_loading_the_cgroup_managers(rt):
    """A plain signal to init (containerd's stop) needs no cgroup manager
    (no module of the cgroups package beyond its __init__); --all does."""
    import sys
    b = rt.bundle(["sleep", "30"])
    cid = rt.new_id()
    rt("create", "--bundle", b, cid, check=True)
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    def kill(*args):
        code = (f"import sys; sys.path.insert(0, {repo!r})\n"
                "from runtime import cli\n"
                f"rc = cli._dispatch(['--root', {rt.root!r}, 'kill', *{list(args)!r}])\n"
                "print(rc, any(m.startswith('runtime.cgroups.') for m in sys.modules))")
        return subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True)
    out = kill(cid, "CONT")
    assert out.stdout.split() == ["0", "False"], out.stderr
    out = kill("--all", cid, "KILL")
    assert out.stdout.split() == ["0", "True"], out.stderr
    _wait_status(rt, cid, "stopped")
    rt("delete", cid, check=True)


def test_status_of_a_running_or_paused_container_reads_the_freezer(rt):
    """`state`/`kill` of a running container read its freezer file without
    the cgroup managers (cgroups.surely_thawed); a paused one is still
    reported paused."""
    import sys
    b = rt.bundle(["sleep", "30"])
    cid = rt.new_id()
    rt("run", "-d", "--bundle", b, cid, check=True)
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = (f"import sys; sys.path.insert(0, {repo!r})\n"
            "from runtime import lifecycle\n"
            f"s = lifecycle.state({rt.root!r}, {cid!r})['status']\n"
            "print(s, any(m.startswith('runtime.cgroups.') for m in sys.modules))")

    def status():
        out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True)
        return out.stdout.split()
    assert status() == ["running", "False"]
    rt("pause", cid, check=True)
    assert status() == ["paused", "True"]
    rt("resume", cid, check=True)
    assert status() == ["running", "False"]
    rt("delete", "--force", cid, check=True)


def test_seccomp_profile_libseccomp_refuses_is_a_config_error(rt):
    """Checked by compiling it before any process exists: a one-line error
    naming the field, and nothing left behind (no state dir, no cgroup)."""
    def bad(cfg):
        cfg["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["getpid"], "action": "SCMP_ACT_ALLOW", "errnoRet": 5}]}
    b = rt.bundle(["true"], mutate=bad)
    cid = rt.new_id()
    p = rt("create", "--bundle", b, cid)
    assert p.returncode == 1
    assert p.stderr.strip() == ('linux.seccomp.syscalls[0].errnoRet: only valid with SCMP_ACT_ERRNO or '
                                'SCMP_ACT_TRACE, not "SCMP_ACT_ALLOW"')
    assert not os.path.exists(os.path.join(rt.root, cid))


def test_a_limit_the_kernel_refuses_fails_create_and_leaves_nothing(rt):
    """The limits are written while init prepares the rootfs (after stage1
    has joined the cgroup and forked init): a value the kernel refuses
    still fails create with the field named, and kills what was started."""
    def bad(cfg):
        cfg["linux"].setdefault("resources", {})["cpu"] = {"cpus": "0-63"}  # more CPUs than the host has
    b = rt.bundle(["true"], mutate=bad)
    cid = rt.new_id()
    p = rt("create", "--bundle", b, cid)
    assert p.returncode == 1
    assert "linux.resources.cpu.cpus" in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert not os.path.exists(os.path.join(rt.root, cid))
    left = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cgroup") as f:
                    if cid in f.read():
                        left.append(pid)
            except OSError:
                pass
    assert left == []
    for top in os.listdir("/sys/fs/cgroup"):
        for dirpath, dirs, _ in os.walk(os.path.join("/sys/fs/cgroup", top)):
            assert cid not in dirs, dirpath


def test_hooks_work_where_runc_runs_them(rt, tmp_path):
    """As runc's: prestart/createRuntime hooks in the runtime's own working
    directory, createContainer in the rootfs (runc's hooks.bats relies on
    it: `./lib/...`), startContainer in the process's cwd."""
    out = tmp_path / "out"
    out.mkdir()
    os.chmod(out, 0o777)

    def hook(name):
        return {"path": "/bin/sh", "args": ["sh", "-c", f"pwd > {out}/{name}" if name != "sc" else "pwd > /out/sc"]}

    def mutate(cfg):
        cfg["mounts"].append({"destination": "/out", "type": "bind", "source": str(out), "options": ["rbind"]})
        cfg["process"]["cwd"] = "/tmp"
        cfg["hooks"] = {"prestart": [hook("pre")], "createRuntime": [hook("cr")],
                        "createContainer": [hook("cc")], "startContainer": [hook("sc")]}
    b = rt.bundle(["true"], mutate=mutate)
    cid = rt.new_id()
    caller = tmp_path / "caller"
    caller.mkdir()
    rt("run", "--bundle", b, cid, check=True, cwd=str(caller))
    assert (out / "pre").read_text().strip() == str(caller)
    assert (out / "cr").read_text().strip() == str(caller)
    assert (out / "cc").read_text().strip() == os.path.realpath(rt.rootfs)
    assert (out / "sc").read_text().strip() == "/tmp"


def test_profile_refusing_faccessat2_and_openat2(rt):
    """The container's seccomp profile is in force when create checks that
    args[0] may be executed and reads HOME from /etc/passwd; a profile that
    refuses faccessat2 and openat2 (runtime-tools' default one does) changes
    neither answer: runc falls back the same way."""
    def mutate(cfg):
        cfg["process"]["env"] = [e for e in cfg["process"]["env"] if not e.startswith("HOME=")]
        cfg["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW",
                                   "syscalls": [{"names": ["faccessat2", "openat2"], "action": "SCMP_ACT_ERRNO",
                                                 "errnoRet": 1}]}
    b = rt.bundle(["sh", "-c", 'echo "home=$HOME"'], mutate=mutate)
    cid = rt.new_id()
    p = rt("run", "--bundle", b, cid)
    assert p.returncode == 0, p.stderr
    assert "home=/root" in p.stdout
    # still refused where the file is not executable: /etc/passwd has no x bit
    b = rt.bundle(["/etc/passwd"], mutate=mutate)
    p = rt("run", "--bundle", b, rt.new_id())
    assert p.returncode == 1 and 'exec: "/etc/passwd": permission denied' in p.stderr
