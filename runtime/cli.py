"""pyrunc's command line, compatible with runc's.

Each verb is declared once, in the table T (runtime.toolkit.cmdtable, shared with
pyimg): its options, arguments and the one library call it maps to. Real
calls go through the table's small parser, in runc's (Go flag) style; help
(`-h`, `--help`, `help [VERB]`, no verb) is runc's layout built from the
same table (runtime.cmdhelp).

main() is the single place that maps exceptions to exit codes and to
runc-style log lines.
"""
from runtime.toolkit import os_lite as os
import sys

from runtime.toolkit.cmdtable import Arg, Opt, Table, UsageError, finish, short_lived, stays

GLOBAL_OPTS = [
    Opt("--debug", "debug", bool, False, "write debug lines to the log"),
    Opt("--log", "log", str, None, "file to append log lines to (default: stderr)"),
    Opt("--log-format", "log_format", str, "text", "format of log lines: 'text' or 'json'"),
    Opt("--root", "root", str, "/run/pyrunc", "directory of the containers' state (best on a tmpfs)"),
    Opt("--criu", "criu", str, "criu", "accepted for compatibility (pyrunc has no checkpoint/restore)"),
    Opt("--systemd-cgroup", "systemd_cgroup", bool, False,
        "place cgroups through systemd (not implemented: an error when asked for)"),
    Opt("--rootless", "rootless", str, "auto", "accepted for compatibility ('true', 'false' or 'auto')"),
]
T = Table("pyrunc", """Open Container Initiative runtime

pyrunc runs containers from OCI bundles with the command line of runc:
a bundle is a directory holding a configuration, "config.json", and the
root filesystem it names. Each call does one thing to one container and
exits, so supervisors such as containerd drive it the way they drive runc.

To write a default configuration and run a container from a bundle:

    # pyrunc spec --bundle mybundle
    # pyrunc run --bundle mybundle <container-id>

The container id names the instance; it must be unique under --root.""", GLOBAL_OPTS, style="go")

_ID = "<container-id>"


def verb(name: str, *opts: Opt, args: tuple[str, ...] = ("id",), optional: tuple[str, ...] = (),
         rest: str | None = None, help: str = "", usage: str = _ID):
    """Register a verb. `args` are required positionals, `optional` ones
    that may follow; `rest` collects the remainder, options included
    (exec's command). `usage` is the positionals as the help shows them."""
    items = [*opts]
    for n in args:
        items.append(Arg(n))
    for n in optional:
        items.append(Arg(n, required=False))
    if rest:
        items.append(Arg(rest, required=False, many=True))
    return T.verb(name, *items, help=help, raw_rest=bool(rest), args_usage=usage if args or rest else "")


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


@verb("create", *_CREATE_OPTS, help="""create a container

Sets the container up from the bundle (namespaces, cgroups, mounts) and
leaves it waiting before its user process; `start` runs that process.""")
def _create(g, a):
    from runtime import container
    container.create(_options(g, a))


@verb("start", help="run the user process of a created container")
def _start(g, a):
    from runtime import lifecycle
    lifecycle.start(g["root"], a["id"])


@verb("run", *_CREATE_OPTS, Opt("--detach,-d", "detach", bool, False, "return once the container runs"),
      Opt("--keep", "keep", bool, False, "keep the container (stopped) after it exits; `delete` removes it"),
      Opt("--no-subreaper", "no_subreaper", bool, False,
          "accepted for compatibility (a foreground run reaps its container's init itself)"),
      help="""create and run a container

create and start in one call. In the foreground the call forwards signals
to the container, exits with its status (128+N when killed by signal N) and
then deletes it, unless --keep.""")
def _run(g, a):
    from runtime import container
    if not a["detach"]:
        stays()
    return container.run(_options(g, a), detach=a["detach"], keep=a["keep"])


@verb("state", help="print the state of a container (JSON)")
def _state(g, a):
    from runtime.toolkit import fastjson as json
    from runtime import lifecycle
    # (runc writes it without a final newline)
    sys.stdout.write(json.go_dumps(lifecycle.state(g["root"], a["id"]), indent="  "))


@verb("kill", Opt("--all,-a", "all", bool, False,
                  "signal every process in the container's cgroup (also once init is gone)"),
      optional=("signal",), usage=f"{_ID} [signal]",
      help="""send a signal (default: SIGTERM) to the container's init

The signal is a name (KILL, SIGKILL) or a number.""")
def _kill(g, a):
    from runtime import lifecycle
    lifecycle.kill(g["root"], a["id"], a["signal"] or "SIGTERM", a["all"])


