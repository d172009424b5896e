"""pyimg command line.

Every verb is declared once, in the table T (runtime.toolkit.cmdtable): its
options, positionals and the function it maps to. Real calls go through the
table's small parser (pyimg is a fresh interpreter per call, and typer
is slow to import); --help, and pyimg without a verb, get typer
built from the same table. The bundle verbs are registered from
imagetool.cli_bundle, so the two halves stay in their files.

Global options (before the verb): --root DIR (default /var/lib/pyimg, or
$PYIMG_ROOT) and --config FILE (default /etc/pyimg/config.json, or
$PYIMG_CONFIG). A verb is called as func(g, a), as pyrunc's are: the
global and the verb's own values, as dicts.

Errors: a verb calls its library function and lets what it raises
propagate; _call is the one place that maps an exception to one line on
stderr, "pyimg: error: <verb> <subject>: <what failed>", and an exit
status (imagetool.errors): 1, 2 for a usage error, 125 for anything of
pyimg's own in `run` (docker's: every other status is the container's),
130 for Ctrl-C, and INTERNAL for an exception nobody meant (a bug; the
traceback with PYIMG_DEBUG=1). Heavy modules are imported inside the verbs.
"""
import os
import sys

from runtime.toolkit.cmdtable import Arg, Opt, Table, UsageError, finish, short_lived

T = Table("pyimg", "Pull images and unpack them into OCI bundles.", [
    Opt("--root", "root", str, lambda: os.environ.get("PYIMG_ROOT", "/var/lib/pyimg"),
        "Content store (an OCI image layout)."),
    Opt("--config", "config", str, None, "Settings file (default /etc/pyimg/config.json)."),
])


def _config(g: dict):
    from imagetool.config import Config
    return Config.load(g["config"])


from imagetool import cli_bundle, cli_engine  # noqa: E402  (register the bundle and container verbs)

cli_bundle.register(T)
cli_engine.register(T)


@T.verb("pull", Arg("ref", "Image reference."),
        Opt("--platform", "platform", str, None, "os/arch[/variant]"),
        Opt("-q,--quiet", "quiet", bool, False, "Print only the reference."),
        Opt("--max-layer-size", "max_layer_size", str, None,
            "Refuse an image with a layer over SIZE (bytes, or 500MB, 2GiB...); "
            "overrides max-layer-size."),
        Opt("--download-progress-timeout", "progress_timeout", str, None,
            "Seconds a download may make no progress before it is retried (0: no deadline); "
            "overrides download-progress-timeout."))
def pull(g, a):
    """Pull an image from a registry into the store."""
    import signal

    from imagetool.config import parse_seconds, parse_size
    from imagetool.errors import ConfigError, Interrupted
    from imagetool.pull import pull_image
    bounds = {}
    for flag, value, parse, key in (
            ("--max-layer-size", a["max_layer_size"], parse_size, "max_layer_size"),
            ("--download-progress-timeout", a["progress_timeout"], parse_seconds,
             "download_progress_timeout")):
        if value is not None:
            try:
                bounds[key] = parse(value)
            except ValueError as e:  # the options override settings of the same names
                raise ConfigError(f"{flag} {value!r}: {e}") from None

    def _stop(signum, _frame):
        # unwinds like any error, so partial downloads leave ingest/
        raise Interrupted("interrupted; the store was left as it was")
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    pull_image(a["ref"], root=g["root"], config_path=g["config"], platform=a["platform"],
               quiet=a["quiet"], **bounds)


def _ago(created: str) -> str:
    import datetime as dt
    if not created:
        return "N/A"
    try:
        t = dt.datetime.fromisoformat(created.replace("Z", "+00:00")[:26] + (
            "+00:00" if created.endswith("Z") and len(created) > 26 else ""))
    except ValueError:
        try:
            t = dt.datetime.strptime(created[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.timezone.utc)
        except ValueError:
            return created
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    secs = (dt.datetime.now(dt.timezone.utc) - t).total_seconds()
    for unit, n in (("year", 365 * 86400), ("month", 30 * 86400), ("week", 7 * 86400),
                    ("day", 86400), ("hour", 3600), ("minute", 60)):
        if secs >= 2 * n:
            return f"{int(secs // n)} {unit}s ago"
        if secs >= n:
            return f"{'An' if unit == 'hour' else 'A'} {unit} ago"
    return "Less than a second ago" if secs < 1 else f"{int(secs)} seconds ago"


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.3g}{unit}" if unit != "B" else f"{n}B"
        n /= 1000.0


