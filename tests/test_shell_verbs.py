"""The IPC verbs of the serverless shell: parsing (pure) and execution on real nodes."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from crucial.client import _default
from crucial.config import load_config
from crucial.shell.verbs import ALIASES, VERBS, Command, UsageError, VerbResult, coerce, parse, parse_pairs, run_verb, usage
from crucial.testing import LocalCluster, faults

# --------------------------------------------------------------------------- parsing (no server)


def p(line: str) -> Command:
    return parse(line.split())


def test_verbs() -> None:
    assert frozenset({"counter", "barrier", "latch", "rdv", "map", "treemap", "list"}) == VERBS


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("counter -n c increment", Command("counter", "increment", "c", args=(1,))),
        ("counter -n c -c 5 increment -1 -3", Command("counter", "increment", "c", count=5, args=(-3,))),
        ("counter -n c increment -i 7", Command("counter", "increment", "c", args=(7,))),  # seed, Figure 11
        ("counter -n c decrement -1 2", Command("counter", "decrement", "c", args=(2,))),
        ("counter -n c decrement", Command("counter", "decrement", "c", args=(1,))),
        ("counter -n c tally", Command("counter", "tally", "c")),
        ("counter reset -n c", Command("counter", "reset", "c")),
        ("barrier -n b -p 4 await", Command("barrier", "await", "b", parties=4)),
        ("barrier -n b await -p 4", Command("barrier", "await", "b", parties=4)),  # seed, Figure 10
        ("barrier --name b --parties 4 await", Command("barrier", "await", "b", parties=4)),
        ("barrier -n b reset", Command("barrier", "reset", "b")),
        ("barrier -n b -p 2 reset", Command("barrier", "reset", "b", parties=2)),
        ("latch -n l -c 3 count-down", Command("latch", "count-down", "l", count=3)),
        ("latch -n l -c 3 countDown", Command("latch", "count-down", "l", count=3)),
        ("latch -n l await", Command("latch", "await", "l")),
        ("latch -n l count", Command("latch", "count", "l")),
        ("rdv -n r put -1 10.0.0.1", Command("rdv", "put", "r", args=("10.0.0.1",))),
        ("rdv -n r put -1 007", Command("rdv", "put", "r", args=("007",))),
        ("rdv -n r get", Command("rdv", "get", "r")),
    ],
)
def test_parse_sync_and_counter(line: str, expected: Command) -> None:
    assert p(line) == expected


MAP_CASES = [
    ("put -1 a -2 1", Command("map", "put", "m", args=("a", 1))),
    ("put -1 1 -2 x", Command("map", "put", "m", args=("1", "x"))),  # keys stay strings
    ("get -1 a", Command("map", "get", "m", args=("a",))),
    ("remove -1 a", Command("map", "remove", "m", args=("a",))),
    ("contains -1 a", Command("map", "contains", "m", args=("a",))),
    ("containsKey -1 a", Command("map", "contains", "m", args=("a",))),
    ("size", Command("map", "size", "m")),
    ("is-empty", Command("map", "is-empty", "m")),
    ("isEmpty", Command("map", "is-empty", "m")),
    ("keys", Command("map", "keys", "m")),
    ("keySet", Command("map", "keys", "m")),
    ("values", Command("map", "values", "m")),
    ("items", Command("map", "items", "m")),
    ("clear", Command("map", "clear", "m")),
    ("put-all -1 a=1 b=x", Command("map", "put-all", "m", items=(("a", 1), ("b", "x")))),
    ("putAll -1 a=1 -1 b=2", Command("map", "put-all", "m", items=(("a", 1), ("b", 2)))),
    ("put-all", Command("map", "put-all", "m")),  # items from stdin
    ("merge -1 a -2 3 -3 max", Command("map", "merge", "m", args=("a", 3), fn="max")),
    ("merge -1 a -2 3", Command("map", "merge", "m", args=("a", 3), fn="sum")),
    ("merge-all -1 a=1 b=2 -2 sum", Command("map", "merge-all", "m", items=(("a", 1), ("b", 2)), fn="sum")),
    ("mergeAll -1 1=1 -1 2=1 -2 sum", Command("map", "merge-all", "m", items=(("1", 1), ("2", 1)), fn="sum")),
    ("merge-all -2 sum", Command("map", "merge-all", "m", fn="sum")),
    ("merge_all -2 min", Command("map", "merge-all", "m", fn="min")),
]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("treemap -n r top -1 3 --delete", Command("treemap", "top", "r", args=(3,), delete=True)),
        ("counter --delete -n c tally", Command("counter", "tally", "c", delete=True)),
        (
            "map -n m merge-all -1 a=1 b=2 --delete",
            Command("map", "merge-all", "m", items=(("a", 1), ("b", 2)), fn="sum", delete=True),
        ),
        ("map -n m put -1 --delete -2 x", Command("map", "put", "m", args=("--delete", "x"))),  # a value, not the option
        ("map -n m delete --delete", Command("map", "delete", "m")),  # nothing more to delete
    ],
)
def test_parse_delete_option(line: str, expected: Command) -> None:
    assert p(line) == expected


@pytest.mark.parametrize(("ops", "expected"), MAP_CASES)
def test_parse_map(ops: str, expected: Command) -> None:
    assert p(f"map -n m {ops}") == expected
    assert p(f"treemap -n m {ops}") == Command(
        "treemap", expected.op, "m", args=expected.args, items=expected.items, fn=expected.fn
    )


@pytest.mark.parametrize(
    ("ops", "expected"),
    [
        ("first-key", Command("treemap", "first-key", "t")),
        ("firstKey", Command("treemap", "first-key", "t")),
        ("last-key", Command("treemap", "last-key", "t")),
        ("lastKey", Command("treemap", "last-key", "t")),
        ("head -1 k", Command("treemap", "head", "t", args=("k",))),
        ("headMap -1 k", Command("treemap", "head", "t", args=("k",))),
        ("tail -1 k", Command("treemap", "tail", "t", args=("k",))),
        ("tailMap -1 k", Command("treemap", "tail", "t", args=("k",))),
        ("sub -1 a -2 c", Command("treemap", "sub", "t", args=("a", "c"))),
        ("subMap -1 a -2 c", Command("treemap", "sub", "t", args=("a", "c"))),
        ("top -1 100", Command("treemap", "top", "t", args=(100,))),
    ],
)
def test_parse_treemap(ops: str, expected: Command) -> None:
    assert p(f"treemap -n t {ops}") == expected


@pytest.mark.parametrize(
    ("ops", "expected"),
    [
        ("add -1 x", Command("list", "add", "l", args=("x",))),
        ("add -1 42", Command("list", "add", "l", args=(42,))),
        ("get -1 -1", Command("list", "get", "l", args=(-1,))),
        ("set -1 0 -2 2.5", Command("list", "set", "l", args=(0, 2.5))),
        ("size", Command("list", "size", "l")),
        ("contains -1 x", Command("list", "contains", "l", args=("x",))),
        ("remove -1 x", Command("list", "remove", "l", args=("x",))),
        ("index-of -1 x", Command("list", "index-of", "l", args=("x",))),
        ("indexOf -1 x", Command("list", "index-of", "l", args=("x",))),
        ("slice -1 0 -2 2", Command("list", "slice", "l", args=(0, 2))),
        ("subList -1 0 -2 2", Command("list", "slice", "l", args=(0, 2))),
        ("all", Command("list", "all", "l")),
        ("toArray", Command("list", "all", "l")),
        ("clear", Command("list", "clear", "l")),
    ],
)
def test_parse_list(ops: str, expected: Command) -> None:
    assert p(f"list -n l {ops}") == expected


def test_every_alias_is_an_operation() -> None:
    camel = {
        "mergeAll",
        "keySet",
        "containsKey",
        "firstKey",
        "lastKey",
        "headMap",
        "tailMap",
        "subMap",
        "indexOf",
        "subList",
        "toArray",
    }
    assert camel <= set(ALIASES)
    for alias, op in ALIASES.items():
        assert any(f" {op}" in usage(v) for v in VERBS), alias


def test_help() -> None:
    assert p("map -h") == Command("map", "help")
    r = run_verb(["list", "--help"])
    assert r.code == 0 and r.out.startswith("usage: list -n NAME") and r.err == ""


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("42", 42),
        ("-7", -7),
        ("0", 0),
        ("1.5", 1.5),
        ("-0.25", -0.25),
        ("2e3", 2000.0),
        (".5", 0.5),
        ("007", "007"),
        ("+5", "+5"),
        ("1_000", "1_000"),
        ("inf", "inf"),
        ("nan", "nan"),
        (" 1", " 1"),
        ("abc", "abc"),
        ("", ""),
        ("10.0.0.1", "10.0.0.1"),
    ],
)
def test_coerce(value: str, stored: Any) -> None:
    got = coerce(value)
    assert got == stored and type(got) is type(stored)


def test_parse_pairs() -> None:
    text = "a 1\nb=2\n\n  c\t3  \nd=x y\ne x=y\nf 1.5\n"
    assert parse_pairs(text) == [("a", 1), ("b", 2), ("c", 3), ("d", "x y"), ("e", "x=y"), ("f", 1.5)]
    assert parse_pairs("") == []
    with pytest.raises(UsageError, match="line 2"):
        parse_pairs("a 1\nlonely\n")


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ("", "missing verb"),
        ("frob -n x get", "unknown verb 'frob'"),
        ("counter -n c frob", "unknown operation 'frob'"),
        ("counter -n c", "missing operation"),
        ("counter increment", "missing -n NAME"),
        ("map get -1 a", "missing -n NAME"),
        ("counter -n c increment -1 abc", "'abc' is not an integer"),
        ("counter -n c increment -1 1.5", "'1.5' is not an integer"),
        ("counter -n c -c x tally", "-c INIT 'x' is not an integer"),
        ("counter -n c increment -x 1", "unknown option -x"),
        ("counter -n c increment -1", "option -1 needs a value"),
        ("counter -n c tally -1 3", "tally takes no -1"),
        ("counter -n a -n b tally", "-n given more than once"),
        ("counter -n c tally extra", "unexpected argument 'extra'"),
        ("barrier -n b await", "await needs -p PARTIES"),
        ("barrier -n b -p 0 await", "-p PARTIES must be 1 or more"),
        ("barrier -n b -p two await", "'two' is not an integer"),
        ("barrier -n b -c 2 await", "unknown option -c"),
        ("latch -n l -c -1 count-down", "must be 0 or more"),
        ("rdv -n r put", "put needs -1 VALUE"),
        ("map -n m put -1 a", "put needs -2 VALUE"),
        ("map -n m merge -1 a -2 1 -3 avg", "unknown merge function 'avg'"),
        ("map -n m merge-all -1 a=1 -2 nope", "unknown merge function 'nope'"),
        ("map -n m put-all -1 a", "'a' is not KEY=VALUE"),
        ("map -n m put-all -1 a=1 b", "'b' is not KEY=VALUE"),
        ("map -n m get -1 a b", "unexpected argument 'b'"),
        ("map -n m top -1 3", "unknown operation 'top'"),
        ("treemap -n t top -1 -2", "must be 0 or more"),
        ("treemap -n t sub -1 z -2 a", "sorts after"),
        ("list -n l get -1 x", "get -1 'x' is not an integer"),
        ("list -n l slice -1 0", "slice needs -2 J"),
    ],
)
def test_parse_errors(line: str, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        p(line)
    r = run_verb(line.split())  # the same, as a result: exit 2, nothing on stdout
    assert r.code == 2 and r.out == "" and r.err.endswith("\n")


def test_usage_error_text() -> None:
    r = run_verb(["counter", "-n", "c", "increment", "-1", "abc"])
    first, second = r.err.splitlines()
    assert first == "counter: increment -1 'abc' is not an integer"
    assert second.startswith("usage: counter -n NAME [-c INIT] increment [-1 X]")
    assert run_verb(["frob"]).err == "unknown verb 'frob'; one of: barrier, counter, latch, list, map, rdv, treemap\n"
    r = run_verb(["map", "get", "-1", "a"])
    assert r.err.splitlines()[0] == "map: missing -n NAME"


# --------------------------------------------------------------------------- execution on real nodes


def ok(line: str, stdin: str | None = None) -> str:
    r = run_verb(line.split(), stdin)
    assert r.code == 0 and r.err == "", r
    return r.out


def fails(line: str, stdin: str | None = None) -> str:
    r = run_verb(line.split(), stdin)
    assert r.code == 1 and r.out == "" and r.err.count("\n") == 1 and r.err.endswith("\n"), r
    return r.err


def test_counter(dso: LocalCluster, key: str) -> None:
    assert ok(f"counter -n {key} increment") == "1\n"
    assert ok(f"counter -n {key} increment -1 10") == "11\n"
    assert ok(f"counter -n {key} increment -i 5") == "16\n"
    assert ok(f"counter -n {key} decrement") == "15\n"
    assert ok(f"counter -n {key} decrement -1 20") == "-5\n"
    assert ok(f"counter -n {key} tally") == "-5\n"
    assert ok(f"counter -n {key} reset") == "-5\n"  # the old tally
    assert ok(f"counter -n {key} tally") == "0\n"
    assert ok(f"counter -n {key}-init -c 100 increment") == "101\n"
    assert ok(f"counter -n {key}-init -c 7 reset") == "101\n"  # -c of an existing counter is ignored
    assert ok(f"counter -n {key}-init tally") == "100\n"  # back to its initial value


def test_counter_concurrent(dso: LocalCluster, key: str) -> None:
    outs: list[str] = []

    def work() -> None:
        for _ in range(10):
            outs.append(ok(f"counter -n {key} increment"))

    run_threads([work] * 4)
    assert sorted(int(o) for o in outs) == list(range(1, 41))


def run_threads(targets: list[Callable[[], Any]], timeout: float = 10.0) -> None:
    errors = faults.run_threads(targets, timeout)
    if errors:
        raise errors[0]


def test_barrier(dso: LocalCluster, key: str) -> None:
    parties = 4
    results: list[VerbResult] = []
    run_threads([lambda: results.append(run_verb(["barrier", "-n", key, "-p", str(parties), "await"]))] * parties)
    assert [r.code for r in results] == [0] * parties
    assert sorted(int(r.out) for r in results) == [1, 2, 3, 4]  # arrival ranks; 4 lifted it
    # cyclic: the same barrier serves a second round
    results.clear()
    run_threads([lambda: results.append(run_verb(["barrier", "-n", key, "await", "-p", str(parties)]))] * parties)
    assert sorted(int(r.out) for r in results) == [1, 2, 3, 4]


def test_barrier_other_parties(dso: LocalCluster, key: str) -> None:
    ok(f"barrier -n {key} -p 3 reset")  # creates it with 3 parties
    err = fails(f"barrier -n {key} -p 4 await")
    assert err == f"barrier {key}: barrier exists with parties=3, not 4\n"


def test_barrier_reset_breaks_waiters(dso: LocalCluster, key: str) -> None:
    ok(f"barrier -n {key} -p 2 reset")  # create it, so the attach below cannot race the waiter
    results: list[VerbResult] = []
    waiter = threading.Thread(target=lambda: results.append(run_verb(["barrier", "-n", key, "-p", "2", "await"])), daemon=True)
    waiter.start()
    from crucial import Barrier

    b = Barrier.attach(key)
    deadline = time.monotonic() + 10
    while b.n_waiting < 1:  # wait until the waiter is parked on the node (no sleep: one call per loop)
        assert time.monotonic() < deadline
    assert ok(f"barrier -n {key} reset") == ""
    waiter.join(10)
    assert not waiter.is_alive()
    assert results[0].code == 1 and results[0].err.startswith(f"barrier {key}: barrier was reset")


def test_barrier_reset_absent(dso: LocalCluster, key: str) -> None:
    assert fails(f"barrier -n {key} reset") == f"barrier {key}: no such barrier (create it with -p PARTIES)\n"


def test_latch(dso: LocalCluster, key: str) -> None:
    results: list[VerbResult] = []
    waiters = [lambda: results.append(run_verb(["latch", "-n", key, "-c", "2", "await"]))] * 3
    counts: list[str] = []
    downs = [lambda: counts.append(ok(f"latch -n {key} -c 2 count-down"))] * 2
    run_threads(waiters + downs)
    assert [(r.code, r.out, r.err) for r in results] == [(0, "", "")] * 3
    assert sorted(counts) == ["0\n", "1\n"]
    assert ok(f"latch -n {key} count") == "0\n"
    assert ok(f"latch -n {key} count-down") == "0\n"  # never below zero
    assert fails(f"latch -n {key}-absent count-down") == f"latch {key}-absent: no such latch (create it with -c COUNT)\n"


def test_rdv(dso: LocalCluster, key: str) -> None:
    got: list[str] = []
    getters = [lambda: got.append(ok(f"rdv -n {key} get"))] * 3
    run_threads([*getters, lambda: ok(f"rdv -n {key} put -1 10.0.0.7:8080")])
    assert got == ["10.0.0.7:8080\n"] * 3
    assert ok(f"rdv -n {key} get") == "10.0.0.7:8080\n"
    assert fails(f"rdv -n {key} put -1 other") == f"rdv {key}: already has a value (a rendezvous takes one put)\n"
    assert ok(f"rdv -n {key}-n put -1 007") == ""
    assert ok(f"rdv -n {key}-n get") == "007\n"  # kept verbatim


@pytest.mark.parametrize("verb", ["map", "treemap"])
def test_map(dso: LocalCluster, key: str, verb: str) -> None:
    m = f"{verb} -n {key}"
    assert ok(f"{m} put -1 b -2 1") == ""  # no previous value
    assert ok(f"{m} put -1 b -2 2") == "1\n"  # the previous value
    assert ok(f"{m} get -1 b") == "2\n"
    assert fails(f"{m} get -1 zz") == f"{verb} {key}: no key 'zz'\n"
    assert ok(f"{m} contains -1 b") == "true\n"
    assert ok(f"{m} containsKey -1 zz") == "false\n"
    assert ok(f"{m} merge -1 b -2 40 -3 sum") == "42\n"
    assert ok(f"{m} merge -1 a -2 x") == "x\n"
    assert ok(f"{m} merge -1 a -2 y -3 concat") == "xy\n"
    assert fails(f"{m} merge -1 a -2 1").startswith(f"{verb} {key}: merge: TypeError: ")
    assert ok(f"{m} put-all -1 c=1.5 -1 d=text") == ""
    assert ok(f"{m} size") == "4\n"
    assert ok(f"{m} is-empty") == "false\n"
    keys = ok(f"{m} keys").splitlines()
    assert sorted(keys) == ["a", "b", "c", "d"]
    assert ok(f"{m} keySet").splitlines() == keys
    if verb == "treemap":
        assert keys == ["a", "b", "c", "d"]  # key order
    assert sorted(ok(f"{m} values").splitlines()) == sorted(["xy", "42", "1.5", "text"])
    assert sorted(ok(f"{m} items").splitlines()) == ["a xy", "b 42", "c 1.5", "d text"]
    assert ok(f"{m} remove -1 a") == "xy\n"
    assert fails(f"{m} remove -1 a") == f"{verb} {key}: no key 'a'\n"
    assert ok(f"{m} clear") == ""
    assert ok(f"{m} size") == "0\n"
    assert ok(f"{m} isEmpty") == "true\n"
    assert ok(f"{m} keys") == ""


def test_merge_all_args(dso: LocalCluster, key: str) -> None:
    # the original's test: map -n M mergeAll -1 "1=1" -1 "2=1" -2 sum
    ok(f"map -n {key} mergeAll -1 1=1 -1 2=1 -2 sum")
    ok(f"map -n {key} merge-all -1 1=1 2=5 3=x -2 sum")
    assert sorted(ok(f"map -n {key} items").splitlines()) == ["1 2", "2 6", "3 x"]


def test_merge_all_stdin(dso: LocalCluster, key: str) -> None:
    words = "the cat saw the dog and the cat ran".split()
    stdin = "".join(f"{w} 1\n" for w in words)
    assert ok(f"map -n {key} merge-all -2 sum", stdin) == ""
    ok(f"map -n {key} mergeAll", "the=10\ndog 1\n")  # -2 defaults to sum; both line forms
    assert dict(line.split() for line in ok(f"map -n {key} items").splitlines()) == {
        "the": "13",
        "cat": "2",
        "saw": "1",
        "dog": "2",
        "and": "1",
        "ran": "1",
    }
    ok(f"map -n {key} put-all", "x 1\ny=2\nx 3\n")  # last one wins, as with puts
    assert ok(f"map -n {key} get -1 x") == "3\n"
    assert ok(f"map -n {key} merge-all -2 sum", "") == ""  # empty input: nothing to merge
    assert ok(f"map -n {key} merge-all -1 the=1", "ignored 1\n") == ""  # -1 items win over stdin
    assert fails(f"map -n {key} get -1 ignored")


def test_merge_all_is_one_call(dso: LocalCluster, key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from crucial import Dict

    calls: list[Any] = []
    real = Dict.merge_all

    def spy(self: Dict, other: Any, fn: Any = "sum") -> None:
        calls.append(dict(other))
        real(self, other, fn)

    monkeypatch.setattr(Dict, "merge_all", spy)
    stdin = "a 1\n" * 50 + "b 2\n" * 50
    ok(f"treemap -n {key} merge-all -2 sum", stdin)
    assert calls == [{"a": 50, "b": 100}]
    assert ok(f"treemap -n {key} top -1 1") == "b 100\n"


def test_merge_all_sub(dso: LocalCluster, key: str) -> None:
    # sub is not associative: the result must be that of merging item by item
    ok(f"map -n {key} put -1 a -2 100")
    ok(f"map -n {key} merge-all -2 sub", "a 10\na 20\nb 5\nb 2\n")
    assert ok(f"map -n {key} get -1 a") == "70\n"
    assert ok(f"map -n {key} get -1 b") == "3\n"


def test_merge_all_no_input(dso: LocalCluster, key: str) -> None:
    r = run_verb(["map", "-n", key, "merge-all", "-2", "sum"], None)
    assert r.code == 2 and "merge-all needs -1 KEY=VALUE" in r.err
    r = run_verb(["map", "-n", key, "put-all"], "a 1\nlonely\n")
    assert r.code == 2 and r.err == "map: stdin line 2: 'lonely' is neither 'KEY VALUE' nor 'KEY=VALUE'\n"


def test_merge_all_atomic_on_error(dso: LocalCluster, key: str) -> None:
    ok(f"map -n {key} put -1 a -2 1")
    err = fails(f"map -n {key} merge-all -2 sum", "b 1\na x\n")
    assert "TypeError" in err
    assert ok(f"map -n {key} keys") == "a\n"  # all or nothing


def test_treemap(dso: LocalCluster, key: str) -> None:
    t = f"treemap -n {key}"
    ok(f"{t} put-all", "b 5\na 3\nc 9\nd 1\ne 9\n")
    assert ok(f"{t} first-key") == "a\n"
    assert ok(f"{t} lastKey") == "e\n"
    assert ok(f"{t} head -1 c") == "a 3\nb 5\n"
    assert ok(f"{t} headMap -1 a") == ""
    assert ok(f"{t} tail -1 d") == "d 1\ne 9\n"
    assert ok(f"{t} sub -1 b -2 d") == "b 5\nc 9\n"
    assert ok(f"{t} subMap -1 b -2 b") == ""
    assert ok(f"{t} top -1 3") == "c 9\ne 9\nb 5\n"  # by value, ties by key
    assert ok(f"{t} top -1 0") == ""
    assert ok(f"{t} top -1 100").count("\n") == 5
    assert fails(f"treemap -n {key}-empty first-key") == f"treemap {key}-empty: no first key: it is empty\n"
    assert fails(f"treemap -n {key}-empty last-key") == f"treemap {key}-empty: no last key: it is empty\n"


def test_list(dso: LocalCluster, key: str) -> None:
    lst = f"list -n {key}"
    for e in ["x", "3", "1.5", "x"]:
        assert ok(f"{lst} add -1 {e}") == ""
    assert ok(f"{lst} all") == "x\n3\n1.5\nx\n"
    assert ok(f"{lst} toArray") == "x\n3\n1.5\nx\n"
    assert ok(f"{lst} size") == "4\n"
    assert ok(f"{lst} get -1 1") == "3\n"
    assert ok(f"{lst} get -1 -1") == "x\n"
    assert fails(f"{lst} get -1 9") == f"list {key}: get: IndexError: List index 9 out of range for length 4\n"
    assert ok(f"{lst} set -1 1 -2 4") == "3\n"  # the old element
    assert ok(f"{lst} contains -1 4") == "true\n"
    assert ok(f"{lst} contains -1 3") == "false\n"
    assert ok(f"{lst} index-of -1 x") == "0\n"
    assert ok(f"{lst} indexOf -1 nope") == "-1\n"
    assert ok(f"{lst} slice -1 1 -2 3") == "4\n1.5\n"
    assert ok(f"{lst} subList -1 0 -2 0") == ""
    assert fails(f"{lst} slice -1 2 -2 9").startswith(f"list {key}: slice: IndexError: ")
    assert ok(f"{lst} remove -1 x") == ""
    assert ok(f"{lst} all") == "4\n1.5\nx\n"
    assert fails(f"{lst} remove -1 nope") == f"list {key}: no element 'nope'\n"
    assert ok(f"{lst} clear") == ""
    assert ok(f"{lst} all") == ""


def test_bad_input_against_a_node(dso: LocalCluster, key: str) -> None:
    # usage errors are caught before any call: nothing is created
    assert run_verb(["counter", "-n", key, "increment", "-1", "abc"]).code == 2
    assert ok(f"counter -n {key} tally") == "0\n"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_dso_down(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRUCIAL_DSO", f"127.0.0.1:{closed_port()}")
    _default.reset_clients()
    try:
        limit = load_config().connect_timeout + 2
        for line in ["counter -n c increment", "map -n m merge-all -2 sum", "barrier -n b -p 2 await", "rdv -n r get"]:
            start = time.monotonic()
            r = run_verb(line.split(), "a 1\n")
            assert time.monotonic() - start < limit
            verb = line.split()[0]
            assert r.code == 1 and r.out == ""
            assert r.err.startswith(f"{verb}: cannot reach the DSO: ") and "127.0.0.1" in r.err, r
            assert r.err.count("\n") == 1
    finally:
        _default.reset_clients()


def test_every_verb_can_delete_its_object(dso, key) -> None:
    assert run_verb(["counter", "-n", key, "increment"]).out == "1\n"
    assert run_verb(["counter", "-n", key, "delete"]) == VerbResult(0, "true\n", "")
    assert run_verb(["counter", "-n", key, "delete"]) == VerbResult(0, "false\n", "")
    assert run_verb(["counter", "-n", key, "tally"]).out == "0\n"  # a new counter: the old one is gone
    assert run_verb(["map", "-n", key, "put", "-1", "a", "-2", "1"]).code == 0
    assert run_verb(["map", "-n", key, "delete"]).out == "true\n"
    assert run_verb(["map", "-n", key, "size"]).out == "0\n"
    assert run_verb(["barrier", "-n", key, "-p", "2", "delete"]).out == "false\n"  # never created
