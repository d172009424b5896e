"""The protobuf messages the shim speaks, built from field tables.

containerd and the shim exchange protobuf messages: the Task service's
requests and replies, ttrpc's envelope, the events the shim publishes, the
cgroup metrics of Stats. Only their wire facts matter (full names, field
numbers and types), so they are written here as compact tables in this
module's own notation, turned into FileDescriptorProto bytes by the small
encoder below and loaded into a private DescriptorPool of the `protobuf`
package, which then does all encoding and decoding. No .proto file, no
generated code, and no descriptor_pb2 import (it costs more start-up than
everything else here).

Notation: a message is a string of fields `name=NUMBER:TYPE`, where TYPE is
a scalar (string, bytes, bool, int32, int64, uint32, uint64), `*TYPE` for
a repeated field, `map<string,string>`, or the name of a message or enum
(a name without a dot is in the same package). An enum is a list of its
value names, numbered from 0.

    classes = build(TABLES)          # {full name: message class}
    get("containerd.task.v2.CreateTaskRequest")   # from the default tables
    get(EMPTY)                                    # google.protobuf.Empty's twin
"""
from __future__ import annotations

import sys

_SCALAR = {"double": 1, "float": 2, "int64": 3, "uint64": 4, "int32": 5, "bool": 8,
           "string": 9, "bytes": 12, "uint32": 13}
_MESSAGE, _ENUM = 11, 14
_OPTIONAL, _REPEATED = 1, 3

