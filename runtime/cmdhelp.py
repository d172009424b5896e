"""The human front end of a runtime.toolkit.cmdtable Table, for --help and for a
program called without a verb: for a "go" style table (pyrunc) the text
runc prints, in urfave/cli v1's layout (NAME, USAGE, VERSION, COMMANDS,
OPTIONS, aligned as its tabwriter does); for a "posix" one (pyimg) typer
built from the table. Kept apart from cmdtable, which every call loads,
since only those requests need it. It reads the table only through the
Table it is given (runtime.cmdtable imports this module, not the other way
round)."""
import sys


def _align(text: str) -> str:
    """Go's tabwriter as urfave/cli sets it up (padding 2, spaces): each run
    of consecutive lines holding a tab gets its first cells padded to one
    width. The help has at most one tab a line."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        if "\t" not in lines[i]:
            out.append(lines[i])
            i += 1
            continue
        j = i
        while j < len(lines) and "\t" in lines[j]:
            j += 1
        cells = [ln.split("\t", 1) for ln in lines[i:j]]
        w = max(len(c[0]) for c in cells) + 2
        out += [c[0].ljust(w) + c[1] for c in cells]
        i = j
    return "\n".join(out)


def _go_flag(o) -> str:
    """One option line: `--name value, -n value<TAB>usage (default: ...)`."""
    kind, default = o.kind, o.default
    value = "" if kind is bool else " value"
    # urfave/cli: one dash for a one-letter name, two otherwise.
    names = ", ".join(("-" if len(n.lstrip("-")) == 1 else "--") + n.lstrip("-") + value for n in o.names)
    if callable(default):
        default = default()
    shown = ""
    if kind is int:
        shown = f" (default: {default or 0})"
    elif kind is str and default:
        shown = f' (default: "{default}")'
    return f"{names}\t{(o.help + shown).strip()}"


def _summary(help: str) -> tuple[str, str]:
    """(one-line usage, description) of a verb's help text."""
    first, _, rest = help.strip().partition("\n\n")
    return " ".join(first.split()), rest.strip()


def go_help(table, topic: str | None) -> str:
    """The help text of `topic` (a verb, "help", or None for the program)."""
    prog = table.prog
    if topic == "help":
        return (f"NAME:\n   {prog} help - show the list of commands, or the help of one\n\n"
                f"USAGE:\n   {prog} help [command]\n")
    if topic is not None:
        usage, desc = _summary(table.verbs[topic].help)
        opts, _ = table.split(topic)
        text = f"NAME:\n   {prog} {topic} - {usage}\n\nUSAGE:\n   {prog} {topic}"
        if opts:
            text += " [command options]"
        if table.args_usage.get(topic):
            text += " " + table.args_usage[topic]
        if desc:
            text += f"\n\nDESCRIPTION:\n   {desc}"
        if opts:
            text += "\n\nOPTIONS:\n   " + "".join(_go_flag(o) + "\n   " for o in opts)
        return _align(text) + "\n"
    text = (f"NAME:\n   {prog} - {table.help.strip()}\n\nUSAGE:\n"
            f"   {prog} [global options] command [command options] [arguments...]")
    if table.version_text is not None:
        text += "\n\nVERSION:\n   " + table.version_text().rstrip("\n")
    text += "\n\nCOMMANDS:"
    for name, v in sorted(table.verbs.items()):
        text += f"\n   {name}\t{_summary(v.help)[0]}"
    text += "\n   help, h\tshow the list of commands, or the help of one"
    text += "\n\nGLOBAL OPTIONS:\n   " + "\n   ".join(
        [_go_flag(o) for o in table.global_opts] + ["--help, -h\tshow help", "--version, -v\tprint the version"])
    return _align(text) + "\n"


def typer_main(table, argv: list[str], dispatch) -> int:
    """Run typer built from `table` on argv; a real call that reaches it
    goes back through `dispatch(argv)`. Returns the exit code."""
    import inspect
    if sys.flags.no_site:
        # A fast launcher skipped site-packages; typer lives there.
        import site
        site.main()
    import typer
    app = typer.Typer(add_completion=False, no_args_is_help=True, help=table.help,
                      context_settings={"help_option_names": ["-h", "--help"]})

    def opt_param(o):
        ann = list[str] if o.kind is list else o.kind
        default = None if o.kind is list else o.initial()
        return inspect.Parameter(o.dest, inspect.Parameter.KEYWORD_ONLY, annotation=ann,
                                 default=typer.Option(... if o.required else default, *o.names, help=o.help))

    def callback(**kw):
        pass
    callback.__signature__ = inspect.Signature([opt_param(o) for o in table.global_opts])
    app.callback()(callback)
    for name, v in table.verbs.items():
        opts, args = table.split(name)
        params = []
        for x in args:
            params.append(inspect.Parameter(
                x.name, inspect.Parameter.KEYWORD_ONLY, annotation=list[str] if x.many else str,
                default=typer.Argument(... if x.required else None, metavar=x.name.upper(), help=x.help)))
        params += [opt_param(o) for o in opts]

        def cmd(**kw):
            raise typer.Exit(dispatch(argv))
        cmd.__signature__ = inspect.Signature(params)
        app.command(name, help=v.help or (v.func.__doc__ or "").strip())(cmd)
    try:
        app(argv, prog_name=table.prog, standalone_mode=True)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0
