"""The `pyrunc` and `pyimg` commands (runtime/launcher.c, built by setup.py),
as ./setup.sh's editable install puts them in .venv/bin and as a plain
`pip install .` puts them in a fresh venv: each execs BIN/python3 -I -S -X
utf8 (isolated, no site processing, UTF-8 mode) and runs the package the
install put there (the checkout, or the venv's site-packages)."""
import codecs
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from runtime.version import SPEC_VERSION, VERSION

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROJECT_BIN = os.path.join(REPO, ".venv", "bin")
FLAGS = ["-I", "-S", "-X", "utf8", "-c"]
PACKAGE = {"pyrunc": "runtime", "pyimg": "imagetool"}
ENV = {"PATH": "/usr/bin:/bin", "LANG": "C"}


def _strings(text: str) -> list[str]:
    """The C strings of strace's rendering of an argv array."""
    return [codecs.escape_decode(s.encode())[0].decode() for s in re.findall(r'"((?:[^"\\]|\\.)*)"', text)]


def _traced(argv: list[str], cwd: str) -> tuple[subprocess.CompletedProcess, list[str], list[str]]:
    """Run argv under strace: (the result, the argv the command exec'd, the
    files opened after that exec)."""
    if not shutil.which("strace"):
        pytest.skip("no strace")
    log = os.path.join(cwd, "strace.log")
    p = subprocess.run(["strace", "-f", "-qq", "-s", "65536", "-e", "trace=execve,openat", "-o", log, *argv],
                       capture_output=True, text=True, cwd=cwd, env=ENV)
    with open(log) as f:
        lines = f.read().splitlines()
    os.unlink(log)
    execs = [i for i, ln in enumerate(lines) if "execve(" in ln and ln.endswith("= 0")]
    assert len(execs) == 2, lines[:5]  # the command, then the interpreter
    second = lines[execs[1]]
    exec_argv = _strings(re.search(r"execve\(\"[^\"]*\", \[(.*)\], 0x", second).group(1))
    opened = [m.group(1) for ln in lines[execs[1]:] for m in [re.search(r'openat\(AT_FDCWD, "([^"]+)".* = \d+$', ln)]
              if m]
    return p, exec_argv, opened


# ------------------------------------------------- the editable install

def _project_command(prog: str) -> str:
    path = os.path.join(PROJECT_BIN, prog)
    if not os.path.exists(path):
        pytest.skip(f"{path}: run ./setup.sh")
    return path


@pytest.mark.parametrize("prog", ["pyrunc", "pyimg"])
def test_editable_commands_run_the_checkout_isolated_without_site_in_utf8_mode(prog, tmp_path):
    cmd = _project_command(prog)
    with open(cmd, "rb") as f:
        assert f.read(4) == b"\x7fELF"  # a program: a script's shebang flags would not survive pip
    p, argv, opened = _traced([cmd, "--version"], str(tmp_path))
    assert p.returncode == 0 and p.stdout.startswith(f"{prog} version {VERSION}"), p.stderr
    assert argv[0] == os.path.join(PROJECT_BIN, "python3")
    assert argv[1:6] == FLAGS and argv[-1] == "--version"
    pkg = os.path.join(REPO, PACKAGE[prog]) + "/"
    assert any(f.startswith(pkg) for f in opened), opened


# ------------------------------------------------- `pip install .` into a fresh venv

