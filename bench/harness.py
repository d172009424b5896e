"""Measurement plumbing shared by every benchmark group.

* One reaper thread owns wait4(-1): it records the exit status, the rusage
  (peak RSS, CPU) and the exit time of *every* child, including container
  inits that get reparented to us because we are a child subreaper (like
  containerd's shim).  Nothing else in the harness may call wait*().
* spawn() forks and execs (optionally after setns() into a mount namespace,
  which is how crun gets a view without the hybrid cgroup2 mount), so every
  runtime is started the same way.
* compare() runs variants interleaved (A B A B ...) after a warm-up and
  reports medians plus the median of the per-round ratios.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

# Where runs write their outputs (tables, raw profiles). Ignored by git
# (.gitignore): outputs of a run describe one machine at one moment and are
# not committed; bench/RESULTS.md quotes the ones that stand.
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "out")

PR_SET_CHILD_SUBREAPER = 36
CLONE_NEWNS = 0x00020000

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def become_subreaper() -> None:
    if _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        e = ctypes.get_errno()
        raise OSError(e, "prctl(PR_SET_CHILD_SUBREAPER)")


class Exit:
    __slots__ = ("pid", "status", "rusage", "t_end")

    def __init__(self, pid, status, rusage, t_end):
        self.pid, self.status, self.rusage, self.t_end = pid, status, rusage, t_end

    @property
    def rc(self) -> int:
        return os.waitstatus_to_exitcode(self.status)

    @property
    def maxrss_kb(self) -> int:
        return self.rusage.ru_maxrss


class Reaper:
    """Collects every child's exit. wait(pid) blocks until that pid was reaped."""

    def __init__(self):
        self._cond = threading.Condition()
        self._done: dict[int, Exit] = {}
        self._wanted: set[int] = set()
        self._stop = False
        self._t = threading.Thread(target=self._loop, name="reaper", daemon=True)
        self._t.start()

    def _loop(self):
        while True:
            try:
                pid, status, ru = os.wait4(-1, 0)
            except ChildProcessError:
                # No children right now: sleep until spawn() pokes us.
                with self._cond:
                    if self._stop:
                        return
                    self._cond.wait(0.05)
                continue
            except InterruptedError:
                continue
            t = time.perf_counter()
            with self._cond:
                self._done[pid] = Exit(pid, status, ru, t)
                # Unclaimed strays (runtime helpers, orphans) are dropped when
                # there are too many; wanted pids are never dropped.
                if len(self._done) > 20000:
                    for k in [k for k in self._done if k not in self._wanted][:10000]:
                        del self._done[k]
                self._cond.notify_all()

    def poke(self):
        with self._cond:
            self._cond.notify_all()

    def want(self, pid: int) -> None:
        with self._cond:
            self._wanted.add(pid)

    def wait(self, pid: int, timeout: float | None = None) -> Exit:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._wanted.add(pid)
            while pid not in self._done:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"pid {pid} did not exit in {timeout}s")
                self._cond.wait(left)
            self._wanted.discard(pid)
            return self._done.pop(pid)

    def forget(self, pid: int) -> None:
        with self._cond:
            self._wanted.discard(pid)
            self._done.pop(pid, None)

    def stop(self):
        with self._cond:
            self._stop = True
            self._cond.notify_all()


REAPER: Reaper | None = None


def reaper() -> Reaper:
    global REAPER
    if REAPER is None:
        REAPER = Reaper()
    return REAPER


def _null_fd():
    return os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)


