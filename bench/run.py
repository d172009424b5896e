#!/usr/bin/env python3
"""pyrunc/pyimg benchmarks side by side with runc, crun, skopeo + umoci and
containerd (`just bench ARGS`).

Groups (--only, comma separated; default all):
  runtime     pyrunc vs runc vs crun on a busybox bundle: one lifecycle,
              each verb, N cycles in a row, parallel creates, `list` with
              many containers, peak RSS of each verb and of the waiting init
  importtime  python -X importtime of each pyrunc verb, top costs
  image       pyimg pull/unpack vs skopeo copy + umoci unpack from a local
              docker-registry (busybox, debian minbase, 6 layers w/ whiteouts)
  containerd  on a private containerd: pyrunc's shim (io.containerd.pyrunc.v1)
              vs containerd's runc shim with runc and with pyrunc as its
              binary; steps (--containerd-steps): run (`ctr run --rm`
              busybox /bin/true), parallel (--ctr-parallel at once), memory
              (RSS and PSS of the shims, with the pyrunc shim's zygote,
              per running container, one shim each and one group)
  engine      `pyimg run --rm` with pyrunc and runc underneath, beside
              `podman run --rm`

Every benchmark interleaves the variants (A B A B ...), after a warm-up,
and prints medians and the median of the per-round ratios.
Outputs go to bench/out/ (ignored by git) unless --markdown/--json say
otherwise. Needs root.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness as H  # noqa: E402

REPO = os.path.dirname(HERE)
# image last: with --image-fs root its clean-up deletes tens of thousands of
# files, which slows file creation on this machine's journal-less ext4 for
# minutes (g_image.Ctx)
GROUPS = ("runtime", "importtime", "containerd", "engine", "image")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default=",".join(GROUPS),
                   help=f"comma-separated groups: {','.join(GROUPS)} (default: all)")
    p.add_argument("--runtime-steps", default="",
                   help="subset of the runtime group: cycle,verbs,many,parallel,list")
    p.add_argument("--containerd-steps", default="",
                   help="subset of the containerd group: run,parallel,memory")
    p.add_argument("--ctr-parallel", type=int, default=50,
                   help="containerd group: `ctr run --rm` started at once (default 50)")
    p.add_argument("--ctr-mem-n", type=int, default=10,
                   help="containerd group: running containers per shim for the memory step (default 10)")
    p.add_argument("--rounds", type=int, default=None, help="measured rounds per benchmark (default 11, quick 3)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up rounds (default 2, quick 1)")
    p.add_argument("--long-rounds", type=int, default=None,
                   help="rounds for the long benchmarks: N cycles in a row, big image pulls, parallel "
                        "`ctr run` (default 3, quick 1)")
    p.add_argument("--cycles", type=int, default=None, help="cycles in a row (default 100, quick 20)")
    p.add_argument("--parallel", type=int, default=20, help="parallel creates (default 20)")
    p.add_argument("--list-n", type=int, default=None, help="containers for `list` (default 500, quick 100)")
    p.add_argument("--quick", action="store_true", help="fewer rounds and smaller sizes (a smoke run)")
    p.add_argument("--pyrunc-base", default=None, metavar="PYRUNC",
                   help="runtime group: also measure this pyrunc launcher (e.g. an earlier commit's "
                        ".venv/bin/pyrunc in a git worktree), interleaved, with ratios against it")
    p.add_argument("--state-on-disk", action="store_true",
                   help="keep the runtimes' --root in a plain directory under /run instead of a private tmpfs")
    p.add_argument("--no-debian", action="store_true", help="image group: busybox only (no debootstrap)")
    p.add_argument("--pyimg-base", default=None, metavar="PYIMG",
                   help="image group: also measure this pyimg launcher (e.g. an earlier commit's "
                        ".venv/bin/pyimg in a git worktree) in the pull and pull + unpack cases, interleaved")
    p.add_argument("--image-cases", default="",
                   help="image group: only these cases, comma separated, of pull, unpack, both (pull + unpack), "
                        "second (a second bundle), shared (a second image on a shared base) (default: all)")
    p.add_argument("--images", default="",
                   help="image group: only these images, comma separated, of busybox, spread1, spread20 "
                        "(the same files in 1 and 20 layers), debian, layered (default: all)")
    p.add_argument("--image-fs", choices=("loop", "root"), default="loop",
                   help="image group: run on a fresh ext4 with a journal on a loop device (loop, default) "
                        "or under /var/tmp on the root filesystem (root; see g_image.Ctx)")
    p.add_argument("--markdown", default=os.path.join(H.OUT, "latest.md"),
                   help="write the tables here as markdown (default bench/out/latest.md, not tracked by git)")
    p.add_argument("--json", default=os.path.join(H.OUT, "latest.json"),
                   help="write machine info and tables here (default bench/out/latest.json, not tracked by git)")
    a = p.parse_args(argv)
    q = a.quick
    a.rounds = a.rounds if a.rounds is not None else (3 if q else 11)
    a.warmup = a.warmup if a.warmup is not None else 1 if q else 2
    a.long_rounds = a.long_rounds if a.long_rounds is not None else (1 if q else 3)
    a.cycles = a.cycles if a.cycles is not None else (20 if q else 100)
    a.list_n = a.list_n if a.list_n is not None else (100 if q else 500)
    a.only = [g.strip() for g in a.only.split(",") if g.strip()]
    bad = [g for g in a.only if g not in GROUPS]
    if bad:
        p.error(f"unknown group(s): {', '.join(bad)}")
    a.runtime_steps = [s for s in a.runtime_steps.split(",") if s]
    a.containerd_steps = [s for s in a.containerd_steps.split(",") if s]
    bad = [s for s in a.containerd_steps if s not in ("run", "parallel", "memory")]
    if bad:
        p.error(f"unknown containerd step(s): {', '.join(bad)}")
    if a.state_on_disk:
        os.environ["PYRUNC_BENCH_STATE_ON_DISK"] = "1"
    return a


def main(argv=None) -> int:
    a = parse_args(sys.argv[1:] if argv is None else argv)
    if os.geteuid() != 0:
        print("bench: needs root", file=sys.stderr)
        return 2
    # SIGTERM/SIGINT -> exceptions, so cleanup always runs.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    info = H.machine_info(REPO)  # before the reaper thread owns wait()
    print("machine:")
    for k, v in info.items():
        print(f"  {k:11} {v}")
    if not any(os.path.exists(os.path.join(d, "__pycache__")) for d in
               (os.path.join(REPO, "runtime"), os.path.join(REPO, "imagetool"))):
        print("warning: no __pycache__ in runtime/ or imagetool/: run "
              "`.venv/bin/python -m compileall -q runtime imagetool` first (PYTHONDONTWRITEBYTECODE "
              "would otherwise make every call recompile)", file=sys.stderr)
    import tempfile
    wrapdir = tempfile.mkdtemp(prefix="pyrunc-bench-wrap-")
    H.CLEANUP.push(__import__("shutil").rmtree, wrapdir, ignore_errors=True)
    H.build_wrapper(wrapdir)
    report = H.Report()
    given = H.python_flags(os.path.join(REPO, ".venv", "bin", "pyrunc"))
    flags = "".join(t[1:].split("X")[0] for t in given if t.startswith("-"))
    if "I" not in flags and "S" not in flags:
        report.note(f"the installed pyrunc runs without -I/-S ({' '.join(given)!r}): site-packages "
                    "processing (~17 ms per call here) is included; ./setup.sh installs the fast launcher")
    t0 = time.time()
    failed = []
    try:
        for g in a.only:
            print(f"\n##### group {g}", flush=True)
            mark = H.CLEANUP.mark()
            try:
                mod = __import__(f"g_{g}")
                mod.run(a, report)
            except KeyboardInterrupt:
                raise
            except Exception as e:  # noqa: BLE001 - one group failing must not stop the others
                traceback.print_exc()
                report.note(f"group {g} failed: {type(e).__name__}: {e}")
                failed.append(g)
            finally:
                H.CLEANUP.run(mark)
    except KeyboardInterrupt:
        print("interrupted; cleaning up", file=sys.stderr)
        H.CLEANUP.run()
        return 130
    finally:
        H.CLEANUP.run()
    elapsed = time.time() - t0
    info["load average at end"] = ", ".join(open("/proc/loadavg").read().split()[:3])
    md = ["## Machine\n"] + [f"- {k}: {v}" for k, v in info.items()] + \
         [f"- suite options: {' '.join(sys.argv[1:]) or '(defaults)'}; took {elapsed / 60:.1f} min", ""]
    md.append(report.markdown())
    for path, text in ((a.markdown, "\n".join(md)),
                       (a.json, json.dumps({"machine": info, "sections": report.sections,
                                            "notes": report.notes}, indent=1))):
        if path:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            with open(path, "w") as f:
                f.write(text + "\n")
    written = [p for p in (a.markdown, a.json) if p]
    print(f"\nwrote {', '.join(written) or 'nothing'} ({elapsed / 60:.1f} min)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
