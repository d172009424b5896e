"""What pyrunc prints where runc prints Go's output: JSON as Go's encoder
writes it, runc's list table, `spec` byte for byte (no root needed)."""
import json
import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

from runtime import cli  # noqa: E402
from runtime.toolkit import fastjson  # noqa: E402
from runtime.cgroups.base import empty_stats, runc_shape  # noqa: E402

RUNC = shutil.which("runc")


@pytest.mark.parametrize("obj,text", [
    ([{"id": "a", "pid": 1}], '[{"id":"a","pid":1}]'),
    ({"type": "oom", "id": "x"}, '{"type":"oom","id":"x"}'),
    ({"s": "<a>&b"}, r'{"s":"\u003ca\u003e\u0026b"}'),
    ({"s": "é\u2028"}, r'{"s":"é\u2028"}'),
    ({"s": "\b\f\n\t\x01\\b"}, r'{"s":"\u0008\u000c\n\t\u0001\\b"}'),
    (None, "null"), ({"e": {}, "l": []}, '{"e":{},"l":[]}'),
])
def test_go_dumps_is_go_s_json_marshal(obj, text):
    assert fastjson.go_dumps(obj) == text
    assert json.loads(text) == obj


def test_go_dumps_indented_is_go_s_marshal_indent():
    assert fastjson.go_dumps({"a": [1, {}], "b": {"c": "d"}}, indent="  ") == \
        '{\n  "a": [\n    1,\n    {}\n  ],\n  "b": {\n    "c": "d"\n  }\n}'


def test_list_table_is_go_s_tabwriter_layout():
    rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"),
            ("c1", "19650", "running", "/tmp/cp/bun2", "2026-12-06T20:42:12.022050182Z", "root")]
    # as `runc list` printed it for the same container
    assert cli._table(rows) == (
        "ID          PID         STATUS      BUNDLE         CREATED                          OWNER\n"
        "c1          19650       running     /tmp/cp/bun2   2026-12-06T20:42:12.022050182Z   root\n")
    assert cli._table(rows[:1]) == "ID          PID         STATUS      BUNDLE      CREATED     OWNER\n"


def test_stats_maps_are_sorted_and_blkio_in_struct_order():
    st = empty_stats()
    st["memory"]["raw"] = {"rss": 1, "cache": 2, "active_anon": 3}
    st["hugetlb"] = {"2MB": {"failcnt": 0}, "1GB": {"failcnt": 0}}
    st["blkio"] = {"sectorsRecursive": [{"major": 8, "value": 1}],
                   "ioServicedRecursive": [{"major": 8, "value": 2}],
                   "ioServiceBytesRecursive": [{"major": 8, "value": 3}]}
    out = runc_shape(st)
    assert list(out["memory"]["raw"]) == ["active_anon", "cache", "rss"]
    assert list(out["hugetlb"]) == ["1GB", "2MB"]
    assert list(out["blkio"]) == ["ioServiceBytesRecursive", "ioServicedRecursive", "sectorsRecursive"]


def test_created_time_is_rfc3339nano_without_trailing_zeros(monkeypatch):
    from runtime import container
    monkeypatch.setattr(container.time, "time_ns", lambda: 1_765_000_000_120_000_000)
    assert container.now_rfc3339() == "2025-12-06T05:46:40.12Z"
    monkeypatch.setattr(container.time, "time_ns", lambda: 1_765_000_000_000_000_000)
    assert container.now_rfc3339() == "2025-12-06T05:46:40Z"


def _spec(binary, d, *flags):
    d.mkdir()
    subprocess.run([binary, "spec", *flags], cwd=d, check=True, capture_output=True)
    return (d / "config.json").read_bytes()


@pytest.mark.skipif(RUNC is None, reason="runc (the reference) is not installed")
@pytest.mark.parametrize("flags", [(), ("--rootless",)])
def test_spec_is_runc_s_byte_for_byte_but_the_spec_version(tmp_path, flags):
    ours = _spec(os.path.join(REPO, ".venv", "bin", "pyrunc"), tmp_path / "ours", *flags)
    theirs = _spec(RUNC, tmp_path / "runc", *flags)
    version = json.loads(theirs)["ociVersion"].encode()
    assert ours == theirs.replace(b'"ociVersion": "' + version + b'"', b'"ociVersion": "1.3.0"')
    assert {"type": "cgroup"} not in json.loads(ours)["linux"]["namespaces"]
