"""The wire protocol, byte by byte: frames, JSON bodies and call envelopes (no sockets)."""

from __future__ import annotations

import itertools
import pickle
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crucial.exceptions import FrameTooLargeError, ProtocolError, SerializationError
from crucial.protocol import (
    HEADER,
    CallRequest,
    Frame,
    FrameDecoder,
    Kind,
    decode_call,
    decode_json,
    dumps,
    encode_call,
    encode_frame,
    encode_json,
    loads,
)

# -- frames -----------------------------------------------------------------------

frames_st = st.lists(
    st.builds(
        Frame,
        kind=st.sampled_from(sorted(Kind.ALL)),
        req_id=st.integers(min_value=0, max_value=2**64 - 1),
        body=st.binary(max_size=300),
    ),
    max_size=8,
)


def _chunk(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@given(frames=frames_st, cuts=st.lists(st.integers(min_value=0), max_size=20))
def test_frames_roundtrip_in_any_chunking(frames: list[Frame], cuts: list[int]) -> None:
    wire = b"".join(encode_frame(f.kind, f.req_id, f.body) for f in frames)
    decoder = FrameDecoder()
    out: list[Frame] = []
    for chunk in _chunk(wire, cuts):
        out += decoder.feed(chunk)
    assert out == frames
    assert decoder.buffered == 0


def test_header_layout() -> None:
    assert HEADER.size == 13
    assert encode_frame(Kind.PING, 7) == b"\x00\x00\x00\x00" + bytes([Kind.PING]) + (7).to_bytes(8, "big")
    assert encode_frame(Kind.OK, 1, b"abc")[:4] == (3).to_bytes(4, "big")


def test_partial_frame_is_buffered_until_complete() -> None:
    wire = encode_frame(Kind.CALL, 5, b"hello world")
    decoder = FrameDecoder()
    assert decoder.feed(wire[:-1]) == []
    assert decoder.buffered == len(wire) - 1
    assert decoder.feed(wire[-1:]) == [Frame(Kind.CALL, 5, b"hello world")]
    assert decoder.buffered == 0


def test_frame_too_large_is_raised_from_the_header_alone() -> None:
    decoder = FrameDecoder(max_frame_size=100)
    header_only = HEADER.pack(101, Kind.CALL, 1)  # announces 101 bytes; none of them sent
    with pytest.raises(FrameTooLargeError) as info:
        decoder.feed(header_only)
    assert info.value.size == 101
    assert info.value.limit == 100
    assert isinstance(info.value, ProtocolError)


def test_frame_at_the_limit_is_accepted() -> None:
    decoder = FrameDecoder(max_frame_size=100)
    assert decoder.feed(encode_frame(Kind.OK, 1, b"x" * 100)) == [Frame(Kind.OK, 1, b"x" * 100)]


def test_frame_too_large_after_a_good_frame_in_the_same_chunk() -> None:
    decoder = FrameDecoder(max_frame_size=10)
    with pytest.raises(FrameTooLargeError):
        decoder.feed(encode_frame(Kind.OK, 1, b"ok") + HEADER.pack(11, Kind.OK, 2))


@pytest.mark.parametrize("kind", [0, 15, 23, 255])
def test_unknown_kind_is_a_protocol_error(kind: int) -> None:
    with pytest.raises(ProtocolError, match=f"kind {kind}"):
        FrameDecoder().feed(HEADER.pack(0, kind, 1))


@pytest.mark.parametrize("kind", sorted(Kind.REPLIES))
def test_request_decoder_rejects_reply_kinds(kind: int) -> None:
    decoder = FrameDecoder(kinds=Kind.REQUESTS)
    with pytest.raises(ProtocolError):
        decoder.feed(encode_frame(kind, 1, b"{}"))


@pytest.mark.parametrize("kind", sorted(Kind.REQUESTS))
def test_request_decoder_accepts_request_kinds(kind: int) -> None:
    assert FrameDecoder(kinds=Kind.REQUESTS).feed(encode_frame(kind, 3, b"")) == [Frame(kind, 3, b"")]


def test_kind_partition() -> None:
    assert all(k < 16 for k in Kind.REQUESTS)
    assert all(k >= 16 for k in Kind.REPLIES)
    assert not Kind.REQUESTS & Kind.REPLIES
    assert Kind.FROM_NODE == Kind.REPLIES | {Kind.OUTPUT}  # OUTPUT comes before a reply, it ends nothing
    assert Kind.OUTPUT >= 16 and Kind.OUTPUT not in Kind.REPLIES
    assert Kind.ALL == Kind.REQUESTS | Kind.FROM_NODE


def test_output_body_round_trip() -> None:
    from crucial.protocol import STDERR, STDOUT, decode_output, encode_output

    assert decode_output(encode_output(STDOUT, "héllo\n")) == (STDOUT, "héllo\n")
    assert decode_output(encode_output(STDERR, "")) == (STDERR, "")
    for bad in (b"", b"\x03text", b"\x00"):
        with pytest.raises(ProtocolError, match="OUTPUT"):
            decode_output(bad)


# -- JSON bodies ---------------------------------------------------------------------


def test_json_roundtrip() -> None:
    obj = {"version": 1, "token": None, "client_id": "c-1", "view": {"nodes": ["a:1", "b:2"]}}
    assert decode_json(encode_json(obj), "HELLO") == obj


@pytest.mark.parametrize("body", [b"", b"{", b"not json", b"\xff\xfe\x00", b'{"a": 1'])
def test_decode_json_malformed(body: bytes) -> None:
    with pytest.raises(ProtocolError, match="malformed HELLO"):
        decode_json(body, "HELLO")


@pytest.mark.parametrize("body", [b"[]", b"1", b'"s"', b"null", b"true"])
def test_decode_json_must_be_an_object(body: bytes) -> None:
    with pytest.raises(ProtocolError, match="expected an object"):
        decode_json(body, "WELCOME")


def test_decode_json_deeply_nested_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        decode_json(b"[" * 100_000, "HELLO")


# -- pickled values -------------------------------------------------------------------


def test_dumps_loads_roundtrip_and_lambdas() -> None:
    assert loads(dumps({"a": (1, 2.5, b"x")})) == {"a": (1, 2.5, b"x")}
    y = 10
    f = loads(dumps(lambda x: x + y))
    assert f(1) == 11


def test_loads_garbage_is_a_serialization_error() -> None:
    with pytest.raises(SerializationError, match="reply cannot be unpickled"):
        loads(b"\x80\x05garbage", what="reply")


# -- call envelopes ------------------------------------------------------------------


def test_call_roundtrip_defaults() -> None:
    call = CallRequest(1, "AtomicInt", "hits", "increment_and_get")
    assert decode_call(encode_call(call)) == call


def test_call_roundtrip_all_fields() -> None:
    call = CallRequest(
        seq=2**40,
        type_name="Dict",
        key="k/ü",
        method="put",
        args=("a", [1, 2]),
        kwargs={"overwrite": True},
        create=((3,), {"name": "x"}),
        force=True,
        owner=123456789,
    )
    assert decode_call(encode_call(call)) == call


def test_call_with_lambda_travels() -> None:
    offset = 5
    call = CallRequest(3, "AtomicInt", "k", "update", args=(lambda v: v * 2 + offset,), create=((lambda: 7,), {}))
    back = decode_call(encode_call(call))
    assert back.args[0](10) == 25
    assert back.create is not None
    assert back.create[0][0]() == 7


@given(
    seq=st.integers(min_value=0, max_value=2**63),
    type_name=st.text(max_size=20),
    key=st.text(max_size=40),
    method=st.text(max_size=20),
    args=st.lists(st.one_of(st.integers(), st.text(), st.binary(), st.none(), st.floats(allow_nan=False)), max_size=5).map(tuple),
    force=st.booleans(),
    owner=st.integers(min_value=0, max_value=2**64 - 1),
)
def test_call_roundtrip_property(
    seq: int, type_name: str, key: str, method: str, args: tuple[object, ...], force: bool, owner: int
) -> None:
    call = CallRequest(seq, type_name, key, method, args, None, None, force, owner)
    assert decode_call(encode_call(call)) == call


def _raw(payload: object) -> bytes:
    return pickle.dumps(payload)


GOOD = (1, "T", "k", "m", (), None, None, False, 0)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(GOOD[:8], id="too-short"),
        pytest.param((*GOOD, 0, 0), id="too-long"),
        pytest.param((*GOOD, "3"), id="below-not-int"),
        pytest.param(42, id="not-a-tuple"),
        pytest.param(None, id="none"),
        pytest.param((1, "T", 5, "m", (), None, None, False, 0), id="key-not-str"),
        pytest.param((1, b"T", "k", "m", (), None, None, False, 0), id="type-not-str"),
        pytest.param((1, "T", "k", None, (), None, None, False, 0), id="method-not-str"),
        pytest.param((1, "T", "k", "m", [1], None, None, False, 0), id="args-list"),
        pytest.param((1, "T", "k", "m", (), [("a", 1)], None, False, 0), id="kwargs-not-dict"),
        pytest.param((1, "T", "k", "m", (), None, ((), {}, 1), False, 0), id="create-arity"),
        pytest.param((1, "T", "k", "m", (), None, ([], {}), False, 0), id="create-args-list"),
        pytest.param((1, "T", "k", "m", (), None, ((), None), False, 0), id="create-kwargs-none"),
        pytest.param((1, "T", "k", "m", (), None, "create", False, 0), id="create-str"),
    ],
)
def test_malformed_call_is_a_protocol_error(payload: object) -> None:
    with pytest.raises(ProtocolError, match="malformed call"):
        decode_call(_raw(payload))


