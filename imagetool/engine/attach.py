"""The operations that hold the caller's terminal: run and start attached, exec, logs.

Contracts:
  * ``run_attached`` connects to conmon's attach socket before the
    container's process starts, so nothing it prints is missed; stdout
    and stderr stay apart; with -i the caller's stdin is the container's
    (its end closes the container's stdin); with -t the terminal is raw
    and its size follows the caller's. Without -t, SIGINT, SIGTERM,
    SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 are forwarded to the container
    (docker's sig-proxy). The status is the container's (128+N for a
    signal), read from what conmon recorded.
  * ``exec_`` runs the runtime's exec in the foreground with the
    caller's stdio (or detached); its status is the process's, 126/127
    when the command cannot run or is not found.
  * ``logs`` prints the container's log entries to the stream each came
    from; with -f it follows until the container stops.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import termios
import time
import tty as ttymod

from runtime.toolkit import fastjson as json
from imagetool.errors import EngineError, UsageError, os_message
from imagetool.engine import humanize, monitor
from imagetool.engine.logs import Reader, docker_stamp
from imagetool.engine.network import publish_all
from imagetool.engine.ops import Engine
from imagetool.engine.spec import capabilities

_PROXIED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


def create(eng: Engine, opts: dict) -> dict:
    """Engine.create, with -P's ports resolved from the image once it is known."""
    rec = eng.create(opts)
    ports = [p.to_dict() for p in opts.get("ports") or []]
    if opts.get("publish_all"):
        have = {(p["container_port"], p["protocol"]) for p in ports}
        ports += [p.to_dict() for p in publish_all(rec["Config"].get("ExposedPorts") or {})
                  if (p.container_port, p.protocol) not in have]
    if ports:
        with eng.records.locked(rec["Id"]):
            rec = eng.records.load(rec["Id"])
            rec["Pyimg"]["ports"] = ports
            eng.records.save(rec)
    return rec


class _Terminal:
    """The caller's terminal in raw mode for the block (when stdin is one)."""

    def __init__(self, fd: int):
        self.fd, self.saved = fd, None

    def __enter__(self):
        if os.isatty(self.fd):
            self.saved = termios.tcgetattr(self.fd)
            ttymod.setraw(self.fd)
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)


def _size(fd: int) -> tuple[int, int] | None:
    try:
        sz = os.get_terminal_size(fd)
        return sz.lines, sz.columns
    except OSError:
        return None


def _status_after(eng: Engine, cid: str, timeout: float = 30.0) -> int:
    """The exit status conmon recorded for ``cid`` (waiting for it a little, as it comes after EOF)."""
    deadline = time.monotonic() + timeout
    while True:
        ex = monitor.exit_status(eng.paths.exit_file(cid), eng.paths.cdir(cid))
        if ex is not None:
            return ex[0]
        if time.monotonic() > deadline or (monitor.conmon_pid(eng.paths.cdir(cid), cid) is None and
                                           not os.path.exists(eng.paths.exit_file(cid))):
            rec = eng.refresh(cid)
            return rec["State"]["ExitCode"] if rec else 137
        time.sleep(0.02)


def _attached(eng: Engine, cid: str, *, interactive: bool, tty: bool, starter) -> int:
    holder = {}

    def on_created(rec):
        holder["sock"] = monitor.connect(eng.paths.attach_socket(cid))
        holder["bundle"] = rec["Pyimg"]["bundle"]

    old = {}

    def forward(signum, _frame):
        with contextlib.suppress(Exception):
            eng.signal(cid, signum)

    if not tty:
        for s in _PROXIED:
            with contextlib.suppress(ValueError, OSError):
                old[s] = signal.signal(s, forward)
    try:
        starter(on_created)
        sock = holder["sock"]
        stdin_fd = sys.stdin.fileno() if interactive else None
        if tty:
            size = _size(sys.stdin.fileno()) or _size(sys.stdout.fileno())
            if size:
                monitor.resize(holder["bundle"], *size)

            def winch(_s, _f):
                sz = _size(sys.stdin.fileno())
                if sz:
                    monitor.resize(holder["bundle"], *sz)
            with contextlib.suppress(ValueError, OSError):
                old[signal.SIGWINCH] = signal.signal(signal.SIGWINCH, winch)
            with _Terminal(sys.stdin.fileno()) if interactive else contextlib.nullcontext():
                monitor.pump(sock, stdin_fd=stdin_fd)
        else:
            monitor.pump(sock, stdin_fd=stdin_fd)
        sock.close()
        return _status_after(eng, cid)
    finally:
        for s, h in old.items():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(s, h)


