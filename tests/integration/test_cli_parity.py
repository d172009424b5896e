"""pyrunc's command line where runc 1.1.5's own integration tests
(tests/integration/*.bats) check its output, exit status or effect."""
import json
import os
import re
import time

import pytest

from runtime.state import read_file as read_state


def _wait_status(rt, cid, want, timeout=10):
    rt.wait_status(cid, want, timeout)


def _cgroup(rt, cid) -> dict:
    return read_state(os.path.join(rt.root, cid))["cgroup"]


def _cgroup_dirs(rt, cid) -> list[str]:
    cg = _cgroup(rt, cid)
    if cg["version"] == "v2":
        return [cg["path"]]
    return list(dict.fromkeys(cg["paths"].values())) + ([cg["unified"]] if cg.get("unified") else [])


def _no_pid_ns(cfg):
    cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "pid"]


# --- list.bats, events.bats: Go's compact JSON ---------------------------------

def test_list_json_is_runc_s(rt):
    b = rt.bundle(["sleep", "60"], mutate=lambda c: c.update(annotations={"b": "2", "a": "1"}))
    ids = sorted([rt.new_id(), rt.new_id()])
    for cid in ids:
        rt("run", "-d", "--bundle", b, cid, check=True)
    out = rt("list", "--format", "json", check=True).stdout
    assert out.count("\n") == 1 and ", " not in out and '": ' not in out
    items = json.loads(out)
    assert [c["id"] for c in items] == ids
    for c in items:
        assert list(c) == ["ociVersion", "id", "pid", "status", "bundle", "rootfs", "created", "annotations",
                           "owner"]
        assert list(c["annotations"]) == ["a", "b"]
        assert c["status"] == "running" and c["bundle"] == b and c["owner"] == "root"
    # the line runc's list.bats matches, in its shape
    assert re.match(r'\[\{"ociVersion":"[0-9.]+","id":"%s","pid":[0-9]+,"status":"running","bundle":"%s",'
                    r'"rootfs":"[^"]*","created":"[^"]+"' % (ids[0], b), out)


def test_list_json_of_no_containers_is_null(rt):
    os.makedirs(rt.root, exist_ok=True)
    assert rt("list", "--format", "json", check=True).stdout == "null\n"


def test_list_table_is_runc_s(rt):
    b = rt.bundle(["sleep", "60"])
    cid = rt.new_id()
    rt("run", "-d", "--bundle", b, cid, check=True)
    lines = rt("list", check=True).stdout.splitlines()
    assert re.match(r"ID +PID +STATUS +BUNDLE +CREATED +OWNER$", lines[0])
    assert re.match(rf"{cid} +[0-9]+ +running +{b} +[0-9T:.-]+Z +root$", lines[1])
    assert lines[0].index("PID") == max(12, len(cid) + 3)  # tabwriter: minimum width 12, padding 3
    p = rt("list", "--format", "xml")
    assert p.returncode == 1 and "invalid format option" in p.stderr


def test_events_stats_is_one_compact_line(rt):
    b = rt.bundle(["sleep", "60"])
    cid = rt.new_id()
    rt("run", "-d", "--bundle", b, cid, check=True)
    out = rt("events", "--stats", cid, check=True).stdout
    assert out.startswith('{"type":"stats","id":"%s","data":{' % cid) and out.count("\n") == 1
    assert ", " not in out and '": ' not in out
    data = json.loads(out)["data"]
    assert list(data) == ["cpu", "cpuset", "memory", "pids", "blkio", "hugetlb", "intel_rdt", "network_interfaces"]
    raw = data["memory"].get("raw") or {}
    assert list(raw) == sorted(raw)
    rt("kill", cid, "KILL", check=True)
    _wait_status(rt, cid, "stopped")
    p = rt("events", "--stats", cid)
    assert p.returncode == 1 and f"container with id {cid} is not running" in p.stderr

def test_state_is_runc_s_indented_json_without_a_final_newline(rt):
    b = rt.bundle(["sleep", "60"], mutate=lambda c: c.update(annotations={"z": "1", "a": "2"}))
    cid = rt.new_id()
    rt("create", "--bundle", b, cid, check=True)
    out = rt("state", cid, check=True).stdout
    assert out.startswith('{\n  "ociVersion": "') and out.endswith('\n  "owner": ""\n}')
    st = json.loads(out)
    assert list(st) == ["ociVersion", "id", "pid", "status", "bundle", "rootfs", "created", "annotations", "owner"]
    assert list(st["annotations"]) == ["a", "z"]


# --- events.bats: --interval is a Go duration ----------------------------------

