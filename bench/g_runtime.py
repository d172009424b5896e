"""Runtime group: pyrunc against runc and crun on a busybox bundle."""
from __future__ import annotations

import os
import random
import shutil
import time

import harness as H
from runtimes import PYRUNC, CrunNamespace, Runtime, make_bundle, make_tmp, state_dir, wait_pid_file


class Ctx:
    def __init__(self, args, report: H.Report):
        self.args, self.report = args, report
        self.tmp = make_tmp()
        self.state = state_dir()
        self.bundle = make_bundle(os.path.join(self.tmp, "bundle"))
        self.sleeper = make_bundle(os.path.join(self.tmp, "sleeper"), args=("/bin/sleep", "100000"))
        self.tag = "%04x" % random.randrange(0x10000)
        self.n = 0
        self.rts: dict[str, Runtime] = {}
        H.CLEANUP.push(self.sweep_cgroups)  # LIFO: runs after the runtimes' cleanup
        self.rts["pyrunc"] = Runtime("pyrunc", PYRUNC, os.path.join(self.state, "pyrunc"))
        self.rts["runc"] = Runtime("runc", shutil.which("runc"), os.path.join(self.state, "runc"))
        crun = shutil.which("crun")
        if crun:
            ns = CrunNamespace()
            H.CLEANUP.push(ns.close)
            self.rts["crun"] = Runtime("crun", crun, os.path.join(self.state, "crun"), ns.fd)
        else:
            report.note("crun not installed: skipped")
        if getattr(args, "pyrunc_base", None):
            # another pyrunc (say, a checkout of an earlier commit) in the same
            # interleaved run: what a change costs or saves, under the same load
            self.rts["pyrunc-base"] = Runtime("pyrunc-base", os.path.abspath(args.pyrunc_base),
                                              os.path.join(self.state, "pyrunc-base"))
        for rt in self.rts.values():
            H.CLEANUP.push(rt.cleanup)
        self.refs = [r for r in ("runc", "crun", "pyrunc-base") if r in self.rts]

    def sweep_cgroups(self):
        """Remove cgroups our containers left behind (and say so)."""
        import glob
        left = sorted(glob.glob(f"/sys/fs/cgroup/*/b{self.tag}-*") + glob.glob(f"/sys/fs/cgroup/b{self.tag}-*"))
        if left:
            names = sorted({os.path.basename(p) for p in left})
            print(f"note: {len(names)} containers' cgroups were left behind after delete: {names[:5]}",
                  flush=True)
        for p in sorted(left, key=len, reverse=True):
            try:
                os.rmdir(p)
            except OSError:
                pass

    def cid(self, rt: Runtime) -> str:
        # Unique across runtimes: with cgroup v1 and no cgroupsPath every
        # runtime uses /<id> in each hierarchy.
        self.n += 1
        return f"b{self.tag}-{rt.name}-{self.n}"

    def pidfile(self, cid):
        return os.path.join(self.tmp, f"{cid}.pid")


# ------------------------------------------------------------------ helpers

def _create(ctx: Ctx, rt: Runtime, bundle=None):
    cid = ctx.cid(rt)
    pf = ctx.pidfile(cid)
    r = rt.create(cid, bundle or ctx.bundle, pf)
    pid = wait_pid_file(pf)
    os.unlink(pf)
    return cid, pid, r


def _force_delete(rt, cid, pid=None):
    rt.run("delete", "--force", cid, check=False)
    if pid:
        try:
            H.reaper().wait(pid, 10)
        except TimeoutError:
            H.kill_pid(pid)


def _cycle(ctx: Ctx, rt: Runtime) -> dict:
    t0 = time.perf_counter()
    cid, pid, c = _create(ctx, rt)
    s = rt.run("start", cid)
    ex = H.reaper().wait(pid, 30)
    d = rt.run("delete", cid)
    wall = time.perf_counter() - t0
    if ex.rc != 0:
        raise RuntimeError(f"{rt.name}: /bin/true exited {ex.rc}")
    return {"wall": wall, "create": c.wall, "start": s.wall, "delete": d.wall,
            "rss": max(c.maxrss_kb, s.maxrss_kb, d.maxrss_kb)}


