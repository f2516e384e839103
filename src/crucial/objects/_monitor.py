"""Monitor semantics for shared objects, without a thread per waiter.

On a node every method call runs in its own greenlet.  A method that must
wait calls :func:`wait_until`; the greenlet switches back to the node's event
loop, the object is released to other calls (as ``Condition.wait`` releases
its lock), and the node re-checks the predicate after every later call on the
same object.  When it holds -- or the timeout expires -- the method resumes
where it stopped, holding the object again.

Outside a node (the *sequential reference model* used in tests) there is
nobody to wake us, so a wait whose predicate is false raises
:class:`~crucial.exceptions.WouldBlockError` instead of blocking forever.

This module is pure: it knows greenlets, not sockets or asyncio.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

from greenlet import getcurrent, greenlet

from ..exceptions import WouldBlockError

__all__ = [
    "CallGreenlet",
    "Caller",
    "Suspend",
    "Wait",
    "current_caller",
    "has_waiting_methods",
    "is_readonly",
    "readonly",
    "suspend",
    "wait_until",
    "waits",
]


class Caller(NamedTuple):
    """Who is calling: the client process (``client_id``) and its thread."""

    client_id: str
    thread_id: int


class Wait(NamedTuple):
    """What a waiting method hands to the node: the predicate and timeout.

    ``quiet`` says the caller changed nothing that another waiter waits for,
    so the node need not re-check the others' predicates (a barrier arrival).
    """

    predicate: Callable[[], bool]
    timeout: float | None
    quiet: bool = False


class Suspend(NamedTuple):
    """A method that needs another object's reply (a nested call) hands this to
    the node: ``start(resume)`` begins the operation and ``resume(ok, value)``
    continues the method.  The object stays held meanwhile."""

    start: Callable[[Callable[[bool, Any], None]], None]


class CallGreenlet(greenlet):  # type: ignore[misc]
    """The greenlet a node runs one call in; it remembers the caller."""

    caller: Caller = Caller("", 0)
    ref: tuple[str, str] = ("", "")  # the object whose call runs in it
    job: tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]] | None = None  # set by the table, taken by the worker
    outcome: Any = None  # the worker's last result, taken by the table at once


class _Inline:
    """The caller of a method the node runs inline (without a greenlet)."""

    caller: Caller | None = None


inline = _Inline()


def current_caller() -> Caller:
    """The caller of the method running now (the local thread outside a node)."""
    g = getcurrent()
    if isinstance(g, CallGreenlet):
        return g.caller
    if inline.caller is not None:
        return inline.caller
    return Caller("local", threading.get_ident())


F = TypeVar("F", bound=Callable[..., Any])


def waits(fn: F) -> F:
    """Mark a method of a built-in type that may wait (``wait_until``).

    A node runs the other methods of built-in types inline, without a
    greenlet -- the fast path.  User classes always get a greenlet.
    """
    fn._crucial_blocking = True  # type: ignore[attr-defined]
    return fn


def readonly(fn: F) -> F:
    """Mark a method of a ``@crucial.shared`` class that changes nothing.

    Calls of such methods through a proxy asking for sequential reads
    (``proxy.sequential()``) may be answered by any replica of a persistent
    object instead of its primary (``docs/replication.md``, "Degradable
    reads").  The method must not wait and must not call other objects.
    """
    fn._crucial_readonly = True  # type: ignore[attr-defined]
    return fn


def is_readonly(cls: type, name: str) -> bool:
    """Whether method ``name`` of node-side class ``cls`` changes nothing (built-ins list theirs)."""
    if name in getattr(cls, "_crucial_readonly_methods", ()):
        return True
    return bool(getattr(getattr(cls, name, None), "_crucial_readonly", False))


def has_waiting_methods(cls: type) -> bool:
    """Whether a built-in type has methods that wait: a synchronization object, never replicated."""
    return any(getattr(getattr(cls, name, None), "_crucial_blocking", False) for name in dir(cls) if not name.startswith("_"))


def in_node_call() -> bool:
    return isinstance(getcurrent(), CallGreenlet)


def wait_until(predicate: Callable[[], bool], timeout: float | None = None, *, quiet: bool = False) -> bool:
    """Wait until ``predicate()`` is true, releasing the object meanwhile.

    Returns the predicate's last value: ``True``, or ``False`` when
    ``timeout`` seconds passed first (``Condition.wait_for`` semantics).
    ``quiet=True`` promises that this call changed nothing another waiter
    of the object waits for, which spares the node re-checking them all (a
    barrier with many parties).  Raises
    :class:`~crucial.exceptions.CallCancelledError` when the caller
    disconnects; a method that must undo something then catches it.
    """
    if predicate():
        return True
    if timeout is not None and timeout <= 0:
        return False
    g = getcurrent()
    if not isinstance(g, CallGreenlet):
        raise WouldBlockError("the sequential model cannot wait for a predicate that is false")
    return bool(g.parent.switch(Wait(predicate, timeout, quiet)))


def suspend(start: Callable[[Callable[[bool, Any], None]], None]) -> Any:
    """Run an asynchronous operation from inside a node call and return its value."""
    g = getcurrent()
    if not isinstance(g, CallGreenlet):
        raise WouldBlockError("suspend() only works inside a call on a node")
    ok, value = g.parent.switch(Suspend(start))
    if not ok:
        raise value
    return value
