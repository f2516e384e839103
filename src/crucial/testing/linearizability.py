"""Record concurrent histories and check them for linearizability.

Why: a DSO node promises that every object behaves as if its calls ran one
at a time, each at some instant between its invocation and its response.
Unit tests of the ``*State`` classes cannot see a node that answers from a
stale copy, applies a retried call twice, or reorders calls; a recorded
history from many real client processes, checked against the sequential
model, can.

How::

    process A   [--- inc() -> 1 ---]        [-- get() -> 2 --]
    process B         [------ inc() -> 2 ------]
                 │                                           │
                 ▼  History.operations() (picklable, merged) ▼
           check(history, AtomicIntState)  ──►  Result(ok=True, linearization=[...])

* :class:`History` records ``(process, object, method, args, invoke,
  response, result | exception)``.  Times come from :func:`time.monotonic_ns`
  (``CLOCK_MONOTONIC``: one clock for every process on a Linux machine), so
  histories recorded in several processes merge by concatenation.  An
  operation whose outcome is unknown (connection lost, timeout) stays
  *pending*: it may have taken effect or not.
* :func:`check` splits the history per object (linearizability is
  compositional, Herlihy & Wing 1990) and runs the Wing & Gong search with
  Lowe's memoisation (Lowe, *Testing for linearizability*, 2017; the same
  algorithm as Knossos and Porcupine): walk the invocations and responses in
  time order; at an invocation, try to linearize that operation now by
  applying it to a copy of the model and comparing results (``==``;
  exceptions by type); at a response whose operation is not yet linearized,
  backtrack.  A cache of ``(set of linearized operations, model state)``
  prunes every configuration already explored, which turns the exponential
  search into one that is fast on most real histories.  Candidates are tried
  earliest response first.  Pending operations get a
  response at infinity, so they may be linearized anywhere after their
  invocation -- or, equivalently, last, where they change nothing observed.
* The worst case stays exponential, and FIFO queues meet it: every item
  still queued whose enqueue overlapped another's doubles the states to keep
  apart until a dequeue tells them.  Keep queue workloads short-queued (more
  gets than puts), or give :func:`check` a ``timeout``; a verdict of ``None``
  means "ran out of time", never "not linearizable".
* On failure the explanation names the smallest prefix of the history (cut
  after a response) that is already not linearizable, its longest
  linearization and, for every operation that could come next, what the
  model would have answered instead.

The checker is pure: no sockets, no clocks besides the optional budget.
"""

from __future__ import annotations

import copy
import itertools
import os
import pickle
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = [
    "CheckResult",
    "History",
    "ObjectResult",
    "Operation",
    "assert_linearizable",
    "check",
    "error_name",
]

#: a model: the sequential reference object (``AtomicIntState(0)``, …)
Model = Any
#: how to make the initial model: a factory, or factories per object / type name
ModelFactory = Callable[[], Model] | Mapping[Hashable, Callable[[], Model]]


def error_name(exc: BaseException | type[BaseException]) -> str:
    """The name exceptions are compared by: ``module.QualName`` of the type.

    By name, not by identity: a user exception class travels to the node by
    value and comes back as an equal-named but distinct class object.
    """
    t = exc if isinstance(exc, type) else type(exc)
    return f"{t.__module__}.{t.__qualname__}"


@dataclass(frozen=True)
class Operation:
    """One call: who, on what, when, and what came back.

    ``response is None`` means *pending*: the outcome is unknown.  ``error``
    is the :func:`error_name` of the exception it raised, ``None`` if it
    returned ``result``.  Instances pickle, so histories cross processes.
    """

    process: str
    obj: Hashable
    method: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    invoke: int = 0
    response: int | None = None
    result: Any = None
    error: str | None = None
    error_message: str = ""

    @property
    def pending(self) -> bool:
        return self.response is None

    def call_repr(self) -> str:
        parts = [_short(a) for a in self.args] + [f"{k}={_short(v)}" for k, v in self.kwargs.items()]
        return f"{self.method}({', '.join(parts)})"

    def outcome_repr(self) -> str:
        if self.pending:
            return "<pending>"
        if self.error is not None:
            return f"raises {self.error.rpartition('.')[2]}"
        return _short(self.result)

    def __str__(self) -> str:
        return f"{self.process}: {self.call_repr()} -> {self.outcome_repr()}"


