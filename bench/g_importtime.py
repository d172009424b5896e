"""Import-time profile: `python -X importtime` of each pyrunc verb's path."""
from __future__ import annotations

import os
import re

import harness as H
from runtimes import PYRUNC, Runtime, make_bundle, make_tmp, state_dir, wait_pid_file

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = os.path.join(REPO, ".venv", "bin", "python")
LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")
RESULTS = H.OUT  # raw profiles, next to the run's tables


def parse(stderr: str):
    mods = []
    for line in stderr.splitlines():
        m = LINE.match(line)
        if m:
            mods.append((m.group(4), int(m.group(1)), int(m.group(2)), (len(m.group(3)) - 1) // 2))
    return mods


def _first_party(name):
    return name.split(".")[0] in ("runtime", "imagetool")


def run(args, report: H.Report):
    H.become_subreaper()
    tmp = make_tmp()
    bundle = make_bundle(os.path.join(tmp, "bundle"))
    sleeper = make_bundle(os.path.join(tmp, "sleeper"), args=("/bin/sleep", "100000"))
    rt = Runtime("pyrunc", PYRUNC, os.path.join(state_dir(), "pyrunc"))
    H.CLEANUP.push(rt.cleanup)
    os.makedirs(RESULTS, exist_ok=True)
    n = [0]

    def new_id():
        n[0] += 1
        return f"imp{os.getpid()}-{n[0]}"

    def created():
        cid = new_id()
        pf = os.path.join(tmp, cid + ".pid")
        rt.create(cid, bundle, pf)
        return cid, wait_pid_file(pf)

    # as the installed command runs it (its interpreter flags), plus importtime
    base = [*H.python_command(PYRUNC, "-X", "importtime"), "--root", rt.root]
    reps = 3

    def prof(label, make_argv, after=None):
        """Run `reps` times (fresh state each), keep the last profile and the median wall."""
        walls, mods = [], None
        for _ in range(reps):
            argv, ctx = make_argv()
            res = H.run(base + argv)
            walls.append(res.wall)
            if after:
                after(ctx)
            mods = parse(res.err.decode(errors="replace"))
        return label, H.median(walls), mods

    results = []
    # state / kill / delete / start on fresh created containers
    cid_state, pid_state = created()
    results.append(prof("state", lambda: (["state", cid_state], None)))
    results.append(prof("list", lambda: (["list"], None)))

    def mk_start():
        cid, pid = created()
        return ["start", cid], (cid, pid)

    def after_start(c):
        H.reaper().wait(c[1], 30)
        rt.run("delete", "--force", c[0], check=False)
    results.append(prof("start", mk_start, after_start))

    def mk_kill():
        cid, pid = created()
        return ["kill", cid, "KILL"], (cid, pid)
    results.append(prof("kill", mk_kill, after_start))

    def mk_delete():
        cid, pid = created()
        rt.run("start", cid)
        H.reaper().wait(pid, 30)
        return ["delete", cid], None
    results.append(prof("delete", mk_delete))

    # create: the init inherits stderr, so the profile goes to a file.
    def prof_create():
        walls, mods = [], None
        for _ in range(reps):
            cid = new_id()
            pf = os.path.join(tmp, cid + ".pid")
            errf = os.path.join(tmp, "create-err.txt")
            with open(errf, "wb") as ef:
                p = H.spawn(base + ["create", "--bundle", bundle, "--pid-file", pf, cid], capture=False,
                            stderr_fd=ef.fileno())
                res = p.wait(120)
            pid = wait_pid_file(pf)
            walls.append(res.wall)
            rt.run("delete", "--force", cid, check=False)
            H.reaper().wait(pid, 30)
            with open(errf, encoding="utf-8", errors="replace") as f:
                mods = parse(f.read())
        return "create", H.median(walls), mods
    results.append(prof_create())

    probe = H.run([PYRUNC, "exec"])
    if b"No help topic" not in probe.err:
        scid = new_id()
        pf = os.path.join(tmp, scid + ".pid")
        rt.create(scid, sleeper, pf)
        spid = wait_pid_file(pf)
        rt.run("start", scid)
        results.append(prof("exec", lambda: (["exec", scid, "/bin/true"], None)))
        results.append(prof("ps --format json", lambda: (["ps", "--format", "json", scid], None)))
        results.append(prof("ps (table)", lambda: (["ps", scid], None)))
        results.append(prof("pause", lambda: (["pause", scid], None), lambda _c: rt.run("resume", scid)))
        rt.run("delete", "--force", scid, check=False)
        H.reaper().wait(spid, 30)

    def mk_spec():
        d = make_tmp("pyrunc-bench-spec-")
        return ["spec", "--bundle", d], None
    results.append(prof("spec", mk_spec))
    results.append(prof("--version", lambda: (["--version"], None)))
    rt.run("delete", "--force", cid_state, check=False)
    H.reaper().wait(pid_state, 30)

    # pyimg's per-call cost (every pull/unpack pays it)
    pyimg = os.path.join(REPO, ".venv", "bin", "pyimg")
    store = os.path.join(tmp, "pyimg-store")
    walls, mods = [], None
    for _ in range(reps):
        res = H.run([*H.python_command(pyimg, "-X", "importtime"), "--root", store, "images"])
        walls.append(res.wall)
        mods = parse(res.err.decode(errors="replace"))
    results.append(("pyimg images (empty store)", H.median(walls), mods))

    # baselines: the interpreter alone. The floor of every verb is the
    # launcher's interpreter line doing nothing and ending as the verbs do
    # (os._exit, no teardown).
    base_rows = []
    floor = [*H.python_command(PYRUNC)[:-1], "import posix; posix._exit(0)"]
    for label, argv in (("python -c pass (venv)", [PY, "-c", "pass"]),
                        ("python -I -S -c pass", [PY, "-I", "-S", "-c", "pass"]),
                        (f"python {' '.join(H.python_flags(PYRUNC))} -c 'posix._exit(0)' (the floor)", floor),
                        ("pyrunc --version (as installed)", [PYRUNC, "--version"])):
        walls = [H.run(argv).wall for _ in range(21)]
        base_rows.append([label, H.fmt_ms(H.median(walls))])

    rows = []
    detail = []
    for label, wall, mods in results:
        if not mods:
            rows.append([label, H.fmt_ms(wall), "-", "-", "-", "no importtime output"])
            continue
        total = sum(m[1] for m in mods) / 1000
        ours = sum(m[1] for m in mods if _first_party(m[0])) / 1000  # runtime.* / imagetool.*
        top = sorted((m for m in mods if m[3] == 0), key=lambda m: -m[2])[:6]
        rows.append([label, H.fmt_ms(wall), f"{total:.1f}", f"{ours:.1f}", str(len(mods)),
                     ", ".join(f"{m[0]} {m[2] / 1000:.1f}" for m in top)])
        fname = label.strip("-").split(" (")[0].replace(" ", "-")
        with open(os.path.join(RESULTS, f"importtime-{fname}.txt"), "w") as f:
            f.write(f"# python -X importtime pyrunc {label}; self_us cumulative_us module\n")
            for m in mods:
                f.write(f"{m[1]:8d} {m[2]:8d} {'  ' * m[3]}{m[0]}\n")
        if label in ("state", "create", "start", "delete") or label.startswith("pyimg"):
            for m in sorted(mods, key=lambda m: -m[1])[:12]:
                detail.append([label, m[0], f"{m[1] / 1000:.2f}", f"{m[2] / 1000:.2f}"])
    report.section("Import time: python -X importtime of each pyrunc verb, with the console script's own "
                   f"interpreter flags ({' '.join(H.python_flags(PYRUNC)) or 'none'}) "
                   "(median wall of 3; profile of the last)",
                   ["verb", "wall ms (with -X importtime)", "imports total ms", "of which runtime.*/imagetool.* self ms",
                    "modules", "top-level imports by cumulative ms"], rows,
                   [f"raw profiles: {os.path.join(RESULTS, 'importtime-VERB.txt')}",
                    "measured as installed: compileall has been run (PYTHONDONTWRITEBYTECODE=1 is set here, "
                    "so without it every call would compile)"])
    report.section("Import time: biggest single modules (self time) on the hot verbs",
                   ["verb", "module", "self ms", "cumulative ms"], detail)
    report.section("Interpreter start-up alone (median of 21)", ["command", "wall ms"], base_rows)
