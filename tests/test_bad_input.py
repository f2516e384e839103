"""Every bad input gets a clear, typed error and leaves the node healthy.

After each bad input the same node must still serve a normal call: a bad
client costs its own connection at most, never the node.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import crucial
from crucial import protocol as P
from crucial.client import Client
from crucial.testing import LocalCluster, RawConnection, raw_connection, unconfigured_env
from crucial.testing.faults import garbage, oversized_header

# --------------------------------------------------------------------------- helpers


def assert_healthy(cluster: LocalCluster) -> None:
    """A fresh client makes a normal call on every node, and the node process is alive."""
    assert cluster.proc is not None and cluster.proc.poll() is None, "the node process died"
    with Client(cluster.addresses, cluster.config()) as client:
        for address in cluster.addresses:
            client.ping(address)
        key = f"health-{uuid.uuid4().hex[:8]}"
        assert client.call("AtomicInt", key, "increment_and_get", create=((41,), {})) == 42


def fail_info(frame: P.Frame) -> dict[str, Any]:
    assert frame.kind == P.Kind.FAIL, frame
    return P.decode_json(frame.body, "FAIL")


def error_of(frame: P.Frame) -> BaseException:
    assert frame.kind == P.Kind.ERROR, frame
    exc, _tb = pickle.loads(frame.body)
    assert isinstance(exc, BaseException)
    return exc


def call(seq: int, type_name: str, key: str, method: str, *args: Any, create: Any = None) -> P.CallRequest:
    return P.CallRequest(seq, type_name, key, method, args, None, create)


@pytest.fixture(scope="module")
def small_frames() -> Iterator[LocalCluster]:
    with LocalCluster(max_frame_size=4096) as c:
        yield c


@pytest.fixture(scope="module")
def secured() -> Iterator[LocalCluster]:
    with LocalCluster(token="s3cret") as c:
        yield c


# --------------------------------------------------------------------------- malformed frames


@pytest.mark.parametrize(
    ("name", "data", "code"),
    [
        ("garbage", garbage(64), "frame"),  # a random header: absurd length or unknown kind
        ("bad-kind", P.encode_frame(99, 1, b"x"), "frame"),
        ("reply-kind", P.encode_frame(P.Kind.OK, 1, b"x"), "frame"),
        ("not-json-hello", P.encode_frame(P.Kind.HELLO, 0, b"{not json"), "handshake"),
        ("json-list-hello", P.encode_frame(P.Kind.HELLO, 0, b"[1, 2]"), "handshake"),
        ("wrong-version", P.encode_frame(P.Kind.HELLO, 0, P.encode_json({"version": 99, "client_id": "x"})), "handshake"),
        ("no-client-id", P.encode_frame(P.Kind.HELLO, 0, P.encode_json({"version": P.PROTOCOL_VERSION})), "handshake"),
        ("call-first", P.encode_frame(P.Kind.CALL, 1, P.encode_call(call(1, "AtomicInt", "k", "get"))), "handshake"),
        ("ping-first", P.encode_frame(P.Kind.PING, 1), "handshake"),
    ],
)
def test_bad_first_frame_closes_that_connection(cluster: LocalCluster, name: str, data: bytes, code: str) -> None:
    with raw_connection(cluster.addresses[0]) as bystander, RawConnection(cluster.addresses[0]) as raw:
        raw.send_bytes(data)
        info = fail_info(raw.recv_frame())
        assert info["code"] == code and info["message"]
        assert raw.closed_by_peer()
        bystander.send(P.Kind.PING, 7)  # another connection is untouched
        assert bystander.recv_frame() == P.Frame(P.Kind.OK, 7, P.dumps(None))
    assert_healthy(cluster)


def test_truncated_frame_then_close(cluster: LocalCluster) -> None:
    with raw_connection(cluster.addresses[0]) as raw:
        raw.send_bytes(P.HEADER.pack(1000, P.Kind.CALL, 1) + b"only part of the body")
    with RawConnection(cluster.addresses[0]) as raw:
        raw.send_bytes(P.encode_frame(P.Kind.HELLO, 0, b'{"version"'))  # truncated JSON inside a whole frame
        assert fail_info(raw.recv_frame())["code"] == "handshake"
    with RawConnection(cluster.addresses[0]) as raw:
        raw.send_bytes(P.HEADER.pack(10, P.Kind.HELLO, 0)[:7])  # half a header
    assert_healthy(cluster)


def test_bad_kind_after_handshake(cluster: LocalCluster) -> None:
    with raw_connection(cluster.addresses[0]) as raw:
        raw.send(P.Kind.WELCOME, 3, b"{}")
        info = fail_info(raw.recv_frame())
        assert info["code"] == "frame" and "kind" in info["message"]
        assert raw.closed_by_peer()
    assert_healthy(cluster)


@pytest.mark.parametrize(
    ("name", "body", "error"),
    [
        ("not-pickle", b"\x80\x05garbage", crucial.SerializationError),
        ("empty", b"", crucial.SerializationError),
        ("short-tuple", P.dumps((1, "AtomicInt", "k")), crucial.ProtocolError),
        ("not-a-tuple", P.dumps(42), crucial.ProtocolError),
        ("type-not-str", P.dumps((1, 5, "k", "get", (), None, None, False, 0)), crucial.ProtocolError),
        ("args-not-tuple", P.dumps((1, "AtomicInt", "k", "get", [1], None, None, False, 0)), crucial.ProtocolError),
        ("bad-create", P.dumps((1, "AtomicInt", "k", "get", (), None, (1, 2, 3), False, 0)), crucial.ProtocolError),
    ],
)
def test_bad_call_body_answers_an_error(cluster: LocalCluster, name: str, body: bytes, error: type[Exception]) -> None:
    """A CALL that does not decode gets an ERROR reply; the connection stays usable."""
    with raw_connection(cluster.addresses[0]) as raw:
        raw.send(P.Kind.CALL, 5, body)
        reply = raw.recv_frame()
        assert reply.req_id == 5
        assert isinstance(error_of(reply), error)
        key = f"k-{uuid.uuid4().hex[:8]}"
        ok = raw.call(call(0, "AtomicInt", key, "increment_and_get", create=((1,), {})))
        assert ok.kind == P.Kind.OK and pickle.loads(ok.body) == 2
    assert_healthy(cluster)


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        (P.Kind.CALL, P.dumps((1, "AtomicInt", "k", "get", (), None, None, False, "not-an-int"))),
        (P.Kind.CALL, P.dumps(([1], "AtomicInt", "k", "get", (), None, None, False, 0))),
        (P.Kind.REGISTER, P.dumps(5)),
        (P.Kind.DELETE, P.dumps(5)),
    ],
    ids=["call-owner-str", "call-seq-list", "register-int", "delete-int"],
)
def test_wrongly_shaped_bodies_answer_an_error(cluster: LocalCluster, kind: int, body: bytes) -> None:
    with raw_connection(cluster.addresses[0]) as raw:
        raw.send(kind, 9, body)
        reply = raw.recv_frame()  # today: ConnectionError, the node closed the connection
        assert isinstance(error_of(reply), crucial.ProtocolError)
    assert_healthy(cluster)


# --------------------------------------------------------------------------- oversized frames


def test_oversized_frame_is_refused(small_frames: LocalCluster, key: str) -> None:
    client = small_frames.client(retries=0)
    with pytest.raises(crucial.ProtocolError, match="max_frame_size=4096"):
        client.call("List", key, "append", (b"x" * 100_000,), create=((), {}))
    with raw_connection(small_frames.addresses[0]) as raw:
        raw.send_bytes(oversized_header(4097))  # the header alone is refused: no body is buffered
        info = fail_info(raw.recv_frame())
        assert info["code"] == "frame" and "4097" in info["message"]
        assert raw.closed_by_peer()
    assert client.call("List", key, "append", (b"x" * 1000,), create=((), {})) is None  # small frames still pass
    assert_healthy(small_frames)


def test_very_oversized_frame_is_a_protocol_error(small_frames: LocalCluster, key: str) -> None:
    client = small_frames.client(retries=0)
    with pytest.raises(crucial.ProtocolError):
        client.call("List", key, "append", (b"x" * 8_000_000,), create=((), {}))
    assert_healthy(small_frames)


# --------------------------------------------------------------------------- tokens


@pytest.mark.parametrize("token", [None, "wrong", "s3cret-but-longer", ""])
def test_wrong_or_missing_token(secured: LocalCluster, token: str | None, key: str) -> None:
    config = crucial.Config(dso=secured.addresses, token=token, retries=0)
    with Client(secured.addresses, config) as client, pytest.raises(crucial.AuthenticationError, match="token"):
        client.call("AtomicInt", key, "get", create=((0,), {}))
    with RawConnection(secured.addresses[0]) as raw:
        info = fail_info(raw.hello(token=token))
        assert info["code"] == "auth"
        assert raw.closed_by_peer()
    assert_healthy(secured)


def test_async_client_wrong_token(secured: LocalCluster, key: str) -> None:
    import asyncio

    async def main() -> None:
        async with crucial.AsyncClient(
            secured.addresses, crucial.Config(dso=secured.addresses, token="nope", retries=0)
        ) as client:
            await client.call("AtomicInt", key, "get", create=((0,), {}))

    with pytest.raises(crucial.AuthenticationError):
        asyncio.run(main())
    assert_healthy(secured)


def test_right_token_works(secured: LocalCluster, key: str) -> None:
    client = secured.client()
    assert client.call("AtomicInt", key, "add_and_get", (5,), create=((1,), {})) == 6


def test_off_loopback_without_token_is_refused() -> None:
    env = unconfigured_env()
    proc = subprocess.run(
        [sys.executable, "-m", "crucial.cli", "server", "--host", "0.0.0.0", "--port", "0", "--watch-stdin"],
        stdin=subprocess.DEVNULL,  # were it to start anyway, it would exit at once
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "CRUCIAL_DSO=" not in proc.stdout
    assert "token" in proc.stderr and "0.0.0.0" in proc.stderr


# --------------------------------------------------------------------------- types and methods


def test_unknown_type(cluster: LocalCluster, key: str) -> None:
    client = cluster.client()
    creates: list[Any] = [None, ((), {})]
    for create in creates:
        with pytest.raises(crucial.UnknownTypeError, match="NoSuchType") as info:
            client.call("NoSuchType", key, "get", create=create)
        assert (info.value.type_name, info.value.key) == ("NoSuchType", key)
    assert_healthy(cluster)


def test_unknown_method_lists_the_available_ones(cluster: LocalCluster, key: str) -> None:
    client = cluster.client()
    with pytest.raises(crucial.UnknownMethodError, match="frobnicate") as info:
        client.call("AtomicInt", key, "frobnicate", create=((3,), {}))
    assert isinstance(info.value, AttributeError)
    assert "increment_and_get" in str(info.value) and "compare_and_set" in str(info.value)
    assert getattr(info.value, "key", None) == key
    assert client.call("AtomicInt", key, "get") == 3  # the object was created and is intact


@pytest.mark.parametrize("method", ["_x", "__init__", "__class__", "_crucial_client_gone", "__reduce__"])
def test_private_methods_are_not_callable(cluster: LocalCluster, key: str, method: str) -> None:
    client = cluster.client()
    with pytest.raises(crucial.UnknownMethodError, match="private"):
        client.call("Lock", key, method, ("someone",), create=((), {}))
    assert client.call("Lock", key, "locked") is False
    assert_healthy(cluster)


def test_arguments_that_do_not_pickle_fail_client_side(dso: LocalCluster, key: str) -> None:
    items = crucial.List(key=key)
    for bad in (threading.Lock(), (i for i in range(3))):
        with pytest.raises(crucial.SerializationError, match="append") as info:
            items.append(bad)
        assert isinstance(info.value, TypeError)
    with pytest.raises(crucial.ObjectNotFoundError):  # nothing was sent: the object was never created
        len(crucial.List.attach(key))
    items.append(1)
    assert items.to_list() == [1]


@crucial.shared
class Account:
    def __init__(self, balance: int = 0) -> None:
        self.balance = balance
        self.log: list[str] = []

    def withdraw(self, amount: int) -> int:
        self.log.append(f"withdraw {amount}")  # a mutation before the raise stays, as locally
        if amount > self.balance:
            raise ValueError(f"insufficient funds: {self.balance} < {amount}")
        self.balance -= amount
        return self.balance

    def history(self) -> list[str]:
        return list(self.log)

    def numbers(self) -> Any:
        return (i for i in range(3))

    def fail_oddly(self) -> None:
        raise Unpicklable()

    def fail_custom(self) -> None:
        raise InsufficientFunds("custom", 3)


class Unpicklable(Exception):
    def __init__(self) -> None:
        super().__init__("carries a lock")
        self.lock = threading.Lock()


class InsufficientFunds(Exception):
    def __init__(self, message: str, missing: int) -> None:
        super().__init__(message, missing)
        self.missing = missing


def test_user_exception_keeps_type_traceback_and_state(dso: LocalCluster, key: str) -> None:
    account = Account(10, key=key)  # type: ignore[call-arg]
    local = Account._State(10)  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="insufficient funds: 10 < 50") as info:
        account.withdraw(50)
    with pytest.raises(ValueError):
        local.withdraw(50)
    cause = info.value.__cause__
    assert isinstance(cause, crucial.RemoteTraceback)
    assert "in withdraw" in str(cause) and "ValueError: insufficient funds" in str(cause)
    assert account.history() == local.history() == ["withdraw 50"]
    assert account.withdraw(4) == local.withdraw(4) == 6


def test_custom_exception_travels_as_itself(dso: LocalCluster, key: str) -> None:
    account = Account(key=key)  # type: ignore[call-arg]
    with pytest.raises(Exception, match="custom") as info:
        account.fail_custom()
    assert type(info.value).__name__ == "InsufficientFunds"
    assert info.value.missing == 3  # type: ignore[attr-defined]
    assert isinstance(info.value.__cause__, crucial.RemoteTraceback)


def test_result_that_does_not_pickle(dso: LocalCluster, key: str) -> None:
    account = Account(1, key=key)  # type: ignore[call-arg]
    with pytest.raises(crucial.SerializationError, match="numbers") as info:
        account.numbers()
    assert "generator" in str(info.value)
    assert account.withdraw(1) == 0  # the object still works


def test_exception_that_does_not_pickle_is_a_remote_error(dso: LocalCluster, key: str) -> None:
    account = Account(key=key)  # type: ignore[call-arg]
    with pytest.raises(crucial.RemoteError, match="Unpicklable") as info:
        account.fail_oddly()
    assert info.value.type_name == "Unpicklable" and "carries a lock" in info.value.message
    assert account.history() == []


# --------------------------------------------------------------------------- deleted objects


def test_call_on_deleted_object(dso: LocalCluster, key: str) -> None:
    counter = crucial.AtomicInt(1, key=key)
    assert counter.increment_and_get() == 2
    assert counter.delete() is True
    assert counter.delete() is False
    with pytest.raises(crucial.ObjectNotFoundError, match=key) as info:
        counter.get()
    assert info.value.key == key and isinstance(info.value, LookupError)
    with pytest.raises(crucial.ObjectNotFoundError, match=key):
        crucial.AtomicInt.attach(key).get()
    assert crucial.AtomicInt(7, key=key).get() == 7  # create-if-absent makes a new one
