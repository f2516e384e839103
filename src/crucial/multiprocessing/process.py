"""``multiprocessing.Process`` as a cloud function.

A :class:`Process` is a :class:`~crucial.CloudThread` with
``multiprocessing``'s face: ``pid``, ``exitcode`` (0; 1 when the body
raised, whose traceback the "child" prints on its stderr -- the program's,
on the local backend -- as ``multiprocessing`` does; the code given to
``sys.exit``), ``terminate()``/``kill()``, ``current_process()`` inside
it.  A cloud function cannot be stopped: ``terminate()`` makes the caller
stop waiting for it (``exitcode`` ``-SIGTERM``), the function itself runs on
to its end.
"""

from __future__ import annotations

import itertools
import multiprocessing as _mp
import signal
import sys
import traceback
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from typing import Any

from ..compute._invoke import Retry
from ..compute.thread import CloudThread, alive, current_cloud_thread

__all__ = ["Process", "active_children", "current_process", "parent_process"]

_names = itertools.count(1)


class Process(CloudThread):
    """``Process(group=None, target=None, name=None, args=(), kwargs={}, *, daemon=None)`` on a cloud function."""

    _report_at_end = True  # platform failures only: the body's own errors become its exit code

    def __init__(
        self,
        group: None = None,
        target: Callable[..., Any] | None = None,
        name: str | None = None,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        daemon: bool | None = None,
        backend: Any = None,
        retry: Retry | None = None,
        timeout: float | None = None,
    ) -> None:
        if group is not None:
            raise AssertionError("group argument must be None for now")
        here = current_cloud_thread()
        prefix = f"{here.name}:" if isinstance(here, Process) else "Process-"
        super().__init__(
            target, args, kwargs, name or f"{prefix}{next(_names)}", daemon=daemon, backend=backend, retry=retry, timeout=timeout
        )
        self._exitcode: int | None = None
        self._terminated = False
        self.authkey = b""

    def _crucial_run(self, run: Any) -> Any:
        """In the worker: ``multiprocessing``'s ``_bootstrap`` -- errors become an exit code and a traceback on stderr."""
        try:
            run(self)
            code = 0
        except SystemExit as exc:
            if exc.code is None:
                code = 0
            elif isinstance(exc.code, int):
                code = exc.code
            else:
                sys.stderr.write(str(exc.code) + "\n")
                code = 1
        except BaseException:
            sys.stderr.write(f"Process {self.name}:\n")
            traceback.print_exc()
            code = 1
        sys.stderr.flush()
        self._exitcode = code
        return None

    @property
    def pid(self) -> int | None:
        """A number naming the started process (its ``ident``; not an OS pid)."""
        return self.ident

    @property
    def exitcode(self) -> int | None:
        """``None`` while it runs; then 0, 1 (it raised), its ``sys.exit`` code, or ``-signal.SIGTERM`` once terminated."""
        future = self._future
        if future is None or not future.done():
            return None
        if self._terminated:
            return -signal.SIGTERM
        if future.exception() is not None:
            return 1
        return self._exitcode

    def terminate(self) -> None:
        """Stop waiting for the function (it cannot be interrupted: it runs on to its end)."""
        self._stop_waiting()

    def kill(self) -> None:
        """As :meth:`terminate`."""
        self._stop_waiting()

    def _stop_waiting(self) -> None:
        future: Future[Any] | None = self._future
        if future is not None and not future.done():
            self._terminated = True
            try:
                future.set_result(None)  # join() returns; what the function sends back later is dropped
            except InvalidStateError:  # it ended meanwhile
                self._terminated = False

    def close(self) -> None:
        if self.is_alive():
            raise ValueError("Cannot close a process while it is still running. You should first call join() or terminate().")

    def join(self, timeout: float | None = None) -> None:
        if self._future is None:
            raise AssertionError("can only join a started process")
        super().join(timeout)

    def __repr__(self) -> str:
        if self._future is None:
            status = "initial"
        elif self.is_alive():
            status = "started"
        else:
            status = f"stopped exitcode={self.exitcode}"
        return f"<{type(self).__name__} name={self.name!r} {status}{' daemon' if self.daemon else ''}>"


def current_process() -> Any:
    """Inside a cloud :class:`Process`, that process; else ``multiprocessing``'s own (``MainProcess``, ...)."""
    here = current_cloud_thread()
    return here if isinstance(here, Process) else _mp.current_process()


def active_children() -> list[Process]:
    """The cloud processes started here that have not ended."""
    return [p for p in alive() if isinstance(p, Process)]


def parent_process() -> Any:
    return _mp.parent_process()
