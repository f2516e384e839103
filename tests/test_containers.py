"""Shared containers: the sequential model (State classes) and real nodes (``dso``)."""

from __future__ import annotations

import pickle
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import crucial
from crucial.exceptions import ObjectCreationError, ObjectNotFoundError, WouldBlockError
from crucial.objects import builtin_types
from crucial.objects.containers import (
    MERGE_FUNCTIONS,
    DictState,
    ListState,
    MatrixState,
    QueueState,
    SetState,
    SortedDictState,
)
from crucial.testing.faults import eventually, run_threads

JOIN = 30  # seconds: every thread join and blocking call is bounded


def test_registry_has_every_container() -> None:
    types = builtin_types()
    for name, impl in [
        ("Dict", DictState),
        ("List", ListState),
        ("SortedDict", SortedDictState),
        ("Set", SetState),
        ("Matrix", MatrixState),
        ("Queue", QueueState),
    ]:
        assert types[name] is impl
    assert all(hasattr(crucial, n) for n in ("List", "SortedDict", "Set", "Matrix", "Queue"))


# =========================================================================== sequential model


class TestListState:
    def test_list_operations(self) -> None:
        s = ListState([1, 2])
        s.append(3)
        s.add(4)
        s.extend((5, 6))
        s.insert(0, 0)
        assert s.to_list() == [0, 1, 2, 3, 4, 5, 6]
        assert s.getitem(-1) == 6 and s.getitem(slice(1, 3)) == [1, 2]
        assert s.set(0, 10) == 0 and s.get(0) == 10
        s.remove(10)
        assert s.pop() == 6 and s.pop(0) == 1
        assert s.index_of(4) == 2 and s.index_of(99) == -1 and s.index(4) == 2
        assert s.sub_list(1, 3) == [3, 4] and s.slice(0, 0) == []
        assert s.contains(5) and not s.contains(99) and s.len() == 4

    def test_snapshot_is_a_copy(self) -> None:
        s = ListState([1])
        snap = s.to_list()
        snap.append(2)
        assert s.to_list() == [1]

    @pytest.mark.parametrize(
        ("call", "exc", "match"),
        [
            (lambda s: s.get(3), IndexError, "index 3 out of range for length 3"),
            (lambda s: s.get(-4), IndexError, "-4"),
            (lambda s: s.get("0"), TypeError, "must be an int, not str"),
            (lambda s: s.get(True), TypeError, "not bool"),
            (lambda s: s.set(5, 0), IndexError, "5"),
            (lambda s: s.pop(7), IndexError, "pop index 7"),
            (lambda s: s.remove(9), ValueError, "9 not in List"),
            (lambda s: s.index(9), ValueError, "9 is not in List"),
            (lambda s: s.sub_list(2, 1), IndexError, r"sub_list\(2, 1\)"),
            (lambda s: s.sub_list(0, 4), IndexError, "<= 3"),
            (lambda s: s.extend(5), TypeError, "iterable, not int"),
            (lambda s: s.insert(None, 1), TypeError, "insert index must be an int"),
            (lambda s: s.sort(key=3), TypeError, "callable"),
        ],
    )
    def test_bad_input(self, call: Callable[[ListState], Any], exc: type[Exception], match: str) -> None:
        s = ListState([1, 2, 3])
        with pytest.raises(exc, match=match):
            call(s)
        assert s.to_list() == [1, 2, 3]

    def test_pop_empty(self) -> None:
        with pytest.raises(IndexError, match="pop from empty List"):
            ListState().pop()

    def test_failed_sort_leaves_list_unchanged(self) -> None:
        s = ListState([3, 1, 2, "a"])  # list.sort would leave [1, 2, 3, "a"]
        with pytest.raises(TypeError, match="not mutually comparable"):
            s.sort()
        assert s.to_list() == [3, 1, 2, "a"]
        s.delitem(-1)
        s.sort(reverse=True)
        assert s.to_list() == [3, 2, 1]


