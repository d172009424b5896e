"""Command lines declared once, as tables, with two front ends.

pyrunc and pyimg are fresh interpreters on every call, and the calls tools
make (containerd runs pyrunc 4-5 times per container; a second bundle of an
image is one pyimg call) must not pay for importing typer (~40-60 ms). So
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
from runtime import _os as os  # os.py costs ~1.8 ms per call: runtime._os
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


# Options, positionals and verbs are plain tuples and lists, not classes:
# every call of either program declares its whole table at import, and a
# class costs 50-70 K instructions to create (with the five classes this
# module had, it and pyrunc's table cost `pyrunc start` 2.2 M instructions;
# 1.4 M without them).

def Opt(names: str, dest: str, kind: type = str, default=None, help: str = "",  # noqa: N802
        required: bool = False) -> tuple:
    """An option: (names, dest, kind, default, help, required). `names` is
    comma-separated ("--all,-a"); every name starts with "-". kind: str,
    int, bool or list (repeatable str). `default` may be a callable, called
    at parse time (e.g. to read the environment)."""
    return (names, dest, kind, default, help, required)


def Arg(name: str, help: str = "", required: bool = True, many: bool = False) -> tuple:  # noqa: N802
    """A positional: (name, help, required, many). many: takes every
    remaining positional (a list); required with many means at least one."""
    return (name, help, required, many)


def _initial(o: tuple):
    kind, default = o[2], o[3]
    if kind is list:
        return []
    return default() if callable(default) else default


def __getattr__(name: str):
    # CommandExit is pyimg's alone; made on first use (see the note above).
    if name != "CommandExit":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

    class CommandExit(Exception):
        """Leave a verb with this exit code (its message is already printed)."""

        def __init__(self, code: int):
            super().__init__(code)
            self.code = code
    globals()[name] = CommandExit
    return CommandExit


class Table:
    """A program's verbs. `verbs` maps a name to [func, items, help,
    raw_rest]: items are its Opts and Args in declaration order, split
    only for the verb a call names."""

    def __init__(self, prog: str, help: str, global_opts: list[tuple], style: str = "posix"):
        self.prog, self.help, self.global_opts, self.style = prog, help, global_opts, style
        self.verbs: dict[str, list] = {}
        # go style: the help's ARGS text per verb (Table.verb's args_usage),
        # and a function returning the version text the app help shows.
        self.args_usage: dict[str, str] = {}
        self.version_text = None

    def verb(self, name: str, *items: tuple, help: str = "", raw_rest: bool = False, args_usage: str = ""):
        """Register the decorated function as verb `name`; items are its Opts
        and Args in order. The function is called as func(g, a) with the
        global and the verb's values as dicts keyed by dest / arg name.
        raw_rest: once the last (many) positional starts, everything after
        it is positional, options included (`exec ID CMD -x`, `run IMG sh -c`).
        help: a one-line summary, then (after a blank line) a description;
        args_usage: what the go-style help shows for the positionals."""
        def deco(func):
            self.verbs[name] = [func, items, help, raw_rest]
            if args_usage:
                self.args_usage[name] = args_usage
            return func
        return deco

    def func(self, name: str):
        """The function of verb `name`."""
        return self.verbs[name][0]

    def split(self, name: str) -> tuple[list[tuple], list[tuple]]:
        """Verb `name`'s (options, positionals), in declaration order."""
        items = self.verbs[name][1]
        return [x for x in items if x[0].startswith("-")], [x for x in items if not x[0].startswith("-")]

    @staticmethod
    def opt_names(o: tuple) -> tuple[str, ...]:
        """An option's names ("--all,-a" -> ("--all", "-a"))."""
        return tuple(o[0].replace(" ", "").split(","))

    # ------------------------------------------------------------- parsing
    def _index(self, opts: list[tuple]) -> dict[str, tuple]:
        idx = {}
        go = self.style == "go"
        for o in opts:
            for n in self.opt_names(o):
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

    def _take(self, idx: dict[str, tuple], argv: list[str], i: int, values: dict) -> int:
        """Parse the option at argv[i] into values; return the next index."""
        arg = argv[i]
        name, eq, inline = arg.partition("=")
        o = idx.get(name)
        if o is None and self.style == "posix" and not arg.startswith("--") and len(arg) > 2:
            # -it (bundled booleans) or -eVALUE (a short option and its value)
            first = idx.get(arg[:2])
            if first is not None and first[2] is not bool:
                return self._store(first, arg[:2], arg[2:], values) or i + 1
            flags = [idx.get("-" + c) for c in arg[1:]]
            if all(f is not None and f[2] is bool for f in flags):
                for f in flags:
                    values[f[1]] = True
                return i + 1
        if o is None:
            raise self._unknown(name)
        if o[2] is bool:
            if not eq:
                values[o[1]] = True
            elif self.style != "go":
                values[o[1]] = inline.lower() not in ("false", "0")
            elif inline in _GO_TRUE or inline in _GO_FALSE:
                values[o[1]] = inline in _GO_TRUE
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

    def _store(self, o: tuple, name: str, val: str, values: dict) -> None:
        kind, dest = o[2], o[1]
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
        g = {o[1]: _initial(o) for o in self.global_opts}
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
        raw_rest = v[3] and args and args[-1][3]
        idx = self._index(opts)
        a = {o[1]: _initial(o) for o in opts}
        pos: list[str] = []
        fixed = len([x for x in args if not x[3]])
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
            if o[5] and not a.get(o[1]):
                raise _usage(f"{name}: required flag {self.opt_names(o)[-1]} not set", name)
        if go:
            self._check_count(name, args, len(pos))
        self._bind(name, args, pos, a)
        return g, name, a

    def _check_count(self, name: str, args: list[tuple], n: int) -> None:
        """runc's argument checks (exactly / a minimum of / a maximum of N),
        in its words."""
        need = sum(1 for x in args if x[2] and not x[3])
        most = None if any(x[3] for x in args) else sum(1 for x in args if not x[3])
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
    def _bind(name: str, args: list[tuple], pos: list[str], a: dict) -> None:
        rest = list(pos)
        for arg, _, required, many in args:
            if many:
                if required and not rest:
                    raise UsageError(f"{name}: requires at least 1 {arg.upper()}")
                a[arg] = rest
                rest = []
            elif rest:
                a[arg] = rest.pop(0)
            elif required:
                need = [y[0].upper() for y in args if y[2]]
                raise UsageError(f"{name}: \"{name}\" requires {len(need)} argument(s): {' '.join(need)}")
            else:
                a[arg] = None
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
    full one among them) are wasted work (~1 ms of a create, ~3% of a layer
    apply; neither grows without it). Entry points only; a verb that stays
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
    os._exit: nothing here needs the interpreter's teardown, which costs
    every call ~1 ms."""
    try:
        sys.stdout.flush()
    except OSError:
        code = code or 1
    try:
        sys.stderr.flush()
    except OSError:
        pass
    os._exit(code if isinstance(code, int) else 1)