@T.verb("images", Opt("--format", "fmt", str, "table", "table or json"),
        Opt("--no-trunc", "no_trunc", bool, False, "Full image ids."),
        Opt("-q,--quiet", "quiet", bool, False, "Only image ids."))
def images(g, a):
    """List stored images (REPOSITORY TAG IMAGE ID CREATED SIZE)."""
    from imagetool.errors import UsageError
    from imagetool.store import Store
    fmt = a["fmt"]
    if fmt not in ("table", "json"):
        raise UsageError(f"unknown --format {fmt!r} (use table or json)")
    rows = Store(g["root"]).images()
    if fmt == "json":
        from runtime.toolkit import fastjson as json
        print(json.dumps(rows, indent=2))
        return

    def ident(r):
        i = r["id"] or r["digest"]
        return i if a["no_trunc"] else i[7:19]
    if a["quiet"]:
        seen = set()
        for r in rows:
            i = ident(r)
            if i not in seen:
                seen.add(i)
                print(i)
        return
    table = [("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE")]
    for r in sorted(rows, key=lambda r: (r["repository"], r["tag"])):
        table.append((r["repository"], r["tag"], ident(r), _ago(r["created"]), _size(r["size"])))
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    for row in table:
        print("   ".join(c.ljust(widths[i]) for i, c in enumerate(row)).rstrip())


def image_inspect(root: str, ref: str, platform: str | None = None) -> dict:
    """A stored image as `pyimg inspect` shows it: digests, platform, config, layers."""
    from imagetool.errors import StoreError
    from imagetool.store import Store
    store = Store(root)
    desc = store.descriptor(ref)
    digest, m = store.resolve(ref, platform)
    try:
        cfg = store.read_json(m["config"]["digest"])
    except (KeyError, TypeError):
        raise StoreError(f"{ref}: malformed image manifest {digest}") from None
    ann = desc.get("annotations") or {}
    plat = {k: cfg[k] for k in ("os", "architecture", "variant") if cfg.get(k)}
    return {
        "Reference": ann.get("org.opencontainers.image.ref.name", ref),
        "Id": m["config"]["digest"],
        "ManifestDigest": digest,
        "RepoDigest": ann.get("io.pyimg.repo.digest", digest),
        "MediaType": m.get("mediaType") or desc.get("mediaType"),
        "Platform": plat,
        "Created": cfg.get("created"),
        "Size": sum(l["size"] for l in m.get("layers", [])) + m["config"]["size"],
        "Layers": [{"digest": l["digest"], "size": l["size"], "mediaType": l.get("mediaType")}
                   for l in m.get("layers", [])],
        "DiffIDs": (cfg.get("rootfs") or {}).get("diff_ids", []),
        "Config": cfg.get("config") or {},
        "Manifest": m,
    }


@T.verb("tag", Arg("src", "Stored image."), Arg("dst", "New reference."))
def tag(g, a):
    """Give a stored image another reference."""
    from imagetool.store import Store
    Store(g["root"]).tag(a["src"], a["dst"])


@T.verb("rmi", Arg("refs", "Image references or ids.", many=True),
        Opt("--no-prune", "no_prune", bool, False, "Keep unreferenced blobs."))
