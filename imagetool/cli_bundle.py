"""pyimg verbs that turn stored images into bundles (unpack, run, rm-bundle, bundles, remount).

Imports of the heavy modules happen inside the commands, so `pyimg --help`
and the other verbs do not pay for them.
"""
import os
import sys

from runtime.cmdtable import Arg, CommandExit, Opt, stays

def _ctx(g: dict) -> tuple[str, str | None]:
    """(store root, settings file) from pyimg's global options (the table's
    --root default already reads $PYIMG_ROOT)."""
    return g["root"], g.get("config")


def _fail(msg: str, code: int = 1):
    print(f"pyimg: error: {msg}", file=sys.stderr)
    raise CommandExit(code)


def _maps(uid_map, gid_map):
    from imagetool.layer import IdMap

    try:
        return IdMap.parse(uid_map), IdMap.parse(gid_map)
    except ValueError as e:
        _fail(str(e))


def _find_runtime(explicit: str | None) -> str:
    import shutil

    if explicit:
        return explicit
    found = shutil.which("pyrunc")
    if found:
        return found
    # Next to our interpreter (the venv's bin/), where `pip install` puts it.
    cand = os.path.join(os.path.dirname(sys.executable), "pyrunc")
    if os.access(cand, os.X_OK):
        return cand
    _fail("cannot find the pyrunc runtime on PATH (set PYIMG_RUNTIME)", 125)


UNPACK = (
    Arg("ref", "Image reference in the store."),
    Arg("bundle", "Bundle directory to create (config.json + rootfs)."),
    Opt("--mode", "mode", str, None, "overlay (default where overlayfs works) or copy."),
    Opt("--uid-map", "uid_map", list, None, "CONTAINER:HOST:SIZE uid mapping (repeatable)."),
    Opt("--gid-map", "gid_map", list, None, "CONTAINER:HOST:SIZE gid mapping (repeatable)."),
    Opt("--platform", "platform", str, None, "os/arch[/variant] for multi-platform images."),
)


def unpack(ctx, ref, bundle, mode, uid_map, gid_map, platform):
    """Unpack an image into an OCI runtime bundle."""
    root, config = _ctx(ctx)
    from imagetool.bundle import BundleError, create_bundle

    umap, gmap = _maps(uid_map, gid_map)
    try:
        create_bundle(root, ref, bundle, mode=mode, uid_map=umap, gid_map=gmap, platform=platform)
    except BundleError as e:
        _fail(str(e))


RM_BUNDLE = (
    Arg("bundles", "Bundle directories to remove.", many=True),
    Opt("-f,--force", "force", bool, False, "Remove even if a container still runs from it."),
)


def rm_bundle(ctx, bundles, force):
    """Unmount bundles and delete their writable layer (shared layers stay)."""
    root, config = _ctx(ctx)
    from imagetool.bundle import BundleError, remove_bundle

    failed = False
    for b in bundles:
        try:
            remove_bundle(root, b, force=force)
        except BundleError as e:
            print(f"pyimg: error: {e}", file=sys.stderr)
            failed = True
    if failed:
        raise CommandExit(1)


BUNDLES = (
    Opt("-q,--quiet", "quiet", bool, False, "Print bundle paths only."),
    Opt("--remount", "remount", bool, False, "Mount overlay bundles that are not mounted (after a reboot)."),
)


def bundles_cmd(ctx, quiet, remount):
    """List bundles created by pyimg."""
    root, config = _ctx(ctx)
    from imagetool.bundle import BundleError, list_bundles, remount_bundles

    if remount:
        try:
            remount_bundles(root)
        except BundleError as e:
            _fail(str(e))
    recs = list_bundles(root)
    if quiet:
        for r in recs:
            print(r["bundle"])
        return
    print(f"{'ID':<16}  {'MODE':<7}  {'STATE':<8}  {'MOUNTED':<7}  {'IMAGE':<40}  BUNDLE")
    for r in recs:
        mounted = "yes" if r["mounted"] else ("no" if r["mode"] == "overlay" else "-")
        print(f"{r['id']:<16}  {r['mode']:<7}  {r.get('state', ''):<8}  {mounted:<7}  {r['ref']:<40}  {r['bundle']}")


REMOUNT = (Arg("bundle", "Bundle to mount (default: every overlay bundle).", required=False),)


def remount(ctx, bundle):
    """Re-mount overlay bundle rootfs (e.g. after a reboot)."""
    root, config = _ctx(ctx)
    from imagetool.bundle import BundleError, remount_bundles

    try:
        for b in remount_bundles(root, bundle):
            print(b)
    except BundleError as e:
        _fail(str(e))


