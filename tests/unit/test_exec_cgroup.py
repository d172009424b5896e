"""exec --cgroup: runc 1.1's [CONTROLLER[,CONTROLLER]:]PATH values and the
sub-cgroups they name (no root: only the paths are computed)."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from runtime.errors import RuntimeFailure  # noqa: E402
from runtime.execproc import sub_cgroup_dirs, sub_cgroup_paths  # noqa: E402

HYBRID = {"version": "hybrid", "paths": {"cpu": "/cg/cpu,cpuacct/c", "cpuacct": "/cg/cpu,cpuacct/c",
                                         "memory": "/cg/memory/c", "pids": "/cg/pids/c"},
          "unified": "/cg/unified/c"}
V2 = {"version": "v2", "path": "/cg/c", "mount": "/cg"}


def test_values_as_runc_reads_them():
    assert sub_cgroup_paths(["sub"]) == {"": "sub"}
    assert sub_cgroup_paths(["memory:a", "cpu,cpuacct:b"]) == {"memory": "a", "cpu": "b", "cpuacct": "b"}


@pytest.mark.parametrize("args,msg", [
    (["a:b:c"], "invalid --cgroup argument: a:b:c"),
    (["a", "memory:b"], r"invalid --cgroup argument: a \(missing <controller>: prefix\)"),
])
def test_bad_values(args, msg):
    with pytest.raises(RuntimeFailure, match=msg):
        sub_cgroup_paths(args)


def test_one_path_for_every_hierarchy():
    assert sub_cgroup_dirs(HYBRID, {"": "sub"}) == [
        "/cg/cpu,cpuacct/c/sub", "/cg/memory/c/sub", "/cg/pids/c/sub", "/cg/unified/c/sub"]
    assert sub_cgroup_dirs(V2, {"": "sub/deeper"}) == ["/cg/c/sub/deeper"]
    assert sub_cgroup_dirs(V2, {"": "/"}) == ["/cg/c"]


def test_per_controller_paths_join_the_sub_cgroup_last():
    # memory and cpu move; the rest stay at the container's cgroup. cpuacct
    # shares cpu's hierarchy: its sub-cgroup is joined after the top one.
    assert sub_cgroup_dirs(HYBRID, {"memory": "m", "cpuacct": "s"}) == [
        "/cg/cpu,cpuacct/c", "/cg/pids/c", "/cg/unified/c", "/cg/cpu,cpuacct/c/s", "/cg/memory/c/m"]


@pytest.mark.parametrize("paths,msg", [
    ({"": ".."}, r"^\.\. is not a sub cgroup path$"),
    ({"": "../c2"}, r"^\.\./c2 is not a sub cgroup path$"),
    ({"memory": "../../x"}, r"^\.\./\.\./x is not a sub cgroup path$"),
    ({"whaaat": "/"}, "^unknown controller whaaat in SubCgroupPaths$"),
    ({"memory": "x"}, "^unknown controller memory in SubCgroupPaths$"),  # v2 has no per-controller paths
])
def test_refused(paths, msg):
    cg = V2 if "memory" in paths and paths["memory"] == "x" else HYBRID
    with pytest.raises(RuntimeFailure, match=msg):
        sub_cgroup_dirs(cg, paths)


def test_a_sibling_sharing_the_prefix_is_not_a_sub_cgroup():
    # /cg/pids/c + ../cx is /cg/pids/cx: a string prefix of the container's
    # path but not below it
    with pytest.raises(RuntimeFailure, match="is not a sub cgroup path"):
        sub_cgroup_dirs(HYBRID, {"pids": "../cx"})
