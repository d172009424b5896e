"""pyimg command line.

Every verb is declared once, in the table T (runtime.cmdtable): its
options, positionals and the function it maps to. Real calls go through the
table's small parser (pyimg is a fresh interpreter per call, and typer
costs ~40-60 ms to import); --help, and pyimg without a verb, get typer
built from the same table. The bundle verbs are registered from
imagetool.cli_bundle, so the two halves stay in their files.

Global options (before the verb): --root DIR (default /var/lib/pyimg, or
$PYIMG_ROOT) and --config FILE (default /etc/pyimg/config.json, or
$PYIMG_CONFIG). Verbs get them as the dict `g`.

Errors print one line "pyimg: error: ..." on stderr and exit 1; main() is
the one place that maps exceptions to exit codes. Heavy modules are
imported inside the verbs.
"""
import os
import sys

from runtime.cmdtable import Arg, CommandExit, Opt, Table, finish, short_lived

T = Table("pyimg", "Pull images and unpack them into OCI bundles.", [
    Opt("--root", "root", str, lambda: os.environ.get("PYIMG_ROOT", "/var/lib/pyimg"),
        "Content store (an OCI image layout)."),
    Opt("--config", "config", str, None, "Settings file (default /etc/pyimg/config.json)."),
])


def _die(msg: str) -> None:
    sys.stderr.write(f"pyimg: error: {msg}\n")
    sys.stderr.flush()
    raise CommandExit(1)


def _config(g: dict):
    from imagetool.config import Config, ConfigError
    try:
        return Config.load(g["config"])
    except ConfigError as e:
        _die(str(e))


from imagetool import cli_bundle  # noqa: E402  (registers unpack/run/bundles)

cli_bundle.register(T)


@T.verb("pull", Arg("ref", "Image reference."),
        Opt("--platform", "platform", str, None, "os/arch[/variant]"),
        Opt("-q,--quiet", "quiet", bool, False, "Print only the reference."),
        Opt("--max-layer-size", "max_layer_size", str, None,
            "Refuse an image with a layer over SIZE (bytes, or 500MB, 2GiB...); "
            "overrides max-layer-size."),
        Opt("--download-progress-timeout", "progress_timeout", str, None,
            "Seconds a download may make no progress before it is retried (0: no deadline); "
            "overrides download-progress-timeout."))
def pull(g, ref, platform, quiet, max_layer_size, progress_timeout):
    """Pull an image from a registry into the store."""
    import signal

    from imagetool.config import parse_seconds, parse_size
    from imagetool.pull import PullError, pull_image
    bounds = {}
    for flag, value, parse, key in (
            ("--max-layer-size", max_layer_size, parse_size, "max_layer_size"),
            ("--download-progress-timeout", progress_timeout, parse_seconds,
             "download_progress_timeout")):
        if value is not None:
            try:
                bounds[key] = parse(value)
            except ValueError as e:
                _die(f"pull {ref}: {flag} {value!r}: {e}")

    def _term(signum, _frame):
        # unwind normally so partial downloads are removed from ingest/
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, _term)
    try:
        pull_image(ref, root=g["root"], config_path=g["config"], platform=platform, quiet=quiet,
                   **bounds)
    except PullError as e:
        _die(str(e))
    except KeyboardInterrupt:
        _die(f"pull {ref}: interrupted; the store was left as it was")


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
def images(g, fmt, no_trunc, quiet):
    """List stored images (REPOSITORY TAG IMAGE ID CREATED SIZE)."""
    from imagetool.store import Store, StoreError
    try:
        rows = Store(g["root"]).images()
    except StoreError as e:
        _die(f"images: {e}")
    if fmt == "json":
        from runtime import fastjson as json
        print(json.dumps(rows, indent=2))
        return
    if fmt != "table":
        _die(f"images: unknown --format {fmt!r} (use table or json)")

    def ident(r):
        i = r["id"] or r["digest"]
        return i if no_trunc else i[7:19]
    if quiet:
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


@T.verb("inspect", Arg("refs", "Image references or ids.", many=True),
        Opt("--platform", "platform", str, None, "os/arch[/variant]"))
def inspect(g, refs, platform):
    """Show a stored image as JSON: digests, platform, config, layers."""
    from runtime import fastjson as json
    from imagetool.store import Store, StoreError
    store = Store(g["root"])
    out = []
    for ref in refs:
        try:
            desc = store.descriptor(ref)
            digest, m = store.resolve(ref, platform)
            cfg = store.read_json(m["config"]["digest"])
        except (StoreError, KeyError) as e:
            _die(f"inspect {ref}: {e}")
        ann = desc.get("annotations") or {}
        plat = {k: cfg[k] for k in ("os", "architecture", "variant") if cfg.get(k)}
        out.append({
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
        })
    print(json.dumps(out, indent=2))


@T.verb("tag", Arg("src", "Stored image."), Arg("dst", "New reference."))
def tag(g, src, dst):
    """Give a stored image another reference."""
    from imagetool.reference import ReferenceError_
    from imagetool.store import Store, StoreError
    try:
        Store(g["root"]).tag(src, dst)
    except (StoreError, ReferenceError_) as e:
        _die(f"tag {src} {dst}: {e}")


@T.verb("rmi", Arg("refs", "Image references or ids.", many=True),
        Opt("--no-prune", "no_prune", bool, False, "Keep unreferenced blobs."))
