"""`os` for the verbs containerd runs most, without importing `os`.

`import os` runs os.py and `_collections_abc` (some thirty ABCs) in every
pyrunc call, more work than `pyrunc state` does with everything else it
loads (docs/performance.md; tests/unit/test_os_lite.py keeps the import
free of it). The functions are
the `posix` C module's, which os re-exports; what os adds in Python and the
hot paths use is rewritten below: the lexical os.path helpers, walk and
makedirs. Modules on those paths write `from runtime.toolkit import os_lite as os
keep reading like ordinary code.

Differences from os, on purpose: there is no `environ` (a copy here would
not follow os.environ; the one caller that reads the environment imports
os); `path` is a namespace of the functions listed in it, all for str
paths.
"""
import posix


def __getattr__(name: str):
    # The rest of os's functions and constants are posix's, looked up on
    # first use and then kept as module attributes (copying all ~330 names
    # with `from posix import *` costs every call: docs/performance.md).
    # posix.environ is left out: its keys are bytes (see the docstring).
    if name.startswith("__") or name == "environ":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        value = getattr(posix, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value


_exit = posix._exit
error = OSError
sep = "/"
curdir = "."
pardir = ".."
devnull = "/dev/null"
SEEK_SET, SEEK_CUR, SEEK_END = 0, 1, 2


def _type(p: str, follow: bool = True) -> int | None:
    # The file type bits of p's mode (S_IFMT), None if p cannot be stat'ed.
    try:
        return (posix.stat(p) if follow else posix.lstat(p)).st_mode & 0o170000
    except (OSError, ValueError):
        return None


def _isdir(p: str) -> bool:
    return _type(p) == 0o040000


def _join(a: str, *p: str) -> str:
    out = a
    for b in p:
        if b.startswith("/"):
            out = b
        elif not out or out.endswith("/"):
            out += b
        else:
            out += "/" + b
    return out


def _split(p: str) -> tuple[str, str]:
    i = p.rfind("/") + 1
    head, tail = p[:i], p[i:]
    if head and head != "/" * len(head):
        head = head.rstrip("/")
    return head, tail


def _dirname(p: str) -> str:
    return _split(p)[0]


def _basename(p: str) -> str:
    return p[p.rfind("/") + 1:]


def _isabs(p: str) -> bool:
    return p.startswith("/")


def _normpath(p: str) -> str:
    if not p:
        return "."
    # POSIX keeps exactly two leading slashes; one or three+ become one.
    initial = 2 if p.startswith("//") and not p.startswith("///") else (1 if p.startswith("/") else 0)
    parts: list[str] = []
    for c in p.split("/"):
        if c in ("", "."):
            continue
        if c != ".." or (not initial and not parts) or (parts and parts[-1] == ".."):
            parts.append(c)
        elif parts:
            parts.pop()
    out = "/" * initial + "/".join(parts)
    return out or "."


def _abspath(p: str) -> str:
    if not p.startswith("/"):
        p = _join(posix.getcwd(), p)
    return _normpath(p)


def _relpath(p: str, start: str = ".") -> str:
    if not p:
        raise ValueError("no path specified")
    a = [x for x in _abspath(start).split("/") if x]
    b = [x for x in _abspath(p).split("/") if x]
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    rel = [".."] * (len(a) - n) + b[n:]
    return "/".join(rel) if rel else "."


def _realpath(p: str) -> str:
    """posixpath.realpath (not strict): `p` absolute, with every symlink
    resolved; a missing component ends resolution there, a loop leaves
    the looping link in place."""
    resolved, _ = _resolve("", p, {})
    return _abspath(resolved)


def _exists(p: str) -> bool:
    return _type(p) is not None


def _lexists(p: str) -> bool:
    return _type(p, follow=False) is not None


def _isfile(p: str) -> bool:
    return _type(p) == 0o100000


def _islink(p: str) -> bool:
    return _type(p, follow=False) == 0o120000


# os.path: a module object holding the functions above (a class of
# staticmethods would be built on every call).
path = type(posix)("runtime.toolkit.os_lite.path", "The lexical parts of posixpath (same results for str paths).")
path.__dict__.update(
    sep="/", join=_join, split=_split, dirname=_dirname, basename=_basename, isabs=_isabs,
    normpath=_normpath, abspath=_abspath, relpath=_relpath, realpath=_realpath, exists=_exists,
    lexists=_lexists, isdir=_isdir, isfile=_isfile, islink=_islink)


def _resolve(done: str, rest: str, links: dict) -> tuple[str, bool]:
    # Walk `rest` below the already resolved `done`. `links` maps each link
    # met to what it resolved to (None while being resolved: a loop).
    if rest.startswith("/"):
        done, rest = "/", rest[1:]
    parts = rest.split("/")
    for i, name in enumerate(parts):
        if name in ("", "."):
            continue
        if name == "..":
            if not done:
                done = ".."
            else:
                head, last = _split(done)
                done = _join(head, "..", "..") if last == ".." else head
            continue
        cand = _join(done, name)
        if not _islink(cand):
            done = cand
            continue
        if cand in links:
            if links[cand] is not None:
                done = links[cand]
                continue
            return _join(cand, *parts[i + 1:]), False  # a loop: leave the rest as it is
        links[cand] = None
        done, ok = _resolve(done, posix.readlink(cand), links)
        if not ok:
            return _join(done, *parts[i + 1:]), False
        links[cand] = done
    return done, True


def rmdir_all(paths) -> bool:
    """One rmdir per path: True when every path is gone afterwards (removed
    or already missing); False at the first one that could not be removed
    (still in use or not empty; the paths after it are left alone)."""
    for p in dict.fromkeys(p for p in paths if p):
        try:
            posix.rmdir(p)
        except FileNotFoundError:
            continue
        except OSError:
            return False
    return True


def makedirs(name: str, mode: int = 0o777, exist_ok: bool = False) -> None:
    """os.makedirs: create `name` with `mode` and missing parents with the
    default mode (0o777 less the umask), as os.makedirs does since 3.7."""
    head, tail = _split(name)
    if not tail:
        head, tail = _split(head)
    if head and tail and not _exists(head):
        try:
            makedirs(head, exist_ok=True)
        except FileExistsError:
            pass
    try:
        posix.mkdir(name, mode)
    except OSError:
        if not exist_ok or not _isdir(name):
            raise


def walk(top: str, topdown: bool = True):
    """os.walk without followlinks or onerror: yields (dir, subdirs, files);
    a symlink to a directory is listed in subdirs but not entered, and
    unreadable directories are skipped, as os.walk does by default."""
    try:
        entries = list(posix.scandir(top))
    except OSError:
        return
    dirs, files = [], []
    for e in entries:
        try:
            is_dir = e.is_dir()
        except OSError:
            is_dir = False
        (dirs if is_dir else files).append(e.name)
    if topdown:
        yield top, dirs, files
    for d in dirs:
        sub = _join(top, d)
        if not _islink(sub):
            yield from walk(sub, topdown)
    if not topdown:
        yield top, dirs, files