def test_events_interval_takes_go_durations(rt):
    b = rt.bundle(["sleep", "60"])
    cid = rt.new_id()
    rt("run", "-d", "--bundle", b, cid, check=True)
    p = rt("events", "--interval", "0s", cid)
    assert p.returncode == 1 and "duration interval must be greater than 0" in p.stderr
    p = rt("events", "--interval", "fast", cid)
    assert p.returncode == 1 and 'invalid value "fast" for flag -interval' in p.stderr


# --- dev.bats: device access strings as runc takes them -----------------------------

@pytest.mark.parametrize("access,opens", [("rwa", True), ("wr", True), ("rw", True), ("m", False), (None, False)])
def test_device_access_strings(rt, access, opens):
    """/dev/fuse (not among runc's default devices) listed in linux.devices:
    the node is made, the device rules decide whether it opens (dev.bats:
    a listed device is denied by a deny-all rule, allowed by "rw")."""
    def m(cfg):
        cfg["linux"]["devices"] = [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]
        rules = [{"allow": False, "access": "rwm"}]
        if access:
            rules.append({"allow": True, "type": "c", "major": 10, "minor": 229, "access": access})
        cfg["linux"]["resources"] = {"devices": rules}
    b = rt.bundle(["sh", "-c", "exec 3</dev/fuse && echo opened"], mutate=m)
    p = rt("run", "--bundle", b, rt.new_id())
    if opens:
        assert p.returncode == 0 and p.stdout.strip() == "opened", p.stderr
    else:
        assert p.returncode != 0 and "Operation not permitted" in p.stdout + p.stderr


# --- exec.bats: exit statuses ----------------------------------------------------

def test_exec_exit_statuses(rt, tmp_path):
    b = rt.bundle(["sleep", "60"])
    cid = rt.new_id()
    rt("run", "-d", "--bundle", b, cid, check=True)
    assert rt("exec", cid, "false").returncode == 1
    assert rt("exec", cid, "sh", "-c", "exit 42").returncode == 42
    p = rt("exec", "--pid-file", "/non-existent/directory", cid, "true")
    assert p.returncode == 255 and p.stderr.startswith("exec failed: ")
    p = rt("exec", cid, "no-such-binary")
    assert p.returncode == 255 and "no-such-binary" in p.stderr
    p = rt("exec", "no_such_container", "true")
    assert p.returncode == 255 and 'container "no_such_container" does not exist' in p.stderr
    p = rt("exec", cid, "ls", "-h", "/")  # -h after the command is the command's
    assert p.returncode == 0 and "NAME:" not in p.stdout


# --- error wording where runc has one ---------------------------------------------

def test_missing_and_duplicate_container_wording(rt):
    p = rt("state", "nope")
    assert p.returncode == 1 and p.stderr == 'container "nope" does not exist\n'
    b = rt.bundle(["sleep", "60"])
    cid = rt.new_id()
    rt("create", "--bundle", b, cid, check=True)
    p = rt("create", "--bundle", b, cid)
    assert p.returncode == 1 and f'container with id "{cid}" already exists' in p.stderr
    p = rt("state", "a/b")
    assert p.returncode == 1 and p.stderr.startswith('invalid container ID format: "a/b"')
    p = rt("state", "")
    assert p.returncode == 1 and p.stderr == "container id cannot be empty\n"


def test_comma_is_a_valid_id_character_as_in_runc(rt):
    b = rt.bundle(["true"])
    cid = rt.new_id() + ",x"
    rt.ids.append(cid)
    rt("run", "--bundle", b, cid, check=True)


def test_kill_and_start_wording(rt):
    b = rt.bundle(["sleep", "60"])
    cid = rt.new_id()
    rt("run", "-d", "--bundle", b, cid, check=True)
    p = rt("kill", cid, "FOO")
    assert p.returncode == 1 and p.stderr == 'unknown signal "FOO"\n'
    p = rt("start", cid)
    assert p.returncode == 1 and p.stderr == "cannot start an already running container\n"
    rt("kill", cid, "KILL", check=True)
    _wait_status(rt, cid, "stopped")
    p = rt("start", cid)
    assert p.returncode == 1 and p.stderr == "cannot start a container that has stopped\n"


# --- kill.bats and containerd's shim: kill --all once init is gone ------------

def test_kill_all_of_a_stopped_container_succeeds(rt):
    b = rt.bundle(["sleep", "60"])
    cid = rt.new_id()
    rt("run", "-d", "--bundle", b, cid, check=True)
    rt("kill", cid, "KILL", check=True)
    _wait_status(rt, cid, "stopped")
    p = rt("kill", "-a", cid, "0")
    assert p.returncode == 0, p.stderr
    p = rt("kill", cid, "0")
    assert p.returncode == 1 and "container not running" in p.stderr
    rt("delete", cid, check=True)


