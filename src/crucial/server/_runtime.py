"""The object table of one node: creation, dispatch and monitor scheduling.

Pure logic -- no sockets, no asyncio.  The node's I/O layer hands it calls
and a way to set timers; it hands back results through callbacks.  That is
what lets the scheduling rules below be tested without a server.

Rules, per object (a :class:`Cell`):

* calls run one at a time, in the order they were submitted;
* a call that waits (:func:`~crucial.objects._monitor.wait_until`) releases
  the object; after every step of any call on that object the parked
  waiters' predicates are re-checked, oldest first, before queued calls run;
* a call that suspends on a nested call keeps the object held; later calls
  queue behind it;
* a waiter whose client vanished is resumed with
  :class:`~crucial.exceptions.CallCancelledError` thrown in.

Calls on different objects share nothing but the event-loop thread.
"""

from __future__ import annotations

import traceback
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

from greenlet import GreenletExit, getcurrent

from .. import protocol as P
from ..exceptions import (
    CallCancelledError,
    ObjectCreationError,
    ObjectNotFoundError,
    UnknownMethodError,
    UnknownTypeError,
)
from ..objects._monitor import Caller, CallGreenlet, Suspend, Wait, inline
from ..objects._threadlike import adopt

__all__ = ["Done", "Invocation", "ObjectTable", "TimerHandle", "blocked_report"]

Ref = tuple[str, str]
# on_done(ok, value_or_exception, traceback_text)
Done = Callable[[bool, Any, str], None]


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Invocation:
    """One call on one object, from submission to its result."""

    __slots__ = (
        "args",
        "caller",
        "cell",
        "expired",
        "finished",
        "fn",
        "g",
        "kwargs",
        "method",
        "on_done",
        "output",
        "pending_exc",
        "timer",
    )

    def __init__(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any] | None, caller: Caller, on_done: Done) -> None:
        self.method = method
        self.args = args
        self.kwargs = kwargs or {}
        self.caller = caller
        self.on_done = on_done
        self.cell: Cell | None = None
        self.fn: Callable[..., Any] | None = None  # the bound method, resolved once when submitted
        self.g: CallGreenlet | None = None
        self.timer: TimerHandle | None = None
        self.finished = False
        self.expired = False  # its wait timed out; woken as soon as the object is free
        self.pending_exc: BaseException | None = None  # thrown in as soon as the object is free
        self.output: Any = None  # where what it prints goes (server._output.CallOutput), if anywhere


class Cell:
    """One hosted object and the calls waiting for it."""

    __slots__ = ("alive", "dedup", "flagged", "held", "obj", "placed", "queue", "quiet", "ref", "repl", "running", "waiters")

    def __init__(self, ref: Ref, obj: Any) -> None:
        self.ref = ref
        self.obj = obj
        self.repl: Any = None  # a persistent object's replication state (server._replica.ReplState)
        # replies of calls on this object, kept for replays: they travel with the object
        self.dedup: dict[tuple[str, int], tuple[int, bytes]] | None = None
        self.placed = 0  # the view epoch in which this node checked it is the object's primary
        self.queue: deque[Invocation] = deque()
        self.waiters: list[tuple[Invocation, Callable[[], bool]]] = []
        self.held: Invocation | None = None  # suspended on a nested call
        self.running = False  # the scheduler is inside this cell right now
        self.quiet = False  # the last step parked quietly: skip re-checking the waiters once
        self.flagged = 0  # waiters cancelled or timed out, to be woken even after a quiet step
        self.alive = True


