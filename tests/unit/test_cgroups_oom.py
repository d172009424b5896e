"""Unit test: the v2 OOM watcher (inotify on memory.events) against a
synthetic file; inotify works on any filesystem, so no root is needed."""
import pytest

from runtime.cgroups.common import CgroupError
from runtime.cgroups.oom import OOMWatcherV2


def test_v2_watcher_counts_new_oom_kills(tmp_path):
    ev = tmp_path / "memory.events"
    ev.write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    with OOMWatcherV2(str(tmp_path)) as w:
        assert w.fileno() >= 0
        assert w.wait(timeout=0) == 0          # nothing new yet
        ev.write_text("low 0\nhigh 0\nmax 9\noom 3\noom_kill 3\n")
        assert w.wait(timeout=10) == 2          # two kills since we started
        ev.write_text("low 0\nhigh 0\nmax 10\noom 3\noom_kill 3\n")
        assert w.wait(timeout=10) == 0          # modified, but no new kill
    assert w.fileno() == -1                     # closed by the context manager
    w.close()                                   # idempotent


def test_v2_watcher_needs_memory_events(tmp_path):
    with pytest.raises(CgroupError, match="memory.events does not exist"):
        OOMWatcherV2(str(tmp_path))
