"""The monitor: one conmon per running container, as podman runs it.

conmon (Debian's package) is the container's parent for its whole life.
It runs ``RUNTIME --root RUN/runtime create``, holds the container's stdio
(or its pty), writes everything the container prints to a log file in
the k8s-file format, serves an attach socket, records the exit status in
RUN/exits/<id> (and the container's own dir), and then runs the exit
command: ``pyimg --root ROOT container-cleanup <id>``, which does pyimg's
part (network teardown, --rm, the restart decision; see ops).

Contracts:
  * ``spawn`` returns once the runtime has created the container (its init
    waits for ``start``) with the container's pid, or raises EngineError
    with the runtime's own message, a CommandError (126/127) when that
    message says the command cannot be run. conmon is given a clean
    environment and no file descriptor but the two pipes it is meant to have.
  * conmon's attach socket (SOCK_SEQPACKET) is reached through
    RUN/s/<id>, a link conmon makes to the bundle, so the socket's path
    stays short. Each packet from it is one byte naming the stream
    (2 stdout, 3 stderr) and the data; what is written to it is the
    container's stdin, and closing our write side closes that stdin.
  * ``exit_status`` reads what conmon wrote; nothing here writes it.
"""
from __future__ import annotations

import os
import re
import select
import shutil
import socket
import subprocess
import sys
import time

from runtime.toolkit import fastjson as json
from imagetool.errors import CommandError, EngineError, os_message

STDOUT, STDERR = 2, 3
_BUF = 8193
_CONMON_CANDIDATES = ("/usr/bin/conmon", "/usr/libexec/podman/conmon", "/usr/local/bin/conmon")


def conmon_path() -> str:
    found = os.environ.get("PYIMG_CONMON")
    if found:
        return found
    for c in _CONMON_CANDIDATES:
        if os.access(c, os.X_OK):
            return c
    found = shutil.which("conmon")
    if found:
        return found
    raise EngineError("cannot find conmon, the container monitor (apt-get install conmon, or set PYIMG_CONMON)")


def _command_failure(message: str) -> EngineError:
    """The runtime's create error, as docker reports the two kinds it gives their own status."""
    m = message.strip().splitlines()[-1] if message.strip() else "the runtime failed"
    low = m.lower()
    exe = re.search(r'exec: "([^"]*)"', m) or re.search(r"exec(?:utable)? ([^:]+): ", m)
    if "executable file not found" in low or ("no such file or directory" in low and "exec" in low):
        what = exe.group(1) if exe else "the command"
        return CommandError(f'OCI runtime create failed: exec: "{what}": executable file not found in $PATH', 127)
    if "permission denied" in low and "exec" in low:
        what = exe.group(1) if exe else "the command"
        return CommandError(f'OCI runtime create failed: exec: "{what}": permission denied', 126)
    return EngineError(f"OCI runtime create failed: {m}")


def spawn(*, cid: str, name: str, runtime: str, runtime_root: str, bundle: str, cdir: str, exits: str,
          sockets: str, log_path: str, terminal: bool, stdin: bool, exit_command: list[str],
          env: dict | None = None) -> int:
    """Start conmon for a created container; returns the container's pid (see the contracts)."""
    conmon = conmon_path()
    sync_r, sync_w = os.pipe()
    start_r, start_w = os.pipe()
    os.set_inheritable(sync_w, True)
    os.set_inheritable(start_r, True)
    args = [conmon, "--api-version", "1", "-c", cid, "-u", cid, "-n", name, "-r", runtime,
            "-b", bundle, "-p", os.path.join(cdir, "pidfile"), "-P", os.path.join(cdir, "conmon.pid"),
            "--exit-dir", exits, "--persist-dir", cdir, "--socket-dir-path", sockets,
            "-l", f"k8s-file:{log_path}", "--log-level", "error", "--runtime-arg", "--root",
            "--runtime-arg", runtime_root, "--exit-command", exit_command[0]]
    for a in exit_command[1:]:
        args += ["--exit-command-arg", a]
    if terminal:
        args.append("-t")
    if stdin:
        args.append("-i")
    cenv = {"PATH": os.environ.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
            "_OCI_SYNCPIPE": str(sync_w), "_OCI_STARTPIPE": str(start_r)}
    cenv.update(env or {})
    try:
        with open(os.devnull, "r+b") as null:
            proc = subprocess.Popen(args, stdin=null, stdout=null, stderr=null, env=cenv,
                                    pass_fds=(sync_w, start_r), cwd="/")
    except OSError as e:
        for fd in (sync_r, sync_w, start_r, start_w):
            os.close(fd)
        raise EngineError(os_message(e, f"starting {conmon}")) from None
    os.close(sync_w)
    os.close(start_r)
    try:
        os.write(start_w, b"0")  # conmon waits for this before it runs the runtime
    except OSError:
        pass
    os.close(start_w)
    # conmon writes one JSON line once the runtime's create has finished; the
    # daemonized conmon keeps the pipe open afterwards, so read only that line.
    msg = None
    with os.fdopen(sync_r, "rb") as f:
        for line in f:
            try:
                m = json.loads(line)
            except ValueError:
                continue
            if isinstance(m, dict) and "data" in m:
                if isinstance(m["data"], int) and m["data"] > 0:
                    proc.wait()
                    return m["data"]
                msg = m.get("message") or ""
                break
    proc.wait()
    raise _command_failure(msg or f"conmon exited with status {proc.returncode} before the container was created")


