#!/usr/bin/env python3
"""Compile the JSON schemas in specs/ into a dependency-free Python validator.

Usage (from the repository root)::

    .venv/bin/python scripts/gen_validator.py           # (re)write runtime/_config_validator.py
    .venv/bin/python scripts/gen_validator.py --check   # exit 1 if the file is stale

Why: ``import jsonschema`` alone costs tens of milliseconds, and ``pyrunc
create`` validates config.json on every container start.  The generated module
imports nothing at load time (``re`` on first use of a pattern; site.py has
normally loaded it already) and is kept short, because where bytecode caching is off (PYTHONDONTWRITEBYTECODE) every
process compiles it again: an earlier version emitting straight-line code for
every check took ~20 ms just to compile.

Contract of the generated module (runtime/_config_validator.py):

* ``Invalid(field, problem)`` -- the exception raised for the first violation
  found.  ``field`` is a dotted path (``process.user.uid``,
  ``mounts[2].destination``, ``linux.sysctl["net.ipv4.ip_forward"]``) or
  ``"(document)"`` for the top-level value; ``problem`` is one line of text.
* ``check_config(x)``, ``check_state(x)``, ``check_features(x)`` -- return
  None if ``x`` (a value as produced by ``json.loads``) is valid against the
  corresponding schema, else raise ``Invalid``.  They agree with
  ``jsonschema.Draft202012Validator`` on valid/invalid for JSON values
  (dict, list, str, int, float, bool, None), with one refinement: "integer"
  accepts only ints, not integral floats such as 2.0 (runc rejects those).

How: the generator resolves every ``$ref``, checks that only supported
keywords occur, pre-computes messages, and emits one Python expression per
schema node built from a handful of validator factories (``_obj``, ``_arr``,
``_int``, ``_str``, ``_enum``...) defined in the module's fixed prelude.  Each
factory returns a closure ``check(v)`` that raises ``Invalid`` with a field
path relative to ``v``; parents prepend their part of the path while the
exception unwinds, so the success path never builds strings.

Only the keywords the schemas actually use are supported; any other keyword,
keyword combination or boolean subschema (outside ``additionalProperties``)
makes the generator fail, naming it and where it occurs.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import pathlib
import re
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from runtime._schema_checks import _k as field_part  # noqa: E402 - one definition of the path syntax
OUTPUT = REPO / "runtime" / "_config_validator.py"
# (entry point name, schema file relative to the repo, prefix for generated names)
DOCUMENTS = [
    ("check_config", "specs/config-schema.json", "config"),
    ("check_state", "specs/state-schema.json", "state"),
    ("check_features", "specs/features-schema.json", "features"),
]

# Keywords that only annotate and never change the verdict.  ("title" is also
# used as the wording of pattern failures: "must be an absolute path".)
ANNOTATIONS = {"$schema", "$id", "$comment", "title", "description"}
OBJECT_KEYWORDS = {"properties", "required", "additionalProperties", "propertyNames",
                   "dependentRequired", "anyOf", "if", "then"}
ARRAY_KEYWORDS = {"items", "minItems"}
SCALAR_KEYWORDS = {"enum", "minimum", "maximum", "minLength", "pattern"}
SUPPORTED = ANNOTATIONS | OBJECT_KEYWORDS | ARRAY_KEYWORDS | SCALAR_KEYWORDS | {"$defs", "$ref", "type"}
JSON_TYPES = ("object", "array", "string", "integer", "number", "boolean", "null")

# Ranges spelled by name in messages; the bare digits are hard to read.
NAMED_RANGES = {
    (-2**31, 2**31 - 1): "int32", (-2**63, 2**63 - 1): "int64",
    (0, 2**16 - 1): "uint16", (0, 2**32 - 1): "uint32", (0, 2**64 - 1): "uint64",
}
# A pattern that is just an anchored literal prefix becomes str.startswith.
LITERAL_PREFIX = re.compile(r"\^([A-Za-z0-9/:_ -]*)")
SIMPLE_KEY = re.compile(r"[A-Za-z0-9_-]+")


class SchemaCompileError(Exception):
    """The schema uses something this compiler does not implement."""


def field_part(name: str) -> str:
    """How a property name is appended to a field path (mirrors _k at runtime)."""
    if SIMPLE_KEY.fullmatch(name):
        return "." + name
    escaped = name.encode("unicode_escape").decode("ascii").replace('"', '\\"')
    return '["' + escaped + '"]'


def _types(s) -> list[str]:
    t = s.get("type")
    if t is None:
        return []
    return list(t) if isinstance(t, list) else [t]


class Compiler:
    """Turns schema documents into Python source lines (see module docstring)."""

    def __init__(self):
        self.lines: list[str] = []        # module body after the prelude, in order
        self.shared: dict[str, str] = {}  # scalar expression -> module-level name
        self.aliases: dict[tuple[str, str], str] = {}  # (doc prefix, def name) -> checker name

    # -- bookkeeping -----------------------------------------------------
    def err(self, where: str, text: str) -> SchemaCompileError:
        return SchemaCompileError(f"{self.source}: {where}: {text}")

    def check_keywords(self, s, where: str):
        if not isinstance(s, dict):
            raise self.err(where, "boolean/non-object subschema not supported")
        unknown = set(s) - SUPPORTED
        if unknown:
            raise self.err(where, f"unsupported keyword(s) {sorted(unknown)}")
        if "$defs" in s and where != "#":
            raise self.err(where, "$defs only allowed at the top level")
        if ("then" in s) != ("if" in s):
            raise self.err(where, "'then' needs 'if' (and vice versa)")
        for t in _types(s):
            if t not in JSON_TYPES:
                raise self.err(where, f"unknown type {t!r}")

    def share(self, expr: str) -> str:
        """Give a scalar checker a module-level name so identical ones are built once."""
        if expr not in self.shared:
            name = f"_s{len(self.shared) + 1}"
            self.shared[expr] = name
            self.lines.append(f"{name} = {expr}")
        return self.shared[expr]

    # -- documents -------------------------------------------------------
    def compile_document(self, entry: str, schema: dict, prefix: str, source: str):
        self.doc, self.prefix, self.source = schema, prefix, source
        self.state: dict[str, str] = {}   # def name -> "busy" | "done"
        self.check_keywords(schema, "#")
        for name, sub in schema.get("$defs", {}).items():
            self.check_keywords(sub, f"#/$defs/{name}")
        root = self.expr(schema, "#", 0)
        main = f"_{prefix}"
        self.lines.append(f"{main} = {root}")
        self.lines += [
            "",
            "",
            f"def {entry}(x):",
            f'    """Raise Invalid for the first violation of {source}; return None if x is valid."""',
            "    try:",
            f"        {main}(x)",
            "    except Invalid as e:",
            "        e.field = _finish(e.field)",
            "        raise",
            "",
            "",
        ]

    def ref(self, ref: str, where: str) -> str:
        """Name of the module-level checker for a #/$defs/<name> reference (emitted on demand)."""
        prefix = "#/$defs/"
        if not ref.startswith(prefix) or "/" in ref[len(prefix):]:
            raise self.err(where, f"unsupported $ref {ref!r} (only #/$defs/<name>)")
        name = ref[len(prefix):]
        if name not in self.doc.get("$defs", {}):
            raise self.err(where, f"$ref to missing definition {name!r}")
        state = self.state.get(name)
        if state == "busy":
            raise self.err(where, f"recursive $ref to {name!r} is not supported")
        target = f"_{self.prefix}_{name}"
        if state is None:
            self.state[name] = "busy"
            body = self.expr(self.doc["$defs"][name], prefix + name, 0)
            # A definition that is only a shared scalar needs no second name.
            if body in self.shared.values():
                target = body
            else:
                self.lines.append(f"{target} = {body}")
            self.state[name] = "done"
            self.aliases[(self.prefix, name)] = target
        return self.aliases[(self.prefix, name)]

    # -- nodes -----------------------------------------------------------
    def expr(self, s, where: str, depth: int) -> str:
        """A Python expression evaluating to a checker for schema `s`."""
        self.check_keywords(s, where)
        keys = set(s) - ANNOTATIONS
        if "$ref" in s:
            if keys != {"$ref"}:
                raise self.err(where, "$ref next to other keywords is not supported")
            return self.ref(s["$ref"], where)
        types = _types(s)
        if keys & OBJECT_KEYWORDS or "object" in types:
            return self.object_expr(s, where, depth)
        if keys & ARRAY_KEYWORDS or "array" in types:
            return self.array_expr(s, where, depth)
        return self.share(self.scalar_expr(s, where))

    def scalar_expr(self, s, where: str) -> str:
        types = _types(s)
        keys = set(s) - ANNOTATIONS - {"type"}
        if "enum" in s:
            values = s["enum"]
            if not values or not all(isinstance(v, str) for v in values):
                raise self.err(where, "only non-empty string enums are supported")
            if keys != {"enum"} or types not in ([], ["string"]):
                raise self.err(where, "enum only combines with type: string")
            return f"_enum({sorted(set(values))!r}, {'must be one of ' + ', '.join(values)!r})"
        if types == ["integer"]:
            if keys - {"minimum", "maximum"}:
                raise self.err(where, f"unsupported with integer: {sorted(keys)}")
            lo, hi = s.get("minimum"), s.get("maximum")
            for b in (lo, hi):
                if b is not None and type(b) is not int:
                    raise self.err(where, "only integer bounds are supported")
            if (lo, hi) in NAMED_RANGES:
                msg = f"must fit in {NAMED_RANGES[(lo, hi)]} ({lo}..{hi})"
            elif lo is not None and hi is not None:
                msg = f"must be between {lo} and {hi}"
            elif lo is not None:
                msg = f"must be >= {lo}"
            elif hi is not None:
                msg = f"must be <= {hi}"
            else:
                msg = ""
            return f"_int({lo!r}, {hi!r}, {msg!r})"
        if types == ["string"]:
            if keys - {"minLength", "pattern"}:
                raise self.err(where, f"unsupported with string: {sorted(keys)}")
            n = s.get("minLength", 0)
            prefix = pattern = None
            msg = ""
            if "pattern" in s:
                pat = s["pattern"]
                try:
                    re.compile(pat)
                except re.error as e:
                    raise self.err(where, f"bad pattern {pat!r}: {e}") from None
                m = LITERAL_PREFIX.fullmatch(pat)
                if m:
                    prefix = m.group(1)
                else:
                    pattern = pat
                msg = f"must be {s['title']}" if "title" in s else f"must match the pattern {pat!r}"
            args = [repr(n)]
            if prefix is not None:
                args += [f"prefix={prefix!r}", f"msg={msg!r}"]
            elif pattern is not None:
                args += [f"pattern={pattern!r}", f"msg={msg!r}"]
            return f"_str({', '.join(args)})"
        if keys:
            raise self.err(where, f"unsupported keywords {sorted(keys)} for type {types}")
        if types == ["boolean"]:
            return "_types(('boolean',))"
        if not types:
            return "_any"
        return f"_types({tuple(types)!r})"

    def array_expr(self, s, where: str, depth: int) -> str:
        types = _types(s)
        extra = set(s) - ANNOTATIONS - ARRAY_KEYWORDS - {"type"}
        if extra or not set(types) <= {"array", "null"}:
            raise self.err(where, f"unsupported array schema (keywords {sorted(extra)}, type {types})")
        item = self.expr(s["items"], where + "/items", depth + 1) if "items" in s else "None"
        args = [item]
        if s.get("minItems", 0):
            args.append(f"min_items={s['minItems']}")
        if not types:
            args.append("typed=False")
        if "null" in types:
            args.append("nullable=True")
        return f"_arr({', '.join(args)})"

    def object_expr(self, s, where: str, depth: int) -> str:
        types = _types(s)
        extra = set(s) - ANNOTATIONS - OBJECT_KEYWORDS - {"type", "$defs"}
        if extra or not set(types) <= {"object", "null"}:
            raise self.err(where, f"unsupported object schema (keywords {sorted(extra)}, type {types})")
        ind = "    " * (depth + 1)
        args = []
        props = s.get("properties", {})
        if props:
            items = []
            for name, sub in props.items():
                sub_expr = self.expr(sub, f"{where}/properties/{name}", depth + 2)
                # (name, its part of an error's field path, check): the path
                # part is computed here, not at every import of the module.
                items.append(f"{ind}    ({name!r}, {field_part(name)!r}, {sub_expr}),")
            args.append("props=(\n" + "\n".join(items) + f"\n{ind})")
        if s.get("required"):
            args.append(f"required={tuple(s['required'])!r}")
        if "additionalProperties" in s:
            ap = s["additionalProperties"]
            if ap is False:
                args.append("closed=True")
            elif ap is not True:
                args.append("extra=" + self.expr(ap, where + "/additionalProperties", depth + 1))
        if "propertyNames" in s:
            pn = s["propertyNames"]
            self.check_keywords(pn, where + "/propertyNames")
            if set(pn) - ANNOTATIONS != {"minLength"}:
                raise self.err(where + "/propertyNames", "only minLength is supported")
            args.append(f"names_min={pn['minLength']}")
        if s.get("dependentRequired"):
            deps = tuple((k, tuple(v)) for k, v in s["dependentRequired"].items())
            args.append(f"deps={deps!r}")
        if "anyOf" in s:
            branches = s["anyOf"]
            if all(isinstance(b, dict) and set(b) == {"required"} for b in branches):
                msg = "must set at least one of " + ", ".join(n for b in branches for n in b["required"])
            else:
                msg = "does not match any of the allowed forms"
            subs = ", ".join(self.expr(b, f"{where}/anyOf/{i}", depth + 1) for i, b in enumerate(branches))
            args.append(f"any_of=({subs},)")
            args.append(f"any_msg={msg!r}")
        if "if" in s:
            args.append("cond=" + self.expr(s["if"], where + "/if", depth + 1))
            args.append("then=" + self.expr(s["then"], where + "/then", depth + 1))
        if not types:
            args.append("typed=False")
        if "null" in types:
            args.append("nullable=True")
        if not args:
            return "_obj()"
        # Built on first use (_lazy): a call validates one document, and most
        # of the schemas' objects (the state and features documents, and
        # whatever a config leaves out) are never reached.
        return "_lazy(lambda: _obj(\n" + ",\n".join(ind + a for a in args) + "\n" + "    " * depth + "))"


