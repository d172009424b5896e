"""The subset of Go's text/template that docker's `--format` takes.

Contract:
- parse(text) -> Template, once per command; Template.render(obj) per row.
  render(text, obj) does both.  `obj` is what docker's JSON gives: dicts,
  lists, str, int, float, bool, None.
- Actions: {{.A.B}}, {{$v.A}}, {{.}}, literals ("s", `raw`, 1, 1.5, true,
  nil), pipes {{.X | json}}, parentheses, variables ({{$x := .A}},
  {{$x = .B}}), {{if}}/{{else if}}/{{else}}/{{end}}, {{with}}, {{range}}
  (with `$v :=` and `$k, $v :=`; a dict ranges in sorted key order, as Go
  ranges over a map), {{break}}, {{continue}}, comments {{/* */}}, and the
  trim markers {{- and -}}.
- Functions: Go's and, or, not, len, index, slice, print, printf,
  println, eq, ne, lt, le, gt, ge, html, urlquery; docker's json, split,
  join, title, lower, upper, pad, truncate (docker/cli templates).
- A missing dict key prints "<no value>", as Go does on a map; parse(...,
  missingkey="error") makes it an error ("map has no entry for key"), as
  docker inspect's fallback does.  A Struct (a dict with a Go type name)
  stands for a Go struct: a missing field is an error, "can't evaluate
  field Nope in type *formatter.containerContext", as docker ps reports.
- {{json .X}} writes Go's encoding/json without HTML escaping (docker's
  encoder): compact, keys in the dict's order (Go sorts map keys; a dict
  that stands for a Go map should be built sorted, as Labels are).
- Errors are TemplateError, one line in docker's words:
  "template parsing error: template: :1: function \"x\" not defined",
  "template parsing error: template: :1:2: executing \"\" at <.Nope>: ...".

Table output (docker/cli formatter): prepare() strips the "table" prefix
and turns the two-character escapes \\t and \\n into a tab and a newline;
table_format() renders the header row from a field -> header map with
docker's header functions (json, upper, ... leave the header as it is);
tabwrite() aligns tab-terminated cells as Go's text/tabwriter with
docker's settings (minwidth 10, padding 3, spaces).
"""
import _json

from imagetool.errors import UsageError

__all__ = ["TemplateError", "Template", "Struct", "parse", "render", "prepare", "table_format", "tabwrite"]

PREFIX = "template parsing error: "


class TemplateError(UsageError):
    """A --format template that does not parse or cannot be executed on the data."""


class Struct(dict):
    """A dict standing for a Go struct named `go_type`: a missing field is
    an error (Go's "can't evaluate field"), not "<no value>"."""

    def __init__(self, go_type: str, *args, **kw):
        super().__init__(*args, **kw)
        self.go_type = go_type


class _Missing:
    """Go's invalid reflect.Value: what a missing map key evaluates to."""
    __slots__ = ()

    def __repr__(self):
        return "<no value>"


MISSING = _Missing()
NO_VALUE = "<no value>"


# --------------------------------------------------------------------------
# lexing

_KEYWORDS = {"if", "else", "end", "range", "with", "define", "template", "block", "break", "continue"}
_SPACE = " \t\r\n"


class _ParseError(Exception):
    def __init__(self, pos, msg):
        super().__init__(msg)
        self.pos = pos


class _Tok:
    __slots__ = ("kind", "val", "pos", "end", "adjacent")

    def __init__(self, kind, val, pos, end, adjacent):
        self.kind, self.val, self.pos, self.end, self.adjacent = kind, val, pos, end, adjacent

    def desc(self):
        if self.kind == "eof":
            return "EOF"
        return f"<{self.val}>" if self.kind in ("field", "var", "ident", "keyword") else _quote(str(self.val))


def _is_alnum(c: str) -> bool:
    return c == "_" or c.isalnum()


def _unquote(body: str, pos: int) -> str:
    out, i, n = [], 0, len(body)
    simple = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "a": "\a", "b": "\b",
              "f": "\f", "v": "\v", "0": "\0"}
    while i < n:
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        e = body[i + 1] if i + 1 < n else ""
        width = {"x": 2, "u": 4, "U": 8}.get(e)
        if width:
            digits = body[i + 2:i + 2 + width]
            try:
                if len(digits) != width:
                    raise ValueError
                out.append(chr(int(digits, 16)))
            except ValueError:
                raise _ParseError(pos, "invalid syntax") from None
            i += 2 + width
        elif e in "01234567" and body[i + 1:i + 4].isdigit() and len(body[i + 1:i + 4]) == 3:
            out.append(chr(int(body[i + 1:i + 4], 8)))
            i += 4
        elif e in simple:
            out.append(simple[e])
            i += 2
        else:
            raise _ParseError(pos, "invalid syntax")
    return "".join(out)


