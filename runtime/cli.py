"""pyrunc's command line, compatible with runc's.

Each verb is declared once, in VERBS: its options, arguments and the one
library call it maps to. Two front ends read that table:

* a small parser for the calls tools make (containerd runs us 4-5 times
  per container, so a call must not pay for importing typer, ~35 ms);
* typer, built from the same table, for people: `--help` and no-argument
  calls go there.

main() is the single place that maps exceptions to exit codes and to
runc-style log lines.
"""
import os
import sys

VERSION = "0.1.0"
SPEC_VERSION = "1.3.0"


class Opt:
    def __init__(self, names: str, dest: str, kind: type = str, default=None, help: str = ""):
        self.names = tuple(n.strip() for n in names.split(","))
        self.dest = dest
        self.kind = kind          # str, int, bool or list (repeatable str)
        self.default = default if default is not None or kind is not list else None
        self.help = help


class Verb:
    def __init__(self, name, func, opts, args, rest, help):
        self.name, self.func, self.opts, self.args, self.rest, self.help = name, func, opts, args, rest, help


GLOBAL_OPTS = [
    Opt("--root", "root", str, "/run/pyrunc", "root directory for storage of container state"),
    Opt("--log", "log", str, None, "log file (default: stderr)"),
    Opt("--log-format", "log_format", str, "text", "log format: text or json"),
    Opt("--debug", "debug", bool, False, "enable debug logging"),
    Opt("--systemd-cgroup", "systemd_cgroup", bool, False, "manage cgroups through systemd"),
    Opt("--rootless", "rootless", str, "auto", "ignored, for compatibility with runc"),
    Opt("--criu", "criu", str, "criu", "ignored, for compatibility with runc"),
]
VERBS: dict[str, Verb] = {}


def verb(name: str, *opts: Opt, args: tuple[str, ...] = ("id",), rest: str | None = None, help: str = ""):
    """Register a verb. `args` are required positionals; `rest` collects the remainder."""
    def deco(func):
        VERBS[name] = Verb(name, func, list(opts), args, rest, help or (func.__doc__ or "").strip())
        return func
    return deco


_CREATE_OPTS = (
    Opt("--bundle,-b", "bundle", str, ".", "path to the bundle directory"),
    Opt("--console-socket", "console_socket", str, None, "unix socket that receives the pty master"),
    Opt("--pid-file", "pid_file", str, None, "file to write the container's init pid to"),
    Opt("--no-pivot", "no_pivot", bool, False, "use MS_MOVE and chroot instead of pivot_root"),
    Opt("--no-new-keyring", "no_new_keyring", bool, False, "keep the caller's session keyring"),
    Opt("--preserve-fds", "preserve_fds", int, 0, "pass N extra fds (3..3+N-1) to the container"),
)


def _options(g, a):
    from runtime.container import Options
    return Options(g["root"], a["id"], a["bundle"], a["pid_file"], a["console_socket"], a["no_pivot"],
                   a["no_new_keyring"], a["preserve_fds"], g["systemd_cgroup"])


@verb("create", *_CREATE_OPTS, help="Create a container, stopped before its user process runs.")
def _create(g, a):
    from runtime import container
    container.create(_options(g, a))


@verb("start", help="Start a created container.")
def _start(g, a):
    from runtime import container
    container.start(g["root"], a["id"])


@verb("run", *_CREATE_OPTS, Opt("--detach,-d", "detach", bool, False, "detach from the container"),
      Opt("--keep", "keep", bool, False, "ignored for compatibility"),
      help="Create and start a container; in the foreground, exit with its status.")
def _run(g, a):
    from runtime import container
    return container.run(_options(g, a), detach=a["detach"])


@verb("state", help="Print the state of a container as JSON.")
def _state(g, a):
    from runtime import fastjson as json
    from runtime import container
    print(json.dumps(container.state(g["root"], a["id"]), indent=2))


@verb("kill", Opt("--all,-a", "all", bool, False, "send the signal to every process of the container"),
      args=("id",), rest="signal", help="Send a signal (default SIGTERM) to the container's init.")
def _kill(g, a):
    from runtime import container
    sig = a["signal"][0] if a["signal"] else "SIGTERM"
    if len(a["signal"]) > 1:
        raise _usage("kill: too many arguments")
    container.kill(g["root"], a["id"], sig, a["all"])


@verb("delete", Opt("--force,-f", "force", bool, False, "kill the container if it runs; succeed if it is gone"),
      help="Delete a container and everything it holds.")
def _delete(g, a):
    from runtime import container
    container.delete(g["root"], a["id"], a["force"])


@verb("list", Opt("--format,-f", "format", str, "table", "table or json"),
      Opt("--quiet,-q", "quiet", bool, False, "print only the ids"), args=(),
      help="List containers.")
