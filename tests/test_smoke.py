import threading

import pytest

import crucial


def test_counter_and_dict_roundtrip(dso, key):
    c = crucial.AtomicInt(5, key=key)
    assert c.increment_and_get() == 6
    d = crucial.Dict(key=key)
    d["a"] = 1
    assert d.merge("a", 4) == 5
    assert d.copy() == {"a": 5}


def test_barrier_three_threads(dso, key):
    b = crucial.Barrier(3, key=key)
    out: list[int] = []
    ts = [threading.Thread(target=lambda: out.append(b.wait(timeout=30))) for _ in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert sorted(out) == [0, 1, 2]


def test_attach_missing_raises(dso, key):
    with pytest.raises(crucial.ObjectNotFoundError, match=key):
        crucial.AtomicInt.attach(key).get()