def test_kill_all_signals_what_init_left_in_the_cgroup(rt):
    """A container sharing the host's pid namespace: its init exits, the
    background sleep stays in the cgroup; kill --all KILL ends it."""
    b = rt.bundle(["sh", "-c", "sleep 60 >/dev/null 2>&1 </dev/null & exit 0"], mutate=_no_pid_ns)
    cid = rt.new_id()
    rt("create", "--bundle", b, cid, check=True)
    rt("start", cid, check=True)
    _wait_status(rt, cid, "stopped")
    left = json.loads(rt("ps", "--format", "json", cid, check=True).stdout)
    assert left, "the background sleep should still be in the cgroup"
    p = rt("kill", "--all", cid, "KILL")
    assert p.returncode == 0, p.stderr
    end = time.monotonic() + 10
    while json.loads(rt("ps", "--format", "json", cid, check=True).stdout) and time.monotonic() < end:
        time.sleep(0.02)
    assert json.loads(rt("ps", "--format", "json", cid, check=True).stdout) == []
    for pid in left:
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    rt("delete", cid, check=True)


def test_kill_all_keeps_a_paused_container_paused(rt):
    b = rt.bundle(["sh", "-c", "trap '' USR1; sleep 60 & wait"])
    cid = rt.new_id()
    rt("run", "-d", "--bundle", b, cid, check=True)
    rt("pause", cid, check=True)
    rt("kill", "--all", cid, "USR1", check=True)
    assert rt.state(cid)["status"] == "paused"
    rt("kill", "--all", cid, "KILL", check=True)
    _wait_status(rt, cid, "stopped")


# --- run.bats: run --keep ------------------------------------------------------

def test_run_keep_leaves_the_stopped_container_and_its_cgroup(rt):
    b = rt.bundle(["echo", "Hello World"])
    cid = rt.new_id()
    p = rt("run", "--keep", "--bundle", b, cid)
    assert p.returncode == 0, p.stderr
    st = rt.state(cid)
    assert st["status"] == "stopped" and st["pid"] == 0
    dirs = _cgroup_dirs(rt, cid)
    assert dirs and all(os.path.isdir(d) for d in dirs)
    rt("delete", cid, check=True)
    assert rt("state", cid).returncode != 0
    assert not any(os.path.exists(d) for d in dirs)


def test_run_without_keep_deletes(rt):
    b = rt.bundle(["true"])
    cid = rt.new_id()
    rt("run", "--bundle", b, cid, check=True)
    assert rt("state", cid).returncode != 0


# --- exec.bats: exec --cgroup (cgroup v1 / hybrid) ------------------------------

def _v1_only(rt, cid):
    if _cgroup(rt, cid)["version"] == "v2":
        pytest.skip("the per-controller cases need cgroup v1 hierarchies")


def test_exec_cgroup_refusals(rt):
    b = rt.bundle(["sleep", "60"])
    cid = rt.new_id()
    rt("run", "-d", "--bundle", b, cid, check=True)
    _v1_only(rt, cid)
    p = rt("exec", "--cgroup", "..", cid, "cat", "/proc/self/cgroup")
    assert p.returncode == 255 and " .. is not a sub cgroup path" in p.stderr
    p = rt("exec", "--cgroup", "nonexistent", cid, "cat", "/proc/self/cgroup")
    assert p.returncode == 255
    assert re.search(r" adding pid .*/nonexistent/cgroup\.procs: no such file ", p.stderr), p.stderr
    p = rt("exec", "--cgroup", "cpu:nonexistent", cid, "cat", "/proc/self/cgroup")
    assert p.returncode == 255
    assert re.search(r" adding pid .*/nonexistent/cgroup\.procs: no such file ", p.stderr), p.stderr
    p = rt("exec", "--cgroup", "whaaat:/", cid, "true")
    assert p.returncode == 255 and "unknown controller " in p.stderr
    # nothing was left running from the refused calls
    assert json.loads(rt("ps", "--format", "json", cid, check=True).stdout) == [rt.state(cid)["pid"]]


def test_exec_cgroup_joins_sub_cgroups(rt):
    b = rt.bundle(["sleep", "60"])
    cid = rt.new_id()
    rt("run", "-d", "--bundle", b, cid, check=True)
    _v1_only(rt, cid)
    paths = _cgroup(rt, cid)["paths"]
    made = []
    try:
        for ctrl, sub in (("memory", "submem"), ("cpu", "subcpu"), ("cpuacct", "subcpu")):
            d = os.path.join(paths[ctrl], sub)
            if not os.path.isdir(d):
                os.mkdir(d)
                made.append(d)
        # a process in the host's cgroup namespace sees the host's paths
        code = ("cat /proc/self/cgroup")
        top = rt("exec", "--cgroup", "/", cid, "sh", "-c", code, check=True).stdout
        out = rt("exec", "--cgroup", "memory:submem", "--cgroup", "cpu,cpuacct:subcpu", cid,
                 "sh", "-c", code, check=True).stdout
        mem = [x for x in out.splitlines() if x.split(":")[1] == "memory"][0]
        cpu = [x for x in out.splitlines() if "cpu" in x.split(":")[1].split(",") and "cpuset" not in x][0]
        assert mem.endswith("/submem") and cpu.endswith("/subcpu"), out
        # the other hierarchies are the container's own, as without --cgroup
        others = {x.split(":")[1]: x.split(":")[2] for x in out.splitlines() if "pids" in x or "freezer" in x}
        assert others == {x.split(":")[1]: x.split(":")[2] for x in top.splitlines()
                          if "pids" in x or "freezer" in x}
    finally:
        rt("kill", cid, "KILL")
        _wait_status(rt, cid, "stopped")
        for d in made:
            for _ in range(200):
                try:
                    os.rmdir(d)
                    break
                except OSError:
                    time.sleep(0.02)


