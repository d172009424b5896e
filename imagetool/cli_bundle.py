"""pyimg verbs that turn stored images into bundles (unpack, run, rm-bundle, bundles, remount).

Imports of the heavy modules happen inside the commands, so `pyimg --help`
and the other verbs do not pay for them. Like pyimg's other verbs, these
are called as func(g, a) and let errors propagate to imagetool.cli._call
(which makes every failure of `run` exit 125, as docker run does).
"""
import os
import sys

from runtime.toolkit.cmdtable import Arg, Opt, stays


def _maps(uid_map, gid_map):
    from imagetool.errors import UsageError
    from imagetool.layer import IdMap

    try:
        return IdMap.parse(uid_map), IdMap.parse(gid_map)
    except ValueError as e:
        raise UsageError(str(e)) from None


def _find_runtime(explicit: str | None) -> str:
    import shutil

    from imagetool.errors import RunError

    if explicit:
        return explicit
    found = shutil.which("pyrunc")
    if found:
        return found
    # Next to our interpreter (the venv's bin/), where `pip install` puts it.
    cand = os.path.join(os.path.dirname(sys.executable), "pyrunc")
    if os.access(cand, os.X_OK):
        return cand
    raise RunError("cannot find the pyrunc runtime on PATH (set PYIMG_RUNTIME)")


UNPACK = (
    Arg("ref", "Image reference in the store."),
    Arg("bundle", "Bundle directory to create (config.json + rootfs)."),
    Opt("--mode", "mode", str, None, "overlay (default where overlayfs works) or copy."),
    Opt("--uid-map", "uid_map", list, None, "CONTAINER:HOST:SIZE uid mapping (repeatable)."),
    Opt("--gid-map", "gid_map", list, None, "CONTAINER:HOST:SIZE gid mapping (repeatable)."),
    Opt("--platform", "platform", str, None, "os/arch[/variant] for multi-platform images."),
)


def unpack(g, a):
    """Unpack an image into an OCI runtime bundle."""
    from imagetool.bundle import create_bundle

    umap, gmap = _maps(a["uid_map"], a["gid_map"])
    create_bundle(g["root"], a["ref"], a["bundle"], mode=a["mode"], uid_map=umap, gid_map=gmap,
                  platform=a["platform"])


RM_BUNDLE = (
    Arg("bundles", "Bundle directories to remove.", many=True),
    Opt("-f,--force", "force", bool, False, "Remove even if a container still runs from it."),
)


def rm_bundle(g, a):
    """Unmount bundles and delete their writable layer (shared layers stay)."""
    from imagetool.bundle import remove_bundle
    from imagetool.errors import BundleError

    failed = []
    for b in a["bundles"]:
        # one bundle that cannot be removed does not stop the others
        try:
            remove_bundle(g["root"], b, force=a["force"])
        except BundleError as e:
            failed.append(e)
    if failed:  # one line for all of them
        raise failed[0] if len(failed) == 1 else BundleError("; ".join(map(str, failed)))


BUNDLES = (
    Opt("-q,--quiet", "quiet", bool, False, "Print bundle paths only."),
    Opt("--remount", "remount", bool, False, "Mount overlay bundles that are not mounted (after a reboot)."),
)


def bundles_cmd(g, a):
    """List bundles created by pyimg."""
    from imagetool.bundle import list_bundles, remount_bundles

    if a["remount"]:
        remount_bundles(g["root"])
    recs = list_bundles(g["root"])
    if a["quiet"]:
        for r in recs:
            print(r["bundle"])
        return
    print(f"{'ID':<16}  {'MODE':<7}  {'STATE':<8}  {'MOUNTED':<7}  {'IMAGE':<40}  BUNDLE")
    for r in recs:
        mounted = "yes" if r["mounted"] else ("no" if r["mode"] == "overlay" else "-")
        print(f"{r['id']:<16}  {r['mode']:<7}  {r.get('state', ''):<8}  {mounted:<7}  {r['ref']:<40}  {r['bundle']}")


REMOUNT = (Arg("bundle", "Bundle to mount (default: every overlay bundle).", required=False),)


def remount(g, a):
    """Re-mount overlay bundle rootfs (e.g. after a reboot)."""
    from imagetool.bundle import remount_bundles

    for b in remount_bundles(g["root"], a["bundle"]):
        print(b)


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


