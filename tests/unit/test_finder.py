"""runtime.install_finder: the package's own submodule finder (see
runtime/__init__.py). Each case runs a fresh interpreter, as pyrunc does."""
import json
import marshal
import os
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TAG = sys.implementation.cache_tag


def _py(code: str, *flags: str, path: str = REPO) -> dict:
    prog = f"import sys; sys.path.insert(0, {path!r}); sys.path.insert(1, {REPO!r})\n{code}"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    out = subprocess.run([sys.executable, "-I", "-S", *flags, "-c", prog], capture_output=True,
                         text=True, env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout) if out.stdout.strip() else {}


def test_runtime_modules_load_through_it_with_the_usual_attributes():
    got = _py("import inspect, json\n"
              "from runtime import lifecycle\n"
              "from runtime.cgroups import v1\n"
              "import runtime.cgroups as cg\n"
              "ld = lifecycle.__spec__.loader\n"
              "print(json.dumps({'loader': type(ld).__name__, 'ours': 'get_code' in vars(ld),\n"
              " 'file': lifecycle.__file__, 'cached': lifecycle.__cached__,\n"
              " 'v1': v1.__file__, 'pkgpath': cg.__path__, 'pkg': cg.__spec__.submodule_search_locations,\n"
              " 'finders': sum(getattr(f, 'pkg', None) == 'runtime' for f in sys.meta_path),\n"
              " 'src': inspect.getsource(lifecycle.start).startswith('def start(')}))")
    rt = os.path.join(REPO, "runtime")
    assert got["loader"] == "SourceFileLoader" and got["ours"] is True
    assert got["file"] == os.path.join(rt, "lifecycle.py")
    assert got["cached"] == os.path.join(rt, "__pycache__", f"lifecycle.{TAG}.pyc")
    assert got["v1"] == os.path.join(rt, "cgroups", "v1.py")
    assert got["pkgpath"] == got["pkg"] == [os.path.join(rt, "cgroups")]
    assert got["finders"] == 1
    assert got["src"] is True


def _make_pkg(tmp_path) -> str:
    pkg = tmp_path / "fpkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from runtime import install_finder\n"
                                     "install_finder(__name__, __path__[0])\n"
                                     "install_finder(__name__, __path__[0])\n")
    (pkg / "mod.py").write_text("VALUE = 1\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "leaf.py").write_text("from fpkg import mod\nVALUE = mod.VALUE + 10\n")
    return str(tmp_path)


_SHOW = ("import json, fpkg.mod, fpkg.sub.leaf\n"
         "print(json.dumps({'mod': fpkg.mod.VALUE, 'leaf': fpkg.sub.leaf.VALUE,\n"
         " 'loader': type(fpkg.mod.__spec__.loader).__name__\n"
         "           + '+ours' * ('get_code' in vars(fpkg.mod.__spec__.loader)),\n"
         " 'finders': sum(getattr(f, 'pkg', None) == 'fpkg' for f in sys.meta_path)}))")


def test_a_changed_source_is_recompiled_not_served_from_the_old_pyc(tmp_path):
    root = _make_pkg(tmp_path)
    first = _py(_SHOW, path=root)
    assert first == {"mod": 1, "leaf": 11, "loader": "SourceFileLoader+ours", "finders": 1}
    pyc = os.path.join(root, "fpkg", "__pycache__", f"mod.{TAG}.pyc")
    assert os.path.exists(pyc)  # written by the fallback, as importlib would
    # Same size, new mtime: only the header's mtime tells the pyc is stale.
    src = os.path.join(root, "fpkg", "mod.py")
    with open(src, "w") as f:
        f.write("VALUE = 2\n")
    later = time.time() + 5
    os.utime(src, (later, later))
    assert _py(_SHOW, path=root)["mod"] == 2
    assert _py(_SHOW, path=root)["leaf"] == 12


@pytest.mark.parametrize("damage", ["magic", "truncated", "hash-based"])
def test_a_pyc_importlib_would_not_take_as_is_goes_the_usual_way(tmp_path, damage):
    root = _make_pkg(tmp_path)
    _py(_SHOW, path=root)
    pyc = os.path.join(root, "fpkg", "__pycache__", f"mod.{TAG}.pyc")
    data = open(pyc, "rb").read()
    if damage == "magic":
        data = b"\0\0\0\0" + data[4:]
    elif damage == "truncated":
        data = data[:12]
    else:  # flags 0b11: an unchecked hash-based pyc holding other code
        code = compile("VALUE = 99\n", os.path.join(root, "fpkg", "mod.py"), "exec")
        import marshal
        data = data[:4] + (1).to_bytes(4, "little") + b"\0" * 8 + marshal.dumps(code)
    with open(pyc, "wb") as f:
        f.write(data)
    got = _py(_SHOW, path=root)
    # importlib honours an unchecked hash-based pyc; it rejects the others
    assert got["mod"] == (99 if damage == "hash-based" else 1)


def test_missing_modules_and_optimize_mode(tmp_path):
    root = _make_pkg(tmp_path)
    got = _py("import json\n"
              "try:\n    import fpkg.nothere\n    r = 'imported'\n"
              "except ModuleNotFoundError as e:\n    r = e.name\n"
              "print(json.dumps({'r': r}))", path=root)
    assert got == {"r": "fpkg.nothere"}
    # -O names pycs differently: the finder stays out, imports still work
    got = _py(_SHOW, "-O", path=root)
    assert got["finders"] == 0 and got["leaf"] == 11
