"""The C parts of the package, built with it: pyrunc-exec
(runtime/exechelper.c), into the wheel for `pip install .` and into the
source tree for an editable install; and the `pyrunc` and `pyimg` commands
(runtime/launcher.c says why they are programs, not scripts), into the
scripts of either kind of install. Everything else about the package is in
pyproject.toml."""
import os
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py
from distutils.command.build_scripts import build_scripts  # (setuptools provides distutils)

HERE = os.path.dirname(os.path.abspath(__file__))
# No C library: the helper's start-up makes no system calls, so a
# container's seccomp profile need allow only what the helper itself does
# (exechelper.c); a command has nothing to load before it execs Python.
CFLAGS = ["-Os", "-static", "-nostdlib", "-ffreestanding", "-fno-stack-protector", "-fno-builtin",
          "-fno-asynchronous-unwind-tables", "-fno-pie", "-no-pie", "-s",
          "-Wl,--build-id=none", "-Wl,-z,noexecstack"]
# command -> the module whose main() it runs
COMMANDS = {"pyrunc": "runtime.cli", "pyimg": "imagetool.cli", "containerd-shim-pyrunc-v1": "runtime.shim.main"}
LAUNCHER = "runtime/launcher.c"


def _cc(source: str, out: str, *defines: str) -> None:
    cc = os.environ.get("CC") or shutil.which("cc") or "gcc"
    subprocess.run([cc, *CFLAGS, *defines, "-o", out + ".tmp", os.path.join(HERE, source)], check=True)
    os.replace(out + ".tmp", out)


class BuildPyWithHelper(build_py):
    def run(self):
        super().run()
        dest = os.path.join(HERE if self.editable_mode else self.build_lib, "runtime")
        _cc("runtime/exechelper.c", os.path.join(dest, "pyrunc-exec"))


def _c_string(text: str) -> str:
    """A C string literal of text's UTF-8 bytes."""
    return '"' + "".join(chr(b) if chr(b).isalnum() or chr(b) in "/._-" else f"\\{b:03o}"
                         for b in text.encode()) + '"'


class BuildCommands(build_scripts):
    """The distribution's one "script" is the launcher's source: each
    command is compiled from it, not copied. For an editable install
    (editable_mode, set by setuptools) the commands also carry the
    checkout's path."""
    editable_mode = False

    def run(self):
        self.mkpath(self.build_dir)
        extra = [f"-DCHECKOUT={_c_string(repr(HERE))}"] if self.editable_mode else []
        for prog, module in COMMANDS.items():
            out = os.path.join(self.build_dir, prog)
            _cc(LAUNCHER, out, f'-DPROG="{prog}"', f'-DMAIN="{module}"', *extra)
            os.chmod(out, 0o755)


setup(cmdclass={"build_py": BuildPyWithHelper, "build_scripts": BuildCommands}, scripts=[LAUNCHER])
