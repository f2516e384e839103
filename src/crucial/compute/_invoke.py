"""From a call to a result: encode, invoke, retry on platform failures, decode.

Shared by :class:`~crucial.compute.CloudThread` and
:class:`~crucial.compute.ServerlessExecutor`.  Retries follow the seed's
rule: a function whose *platform* failed (its worker died, the invocation
timed out) may be run again, at least once in all; a function whose *code*
raised is not, unless asked.  The DSO makes re-running safe where the code
keeps its progress in shared objects (an iteration counter, §3.2.4).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from ..exceptions import InvocationError
from ._backend import Backend, settle
from ._task import decode_outcome, encode_task
from .timeline import DONE, ERROR, Call

__all__ = ["Retry", "dso_of_caller", "prepare", "run_invocation", "start_invocation"]


@dataclass(frozen=True)
class Retry:
    """How often and how soon to run an invocation again.

    ``Retry(count=3, backoff=0.1, factor=2.0, max_backoff=5.0, user_errors=False)``:
    after the n-th failure wait ``min(backoff * factor**(n-1), max_backoff)``.
    """

    #: extra attempts after the first (0: at most once)
    count: int = 0
    #: seconds before the first retry
    backoff: float = 0.1
    #: growth of the pause between retries
    factor: float = 2.0
    #: longest pause between retries
    max_backoff: float = 5.0
    #: also retry when the function's own code raised
    user_errors: bool = False

    def pause(self, failures: int) -> float:
        return min(self.backoff * self.factor ** max(failures - 1, 0), self.max_backoff)

    def should_retry(self, exc: BaseException, failures: int) -> bool:
        if failures > self.count:
            return False
        return isinstance(exc, InvocationError) or (self.user_errors and isinstance(exc, Exception))


def dso_of_caller() -> tuple[tuple[str, ...], str | None]:
    """The cluster this process uses (starting the embedded node if none is set)."""
    from ..client._default import default_client

    client = default_client()
    return client.core.nodes if client.core.epoch else client.seeds, client.core.config.token


def prepare(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    code: Iterable[Any] = (),
    what: str | None = None,
    plain: bool = False,
) -> bytes:
    """The task's bytes, with the caller's DSO address: pickling errors raise here, in the caller.

    ``code``: more functions and classes whose modules must travel by value
    (those reached through an argument, such as a thread's target); ``what``
    names the function in errors; ``plain``: see :func:`._task.encode_task`.
    """
    dso, token = dso_of_caller()
    return encode_task(fn, args, kwargs, dso, token, code=code, what=what, plain=plain)


def start_invocation(
    backend: Backend,
    data: bytes,
    *,
    retry: Retry = Retry(),
    timeout: float | None = None,
    where: str = "a cloud function",
    result: Future[Any] | None = None,
    record: Call | None = None,
) -> Future[Any]:
    """Invoke the prepared task and return a Future of its value (retrying as ``retry`` says).

    ``record``, a timeline entry, learns when each attempt starts, when the
    last one ends, how, and on which worker.
    """
    out: Future[Any] = result if result is not None else Future()
    if result is None:
        out.set_running_or_notify_cancel()
    run_invocation(backend, data, functools.partial(settle, out), retry=retry, timeout=timeout, where=where, record=record)
    return out


def run_invocation(
    backend: Backend,
    data: bytes,
    then: Callable[[Any, BaseException | None], None],
    *,
    retry: Retry = Retry(),
    timeout: float | None = None,
    where: str = "a cloud function",
    record: Call | None = None,
) -> None:
    """:func:`start_invocation` without a Future: ``then(value, None)`` or ``then(None, error)`` once, at the end.

    What a cloud thread uses: its own Future is the only one it makes.
    """
    failures = 0
    seen: dict[str, Any] = {}

    def attempt() -> None:
        try:
            invoke()
        except Exception as exc:  # CapacityError and friends: the caller hears at once
            finished(exc)

    def invoke() -> None:
        # the record starts first: the invocation may end (in the backend's thread) before invoke_then returns
        before = None if record is None else (record.started, record.status, record.attempts)
        if record is not None:
            record.start()
        try:
            backend.invoke_then(data, timeout, done)
        except BaseException:
            if record is not None and before is not None:  # it never started
                record.started, record.status, record.attempts = before
            raise

    def done(outcome: bytes | None, exc: BaseException | None) -> None:
        if exc is not None or outcome is None:
            finished(exc or RuntimeError("the backend returned no outcome"))
            return
        try:
            value = decode_outcome(outcome, f"{where} on the {backend.name} backend", seen)
        except BaseException as err:
            finished(err)
        else:
            if record is not None:
                record.end(DONE, seen.get("worker"))
            then(value, None)

    def finished(exc: BaseException) -> None:
        nonlocal failures
        failures += 1
        if retry.should_retry(exc, failures):
            timer = threading.Timer(retry.pause(failures), attempt)
            timer.daemon = True
            timer.start()
        else:
            if record is not None:
                record.end(ERROR, seen.get("worker"))
            then(None, exc)

    invoke()  # the first attempt raises in the caller (CapacityError, a closed backend): no silent hang