def run_attached(eng: Engine, cid: str, *, interactive: bool, tty: bool, remove: bool) -> int:
    """docker run without -d: start, stream, return the container's status."""
    code = _attached(eng, cid, interactive=interactive, tty=tty,
                     starter=lambda cb: eng.start(cid, attach=cb))
    if remove:
        # conmon's cleanup removes it; wait for that so the name is free when we return
        deadline = time.monotonic() + 30
        while os.path.exists(eng.paths.cdir(cid)) and time.monotonic() < deadline:
            time.sleep(0.02)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(eng.paths.exit_file(cid))
    return code


def start_attached(eng: Engine, ref: str, *, interactive: bool) -> int:
    rec = eng.get(ref)
    cid = rec["Id"]
    tty = bool(rec["Config"].get("Tty"))
    if interactive and not rec["Config"].get("OpenStdin"):
        interactive = False  # docker: no stdin to attach to
    return _attached(eng, cid, interactive=interactive, tty=tty, starter=lambda cb: eng.start(cid, attach=cb))


def exec_(eng: Engine, ref: str, cmd: list[str], *, interactive: bool, tty: bool, detach: bool, env: list[str],
          user: str | None, workdir: str | None, privileged: bool = False) -> int:
    rec, proc = eng.exec_process(ref, cmd, tty=tty and not detach, env=env, user=user, workdir=workdir)
    if privileged:
        caps = capabilities([], ["ALL"], [])
        proc["capabilities"] = {"bounding": caps, "effective": caps, "permitted": caps}
    cdir = eng.paths.cdir(rec["Id"])
    pfile = os.path.join(cdir, f"exec-{os.getpid()}.json")
    with open(pfile, "w") as f:
        f.write(json.dumps(proc))
    argv = eng.runtime_command(rec) + ["exec", "--process", pfile]
    try:
        if detach:
            argv += ["--detach", rec["Id"]]
            with open(os.devnull, "r+b") as null:
                r = subprocess.run(argv, stdin=null, stdout=null, stderr=subprocess.PIPE)
            if r.returncode != 0:
                raise EngineError("OCI runtime exec failed: " +
                                  (r.stderr.decode(errors="replace").strip().splitlines() or ["failed"])[-1])
            return 0
        argv.append(rec["Id"])  # (a terminal is the process's "terminal": the runtime makes it)
        old = {}
        p = subprocess.Popen(argv, stdin=None if interactive or tty else subprocess.DEVNULL)

        def forward(signum, _frame):
            with contextlib.suppress(OSError):
                p.send_signal(signum)
        for s in _PROXIED:
            with contextlib.suppress(ValueError, OSError):
                old[s] = signal.signal(s, forward)
        try:
            rc = p.wait()
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        return 128 - rc if rc < 0 else rc
    except OSError as e:
        raise EngineError(os_message(e, f"running {argv[0]}")) from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(pfile)


def logs(eng: Engine, ref: str, *, follow: bool, tail: str, timestamps: bool, since: str | None,
         until: str | None) -> None:
    rec = eng.get(ref)
    now = time.time()
    t_since = humanize.parse_since(since, now) if since else None
    t_until = humanize.parse_since(until, now) if until else None
    if tail in ("all", "", None):
        n_tail = None
    elif str(tail).lstrip("-").isdigit():
        n_tail = int(tail)
        n_tail = None if n_tail < 0 else n_tail
    else:
        raise UsageError(f'invalid value for "tail": {tail}')
    reader = Reader(rec["LogPath"])
    out, err = sys.stdout.buffer, sys.stderr.buffer

    def emit(entries):
        for e in entries:
            if t_since is not None and e.time < t_since:
                continue
            if t_until is not None and e.time > t_until:
                continue
            target = err if e.stream == "stderr" else out
            target.write((docker_stamp(e) + " ").encode() + e.data if timestamps else e.data)
        out.flush()
        err.flush()

    first = reader.read()
    if n_tail is not None:
        first = first[len(first) - n_tail:] if n_tail else []
    emit(first)
    if not follow:
        return
    cid = rec["Id"]
    while True:
        r = eng.refresh(cid)
        running = r is not None and r["State"]["Status"] in ("running", "paused", "restarting")
        emit(reader.read())
        if not running:
            emit(reader.read())
            return
        time.sleep(0.1)