# The check constructors live in runtime/_schema_checks.py; the generated
# module imports them rather than carrying a copy.
PRELUDE = "from runtime._schema_checks import *  # noqa: F401,F403\n"

def generate() -> str:
    """Return the full text of runtime/_config_validator.py for the current specs/."""
    comp = Compiler()
    digests = []
    for entry, rel, prefix in DOCUMENTS:
        raw = (REPO / rel).read_bytes()
        digests.append(f"#   {rel}  sha256={hashlib.sha256(raw).hexdigest()[:16]}")
        comp.compile_document(entry, json.loads(raw), prefix, rel)
    head = [
        "# GENERATED FILE -- DO NOT EDIT.",
        "# Generated by: .venv/bin/python scripts/gen_validator.py",
        "# from:",
        *digests,
        '"""Schema validators compiled from specs/*.json (see scripts/gen_validator.py).',
        "",
        "check_config / check_state / check_features raise Invalid(field, problem)",
        "for the first violation found and return None for a valid document.",
        "Only the standard library is used, so importing this module is cheap.",
        '"""',
    ]
    return "\n".join(head) + "\n" + PRELUDE + "\n\n" + "\n".join(comp.lines).rstrip() + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only verify that the output is up to date")
    ap.add_argument("--output", type=pathlib.Path, default=OUTPUT)
    args = ap.parse_args(argv)
    try:
        text = generate()
    except SchemaCompileError as e:
        print(f"gen_validator: {e}", file=sys.stderr)
        return 2
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"gen_validator: {args.output} is stale; run scripts/gen_validator.py", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