# (package, {message: fields}, {enum: values}), in dependency order: a
# package refers only to itself and to packages above it.
TABLES = [
    # google.protobuf's Any, Empty and Timestamp, under a package of our
    # own: message names are not on the wire (only the type_url inside an
    # Any is), and under their own names protobuf would attach its
    # well-known-type helpers, whose imports (calendar, locale, re, typing)
    # cost more start-up than the rest of the shim's.
    ("pyrunc.wkt", {
        "Any": "type_url=1:string value=2:bytes",
        "Empty": "",
        "Timestamp": "seconds=1:int64 nanos=2:int32",
    }, {}),
    ("google.rpc", {
        "Status": "code=1:int32 message=2:string details=3:*pyrunc.wkt.Any",
    }, {}),
    ("ttrpc", {
        "KeyValue": "key=1:string value=2:string",
        "Request": "service=1:string method=2:string payload=3:bytes timeout_nano=4:int64 "
                   "metadata=5:*KeyValue",
        "Response": "status=1:google.rpc.Status payload=2:bytes",
    }, {}),
    ("containerd.types", {
        "Mount": "type=1:string source=2:string target=3:string options=4:*string",
    }, {}),
    ("containerd.v1.types", {
        "ProcessInfo": "pid=1:uint32 info=2:pyrunc.wkt.Any",
    }, {"Status": ["UNKNOWN", "CREATED", "RUNNING", "STOPPED", "PAUSED", "PAUSING"]}),
    ("containerd.task.v2", {
        "CreateTaskRequest": "id=1:string bundle=2:string rootfs=3:*containerd.types.Mount terminal=4:bool "
                             "stdin=5:string stdout=6:string stderr=7:string checkpoint=8:string "
                             "parent_checkpoint=9:string options=10:pyrunc.wkt.Any",
        "CreateTaskResponse": "pid=1:uint32",
        "DeleteRequest": "id=1:string exec_id=2:string",
        "DeleteResponse": "pid=1:uint32 exit_status=2:uint32 exited_at=3:pyrunc.wkt.Timestamp",
        "ExecProcessRequest": "id=1:string exec_id=2:string terminal=3:bool stdin=4:string stdout=5:string "
                              "stderr=6:string spec=7:pyrunc.wkt.Any",
        "ResizePtyRequest": "id=1:string exec_id=2:string width=3:uint32 height=4:uint32",
        "StateRequest": "id=1:string exec_id=2:string",
        "StateResponse": "id=1:string bundle=2:string pid=3:uint32 status=4:containerd.v1.types.Status "
                         "stdin=5:string stdout=6:string stderr=7:string terminal=8:bool exit_status=9:uint32 "
                         "exited_at=10:pyrunc.wkt.Timestamp exec_id=11:string",
        "KillRequest": "id=1:string exec_id=2:string signal=3:uint32 all=4:bool",
        "CloseIORequest": "id=1:string exec_id=2:string stdin=3:bool",
        "PidsRequest": "id=1:string",
        "PidsResponse": "processes=1:*containerd.v1.types.ProcessInfo",
        "CheckpointTaskRequest": "id=1:string path=2:string options=3:pyrunc.wkt.Any",
        "UpdateTaskRequest": "id=1:string resources=2:pyrunc.wkt.Any annotations=3:map<string,string>",
        "StartRequest": "id=1:string exec_id=2:string",
        "StartResponse": "pid=1:uint32",
        "WaitRequest": "id=1:string exec_id=2:string",
        "WaitResponse": "exit_status=1:uint32 exited_at=2:pyrunc.wkt.Timestamp",
        "StatsRequest": "id=1:string",
        "StatsResponse": "stats=1:pyrunc.wkt.Any",
        "ConnectRequest": "id=1:string",
        "ConnectResponse": "shim_pid=1:uint32 task_pid=2:uint32 version=3:string",
        "ShutdownRequest": "id=1:string now=2:bool",
        "PauseRequest": "id=1:string",
        "ResumeRequest": "id=1:string",
    }, {}),
    ("containerd.events", {
        "TaskIO": "stdin=1:string stdout=2:string stderr=3:string terminal=4:bool",
        "TaskCreate": "container_id=1:string bundle=2:string rootfs=3:*containerd.types.Mount io=4:TaskIO "
                      "checkpoint=5:string pid=6:uint32",
        "TaskStart": "container_id=1:string pid=2:uint32",
        "TaskDelete": "container_id=1:string pid=2:uint32 exit_status=3:uint32 "
                      "exited_at=4:pyrunc.wkt.Timestamp id=5:string",
        "TaskExit": "container_id=1:string id=2:string pid=3:uint32 exit_status=4:uint32 "
                    "exited_at=5:pyrunc.wkt.Timestamp",
        "TaskOOM": "container_id=1:string",
        "TaskExecAdded": "container_id=1:string exec_id=2:string",
        "TaskExecStarted": "container_id=1:string exec_id=2:string pid=3:uint32",
        "TaskPaused": "container_id=1:string",
        "TaskResumed": "container_id=1:string",
    }, {}),
    ("containerd.services.events.ttrpc.v1", {
        "Envelope": "timestamp=1:pyrunc.wkt.Timestamp namespace=2:string topic=3:string "
                    "event=4:pyrunc.wkt.Any",
        "ForwardRequest": "envelope=1:Envelope",
    }, {}),
    ("containerd.runc.v1", {
        # The runc shim's options, which CRI and ctr also send to other shims.
        "Options": "no_pivot_root=1:bool no_new_keyring=2:bool shim_cgroup=3:string io_uid=4:uint32 "
                   "io_gid=5:uint32 binary_name=6:string root=7:string criu_path=8:string "
                   "systemd_cgroup=9:bool criu_image_path=10:string criu_work_path=11:string",
        "ProcessDetails": "exec_id=1:string",
    }, {}),
    ("io.containerd.cgroups.v1", {
        "Metrics": "pids=2:PidsStat cpu=3:CPUStat memory=4:MemoryStat "
                   "memory_oom_control=9:MemoryOomControl",
        "PidsStat": "current=1:uint64 limit=2:uint64",
        "CPUStat": "usage=1:CPUUsage throttling=2:Throttle",
        "CPUUsage": "total=1:uint64 kernel=2:uint64 user=3:uint64 per_cpu=4:*uint64",
        "Throttle": "periods=1:uint64 throttled_periods=2:uint64 throttled_time=3:uint64",
        "MemoryStat": "cache=1:uint64 rss=2:uint64 mapped_file=4:uint64 total_cache=18:uint64 "
                      "total_rss=19:uint64 usage=33:MemoryEntry swap=34:MemoryEntry kernel=35:MemoryEntry "
                      "kernel_tcp=36:MemoryEntry",
        "MemoryEntry": "limit=1:uint64 usage=2:uint64 max=3:uint64 failcnt=4:uint64",
        "MemoryOomControl": "oom_kill_disable=1:uint64 under_oom=2:uint64 oom_kill=3:uint64",
    }, {}),
    ("io.containerd.cgroups.v2", {
        "Metrics": "pids=1:PidsStat cpu=2:CPUStat memory=4:MemoryStat memory_events=8:MemoryEvents",
        "PidsStat": "current=1:uint64 limit=2:uint64",
        "CPUStat": "usage_usec=1:uint64 user_usec=2:uint64 system_usec=3:uint64 nr_periods=4:uint64 "
                   "nr_throttled=5:uint64 throttled_usec=6:uint64",
        "MemoryStat": "anon=1:uint64 file=2:uint64 usage=32:uint64 usage_limit=33:uint64 "
                      "swap_usage=34:uint64 swap_limit=35:uint64",
        "MemoryEvents": "low=1:uint64 high=2:uint64 max=3:uint64 oom=4:uint64 oom_kill=5:uint64",
    }, {}),
]