def _format_tb(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


class ObjectTable:
    """All objects of one node, and the scheduler that runs calls on them."""

    def __init__(
        self,
        types: dict[str, type],
        call_later: Callable[[float, Callable[[], None]], TimerHandle],
        call_soon: Callable[[Callable[[], None]], Any],
        inline: frozenset[str] = frozenset(),
    ) -> None:
        self.types = types
        self.cells: dict[Ref, Cell] = {}
        self._call_later = call_later
        self._call_soon = call_soon
        # client id -> cells whose object wants to hear when that client is gone
        self._watch: dict[str, set[Cell]] = {}
        self._idle: list[CallGreenlet] = []  # parked worker greenlets, reused
        # types whose methods mark what waits (@waits): the others run inline
        self._builtin = inline
        self._inline_ok: dict[tuple[type, str], bool] = {}
        # the call running now, and how many steps ran: a watchdog thread reads both (no clock on the hot path)
        self.current: Invocation | _Now | None = None  # what runs now: the watchdog and print() look
        self.steps = 0

    # -- lifecycle of objects -------------------------------------------------

    def create(self, type_name: str, key: str, args: tuple[Any, ...], kwargs: dict[str, Any], force: bool) -> Cell:
        ref = (type_name, key)
        cell = self.cells.get(ref)
        if cell is not None and not force:
            check = getattr(cell.obj, "_crucial_same_args", None)
            mismatch = check(args, kwargs) if check is not None else None
            if mismatch:
                raise ObjectCreationError(f"{type_name} {key!r}: {mismatch}", type_name, key)
            return cell
        cls = self.types.get(type_name)
        if cls is None:
            raise UnknownTypeError(f"unknown shared type {type_name!r} (key {key!r})", type_name, key)
        try:
            obj = adopt(cls(*args, **kwargs))  # threading locks/conditions become node monitors
        except Exception as exc:
            raise ObjectCreationError(
                f"creating {type_name} {key!r} failed: {type(exc).__name__}: {exc}", type_name, key
            ) from exc
        if cell is not None:
            self._retire(cell, f"{type_name} {key!r} was replaced (force_new)")
        cell = self.cells[ref] = Cell(ref, obj)
        return cell

    def install(self, type_name: str, key: str, obj: Any) -> Cell:
        """Host ``obj`` (a replica's or a handed-over state) under this reference, replacing any copy."""
        ref = (type_name, key)
        old = self.cells.get(ref)
        if old is not None:
            self._retire(old, f"{type_name} {key!r} was replaced by its replicated state")
        cell = self.cells[ref] = Cell(ref, obj)
        return cell

    def delete(self, type_name: str, key: str) -> bool:
        cell = self.cells.pop((type_name, key), None)
        if cell is None:
            return False
        self._retire(cell, f"{type_name} {key!r} was deleted")
        return True

    def _retire(self, cell: Cell, why: str) -> None:
        cell.alive = False
        type_name, key = cell.ref
        for inv, _ in list(cell.waiters):
            self._throw(cell, inv, ObjectNotFoundError(why, type_name, key))
        cell.waiters.clear()
        while cell.queue:
            inv = cell.queue.popleft()
            self._finish(inv, False, ObjectNotFoundError(why, type_name, key), "")
        for cells in self._watch.values():
            cells.discard(cell)

    # -- calls ----------------------------------------------------------------

    def lookup(self, type_name: str, key: str, method: str) -> Cell:
        cell = self.cells.get((type_name, key))
        if cell is None:
            if type_name not in self.types:
                raise UnknownTypeError(f"unknown shared type {type_name!r} (key {key!r})", type_name, key)
            raise ObjectNotFoundError(
                f"no {type_name} with key {key!r} (never created, or deleted); calling {method!r}", type_name, key
            )
        return cell

    def submit(self, cell: Cell, inv: Invocation) -> None:
        """Queue ``inv`` on ``cell`` and run what can run."""
        inv.fn = _resolve(cell, inv.method)
        watch = getattr(cell.obj, "_crucial_client_gone", None)
        if watch is not None:
            self._watch.setdefault(inv.caller.client_id, set()).add(cell)
        self._enqueue(cell, inv)

    def run_now(
        self, cell: Cell, method: str, args: tuple[Any, ...], kwargs: dict[str, Any] | None, caller: Caller, output: Any
    ) -> tuple[bool, Any, str] | None:
        """The fast path of :meth:`submit`: a built-in method that never waits, on a free object, runs at once.

        Returns ``(ok, value, traceback)``, or None when the call must take
        the queue (the object is busy, the method may wait or the object
        watches its clients): then nothing ran.  Most calls of built-in
        objects take this path, so it makes no :class:`Invocation`.  The
        caller answers the call, then calls :meth:`ran` (as :meth:`submit`
        answers a call before it wakes the waiters).
        """
        if cell.running or cell.held is not None or cell.queue or self._inline_ok.get((type(cell.obj), method)) is False:
            return None
        fn = _resolve(cell, method)
        if not self._inline(cell, method, fn) or getattr(cell.obj, "_crucial_client_gone", None) is not None:
            return None
        return self._call_inline(cell, _Now(cell, method, output), fn, args, kwargs or {}, caller)

    def ran(self, cell: Cell) -> None:
        """After :meth:`run_now`'s call was answered: wake the waiters what it changed lets go."""
        if cell.waiters:
            self._drain(cell)

    def _enqueue(self, cell: Cell, inv: Invocation) -> None:
        """Run ``inv`` now if the object is free and nobody is ahead of it, else queue it."""
        inv.cell = cell
        if cell.running or cell.held is not None or cell.queue:
            cell.queue.append(inv)
            if not cell.running and cell.held is None:
                self._drain(cell)
            return
        self._start(cell, inv)
        self._drain(cell)

    def cancel(self, inv: Invocation) -> None:
        """The caller of ``inv`` is gone: stop waiting for it."""
        cell = inv.cell
        if inv.finished or cell is None:
            return
        if inv in cell.queue:
            cell.queue.remove(inv)
            inv.finished = True
            return
        if any(w is inv for w, _ in cell.waiters):
            # never run the waiter's cleanup inside a call that holds the object
            self._flag(cell, inv)
            inv.pending_exc = CallCancelledError("the caller disconnected")
            self._drain(cell)

    def client_gone(self, client_id: str) -> None:
        """Every connection of ``client_id`` closed: let objects release what it held."""
        for cell in self._watch.pop(client_id, ()):
            if not cell.alive:
                continue
            inv = Invocation("_crucial_client_gone", (client_id,), None, Caller(client_id, 0), _ignore)
            inv.fn = cell.obj._crucial_client_gone
            self._enqueue(cell, inv)

    # -- the scheduler ----------------------------------------------------------

    def _inline(self, cell: Cell, method: str, fn: Callable[..., Any]) -> bool:
        """Built-in methods that never wait run without a greenlet (the fast path)."""
        key = (type(cell.obj), method)
        known = self._inline_ok.get(key)
        if known is None:
            known = self._inline_ok[key] = cell.ref[0] in self._builtin and not getattr(fn, "_crucial_blocking", False)
        return known

    def _start(self, cell: Cell, inv: Invocation) -> None:
        fn = inv.fn
        assert fn is not None
        if self._inline(cell, inv.method, fn):
            self._finish(inv, *self._call_inline(cell, inv, fn, inv.args, inv.kwargs, inv.caller))
            return
        # reuse a parked worker greenlet: creating one costs ~10x a switch
        g = self._idle.pop() if self._idle else CallGreenlet(_worker)
        g.caller = inv.caller
        g.ref = cell.ref
        inv.g = g
        g.job = (fn, inv.args, inv.kwargs)
        self._step(cell, inv, g.switch, ())

    def _call_inline(
        self,
        cell: Cell,
        current: Invocation | _Now,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        caller: Caller,
    ) -> tuple[bool, Any, str]:
        """Run ``fn`` on the node's thread, without a greenlet: ``(ok, value or exception, traceback)``."""
        cell.running = True
        inline.caller = caller
        self.current = current
        self.steps += 1
        try:
            return True, fn(*args, **kwargs), ""
        except BaseException as exc:  # whatever a method raises is its result
            return False, exc, _format_tb(exc)
        finally:
            self.current = None
            inline.caller = None
            cell.running = False

    def _step(
        self, cell: Cell, inv: Invocation, switch: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any] | None = None
    ) -> None:
        cell.running = True
        self.current = inv
        self.steps += 1
        try:
            out = switch(*args)
        except BaseException as exc:  # the worker itself died (GreenletExit): report it
            self._finish(inv, False, exc, _format_tb(exc))
            return
        finally:
            self.current = None
            cell.running = False
        g = inv.g
        assert g is not None
        if out is _DONE:
            out, g.outcome = g.outcome, None
        kind = type(out)
        if kind is _Returned or kind is _Raised:
            inv.g = None
            if len(self._idle) < _MAX_IDLE:
                g.caller = _NOBODY
                self._idle.append(g)
            if kind is _Returned:
                self._finish(inv, True, out.value, "")
            else:
                self._finish(inv, False, out.exc, _format_tb(out.exc))
        elif kind is Wait:
            cell.waiters.append((inv, out.predicate))
            cell.quiet = out.quiet
            if out.timeout is not None:
                inv.timer = self._call_later(out.timeout, lambda: self._expire(cell, inv))
        elif kind is Suspend:
            cell.held = inv
            out.start(lambda ok, value: self._call_soon(lambda: self._resume_held(cell, inv, ok, value)))
        else:  # a method switched out with something we do not know: a bug in it
            err = RuntimeError(f"method {inv.method!r} switched greenlets unexpectedly")
            g.throw(err)  # let it unwind; the result is the error
            self._finish(inv, False, err, "")

    def _drain(self, cell: Cell) -> None:
        """Wake satisfied waiters (oldest first), then run queued calls."""
        while cell.held is None and not cell.running:
            woke = False
            quiet, cell.quiet = cell.quiet, False
            # a quiet step promised to satisfy nobody: only cancelled and timed-out waiters are looked at
            # (none, most often: a barrier's arrivals then cost no scan of the parties already waiting)
            for i, (inv, pred) in enumerate(cell.waiters if cell.flagged or not quiet else ()):
                if quiet and inv.pending_exc is None and not inv.expired:
                    continue
                if inv.pending_exc is not None:
                    self._unpark(cell, i)
                    exc, inv.pending_exc = inv.pending_exc, None
                    self._throw(cell, inv, exc)
                    woke = True
                    break
                try:
                    ready = pred()
                except BaseException as exc:
                    self._unpark(cell, i)
                    self._throw(cell, inv, exc)
                    woke = True
                    break
                if ready or inv.expired:
                    self._unpark(cell, i)
                    inv.expired = False
                    self._wake(cell, inv, bool(ready))
                    woke = True
                    break
            if woke:
                continue
            if not cell.queue:
                return
            inv = cell.queue.popleft()
            if inv.finished:
                continue
            self._start(cell, inv)

    @staticmethod
    def _flag(cell: Cell, inv: Invocation) -> None:
        """Count waiter ``inv`` as cancelled or timed out (once), before its flag is set."""
        if inv.pending_exc is None and not inv.expired:
            cell.flagged += 1

    @staticmethod
    def _unpark(cell: Cell, i: int) -> None:
        """Take waiter ``i`` off ``cell`` (before its flags are cleared: they are counted)."""
        inv = cell.waiters.pop(i)[0]
        if inv.pending_exc is not None or inv.expired:
            cell.flagged -= 1

    def _wake(self, cell: Cell, inv: Invocation, value: bool) -> None:
        if inv.timer is not None:
            inv.timer.cancel()
            inv.timer = None
        assert inv.g is not None
        self._step(cell, inv, inv.g.switch, (value,))

    def _throw(self, cell: Cell, inv: Invocation, exc: BaseException) -> None:
        if inv.timer is not None:
            inv.timer.cancel()
            inv.timer = None
        assert inv.g is not None
        self._step(cell, inv, inv.g.throw, (exc,))

    def _expire(self, cell: Cell, inv: Invocation) -> None:
        inv.timer = None
        if any(w is inv for w, _ in cell.waiters):
            self._flag(cell, inv)
            inv.expired = True
            self._drain(cell)  # a no-op while a call holds the object: _resume_held drains

    def _resume_held(self, cell: Cell, inv: Invocation, ok: bool, value: Any) -> None:
        cell.held = None
        assert inv.g is not None
        self._step(cell, inv, inv.g.switch, ((ok, value),))
        self._drain(cell)

    def _finish(self, inv: Invocation, ok: bool, value: Any, tb: str) -> None:
        if inv.finished:
            return
        inv.finished = True
        inv.on_done(ok, value, tb)


