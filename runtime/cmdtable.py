"""Command lines declared once, as tables, with two front ends.

pyrunc and pyimg are fresh interpreters on every call, and the calls tools
make (containerd runs pyrunc 4-5 times per container; a second bundle of an
image is one pyimg call) must not pay for importing typer (~40-60 ms). So
each program declares its verbs in a Table: options, positionals, and the
one function a verb maps to. Two front ends read that table:

* Table.parse, a small parser for every real call;
* Table.typer_main, typer built from the same table, for people: --help,
  and a program called without a verb.

Two parsing styles: "go" (runc's: options also as -name, errors worded like
Go's flag package) and "posix" (docker's: bundled short flags such as -it,
-eVALUE). Both take --name=value and `--` ends the options.
"""
from runtime import _os as os  # os.py costs ~1.8 ms per call: runtime._os
import sys


class UsageError(Exception):
    """A command line that does not fit the table; str() is one line."""


class CommandExit(Exception):
    """Leave a verb with this exit code (its message is already printed)."""

    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


class Opt:
    """An option. kind: str, int, bool or list (repeatable str). `default`
    may be a callable, called at parse time (e.g. to read the environment)."""

    __slots__ = ("names", "dest", "kind", "default", "help", "required")

    def __init__(self, names: str, dest: str, kind: type = str, default=None, help: str = "",
                 required: bool = False):
        # (every verb's options are built at each call: kept cheap)
        self.names = tuple(names.replace(" ", "").split(","))
        self.dest = dest
        self.kind = kind
        self.default = default
        self.help = help
        self.required = required

    def initial(self):
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
    __slots__ = ("name", "func", "opts", "args", "help", "raw_rest")

    def __init__(self, name, func, opts, args, help, raw_rest=False):
        self.name, self.func, self.opts, self.args, self.help = name, func, opts, args, help
        # raw_rest: once the last (many) positional starts, everything after
        # it is positional, options included (`exec ID CMD -x`, `run IMG sh -c`).
        self.raw_rest = raw_rest


