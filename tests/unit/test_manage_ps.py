"""`pyrunc ps`: the container's pids from its cgroup, and ps(1)'s table
filtered to them (runc's ps), without root: the cgroup is a directory of
fake cgroup.procs files under a temp dir that names this test's process and
a child of it."""
import os
import subprocess
import sys

import pytest

from runtime import manage
from runtime import state as st
from runtime.errors import RuntimeFailure

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def child():
    p = subprocess.Popen(["sleep", "60"])
    yield p.pid
    p.kill()
    p.wait()


def _container(tmp_path, pids, version="v1", sub=()):
    """A state file whose cgroup (v1 with two hierarchies and a unified
    directory, or v2) lists `pids`, the last ones in a sub-cgroup `sub`."""
    cg = tmp_path / "cg"
    dirs = [cg / "freezer", cg / "memory", cg / "unified"] if version == "v1" else [cg / "v2"]
    for d in dirs:
        d.mkdir(parents=True)
        (d / "cgroup.procs").write_text("".join(f"{p}\n" for p in pids[:len(pids) - len(sub)]))
    nested = dirs[0] / "nested"
    nested.mkdir()
    (nested / "cgroup.procs").write_text("".join(f"{p}\n" for p in sub))
    if version == "v1":
        cgstate = {"version": "v1", "paths": {"freezer": str(dirs[0]), "memory": str(dirs[1])},
                   "mounts": {"freezer": str(cg), "memory": str(cg)}, "unified": str(dirs[2]),
                   "unified_mount": str(cg)}
    else:
        cgstate = {"version": "v2", "path": str(dirs[0]), "mount": str(cg)}
    root = tmp_path / "root"
    st.save(st.make_dir(str(root), "c1"), {"id": "c1", "pid": pids[0], "bundle": "/b", "cgroup": cgstate})
    return str(root)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_pids_are_every_pid_of_the_cgroup_and_its_sub_cgroups(tmp_path, child, version):
    root = _container(tmp_path, [os.getpid(), child], version, sub=[child])
    assert manage.pids(root, "c1") == sorted([os.getpid(), child])


def test_ps_table_keeps_the_header_and_the_containers_lines_only(tmp_path, child):
    root = _container(tmp_path, [child])
    out = manage.ps_table(root, "c1", [])
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["UID", "PID", "PPID"]  # ps -ef, as runc runs it
    assert [int(ln.split()[1]) for ln in lines[1:]] == [child]
    assert lines[1].split()[2] == str(os.getpid())
    assert lines[1].endswith("sleep 60")


def test_ps_table_passes_the_options_to_ps(tmp_path, child):
    root = _container(tmp_path, [os.getpid(), child])
    lines = manage.ps_table(root, "c1", ["-o", "pid,comm"]).splitlines()
    assert lines[0].split() == ["PID", "COMMAND"]
    rows = dict(ln.split() for ln in lines[1:])
    assert sorted(map(int, rows)) == sorted([os.getpid(), child])
    assert rows[str(child)] == "sleep"


def test_ps_that_fails_or_has_no_pid_column_is_one_error(tmp_path, child):
    root = _container(tmp_path, [child])
    with pytest.raises(RuntimeFailure) as e:
        manage.ps_table(root, "c1", ["--no-such-option"])
    assert str(e.value).startswith("ps: ") and "option" in str(e.value)
    with pytest.raises(RuntimeFailure, match="no PID column"):
        manage.ps_table(root, "c1", ["-o", "comm"])


