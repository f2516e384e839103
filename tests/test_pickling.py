"""The pickling policy's fast path: plain data (and NumPy arrays of numbers) through pickle, the rest through cloudpickle."""

from __future__ import annotations

import pickle
import threading

import numpy as np
import pytest

from crucial import protocol as P


def local_function(x: int) -> int:  # a test module: nodes and workers cannot import it
    return x + 1


@pytest.mark.parametrize(
    "value",
    [
        np.arange(12.0).reshape(3, 4),
        np.array([1, 2, 3], dtype=np.int64),
        np.zeros((0, 5)),
        np.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")]),
        (7, np.ones(3), 0.5),
        {"w": np.float64(1.5), "n": np.int64(3), "ok": np.bool_(True)},
    ],
    ids=["floats", "ints", "empty", "structured", "tuple", "scalars"],
)
def test_numpy_numbers_take_the_fast_path_and_come_back_equal(value: object) -> None:
    assert P._plain(value)
    back = pickle.loads(P.pickle_bytes(value))
    assert type(back) is type(value)
    np.testing.assert_equal(back, value)


def test_object_arrays_and_subclasses_go_through_cloudpickle() -> None:
    holder = np.array([local_function], dtype=object)
    assert not P._plain(holder)
    assert not P._plain(np.ma.masked_array([1, 2], mask=[0, 1]))
    # cloudpickle ships the test module's function by value: pickle.loads needs no import of it
    data = P.pickle_bytes(holder, code=[local_function])
    assert b"local_function" in data and pickle.loads(data)[0](1) == 2


def test_every_numpy_number_type_is_known() -> None:
    numbers = {t for t in np.sctypeDict.values() if issubclass(t, (np.number, np.bool_))}
    assert all(P._plain(t(1)) for t in numbers), [t for t in numbers if not P._plain(t(1))]


def test_a_call_encoded_from_its_fields_is_the_call() -> None:
    plain = (7, "Counter", "k", "increment", (1,), None, ((0,), {}), False, 12, 5)  # ... owner, below
    assert P.encode_call_fields(*plain) == P.encode_call(P.CallRequest(*plain))
    assert P.decode_call(P.encode_call_fields(*plain)) == P.CallRequest(*plain)
    with_code = (8, "Dict", "k", "merge", ("a", 1, local_function), None, None, False, 12, 5)
    assert P.decode_call(P.encode_call_fields(*with_code)).args[2](1) == 2  # through cloudpickle, by value
    with pytest.raises(P.SerializationError, match=r"arguments of Dict\.merge"):
        P.encode_call_fields(9, "Dict", "k", "merge", (threading.Lock(),), None, None, False, 12)