@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """A fresh venv with the project installed by `pip install --no-deps .`
    (pip builds the wheel with its own build environment, as setup.sh's
    install does). The checkout's packaging files and packages are copied
    first, so that the build leaves the checkout alone. The project venv's
    site-packages is named in a .pth file, for the dependencies that
    `pyimg --help` loads (typer) once it runs site."""
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler")
    base = tmp_path_factory.mktemp("pip-install")
    src = base / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in"):
        shutil.copy2(os.path.join(REPO, name), src / name)
    for pkg in ("runtime", "imagetool"):
        shutil.copytree(os.path.join(REPO, pkg), src / pkg, ignore=shutil.ignore_patterns("__pycache__", "pyrunc-exec"))
    v = base / "venv"
    subprocess.run([sys._base_executable, "-m", "venv", str(v)], check=True)
    p = subprocess.run([str(v / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps",
                        "--disable-pip-version-check", str(src)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    site = v / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    project_site = [d for d in sys.path if d.endswith("site-packages") and d.startswith(os.path.join(REPO, ".venv"))]
    (site / "project-deps.pth").write_text("".join(d + "\n" for d in project_site))
    return v


def _site(v) -> str:
    return str(v / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages")


@pytest.mark.parametrize("prog", ["pyrunc", "pyimg"])
def test_pip_install_makes_the_commands_programs_that_name_no_checkout(venv, prog):
    with open(venv / "bin" / prog, "rb") as f:
        data = f.read()
    assert data[:4] == b"\x7fELF"
    assert REPO.encode() not in data and str(venv.parent / "src").encode() not in data


@pytest.mark.parametrize("prog", ["pyrunc", "pyimg"])
def test_installed_commands_run_the_installed_package_isolated_without_site(venv, prog, tmp_path):
    p, argv, opened = _traced([str(venv / "bin" / prog), "--version"], str(tmp_path))
    assert p.returncode == 0 and p.stdout.startswith(f"{prog} version {VERSION}"), p.stderr
    assert argv[0] == str(venv / "bin" / "python3")
    assert argv[1:6] == FLAGS and argv[-1] == "--version"
    installed = os.path.join(_site(venv), PACKAGE[prog]) + "/"
    assert any(f.startswith(installed) for f in opened), opened
    assert not [f for f in opened if f.startswith((REPO + "/", str(venv.parent / "src") + "/"))]


def test_installed_pyrunc_spec_and_pyimg_help(venv, tmp_path):
    p = subprocess.run([str(venv / "bin" / "pyrunc"), "spec", "--bundle", str(tmp_path)], capture_output=True,
                       text=True, env=ENV, cwd=str(tmp_path))
    assert p.returncode == 0, p.stderr
    with open(tmp_path / "config.json") as f:
        assert json.load(f)["ociVersion"] == SPEC_VERSION
    p = subprocess.run([str(venv / "bin" / "pyimg"), "--help"], capture_output=True, text=True, env=ENV,
                       cwd=str(tmp_path))
    assert p.returncode == 0, p.stderr
    assert "Usage: pyimg" in p.stdout and "unpack" in p.stdout


def test_a_symlink_to_the_command_finds_its_venv(venv, tmp_path):
    links = tmp_path / "links"
    links.mkdir()
    os.symlink(venv / "bin" / "pyrunc", links / "pyrunc")
    p = subprocess.run(["pyrunc", "--version"], capture_output=True, text=True, cwd=str(tmp_path),
                       env={**ENV, "PATH": f"{links}:/usr/bin:/bin"})
    assert p.returncode == 0 and p.stdout.startswith(f"pyrunc version {VERSION}"), p.stderr


def test_site_and_the_environment_are_not_used(venv, tmp_path):
    # A .pth import line (what site would run) and a PYTHONPATH that
    # shadows the package: the venv's own python, with site and the
    # environment, falls for both; the command for neither.
    canary = tmp_path / "site-ran"
    pth = os.path.join(_site(venv), "zz-canary.pth")
    shadow = tmp_path / "shadow" / "runtime"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise SystemExit('the shadow package was imported')\n")
    env = {**ENV, "PYTHONPATH": str(shadow.parent)}
    try:
        with open(pth, "w") as f:
            f.write(f"import os; open({str(canary)!r}, 'w').close()\n")
        p = subprocess.run([str(venv / "bin" / "python"), "-c", "import runtime"], capture_output=True, text=True,
                           env=env, cwd=str(tmp_path))
        assert canary.exists() and "shadow package" in p.stderr
        canary.unlink()
        p = subprocess.run([str(venv / "bin" / "pyrunc"), "--version"], capture_output=True, text=True, env=env,
                           cwd=str(tmp_path))
    finally:
        os.unlink(pth)
    assert p.returncode == 0 and p.stdout.startswith("pyrunc version"), p.stderr
    assert not canary.exists()


def test_a_command_with_no_interpreter_beside_it_fails_in_one_line(venv, tmp_path):
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy2(venv / "bin" / "pyrunc", alone / "pyrunc")
    p = subprocess.run([str(alone / "pyrunc"), "--version"], capture_output=True, text=True, env=ENV)
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr == f"pyrunc: cannot run {alone}/python3: no such file or directory\n"