def test_ps_output_is_passed_through_byte_for_byte(tmp_path, child, monkeypatch):
    """ps is found on PATH; what it prints (here bytes that are not UTF-8)
    reaches stdout unchanged, as runc passes ps's output on."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "ps").write_bytes(b"#!/bin/sh\nprintf '  PID CMD\\n%s caf\\351\\n1 other\\n' " + str(child).encode()
                              + b"\n")
    (fake / "ps").chmod(0o755)
    root = _container(tmp_path, [child])
    env = dict(os.environ, PATH=f"{fake}:{os.environ['PATH']}")
    prog = ("import sys; sys.path.insert(0, %r)\n"
            "from runtime import cli\n"
            "sys.exit(cli._dispatch(['--root', %r, 'ps', 'c1']))" % (REPO, root))
    # -I -S -X utf8 as the launcher runs it; -I ignores PYTHONPATH, not PATH
    out = subprocess.run([sys.executable, "-I", "-S", "-X", "utf8", "-c", prog], env=env, capture_output=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"  PID CMD\n%d caf\xe9\n" % child


def _ps_fresh(root, *args):
    """`pyrunc --root ROOT ps ARGS c1` in a fresh interpreter: (its result,
    the modules it had loaded by the end)."""
    prog = ("import sys; sys.path.insert(0, %r)\n"
            "from runtime import cli\n"
            "rc = cli._dispatch(['--root', %r, 'ps', *%r, 'c1'])\n"
            "sys.stderr.write(' '.join(sorted(sys.modules)))\n"
            "sys.exit(rc)" % (REPO, str(root), list(args)))
    out = subprocess.run([sys.executable, "-I", "-S", "-c", prog], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out, set(out.stderr.split())


def test_ps_does_not_load_subprocess(tmp_path, child):
    """ps(1) is spawned without the subprocess module (and what it imports:
    os, threading, selectors), which would cost `ps` more than the rest of it."""
    out, loaded = _ps_fresh(_container(tmp_path, [child]))
    assert str(child) in out.stdout
    assert not loaded & {"subprocess", "os", "threading", "selectors", "signal"}, loaded


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_ps_json_reads_the_pids_without_loading_a_cgroup_manager(tmp_path, child, version):
    """`ps --format json` (containerd's shim asks it for a task's pids)
    reads cgroup.procs through the cgroups package alone."""
    out, loaded = _ps_fresh(_container(tmp_path, [child], version), "--format", "json")
    assert out.stdout == f"[{child}]\n"
    loaded = {m for m in loaded if m.startswith("runtime.cgroups.")}
    assert loaded == {"runtime.cgroups.procs"}, loaded  # no manager, no .common


def test_pids_of_a_cgroup_that_is_gone_are_none_and_other_errors_are_raised(tmp_path):
    from runtime import cgroups
    assert cgroups.pids({"version": "v2", "path": str(tmp_path / "gone")}) == []
    assert cgroups.pids({"version": "v1", "paths": {"pids": str(tmp_path / "gone")}}) == []
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "cgroup.procs").mkdir()  # reading it fails with EISDIR
    with pytest.raises(IsADirectoryError):
        cgroups.pids({"version": "v2", "path": str(bad)})
    from runtime.cgroups.common import CgroupError
    with pytest.raises(CgroupError, match="unknown cgroup manager state version"):
        cgroups.pids({"version": "v9"})


def test_ps_whose_exit_status_another_waiter_took_still_answers(tmp_path, child):
    """A caller in the same process that reaps every child (SIGCHLD
    ignored, or a subreaper's wait loop, as a shim has) takes ps's status
    first: the table is still printed, as subprocess treats that case."""
    root = _container(tmp_path, [child])
    prog = ("import sys; sys.path.insert(0, %r)\n"
            "import _signal; _signal.signal(_signal.SIGCHLD, _signal.SIG_IGN)\n"
            "from runtime import cli\n"
            "sys.exit(cli._dispatch(['--root', %r, 'ps', 'c1']))" % (REPO, root))
    out = subprocess.run([sys.executable, "-I", "-S", "-c", prog], capture_output=True, text=True)
    assert out.returncode == 0 and out.stderr == "", out.stderr
    assert [int(ln.split()[1]) for ln in out.stdout.splitlines()[1:]] == [child]


def test_ps_interrupted_while_reading_kills_ps(tmp_path, child, monkeypatch):
    """An exception while ps's output is read (say, Ctrl-C) ends ps and
    reaps it, as subprocess.run does, and closes both pipes."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "ps").write_text("#!/bin/sh\necho \"  PID CMD\"\nexec sleep 5\n")
    (fake / "ps").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    root = _container(tmp_path, [child])
    seen = {}
    real_read = manage.os.read

    def read(fd, n):
        data = real_read(fd, n)
        if data:
            raise KeyboardInterrupt
        return data
    real_waitpid = manage.os.waitpid

    def waitpid(pid, flags):
        seen["pid"], seen["status"] = pid, real_waitpid(pid, flags)[1]
        return pid, seen["status"]
    monkeypatch.setattr(manage.os, "read", read, raising=False)
    monkeypatch.setattr(manage.os, "waitpid", waitpid, raising=False)
    before = set(os.listdir("/proc/self/fd"))
    with pytest.raises(KeyboardInterrupt):
        manage.ps_table(root, "c1", [])
    assert set(os.listdir("/proc/self/fd")) <= before
    assert os.WIFSIGNALED(seen["status"]) and os.WTERMSIG(seen["status"]) == 9  # killed, not waited out
    assert not os.path.exists(f"/proc/{seen['pid']}")  # and reaped
