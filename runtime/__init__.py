"""pyrunc, an OCI runtime.

Importing the package also puts a finder for its own submodules in front
of sys.meta_path. Every pyrunc call is a fresh interpreter that imports ten
(`start`, `delete`) to thirty (`create`) of these modules, and the general
import path (PathFinder, FileFinder, SourceFileLoader.get_code: a few
hundred bytecode-level steps per module) takes about twice as long per
module as this finder (docs/performance.md). It loads the same bytes:

* plain modules (NAME.py) and packages (NAME/__init__.py) of this package,
  a package first, as FileFinder does (there are no extension modules here);
* the code comes from the timestamp pyc in __pycache__ when its header
  matches the source's mtime and size, exactly importlib's check; any other
  case (no pyc, a stale or hash-based one, an unreadable file) goes through
  SourceFileLoader itself, which compiles and writes the pyc as usual;
* the loader is a SourceFileLoader, so get_source, get_data and resource
  readers behave as with the default finder.

It stays out of the way under -O, a pycache prefix, or another
implementation (their pyc names differ), and installing it twice is a
no-op. imagetool (pyimg) installs one for itself the same way.
"""
import sys as _sys


def install_finder(pkg: str, root: str) -> None:
    """Put a finder for pkg's submodules (files under root) first on
    sys.meta_path; idempotent."""
    if (_sys.flags.optimize or _sys.pycache_prefix is not None
            or _sys.implementation.cache_tag is None
            or any(getattr(f, "pkg", None) == pkg for f in _sys.meta_path)):
        return
    import marshal
    import posix
    import _frozen_importlib as bs
    import _frozen_importlib_external as ext
    SourceFileLoader = ext.SourceFileLoader

    head = ext.MAGIC_NUMBER + b"\0\0\0\0"  # timestamp pycs have flags 0
    pyc = "." + _sys.implementation.cache_tag + ".pyc"
    prefix = pkg + "."

    def get_code(loader, fullname):
        # importlib's validation (magic, flags, mtime, size) in one read;
        # anything it would not accept as is goes the usual way.
        try:
            # The stat find_spec took a moment ago, once; a later call
            # (reload, a tool asking for the code) looks again.
            st = loader.__dict__.pop("source_stat", None) or posix.stat(loader.path)
            fd = posix.open(loader.cached, posix.O_RDONLY | posix.O_CLOEXEC)
        except OSError:
            return SourceFileLoader.get_code(loader, fullname)
        try:
            size = posix.fstat(fd).st_size
            data = posix.read(fd, size)
        except OSError:
            data = b""
        finally:
            posix.close(fd)
        if (len(data) < 16 or len(data) != size or data[:8] != head
                or int.from_bytes(data[8:12], "little") != int(st.st_mtime) & 0xFFFFFFFF
                or int.from_bytes(data[12:16], "little") != st.st_size & 0xFFFFFFFF):
            return SourceFileLoader.get_code(loader, fullname)
        return marshal.loads(memoryview(data)[16:])

    def find_spec(fullname, path=None, target=None):
        """pkg's submodules by name alone: no directory scans."""
        if not fullname.startswith(prefix):
            return None
        base = root + "/" + fullname[len(prefix):].replace(".", "/")
        for src, is_pkg in ((base + "/__init__.py", True), (base + ".py", False)):
            try:
                st = posix.stat(src)
            except OSError:
                continue
            d, _, name = src.rpartition("/")
            loader = SourceFileLoader(fullname, src)
            # get_code as an instance attribute (exec_module looks it up on
            # the instance): a subclass would cost every call a class.
            loader.get_code = lambda name, _loader=loader: get_code(_loader, name)
            loader.source_stat = st
            loader.cached = f"{d}/__pycache__/{name[:-3]}{pyc}"
            spec = bs.ModuleSpec(fullname, loader, origin=src, is_package=is_pkg)
            spec.has_location = True
            spec.cached = loader.cached
            if is_pkg:
                spec.submodule_search_locations = [base]
            return spec
        return None

    # The finder is a bare namespace holding find_spec (no class to build).
    finder = type(_sys)(prefix + "<finder>")
    finder.pkg = pkg
    finder.find_spec = find_spec
    _sys.meta_path.insert(0, finder)


install_finder(__name__, __path__[0])
