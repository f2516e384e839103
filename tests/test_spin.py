"""A lone caller polls its socket for the reply where that pays (client/_spin.py, docs/design.md "Calls").

The rule on its own, then real nodes: replies read by polling are the same
replies (on one node the socket blocks and is polled with MSG_DONTWAIT; in a
cluster it has a timeout and is polled with a raw read), a method that waits
stops polling, and ``spin_us=0`` turns it off.
"""

from __future__ import annotations

import os
import time

import pytest

import crucial
from crucial.client import _default
from crucial.client._spin import MAX_SKIP, Spin, slow, window
from crucial.config import load_config
from crucial.exceptions import ConfigError
from crucial.testing import LocalCluster


def _pattern(spin: Spin, calls: int) -> str:
    return "".join("p" if spin.wanted() else "s" for _ in range(calls))


def test_a_method_first_sleeps_then_polls() -> None:
    spin = Spin()
    assert _pattern(spin, 3) == "spp"


def test_misses_back_off_twice_as_long_each_time_and_a_hit_starts_over() -> None:
    spin = Spin()
    spin.wanted()  # the first call sleeps
    assert spin.wanted()
    spin.miss()
    assert _pattern(spin, 3) == "ssp"
    spin.miss()
    assert _pattern(spin, 5) == "ssssp"
    spin.miss()
    assert _pattern(spin, 9) == "s" * 8 + "p"
    spin.hit()
    spin.miss()  # one miss after a hit: back to two
    assert _pattern(spin, 3) == "ssp"


def test_the_back_off_is_bounded() -> None:
    spin = Spin()
    for _ in range(40):
        spin.miss()
    assert _pattern(spin, MAX_SKIP + 1) == "s" * MAX_SKIP + "p"


def test_window_is_off_at_zero_and_on_one_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    assert window(0) == 0.0
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert window(50) == 0.0  # its poll would keep the node from answering
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert window(50) == pytest.approx(50e-6)
    assert slow(50e-6) == pytest.approx(0.001)
    assert slow(0.001) == pytest.approx(0.02)


def test_spin_us_is_a_config_key(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_config().spin_us == 50
    monkeypatch.setenv("CRUCIAL_SPIN_US", "0")
    assert load_config().spin_us == 0
    monkeypatch.setenv("CRUCIAL_SPIN_US", "-5")
    with pytest.raises(ConfigError, match="spin_us"):
        load_config()


@crucial.shared
class Slow:
    def __init__(self) -> None:
        self.calls = 0

    def nap(self) -> int:
        time.sleep(0.005)  # longer than the 1 ms that makes a call "slow"
        self.calls += 1
        return self.calls


def _spins(client: crucial.Client) -> dict[tuple[str, str], Spin]:
    return client._spins  # type: ignore[attr-defined]


@pytest.fixture
def polling(monkeypatch: pytest.MonkeyPatch) -> None:
    # the rule is on wherever the tests run (a 1-CPU runner would turn it off)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)


def test_replies_read_by_polling_are_the_replies(dso: LocalCluster, polling: None, key: str) -> None:
    # one node: a blocking socket polled with MSG_DONTWAIT; three: a socket with a timeout, read raw
    client = _default.connect(dso.dso)
    ref = crucial.AtomicReference(None, key=key)
    for i in range(300):
        value = os.urandom(1 + i * 7)  # replies of many sizes, some beyond one segment
        ref.set(value)
        assert ref.get() == value
    counter = crucial.AtomicInt(0, key=key + "-n")
    assert [counter.increment_and_get() for _ in range(200)] == list(range(1, 201))
    assert (ref._type_name, "get") in _spins(client)


def test_a_method_that_takes_long_stops_polling(dso1: LocalCluster, polling: None) -> None:
    client = _default.connect(dso1.dso)
    sleeper = Slow()
    assert sleeper.nap() == 1
    record = _spins(client)[(Slow._type_name, "nap")]
    assert record._misses == 1  # the slow call counted as a miss
    assert [record.wanted() for _ in range(3)] == [False, False, True]


def test_spin_us_zero_never_polls(dso1: LocalCluster) -> None:
    client = _default.connect(dso1.dso, spin_us=0)
    counter = crucial.AtomicInt(0)
    assert [counter.increment_and_get() for _ in range(20)] == list(range(1, 21))
    assert _spins(client) == {}


def test_replies_larger_than_one_read_arrive_whole(dso: LocalCluster, polling: None, key: str) -> None:
    # a recv asks for P.RECV_SIZE bytes (under glibc's mmap threshold): bigger replies take several reads,
    # by a lone caller (polling or not) and by threads sharing the connection
    from concurrent.futures import ThreadPoolExecutor

    from crucial import protocol as P

    _default.connect(dso.dso)
    ref = crucial.AtomicReference(None, key=key)
    for size in (P.RECV_SIZE - 20, P.RECV_SIZE, 3 * P.RECV_SIZE + 5):
        value = os.urandom(size)
        ref.set(value)
        assert [ref.get() for _ in range(5)] == [value] * 5

    def round_trip(size: int) -> bool:
        value = os.urandom(size)
        return crucial.AtomicReference(value, key=f"{key}-{size}").get() == value

    with ThreadPoolExecutor(8) as pool:
        sizes = [P.RECV_SIZE * (i % 3) + i for i in range(1, 41)]
        assert all(pool.map(round_trip, sizes))
