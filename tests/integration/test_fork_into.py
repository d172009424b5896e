"""fork_into / clone_init / clone3 (root): a child born in a cgroup2 directory,
and the plain fork it falls back to."""
import errno
import os
import uuid

import pytest

from runtime import cgroups
from runtime import syscalls as sc
from runtime.cgroups.common import own_cgroups, read_mountinfo
from runtime.spawn import fork_into

pytestmark = [pytest.mark.root]


def _cgroup2_mount() -> str | None:
    for m in read_mountinfo():
        if m["fstype"] == "cgroup2":
            return m["mountpoint"]
    return None


@pytest.fixture
def cg2_dir():
    mnt = _cgroup2_mount()
    if mnt is None:
        pytest.skip("no cgroup2 hierarchy mounted")
    d = os.path.join(mnt, f"pyrunc-test-fork-into-{uuid.uuid4().hex[:8]}")
    os.mkdir(d)
    yield d
    os.rmdir(d)


def _child_reports(pid: int) -> int:
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_child_is_born_in_the_cgroup2_dir(cg2_dir):
    mnt = _cgroup2_mount()
    pid, cloned = fork_into(cg2_dir)
    if pid == 0:
        os._exit(0 if own_cgroups()[""] == "/" + os.path.relpath(cg2_dir, mnt) else 3)
    assert cloned is True
    assert _child_reports(pid) == 0


@pytest.mark.parametrize("target", [None, "/nonexistent/cgroup", "/proc"])
def test_falls_back_to_a_plain_fork(target):
    before = own_cgroups()[""]
    pid, cloned = fork_into(target)
    if pid == 0:
        os._exit(0 if own_cgroups()[""] == before else 3)
    assert cloned is False
    assert _child_reports(pid) == 0


def test_a_v1_directory_is_refused_by_the_kernel_and_falls_back():
    if cgroups.detect_layout() == "v2":
        pytest.skip("no v1 hierarchy")
    fd = os.open("/sys/fs/cgroup/pids", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with pytest.raises(OSError) as e:
            sc.clone3(sc.CLONE_INTO_CGROUP, fd)
        assert e.value.errno in (errno.EBADF, errno.EINVAL)
        assert "clone3" in str(e.value)
    finally:
        os.close(fd)
    pid, cloned = fork_into("/sys/fs/cgroup/pids")
    if pid == 0:
        os._exit(0)
    assert cloned is False
    assert _child_reports(pid) == 0



def test_clone_init_makes_pid_1_of_a_new_pid_namespace_in_the_cgroup(cg2_dir):
    from runtime.spawn import clone_init
    mnt = _cgroup2_mount()
    r = clone_init(cg2_dir, True)
    assert r is not None
    pid, cloned = r
    if pid == 0:
        # Only the first process of a new pid namespace is pid 1.
        ok = os.getpid() == 1 and own_cgroups()[""] == "/" + os.path.relpath(cg2_dir, mnt)
        os._exit(0 if ok else 3)
    assert cloned is True and pid > 1
    assert _child_reports(pid) == 0


def test_clone_init_without_cgroup2_and_when_it_adds_nothing():
    from runtime.spawn import clone_init
    assert clone_init(None, False) is None  # nothing clone3 would add: the caller forks as usual
    r = clone_init(None, True)
    assert r is not None
    pid, cloned = r
    if pid == 0:
        os._exit(0 if os.getpid() == 1 else 3)
    assert cloned is False
    assert _child_reports(pid) == 0