def _rows(ctx, series, variants, time_fmt=H.fmt_ms, extra=None):
    rows = []
    for v in variants:
        w = series["wall"]
        vals = w.values(v)
        row = [v, time_fmt(w.med(v)), time_fmt(min(vals)) if vals else "-", time_fmt(max(vals)) if vals else "-"]
        for ref in ctx.refs:
            row.append("-" if v == ref else H.fmt_ratio(w.ratio(v, ref)))
        if "rss" in series:
            row.append(H.fmt_mb(series["rss"].med(v)))
        if extra:
            row += extra(v)
        rows.append(row)
    return rows


def _header(ctx, unit="ms", rss=True, extra=()):
    h = ["runtime", f"median {unit}", "min", "max"] + [f"/{r}" for r in ctx.refs]
    if rss:
        h.append("peak RSS MB")
    return h + list(extra)


# ------------------------------------------------------------------ benchmarks

def bench_cycle(ctx: Ctx):
    a = ctx.args
    variants = {n: (lambda rt=rt: _cycle(ctx, rt)) for n, rt in ctx.rts.items()}
    s = H.interleaved(variants, a.rounds, a.warmup, metrics=("wall", "create", "start", "delete", "rss"))

    def extra(v):
        return [H.fmt_ms(s["create"].med(v)), H.fmt_ms(s["start"].med(v)), H.fmt_ms(s["delete"].med(v))]
    ctx.report.section(
        f"Runtime: one create -> start -> exit -> delete cycle of /bin/true ({a.rounds} rounds, {a.warmup} warm-up)",
        _header(ctx, extra=("create ms", "start ms", "delete ms")),
        _rows(ctx, s, ctx.rts, extra=extra),
        ["wall = create + start + wait for init's exit (reaped by the harness as subreaper) + delete; "
         "peak RSS = max ru_maxrss of the three runtime processes"])


