"""The interpreter waits at exit for cloud threads that are not daemons, as it waits for threads.

``threading`` joins every non-daemon thread when the main thread ends;
``ThreadPoolExecutor`` finishes its queued work then too.  Cloud threads and
serverless executors do the same through ``threading._register_atexit``
(the hook ``concurrent.futures`` uses), which runs before ``atexit``
handlers -- so before the embedded DSO node and the local workers stop.
"""

from __future__ import annotations

import atexit
import threading
import weakref
from typing import Any

__all__ = ["ended", "exiting", "register", "wait_at_exit"]

_lock = threading.Lock()
_running: set[Any] = set()  # strong: nobody may forget a thread the program will wait for
_ended: weakref.WeakSet[Any] = weakref.WeakSet()  # reported at exit if their error was never asked for
_registered = False
_exiting = False


def exiting() -> bool:
    """Whether the interpreter is past waiting for its threads (daemons die silently then, as threads do)."""
    return _exiting


def register() -> None:
    """Hook :func:`_wait_all` into the interpreter's exit, once (also when only daemons run: they must die quietly)."""
    global _registered
    with _lock:
        if _registered:
            return
        _registered = True
    hook = getattr(threading, "_register_atexit", None)
    try:
        (hook or atexit.register)(_wait_all)
    except RuntimeError:  # the interpreter is already shutting down
        atexit.register(_wait_all)


def wait_at_exit(obj: Any, running: bool = False) -> None:
    """At exit, call ``obj._wait_at_exit()``.

    ``running=True`` holds ``obj`` strongly until :func:`ended` is called
    for it (a thread the program may have forgotten but must wait for).
    """
    register()
    with _lock:
        (_running if running else _ended).add(obj)


def ended(obj: Any) -> None:
    """``obj`` (given ``running=True``) ended: it may be collected now (and report an error nobody asked for)."""
    with _lock:
        _running.discard(obj)
        _ended.add(obj)


def _wait_all() -> None:
    global _exiting
    done: list[Any] = []  # strong references: an id is not reused meanwhile
    while True:
        with _lock:
            objs = [o for o in (*_running, *_ended) if not any(o is d for d in done)]
        if not objs:  # nothing new started while we waited
            _exiting = True
            return
        for obj in objs:
            done.append(obj)
            obj._wait_at_exit()
