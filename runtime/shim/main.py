"""`containerd-shim-pyrunc-v1`: the shim v2 command line.

containerd runs it in the bundle directory as

    containerd-shim-pyrunc-v1 -namespace NS -address ADDR -publish-binary BIN -id ID [-debug] start
    containerd-shim-pyrunc-v1 -namespace NS -address ADDR -publish-binary BIN -id ID -bundle DIR delete

with TTRPC_ADDRESS (where events go) in the environment and, for start,
the runtime options on stdin.

start   binds the shim's socket, unix:///run/containerd/s/HASH, HASH being
        sha256 of ADDR/NS/GROUP, where GROUP is the pod's sandbox id when
        the bundle's annotations name one (io.kubernetes.cri.sandbox-id,
        io.containerd.runc.v2.group) and ID otherwise. If a live shim
        already serves that socket (a pod's second container), it prints
        its address and is done. Otherwise it writes the address to the
        bundle's `address` file and has the server forked (in a session of
        its own, stdio on /dev/null, logging to the bundle's `log` fifo
        that containerd reads): by the zygote (runtime.shim.zygote), which
        has the shim loaded already, or when there is none, by itself
        (starting a zygote for the next one). It prints the address and
        exits.
delete  is containerd's clean-up after a shim died: force-delete the
        container through the runtime, unmount the rootfs, and print a
        DeleteResponse (the init's pid, status 137) on stdout.

The server is a subreaper, so every process of its containers is reaped
by it, and serves the Task service until containerd's Shutdown finds no
container left. Errors of start and delete go to stderr, one line, exit 1.
"""
from __future__ import annotations

import _sha256  # hashlib would load OpenSSL into every shim
import _socket  # the C module: `socket` imports enum and selectors
import posix
import sys
import time

from runtime.toolkit import fastjson as json
from runtime.toolkit import os_lite as os

SOCKET_DIR = "/run/containerd/s"
GROUP_ANNOTATIONS = ("io.containerd.runc.v2.group", "io.kubernetes.cri.sandbox-id")
NAME = "containerd-shim-pyrunc-v1"


class UsageError(Exception):
    pass


def parse_flags(argv: list[str]) -> tuple[dict, list[str]]:
    """Go's flag package conventions: -name value, -name=value, --name;
    booleans take no value; flags end at the first non-flag."""
    bools = {"debug", "v"}
    strings = {"namespace", "address", "publish-binary", "id", "bundle", "socket", "zygote"}
    flags: dict = {}
    i = 0
    while i < len(argv):
        a = argv[i]
        if not a.startswith("-") or a == "-":
            break
        if a == "--":
            i += 1
            break
        name, eq, value = a.lstrip("-").partition("=")
        if name in bools:
            flags[name] = value not in ("false", "0") if eq else True
        elif name in strings:
            if not eq:
                i += 1
                if i >= len(argv):
                    raise UsageError(f"flag needs an argument: -{name}")
                value = argv[i]
            flags[name] = value
        else:
            raise UsageError(f"flag provided but not defined: -{name}")
        i += 1
    return flags, argv[i:]


def socket_address(address: str, namespace: str, group: str) -> str:
    digest = _sha256.sha256(os.path.join(address, namespace, group).encode()).hexdigest()
    return f"unix://{SOCKET_DIR}/{digest}"


def _group(cid: str) -> str:
    try:
        with open("config.json") as f:
            ann = json.loads(f.read()).get("annotations") or {}
    except (OSError, ValueError):
        return cid
    for key in GROUP_ANNOTATIONS:
        if ann.get(key):
            return ann[key]
    return cid


def _write_atomic(path: str, text: str) -> None:
    tmp = os.path.join(os.path.dirname(path) or ".", "." + os.path.basename(path))
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _can_connect(path: str) -> bool:
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    s.settimeout(2)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def adjust_oom_score() -> None:
    """The shim one above containerd (its OOM score), as the runc shim: the
    kernel picks it after the containers and before containerd."""
    try:
        with open("/proc/self/oom_score_adj") as f:
            score = int(f.read().strip())
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(min(score + 1, 1000)))
    except (OSError, ValueError):
        pass


