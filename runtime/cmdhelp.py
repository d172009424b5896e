"""The human front end of a runtime.cmdtable Table: typer built from the
table, for --help and for a program called without a verb. Kept apart from
cmdtable, which every call loads, since only those requests need it."""
import sys

from runtime.cmdtable import opt_names, split_items


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

    def opt_param(o: tuple):
        _, dest, kind, default, help, required = o
        ann = list[str] if kind is list else kind
        default = None if kind is list else (default() if callable(default) else default)
        return inspect.Parameter(dest, inspect.Parameter.KEYWORD_ONLY, annotation=ann,
                                 default=typer.Option(... if required else default, *opt_names(o), help=help))

    def callback(**kw):
        pass
    callback.__signature__ = inspect.Signature([opt_param(o) for o in table.global_opts])
    app.callback()(callback)
    for name, (func, items, help, _) in table.verbs.items():
        opts, args = split_items(items)
        params = []
        for arg, arg_help, required, many in args:
            ann = list[str] if many else str
            params.append(inspect.Parameter(
                arg, inspect.Parameter.KEYWORD_ONLY, annotation=ann,
                default=typer.Argument(... if required else None, metavar=arg.upper(), help=arg_help)))
        params += [opt_param(o) for o in opts]

        def cmd(**kw):
            raise typer.Exit(dispatch(argv))
        cmd.__signature__ = inspect.Signature(params)
        app.command(name, help=help or (func.__doc__ or "").strip())(cmd)
    try:
        app(argv, prog_name=table.prog, standalone_mode=True)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0
