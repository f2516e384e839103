"""What travels to a cloud function and back, and what runs there.

Pure apart from running the user's function: a backend ships the bytes of
:func:`encode_task` to a worker (a local process, a Lithops function, the
caller's own thread), which hands them to :func:`run_task` and ships back
the bytes it returns; :func:`decode_outcome` turns them into a value or
re-raises the function's exception in the caller, with the worker's
traceback chained as ``__cause__``.

The task carries the DSO address and token, so functions need no
configuration of their own: the first shared object they touch connects to
the caller's cluster.
"""

from __future__ import annotations

import functools
import os
import pickle
import socket
import sys
import traceback
import types
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from .. import protocol as P
from ..exceptions import InvocationError, RemoteError, RemoteTraceback, SerializationError
from ._fncache import Shipped, pickled, unpickled

__all__ = ["Outcome", "Task", "decode_outcome", "encode_task", "run_task", "worker"]


class Task(NamedTuple):
    fn: Callable[..., Any] | tuple[bytes, bool]  # a tuple: a Shipped function, pickled by value beforehand (_fncache)
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    dso: tuple[str, ...]  # where the caller's DSO nodes are
    token: str | None


class Outcome(NamedTuple):
    ok: bool
    value: Any  # the result, or the exception
    tb: str  # the worker's traceback text when not ok
    worker: str = ""  # host:pid of the process that ran it (for timelines)


def encode_task(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    dso: tuple[str, ...],
    token: str | None,
    *,
    code: Iterable[Any] = (),
    what: str | None = None,
    plain: bool = False,
) -> bytes:
    """Pickle a call for a function: code by value where nodes/workers cannot import it.

    ``plain``: the caller has checked that everything in the call is plain
    data or importable by name (a cloud thread whose target travels as
    cached bytes), so the stdlib pickler writes it, without cloudpickle's
    per-object checks.

    A function that travels by value is pickled once and its bytes reused
    while what it captures stays the same (:mod:`._fncache`); the task
    around it is then plain data, which :mod:`pickle` writes in a
    microsecond or two.
    """
    what = what or getattr(fn, "__qualname__", None) or type(fn).__qualname__
    if plain:
        try:
            return pickle.dumps((fn, args, kwargs, dso, token), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise SerializationError(_unpicklable(what, fn, args, kwargs, exc)) from exc
    extra = list(code)
    codes = [fn, type(fn), *args, *kwargs.values(), *extra]
    try:
        shipped = None if extra else shipped_function(fn, codes[2:])
        # a plain tuple, not the Task: plain data pickles with pickle, not cloudpickle
        return P.pickle_bytes((tuple(shipped) if shipped else fn, args, kwargs, dso, token), code=codes)
    except Exception as exc:
        raise SerializationError(_unpicklable(what, fn, args, kwargs, exc)) from exc


def _unpicklable(what: str, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], exc: Exception) -> str:
    """The message for a call that does not pickle: which argument, attribute or global, and what to use instead."""
    from ._diagnose import culprit, hint

    try:
        found = culprit(fn, args, kwargs)
    except Exception:  # the diagnosis is a courtesy: never let it hide the error
        found = None
    if found is None:
        return f"cloud function {what!r} or its arguments cannot be pickled: {exc}"
    where, value = found
    kind = type(value)
    return (
        f"cloud function {what!r} cannot be pickled: {where} is a {kind.__module__}.{kind.__qualname__}, "
        f"which cannot travel to a cloud function ({exc}); {hint(value)}"
    )


def shipped_function(fn: Any, others: Iterable[Any]) -> Shipped | None:
    """``fn``'s bytes pickled once (:mod:`._fncache`) when it travels by value, else None.

    Not when a function or class is among ``others`` (the call's arguments):
    they would be pickled apart from ``fn``, and a module's globals must
    travel as one copy.
    """
    if type(fn) is not types.FunctionType or not P.ships_by_value(fn):
        return None
    if any(isinstance(v, (types.FunctionType, type)) for v in others):
        return None
    return pickled(fn, _by_reference, _dumps_by_value)