class Proc:
    def __init__(self, pid: int, t0: float, out_r: int | None, err_r: int | None, argv, rep_r=None):
        self.pid, self.t0, self.argv = pid, t0, argv
        self._out_r, self._err_r, self._rep_r = out_r, err_r, rep_r
        self.out = b""
        self.err = b""

    def wait(self, timeout: float | None = 600) -> "Result":
        # Drain pipes first (a thread for stderr so neither can block).
        err_chunks = []
        t = None
        if self._err_r is not None:
            def drain():
                with os.fdopen(self._err_r, "rb") as f:
                    err_chunks.append(f.read())
            t = threading.Thread(target=drain, daemon=True)
            t.start()
        if self._out_r is not None:
            with os.fdopen(self._out_r, "rb") as f:
                self.out = f.read()
        if t is not None:
            t.join()
            self.err = err_chunks[0] if err_chunks else b""
        ex = reaper().wait(self.pid, timeout)
        wall, rss, cpu = ex.t_end - self.t0, ex.maxrss_kb, ex.rusage.ru_utime + ex.rusage.ru_stime
        if self._rep_r is not None:
            with os.fdopen(self._rep_r, "rb") as f:
                rep = f.read().split()
            if len(rep) == 4:  # measured by rsswrap around the program alone
                wall, rss, cpu = int(rep[0]) / 1e9, int(rep[1]), (int(rep[2]) + int(rep[3])) / 1e6
        return Result(self.argv, ex.rc, wall, rss, cpu, self.out, self.err)


class Result:
    __slots__ = ("argv", "rc", "wall", "maxrss_kb", "cpu", "out", "err")

    def __init__(self, argv, rc, wall, maxrss_kb, cpu, out, err):
        self.argv, self.rc, self.wall, self.maxrss_kb, self.cpu, self.out, self.err = \
            argv, rc, wall, maxrss_kb, cpu, out, err

    def check(self) -> "Result":
        if self.rc != 0:
            raise RuntimeError(f"{' '.join(map(str, self.argv))}: exit {self.rc}: "
                               f"{self.err.decode(errors='replace').strip()[-2000:]}")
        return self


WRAP: str | None = None  # path of the compiled rsswrap, see build_wrapper()


def build_wrapper(tmpdir: str) -> str | None:
    """Compile bench/rsswrap.c (static). Without it, ru_maxrss of every child
    would start at the harness's own RSS (Linux keeps the high-water mark
    across fork+exec)."""
    global WRAP
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "rsswrap.c")
    out = os.path.join(tmpdir, "rsswrap")
    for extra in (["-static"], []):
        p = subprocess.run(["gcc", "-O2", *extra, "-o", out, src], capture_output=True, text=True)
        if p.returncode == 0:
            WRAP = out
            return out
    print(f"warning: could not build rsswrap ({p.stderr.strip()[-200:]}); peak RSS numbers will "
          f"include the harness's own RSS as a floor", file=sys.stderr)
    return None


def _high(fd: int) -> int:
    import fcntl
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 100)


def spawn(argv, *, mntns_fd: int | None = None, capture: bool = True, cwd: str | None = None,
          env: dict | None = None, stdout_fd: int | None = None, stderr_fd: int | None = None,
          wrap: bool = True) -> Proc:
    """fork + exec argv (through rsswrap, which measures wall time and peak
    RSS). stdin is /dev/null; stdout/stderr are pipes (capture) or
    /dev/null. A container init forked by the runtime inherits whatever the
    runtime had, so runtime calls that leave an init behind must use
    capture=False (or a pipe would never reach EOF)."""
    argv = [str(a) for a in argv]
    exe = argv[0] if "/" in argv[0] else shutil.which(argv[0])
    if exe is None:
        raise FileNotFoundError(argv[0])
    argv[0] = exe
    env = dict(os.environ if env is None else env)
    null = _null_fd()
    out_r = out_w = err_r = err_w = None
    if capture:
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
    use_wrap = wrap and WRAP is not None
    rep_r = rep_w = None
    if use_wrap:
        rep_r, rep_w = os.pipe2(os.O_CLOEXEC)
        full = [WRAP, "3", "4" if mntns_fd is not None else "-1", *argv]
    else:
        full = argv
    r = reaper()
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # child: only plain fd work until exec
        try:
            o = out_w if capture else (stdout_fd if stdout_fd is not None else null)
            e = err_w if capture else (stderr_fd if stderr_fd is not None else null)
            hi = [_high(x) for x in (null, o, e)]
            hrep = _high(rep_w) if use_wrap else None
            hns = _high(mntns_fd) if (use_wrap and mntns_fd is not None) else None
            if mntns_fd is not None and not use_wrap and _libc.setns(mntns_fd, CLONE_NEWNS) != 0:
                os._exit(126)
            for target, src in zip((0, 1, 2), hi):
                os.dup2(src, target)
            if hrep is not None:
                os.dup2(hrep, 3)
            if hns is not None:
                os.dup2(hns, 4)
            if cwd:
                os.chdir(cwd)
            os.execve(full[0], full, env)
        finally:
            os._exit(127)
    r.want(pid)
    r.poke()
    os.close(null)
    if capture:
        os.close(out_w)
        os.close(err_w)
    if use_wrap:
        os.close(rep_w)
    return Proc(pid, t0, out_r, err_r, argv, rep_r)


