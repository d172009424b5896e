"""Standard modules imported on first use, and a cheap SHA-256.

Every pyimg call is a fresh interpreter, and most calls need few of the
stdlib modules the image tool's files use: the second bundle of an
unpacked image needs no tarfile, shutil, tempfile or OpenSSL. A module
named here is imported the first time one of its attributes is read.
"""
import sys


class LazyModule:
    """Stands in for module `name` until an attribute is needed."""
    __slots__ = ("_name",)

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr):
        # __import__ each time, not a look in sys.modules: a module another
        # thread is still importing is in sys.modules half made, and
        # __import__ waits for it (when it is whole, __import__ is a lookup)
        __import__(self._name)
        return getattr(sys.modules[self._name], attr)


def sha256(data: bytes = b""):
    """A hashlib-compatible SHA-256 object. For short inputs (ids, keys) the
    interpreter's built-in implementation avoids loading OpenSSL;
    bulk hashing (layers, blobs) uses hashlib, which is faster per byte."""
    try:
        from _sha256 import sha256 as impl  # built into Debian's python3.11
    except ImportError:
        from hashlib import sha256 as impl
    return impl(data)
