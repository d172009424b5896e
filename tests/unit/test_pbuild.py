"""runtime/shim/pbuild.py: message classes from field-number tables.

The wire format is checked against protobuf's own generated classes
(descriptor_pb2, timestamp_pb2, struct_pb2): a table that describes the
same fields must produce the same bytes and parse theirs."""
import os
import sys

import pytest
from google.protobuf import descriptor_pb2, struct_pb2, timestamp_pb2

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from runtime.shim import pbuild  # noqa: E402


def test_scalars_encode_like_generated_classes():
    b = pbuild.build("t.scalars", {"Ts": [(1, "seconds", "int64"), (2, "nanos", "int32")]})
    mine = b.Ts(seconds=1_700_000_000, nanos=-5).SerializeToString()
    theirs = timestamp_pb2.Timestamp(seconds=1_700_000_000, nanos=-5).SerializeToString()
    assert mine == theirs
    back = b.Ts.FromString(theirs)
    assert (back.seconds, back.nanos) == (1_700_000_000, -5)


def test_hand_encoded_wire_bytes():
    b = pbuild.build("t.wire", {"M": [
        (1, "s", "string"), (2, "n", "uint32"), (3, "z", "sint32"), (4, "ok", "bool"),
        (5, "xs", "int64", "repeated"), (6, "raw", "bytes"), (15, "f", "fixed32")]})
    m = b.M(s="ab", n=300, z=-1, ok=True, xs=[1, 2], raw=b"\0", f=1)
    # tag = number << 3 | wire type; proto3 packs repeated scalars
    assert m.SerializeToString() == (b"\x0a\x02ab" + b"\x10\xac\x02" + b"\x18\x01" + b"\x20\x01"
                                     + b"\x2a\x02\x01\x02" + b"\x32\x01\x00"
                                     + b"\x7d\x01\x00\x00\x00")
    # proto3: defaults are not sent
    assert b.M().SerializeToString() == b""


def test_a_subset_of_a_real_message_parses_and_keeps_the_rest():
    """Only the fields a user lists: the rest survive a parse + serialize as
    unknown fields, so relaying a message loses nothing."""
    real = descriptor_pb2.FieldDescriptorProto(name="abc", number=7, json_name="ABC",
                                               label=descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED)
    b = pbuild.build("t.subset", {"Field": [(1, "name", "string"), (3, "number", "int32")]})
    mine = b.Field.FromString(real.SerializeToString())
    assert (mine.name, mine.number) == ("abc", 7)
    again = descriptor_pb2.FieldDescriptorProto.FromString(mine.SerializeToString())
    assert again == real


def test_nested_repeated_enum_and_map():
    b = pbuild.build("t.nested", {
        "Inner": [(1, "name", "string")],
        "Outer": [(1, "one", "message", None, "Inner"),
                  (2, "many", "message", "repeated", "Inner"),
                  (3, "state", "enum", None, "State"),
                  (4, "labels", "map", None, ("string", "string")),
                  (5, "by_id", "map", None, ("uint32", "Inner")),
                  (6, "states", "map", None, ("string", "State"))],
    }, {"State": {"STATE_UNKNOWN": 0, "READY": 1, "DONE": 2}})
    o = b.Outer(one=b.Inner(name="a"), state=b.State.Value("DONE"), labels={"k": "v"})
    o.many.add(name="b")
    o.many.add(name="c")
    o.by_id[9].name = "nine"
    o.states["x"] = b.State.READY
    back = b.Outer.FromString(o.SerializeToString())
    assert back.one.name == "a"
    assert [i.name for i in back.many] == ["b", "c"]
    assert b.State.Name(back.state) == "DONE"
    assert dict(back.labels) == {"k": "v"}
    assert back.by_id[9].name == "nine"
    assert back.states["x"] == 1
    # a map is a repeated entry message {1: key, 2: value} on the wire
    assert b.Outer(labels={"k": "v"}).SerializeToString() == b"\x22\x06\x0a\x01k\x12\x01v"
    assert "Inner" in b and b["Outer"] is b.Outer and set(b) == {"Inner", "Outer", "State"}


