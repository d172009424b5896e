"""engine group: `pyimg run --rm` of busybox /bin/true (the whole engine path:
record, bundle, conmon, the runtime, the exit command, removal) with
--runtime pyrunc and runc, beside `podman run --rm` (conmon + runc too) on
the same image. Every container has --network none: the bench touches no
interface of the host's."""
from __future__ import annotations

import os
import shutil
import tempfile

import harness as H
import images as I
from g_image import _rmtree
from runtimes import PYRUNC

PYIMG = os.path.join(os.path.dirname(PYRUNC), "pyimg")


def run(args, report: H.Report):
    if not shutil.which("conmon"):
        report.note("engine group skipped: conmon not installed")
        return
    H.become_subreaper()
    tmp = tempfile.mkdtemp(prefix="pyrunc-bench-engine-", dir="/var/tmp")
    H.CLEANUP.push(_rmtree, tmp)
    archive = I.busybox_archive(tmp)
    store = os.path.join(tmp, "store")
    H.run([PYIMG, "--root", store, "load", "-i", archive]).check()
    image = "docker.io/bench/busybox:latest"
    failures = {}

    def pyimg(runtime):
        def f():
            r = H.run([PYIMG, "--root", store, "run", "--rm", "--network", "none", "--runtime", runtime, image,
                       "/bin/true"], timeout=120)
            if r.rc != 0:
                failures.setdefault(f"pyimg/{runtime}", r.err.decode(errors="replace").strip()[-300:])
                return {"wall": None}
            return {"wall": r.wall}
        return f
    variants = {"pyimg + pyrunc": pyimg("pyrunc"), "pyimg + runc": pyimg("runc")}
    podman = shutil.which("podman")
    if podman:
        proot, prun = os.path.join(tmp, "podman-root"), os.path.join(tmp, "podman-run")
        base = [podman, "--root", proot, "--runroot", prun, "--cgroup-manager", "cgroupfs",
                "--events-backend", "file", "--runtime", shutil.which("runc")]
        if H.run(base + ["load", "-q", "-i", archive], timeout=120).rc == 0:
            def pod():
                # (this host lacks CAP_SYS_RESOURCE: podman must not raise the nofile limit)
                r = H.run(base + ["run", "--rm", "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096", image,
                                  "/bin/true"], timeout=120)
                if r.rc != 0:
                    failures.setdefault("podman", r.err.decode(errors="replace").strip()[-300:])
                    return {"wall": None}
                return {"wall": r.wall}
            variants["podman + runc"] = pod
            H.CLEANUP.push(lambda: H.run(base + ["rm", "-af"], timeout=120))
        else:
            report.note("engine group: podman could not load the image; podman left out")
    s = H.interleaved(variants, args.rounds, args.warmup, metrics=("wall",))
    ref = "podman + runc" if "podman + runc" in variants else "pyimg + runc"
    rows = []
    for v in variants:
        vals = s["wall"].values(v)
        rows.append([v, H.fmt_ms(s["wall"].med(v)), H.fmt_ms(min(vals)) if vals else "-",
                     H.fmt_ms(max(vals)) if vals else "-",
                     "-" if v == ref else H.fmt_ratio(s["wall"].ratio(v, ref)), str(len(vals))])
    notes = [f"`run --rm --network none IMAGE /bin/true`, wall of the client process; ratio to {ref}",
             "crun is left out: crun 1.8 refuses this host's hybrid cgroups (see the runtime group)"]
    for k, e in failures.items():
        notes.append(f"{k}: some runs failed: {e}")
    report.section(f"engine: run --rm busybox /bin/true ({args.rounds} rounds, {args.warmup} warm-up)",
                   ["engine + runtime", "median ms", "min", "max", f"/{ref}", "ok runs"], rows, notes)
