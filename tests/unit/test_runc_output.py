"""JSON as Go's encoder writes it, for what pyrunc prints where runc
prints Go's output (no root needed)."""
import json
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

from runtime import fastjson  # noqa: E402


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
