"""openat2 tries the walk again when the kernel answers EAGAIN (a rename or
mount raced with it), and gives up with the error otherwise."""
import pytest

from runtime import syscalls as sc


class FakeSyscall:
    def __init__(self, results):
        self.results = list(results)  # (return value, errno)
        self.calls = 0

    def __call__(self, *args):
        self.calls += 1
        rv, err = self.results.pop(0)
        sc.ctypes.set_errno(err)
        return rv


def test_eagain_is_retried(monkeypatch):
    fake = FakeSyscall([(-1, 11), (-1, 11), (7, 0)])
    monkeypatch.setattr(sc, "_syscall", fake)
    assert sc.openat2(3, "a/b", 0, 0) == 7
    assert fake.calls == 3


def test_other_errors_are_not_retried(monkeypatch):
    fake = FakeSyscall([(-1, 2)])
    monkeypatch.setattr(sc, "_syscall", fake)
    with pytest.raises(FileNotFoundError, match="openat2 a/b"):
        sc.openat2(3, "a/b", 0, 0)
    assert fake.calls == 1


def test_endless_eagain_gives_up(monkeypatch):
    fake = FakeSyscall([(-1, 11)] * sc.OPENAT2_RETRIES)
    monkeypatch.setattr(sc, "_syscall", fake)
    with pytest.raises(BlockingIOError):
        sc.openat2(3, "x", 0, 0)
    assert fake.calls == sc.OPENAT2_RETRIES
