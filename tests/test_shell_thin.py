"""The thin client-side verb path (``crucial ipc`` over one connection) against the usual one, on a real node.

Every operation the thin path sends (``_thin.PLANS``) runs both ways on twin
objects, step by step, and must print the same and leave the same state;
the cases it declines go the usual way; its pickles and its grammar are
checked against ``pickle`` and the regular expressions they replace.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import socket
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crucial import protocol
from crucial.objects.containers import MERGE_FUNCTIONS
from crucial.shell import _grammar, _plainpickle, _thin
from crucial.shell.verbs import run_verb
from crucial.testing import LocalCluster, unconfigured_env

# -- the pieces, without a node ---------------------------------------------------------------


def test_wire_numbers_are_the_protocols() -> None:
    assert _thin.PROTOCOL_VERSION == protocol.PROTOCOL_VERSION
    assert (_thin.HELLO, _thin.CALL, _thin.DELETE) == (protocol.Kind.HELLO, protocol.Kind.CALL, protocol.Kind.DELETE)
    assert (_thin.WELCOME, _thin.OK, _thin.ERROR) == (protocol.Kind.WELCOME, protocol.Kind.OK, protocol.Kind.ERROR)
    assert _thin.HEADER_SIZE == protocol.HEADER.size
    assert _thin._frame(protocol.Kind.CALL, 7, b"body") == protocol.encode_frame(protocol.Kind.CALL, 7, b"body")


def test_merge_names_are_the_merge_functions() -> None:
    assert set(MERGE_FUNCTIONS) == _grammar.MERGE_NAMES


def test_every_plan_is_an_operation_of_its_verb() -> None:
    for verb, op in _thin.PLANS:
        assert op in _grammar._GRAMMAR[verb][1], (verb, op)
    assert set(_thin.TYPES) == _grammar.VERBS


_INT = re.compile(r"[+-]?[0-9]+")
_CANONICAL_INT = re.compile(r"-?(?:0|[1-9][0-9]*)")
_FLOAT = re.compile(r"-?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|-?[0-9]+[eE][+-]?[0-9]+")
number_like = st.text(alphabet="0123456789+-.eE_x٣ ", max_size=8)


@given(number_like)
def test_number_checks_agree_with_the_regular_expressions(text: str) -> None:
    assert _grammar._is_int(text) == bool(_INT.fullmatch(text))
    assert _grammar._is_canonical_int(text) == bool(_CANONICAL_INT.fullmatch(text))
    assert _grammar._is_decimal(text) == bool(_FLOAT.fullmatch(text))


plain = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**600), max_value=2**600)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(max_size=300),
    lambda inner: (
        st.tuples(inner, inner) | st.lists(inner, max_size=5).map(tuple) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(plain)
def test_plain_pickles_read_by_pickle(value: Any) -> None:
    assert pickle.loads(_plainpickle.dumps(value)) == value


@given(plain | st.lists(plain, max_size=4), st.sampled_from([2, 3, 4, 5]))
def test_pickles_of_plain_values_read_without_pickle(value: Any, proto: int) -> None:
    data = pickle.dumps(value, proto)
    assert _plainpickle._read(data) == value if proto >= 4 else _plainpickle.loads(data) == value


def test_other_values_go_to_pickle() -> None:
    assert _plainpickle.loads(pickle.dumps({1, 2}, 5)) == {1, 2}
    assert _plainpickle.loads(pickle.dumps([Fraction(1, 3)], 5)) == [Fraction(1, 3)]
    with pytest.raises(_plainpickle.Unpicklable):
        _plainpickle.dumps(Fraction(1, 3))
    with pytest.raises(_plainpickle.Unpicklable):
        _plainpickle.dumps("\udc80")  # an undecodable argv byte


# -- both ways on a real node -----------------------------------------------------------------

SCENARIOS = {
    "counter": [
        "counter -n {k} increment",
        "counter -n {k} increment -1 5",
        "counter -n {k} decrement -1 2",
        "counter -n {k} tally",
        "counter -n {k} reset",
        "counter -n {k} -c 7 tally",
        "counter -n {k} delete",
        "counter -n {k} delete",
        "counter -n {k} -c 7 decrement",
    ],
    "map": [
        "map -n {k} put -1 a -2 1",
        "map -n {k} put -1 a -2 2.5",
        "map -n {k} put -1 b -2 word",
        "map -n {k} get -1 a",
        "map -n {k} get -1 zz",
        "map -n {k} contains -1 a",
        "map -n {k} size",
        "map -n {k} is-empty",
        "map -n {k} merge -1 a -2 5",
        "map -n {k} merge -1 b -2 5",
        "map -n {k} keys",
        "map -n {k} values",
        "map -n {k} items",
        "map -n {k} clear",
        "map -n {k} is-empty",
        "map -n {k} delete",
    ],
    "treemap": [
        "treemap -n {k} first-key",
        "treemap -n {k} put -1 b -2 2",
        "treemap -n {k} put -1 a -2 1",
        "treemap -n {k} put -1 c -2 3",
        "treemap -n {k} first-key",
        "treemap -n {k} last-key",
        "treemap -n {k} head -1 b",
        "treemap -n {k} tail -1 b",
        "treemap -n {k} sub -1 a -2 c",
        "treemap -n {k} top -1 2",
        "treemap -n {k} merge -1 a -2 9 -3 max",
        "treemap -n {k} items",
    ],
    "list": [
        "list -n {k} add -1 x",
        "list -n {k} add -1 3",
        "list -n {k} get -1 1",
        "list -n {k} get -1 9",
        "list -n {k} set -1 0 -2 y",
        "list -n {k} size",
        "list -n {k} contains -1 y",
        "list -n {k} index-of -1 y",
        "list -n {k} slice -1 0 -2 2",
        "list -n {k} all",
        "list -n {k} clear",
        "list -n {k} size",
    ],
    "sync": [
        "latch -n {k} await",
        "latch -n {k} -c 2 count-down",
        "latch -n {k} count",
        "latch -n {k} count-down",
        "latch -n {k} await",
        "barrier -n {k}b reset",
        "barrier -n {k}b -p 1 await",
        "barrier -n {k}b reset",
        "rdv -n {k}r put -1 hello",
        "rdv -n {k}r get",
        "counter -n",
        "counter -n {k} frob",
        "counter -n {k} -h",
    ],
    "--delete": [
        "treemap -n {k} merge -1 a -2 2",
        "treemap -n {k} merge -1 b -2 5",
        "treemap -n {k} top -1 1 --delete",
        "treemap -n {k} size",
        "counter -n {k}c increment -1 4 --delete",
        "counter -n {k}c --delete tally",
        "map -n {k}m put -1 a -2 1",
        "map -n {k}m get -1 nope --delete",
        "map -n {k}m get -1 a",
        "list -n {k}l get -1 3 --delete",
        "rdv -n {k}r put -1 v",
        "rdv -n {k}r get --delete",
        "rdv -n {k}r delete --delete",
    ],
}


@pytest.fixture
def thin_env(dso1: LocalCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalCluster:
    """CRUCIAL_DSO/TOKEN alone configure this process (no config file in the home directory)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in list(os.environ):
        if name.startswith("CRUCIAL_") and name not in ("CRUCIAL_DSO", "CRUCIAL_TOKEN"):
            monkeypatch.delenv(name)
    return dso1


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_thin_and_usual_ways_print_the_same(thin_env: LocalCluster, key: str, scenario: str) -> None:
    taken = 0
    for step in SCENARIOS[scenario]:
        thin_argv = step.format(k=f"{key}-thin").split()
        usual_argv = step.format(k=f"{key}-usual").split()
        thin = _thin.run(thin_argv)
        took_thin = thin is not None
        if thin is None:
            thin = tuple(run_verb(thin_argv))  # what crucial ipc does when the thin path declines
        usual = tuple(run_verb(usual_argv))
        expected = tuple(x.replace(f"{key}-usual", f"{key}-thin") for x in usual[1:])
        assert (thin[0], *thin[1:]) == (usual[0], *expected), step
        if usual[0] == 0 and _planned(thin_argv):  # a plain success goes the thin way
            assert took_thin, step
        taken += took_thin
    assert taken >= 3, f"{scenario}: the thin path was taken {taken} times"


