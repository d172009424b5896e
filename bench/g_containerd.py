"""containerd group, on a private containerd (CRI disabled), three ways of
running a container:

  pyrunc shim        containerd-shim-pyrunc-v1 (ctr --runtime io.containerd.pyrunc.v1)
  runc shim + runc   containerd-shim-runc-v2 with runc (--runc-binary runc)
  runc shim + pyrunc containerd-shim-runc-v2 with pyrunc (--runc-binary pyrunc)

Steps (--containerd-steps, comma separated; default all):

  run       `ctr run --rm` busybox /bin/true, interleaved rounds
  parallel  --ctr-parallel (50) `ctr run --rm` started together: wall time
            until the last one exits, and the failures; --long-rounds rounds
            after one warm-up
  memory    --ctr-mem-n (10) detached `sleep` containers per shim, then the
            VmRSS and Pss (smaps_rollup) of the shim processes serving them,
            summed and divided by the number of containers; once with one
            shim per container, once with all of them in one group
            (annotation io.containerd.runc.v2.group, as CRI groups a pod)

containerd finds containerd-shim-pyrunc-v1 on its PATH: the bench starts it
with this checkout's .venv/bin first, so the shim measured is this
worktree's (the group checks that and says so in its notes).
"""
from __future__ import annotations

import hashlib
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
PYRUNC_SHIM = "containerd-shim-pyrunc-v1"
RUNC_SHIM = "containerd-shim-runc-v2"
PYRUNC_SHIM_ROOT = "/run/containerd/pyrunc"  # the pyrunc shim's default state root (+ /NS)
RUNC_SHIM_ROOT = "/run/containerd/runc"      # the runc shim's default --root (+ /NS)
SOCKET_DIR = "/run/containerd/s"
GROUP_ANNOTATION = "io.containerd.runc.v2.group"
STEPS = ("run", "parallel", "memory")
REF = "runc shim + runc"


def _load() -> str:
    return ", ".join(open("/proc/loadavg").read().split()[:3])


def _cmdline(pid: str) -> list[bytes]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().rstrip(b"\0").split(b"\0")
    except OSError:
        return []


def _ppid(pid: str) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rpartition(")")[2].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _is_pyrunc_shim(cmd: list[bytes]) -> bool:
    # its launcher execs the interpreter with `-c BOOT`, BOOT importing runtime.shim.main
    return bool(cmd) and (os.path.basename(cmd[0]) == PYRUNC_SHIM.encode()
                          or any(b"runtime.shim.main" in a for a in cmd[1:8]))


def _is_runc_shim(cmd: list[bytes]) -> bool:
    return bool(cmd) and os.path.basename(cmd[0]) == RUNC_SHIM.encode()


def _flag(cmd: list[bytes], name: bytes) -> str | None:
    try:
        return cmd[cmd.index(name) + 1].decode(errors="replace")
    except (ValueError, IndexError):
        return None


def _smaps_rollup(pid: int) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                k, _, v = line.partition(":")
                parts = v.split()
                if len(parts) == 2 and parts[1] == "kB":
                    out[k] = int(parts[0])
    except OSError:
        pass
    return out


