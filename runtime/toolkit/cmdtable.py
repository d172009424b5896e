"""Command lines declared once, as tables, with two front ends.

pyrunc and pyimg are fresh interpreters on every call, and the calls tools
make (containerd runs pyrunc 4-5 times per container; a second bundle of an
image is one pyimg call) must not pay for importing typer. So
each program declares its verbs in a Table: options, positionals, and the
one function a verb maps to. Two front ends read that table:

* Table.parse, a small parser for every real call;
* runtime.cmdhelp, for people (--help, and a program called without a
  verb): runc's help text for a "go" table, typer built from a "posix" one.

Two parsing styles: "go" (runc's: options also as -name, errors worded like
Go's flag package and runc's argument checks, help in urfave/cli's layout,
`help [VERB]` as a verb) and "posix" (docker's: bundled short flags such as
-it, -eVALUE). Both take --name=value and `--` ends the options.
"""
from runtime.toolkit import os_lite as os
import sys


class UsageError(Exception):
    """A command line that does not fit the table; str() is one line.
    Attributes set where it is raised: `verb` (None for the global options),
    `kind` ("flag", "args" or "topic": what the go style shows with it) and
    `code` (the exit status)."""
    verb = None
    kind = "flag"
    code = 1


def _usage(msg: str, verb: str | None = None, kind: str = "flag", code: int = 1) -> UsageError:
    e = UsageError(msg)
    e.verb, e.kind, e.code = verb, kind, code
    return e


# Go's flag package (urfave/cli v1 on top of it) answers help and version
# for these names, with or without a value; pyimg's posix style takes -h and
# --help. (Tuples: constants, nothing built at import.)
_GO_HELP = ("-h", "--h", "-help", "--help")
_GO_VERSION = ("-v", "--v", "-version", "--version")
_GO_TRUE = ("1", "t", "T", "TRUE", "true", "True")  # strconv.ParseBool
_GO_FALSE = ("0", "f", "F", "FALSE", "false", "False")


# Options, positionals and verbs are small classes with __slots__ (every
# call of either program declares its whole table at import; namedtuple
# would import collections, which costs more than the rest of the table).

class Opt:
    """An option. names: its spellings, each starting with "-", given
    comma-separated ("--all,-a") and kept as a tuple ("--all", "-a");
    dest: the key of its value; kind: str, int, bool or list (a repeatable
    str); default: the value when it is not given, or a callable called at
    parse time (e.g. to read the environment); required: a call must give it."""
    __slots__ = ("names", "dest", "kind", "default", "help", "required")

    def __init__(self, names: str, dest: str, kind: type = str, default=None, help: str = "",
                 required: bool = False):
        self.names = tuple(names.replace(" ", "").split(","))
        self.dest, self.kind, self.default, self.help, self.required = dest, kind, default, help, required

    def initial(self):
        """The value before the command line is read."""
        if self.kind is list:
            return []
        return self.default() if callable(self.default) else self.default


class Arg:
    """A positional. many: takes every remaining positional (a list);
    required with many means at least one."""
    __slots__ = ("name", "help", "required", "many")

    def __init__(self, name: str, help: str = "", required: bool = True, many: bool = False):
        self.name, self.help, self.required, self.many = name, help, required, many


class Verb:
    """A verb of a Table: the function a call runs, its Opts and Args in
    declaration order, its help text, and raw_rest (Table.verb)."""
    __slots__ = ("func", "items", "help", "raw_rest")

    def __init__(self, func, items: tuple, help: str = "", raw_rest: bool = False):
        self.func, self.items, self.help, self.raw_rest = func, items, help, raw_rest


