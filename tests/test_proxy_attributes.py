"""Data attributes through proxies (issue 14, breakage 4).

Reading ``g.value`` on a ``@crucial.shared`` proxy failed with an
AttributeError although the class has it, and ``g.value = 5`` was silently
kept on the local proxy (the node still had 0).  Now a @shared proxy reads
and writes its object's public attributes on the node; a built-in proxy
refuses to keep one, saying why.
"""

from __future__ import annotations

import copy
import pickle

import pytest

import crucial
from crucial.compute import CloudThread


@crucial.shared
class Gauge:
    UNIT = "km"

    def __init__(self) -> None:
        self.value = 0
        self.history: list[int] = []
        self._secret = "node only"

    def bump(self) -> int:
        self.value += 1
        self.history.append(self.value)
        return self.value

    @property
    def doubled(self) -> int:
        return 2 * self.value

    @doubled.setter
    def doubled(self, v: int) -> None:
        self.value = v // 2

    @staticmethod
    def scale(x: int) -> int:
        return 10 * x

    @classmethod
    def unit(cls) -> str:
        return cls.UNIT


def test_read_and_write_reach_the_node(dso) -> None:
    g = Gauge()
    assert g.value == 0
    g.value = 5  # on the node, not on the proxy
    assert g.bump() == 6
    other = Gauge.attach(g.key)  # another proxy of the same object sees it
    assert other.value == 6 and other.history == [6]
    assert "value" not in getattr(g, "__dict__", {})
    g.doubled = 40  # a property's setter runs on the node
    assert (g.value, g.doubled) == (20, 40)
    assert g.UNIT == "km" and g.scale(3) == 30 and g.unit() == "km"
    del g.history
    with pytest.raises(AttributeError, match="history"):
        _ = g.history
    with pytest.raises(AttributeError, match="nothing"):
        _ = g.nothing
    assert not hasattr(g, "nothing")
    g.delete()


def test_private_attributes_stay_private(dso1) -> None:
    g = Gauge()
    with pytest.raises(AttributeError):
        _ = g._secret  # a proxy's own names: never a remote call
    with pytest.raises(crucial.UnknownMethodError, match="private"):
        g._call("crucial.getattr", "_secret")
    with pytest.raises(crucial.UnknownMethodError, match="private"):
        g._call("crucial.setattr", "_secret", 1)
    g.delete()


def test_values_read_are_copies(dso1) -> None:
    g = Gauge()
    g.bump()
    h = g.history
    h.append(99)  # a copy: the node's list is untouched
    assert g.history == [1]
    g.delete()


def test_proxies_still_pickle_and_copy(dso1) -> None:
    g = Gauge()
    g.value = 3
    for clone in (pickle.loads(pickle.dumps(g)), copy.copy(g), copy.deepcopy(g)):
        assert clone == g and clone.value == 3
    g.delete()


def _set_in_a_cloud_thread(g: Gauge) -> None:
    g.value = 42


def test_a_cloud_thread_sets_an_attribute(dso1) -> None:
    g = Gauge()
    t = CloudThread(target=_set_in_a_cloud_thread, args=(g,))
    t.start()
    t.result(60)
    assert g.value == 42
    g.delete()


def test_builtin_proxies_refuse_attributes(dso1) -> None:
    c = crucial.AtomicInt()
    with pytest.raises(AttributeError, match=r"cannot set 'value' on a AtomicInt proxy.*methods"):
        c.value = 5
    with pytest.raises(AttributeError):
        _ = c.value
    assert c.get() == 0
