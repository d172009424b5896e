"""imagetool.lazy.LazyModule: a module imported on first use, also when
several threads use it first at once (pull's download threads do)."""
import sys
import threading

from imagetool.lazy import LazyModule


def test_threads_using_a_lazy_module_first_all_see_it_whole(tmp_path, monkeypatch):
    # a module whose import takes a while: the other threads arrive while
    # it is in sys.modules but not yet initialised
    (tmp_path / "pyimg_slow_mod.py").write_text(
        "import time\ntime.sleep(0.3)\nVALUE = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "pyimg_slow_mod", raising=False)
    lazy = LazyModule("pyimg_slow_mod")
    got, errors = [], []

    def use():
        try:
            got.append(lazy.VALUE)
        except Exception as e:  # noqa: BLE001 - what the test looks for
            errors.append(e)
    threads = [threading.Thread(target=use) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert errors == [] and got == [42] * 4
    monkeypatch.delitem(sys.modules, "pyimg_slow_mod", raising=False)