class TestDictState:
    def test_merge_all_is_all_or_nothing(self) -> None:
        s = DictState({"a": 1, "b": 2})
        with pytest.raises(TypeError):
            s.merge_all({"a": 10, "b": "x"}, "sum")  # 2 + "x" fails after a was computed
        assert s.copy() == {"a": 1, "b": 2}
        s.merge_all({"a": 10, "c": 3})
        assert s.copy() == {"a": 11, "b": 2, "c": 3}

    def test_merge_function_names_and_errors(self) -> None:
        s = DictState()
        assert s.merge("k", 5, "max") == 5 and s.merge("k", 3, "max") == 5 and s.merge("k", 2, "min") == 2
        with pytest.raises(ValueError, match="unknown merge function 'nope'"):
            s.merge("k", 1, "nope")
        with pytest.raises(TypeError, match="callable or a name, not int"):
            s.merge("k", 1, 3)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="Dict key must be hashable, not list"):
            s.put([1], 2)
        with pytest.raises(TypeError, match="mapping, not list"):
            s.update([1, 2])  # type: ignore[arg-type]
        assert set(MERGE_FUNCTIONS) >= {"sum", "max", "min", "replace", "keep", "union"}

    def test_pop_default(self) -> None:
        s = DictState({"a": 1})
        assert s.pop("zz", None) is None
        assert s.pop("a") == 1
        with pytest.raises(KeyError):
            s.pop("a")


class TestSortedDictState:
    def test_order_and_navigation(self) -> None:
        s = SortedDictState({5: "e", 1: "a", 3: "c"})
        s.put(4, "d")
        s.setitem(2, "b")
        assert s.keys() == [1, 2, 3, 4, 5] and s.values() == list("abcde")
        assert s.first_key() == 1 and s.last_key() == 5
        assert s.head(3) == [(1, "a"), (2, "b")]
        assert s.head(3, inclusive=True) == [(1, "a"), (2, "b"), (3, "c")]
        assert s.tail(4) == [(4, "d"), (5, "e")] and s.tail(4, inclusive=False) == [(5, "e")]
        assert s.sub(2, 4) == [(2, "b"), (3, "c")]
        assert s.sub(2, 4, from_inclusive=False, to_inclusive=True) == [(3, "c"), (4, "d")]
        assert (s.floor_key(3.5), s.ceiling_key(3.5), s.lower_key(3), s.higher_key(3)) == (3, 4, 2, 4)
        assert s.floor_key(0) is None and s.higher_key(5) is None
        assert s.pop_first() == (1, "a") and s.pop_last() == (5, "e") and s.keys() == [2, 3, 4]

    def test_top(self) -> None:
        s = SortedDictState({"b": 3, "a": 3, "c": 1, "d": 7})
        assert s.top(2) == [("d", 7), ("a", 3)]  # ties broken by ascending key
        assert s.top(3) == [("d", 7), ("a", 3), ("b", 3)]
        assert s.top(2, reverse=False) == [("c", 1), ("a", 3)]
        assert s.top(2, by="key") == [("d", 7), ("c", 1)]
        assert s.top(2, by="key", reverse=False) == [("a", 3), ("b", 3)]
        assert s.top(0) == [] and s.top(10) == [("d", 7), ("a", 3), ("b", 3), ("c", 1)]
        with pytest.raises(ValueError, match=">= 0"):
            s.top(-1)
        with pytest.raises(ValueError, match="'value' or 'key'"):
            s.top(1, by="size")
        with pytest.raises(TypeError, match="top k must be an int"):
            s.top("2")  # type: ignore[arg-type]

    def test_incomparable_keys_change_nothing(self) -> None:
        s = SortedDictState({1: "a", 2: "b"})
        for bad in (lambda: s.put("x", 1), lambda: s.setitem("x", 1), lambda: s.merge("x", 1), lambda: s.setdefault("x")):
            with pytest.raises(TypeError, match="cannot be ordered"):
                bad()
        with pytest.raises(TypeError):
            s.update({3: "c", "x": "y"})
        with pytest.raises(TypeError):
            s.merge_all({3: 1, "x": 1})
        assert s.items() == [(1, "a"), (2, "b")]
        e = SortedDictState()
        with pytest.raises(TypeError, match="mutually comparable"):
            e.update({1: 1, "x": 2})
        assert e.items() == []
        with pytest.raises(TypeError, match="cannot be ordered"):
            s.head("x")
        with pytest.raises(TypeError, match="comparable"):
            SortedDictState({1: 1, "a": 2})

    def test_empty_and_bad_ranges(self) -> None:
        s = SortedDictState()
        for call in (s.first_key, s.last_key, s.pop_first, s.pop_last):
            with pytest.raises(KeyError, match="empty SortedDict"):
                call()
        s.update({1: 1, 2: 2})
        with pytest.raises(ValueError, match="greater than to_key"):
            s.sub(2, 1)
        with pytest.raises(TypeError, match="not None"):
            s.head(None)


