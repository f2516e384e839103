"""The body of a local worker process: one invocation at a time, like a FaaS instance.

Imported by the fork server before it forks any worker, so that crucial,
cloudpickle and the rest are loaded once and every worker starts warm.
"""

from __future__ import annotations

import signal
from multiprocessing.connection import Connection

import crucial  # noqa: F401  (preloaded: workers start with it imported)

from ._task import run_task


def main(conn: Connection) -> None:
    """Serve invocations from ``conn`` until it closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the caller's business, not ours
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return
        conn.send_bytes(run_task(data))
