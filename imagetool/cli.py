"""pyimg command line. Owned by the pull/store work; bundle verbs are
registered from imagetool.cli_bundle so the two halves stay in their files.

Global options (before the verb): --root DIR (default /var/lib/pyimg, or
$PYIMG_ROOT) and --config FILE (default /etc/pyimg/config.json, or
$PYIMG_CONFIG). Both are in ctx.obj["root"] / ctx.obj["config"] for every
verb, including the bundle ones.

Errors print one line "pyimg: error: ..." on stderr and exit 1. Heavy
modules are imported inside the verbs so `pyimg --help` stays fast.
"""
import os
import sys
from typing import List, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Pull images and unpack them into OCI bundles.")


@app.callback()
def _global(ctx: typer.Context,
            root: str = typer.Option(os.environ.get("PYIMG_ROOT", "/var/lib/pyimg"), "--root",
                                     help="Content store (an OCI image layout)."),
            config: Optional[str] = typer.Option(None, "--config",
                                                 help="Settings file (default /etc/pyimg/config.json).")):
    ctx.obj = {"root": root, "config": config}


def _die(msg: str) -> None:
    sys.stderr.write(f"pyimg: error: {msg}\n")
    sys.stderr.flush()
    raise typer.Exit(1)


def _obj(ctx: typer.Context) -> dict:
    return ctx.obj or {"root": os.environ.get("PYIMG_ROOT", "/var/lib/pyimg"), "config": None}


def _config(ctx):
    from imagetool.config import Config, ConfigError
    try:
        return Config.load(_obj(ctx)["config"])
    except ConfigError as e:
        _die(str(e))


from imagetool import cli_bundle  # noqa: E402  (registers unpack/run/bundles)

cli_bundle.register(app)


@app.command()
def pull(ctx: typer.Context, ref: str = typer.Argument(..., help="Image reference."),
         platform: Optional[str] = typer.Option(None, "--platform", help="os/arch[/variant]"),
         quiet: bool = typer.Option(False, "-q", "--quiet", help="Print only the reference.")):
    """Pull an image from a registry into the store."""
    import signal

    from imagetool.pull import PullError, pull_image
    o = _obj(ctx)

    def _term(signum, _frame):
        # unwind normally so partial downloads are removed from ingest/
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, _term)
    try:
        pull_image(ref, root=o["root"], config_path=o["config"], platform=platform, quiet=quiet)
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


@app.command()
def images(ctx: typer.Context,
           fmt: str = typer.Option("table", "--format", help="table or json"),
           no_trunc: bool = typer.Option(False, "--no-trunc", help="Full image ids."),
           quiet: bool = typer.Option(False, "-q", "--quiet", help="Only image ids.")):
    """List stored images (REPOSITORY TAG IMAGE ID CREATED SIZE)."""
    from imagetool.store import Store, StoreError
    try:
        rows = Store(_obj(ctx)["root"]).images()
    except StoreError as e:
        _die(f"images: {e}")
    if fmt == "json":
        import json
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


@app.command()
def inspect(ctx: typer.Context, refs: List[str] = typer.Argument(..., help="Image references or ids."),
            platform: Optional[str] = typer.Option(None, "--platform")):
    """Show a stored image as JSON: digests, platform, config, layers."""
    import json
    from imagetool.store import Store, StoreError
    store = Store(_obj(ctx)["root"])
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


@app.command()
def tag(ctx: typer.Context, src: str, dst: str):
    """Give a stored image another reference."""
    from imagetool.reference import ReferenceError_
    from imagetool.store import Store, StoreError
    try:
        Store(_obj(ctx)["root"]).tag(src, dst)
    except (StoreError, ReferenceError_) as e:
        _die(f"tag {src} {dst}: {e}")


@app.command()
def rmi(ctx: typer.Context, refs: List[str] = typer.Argument(...),
        no_prune: bool = typer.Option(False, "--no-prune", help="Keep unreferenced blobs.")):
    """Remove references; then delete blobs nothing references (unless --no-prune)."""
    from imagetool.store import Store, StoreError
    store = Store(_obj(ctx)["root"])
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
        raise typer.Exit(1)


