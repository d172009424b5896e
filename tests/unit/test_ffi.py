"""runtime.toolkit.ffi against ctypes: same sizes, same calling behaviour, and not
ctypes/__init__.py's import cost."""
import ctypes
import os
import subprocess
import sys

import pytest

from runtime.toolkit import ffi as _ffi

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("name", ["c_int", "c_uint", "c_long", "c_ulong", "c_ushort", "c_char",
                                  "c_char_p", "c_void_p", "c_int32", "c_uint32", "c_int64", "c_uint64"])
def test_simple_types_match_ctypes(name):
    ours, theirs = getattr(_ffi, name), getattr(ctypes, name)
    assert _ffi.sizeof(ours) == ctypes.sizeof(theirs)
    assert ours._type_ == theirs._type_ or (_ffi.sizeof(ours) == ctypes.sizeof(theirs)
                                            and ours._type_.lower() == theirs._type_.lower())


def test_structure_layout_matches_ctypes():
    class Ours(_ffi.Structure):
        _fields_ = [("a", _ffi.c_uint32), ("b", _ffi.c_uint64), ("c", _ffi.c_int32)]

    class Theirs(ctypes.Structure):
        _fields_ = [("a", ctypes.c_uint32), ("b", ctypes.c_uint64), ("c", ctypes.c_int32)]

    assert _ffi.sizeof(Ours) == ctypes.sizeof(Theirs) == 24
    assert bytes(Ours(1, 2**40, -3)) == bytes(Theirs(1, 2**40, -3))


def test_calls_return_values_and_errno():
    libc = _ffi.Library(None)
    assert libc.getpid() == os.getpid()
    # errno is saved per call, as with CDLL(use_errno=True)
    _ffi.set_errno(0)
    assert libc.close(-1) == -1
    assert _ffi.get_errno() == 9  # EBADF
    # functions are cached on the library object
    assert libc.getpid is libc.getpid


def test_syscall_with_long_result_and_pointer_args():
    libc = _ffi.Library(None)
    sysc = libc.syscall
    sysc.restype = _ffi.c_long
    nr_getpid = {"x86_64": 39, "aarch64": 172}[os.uname().machine]
    assert sysc(_ffi.c_long(nr_getpid)) == os.getpid()
    buf = _ffi.create_string_buffer(64)
    # getcwd(2) writes into a buffer passed by address
    n = libc.getcwd(buf, _ffi.c_ulong(64)) if len(os.getcwd()) < 64 else None
    if n is not None:
        assert buf.value == os.getcwd().encode()


def test_missing_symbol_names_it():
    with pytest.raises(AttributeError, match="no_such_symbol_xyz"):
        _ffi.Library(None).no_such_symbol_xyz


def test_missing_library_is_oserror():
    with pytest.raises(OSError):
        _ffi.Library("libdoes-not-exist.so.9")


def test_string_buffers_and_string_at():
    b = _ffi.create_string_buffer(b"ab\0cd", 5)
    assert b.raw == b"ab\0cd" and _ffi.sizeof(b) == 5
    b = _ffi.create_string_buffer(b"abc")
    assert b.raw == b"abc\0"
    assert _ffi.string_at(_ffi.addressof(b)) == b"abc"
    assert _ffi.create_string_buffer(3).raw == b"\0\0\0"


def test_importing_does_not_import_ctypes():
    code = ("import sys; sys.path.insert(0, %r); import runtime.toolkit.ffi, runtime.syscalls; "
            "print('ctypes' in sys.modules)" % REPO)
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_packed_structs_match_ctypes_structures():
    # syscalls._struct packs what ctypes.Structure would lay out, for the
    # padding-free shapes it is used with (sched_attr here: mixed widths, a
    # signed field).
    from runtime import syscalls as sc

    class SchedAttr(ctypes.Structure):
        _fields_ = [("size", ctypes.c_uint32), ("policy", ctypes.c_uint32), ("flags", ctypes.c_uint64),
                    ("nice", ctypes.c_int32), ("priority", ctypes.c_uint32), ("runtime", ctypes.c_uint64),
                    ("deadline", ctypes.c_uint64), ("period", ctypes.c_uint64)]
    vals = (48, 6, 1, -5, 7, 10**6, 2 * 10**6, 3 * 10**6)
    ours = sc._struct(*zip(vals, (4, 4, 8, 4, 4, 8, 8, 8)))
    assert ctypes.sizeof(SchedAttr) == len(ours) == 48
    assert ours == bytes(SchedAttr(*vals))
    assert sc._field(ours, 8, 8) == 1 and sc._field(ours, 24, 8) == 10**6


def test_capget_agrees_with_proc_status_and_capset_round_trips():
    from runtime import syscalls as sc
    status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\t" in line)
    want = tuple(int(status[k], 16) for k in ("CapEff", "CapPrm", "CapInh"))
    assert sc.capget() == want
    assert sc.capget(os.getpid()) == want
    # Setting the sets we already have needs no privilege and changes nothing.
    sc.capset(*want)
    assert sc.capget() == want


def test_types_made_on_first_use_are_made_once():
    out = subprocess.run([sys.executable, "-I", "-S", "-c",
                          f"import sys; sys.path.insert(0, {REPO!r})\n"
                          "from runtime.toolkit import ffi as _ffi\n"
                          "assert 'c_void_p' not in vars(_ffi)\n"
                          "a = _ffi.c_void_p; b = _ffi.c_void_p\n"
                          "buf = _ffi.create_string_buffer(b'hi')\n"
                          "s1 = _ffi.string_at(_ffi.addressof(buf))\n"
                          "c = _ffi.__getattr__('c_char_p'); d = _ffi.c_char_p\n"
                          "print(a is b, c is d, s1, _ffi.sizeof(a))"],
                         capture_output=True, text=True)
    assert out.stdout.split() == ["True", "True", "b'hi'", "8"], out.stderr
