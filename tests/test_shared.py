"""User-defined shared objects (``@crucial.shared``) end to end, against real nodes.

The classes below live in this test module, which the node processes cannot
import: their code reaches the nodes by value.  Objects are isolated by the
``key`` fixture; the few fixed keys (class-attribute keys) are deleted first.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import crucial
from crucial.client import _default
from crucial.client._ring import HashRing
from crucial.testing import LocalCluster

# -- shared classes used by the tests ----------------------------------------------


class InsufficientFunds(Exception):
    """Defined in the test module: travels back from the node as this very class."""

    def __init__(self, wanted: int, balance: int) -> None:
        super().__init__(wanted, balance)  # args that rebuild it: it must unpickle
        self.wanted = wanted
        self.balance = balance

    def __str__(self) -> str:
        return f"wanted {self.wanted}, have {self.balance}"


@crucial.shared
class Tally:
    """A plain counter whose increment is a non-atomic read-modify-write."""

    def __init__(self, start: int = 0) -> None:
        self.n = start

    def bump(self, by: int = 1) -> int:
        v = self.n
        self.n = v + by
        return self.n

    def get(self) -> int:
        return self.n

    def fail(self, message: str) -> None:
        raise ValueError(message)


@crucial.shared
class Account:
    def __init__(self, balance: int, *, owner: str = "nobody") -> None:
        if balance < 0:
            raise ValueError("a balance cannot start negative")
        self.balance = balance
        self.owner = owner
        self.log: list[tuple[str, int]] = []

    def info(self) -> tuple[str, int]:
        return self.owner, self.balance

    def withdraw(self, amount: int) -> int:
        self.log.append(("withdraw", amount))  # recorded even when the withdrawal fails
        if amount > self.balance:
            raise InsufficientFunds(amount, self.balance)
        self.balance -= amount
        return self.balance

    def history(self) -> list[tuple[str, int]]:
        return list(self.log)

    def lookup(self, name: str) -> int:
        return {"a": 1}[name]

    def delete(self) -> str:  # shadows Proxy.delete: crucial.delete() still removes the object
        self.balance = 0
        return "emptied"


class Base:
    def __init__(self, scale: int) -> None:
        self.scale = scale
        self.items: list[int] = []

    def add(self, x: int) -> int:
        self.items.append(x)
        return len(self.items)

    def total(self) -> int:
        return sum(self.items)

    def describe(self) -> str:
        return "base"


@crucial.shared
class Scaled(Base):
    def add(self, x: int) -> int:  # overrides Base.add, and calls it
        return super().add(x * self.scale)

    def describe(self) -> str:
        return f"scaled by {self.scale}, from {super().describe()}"


@crucial.shared
class Mailbox:
    """Monitor-style: ``take`` waits on the node until an item is there."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.waiting = 0

    def put(self, item: Any) -> int:
        self.items.append(item)
        return len(self.items)

    def take(self, timeout: float | None = None) -> Any:
        self.waiting += 1
        try:
            ok = crucial.wait_until(lambda: len(self.items) > 0, timeout)
        finally:
            self.waiting -= 1
        return self.items.pop(0) if ok else None

    def await_waiting(self, n: int, timeout: float | None = None) -> bool:
        return crucial.wait_until(lambda: self.waiting >= n, timeout)

    def size(self) -> int:
        return len(self.items)


