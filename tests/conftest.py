"""Fixtures shared by the whole suite: busybox bundles, a private --root,
and leak checks (no container state, mounts or cgroups left behind)."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from bundles import Runtime, make_rootfs  # noqa: E402


def pytest_collection_modifyitems(config, items):
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="needs root")
        for item in items:
            if "unit" not in item.nodeid.split(os.sep) and "/unit/" not in item.nodeid:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def busybox_rootfs():
    """A read-only-by-convention busybox rootfs shared by the session. It lives
    in a world-traversable directory (pytest's own tmp dirs are 0700) so that
    containers in user namespaces, whose root is not host root, can reach it."""
    import shutil
    import tempfile
    d = tempfile.mkdtemp(prefix="pyrunc-test-")
    os.chmod(d, 0o755)
    yield make_rootfs(os.path.join(d, "rootfs"))
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def open_tmp():
    """A per-test temp dir that other uids can traverse (for user namespaces)."""
    import shutil
    import tempfile
    d = tempfile.mkdtemp(prefix="pyrunc-test-")
    os.chmod(d, 0o755)
    yield __import__("pathlib").Path(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def rt(tmp_path, busybox_rootfs):
    """A pyrunc driver with its own --root; checks nothing is left afterwards."""
    r = Runtime(tmp_path, busybox_rootfs)
    yield r
    r.cleanup()


@pytest.fixture(scope="session", autouse=True)
def no_leftovers_after_suite():
    """After the whole session: no cgroup named like a test container (ids
    from bundles.Runtime.new_id) in any hierarchy, and no mount under the
    test temp dirs; and the host's device nodes (/dev/null and friends,
    which containers bind-mount or get as stdio) keep their owner and mode:
    a runtime that chowns the container's stdio to the container user must
    not reach the host's /dev/null."""
    # the same check the runtime-tools runner makes after each program
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))
    from runtime_tools import node_modes
    before = node_modes()
    links, rules = _host_links(), _host_netavark_rules()
    yield
    if os.geteuid() != 0:
        return
    assert node_modes() == before, f"host device nodes changed: {before} -> {node_modes()}"
    # the engine's bridge networks run only in namespaces the tests make
    assert _host_links() - links == set(), f"network interfaces left in the host namespace: {_host_links() - links}"
    assert _host_netavark_rules() - rules == set(), \
        f"firewall rules left in the host namespace: {sorted(_host_netavark_rules() - rules)[:5]}"
    import glob
    import re
    pat = re.compile(r"^t[0-9a-f]{10}$")
    left = []
    for base in glob.glob("/sys/fs/cgroup/*") + ["/sys/fs/cgroup"]:
        if not os.path.isdir(base) or os.path.islink(base):
            continue
        for dirpath, dirnames, _ in os.walk(base):
            left += [os.path.join(dirpath, d) for d in dirnames if pat.match(d)]
            if dirpath.count("/") > 6:
                dirnames[:] = []
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split()[4] for line in f if "/pyrunc-test-" in line.split()[4]]
    assert not left, f"cgroups left behind: {left[:10]}"
    assert not mounts, f"mounts left behind: {mounts[:10]}"


def _host_links() -> set[str]:
    try:
        return set(os.listdir("/sys/class/net"))
    except OSError:
        return set()


def _host_netavark_rules() -> set[str]:
    import shutil
    import subprocess
    if os.geteuid() != 0 or not shutil.which("iptables-save"):
        return set()
    r = subprocess.run(["iptables-save"], capture_output=True, text=True)
    return {ln for ln in r.stdout.splitlines() if "NETAVARK" in ln and not ln.startswith("#")}