class TestSetState:
    def test_set_operations(self) -> None:
        s = SetState([1, 2])
        assert s.add(3) is True and s.add(3) is False
        assert s.discard(1) is True and s.discard(1) is False
        s.update([4, 5])
        assert s.to_set() == {2, 3, 4, 5} and s.len() == 4 and s.contains(2) and not s.contains([2])
        s.remove(2)
        with pytest.raises(KeyError):
            s.remove(2)
        assert s.pop() in {3, 4, 5}
        s.clear()
        with pytest.raises(KeyError, match="empty Set"):
            s.pop()

    def test_unhashable(self) -> None:
        s = SetState([1])
        with pytest.raises(TypeError, match="hashable, not list"):
            s.add([1])
        with pytest.raises(TypeError, match="hashable, not dict"):
            s.update([2, {}])
        assert s.to_set() == {1}  # update is all or nothing


class TestMatrixState:
    def test_matrix_operations(self) -> None:
        m = MatrixState(2, 3)
        assert m.shape() == (2, 3) and m.to_list() == [[0, 0, 0], [0, 0, 0]]
        m.set(0, 1, 5)
        assert m.get(0, 1) == 5 and m.get(-2, -2) == 5
        assert m.compute(0, 1, lambda v: v * 2) == 10
        assert m.merge_at(1, 2, 4) == 4 and m.merge_at(1, 2, 9, "max") == 9
        m.merge([[1, 1, 1], [1, 1, 1]])
        assert m.to_list() == [[1, 11, 1], [1, 1, 10]]
        m.set_row(0, [7, 8, 9])
        assert m.get_row(0) == [7, 8, 9] and m.get_col(2) == [9, 10]
        m.apply(lambda v: -v)
        assert m.get_row(1) == [-1, -1, -10]

    def test_mutable_fill_is_not_shared(self) -> None:
        m = MatrixState(2, 2, fill=[])
        m.compute(0, 0, lambda v: [*v, 1])
        m.get(1, 1).append("only local")  # the sequential model hands out the element itself
        assert m.get(0, 1) == [] and m.get(1, 0) == []

    @pytest.mark.parametrize(
        ("call", "exc", "match"),
        [
            (lambda m: m.get(2, 0), IndexError, r"index \(2, 0\) out of range for shape \(2, 3\)"),
            (lambda m: m.set(0, 3, 1), IndexError, r"\(0, 3\).*\(2, 3\)"),
            (lambda m: m.get(0, 1.0), TypeError, "column index must be an int, not float"),
            (lambda m: m.get_row(5), IndexError, r"row 5 out of range for shape \(2, 3\)"),
            (lambda m: m.get_col(-4), IndexError, "column -4"),
            (lambda m: m.set_row(0, [1, 2]), ValueError, "2 elements; the matrix has 3 columns"),
            (lambda m: m.merge([[1, 1, 1]]), ValueError, "got 1 rows"),
            (lambda m: m.merge([[1, 1, 1], [1, 1]]), ValueError, "row 1 has 2 elements"),
            (lambda m: m.merge([[1, 1, 1], "abc"]), TypeError, "row 1 must be a list"),
            (lambda m: m.merge([[1, 1, 1], [1, 1, "x"]]), TypeError, "unsupported operand"),
            (lambda m: m.merge(5), TypeError, "list of rows, not int"),
            (lambda m: m.compute(0, 0, 3), TypeError, "callable"),
            (lambda m: m.merge_at(0, 0, 1, "bogus"), ValueError, "unknown merge function"),
        ],
    )
    def test_bad_input_changes_nothing(self, call: Callable[[MatrixState], Any], exc: type[Exception], match: str) -> None:
        m = MatrixState(2, 3, fill=1)
        with pytest.raises(exc, match=match):
            call(m)
        assert m.to_list() == [[1, 1, 1], [1, 1, 1]]

    @pytest.mark.parametrize(("args", "exc"), [((-1, 2), ValueError), ((2, "3"), TypeError), ((2.0, 3), TypeError)])
    def test_bad_shape(self, args: tuple[Any, ...], exc: type[Exception]) -> None:
        with pytest.raises(exc, match=r"Matrix (rows|cols)"):
            MatrixState(*args)


