"""A small client of containerd's CRI plugin (kubelet's API, runtime.v1).

The messages are described here as field-number tables, only the fields
the tests use, and built into classes at run time by runtime/shim/pbuild.py;
the project copies no .proto files. Field numbers are those of the CRI API
(k8s.io/cri-api, package runtime.v1), which only ever adds fields.

    cri = CriClient(containerd_socket)
    cri.RunPodSandbox(config={...}, runtime_handler="runc").pod_sandbox_id
    cri.m.ContainerState.Name(cri.ContainerStatus(container_id=c).status.state)

Every RPC of RPCS is a method taking the request's fields as keywords (a
dict or a message for a message field; `_deadline` for the call's own
time limit) and returning the response message; errors are grpc.RpcError.
exec_stream() runs the URL an Exec call returns over a WebSocket (the
streaming server's v4.channel.k8s.io protocol), with the connection made
in the network namespace the streaming server is in.
"""
from __future__ import annotations

import base64
import ctypes
import json
import os
import socket
import struct
import sys
import threading
import urllib.parse

import grpc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from runtime.shim import pbuild  # noqa: E402

S, M, E, R = "string", "message", "enum", "repeated"
STRMAP = ("string", "string")

ENUMS = {
    "NamespaceMode": {"POD": 0, "CONTAINER": 1, "NODE": 2, "TARGET": 3},
    "PodSandboxState": {"SANDBOX_READY": 0, "SANDBOX_NOTREADY": 1},
    "ContainerState": {"CONTAINER_CREATED": 0, "CONTAINER_RUNNING": 1, "CONTAINER_EXITED": 2,
                       "CONTAINER_UNKNOWN": 3},
}

