"""Builds pyrunc-exec (runtime/exechelper.c) with the package: into the
wheel for `pip install .`, into the source tree for an editable install.
Everything else about the package is in pyproject.toml."""
import os
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
# No C library: the helper's start-up makes no system calls, so a
# container's seccomp profile need allow only what the helper itself does
# (exechelper.c).
CFLAGS = ["-Os", "-static", "-nostdlib", "-ffreestanding", "-fno-stack-protector", "-fno-builtin",
          "-fno-asynchronous-unwind-tables", "-fno-pie", "-no-pie", "-s",
          "-Wl,--build-id=none", "-Wl,-z,noexecstack"]


class BuildPyWithHelper(build_py):
    def run(self):
        super().run()
        dest = os.path.join(HERE if self.editable_mode else self.build_lib, "runtime")
        cc = os.environ.get("CC") or shutil.which("cc") or "gcc"
        out = os.path.join(dest, "pyrunc-exec")
        subprocess.run([cc, *CFLAGS, "-o", out + ".tmp", os.path.join(HERE, "runtime", "exechelper.c")],
                       check=True)
        os.replace(out + ".tmp", out)


setup(cmdclass={"build_py": BuildPyWithHelper})