def cmd_start(flags: dict) -> int:
    ns, cid = flags.get("namespace", ""), flags.get("id", "")
    address = socket_address(flags.get("address", ""), ns, _group(cid))
    path = address[len("unix://"):]
    os.makedirs(SOCKET_DIR, mode=0o700, exist_ok=True)
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        sock.bind(path)
    except OSError as e:
        sock.close()
        if e.errno != 98:  # EADDRINUSE
            raise
        if _can_connect(path):
            # Served already: this container joins its group's shim.
            _write_atomic("address", address)
            sys.stdout.write(address)
            return 0
        os.unlink(path)
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
        sock.bind(path)
    try:
        sock.listen(64)
        _write_atomic("address", address)
        try:
            sys.stdin.buffer.read()  # the runtime options: Create brings them again
        except OSError:
            pass
        sys.stdout.flush()
        sys.stderr.flush()
        from runtime.shim import zygote
        key = zygote.code_key(flags.get("address", ""))
        if zygote.handoff(sock, flags, key):
            sock.close()
            sys.stdout.write(address)
            return 0
        zygote.start_zygote(key)  # for the next container; this one is forked here
        pid = os.fork()
        if pid == 0:
            try:
                os.setsid()
                zygote.set_name("pyrunc-shim")
                null = os.open("/dev/null", os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
                os.close(null)
                adjust_oom_score()
                code = serve(sock, flags)
            except BaseException as e:  # noqa: BLE001 - the daemon's last word goes to containerd's log
                try:
                    sys.stderr.write(f"{NAME}: serving failed: {e}\n")
                except Exception:  # noqa: BLE001
                    pass
                code = 1
            os._exit(code)
    except BaseException:
        sock.close()
        try:
            os.unlink(path)
        except OSError:
            pass
        raise
    sock.close()
    sys.stdout.write(address)
    return 0


class _LogWriter:
    """sys.stderr for the server: the bundle's `log` fifo, which containerd
    reads into its own log. Writes never block the loop; a full or absent
    reader loses the line rather than the shim."""

    def __init__(self):
        try:
            self.fd = os.open("log", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            self.fd = os.open("/dev/null", os.O_WRONLY | os.O_CLOEXEC)

    def write(self, s: str) -> int:
        try:
            os.write(self.fd, s.encode(errors="replace"))
        except OSError:
            pass
        return len(s)

    def flush(self) -> None:
        pass


def serve(sock, flags: dict) -> int:
    import _signal as signal
    from runtime import log
    from runtime import syscalls as sc
    from runtime.shim.loop import Loop
    from runtime.shim.service import Service
    from runtime.shim import ttrpc
    sys.stderr = _LogWriter()
    log.configure(None, "text", debug=bool(flags.get("debug")))
    sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
    loop = Loop()
    path = sock.getsockname()
    service = Service(loop, flags.get("namespace", ""), posix.environ.get(b"TTRPC_ADDRESS", b"").decode(),
                      on_empty=loop.stop)
    conns = set()

    def accept():
        try:
            fd, _ = sock._accept()  # (socket.socket.accept is this plus a Python wrapper)
        except (BlockingIOError, InterruptedError):
            return
        conn = _socket.socket(fileno=fd)
        conns.add(ttrpc.ServerConn(loop, conn, service.handle, on_close=conns.discard))

    sock.setblocking(False)
    loop.add_reader(sock.fileno(), accept)
    loop.on_signal(signal.SIGCHLD, service.reap)
    loop.on_signal(signal.SIGTERM, lambda _s: loop.stop())
    loop.on_signal(signal.SIGINT, lambda _s: loop.stop())
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    service.reap()
    try:
        loop.run()
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
        for c in list(conns):
            c.close()
    return 0


def cmd_delete(flags: dict) -> int:
    from runtime import lifecycle
    from runtime import errors as rerrors
    from runtime.shim import messages as pb
    from runtime.shim import service as svc
    bundle = flags.get("bundle") or os.getcwd()
    cid = flags.get("id", "")
    root = svc.runtime_root(svc.read_options(bundle), flags.get("namespace", ""))
    try:
        lifecycle.delete(root, cid, force=True)
    except (rerrors.RuntimeFailure, OSError) as e:
        sys.stderr.write(f"delete container {cid}: {e}\n")
    svc.unmount_rootfs(bundle)
    pid = 0
    try:
        with open(os.path.join(bundle, "init.pid")) as f:
            pid = int(f.read().strip() or 0)
    except (OSError, ValueError):
        pass
    sys.stdout.buffer.write(pb.delete_response(pid, 137, time.time_ns()))
    sys.stdout.flush()
    return 0


def main(argv: list[str] | None = None) -> None:
    sys.exit(run(sys.argv[1:] if argv is None else argv))


def run(argv: list[str]) -> int:
    try:
        flags, rest = parse_flags(argv)
        if flags.get("v"):
            from runtime.version import VERSION
            sys.stdout.write(f"{NAME}:\n  Version:  {VERSION}\n")
            return 0
        if flags.get("zygote"):
            from runtime.shim import messages, zygote
            messages.LEAN = True
            return zygote.main(flags["zygote"])
        if not flags.get("namespace"):
            raise UsageError("shim namespace cannot be empty")
        action = rest[0] if rest else ""
        if action in ("start", "delete"):
            from runtime.shim import messages
            messages.LEAN = True  # this process uses no protobuf types but the shim's
        if action == "start":
            return cmd_start(flags)
        if action == "delete":
            return cmd_delete(flags)
        if action:
            raise UsageError(f"unknown action {action!r} (start, delete)")
        raise UsageError("the shim is started by containerd: start or delete")
    except UsageError as e:
        sys.stderr.write(f"{NAME}: {e}\n")
        return 1
    except OSError as e:
        where = f" {e.filename}" if e.filename else ""
        sys.stderr.write(f"{NAME}:{where}: {e.strerror or e}\n")
        return 1


if __name__ == "__main__":
    main()