@crucial.shared
class Room:
    """Santa-Claus style group and gate (seed §3.4.3), as one monitor.

    ``join`` waits until ``size`` members have joined (a group is formed), then
    waits at the gate until Santa opens it for that group; ``next_group`` (Santa)
    waits until a full group is at the gate and opens it.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.forming: list[str] = []
        self.groups: list[list[str]] = []
        self.opened = 0  # gates opened so far: groups 0 .. opened-1 may pass
        self.at_gate = 0

    def join(self, name: str, timeout: float | None = None) -> int:
        idx = len(self.groups)
        self.forming.append(name)
        if len(self.forming) == self.size:
            self.groups.append(self.forming)
            self.forming = []
        elif not crucial.wait_until(lambda: len(self.groups) > idx, timeout):
            raise TimeoutError(f"{name}: no group formed")
        self.at_gate += 1
        if not crucial.wait_until(lambda: self.opened > idx, timeout):
            raise TimeoutError(f"{name}: gate {idx} never opened")
        self.at_gate -= 1
        return idx

    def await_at_gate(self, n: int, timeout: float | None = None) -> bool:
        return crucial.wait_until(lambda: self.at_gate >= n, timeout)

    def next_group(self, timeout: float | None = None) -> list[str]:
        if not crucial.wait_until(lambda: len(self.groups) > self.opened, timeout):
            raise TimeoutError("no full group")
        members = self.groups[self.opened]
        self.opened += 1
        return members


@crucial.shared
class Group:
    """Holds proxies to other shared objects; its methods call them on the node."""

    def __init__(self, counter: crucial.AtomicInt, tally: Tally) -> None:
        self.counter = counter
        self.tally = tally
        self.calls = 0

    def bump_all(self) -> tuple[int, int]:
        self.calls += 1
        return self.counter.increment_and_get(), self.tally.bump(10)

    def inner_fail(self, message: str) -> None:
        self.calls += 1
        self.tally.fail(message)

    def inner_fail_caught(self, message: str) -> str:
        self.calls += 1
        try:
            self.tally.fail(message)
        except ValueError as exc:
            return f"caught {exc}"
        return "not raised"

    def call_missing(self, key: str) -> int:
        return crucial.AtomicInt.attach(key).get()

    def calls_made(self) -> int:
        return self.calls

    def members(self) -> tuple[crucial.AtomicInt, Tally]:
        return self.counter, self.tally


@crucial.shared
class Gate:
    """``pass_through`` waits on the node until the gate is opened."""

    def __init__(self) -> None:
        self.open = False
        self.arrived = 0

    def pass_through(self) -> str:
        self.arrived += 1
        crucial.wait_until(lambda: self.open, 60)
        return "passed"

    def await_arrived(self, n: int, timeout: float | None = None) -> bool:
        return crucial.wait_until(lambda: self.arrived >= n, timeout)

    def open_gate(self) -> None:
        self.open = True


@crucial.shared
class Relay:
    """Forwards to a Gate held as a proxy: a nested call that waits on another node."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate

    def pass_through(self) -> str:
        return self.gate.pass_through()


@crucial.shared
class Owner:
    """Creates its member object itself, on the node, in ``__init__``."""

    def __init__(self, member_key: str) -> None:
        self.member = crucial.AtomicInt(100, key=member_key)

    def bump(self) -> int:
        return self.member.increment_and_get()

    def make(self, key: str, value: int) -> crucial.AtomicInt:
        return crucial.AtomicInt(value, key=key)  # a fresh proxy, pickled on the node


# -- helpers -----------------------------------------------------------------------


def _run_threads(n: int, target: Callable[[int], Any], timeout: float = 60) -> list[Any]:
    """Run ``target(i)`` in ``n`` threads released together; return results by index."""
    start = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def body(i: int) -> None:
        try:
            start.wait(timeout)
            results[i] = target(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), "threads still running"
    if errors:
        raise errors[0]
    return results


class _Bg:
    """A call in a background thread, with its outcome."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.value: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self.value = fn()
        except BaseException as exc:
            self.error = exc

    def result(self, timeout: float = 30) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the call did not return"
        if self.error is not None:
            raise self.error
        return self.value


@contextlib.contextmanager
def _use(cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[crucial.Client]:
    """Make ``cluster`` this process's default while a test runs."""
    for k, v in cluster.env_vars().items():
        monkeypatch.setenv(k, v)
    client = _default.connect(cluster.dso)
    try:
        yield client
    finally:
        _default.reset_clients()
        client.close()


def _key_on(ring: HashRing, type_name: str, want: Callable[[str], bool], prefix: str) -> str:
    """A fresh key of ``type_name`` whose owner satisfies ``want``."""
    for i in range(10_000):
        k = f"{prefix}-{i}"
        if want(ring.owner(type_name, k)):
            return k
    raise AssertionError("no key found")


# -- basics: serial execution, creation, attach, delete ----------------------------------