class Containerd:
    def __init__(self, tmp):
        self.tmp = tmp
        self.sock = os.path.join(tmp, "containerd.sock")
        self.fifo_dir = os.path.join(tmp, "fifo")
        os.makedirs(self.fifo_dir)
        self.groups: set[str] = set()  # every -id / group used: their shim sockets
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
        # containerd looks the shim of io.containerd.pyrunc.v1 up on its PATH:
        # this checkout's .venv/bin first, so the shim is this worktree's.
        self.bin_dir = os.path.dirname(PYRUNC)
        self.env = dict(os.environ, PATH=self.bin_dir + ":" + os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"))
        self.pyrunc_shim = shutil.which(PYRUNC_SHIM, path=self.env["PATH"])
        self.log_path = os.path.join(tmp, "containerd.log")
        self.log = open(self.log_path, "wb")
        self.proc = H.spawn(["containerd", "--config", cfg], capture=False, stdout_fd=self.log.fileno(),
                            stderr_fd=self.log.fileno(), wrap=False, env=self.env)
        H.CLEANUP.push(self.stop)
        deadline = time.monotonic() + 30
        while True:
            if os.path.exists(self.sock) and self.ctr("version").rc == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("private containerd did not come up; see " + self.log_path)
            time.sleep(0.1)

    def ctr_argv(self, *args) -> list[str]:
        return ["ctr", "--address", self.sock, "--namespace", NS, *args]

    def ctr(self, *args, timeout=300) -> H.Result:
        return H.run(self.ctr_argv(*args), timeout=timeout)

    def log_lines(self, needle: str, n: int = 8) -> list[str]:
        """containerd's log lines that mention needle (a container id), the last n."""
        try:
            with open(self.log_path, errors="replace") as f:
                hits = [line.rstrip() for line in f if needle in line]
        except OSError:
            return []
        return hits[-n:]

    def shims(self) -> dict[int, dict]:
        """The shim processes of this containerd: pid -> {kind, id}."""
        out = {}
        addr = self.sock.encode()
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            cmd = _cmdline(pid)
            if addr not in cmd:
                continue
            kind = "pyrunc" if _is_pyrunc_shim(cmd) else "runc" if _is_runc_shim(cmd) else None
            if kind:
                out[int(pid)] = {"kind": kind, "id": _flag(cmd, b"-id"), "ppid": _ppid(pid)}
        return out

    def remove_all(self, prefix: str = ""):
        """Kill and delete every task and container of NS (whose id starts
        with prefix): ctr's clean-up, through the shims."""
        names = [c for c in self.ctr("containers", "ls", "-q").out.decode().split() if c.startswith(prefix)]
        procs = []
        for c in names:
            procs.append(H.spawn(self.ctr_argv("tasks", "delete", "-f", c)))
        for p in procs:
            p.wait(120)
        for c in names:
            self.ctr("containers", "delete", c)
        return names

    def stop(self):
        # tasks/containers left over (a failed or interrupted run)
        try:
            self.remove_all()
        except Exception as e:  # noqa: BLE001 - containerd may be gone; the steps below still apply
            print(f"cleanup: ctr: {type(e).__name__}: {e}")
        H.kill_pid(self.proc.pid, 15)
        try:
            H.reaper().wait(self.proc.pid, 15)
        except TimeoutError:
            H.kill_pid(self.proc.pid)
        # shims started by this containerd (reparented to us, the subreaper):
        # shims outlive containerd by design
        for pid in self.shims():
            H.kill_pid(pid)
        self.log.close()
        # a container whose shim was killed above: its runtime's own delete
        # (under the runc shim's root, runc's or pyrunc's state: either may apply)
        for root, exes in ((f"{PYRUNC_SHIM_ROOT}/{NS}", [PYRUNC]),
                           (f"{RUNC_SHIM_ROOT}/{NS}", [shutil.which("runc") or "runc", PYRUNC])):
            try:
                left = [e for e in os.listdir(root) if e in self.groups]
            except OSError:
                left = []
            for cid in left:
                for exe in exes:
                    if H.run([exe, "--root", root, "delete", "--force", cid], timeout=60).rc == 0:
                        break
        # sockets of shims that did not shut down themselves
        for g in self.groups:
            path = os.path.join(SOCKET_DIR, hashlib.sha256(f"{self.sock}/{NS}/{g}".encode()).hexdigest())
            try:
                os.unlink(path)
            except OSError:
                pass
        # empty directories only: another run may share the namespace
        dirs = [f"{PYRUNC_SHIM_ROOT}/{NS}", f"{RUNC_SHIM_ROOT}/{NS}"]
        for base in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
            try:
                dirs += [os.path.join(base, c, NS) for c in os.listdir(base)]
            except OSError:
                pass
        dirs.append(os.path.join("/sys/fs/cgroup", NS))
        for d in dirs:
            try:
                os.rmdir(d)
            except OSError:
                pass


class Variants:
    """The three ways of running a container, as ctr flags."""

    def __init__(self, cd: Containerd, image: str, tag: str):
        self.cd, self.image, self.tag = cd, image, tag
        self.n = 0
        self.flags = {
            "pyrunc shim": ["--runtime", "io.containerd.pyrunc.v1"],
            REF: ["--runc-binary", shutil.which("runc")],
            "runc shim + pyrunc": ["--runc-binary", PYRUNC],
        }
        self.short = {"pyrunc shim": "ps", REF: "rr", "runc shim + pyrunc": "rp"}
        self.failures: dict[str, str] = {}

    def new_id(self, variant: str, what: str) -> str:
        self.n += 1
        cid = f"cb{self.tag}-{what}-{self.short[variant]}-{self.n}"
        self.cd.groups.add(cid)
        return cid

    def fail(self, variant: str, cid: str, r: H.Result):
        if variant not in self.failures:
            err = r.err.decode(errors="replace").strip()[-400:]
            log = self.cd.log_lines(cid, 4)
            self.failures[variant] = f"{' '.join(r.argv[5:])}: exit {r.rc}: {err}" + \
                ("; containerd log: " + " | ".join(l[-300:] for l in log) if log else "")

    def run_rm_argv(self, variant: str, cid: str) -> list[str]:
        return self.cd.ctr_argv("run", "--rm", *self.flags[variant], self.image, cid, "/bin/true")

    def cleanup_failed(self, cid: str):
        self.cd.ctr("tasks", "delete", "-f", cid)
        self.cd.ctr("containers", "delete", cid)


def step_run(args, report, cd: Containerd, v: Variants, load0: str):
    def one(variant):
        def f():
            cid = v.new_id(variant, "rm")
            r = H.run(v.run_rm_argv(variant, cid), timeout=120)
            if r.rc != 0:
                v.fail(variant, cid, r)
                v.cleanup_failed(cid)
                return {"wall": None}
            return {"wall": r.wall}
        return f
    s = H.interleaved({k: one(k) for k in v.flags}, args.rounds, args.warmup, metrics=("wall",))
    rows = []
    for k in v.flags:
        vals = s["wall"].values(k)
        rows.append([k, H.fmt_ms(s["wall"].med(k)), H.fmt_ms(min(vals)) if vals else "-",
                     H.fmt_ms(max(vals)) if vals else "-",
                     "-" if k == REF else H.fmt_ratio(s["wall"].ratio(k, REF)), f"{len(vals)}/{args.rounds}"])
    notes = ["`ctr run --rm IMAGE ID /bin/true`; wall of the ctr process (snapshot prepare, shim start, "
             "create, start, wait, delete, shim shutdown, snapshot remove); /runc = median of the per-round "
             f"ratios to {REF}",
             f"load average at the step's start {load0}, at its end {_load()}"]
    report.section(f"containerd: ctr run --rm busybox /bin/true ({args.rounds} rounds, {args.warmup} warm-up)",
                   ["shim + runtime", "median ms", "min", "max", "/runc shim + runc", "ok runs"], rows, notes)


def step_parallel(args, report, cd: Containerd, v: Variants, load0: str):
    n = args.ctr_parallel
    fails: dict[str, list[int]] = {k: [] for k in v.flags}

    def one(variant):
        def f():
            ids = [v.new_id(variant, "par") for _ in range(n)]
            t0 = time.perf_counter()
            # wrap=False: the reaper's exit time of each ctr is its end
            procs = [H.spawn(v.run_rm_argv(variant, cid), wrap=False) for cid in ids]
            results = [p.wait(600) for p in procs]
            end = max(p.t0 + r.wall for p, r in zip(procs, results))
            bad = [(cid, r) for cid, r in zip(ids, results) if r.rc != 0]
            for cid, r in bad:
                v.fail(variant, cid, r)
            if bad:
                v.cd.remove_all(f"cb{v.tag}-par-")
            fails[variant].append(len(bad))
            return {"wall": end - t0, "failed": len(bad)}
        return f
    warm = min(args.warmup, 1)
    s = H.interleaved({k: one(k) for k in v.flags}, args.long_rounds, warm, metrics=("wall", "failed"))
    rows = []
    for k in v.flags:
        vals = s["wall"].values(k)
        rows.append([k, H.fmt_s(s["wall"].med(k)), H.fmt_s(min(vals)) if vals else "-",
                     H.fmt_s(max(vals)) if vals else "-",
                     "-" if k == REF else H.fmt_ratio(s["wall"].ratio(k, REF)),
                     " ".join(str(x) for x in s["failed"].values(k))])
    notes = [f"{n} `ctr run --rm IMAGE ID /bin/true` forked one after the other without waiting; wall from "
             "the first fork until the last ctr exits; failed = ctr runs that exited non-zero in each "
             "measured round (the wall still counts them)",
             f"load average at the step's start {load0}, at its end {_load()}"]
    report.section(f"containerd: {n} ctr run --rm at once ({args.long_rounds} rounds, {warm} warm-up)",
                   ["shim + runtime", "median s", "min", "max", "/runc shim + runc", "failed per round"],
                   rows, notes)


def _measure_shims(cd: Containerd, kind: str, ids: list[str]) -> dict:
    """Sum VmRSS and smaps_rollup's Pss (and Private_*) over the shim
    processes of `kind` that serve `ids`."""
    # A `start` or `delete` in flight is containerd's child; the serving
    # shim has left it (reparented to the bench, the subreaper). The pyrunc
    # shim's server is a fork of its `start`, so its command line still ends
    # in `start`: the parent tells them apart, not the arguments.
    mine = {pid: s for pid, s in cd.shims().items()
            if s["kind"] == kind and s["id"] in ids and s["ppid"] != cd.proc.pid}
    if not mine:
        raise RuntimeError(f"no {kind} shim process found serving {ids[0]}...")
    rss = pss = priv = 0
    for pid in mine:
        r = H.vm_rss_kb(pid)
        sm = _smaps_rollup(pid)
        if r is None or "Pss" not in sm:
            raise RuntimeError(f"shim {pid} went away while being measured")
        rss += r
        pss += sm["Pss"]
        priv += sm.get("Private_Clean", 0) + sm.get("Private_Dirty", 0)
    return {"shims": len(mine), "rss": rss, "pss": pss, "private": priv}


def step_memory(args, report, cd: Containerd, v: Variants, load0: str):
    n = args.ctr_mem_n
    kinds = {"pyrunc shim": "pyrunc", REF: "runc"}
    rows = []
    for grouped in (False, True):
        for variant, kind in kinds.items():
            what = "memg" if grouped else "mem"
            ids = [v.new_id(variant, what) for _ in range(n)]
            group = f"cb{v.tag}-g-{v.short[variant]}-{v.n}"
            cd.groups.add(group)
            extra = ["--annotation", f"{GROUP_ANNOTATION}={group}"] if grouped else []
            try:
                for cid in ids:
                    r = cd.ctr("run", "-d", "--fifo-dir", cd.fifo_dir, *v.flags[variant], *extra,
                               v.image, cid, "sleep", "3600", timeout=120)
                    if r.rc != 0:
                        v.fail(variant, cid, r)
                        raise RuntimeError(f"memory step: {variant}: {v.failures[variant]}")
                time.sleep(1.0)  # let the last shim finish its start-up
                m = _measure_shims(cd, kind, ids)
            finally:
                cd.remove_all(f"cb{v.tag}-{what}-")
            rows.append([variant + (" (one group)" if grouped else ""), str(n), str(m["shims"]),
                         H.fmt_mb(m["rss"] / n), H.fmt_mb(m["pss"] / n), H.fmt_mb(m["private"] / n),
                         H.fmt_mb(m["rss"] / max(m["shims"], 1))])
    notes = [f"{n} `ctr run -d IMAGE ID sleep 3600` per row, then the shim processes serving them "
             "(the pyrunc shim: the interpreter whose command line has `-address` of this containerd and "
             f"runtime.shim.main; the runc shim: {RUNC_SHIM} with that `-address`); per container = the "
             "sum over those shims ÷ containers; RSS = VmRSS (/proc/PID/status), PSS and private = "
             "/proc/PID/smaps_rollup (Pss, Private_Clean + Private_Dirty); one group = every container "
             f"with --annotation {GROUP_ANNOTATION}=G, so containerd puts them in one shim, as CRI does "
             "for a pod's containers. PSS splits pages shared with other processes of the same files "
             "(other shims, and any other Python on the machine), so it depends on what else runs",
             f"load average at the step's start {load0}, at its end {_load()}"]
    report.section(f"containerd: shim memory per running container ({n} containers)",
                   ["shim", "containers", "shim processes", "RSS MB / container", "PSS MB / container",
                    "private MB / container", "RSS MB / shim"], rows, notes)


def run(args, report: H.Report):
    if not shutil.which("containerd") or not shutil.which("ctr"):
        report.note("containerd group skipped: containerd/ctr not installed")
        return
    steps = getattr(args, "containerd_steps", None) or list(STEPS)
    bad = [s for s in steps if s not in STEPS]
    if bad:
        raise ValueError(f"unknown containerd step(s): {', '.join(bad)} (have {', '.join(STEPS)})")
    H.become_subreaper()
    tmp = tempfile.mkdtemp(prefix="pyrunc-bench-ctrd-", dir="/var/tmp")
    H.CLEANUP.push(_rmtree, tmp)
    cd = Containerd(tmp)
    want = os.path.join(cd.bin_dir, PYRUNC_SHIM)
    if cd.pyrunc_shim != want:
        raise RuntimeError(f"containerd would run {cd.pyrunc_shim} as {PYRUNC_SHIM}, not {want}: run ./setup.sh")
    report.note(f"containerd group: containerd runs with {cd.bin_dir} first on its PATH, so "
                f"io.containerd.pyrunc.v1 is {want}; runc shim: {shutil.which(RUNC_SHIM)}, "
                f"runc: {shutil.which('runc')}, pyrunc: {PYRUNC}")
    archive = I.busybox_archive(tmp)
    cd.ctr("images", "import", archive).check()
    image = "docker.io/bench/busybox:latest"
    names = cd.ctr("images", "ls", "-q").out.decode().split()
    if image not in names:
        raise RuntimeError(f"imported image not found; have {names}")
    v = Variants(cd, image, "%04x" % random.randrange(0x10000))
    for step in STEPS:
        if step in steps:
            globals()[f"step_{step}"](args, report, cd, v, _load())
    for k, e in v.failures.items():
        report.note(f"containerd group: {k}: some runs failed; the first: {e}")
