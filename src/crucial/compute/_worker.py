"""The body of a local worker process: one invocation at a time, like a FaaS instance.

Imported by the fork server before it forks any worker, so that crucial,
cloudpickle and the rest are loaded once and every worker starts warm.
"""

from __future__ import annotations

import os
import signal
import sys
from multiprocessing import spawn
from multiprocessing.connection import Connection
from typing import Any

# preloaded: workers start with the client, the objects and cloudpickle imported
import cloudpickle  # noqa: F401

import crucial.client
import crucial.objects  # noqa: F401

from ._frames import frame, read_messages, write_all
from ._lines import LineWriter
from ._task import run_task

#: the process name of our workers: what the patched ``prepare`` looks for
WORKER_NAME = "crucial-worker"
_MAIN_KEYS = ("init_main_from_path", "init_main_from_name")


def _prepare_without_main(data: dict[str, Any]) -> None:
    """multiprocessing's ``spawn.prepare``, minus importing the caller's main module, for our workers.

    A child of multiprocessing's fork server first re-imports the parent's
    main script (as ``__mp_main__``), so a script without an ``if __name__ ==
    "__main__":`` guard would start its cloud threads again in every worker.
    Our workers never need that module: code from ``__main__`` travels by
    value (cloudpickle).  Every other process -- a user's own forkserver pool
    shares the fork server -- keeps the stock behaviour.
    """
    if data.get("name") == WORKER_NAME:
        data = {k: v for k, v in data.items() if k not in _MAIN_KEYS}
    _stock_prepare(data)


# Installed where this module is imported: in the fork server (it preloads this
# module), so that every process forked from it has it before it is prepared.
_stock_prepare = getattr(spawn.prepare, "_crucial_stock", spawn.prepare)
_prepare_without_main._crucial_stock = _stock_prepare  # type: ignore[attr-defined]
spawn.prepare = _prepare_without_main  # type: ignore[assignment]


def main(conn: Connection) -> None:
    """Serve invocations from ``conn`` until it closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the caller's business, not ours
    _batch_scheduled()
    streams = _whole_lines()
    fd = conn.fileno()  # one read per task, one write per outcome (._frames)
    while True:
        try:
            tasks = read_messages(fd)
        except (EOFError, OSError):
            return
        if tasks is None:
            return
        for data in tasks:  # one: the backend sends the next only after the outcome
            outcome = run_task(data)
            for stream in streams:  # an unfinished last line goes out before the caller hears the function ended
                stream.flush()
            write_all(fd, frame(outcome))


def _batch_scheduled() -> None:
    """Ask Linux to schedule this worker as a batch process: waking it preempts nobody.

    The program hands a task to an idle worker by writing to its pipe.  With
    the default policy the woken worker preempts the writer on its core, so
    on a machine with few cores a program starting 64 cloud threads ran in
    turns with its workers, start by start (64 trivial threads: 7.9 -> 6.4 ms
    on 2 cores).  A batch process gets the same share of the CPU, it only
    waits for a free core or the next tick rather than take one at once --
    what a cloud function's own machine would not cost the caller either.
    """
    policy = getattr(os, "SCHED_BATCH", None)
    if policy is None:  # not Linux
        return
    try:
        os.sched_setscheduler(0, policy, os.sched_param(0))
    except OSError:
        pass


def _whole_lines() -> list[LineWriter]:
    """Make this worker's stdout and stderr write whole lines (they are the program's, shared with other workers)."""
    streams = []
    for name, fd in (("stdout", 1), ("stderr", 2)):
        old = getattr(sys, name)
        if old is None:
            continue
        try:
            old.flush()
        except (OSError, ValueError):
            pass
        stream = LineWriter(fd, getattr(old, "encoding", None) or "utf-8")
        setattr(sys, name, stream)
        streams.append(stream)
    return streams
