#!/usr/bin/env python3
"""Run already built opencontainers/runtime-tools validation programs against
pyrunc (or another runtime) and summarise their TAP output.

    .venv/bin/python scripts/runtime_tools.py DIR [--runtime PATH] [--timeout S]
                                              [--only NAME,...] [--log-dir D] [--json FILE]

DIR holds the built programs (`*.t` files anywhere below it, as runtime-tools'
`make validation-executables` leaves them in validation/<name>/<name>.t)
together with `runtimetest` and `rootfs-<arch>.tar.gz`, which the programs
expect in their working directory. Building them is described in
tests/conformance/README.md; this script never builds anything.

Each program runs with RUNTIME set to the runtime's absolute path, in its own
process group, with a timeout. Afterwards containers it left in the runtime's
default state root are deleted (`delete --force`) and its temporary bundles
(TMPDIR is private to the run) are removed. The table shows per program the
pass/fail/skip counts, a status and the first failing TAP line; the exit
status is 1 when any program failed, else 0. An empty or absent DIR is
reported and is not an error.
"""
import argparse
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_RUNTIME = os.path.join(REPO, ".venv", "bin", "pyrunc")

TAP_RESULT = re.compile(r"^(not ok|ok)\b\s*(\d+)?\s*-?\s*(.*)$")
TAP_PLAN = re.compile(r"^1\.\.(\d+)(.*)$")


def go_arch() -> str:
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "i686": "386", "i386": "386",
            "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}.get(m, m)


def find_programs(root: str) -> list[str]:
    progs = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in (".git", "vendor")]
        for f in filenames:
            p = os.path.join(dirpath, f)
            if f.endswith(".t") and os.access(p, os.X_OK) and os.path.isfile(p):
                progs.append(p)
    return sorted(progs, key=lambda p: os.path.basename(p))


def find_support_dir(root: str) -> str | None:
    """The directory holding runtimetest and rootfs-<arch>.tar.gz."""
    want = f"rootfs-{go_arch()}.tar.gz"
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in (".git", "vendor")]
        if "runtimetest" in filenames and want in filenames:
            return dirpath
    return None


class Result:
    def __init__(self, name):
        self.name = name
        self.passed = self.failed = self.skipped = self.todo = 0
        self.planned = None
        self.status = "?"
        self.first_failure = ""
        self.exit_code = None
        self.duration = 0.0
        self.leftovers: list[str] = []
        self.host_changes: list[str] = []
        self.log = ""

    def as_dict(self):
        return {k: getattr(self, k) for k in ("name", "passed", "failed", "skipped", "todo", "planned",
                                               "status", "first_failure", "exit_code", "duration", "host_changes",
                                               "leftovers", "log")}


def first_error_line(text: str) -> str:
    """The first line of a program's output that is neither TAP nor one of its
    YAML diagnostic blocks: usually the runtime's error message (printed after
    "failed to create the container")."""
    in_yaml = False
    for line in text.splitlines():
        t = line.strip()
        if in_yaml:
            in_yaml = t != "..."
            continue
        if t == "---":
            in_yaml = True
            continue
        if (not t or t.startswith(("TAP version", "1..", "ok ", "not ok", "#"))
                or t == "failed to create the container" or re.fullmatch(r"exit status \d+", t)):
            continue
        return t[:200]
    return ""


def yaml_error(text: str) -> str:
    m = re.search(r'"error":\s*"((?:[^"\\]|\\.)*)"', text)
    return json.loads(f'"{m.group(1)}"').splitlines()[0][:200] if m else ""


def parse_tap(text: str, res: Result) -> None:
    skip_all = False
    for line in text.splitlines():
        m = TAP_PLAN.match(line.strip())
        if m:
            res.planned = int(m.group(1))
            if res.planned == 0 and "skip" in m.group(2).lower():
                skip_all = True
            continue
        m = TAP_RESULT.match(line)
        if not m:
            continue
        ok = m.group(1) == "ok"
        directive = m.group(3).split("#", 1)[1].strip().lower() if "#" in m.group(3) else ""
        if directive.startswith("skip"):
            res.skipped += 1
        elif directive.startswith("todo"):
            res.todo += 1
        elif ok:
            res.passed += 1
        else:
            res.failed += 1
            if not res.first_failure:
                res.first_failure = line.strip()
    if skip_all and not (res.passed or res.failed):
        res.skipped = max(res.skipped, 1)


def containers_in(runtime: str, tmpdir: str) -> list[str]:
    """Ids of the runtime's containers (default root) whose bundle lies under
    tmpdir, i.e. that this program created: nobody else's are touched."""
    try:
        p = subprocess.run([runtime, "list", "--format", "json"], capture_output=True, text=True, timeout=30)
        items = json.loads(p.stdout or "null") or [] if p.returncode == 0 else []
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return []
    prefix = os.path.realpath(tmpdir).rstrip("/") + "/"
    return sorted(c["id"] for c in items
                  if os.path.realpath(c.get("bundle", "") or "/nonexistent").startswith(prefix))