def _lex_action(src: str, start: int, stop: int) -> list:
    """Tokens of the action text src[start:stop]."""
    toks, i = [], start
    last_end = -1
    while i < stop:
        c = src[i]
        if c in _SPACE:
            i += 1
            continue
        adj = i == last_end
        j = i + 1
        if c == "." and (i + 1 >= stop or not _is_alnum(src[i + 1])):
            kind, val = "dot", "."
        elif c == "." and src[i + 1].isdigit():
            while j < stop and (src[j].isalnum() or src[j] in "._+-"):
                j += 1
            kind, val = "number", _number(src[i:j], i)
        elif c == ".":
            while j < stop and _is_alnum(src[j]):
                j += 1
            kind, val = "field", src[i + 1:j]
        elif c == "$":
            while j < stop and _is_alnum(src[j]):
                j += 1
            kind, val = "var", src[i:j]
        elif c == '"':
            while j < stop and src[j] != '"':
                if src[j] == "\\":
                    j += 1
                if j < stop and src[j] == "\n":
                    break
                j += 1
            if j >= stop or src[j] != '"':
                raise _ParseError(i, "unterminated quoted string")
            j += 1
            kind, val = "string", _unquote(src[i + 1:j - 1], i)
        elif c == "`":
            k = src.find("`", i + 1, stop)
            if k < 0:
                raise _ParseError(i, "unterminated raw quoted string")
            j = k + 1
            kind, val = "string", src[i + 1:k]
        elif c == "'":
            k = i + 1
            while k < stop and src[k] != "'":
                k += 2 if src[k] == "\\" else 1
            if k >= stop:
                raise _ParseError(i, "unterminated character constant")
            j = k + 1
            s = _unquote(src[i + 1:k], i)
            if len(s) != 1:
                raise _ParseError(i, f"malformed character constant: {src[i:j]}")
            kind, val = "number", ord(s)
        elif c.isdigit() or (c in "+-" and i + 1 < stop and (src[i + 1].isdigit() or src[i + 1] == ".")):
            while j < stop and (src[j].isalnum() or src[j] in "._" or (src[j] in "+-" and src[j - 1] in "eEpP")):
                j += 1
            kind, val = "number", _number(src[i:j], i)
        elif c == "|":
            kind, val = "pipe", "|"
        elif c == "(":
            kind, val = "lparen", "("
        elif c == ")":
            kind, val = "rparen", ")"
        elif c == ",":
            kind, val = "comma", ","
        elif c == ":" and src[i + 1:i + 2] == "=":
            j = i + 2
            kind, val = "declare", ":="
        elif c == "=":
            kind, val = "assign", "="
        elif c.isalpha() or c == "_":
            while j < stop and _is_alnum(src[j]):
                j += 1
            word = src[i:j]
            if word in ("true", "false"):
                kind, val = "bool", word == "true"
            elif word == "nil":
                kind, val = "nil", None
            elif word in _KEYWORDS:
                kind, val = "keyword", word
            else:
                kind, val = "ident", word
        else:
            raise _ParseError(i, f"unexpected bad character U+{ord(c):04X} {c!r} in command".replace('"', "'"))
        toks.append(_Tok(kind, val, i, j, adj))
        last_end = j
        i = j
    toks.append(_Tok("eof", None, stop, stop, False))
    return toks


def _number(text: str, pos: int):
    t = text.replace("_", "")
    try:
        if t.lower().startswith(("0x", "-0x", "+0x")):
            return int(t, 16)
        if any(ch in t for ch in ".eE"):
            return float(t)
        if len(t.lstrip("+-")) > 1 and t.lstrip("+-").startswith("0"):
            return int(t, 8)
        return int(t)
    except ValueError:
        raise _ParseError(pos, f"bad number syntax: {text!r}".replace("'", '"')) from None


# --------------------------------------------------------------------------
# the tree

class _Node:
    pos = 0
    text = ""


class _Text(_Node):
    def __init__(self, s):
        self.s = s


class _Action(_Node):
    def __init__(self, pipe, pos):
        self.pipe, self.pos = pipe, pos


class _Control(_Node):
    def __init__(self, kind, pipe, body, other, pos):
        self.kind, self.pipe, self.body, self.other, self.pos = kind, pipe, body, other, pos


class _Jump(_Node):
    def __init__(self, kind, pos):
        self.kind, self.pos = kind, pos


class _Pipe(_Node):
    def __init__(self, decl, assign, cmds, pos, text):
        self.decl, self.assign, self.cmds, self.pos, self.text = decl, assign, cmds, pos, text


class _Cmd(_Node):
    def __init__(self, args, pos, text):
        self.args, self.pos, self.text = args, pos, text


class _Arg(_Node):
    """kind: field (names from dot), var (name, names), dot, lit (value),
    ident (function name), chain (node then names), pipe (parenthesized)."""

    def __init__(self, kind, value, names, pos, text):
        self.kind, self.value, self.names, self.pos, self.text = kind, value, names, pos, text


