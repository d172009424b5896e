"""The import policy of runtime/toolkit/__init__.py: modules import at the
top; an import inside a function is either in a verb adapter (runtime/cli.py,
imagetool/cli.py, imagetool/cli_bundle.py) or one of the entries below, each
an optional edge (loaded only when a config or verb uses it) or one of
init.preload's deliberate loads into the child. A new import inside a
function outside the adapters fails here until it is added, with its reason,
to ALLOWED; an entry that is no longer needed fails too, so the list stays as
small as the code allows.

Keys are (module, imported name): `import x` names "x", `from P import N`
names "P.N" (relative imports resolved)."""
import ast
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from project_modules import modules  # noqa: E402

ADAPTERS = {"runtime.cli", "imagetool.cli", "imagetool.cli_bundle", "imagetool.cli_engine", "runtime.shim.main"}


def _names(module: str, *names: str) -> set[tuple[str, str]]:
    return {(module, n) for n in names}


ALLOWED = (
    # install_finder: the module finder is set up before anything else loads
    _names("runtime", "_frozen_importlib", "_frozen_importlib_external", "marshal", "posix")
    # one rarely used pattern check
    | _names("runtime._schema_checks", "re")
    # the cgroups package stays light for `state`: .common and the managers
    # load only when a verb opens a manager
    # (and pids()' reader, which imports errno only on its error path)
    | _names("runtime.cgroups", "runtime.cgroups.procs.tree_pids")
    | _names("runtime.cgroups.procs", "errno.ENODEV", "errno.ENOENT")
    | _names("runtime.cgroups", "runtime.cgroups.common.CgroupError", "runtime.cgroups.common.clean_path",
             "runtime.cgroups.common.own_cgroups", "runtime.cgroups.common.read_mountinfo",
             "runtime.cgroups.v1.V1Manager", "runtime.cgroups.v2.V2Manager")
    | _names("runtime.cgroups.common", "signal")
    | _names("runtime.cgroups.ebpf", "resource")
    | _names("runtime.cgroups.mounts", "runtime.rootfs", "runtime.syscalls")
    # the cgroup managers' writers, the OOM watchers and the device rules:
    # loaded only when a config sets those resources or a verb asks for them
    | _names("runtime.cgroups.v1", "runtime.cgroups.common.read_kv", "runtime.cgroups.oom.OOMWatcherV1",
             "runtime.cgroups.v1_writers", "runtime.cgroups.v2_writers")
    | _names("runtime.cgroups.v1_writers", "runtime.cgroups.common.write_hugetlb", "runtime.cgroups.devices.Emulator",
             "runtime.cgroups.devices.rules_from_oci", "runtime.cgroups.devices.v1_writes")
    | _names("runtime.cgroups.v2", "runtime.cgroups.oom.OOMWatcherV2", "runtime.cgroups.v2_writers")
    | _names("runtime.cgroups.v2_writers", "runtime.cgroups.common.write_hugetlb", "runtime.cgroups.devicefilter.LICENSE",
             "runtime.cgroups.devicefilter.device_filter", "runtime.cgroups.ebpf.replace_device_program")
    # the shim: protobuf's upb classes, or its public factory when that is
    # missing; the zygote's preload of everything a shim uses
    | _names("runtime.shim.messages", "google._upb._message", "google.protobuf.message",
             "google.protobuf.descriptor_pool", "google.protobuf.message_factory")
    | _names("runtime.shim.zygote", "runtime.cgroups", "runtime.cgroups.oom", "runtime.cgroups.v1",
             "runtime.cgroups.v1_writers", "runtime.cgroups.v2", "runtime.cgroups.v2_writers", "runtime.container",
             "runtime.execproc", "runtime.lifecycle", "runtime.manage",
             "runtime.rootfs", "runtime.shim.loop", "runtime.shim.messages", "runtime.shim.server",
             "runtime.shim.service", "runtime.shim.stdio", "runtime.shim.ttrpc")
    # run pulls only an image the store does not have
    | _names("imagetool.engine.ops", "imagetool.pull.pull_image")
    # typer help
    | _names("runtime.cmdhelp", "inspect", "site", "typer")
    | _names("runtime.toolkit.cmdtable", "gc", "runtime.cmdhelp.go_help", "runtime.cmdhelp.typer_main")
    # create: init in the child only; seccomp, hooks, tty when the config has
    # them; lifecycle only for run and a failed create's abort
    | _names("runtime.container", "runtime.hooks.run_hooks", "runtime.init", "runtime.lifecycle.delete",
             "runtime.lifecycle.remove_parents", "runtime.lifecycle.rmtree", "runtime.lifecycle.start",
             "runtime.lifecycle.wait_gone", "runtime.seccomp", "runtime.tty")
    | _names("runtime.execproc", "runtime.tty", "runtime.validate.validate_config")
    # init.preload's loads into the child, and what it needs after pivot_root
    | _names("runtime.init", "_socket", "fcntl", "json", "resource", "runtime.caps", "runtime.hooks",
             "runtime.hooks.HookFailed", "runtime.hooks.run_hooks", "runtime.seccomp", "struct", "subprocess",
             "termios")
    | _names("runtime.libseccomp", "runtime.toolkit.ffi")
    # each verb on an existing container loads only its own edges
    | _names("runtime.lifecycle", "_socket", "pwd", "runtime.cgroups", "runtime.hooks.HookFailed",
             "runtime.hooks.run_hooks", "shutil")
    | _names("runtime.log", "runtime.toolkit.fastjson")
    | _names("runtime.manage", "runtime.caps", "runtime.rootfs", "runtime.seccomp", "runtime.validate.validate_config",
             "runtime.version.SPEC_VERSION", "runtime.version.VERSION", "select")
    | _names("runtime.netdev", "subprocess")
    | _names("runtime.seccomp", "posix", "runtime.toolkit.ffi", "runtime.toolkit.os_lite", "struct")
    | _names("runtime.spawn", "runtime.lifecycle.exit_code")
    | _names("runtime.state", "errno", "runtime.cgroups", "runtime.toolkit.fastjson")
    | _names("runtime.userns", "runtime.rootfs", "shutil", "subprocess")
    # pyimg: the heavy or rarely used steps (docs/performance.md), and the
    # runtime package, which pyimg works without
    | _names("imagetool.bundle", "runtime.specgen.default_spec", "runtime.syscalls", "runtime.validate.validate_config",
             "socket", "subprocess", "tempfile")
    | _names("imagetool.config", "ipaddress")
    | _names("imagetool.credentials", "imagetool.store.atomic_write", "subprocess")
    | _names("imagetool.layer", "runtime.syscalls", "shutil")
    | _names("imagetool.lazy", "_sha256.sha256", "hashlib.sha256")
    | _names("imagetool.tarstream", "hashlib", "queue", "threading", "zlib", "zstandard")
)