def test_qualified_names_of_the_same_table():
    b = pbuild.build("t.q", {"A": [(1, "b", "message", None, "t.q.B"), (2, "e", "enum", None, ".t.q.E")],
                             "B": [(1, "x", "string")]}, {"E": {"Z": 0, "O": 1}})
    a = b.A.FromString(b.A(b={"x": "y"}, e=1).SerializeToString())
    assert (a.b.x, a.e) == ("y", 1)


def test_well_known_types():
    b = pbuild.build("t.wkt", {
        "Ev": [(1, "at", "message", None, "google.protobuf.Timestamp"),
               (2, "payload", "message", None, "google.protobuf.Any"),
               (3, "meta", "message", None, "google.protobuf.Struct")],
        "Payload": [(1, "id", "string")]})
    e = b.Ev()
    e.at.seconds = 12
    e.payload.Pack(b.Payload(id="x"))
    e.meta.update({"a": 1})
    back = b.Ev.FromString(e.SerializeToString())
    assert back.at.seconds == 12
    assert back.payload.type_url == "type.googleapis.com/t.wkt.Payload"
    p = b.Payload()
    assert back.payload.Unpack(p) and p.id == "x"
    # the Struct field is the well-known Struct's encoding
    assert struct_pb2.Struct.FromString(back.meta.SerializeToString())["a"] == 1


def test_two_tables_with_one_package_do_not_clash():
    a = pbuild.build("t.same", {"M": [(1, "x", "string")]})
    b = pbuild.build("t.same", {"M": [(1, "x", "int32")]})
    assert a.M(x="s").x == "s" and b.M(x=3).x == 3


def test_a_later_table_refers_to_an_earlier_one_through_the_pool():
    types = pbuild.build("t.types", {"Mount": [(1, "type", "string"), (2, "source", "string")]})
    task = pbuild.build("t.task", {"Create": [(1, "id", "string"),
                                              (2, "rootfs", "message", "repeated", "t.types.Mount")]},
                        pool=types.pool)
    c = task.Create(id="c1")
    c.rootfs.add(type="overlay", source="overlay")
    back = task.Create.FromString(c.SerializeToString())
    assert back.rootfs[0].type == "overlay"
    # the nested message is the earlier build's class
    assert isinstance(back.rootfs[0], types.Mount)


@pytest.mark.parametrize("messages,enums,words", [
    ({"M": [(1, "x", "strnig")]}, None, ["M.x", "strnig"]),
    ({"M": [(1, "x", "message", None, "Nope")]}, None, ["M.x", "Nope"]),
    ({"M": [(1, "x", "message", None, "E")]}, {"E": {"A": 0}}, ["M.x", "E is an enum, not a message"]),
    ({"M": [(1, "x", "enum", None, "M")]}, None, ["M.x", "M is a message, not an enum"]),
    ({"M": [(1, "x", "string"), (1, "y", "string")]}, None, ["M.y", "used twice"]),
    ({"M": [(0, "x", "string")]}, None, ["M.x", "field number 0"]),
    ({"M": [(19001, "x", "string")]}, None, ["M.x", "19001"]),
    ({"M": [(1, "x", "string", "required")]}, None, ["M.x", "label"]),
    ({"M": [(1, "x", "map", None, ("double", "string"))]}, None, ["M.x", "double"]),
    ({"M": [(1, "x", "map", None, "string")]}, None, ["M.x", "map"]),
    ({"M": [(1, "x")]}, None, ["M", "is not"]),
    ({"M": []}, {"E": {"A": 1}}, ["enum E", "0"]),
    ({"M": [(1, "x", "message", None, "google.protobuf.NoSuch")]}, None, ["M.x", "NoSuch"]),
])
def test_bad_tables_name_the_field(messages, enums, words):
    with pytest.raises(ValueError) as ei:
        pbuild.build("t.bad", messages, enums)
    for w in words:
        assert w in str(ei.value)


def test_bad_package_name():
    with pytest.raises(ValueError, match="package"):
        pbuild.build("not a package", {"M": [(1, "x", "string")]})
