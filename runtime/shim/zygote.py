"""A warm parent for shims: one process that has loaded the shim, and
forks a new shim for each container.

A shim is a Python process, and most of its start-up and memory is the
same code loaded again: the interpreter's objects for runtime's modules,
protobuf's, the shim's message classes. The zygote loads them once; a shim
forked from it starts serving at once, and shares those pages with the
zygote and with every other shim forked from it (copy-on-write; gc.freeze
keeps the collector from writing to them).

    handoff(sock, flags)   `start`'s side: give the zygote the bound shim
                           socket, the bundle dir, the flags and the
                           environment; True once a shim serves it, False
                           when there is no usable zygote (the caller then
                           forks the shim itself, and start_zygote() makes
                           one for the next container)
    main(key)              the zygote process

Contract:
* One zygote per (interpreter, code, containerd address, mount
  namespace): the key names its socket, /run/pyrunc-shim/zygote-KEY, so a
  shim is always made by code identical to the caller's, in the caller's
  mount namespace (a changed install or a private containerd gets its
  own). The zygote holds an flock on KEY.lock for its lifetime: two
  zygotes of one key never run.
* Only root reaches it: the directory is 0700 and the peer must be uid 0.
* A shim forked from it runs as one started by containerd would: the
  bundle as its cwd, the caller's environment, a session of its own, stdio
  on /dev/null; the zygote passes it no fd but the shim socket.
* The zygote reaps its shims and exits once it has had none for IDLE
  seconds; a failed or missing zygote only costs speed, never a container.
"""
from __future__ import annotations

import _sha256  # hashlib would load OpenSSL
import _socket  # the C module: `socket` imports enum and selectors
import fcntl
import gc
import posix
import select
import sys
import time

from runtime.toolkit import fastjson as json
from runtime.toolkit import os_lite as os

DIR = "/run/pyrunc-shim"
IDLE = 10.0
_MAX = 1 << 20


