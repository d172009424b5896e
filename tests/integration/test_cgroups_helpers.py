"""Shared helpers (no tests here) for the cgroup integration tests: managers at unique paths and
child processes that wait for a 'go' before doing their work, so the work
happens only after the child has been moved into the cgroup."""
import os
import subprocess
import sys
import uuid

import pytest

from runtime import cgroups


class Children:
    """Starts python children blocked on stdin; finalizer kills and reaps."""

    def __init__(self):
        self.procs: list[subprocess.Popen] = []

    def start(self, code: str) -> subprocess.Popen:
        prelude = "import sys, os\nsys.stdin.readline()\n"
        p = subprocess.Popen([sys.executable, "-S", "-c", prelude + code], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        return p

    @staticmethod
    def go(p: subprocess.Popen, timeout: float = 120) -> tuple[str, str]:
        out, err = p.communicate("go\n", timeout=timeout)
        return out, err

    def cleanup(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            try:
                p.communicate(timeout=30)
            except Exception:
                pass


@pytest.fixture
def children():
    c = Children()
    yield c
    c.cleanup()


def make_manager_fixture(root: str):
    @pytest.fixture
    def make(request):
        made = []

        def _make(path: str | None = None, cid: str = "ctr"):
            if path is None:
                path = f"/pyrunc-test-{request.node.name[:40]}-{uuid.uuid4().hex[:8]}"
            m = cgroups.open_manager(path, cid, root=root)
            made.append(m)
            return m

        yield _make
        errors = []
        for m in made:
            try:
                m.destroy()
            except Exception as e:  # keep cleaning the others
                errors.append(e)
            dirs = m._dirs() if hasattr(m, "_dirs") else [m.path()]
            for d in dirs:
                if os.path.isdir(d):
                    errors.append(f"left behind: {d}")
        assert not errors, errors
    return make


def pid_cgroups(pid: int) -> dict[str, str]:
    from runtime.cgroups.common import own_cgroups
    return own_cgroups(f"/proc/{pid}/cgroup")