def mounts_under(path: str) -> list[str]:
    res = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                mp = line.split()[4].replace("\\040", " ")
                if mp == path or mp.startswith(path.rstrip("/") + "/"):
                    res.append(mp)
    except OSError:
        pass
    return res


# cgroups the validation programs ask for (runtime-tools cgroups.AbsCgroupPath
# and the first component of RelCgroupPath); runtimes remove only the leaf.
CGROUP_NAMES = ("cgrouptest", "testdir")


def cgroup_dirs() -> set[str]:
    res = set()
    base = "/sys/fs/cgroup"
    roots = [base] + [os.path.join(base, d) for d in (os.listdir(base) if os.path.isdir(base) else [])]
    for r in roots:
        for name in CGROUP_NAMES:
            p = os.path.join(r, name)
            if os.path.isdir(p) and not os.path.islink(r):
                res.add(p)
    return res


def remove_cgroups(paths) -> list[str]:
    """rmdir the cgroup trees (deepest first); a cgroup still holding processes
    stays and is reported."""
    left = []
    for top in sorted(paths):
        for dirpath, _dirs, _files in sorted(os.walk(top, topdown=False), key=lambda t: -len(t[0])):
            try:
                os.rmdir(dirpath)
            except OSError:
                left.append(dirpath)
    return left


def remove_tree(path: str) -> None:
    for mp in sorted(mounts_under(path), key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], capture_output=True)
    shutil.rmtree(path, ignore_errors=True)


# Host device nodes a runtime must never touch. crun 1.8 chowns the
# container's stdio to the container user even when it is /dev/null (the
# programs run with stdin on /dev/null), which changes the host's /dev/null;
# the runner puts owner and mode back and says so, so that one runtime's
# run cannot break the next.
HOST_NODES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty")


def node_modes() -> dict[str, tuple[int, int, int]]:
    out = {}
    for p in HOST_NODES:
        try:
            st = os.stat(p)
        except OSError:
            continue
        out[p] = (st.st_uid, st.st_gid, st.st_mode & 0o7777)
    return out


def restore_nodes(before: dict[str, tuple[int, int, int]]) -> list[str]:
    """Put back owner/mode of HOST_NODES that changed; returns what changed."""
    changed = []
    for p, (uid, gid, mode) in before.items():
        try:
            st = os.stat(p)
        except OSError:
            continue
        if (st.st_uid, st.st_gid, st.st_mode & 0o7777) != (uid, gid, mode):
            changed.append(f"{p} {st.st_uid}:{st.st_gid} {st.st_mode & 0o7777:o}")
            os.chown(p, uid, gid)
            os.chmod(p, mode)
    return changed


