"""Views, placement, the proposer's rules and hand-over plans: pure logic, no processes."""

from __future__ import annotations

import math

import pytest

from crucial._placement import View
from crucial.exceptions import ProtocolError
from crucial.server._handoff import Held, may_gain, plan
from crucial.server._proposer import next_view

ABC = (("a", "h:1"), ("b", "h:2"), ("c", "h:3"))


def keys(n: int = 400) -> list[tuple[str, str]]:
    return [("AtomicInt", f"k{i}") for i in range(n)]


# -- views ----------------------------------------------------------------------------------


def test_view_round_trips_through_json_and_rejects_garbage() -> None:
    v = View(4, ABC, rf=2, failure_timeout=1.5, leaving=("b",))
    assert View.from_json(v.as_json()) == v
    for bad in ({}, {"epoch": "1", "members": []}, {"epoch": 1, "members": [["a"]]}, {"epoch": 1, "members": [], "rf": 1}):
        with pytest.raises(ProtocolError, match="malformed view"):
            View.from_json(bad)
    with pytest.raises(ProtocolError, match="failure_timeout"):
        View.from_json({"epoch": 1, "members": [["a", "h"]], "failure_timeout": math.nan})


def test_a_view_records_when_each_member_was_added_so_a_node_that_missed_views_knows_it_was_out() -> None:
    """A node cut off in view 3 that next reads view 5 must tell "removed in 4, added back in 5" from "stayed"."""
    three = View(3, ABC, rf=2)
    assert [three.joined(i) for i in ("a", "b", "c")] == [0, 0, 0]  # members since the first view (or not recorded)
    without_c = three.with_changes(members=ABC[:2])
    back = without_c.with_changes(members=ABC)
    assert back.epoch == 5 and back.joined("c") == 5 > three.epoch  # c was out in between
    assert back.joined("a") == back.joined("b") == 0  # a and b stayed: their copies are current
    later = back.with_changes(members=(*ABC, ("d", "h:4")))
    assert later.joined("c") == 5 and later.joined("d") == 6  # kept across views; a joiner gets its view's epoch
    assert View.from_json(later.as_json()).since == later.since  # it travels through etcd
    assert "since" not in three.as_json()  # views written before it existed read as "since the first view"
    assert later.without("c") == View(6, (ABC[0], ABC[1], ("d", "h:4")), rf=2) and View(1, ABC[:1]).without("a") is None
    with pytest.raises(ProtocolError, match="since"):
        View.from_json({"epoch": 2, "members": [["a", "h"]], "since": {"a": 7}})  # added after the view itself


def test_replicas_are_distinct_primary_first_and_capped_by_the_cluster() -> None:
    v = View(1, ABC, rf=2)
    for ref in keys(100):
        r = v.replicas(*ref)
        assert len(r) == 2 == len(set(r))
        assert r[0] == v.primary(*ref)
    assert all(len(v.replicas(*ref, rf=5)) == 3 for ref in keys(20))
    assert View(1, ABC[:1], rf=3).replicas("T", "k") == ["a"]


def test_placement_is_by_node_id_so_a_new_address_moves_nothing() -> None:
    v = View(1, ABC, rf=2)
    moved = View(2, (("a", "h:9"), ("b", "h:2"), ("c", "h:3")), rf=2)
    assert all(v.replicas(*r) == moved.replicas(*r) for r in keys())
    assert moved.primary_address("AtomicInt", next(k for t, k in keys() if v.primary(t, k) == "a")) == "h:9"


def test_leaving_members_hold_nothing_but_stay_members() -> None:
    v = View(2, ABC, rf=2, leaving=("c",))
    assert "c" in v and v.placed == ("a", "b")
    assert all("c" not in v.replicas(*r) for r in keys())


def test_a_join_moves_about_one_key_in_n() -> None:
    three = View(1, ABC)
    four = View(2, (*ABC, ("d", "h:4")))
    moved = sum(three.primary(*r) != four.primary(*r) for r in keys(4000))
    assert 0.15 < moved / 4000 < 0.35  # ~1/4 with 128 virtual nodes each
    assert all(four.primary(*r) == "d" for r in keys(4000) if three.primary(*r) != four.primary(*r))


# -- the proposer -------------------------------------------------------------------------------


def live(*ids: str, settled: int = 1, **extra: dict[str, object]) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {i: {"address": dict(ABC).get(i, f"h:{i}"), "settled": settled} for i in ids}
    for i, info in extra.items():
        out[i] = {**out.get(i, {}), **info}
    return out