def run(argv, **kw) -> Result:
    timeout = kw.pop("timeout", 600)
    return spawn(argv, **kw).wait(timeout)


# ---------------------------------------------------------------- statistics

def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


class Series:
    """Samples of one metric for several variants, gathered per round."""

    def __init__(self, variants):
        self.variants = list(variants)
        self.rounds: list[dict[str, float]] = []

    def add_round(self, values: dict[str, float]):
        self.rounds.append(values)

    def values(self, v):
        return [r[v] for r in self.rounds if r.get(v) is not None]

    def med(self, v):
        return median(self.values(v))

    def ratio(self, v, ref):
        rs = [r[v] / r[ref] for r in self.rounds
              if r.get(v) is not None and r.get(ref) not in (None, 0)]
        return median(rs)


def interleaved(variants: dict, rounds: int, warmup: int, metrics=("wall",)):
    """variants: name -> callable() returning {metric: value}. Returns
    {metric: Series}. Order within a round is fixed (A B A B ...)."""
    for _ in range(warmup):
        for fn in variants.values():
            fn()
    out = {m: Series(variants) for m in metrics}
    for _ in range(rounds):
        got = {}
        for name, fn in variants.items():
            got[name] = fn()
        for m in metrics:
            out[m].add_round({n: (g or {}).get(m) for n, g in got.items()})
    return out


# ---------------------------------------------------------------- reporting

class Report:
    """Collects rows; prints them as they come and renders markdown at the end."""

    def __init__(self):
        self.sections: list[tuple[str, list[str], list[list[str]], list[str]]] = []
        self.notes: list[str] = []

    def section(self, title, header, rows, notes=()):
        self.sections.append((title, header, rows, list(notes)))
        print(f"\n== {title}")
        widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
        print("  ".join(str(h).ljust(widths[i]) for i, h in enumerate(header)))
        for r in rows:
            print("  ".join(str(c).ljust(widths[i]) for i, c in enumerate(r)))
        for n in notes:
            print(f"  note: {n}")
        sys.stdout.flush()

    def note(self, text):
        self.notes.append(text)
        print(f"note: {text}")
        sys.stdout.flush()

    def markdown(self) -> str:
        lines = []
        for title, header, rows, notes in self.sections:
            lines.append(f"### {title}\n")
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "|".join("---" for _ in header) + "|")
            for r in rows:
                lines.append("| " + " | ".join(str(c) for c in r) + " |")
            for n in notes:
                lines.append(f"\n_{n}_")
            lines.append("")
        if self.notes:
            lines.append("### Notes\n")
            lines += [f"- {n}" for n in self.notes]
            lines.append("")
        return "\n".join(lines)


def fmt_ms(s):
    return "-" if s is None else f"{s * 1000:.1f}"


def fmt_s(s):
    return "-" if s is None else f"{s:.2f}"


def fmt_mb(kb):
    return "-" if kb is None else f"{kb / 1024:.1f}"


def fmt_ratio(r):
    return "-" if r is None else f"{r:.2f}x"


def series_rows(series: dict, variants, ref=None, time_fmt=fmt_ms, extra=None):
    """One row per variant: median wall, min, max, ratio vs ref, median peak RSS."""
    rows = []
    wall = series["wall"]
    rss = series.get("rss")
    for v in variants:
        vals = wall.values(v)
        row = [v, time_fmt(wall.med(v)), time_fmt(min(vals)) if vals else "-",
               time_fmt(max(vals)) if vals else "-",
               fmt_ratio(wall.ratio(v, ref)) if ref and v != ref else ("1.00x" if ref else "-")]
        if rss is not None:
            row.append(fmt_mb(rss.med(v)))
        if extra:
            row += extra(v)
        rows.append(row)
    return rows


# ---------------------------------------------------------------- launchers