def exit_status(exit_file: str, persist_dir: str | None = None) -> tuple[int, float] | None:
    """(status, when) as conmon recorded them, or None when it has not (yet)."""
    for p in (exit_file, os.path.join(persist_dir, "exit") if persist_dir else None):
        if not p:
            continue
        try:
            with open(p) as f:
                text = f.read().strip()
            when = os.stat(p).st_mtime
        except OSError:
            continue
        if text.lstrip("-").isdigit():
            return int(text), when
    return None


def conmon_pid(cdir: str, cid: str) -> int | None:
    """conmon's pid when it is alive (its pid file, checked against its command line)."""
    try:
        with open(os.path.join(cdir, "conmon.pid")) as f:
            pid = int(f.read().strip() or 0)
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read()
    except (OSError, ValueError):
        return None
    return pid if cid.encode() in cmd and b"conmon" in cmd.split(b"\0", 1)[0] else None


def connect(sock_path: str, timeout: float = 5.0) -> socket.socket:
    """Connect to a container's attach socket (it appears when conmon has created the container)."""
    deadline = time.monotonic() + timeout
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            s.connect(sock_path)
            return s
        except OSError as e:
            s.close()
            if time.monotonic() > deadline:
                raise EngineError(os_message(e, f"attaching to {sock_path}")) from None
            time.sleep(0.02)


def resize(bundle: str, rows: int, cols: int) -> None:
    """Tell conmon the terminal's size (its control fifo, message type 1)."""
    try:
        fd = os.open(os.path.join(bundle, "ctl"), os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.write(fd, f"1 {rows} {cols}\n".encode())
    except OSError:
        pass
    finally:
        os.close(fd)


def pump(sock: socket.socket, *, stdin_fd: int | None, out=None, err=None) -> None:
    """Copy the container's output to ``out``/``err`` (binary files) and ``stdin_fd`` to it,
    until conmon closes the socket."""
    out = out or sys.stdout.buffer
    err = err or sys.stderr.buffer
    fds = [sock.fileno()] + ([stdin_fd] if stdin_fd is not None else [])
    while True:
        try:
            ready, _, _ = select.select(fds, [], [])
        except InterruptedError:
            continue
        if sock.fileno() in ready:
            try:
                pkt = sock.recv(_BUF)
            except OSError:
                pkt = b""
            if not pkt:
                return
            target = err if pkt[0] == STDERR else out
            try:
                target.write(pkt[1:])
                target.flush()
            except (BrokenPipeError, OSError):
                pass
        if stdin_fd is not None and stdin_fd in ready:
            try:
                data = os.read(stdin_fd, 8192)
            except OSError:
                data = b""
            if not data:
                fds.remove(stdin_fd)
                stdin_fd = None
                try:
                    sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                continue
            try:
                sock.sendall(data)
            except OSError:
                fds.remove(stdin_fd)
                stdin_fd = None