def rmi(g, a):
    """Remove references; then delete blobs nothing references (unless --no-prune)."""
    from imagetool.errors import StoreError
    from imagetool.store import Store
    store = Store(g["root"])
    failed = []
    for ref in a["refs"]:
        # like docker rmi: one reference that cannot be removed does not stop the others
        try:
            names = store.remove(ref)
        except StoreError as e:
            failed.append(e)
            continue
        for name in names:
            print(f"Untagged: {name}")
    if not a["no_prune"]:
        n, freed = _gc(store)
        if n:
            print(f"Deleted: {n} blobs, {_size(freed)}")
    if failed:  # one line for all of them
        raise failed[0] if len(failed) == 1 else StoreError("; ".join(map(str, failed)))


@T.verb("gc")
def gc(g, a):
    """Delete blobs no stored reference reaches."""
    from imagetool.store import Store
    n, freed = _gc(Store(g["root"]))
    print(f"Deleted {n} blobs, reclaimed {_size(freed)}")


def _gc(store) -> tuple[int, int]:
    """Collect blobs and unpacked layers, keeping whatever a bundle still uses."""
    from imagetool import bundle
    n, freed = store.gc(keep=bundle.manifests_in_use(store.root))
    bundle.prune_layer_cache(store.root)
    return n, freed


@T.verb("push", Arg("ref", "Stored image to push."))
def push(g, a):
    """Push a stored image to its registry."""
    from imagetool.push import push_image
    push_image(a["ref"], root=g["root"], config_path=g["config"])


@T.verb("login", Arg("registry", "Registry (default docker.io).", required=False),
        Opt("-u,--username", "username", str, None, "User name.", required=True),
        Opt("--password-stdin", "password_stdin", bool, False, "Read the password from stdin."),
        Opt("-p,--password", "password", str, None, "Password."))
def login(g, a):
    """Check credentials against a registry and store them (Docker's config.json)."""
    from imagetool.auth_cmds import login as do_login
    from imagetool.errors import UsageError
    password = a["password"]
    if a["password_stdin"]:
        password = sys.stdin.read().rstrip("\n")
    if password is None:
        raise UsageError("give the password with --password-stdin")
    print(do_login(a["registry"] or "docker.io", a["username"], password, _config(g)))


@T.verb("logout", Arg("registry", "Registry (default docker.io).", required=False))
def logout(g, a):
    """Forget stored credentials for a registry."""
    from imagetool.auth_cmds import logout as do_logout
    print(do_logout(a["registry"] or "docker.io", _config(g)))


@T.verb("search", Arg("term", "What to look for."),
        Opt("--registry", "registry", str, None, "HOST[:PORT]"),
        Opt("--limit", "limit", int, 25, "Most results to show."))
def search(g, a):
    """Search Docker Hub, or another registry's catalog."""
    from imagetool.auth_cmds import search as do_search
    for ln in do_search(a["term"], a["registry"] or "docker.io", _config(g), a["limit"]):
        print(ln)


@T.verb("save", Arg("refs", "Images to write.", many=True),
        Opt("-o,--output", "output", str, None, "Archive to write.", required=True),
        Opt("--format", "fmt", str, "docker-archive", "docker-archive or oci-archive"))
def save(g, a):
    """Write stored images to a tar archive."""
    from imagetool.archive import save as do_save
    do_save(g["root"], a["refs"], a["output"], a["fmt"])


@T.verb("load", Opt("-i,--input", "input", str, None, "Archive to read.", required=True))
def load(g, a):
    """Load images from a docker-archive or oci-archive tar."""
    from imagetool.archive import load as do_load
    for name in do_load(g["root"], a["input"]):
        print(f"Loaded image: {name}")


def _version() -> None:
    from runtime.version import VERSION
    print(f"pyimg version {VERSION}")


USAGE = 2       # the command line does not parse (and errors.UsageError)
INTERRUPTED = 130
INTERNAL = 70   # sysexits.h's EX_SOFTWARE: an exception pyimg did not mean, a bug
# A verb whose own failures all exit with one status: docker run's 125
# ("the engine failed"), so that every other status is the container's
# (a CommandError keeps its 126 or 127).
_FAILED = {"run": 125, "create": 125, "exec": 125, "start": 125}
# The container verbs speak docker's language: their messages name the
# container themselves, and a command line that does not parse exits 125.
ENGINE_VERBS = frozenset(("run", "create", "start", "stop", "restart", "kill", "pause", "unpause", "rm", "wait",
                          "ps", "logs", "top", "port", "stats", "exec", "cp", "rename", "container", "volume",
                          "network", "version", "info", "container-cleanup"))