RUN = (
    Arg("ref", "Image reference."),
    Arg("cmd", "Command replacing the image's Cmd.", required=False, many=True),
    Opt("--rm", "rm", bool, False, "Remove the container and its bundle when it exits."),
    Opt("-d,--detach", "detach", bool, False,
        "Run in the background; print the container id (output goes to BUNDLE/container.log)."),
    Opt("-i,--interactive", "interactive", bool, False, "Keep stdin attached."),
    Opt("-t,--tty", "tty", bool, False, "Allocate a terminal."),
    Opt("--name", "name", str, None, "Container name (default: random id)."),
    Opt("-e,--env", "env", list, None, "K=V environment variable (repeatable)."),
    Opt("-w,--workdir", "workdir", str, None, "Working directory in the container."),
    Opt("-u,--user", "user", str, None, "user[:group] (names or ids)."),
    Opt("--entrypoint", "entrypoint", str, None, "Replace the image's Entrypoint."),
    Opt("--network", "network", str, "host", "host (share the host's network) or none."),
    Opt("--mode", "mode", str, None, "Bundle mode: overlay or copy."),
    Opt("--platform", "platform", str, None, "os/arch[/variant]"),
    Opt("--runtime", "runtime", str, lambda: os.environ.get("PYIMG_RUNTIME"),
        "OCI runtime binary (default pyrunc; or $PYIMG_RUNTIME)."),
)


def run(ctx, ref, cmd, rm, detach, interactive, tty, name, env, workdir, user, entrypoint, network, mode,
        platform, runtime):
    """Run a command in a new container, pulling the image if needed (like docker run)."""
    root, config = _ctx(ctx)
    if detach and (rm or interactive or tty):
        _fail("-d cannot be combined with --rm, -i or -t", 125)
    if not detach:
        stays()
    return (_run(ref, cmd or [], rm=rm, detach=detach, interactive=interactive, tty=tty, name=name, env=env,
                          workdir=workdir, user=user, entrypoint=entrypoint, network=network, mode=mode,
                          platform=platform, runtime=runtime, root=root, config=config))


def _run(ref, cmd, *, rm, interactive, tty, name, env, workdir, user, entrypoint, network, mode, platform,
         runtime, root, config=None, detach=False) -> int:
    import re
    import secrets
    import signal
    import subprocess

    from imagetool.bundle import BundleError, RunOptions, create_bundle, image_present, remove_bundle

    if network not in ("host", "none"):
        _fail(f"unsupported network mode {network!r}: use host or none", 125)
    if name is not None and not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", name):
        _fail(f"invalid container name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", 125)
    runtime_bin = _find_runtime(runtime)
    if not image_present(root, ref):
        print(f"Unable to find image '{ref}' locally", file=sys.stderr)
        try:
            from imagetool.pull import pull_image
        except ImportError:
            _fail("pulling is not available (imagetool.pull is missing)", 125)
        try:
            pull_image(ref, root=root, config_path=config, platform=platform, out=sys.stderr)
        except Exception as e:  # the puller's own error types; one line
            _fail(f"{ref}: pull failed: {e}", 125)
    cid = name or secrets.token_hex(6)
    bundle = os.path.join(os.path.abspath(root), "containers", cid)
    if os.path.exists(bundle):
        _fail(f"container name {cid!r} is already in use (bundle {bundle})", 125)
    os.makedirs(os.path.dirname(bundle), exist_ok=True)
    opts = RunOptions(cmd=cmd or None, entrypoint=None if entrypoint is None else ([entrypoint] if entrypoint else []), env=env,
                      workdir=workdir, user=user, terminal=tty, hostname=cid[:12] if not name else name[:63],
                      network=network, etc_files=True)
    try:
        create_bundle(root, ref, bundle, mode=mode, platform=platform, run=opts)
    except BundleError as e:
        _fail(str(e), 125)
    if detach:
        # The container keeps the stdio it is given: a log file, not our terminal.
        with open(os.path.join(bundle, "container.log"), "ab") as log, open(os.devnull, "rb") as null:
            rc = subprocess.run([runtime_bin, "run", "-d", "--bundle", bundle, cid],
                                stdin=null, stdout=log, stderr=log).returncode
        if rc == 0:
            print(cid)
            return 0
        try:
            remove_bundle(root, bundle)
        except BundleError:
            pass
        _fail(f"{ref}: the runtime could not start the container (exit {rc})", 125)
    # The runtime forwards signals to the container; a Ctrl-C reaches it
    # (same process group) so pyimg itself must outlive it to clean up.
    old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        proc = subprocess.Popen([runtime_bin, "run", "--bundle", bundle, cid],
                                stdin=None if interactive or tty else subprocess.DEVNULL)

        def forward(signum, _frame):
            proc.send_signal(signum)

        old_term = signal.signal(signal.SIGTERM, forward)
        try:
            rc = proc.wait()
        finally:
            signal.signal(signal.SIGTERM, old_term)
    except OSError as e:
        rc = 125
        print(f"pyimg: error: cannot start {runtime_bin}: {e.strerror}", file=sys.stderr)
    finally:
        signal.signal(signal.SIGINT, old_int)
    if rc < 0:  # killed by a signal: report it the shell way
        rc = 128 - rc
    if rm:
        subprocess.run([runtime_bin, "delete", "--force", cid], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            remove_bundle(root, bundle)
        except BundleError as e:
            print(f"pyimg: error: {e}", file=sys.stderr)
    return rc


def register(table) -> None:
    """Add the bundle verbs to pyimg's command table."""
    table.verb("unpack", *UNPACK)(unpack)
    table.verb("rm-bundle", *RM_BUNDLE)(rm_bundle)
    table.verb("bundles", *BUNDLES)(bundles_cmd)
    table.verb("remount", *REMOUNT)(remount)
    # options after the image belong to the command (docker run IMAGE sh -c ...)
    table.verb("run", *RUN, raw_rest=True)(run)
