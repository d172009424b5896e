"""The launchers setup.sh writes (.venv/bin/pyrunc, pyimg): their shebang's
flags, which Linux hands to the interpreter as a single word."""
import os
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _shebang(prog: str) -> list[str]:
    path = os.path.join(REPO, ".venv", "bin", prog)
    if not os.path.exists(path):
        pytest.skip(f"{path}: run ./setup.sh")
    with open(path) as f:
        line = f.readline().rstrip("\n")
    assert line.startswith("#!")
    return line[2:].split(" ", 1)


@pytest.mark.parametrize("prog", ["pyrunc", "pyimg"])
def test_launcher_runs_isolated_without_site_in_utf8_mode(prog):
    interp, flags = _shebang(prog)
    assert " " not in flags  # one word, as the kernel passes it
    out = subprocess.run([interp, flags, "-c",
                          "import sys; f = sys.flags; print(f.isolated, f.no_site, f.utf8_mode)"],
                         capture_output=True, text=True, env={"LANG": "C.UTF-8", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "1", "1"]
