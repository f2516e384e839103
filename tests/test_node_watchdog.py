"""A call that holds a node's only thread too long is named in the node's log, while it does."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import IO

import pytest

import crucial
from crucial.client import _default
from crucial.server._runtime import blocked_report
from crucial.testing import unconfigured_env


@crucial.shared
class Sleeper:
    def __init__(self) -> None:
        self.naps = 0

    def nap(self, seconds: float) -> int:
        time.sleep(seconds)  # blocks the node's thread: what the watchdog is for
        self.naps += 1
        return self.naps

    def wait_politely(self, seconds: float) -> bool:
        return crucial.wait_until(lambda: False, seconds)  # parked: the node's thread is free


def _lines(stream: IO[str], out: queue.Queue[str]) -> None:
    for line in stream:
        out.put(line)


@pytest.fixture
def node() -> Iterator[queue.Queue[str]]:
    """A node with a 0.3 s warning threshold, its stderr captured (LocalCluster lets stderr through)."""
    env = unconfigured_env()
    proc = subprocess.Popen(
        [sys.executable, "-m", "crucial.server", "--port", "0", "--watch-stdin", "--blocked-warning", "0.3"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    address = proc.stdout.readline().strip().split("=", 1)[1]
    log: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stderr, log), daemon=True).start()
    client = crucial.connect(address)
    try:
        yield log
    finally:
        _default.reset_clients()
        client.close()
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()


def test_a_blocking_method_is_named_while_it_blocks(node: queue.Queue[str]) -> None:
    sleeper = Sleeper()
    call = threading.Thread(target=sleeper.nap, args=(3.0,))
    call.start()
    line = node.get(timeout=2.5)  # before the call ends: the node says so while it is stuck
    assert call.is_alive()
    assert "Sleeper.nap() on " in line and "has held this node for" in line and "crucial.wait_until" in line
    call.join(10)
    assert node.empty()  # once per call
    assert sleeper.wait_politely(1.0) is False  # a parked wait holds nothing: no warning
    with pytest.raises(queue.Empty):
        node.get(timeout=0.5)
    assert sleeper.delete()


def _nap_then_add(v: int) -> int:
    time.sleep(3.0)  # a user function that blocks the node's thread inside a built-in method
    return v + 1


def test_a_builtin_method_on_the_fast_path_is_named_while_it_blocks(node: queue.Queue[str]) -> None:
    counter = crucial.AtomicInt(0)
    call = threading.Thread(target=counter.update_and_get, args=(_nap_then_add,))
    call.start()
    line = node.get(timeout=2.5)
    assert call.is_alive()
    assert "AtomicInt.update_and_get() on " in line and "has held this node for" in line
    call.join(10)
    assert counter.get() == 1


def test_blocked_report_is_pure() -> None:
    assert blocked_report(None, 100.0, 5.0) is None
    assert blocked_report((99.0, ("T", "k"), "m"), 100.0, 5.0) is None  # 1 s < 5 s
    message = blocked_report((90.0, ("T", "k"), "m"), 100.0, 5.0)
    assert message is not None and message.startswith("T.m() on 'k' has held this node for 10.0 s")