class _Parser:
    def __init__(self, src: str, funcs):
        self.src, self.funcs = src, funcs
        self.vars = [["$"]]

    # -- the text/action stream
    def items(self):
        """(kind, value, pos): text pieces and the token lists of actions, trims applied."""
        src, i, out = self.src, 0, []
        n = len(src)
        trim_next = False
        while i <= n:
            k = src.find("{{", i)
            text = src[i:] if k < 0 else src[i:k]
            if trim_next:
                text = text.lstrip(_SPACE)
            if k < 0:
                if text:
                    out.append(("text", text, i))
                break
            start = k + 2
            trim_left = src.startswith("-", start) and start + 1 < n and src[start + 1] in _SPACE
            if trim_left:
                text = text.rstrip(_SPACE)
                start += 2
            if text:
                out.append(("text", text, i))
            if src.startswith("/*", start):
                e = src.find("*/", start + 2)
                if e < 0:
                    raise _ParseError(k, "unclosed comment")
                e += 2
                trim_right = e < n and src[e] in _SPACE and src.startswith("-}}", e + 1)
                if trim_right:
                    e += 1
                elif not src.startswith("}}", e):
                    raise _ParseError(k, "comment ends before closing delimiter")
                i = e + (3 if trim_right else 2)
                trim_next = trim_right
                continue
            stop, trim_right, end = self._close(start, k)
            out.append(("action", _lex_action(src, start, stop), k))
            i = end
            trim_next = trim_right
        return out

    def _close(self, start, k):
        """(stop, trim_right, resume) of the action opened at k: "}}" outside quotes."""
        src, j, n = self.src, start, len(self.src)
        while j < n:
            c = src[j]
            if c in "\"'":
                q = j
                j += 1
                while j < n and src[j] != c and src[j] != "\n":
                    j += 2 if src[j] == "\\" else 1
                if j >= n or src[j] != c:
                    raise _ParseError(q, "unterminated quoted string" if c == '"' else "unterminated character constant")
                j += 1
                continue
            if c == "`":
                e = src.find("`", j + 1)
                if e < 0:
                    raise _ParseError(j, "unterminated raw quoted string")
                j = e + 1
                continue
            if src.startswith("}}", j):
                if j - 2 >= start and src[j - 1] == "-" and src[j - 2] in _SPACE:
                    return j - 2, True, j + 2
                return j, False, j + 2
            j += 1
        raise _ParseError(k, "unclosed action")

    def parse(self):
        self.stream = self.items()
        self.k = 0
        body, end = self.list_until(())
        if end is not None:
            raise _ParseError(end[1], f"unexpected {{{{{end[0]}}}}}")
        return body

    def list_until(self, stops):
        """Nodes up to a keyword action in `stops`; returns (nodes, (keyword, pos, toks) or None)."""
        nodes = []
        while self.k < len(self.stream):
            kind, val, pos = self.stream[self.k]
            self.k += 1
            if kind == "text":
                nodes.append(_Text(val))
                continue
            toks = val
            first = toks[0]
            if first.kind == "keyword":
                kw = first.val
                if kw in ("end", "else"):
                    if kw in stops:
                        return nodes, (kw, pos, toks)
                    raise _ParseError(pos, f"unexpected {{{{{kw}}}}}")
                if kw in ("if", "with", "range"):
                    nodes.append(self.control(kw, toks, pos))
                    continue
                if kw in ("break", "continue"):
                    if not self.in_range:
                        raise _ParseError(pos, f"{{{{{kw}}}}} outside {{{{range}}}}")
                    if toks[1].kind != "eof":
                        raise _ParseError(pos, f"unexpected {toks[1].desc()} in {{{{{kw}}}}}")
                    nodes.append(_Jump(kw, pos))
                    continue
                raise _ParseError(pos, f"{{{{{kw}}}}} is not supported by this format")
            self.toks, self.t = toks, 0
            pipe = self.pipeline("command", decl_ok=True)
            nodes.append(_Action(pipe, pos))
        if stops:
            raise _ParseError(len(self.src), "unexpected EOF")
        return nodes, None

    in_range = 0

    def control(self, kw, toks, pos):
        self.vars.append(list(self.vars[-1]))
        self.toks, self.t = toks, 1
        pipe = self.pipeline(kw, decl_ok=True, range_decl=kw == "range")
        if kw == "range":
            self.in_range += 1
        body, end = self.list_until(("end", "else"))
        if kw == "range":
            self.in_range -= 1
        other = None
        if end[0] == "else":
            etoks = end[2]
            if len(etoks) > 1 and etoks[1].kind == "keyword" and etoks[1].val in ("if", "with") and kw != "range":
                # {{else if ...}}: an if nested in the else branch, sharing this {{end}}
                self.vars.pop()
                return _Control(kw, pipe, body, [self.control(etoks[1].val, etoks[1:], end[1])], pos)
            if etoks[1].kind != "eof":
                raise _ParseError(end[1], f"unexpected {etoks[1].desc()} in else")
            other, end = self.list_until(("end",))
        if end[2][1].kind != "eof":
            raise _ParseError(end[1], f"unexpected {end[2][1].desc()} in end")
        self.vars.pop()
        return _Control(kw, pipe, body, other, pos)

    # -- inside an action
    def peek(self):
        return self.toks[self.t]

    def next(self):
        tok = self.toks[self.t]
        self.t += 1
        return tok

    def pipeline(self, context, decl_ok=False, range_decl=False, closing=None):
        start = self.peek().pos
        decl, assign = [], False
        if decl_ok and self.peek().kind == "var":
            save = self.t
            v = self.next()
            if self.peek().kind in ("declare", "assign"):
                assign = self.next().kind == "assign"
                decl = [v.val]
            elif range_decl and self.peek().kind == "comma":
                self.next()
                v2 = self.next()
                if v2.kind != "var" or self.peek().kind != "declare":
                    raise _ParseError(v.pos, "too many declarations in range" if v2.kind == "var" else
                                      f"unexpected {v2.desc()} in range")
                self.next()
                decl = [v.val, v2.val]
            else:
                self.t = save
            for name in decl:
                if assign:
                    if name not in self.vars[-1]:
                        raise _ParseError(v.pos, f"undefined variable {name!r}".replace("'", '"'))
                else:
                    self.vars[-1].append(name)
        cmds = []
        while True:
            tok = self.peek()
            if tok.kind in ("eof", "rparen") and not cmds:
                if tok.kind == "rparen" and closing is None:
                    raise _ParseError(tok.pos, "unexpected right paren U+0029 ')'")
                raise _ParseError(tok.pos, f"missing value for {context}")
            cmd = self.command(closing)
            if cmds and cmd.args[0].kind in ("lit", "dot"):
                raise _ParseError(cmd.pos, f"non executable command in pipeline stage {len(cmds) + 1}")
            cmds.append(cmd)
            tok = self.peek()
            if tok.kind == "pipe":
                self.next()
                if self.peek().kind in ("eof", "rparen"):
                    raise _ParseError(self.peek().pos, "missing command")
                continue
            if tok.kind == "eof":
                if closing is not None:
                    raise _ParseError(closing, "unclosed left paren")
                break
            if tok.kind == "rparen":
                if closing is None:
                    raise _ParseError(tok.pos, "unexpected right paren U+0029 ')'")
                break
            raise _ParseError(tok.pos, f"unexpected {tok.desc()} in {context}")
        end = self.peek().pos
        return _Pipe(decl, assign, cmds, start, self.src[start:end].strip())

    def command(self, closing):
        args = []
        start = self.peek().pos
        while True:
            tok = self.peek()
            if tok.kind in ("eof", "pipe", "rparen"):
                break
            args.append(self.operand())
        end = self.toks[self.t - 1].end
        if not args:
            raise _ParseError(start, "missing value for command")
        return _Cmd(args, start, self.src[start:end])

    def operand(self):
        tok = self.next()
        if tok.kind == "field":
            names = [tok.val]
            node = None
        elif tok.kind == "dot":
            node = _Arg("dot", None, [], tok.pos, ".")
        elif tok.kind == "var":
            if tok.val not in self.vars[-1]:
                raise _ParseError(tok.pos, f'undefined variable "{tok.val}"')
            node = _Arg("var", tok.val, [], tok.pos, tok.val)
        elif tok.kind in ("string", "number", "bool", "nil"):
            node = _Arg("lit", tok.val, [], tok.pos, self.src[tok.pos:tok.end])
        elif tok.kind == "ident":
            if tok.val not in self.funcs:
                raise _ParseError(tok.pos, f'function "{tok.val}" not defined')
            node = _Arg("ident", tok.val, [], tok.pos, tok.val)
        elif tok.kind == "lparen":
            inner = self.pipeline("parenthesized pipeline", decl_ok=True, closing=tok.pos)
            close = self.next()
            node = _Arg("pipe", inner, [], tok.pos, self.src[tok.pos:close.end])
        elif tok.kind == "keyword":
            raise _ParseError(tok.pos, f"unexpected {tok.desc()} in command")
        else:
            raise _ParseError(tok.pos, f"unexpected {tok.desc()} in operand")
        if tok.kind == "field":
            while self.peek().kind == "field" and self.peek().adjacent:
                names.append(self.next().val)
            return _Arg("field", None, names, tok.pos, self.src[tok.pos:self.toks[self.t - 1].end])
        names = []
        while self.peek().kind == "field" and self.peek().adjacent:
            names.append(self.next().val)
        if names:
            if node.kind == "lit":
                raise _ParseError(tok.pos, f"unexpected . after term {node.text!r}".replace("'", '"'))
            end = self.toks[self.t - 1].end
            if node.kind == "var":
                return _Arg("var", node.value, names, tok.pos, self.src[tok.pos:end])
            return _Arg("chain", node, names, tok.pos, self.src[tok.pos:end])
        return node


