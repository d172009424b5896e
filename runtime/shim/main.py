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
        container through the runtime, unmount the rootfs, remove the dead
        shim's socket (the one in the bundle's `address` file, when nothing
        listens on it any more), and print a DeleteResponse (the init's
        pid, status 137) on stdout.

The server is a subreaper, so every process of its containers is reaped
by it, and serves the Task service until containerd's Shutdown finds no
container left. Errors of start and delete go to stderr, one line, exit 1.
"""
from __future__ import annotations

import _sha256  # hashlib would load OpenSSL into every shim
import _socket  # the C module: `socket` imports enum and selectors
import sys
import time

from runtime.toolkit import fastjson as json
from runtime.toolkit import os_lite as os
from runtime.toolkit.cmdtable import Arg, Opt, Table, UsageError, finish, short_lived

SOCKET_DIR = "/run/containerd/s"
GROUP_ANNOTATIONS = ("io.containerd.runc.v2.group", "io.kubernetes.cri.sandbox-id")
NAME = "containerd-shim-pyrunc-v1"


GLOBAL_OPTS = [
    Opt("--namespace", "namespace", str, "", "containerd namespace of the task"),
    Opt("--address", "address", str, "", "containerd's gRPC socket"),
    Opt("--publish-binary", "publish_binary", str, "", "containerd's binary (events go over TTRPC_ADDRESS)"),
    Opt("--id", "id", str, "", "id of the task"),
    Opt("--bundle", "bundle", str, "", "the task's bundle (delete)"),
    Opt("--socket", "socket", str, "", "accepted for compatibility: the socket is always start's"),
    Opt("--debug", "debug", bool, False, "debug lines in containerd's log"),
]
T = Table(NAME, """containerd shim v2 for pyrunc (runtime io.containerd.pyrunc.v1)

containerd runs this program itself: `start` to get a task's shim and its
address, `delete` to clean up after a shim that died.""", GLOBAL_OPTS, style="go")


@T.verb("start", help="start (or join) the shim of a task and print its address")
def _start(g, a):
    return cmd_start(_required_ns(g))


@T.verb("delete", help="clean up the task of a shim that died, print a DeleteResponse")
def _delete(g, a):
    return cmd_delete(_required_ns(g))


@T.verb("zygote", Arg("key"), help="(internal) the warm parent of shims: runtime.shim.zygote")
def _zygote(g, a):
    from runtime.shim import messages, zygote
    messages.LEAN = True
    return zygote.main(a["key"])


def _required_ns(g: dict) -> dict:
    if not g["namespace"]:
        raise UsageError("shim namespace cannot be empty")
    from runtime.shim import messages
    messages.LEAN = True  # this process uses no protobuf types but the shim's
    return g


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
        from runtime.shim import server, zygote
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
                server.adjust_oom_score()
                code = server.serve(sock, flags)
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


def _remove_dead_socket(bundle: str) -> None:
    """A SIGKILLed shim cannot unlink its socket. The socket is removed
    only if it is one of ours (in SOCKET_DIR) and nothing accepts on it:
    a group's shim that still serves other containers keeps it."""
    try:
        with open(os.path.join(bundle, "address")) as f:
            address = f.read().strip()
    except OSError:
        return
    path = address[len("unix://"):] if address.startswith("unix://") else ""
    if os.path.dirname(path) != SOCKET_DIR or _can_connect(path):
        return
    try:
        os.unlink(path)
    except OSError:
        pass


def cmd_delete(flags: dict) -> int:
    from runtime import lifecycle
    from runtime import errors as rerrors
    from runtime.shim import messages as pb
    from runtime.shim import bundle as shim_bundle
    bundle = flags.get("bundle") or os.getcwd()
    cid = flags.get("id", "")
    root = shim_bundle.runtime_root(shim_bundle.read_options(bundle), flags.get("namespace", ""))
    try:
        lifecycle.delete(root, cid, force=True)
    except (rerrors.RuntimeFailure, OSError) as e:
        sys.stderr.write(f"delete container {cid}: {e}\n")
    shim_bundle.unmount_rootfs(bundle)
    _remove_dead_socket(bundle)
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
    """Run one action and end the process without the interpreter's
    teardown (cmdtable.finish), which start and delete would pay on every
    container's path."""
    short_lived()
    finish(run(sys.argv[1:] if argv is None else argv))


def run(argv: list[str]) -> int:
    """The one place that maps failures to messages and exit codes."""
    try:
        g, verb, values = T.parse(argv)
        if verb == "--version":
            from runtime.version import VERSION
            sys.stdout.write(f"{NAME}:\n  Version:  {VERSION}\n")
            return 0
        if verb in (None, "--help"):
            names = ", ".join(n for n in T.verbs if n != "zygote")
            raise UsageError(f"started by containerd: -namespace NS -address ADDR -id ID [{names}]")
        return T.func(verb)(g, values)
    except UsageError as e:
        sys.stderr.write(f"{NAME}: {e}\n")
        return 1
    except OSError as e:
        where = f" {e.filename}" if e.filename else ""
        sys.stderr.write(f"{NAME}:{where}: {e.strerror or e}\n")
        return 1


if __name__ == "__main__":
    main()
