"""The small interface every compute backend implements, and how one is chosen.

A backend runs *invocations*: it takes the bytes of a task
(:func:`~crucial.compute._task.encode_task`) and returns a
:class:`concurrent.futures.Future` that resolves to the bytes
:func:`~crucial.compute._task.run_task` produced, or fails with an
:class:`~crucial.exceptions.InvocationError` when the platform, not the
code, failed.  Backends are imported by name, only when chosen.
"""

from __future__ import annotations

import importlib
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from ..exceptions import ConfigError

__all__ = ["BACKENDS", "Backend", "Then", "get_backend", "settle"]

#: ``then(data, None)`` with the bytes of the outcome, or ``then(None, error)`` when the platform failed
Then = Callable[[bytes | None, BaseException | None], None]


def settle(fut: Future[Any], value: Any, error: BaseException | None) -> None:
    """A ``then``-style end, told to a Future: its result, or its exception (``functools.partial(settle, fut)``)."""
    if error is None:
        fut.set_result(value)
    else:
        fut.set_exception(error)


#: name -> "module:Class"; imported only when chosen
BACKENDS = {
    "local": "crucial.compute.local:LocalBackend",
    "inline": "crucial.compute.inline:InlineBackend",
    "lithops": "crucial.compute.lithops:LithopsBackend",
    "dask": "crucial.compute.dask:DaskBackend",
    "ray": "crucial.compute.ray:RayBackend",
}


class Backend(ABC):
    """Runs invocations; one instance is shared by every thread and executor that names it."""

    name = "?"

    @abstractmethod
    def invoke(self, task: bytes, timeout: float | None = None) -> Future[bytes]:
        """Start one invocation now (or fail the future with CapacityError)."""

    def invoke_then(self, task: bytes, timeout: float | None, then: Then) -> None:
        """:meth:`invoke`, calling ``then`` when the invocation ends instead of returning a Future.

        Raises at once where :meth:`invoke` does.  This default goes through
        :meth:`invoke`'s Future; the local backend calls ``then`` from its
        monitor thread with no Future at all (a cloud thread's start made
        three, each with its own condition and lock).
        """

        def done(fut: Future[bytes]) -> None:
            error = fut.exception()
            if error is None:
                then(fut.result(), None)
            else:
                then(None, error)

        self.invoke(task, timeout).add_done_callback(done)

    @property
    def max_concurrency(self) -> int | None:
        """How many invocations may run at once (``None``: no known cap)."""
        return None

    def close(self) -> None:  # noqa: B027  (a default that does nothing is right for most backends)
        """Release workers; idempotent."""


_lock = threading.Lock()
_shared: dict[tuple[str, str], Backend] = {}


def _default_name() -> str:
    """The configured backend; the file is read once per process (start() is a hot path)."""
    global _configured
    env = os.environ.get("CRUCIAL_BACKEND")
    if env:
        return env
    if _configured is None:
        from ..config import load_config

        _configured = load_config().backend
    return _configured


_configured: str | None = None


def get_backend(name: str | Backend | None = None, **options: Any) -> Backend:
    """The process-wide backend called ``name`` (default: the configured one, else ``local``)."""
    if isinstance(name, Backend):
        return name
    if name is None:
        name = _default_name()
    target = BACKENDS.get(name)
    if target is None:
        raise ConfigError(f"unknown compute backend {name!r}; known backends: {', '.join(sorted(BACKENDS))}")
    key = (name, repr(sorted(options.items())))  # repr: options may be dicts (a Lithops config)
    with _lock:
        backend = _shared.get(key)
        if backend is None:
            module_name, cls_name = target.split(":")
            try:  # a backend may import its platform's library when built, too
                backend = getattr(importlib.import_module(module_name), cls_name)(**options)
            except ImportError as exc:
                raise ConfigError(f"the {name!r} backend needs an extra: pip install 'crucial[{name}]' ({exc})") from exc
            _shared[key] = backend
        return backend