def _list(g, a):
    from runtime import container
    items = container.list_containers(g["root"])
    if a["quiet"]:
        for c in items:
            print(c["id"])
    elif a["format"] == "json":
        from runtime import fastjson as json
        print(json.dumps(items))
    elif a["format"] == "table":
        rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
        rows += [(c["id"], str(c["pid"]), c["status"], c["bundle"], c["created"], c["owner"] or "root")
                 for c in items]
        widths = [max(len(r[i]) for r in rows) for i in range(6)]
        for r in rows:
            print("   ".join(v.ljust(widths[i]) for i, v in enumerate(r)).rstrip())
    else:
        raise _usage(f"list: --format: unknown format {a['format']!r}")


@verb("spec", Opt("--bundle,-b", "bundle", str, ".", "directory to write config.json in"),
      Opt("--rootless", "rootless", bool, False, "a config for an unprivileged user"), args=(),
      help="Write a default config.json.")
def _spec(g, a):
    import json
    from runtime.errors import RuntimeFailure
    from runtime.specgen import default_spec
    path = os.path.join(a["bundle"], "config.json")
    if os.path.exists(path):
        raise RuntimeFailure("File config.json exists. Remove it first.")
    if not os.path.isdir(a["bundle"]):
        raise RuntimeFailure(f"--bundle {a['bundle']}: no such directory")
    with open(path, "w") as f:
        json.dump(default_spec(rootless=a["rootless"]), f, indent="\t")


@verb("exec",
      Opt("--process,-p", "process", str, None, "path to a process.json"),
      Opt("--detach,-d", "detach", bool, False, "detach from the process"),
      Opt("--pid-file", "pid_file", str, None, "file to write the process's pid to"),
      Opt("--console-socket", "console_socket", str, None, "unix socket that receives the pty master"),
      Opt("--tty,-t", "tty", bool, False, "allocate a pseudo-terminal"),
      Opt("--cwd", "cwd", str, None, "working directory in the container"),
      Opt("--env,-e", "env", list, None, "set an environment variable (repeatable)"),
      Opt("--user,-u", "user", str, None, "UID[:GID]"),
      Opt("--additional-gids,-g", "additional_gids", list, None, "additional group ids (repeatable)"),
      Opt("--cap,-c", "cap", list, None, "add a capability (repeatable)"),
      Opt("--no-new-privs", "no_new_privs", bool, False, "set no_new_privs"),
      Opt("--preserve-fds", "preserve_fds", int, 0, "pass N extra fds to the process"),
      Opt("--ignore-paused", "ignore_paused", bool, False, "exec even if the container is paused"),
      Opt("--apparmor", "apparmor", str, None, "AppArmor profile (no AppArmor on this host: ignored)"),
      Opt("--process-label", "process_label", str, None, "SELinux label (ignored without SELinux)"),
      rest="command", help="Run a process in a running container.")
def _exec(g, a):
    from runtime.execproc import ExecOptions, exec_process
    o = ExecOptions(process=a["process"], args=a["command"], detach=a["detach"], pid_file=a["pid_file"],
                    console_socket=a["console_socket"], tty=a["tty"], cwd=a["cwd"], env=a["env"],
                    user=a["user"], additional_gids=a["additional_gids"], caps=a["cap"],
                    no_new_privs=a["no_new_privs"], preserve_fds=a["preserve_fds"],
                    ignore_paused=a["ignore_paused"])
    return exec_process(g["root"], a["id"], o)


@verb("ps", Opt("--format,-f", "format", str, "table", "table or json"), rest="ps_args",
      help="List the processes of a container.")
def _ps(g, a):
    from runtime import manage
    if a["format"] == "json":
        from runtime import fastjson as json
        print(json.dumps(manage.pids(g["root"], a["id"])))
    elif a["format"] == "table":
        print(manage.ps_table(g["root"], a["id"], a["ps_args"]))
    else:
        raise _usage(f"ps: --format: unknown format {a['format']!r}")


@verb("pause", help="Freeze every process of a container.")
def _pause(g, a):
    from runtime import manage
    manage.pause(g["root"], a["id"])


@verb("resume", help="Thaw a paused container.")
def _resume(g, a):
    from runtime import manage
    manage.resume(g["root"], a["id"])


_UPDATE_FLAG_NAMES = ("blkio-weight", "cpu-period", "cpu-quota", "cpu-rt-period", "cpu-rt-runtime",
                      "cpu-share", "cpuset-cpus", "cpuset-mems", "memory", "memory-reservation",
                      "memory-swap", "kernel-memory", "kernel-memory-tcp", "pids-limit")


