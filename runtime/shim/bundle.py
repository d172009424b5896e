"""What the shim keeps in a task's bundle, and where its runtime state is.

The `delete` command (containerd's clean-up after a shim died) must find
the container with nothing but the bundle, and must be quick: it is run
for every container's removal. So it reads only this module:

* OPTIONS_FILE, written by Create: the runtime options that matter later
  (the runtime's root and cgroup driver), JSON;
* runtime_root: the runtime's --root for a namespace,
  /run/containerd/pyrunc/NAMESPACE unless the options set another root;
* unmount_rootfs: what Create mounted on BUNDLE/rootfs, all of it.
"""
from runtime.toolkit import fastjson as json
from runtime.toolkit import os_lite as os
from runtime import syscalls as sc

DEFAULT_ROOT = "/run/containerd/pyrunc"
OPTIONS_FILE = "pyrunc-shim.json"


def read_options(bundle: str) -> dict:
    """The runtime options recorded at Create (the runtime's root and cgroup
    driver), for `delete` after a crash; {} when there are none."""
    try:
        with open(os.path.join(bundle, OPTIONS_FILE)) as f:
            return json.loads(f.read())
    except (OSError, ValueError):
        return {}


def runtime_root(opts: dict, namespace: str) -> str:
    return os.path.join(opts.get("root") or DEFAULT_ROOT, namespace)


def unmount_rootfs(bundle: str) -> None:
    """Unmount everything stacked on BUNDLE/rootfs (what Create mounted)."""
    target = os.path.join(bundle, "rootfs")
    for _ in range(16):
        try:
            sc.umount2(target, sc.MNT_DETACH)
        except OSError:
            return