def test_nothing_to_propose_when_everyone_is_there() -> None:
    assert next_view(View(1, ABC), live("a", "b", "c"), {}) is None


def test_a_crashed_member_is_removed_after_the_failure_timeout_only() -> None:
    v = View(3, ABC, failure_timeout=2.0)
    assert next_view(v, live("a", "b"), {"c": 1.9}) is None
    p = next_view(v, live("a", "b"), {"c": 2.0})
    assert p is not None and p.view.ids == ("a", "b") and p.view.epoch == 4 and p.absent == ("c",)


def test_a_lone_survivor_never_removes_everybody() -> None:
    v = View(3, ABC)
    assert next_view(v, {}, {"a": 99, "b": 99, "c": 99}) is None


def test_a_restarted_member_gets_its_new_address() -> None:
    v = View(5, ABC)
    p = next_view(v, live("a", "b", "c", c={"address": "h:33"}), {})
    assert p is not None and p.view.address("c") == "h:33" and p.view.ids == v.ids


def test_joins_wait_until_every_member_settled_the_view() -> None:
    v = View(3, ABC)
    assert next_view(v, {**live("a", "b", "c", settled=2), **live("d", settled=0)}, {}) is None
    p = next_view(v, {**live("a", "b", "c", settled=3), **live("d", settled=0)}, {})
    assert p is not None and p.view.ids == ("a", "b", "c", "d")


def test_a_graceful_leave_takes_two_views() -> None:
    v = View(3, ABC)
    asking = live("a", "b", "c", settled=3, c={"leaving": True})
    first = next_view(v, asking, {})
    assert first is not None and first.view.leaving == ("c",) and first.view.ids == v.ids
    assert next_view(first.view, live("a", "b", "c", settled=3, c={"leaving": True}), {}) is None  # not handed over yet
    second = next_view(first.view, live("a", "b", "c", settled=4, c={"leaving": True}), {})
    assert second is not None and second.view.ids == ("a", "b") and second.absent == ()


# -- hand-over plans --------------------------------------------------------------------------------


def held(refs: list[tuple[str, str]], persistent: bool = True) -> list[Held]:
    return [Held(r, None, persistent) for r in refs]


def test_a_crash_promotes_backups_and_moves_nothing_between_live_nodes() -> None:
    before = View(1, ABC, rf=2)
    after = View(2, ABC[:2], rf=2)  # c crashed
    for me in ("a", "b"):
        mine = [r for r in keys() if me in before.replicas(*r)]
        p = plan(me, before, after, held(mine))
        assert p.push == {}  # every new primary already held the key (it was a replica)
        assert p.retire == []
        promoted = [r for r, changed in p.lead if changed and before.primary(*r) == "c"]
        assert promoted and all(after.primary(*r) == me for r in promoted)


def test_a_join_pushes_each_moved_key_once_from_its_sync_source() -> None:
    before = View(1, ABC, rf=2)
    after = View(2, (*ABC, ("d", "h:4")), rf=2)
    pushes: dict[tuple[str, str], int] = {}
    for me in ("a", "b", "c"):
        mine = [r for r in keys() if me in before.replicas(*r)]
        for target, refs in plan(me, before, after, held(mine)).push.items():
            assert target == "d"
            for r in refs:
                pushes[r] = pushes.get(r, 0) + 1
    gained = [r for r in keys() if after.primary(*r) == "d"]
    assert sorted(pushes) == sorted(gained) and set(pushes.values()) == {1}


def test_ephemeral_objects_of_a_crashed_node_have_no_source() -> None:
    before = View(1, ABC)
    after = View(2, ABC[:2])
    for me in ("a", "b"):
        mine = [r for r in keys() if before.primary(*r) == me]
        assert plan(me, before, after, held(mine, persistent=False)).push == {}
    lost = next(r for r in keys() if before.primary(*r) == "c")
    assert may_gain(after.primary(*lost), [before], lost)  # its new primary waits for the hand-over, then says lost


def test_a_leaving_node_is_the_source_of_what_it_held() -> None:
    before = View(1, ABC)
    after = View(2, ABC, leaving=("c",))
    mine = [r for r in keys() if before.primary(*r) == "c"]
    p = plan("c", before, after, held(mine, persistent=False))
    assert sum(len(v) for v in p.push.values()) == len(mine)
    assert sorted(p.retire) == sorted(mine)