def test_a_call_says_which_calls_are_over_and_nine_fields_mean_none() -> None:
    assert decode_call(_raw((*GOOD, 7))).below == 7
    assert decode_call(_raw(GOOD)).below == 0  # the shell's one-call client sends nine


@pytest.mark.parametrize("owner", ["abc", None, [1]])
def test_malformed_owner_is_a_protocol_error(owner: object) -> None:
    with pytest.raises(ProtocolError):
        decode_call(_raw((1, "T", "k", "m", (), None, None, False, owner)))


def test_call_body_that_is_not_a_pickle() -> None:
    with pytest.raises(SerializationError, match="call"):
        decode_call(b"definitely not a pickle")


def test_unpicklable_args_name_the_method_and_key() -> None:
    call = CallRequest(1, "Dict", "my-key", "put", args=(threading.Lock(),))
    with pytest.raises(SerializationError) as info:
        encode_call(call)
    msg = str(info.value)
    assert "Dict.put" in msg
    assert "'my-key'" in msg
    assert info.value.__cause__ is not None


def test_unpicklable_create_args_are_a_serialization_error() -> None:
    call = CallRequest(1, "Lock", "k", "acquire", create=((iter_gen(),), {}))
    with pytest.raises(SerializationError, match=r"Lock\.acquire"):
        encode_call(call)


def iter_gen():  # a generator object cannot be pickled, even by cloudpickle
    yield 1


def test_a_reply_that_cannot_be_unpickled_names_its_node() -> None:
    from crucial.client import Client
    from crucial.config import Config

    core = Client(("127.0.0.1:1",), Config()).core
    assert core.result(Frame(Kind.OK, 1, pickle.dumps([1, 2])), "127.0.0.1:9") == [1, 2]
    with pytest.raises(SerializationError, match=r"reply from 127\.0\.0\.1:9 cannot be unpickled"):
        core.result(Frame(Kind.OK, 1, b"\x80\x05garbage"), "127.0.0.1:9")