MESSAGES = {
    "Empty": [],
    "VersionRequest": [(1, "version", S)],
    "VersionResponse": [(1, "version", S), (2, "runtime_name", S), (3, "runtime_version", S),
                        (4, "runtime_api_version", S)],
    "RuntimeCondition": [(1, "type", S), (2, "status", "bool"), (3, "reason", S), (4, "message", S)],
    "RuntimeStatus": [(1, "conditions", M, R, "RuntimeCondition")],
    "StatusRequest": [(1, "verbose", "bool")],
    "StatusResponse": [(1, "status", M, None, "RuntimeStatus"), (2, "info", "map", None, STRMAP)],
    # pod sandboxes
    "PodSandboxMetadata": [(1, "name", S), (2, "uid", S), (3, "namespace", S), (4, "attempt", "uint32")],
    "NamespaceOption": [(1, "network", E, None, "NamespaceMode"), (2, "pid", E, None, "NamespaceMode"),
                        (3, "ipc", E, None, "NamespaceMode")],
    "LinuxSandboxSecurityContext": [(1, "namespace_options", M, None, "NamespaceOption")],
    "LinuxPodSandboxConfig": [(1, "cgroup_parent", S),
                              (2, "security_context", M, None, "LinuxSandboxSecurityContext")],
    "PodSandboxConfig": [(1, "metadata", M, None, "PodSandboxMetadata"), (2, "hostname", S),
                         (3, "log_directory", S), (6, "labels", "map", None, STRMAP),
                         (7, "annotations", "map", None, STRMAP),
                         (8, "linux", M, None, "LinuxPodSandboxConfig")],
    "RunPodSandboxRequest": [(1, "config", M, None, "PodSandboxConfig"), (2, "runtime_handler", S)],
    "RunPodSandboxResponse": [(1, "pod_sandbox_id", S)],
    "PodSandboxIdRequest": [(1, "pod_sandbox_id", S)],  # Stop-, RemovePodSandboxRequest
    "PodSandboxStatusRequest": [(1, "pod_sandbox_id", S), (2, "verbose", "bool")],
    "PodSandboxNetworkStatus": [(1, "ip", S)],
    "Namespace": [(2, "options", M, None, "NamespaceOption")],
    "LinuxPodSandboxStatus": [(1, "namespaces", M, None, "Namespace")],
    "PodSandboxStatus": [(1, "id", S), (2, "metadata", M, None, "PodSandboxMetadata"),
                         (3, "state", E, None, "PodSandboxState"), (4, "created_at", "int64"),
                         (5, "network", M, None, "PodSandboxNetworkStatus"),
                         (6, "linux", M, None, "LinuxPodSandboxStatus"),
                         (7, "labels", "map", None, STRMAP), (9, "runtime_handler", S)],
    "PodSandboxStatusResponse": [(1, "status", M, None, "PodSandboxStatus"),
                                 (2, "info", "map", None, STRMAP)],
    "PodSandboxFilter": [(1, "id", S)],
    "ListPodSandboxRequest": [(1, "filter", M, None, "PodSandboxFilter")],
    "PodSandbox": [(1, "id", S), (3, "state", E, None, "PodSandboxState"), (7, "runtime_handler", S)],
    "ListPodSandboxResponse": [(1, "items", M, R, "PodSandbox")],
    # containers
    "ImageSpec": [(1, "image", S)],
    "KeyValue": [(1, "key", S), (2, "value", S)],
    "ContainerMetadata": [(1, "name", S), (2, "attempt", "uint32")],
    "LinuxContainerSecurityContext": [(3, "namespace_options", M, None, "NamespaceOption")],
    "LinuxContainerResources": [(1, "cpu_period", "int64"), (2, "cpu_quota", "int64"), (3, "cpu_shares", "int64"),
                                (4, "memory_limit_in_bytes", "int64")],
    "LinuxContainerConfig": [(1, "resources", M, None, "LinuxContainerResources"),
                             (2, "security_context", M, None, "LinuxContainerSecurityContext")],
    "ContainerConfig": [(1, "metadata", M, None, "ContainerMetadata"), (2, "image", M, None, "ImageSpec"),
                        (3, "command", S, R), (4, "args", S, R), (5, "working_dir", S),
                        (6, "envs", M, R, "KeyValue"), (9, "labels", "map", None, STRMAP),
                        (11, "log_path", S), (15, "linux", M, None, "LinuxContainerConfig")],
    "CreateContainerRequest": [(1, "pod_sandbox_id", S), (2, "config", M, None, "ContainerConfig"),
                               (3, "sandbox_config", M, None, "PodSandboxConfig")],
    "CreateContainerResponse": [(1, "container_id", S)],
    "ContainerIdRequest": [(1, "container_id", S)],  # Start-, RemoveContainerRequest
    "StopContainerRequest": [(1, "container_id", S), (2, "timeout", "int64")],
    "ContainerStatusRequest": [(1, "container_id", S), (2, "verbose", "bool")],
    "ContainerStatus": [(1, "id", S), (2, "metadata", M, None, "ContainerMetadata"),
                        (3, "state", E, None, "ContainerState"), (4, "created_at", "int64"),
                        (5, "started_at", "int64"), (6, "finished_at", "int64"), (7, "exit_code", "int32"),
                        (8, "image", M, None, "ImageSpec"), (9, "image_ref", S), (10, "reason", S),
                        (11, "message", S), (15, "log_path", S)],
    "ContainerStatusResponse": [(1, "status", M, None, "ContainerStatus"), (2, "info", "map", None, STRMAP)],
    "ContainerFilter": [(1, "id", S), (3, "pod_sandbox_id", S)],
    "ListContainersRequest": [(1, "filter", M, None, "ContainerFilter")],
    "Container": [(1, "id", S), (2, "pod_sandbox_id", S), (6, "state", E, None, "ContainerState")],
    "ListContainersResponse": [(1, "containers", M, R, "Container")],
    "ExecSyncRequest": [(1, "container_id", S), (2, "cmd", S, R), (3, "timeout", "int64")],
    "ExecSyncResponse": [(1, "stdout", "bytes"), (2, "stderr", "bytes"), (3, "exit_code", "int32")],
    "ExecRequest": [(1, "container_id", S), (2, "cmd", S, R), (3, "tty", "bool"), (4, "stdin", "bool"),
                    (5, "stdout", "bool"), (6, "stderr", "bool")],
    "ExecResponse": [(1, "url", S)],
    # images
    "Image": [(1, "id", S), (2, "repo_tags", S, R), (4, "size", "uint64")],
    "ImageStatusRequest": [(1, "image", M, None, "ImageSpec")],
    "ImageStatusResponse": [(1, "image", M, None, "Image")],
    "ListImagesResponse": [(1, "images", M, R, "Image")],
}

