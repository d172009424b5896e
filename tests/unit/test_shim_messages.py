"""The shim's protobuf tables, its hand-written DeleteResponse, its ttrpc
framing and its command line, without root or containerd."""
import socket
import struct

import pytest

pytest.importorskip("google.protobuf")

from runtime.shim import main as shim_main  # noqa: E402
from runtime.shim import messages as pb  # noqa: E402
from runtime.shim import ttrpc  # noqa: E402
from runtime.shim.loop import Loop  # noqa: E402
from runtime.toolkit.cmdtable import UsageError  # noqa: E402


def test_messages_round_trip_with_the_field_numbers_of_the_tables():
    M = pb.get("containerd.task.v2.CreateTaskRequest")
    r = M(id="c1", bundle="/b", terminal=True, stdout="/f/out")
    r.rootfs.add(type="overlay", source="overlay", options=["lowerdir=/l", "upperdir=/u"])
    raw = r.SerializeToString()
    # field 1 (id): tag 0x0a; field 4 (terminal, varint): tag 0x20
    assert raw.startswith(b"\x0a\x02c1\x12\x02/b")
    assert b"\x20\x01" in raw
    back = M.FromString(raw)
    assert back.rootfs[0].options == ["lowerdir=/l", "upperdir=/u"] and back.terminal


def test_map_and_enum_fields():
    U = pb.get("containerd.task.v2.UpdateTaskRequest")
    u = U(id="x")
    u.annotations["k"] = "v"
    assert U.FromString(u.SerializeToString()).annotations == {"k": "v"}
    S = pb.get("containerd.task.v2.StateResponse")
    assert S.FromString(S(status=pb.enum_value("containerd.v1.types.Status", "PAUSED")).SerializeToString()).status == 4


@pytest.mark.parametrize("pid,status,ns", [(0, 0, 0), (4242, 137, 1_700_000_000_123_456_789), (1, 0, 5)])
def test_delete_response_matches_protobufs_encoding(pid, status, ns):
    D = pb.get("containerd.task.v2.DeleteResponse")
    want = D(pid=pid, exit_status=status)
    want.exited_at.seconds, want.exited_at.nanos = divmod(ns, 10**9)
    got = D.FromString(pb.delete_response(pid, status, ns))
    assert got == want


def test_flags_go_style():
    g, verb, _ = shim_main.T.parse(["-namespace", "k8s.io", "--id=abc", "-debug", "-address", "/a.sock",
                                    "start"])
    assert (g["namespace"], g["id"], g["debug"], g["address"], verb) == ("k8s.io", "abc", True, "/a.sock", "start")
    with pytest.raises(UsageError, match="flag provided but not defined: -bogus"):
        shim_main.T.parse(["-bogus", "x"])
    with pytest.raises(UsageError, match="flag needs an argument: -id"):
        shim_main.T.parse(["-id"])


def test_socket_address_is_per_address_namespace_and_group():
    a = shim_main.socket_address("/run/containerd/containerd.sock", "k8s.io", "pod1")
    assert a.startswith("unix:///run/containerd/s/") and len(a.rsplit("/", 1)[1]) == 64
    assert a != shim_main.socket_address("/run/containerd/containerd.sock", "k8s.io", "pod2")
    assert a != shim_main.socket_address("/run/containerd/containerd.sock", "default", "pod1")


def test_usage_errors_are_one_line(capsys):
    assert shim_main.run(["start"]) == 1
    assert capsys.readouterr().err == "containerd-shim-pyrunc-v1: shim namespace cannot be empty\n"
    assert shim_main.run(["-namespace", "x", "frobnicate"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("containerd-shim-pyrunc-v1: ") and "'frobnicate'" in err and err.count("\n") == 1


def _request(stream, service, method, payload=b""):
    body = pb.get("ttrpc.Request")(service=service, method=method, payload=payload).SerializeToString()
    return ttrpc.frame(stream, ttrpc.REQUEST, body)


def _responses(sock, n):
    out = {}
    buf = b""
    while len(out) < n:
        buf += sock.recv(65536)
        while len(buf) >= 10:
            length, stream, mtype, _ = struct.unpack(">IIBB", buf[:10])
            if len(buf) < 10 + length:
                break
            assert mtype == ttrpc.RESPONSE
            out[stream] = pb.get("ttrpc.Response").FromString(buf[10:10 + length])
            buf = buf[10 + length:]
    return out


def test_server_answers_out_of_order_and_reports_errors():
    """A deferred reply (a Wait) does not hold up later calls on the same
    connection; errors carry their gRPC codes."""
    loop = Loop()
    a, b = socket.socketpair()
    held = []

    def handler(service, method, payload, reply):
        if method == "Wait":
            held.append(reply)
        elif method == "Fail":
            reply(None, ttrpc.NOT_FOUND, "process already finished")
        else:
            reply(b"ok:" + payload)
            if held:
                loop.call_later(0, lambda: held.pop()(b"waited"))
            loop.call_later(0.05, loop.stop)
    ttrpc.ServerConn(loop, a, handler)
    # two frames in one write, the second split across writes
    b.sendall(_request(1, "s", "Wait") + _request(3, "s", "Fail"))
    rest = _request(5, "s", "Echo", b"x")
    b.sendall(rest[:7])
    loop.call_later(0.01, lambda: b.sendall(rest[7:]))
    loop.run()
    got = _responses(b, 3)
    assert got[3].status.code == ttrpc.NOT_FOUND and got[3].status.message == "process already finished"
    assert got[5].payload == b"ok:x" and got[1].payload == b"waited"


def test_oversized_frame_is_refused():
    loop = Loop()
    a, b = socket.socketpair()
    ttrpc.ServerConn(loop, a, lambda *a: None, on_close=lambda c: loop.stop())
    b.sendall(struct.pack(">IIBB", ttrpc.MAX_MESSAGE + 1, 7, ttrpc.REQUEST, 0))
    loop.run()
    got = _responses(b, 1)
    assert got[7].status.code == ttrpc.RESOURCE_EXHAUSTED