def rmi(g, refs, no_prune):
    """Remove references; then delete blobs nothing references (unless --no-prune)."""
    from imagetool.store import Store, StoreError
    store = Store(g["root"])
    failed = False
    for ref in refs:
        try:
            for name in store.remove(ref):
                print(f"Untagged: {name}")
        except StoreError as e:
            sys.stderr.write(f"pyimg: error: rmi {ref}: {e}\n")
            failed = True
    if not no_prune:
        n, freed = _gc(store)
        if n:
            print(f"Deleted: {n} blobs, {_size(freed)}")
    if failed:
        raise CommandExit(1)


@T.verb("gc")
def gc(g):
    """Delete blobs no stored reference reaches."""
    from imagetool.store import Store, StoreError
    try:
        n, freed = _gc(Store(g["root"]))
    except (StoreError, OSError) as e:
        _die(f"gc: {e}")
    print(f"Deleted {n} blobs, reclaimed {_size(freed)}")


def _gc(store) -> tuple[int, int]:
    """Collect blobs and unpacked layers, keeping whatever a bundle still uses."""
    from imagetool import bundle
    n, freed = store.gc(keep=bundle.manifests_in_use(store.root))
    bundle.prune_layer_cache(store.root)
    return n, freed


@T.verb("push", Arg("ref", "Stored image to push."))
def push(g, ref):
    """Push a stored image to its registry."""
    from imagetool.push import PushError, push_image
    try:
        push_image(ref, root=g["root"], config_path=g["config"])
    except PushError as e:
        _die(str(e))


@T.verb("login", Arg("registry", "Registry (default docker.io).", required=False),
        Opt("-u,--username", "username", str, None, "User name.", required=True),
        Opt("--password-stdin", "password_stdin", bool, False, "Read the password from stdin."),
        Opt("-p,--password", "password", str, None, "Password."))
def login(g, registry, username, password_stdin, password):
    """Check credentials against a registry and store them (Docker's config.json)."""
    from imagetool.auth_cmds import login as do_login
    if password_stdin:
        password = sys.stdin.read().rstrip("\n")
    if password is None:
        _die("login: give the password with --password-stdin")
    try:
        msg = do_login(registry or "docker.io", username, password, _config(g))
    except Exception as e:  # one line, whatever failed
        _die(f"login {registry or 'docker.io'}: {e}")
    print(msg)


@T.verb("logout", Arg("registry", "Registry (default docker.io).", required=False))
def logout(g, registry):
    """Forget stored credentials for a registry."""
    from imagetool.auth_cmds import logout as do_logout
    try:
        print(do_logout(registry or "docker.io", _config(g)))
    except Exception as e:
        _die(f"logout {registry or 'docker.io'}: {e}")


@T.verb("search", Arg("term", "What to look for."),
        Opt("--registry", "registry", str, None, "HOST[:PORT]"),
        Opt("--limit", "limit", int, 25, "Most results to show."))
def search(g, term, registry, limit):
    """Search Docker Hub, or another registry's catalog."""
    from imagetool.auth_cmds import search as do_search
    try:
        lines = do_search(term, registry or "docker.io", _config(g), limit)
    except Exception as e:
        _die(f"search {term} on {registry or 'docker.io'}: {e}")
    for ln in lines:
        print(ln)


@T.verb("save", Arg("refs", "Images to write.", many=True),
        Opt("-o,--output", "output", str, None, "Archive to write.", required=True),
        Opt("--format", "fmt", str, "docker-archive", "docker-archive or oci-archive"))
def save(g, refs, output, fmt):
    """Write stored images to a tar archive."""
    from imagetool.archive import ArchiveError, save as do_save
    try:
        do_save(g["root"], refs, output, fmt)
    except ArchiveError as e:
        _die(str(e))


@T.verb("load", Opt("-i,--input", "input", str, None, "Archive to read.", required=True))
def load(g, input):
    """Load images from a docker-archive or oci-archive tar."""
    from imagetool.archive import ArchiveError, load as do_load
    try:
        for name in do_load(g["root"], input):
            print(f"Loaded image: {name}")
    except ArchiveError as e:
        _die(str(e))


def _version() -> None:
    from runtime.cli import VERSION
    print(f"pyimg version {VERSION}")


def _usage_error(msg: str) -> int:
    sys.stderr.write(f"pyimg: error: {msg}\n")
    return 2


def _dispatch(argv: list[str]) -> int:
    routed = T.route(argv, _dispatch, _version, _usage_error)
    if isinstance(routed, int):
        return routed
    g, v, a = routed
    try:
        rc = T.func(v)(g, **a)
        return rc if isinstance(rc, int) else 0
    except CommandExit as e:
        return e.code
    except KeyboardInterrupt:
        sys.stderr.write("pyimg: error: interrupted\n")
        return 130
    except Exception as e:  # noqa: BLE001 - the last line of defence
        if os.environ.get("PYIMG_DEBUG"):
            raise
        sys.stderr.write(f"pyimg: error: {' '.join(argv)[:200]}: {type(e).__name__}: {e}\n")
        return 1


def main() -> None:
    """Entry point: one verb, then exit. An unexpected exception becomes one
    error line and exit 1 (PYIMG_DEBUG=1 shows the traceback instead)."""
    short_lived()  # run in the foreground calls stays()
    finish(_dispatch(sys.argv[1:]))
