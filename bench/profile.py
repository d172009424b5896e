#!/usr/bin/env python3
"""Where does a pyrunc call spend its time? (strace -c and py-spy per verb.)

    .venv/bin/python bench/profile.py [--py-spy PATH] [--reps N]

For create, start, state, kill and delete on a busybox bundle it records:
  * strace -c (syscall counts and kernel time) of the runtime process alone
    (not -f: the init it forks stays alive until start);
  * py-spy samples (if --py-spy points at a py-spy binary, e.g. one
    installed in a throwaway venv: python3 -m venv /tmp/v && /tmp/v/bin/pip
    install py-spy), aggregated over N runs: top functions by inclusive
    share and top lines by self share.
Writes bench/out/profile-VERB.txt (ignored by git) and prints where and a
summary. Needs root.
"""
from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
PYRUNC = os.path.join(REPO, ".venv", "bin", "pyrunc")


import harness as H  # noqa: E402

CMD = H.python_command(PYRUNC)  # what the installed command runs, with its interpreter flags
OUT = os.path.join(HERE, "out")  # = harness.OUT, ignored by git


def make_bundle(path):
    # same bundle as the suite, built without the harness's reaper
    os.makedirs(os.path.join(path, "rootfs", "bin"))
    rootfs = os.path.join(path, "rootfs")
    shutil.copy2("/bin/busybox", os.path.join(rootfs, "bin", "busybox"))
    for a in subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True).stdout.split():
        if a != "busybox":
            os.symlink("busybox", os.path.join(rootfs, "bin", a))
    for d in ("proc", "sys", "dev", "tmp", "etc"):
        os.makedirs(os.path.join(rootfs, d), exist_ok=True)
    subprocess.run(["runc", "spec", "--bundle", path], check=True)
    import json
    with open(os.path.join(path, "config.json")) as f:
        cfg = json.load(f)
    cfg["process"]["args"] = ["/bin/true"]
    cfg["process"]["terminal"] = False
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(cfg, f)


def aggregate(raw_files):
    incl, selfc, total = collections.Counter(), collections.Counter(), 0
    for p in raw_files:
        try:
            with open(p) as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        for line in lines:
            stack, _, n = line.rpartition(" ")
            if not n.isdigit():
                continue
            n = int(n)
            total += n
            frames = [fr for fr in stack.split(";") if fr]
            if not frames:
                continue
            selfc[frames[-1]] += n
            seen = set()
            for fr in frames:
                key = fr.split(" (")[0] + " (" + fr.split(" (")[1].split(":")[0] + ")" if " (" in fr else fr
                if key not in seen:
                    incl[key] += n
                    seen.add(key)
    return total, incl, selfc