ALL_STEPS = [
    ("treemap -n {k} merge-all -2 sum", "b 2\na 1\nb 3\n"),
    ("treemap -n {k} merge-all -2 max", "a 7\nc x\n"),
    ("treemap -n {k} merge-all -1 a=1 -1 d=4", None),
    ("map -n {k}m put-all", "a=1\nb two words\n\n"),
    ("map -n {k}m merge-all -2 concat", "b !\n"),
    ("map -n {k}m merge-all -2 sub", "a 5\nz 1\n"),
    ("treemap -n {k} merge-all -2 sum", "a oops\n"),  # int + str: the node's TypeError, worded alike
]


def test_put_all_and_merge_all_take_the_thin_way_and_agree(thin_env: LocalCluster, key: str) -> None:
    for step, stdin in ALL_STEPS:
        thin_argv, usual_argv = (step.format(k=f"{key}-{way}").split() for way in ("thin", "usual"))
        thin = _thin.run(thin_argv, stdin)
        assert thin is not None, step  # one call each
        usual = tuple(run_verb(usual_argv, stdin))
        assert thin == (usual[0], *(x.replace(f"{key}-usual", f"{key}-thin") for x in usual[1:])), step
    for verb, name in (("treemap", ""), ("map", "m")):
        shown = [tuple(run_verb(f"{verb} -n {key}-{way}{name} items".split())) for way in ("thin", "usual")]
        assert shown[0] == shown[1] and shown[0][1], shown


