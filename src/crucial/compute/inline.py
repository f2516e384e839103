"""The ``inline`` backend: run invocations in this process, for debugging.

Each invocation gets a thread of its own (so cloud threads that wait for
each other still can), but goes through the same pickling as the other
backends: what fails to serialize here fails everywhere, and a debugger or
a print in the function works as in any thread.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, InvalidStateError

from ..exceptions import InvocationTimeoutError
from ._backend import Backend
from ._task import run_task

__all__ = ["InlineBackend"]


class InlineBackend(Backend):
    name = "inline"

    def invoke(self, task: bytes, timeout: float | None = None) -> Future[bytes]:
        fut: Future[bytes] = Future()
        fut.set_running_or_notify_cancel()

        def body() -> None:
            data = run_task(task, point=False)
            try:
                fut.set_result(data)
            except InvalidStateError:  # it had timed out
                pass

        threading.Thread(target=body, name="crucial-inline", daemon=True).start()
        if timeout is not None:  # a thread cannot be stopped: the caller stops waiting for it
            timer = threading.Timer(timeout, _expire, (fut, timeout))
            timer.daemon = True
            timer.start()
        return fut


def _expire(fut: Future[bytes], timeout: float) -> None:
    try:
        fut.set_exception(
            InvocationTimeoutError(f"the inline invocation ran past its timeout of {timeout} s (it goes on in its thread)")
        )
    except InvalidStateError:  # it finished in time
        pass