class _Now(NamedTuple):
    """What :meth:`ObjectTable.run_now` is running, for the watchdog and print()."""

    cell: Cell
    method: str
    output: Any


class _Returned(NamedTuple):
    value: Any


class _Raised(NamedTuple):
    exc: BaseException


_MAX_IDLE = 256
_DONE = object()  # what a worker switches out with when its job has finished
_NOBODY = Caller("", 0)


def blocked_report(current: tuple[float, Ref, str] | None, now: float, threshold: float) -> str | None:
    """What to log when one call has held the node's thread for ``threshold`` seconds or more, else None.

    Calls run one at a time on the node's only thread, so a method that
    blocks (``time.sleep``, a lock or queue it made outside ``__init__``,
    slow I/O) stops every object of the node; say which one, while it does.
    """
    if current is None or now - current[0] < threshold:
        return None
    since, (type_name, key), method = current
    return (
        f"{type_name}.{method}() on {key!r} has held this node for {now - since:.1f} s: no other call runs meanwhile "
        "(methods run one at a time on the node's thread). To wait, use crucial.wait_until or a threading.Condition "
        "made in __init__, not a blocking call"
    )


def _worker() -> None:
    """Body of a worker greenlet: run one job, hand back its outcome, wait for the next.

    Jobs and outcomes travel as attributes, never as switch arguments or
    locals that outlive the call: a parked worker must not keep a call's
    arguments, result or traceback (and so its object) alive.
    """
    me = getcurrent()
    while True:
        fn, args, kwargs = me.job
        me.job = None
        try:
            out: _Returned | _Raised = _Returned(fn(*args, **kwargs))
        except GreenletExit:
            raise
        except BaseException as exc:  # whatever a method raises is its result, even SystemExit
            out = _Raised(exc)
        del fn, args, kwargs
        me.outcome = out
        del out
        me.parent.switch(_DONE)


