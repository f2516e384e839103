"""Several calls in one write, several replies in one write: the node answers a read's frames together."""

from __future__ import annotations

import socket
import uuid

from crucial import protocol as P
from crucial.testing import LocalCluster


def _frames(sock: socket.socket, n: int) -> list[P.Frame]:
    decoder = P.FrameDecoder(kinds=P.Kind.REPLIES)
    frames: list[P.Frame] = []
    while len(frames) < n:
        data = sock.recv(65536)
        assert data, "the node closed the connection"
        frames += decoder.feed(data)
    return frames


def test_calls_sent_together_are_all_answered(cluster: LocalCluster, key: str) -> None:
    host, port = cluster.addresses[0].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        hello = {"version": P.PROTOCOL_VERSION, "token": cluster.token, "client_id": uuid.uuid4().hex}
        sock.sendall(P.encode_frame(P.Kind.HELLO, 0, P.encode_json(hello)))
        assert _frames(sock, 1)[0].kind == P.Kind.WELCOME
        calls = [P.CallRequest(i, "Counter", key, "increment", (i,), None, ((0,), {})) for i in range(1, 51)]
        sock.sendall(b"".join(P.encode_frame(P.Kind.CALL, 100 + c.seq, P.encode_call(c)) for c in calls))
        replies = _frames(sock, 50)
    assert sorted(f.req_id for f in replies) == list(range(101, 151))
    assert all(f.kind == P.Kind.OK for f in replies)
    # applied in arrival order: the n-th reply is the running sum 1 + 2 + ... + n
    assert [P.loads(f.body) for f in sorted(replies, key=lambda f: f.req_id)] == [n * (n + 1) // 2 for n in range(1, 51)]
