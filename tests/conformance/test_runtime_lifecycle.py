"""runtime.md: state, lifecycle, operations and their errors.

Every test names the runtime-spec section (and quotes the requirement) it
checks; tests/conformance/README.md has the table.
"""
import json
import os
import re
import signal
import time

import jsonschema
import pytest

from confutil import pid_alive

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEMVER = re.compile(r"^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")

SLEEP = ["sleep", "600"]


def _state_schema():
    with open(os.path.join(REPO, "specs", "state-schema.json")) as f:
        return json.load(f)


def _wait_for(path, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    return os.path.exists(path)


# --- State ------------------------------------------------------------------

def test_state_after_create(crt):
    """runtime.md#state: ociVersion (SemVer), id, status `created`, pid (REQUIRED
    when created on Linux), bundle ("the absolute path to the container's bundle
    directory"); "the format MUST adhere to the JSON Schema state-schema.json"."""
    b = crt.bundle(args=SLEEP)
    cid = crt.create_ok(b)
    s = crt.state(cid)
    jsonschema.validate(s, _state_schema())
    assert SEMVER.match(s["ociVersion"]), s
    assert s["id"] == cid
    assert s["status"] == "created"
    assert isinstance(s["pid"], int) and s["pid"] > 0 and pid_alive(s["pid"])
    assert os.path.isabs(s["bundle"]) and os.path.samefile(s["bundle"], b)


def test_state_running_then_stopped(crt):
    """runtime.md#state: `running` once the user program was executed, `stopped`
    once the container process exited; state of a running container has its pid."""
    cid = crt.create_ok(crt.bundle(args=SLEEP))
    crt("start", cid, check=True)
    s = crt.state(cid)
    jsonschema.validate(s, _state_schema())
    assert s["status"] == "running" and pid_alive(s["pid"])
    crt("kill", cid, "KILL", check=True)
    s = crt.wait_stopped(cid)
    assert s["status"] == "stopped"
    jsonschema.validate(s, _state_schema())


def test_state_annotations(crt):
    """runtime.md#state: annotations "contains the list of annotations associated
    with the container" - the config's annotations are reported in the state."""
    ann = {"org.example.key": "value", "com.example.other": "x y z"}
    cid = crt.create_ok(crt.bundle(args=SLEEP, mutate=lambda c: c.__setitem__("annotations", ann)))
    assert crt.state(cid).get("annotations") == ann


def test_query_state_nonexistent(crt):
    """runtime.md#query-state: "Attempting to query a container that does not
    exist MUST generate an error"."""
    p = crt("state", "no-such-container-" + crt.new_id())
    assert p.returncode != 0


def test_query_state_without_id(crt):
    """runtime.md#query-state: "This operation MUST generate an error if it is
    not provided the ID of a container"."""
    assert crt("state").returncode != 0


# --- Create -----------------------------------------------------------------

def test_create_does_not_run_program(crt):
    """runtime.md#lifecycle step 2: "the user-specified program (from process)
    MUST NOT be run at this time"; runtime.md#create: "process.args MUST NOT be
    applied until triggered by the start operation"; runtime.md#start: "This
    operation MUST run the user-specified program"."""
    marker = os.path.join(crt.out, "ran")
    cid = crt.create_ok(crt.bundle(args=["sh", "-c", "echo ran > /out/ran; sleep 600"]))
    time.sleep(0.3)  # give a wrongly started program a chance to show itself
    assert not os.path.exists(marker), "process.args ran during create"
    assert crt.state(cid)["status"] == "created"
    crt("start", cid, check=True)
    assert _wait_for(marker), "start did not run the program"


def test_create_same_id_twice(crt):
    """runtime.md#create: "If the ID provided is not unique across all containers
    within the scope of the runtime ... the implementation MUST generate an error
    and a new container MUST NOT be created"; runtime.md#errors: the error "MUST
    leave the state of the environment as if the operation were never attempted"."""
    b1 = crt.bundle(args=SLEEP)
    cid = crt.create_ok(b1)
    before = crt.state(cid)
    b2 = crt.bundle(args=SLEEP)
    _, p = crt.create(b2, cid)
    assert p.returncode != 0
    after = crt.state(cid)
    assert after["pid"] == before["pid"] and after["status"] == "created"
    assert os.path.samefile(after["bundle"], b1)


@pytest.mark.parametrize("bad_id", ["../escape", "a/b", "", "."])
def test_create_invalid_id(crt, bad_id):
    """runtime.md#create: an ID "not valid in any other way" MUST generate an
    error and no container is created."""
    b = crt.bundle(args=SLEEP)
    p = crt("create", "--bundle", b, bad_id)
    assert p.returncode != 0
    p = crt("list", "-q")
    assert p.stdout.strip() == ""
    assert not os.path.exists(os.path.join(crt.tmp, "escape"))


def test_create_without_id(crt):
    """runtime.md#create: "This operation MUST generate an error if it is not
    provided a path to the bundle and the container ID"."""
    b = crt.bundle(args=SLEEP)
    assert crt("create", "--bundle", b).returncode != 0
    assert crt("list", "-q").stdout.strip() == ""


def test_create_bad_bundle(crt):
    """runtime.md#create: MUST generate an error without a (valid) bundle."""
    cid = crt.new_id()
    assert crt("create", "--bundle", os.path.join(crt.tmp, "nonexistent"), cid).returncode != 0
    assert crt("state", cid).returncode != 0


def test_create_failure_leaves_nothing(crt):
    """runtime.md#create: "If the runtime cannot apply a property as specified in
    the configuration, it MUST generate an error and a new container MUST NOT be
    created"; runtime.md#errors: "generating an error MUST leave the state of the
    environment as if the operation were never attempted"."""
    def bad_mount(cfg):
        cfg["mounts"].append({"destination": "/mnt", "type": "bind",
                              "source": os.path.join(crt.tmp, "does-not-exist"), "options": ["bind"]})
    cid, p = crt.create(crt.bundle(args=SLEEP, mutate=bad_mount))
    assert p.returncode != 0
    assert crt("state", cid).returncode != 0
    assert crt("list", "-q").stdout.strip() == ""


def test_config_changes_after_create_have_no_effect(crt):
    """runtime.md#lifecycle step 2: "Any updates to config.json after this step
    MUST NOT affect the container"."""
    b = crt.bundle(args=["sh", "-c", "echo \"$0 $(hostname)\" > /out/which", "original"],
                   mutate=lambda c: c.__setitem__("hostname", "before"))
    cid = crt.create_ok(b)
    path = os.path.join(b, "config.json")
    with open(path) as f:
        cfg = json.load(f)
    cfg["process"]["args"] = ["sh", "-c", "echo \"$0 $(hostname)\" > /out/which", "changed"]
    cfg["hostname"] = "after"
    with open(path, "w") as f:
        json.dump(cfg, f)
    crt("start", cid, check=True)
    crt.wait_stopped(cid)
    with open(os.path.join(crt.out, "which")) as f:
        assert f.read().strip() == "original before"


# --- Start ------------------------------------------------------------------

def test_start_running_container_errors(crt):
    """runtime.md#start: "Attempting to start a container that is not created
    MUST have no effect on the container and MUST generate an error"."""
    cid = crt.create_ok(crt.bundle(args=SLEEP))
    crt("start", cid, check=True)
    pid = crt.state(cid)["pid"]
    assert crt("start", cid).returncode != 0
    s = crt.state(cid)
    assert s["status"] == "running" and s["pid"] == pid and pid_alive(pid)


def test_start_stopped_container_errors(crt):
    """runtime.md#start: starting a `stopped` container MUST generate an error
    and have no effect (it stays stopped; the program does not run again)."""
    cid = crt.create_ok(crt.bundle(args=["sh", "-c", "echo x >> /out/count"]))
    crt("start", cid, check=True)
    assert crt.wait_stopped(cid)["status"] == "stopped"
    assert crt("start", cid).returncode != 0
    assert crt.state(cid)["status"] == "stopped"
    with open(os.path.join(crt.out, "count")) as f:
        assert f.read() == "x\n"


def test_start_nonexistent_and_without_id(crt):
    """runtime.md#start: "This operation MUST generate an error if it is not
    provided the container ID" (and for an unknown ID)."""
    assert crt("start").returncode != 0
    assert crt("start", "nope-" + crt.new_id()).returncode != 0


def test_start_without_process(crt):
    """runtime.md#start: "This operation MUST generate an error if process was
    not set" (a runtime may already refuse such a bundle at create)."""
    b = crt.bundle(mutate=lambda c: c.pop("process"))
    cid, p = crt.create(b)
    if p.returncode == 0:
        assert crt("start", cid).returncode != 0


# --- Kill -------------------------------------------------------------------

def test_kill_sends_signal(crt):
    """runtime.md#kill: "This operation MUST send the specified signal to the
    container process"."""
    script = "trap 'echo USR1 > /out/sig; exit 0' USR1; echo ready > /out/ready; while :; do sleep 0.1; done"
    cid = crt.create_ok(crt.bundle(args=["sh", "-c", script]))
    crt("start", cid, check=True)
    assert _wait_for(os.path.join(crt.out, "ready"))
    crt("kill", cid, "USR1", check=True)
    assert _wait_for(os.path.join(crt.out, "sig"))
    assert crt.wait_stopped(cid)["status"] == "stopped"


def test_kill_numeric_and_prefixed_signal(crt):
    """runtime.md#kill: the signal is delivered whether numeric or SIG-prefixed
    (runc CLI: `kill ID 9`, `kill ID SIGKILL`, `kill ID KILL`)."""
    for sig in ("9", "SIGKILL"):
        cid = crt.create_ok(crt.bundle(args=SLEEP))
        crt("start", cid, check=True)
        crt("kill", cid, sig, check=True)
        assert crt.wait_stopped(cid)["status"] == "stopped"


def test_kill_created_container(crt):
    """runtime.md#kill: a `created` container can be signalled (only containers
    neither created nor running must be refused)."""
    cid = crt.create_ok(crt.bundle(args=SLEEP))
    pid = crt.state(cid)["pid"]
    crt("kill", cid, "KILL", check=True)
    assert crt.wait_stopped(cid)["status"] == "stopped"
    assert not pid_alive(pid)


def test_kill_stopped_container_errors(crt):
    """runtime.md#kill: "Attempting to send a signal to a container that is
    neither created nor running MUST have no effect on the container and MUST
    generate an error"."""
    cid = crt.create_ok(crt.bundle(args=["true"]))
    crt("start", cid, check=True)
    assert crt.wait_stopped(cid)["status"] == "stopped"
    assert crt("kill", cid, "KILL").returncode != 0
    assert crt.state(cid)["status"] == "stopped"


def test_kill_errors(crt):
    """runtime.md#kill: "This operation MUST generate an error if it is not
    provided the container ID" (and for an unknown container)."""
    assert crt("kill").returncode != 0
    assert crt("kill", "nope-" + crt.new_id(), "KILL").returncode != 0


# --- Delete -----------------------------------------------------------------

def test_delete_running_container_errors(crt):
    """runtime.md#delete: "Attempting to delete a container that is not stopped
    MUST have no effect on the container and MUST generate an error"."""
    cid = crt.create_ok(crt.bundle(args=SLEEP))
    crt("start", cid, check=True)
    pid = crt.state(cid)["pid"]
    assert crt("delete", cid).returncode != 0
    s = crt.state(cid)
    assert s["status"] == "running" and pid_alive(pid)


def test_delete_created_container_errors(crt):
    """runtime.md#delete: a `created` container is not stopped either: delete
    (without --force) MUST generate an error and leave it as it was."""
    cid = crt.create_ok(crt.bundle(args=SLEEP))
    pid = crt.state(cid)["pid"]
    p = crt("delete", cid)
    assert p.returncode != 0, "delete of a created container succeeded"
    assert crt.state(cid)["status"] == "created" and pid_alive(pid)


def test_delete_removes_created_resources(crt):
    """runtime.md#delete: "Deleting a container MUST delete the resources that
    were created during the create step"; "Once a container is deleted its ID
    MAY be used by a subsequent container" (lifecycle step 12)."""
    cg = f"/pyrunc-conf-{os.path.basename(crt.tmp)[-20:]}-{crt.name}"
    b = crt.bundle(args=["true"], mutate=lambda c: c["linux"].__setitem__("cgroupsPath", cg))
    cid = crt.create_ok(b)
    pid = crt.state(cid)["pid"]
    mem = "/sys/fs/cgroup/memory" + cg
    assert os.path.isdir(mem)
    crt("start", cid, check=True)
    crt.wait_stopped(cid)
    crt("delete", cid, check=True)
    assert crt("state", cid).returncode != 0
    assert not pid_alive(pid)
    assert not os.path.exists(mem), "cgroup left after delete"
    assert not os.listdir(crt.root)
    # the ID is free again
    cid2, p = crt.create(crt.bundle(args=["true"]), cid)
    assert p.returncode == 0, p.stderr


def _rm_cgroup_trees(top):
    """Remove what a runtime left of `top` in every hierarchy (test cleanup)."""
    for h in os.listdir("/sys/fs/cgroup"):
        base = f"/sys/fs/cgroup/{h}{top}"
        if os.path.islink(f"/sys/fs/cgroup/{h}") or not os.path.isdir(base):
            continue
        for r, _dirs, _files in sorted(os.walk(base, topdown=False), key=lambda t: -len(t[0])):
            try:
                os.rmdir(r)
            except OSError:
                pass


def test_delete_removes_created_parent_cgroups(crt):
    """runtime.md#delete: "Deleting a container MUST delete the resources that
    were created during the create step" - cgroup directories create made for a
    nested cgroupsPath (its parents included) are gone after delete."""
    top = f"/pyrunc-conf-nest-{crt.name}-{os.path.basename(crt.tmp)[-12:]}"
    assert not os.path.exists("/sys/fs/cgroup/memory" + top)
    b = crt.bundle(args=["true"], mutate=lambda c: c["linux"].__setitem__("cgroupsPath", top + "/a/b"))
    cid = crt.create_ok(b)
    crt.extra_cleanup.append(lambda: _rm_cgroup_trees(top))
    assert os.path.isdir("/sys/fs/cgroup/memory" + top + "/a/b")
    crt("delete", "--force", cid, check=True)
    left = [d for d in os.listdir("/sys/fs/cgroup") if os.path.exists(f"/sys/fs/cgroup/{d}{top}")]
    assert not left, f"parent cgroup {top} left in {left}"


def test_delete_keeps_resources_not_created_by_container(crt):
    """runtime.md#delete: "resources associated with the container, but not
    created by this container, MUST NOT be deleted" - a bind-mount source and a
    joined network namespace survive the delete."""
    src = os.path.join(crt.tmp, "keep")
    os.makedirs(src)
    with open(os.path.join(src, "file"), "w") as f:
        f.write("data")
    holder = crt.create_ok(crt.bundle(args=SLEEP, name="holder"))
    hpid = crt.state(holder)["pid"]
    netns = os.stat(f"/proc/{hpid}/ns/net").st_ino

    def mut(cfg):
        cfg["mounts"].append({"destination": "/mnt", "type": "bind", "source": src, "options": ["rbind", "rw"]})
        for ns in cfg["linux"]["namespaces"]:
            if ns["type"] == "network":
                ns["path"] = f"/proc/{hpid}/ns/net"
    cid = crt.create_ok(crt.bundle(args=["true"], mutate=mut))
    crt("start", cid, check=True)
    crt.wait_stopped(cid)
    crt("delete", cid, check=True)
    with open(os.path.join(src, "file")) as f:
        assert f.read() == "data"
    assert crt.state(holder)["status"] == "created" and pid_alive(hpid)
    assert os.stat(f"/proc/{hpid}/ns/net").st_ino == netns


def test_delete_errors(crt):
    """runtime.md#delete: "This operation MUST generate an error if it is not
    provided the container ID" (and for an unknown container)."""
    assert crt("delete").returncode != 0
    assert crt("delete", "nope-" + crt.new_id()).returncode != 0


def test_full_lifecycle(crt):
    """runtime.md#scope-of-a-container: "The entity using a runtime to create a
    container MUST be able to use the operations defined in this specification
    against that same container" - create, state, start, state, kill, state,
    delete on one container."""
    cid = crt.create_ok(crt.bundle(args=SLEEP))
    assert crt.state(cid)["status"] == "created"
    crt("start", cid, check=True)
    assert crt.state(cid)["status"] == "running"
    crt("kill", cid, "KILL", check=True)
    assert crt.wait_stopped(cid)["status"] == "stopped"
    crt("delete", cid, check=True)
    assert crt("state", cid).returncode != 0


def test_state_pid_is_the_container_process(crt):
    """runtime.md#state: pid "is the ID of the container process" as seen by the
    runtime: that process runs in the container's namespaces and is the one
    that becomes the user program."""
    cid = crt.create_ok(crt.bundle(args=SLEEP))
    pid = crt.state(cid)["pid"]
    assert os.stat(f"/proc/{pid}/ns/uts").st_ino != os.stat("/proc/self/ns/uts").st_ino
    crt("start", cid, check=True)
    assert crt.state(cid)["pid"] == pid
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[:2] == [b"sleep", b"600"]
    os.kill(pid, signal.SIGKILL)
    assert crt.wait_stopped(cid)["status"] == "stopped"