class Table:
    """A program's verbs. `verbs` maps a name to its Verb, whose items are
    split into options and positionals only for the verb a call names."""

    def __init__(self, prog: str, help: str, global_opts: list[Opt], style: str = "posix"):
        self.prog, self.help, self.global_opts, self.style = prog, help, global_opts, style
        self.verbs: dict[str, Verb] = {}
        # go style: the help's ARGS text per verb (Table.verb's args_usage),
        # and a function returning the version text the app help shows.
        self.args_usage: dict[str, str] = {}
        self.version_text = None

    def verb(self, name: str, *items: Opt | Arg, help: str = "", raw_rest: bool = False, args_usage: str = ""):
        """Register the decorated function as verb `name`; items are its Opts
        and Args in order. The function is called as func(g, a) with the
        global and the verb's values as dicts keyed by dest / arg name.
        raw_rest: once the last (many) positional starts, everything after
        it is positional, options included (`exec ID CMD -x`, `run IMG sh -c`).
        help: a one-line summary, then (after a blank line) a description;
        args_usage: what the go-style help shows for the positionals."""
        def deco(func):
            self.verbs[name] = Verb(func, items, help, raw_rest)
            if args_usage:
                self.args_usage[name] = args_usage
            return func
        return deco

    def func(self, name: str):
        """The function of verb `name`."""
        return self.verbs[name].func

    def split(self, name: str) -> tuple[list[Opt], list[Arg]]:
        """Verb `name`'s (options, positionals), in declaration order."""
        items = self.verbs[name].items
        return [x for x in items if type(x) is Opt], [x for x in items if type(x) is not Opt]

    # ------------------------------------------------------------- parsing
    def _index(self, opts: list[Opt]) -> dict[str, Opt]:
        idx = {}
        go = self.style == "go"
        for o in opts:
            for n in o.names:
                idx[n] = o
                if go and n.startswith("--"):
                    idx[n[1:]] = o  # Go's flag package also takes -name
        return idx

    def _flag(self, name: str) -> str:
        # Go's flag package names a flag with one dash, however it was given.
        return "-" + name.lstrip("-") if self.style == "go" else name

    def _unknown(self, name: str) -> UsageError:
        if self.style == "go":
            return UsageError(f"flag provided but not defined: {self._flag(name)}")
        return UsageError(f"unknown flag: {name}")

    def _is_help(self, arg: str) -> bool:
        if self.style == "go":
            return arg.partition("=")[0] in _GO_HELP
        return arg in ("--help", "-h")

    def _take(self, idx: dict[str, Opt], argv: list[str], i: int, values: dict) -> int:
        """Parse the option at argv[i] into values; return the next index."""
        arg = argv[i]
        name, eq, inline = arg.partition("=")
        o = idx.get(name)
        if o is None and self.style == "posix" and not arg.startswith("--") and len(arg) > 2:
            # -it (bundled booleans) or -eVALUE (a short option and its value)
            first = idx.get(arg[:2])
            if first is not None and first.kind is not bool:
                return self._store(first, arg[:2], arg[2:], values) or i + 1
            flags = [idx.get("-" + c) for c in arg[1:]]
            if all(f is not None and f.kind is bool for f in flags):
                for f in flags:
                    values[f.dest] = True
                return i + 1
        if o is None:
            raise self._unknown(name)
        if o.kind is bool:
            if not eq:
                values[o.dest] = True
            elif self.style != "go":
                values[o.dest] = inline.lower() not in ("false", "0")
            elif inline in _GO_TRUE or inline in _GO_FALSE:
                values[o.dest] = inline in _GO_TRUE
            else:
                raise UsageError(f'invalid boolean value "{inline}" for {self._flag(name)}: parse error')
            return i + 1
        if eq:
            self._store(o, name, inline, values)
            return i + 1
        if i + 1 >= len(argv):
            raise UsageError(f"flag needs an argument: {self._flag(name)}")
        self._store(o, name, argv[i + 1], values)
        return i + 2

    def _store(self, o: Opt, name: str, val: str, values: dict) -> None:
        kind, dest = o.kind, o.dest
        if kind is int:
            try:
                val = int(val)
            except ValueError:
                if self.style == "go":
                    raise UsageError(f'invalid value "{val}" for flag {self._flag(name)}: parse error') from None
                raise UsageError(f"invalid value {val!r} for flag {name}") from None
        if kind is list:
            values.setdefault(dest, []).append(val)
        else:
            values[dest] = val

    def parse(self, argv: list[str]):
        """(globals, verb, values): verb is the verb's name, "--help" or
        "--version" for those requests, and None when no verb was given.
        For "--help", values is the verb whose help was asked for (None:
        the program's). Raises UsageError."""
        go = self.style == "go"
        gidx = self._index(self.global_opts)
        g = {o.dest: o.initial() for o in self.global_opts}
        i = 0
        while i < len(argv) and argv[i].startswith("-"):
            arg = argv[i]
            if arg == "--":
                i += 1
                break
            if self._is_help(arg):
                return g, "--help", None
            if arg in ("--version", "-v") or (go and arg.partition("=")[0] in _GO_VERSION):
                return g, "--version", None
            try:
                i = self._take(gidx, argv, i, g)
            except UsageError as e:
                raise _usage(str(e)) from None
        if i >= len(argv):
            return g, None, None
        name = argv[i]
        if go and name in ("help", "h"):
            # runc's `help [VERB]` (urfave/cli's help command, alias h)
            topic = argv[i + 1] if i + 1 < len(argv) else None
            if topic is None:
                return g, "--help", None
            if topic in ("help", "h") or self._is_help(topic):
                return g, "--help", "help"
            if topic not in self.verbs:
                raise _usage(f"No help topic for '{topic}'", kind="topic", code=3)
            return g, "--help", topic
        v = self.verbs.get(name)
        if v is None:
            if go:
                raise _usage(f"No help topic for '{name}'", kind="topic", code=3)  # runc's words
            raise UsageError(f"unknown command {name!r} for {self.prog!r}")
        i += 1
        opts, args = self.split(name)
        raw_rest = v.raw_rest and args and args[-1].many
        idx = self._index(opts)
        a = {o.dest: o.initial() for o in opts}
        pos: list[str] = []
        fixed = len([x for x in args if not x.many])
        while i < len(argv):
            arg = argv[i]
            if arg == "--":
                pos.extend(argv[i + 1:])
                break
            if raw_rest and len(pos) >= fixed:
                pos.extend(argv[i:])
                break
            if self._is_help(arg):
                return g, "--help", name
            if arg.startswith("-") and len(arg) > 1:
                try:
                    i = self._take(idx, argv, i, a)
                except UsageError as e:
                    raise _usage(str(e), name) from None
                continue
            pos.append(arg)
            i += 1
        for o in opts:
            if o.required and not a.get(o.dest):
                raise _usage(f"{name}: required flag {o.names[-1]} not set", name)
        if go:
            self._check_count(name, args, len(pos))
        self._bind(name, args, pos, a)
        return g, name, a

    def _check_count(self, name: str, args: list[Arg], n: int) -> None:
        """runc's argument checks (exactly / a minimum of / a maximum of N),
        in its words."""
        need = sum(1 for x in args if x.required and not x.many)
        most = None if any(x.many for x in args) else sum(1 for x in args if not x.many)
        if most == need and n != need:
            msg = f"requires exactly {need} argument(s)"
        elif n < need:
            msg = f"requires a minimum of {need} argument(s)"
        elif most is not None and n > most:
            msg = f"requires a maximum of {most} argument(s)"
        else:
            return
        raise _usage(f'{self.prog}: "{name}" {msg}', name, kind="args")

    @staticmethod
    def _bind(name: str, args: list[Arg], pos: list[str], a: dict) -> None:
        rest = list(pos)
        for x in args:
            if x.many:
                if x.required and not rest:
                    raise UsageError(f"{name}: requires at least 1 {x.name.upper()}")
                a[x.name] = rest
                rest = []
            elif rest:
                a[x.name] = rest.pop(0)
            elif x.required:
                need = [y.name.upper() for y in args if y.required]
                raise UsageError(f"{name}: \"{name}\" requires {len(need)} argument(s): {' '.join(need)}")
            else:
                a[x.name] = None
        if rest:
            raise UsageError(f"{name}: unexpected argument {rest[0]!r}")

    def route(self, argv: list[str], dispatch, version, usage_error):
        """Parse argv and answer what needs no verb: returns an exit code
        (usage error via usage_error(msg) -> code, --version via version(),
        help) or (globals, verb name, values) to run. Help is typer's in
        the posix style; the go style prints runc's (urfave/cli's) layout
        to stdout, and with a usage error the help of the verb concerned,
        as runc does."""
        try:
            g, v, a = self.parse(argv)
        except UsageError as e:
            if self.style != "go":
                return usage_error(str(e))
            if e.kind != "topic":
                from runtime.cmdhelp import go_help
                head = "Incorrect Usage." if e.kind == "args" else \
                    (f"Incorrect Usage: {e}" if e.verb else f"Incorrect Usage. {e}")
                sys.stdout.write(head + "\n\n" + go_help(self, e.verb))
            usage_error(str(e))
            return e.code
        if v == "--version":
            version()
            return 0
        if self.style == "go" and (v is None or v == "--help"):
            from runtime.cmdhelp import go_help
            sys.stdout.write(go_help(self, a if v else None))
            return 0
        if v is None or v == "--help":
            from runtime.cmdhelp import typer_main
            return typer_main(self, argv, dispatch)
        return g, v, a


def short_lived() -> None:
    """Turn the cyclic garbage collector off for this process: a call of
    pyrunc or pyimg ends in milliseconds to seconds and hands its memory
    back at exit, so the collector's passes over what imports create (a
    full one among them) are wasted work (docs/performance.md; neither
    grows without it). Entry points only; a verb that stays
    as long as a container or a stream calls stays()."""
    import gc
    gc.disable()


def stays() -> None:
    """The collector back on, for a verb that runs as long as a container
    or a stream (see short_lived)."""
    import gc
    gc.enable()


def finish(code) -> None:
    """End the process with `code` once stdout and stderr are flushed, with
    os._exit: nothing here needs the interpreter's teardown, which every
    call would pay."""
    try:
        sys.stdout.flush()
    except OSError:
        code = code or 1
    try:
        sys.stderr.flush()
    except OSError:
        pass
    os._exit(code if isinstance(code, int) else 1)