# --- a FileDescriptorProto writer (the descriptor messages' own wire form) --

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _len_field(num: int, payload: bytes) -> bytes:
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def _str_field(num: int, s: str) -> bytes:
    return _len_field(num, s.encode())


def _int_field(num: int, v: int) -> bytes:
    return _varint(num << 3) + _varint(v)


def _field(name: str, number: int, label: int, ftype: int, type_name: str = "") -> bytes:
    # FieldDescriptorProto: name 1, number 3, label 4, type 5, type_name 6
    b = _str_field(1, name) + _int_field(3, number) + _int_field(4, label) + _int_field(5, ftype)
    if type_name:
        b += _str_field(6, type_name)
    return b


def _camel(name: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in name.split("_"))


def _message(pkg: str, name: str, spec: str, enums: set[str]) -> bytes:
    # DescriptorProto: name 1, field 2, nested_type 3, options 7 (map_entry 7)
    out = _str_field(1, name)
    for item in spec.split():
        fname, _, rest = item.partition("=")
        num, _, tname = rest.partition(":")
        label = _OPTIONAL
        if tname.startswith("*"):
            label, tname = _REPEATED, tname[1:]
        if tname.startswith("map<"):
            entry = _camel(fname) + "Entry"
            kt, vt = tname[4:-1].split(",")
            nested = (_str_field(1, entry) + _len_field(2, _field("key", 1, _OPTIONAL, _SCALAR[kt]))
                      + _len_field(2, _field("value", 2, _OPTIONAL, _SCALAR[vt])) + _len_field(7, _int_field(7, 1)))
            out += _len_field(3, nested)
            out += _len_field(2, _field(fname, int(num), _REPEATED, _MESSAGE, f".{pkg}.{name}.{entry}"))
            continue
        if tname in _SCALAR:
            out += _len_field(2, _field(fname, int(num), label, _SCALAR[tname]))
            continue
        full = tname if "." in tname else f"{pkg}.{tname}"
        kind = _ENUM if full in enums else _MESSAGE
        out += _len_field(2, _field(fname, int(num), label, kind, "." + full))
    return out


def _enum(name: str, values: list[str]) -> bytes:
    # EnumDescriptorProto: name 1, value 2 (EnumValueDescriptorProto: name 1, number 2)
    out = _str_field(1, name)
    for i, v in enumerate(values):
        out += _len_field(2, _str_field(1, v) + _int_field(2, i))
    return out


def delete_response(pid: int, exit_status: int, exited_ns: int) -> bytes:
    """containerd.task.v2.DeleteResponse (pid 1, exit_status 2, exited_at 3:
    a Timestamp of seconds 1 and nanos 2), written without loading protobuf:
    it is all the `delete` command prints, and that command is on the path
    of every container's removal. tests/unit/test_shim_messages.py checks it
    against protobuf's own encoding."""
    secs, nanos = divmod(exited_ns, 10**9)
    ts = (_int_field(1, secs) if secs else b"") + (_int_field(2, nanos) if nanos else b"")
    return ((_int_field(1, pid) if pid else b"") + (_int_field(2, exit_status) if exit_status else b"")
            + _len_field(3, ts))


