"""Fixtures of the conformance suite.

* `probe_rootfs` (session): the busybox rootfs plus /bin/probe, a static C
  program (probe.c) that prints what a process sees inside the container as
  JSON, and an empty /out where tests bind-mount a host directory.
* `crt`: a runtime driver (pyrunc, or a reference runtime) with a private
  --root, parametrized over the runtimes named in $RUNTIMES (comma
  separated; default "pyrunc"; e.g. RUNTIMES=pyrunc,runc). When the suite is
  started on this directory (`pytest tests/conformance --runtime runc`) the
  --runtime option does the same.

Every test deletes its containers even when it fails (crt's teardown runs
`delete --force` on every id it handed out) and then asserts that the
runtime's state directory is empty.
"""
import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from bundles import PYRUNC, make_rootfs  # noqa: E402
from confutil import ConfRuntime  # noqa: E402

def pytest_addoption(parser):
    try:
        parser.addoption("--runtime", action="store", default=None,
                         help="conformance: comma-separated runtimes (pyrunc,runc,crun)")
    except ValueError:
        pass


def _runtime_names(config) -> list[str]:
    opt = None
    try:
        opt = config.getoption("--runtime", default=None)
    except ValueError:
        opt = None
    names = (opt or os.environ.get("RUNTIMES") or "pyrunc").split(",")
    return [n.strip() for n in names if n.strip()]


def pytest_generate_tests(metafunc):
    if "runtime_name" in metafunc.fixturenames:
        metafunc.parametrize("runtime_name", _runtime_names(metafunc.config), scope="session")


def runtime_binary(name: str) -> str | None:
    if name == "pyrunc":
        return PYRUNC
    return shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)


@pytest.fixture(scope="session")
def probe_bin(tmp_path_factory):
    """Compile probe.c statically; skip the suite when that is impossible."""
    gcc = shutil.which("gcc")
    if not gcc:
        pytest.skip("conformance probe needs gcc (apt-get install gcc libc6-dev)")
    out = tmp_path_factory.mktemp("probe") / "probe"
    p = subprocess.run([gcc, "-static", "-O2", "-o", str(out), os.path.join(HERE, "probe.c")],
                       capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot build the static probe (is libc6-dev installed?): {p.stderr.strip()[:300]}")
    return str(out)


@pytest.fixture(scope="session")
def probe_rootfs(tmp_path_factory, probe_bin):
    root = make_rootfs(tmp_path_factory.mktemp("confroot") / "rootfs")
    shutil.copy2(probe_bin, os.path.join(root, "bin", "probe"))
    os.makedirs(os.path.join(root, "out"), exist_ok=True)
    return root


@pytest.fixture
def crt(tmp_path, probe_rootfs, runtime_name):
    binary = runtime_binary(runtime_name)
    if not binary or not os.path.exists(binary):
        pytest.skip(f"runtime {runtime_name} is not installed")
    r = ConfRuntime(tmp_path, probe_rootfs, runtime_name, binary)
    yield r
    r.cleanup()