@verb("update", Opt("--resources,-r", "resources", str, None, "LinuxResources JSON file, or - for stdin"),
      *[Opt("--" + n, n.replace("-", "_"), str, None, f"new {n} value") for n in _UPDATE_FLAG_NAMES],
      Opt("--l3-cache-schema", "l3_cache_schema", str, None, "Intel RDT (not supported)"),
      Opt("--mem-bw-schema", "mem_bw_schema", str, None, "Intel RDT (not supported)"),
      help="Change a running container's resource limits.")
def _update(g, a):
    from runtime import log, manage
    from runtime.errors import RuntimeFailure
    if a["l3_cache_schema"] or a["mem_bw_schema"]:
        raise RuntimeFailure("update: Intel RDT is not supported on this host")
    for w in manage.update(g["root"], a["id"], a["resources"], {n: a[n.replace("-", "_")] for n in _UPDATE_FLAG_NAMES}):
        log.warning(w)


@verb("events", Opt("--stats", "stats", bool, False, "print stats once and exit"),
      Opt("--interval", "interval", str, "5s", "stats interval (e.g. 5s, 500ms)"),
      help="Stream stats and OOM events of a container as JSON.")
def _events(g, a):
    from runtime import manage
    iv = a["interval"].strip()
    try:
        secs = float(iv[:-2]) / 1000 if iv.endswith("ms") else float(iv.rstrip("s"))
    except ValueError:
        raise _usage(f"events: --interval: invalid duration {iv!r}") from None
    if secs <= 0:
        raise _usage("events: --interval: must be positive")
    manage.events(g["root"], a["id"], secs, a["stats"])


@verb("features", args=(), help="Print the features this runtime supports (runtime-spec features.md).")
def _features(g, a):
    from runtime import fastjson as json
    from runtime import manage
    print(json.dumps(manage.features(), indent=2))


@verb("checkpoint", rest="_", help="Not supported (no CRIU integration).")
def _checkpoint(g, a):
    from runtime.errors import RuntimeFailure
    raise RuntimeFailure("checkpoint is not supported by pyrunc")


@verb("restore", rest="_", help="Not supported (no CRIU integration).")
def _restore(g, a):
    from runtime.errors import RuntimeFailure
    raise RuntimeFailure("restore is not supported by pyrunc")


class UsageError(Exception):
    pass


def _usage(msg: str) -> UsageError:
    return UsageError(msg)


def _opt_index(opts: list[Opt]) -> dict[str, Opt]:
    idx = {}
    for o in opts:
        for n in o.names:
            idx[n] = o
            if n.startswith("--"):
                idx[n[1:]] = o  # Go's flag package also takes -name
    return idx


def _take(opts_idx, argv, i, values) -> int:
    """Parse the option at argv[i] into values; return the next index."""
    arg = argv[i]
    name, eq, inline = arg.partition("=")
    o = opts_idx.get(name)
    if o is None:
        raise _usage(f"flag provided but not defined: {name}")
    if o.kind is bool:
        values[o.dest] = inline.lower() not in ("false", "0") if eq else True
        return i + 1
    if eq:
        val = inline
        i += 1
    else:
        if i + 1 >= len(argv):
            raise _usage(f"flag needs an argument: {name}")
        val = argv[i + 1]
        i += 2
    if o.kind is int:
        try:
            val = int(val)
        except ValueError:
            raise _usage(f"invalid value {val!r} for flag {name}") from None
    if o.kind is list:
        values.setdefault(o.dest, []).append(val)
    else:
        values[o.dest] = val
    return i


def parse(argv: list[str]):
    """Parse runc-style argv into (globals, verb, verb args). Raises UsageError.
    Returns verb None when typer should handle the call (help, no verb)."""
    gidx = _opt_index(GLOBAL_OPTS)
    g = {o.dest: o.default for o in GLOBAL_OPTS}
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        if argv[i] in ("--help", "-h", "--version", "-v"):
            return g, argv[i], None
        i = _take(gidx, argv, i, g)
    if i >= len(argv):
        return g, None, None
    v = VERBS.get(argv[i])
    if v is None:
        raise _usage(f"No help topic for '{argv[i]}'")
    i += 1
    idx = _opt_index(v.opts)
    a = {o.dest: (o.default if o.kind is not list else []) for o in v.opts}
    pos = []
    while i < len(argv):
        arg = argv[i]
        if arg in ("--help", "-h"):
            return g, "--help", None
        if arg == "--":
            pos.extend(argv[i + 1:])
            break
        if arg.startswith("-") and len(arg) > 1 and not (v.rest and len(pos) >= len(v.args)):
            i = _take(idx, argv, i, a)
            continue
        pos.append(arg)
        i += 1
        if v.rest and len(pos) >= len(v.args):
            # Everything after the positionals belongs to `rest` (exec's command).
            pos.extend(argv[i:])
            break
    if len(pos) < len(v.args):
        raise _usage(f"{v.name}: \"{v.name}\" requires {len(v.args)} argument(s): {' '.join(x.upper() for x in v.args)}")
    if len(pos) > len(v.args) and not v.rest:
        raise _usage(f"{v.name}: unexpected argument {pos[len(v.args)]!r}")
    for name, val in zip(v.args, pos):
        a[name] = val
    if v.rest:
        a[v.rest] = pos[len(v.args):]
    return g, v, a


