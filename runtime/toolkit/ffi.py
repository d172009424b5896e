"""The part of ctypes the runtime uses, built directly on `_ctypes`.

`_ctypes` is the C module ctypes is made of; `ctypes/__init__.py` only adds
Python-level definitions on top of it: some thirty simple types, library
loaders, `_endian`'s byte-order structures, and imports of `types` and
`struct`. Running that file costs every interpreter that imports it
several times what `_ctypes` alone does, and `create` and `exec` did, on
their critical path (docs/performance.md).

What is defined here is what ctypes would define (a simple type is a
`_SimpleCData` subclass with a struct-style `_type_` code; a foreign
function is a `CFuncPtr` subclass built from (name, library)), so calls
behave exactly as they do through ctypes; tests/unit/test_ffi.py compares
the two. Only LP64 Linux (x86_64, aarch64) is supported, as by the rest of
the runtime.
"""
import _ctypes

Structure = _ctypes.Structure
Array = _ctypes.Array
POINTER = _ctypes.POINTER
byref = _ctypes.byref
sizeof = _ctypes.sizeof
addressof = _ctypes.addressof
get_errno = _ctypes.get_errno
set_errno = _ctypes.set_errno


def _simple(name: str, code: str) -> type:
    # What ctypes does for each of its simple types: a _SimpleCData
    # subclass whose _type_ is the struct-module code.
    return type(name, (_ctypes._SimpleCData,), {"_type_": code})


# c_int is the default return type of every foreign function (_Function),
# so it is made at import; the others are made on first use, since each
# type is costly to make (the metaclass also builds its byte-swapped twin).
c_int = _simple("c_int", "i")
c_int32 = c_int  # LP64: int is 32 bits, long 64 (ctypes makes the same aliases)

# The other types are made on first use, as module attributes through
# __getattr__: `create` forks its first child before it needs any of them
# (clone3 takes only ints and bytes), so the child makes them, on the other
# CPU, while the parent sets up the cgroup.
_LATER = {"c_uint": "I", "c_long": "l", "c_ulong": "L", "c_char": "c",
          "c_ushort": "H", "c_char_p": "z", "c_void_p": "P"}
_ALIASES = {"c_uint32": "c_uint", "c_int64": "c_long", "c_uint64": "c_ulong"}


def __getattr__(name: str):
    name = _ALIASES.get(name, name)
    code = _LATER.get(name)
    if code is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return globals().get(name) or globals().setdefault(name, _simple(name, code))


def create_string_buffer(init, size: int | None = None) -> _ctypes.Array:
    """A zero-filled char array: create_string_buffer(n), or a copy of the
    bytes `init` in an array of `size` (default len(init) + 1) bytes."""
    c_char = __getattr__("c_char")
    if isinstance(init, int):
        return (c_char * init)()
    buf = (c_char * (len(init) + 1 if size is None else size))()
    buf.raw = init + bytes(len(buf) - len(init)) if len(init) < len(buf) else init
    return buf


def string_at(address: int) -> bytes:
    """The NUL-terminated string at `address` (ctypes.string_at(address))."""
    return __getattr__("c_char_p")(address).value  # made on first use, see _LATER


class Library:
    """A shared object opened with dlopen(name) (None: the program itself,
    i.e. libc's symbols). Attribute access returns a foreign function (cached)
    that returns a C int and saves errno for get_errno(), like an attribute of
    ctypes.CDLL(name, use_errno=True); set .restype/.argtypes on it as with
    ctypes."""

    def __init__(self, name: str | None = None):
        self._name = name
        # RTLD_NOW | RTLD_LOCAL, as ctypes.CDLL opens libraries by default.
        self._handle = _ctypes.dlopen(name, 2 | _ctypes.RTLD_LOCAL)

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            func = _Function((name, self))
        except AttributeError:
            raise AttributeError(f"{self._name or 'libc'}: no symbol {name}") from None
        setattr(self, name, func)
        return func


class _Function(_ctypes.CFuncPtr):
    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = c_int