def file_descriptor(pkg: str, messages: dict, enums: dict, deps: list[str], all_enums: set[str]) -> bytes:
    """The serialized FileDescriptorProto of one package's tables
    (name 1, package 2, dependency 3, message_type 4, enum_type 5, syntax 12)."""
    out = _str_field(1, pkg + ".proto") + _str_field(2, pkg)
    for d in deps:
        out += _str_field(3, d + ".proto")
    for name, spec in messages.items():
        out += _len_field(4, _message(pkg, name, spec, all_enums))
    for name, values in enums.items():
        out += _len_field(5, _enum(name, values))
    return out + _str_field(12, "proto3")


def _pool_and_maker():
    """A new descriptor pool and the function making a message class of a
    descriptor in it. With protobuf's upb backend (the default since 4.21)
    that is its C module's metaclass over protobuf.message.Message, as
    message_factory does it, without loading message_factory's Python
    machinery (a third of the shim's start-up and memory otherwise); any
    other backend goes through the public message_factory."""
    try:
        from google._upb import _message
        from google.protobuf import message
    except ImportError:
        _message = None
    if _message is not None:
        def make(desc):
            return _message.MessageMeta(desc.name, (message.Message,), {"DESCRIPTOR": desc})
        return _message.DescriptorPool(), make, True
    from google.protobuf import descriptor_pool, message_factory
    pool = descriptor_pool.DescriptorPool()
    make = getattr(message_factory, "GetMessageClass", None)
    if make is None:  # protobuf < 4.22
        make = message_factory.MessageFactory(pool).GetPrototype
    return pool, make, False


def build(tables) -> dict:
    """{full name: message class} for every message of `tables`, in a pool
    of their own (so they never clash with another user of protobuf)."""
    pool, make, upb = _pool_and_maker()
    all_enums = {f"{pkg}.{e}" for pkg, _, enums in tables for e in enums}
    done: list[str] = []
    for pkg, messages, enums in tables:
        pool.AddSerializedFile(file_descriptor(pkg, messages, enums, list(done), all_enums))
        done.append(pkg)
    out = {}
    # upb's metaclass imports protobuf's well-known-type helpers to see
    # whether a new class is one of theirs (none of ours is: see TABLES).
    # That module loads calendar, locale, re and typing: more start-up and
    # memory than the rest of the shim. With LEAN set (by the shim's own
    # process, which uses no other protobuf types), an empty stand-in
    # answers "none" while our classes are made. upb keeps that answer, so
    # well-known types made later in the same process would lack their
    # helpers: hence only there.
    wkt = "google.protobuf.internal.well_known_types"
    stand_in = LEAN and upb and wkt not in sys.modules
    if stand_in:
        sys.modules[wkt] = type(sys)(wkt)
        sys.modules[wkt].WKTBASES = {}
    try:
        for pkg, messages, _ in tables:
            for name in messages:
                full = f"{pkg}.{name}"
                out[full] = make(pool.FindMessageTypeByName(full))
    finally:
        if stand_in:
            del sys.modules[wkt]
    return out


EMPTY = "pyrunc.wkt.Empty"
LEAN = False  # see build()
_CLASSES: dict | None = None


def get(full_name: str):
    """The class of one message of TABLES (all are built on first use)."""
    global _CLASSES
    if _CLASSES is None:
        _CLASSES = build(TABLES)
    return _CLASSES[full_name]


def enum_value(full_enum: str, name: str) -> int:
    for pkg, _, enums in TABLES:
        if full_enum.startswith(pkg + ".") and full_enum[len(pkg) + 1:] in enums:
            return enums[full_enum[len(pkg) + 1:]].index(name)
    raise KeyError(full_enum)
