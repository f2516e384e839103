"""The optional C accelerator (crucial/_speedups.c) against its pure-Python twins in crucial/protocol.py.

Each C function gets the same inputs as its twin -- generated values,
frames cut at every place -- and must give the same answers and raise the
same errors.  The protocol and wire tests also run as a whole with
``CRUCIAL_PURE_PYTHON=1`` (the pure versions, in the nodes too), so both
paths are tested whichever one a machine uses.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crucial import protocol as P
from crucial.exceptions import FrameTooLargeError, ProtocolError
from crucial.testing import unconfigured_env

try:
    from crucial import _speedups  # type: ignore[attr-defined]
except ImportError:  # not built: no compiler where crucial was installed
    _speedups = None

REPO = Path(__file__).resolve().parent.parent

needs_build = pytest.mark.skipif(
    _speedups is None and shutil.which("cc") is None,
    reason="crucial._speedups is not built and there is no C compiler here (it is optional)",
)


@pytest.fixture(scope="module")
def c() -> Any:
    """The C module; with a compiler on the machine, a missing build is a failure, not a skip."""
    assert _speedups is not None, "crucial._speedups did not build (pip install -e . prints why)"
    _speedups.set_frame_type(P.Frame, FrameTooLargeError, ProtocolError)
    return _speedups


def test_protocol_uses_it_unless_told_not_to() -> None:
    assert P.SPEEDUPS == (_speedups is not None and not os.environ.get("CRUCIAL_PURE_PYTHON"))
    probe = "from crucial import protocol as P; print(P.SPEEDUPS, P.encode_frame is P._pure_encode_frame)"
    r = subprocess.run(
        [sys.executable, "-c", probe], env=unconfigured_env({"CRUCIAL_PURE_PYTHON": "1"}), capture_output=True, text=True
    )
    assert r.stdout.split() == ["False", "True"], r.stderr


class Point:  # not plain: its class travels by value
    pass


scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5) | st.binary(max_size=5)
values = st.recursive(
    scalars | st.just(Point()) | st.just(np.arange(3.0)) | st.just(np.float32(1)) | st.just(np.array([None], dtype=object)),
    lambda inner: (
        st.tuples(inner) | st.lists(inner, max_size=3) | st.dictionaries(scalars | st.tuples(scalars), inner, max_size=3)
    ),
    max_leaves=10,
)


@needs_build
@given(values)
def test_is_plain_agrees(c: Any, value: Any) -> None:
    assert c.is_plain(value) == P._pure_plain(value)


@needs_build
def test_is_plain_depth_and_subclasses(c: Any) -> None:
    deep: Any = 1
    for _ in range(6):
        deep = [deep]
    for value in (deep, P.Frame(1, 2, b""), {1: 2}, {(1,): 2}, bytearray(b"x"), 1j, np.ma.masked_array([1])):
        assert c.is_plain(value) == P._pure_plain(value), value


@needs_build
@given(st.integers(0, 255), st.integers(0, 2**64 - 1), st.binary(max_size=300))
def test_encode_frame_agrees(c: Any, kind: int, req_id: int, body: bytes) -> None:
    assert c.encode_frame(kind, req_id, body) == P._pure_encode_frame(kind, req_id, body)
    assert c.encode_frame(kind, req_id) == P._pure_encode_frame(kind, req_id)
    assert c.encode_frame(kind, req_id, bytearray(body)) == P._pure_encode_frame(kind, req_id, bytes(body))


@needs_build
def test_encode_frame_refuses_what_the_header_cannot_hold(c: Any) -> None:
    for kind, req_id in ((256, 1), (-1, 1), (1, 2**64), (1, -1)):
        with pytest.raises((OverflowError, ValueError)):
            c.encode_frame(kind, req_id, b"")
        with pytest.raises(Exception):  # noqa: B017  (struct.error, for the pure one)
            P._pure_encode_frame(kind, req_id, b"")


def _decode(use_c: bool, chunks: list[bytes], limit: int, kinds: frozenset[int]) -> tuple[list[P.Frame], str]:
    saved = P._split_frames
    P._split_frames = _speedups.split_frames if use_c else None
    try:
        decoder = P.FrameDecoder(limit, kinds)
        out: list[P.Frame] = []
        try:
            for chunk in chunks:
                out += decoder.feed(chunk)
        except (FrameTooLargeError, ProtocolError) as exc:
            return out, f"{type(exc).__name__}: {exc}"
        return out, f"buffered {decoder.buffered}"
    finally:
        P._split_frames = saved


frames = st.lists(st.builds(P.Frame, st.sampled_from([1, 2, 17, 99]), st.integers(0, 2**64 - 1), st.binary(max_size=80)))


@needs_build
@given(frames, st.lists(st.integers(0, 400), max_size=6), st.sampled_from([40, 1000]))
def test_split_frames_agrees_however_the_stream_is_cut(c: Any, fs: list[P.Frame], cuts: list[int], limit: int) -> None:
    stream = b"".join(P._pure_encode_frame(*f) for f in fs) + b"\x00\x00"  # and a partial header at the end
    points = sorted({min(x, len(stream)) for x in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    kinds = frozenset({1, 2, 17})
    assert _decode(True, chunks, limit, kinds) == _decode(False, chunks, limit, kinds)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_protocol_and_wire_tests_pass_in_pure_python() -> None:
    """The same tests, with CRUCIAL_PURE_PYTHON=1 (nodes started by them inherit it)."""
    tests = ["tests/test_protocol.py", "tests/test_batching.py", "tests/test_shared_connection.py", "tests/test_pickling.py"]
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
        cwd=REPO,
        env=unconfigured_env({"CRUCIAL_PURE_PYTHON": "1"}),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert " passed" in r.stdout.splitlines()[-1]