class Table:
    def __init__(self, prog: str, help: str, global_opts: list[Opt], style: str = "posix"):
        self.prog, self.help, self.global_opts, self.style = prog, help, global_opts, style
        self.verbs: dict[str, Verb] = {}

    def verb(self, name: str, *items, help: str = "", raw_rest: bool = False):
        """Register the decorated function as verb `name`; items are its Opts
        and Args in order. The function is called as func(g, a) with the
        global and the verb's values as dicts keyed by dest / arg name."""
        def deco(func):
            opts = [x for x in items if isinstance(x, Opt)]
            args = [x for x in items if isinstance(x, Arg)]
            self.verbs[name] = Verb(name, func, opts, args, help or (func.__doc__ or "").strip(), raw_rest)
            return func
        return deco

    # ------------------------------------------------------------- parsing
    def _index(self, opts: list[Opt]) -> dict[str, Opt]:
        idx = {}
        for o in opts:
            for n in o.names:
                idx[n] = o
                if self.style == "go" and n.startswith("--"):
                    idx[n[1:]] = o  # Go's flag package also takes -name
        return idx

    def _unknown(self, name: str) -> UsageError:
        if self.style == "go":
            return UsageError(f"flag provided but not defined: {name}")
        return UsageError(f"unknown flag: {name}")

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
            values[o.dest] = inline.lower() not in ("false", "0") if eq else True
            return i + 1
        if eq:
            self._store(o, name, inline, values)
            return i + 1
        if i + 1 >= len(argv):
            raise UsageError(f"flag needs an argument: {name}")
        self._store(o, name, argv[i + 1], values)
        return i + 2

    @staticmethod
    def _store(o: Opt, name: str, val: str, values: dict) -> None:
        if o.kind is int:
            try:
                val = int(val)
            except ValueError:
                raise UsageError(f"invalid value {val!r} for flag {name}") from None
        if o.kind is list:
            values.setdefault(o.dest, []).append(val)
        else:
            values[o.dest] = val

    def parse(self, argv: list[str]):
        """(globals, verb, values). verb is "--help" or "--version" for those
        requests and None when no verb was given. Raises UsageError."""
        gidx = self._index(self.global_opts)
        g = {o.dest: o.initial() for o in self.global_opts}
        i = 0
        while i < len(argv) and argv[i].startswith("-"):
            if argv[i] in ("--help", "-h", "--version", "-v"):
                return g, argv[i], None
            i = self._take(gidx, argv, i, g)
        if i >= len(argv):
            return g, None, None
        v = self.verbs.get(argv[i])
        if v is None:
            if self.style == "go":
                raise UsageError(f"No help topic for '{argv[i]}'")  # runc's words
            raise UsageError(f"unknown command {argv[i]!r} for {self.prog!r}")
        i += 1
        idx = self._index(v.opts)
        a = {o.dest: o.initial() for o in v.opts}
        pos: list[str] = []
        fixed = len([x for x in v.args if not x.many])
        while i < len(argv):
            arg = argv[i]
            if arg in ("--help", "-h"):
                return g, "--help", None
            if arg == "--":
                pos.extend(argv[i + 1:])
                break
            if v.raw_rest and len(pos) >= fixed and v.args and v.args[-1].many:
                pos.extend(argv[i:])
                break
            if arg.startswith("-") and len(arg) > 1:
                i = self._take(idx, argv, i, a)
                continue
            pos.append(arg)
            i += 1
        for o in v.opts:
            if o.required and not a.get(o.dest):
                raise UsageError(f"{v.name}: required flag {o.names[-1]} not set")
        self._bind(v, pos, a)
        return g, v, a

    def _bind(self, v: Verb, pos: list[str], a: dict) -> None:
        rest = list(pos)
        for x in v.args:
            if x.many:
                if x.required and not rest:
                    raise UsageError(f"{v.name}: requires at least 1 {x.name.upper()}")
                a[x.name] = rest
                rest = []
            elif rest:
                a[x.name] = rest.pop(0)
            elif x.required:
                need = [y.name.upper() for y in v.args if y.required]
                raise UsageError(f"{v.name}: \"{v.name}\" requires {len(need)} argument(s): {' '.join(need)}")
            else:
                a[x.name] = None
        if rest:
            raise UsageError(f"{v.name}: unexpected argument {rest[0]!r}")

    def route(self, argv: list[str], dispatch, version, usage_error):
        """Parse argv and answer what needs no verb: returns an exit code
        (usage error via usage_error(msg) -> code, --version via version(),
        help through typer) or (globals, verb, values) to run."""
        try:
            g, v, a = self.parse(argv)
        except UsageError as e:
            return usage_error(str(e))
        if v in ("--version", "-v"):
            version()
            return 0
        if v is None or v == "--help":
            return self.typer_main(argv, dispatch)
        return g, v, a

    # --------------------------------------------------------------- typer
    def typer_main(self, argv: list[str], dispatch) -> int:
        """typer built from the table, for help and usage; a real call that
        reaches it goes back through `dispatch(argv)`."""
        import inspect
        if sys.flags.no_site:
            # A fast launcher skipped site-packages; typer lives there.
            import site
            site.main()
        import typer
        app = typer.Typer(add_completion=False, no_args_is_help=True, help=self.help,
                          context_settings={"help_option_names": ["-h", "--help"]})

        def opt_param(o: Opt):
            ann = list[str] if o.kind is list else o.kind
            default = None if o.kind is list else (o.default() if callable(o.default) else o.default)
            return inspect.Parameter(o.dest, inspect.Parameter.KEYWORD_ONLY, annotation=ann,
                                     default=typer.Option(... if o.required else default, *o.names, help=o.help))

        def callback(**kw):
            pass
        callback.__signature__ = inspect.Signature([opt_param(o) for o in self.global_opts])
        app.callback()(callback)
        for v in self.verbs.values():
            params = []
            for x in v.args:
                ann = list[str] if x.many else str
                params.append(inspect.Parameter(
                    x.name, inspect.Parameter.KEYWORD_ONLY, annotation=ann,
                    default=typer.Argument(... if x.required else None, metavar=x.name.upper(), help=x.help)))
            params += [opt_param(o) for o in v.opts]

            def cmd(**kw):
                raise typer.Exit(dispatch(argv))
            cmd.__signature__ = inspect.Signature(params)
            app.command(v.name, help=v.help)(cmd)
        try:
            app(argv, prog_name=self.prog, standalone_mode=True)
        except SystemExit as e:
            return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        return 0


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
