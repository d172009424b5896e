#!/usr/bin/env python3
"""Compile the JSON schemas in specs/ into a dependency-free Python validator.

Usage (from the repository root)::

    .venv/bin/python scripts/gen_validator.py           # (re)write runtime/_config_validator.py
    .venv/bin/python scripts/gen_validator.py --check   # exit 1 if the file is stale

Why: ``import jsonschema`` alone costs tens of milliseconds, and ``pyrunc
create`` validates config.json on every container start.  The generated module
is straight-line Python (plus ``re`` for the few non-trivial patterns), so
importing it and validating a typical config costs well under a millisecond.

Contract of the generated module (runtime/_config_validator.py):

* ``Invalid(field, problem)`` -- the exception raised for the first violation
  found.  ``field`` is a dotted path (``process.user.uid``,
  ``mounts[2].destination``, ``linux.sysctl["net.ipv4.ip_forward"]``) or
  ``"(document)"`` for the top-level value; ``problem`` is one line of text.
* ``check_config(x)``, ``check_state(x)``, ``check_features(x)`` -- return
  None if ``x`` (a value as produced by ``json.loads``) is valid against the
  corresponding schema, else raise ``Invalid``.  They agree with
  ``jsonschema.Draft202012Validator`` on valid/invalid for every input made of
  JSON values (dict, list, str, int, float, bool, None).

Only the keywords the schemas actually use are supported; any other keyword
(or a boolean subschema outside ``additionalProperties``) makes the generator
fail, naming the keyword and where it occurs, instead of silently ignoring it.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import pathlib
import re
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent
OUTPUT = REPO / "runtime" / "_config_validator.py"
# (entry point name, schema file relative to the repo, prefix for helper names)
DOCUMENTS = [
    ("check_config", "specs/config-schema.json", "config"),
    ("check_state", "specs/state-schema.json", "state"),
    ("check_features", "specs/features-schema.json", "features"),
]

# Keywords that only annotate; they never change the verdict.
ANNOTATIONS = {"$schema", "$id", "$comment", "title", "description"}
# Keywords the compiler implements.  Anything else is an error.
SUPPORTED = ANNOTATIONS | {
    "$defs", "$ref", "type", "enum", "minimum", "maximum", "minLength", "pattern",
    "minItems", "items", "properties", "required", "additionalProperties",
    "propertyNames", "dependentRequired", "anyOf", "if", "then",
}
# A definition made only of these is inlined at each use instead of becoming
# a function: it is a handful of comparisons, cheaper than a call.
INLINE_OK = ANNOTATIONS | {"type", "enum", "minimum", "maximum", "minLength", "pattern"}

JSON_TYPES = ("object", "array", "string", "integer", "number", "boolean", "null")
TYPE_TEST = {
    "object": "isinstance({v}, dict)",
    "array": "isinstance({v}, list)",
    "string": "isinstance({v}, str)",
    # JSON Schema: 2.0 is an integer, True is not.
    "integer": "(type({v}) is int or (type({v}) is float and {v}.is_integer()))",
    "number": "(type({v}) is int or type({v}) is float)",
    "boolean": "({v} is True or {v} is False)",
    "null": "{v} is None",
}
TYPE_NOUN = {
    "object": "an object", "array": "an array", "string": "a string",
    "integer": "an integer", "number": "a number", "boolean": "a boolean",
    "null": "null",
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


class Path:
    """A field path being built at compile time: literals plus runtime expressions."""

    def __init__(self, parts=()):
        self.parts = tuple(parts)

    def attr(self, name: str) -> "Path":
        return Path(self.parts + (("lit", field_part(name)),))

    def index(self, var: str) -> "Path":
        return Path(self.parts + (("lit", "["), ("expr", f"str({var})"), ("lit", "]")))

    def key(self, var: str) -> "Path":
        return Path(self.parts + (("expr", f"_k({var})"),))

    def code(self) -> str:
        merged: list[tuple[str, str]] = []
        for kind, text in self.parts:
            if kind == "lit" and merged and merged[-1][0] == "lit":
                merged[-1] = ("lit", merged[-1][1] + text)
            else:
                merged.append((kind, text))
        if not merged:
            return '""'
        return " + ".join(repr(t) if k == "lit" else t for k, t in merged)


class Compiler:
    def __init__(self):
        self.lines: list[str] = []       # function bodies, in emission order
        self.consts: list[str] = []      # module-level constants
        self.const_ids: dict[str, str] = {}
        self.uses_re = False
        self.counter = 0

    # -- helpers ---------------------------------------------------------
    def fresh(self, stem: str) -> str:
        self.counter += 1
        return f"{stem}{self.counter}"

    def const(self, stem: str, code: str) -> str:
        """Intern a module-level constant (frozensets of enum values, regexes)."""
        if code not in self.const_ids:
            name = f"_{stem}{len(self.const_ids) + 1}"
            self.const_ids[code] = name
            self.consts.append(f"{name} = {code}")
        return self.const_ids[code]

    # -- documents -------------------------------------------------------
    def compile_document(self, entry: str, schema: dict, prefix: str, source: str):
        self.doc = schema
        self.prefix = prefix
        self.source = source
        self.pending: list[str] = []
        self.emitted: set[str] = set()
        body: list[str] = []
        self.node(schema, "x", Path(), 1, body, "#", set())
        main = f"_{prefix}"
        out = [f"def {main}(x):"] + (body or ["    pass"])
        while self.pending:
            name = self.pending.pop(0)
            out += [""] + self.def_function(name)
        self.lines += out + [""]
        self.lines += [
            f"def {entry}(x):",
            f'    """Raise Invalid for the first violation of {source}; return None if x is valid."""',
            "    try:",
            f"        {main}(x)",
            "    except Invalid as e:",
            "        e.field = _finish(e.field)",
            "        raise",
            "",
        ]

    def resolve(self, ref: str, where: str) -> tuple[str, dict]:
        if not ref.startswith("#/$defs/") or "/" in ref[len("#/$defs/"):]:
            raise SchemaCompileError(f"{self.source}: {where}: unsupported $ref {ref!r} (only #/$defs/<name>)")
        name = ref[len("#/$defs/"):]
        try:
            return name, self.doc["$defs"][name]
        except KeyError:
            raise SchemaCompileError(f"{self.source}: {where}: $ref to missing definition {name!r}") from None

    def def_function(self, name: str) -> list[str]:
        _, schema = self.resolve("#/$defs/" + name, "#/$defs/" + name)
        body: list[str] = []
        self.node(schema, "x", Path(), 1, body, "#/$defs/" + name, set())
        return [f"def _{self.prefix}_{name}(x):"] + (body or ["    pass"])

    # -- nodes -----------------------------------------------------------
    def node(self, s, v: str, path: Path, ind: int, out: list, where: str, known: set):
        """Emit code checking value `v` against schema `s`.

        `known` is the set of JSON types `v` is already proven to have (empty =
        unknown); keyword checks that only apply to other types are skipped.
        """
        if not isinstance(s, dict):
            raise SchemaCompileError(f"{self.source}: {where}: boolean/non-object subschema not supported")
        unknown = set(s) - SUPPORTED
        if unknown:
            raise SchemaCompileError(f"{self.source}: {where}: unsupported keyword(s) {sorted(unknown)}")
        if "$defs" in s and where != "#":
            raise SchemaCompileError(f"{self.source}: {where}: $defs only allowed at the top level")
        if ("then" in s) != ("if" in s):
            raise SchemaCompileError(f"{self.source}: {where}: 'then' needs 'if' (and vice versa)")
        pad = "    " * ind
        P = path.code()

        def fail(problem_code: str, at: str = P):
            out.append(f"{pad}    raise Invalid({at}, {problem_code})")

        if "$ref" in s:
            name, target = self.resolve(s["$ref"], where)
            if set(target) <= INLINE_OK:
                self.node(target, v, path, ind, out, "#/$defs/" + name, known)
            else:
                fn = f"_{self.prefix}_{name}"
                if name not in self.emitted:
                    self.emitted.add(name)
                    self.pending.append(name)
                out.append(f"{pad}try:")
                out.append(f"{pad}    {fn}({v})")
                out.append(f"{pad}except Invalid as e:")
                if path.parts:
                    out.append(f"{pad}    e.field = {P} + e.field")
                out.append(f"{pad}    raise")

        if "type" in s:
            types = s["type"] if isinstance(s["type"], list) else [s["type"]]
            for t in types:
                if t not in JSON_TYPES:
                    raise SchemaCompileError(f"{self.source}: {where}: unknown type {t!r}")
            if not known or not set(known) <= set(types):
                tests = [TYPE_TEST[t].format(v=v) for t in types]
                test = tests[0] if len(tests) == 1 else "(" + " or ".join(tests) + ")"
                out.append(f"{pad}if not {test}:")
                noun = " or ".join(TYPE_NOUN[t] for t in types)
                fail(f'"must be {noun} (got " + _jtype({v}) + ")"')
            known = set(types) if not known else set(known) & set(types)
            if "integer" in known:
                known.add("number")

        def guard(kind: str) -> tuple[str, int]:
            """Open an `if <v is of kind>:` block unless the type is already settled.

            Returns (indent string, indent level) for the guarded code, or
            (None, None) when `v` is proven not to be of that kind.
            """
            kinds = {"integer", "number"} if kind == "number" else {kind}
            if known and known <= kinds:
                return pad, ind
            if known and not (known & kinds):
                return None, None
            out.append(f"{pad}if {TYPE_TEST[kind].format(v=v)}:")
            return pad + "    ", ind + 1

        if "enum" in s:
            values = s["enum"]
            if not values or not all(isinstance(e, str) for e in values):
                raise SchemaCompileError(f"{self.source}: {where}: only non-empty string enums are supported")
            name = self.const("E", "frozenset(" + repr(sorted(set(values))) + ")")
            listing = ", ".join(values)
            out.append(f"{pad}if not isinstance({v}, str) or {v} not in {name}:")
            fail(f'"must be one of {listing} (got " + _show({v}) + ")"')

        if "minimum" in s or "maximum" in s:
            lo, hi = s.get("minimum"), s.get("maximum")
            for b in (lo, hi):
                if b is not None and type(b) is not int:
                    raise SchemaCompileError(f"{self.source}: {where}: only integer bounds are supported")
            # Spell out the common machine-integer ranges; the digits alone are hard to read.
            width = {(-2**31, 2**31 - 1): "int32", (-2**63, 2**63 - 1): "int64",
                     (0, 2**16 - 1): "uint16", (0, 2**32 - 1): "uint32",
                     (0, 2**64 - 1): "uint64"}.get((lo, hi))
            g, gi = guard("number")
            if g is not None:
                if width:
                    cond, msg = f"not ({lo} <= {v} <= {hi})", f"must fit in {width} ({lo}..{hi})"
                elif lo is not None and hi is not None:
                    cond, msg = f"not ({lo} <= {v} <= {hi})", f"must be between {lo} and {hi}"
                elif lo is not None:
                    cond, msg = f"{v} < {lo}", f"must be >= {lo}"
                else:
                    cond, msg = f"{v} > {hi}", f"must be <= {hi}"
                out.append(f"{g}if {cond}:")
                out.append(f'{g}    raise Invalid({P}, "{msg} (got " + _show({v}) + ")")')

        if "minLength" in s or "pattern" in s:
            g, gi = guard("string")
            if g is not None:
                if "minLength" in s:
                    n = s["minLength"]
                    msg = "must not be empty" if n == 1 else f"must be at least {n} characters long"
                    out.append(f"{g}if len({v}) < {n}:")
                    out.append(f"{g}    raise Invalid({P}, {msg!r})")
                if "pattern" in s:
                    pat = s["pattern"]
                    re.compile(pat)  # fail now on a broken pattern
                    m = LITERAL_PREFIX.fullmatch(pat)
                    if m:
                        cond = f"not {v}.startswith({m.group(1)!r})"
                    else:
                        self.uses_re = True
                        name = self.const("P", f"_re.compile({pat!r})")
                        # jsonschema uses re.search: patterns are unanchored unless they say ^.
                        cond = f"{name}.search({v}) is None"
                    if "title" in s:
                        msg = f"must be {s['title']}"
                    else:
                        msg = f"must match the pattern {pat!r}"
                    out.append(f"{g}if {cond}:")
                    out.append(f"{g}    raise Invalid({P}, {msg!r} + \" (got \" + _show({v}) + \")\")")

        if "minItems" in s or "items" in s:
            g, gi = guard("array")
            if g is not None:
                if "minItems" in s:
                    n = s["minItems"]
                    msg = "must not be empty" if n == 1 else f"must have at least {n} items"
                    out.append(f"{g}if len({v}) < {n}:")
                    out.append(f"{g}    raise Invalid({P}, {msg!r})")
                if "items" in s:
                    i, y = self.fresh("i"), self.fresh("y")
                    body: list[str] = []
                    self.node(s["items"], y, path.index(i), gi + 1, body, where + "/items", set())
                    if body:
                        out.append(f"{g}for {i}, {y} in enumerate({v}):")
                        out.extend(body)

        obj_keys = {"properties", "required", "additionalProperties", "propertyNames",
                    "dependentRequired", "anyOf", "if"}
        if obj_keys & set(s):
            self.object_keywords(s, v, path, ind, out, where, known, guard)

    def object_keywords(self, s, v, path, ind, out, where, known, guard):
        P = path.code()
        has_object_work = any(k in s for k in ("properties", "required", "additionalProperties",
                                                "propertyNames", "dependentRequired"))
        g, gi = (guard("object") if has_object_work else (None, None))
        if g is not None:
            props = s.get("properties", {})
            required = list(s.get("required", []))
            for name in required:
                if name not in props:
                    out.append(f"{g}if {name!r} not in {v}:")
                    out.append(f"{g}    raise Invalid({path.attr(name).code()}, 'is required')")
            for name, sub in props.items():
                y = self.fresh("y")
                body: list[str] = []
                is_req = name in required
                # A required property's checks run unconditionally after the
                # presence check, so they sit one level shallower.
                level = gi if is_req else gi + 1
                self.node(sub, y, path.attr(name), level, body, f"{where}/properties/{name}", set())
                if is_req:
                    out.append(f"{g}{y} = {v}.get({name!r}, _M)")
                    out.append(f"{g}if {y} is _M:")
                    out.append(f"{g}    raise Invalid({path.attr(name).code()}, 'is required')")
                    out.extend(body)
                elif body:
                    out.append(f"{g}{y} = {v}.get({name!r}, _M)")
                    out.append(f"{g}if {y} is not _M:")
                    out.extend(body)
            if "additionalProperties" in s:
                ap = s["additionalProperties"]
                k, y = self.fresh("k"), self.fresh("y")
                level = gi + 2 if props else gi + 1
                body = []
                if ap is False:
                    body.append("    " * level + f"raise Invalid({path.key(k).code()}, 'is not an allowed property')")
                elif ap is not True:
                    self.node(ap, y, path.key(k), level, body, where + "/additionalProperties", set())
                if body:
                    out.append(f"{g}for {k}, {y} in {v}.items():")
                    if props:
                        pname = self.const("K", "frozenset(" + repr(sorted(props)) + ")")
                        out.append(f"{g}    if {k} not in {pname}:")
                    out.extend(body)
            if "propertyNames" in s:
                pn = s["propertyNames"]
                if set(pn) - ANNOTATIONS != {"minLength"}:
                    raise SchemaCompileError(f"{self.source}: {where}/propertyNames: only minLength is supported")
                n = pn["minLength"]
                k = self.fresh("k")
                msg = "property name must not be empty" if n == 1 else f"property name must be at least {n} characters long"
                out.append(f"{g}for {k} in {v}:")
                out.append(f"{g}    if len({k}) < {n}:")
                out.append(f"{g}        raise Invalid({path.key(k).code()}, {msg!r})")
            for trigger, needs in s.get("dependentRequired", {}).items():
                for need in needs:
                    out.append(f"{g}if {trigger!r} in {v} and {need!r} not in {v}:")
                    out.append(f"{g}    raise Invalid({path.attr(need).code()}, "
                               f"{'is required when ' + trigger + ' is set'!r})")
        pad = "    " * ind
        if "anyOf" in s:
            branches = s["anyOf"]
            if all(isinstance(b, dict) and set(b) == {"required"} for b in branches):
                names = [n for b in branches for n in b["required"]]
                msg = "must set at least one of " + ", ".join(names)
            else:
                msg = "does not match any of the allowed forms"
            self.any_of(branches, v, path, ind, out, where, known, msg, 0)
        if "if" in s:
            c = self.fresh("c")
            cond_body: list[str] = []
            self.node(s["if"], v, path, ind + 1, cond_body, where + "/if", known)
            then_body: list[str] = []
            self.node(s["then"], v, path, ind + 1, then_body, where + "/then", known)
            if not then_body:
                return
            if not cond_body:  # an always-true condition
                out.append(f"{pad}if True:")
                out.extend(then_body)
                return
            out.append(f"{pad}try:")
            out.extend(cond_body)
            out.append(f"{pad}    {c} = True")
            out.append(f"{pad}except Invalid:")
            out.append(f"{pad}    {c} = False")
            out.append(f"{pad}if {c}:")
            out.extend(then_body)

    def any_of(self, branches, v, path, ind, out, where, known, msg, n):
        pad = "    " * ind
        if n == len(branches):
            out.append(f"{pad}raise Invalid({path.code()}, {msg!r}) from None")
            return
        body: list[str] = []
        self.node(branches[n], v, path, ind + 1, body, f"{where}/anyOf/{n}", known)
        if not body:  # an always-true branch makes the whole anyOf true
            return
        out.append(f"{pad}try:")
        out.extend(body)
        out.append(f"{pad}except Invalid:")
        self.any_of(branches, v, path, ind + 1, out, where, known, msg, n + 1)


RUNTIME_HELPERS = '''
class Invalid(ValueError):
    """A value violates the schema: `field` names where, `problem` says what (one line)."""

    def __init__(self, field, problem):
        super().__init__(field, problem)
        self.field = field
        self.problem = problem

    def __str__(self):
        return f"{self.field}: {self.problem}"


_M = object()  # "property absent" marker; None is a legitimate JSON value


def _k(key):
    # Keep paths readable and unambiguous: plain names join with ".", names
    # containing dots, spaces etc. are quoted (linux.sysctl["net.ipv4.ip_forward"]).
    if key and key.isascii() and key.replace("_", "a").replace("-", "a").isalnum():
        return "." + key
    return '["' + key.encode("unicode_escape").decode("ascii").replace('"', '\\\\"') + '"]'


def _finish(field):
    if not field:
        return "(document)"
    return field[1:] if field[0] == "." else field


def _jtype(v):
    if v is None:
        return "null"
    if v is True or v is False:
        return "boolean"
    if isinstance(v, str):
        return "string"
    if isinstance(v, dict):
        return "object"
    if isinstance(v, list):
        return "array"
    if type(v) is int or type(v) is float:
        return "number"
    return type(v).__name__


def _show(v):
    # repr() escapes newlines, so the message stays on one line.
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."
'''


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
    if comp.uses_re:
        head.append("import re as _re  # already imported by site.py in practice")
    text = "\n".join(head) + "\n" + RUNTIME_HELPERS + "\n"
    text += "\n".join(comp.consts) + "\n\n\n" + "\n".join(comp.lines).rstrip() + "\n"
    return text


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