class TestQueueState:
    def test_fifo_and_bounds(self) -> None:
        q = QueueState(2)
        q.put(1)
        q.put(2, block=False)
        assert q.full() and q.qsize() == 2
        with pytest.raises(queue.Full):
            q.put(3, block=False)
        with pytest.raises(queue.Full):
            q.put(3, timeout=0)
        assert q.get() == 1 and q.get(block=False) == 2 and q.empty()
        with pytest.raises(queue.Empty):
            q.get(block=False)
        with pytest.raises(WouldBlockError):  # the sequential model cannot wait
            q.get()

    def test_task_done_and_join(self) -> None:
        q = QueueState()
        q.put("a")
        assert q.join(timeout=0) is False
        q.get()
        q.task_done()
        assert q.join() is True
        with pytest.raises(ValueError, match="too many times"):
            q.task_done()

    def test_argument_validation(self) -> None:
        q = QueueState()
        with pytest.raises(ValueError, match="non-negative"):
            q.get(timeout=-1)
        with pytest.raises(ValueError, match="non-negative"):
            q.put(1, timeout=-0.5)
        with pytest.raises(ValueError, match="non-negative"):
            q.join(timeout=-1)
        with pytest.raises(TypeError, match="number or None, not str"):
            q.get(timeout="1")
        assert q.qsize() == 0
        q.put(1, block=False, timeout=-1)  # like queue.Queue: timeout is ignored when not blocking
        assert q.qsize() == 1
        with pytest.raises(TypeError, match="maxsize must be an int"):
            QueueState("3")  # type: ignore[arg-type]


# =========================================================================== on real nodes


def test_list_on_nodes(dso: Any, key: str) -> None:
    lst = crucial.List([3, 1], key=key)
    lst.append(2)
    lst.add(5)
    lst.extend(x for x in (4, 0))  # generators are materialised client-side
    assert len(lst) == 6 and lst.to_list() == [3, 1, 2, 5, 4, 0]
    assert lst[0] == 3 and lst[-1] == 0 and lst[1:3] == [1, 2] and lst[::2] == [3, 2, 4]
    lst[0] = 30
    assert lst.set(1, 10) == 1 and lst.get(1) == 10
    lst.insert(0, -1)
    lst.remove(30)
    assert lst.pop() == 0 and lst.pop(0) == -1
    assert lst.to_list() == [10, 2, 5, 4]
    assert 5 in lst and 99 not in lst and lst.contains(2)
    assert lst.index_of(4) == 3 and lst.index_of(99) == -1 and lst.index(5) == 2
    assert lst.sub_list(1, 3) == [2, 5] and lst.slice(0, 1) == [10]
    lst.sort()
    assert list(lst) == [2, 4, 5, 10]
    lst.sort(key=lambda v: v % 5, reverse=True)  # a lambda runs on the node
    assert lst.to_list() == [4, 2, 5, 10]
    lst[1:3] = (7, 8, 9)
    del lst[0]
    assert lst.to_list() == [7, 8, 9, 10] and lst.count(7) == 1
    lst.reverse()
    assert lst.to_list() == [10, 9, 8, 7]
    assert crucial.List.attach(key).to_list() == [10, 9, 8, 7]
    lst.clear()
    assert len(lst) == 0 and list(lst) == []


