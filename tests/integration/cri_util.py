"""A small client of containerd's CRI plugin (kubelet's API, runtime.v1).

The messages are described here as field-number tables, only the fields
the tests use, and built into classes at run time by runtime.shim.messages;
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
from runtime.shim import messages as pb  # noqa: E402

# The CRI messages this client uses, in runtime.shim.messages' table
# notation (only the fields used; numbers from the CRI API's wire format).
ENUMS = {
    "NamespaceMode": ["POD", "CONTAINER", "NODE", "TARGET"],
    "PodSandboxState": ["SANDBOX_READY", "SANDBOX_NOTREADY"],
    "ContainerState": ["CONTAINER_CREATED", "CONTAINER_RUNNING", "CONTAINER_EXITED", "CONTAINER_UNKNOWN"],
}

MESSAGES = {
    "Empty": "",
    "VersionRequest": "version=1:string",
    "VersionResponse": "version=1:string runtime_name=2:string runtime_version=3:string "
        "runtime_api_version=4:string",
    "RuntimeCondition": "type=1:string status=2:bool reason=3:string message=4:string",
    "RuntimeStatus": "conditions=1:*RuntimeCondition",
    "StatusRequest": "verbose=1:bool",
    "StatusResponse": "status=1:RuntimeStatus info=2:map<string,string>",
    # pod sandboxes
    "PodSandboxMetadata": "name=1:string uid=2:string namespace=3:string attempt=4:uint32",
    "NamespaceOption": "network=1:NamespaceMode pid=2:NamespaceMode ipc=3:NamespaceMode",
    "LinuxSandboxSecurityContext": "namespace_options=1:NamespaceOption",
    "LinuxPodSandboxConfig": "cgroup_parent=1:string security_context=2:LinuxSandboxSecurityContext",
    "PodSandboxConfig": "metadata=1:PodSandboxMetadata hostname=2:string log_directory=3:string "
        "labels=6:map<string,string> annotations=7:map<string,string> linux=8:LinuxPodSandboxConfig",
    "RunPodSandboxRequest": "config=1:PodSandboxConfig runtime_handler=2:string",
    "RunPodSandboxResponse": "pod_sandbox_id=1:string",
    "PodSandboxIdRequest": "pod_sandbox_id=1:string",  # Stop-, RemovePodSandboxRequest
    "PodSandboxStatusRequest": "pod_sandbox_id=1:string verbose=2:bool",
    "PodSandboxNetworkStatus": "ip=1:string",
    "Namespace": "options=2:NamespaceOption",
    "LinuxPodSandboxStatus": "namespaces=1:Namespace",
    "PodSandboxStatus": "id=1:string metadata=2:PodSandboxMetadata state=3:PodSandboxState created_at=4:int64 "
        "network=5:PodSandboxNetworkStatus linux=6:LinuxPodSandboxStatus labels=7:map<string,string> "
        "runtime_handler=9:string",
    "PodSandboxStatusResponse": "status=1:PodSandboxStatus info=2:map<string,string>",
    "PodSandboxFilter": "id=1:string",
    "ListPodSandboxRequest": "filter=1:PodSandboxFilter",
    "PodSandbox": "id=1:string state=3:PodSandboxState runtime_handler=7:string",
    "ListPodSandboxResponse": "items=1:*PodSandbox",
    # containers
    "ImageSpec": "image=1:string",
    "KeyValue": "key=1:string value=2:string",
    "ContainerMetadata": "name=1:string attempt=2:uint32",
    "LinuxContainerSecurityContext": "namespace_options=3:NamespaceOption",
    "LinuxContainerResources": "cpu_period=1:int64 cpu_quota=2:int64 cpu_shares=3:int64 "
        "memory_limit_in_bytes=4:int64",
    "LinuxContainerConfig": "resources=1:LinuxContainerResources "
        "security_context=2:LinuxContainerSecurityContext",
    "ContainerConfig": "metadata=1:ContainerMetadata image=2:ImageSpec command=3:*string args=4:*string "
        "working_dir=5:string envs=6:*KeyValue labels=9:map<string,string> log_path=11:string "
        "linux=15:LinuxContainerConfig",
    "CreateContainerRequest": "pod_sandbox_id=1:string config=2:ContainerConfig "
        "sandbox_config=3:PodSandboxConfig",
    "CreateContainerResponse": "container_id=1:string",
    "ContainerIdRequest": "container_id=1:string",  # Start-, RemoveContainerRequest
    "StopContainerRequest": "container_id=1:string timeout=2:int64",
    "ContainerStatusRequest": "container_id=1:string verbose=2:bool",
    "ContainerStatus": "id=1:string metadata=2:ContainerMetadata state=3:ContainerState created_at=4:int64 "
        "started_at=5:int64 finished_at=6:int64 exit_code=7:int32 image=8:ImageSpec image_ref=9:string "
        "reason=10:string message=11:string log_path=15:string",
    "ContainerStatusResponse": "status=1:ContainerStatus info=2:map<string,string>",
    "ContainerFilter": "id=1:string pod_sandbox_id=3:string",
    "ListContainersRequest": "filter=1:ContainerFilter",
    "Container": "id=1:string pod_sandbox_id=2:string state=6:ContainerState",
    "ListContainersResponse": "containers=1:*Container",
    "ExecSyncRequest": "container_id=1:string cmd=2:*string timeout=3:int64",
    "ExecSyncResponse": "stdout=1:bytes stderr=2:bytes exit_code=3:int32",
    "ExecRequest": "container_id=1:string cmd=2:*string tty=3:bool stdin=4:bool stdout=5:bool stderr=6:bool",
    "ExecResponse": "url=1:string",
    # images
    "Image": "id=1:string repo_tags=2:*string size=4:uint64",
    "ImageStatusRequest": "image=1:ImageSpec",
    "ImageStatusResponse": "image=1:Image",
    "ListImagesResponse": "images=1:*Image",
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

class Enum:
    """An enum's names by number (Name) and numbers by name (Value)."""

    def __init__(self, values: list[str]):
        self.values = values

    def Name(self, number: int) -> str:  # noqa: N802 - protobuf's enum wrapper spelling
        return self.values[number]

    def Value(self, name: str) -> int:  # noqa: N802
        return self.values.index(name)


class Messages:
    """The classes by name (m["Name"], m.Name) and the enums (m.EnumName)."""

    def __init__(self):
        built = pb.build([("runtime.v1", MESSAGES, ENUMS)])
        for full, cls in built.items():
            setattr(self, full.rsplit(".", 1)[1], cls)
        for name, values in ENUMS.items():
            setattr(self, name, Enum(values))

    def __getitem__(self, name: str):
        return getattr(self, name)


_BUILT = None


def messages() -> Messages:
    global _BUILT
    if _BUILT is None:
        _BUILT = Messages()
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
