"""Protobuf message classes from field-number tables, built at run time.

The project copies no .proto schemas: a user of a protobuf API describes
the few messages it sends and reads as a table, with only the fields it
uses, and build() turns the table into a FileDescriptorProto (proto3) and
the message classes of the `protobuf` package. What goes on the wire is
then exactly what protoc-generated classes of the same fields would send;
fields the table leaves out are kept as unknown fields when a message is
parsed and re-serialized.

    build(package, messages, enums=None, pool=None) -> Built

messages: {MessageName: [field, ...]}, a field being a tuple
    (number, name, type)                   a singular scalar
    (number, name, type, label)            label "" / None / "optional" for
                                           singular, "repeated" for a list
    (number, name, type, label, type_name) type "message" or "enum" with the
                                           message/enum it holds
    (number, name, "map", None, (key_type, value_type))
                                           a map; value_type a scalar type or
                                           a message/enum name
  type is a scalar name ("string", "bytes", "bool", "int32", "int64",
  "uint32", "uint64", "sint32", "sint64", "fixed32", "fixed64", "sfixed32",
  "sfixed64", "float", "double"), "message" or "enum".
  type_name is a name of this table ("PodSandboxConfig") or a qualified
  name ("other.pkg.Name") of a file already in `pool`; the well-known types
  ("google.protobuf.Any", "google.protobuf.Timestamp", "google.protobuf.Empty",
  ...) are always available.
enums: {EnumName: {VALUE_NAME: number, ...}} (proto3: one value must be 0).

Built has each message class and enum wrapper as an attribute (and by
name: built["Name"]); built.pool is the descriptor pool, which a later
build() can be given to refer to these types. Each call without a pool
gets a fresh one, so two tables may use the same package name.

A malformed table raises ValueError naming the message and field.
"""
import importlib
import itertools

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.internal import enum_type_wrapper

_FDP = descriptor_pb2.FieldDescriptorProto
SCALARS = {
    "double": _FDP.TYPE_DOUBLE, "float": _FDP.TYPE_FLOAT,
    "int64": _FDP.TYPE_INT64, "uint64": _FDP.TYPE_UINT64, "int32": _FDP.TYPE_INT32,
    "fixed64": _FDP.TYPE_FIXED64, "fixed32": _FDP.TYPE_FIXED32, "bool": _FDP.TYPE_BOOL,
    "string": _FDP.TYPE_STRING, "bytes": _FDP.TYPE_BYTES, "uint32": _FDP.TYPE_UINT32,
    "sfixed32": _FDP.TYPE_SFIXED32, "sfixed64": _FDP.TYPE_SFIXED64,
    "sint32": _FDP.TYPE_SINT32, "sint64": _FDP.TYPE_SINT64,
}
_LABELS = {None: _FDP.LABEL_OPTIONAL, "": _FDP.LABEL_OPTIONAL,
           "optional": _FDP.LABEL_OPTIONAL, "repeated": _FDP.LABEL_REPEATED}
# keys a protobuf map may have (no floats, bytes, enums or messages)
_MAP_KEYS = {"int32", "int64", "uint32", "uint64", "sint32", "sint64", "fixed32",
             "fixed64", "sfixed32", "sfixed64", "bool", "string"}


_FILE_NUMBERS = itertools.count(1)


class Built:
    """The classes of one build(): attributes and items by table name."""

    def __init__(self, pool, names: dict):
        self.pool = pool
        self._names = names
        self.__dict__.update(names)

    def __getitem__(self, name: str):
        return self._names[name]

    def __contains__(self, name: str) -> bool:
        return name in self._names

    def __iter__(self):
        return iter(self._names)


def _message_class(desc):
    get = getattr(message_factory, "GetMessageClass", None)
    if get is not None:
        return get(desc)
    return message_factory.MessageFactory(desc.file.pool).GetPrototype(desc)  # protobuf < 4.22


def _ensure_file(pool, file_desc) -> None:
    """Copy a file (and what it imports) from the default pool into pool."""
    try:
        pool.FindFileByName(file_desc.name)
        return
    except KeyError:
        pass
    for dep in file_desc.dependencies:
        _ensure_file(pool, dep)
    fdp = descriptor_pb2.FileDescriptorProto()
    file_desc.CopyToProto(fdp)
    pool.Add(fdp)


def _camel(name: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in name.split("_"))