def test_methods_run_one_at_a_time(dso: LocalCluster, key: str) -> None:
    tally = Tally(key=key)
    returned = _run_threads(8, lambda i: [tally.bump() for _ in range(200)])
    assert tally.get() == 8 * 200
    # every increment saw the previous one: the returned values are exactly 1..1600
    assert sorted(v for vs in returned for v in vs) == list(range(1, 8 * 200 + 1))
    for vs in returned:  # and each thread's own calls were applied in its order
        assert vs == sorted(vs)


def test_constructor_args(dso: LocalCluster, key: str) -> None:
    acct = Account(100, owner="ann", key=key)
    assert acct.info() == ("ann", 100)
    assert acct.withdraw(30) == 70
    assert Account(100, key=f"{key}-2").info() == ("nobody", 100)


def test_create_if_absent_keeps_existing_state(dso: LocalCluster, key: str) -> None:
    Account(100, owner="ann", key=key).withdraw(40)
    again = Account(5, owner="bob", key=key)  # create-if-absent: the object exists
    assert again.info() == ("ann", 60)


def test_force_new_resets(dso: LocalCluster, key: str) -> None:
    first = Account(100, owner="ann", key=key)
    first.withdraw(40)
    fresh = Account(7, owner="bob", key=key, force_new=True)  # recreated right now, before any call
    assert first.info() == ("bob", 7)  # the old proxy names the same (new) object
    assert fresh.history() == []


def test_attach(dso: LocalCluster, key: str) -> None:
    with pytest.raises(crucial.ObjectNotFoundError) as info:
        Account.attach(key).info()
    assert info.value.key == key
    Account(100, owner="ann", key=key).withdraw(1)
    attached = Account.attach(key)
    assert attached.info() == ("ann", 99)
    assert attached == Account(0, key=key)
    assert attached.key == key


def test_delete(dso: LocalCluster, key: str) -> None:
    tally = Tally(3, key=key)
    assert tally.bump() == 4
    assert tally.delete() is True
    with pytest.raises(crucial.ObjectNotFoundError):  # never a silent re-creation
        tally.get()
    assert tally.delete() is False
    assert Tally(10, key=key).get() == 10  # a new proxy with arguments creates it again


def test_user_method_named_delete(dso: LocalCluster, key: str) -> None:
    acct = Account(50, key=key)
    assert acct.delete() == "emptied"  # the user's method, run on the node
    assert acct.info() == ("nobody", 0)
    assert crucial.delete(acct) is True  # the object itself
    with pytest.raises(crucial.ObjectNotFoundError):
        Account.attach(key).info()


def test_wrong_constructor_args_fail_at_proxy_creation(key: str) -> None:
    # no cluster is reachable here (CRUCIAL_DSO is a dead port): the check is local
    with pytest.raises(TypeError, match=r"Account\(\)"):
        Account(key=key)
    with pytest.raises(TypeError, match="Account"):
        Account(1, 2, key=key)
    with pytest.raises(TypeError, match="color"):
        Account(1, color="red", key=key)
    with pytest.raises(TypeError, match="Tally"):
        Tally(1, 2, 3, key=key, force_new=True)


def test_constructor_raising_on_node(dso: LocalCluster, key: str) -> None:
    acct = Account(-5, key=key)  # fits the signature; the constructor itself refuses
    with pytest.raises(crucial.ObjectCreationError, match="cannot start negative"):
        acct.info()
    with pytest.raises(crucial.ObjectNotFoundError):
        Account.attach(key).info()


def test_no_key_means_a_new_object_of_its_own(dso: LocalCluster) -> None:
    a, b = Tally(5), Tally(5)  # as Tally(5) is a new object in Python
    assert a.key != b.key and a.key.startswith("anon-")
    assert a.bump() == 6 and b.get() == 5
    copy = pickle.loads(pickle.dumps(a))  # travels as a reference: the same object
    assert copy.key == a.key and copy.bump() == 7 and a.get() == 7
    assert a.delete() and b.delete()


# -- keys ---------------------------------------------------------------------------