# --------------------------------------------------------------------------
# values

def go_type(v) -> str:
    """The Go type a JSON-decoded value would have."""
    if isinstance(v, Struct):
        return v.go_type
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, dict):
        return "map[string]interface {}"
    if isinstance(v, (list, tuple)):
        return "[]interface {}"
    return "interface {}"


def truth(v) -> bool:
    if v is None or v is MISSING:
        return False
    if isinstance(v, Struct):
        return True
    if isinstance(v, (bool, int, float, str, list, tuple, dict)):
        return bool(v)
    return True


def _digits(f: float) -> tuple[str, int]:
    """The shortest decimal digits that round-trip abs(f), and where the
    decimal point goes (digits "15", point 1: 1.5)."""
    mant, _, exp = repr(abs(f)).partition("e")
    whole, _, frac = mant.partition(".")
    digits, point = whole + frac, len(whole) + int(exp or 0)
    lead = len(digits) - len(digits.lstrip("0"))
    digits, point = digits[lead:].rstrip("0"), point - lead
    return digits, point


def _plain(digits: str, point: int) -> str:
    if point <= 0:
        return "0." + "0" * -point + digits
    if point >= len(digits):
        return digits + "0" * (point - len(digits))
    return digits[:point] + "." + digits[point:]


def _go_float(f: float, verb: str = "g", prec: int = -1) -> str:
    """fmt's %v (verb g, prec -1: the shortest digits, exponent form below
    1e-4 or from 1e+06 on, as strconv does) or %e/%f/%g with a precision."""
    if f != f:
        return "NaN"
    if f in (float("inf"), float("-inf")):
        return "+Inf" if f > 0 else "-Inf"
    if verb != "g" or prec >= 0:
        return format(f, f".{6 if prec < 0 else prec}{verb}")
    sign = "-" if f < 0 or (f == 0 and str(f).startswith("-")) else ""
    digits, point = _digits(f)
    if not digits:
        return sign + "0"
    e10 = point - 1
    if e10 < -4 or e10 >= 6:
        m = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{m}e{'+' if e10 >= 0 else '-'}{abs(e10):02d}"
    return sign + _plain(digits, point)


def fmt_value(v) -> str:
    """fmt's %v of a value."""
    if v is None or v is MISSING:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _go_float(v)
    if isinstance(v, str):
        return v
    if isinstance(v, Struct):
        return "{" + " ".join(fmt_value(x) for x in v.values()) + "}"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{fmt_value(k)}:{fmt_value(v[k])}" for k in sorted(v)) + "]"
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(fmt_value(x) for x in v) + "]"
    return str(v)


def _quote(s: str) -> str:
    """strconv.Quote."""
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"' or ch == "\\":
            out.append("\\" + ch)
        elif ch in "\a\b\f\n\r\t\v":
            out.append("\\" + "abfnrtv"["\a\b\f\n\r\t\v".index(ch)])
        elif ch == " " or ch.isprintable():
            out.append(ch)
        elif o < 0x80:
            out.append(f"\\x{o:02x}")
        elif o < 0x10000:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    out.append('"')
    return "".join(out)


def quote(s: str) -> str:
    """Go's strconv.Quote of `s`."""
    return _quote(s)


# Go's encoder with SetEscapeHTML(false): the line separators are still escaped.
_JSON_ESC = {"\u2028": "\\u2028", "\u2029": "\\u2029", "\b": "\\u0008", "\f": "\\u000c"}