def bench_verbs(ctx: Ctx):
    a = ctx.args
    r = H.reaper()
    rows_all = []
    init_rss = {}

    def v_create(rt):
        cid, pid, c = _create(ctx, rt)
        time.sleep(0.02)  # let the init settle in its wait
        init_rss.setdefault(rt.name, []).append((H.vm_rss_kb(pid), H.pss_kb(pid)))
        _force_delete(rt, cid, pid)
        return {"wall": c.wall, "rss": c.maxrss_kb, "cpu": c.cpu}

    def v_start(rt):
        cid, pid, _ = _create(ctx, rt)
        s = rt.run("start", cid)
        r.wait(pid, 30)
        rt.run("delete", cid)
        return {"wall": s.wall, "rss": s.maxrss_kb, "cpu": s.cpu}

    def v_kill(rt):
        cid, pid, _ = _create(ctx, rt)
        k = rt.run("kill", cid, "KILL")
        r.wait(pid, 30)
        rt.run("delete", cid)
        return {"wall": k.wall, "rss": k.maxrss_kb, "cpu": k.cpu}

    def v_delete(rt):
        cid, pid, _ = _create(ctx, rt)
        rt.run("start", cid)
        r.wait(pid, 30)
        d = rt.run("delete", cid)
        return {"wall": d.wall, "rss": d.maxrss_kb, "cpu": d.cpu}

    def v_delete_force(rt):
        cid, pid, _ = _create(ctx, rt)
        d = rt.run("delete", "--force", cid)
        r.wait(pid, 30)
        return {"wall": d.wall, "rss": d.maxrss_kb, "cpu": d.cpu}

    standing = {}
    for n, rt in ctx.rts.items():
        standing[n] = _create(ctx, rt)[:2]

    def v_state(rt):
        st = rt.run("state", standing[rt.name][0])
        return {"wall": st.wall, "rss": st.maxrss_kb, "cpu": st.cpu}

    verbs = [("create", v_create), ("start", v_start), ("state (created container)", v_state),
             ("kill KILL (created container)", v_kill), ("delete (stopped container)", v_delete),
             ("delete --force (created container)", v_delete_force)]
    for label, fn in verbs:
        s = H.interleaved({n: (lambda rt=rt, fn=fn: fn(rt)) for n, rt in ctx.rts.items()},
                          a.rounds, a.warmup, metrics=("wall", "rss", "cpu"))
        for row in _rows(ctx, s, ctx.rts, extra=lambda v, s=s: [H.fmt_ms(s["cpu"].med(v))]):
            rows_all.append([label] + row)
    _floor(ctx, standing)
    for n, rt in ctx.rts.items():
        _force_delete(rt, *standing[n])

    # exec, if pyrunc has it
    probe = H.run([PYRUNC, "exec"])
    has_exec = b"No help topic" not in probe.err
    notes = []
    if not has_exec:
        notes.append("exec: skipped, pyrunc has no `exec` verb yet (`pyrunc exec` says: "
                     + (probe.err.decode(errors="replace").strip().splitlines() or ["?"])[-1] + ")")
    else:
        running = {}
        for n, rt in ctx.rts.items():
            cid, pid, _ = _create(ctx, rt, ctx.sleeper)
            rt.run("start", cid)
            running[n] = (cid, pid)

        def timed(res):
            return {"wall": res.wall, "rss": res.maxrss_kb, "cpu": res.cpu}

        def v_exec(rt):
            return timed(rt.run("exec", running[rt.name][0], "/bin/true"))

        def v_ps_json(rt):
            # what containerd's runc shim runs for a task's pids
            return timed(rt.run("ps", "--format", "json", running[rt.name][0]))

        def v_ps_table(rt):
            return timed(rt.run("ps", running[rt.name][0]))

        def v_pause(rt):
            p = rt.run("pause", running[rt.name][0])
            rt.run("resume", running[rt.name][0])
            return timed(p)

        def v_resume(rt):
            rt.run("pause", running[rt.name][0])
            return timed(rt.run("resume", running[rt.name][0]))

        def v_state_running(rt):
            return timed(rt.run("state", running[rt.name][0]))

        for label, fn in (("exec /bin/true (running container)", v_exec),
                          ("state (running container)", v_state_running),
                          ("ps --format json (running container)", v_ps_json),
                          ("ps, table (running container)", v_ps_table),
                          ("pause (running container)", v_pause),
                          ("resume (paused container)", v_resume)):
            s = H.interleaved({n: (lambda rt=rt, fn=fn: fn(rt)) for n, rt in ctx.rts.items()},
                              a.rounds, a.warmup, metrics=("wall", "rss", "cpu"))
            for row in _rows(ctx, s, ctx.rts, extra=lambda v, s=s: [H.fmt_ms(s["cpu"].med(v))]):
                rows_all.append([label] + row)
        for n, rt in ctx.rts.items():
            _force_delete(rt, *running[n])
    ctx.report.section(f"Runtime: each verb alone ({a.rounds} rounds, {a.warmup} warm-up)",
                       ["verb"] + _header(ctx, extra=("CPU ms (user+sys)",)), rows_all,
                       notes + ["peak RSS = ru_maxrss of the runtime process from wait4()"])

    rows = []
    for n in ctx.rts:
        vals = init_rss.get(n, [])
        rows.append([n, H.fmt_mb(H.median([v[0] for v in vals])), H.fmt_mb(H.median([v[1] for v in vals]))])
    ctx.report.section("Runtime: the container's init waiting between create and start",
                       ["runtime", "VmRSS MB", "Pss MB"], rows,
                       ["read from /proc/PID/status and /proc/PID/smaps_rollup of the pid in --pid-file, "
                        "20 ms after create returned; median over the create rounds"])


def _floor(ctx: Ctx, standing: dict):
    """What every pyrunc verb pays before its own code, next to whole
    `state` calls: the launcher's interpreter line doing nothing and ending
    as the verbs do (os._exit), interleaved with pyrunc's and runc's
    `state` of a created container."""
    a = ctx.args
    floor = [*H.python_command(PYRUNC)[:-1], "import posix; posix._exit(0)"]
    variants = {"interpreter floor (no pyrunc code)": lambda: H.run(floor)}
    for n in ("pyrunc", "runc"):
        variants[f"{n} state"] = lambda rt=ctx.rts[n]: rt.run("state", standing[rt.name][0])
    s = H.interleaved({k: (lambda fn=fn: {"wall": fn().wall}) for k, fn in variants.items()},
                      a.rounds, a.warmup)["wall"]
    rows = [[k, H.fmt_ms(s.med(k)), H.fmt_ms(min(s.values(k))), H.fmt_ms(max(s.values(k))),
             "-" if k == "runc state" else H.fmt_ratio(s.ratio(k, "runc state"))] for k in variants]
    ctx.report.section(f"Runtime: the interpreter floor against `state` ({a.rounds} rounds, {a.warmup} warm-up)",
                       ["command", "median ms", "min", "max", "/runc state"], rows,
                       [f"floor: {' '.join(floor[:-2])} -c 'import posix; posix._exit(0)'"])