def test_key_from_class_attribute(dso: LocalCluster, key: str) -> None:
    class Task:
        counter = crucial.AtomicInt()
        acc = Tally(1000)
        named = Tally(7, key=key)  # an explicit key wins over the attribute name

    assert Task.counter.key == "counter"
    assert Task.acc.key == "acc"
    assert Task.named.key == key
    for p in (Task.counter, Task.acc):  # fixed keys: start from scratch
        crucial.delete(p)
    try:
        task = Task()
        assert task.counter.increment_and_get() == 1
        assert task.acc.bump(5) == 1005
        assert Task.named.get() == 7
        assert crucial.AtomicInt.attach("counter").get() == 1
        assert Tally.attach("acc").get() == 1005
    finally:
        for p in (Task.counter, Task.acc):
            crucial.delete(p)


def test_same_key_different_types_are_different_objects(dso: LocalCluster, key: str) -> None:
    assert Tally(1, key=key).bump() == 2
    assert crucial.AtomicInt(50, key=key).increment_and_get() == 51
    assert Tally.attach(key).get() == 2


# -- code shipped by value -------------------------------------------------------------


def test_class_defined_in_a_test_runs_on_the_node(dso: LocalCluster, key: str) -> None:
    factor = 3

    @crucial.shared
    class Local:
        def __init__(self) -> None:
            self.seen: list[int] = []

        def push(self, x: int) -> list[int]:
            self.seen.append(x * factor)  # a closure variable travels with the code
            return self.seen

        def where(self) -> tuple[int, str]:
            return os.getpid(), __name__

    p = Local(key=key)
    assert p.push(1) == [3]
    assert p.push(2) == [3, 6]
    pid, module = p.where()
    assert pid != os.getpid()  # ran in a node process
    assert module == __name__  # ...as code of this module, which the node cannot import
    assert Local._type_name == f"{__name__}.{Local.__qualname__}"


def test_inheritance(dso: LocalCluster, key: str) -> None:
    s = Scaled(10, key=key)
    assert s.add(1) == 1
    assert s.add(2) == 2
    assert s.total() == 30  # Base.total, forwarded; Scaled.add overrode Base.add
    assert s.describe() == "scaled by 10, from base"
    assert isinstance(s, crucial.Proxy)


def test_decorator_rejects_non_classes_and_proxies() -> None:
    with pytest.raises(TypeError, match="classes"):
        crucial.shared(len)  # type: ignore[type-var]
    with pytest.raises(TypeError, match="already"):
        crucial.shared(Tally)


# -- proxies pickle as references --------------------------------------------------------


def test_proxy_pickles_as_a_reference(dso: LocalCluster, key: str) -> None:
    box = Mailbox(key=key)
    box.put("x" * 100_000)
    data = pickle.dumps(box)
    assert len(data) < 10_000 and b"xxxxxxxxxx" not in data  # the reference, not the state
    clone = pickle.loads(data)
    assert clone == box and clone.key == key
    assert clone.put(2) == 2
    assert box.size() == 2


def test_unused_proxy_pickles_with_its_create_args(dso: LocalCluster, key: str) -> None:
    clone = pickle.loads(pickle.dumps(Account(42, owner="zed", key=key)))  # no call yet
    assert clone.info() == ("zed", 42)  # the other side creates it


def _child(shared_proxy: Tally, atomic: crucial.AtomicInt, attached: Account, out: Any) -> None:
    try:
        env_dso = os.environ.get("CRUCIAL_DSO")
        values = [shared_proxy.bump() for _ in range(50)]
        atomics = [atomic.increment_and_get() for _ in range(50)]
        info = attached.info()
        out.put(("ok", env_dso, values[-1], atomics[-1], info, _default._embedded is None, _default._default is None))
    except BaseException as exc:
        out.put(("error", repr(exc)))


@pytest.fixture(scope="module")
def token_cluster() -> Iterator[LocalCluster]:
    with LocalCluster(nodes=2, token=f"tok-{uuid.uuid4().hex}") as c:
        yield c