def run(g, a):
    """Run a command in a new container, pulling the image if needed (like docker run)."""
    from imagetool.errors import UsageError

    if a["detach"] and (a["rm"] or a["interactive"] or a["tty"]):
        raise UsageError("-d cannot be combined with --rm, -i or -t")
    if not a["detach"]:
        stays()
    return _run(a["ref"], a["cmd"] or [], rm=a["rm"], detach=a["detach"], interactive=a["interactive"],
                tty=a["tty"], name=a["name"], env=a["env"], workdir=a["workdir"], user=a["user"],
                entrypoint=a["entrypoint"], network=a["network"], mode=a["mode"], platform=a["platform"],
                runtime=a["runtime"], root=g["root"], config=g.get("config"))


def _run(ref, cmd, *, rm, interactive, tty, name, env, workdir, user, entrypoint, network, mode, platform,
         runtime, root, config=None, detach=False) -> int:
    import re
    import secrets
    import signal
    import subprocess

    from imagetool.bundle import RunOptions, create_bundle, image_present, remove_bundle
    from imagetool.errors import BundleError, PyimgError, RunError, UsageError, os_message

    if network not in ("host", "none"):
        raise UsageError(f"unsupported network mode {network!r}: use host or none")
    if name is not None and not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", name):
        raise UsageError(f"invalid container name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    runtime_bin = _find_runtime(runtime)
    if not image_present(root, ref):
        print(f"Unable to find image '{ref}' locally", file=sys.stderr)
        from imagetool.pull import pull_image

        pull_image(ref, root=root, config_path=config, platform=platform, out=sys.stderr)
    cid = name or secrets.token_hex(6)
    bundle = os.path.join(os.path.abspath(root), "containers", cid)
    if os.path.exists(bundle):
        raise BundleError(f"container name {cid!r} is already in use (bundle {bundle})")
    try:
        os.makedirs(os.path.dirname(bundle), exist_ok=True)
    except OSError as e:
        raise BundleError(os_message(e, f"creating {os.path.dirname(bundle)}")) from None
    opts = RunOptions(cmd=cmd or None, entrypoint=None if entrypoint is None else ([entrypoint] if entrypoint else []), env=env,
                      workdir=workdir, user=user, terminal=tty, hostname=cid[:12] if not name else name[:63],
                      network=network, etc_files=True)
    create_bundle(root, ref, bundle, mode=mode, platform=platform, run=opts)
    if detach:
        # The container keeps the stdio it is given: a log file, not our terminal.
        try:
            with open(os.path.join(bundle, "container.log"), "ab") as log, open(os.devnull, "rb") as null:
                rc = subprocess.run([runtime_bin, "run", "-d", "--bundle", bundle, cid],
                                    stdin=null, stdout=log, stderr=log).returncode
        except OSError as e:
            failure = RunError(os_message(e, f"starting the runtime {runtime_bin}"))
        else:
            if rc == 0:
                print(cid)
                return 0
            failure = RunError(f"the runtime could not start the container (exit {rc})")
        try:
            remove_bundle(root, bundle)
        except PyimgError:
            pass
        raise failure
    # The runtime forwards signals to the container; a Ctrl-C reaches it
    # (same process group) so pyimg itself must outlive it to clean up.
    failure = None
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
        rc = None
        failure = RunError(os_message(e, f"starting the runtime {runtime_bin}"))
    finally:
        signal.signal(signal.SIGINT, old_int)
    if rc is not None and rc < 0:  # killed by a signal: report it the shell way
        rc = 128 - rc
    if rm:
        if failure is None:  # (else the runtime never ran: no container to delete)
            subprocess.run([runtime_bin, "delete", "--force", cid], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        try:
            remove_bundle(root, bundle)
        except PyimgError as e:
            # the status stays the container's; the bundle is left, and said so
            print(f"pyimg: warning: run {ref}: {e}", file=sys.stderr)
    if failure is not None:
        raise failure
    return rc


def register(table) -> None:
    """Add the bundle verbs to pyimg's command table."""
    table.verb("unpack", *UNPACK)(unpack)
    table.verb("rm-bundle", *RM_BUNDLE)(rm_bundle)
    table.verb("bundles", *BUNDLES)(bundles_cmd)
    table.verb("remount", *REMOUNT)(remount)
    # options after the image belong to the command (docker run IMAGE sh -c ...)
    table.verb("run", *RUN, raw_rest=True)(run)