def build(package: str, messages: dict, enums: dict | None = None, pool=None) -> Built:
    enums = enums or {}
    if not package or any(not p.isidentifier() for p in package.split(".")):
        raise ValueError(f"package {package!r}: not a dotted name")
    pool = pool if pool is not None else descriptor_pool.DescriptorPool()
    fdp = descriptor_pb2.FileDescriptorProto(
        name=f"pbuild/{package.replace('.', '/')}/{next(_FILE_NUMBERS)}.proto",
        package=package, syntax="proto3")
    deps: list[str] = []

    def resolve(owner, kind, type_name):
        """'.full.Name' for a type name, checking it exists and is of kind
        ('message' or 'enum')."""
        if not isinstance(type_name, str) or not type_name:
            raise ValueError(f"{owner}: {kind} field without a type name")
        local = messages if kind == "message" else enums
        if type_name.lstrip(".").startswith(package + "."):  # this table's, qualified
            type_name = type_name.lstrip(".")[len(package) + 1:]
        if type_name in local:
            return f".{package}.{type_name}"
        if type_name in (enums if kind == "message" else messages):
            is_, not_ = ("an enum", "a message") if kind == "message" else ("a message", "an enum")
            raise ValueError(f"{owner}: {type_name} is {is_}, not {not_}")
        qualified = type_name.lstrip(".")
        find = pool.FindMessageTypeByName if kind == "message" else pool.FindEnumTypeByName
        try:
            desc = find(qualified)
        except KeyError:
            if not qualified.startswith("google.protobuf."):
                raise ValueError(f"{owner}: unknown {kind} type {type_name}") from None
            desc = _well_known(qualified, kind, owner)
            _ensure_file(pool, desc.file)
        if desc.file.name not in deps:
            deps.append(desc.file.name)
        return f".{qualified}"

    def value_field(owner, fd, type_, type_name):
        if type_ in SCALARS:
            fd.type = SCALARS[type_]
        elif type_ in ("message", "enum"):
            fd.type = _FDP.TYPE_MESSAGE if type_ == "message" else _FDP.TYPE_ENUM
            fd.type_name = resolve(owner, type_, type_name)
        else:
            raise ValueError(f"{owner}: unknown type {type_!r}")

    for ename, values in enums.items():
        if not isinstance(values, dict) or 0 not in values.values():
            raise ValueError(f"enum {ename}: needs a value numbered 0 (proto3)")
        ed = fdp.enum_type.add(name=ename)
        for vname, num in values.items():
            ed.value.add(name=vname, number=num)

    for mname, fields in messages.items():
        md = fdp.message_type.add(name=mname)
        seen_num, seen_name = set(), set()
        for spec in fields:
            if not isinstance(spec, (tuple, list)) or not 3 <= len(spec) <= 5:
                raise ValueError(f"{mname}: field {spec!r} is not (number, name, type[, label[, type name]])")
            num, fname, type_ = spec[:3]
            label = spec[3] if len(spec) > 3 else None
            type_name = spec[4] if len(spec) > 4 else None
            owner = f"{mname}.{fname}"
            if not isinstance(num, int) or not 1 <= num <= 536870911 or 19000 <= num <= 19999:
                raise ValueError(f"{owner}: bad field number {num!r}")
            if num in seen_num or fname in seen_name:
                raise ValueError(f"{owner}: field number {num} or name used twice")
            seen_num.add(num)
            seen_name.add(fname)
            fd = md.field.add(name=fname, number=num)
            if type_ == "map":
                if not (isinstance(type_name, (tuple, list)) and len(type_name) == 2):
                    raise ValueError(f"{owner}: a map needs (key type, value type)")
                ktype, vtype = type_name
                if ktype not in _MAP_KEYS:
                    raise ValueError(f"{owner}: map key type {ktype!r} is not allowed")
                entry = md.nested_type.add(name=f"{_camel(fname)}Entry")
                entry.options.map_entry = True
                entry.field.add(name="key", number=1, label=_FDP.LABEL_OPTIONAL, type=SCALARS[ktype])
                val = entry.field.add(name="value", number=2, label=_FDP.LABEL_OPTIONAL)
                if vtype in SCALARS:
                    val.type = SCALARS[vtype]
                elif vtype in enums or (isinstance(vtype, str) and _is_enum(pool, vtype)):
                    value_field(owner, val, "enum", vtype)
                else:
                    value_field(owner, val, "message", vtype)
                fd.label = _FDP.LABEL_REPEATED
                fd.type = _FDP.TYPE_MESSAGE
                fd.type_name = f".{package}.{mname}.{entry.name}"
                continue
            if label not in _LABELS:
                raise ValueError(f"{owner}: unknown label {label!r}")
            fd.label = _LABELS[label]
            value_field(owner, fd, type_, type_name)

    fdp.dependency.extend(deps)
    try:
        pool.Add(fdp)
        file_desc = pool.FindFileByName(fdp.name)
    except (TypeError, ValueError, KeyError) as e:  # the pool's own checks
        raise ValueError(f"package {package}: {e}") from None
    names = {}
    for ename in enums:
        names[ename] = enum_type_wrapper.EnumTypeWrapper(file_desc.enum_types_by_name[ename])
    for mname in messages:
        names[mname] = _message_class(file_desc.message_types_by_name[mname])
    return Built(pool, names)


def _is_enum(pool, name: str) -> bool:
    try:
        pool.FindEnumTypeByName(name.lstrip("."))
        return True
    except KeyError:
        return False


def _well_known(qualified: str, kind: str, owner: str):
    """A google.protobuf.* type from the default pool, loading its module
    (any_pb2, timestamp_pb2, ...) first."""
    default = descriptor_pool.Default()
    find = default.FindMessageTypeByName if kind == "message" else default.FindEnumTypeByName
    short = qualified.rsplit(".", 1)[1]
    module = {"Any": "any", "Timestamp": "timestamp", "Duration": "duration", "Empty": "empty",
              "Struct": "struct", "Value": "struct", "ListValue": "struct", "NullValue": "struct",
              "FieldMask": "field_mask"}.get(short, "wrappers")
    try:
        importlib.import_module(f"google.protobuf.{module}_pb2")
        return find(qualified)
    except (ImportError, KeyError):
        raise ValueError(f"{owner}: unknown {kind} type {qualified}") from None
