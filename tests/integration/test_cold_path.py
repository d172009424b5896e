"""The cold path of each verb containerd's shim calls, on its success path:
a real container goes through create, state, start, exec, kill and delete
(and list), each verb in a fresh interpreter as the launcher starts it
(-I -S), and the modules each one loaded are checked against
- what none of them may load (the heavy stdlib modules, `os` and `ctypes`:
  runtime.toolkit stands in for both);
- what the verbs on an existing container may not load (create's and the
  cgroup managers' code: they read the state and signal, nothing more);
- a budget of modules per verb, so that a new import on a hot path shows
  here and its cost can be weighed (docs/performance.md).
tests/unit/test_cold_start.py checks the same verbs' error paths."""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HEAVY = {"re", "enum", "json", "socket", "signal", "typing", "dataclasses", "subprocess", "selectors",
         "shutil", "typer", "jsonschema", "psutil", "inspect", "pathlib", "os", "ctypes", "collections"}
CREATE_ONLY = {"runtime.container", "runtime.init", "runtime.rootfs", "runtime.spawn", "runtime.config",
               "runtime.userns", "runtime.validate", "runtime.syscalls", "runtime.cgroups.v1",
               "runtime.cgroups.v2", "runtime.cgroups.common", "runtime.cgroups.base", "_ctypes"}
# Modules each verb may load at most (they load 34-58 today).
BUDGET = {"create": 62, "exec": 56, "state": 40, "start": 40, "kill": 40, "delete": 40, "list": 40}

pytestmark = pytest.mark.root


def _verb(rt, tmp_path, *args) -> tuple[int, set[str]]:
    out = tmp_path / "modules.json"
    code = (f"import sys; sys.path.insert(0, {REPO!r})\n"
            "from runtime import cli\n"
            f"rc = cli._dispatch(['--root', {rt.root!r}, *{list(args)!r}])\n"
            "mods = sorted(sys.modules)\n"
            "import json as _j\n"  # after the snapshot
            f"open({str(out)!r}, 'w').write(_j.dumps([rc, mods]))")
    # no pipes: a created container's init would hold them open
    subprocess.run([sys.executable, "-I", "-S", "-X", "utf8", "-c", code], stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    rc, mods = json.loads(out.read_text())
    out.unlink()
    return rc, set(mods)


def test_the_verbs_containerd_calls_load_only_what_they_need(rt, tmp_path):
    b = rt.bundle(["sleep", "30"])
    cid = rt.new_id()
    seen = {}
    for verb, args in (("create", ("create", "--bundle", b, cid)), ("state", ("state", cid)),
                       ("start", ("start", cid)), ("exec", ("exec", "-d", cid, "true")),
                       ("list", ("list",)), ("kill", ("kill", cid, "KILL"))):
        rc, mods = _verb(rt, tmp_path, *args)
        assert rc == 0, f"{verb} failed"
        seen[verb] = mods
    rt.wait_status(cid, "stopped")
    rc, seen["delete"] = _verb(rt, tmp_path, "delete", cid)
    assert rc == 0 and not os.path.exists(os.path.join(rt.root, cid))
    for verb, mods in seen.items():
        assert not mods & HEAVY, f"{verb} loads {sorted(mods & HEAVY)}"
        assert len(mods) <= BUDGET[verb], f"{verb} loads {len(mods)} modules (budget {BUDGET[verb]})"
        if verb in ("state", "start", "kill", "delete", "list"):
            assert not mods & CREATE_ONLY, f"{verb} loads {sorted(mods & CREATE_ONLY)}"
    # and the checks see what they should: create does load its own code
    assert {"runtime.container", "runtime.spawn", "runtime.syscalls"} <= seen["create"]
    assert "runtime.init" not in seen["create"]  # init is loaded by the child, after the fork
    assert "runtime.execproc" in seen["exec"]