def _version() -> None:
    commit = "unknown"
    try:
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        with open(os.path.join(here, ".git", "HEAD")) as f:
            head = f.read().strip()
        if head.startswith("ref: "):
            with open(os.path.join(here, ".git", head[5:])) as f:
                commit = f.read().strip()[:12]
        else:
            commit = head[:12]
    except OSError:
        pass
    print(f"pyrunc version {VERSION}\ncommit: {commit}\nspec: {SPEC_VERSION}")


def _typer_main(argv: list[str]) -> int:
    """The people's front end: typer built from VERBS (help, usage)."""
    import inspect
    if sys.flags.no_site:
        # The fast launcher skipped site-packages; typer lives there.
        import site
        site.main()
    import typer
    app = typer.Typer(add_completion=False, no_args_is_help=True,
                      help="pyrunc: an OCI runtime compatible with runc's command line.",
                      context_settings={"help_option_names": ["-h", "--help"]})

    def callback(**kw):
        pass
    gparams = [inspect.Parameter(o.dest, inspect.Parameter.KEYWORD_ONLY,
                                 default=typer.Option(o.default, *o.names, help=o.help), annotation=o.kind)
               for o in GLOBAL_OPTS]
    callback.__signature__ = inspect.Signature(gparams)
    app.callback()(callback)
    for v in VERBS.values():
        params = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=typer.Argument(..., metavar=n.upper()),
                                    annotation=str) for n in v.args]
        if v.rest:
            params.append(inspect.Parameter(v.rest, inspect.Parameter.KEYWORD_ONLY,
                                            default=typer.Argument(None), annotation=list[str]))
        for o in v.opts:
            ann = list[str] if o.kind is list else o.kind
            params.append(inspect.Parameter(o.dest, inspect.Parameter.KEYWORD_ONLY,
                                            default=typer.Option(o.default, *o.names, help=o.help), annotation=ann))

        def cmd(**kw):
            # typer only shows help here; real calls go through the fast parser.
            raise typer.Exit(_dispatch(sys.argv[1:]))
        cmd.__signature__ = inspect.Signature(params)
        app.command(v.name, help=v.help)(cmd)
    try:
        app(argv, prog_name="pyrunc", standalone_mode=True)
    except SystemExit as e:
        return e.code or 0
    return 0


def _dispatch(argv: list[str]) -> int:
    from runtime import log
    try:
        g, v, a = parse(argv)
    except UsageError as e:
        log.error(str(e))
        return 1
    if v in ("--version", "-v"):
        _version()
        return 0
    if v is None or v == "--help":
        return _typer_main(argv)
    if g["root"] == "/run/pyrunc" and "--root" not in argv and os.geteuid() != 0:
        # Rootless: state goes where the user can write, as runc does.
        xdg = os.environ.get("XDG_RUNTIME_DIR")
        g["root"] = os.path.join(xdg, "pyrunc") if xdg else f"/tmp/pyrunc-{os.geteuid()}"
    try:
        log.configure(g["log"], g["log_format"], g["debug"])
    except ValueError as e:
        sys.stderr.write(f"{e}\n")
        return 1
    return _call(v, g, a)


def _call(v: Verb, g: dict, a: dict) -> int:
    from runtime import log
    from runtime.errors import RuntimeFailure
    try:
        rc = v.func(g, a)
        return rc if isinstance(rc, int) else 0
    except RuntimeFailure as e:
        log.error(str(e))
        return e.exit_code
    except UsageError as e:
        log.error(str(e))
        return 1
    except OSError as e:
        from runtime.init import describe
        log.error(describe(e))
        return 1
    except ValueError as e:  # schema errors and bad values name their field
        log.error(str(e))
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 - last line of defence: one line, not a traceback
        if g.get("debug"):
            import traceback
            traceback.print_exc()
        log.error(f"internal error: {type(e).__name__}: {e}")
        return 1


def main() -> None:
    """Run one verb and exit. The process ends with os._exit once stdout and
    stderr are flushed: nothing of ours needs the interpreter's teardown
    (the log writes through its own fds), and it costs every call ~1 ms."""
    code = _dispatch(sys.argv[1:])
    try:
        sys.stdout.flush()
    except OSError:
        code = code or 1
    try:
        sys.stderr.flush()
    except OSError:
        pass
    os._exit(code if isinstance(code, int) else 1)
