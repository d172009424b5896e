"""pyrunc run by an unprivileged user: a user namespace maps container root
to the caller, state lives under $XDG_RUNTIME_DIR, no cgroup is required."""
import json
import os
import shutil
import subprocess

import pytest

from bundles import REPO
from runtime.specgen import default_spec

NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.fixture
def launcher(open_tmp):
    """pyrunc through an interpreter the unprivileged user can run (the
    project venv's lives under root's home)."""
    if not os.path.exists(SYSTEM_PYTHON):
        pytest.skip("no system python3 for the unprivileged user")
    v = subprocess.run([SYSTEM_PYTHON, "-c", "import sys; print(sys.version_info[:2] >= (3, 11))"],
                       capture_output=True, text=True).stdout.strip()
    if v != "True":
        pytest.skip("system python3 is older than 3.11")
    path = open_tmp / "pyrunc"
    path.write_text(f"#!{SYSTEM_PYTHON} -IS\nimport sys\nsys.path.insert(0, {REPO!r})\n"
                    "from runtime.cli import main\nmain()\n")
    path.chmod(0o755)
    return str(path)


def _as_nobody(cmd, env, **kw):
    def drop():
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    return subprocess.run(cmd, preexec_fn=drop, env=env, capture_output=True, text=True, timeout=60, **kw)


def test_rootless_run(launcher, open_tmp, busybox_rootfs):
    xdg = open_tmp / "xdg"
    xdg.mkdir()
    os.chown(xdg, NOBODY, NOBODY)
    bundle = open_tmp / "bundle"
    bundle.mkdir()
    cfg = default_spec(rootless=True, args=["sh", "-c", "id -u; cat /proc/self/uid_map; hostname"],
                       terminal=False)
    cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": NOBODY, "size": 1}]
    cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": NOBODY, "size": 1}]
    cfg["root"] = {"path": busybox_rootfs, "readonly": True}
    (bundle / "config.json").write_text(json.dumps(cfg))
    env = {"PATH": "/usr/bin:/bin", "XDG_RUNTIME_DIR": str(xdg)}
    p = _as_nobody([launcher, "run", "--bundle", str(bundle), "rl1"], env)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().split("\n")
    assert lines[0] == "0"
    assert lines[1].split() == ["0", str(NOBODY), "1"]
    assert lines[2] == "runc"  # runc spec's hostname
    # State went under $XDG_RUNTIME_DIR/pyrunc and was removed by run.
    assert os.path.isdir(xdg / "pyrunc")
    assert os.listdir(xdg / "pyrunc") == []


def test_rootless_spec_flag(launcher, open_tmp):
    d = open_tmp / "b"
    d.mkdir()
    os.chown(d, NOBODY, NOBODY)
    p = _as_nobody([launcher, "spec", "--rootless", "--bundle", str(d)], {"PATH": "/usr/bin:/bin"})
    assert p.returncode == 0, p.stderr
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["linux"]["uidMappings"] == [{"containerID": 0, "hostID": NOBODY, "size": 1}]
    assert not any(n["type"] == "network" for n in cfg["linux"]["namespaces"])
    shutil.rmtree(d)