def _short(value: Any, limit: int = 60) -> str:
    r = repr(value)
    return r if len(r) <= limit else r[: limit - 3] + "..."


def _default_process() -> str:
    return f"{os.getpid()}/{threading.get_ident()}"


def _object_ref(obj: Any) -> Hashable:
    """What identifies an object in a history: a proxy's ``(type, key)``, else itself."""
    type_name = getattr(obj, "_type_name", None)
    key = getattr(obj, "_key", None)
    if isinstance(type_name, str) and isinstance(key, str):
        return (type_name, key)
    return obj  # type: ignore[no-any-return]


class History:
    """A thread-safe recorder of operations; merge histories with :meth:`extend`.

    Record one call with :meth:`call` (or :meth:`wrap` a proxy), or by hand::

        op = history.invoke(("AtomicInt", "hits"), "get")
        history.ok(op, 5)              # or .fail(op, exc), or leave it pending

    Exceptions in ``indeterminate`` (by default connection loss and
    timeouts) leave the operation pending; any other exception is its outcome.
    """

    def __init__(
        self,
        operations: Iterable[Operation] = (),
        *,
        process: str | None = None,
        indeterminate: tuple[type[BaseException], ...] | None = None,
    ) -> None:
        if indeterminate is None:
            from ..exceptions import CallTimeoutError, ConnectError, ProtocolError

            indeterminate = (ConnectError, CallTimeoutError, ProtocolError, TimeoutError)
        self.process = process
        self.indeterminate = indeterminate
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._done: list[Operation] = list(operations)
        self._open: dict[int, Operation] = {}

    # -- recording ---------------------------------------------------------------

    def invoke(
        self,
        obj: Any,
        method: str,
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        process: str | None = None,
    ) -> int:
        """Record an invocation now; returns a handle for :meth:`ok` / :meth:`fail`."""
        op = Operation(
            process=process or self.process or _default_process(),
            obj=_object_ref(obj),
            method=method,
            args=tuple(args),
            kwargs=dict(kwargs or {}),
            invoke=time.monotonic_ns(),
        )
        handle = next(self._ids)
        with self._lock:
            self._open[handle] = op
        return handle

    def ok(self, handle: int, result: Any) -> None:
        """The operation returned ``result``."""
        now = time.monotonic_ns()
        with self._lock:
            op = self._open.pop(handle)
            self._done.append(replace(op, response=now, result=result))

    def fail(self, handle: int, exc: BaseException) -> None:
        """The operation raised ``exc`` (an outcome of the call, compared by type)."""
        now = time.monotonic_ns()
        with self._lock:
            op = self._open.pop(handle)
            self._done.append(replace(op, response=now, error=error_name(exc), error_message=str(exc)[:200]))

    def call(self, obj: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``obj.method(*args, **kwargs)`` and record it; returns or raises as the call did."""
        fn = getattr(obj, method)
        handle = self.invoke(obj, method, args, kwargs)
        try:
            result = fn(*args, **kwargs)
        except self.indeterminate:
            raise  # outcome unknown: stays pending
        except Exception as exc:
            self.fail(handle, exc)
            raise
        self.ok(handle, result)
        return result

    def wrap(self, obj: Any) -> _Recorded:
        """A stand-in for ``obj`` whose method calls are recorded."""
        return _Recorded(self, obj)

    # -- reading and merging -------------------------------------------------------

    def operations(self) -> list[Operation]:
        """Every operation so far, completed and pending, by invocation time."""
        with self._lock:
            ops = self._done + list(self._open.values())
        return sorted(ops, key=lambda o: o.invoke)

    def extend(self, operations: Iterable[Operation] | History) -> None:
        """Add operations recorded elsewhere (another process, another thread)."""
        ops = operations.operations() if isinstance(operations, History) else list(operations)
        with self._lock:
            self._done.extend(ops)

    @classmethod
    def merge(cls, *parts: Iterable[Operation] | History) -> History:
        h = cls()
        for p in parts:
            h.extend(p)
        return h

    def __len__(self) -> int:
        with self._lock:
            return len(self._done) + len(self._open)

    def __iter__(self) -> Iterator[Operation]:
        return iter(self.operations())

    def __reduce__(self) -> tuple[Any, ...]:
        return (History, (self.operations(),), {"process": self.process})

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.process = state["process"]


class _Recorded:
    __slots__ = ("_history", "_obj")

    def __init__(self, history: History, obj: Any) -> None:
        self._history = history
        self._obj = obj

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args, **kwargs: self._history.call(self._obj, name, *args, **kwargs)


# -- the checker ------------------------------------------------------------------------


@dataclass
class ObjectResult:
    """The verdict for one object's sub-history."""

    obj: Hashable
    #: True: linearizable; False: not; None: the budget ran out first
    ok: bool | None
    operations: list[Operation]
    #: a witness order of the operations linearized (all completed ones when ok)
    linearization: list[Operation] = field(default_factory=list)
    #: when not ok: the smallest failing prefix, cut after this many responses
    prefix: list[Operation] = field(default_factory=list)
    explanation: str = ""


@dataclass
class CheckResult:
    """The verdict for a whole history: ``bool(result)`` is true iff linearizable."""

    ok: bool | None
    objects: dict[Hashable, ObjectResult]

    def __bool__(self) -> bool:
        return self.ok is True

    @property
    def failures(self) -> list[ObjectResult]:
        return [r for r in self.objects.values() if r.ok is not True]

    @property
    def explanation(self) -> str:
        if self.ok:
            n = sum(len(r.operations) for r in self.objects.values())
            return f"linearizable: {n} operations on {len(self.objects)} objects"
        return "\n\n".join(r.explanation for r in self.failures)

    def __str__(self) -> str:
        return self.explanation


class _Budget:
    def __init__(self, timeout: float | None) -> None:
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.steps = 0

    def exhausted(self) -> bool:
        self.steps += 1
        return self.deadline is not None and self.steps % 256 == 0 and time.monotonic() > self.deadline


class _Entry:
    """A node of the doubly linked list of invocations and responses."""

    __slots__ = ("index", "is_call", "match", "next", "prev")

    def __init__(self, index: int, is_call: bool) -> None:
        self.index = index
        self.is_call = is_call
        self.match: _Entry | None = None  # call -> its response
        self.prev: _Entry | None = None
        self.next: _Entry | None = None


def _apply(model: Model, op: Operation, copier: Callable[[Model], Model]) -> tuple[Model, bool]:
    """Apply ``op`` to a copy of ``model``; True if the model's outcome matches the recorded one."""
    m = copier(model)
    try:
        result = getattr(m, op.method)(*op.args, **op.kwargs)
    except Exception as exc:
        return m, op.pending or (op.error is not None and op.error == error_name(exc))
    if op.pending:
        return m, True
    if op.error is not None:
        return m, False
    try:
        return m, bool(result == op.result)
    except Exception:
        return m, False


def _fingerprint_fn(fingerprint: Callable[[Model], Hashable] | None) -> Callable[[Model], Hashable]:
    if fingerprint is not None:
        return fingerprint
    unique = itertools.count()

    def default(model: Model) -> Hashable:
        try:
            return pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            return ("unpicklable", next(unique))  # no memoisation for this state: slower, still sound

    return default


def _priority(op: Operation) -> tuple[float, int]:
    return (float("inf") if op.response is None else op.response, op.invoke)


def _search(
    ops: Sequence[Operation],
    factory: Callable[[], Model],
    copier: Callable[[Model], Model],
    fingerprint: Callable[[Model], Hashable],
    budget: _Budget,
) -> tuple[bool | None, list[int], list[int]]:
    """WGL with memoisation on one object's operations.

    Returns ``(verdict, linearization, deepest)``: the witness order (indices
    into ``ops``) when linearizable, and the longest partial one found.
    """
    # Events in time order; at equal times calls come first, which treats
    # touching operations as concurrent (never a false alarm).
    events: list[tuple[float, int, int]] = []
    for i, op in enumerate(ops):
        events.append((op.invoke, 0, i))
        events.append((float("inf") if op.response is None else op.response, 1, i))
    events.sort()
    # Candidates are tried earliest response first: the operation that must be
    # over soonest is the likeliest to have taken effect first, and a good first
    # guess saves whole subtrees on linearizable histories.
    priority = [_priority(op) for op in ops]
    head = _Entry(-1, False)
    calls: dict[int, _Entry] = {}
    prev = head
    for _, kind, i in events:
        e = _Entry(i, kind == 0)
        if kind == 0:
            calls[i] = e
        else:
            calls[i].match = e
        prev.next, e.prev = e, prev
        prev = e

    def lift(e: _Entry) -> None:
        assert e.prev is not None and e.match is not None and e.match.prev is not None
        e.prev.next = e.next
        if e.next is not None:
            e.next.prev = e.prev
        r = e.match
        r.prev.next = r.next  # type: ignore[union-attr]
        if r.next is not None:
            r.next.prev = r.prev

    def unlift(e: _Entry) -> None:
        r = e.match
        assert r is not None and r.prev is not None and e.prev is not None
        r.prev.next = r
        if r.next is not None:
            r.next.prev = r
        e.prev.next = e
        if e.next is not None:
            e.next.prev = e

    def candidates() -> list[_Entry]:
        """The calls that may be linearized next: those before the first pending response."""
        out = []
        e = head.next
        while e is not None and e.is_call:
            out.append(e)
            e = e.next
        out.sort(key=lambda c: priority[c.index])
        return out

    model = factory()
    linearized = 0
    cache: set[tuple[int, Hashable]] = {(0, fingerprint(model))}
    stack: list[tuple[list[_Entry], int, Model, _Entry]] = []
    deepest: list[int] = []
    cands, pos = candidates(), 0
    while head.next is not None:
        if budget.exhausted():
            return None, [], deepest
        if pos < len(cands):
            entry = cands[pos]
            pos += 1
            new_model, matches = _apply(model, ops[entry.index], copier)
            if not matches:
                continue
            bits = linearized | (1 << entry.index)
            key = (bits, fingerprint(new_model))
            if key in cache:
                continue
            cache.add(key)
            stack.append((cands, pos, model, entry))
            model, linearized = new_model, bits
            lift(entry)
            if len(stack) > len(deepest):
                deepest = [f[3].index for f in stack]
            cands, pos = candidates(), 0
        else:
            # no candidate fits before the first response still due: undo the last choice
            if not stack:
                return False, [], deepest
            cands, pos, model, entry = stack.pop()
            linearized &= ~(1 << entry.index)
            unlift(entry)
    return True, [f[3].index for f in stack], deepest


def _factory_for(model_factory: ModelFactory, obj: Hashable) -> Callable[[], Model]:
    if isinstance(model_factory, Mapping):
        if obj in model_factory:
            return model_factory[obj]
        if isinstance(obj, tuple) and obj and obj[0] in model_factory:
            return model_factory[obj[0]]
        raise KeyError(f"no model for object {obj!r}")
    return model_factory


def _cut(ops: Sequence[Operation], t: int) -> list[Operation]:
    """The history as seen at time ``t``: later invocations dropped, later responses pending."""
    out = []
    for op in ops:
        if op.invoke > t:
            continue
        if op.response is not None and op.response > t:
            op = replace(op, response=None, result=None, error=None, error_message="")
        out.append(op)
    return out


def _state_repr(model: Model) -> str:
    try:
        return _short(vars(model), 200)
    except TypeError:
        return _short(model, 200)


def _explain(
    obj: Hashable,
    all_ops: Sequence[Operation],
    prefix: Sequence[Operation],
    deepest: Sequence[int],
    factory: Callable[[], Model],
    copier: Callable[[Model], Model],
) -> str:
    t0 = min(op.invoke for op in all_ops)
    index = {id(op): i for i, op in enumerate(prefix)}
    lines = [
        f"history of {obj!r} is not linearizable ({len(all_ops)} operations, {len({op.process for op in all_ops})} processes).",
        f"Smallest failing prefix ({len(prefix)} operations; times in µs from the first invocation):",
    ]
    for op in sorted(prefix, key=lambda o: o.invoke):
        end = "        ..." if op.response is None else f"{(op.response - t0) / 1000:10.3f}"
        lines.append(f"  #{index[id(op)]:<3} [{(op.invoke - t0) / 1000:10.3f} ..{end}] {op}")
    model = factory()
    done = set(deepest)
    if deepest:
        lines.append("Longest linearization found:")
        for i in deepest:
            model, _ = _apply(model, prefix[i], copier)
            lines.append(f"  #{i:<3} {prefix[i]}")
    else:
        lines.append("Not even the first operation can be linearized.")
    lines.append(f"  model state then: {_state_repr(model)}")
    remaining = [i for i in range(len(prefix)) if i not in done]
    due = min((t for i in remaining if (t := prefix[i].response) is not None), default=None)
    lines.append("None of the operations that could come next agrees with the model:")
    for i in remaining:
        op = prefix[i]
        if due is not None and op.invoke > due:
            continue
        m = copier(model)
        try:
            got = f"-> {_short(getattr(m, op.method)(*op.args, **op.kwargs))}"
        except Exception as exc:
            got = f"raises {type(exc).__name__}: {_short(str(exc))}"
        lines.append(f"  #{i:<3} {op.call_repr()} recorded {op.outcome_repr()}, model {got}")
    return "\n".join(lines)


def _check_object(
    obj: Hashable,
    ops: list[Operation],
    factory: Callable[[], Model],
    copier: Callable[[Model], Model],
    fingerprint: Callable[[Model], Hashable],
    budget: _Budget,
) -> ObjectResult:
    ops = sorted(ops, key=lambda o: (o.invoke, o.response is None, o.response or 0))
    ok, order, _ = _search(ops, factory, copier, fingerprint, budget)
    if ok is not False:
        return ObjectResult(obj, ok, ops, [ops[i] for i in order])
    # Linearizability is prefix-closed, so the smallest failing cut is found by bisection.
    cuts = sorted({op.response for op in ops if op.response is not None})
    if not cuts:  # cannot happen: pending operations always fit
        return ObjectResult(obj, False, ops, explanation=f"history of {obj!r} is not linearizable")
    lo, hi = 0, len(cuts) - 1  # cut at cuts[hi] fails (it contains every response)
    while lo < hi:
        mid = (lo + hi) // 2
        verdict, _, _ = _search(_cut(ops, cuts[mid]), factory, copier, fingerprint, budget)
        if verdict is False:
            hi = mid
        elif verdict is None:
            break
        else:
            lo = mid + 1
    prefix = _cut(ops, cuts[hi])
    _, _, deepest = _search(prefix, factory, copier, fingerprint, _Budget(None))
    text = _explain(obj, ops, prefix, deepest, factory, copier)
    return ObjectResult(obj, False, ops, [prefix[i] for i in deepest], prefix, text)


def check(
    history: History | Iterable[Operation],
    model_factory: ModelFactory,
    *,
    copier: Callable[[Model], Model] = copy.deepcopy,
    fingerprint: Callable[[Model], Hashable] | None = None,
    timeout: float | None = None,
) -> CheckResult:
    """Is ``history`` linearizable with respect to the sequential model?

    ``model_factory`` makes the initial state of one object: a callable (the
    same for every object), or a mapping from an object reference -- or, for
    ``(type, key)`` references, from the type name -- to a callable.  The
    model is copied with ``copier`` before every step and memoised by
    ``fingerprint`` (default: its pickle; equal pickles must mean equal
    states).  ``timeout`` bounds the search; when it runs out the verdict is
    ``None`` (unknown), never a false alarm.
    """
    ops = history.operations() if isinstance(history, History) else list(history)
    groups: dict[Hashable, list[Operation]] = {}
    for op in ops:
        groups.setdefault(op.obj, []).append(op)
    fp = _fingerprint_fn(fingerprint)
    budget = _Budget(timeout)
    results: dict[Hashable, ObjectResult] = {}
    for obj, group in groups.items():
        results[obj] = _check_object(obj, group, _factory_for(model_factory, obj), copier, fp, budget)
    verdicts = [r.ok for r in results.values()]
    ok: bool | None = False if False in verdicts else (None if None in verdicts else True)
    return CheckResult(ok, results)


def assert_linearizable(history: History | Iterable[Operation], model_factory: ModelFactory, **options: Any) -> CheckResult:
    """:func:`check`, raising :class:`AssertionError` with the explanation unless linearizable."""
    result = check(history, model_factory, **options)
    if result.ok is not True:
        raise AssertionError(result.explanation if result.ok is False else "linearizability check ran out of time")
    return result