def bench_many_cycles(ctx: Ctx):
    a = ctx.args
    n = a.cycles

    failed = {}

    def many(rt):
        t0 = time.perf_counter()
        rss = 0
        for _ in range(n):
            try:
                rss = max(rss, _cycle(ctx, rt)["rss"])
            except RuntimeError as e:  # counted and reported; the run goes on
                failed.setdefault(rt.name, []).append(str(e)[-300:])
                for cid in rt.ids():
                    rt.run("delete", "--force", cid, check=False)
        return {"wall": time.perf_counter() - t0, "rss": rss}
    s = H.interleaved({k: (lambda rt=rt: many(rt)) for k, rt in ctx.rts.items()},
                      a.long_rounds, 0, metrics=("wall", "rss"))

    def extra(v):
        m = s["wall"].med(v)
        return ["-" if m is None else f"{n / m:.1f}"]
    notes = [f"{k}: {len(v)} of {n * (a.long_rounds)} cycles failed (counted in the time); last: {v[-1]}"
             for k, v in failed.items()]
    ctx.report.section(f"Runtime: {n} cycles in a row ({a.long_rounds} rounds)",
                       _header(ctx, unit="s", extra=("cycles/s",)),
                       _rows(ctx, s, ctx.rts, time_fmt=H.fmt_s, extra=extra), notes)


def bench_parallel(ctx: Ctx):
    a = ctx.args
    n = a.parallel

    def par(rt):
        ids = [ctx.cid(rt) for _ in range(n)]
        t0 = time.perf_counter()
        procs = [rt.spawn("create", "--bundle", ctx.bundle, "--pid-file", ctx.pidfile(c), c, capture=False)
                 for c in ids]
        res = [p.wait(300) for p in procs]
        wall = time.perf_counter() - t0
        bad = [r for r in res if r.rc != 0]
        pids = []
        for c in ids:
            try:
                pids.append(wait_pid_file(ctx.pidfile(c), 5))
                os.unlink(ctx.pidfile(c))
            except TimeoutError:
                pids.append(None)
        # clean up (untimed)
        dels = [rt.spawn("delete", "--force", c) for c in ids]
        for d in dels:
            d.wait(300)
        for p in pids:
            if p:
                try:
                    H.reaper().wait(p, 10)
                except TimeoutError:
                    pass
        if bad:
            print(f"  {rt.name}: {len(bad)}/{n} parallel creates failed: {bad[0].err[-300:]!r}")
            return {"wall": None, "rss": None}
        return {"wall": wall, "rss": max(r.maxrss_kb for r in res)}
    s = H.interleaved({k: (lambda rt=rt: par(rt)) for k, rt in ctx.rts.items()},
                      a.rounds, 1, metrics=("wall", "rss"))
    ctx.report.section(f"Runtime: {n} creates in parallel ({a.rounds} rounds, 1 warm-up)",
                       _header(ctx), _rows(ctx, s, ctx.rts),
                       [f"wall = from the first spawn until all {n} `create` processes exited; "
                        f"{os.cpu_count()} CPUs"])


def _bulk_create(ctx, rt, count, width=4):
    """Create count containers with `width` creates in flight; returns [(cid, pid)]."""
    out = []
    pending = []
    ids = [ctx.cid(rt) for _ in range(count)]
    i = 0
    while i < len(ids) or pending:
        while i < len(ids) and len(pending) < width:
            c = ids[i]
            pending.append((c, rt.spawn("create", "--bundle", ctx.bundle, "--pid-file", ctx.pidfile(c), c,
                                        capture=False)))
            i += 1
        c, p = pending.pop(0)
        r = p.wait(300)
        if r.rc != 0:
            err = rt.last_stderr()
            rt.failures.append(f"create (bulk): exit {r.rc}: {err}")
            print(f"  {rt.name} create {c} failed ({err[-200:]!r}); retrying once", flush=True)
            rt.run("delete", "--force", c, check=False)
            r = rt.create(c, ctx.bundle, ctx.pidfile(c), check=False)
            if r.rc != 0:
                for _, p2 in pending:  # let in-flight creates finish so cleanup sees them
                    p2.wait(300)
                _bulk_delete(rt, out + [(c2, None) for c2, _ in pending])
                raise RuntimeError(f"{rt.name} create {c} failed twice: {rt.last_stderr()}")
        out.append((c, wait_pid_file(ctx.pidfile(c))))
        os.unlink(ctx.pidfile(c))
    return out