def _json_str(s: str) -> str:
    if not any(c in s for c in _JSON_ESC):
        return _json.encode_basestring(s)
    return '"' + "".join(_JSON_ESC.get(c) or _json.encode_basestring(c)[1:-1] for c in s) + '"'


def _json_float(f: float) -> str:
    # encoding/json: plain decimal, exponent form below 1e-6 and from 1e21
    if f != f or f in (float("inf"), float("-inf")):
        raise _FuncError(f"json: unsupported value: {_go_float(f)}")
    sign = "-" if f < 0 else ""
    digits, point = _digits(f)
    if not digits:
        return "0"
    if 1e-6 <= abs(f) < 1e21:
        return sign + _plain(digits, point)
    e10 = point - 1
    m = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{sign}{m}e{'+' if e10 >= 0 else '-'}{abs(e10):02d}" if e10 >= 0 else f"{sign}{m}e-{abs(e10)}"


def go_json(v) -> str:
    """What docker's json template function writes for `v`."""
    if v is None or v is MISSING:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _json_float(v)
    if isinstance(v, str):
        return _json_str(v)
    if isinstance(v, dict):
        return "{" + ",".join(f"{_json_str(str(k))}:{go_json(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(go_json(x) for x in v) + "]"
    raise _FuncError(f"json: unsupported type: {type(v).__name__}")


# --------------------------------------------------------------------------
# printf