# The positionals that name what a verb works on, for the start of its
# error line ("unpack busybox /tmp/bb: ..."); a verb that takes several
# references leaves it to the message, which names the one that failed.
# (Never a container's command, nor the options.)
_SUBJECT = {"pull": ("ref",), "push": ("ref",), "tag": ("src", "dst"), "login": ("registry",),
            "logout": ("registry",), "search": ("term",), "load": ("input",),
            "unpack": ("ref", "bundle"), "remount": ("bundle",), "run": ("ref",)}


def _context(v: str, a: dict) -> str | None:
    if v in ENGINE_VERBS:
        return None
    return " ".join([v] + [str(a[k]) for k in _SUBJECT.get(v, ()) if a.get(k)])


def _error(line: str) -> None:
    # one line, whatever a message quoted (a registry's answer, a helper's output)
    sys.stderr.write("pyimg: error: " + " ".join(line.splitlines()) + "\n")


def _usage_error(msg: str) -> int:
    _error(msg)
    return USAGE


def _engine_usage_error(msg: str) -> int:
    _error(msg)
    return 125  # docker's status for a command line it cannot parse


def _dispatch(argv: list[str]) -> int:
    verb, i = None, 0
    while i < len(argv):  # the first word that is not a global option nor its value
        if argv[i] in ("--root", "--config"):
            i += 2
        elif argv[i].startswith("-"):
            i += 1
        else:
            verb = argv[i]
            break
    routed = T.route(argv, _dispatch, _version, _engine_usage_error if verb in ENGINE_VERBS else _usage_error)
    if isinstance(routed, int):
        return routed
    g, v, a = routed
    return _call(v, g, a)


def _call(v: str, g: dict, a: dict) -> int:
    """Run verb v; the single place that turns what it raises into one
    line on stderr and an exit status (see the module docstring)."""
    from imagetool import errors
    ctx = _context(v, a)
    try:
        rc = T.func(v)(g, a)
        return rc if isinstance(rc, int) else 0
    except errors.CommandError as e:
        _error(str(e.within(ctx) if ctx else e))
        return e.status if v in _FAILED else e.exit_code
    except errors.PyimgError as e:
        _error(str(e.within(ctx) if ctx else e))
        if v in ENGINE_VERBS and isinstance(e, errors.UsageError):
            return 125
        return _FAILED.get(v, e.exit_code)
    except UsageError as e:  # the table's own, raised by a verb
        _error(f"{ctx}: {e}" if ctx else str(e))
        return _FAILED.get(v, 125 if v in ENGINE_VERBS else USAGE)
    except OSError as e:  # one its module did not translate: still what and where
        _error(f"{ctx}: {errors.os_message(e)}" if ctx else errors.os_message(e))
        return _FAILED.get(v, 1)
    except KeyboardInterrupt:
        _error("interrupted")
        return INTERRUPTED
    except Exception as e:  # noqa: BLE001 - last line of defence: one line, not a traceback
        if os.environ.get("PYIMG_DEBUG"):
            import traceback
            traceback.print_exc()
        _error(f"{ctx}: {errors.internal(e)}" if ctx else errors.internal(e))
        return _FAILED.get(v, INTERNAL)


def _dispatch_verb(g: dict, verb: str, argv: list[str]) -> int:
    """Run `verb` with its own arguments under the globals `g` (`pyimg container ls` is `pyimg ps`)."""
    gargs = ["--root", g["root"]] + (["--config", g["config"]] if g.get("config") else [])
    return _dispatch(gargs + [verb] + list(argv))


def main() -> None:
    """Entry point: one verb, then exit (cmdtable.finish: flush, then os._exit)."""
    short_lived()  # run in the foreground calls stays()
    finish(_dispatch(sys.argv[1:]))