def test_list_errors_travel_as_their_types(dso: Any, key: str) -> None:
    lst = crucial.List(["a", "b"], key=key)
    with pytest.raises(IndexError, match="index 2 out of range for length 2"):
        lst[2]
    with pytest.raises(IndexError, match="out of range"):
        lst.set(-3, "x")
    with pytest.raises(TypeError, match="must be an int, not str"):
        lst.get("1")
    with pytest.raises(ValueError, match="'z' not in List"):
        lst.remove("z")
    with pytest.raises(IndexError, match="sub_list"):
        lst.sub_list(1, 5)
    with pytest.raises(TypeError, match="iterable, not int"):
        lst.extend(3)  # type: ignore[arg-type]
    lst.append(1)
    with pytest.raises(TypeError, match="not mutually comparable"):
        lst.sort()
    assert lst.to_list() == ["a", "b", 1]
    with pytest.raises(crucial.UnknownMethodError, match="private"):
        lst._call("_index", 0)
    lst.clear()
    with pytest.raises(IndexError, match="pop from empty List"):
        lst.pop()


def test_list_concurrent_appends(dso: Any, key: str) -> None:
    lst = crucial.List(key=key)
    errors = run_threads([lambda t=t: [lst.append((t, i)) for i in range(25)] for t in range(4)])
    assert not errors
    items = lst.to_list()
    assert sorted(items) == [(t, i) for t in range(4) for i in range(25)]
    for t in range(4):  # each thread's appends stay in its order
        assert [i for (tt, i) in items if tt == t] == list(range(25))


def test_dict_on_nodes(dso: Any, key: str) -> None:
    d = crucial.Dict({"a": 1}, key=key)
    assert d.put("b", 2) is None and d.put("b", 3) == 2
    assert d.put_if_absent("b", 9) == 3 and d.put_if_absent("c", 4) is None
    assert d.merge("a", 10) == 11 and d.merge("z", 1, lambda a, b: a * b) == 1
    d.merge_all({"a": 1, "n": 5}, "max")
    assert d.copy() == {"a": 11, "b": 3, "c": 4, "z": 1, "n": 5}
    with pytest.raises(TypeError):
        d.merge_all({"a": 1, "b": "x"})  # fails on b: a must not have changed either
    assert d["a"] == 11
    with pytest.raises(TypeError, match="hashable, not list"):
        d[[1]] = 2  # type: ignore[index]
    with pytest.raises(KeyError):
        d["missing"]
    del d["z"]
    assert sorted(d) == ["a", "b", "c", "n"] and len(d) == 4 and "a" in d and d.contains("n")
    assert d.pop("n") == 5 and d.pop("n", "dflt") == "dflt"


def test_sorted_dict_on_nodes(dso: Any, key: str) -> None:
    sd = crucial.SortedDict({"pear": 3, "apple": 5}, key=key)
    sd["fig"] = 5
    sd.update({"kiwi": 1, "date": 8})
    assert sd.merge("kiwi", 4) == 5
    assert list(sd) == ["apple", "date", "fig", "kiwi", "pear"]
    assert sd.items()[0] == ("apple", 5) and sd.first_key() == "apple" and sd.last_key() == "pear"
    assert sd.head("fig") == [("apple", 5), ("date", 8)]
    assert sd.head("fig", inclusive=True)[-1] == ("fig", 5)
    assert sd.tail("kiwi") == [("kiwi", 5), ("pear", 3)]
    assert sd.sub("b", "g") == [("date", 8), ("fig", 5)]
    assert sd.top(3) == [("date", 8), ("apple", 5), ("fig", 5)]
    assert sd.top(1, by="key") == [("pear", 3)]
    assert sd.floor_key("e") == "date" and sd.ceiling_key("e") == "fig"
    assert sd.pop_first() == ("apple", 5) and sd.pop_last() == ("pear", 3)
    sd.merge_all({"date": 2, "lime": 1}, "sub")
    assert sd.copy() == {"date": 6, "fig": 5, "kiwi": 5, "lime": 1}
    with pytest.raises(TypeError, match="cannot be ordered"):
        sd[3] = "x"
    with pytest.raises(ValueError, match="greater than to_key"):
        sd.sub("z", "a")
    assert len(sd) == 4
    sd.clear()
    with pytest.raises(KeyError, match="empty SortedDict"):
        sd.first_key()
    assert isinstance(sd, crucial.Dict)


