"""runtime.errors: the exceptions the runtime raises on purpose are plain
classes, there as soon as the module is imported (so that grep, IDEs and
type checkers find them), and each carries the message the user sees."""
import os
import subprocess
import sys

import pytest

from runtime import errors

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NAMES = ["ContainerExists", "ContainerNotFound", "InitFailure", "InvalidState", "RuntimeFailure", "StateDamaged"]


def test_every_class_is_in_the_module_right_after_import():
    # A fresh interpreter: nothing has looked a name up yet.
    prog = (f"import sys; sys.path.insert(0, {REPO!r})\n"
            "import runtime.errors as e\n"
            "print(' '.join(sorted(k for k, v in vars(e).items() if isinstance(v, type))))\n"
            "print(hasattr(e, '__getattr__'))")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", prog], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == [" ".join(NAMES), "False"]


@pytest.mark.parametrize("name", [n for n in NAMES if n != "RuntimeFailure"])
def test_each_is_a_runtime_failure_with_exit_status_1(name):
    cls = getattr(errors, name)
    assert issubclass(cls, errors.RuntimeFailure)
    assert cls.__module__ == "runtime.errors" and cls.__qualname__ == name
    assert cls.exit_code == 1


def test_messages():
    assert str(errors.ContainerNotFound("c1")) == 'container "c1" does not exist'
    assert str(errors.ContainerExists("c1")) == 'container with id "c1" already exists'
    e = errors.StateDamaged("c1", "/run/pyrunc/c1", "bad checksum")
    assert (e.cid, e.cdir) == ("c1", "/run/pyrunc/c1")
    assert e.detail == "state file in /run/pyrunc/c1 is corrupt (bad checksum)"
    assert str(e) == "container 'c1': state file in /run/pyrunc/c1 is corrupt (bad checksum)"
    assert str(errors.InvalidState("container not running")) == "container not running"