def python_command(command: str, *flags: str) -> list[str]:
    """The interpreter command line an installed `pyrunc` or `pyimg` runs,
    with `flags` (e.g. "-X", "importtime") added to the interpreter's: for
    the launcher programs (runtime/launcher.c), BIN/python3 -I -S -X utf8
    -c BOOT as they exec it, BOOT read from the program; for a script (an
    earlier commit's launcher), its shebang's interpreter and flags and the
    script."""
    with open(command, "rb") as f:
        data = f.read()
    if data.startswith(b"\x7fELF"):
        start = data.index(b"import sys\n")
        boot = data[start:data.index(b"\0", start)].decode()
        interp = os.path.join(os.path.dirname(os.path.realpath(command)), "python3")
        return [interp, "-I", "-S", "-X", "utf8", *flags, "-c", boot]
    line = data.split(b"\n", 1)[0].decode(errors="replace")
    interp = line[2:].split() if line.startswith("#!") else [sys.executable]
    return [*interp, *flags, command]


def python_flags(command: str) -> list[str]:
    """The interpreter flags of python_command(command) (e.g. -I -S -X utf8)."""
    cmd = python_command(command)
    return cmd[1:cmd.index("-c")] if cmd[-2:-1] == ["-c"] else cmd[1:-1]


# ---------------------------------------------------------------- machine info

def _first_line(argv):
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        return (p.stdout or p.stderr).strip().splitlines()[0]
    except Exception as e:  # noqa: BLE001
        return f"n/a ({type(e).__name__})"


def machine_info(root_dir: str) -> dict:
    """Call before the reaper thread starts (uses subprocess)."""
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    layout = []
    with open("/proc/self/mounts") as f:
        for line in f:
            dev, mnt, fstype, opts = line.split()[:4]
            if mnt.startswith("/sys/fs/cgroup"):
                layout.append((mnt, fstype))
    v1 = [m for m, t in layout if t == "cgroup"]
    v2 = [m for m, t in layout if t == "cgroup2"]
    if v1 and v2:
        cg = f"hybrid: {len(v1)} v1 hierarchies + cgroup2 at {', '.join(v2)}"
    elif v2:
        cg = "unified (cgroup v2 only)"
    else:
        cg = f"legacy v1 ({len(v1)} hierarchies)"
    try:
        commit = subprocess.run(["git", "-C", root_dir, "rev-parse", "HEAD"], capture_output=True,
                                text=True).stdout.strip() or "unknown"
        dirty = subprocess.run(["git", "-C", root_dir, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        if dirty:
            commit += " (+ uncommitted changes in the work tree)"
    except OSError:
        commit = "unknown"
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": f"{cpu} x {os.cpu_count()}",
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "os": _first_line(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "cgroups": cg,
        "python": sys.version.split()[0],
        "load average at start": open("/proc/loadavg").read().split(" ")[0:3].__str__().strip("[]").replace("'", ""),
        "commit": commit,
        "pyrunc": _first_line([os.path.join(root_dir, ".venv/bin/pyrunc"), "--version"]),
        "runc": _first_line(["runc", "--version"]),
        "crun": _first_line(["crun", "--version"]),
        "skopeo": _first_line(["skopeo", "--version"]),
        "umoci": _first_line(["umoci", "--version"]),
        "containerd": _first_line(["containerd", "--version"]),
    }


# ---------------------------------------------------------------- cleanup

class Cleanup:
    """LIFO list of callbacks run at exit (also on Ctrl-C / errors)."""

    def __init__(self):
        self._fns = []

    def push(self, fn, *a, **kw):
        self._fns.append((fn, a, kw))
        return fn

    def mark(self) -> int:
        return len(self._fns)

    def run(self, down_to: int = 0):
        while len(self._fns) > down_to:
            fn, a, kw = self._fns.pop()
            try:
                fn(*a, **kw)
            except Exception as e:  # noqa: BLE001
                print(f"cleanup: {getattr(fn, '__name__', fn)}: {type(e).__name__}: {e}", file=sys.stderr)


CLEANUP = Cleanup()


def kill_pid(pid: int, sig=signal.SIGKILL):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def vm_rss_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def pss_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def mem_available_kb() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    return 0