@app.command()
def gc(ctx: typer.Context):
    """Delete blobs no stored reference reaches."""
    from imagetool.store import Store, StoreError
    try:
        n, freed = _gc(Store(_obj(ctx)["root"]))
    except (StoreError, OSError) as e:
        _die(f"gc: {e}")
    print(f"Deleted {n} blobs, reclaimed {_size(freed)}")


def _gc(store) -> tuple[int, int]:
    """Collect blobs and unpacked layers, keeping whatever a bundle still uses."""
    from imagetool import bundle
    n, freed = store.gc(keep=bundle.manifests_in_use(store.root))
    bundle.prune_layer_cache(store.root)
    return n, freed


@app.command()
def push(ctx: typer.Context, ref: str):
    """Push a stored image to its registry."""
    from imagetool.push import PushError, push_image
    o = _obj(ctx)
    try:
        push_image(ref, root=o["root"], config_path=o["config"])
    except PushError as e:
        _die(str(e))


@app.command()
def login(ctx: typer.Context, registry: Optional[str] = typer.Argument(None),
          username: str = typer.Option(..., "-u", "--username"),
          password_stdin: bool = typer.Option(False, "--password-stdin"),
          password: Optional[str] = typer.Option(None, "-p", "--password")):
    """Check credentials against a registry and store them (Docker's config.json)."""
    from imagetool.auth_cmds import login as do_login
    if password_stdin:
        password = sys.stdin.read().rstrip("\n")
    if password is None:
        _die("login: give the password with --password-stdin")
    try:
        msg = do_login(registry or "docker.io", username, password, _config(ctx))
    except Exception as e:  # one line, whatever failed
        _die(f"login {registry or 'docker.io'}: {e}")
    print(msg)


@app.command()
def logout(ctx: typer.Context, registry: Optional[str] = typer.Argument(None)):
    """Forget stored credentials for a registry."""
    from imagetool.auth_cmds import logout as do_logout
    try:
        print(do_logout(registry or "docker.io", _config(ctx)))
    except Exception as e:
        _die(f"logout {registry or 'docker.io'}: {e}")


@app.command()
def search(ctx: typer.Context, term: str,
           registry: Optional[str] = typer.Option(None, "--registry", help="HOST[:PORT]"),
           limit: int = typer.Option(25, "--limit")):
    """Search Docker Hub, or another registry's catalog."""
    from imagetool.auth_cmds import search as do_search
    try:
        lines = do_search(term, registry or "docker.io", _config(ctx), limit)
    except Exception as e:
        _die(f"search {term} on {registry or 'docker.io'}: {e}")
    for ln in lines:
        print(ln)


@app.command()
def save(ctx: typer.Context, refs: List[str] = typer.Argument(...),
         output: str = typer.Option(..., "-o", "--output"),
         fmt: str = typer.Option("docker-archive", "--format", help="docker-archive or oci-archive")):
    """Write stored images to a tar archive."""
    from imagetool.archive import ArchiveError, save as do_save
    try:
        do_save(_obj(ctx)["root"], refs, output, fmt)
    except ArchiveError as e:
        _die(str(e))


@app.command()
def load(ctx: typer.Context, input: str = typer.Option(..., "-i", "--input")):
    """Load images from a docker-archive or oci-archive tar."""
    from imagetool.archive import ArchiveError, load as do_load
    try:
        for name in do_load(_obj(ctx)["root"], input):
            print(f"Loaded image: {name}")
    except ArchiveError as e:
        _die(str(e))


def main() -> None:
    """Entry point. An unexpected exception becomes one error line and exit 1
    (PYIMG_DEBUG=1 shows the traceback instead)."""
    try:
        app()
    except KeyboardInterrupt:
        sys.stderr.write("pyimg: error: interrupted\n")
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - the last line of defence
        if os.environ.get("PYIMG_DEBUG"):
            raise
        sys.stderr.write(f"pyimg: error: {' '.join(sys.argv[1:])[:200]}: "
                         f"{type(e).__name__}: {e}\n")
        sys.exit(1)