def code_key(address: str) -> str:
    """The zygote key for this interpreter, this code and this containerd
    (and mount namespace)."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parts = [sys.executable, here, address]
    try:
        parts.append(str(os.stat("/proc/self/ns/mnt").st_ino))
    except OSError:
        pass
    for d in (here, os.path.join(here, "shim"), os.path.join(here, "cgroups"), os.path.join(here, "toolkit")):
        try:
            names = sorted(os.listdir(d))
        except OSError:
            continue
        for n in names:
            if n.endswith(".py"):
                st = os.stat(os.path.join(d, n))
                parts.append(f"{n}:{st.st_mtime_ns}:{st.st_size}")
    return _sha256.sha256("\0".join(parts).encode()).hexdigest()[:24]


def set_name(name: str) -> None:
    """The process's name in ps/top (its comm; 15 bytes at most). A shim
    forked from the zygote keeps the zygote's command line, so this, and
    its cwd (the bundle), are what tell one shim from another."""
    try:
        with open("/proc/self/comm", "w") as f:
            f.write(name[:15])
    except OSError:
        pass


def _path(key: str) -> str:
    return os.path.join(DIR, f"zygote-{key}")


def handoff(sock, flags: dict, key: str) -> bool:
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC)
    s.settimeout(2)  # a fork takes milliseconds: a zygote this slow is not worth waiting for
    try:
        s.connect(_path(key))
        env = {k.decode(errors="surrogateescape"): v.decode(errors="surrogateescape")
               for k, v in posix.environ.items()}
        msg = json.dumps({"cwd": os.getcwd(), "flags": flags, "env": env}).encode()
        s.sendmsg([msg], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, sock.fileno().to_bytes(4, sys.byteorder))])
        reply = s.recv(4096)
        return bool(reply) and bool(json.loads(reply).get("pid"))
    except (OSError, ValueError):
        return False
    finally:
        s.close()


def start_zygote(key: str) -> None:
    """Start the zygote of key in the background (detached, with a command
    line of its own); returns at once. Called by a `start` that found none."""
    try:
        with open("/proc/self/cmdline", "rb") as f:
            argv = f.read().split(b"\0")[:-1]
    except OSError:
        return
    # The launcher's interpreter command up to its `-c CODE`, then ours.
    if b"-c" not in argv:
        return
    base = argv[:argv.index(b"-c") + 2]
    pid = os.fork()
    if pid:
        os.waitpid(pid, 0)
        return
    try:
        os.setsid()
        if os.fork():
            os._exit(0)
        null = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.closerange(3, 65536)
        os.execv(base[0], base + [b"zygote", key.encode()])
    finally:
        os._exit(1)


def _preload() -> None:
    from runtime.shim import messages
    messages.LEAN = True
    from runtime.shim import loop, server, service, stdio, ttrpc  # noqa: F401
    from runtime import container, execproc, lifecycle, manage, rootfs  # noqa: F401
    from runtime import cgroups
    from runtime.cgroups import oom, v1, v1_writers, v2, v2_writers  # noqa: F401
    del cgroups
    for pkg, table, _ in messages.TABLES:
        for name in table:
            messages.get(f"{pkg}.{name}")


def main(key: str) -> int:
    os.makedirs(DIR, mode=0o700, exist_ok=True)
    os.chmod(DIR, 0o700)
    lock = os.open(_path(key) + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return 0  # another one serves this key
    set_name("pyrunc-zygote")
    _preload()
    path = _path(key)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    zs = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC)
    zs.bind(path)
    zs.listen(64)
    mine = (os.stat(path).st_ino, os.fstat(lock).st_ino)
    gc.freeze()
    children: set[int] = set()
    idle_since = time.monotonic()
    try:
        while True:
            ready, _, _ = select.select([zs.fileno()], [], [], 0.5)
            while children:
                try:
                    pid, _ = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    children.clear()
                    break
                if not pid:
                    break
                children.discard(pid)
            if ready:
                pid = _serve_one(zs, lock)
                if pid:
                    children.add(pid)
                idle_since = time.monotonic()
            elif not children and time.monotonic() - idle_since > IDLE:
                return 0
            if children:
                idle_since = time.monotonic()
    finally:
        # Remove our socket and lock file, unless a newer zygote has
        # already replaced them (then they are its).
        for p, ino in ((path, mine[0]), (path + ".lock", mine[1])):
            try:
                if os.stat(p).st_ino == ino:
                    os.unlink(p)
            except OSError:
                pass
        zs.close()


def _serve_one(zs, lock: int) -> int:
    try:
        fd, _ = zs._accept()  # (socket.socket.accept is this plus a Python wrapper)
    except OSError:
        return 0
    conn = _socket.socket(fileno=fd)
    conn.settimeout(5)
    got = []
    try:
        creds = conn.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)
        if int.from_bytes(creds[4:8], sys.byteorder) != 0:
            return 0
        data, anc, _, _ = conn.recvmsg(_MAX, _socket.CMSG_SPACE(4))
        for level, kind, payload in anc:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                got += [int.from_bytes(payload[i:i + 4], sys.byteorder) for i in range(0, len(payload) - 3, 4)]
        req = json.loads(data)
        if len(got) != 1:
            raise ValueError("expected the shim socket")
        pid = os.fork()
        if pid == 0:
            _become_shim(zs, conn, lock, got[0], req)  # never returns
        conn.send(json.dumps({"pid": pid}).encode())
        return pid
    except (OSError, ValueError, KeyError):
        return 0
    finally:
        for f in got:
            os.close(f)
        conn.close()


def _become_shim(zs, conn, lock: int, sock_fd: int, req: dict) -> None:
    code = 1
    try:
        zs.close()
        conn.close()
        os.close(lock)
        os.setsid()
        set_name("pyrunc-shim")
        os.chdir(req["cwd"])
        posix.environ.clear()
        for k, v in req["env"].items():
            posix.environ[k.encode(errors="surrogateescape")] = v.encode(errors="surrogateescape")
        from runtime.shim import server
        server.adjust_oom_score()
        sock = _socket.socket(fileno=sock_fd)
        os.set_inheritable(sock_fd, False)
        code = server.serve(sock, req["flags"])
    except BaseException as e:  # noqa: BLE001 - the shim's last word goes to containerd's log
        try:
            sys.stderr.write(f"containerd-shim-pyrunc-v1: serving failed: {e}\n")
        except Exception:  # noqa: BLE001
            pass
    os._exit(code)
