"""config.md#posix-platform-hooks and runtime.md#lifecycle: hook order, the
state on stdin, the namespaces hooks run in, and what a failing hook does."""
import json
import os
import time

from confutil import pid_alive

HOOK_TYPES = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")


def _log_hook(crt, kind, n, log):
    """A hook that appends "<kind>-<n>" to `log`. startContainer hooks run in
    the container (path resolves there): they write to /out, the container's
    view of crt.out."""
    if kind == "startContainer":
        return {"path": "/bin/sh", "args": ["sh", "-c", f"echo {kind}-{n} >> /out/{os.path.basename(log)}"]}
    return {"path": "/bin/sh", "args": ["sh", "-c", f"echo {kind}-{n} >> {log}"]}


def _read_lines(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return f.read().split()


def _wait_lines(path, n, timeout=20.0):
    deadline = time.monotonic() + timeout
    while len(_read_lines(path)) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return _read_lines(path)


def test_hooks_order_and_timing(crt):
    """config.md#posix-platform-hooks: "Hooks MUST be called in the listed order";
    prestart "MUST be called before the createRuntime hooks"; createContainer
    "MUST be called after the createRuntime hooks"; prestart, createRuntime and
    createContainer run "as part of the create operation"; startContainer "MUST
    be called before the user-specified process is executed as part of the start
    operation"; poststart "after the user-specified process is executed but before
    the start operation returns"; poststop "after the container is deleted but
    before the delete operation returns"."""
    log = os.path.join(crt.out, "log")
    hooks = {k: [_log_hook(crt, k, i, log) for i in (1, 2)] for k in HOOK_TYPES}
    b = crt.bundle(args=["sh", "-c", "echo process >> /out/log"],
                   mutate=lambda c: c.__setitem__("hooks", hooks))
    cid = crt.create_ok(b)
    lines = _read_lines(log)
    assert lines == ["prestart-1", "prestart-2", "createRuntime-1", "createRuntime-2",
                     "createContainer-1", "createContainer-2"], lines
    crt("start", cid, check=True)
    after_start = _read_lines(log)
    assert after_start[6:8] == ["startContainer-1", "startContainer-2"]
    assert "poststart-1" in after_start and "poststart-2" in after_start, after_start
    assert after_start.index("poststart-1") < after_start.index("poststart-2")
    lines = _wait_lines(log, 11)
    assert lines.index("startContainer-2") < lines.index("process")
    crt.wait_stopped(cid)
    assert "poststop-1" not in _read_lines(log)
    crt("delete", cid, check=True)
    lines = _read_lines(log)
    assert lines[-2:] == ["poststop-1", "poststop-2"]
    assert len(lines) == 13


def test_hooks_receive_state_on_stdin(crt):
    """config.md#posix-platform-hooks: "The state of the container MUST be passed
    to hooks over stdin"; runtime.md#state: "For hooks executed in the runtime
    namespace, it is the pid as seen by the runtime. For hooks executed in the
    container namespace, it is the pid as seen by the container"."""
    def hook(kind):
        dest = f"/out/{kind}.json" if kind == "startContainer" else os.path.join(crt.out, f"{kind}.json")
        return [{"path": "/bin/sh", "args": ["sh", "-c", f"cat > {dest}"]}]
    hooks = {k: hook(k) for k in HOOK_TYPES}
    ann = {"org.example.hook": "yes"}

    def mut(c):
        c["hooks"] = hooks
        c["annotations"] = ann
    b = crt.bundle(args=["sleep", "600"], mutate=mut)
    cid = crt.create_ok(b)
    pid = crt.state(cid)["pid"]
    crt("start", cid, check=True)
    crt("kill", cid, "KILL", check=True)
    crt.wait_stopped(cid)
    crt("delete", cid, check=True)
    states = {}
    for k in HOOK_TYPES:
        with open(os.path.join(crt.out, f"{k}.json")) as f:
            text = f.read()
        assert text.strip(), f"{k} hook got an empty stdin"
        states[k] = json.loads(text)
    for k, s in states.items():
        assert s["id"] == cid, k
        assert os.path.samefile(s["bundle"], b), k
        assert s["ociVersion"], k
        assert s.get("annotations") == ann, k
    for k in ("prestart", "createRuntime", "poststart"):
        assert states[k]["pid"] == pid, (k, states[k])
    # container-namespace hooks see the pid in the container's pid namespace
    for k in ("createContainer", "startContainer"):
        assert states[k]["pid"] == 1, (k, states[k])
    assert states["poststart"]["status"] == "running"
    assert states["poststop"]["status"] == "stopped"


def test_hook_namespaces(crt):
    """config.md#posix-platform-hooks: createRuntime (and prestart, poststart,
    poststop) "MUST be executed in the runtime namespace"; createContainer and
    startContainer "MUST be executed in the container namespace"."""
    def hook(kind):
        where = "/out" if kind == "startContainer" else crt.out
        cmd = f"for n in mnt uts net ipc pid; do readlink /proc/self/ns/$n; done > {where}/{kind}.ns"
        return [{"path": "/bin/sh", "args": ["sh", "-c", cmd]}]
    hooks = {k: hook(k) for k in HOOK_TYPES}
    cid = crt.create_ok(crt.bundle(args=["sleep", "600"], mutate=lambda c: c.__setitem__("hooks", hooks)))
    pid = crt.state(cid)["pid"]
    crt("start", cid, check=True)
    container = [os.readlink(f"/proc/{pid}/ns/{n}") for n in ("mnt", "uts", "net", "ipc", "pid")]
    host = [os.readlink(f"/proc/self/ns/{n}") for n in ("mnt", "uts", "net", "ipc", "pid")]
    crt("kill", cid, "KILL", check=True)
    crt.wait_stopped(cid)
    crt("delete", cid, check=True)
    seen = {}
    for k in HOOK_TYPES:
        with open(os.path.join(crt.out, f"{k}.ns")) as f:
            seen[k] = f.read().split()
    for k in ("prestart", "createRuntime", "poststart", "poststop"):
        assert seen[k] == host, k
    for k in ("createContainer", "startContainer"):
        assert seen[k] == container, k


def test_hook_path_resolution(crt, probe_bin):
    """config.md#posix-platform-hooks: createContainer hooks' "path MUST resolve in
    the runtime namespace"; startContainer hooks' "path MUST resolve in the
    container namespace". The probe exists at a host-only path and at /bin/probe
    only inside the container."""
    hooks = {
        "createContainer": [{"path": probe_bin, "args": ["probe", "-o", os.path.join(crt.out, "cc.json")]}],
        "startContainer": [{"path": "/bin/probe", "args": ["probe", "-o", "/out/sc.json"]}],
    }
    assert not os.path.exists("/bin/probe")
    cid = crt.create_ok(crt.bundle(args=["true"], mutate=lambda c: c.__setitem__("hooks", hooks)))
    crt("start", cid, check=True)
    crt.wait_stopped(cid)
    with open(os.path.join(crt.out, "cc.json")) as f:
        cc = json.load(f)
    with open(os.path.join(crt.out, "sc.json")) as f:
        sc = json.load(f)
    assert cc["ns"]["uts"] == sc["ns"]["uts"] != os.stat("/proc/self/ns/uts").st_ino


def test_hook_args_and_env(crt, probe_bin):
    """config.md#posix-platform-hooks: args and env "with the same semantics as
    IEEE Std 1003.1-2008 execv" / "environ" - argv[0] is args[0] (not path), the
    environment is exactly the configured list."""
    out = os.path.join(crt.out, "argenv.json")
    env = ["HOOKVAR=hello world", "PATH=/usr/bin:/bin"]
    hooks = {"createRuntime": [{"path": probe_bin, "args": ["custom-argv0", "-o", out], "env": env}]}
    crt.create_ok(crt.bundle(args=["true"], mutate=lambda c: c.__setitem__("hooks", hooks)))
    with open(out) as f:
        seen = json.load(f)
    assert seen["argv"] == ["custom-argv0", "-o", out]
    assert seen["env"] == env


def _failing_hook_lifecycle(crt, kind):
    marker = os.path.join(crt.out, "ran")
    poststop = os.path.join(crt.out, "poststop")
    fail = {"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]}
    hooks = {kind: [fail], "poststop": [{"path": "/bin/sh", "args": ["sh", "-c", f"echo ran >> {poststop}"]}]}
    b = crt.bundle(args=["sh", "-c", "echo ran > /out/ran; sleep 600"],
                   mutate=lambda c: c.__setitem__("hooks", hooks))
    return b, marker, poststop


def _assert_create_hook_failure(crt, kind):
    b, marker, poststop = _failing_hook_lifecycle(crt, kind)
    cid, p = crt.create(b)
    assert p.returncode != 0, f"create succeeded although a {kind} hook failed"
    # "stop the container, and continue the lifecycle at step 12": destroyed,
    # then poststop hooks run; the user program never ran.
    s = crt("state", cid)
    assert s.returncode != 0, f"container still exists after failed {kind} hook: {s.stdout}"
    assert not os.path.exists(marker)
    assert _read_lines(poststop) == ["ran"], "poststop hooks did not run (lifecycle step 13)"


def test_prestart_hook_failure(crt):
    """runtime.md#lifecycle step 3: "If any prestart hook fails, the runtime MUST
    generate an error, stop the container, and continue the lifecycle at step 12"."""
    _assert_create_hook_failure(crt, "prestart")


def test_create_runtime_hook_failure(crt):
    """runtime.md#lifecycle step 4: "If any createRuntime hook fails, the runtime
    MUST generate an error, stop the container, and continue the lifecycle at
    step 12"."""
    _assert_create_hook_failure(crt, "createRuntime")


def test_create_container_hook_failure(crt):
    """runtime.md#lifecycle step 5: "If any createContainer hook fails, the
    runtime MUST generate an error, stop the container, and continue the
    lifecycle at step 12"."""
    _assert_create_hook_failure(crt, "createContainer")


def _assert_start_hook_failure(crt, kind):
    b, marker, poststop = _failing_hook_lifecycle(crt, kind)
    cid = crt.create_ok(b)
    pid = crt.state(cid)["pid"]
    p = crt("start", cid)
    assert p.returncode != 0, f"start succeeded although a {kind} hook failed"
    # the container is stopped (step 12 destroys it; a runtime may keep the
    # record until delete): its process is gone and the program did not run on
    deadline = time.monotonic() + 20
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(pid), f"container process still alive after failed {kind} hook"
    s = crt("state", cid)
    if s.returncode == 0:
        assert json.loads(s.stdout)["status"] == "stopped"
        crt("delete", cid, check=True)
    assert _read_lines(poststop) == ["ran"], "poststop hooks did not run (lifecycle step 13)"
    return marker


def test_start_container_hook_failure(crt):
    """runtime.md#lifecycle step 7: "If any startContainer hook fails, the
    runtime MUST generate an error, stop the container, and continue the
    lifecycle at step 12" - the user program does not run."""
    marker = _assert_start_hook_failure(crt, "startContainer")
    assert not os.path.exists(marker)


def test_poststart_hook_failure(crt):
    """runtime.md#lifecycle step 9: "If any poststart hook fails, the runtime
    MUST generate an error, stop the container, and continue the lifecycle at
    step 12"."""
    _assert_start_hook_failure(crt, "poststart")


def test_poststop_hook_failure_is_a_warning(crt):
    """runtime.md#lifecycle step 13: "If any poststop hook fails, the runtime
    MUST log a warning, but the remaining hooks and lifecycle continue as if the
    hook had succeeded"."""
    after = os.path.join(crt.out, "after")
    hooks = {"poststop": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 7"]},
                          {"path": "/bin/sh", "args": ["sh", "-c", f"echo ran > {after}"]}]}
    cid = crt.create_ok(crt.bundle(args=["true"], mutate=lambda c: c.__setitem__("hooks", hooks)))
    crt("start", cid, check=True)
    crt.wait_stopped(cid)
    p = crt("delete", cid)
    assert p.returncode == 0, p.stderr
    assert os.path.exists(after), "the hook after the failing poststop hook did not run"
    assert crt("state", cid).returncode != 0
    assert p.stderr.strip(), "no warning logged for the failing poststop hook"


def test_hook_timeout(crt):
    """config.md#posix-platform-hooks: timeout "is the number of seconds before
    aborting the hook"; an aborted createRuntime hook is a failed hook, so create
    MUST generate an error and leave no container (runtime.md#lifecycle step 4)."""
    hooks = {"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "exec sleep 30"], "timeout": 1}]}
    cid, p = crt.create(crt.bundle(args=["true"], mutate=lambda c: c.__setitem__("hooks", hooks)), timeout=25)
    assert p.returncode != 0
    assert crt("state", cid).returncode != 0


def test_create_hooks_run_after_mounts_before_pivot_root(crt):
    """config.md#posix-platform-hooks: prestart, createRuntime and createContainer
    hooks "MUST be called as part of the create operation after the runtime
    environment has been created (according to the configuration in
    config.json) but before the pivot_root or any equivalent operation has been
    executed" - at that point the container's mount namespace already has its
    /proc mount, still below the rootfs path (not yet at /); startContainer
    runs after the pivot."""
    def dump(kind):
        if kind == "startContainer":
            return {"path": "/bin/sh", "args": ["sh", "-c", "cat /proc/self/mountinfo > /out/startContainer.mi"]}
        # the container's mount namespace: the hook's own for createContainer,
        # the state pid's for the runtime-namespace hooks
        src = "/proc/self/mountinfo" if kind == "createContainer" else \
            "/proc/$(sed -n 's/.*\"pid\": *\\([0-9]*\\).*/\\1/p')/mountinfo"
        return {"path": "/bin/sh", "args": ["sh", "-c", f"cat {src} > {crt.out}/{kind}.mi"]}
    kinds = ("prestart", "createRuntime", "createContainer", "startContainer")
    hooks = {k: [dump(k)] for k in kinds}
    cid = crt.create_ok(crt.bundle(args=["true"], mutate=lambda c: c.__setitem__("hooks", hooks)))
    crt("start", cid, check=True)
    crt.wait_stopped(cid)
    for k in kinds:
        with open(os.path.join(crt.out, f"{k}.mi")) as f:
            text = f.read()
        procs = [ln.split()[4] for ln in text.splitlines() if " - proc " in ln]
        if k == "startContainer":
            assert "/proc" in procs, (k, procs)
        else:
            below = [p for p in procs if p.endswith("/proc") and p != "/proc"]
            assert below, f"{k}: no container /proc mounted below the rootfs yet: {procs}"