# --- debug.bats, exec.bats: --debug, --log, --log-format ---------------------

RUN_DEBUG = ("nsexec container setup", "child process in init()", "init: closing the pipe to signal completion")
EXEC_DEBUG = ("nsexec container setup", "child process in init()", "setns_init: about to exec")


def test_debug_run_writes_runc_s_debug_lines_to_stderr(rt):
    b = rt.bundle(["echo", "Hello World"])
    p = rt("--debug", "run", "--bundle", b, rt.new_id())
    assert p.returncode == 0, p.stderr
    assert "Hello World" in p.stdout
    assert "level=debug" in p.stderr
    for words in RUN_DEBUG:
        assert words in p.stderr, words
    assert re.search(r'^time="[^"]+" level=debug msg="process exited" pid=\d+ status=0$', p.stderr, re.M), p.stderr


@pytest.mark.parametrize("fmt", [None, "text", "json"])
def test_debug_with_log_goes_to_the_file_not_stderr(rt, tmp_path, fmt):
    logf = tmp_path / "log.out"
    b = rt.bundle(["echo", "Hello World"])
    extra = ["--log-format", fmt] if fmt else []
    p = rt("--log", str(logf), *extra, "--debug", "run", "--bundle", b, rt.new_id())
    assert p.returncode == 0, p.stderr
    assert "level=debug" not in p.stderr and '"level":"debug"' not in p.stderr
    text = logf.read_text()
    assert ('"level":"debug"' if fmt == "json" else "level=debug") in text
    for words in RUN_DEBUG:
        assert words in text, words
    if fmt == "json":
        lines = [json.loads(x) for x in text.splitlines()]
        assert all(list(d) == sorted(d) and d["level"] == "debug" for d in lines)


def test_debug_exec_writes_runc_s_exec_lines(rt, tmp_path):
    b = rt.bundle(["sleep", "60"])
    cid = rt.new_id()
    rt("run", "-d", "--bundle", b, cid, check=True)
    p = rt("--debug", "exec", cid, "true")
    assert p.returncode == 0, p.stderr
    assert "level=debug" in p.stderr
    for words in EXEC_DEBUG:
        assert words in p.stderr, words
    logf = tmp_path / "log.out"
    p = rt("--debug", "--log", str(logf), "exec", cid, "true")
    assert p.returncode == 0 and "level=debug" not in p.stderr
    for words in EXEC_DEBUG:
        assert words in logf.read_text(), words


def test_no_debug_lines_without_debug(rt, tmp_path):
    logf = tmp_path / "log.out"
    b = rt.bundle(["true"])
    p = rt("--log", str(logf), "run", "--bundle", b, rt.new_id())
    assert p.returncode == 0 and p.stderr == ""
    assert not logf.exists() or "debug" not in logf.read_text()


# --- checkpoint.bats: "checkpoint --pre-dump (bad --parent-path)" -------------

def test_checkpoint_checks_its_paths_then_says_it_is_not_supported(rt, tmp_path):
    b = rt.bundle(["sleep", "60"])
    cid = rt.new_id()
    rt("run", "-d", "--bundle", b, cid, check=True)
    p = rt("checkpoint", "--parent-path", str(tmp_path / "parent"), "--image-path", str(tmp_path / "img"), cid)
    assert p.returncode != 0 and "--parent-path must be relative" in p.stderr
    p = rt("checkpoint", "--parent-path", "./parent", "--image-path", str(tmp_path / "img"), cid)
    assert p.returncode != 0 and "invalid --parent-path" in p.stderr
    p = rt("checkpoint", "--image-path", str(tmp_path / "img"), cid)
    assert p.returncode != 0 and p.stderr.strip().endswith("checkpoint is not supported by pyrunc (no CRIU integration)")
    assert rt.state(cid)["status"] == "running"
    rt("delete", "--force", cid, check=True)
    p = rt("checkpoint", cid)
    assert p.returncode != 0 and f'container "{cid}" does not exist' in p.stderr