def _printf(fmt: str, args: list) -> str:
    out, i, n, a = [], 0, len(fmt), 0
    while i < n:
        c = fmt[i]
        if c != "%":
            out.append(c)
            i += 1
            continue
        i += 1
        flags = ""
        while i < n and fmt[i] in "-+# 0":
            flags += fmt[i]
            i += 1
        width = ""
        while i < n and fmt[i].isdigit():
            width += fmt[i]
            i += 1
        prec = None
        if i < n and fmt[i] == ".":
            i += 1
            p = ""
            while i < n and fmt[i].isdigit():
                p += fmt[i]
                i += 1
            prec = int(p or 0)
        if i >= n:
            out.append("%!(NOVERB)")
            break
        verb = fmt[i]
        i += 1
        if verb == "%":
            out.append("%")
            continue
        if a >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        v = args[a]
        a += 1
        out.append(_pad(_verb(verb, v, flags, prec), flags, width))
    if a < len(args):
        extra = ", ".join(f"{go_type(x) if x is not None else '<nil>'}={fmt_value(x)}" for x in args[a:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


def _pad(s: str, flags: str, width: str) -> str:
    if not width or len(s) >= int(width):
        return s
    w = int(width)
    if "-" in flags:
        return s + " " * (w - len(s))
    if "0" in flags and s[:1] in "+-" and s[1:2].isdigit():
        return s[0] + "0" * (w - len(s)) + s[1:]
    if "0" in flags and s[:1].isdigit():
        return "0" * (w - len(s)) + s
    return " " * (w - len(s)) + s


def _verb(verb: str, v, flags: str, prec) -> str:
    if isinstance(v, (list, tuple)) and verb != "v":
        return "[" + " ".join(_verb(verb, x, flags, prec) for x in v) + "]"
    bad = f"%!{verb}({'<nil>' if v is None or v is MISSING else go_type(v) + '=' + fmt_value(v)})"
    if verb == "v":
        s = fmt_value(v)
        return s if prec is None or not isinstance(v, str) else s[:prec]
    if verb == "s":
        if isinstance(v, str):
            return v if prec is None else v[:prec]
        if isinstance(v, dict):
            return fmt_value(v)
        return bad
    if verb == "q":
        return _quote(v) if isinstance(v, str) else (_quote(chr(v)).replace('"', "'") if isinstance(v, int)
                                                      and not isinstance(v, bool) else bad)
    if verb == "t":
        return ("true" if v else "false") if isinstance(v, bool) else bad
    if isinstance(v, bool):
        return bad
    if verb in "dxXobc" and isinstance(v, int):
        if verb == "c":
            return chr(v)
        sign = "-" if v < 0 else ("+" if "+" in flags else (" " if " " in flags else ""))
        body = format(abs(v), {"d": "d", "x": "x", "X": "X", "o": "o", "b": "b"}[verb])
        if prec is not None and len(body) < prec:
            body = "0" * (prec - len(body)) + body
        return sign + body
    if verb in "xX" and isinstance(v, str):
        h = v.encode().hex()
        return h.upper() if verb == "X" else h
    if verb in "fFeEgG" and isinstance(v, float):
        s = _go_float(v, verb, -1 if prec is None and verb in "gG" else (6 if prec is None else prec))
        if "+" in flags and not s.startswith("-"):
            s = "+" + s
        return s
    return bad


# --------------------------------------------------------------------------
# execution

class _ExecError(Exception):
    def __init__(self, node, msg):
        super().__init__(msg)
        self.node = node


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


def _want_str(v, node, what="string"):
    if isinstance(v, str):
        return v
    if v is MISSING:
        raise _ExecError(node, f"invalid value; expected {what}")
    raise _ExecError(node, f"wrong type for value; expected {what}; got {go_type(v) if v is not None else 'interface {}'}")


def _want_int(v, node):
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if v is MISSING:
        raise _ExecError(node, "invalid value; expected int")
    raise _ExecError(node, f"wrong type for value; expected int; got {go_type(v)}")


class _FuncError(Exception):
    pass


def _index(item, *keys):
    for k in keys:
        if item is None or item is MISSING:
            raise _FuncError("index of untyped nil")
        if isinstance(item, dict):
            if not isinstance(k, str):
                raise _FuncError(f"value has type {go_type(k)}; should be string")
            item = item.get(k)
        elif isinstance(item, (list, tuple, str)):
            if not isinstance(k, int) or isinstance(k, bool):
                raise _FuncError(f"cannot index slice/array with type {go_type(k)}")
            if not 0 <= k < len(item):
                raise _FuncError(f"index out of range: {k}")
            item = item[k] if not isinstance(item, str) else item.encode()[k] if k < len(item.encode()) else 0
        else:
            raise _FuncError(f"can't index item of type {go_type(item)}")
    return item


def _slice(item, *idx):
    if item is None or item is MISSING:
        raise _FuncError("slice of untyped nil")
    if not isinstance(item, (list, tuple, str)):
        raise _FuncError(f"can't slice item of type {go_type(item)}")
    if len(idx) > 2:
        raise _FuncError(f"too many slice indexes: {len(idx)}")
    for k in idx:
        if not isinstance(k, int) or isinstance(k, bool):
            raise _FuncError(f"cannot index slice/array with type {go_type(k)}")
    lo = idx[0] if idx else 0
    hi = idx[1] if len(idx) > 1 else len(item)
    if not 0 <= lo <= hi <= len(item):
        raise _FuncError(f"index out of range: {hi if hi > len(item) else lo}")
    return item[lo:hi]


def _length(item):
    if item is None or item is MISSING:
        raise _FuncError("len of nil pointer")
    if isinstance(item, str):
        return len(item.encode())
    if isinstance(item, (list, tuple, dict)):
        return len(item)
    raise _FuncError(f"len of type {go_type(item)}")


def _kind(v):
    if v is None or v is MISSING:
        return "nil"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    return None


def _eq(a, *others):
    if not others:
        raise _FuncError("missing argument for comparison")
    ka = _kind(a)
    if ka is None:
        raise _FuncError("invalid type for comparison")
    for b in others:
        kb = _kind(b)
        if kb is None:
            raise _FuncError("invalid type for comparison")
        if ka != kb:
            if "nil" in (ka, kb):
                continue
            raise _FuncError("incompatible types for comparison")
        if a == b:
            return True
    return False


def _lt(a, b):
    ka, kb = _kind(a), _kind(b)
    if ka in (None, "nil", "bool") or kb in (None, "nil", "bool"):
        raise _FuncError("invalid type for comparison")
    if ka != kb:
        raise _FuncError("incompatible types for comparison")
    return a < b


def _sprint(args):
    out = []
    for i, v in enumerate(args):
        if i and not isinstance(v, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(fmt_value(v))
    return "".join(out)


def _title(s: str) -> str:
    out, prev = [], " "
    for ch in s:
        sep = not (ch.isalnum() or ch == "_") if ord(ch) < 0x80 else ch.isspace()
        prev_sep = not (prev.isalnum() or prev == "_") if ord(prev) < 0x80 else prev.isspace()
        out.append(ch.upper() if prev_sep and not sep else ch)
        prev = ch
    return "".join(out)


def _split(s, sep):
    if sep == "":
        return list(s)
    return s.split(sep)


def _join(items, sep):
    if not isinstance(items, (list, tuple)) or not all(isinstance(x, str) for x in items):
        raise _ExecError(None, f"wrong type for value; expected []string; got {go_type(items)}")
    return sep.join(items)


def _html(*args):
    s = _sprint(args)
    return (s.replace("&", "&amp;").replace("'", "&#39;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&#34;").replace("\0", "\ufffd"))


def _urlquery(*args):
    s = _sprint(args).encode()
    safe = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~"
    return "".join(chr(b) if b in safe else ("+" if b == 0x20 else f"%{b:02X}") for b in s)


# Each function: (callable, kind of each argument or None for variadic values, variadic).
# Argument kinds: "any", "str", "int", "strs".
_BASIC = {
    "index": (_index, ["any"], "any"),
    "slice": (_slice, ["any"], "any"),
    "len": (_length, ["any"], None),
    "print": (lambda *a: _sprint(a), [], "any"),
    "println": (lambda *a: " ".join(fmt_value(x) for x in a) + "\n", [], "any"),
    "printf": (lambda f, *a: _printf(f, list(a)), ["str"], "any"),
    "eq": (_eq, ["any"], "any"),
    "ne": (lambda a, b: not _eq(a, b), ["any", "any"], None),
    "lt": (_lt, ["any", "any"], None),
    "le": (lambda a, b: _lt(a, b) or _eq(a, b), ["any", "any"], None),
    "gt": (lambda a, b: not (_lt(a, b) or _eq(a, b)), ["any", "any"], None),
    "ge": (lambda a, b: not _lt(a, b), ["any", "any"], None),
    "not": (lambda a: not truth(a), ["any"], None),
    "html": (_html, [], "any"),
    "urlquery": (_urlquery, [], "any"),
    "json": (go_json, ["any"], None),
    "split": (_split, ["str", "str"], None),
    "join": (_join, ["any", "str"], None),
    "title": (_title, ["str"], None),
    "lower": (lambda s: s.lower(), ["str"], None),
    "upper": (lambda s: s.upper(), ["str"], None),
    "pad": (lambda s, a, b: s if s == "" else " " * a + s + " " * b, ["str", "int", "int"], None),
    "truncate": (lambda s, n: s if len(s) < n else s[:n], ["str", "int"], None),
    "and": (None, ["any"], "any"),
    "or": (None, ["any"], "any"),
}

# docker's header functions: a table header keeps its column names.
HEADER_FUNCS = dict(_BASIC)
for _name, _kinds in (("json", ["any"]), ("split", ["any", "any"]), ("join", ["any", "any"]), ("title", ["any"]),
                      ("lower", ["any"]), ("upper", ["any"]), ("truncate", ["any", "any"])):
    HEADER_FUNCS[_name] = ((lambda v, *_: v), _kinds, None)


class _State:
    def __init__(self, tmpl, root, funcs):
        self.src, self.root, self.funcs = tmpl.src, root, funcs
        self.error_missing = tmpl.missingkey == "error"
        self.out = []

    def walk(self, nodes, dot, scope):
        for node in nodes:
            if isinstance(node, _Text):
                self.out.append(node.s)
            elif isinstance(node, _Action):
                v = self.pipe(node.pipe, dot, scope)
                if not node.pipe.decl:
                    self.out.append(NO_VALUE if v is None or v is MISSING else fmt_value(v))
            elif isinstance(node, _Control):
                self.control(node, dot, scope)
            elif isinstance(node, _Jump):
                raise _Break() if node.kind == "break" else _Continue()

    def control(self, node, dot, scope):
        mark = len(scope)
        try:
            v = self.pipe(node.pipe, dot, scope)
            if node.kind == "range":
                self.range(node, v, dot, scope)
            elif truth(v):
                self.walk(node.body, v if node.kind == "with" else dot, scope)
            elif node.other:
                self.walk(node.other, dot, scope)
        finally:
            del scope[mark:]

    def range(self, node, v, dot, scope):
        if isinstance(v, dict):
            items = [(k, v[k]) for k in sorted(v)]
        elif isinstance(v, (list, tuple)):
            items = list(enumerate(v))
        elif v is None or v is MISSING:
            items = []
        elif isinstance(v, int) and not isinstance(v, bool):
            items = [(i, i) for i in range(v)]
        else:
            raise _ExecError(node.pipe, f"range can't iterate over {fmt_value(v)}")
        decl = node.pipe.decl
        top = len(scope)
        for k, x in items:
            # the declared variables are the top ones: $v, or $k then $v
            if len(decl) == 1:
                scope[top - 1][1] = x
            elif len(decl) == 2:
                scope[top - 2][1], scope[top - 1][1] = k, x
            mark = len(scope)
            try:
                self.walk(node.body, x, scope)
            except _Continue:
                continue
            except _Break:
                break
            finally:
                del scope[mark:]
        if not items and node.other:
            self.walk(node.other, dot, scope)

    def pipe(self, pipe, dot, scope):
        value = _NOFINAL
        for cmd in pipe.cmds:
            value = self.command(cmd, dot, scope, value)
        if pipe.assign:
            for cell in reversed(scope):
                if cell[0] == pipe.decl[0]:
                    cell[1] = value
                    break
        else:
            for name in pipe.decl:
                scope.append([name, value])
        return value

    def command(self, cmd, dot, scope, final):
        first = cmd.args[0]
        if first.kind == "ident":
            return self.call(first, cmd.args[1:], dot, scope, final)
        if len(cmd.args) == 1 and final is _NOFINAL:
            return self.arg(first, dot, scope)
        if first.names:
            # a method of a Struct (a callable value) takes arguments; a field does not
            if first.kind == "field":
                recv = self.fields(first, dot, first.names[:-1])
            elif first.kind == "var":
                recv = self.fields(first, self.var(scope, first.value), first.names[:-1])
            else:
                recv = self.fields(first, self.arg(first.value, dot, scope), first.names[:-1])
            name = first.names[-1]
            method = recv.get(name) if isinstance(recv, Struct) else None
            if callable(method):
                argv = [self.arg(a, dot, scope) for a in cmd.args[1:]] + ([] if final is _NOFINAL else [final])
                return self.invoke(first, name, method, argv)
            raise _ExecError(first, f"{name} is not a method but has arguments")
        raise _ExecError(first, f"can't give argument to non-function {first.text}")

    def invoke(self, node, name, fn, argv):
        try:
            return fn(*argv)
        except _FuncError as e:
            raise _ExecError(node, f"error calling {name}: {e}") from None
        except _ExecError as e:
            raise _ExecError(e.node or node, str(e)) from None
        except (TypeError, ValueError, OverflowError) as e:
            raise _ExecError(node, f"error calling {name}: {e}") from None

    @staticmethod
    def var(scope, name):
        for cell in reversed(scope):
            if cell[0] == name:
                return cell[1]
        return MISSING

    def arg(self, a, dot, scope):
        if a.kind == "lit":
            return a.value
        if a.kind == "dot":
            return dot
        if a.kind == "field":
            return self.fields(a, dot, a.names)
        if a.kind == "var":
            return self.fields(a, self.var(scope, a.value), a.names)
        if a.kind == "pipe":
            mark = len(scope)
            try:
                return self.pipe(a.value, dot, scope)
            finally:
                del scope[mark:]
        if a.kind == "chain":
            return self.fields(a, self.arg(a.value, dot, scope), a.names)
        if a.kind == "ident":
            return self.call(a, [], dot, scope, _NOFINAL)
        raise _ExecError(a, "can't evaluate")

    def fields(self, node, v, names):
        for name in names:
            if v is MISSING:
                if self.error_missing:
                    raise _ExecError(node, f'nil data; no entry for key "{name}"')
                return MISSING
            typ = go_type(v) if v is self.root else "interface {}"
            if v is None:
                raise _ExecError(node, f"nil pointer evaluating {typ}.{name}")
            if isinstance(v, Struct):
                if name not in v:
                    raise _ExecError(node, f"can't evaluate field {name} in type {v.go_type}")
                v = v[name]
                if callable(v):
                    v = self.invoke(node, name, v, [])
            elif isinstance(v, dict):
                if name in v:
                    v = v[name]
                elif self.error_missing:
                    raise _ExecError(node, f'map has no entry for key "{name}"')
                else:
                    v = MISSING
            else:
                raise _ExecError(node, f"can't evaluate field {name} in type {typ}")
        return v

    def call(self, ident, args, dot, scope, final):
        name = ident.value
        fn, kinds, variadic = self.funcs[name]
        nargs = len(args) + (final is not _NOFINAL)
        if name in ("and", "or"):
            if nargs < 1:
                raise _ExecError(ident, f"wrong number of args for {name}: want at least 1 got 0")
            v = None
            for a in args:
                v = self.arg(a, dot, scope)
                if truth(v) != (name == "and"):
                    return v
            return final if final is not _NOFINAL else v
        if (variadic is None and nargs != len(kinds)) or (variadic and nargs < len(kinds)):
            want = f"at least {len(kinds)}" if variadic else str(len(kinds))
            raise _ExecError(ident, f"wrong number of args for {name}: want {want} got {nargs}")
        values = [(self.arg(a, dot, scope), a) for a in args]
        if final is not _NOFINAL:
            values.append((final, ident))
        argv = []
        for i, (v, node) in enumerate(values):
            kind = kinds[i] if i < len(kinds) else variadic
            if kind == "str":
                v = _want_str(v, node)
            elif kind == "int":
                v = _want_int(v, node)
            argv.append(v)
        return self.invoke(ident, name, fn, argv)


_NOFINAL = object()


class Template:
    """A parsed --format template."""

    def __init__(self, src: str, nodes, missingkey: str):
        self.src, self.nodes, self.missingkey = src, nodes, missingkey

    def render(self, obj, *, funcs=None, partial=False) -> str:
        """The template executed on `obj`. With partial=True an execution
        error returns what was written before it (docker's table header)."""
        st = _State(self, obj, funcs or _BASIC)
        try:
            st.walk(self.nodes, obj, [["$", obj]])
        except _ExecError as e:
            if partial:
                return "".join(st.out)
            node = e.node
            pos = node.pos if node is not None else 0
            line = 1 + self.src.count("\n", 0, pos)
            nl = self.src.rfind("\n", 0, pos)
            col = pos if nl < 0 else pos - nl - 1
            ctx = node.text if node is not None else ""
            raise TemplateError(f'{PREFIX}template: :{line}:{col}: executing "" at <{ctx}>: {e}') from None
        except (_Break, _Continue):
            pass
        return "".join(st.out)


def parse(template: str, *, missingkey: str = "default") -> Template:
    """Parse `template` (Go's syntax; see the module docstring). missingkey
    "error" makes a missing map key an execution error."""
    try:
        nodes = _Parser(template, _BASIC).parse()
    except _ParseError as e:
        line = 1 + template.count("\n", 0, min(e.pos, len(template)))
        raise TemplateError(f"{PREFIX}template: :{line}: {e}") from None
    return Template(template, nodes, missingkey)


def render(template: str, obj, *, missingkey: str = "default") -> str:
    """parse(template).render(obj)."""
    return parse(template, missingkey=missingkey).render(obj)


# --------------------------------------------------------------------------
# tables

def prepare(fmt: str) -> tuple[bool, str]:
    """(is_table, template) for a --format value, as docker's formatter
    reads it: "table" prefix removed, spaces trimmed, the escapes \\t and
    \\n turned into a tab and a newline."""
    table = fmt.startswith("table")
    if table:
        fmt = fmt[len("table"):]
    fmt = fmt.strip(" ")
    out, i = [], 0
    while i < len(fmt):
        if fmt.startswith("\\t", i):
            out.append("\t")
            i += 2
        elif fmt.startswith("\\n", i):
            out.append("\n")
            i += 2
        else:
            out.append(fmt[i])
            i += 1
    return table, "".join(out)


def table_header(fmt: str, headers: dict[str, str]) -> str | None:
    """The header row of a "table ..." format, None for any other format."""
    table, text = prepare(fmt)
    if not table:
        return None
    return table_format(fmt, headers)[0]


def table_format(fmt: str, headers: dict[str, str]) -> tuple[str, Template]:
    """(header row, row template) for a --format value; the header is the
    template executed on `headers` (field -> column name) with docker's
    header functions, "" when the format is not a table."""
    table, text = prepare(fmt)
    tmpl = parse(text)
    header = tmpl.render(dict(headers), funcs=HEADER_FUNCS, partial=True) if table else ""
    return header, tmpl


MINWIDTH, PADDING = 10, 3


def tabwrite(rows) -> str:
    """Rows (strings, or one string of lines) aligned as Go's
    text/tabwriter does with docker's settings (minwidth 10, tabwidth 1,
    padding 3, padchar ' ', no flags): tab-terminated cells of contiguous
    lines form a column as wide as its widest cell plus the padding; the
    text after a line's last tab is not padded. Every line ends in "\\n"."""
    text = rows if isinstance(rows, str) else "".join(r if r.endswith("\n") else r + "\n" for r in rows)
    raw = text.split("\n")
    tail = raw.pop()  # after the last newline: an unterminated line
    lines = [ln.split("\t") for ln in raw]
    if tail:
        lines.append(tail.split("\t"))
    out = []

    def write(l0, l1, widths):
        for i in range(l0, l1):
            cells = lines[i]
            for j, c in enumerate(cells):
                out.append(c)
                if j < len(widths) and j < len(cells) - 1:
                    out.append(" " * (widths[j] - len(c)))
            if i < len(raw):
                out.append("\n")

    def fmt(l0, l1, widths):
        column = len(widths)
        this = l0
        while this < l1:
            if column >= len(lines[this]) - 1:
                this += 1
                continue
            write(l0, this, widths)
            l0 = this
            width = MINWIDTH
            while this < l1 and column < len(lines[this]) - 1:
                width = max(width, len(lines[this][column]) + PADDING)
                this += 1
            fmt(l0, this, widths + [width])
            l0 = this
            this += 1
        write(l0, l1, widths)

    fmt(0, len(lines), [])
    return "".join(out)
