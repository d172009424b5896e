"""runtime.toolkit.os_lite against os: same answers for the path helpers, walk and
makedirs, and the hot verbs' modules never import os."""
import os
import posixpath
import subprocess
import sys

import pytest

from runtime.toolkit import os_lite as _os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PATHS = ["", ".", "..", "/", "//", "///", "a", "a/", "a//", "/a", "//a", "///a", "a/b", "a/./b", "a/../b",
         "../a", "../../a/b", "a/b/../../..", "/..", "/../a", "/a/b/../c/./d/", "a//b///c", "./a/", "/a/b/",
         "....", "a/.../b", "~/x", "/sys/fs/cgroup/unified/../cpu", "x/y/z/../../..", ".a/..b/c."]


@pytest.mark.parametrize("p", PATHS)
def test_lexical_helpers_match_posixpath(p):
    for name in ("split", "dirname", "basename", "isabs", "normpath"):
        assert getattr(_os.path, name)(p) == getattr(posixpath, name)(p), (name, p)
    if p:
        assert _os.path.abspath(p) == posixpath.abspath(p)
        assert _os.path.relpath(p) == posixpath.relpath(p)
        for start in ("/", "/a/b", "a", "../x"):
            assert _os.path.relpath(p, start) == posixpath.relpath(p, start), (p, start)


@pytest.mark.parametrize("parts", [("a",), ("a", "b"), ("a/", "b"), ("a", "/b"), ("", "b"), ("a", ""),
                                   ("/", "a", "b/"), ("a", "b", "/c", "d"), ("", ""), ("a//", "//b")])
def test_join_matches_posixpath(parts):
    assert _os.path.join(*parts) == posixpath.join(*parts)


def test_no_bytes_environ_to_trip_over():
    # posix.environ has bytes keys: .get("PATH") would quietly be None
    assert not hasattr(_os, "environ")


def test_relpath_refuses_empty():
    with pytest.raises(ValueError):
        _os.path.relpath("")


def test_file_type_predicates(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    d = tmp_path / "d"
    d.mkdir()
    (tmp_path / "lf").symlink_to(f)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    for p in ("f", "d", "lf", "dangling", "nowhere", "f/x"):
        q = str(tmp_path / p)
        for name in ("exists", "lexists", "isdir", "isfile", "islink"):
            assert getattr(_os.path, name)(q) == getattr(os.path, name)(q), (name, p)
    assert not _os.path.exists("bad\0path")


def test_realpath_matches_posixpath(tmp_path, monkeypatch):
    t = tmp_path
    (t / "real" / "sub").mkdir(parents=True)
    (t / "abs").symlink_to(t / "real")
    (t / "rel").symlink_to("real/sub")
    (t / "up").symlink_to("real/sub/..")
    (t / "chain").symlink_to("abs")
    (t / "real" / "sub" / "back").symlink_to("../../rel")
    (t / "loop1").symlink_to("loop2")
    (t / "loop2").symlink_to("loop1")
    (t / "self").symlink_to("self/x")
    (t / "dangling").symlink_to("missing/deeper")
    monkeypatch.chdir(t)
    cases = ["abs", "rel", "up", "chain/sub", "real/sub/back", "real/sub/back/back", "loop1", "loop1/x/y",
             "self", "self/a", "dangling", "dangling/z", "abs/../rel", "missing/../abs", ".", "..",
             "real/sub/../../abs/sub", "a/a/a/../a"]
    for c in cases:
        assert _os.path.realpath(c) == posixpath.realpath(c), c
        assert _os.path.realpath(str(t / c)) == posixpath.realpath(str(t / c)), c


def test_makedirs(tmp_path):
    target = tmp_path / "a" / "b" / "c"
    _os.makedirs(str(target), 0o711)
    assert target.is_dir()
    assert (target.stat().st_mode & 0o777) == 0o711 & ~_umask()
    # parents get the default mode, as with os.makedirs
    assert ((tmp_path / "a").stat().st_mode & 0o777) == 0o777 & ~_umask()
    _os.makedirs(str(target), exist_ok=True)
    with pytest.raises(FileExistsError):
        _os.makedirs(str(target))
    (tmp_path / "file").write_text("")
    with pytest.raises(FileExistsError):
        _os.makedirs(str(tmp_path / "file"), exist_ok=True)
    _os.makedirs(str(tmp_path / "x" / "y") + "/", exist_ok=True)
    assert (tmp_path / "x" / "y").is_dir()


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


def test_walk_matches_os_walk(tmp_path):
    for d in ("a/b/c", "a/d", "e"):
        (tmp_path / d).mkdir(parents=True)
    (tmp_path / "a" / "f").write_text("")
    (tmp_path / "a" / "link").symlink_to(tmp_path / "e")
    for topdown in (True, False):
        ours = [(r, sorted(d), sorted(f)) for r, d, f in _os.walk(str(tmp_path), topdown=topdown)]
        theirs = [(r, sorted(d), sorted(f)) for r, d, f in os.walk(str(tmp_path), topdown=topdown)]
        assert sorted(ours) == sorted(theirs)
        # order: parents before children top-down, after them bottom-up
        roots = [r for r, _, _ in ours]
        assert (roots.index(str(tmp_path)) == 0) == topdown
    assert list(_os.walk(str(tmp_path / "missing"))) == []
    # pruning in place works as with os.walk
    seen = []
    for r, dirs, _ in _os.walk(str(tmp_path)):
        seen.append(r)
        dirs[:] = [x for x in dirs if x != "a"]
    assert not any("/a" in r[len(str(tmp_path)):] for r in seen)


@pytest.mark.parametrize("verb", [["state", "x"], ["delete", "x"], ["kill", "x", "KILL"], ["start", "x"],
                                  ["list"], ["delete", "--force", "x"]])
def test_hot_verbs_do_not_import_os(verb, tmp_path):
    code = ("import sys; sys.path.insert(0, %r); sys.argv = ['pyrunc', '--root', %r] + %r\n"
            "from runtime import cli\n"
            "rc = cli._dispatch(sys.argv[1:])\n"
            "print('os' in sys.modules, 'ctypes' in sys.modules)\n" % (REPO, str(tmp_path), verb))
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True)
    assert out.stdout.split()[-2:] == ["False", "False"], out.stderr
