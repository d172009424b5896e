"""pyrunc's command line, compatible with runc's.

Each verb is declared once, in the table T (runtime.cmdtable, shared with
pyimg): its options, arguments and the one library call it maps to. Real
calls go through the table's small parser, in runc's (Go flag) style;
`--help` and calls without a verb get typer built from the same table.

main() is the single place that maps exceptions to exit codes and to
runc-style log lines.
"""
from runtime import _os as os  # os.py costs ~1.8 ms per call: runtime._os
import sys

from runtime.cmdtable import Arg, Opt, Table, UsageError, finish, short_lived, stays

VERSION = "0.1.0"
SPEC_VERSION = "1.3.0"


GLOBAL_OPTS = [
    Opt("--root", "root", str, "/run/pyrunc", "root directory for storage of container state"),
    Opt("--log", "log", str, None, "log file (default: stderr)"),
    Opt("--log-format", "log_format", str, "text", "log format: text or json"),
    Opt("--debug", "debug", bool, False, "enable debug logging"),
    Opt("--systemd-cgroup", "systemd_cgroup", bool, False, "manage cgroups through systemd"),
    Opt("--rootless", "rootless", str, "auto", "ignored, for compatibility with runc"),
    Opt("--criu", "criu", str, "criu", "ignored, for compatibility with runc"),
]
T = Table("pyrunc", "pyrunc: an OCI runtime compatible with runc's command line.", GLOBAL_OPTS, style="go")
VERBS = T.verbs


def verb(name: str, *opts: tuple, args: tuple[str, ...] = ("id",), rest: str | None = None, help: str = ""):
    """Register a verb. `args` are required positionals; `rest` collects the
    remainder, options included (exec's command, kill's signal)."""
    items = [*opts]
    for n in args:
        items.append(Arg(n))
    if rest:
        items.append(Arg(rest, required=False, many=True))
    return T.verb(name, *items, help=help, raw_rest=bool(rest))


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
    from runtime import lifecycle
    lifecycle.start(g["root"], a["id"])


@verb("run", *_CREATE_OPTS, Opt("--detach,-d", "detach", bool, False, "detach from the container"),
      Opt("--keep", "keep", bool, False, "ignored for compatibility"),
      help="Create and start a container; in the foreground, exit with its status.")
def _run(g, a):
    from runtime import container
    if not a["detach"]:
        stays()
    return container.run(_options(g, a), detach=a["detach"])


@verb("state", help="Print the state of a container as JSON.")
def _state(g, a):
    from runtime import fastjson as json
    from runtime import lifecycle
    print(json.dumps(lifecycle.state(g["root"], a["id"]), indent=2))


@verb("kill", Opt("--all,-a", "all", bool, False, "send the signal to every process of the container"),
      args=("id",), rest="signal", help="Send a signal (default SIGTERM) to the container's init.")
def _kill(g, a):
    from runtime import lifecycle
    sig = a["signal"][0] if a["signal"] else "SIGTERM"
    if len(a["signal"]) > 1:
        raise _usage("kill: too many arguments")
    lifecycle.kill(g["root"], a["id"], sig, a["all"])


@verb("delete", Opt("--force,-f", "force", bool, False, "kill the container if it runs; succeed if it is gone"),
      help="Delete a container and everything it holds.")
def _delete(g, a):
    from runtime import lifecycle
    lifecycle.delete(g["root"], a["id"], a["force"])


@verb("list", Opt("--format,-f", "format", str, "table", "table or json"),
      Opt("--quiet,-q", "quiet", bool, False, "print only the ids"), args=(),
      help="List containers.")
def _list(g, a):
    from runtime import lifecycle
    items = lifecycle.list_containers(g["root"])
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
    if not a["detach"]:
        stays()
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
    if not a["stats"]:
        stays()
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


def _usage(msg: str) -> UsageError:
    return UsageError(msg)


parse = T.parse


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


def _usage_error(msg: str) -> int:
    from runtime import log
    log.error(msg)
    return 1


def _dispatch(argv: list[str]) -> int:
    from runtime import log
    routed = T.route(argv, _dispatch, _version, _usage_error)
    if isinstance(routed, int):
        return routed
    g, v, a = routed
    if g["root"] == "/run/pyrunc" and "--root" not in argv and os.geteuid() != 0:
        # Rootless: state goes where the user can write, as runc does.
        import os as real_os  # rootless only: the environment is read through os
        xdg = real_os.environ.get("XDG_RUNTIME_DIR")
        g["root"] = os.path.join(xdg, "pyrunc") if xdg else f"/tmp/pyrunc-{os.geteuid()}"
    try:
        log.configure(g["log"], g["log_format"], g["debug"])
    except ValueError as e:
        sys.stderr.write(f"{e}\n")
        return 1
    return _call(v, g, a)


def _call(v: str, g: dict, a: dict) -> int:
    from runtime import log
    from runtime.errors import RuntimeFailure
    try:
        rc = T.func(v)(g, a)
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
    """Run one verb and exit (cmdtable.finish: flush, then os._exit)."""
    short_lived()  # run and exec in the foreground and events call stays()
    finish(_dispatch(sys.argv[1:]))
