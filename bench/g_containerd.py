"""containerd group: `ctr run --rm` busybox /bin/true through the runc v2 shim
with pyrunc vs runc as --runc-binary, on a private containerd."""
from __future__ import annotations

import os
import random
import shutil
import tempfile
import time

import harness as H
import images as I
from g_image import _rmtree
from runtimes import PYRUNC

NS = "pyrunc-bench"


class Containerd:
    def __init__(self, tmp):
        self.tmp = tmp
        self.sock = os.path.join(tmp, "containerd.sock")
        cfg = os.path.join(tmp, "config.toml")
        with open(cfg, "w") as f:
            f.write(f"""version = 2
root = "{tmp}/root"
state = "{tmp}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{self.sock}"

[ttrpc]
  address = "{self.sock}.ttrpc"

[debug]
  address = "{tmp}/debug.sock"

[plugins."io.containerd.internal.v1.opt"]
  path = "{tmp}/opt"
""")
        self.log = open(os.path.join(tmp, "containerd.log"), "wb")
        self.proc = H.spawn(["containerd", "--config", cfg], capture=False, stdout_fd=self.log.fileno(),
                            stderr_fd=self.log.fileno(), wrap=False)
        H.CLEANUP.push(self.stop)
        deadline = time.monotonic() + 30
        while True:
            if os.path.exists(self.sock) and self.ctr("version").rc == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("private containerd did not come up; see " + self.log.name)
            time.sleep(0.1)

    def ctr(self, *args, timeout=300) -> H.Result:
        return H.run(["ctr", "--address", self.sock, "--namespace", NS, *args], timeout=timeout)

    def stop(self):
        # tasks/containers left over (a failed run)
        for c in self.ctr("containers", "ls", "-q").out.decode().split():
            self.ctr("tasks", "kill", "-s", "KILL", c)
            self.ctr("tasks", "delete", "-f", c)
            self.ctr("containers", "delete", c)
        H.kill_pid(self.proc.pid, 15)
        try:
            H.reaper().wait(self.proc.pid, 15)
        except TimeoutError:
            H.kill_pid(self.proc.pid)
        # shims started by this containerd (reparented to us, the subreaper)
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().split(b"\0")
            except OSError:
                continue
            if cmd and cmd[0].endswith(b"containerd-shim-runc-v2") and self.sock.encode() in cmd:
                H.kill_pid(int(pid))
        self.log.close()
        for d in (f"/run/containerd/runc/{NS}",):
            if os.path.isdir(d) and not os.listdir(d):
                os.rmdir(d)


def run(args, report: H.Report):
    if not shutil.which("containerd") or not shutil.which("ctr"):
        report.note("containerd group skipped: containerd/ctr not installed")
        return
    H.become_subreaper()
    tmp = tempfile.mkdtemp(prefix="pyrunc-bench-ctrd-", dir="/var/tmp")
    H.CLEANUP.push(_rmtree, tmp)
    cd = Containerd(tmp)
    archive = I.busybox_archive(tmp)
    cd.ctr("images", "import", archive).check()
    image = "docker.io/bench/busybox:latest"
    names = cd.ctr("images", "ls", "-q").out.decode().split()
    if image not in names:
        raise RuntimeError(f"imported image not found; have {names}")
    tag = "%04x" % random.randrange(0x10000)
    n = [0]
    failures = {}

    def ctr_run(binary, name):
        def f():
            n[0] += 1
            cid = f"cb{tag}-{name}-{n[0]}"
            r = cd.ctr("run", "--rm", "--runc-binary", binary, image, cid, "/bin/true", timeout=120)
            if r.rc != 0:
                failures.setdefault(name, r.err.decode(errors="replace").strip()[-400:])
                cd.ctr("tasks", "delete", "-f", cid)
                cd.ctr("containers", "delete", cid)
                return {"wall": None}
            return {"wall": r.wall}
        return f
    variants = {"pyrunc": ctr_run(PYRUNC, "pyrunc"), "runc": ctr_run(shutil.which("runc"), "runc")}
    s = H.interleaved(variants, args.rounds, args.warmup, metrics=("wall",))
    rows = []
    for v in variants:
        vals = s["wall"].values(v)
        rows.append([v, H.fmt_ms(s["wall"].med(v)), H.fmt_ms(min(vals)) if vals else "-",
                     H.fmt_ms(max(vals)) if vals else "-",
                     "-" if v == "runc" else H.fmt_ratio(s["wall"].ratio(v, "runc")), str(len(vals))])
    notes = ["`ctr run --rm IMAGE ID /bin/true` on a private containerd (CRI disabled), shim "
             "io.containerd.runc.v2 with --runc-binary; wall of the ctr process (snapshot prepare, "
             "create, start, wait, delete, snapshot remove)"]
    for k, e in failures.items():
        notes.append(f"{k}: some runs failed: {e}")
    report.section(f"containerd: ctr run --rm busybox /bin/true ({args.rounds} rounds, {args.warmup} warm-up)",
                   ["runtime binary", "median ms", "min", "max", "/runc", "ok runs"], rows, notes)