def _ignore(ok: bool, value: Any, tb: str) -> None:
    return None


def _resolve(cell: Cell, method: str) -> Callable[..., Any]:
    type_name, key = cell.ref
    if method in _ATTRIBUTE_OPS:
        return _attribute_op(cell, method)
    if not method or method.startswith("_"):
        raise UnknownMethodError(
            f"{type_name}.{method or '<empty>'} is private and cannot be called remotely (key {key!r})", type_name, key
        )
    fn = getattr(cell.obj, method, None)
    if fn is None or not callable(fn):
        public = sorted(n for n in dir(type(cell.obj)) if not n.startswith("_") and callable(getattr(type(cell.obj), n, None)))
        raise UnknownMethodError(
            f"{type_name} has no method {method!r} (key {key!r}); it has: {', '.join(public)}", type_name, key
        )
    return fn


_ATTRIBUTE_OPS: dict[str, Callable[..., Any]] = {P.GETATTR: getattr, P.SETATTR: setattr, P.DELATTR: delattr}


def _attribute_op(cell: Cell, method: str) -> Callable[..., Any]:
    """``getattr``/``setattr``/``delattr`` on the object, for its public data attributes (``proxy.value = 5``)."""
    type_name, key = cell.ref
    op = _ATTRIBUTE_OPS[method]
    obj = cell.obj

    def access(name: str, *value: Any) -> Any:
        if not isinstance(name, str) or not name or name.startswith("_"):
            raise UnknownMethodError(
                f"{type_name}.{name} is private: only public attributes can be read or set remotely (key {key!r})", type_name, key
            )
        return op(obj, name, *value)

    return access