def _planned(argv: list[str]) -> bool:
    try:
        command = _grammar.parse(argv)
    except _grammar.UsageError:
        return False
    return (command.verb, command.op) in _thin.PLANS or command.op == "delete"


def test_it_declines_what_is_not_the_common_case(
    thin_env: LocalCluster, key: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert _thin.run(["map", "-n", key, "remove", "-1", "a"]) is None  # not in PLANS (local wording of KeyError)
    assert _thin.run(["map", "-n", key, "merge-all", "-2", "sub"], "a 1\na 2\n") is None  # two calls
    assert _thin.run(["map", "-n", key, "merge-all"], "a 1\nlonely\n") is None  # a bad line: worded the usual way
    assert _thin.run(["map", "-n", key, "put-all"]) is None  # no pairs at all: the usual way's usage message
    assert _thin.run(["rdv", "-n", key, "put", "-1", "v"]) is None  # prints a failure of its own
    monkeypatch.setenv("CRUCIAL_CALL_TIMEOUT", "5")  # a setting the thin path does not apply
    assert _thin.run(["counter", "-n", key, "tally"]) is None
    monkeypatch.delenv("CRUCIAL_CALL_TIMEOUT")
    config = tmp_path / "config.toml"
    config.write_text("retries = 3\n")
    monkeypatch.setenv("CRUCIAL_CONFIG", str(config))
    assert _thin.run(["counter", "-n", key, "tally"]) is None
    monkeypatch.delenv("CRUCIAL_CONFIG")
    assert _thin.run(["counter", "-n", key, "tally"]) == (0, "0\n", "")


def test_a_handed_over_connection_is_used_while_it_is_idle(
    thin_env: LocalCluster, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The quick sshell's handshake connection carries its command's first verb: no second connect."""
    settings = _thin._settings()
    assert settings is not None
    opened = _thin._Connection(*settings)

    def no_new_connection(*args: object) -> None:
        raise AssertionError("a new connection was opened")

    monkeypatch.setattr(_thin, "_Connection", no_new_connection)
    assert _thin.run(["counter", "-n", key, "increment"], None, opened) == (0, "1\n", "")
    assert opened.sock.fileno() == -1  # closed once used


@pytest.mark.parametrize("peer", ["closed", "sent something"])
def test_a_handed_over_connection_no_longer_idle_is_replaced(thin_env: LocalCluster, key: str, peer: str) -> None:
    """One the node closed (or wrote on) meanwhile is not used: the call goes over a new one, once."""
    ours, theirs = socket.socketpair()
    if peer == "closed":
        theirs.close()
    else:
        theirs.sendall(b"x")
    stale = object.__new__(_thin._Connection)
    stale.sock, stale.buf, stale.address = ours, b"", thin_env.addresses[0]
    assert _thin.run(["counter", "-n", key, "increment"], None, stale) == (0, "1\n", "")
    assert ours.fileno() == -1
    assert run_verb(["counter", "-n", key, "tally"]).out == "1\n"  # applied once
    theirs.close()


def test_a_handed_over_connection_is_closed_when_the_verb_goes_the_usual_way(thin_env: LocalCluster, key: str) -> None:
    settings = _thin._settings()
    assert settings is not None
    for argv in (["map", "-n", key, "remove", "-1", "a"], ["counter", "-n"]):  # declined; a usage error
        opened = _thin._Connection(*settings)
        _thin.run(argv, None, opened)
        assert opened.sock.fileno() == -1


def test_delete_option_deletes_only_after_a_success(thin_env: LocalCluster, key: str) -> None:
    assert _thin.run(["treemap", "-n", key, "put", "-1", "a", "-2", "3"]) == (0, "", "")
    assert _thin.run(["treemap", "-n", key, "get", "-1", "zz", "--delete"]) is None  # worded the usual way ...
    assert run_verb(["treemap", "-n", key, "get", "-1", "zz", "--delete"])[0] == 1  # ... which fails: nothing deleted
    assert _thin.run(["treemap", "-n", key, "top", "-1", "5", "--delete"]) == (0, "a 3\n", "")
    assert _thin.run(["treemap", "-n", key, "delete"]) == (0, "false\n", "")  # already gone


def test_it_declines_a_cluster_of_several_nodes(cluster3: LocalCluster, key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in cluster3.env_vars().items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("CRUCIAL_DSO", cluster3.addresses[0])  # one seed; the view names three nodes
    assert _thin.run(["counter", "-n", key, "tally"]) is None


def test_a_node_that_is_not_there_goes_the_usual_way(thin_env: LocalCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        monkeypatch.setenv("CRUCIAL_DSO", f"127.0.0.1:{s.getsockname()[1]}")  # bound, not listening: refused
        assert _thin.run(["counter", "-n", "k", "tally"]) is None


def test_the_token_is_sent_and_a_wrong_one_goes_the_usual_way(thin_env: LocalCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    with LocalCluster(nodes=1, token='a "quoted" token\\') as guarded:  # JSON escapes in the handshake
        monkeypatch.setenv("CRUCIAL_DSO", guarded.dso)
        monkeypatch.setenv("CRUCIAL_TOKEN", guarded.token or "")
        assert _thin.run(["counter", "-n", "k", "increment"]) == (0, "1\n", "")
        monkeypatch.setenv("CRUCIAL_TOKEN", "wrong")
        assert _thin.run(["counter", "-n", "k", "tally"]) is None


# -- the command ------------------------------------------------------------------------------


def crucial_cmd(*args: str, env: dict[str, str], module: str = "crucial") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args], env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )


def test_ipc_help_lists_the_verbs() -> None:
    for flag in ("--help", "-h"):
        r = crucial_cmd("ipc", flag, env=unconfigured_env())
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("usage: crucial ipc VERB -n NAME OPERATION")
        for verb in _grammar.VERBS:
            assert f"  usage: {verb} -n NAME" in r.stdout


def test_python_dash_m_crucial(cluster: LocalCluster, key: str) -> None:
    env = unconfigured_env() | cluster.env_vars()
    assert crucial_cmd("ipc", "counter", "-n", key, "increment", env=env).stdout == "1\n"
    r = crucial_cmd("ipc", "counter", "-n", key, "increment", "-1", "4", env=env, module="crucial.cli")
    assert (r.returncode, r.stdout, r.stderr) == (0, "5\n", "")
    r = crucial_cmd("--help", env=env)
    assert r.returncode == 0 and "ipc" in r.stdout and "server" in r.stdout
    r = crucial_cmd("ipc", "counter", "-n", key, "frob", env=env)
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr.startswith("counter: unknown operation 'frob'")


def test_a_client_side_verb_imports_only_what_it_sends_with() -> None:
    """What keeps ``crucial ipc`` a few milliseconds above the interpreter: pinned, so an import added by mistake shows."""
    probe = "import sys; base = set(sys.modules); import crucial.cli, crucial.shell._thin; print(sorted(set(sys.modules) - base))"
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, env=unconfigured_env())
    new = set(json.loads(r.stdout.replace("'", '"')))
    own = {"crucial", "crucial.cli", "crucial.shell"} | {f"crucial.shell.{m}" for m in ("_grammar", "_plainpickle", "_thin")}
    assert new - own <= {"__future__", "_socket", "_struct"}, new - own


def test_names_load_once_for_every_thread() -> None:
    probe = (
        "import threading, crucial\n"
        "out = []\n"
        "ts = [threading.Thread(target=lambda: out.append((crucial.AtomicInt, crucial.CrucialError))) for _ in range(16)]\n"
        "[t.start() for t in ts]; [t.join() for t in ts]\n"
        "print(len(out), len(set(out)), 'crucial.client' in __import__('sys').modules)"
    )
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, env=unconfigured_env())
    assert r.stdout.split() == ["16", "1", "True"], r.stderr
