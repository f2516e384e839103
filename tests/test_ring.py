"""Consistent hashing: deterministic, balanced, and stable when nodes join."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crucial.client._ring import HashRing, ref_hash

NODES4 = ["10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.3:7000", "10.0.0.4:7000"]
KEYS = [f"key-{i}" for i in range(20_000)]


@pytest.fixture(scope="module")
def ring4() -> HashRing:
    return HashRing(NODES4, vnodes=128)


@pytest.fixture(scope="module")
def owners4(ring4: HashRing) -> dict[str, str]:
    return {k: ring4.owner("AtomicInt", k) for k in KEYS}


def test_ref_hash_is_fixed_across_processes() -> None:
    # blake2b, not hash(): the value must never depend on PYTHONHASHSEED or the run
    assert ref_hash("AtomicInt", "hits") == 12594963985811595502
    assert 0 <= ref_hash("", "") < 2**64


def test_owner_is_fixed_for_a_fixed_input(ring4: HashRing) -> None:
    assert ring4.owner("AtomicInt", "hits") == "10.0.0.1:7000"
    assert [ring4.owner("Lock", k) for k in "abcde"] == [
        "10.0.0.3:7000",
        "10.0.0.1:7000",
        "10.0.0.2:7000",
        "10.0.0.2:7000",
        "10.0.0.2:7000",
    ]
    assert list(ring4.owners("AtomicInt", "hits", 3)) == ["10.0.0.1:7000", "10.0.0.3:7000", "10.0.0.4:7000"]


def test_two_rings_agree_whatever_the_node_order(owners4: dict[str, str]) -> None:
    other = HashRing(reversed(NODES4 + NODES4[:2]))  # order and duplicates do not matter
    assert other.nodes == tuple(NODES4)
    assert all(other.owner("AtomicInt", k) == o for k, o in owners4.items())


def test_type_name_is_part_of_the_reference(ring4: HashRing) -> None:
    assert ref_hash("A", "k") != ref_hash("B", "k")
    differing = sum(ring4.owner("A", k) != ring4.owner("B", k) for k in KEYS[:2000])
    assert differing > 1000  # about 3/4 expected


def test_balance(owners4: dict[str, str]) -> None:
    counts = Counter(owners4.values())
    assert set(counts) == set(NODES4)
    for node, n in counts.items():
        assert 0.15 < n / len(KEYS) < 0.35, (node, n)


def test_adding_a_node_moves_few_keys_and_only_to_it(owners4: dict[str, str]) -> None:
    new = "10.0.0.5:7000"
    ring5 = HashRing([*NODES4, new])
    moved = {k for k, o in owners4.items() if ring5.owner("AtomicInt", k) != o}
    assert 0.10 < len(moved) / len(KEYS) < 0.30  # about 1/5
    assert all(ring5.owner("AtomicInt", k) == new for k in moved)


def test_removing_a_node_moves_only_its_keys(owners4: dict[str, str]) -> None:
    gone = NODES4[1]
    ring3 = HashRing([n for n in NODES4 if n != gone])
    for k, o in owners4.items():
        if o != gone:
            assert ring3.owner("AtomicInt", k) == o


def test_single_node_owns_everything() -> None:
    ring = HashRing(["only:1"])
    assert {ring.owner("T", k) for k in KEYS[:100]} == {"only:1"}
    assert list(ring.owners("T", "k", 3)) == ["only:1"]


@given(key=st.text(max_size=30), n=st.integers(min_value=1, max_value=8))
def test_owners_are_distinct_and_start_with_owner(key: str, n: int) -> None:
    ring = HashRing(NODES4, vnodes=16)
    found = list(ring.owners("Dict", key, n))
    assert len(found) == min(n, len(NODES4))
    assert len(set(found)) == len(found)
    assert found[0] == ring.owner("Dict", key)
    assert set(found) <= set(NODES4)


def test_owners_is_a_prefix_of_longer_owner_lists(ring4: HashRing) -> None:
    for k in KEYS[:200]:
        full = list(ring4.owners("T", k, 4))
        for n in range(1, 5):
            assert list(ring4.owners("T", k, n)) == full[:n]


@pytest.mark.parametrize("nodes", [[], (), set(), iter([])])
def test_empty_ring_is_a_value_error(nodes: object) -> None:
    with pytest.raises(ValueError, match="at least one node"):
        HashRing(nodes)  # type: ignore[arg-type]


@pytest.mark.parametrize("n", [0, -1])
def test_owners_of_zero_is_empty(ring4: HashRing, n: int) -> None:
    assert list(ring4.owners("T", "k", n)) == []


def test_zero_vnodes_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        HashRing(["a:1", "b:2"], vnodes=0).owner("T", "k")