def test_sorted_dict_concurrent_merges_word_count(dso: Any, key: str) -> None:
    sd = crucial.SortedDict(key=key)
    words = ["a", "b", "a", "c", "a", "b"]
    errors = run_threads([lambda: sd.merge_all({w: words.count(w) for w in words}) for _ in range(5)])
    assert not errors
    assert sd.top(2) == [("a", 15), ("b", 10)]


def test_set_on_nodes(dso: Any, key: str) -> None:
    s = crucial.Set([1, 2], key=key)
    assert s.add(3) is True and s.add(3) is False
    assert s.discard(1) is True and s.discard(1) is False
    s.update(range(3, 6))
    assert s.to_set() == {2, 3, 4, 5} and set(s) == {2, 3, 4, 5} and len(s) == 4
    assert 4 in s and 9 not in s and s.contains(5)
    s.remove(5)
    with pytest.raises(KeyError):
        s.remove(5)
    with pytest.raises(TypeError, match="hashable, not list"):
        s.add([1])
    assert s.pop() in {2, 3, 4} and len(s) == 2
    s.clear()
    with pytest.raises(KeyError, match="empty Set"):
        s.pop()


def test_set_add_wins_once(dso: Any, key: str) -> None:
    s = crucial.Set(key=key)
    wins: list[bool] = []
    lock = threading.Lock()

    def claim() -> None:
        for item in range(20):
            ok = s.add(item)
            with lock:
                wins.append(ok)

    assert not run_threads([claim] * 4)
    assert wins.count(True) == 20 and len(s) == 20


def test_matrix_on_nodes(dso: Any, key: str) -> None:
    m = crucial.Matrix(2, 3, key=key)
    assert m.shape == (2, 3) and m.to_list() == [[0] * 3, [0] * 3]
    m.set(1, 2, 7)
    assert m.get(1, 2) == 7 and m.get(-1, -1) == 7
    assert m.compute(1, 2, lambda v: v * 3) == 21
    assert m.merge_at(0, 0, 5) == 5
    m.merge([[1, 2, 3], [4, 5, 6]])
    assert m.to_list() == [[6, 2, 3], [4, 5, 27]]
    m.set_row(0, (0, 0, 1))
    assert m.get_row(0) == [0, 0, 1] and m.get_col(2) == [1, 27]
    other = crucial.Matrix(2, 3, fill=1, key=key + "-other")
    m.merge(other, "max")
    assert m.to_list() == [[1, 1, 1], [4, 5, 27]]
    m.apply(lambda v: v - 1)
    assert m.get_row(1) == [3, 4, 26]
    with pytest.raises(IndexError, match=r"index \(2, 0\) out of range for shape \(2, 3\)"):
        m.get(2, 0)
    with pytest.raises(IndexError, match=r"row 9 out of range for shape \(2, 3\)"):
        m.get_row(9)
    with pytest.raises(ValueError, match="got 3 rows"):
        m.merge([[0] * 3] * 3)
    with pytest.raises(ValueError, match="has 2 elements"):
        m.set_row(0, [1, 2])
    with pytest.raises(TypeError, match="must be an int, not str"):
        m.set("0", 0, 1)  # type: ignore[arg-type]
    assert m.get_row(0) == [0, 0, 0]
    with pytest.raises(ObjectCreationError, match=r"shape \(2, 3\), not \(4, 4\)"):
        crucial.Matrix(4, 4, key=key).get(0, 0)
    with pytest.raises(ObjectCreationError, match="Matrix rows must be >= 0"):
        crucial.Matrix(-1, 2, key=key + "-bad").get(0, 0)


