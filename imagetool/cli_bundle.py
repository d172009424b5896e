"""pyimg verbs that turn stored images into bundles (unpack, rm-bundle, bundles, remount).

Imports of the heavy modules happen inside the commands, so `pyimg --help`
and the other verbs do not pay for them. Like pyimg's other verbs, these
are called as func(g, a) and let errors propagate to imagetool.cli._call.
Running containers from images is the engine's (imagetool.cli_engine).
"""
from runtime.toolkit.cmdtable import Arg, Opt


def _maps(uid_map, gid_map):
    from imagetool.errors import UsageError
    from imagetool.layer import IdMap

    try:
        return IdMap.parse(uid_map), IdMap.parse(gid_map)
    except ValueError as e:
        raise UsageError(str(e)) from None


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


def register(table) -> None:
    """Add the bundle verbs to pyimg's command table."""
    table.verb("unpack", *UNPACK)(unpack)
    table.verb("rm-bundle", *RM_BUNDLE)(rm_bundle)
    table.verb("bundles", *BUNDLES)(bundles_cmd)
    table.verb("remount", *REMOUNT)(remount)