def _bulk_delete(rt, items, width=4):
    pending = []
    for c, pid in items:
        pending.append(rt.spawn("delete", "--force", c))
        if len(pending) >= width:
            pending.pop(0).wait(300)
    for p in pending:
        p.wait(300)
    for c, pid in items:
        if pid is None:
            continue
        try:
            H.reaper().wait(pid, 10)
        except TimeoutError:
            pass


def bench_list(ctx: Ctx):
    a = ctx.args
    want = a.list_n
    notes = []
    # 1. what does one waiting container cost?
    probe = 5
    per = {}
    for n, rt in ctx.rts.items():
        before = H.mem_available_kb()
        items = _bulk_create(ctx, rt, probe, width=1)
        time.sleep(0.2)
        after = H.mem_available_kb()
        pss = [H.pss_kb(pid) or 0 for _, pid in items]
        per[n] = max((before - after) / probe, H.median(pss))
        notes.append(f"{n}: one created container costs ~{per[n] / 1024:.1f} MB "
                     f"(MemAvailable drop over {probe} creates; init Pss {H.median(pss) / 1024:.1f} MB)")
        _bulk_delete(rt, items)
    total_per = sum(per.values())
    avail = H.mem_available_kb()
    budget = avail * 0.5
    n_cont = want
    if total_per * want > budget:
        n_cont = max(10, int(budget / total_per) // 10 * 10)
        notes.append(f"scaled down from {want} to {n_cont} containers per runtime: {want} x "
                     f"{total_per / 1024:.1f} MB would exceed half of MemAvailable ({avail / 1024:.0f} MB)")
    else:
        notes.append(f"{n_cont} containers per runtime need ~{total_per * n_cont / 1024 / 1024:.1f} GB "
                     f"in total (MemAvailable {avail / 1024 / 1024:.1f} GB): no scaling needed")
    # 2. create n_cont per runtime, all alive at once, then interleave `list`
    made = {}
    try:
        for n, rt in ctx.rts.items():
            t0 = time.perf_counter()
            made[n] = _bulk_create(ctx, rt, n_cont)
            notes.append(f"{n}: created {n_cont} containers in {time.perf_counter() - t0:.1f} s "
                         f"(4 creates in flight)")
            print(f"  {notes[-1]}", flush=True)
        used = H.mem_available_kb()
        notes.append(f"MemAvailable with all {n_cont * len(ctx.rts)} containers waiting: {used / 1024:.0f} MB "
                     f"(was {avail / 1024:.0f} MB)")

        def lst(rt, *extra):
            r = rt.run("list", *extra)
            lines = r.out.decode().strip().splitlines()
            expect = n_cont + (0 if extra else 1)
            if len(lines) != expect:
                raise RuntimeError(f"{rt.name} list printed {len(lines)} lines, expected {expect}")
            return {"wall": r.wall, "rss": r.maxrss_kb}
        rows = []
        for label, extra in (("list (table)", ()), ("list -q", ("-q",))):
            s = H.interleaved({k: (lambda rt=rt: lst(rt, *extra)) for k, rt in ctx.rts.items()},
                              a.rounds, 1, metrics=("wall", "rss"))
            rows += [[label] + r for r in _rows(ctx, s, ctx.rts)]
        ctx.report.section(f"Runtime: `list` with {n_cont} created containers per runtime "
                           f"({a.rounds} rounds, 1 warm-up)", ["call"] + _header(ctx), rows, notes)
    finally:
        for n, items in made.items():
            _bulk_delete(ctx.rts[n], items)


def run(args, report: H.Report):
    H.become_subreaper()
    ctx = Ctx(args, report)
    steps = {"cycle": bench_cycle, "verbs": bench_verbs, "many": bench_many_cycles,
             "parallel": bench_parallel, "list": bench_list}
    for name, fn in steps.items():
        if args.runtime_steps and name not in args.runtime_steps:
            continue
        print(f"-- runtime/{name} ...", flush=True)
        try:
            fn(ctx)
        except KeyboardInterrupt:
            raise
        except Exception as e:  # noqa: BLE001 - report and go on with the next benchmark
            import traceback
            traceback.print_exc()
            report.note(f"runtime/{name} failed: {type(e).__name__}: {str(e)[:500]}")
    for rt in ctx.rts.values():
        if rt.failures:
            report.note(f"{rt.name}: {len(rt.failures)} failed calls during the runtime group; "
                        f"last: {rt.failures[-1]}")