def test_matrix_concurrent_element_merges(dso: Any, key: str) -> None:
    m = crucial.Matrix(2, 2, key=key)

    def work() -> None:
        for i in range(2):
            for j in range(2):
                for _ in range(5):
                    m.merge_at(i, j, 1)

    assert not run_threads([work] * 4)
    assert m.to_list() == [[20, 20], [20, 20]]


# --------------------------------------------------------------------------- Queue on nodes


def test_queue_fifo_and_nowait(dso: Any, key: str) -> None:
    q = crucial.Queue(2, key=key)
    assert q.maxsize == 2 and q.empty() and not q.full()
    q.put("a")
    q.put_nowait("b")
    assert q.full() and q.qsize() == 2
    with pytest.raises(queue.Full):
        q.put_nowait("c")
    with pytest.raises(queue.Full):
        q.put("c", block=False)
    assert q.get() == "a" and q.get_nowait() == "b"
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get(block=False)


def test_queue_blocked_consumer_woken_by_producer(dso: Any, key: str) -> None:
    q = crucial.Queue(key=key)
    got: list[Any] = []
    consumer = threading.Thread(target=lambda: got.append(q.get(timeout=JOIN)), daemon=True)
    consumer.start()
    eventually(lambda: q.statistics()["getters_waiting"] == 1)  # it is parked on the node
    assert got == []
    producer = threading.Thread(target=lambda: q.put({"job": 1}), daemon=True)
    producer.start()
    producer.join(JOIN)
    consumer.join(JOIN)
    assert not consumer.is_alive() and got == [{"job": 1}]
    assert q.statistics()["getters_waiting"] == 0 and q.empty()


def test_queue_get_timeout_raises_empty(dso: Any, key: str) -> None:
    q = crucial.Queue(key=key)
    start = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.3)
    assert time.monotonic() - start >= 0.25  # it did wait on the node
    with pytest.raises(queue.Empty):
        q.get(timeout=0)
    assert q.statistics()["getters_waiting"] == 0


def test_queue_put_on_full_times_out(dso: Any, key: str) -> None:
    q = crucial.Queue(1, key=key)
    q.put(1)
    start = time.monotonic()
    with pytest.raises(queue.Full):
        q.put(2, timeout=0.3)
    assert time.monotonic() - start >= 0.25
    assert q.qsize() == 1 and q.get() == 1


def test_queue_blocked_producer_woken_by_consumer(dso: Any, key: str) -> None:
    q = crucial.Queue(1, key=key)
    q.put("first")
    done = threading.Event()

    def produce() -> None:
        q.put("second", timeout=JOIN)
        done.set()

    t = threading.Thread(target=produce, daemon=True)
    t.start()
    eventually(lambda: q.statistics()["putters_waiting"] == 1)
    assert not done.is_set()
    assert q.get() == "first"
    assert done.wait(JOIN)
    t.join(JOIN)
    assert q.get(timeout=JOIN) == "second"


def test_queue_join_and_task_done(dso: Any, key: str) -> None:
    q = crucial.Queue(key=key)
    for i in range(3):
        q.put(i)
    assert q.join(timeout=0.05) is False
    joined: list[bool] = []
    joiner = threading.Thread(target=lambda: joined.append(q.join(timeout=JOIN)), daemon=True)
    joiner.start()
    for _ in range(3):
        q.get()
        assert joined == []
        q.task_done()
    joiner.join(JOIN)
    assert joined == [True] and q.join() is True
    with pytest.raises(ValueError, match="task_done\\(\\) called too many times"):
        q.task_done()