@verb("delete", Opt("--force,-f", "force", bool, False, "kill the container if it runs; succeed if it is gone"),
      help="delete a container and everything it holds (cgroups, state)")
def _delete(g, a):
    from runtime import lifecycle
    lifecycle.delete(g["root"], a["id"], a["force"])


@verb("list", Opt("--format,-f", "format", str, "table", "'table' or 'json'"),
      Opt("--quiet,-q", "quiet", bool, False, "print only the ids"), args=(),
      help="list the containers under --root")
def _list(g, a):
    from runtime import lifecycle
    items = lifecycle.list_containers(g["root"])
    if a["quiet"]:
        for c in items:
            print(c["id"])
    elif a["format"] == "table":
        sys.stdout.write(_table([("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")] +
                                [(c["id"], str(c["pid"]), c["status"], c["bundle"], c["created"], c["owner"])
                                 for c in items]))
    elif a["format"] == "json":
        from runtime.toolkit import fastjson as json
        # runc prints a Go nil slice: null when there are no containers.
        print(json.go_dumps(items or None))
    else:
        from runtime.errors import RuntimeFailure
        raise RuntimeFailure("invalid format option")


def _table(rows: list[tuple]) -> str:
    """runc's list table (Go's tabwriter, minimum width 12, padding 3): every
    column but the last padded to the widest of its cells plus 3."""
    widths = [max(12, max(len(r[i]) for r in rows) + 3) for i in range(len(rows[0]) - 1)]
    return "".join("".join(v.ljust(w) for v, w in zip(r, widths)) + r[-1] + "\n" for r in rows)


@verb("spec", Opt("--bundle,-b", "bundle", str, ".", "directory to write config.json in"),
      Opt("--rootless", "rootless", bool, False, "a configuration an unprivileged user can run"), args=(),
      help="""write a default config.json

The configuration is the one `runc spec` writes: a shell in a new set of
namespaces, read-only root "rootfs", the usual /proc, /dev and /sys mounts.
Edit it before `run`; with --rootless it maps root in a user namespace to
the caller.""")
def _spec(g, a):
    from runtime.toolkit import fastjson as json
    from runtime.errors import RuntimeFailure
    from runtime.specgen import default_spec
    path = os.path.join(a["bundle"], "config.json")
    if os.path.exists(path):
        raise RuntimeFailure("File config.json exists. Remove it first.")
    if not os.path.isdir(a["bundle"]):
        raise RuntimeFailure(f"--bundle {a['bundle']}: no such directory")
    with open(path, "w") as f:
        f.write(json.go_dumps(default_spec(rootless=a["rootless"]), indent="\t"))


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
      Opt("--cgroup", "cgroup", list, None,
          "run in an existing sub-cgroup of the container's: PATH, or CONTROLLER[,CONTROLLER]:PATH (repeatable)"),
      rest="command", usage=f"{_ID} <command> [command options]  ||  -p process.json {_ID}",
      help="""run a process in a running container

The process inherits the container's process settings (from its
config.json) with the options given here; -p takes a whole process object
instead. The call exits with the process's status, or 255 when it could not
be started.""")
def _exec(g, a):
    from runtime.execproc import ExecOptions, exec_process
    o = ExecOptions(process=a["process"], args=a["command"], detach=a["detach"], pid_file=a["pid_file"],
                    console_socket=a["console_socket"], tty=a["tty"], cwd=a["cwd"], env=a["env"],
                    user=a["user"], additional_gids=a["additional_gids"], caps=a["cap"],
                    no_new_privs=a["no_new_privs"], preserve_fds=a["preserve_fds"],
                    ignore_paused=a["ignore_paused"], cgroup=a["cgroup"])
    if not a["detach"]:
        stays()
    from runtime.errors import RuntimeFailure
    try:
        return exec_process(g["root"], a["id"], o)
    except (RuntimeFailure, OSError, ValueError) as e:
        # runc: anything that keeps the process from running is exit 255
        from runtime.init import describe
        e = RuntimeFailure(f"exec failed: {describe(e)}")
        e.exit_code = 255
        raise e from None


@verb("ps", Opt("--format,-f", "format", str, "table", "'table' or 'json'"), rest="ps_args",
      usage=f"{_ID} [ps options]", help="list the processes of a container (ps options: as ps(1) takes them)")