def _dumps_by_value(fn: Callable[..., Any]) -> bytes:
    with P.by_value([fn]):
        return P.cloudpickle().dumps(fn, protocol=pickle.HIGHEST_PROTOCOL)  # type: ignore[no-any-return]


def _by_reference(obj: Any) -> bool:
    """Whether cloudpickle writes ``obj`` (a module, class, function) by name, so its bytes hold no state of it."""
    if isinstance(obj, types.ModuleType):
        path = getattr(obj, "__file__", None) or ""
        return not path or "-packages" in path or obj.__name__.startswith("crucial.") or path.startswith(P.STDLIB)
    return not P.ships_by_value(obj) and getattr(obj, "__module__", None) in sys.modules


def run_task(data: bytes, point: bool = True) -> bytes:
    """Run one task (in the worker) and return its pickled :class:`Outcome`. Never raises.

    ``point=False`` leaves this process's DSO settings alone (the inline
    backend runs in the caller, whose default client is the task's cluster).
    """
    try:
        task = Task(*pickle.loads(data))
        if point:
            _point_at(task.dso, task.token)
        fn: Callable[..., Any] = unpickled(Shipped(*task.fn), pickle.loads) if isinstance(task.fn, tuple) else task.fn
        outcome = Outcome(True, fn(*task.args, **task.kwargs), "", worker())
    except SystemExit as exc:  # as a thread's: exit(0) just ends it; another code is an error
        if exc.code in (None, 0):
            outcome = Outcome(True, None, "", worker())
        else:
            exited = InvocationError(f"the cloud function called sys.exit({exc.code!r})")
            outcome = Outcome(False, exited, traceback.format_exc(), worker())
    except BaseException as exc:  # the function's failure is its outcome
        outcome = Outcome(False, exc, traceback.format_exc(), worker())
    try:
        return P.pickle_bytes(tuple(outcome))  # a plain tuple: a plain result pickles with pickle, not cloudpickle
    except Exception as exc:
        if outcome.ok:
            err: BaseException = SerializationError(f"the result of the cloud function cannot be pickled: {exc}")
            return P.pickle_bytes((False, err, "", outcome.worker))
        error = RemoteError(type(outcome.value).__name__, str(outcome.value))
        return P.pickle_bytes((False, error, outcome.tb, outcome.worker))


def worker() -> str:
    """``host:pid`` of this process: which worker ran a function."""
    return f"{_host()}:{os.getpid()}"


@functools.cache
def _host() -> str:
    return socket.gethostname()


def _point_at(dso: tuple[str, ...], token: str | None) -> None:
    """Make the task's cluster the default of this worker process."""
    want = ",".join(dso)
    if not dso or (os.environ.get("CRUCIAL_DSO") == want and os.environ.get("CRUCIAL_TOKEN") == token):
        return
    from ..client import _default

    os.environ["CRUCIAL_DSO"] = want
    if token:
        os.environ["CRUCIAL_TOKEN"] = token
    else:
        os.environ.pop("CRUCIAL_TOKEN", None)
    _default.reset_clients()


def decode_outcome(data: bytes, where: str, seen: dict[str, Any] | None = None) -> Any:
    """The function's value, or raise its exception with the worker traceback as ``__cause__``.

    ``seen["worker"]`` is set to the worker that ran it, when given.
    """
    try:
        outcome = Outcome(*pickle.loads(data))
    except Exception as exc:
        raise RemoteError(type(exc).__name__, f"the outcome from {where} could not be unpickled: {exc}") from None
    if seen is not None:
        seen["worker"] = outcome.worker
    if outcome.ok:
        return outcome.value
    error: BaseException = outcome.value
    if outcome.tb:
        error.__cause__ = RemoteTraceback(f'\n"""\n(in {where})\n{outcome.tb}"""')
    raise error
