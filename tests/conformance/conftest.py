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

# Tests a runtime is known to fail today, by test name without the runtime
# parameter, with the symptom. pyrunc entries are strict xfails: once pyrunc
# is fixed the test XPASSes, fails, and the entry must go. runc 1.1.5 entries
# (reference only) are not strict.
KNOWN_FAILURES: dict[str, dict[str, str]] = {
    "pyrunc": {
        "test_delete_created_container_errors":
            "delete without --force removes a created container (as runc does); MUST error",
    },
    "runc": {
        "test_mount_options[defaults]": "'defaults' reaches mount(2) as data: EINVAL",
        "test_process_capability_not_grantable_is_a_warning":
            "fails with 'unable to apply caps: operation not permitted', naming no capability",
        "test_mount_label_without_selinux_is_a_warning": "puts context= into the mount data: EINVAL",
        "test_process_capability_unknown_name_is_an_error": "warns and ignores an unknown capability name",
        "test_cgroup_hugetlb_in_unified_hierarchy": "hybrid host: cannot set hugetlb limit (no v1 hugetlb hierarchy)",
        "test_device_path_conflict": "keeps a regular file at a device path silently",
        "test_cgroup_memory_kernel_tcp": "ignores memory.kernelTCP",
        "test_cgroup_unavailable_controller_is_an_error[blkio-weight]": "ignores blockIO.weight without the knob",
        "test_seccomp_errno_ret_with_kill_action_is_an_error": "accepts errnoRet with SCMP_ACT_KILL",
        "test_rootfs_propagation[shared-exposed]": "the container's / is not shared",
        "test_rootfs_propagation[unbindable-bindfail]": "rootfs bind mount fails with EINVAL",
        "test_hooks_order_and_timing": "runc 1.1.5 runs poststart hooks during create",
        "test_hooks_receive_state_on_stdin": "poststart hooks see status 'created'",
        "test_start_container_hook_failure": "start succeeds although a startContainer hook failed",
        "test_poststart_hook_failure": "poststart hooks run (and fail) during create",
        "test_poststop_hook_failure_is_a_warning": "stops at the first failing poststop hook",
        "test_delete_created_container_errors": "deletes a created container without --force",
        "test_delete_removes_created_parent_cgroups": "leaves the parent cgroups of a nested cgroupsPath",
    },
}


def _known_key(item, runtime: str) -> str:
    name = item.name.replace(f"[{runtime}-", "[").replace(f"[{runtime}]", "")
    return name.replace(f"-{runtime}]", "]").replace(f"-{runtime}-", "-")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if not str(item.fspath).startswith(HERE + os.sep):
            continue
        cs = getattr(item, "callspec", None)
        runtime = cs.params.get("runtime_name") if cs else None
        reason = KNOWN_FAILURES.get(runtime or "", {}).get(_known_key(item, runtime or ""))
        if reason:
            item.add_marker(pytest.mark.xfail(strict=(runtime == "pyrunc"), reason=f"{runtime}: {reason}"))


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