def profile_pyimg(py_spy: str):
    """py-spy of `pyimg pull` and `pyimg unpack --mode copy|overlay` of the
    debian minbase image (cached by the image group) from a local registry."""
    import harness as H
    import images as I
    tmp = tempfile.mkdtemp(prefix="pyrunc-bench-prof-img-", dir="/var/tmp")
    H.CLEANUP.push(shutil.rmtree, tmp, ignore_errors=True)
    try:
        deb = I.debian_layer(H.Report())
        if deb is None:
            print("no debian layer (run the image group once)")
            return
        reg = I.Registry(tmp)
        lay = I.Layout(os.path.join(tmp, "layout"))
        lay.add_image("debian", [deb])
        ref = reg.push_layout(lay.path, "debian", "bench/debian:bookworm")
        pyimg = os.path.join(REPO, ".venv", "bin", "pyimg")
        store = os.path.join(tmp, "store")
        for label, argv in (("pull", ["pull", ref]),
                            ("unpack-copy", ["unpack", ref, os.path.join(tmp, "b1"), "--mode", "copy"]),
                            ("unpack-overlay", ["unpack", ref, os.path.join(tmp, "b2"), "--mode", "overlay"])):
            raw = os.path.join(tmp, label + ".raw")
            H.run([py_spy, "record", "--rate", "200", "--format", "raw", "-o", raw, "--",
                   pyimg, "--root", store, *argv], timeout=1800)
            total, incl, selfc = aggregate([raw])
            out = [f"# py-spy of pyimg {' '.join(argv[:1])} ({label}) of debian minbase: {total} samples at 200 Hz\n",
                   "## inclusive (function (file))\n"]
            out += [f"{100 * c / max(total, 1):5.1f}%  {k}" for k, c in incl.most_common(45)]
            out.append("\n## self (innermost frame, with line)\n")
            out += [f"{100 * c / max(total, 1):5.1f}%  {k}" for k, c in selfc.most_common(25)]
            path = os.path.join(OUT, f"profile-pyimg-{label}.txt")
            with open(path, "w") as f:
                f.write("\n".join(out) + "\n")
            print(f"pyimg {label}: {path}")
        H.run([pyimg, "--root", store, "rm-bundle", "--force", os.path.join(tmp, "b2")])
        H.run([pyimg, "--root", store, "rm-bundle", "--force", os.path.join(tmp, "b1")])
    finally:
        with open("/proc/self/mounts") as f:
            for m in sorted((l.split()[1] for l in f if l.split()[1].startswith(tmp)), key=len, reverse=True):
                H.run(["umount", "-l", m])
        H.CLEANUP.run()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--py-spy", default=shutil.which("py-spy"))
    ap.add_argument("--reps", type=int, default=8)
    ap.add_argument("--pyimg", action="store_true", help="profile pyimg pull/unpack of debian instead")
    a = ap.parse_args()
    if a.pyimg:
        os.makedirs(OUT, exist_ok=True)
        return profile_pyimg(a.py_spy)
    os.makedirs(OUT, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="pyrunc-bench-prof-")
    root = os.path.join(tmp, "root")
    try:
        bundle = os.path.join(tmp, "bundle")
        make_bundle(bundle)
        n = [0]

        def cid():
            n[0] += 1
            return f"prof{os.getpid()}-{n[0]}"

        def created():
            c = cid()
            subprocess.run([PYRUNC, "--root", root, "create", "--bundle", bundle, c], check=True,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            return c

        def stopped():
            c = created()
            subprocess.run([PYRUNC, "--root", root, "start", c], check=True)
            import time
            time.sleep(0.05)
            return c

        verbs = {
            "create": (lambda: (lambda c: ["create", "--bundle", bundle, c])(cid())),
            "start": (lambda: ["start", created()]),
            "state": (lambda: ["state", created()]),
            "kill": (lambda: ["kill", created(), "KILL"]),
            "delete": (lambda: ["delete", stopped()]),
        }
        for verb, mk in verbs.items():
            report = [f"# pyrunc {verb}: strace -c (runtime process only) and py-spy ({a.reps} runs)\n"]
            argv = mk()
            subprocess.run(["strace", "-c", "-o", os.path.join(tmp, "strace.txt"), *CMD, "--root", root, *argv], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            with open(os.path.join(tmp, "strace.txt")) as f:
                st = f.read()
            report.append("## strace -c\n" + st)
            if a.py_spy:
                raws = []
                for i in range(a.reps):
                    argv = mk()
                    raw = os.path.join(tmp, f"{verb}{i}.raw")
                    subprocess.run([a.py_spy, "record", "--rate", "2000", "--format", "raw", "--nonblocking",
                                    "-o", raw, "--", *CMD, "--root", root, *argv],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    raws.append(raw)
                total, incl, selfc = aggregate(raws)
                report.append(f"## py-spy: {total} samples at 2 kHz over {a.reps} runs\n\n"
                              "### inclusive (function (file))\n")
                report += [f"{100 * c / total:5.1f}%  {k}" for k, c in incl.most_common(40)]
                report.append("\n### self (innermost frame, with line)\n")
                report += [f"{100 * c / total:5.1f}%  {k}" for k, c in selfc.most_common(25)]
            path = os.path.join(OUT, f"profile-{verb}.txt")
            with open(path, "w") as f:
                f.write("\n".join(report) + "\n")
            tot = [l for l in st.splitlines() if l.strip().endswith("total")]
            print(f"{verb}: {path}  strace: {tot[0].split() if tot else '?'}")
    finally:
        if os.path.isdir(root):
            for c in os.listdir(root):
                subprocess.run([PYRUNC, "--root", root, "delete", "--force", c],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