def in_function_imports(name: str, source: str, is_pkg: bool) -> set[tuple[str, str]]:
    """(module, imported name) for every import statement inside a function
    (at any depth: nested functions and methods count)."""
    found = set()
    for fn in ast.walk(ast.parse(source)):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.Import):
                found.update((name, a.name) for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = name.split(".") if is_pkg else name.split(".")[:-1]
                    parts = parts[:len(parts) - node.level + 1]
                    base = ".".join(parts + ([node.module] if node.module else []))
                found.update((name, f"{base}.{a.name}") for a in node.names)
    return found


def found_imports() -> set[tuple[str, str]]:
    out = set()
    for name, path in modules().items():
        if name in ADAPTERS:
            continue
        with open(path) as f:
            out |= in_function_imports(name, f.read(), path.endswith("__init__.py"))
    return out


def test_the_scan_sees_imports_in_functions_and_methods_only():
    src = ("import top\n"
           "def f():\n    import a\n    from .b import c\n"
           "class K:\n    def m(self):\n        def inner():\n            from p.q import r\n")
    assert in_function_imports("pkg.mod", src, is_pkg=False) == {
        ("pkg.mod", "a"), ("pkg.mod", "pkg.b.c"), ("pkg.mod", "p.q.r")}
    assert in_function_imports("pkg", "def f():\n    from . import x\n", is_pkg=True) == {("pkg", "pkg.x")}


def test_every_in_function_import_outside_the_adapters_is_allowed():
    extra = found_imports() - ALLOWED
    assert not extra, ("imports inside functions that the policy does not allow (move them to the top of "
                       f"the module, or add them to ALLOWED with the reason): {sorted(extra)}")


def test_the_allowlist_has_no_stale_entries():
    stale = ALLOWED - found_imports()
    assert not stale, f"ALLOWED names imports that are no longer made inside a function: {sorted(stale)}"
