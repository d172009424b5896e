"""Guard the verbs containerd runs on every container against heavy imports
(each costs milliseconds on a cold interpreter; see docs/performance.md)."""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HEAVY = {"re", "enum", "json", "socket", "signal", "typing", "dataclasses", "subprocess",
         "selectors", "shutil", "typer", "jsonschema", "psutil", "inspect", "pathlib"}


def _loaded(code: str) -> set[str]:
    # The snapshot is taken before `json` is imported to report it.
    prog = (f"import sys; sys.path.insert(0, {REPO!r})\n" + code +
            "\nmods = sorted(sys.modules)\nimport json as _j; sys.stdout.write(_j.dumps(mods))")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", prog], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout))


@pytest.mark.parametrize("verb", ["state", "start", "kill", "delete"])
def test_verbs_import_nothing_heavy(verb, tmp_path):
    code = (f"from runtime import cli\n"
            f"cli._dispatch(['--root', {str(tmp_path)!r}, {verb!r}, 'nosuchcontainer'])")
    assert not (_loaded(code) & HEAVY), _loaded(code) & HEAVY


@pytest.mark.parametrize("version,frozen", [("v1", False), ("v1", True), ("v2", False), ("v2", True)])
def test_status_of_a_running_container_loads_a_cgroup_manager_only_when_frozen(tmp_path, version, frozen):
    """`state` and `kill` ask the cgroups package whether a running
    container is paused: its freezer file, read by the package's __init__
    alone; the managers (and .common) load only when the file does not
    say thawed."""
    cg = tmp_path / "cg"
    cg.mkdir()
    if version == "v2":
        (cg / "cgroup.freeze").write_text("1\n" if frozen else "0\n")
        (cg / "cgroup.events").write_text("populated 1\nfrozen %d\n" % frozen)
        cgstate = {"version": "v2", "path": str(cg), "mount": str(tmp_path)}
    else:
        (cg / "freezer.state").write_text("FROZEN\n" if frozen else "THAWED\n")
        cgstate = {"version": "v1", "paths": {"freezer": str(cg)}, "mounts": {"freezer": str(tmp_path)}}
    code = ("from runtime import state\n"
            "me = __import__('posix').getpid()\n"
            f"data = {{'pid': me, 'start_time': state.proc_start_time(me), '_dir': {str(tmp_path)!r}, "
            f"'cgroup': {cgstate!r}}}\n"
            "sys.stderr.write(state.status(data))")
    prog = f"import sys; sys.path.insert(0, {REPO!r})\n" + code + "\nimport json; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-I", "-S", "-c", prog], capture_output=True, text=True, check=True)
    assert out.stderr == ("paused" if frozen else "running")
    managers = {m for m in json.loads(out.stdout) if m.startswith("runtime.cgroups.")}
    assert bool(managers) is frozen, managers


@pytest.mark.parametrize("verb", ["start", "kill", "delete"])
def test_verbs_reading_a_state_file_do_not_load_fastjson(verb, tmp_path):
    """The state file is parsed by _json's scanner alone (runtime.state._scanner)."""
    import binascii
    (tmp_path / "c1").mkdir()
    body = b'{"id": "c1", "pid": 0, "bundle": "/b", "version": 1'
    (tmp_path / "c1" / "state.json").write_bytes(body + b', "crc32": "%08x"}\n' % binascii.crc32(body))
    code = ("from runtime import cli\n"
            f"cli._dispatch(['--root', {str(tmp_path)!r}, {verb!r}, 'c1'])")
    loaded = _loaded(code)
    assert "_json" in loaded and "runtime.toolkit.fastjson" not in loaded
    assert os.path.exists(tmp_path / "c1") is (verb != "delete")


def test_create_path_imports_nothing_heavy():
    code = ("from runtime import cli, container, init, sync, state, cgroups, validate, rootfs, caps\n"
            "from runtime.specgen import default_spec\n"
            "validate.validate_config(default_spec())\n"
            "cgroups.open_manager(None, 'x', root='/sys/fs/cgroup') if __import__('os').path.isdir("
            "'/sys/fs/cgroup') else None")
    loaded = _loaded(code)
    assert not (loaded & HEAVY), loaded & HEAVY


def test_create_and_exec_paths_import_neither_os_nor_ctypes():
    # os.py (+ _collections_abc) and ctypes/__init__.py cost ~4.4 M and ~5.5 M
    # instructions per call; runtime.toolkit.os_lite and runtime.toolkit.ffi stand in for them.
    code = ("from runtime import cli, container, execproc, init, sync, state, cgroups, validate, rootfs, caps\n"
            "from runtime import syscalls, seccomp, libseccomp, lifecycle, manage\n"
            "from runtime.cgroups import v1, v2, v1_writers, v2_writers, devices, devicefilter, ebpf, oom\n"
            "from runtime.specgen import default_spec\n"
            "validate.validate_config(default_spec())")
    loaded = _loaded(code)
    assert not (loaded & {"os", "ctypes", "posixpath"}), loaded & {"os", "ctypes", "posixpath"}


def test_create_path_has_no_array_or_collections():
    # array registers with collections.abc, which imports collections (~1.5 ms)
    code = "from runtime import container, init, sync"
    loaded = _loaded(code)
    assert not (loaded & {"array", "collections"}), loaded & {"array", "collections"}


# pyimg: a second bundle of an unpacked image must not pay for typer, tar,
# OpenSSL or the dataclass machinery.
PYIMG_HEAVY = {"typer", "click", "tarfile", "shutil", "tempfile", "hashlib", "_hashlib", "json",
               "dataclasses", "inspect", "contextlib", "zstandard", "urllib", "http", "ssl"}


def test_pyimg_unpack_path_imports_nothing_heavy(tmp_path):
    code = ("from imagetool import cli, bundle, store, reference, layer\n"
            f"cli.T.parse(['--root', {str(tmp_path)!r}, 'unpack', 'busybox', {str(tmp_path / 'b')!r}])\n"
            "bundle.layer_key(bundle._chain_ids(['sha256:' + '0' * 64, 'sha256:' + '1' * 64])[-1], "
            "layer.IdMap.parse([]), layer.IdMap.parse([]))\n"
            "reference.parse('busybox')")
    loaded = _loaded(code)
    assert not (loaded & PYIMG_HEAVY), loaded & PYIMG_HEAVY
