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
            VmRSS and Pss (smaps_rollup) of the shim processes serving them
            (and of the pyrunc shim's zygote that forked them), summed and
            divided by the number of containers; once with one
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
ZYGOTE_DIR = "/run/pyrunc-shim"              # the pyrunc shim zygotes' sockets and locks
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


def _comm(pid) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def _cwd(pid) -> str:
    try:
        return os.readlink(f"/proc/{pid}/cwd").split(" (deleted)")[0]
    except OSError:
        return ""


def _is_pyrunc(cmd: list[bytes]) -> bool:
    # its launcher execs the interpreter with `-c BOOT`, BOOT importing runtime.shim.main
    return bool(cmd) and any(b"runtime.shim.main" in a for a in cmd[1:8])


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
        self.tasks = os.path.join(tmp, "state", "io.containerd.runtime.v2.task", NS)
        os.makedirs(self.fifo_dir)
        self.groups: set[str] = set()  # every -id / group used: their shim sockets
        self.zygote_dir_existed = os.path.isdir(ZYGOTE_DIR)
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
        """The shim processes of this containerd: pid -> {kind, id, ppid}.
        The runc shim: its binary with `-address` of this containerd and
        `-id`. The pyrunc shim: the interpreter on runtime.shim.main named
        pyrunc-shim (its comm), whose cwd is a task bundle of this
        containerd; one forked by the shim zygote keeps the zygote's
        command line, so the bundle, not `-address`, says whose it is. The
        zygote itself (pyrunc-zygote) is not a shim: see zygotes()."""
        out = {}
        addr = self.sock.encode()
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            cmd = _cmdline(pid)
            if _is_runc_shim(cmd) and addr in cmd:
                out[int(pid)] = {"kind": "runc", "id": _flag(cmd, b"-id"), "ppid": _ppid(pid)}
            elif _is_pyrunc(cmd) and _comm(pid) == "pyrunc-shim":
                cwd = _cwd(pid)
                if cwd.startswith(self.tasks + "/"):
                    out[int(pid)] = {"kind": "pyrunc", "id": os.path.basename(cwd), "ppid": _ppid(pid)}
            elif _is_pyrunc(cmd) and addr in cmd:  # a shim that does not name itself (older code)
                out[int(pid)] = {"kind": "pyrunc", "id": _flag(cmd, b"-id"), "ppid": _ppid(pid)}
        # the container's init and exec stages are forks of the pyrunc
        # shim and keep its name until they exec: not shims
        return {p: s for p, s in out.items() if s["ppid"] not in out}

    def zygotes(self) -> dict[int, str]:
        """The pyrunc shim's zygotes (the warm parent it forks shims from)
        started for this containerd: pid -> key. A zygote detaches from its
        `start`, so it is reparented to the bench, the subreaper."""
        out = {}
        me = os.getpid()
        for pid in os.listdir("/proc"):
            if pid.isdigit() and _comm(pid) == "pyrunc-zygote" and _ppid(pid) == me:
                cmd = _cmdline(pid)
                if _is_pyrunc(cmd) and b"zygote" in cmd:
                    out[int(pid)] = cmd[-1].decode(errors="replace")
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
        for pid, key in self.zygotes().items():
            H.kill_pid(pid)
            for p in (f"{ZYGOTE_DIR}/zygote-{key}", f"{ZYGOTE_DIR}/zygote-{key}.lock"):
                try:
                    os.unlink(p)
                except OSError:
                    pass
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
        if not self.zygote_dir_existed:
            dirs.append(ZYGOTE_DIR)
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


def _mem(pid: int) -> tuple[int, int, int]:
    """(VmRSS, Pss, Private_Clean + Private_Dirty) in kB."""
    r = H.vm_rss_kb(pid)
    sm = _smaps_rollup(pid)
    if r is None or "Pss" not in sm:
        raise RuntimeError(f"process {pid} went away while being measured")
    return r, sm["Pss"], sm.get("Private_Clean", 0) + sm.get("Private_Dirty", 0)


def _measure_shims(cd: Containerd, kind: str, ids: list[str]) -> dict:
    """VmRSS, Pss and Private_* summed over the shim processes of `kind`
    that serve `ids`, and over the zygote that forked any of them (the
    pyrunc shim's: it lives as long as its shims, so it is theirs)."""
    # A `start` or `delete` in flight is containerd's child; a serving shim
    # is not (reparented to the bench, the subreaper, or the zygote's).
    mine = {pid: s for pid, s in cd.shims().items()
            if s["kind"] == kind and s["id"] in ids and s["ppid"] != cd.proc.pid}
    if not mine:
        raise RuntimeError(f"no {kind} shim process found serving {ids[0]}...")
    zyg = [z for z in cd.zygotes() if z in {s["ppid"] for s in mine.values()}]
    out = {"shims": len(mine), "forked": sum(1 for s in mine.values() if s["ppid"] in zyg),
           "rss": 0, "pss": 0, "private": 0, "zygote": None}
    for pid in mine:
        r, p, v = _mem(pid)
        out["rss"] += r
        out["pss"] += p
        out["private"] += v
    for z in zyg:
        r, p, v = _mem(z)
        out["zygote"] = (r, p)
        out["rss"] += r
        out["pss"] += p
        out["private"] += v
    return out


def step_memory(args, report, cd: Containerd, v: Variants, load0: str):
    n = args.ctr_mem_n
    kinds = {"pyrunc shim": "pyrunc", REF: "runc"}
    rows = []
    for grouped in (False, True):
        for variant, kind in kinds.items():
            what = "memg" if grouped else "mem"
            if kind == "pyrunc":
                # the steady state of a host that runs containers: the shim's
                # zygote is up (one `ctr run --rm` starts it if it is not)
                cid = v.new_id(variant, "zyg")
                r = H.run(v.run_rm_argv(variant, cid), timeout=120)
                if r.rc != 0:
                    v.fail(variant, cid, r)
                    v.cleanup_failed(cid)
                time.sleep(0.3)
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
            z = m["zygote"]
            rows.append([variant + (" (one group)" if grouped else ""), str(n),
                         f"{m['shims']} ({m['forked']} from the zygote)" if kind == "pyrunc" else str(m["shims"]),
                         H.fmt_mb(m["rss"] / n), H.fmt_mb(m["pss"] / n), H.fmt_mb(m["private"] / n),
                         f"{H.fmt_mb(z[0])} / {H.fmt_mb(z[1])}" if z else "-"])
    notes = [f"{n} `ctr run -d IMAGE ID sleep 3600` per row, then the shim processes serving them: the runc "
             f"shim by its binary, {RUNC_SHIM}, with `-address` of this containerd; the pyrunc shim by its "
             "interpreter on runtime.shim.main named pyrunc-shim, whose cwd is one of this containerd's task "
             "bundles (a shim forked by the zygote keeps the zygote's command line). Per container = the sum "
             "over those shims, plus the zygote that forked them, ÷ containers; RSS = VmRSS "
             "(/proc/PID/status), PSS and private = /proc/PID/smaps_rollup (Pss, Private_Clean + "
             "Private_Dirty). Before each pyrunc row one `ctr run --rm` makes sure the zygote is up, as on "
             f"a host that runs containers. One group = every container with --annotation {GROUP_ANNOTATION}=G, "
             "so containerd puts them in one shim, as CRI does for a pod's containers. RSS counts pages "
             "shared between the shims (and with the zygote) once per process; PSS splits them, also with "
             "other processes of the same files (other runc shims, any Python on the machine), so it "
             "depends on what else runs",
             f"load average at the step's start {load0}, at its end {_load()}"]
    report.section(f"containerd: shim memory per running container ({n} containers)",
                   ["shim", "containers", "shim processes", "RSS MB / container", "PSS MB / container",
                    "private MB / container", "zygote RSS / PSS MB"], rows, notes)


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