def _ps(g, a):
    from runtime import manage
    if a["format"] == "json":
        from runtime.toolkit import fastjson as json
        print(json.go_dumps(manage.pids(g["root"], a["id"])))
    elif a["format"] == "table":
        print(manage.ps_table(g["root"], a["id"], a["ps_args"]))
    else:
        from runtime.errors import RuntimeFailure
        raise RuntimeFailure("invalid format option")


@verb("checkpoint",
      Opt("--image-path", "image_path", str, None, "path for saving criu image files"),
      Opt("--work-path", "work_path", str, None, "path for saving work files and logs"),
      Opt("--parent-path", "parent_path", str, None, "path for previous criu image files in pre-dump"),
      Opt("--leave-running", "leave_running", bool, False, "leave the process running after checkpointing"),
      Opt("--pre-dump", "pre_dump", bool, False, "dump the container's memory information only"),
      help="""checkpoint a running container (not implemented)

The arguments are checked as runc checks them; pyrunc has no CRIU support,
so a checkpoint itself fails with an error saying so.""")
def _checkpoint(g, a):
    from runtime import manage
    manage.checkpoint(g["root"], a["id"], a["image_path"], a["work_path"], a["parent_path"])


@verb("pause", help="freeze every process of a container")
def _pause(g, a):
    from runtime import manage
    manage.pause(g["root"], a["id"])


@verb("resume", help="thaw a paused container")
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
      help="""change the resource limits of a running container

--resources takes a linux.resources object (JSON) from a file, or from the
standard input with '-'; the other options set one value each.""")
def _update(g, a):
    from runtime import log, manage
    from runtime.errors import RuntimeFailure
    if a["l3_cache_schema"] or a["mem_bw_schema"]:
        raise RuntimeFailure("update: Intel RDT is not supported on this host")
    for w in manage.update(g["root"], a["id"], a["resources"], {n: a[n.replace("-", "_")] for n in _UPDATE_FLAG_NAMES}):
        log.warning(w)


@verb("events", Opt("--interval", "interval", str, "5s", "time between two stats events (e.g. 5s, 500ms)"),
      Opt("--stats", "stats", bool, False, "print the stats once and exit"),
      help="""print a container's events as JSON lines (stats, oom)

Until the container stops: its cgroup's statistics every --interval, and
an "oom" event each time a process in it is killed for memory.""")
def _events(g, a):
    from runtime import manage
    secs = parse_duration(a["interval"])
    if secs is None:
        raise UsageError(f'invalid value "{a["interval"]}" for flag -interval: parse error')
    if secs <= 0:
        from runtime.errors import RuntimeFailure
        raise RuntimeFailure("duration interval must be greater than 0")
    if not a["stats"]:
        stays()
    manage.events(g["root"], a["id"], secs, a["stats"])


_UNITS = (("ns", 1e-9), ("us", 1e-6), ("\u00b5s", 1e-6), ("\u03bcs", 1e-6), ("ms", 1e-3), ("s", 1.0),
          ("m", 60.0), ("h", 3600.0))


def parse_duration(text: str) -> float | None:
    """Go's time.ParseDuration, in seconds ("5s", "100ms", "1m30s", "-1s",
    "0"); None when `text` is not a duration."""
    s = text
    sign = -1.0 if s[:1] == "-" else 1.0
    s = s[1:] if s[:1] in "+-" else s
    if s == "0":
        return 0.0
    total = 0.0
    while s:
        n = 0
        while n < len(s) and (s[n].isdigit() or s[n] == "."):
            n += 1
        num, s = s[:n], s[n:]
        if num in ("", ".") or num.count(".") > 1:
            return None
        unit = next(((u, f) for u, f in _UNITS if s.startswith(u)), None)  # "ms" is tried before "m"
        if unit is None:
            return None
        total += float(num) * unit[1]
        s = s[len(unit[0]):]
    return sign * total if text.strip("+-") else None


@verb("features", args=(), help="""show the enabled features

What this runtime and host support, as runtime-spec's features document
(JSON).""")
def _features(g, a):
    from runtime.toolkit import fastjson as json
    from runtime import manage
    print(json.go_dumps(manage.features(), indent="    "))


@verb("restore", rest="_", help="not supported (pyrunc has no CRIU integration)")
def _restore(g, a):
    from runtime.errors import RuntimeFailure
    raise RuntimeFailure("restore is not supported by pyrunc")


parse = T.parse


def _version_text() -> str:
    from runtime import version
    return version.text()


T.version_text = _version_text


def _version() -> None:
    print(f"pyrunc version {_version_text()}")


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