RT, IMG = "runtime.v1.RuntimeService", "runtime.v1.ImageService"
# method: (service, request message, response message)
RPCS = {
    "Version": (RT, "VersionRequest", "VersionResponse"),
    "Status": (RT, "StatusRequest", "StatusResponse"),
    "RunPodSandbox": (RT, "RunPodSandboxRequest", "RunPodSandboxResponse"),
    "StopPodSandbox": (RT, "PodSandboxIdRequest", "Empty"),
    "RemovePodSandbox": (RT, "PodSandboxIdRequest", "Empty"),
    "PodSandboxStatus": (RT, "PodSandboxStatusRequest", "PodSandboxStatusResponse"),
    "ListPodSandbox": (RT, "ListPodSandboxRequest", "ListPodSandboxResponse"),
    "CreateContainer": (RT, "CreateContainerRequest", "CreateContainerResponse"),
    "StartContainer": (RT, "ContainerIdRequest", "Empty"),
    "StopContainer": (RT, "StopContainerRequest", "Empty"),
    "RemoveContainer": (RT, "ContainerIdRequest", "Empty"),
    "ContainerStatus": (RT, "ContainerStatusRequest", "ContainerStatusResponse"),
    "ListContainers": (RT, "ListContainersRequest", "ListContainersResponse"),
    "ExecSync": (RT, "ExecSyncRequest", "ExecSyncResponse"),
    "Exec": (RT, "ExecRequest", "ExecResponse"),
    "ImageStatus": (IMG, "ImageStatusRequest", "ImageStatusResponse"),
    "ListImages": (IMG, "Empty", "ListImagesResponse"),
}

_BUILT = None


def messages():
    global _BUILT
    if _BUILT is None:
        _BUILT = pbuild.build("runtime.v1", MESSAGES, ENUMS)
    return _BUILT


class CriClient:
    def __init__(self, socket_path: str, timeout: float = 60.0):
        self.m = messages()
        self.timeout = timeout
        self.channel = grpc.insecure_channel(f"unix://{socket_path}")
        self._calls = {}
        for name, (service, req, resp) in RPCS.items():
            self._calls[name] = (self.m[req], self.channel.unary_unary(
                f"/{service}/{name}", request_serializer=self.m[req].SerializeToString,
                response_deserializer=self.m[resp].FromString))

    def __getattr__(self, name):
        try:
            req_cls, call = self.__dict__["_calls"][name]
        except KeyError:
            raise AttributeError(name) from None

        def rpc(_deadline=None, **fields):
            # (not `timeout`: StopContainer and ExecSync have fields of that name)
            return call(req_cls(**fields), timeout=_deadline or self.timeout)
        rpc.__name__ = name
        return rpc

    def close(self):
        self.channel.close()


# ---------------------------------------------------------------------------
# Exec's streaming URL, over a WebSocket
# ---------------------------------------------------------------------------

CLONE_NEWNET = 0x40000000


