"""The pids of cgroup directories and their sub-cgroups: the one reader
behind cgroups.pids() (which `ps` calls without loading a manager) and the
managers' pids(). It imports nothing but os_lite, so that neither side
pulls in the other."""
from runtime.toolkit import os_lite as os
# Optional edge: errno, on the error path only.


def tree_pids(dirs: list[str]) -> list[int]:
    """The pids in the cgroup.procs of each cgroup directory in `dirs` and
    of every one below it (runc's GetAllPids), sorted and each once. A
    directory that is gone, or goes while it is read, has none."""
    seen: set[int] = set()
    for top in dirs:
        for cur, _dirs, _files in os.walk(top):
            try:
                with open(cur + "/cgroup.procs", "rb") as f:
                    data = f.read()
            except OSError as e:
                from errno import ENODEV, ENOENT  # (an error path: the hot verbs never load errno)
                if e.errno in (ENOENT, ENODEV):
                    continue
                raise
            seen.update(int(x) for x in data.split())
    return sorted(seen)