def test_proxy_reattaches_in_a_spawned_process(token_cluster: LocalCluster, key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A child process reaches the cluster from the pickled proxies alone."""
    assert token_cluster.token
    monkeypatch.setenv("CRUCIAL_TOKEN", token_cluster.token)
    client = _default.connect(token_cluster.dso)
    monkeypatch.delenv("CRUCIAL_DSO", raising=False)  # the child inherits no cluster address
    try:
        tally = Tally(1000, key=key)
        atomic = crucial.AtomicInt(key=key)
        assert atomic.increment_and_get() == 1
        acct = Account(5, owner="kid", key=key)  # never called here: the child creates it
        ctx = multiprocessing.get_context("spawn")
        out = ctx.Queue()
        proc = ctx.Process(target=_child, args=(tally, atomic, acct, out))
        proc.start()
        try:
            result = out.get(timeout=60)
        finally:
            proc.join(30)
        assert proc.exitcode == 0
        assert result[0] == "ok", result
        _, env_dso, last, last_atomic, info, no_embedded, no_default = result
        assert env_dso is None
        assert (last, last_atomic, info) == (1050, 51, ("kid", 5))
        assert no_embedded and no_default  # it used the proxies' cluster, started nothing
        assert tally.get() == 1050  # the same objects, seen from here
        assert atomic.get() == 51
        assert Account.attach(key).info() == ("kid", 5)
    finally:
        _default.reset_clients()
        client.close()


# -- objects inside objects -------------------------------------------------------------


#: a node that (wrongly) connected to itself would give up after 1 s instead of hanging
_GIVE_UP_FAST = {"CRUCIAL_CONNECT_TIMEOUT": "1", "CRUCIAL_RETRIES": "0"}


@pytest.fixture(scope="module")
def nested1() -> Iterator[LocalCluster]:
    with LocalCluster(nodes=1, env=_GIVE_UP_FAST) as c:
        yield c


@pytest.fixture(scope="module")
def nested3() -> Iterator[LocalCluster]:
    with LocalCluster(nodes=3, env=_GIVE_UP_FAST) as c:
        yield c


@dataclass
class Placed:
    """A Group and the objects it holds, placed on chosen nodes."""

    client: crucial.Client
    ring: HashRing
    group_key: str
    counter_key: str
    tally_key: str


@pytest.fixture(
    params=[
        "one_node",
        "same_node_of_three",
        "other_nodes_of_three",
    ]
)
def placed(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, key: str) -> Iterator[Placed]:
    cluster = request.getfixturevalue("nested1" if request.param == "one_node" else "nested3")
    with _use(cluster, monkeypatch) as client:
        ring = HashRing(client.nodes)
        home = ring.owner(Group._type_name, key)
        if request.param == "other_nodes_of_three":
            others = [n for n in ring.nodes if n != home]
            counter_key = _key_on(ring, crucial.AtomicInt._type_name, lambda n: n == others[0], key)
            tally_key = _key_on(ring, Tally._type_name, lambda n: n == others[1], key)
        else:
            counter_key = _key_on(ring, crucial.AtomicInt._type_name, lambda n: n == home, key)
            tally_key = _key_on(ring, Tally._type_name, lambda n: n == home, key)
        yield Placed(client, ring, key, counter_key, tally_key)


def test_nested_calls(placed: Placed) -> None:
    counter = crucial.AtomicInt(5, key=placed.counter_key)
    tally = Tally(0, key=placed.tally_key)
    group = Group(counter, tally, key=placed.group_key)
    assert group.bump_all() == (6, 10)
    assert group.bump_all() == (7, 20)
    assert counter.get() == 7  # the node called the very objects this process sees
    assert tally.get() == 20
    # the held proxies come back to this process as references that work here
    c2, t2 = group.members()
    assert (c2, t2) == (counter, tally)
    assert type(t2) is Tally  # this module's proxy class, not a copy
    assert c2.increment_and_get() == 8


def test_nested_calls_create_lazily(placed: Placed) -> None:
    # the inner objects do not exist yet: the nested call carries their constructor arguments
    group = Group(crucial.AtomicInt(41, key=placed.counter_key), Tally(1, key=placed.tally_key), key=placed.group_key)
    assert group.bump_all() == (42, 11)
    assert Tally.attach(placed.tally_key).get() == 11


def test_nested_call_errors_propagate(placed: Placed) -> None:
    group = Group(crucial.AtomicInt(key=placed.counter_key), Tally(key=placed.tally_key), key=placed.group_key)
    with pytest.raises(ValueError, match="inner boom") as info:
        group.inner_fail("inner boom")
    assert isinstance(info.value.__cause__, crucial.RemoteTraceback)
    assert group.inner_fail_caught("soft") == "caught soft"  # the outer method may handle it
    missing = f"{placed.counter_key}-missing"
    with pytest.raises(crucial.ObjectNotFoundError) as nf:
        group.call_missing(missing)
    assert nf.value.key == missing
    assert group.calls_made() == 2  # the group is still there, with the state its methods left
    assert group.bump_all() == (1, 10)


def test_nested_wait_on_another_node_does_not_block_the_caller_node(
    nested3: LocalCluster, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _use(nested3, monkeypatch) as client:
        ring = HashRing(client.nodes)
        relay_home = ring.owner(Relay._type_name, key)
        gate_key = _key_on(ring, Gate._type_name, lambda n: n != relay_home, key)
        bystander_key = _key_on(ring, Tally._type_name, lambda n: n == relay_home, key)
        gate = Gate(key=gate_key)
        relay = Relay(gate, key=key)
        bystander = Tally(key=bystander_key)
        bystander.bump()
        waiter = _Bg(relay.pass_through)
        try:
            assert gate.await_arrived(1, 10)  # the nested call is now parked on the gate's node
            # the relay's node keeps serving its other objects meanwhile
            quick = crucial.Client(nested3.addresses, nested3.config(call_timeout=3, connect_timeout=3, retries=0))
            try:
                assert quick.call(Tally._type_name, bystander_key, "bump") == 2
            finally:
                quick.close()
            assert waiter.thread.is_alive()
        finally:
            gate.open_gate()
            assert waiter.result() == "passed"


@pytest.mark.parametrize(
    "where",
    ["one_node", "other_node_of_three"],
)
def test_member_object_created_on_the_node(
    where: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    cluster = request.getfixturevalue("nested1" if where == "one_node" else "nested3")
    with _use(cluster, monkeypatch) as client:
        ring = HashRing(client.nodes)
        home = ring.owner(Owner._type_name, key)
        member_key = _key_on(ring, crucial.AtomicInt._type_name, lambda n: n != home or len(ring.nodes) == 1, key)
        owner = Owner(member_key, key=key)
        assert owner.bump() == 101
        assert crucial.AtomicInt.attach(member_key).get() == 101  # in this cluster, not elsewhere


def test_method_returns_a_proxy_made_on_the_node(nested1: LocalCluster, key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with _use(nested1, monkeypatch):
        made = Owner(f"{key}-m", key=key).make(f"{key}-made", 9)
        assert made.key == f"{key}-made"
        assert made.increment_and_get() == 10  # reaches this cluster
        assert made._seeds == nested1.addresses


# -- monitor-style blocking in user methods ------------------------------------------------


def test_waiting_method_is_woken_by_another_call(dso: LocalCluster, key: str) -> None:
    box = Mailbox(key=key)
    consumer = _Bg(lambda: box.take(30))
    assert box.await_waiting(1, 10)  # the consumer is parked inside take() on the node
    assert consumer.thread.is_alive()
    assert box.size() == 0  # the object serves others while a caller waits
    assert box.put("hello") == 1
    assert consumer.result() == "hello"
    assert box.size() == 0


def test_waiters_wake_oldest_first(dso: LocalCluster, key: str) -> None:
    box = Mailbox(key=key)
    first = _Bg(lambda: box.take(30))
    assert box.await_waiting(1, 10)
    second = _Bg(lambda: box.take(30))
    assert box.await_waiting(2, 10)
    box.put("a")
    assert first.result() == "a"
    assert second.thread.is_alive()
    box.put("b")
    assert second.result() == "b"


def test_wait_timeout_returns_false(dso: LocalCluster, key: str) -> None:
    box = Mailbox(key=key)
    t0 = time.monotonic()
    assert box.take(0.3) is None
    assert 0.28 <= time.monotonic() - t0 < 10
    assert box.take(0) is None  # no wait at all
    box.put(1)
    assert box.take(0) == 1  # a true predicate never waits


def test_santa_claus_groups_and_gates(dso: LocalCluster, key: str) -> None:
    room = Room(3, key=key)
    names = [f"elf{i}" for i in range(6)]
    elves = [_Bg(lambda name=name: room.join(name, 30)) for name in names]
    assert room.await_at_gate(6, 20)  # two groups formed, everyone waits at a gate
    assert all(e.thread.is_alive() for e in elves)  # nobody passes before Santa opens
    groups = [room.next_group(10), room.next_group(10)]
    joined = {name: e.result() for name, e in zip(names, elves, strict=True)}
    assert [len(g) for g in groups] == [3, 3]
    assert sorted(groups[0] + groups[1]) == names
    for idx, members in enumerate(groups):
        assert all(joined[m] == idx for m in members)
    with pytest.raises(TimeoutError, match="no full group"):
        room.next_group(0.1)


# -- exceptions -----------------------------------------------------------------------------


def test_user_exception_comes_back_with_its_type_and_traceback(dso: LocalCluster, key: str) -> None:
    acct = Account(10, key=key)
    with pytest.raises(InsufficientFunds) as info:
        acct.withdraw(25)
    exc = info.value
    assert type(exc) is InsufficientFunds  # the very class of this module
    assert (exc.wanted, exc.balance) == (25, 10)
    cause = exc.__cause__
    assert isinstance(cause, crucial.RemoteTraceback)
    assert "withdraw" in str(cause) and "on node" in str(cause)
    # the object keeps the state the method left before raising
    assert acct.history() == [("withdraw", 25)]
    assert acct.withdraw(4) == 6


def test_builtin_exception_from_user_method(dso: LocalCluster, key: str) -> None:
    acct = Account(1, key=key)
    with pytest.raises(KeyError, match="zz") as info:
        acct.lookup("zz")
    assert isinstance(info.value.__cause__, crucial.RemoteTraceback)
    assert acct.lookup("a") == 1


def test_unknown_and_private_methods(dso: LocalCluster, key: str) -> None:
    acct = Account(1, key=key)
    acct.info()
    client = _default.default_client()
    with pytest.raises(crucial.UnknownMethodError, match="nope"):
        client.call(Account._type_name, key, "nope", cls=Account._user_class)
    with pytest.raises(crucial.UnknownMethodError, match="private"):
        client.call(Account._type_name, key, "__init__", (5,), cls=Account._user_class)
    assert acct.info() == ("nobody", 1)


@crucial.shared
class SelfCaller:
    """Holds a proxy to itself: calling it from a method would wait forever."""

    def __init__(self) -> None:
        self.me: Any = None

    def remember(self, me: Any) -> None:
        self.me = me

    def ping(self) -> str:
        return "pong"

    def call_myself(self) -> str:
        return str(self.me.ping())


def test_a_method_calling_its_own_object_gets_a_clear_error(dso: LocalCluster, key: str) -> None:
    obj = SelfCaller(key=key)
    obj.remember(obj)
    with pytest.raises(crucial.ObjectError, match="its own object"):
        obj.call_myself()
    assert obj.ping() == "pong"  # the object was left usable


def longest(old: str, new: str) -> str:
    """A merge function of this test module, which no node can import."""
    return new if len(new) > len(old) else old


def test_functions_of_local_modules_travel_by_value(dso: LocalCluster, key: str) -> None:
    # cloudpickle would send `longest` by reference (module test_shared), and the node
    # would fail with ModuleNotFoundError: its module must travel by value too
    d = crucial.Dict(key=key)
    d.merge_all({"a": "xx", "b": "y"}, longest)
    d.merge_all({"a": "x", "b": "yyy"}, fn=longest)
    assert d.copy() == {"a": "xx", "b": "yyy"}
    ref = crucial.AtomicReference("ab", key=key)
    assert ref.update_and_get(str.upper) == "AB"  # a builtin still goes by reference


def test_a_class_attribute_proxy_follows_the_default_cluster(cluster: LocalCluster, key: str) -> None:
    """A warm worker may serve another cluster next: its class-level proxies must go there too."""

    class Job:
        hits = Tally(100, key=key)

    with LocalCluster(nodes=1) as other:
        try:
            crucial.connect(cluster.dso)
            assert Job.hits.bump() == 101
            _default.reset_clients()
            crucial.connect(other.dso)
            assert Job.hits.bump() == 101  # created on the new default cluster, from its arguments
            assert Job.hits.bump() == 102
            _default.reset_clients()
            crucial.connect(cluster.dso)
            assert Job.hits.get() == 101  # the first cluster's object was left alone
            assert Job.hits.delete()
        finally:
            _default.reset_clients()