def connect_in_netns(netns: str | None, addr: tuple[str, int], timeout=30.0) -> socket.socket:
    """A TCP connection made from inside the network namespace at `netns`
    (a bind-mounted netns file): a helper thread enters it (setns changes
    only the calling thread) and makes the socket, which then works from
    any thread."""
    if netns is None:
        return socket.create_connection(addr, timeout=timeout)
    out = {}

    def run():
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(netns, os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns {netns}")
            finally:
                os.close(fd)
            out["sock"] = socket.create_connection(addr, timeout=timeout)
        except Exception as e:  # handed to the caller's thread
            out["error"] = e
    t = threading.Thread(target=run)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["sock"]


class ExecResult:
    def __init__(self, stdout: bytes, stderr: bytes, status: dict):
        self.stdout, self.stderr, self.status = stdout, stderr, status

    @property
    def exit_code(self) -> int:
        """0 on Success; else the ExitCode cause of the v4 status."""
        if self.status.get("status") == "Success":
            return 0
        for c in (self.status.get("details") or {}).get("causes") or []:
            if c.get("reason") == "ExitCode":
                return int(c["message"])
        raise AssertionError(f"no exit code in the exec status {self.status}")


def exec_stream(url: str, netns: str | None = None, stdin: bytes | None = None,
                timeout=60.0) -> ExecResult:
    """Run an Exec URL to its end: channel 0 is stdin (`stdin` is sent
    once, for an ExecRequest with stdin; v4 has no way to close it, so the
    command must stop reading by itself), 1 stdout (a tty's output too), 2
    stderr, 3 the v4 status."""
    u = urllib.parse.urlsplit(url)
    sock = connect_in_netns(netns, (u.hostname, u.port or 80), timeout)
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall((f"GET {u.path}{'?' + u.query if u.query else ''} HTTP/1.1\r\n"
                      f"Host: {u.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                      f"Sec-WebSocket-Protocol: v4.channel.k8s.io\r\n"
                      f"Origin: http://{u.netloc}\r\n\r\n").encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            data = sock.recv(4096)
            if not data:
                raise AssertionError(f"exec stream closed during the handshake: {buf!r}")
            buf += data
        head, buf = buf.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101"):
            raise AssertionError(f"exec stream handshake refused: {head!r} {buf[:500]!r}")
        if stdin:
            _send_frame(sock, 2, b"\0" + stdin)
        out = {1: b"", 2: b"", 3: b""}
        reader = _Frames(sock, buf)
        while True:
            frame = reader.next()
            if frame is None:
                break
            opcode, payload = frame
            if opcode == 8:  # close
                break
            if opcode == 9:  # ping
                _send_frame(sock, 10, payload)
            elif opcode in (1, 2, 0) and payload:
                ch = payload[0]
                out[ch] = out.get(ch, b"") + payload[1:]
        status = json.loads(out[3]) if out[3].strip() else {"status": "Success"}
        return ExecResult(out[1], out[2], status)
    finally:
        sock.close()


class _Frames:
    def __init__(self, sock, buf: bytes):
        self.sock, self.buf = sock, buf

    def _need(self, n):
        while len(self.buf) < n:
            data = self.sock.recv(65536)
            if not data:
                return False
            self.buf += data
        return True

    def _take(self, n):
        b, self.buf = self.buf[:n], self.buf[n:]
        return b

    def next(self):
        if not self._need(2):
            return None
        b0, b1 = self._take(2)
        n = b1 & 0x7F
        if n == 126:
            self._need(2)
            n = struct.unpack(">H", self._take(2))[0]
        elif n == 127:
            self._need(8)
            n = struct.unpack(">Q", self._take(8))[0]
        mask = b""
        if b1 & 0x80:
            self._need(4)
            mask = self._take(4)
        if not self._need(n):
            return None
        payload = self._take(n)
        if mask:
            payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
        return b0 & 0x0F, payload


def _send_frame(sock, opcode: int, payload: bytes) -> None:
    """One final, masked frame (a client must mask what it sends)."""
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    sock.sendall(head + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload)))