def run_program(prog: str, runtime: str, support: str, timeout: float, tmp_root: str) -> Result:
    name = os.path.basename(prog)[:-2]
    res = Result(name)
    nodes = node_modes()
    tmpdir = tempfile.mkdtemp(prefix=f"{name}-", dir=tmp_root)
    os.chmod(tmpdir, 0o755)  # user-namespace tests: mapped ids must reach the bundles
    env = dict(os.environ, RUNTIME=runtime, TMPDIR=tmpdir)
    start = time.monotonic()
    proc = subprocess.Popen([prog], cwd=support, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace", start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        res.exit_code = proc.returncode
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, _ = proc.communicate()
        res.exit_code = None
        res.status = "TIMEOUT"
    res.duration = time.monotonic() - start
    res.log = out
    parse_tap(out, res)
    # leftovers: containers the program created and did not delete, bundles
    for cid in containers_in(runtime, tmpdir):
        res.leftovers.append(cid)
        subprocess.run([runtime, "delete", "--force", cid], capture_output=True, timeout=60)
    remove_tree(tmpdir)
    res.host_changes = restore_nodes(nodes)
    if res.status != "TIMEOUT":
        ran = res.passed + res.failed + res.todo
        if res.failed:
            res.status = "FAIL"
        elif res.exit_code not in (0, None) and not ran:
            res.status = "ERROR"
            res.first_failure = res.first_failure or first_error_line(out) or f"exit status {res.exit_code}"
        elif res.exit_code != 0:
            res.status = "FAIL"
            res.first_failure = res.first_failure or first_error_line(out) or f"exit status {res.exit_code}"
        elif res.planned is not None and ran + res.skipped < res.planned:
            res.status = "FAIL"
            res.first_failure = f"plan 1..{res.planned} but {ran + res.skipped} results"
        elif ran == 0 and res.skipped == 0 and yaml_error(out):
            # some runtime-tools programs report a failure only as a YAML
            # "error" after "1..0"
            res.status = "FAIL"
            res.failed = 1
            res.first_failure = yaml_error(out)
        elif ran == 0 and res.skipped == 0:
            # no assertion and no complaint (e.g. the lifecycle programs that
            # print only on failure)
            res.status = "EMPTY"
        elif ran == 0:
            res.status = "SKIP"
        else:
            res.status = "PASS"
    elif not res.first_failure:
        res.first_failure = f"timed out after {timeout:.0f}s"
    return res


def print_table(results: list[Result], runtime: str) -> None:
    headers = ("program", "pass", "fail", "skip", "status", "first failure")
    rows = [(r.name, str(r.passed), str(r.failed), str(r.skipped), r.status,
             (r.first_failure[:90] + ("…" if len(r.first_failure) > 90 else ""))
             + (f" [left {len(r.leftovers)} container(s)]" if r.leftovers else "")
             + (f" [changed host {', '.join(r.host_changes)}; restored]" if r.host_changes else ""))
            for r in results]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    print(f"runtime-tools validation against {runtime}")
    print("  ".join(h.ljust(widths[i]) for i, h in enumerate(headers)).rstrip())
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(v.ljust(widths[i]) for i, v in enumerate(row)).rstrip())
    n = {s: sum(1 for r in results if r.status == s) for s in ("PASS", "FAIL", "SKIP", "EMPTY", "ERROR", "TIMEOUT")}
    print("  ".join("-" * w for w in widths))
    print(f"programs: {len(results)}  " + "  ".join(f"{k.lower()}: {v}" for k, v in n.items()))
    print(f"assertions: pass {sum(r.passed for r in results)}, fail {sum(r.failed for r in results)}, "
          f"skip {sum(r.skipped for r in results)}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", nargs="?", default="", help="directory with built validation programs")
    ap.add_argument("--runtime", default=os.environ.get("RUNTIME") or DEFAULT_RUNTIME,
                    help="runtime binary (default: the repo's pyrunc)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per program (default 120)")
    ap.add_argument("--only", default="", help="comma-separated program names to run")
    ap.add_argument("--log-dir", default="", help="keep each program's TAP output here")
    ap.add_argument("--json", default="", help="write the results as JSON to this file")
    a = ap.parse_args(argv)

    if not a.dir or not os.path.isdir(a.dir):
        print(f"runtime-tools: no validation programs directory ({a.dir or 'none given'}); nothing to run")
        return 0
    progs = find_programs(a.dir)
    if a.only:
        wanted = set(a.only.split(","))
        progs = [p for p in progs if os.path.basename(p)[:-2] in wanted]
    if not progs:
        print(f"runtime-tools: no validation programs (*.t) under {a.dir}; nothing to run")
        return 0
    support = find_support_dir(a.dir)
    if not support:
        print(f"runtime-tools: {a.dir} has programs but no runtimetest and rootfs-{go_arch()}.tar.gz "
              "(run `make runtimetest` in the runtime-tools checkout)", file=sys.stderr)
        return 2
    runtime = shutil.which(a.runtime) or a.runtime
    runtime = os.path.abspath(runtime)
    if not os.access(runtime, os.X_OK):
        print(f"runtime-tools: runtime {runtime} is not executable", file=sys.stderr)
        return 2

    tmp_root = tempfile.mkdtemp(prefix="runtime-tools-")
    os.chmod(tmp_root, 0o755)
    cgroups_before = cgroup_dirs()
    results = []
    try:
        for i, prog in enumerate(progs, 1):
            print(f"[{i}/{len(progs)}] {os.path.basename(prog)[:-2]}", file=sys.stderr, flush=True)
            r = run_program(prog, runtime, support, a.timeout, tmp_root)
            results.append(r)
            if a.log_dir:
                os.makedirs(a.log_dir, exist_ok=True)
                with open(os.path.join(a.log_dir, f"{r.name}.tap"), "w") as f:
                    f.write(r.log)
    finally:
        remove_tree(tmp_root)
        new_cgroups = cgroup_dirs() - cgroups_before
        left = remove_cgroups(new_cgroups)
    print_table(results, runtime)
    if new_cgroups:
        print(f"removed {len(new_cgroups) - len(left)} cgroup tree(s) the runtime left behind: "
              + ", ".join(sorted(new_cgroups)[:4]) + (" …" if len(new_cgroups) > 4 else ""))
    if left:
        print(f"could not remove (still in use?): {', '.join(left)}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump([r.as_dict() for r in results], f, indent=1)
    return 1 if any(r.status in ("FAIL", "ERROR", "TIMEOUT") for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