def test_queue_bad_arguments(dso: Any, key: str) -> None:
    q = crucial.Queue(key=key)
    with pytest.raises(ValueError, match="non-negative"):
        q.get(timeout=-1)
    with pytest.raises(ValueError, match="non-negative"):
        q.put(1, timeout=-1)
    with pytest.raises(ValueError, match="non-negative"):
        q.join(timeout=-2)
    assert q.qsize() == 0
    with pytest.raises(ObjectCreationError, match="maxsize=0, not 5"):
        crucial.Queue(5, key=key).qsize()
    with pytest.raises(ObjectCreationError, match="maxsize must be an int"):
        crucial.Queue("big", key=key + "-bad").qsize()  # type: ignore[arg-type]


def test_queue_many_producers_and_consumers(dso: Any, key: str) -> None:
    q = crucial.Queue(3, key=key)  # small bound: producers block too
    consumed: list[int] = []
    lock = threading.Lock()

    def produce(base: int) -> None:
        for i in range(20):
            q.put(base + i, timeout=JOIN)

    def consume() -> None:
        while True:
            item = q.get(timeout=JOIN)
            q.task_done()
            if item is None:
                return
            with lock:
                consumed.append(item)

    consumers = [threading.Thread(target=consume, daemon=True) for _ in range(3)]
    for c in consumers:
        c.start()
    assert not run_threads([lambda b=b: produce(b) for b in (0, 100, 200)])
    for _ in consumers:
        q.put(None, timeout=JOIN)
    for c in consumers:
        c.join(JOIN)
        assert not c.is_alive()
    assert sorted(consumed) == [b + i for b in (0, 100, 200) for i in range(20)]
    assert q.join(timeout=JOIN) is True and q.empty()


def test_deleting_a_queue_wakes_its_waiter(dso: Any, key: str) -> None:
    q = crucial.Queue(key=key)
    raised: list[BaseException] = []

    def consume() -> None:
        try:
            q.get(timeout=JOIN)
        except BaseException as exc:
            raised.append(exc)

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    eventually(lambda: q.statistics()["getters_waiting"] == 1)
    assert q.delete() is True
    t.join(JOIN)
    assert len(raised) == 1 and isinstance(raised[0], ObjectNotFoundError)


# --------------------------------------------------------------------------- create vs attach


def test_create_attach_force_new_delete(dso: Any, key: str) -> None:
    with pytest.raises(ObjectNotFoundError, match=key):
        crucial.List.attach(key).to_list()
    crucial.List([1, 2], key=key).append(3)
    assert crucial.List([9], key=key).to_list() == [1, 2, 3]  # create-if-absent: attaches
    assert crucial.List.attach(key).to_list() == [1, 2, 3]
    assert crucial.List([9], key=key, force_new=True).to_list() == [9]
    proxy = pickle.loads(pickle.dumps(crucial.List.attach(key)))
    assert proxy.to_list() == [9] and proxy == crucial.List.attach(key)
    assert crucial.Set.attach(key) != crucial.List.attach(key)  # the type is part of the reference
    assert crucial.List.attach(key).delete() is True
    with pytest.raises(ObjectNotFoundError):
        crucial.List.attach(key).to_list()
    assert crucial.List.attach(key).delete() is False
    creator = crucial.Dict({"a": 1}, key=key)
    assert creator.copy() == {"a": 1}
    assert creator.delete() is True
    with pytest.raises(ObjectNotFoundError):  # a proxy that created its object never silently recreates it
        creator.copy()


def test_class_attribute_takes_its_name_as_key(dso: Any, key: str) -> None:
    name = key.replace("-", "_")
    job = type("Job", (), {name: crucial.Set(), "explicit": crucial.Set(key=key)})  # __set_name__ runs
    assert getattr(job, name).key == name and job.explicit.key == key
    getattr(job, name).add("x")
    assert crucial.Set.attach(name).to_set() == {"x"}
    assert crucial.Set.attach(name).delete() is True
