"""When a lone caller polls its socket for the reply instead of sleeping, and when it stops.

A caller that sleeps in ``recv()`` is woken when the reply arrives.  On a
virtual machine that wake-up is most of a round trip to a local node: the
caller's idle vCPU halts, and waking it takes an inter-processor interrupt
through the hypervisor (about 45 µs of a 95 µs call on the 2-core VM the
benchmarks run on).  A caller that polls its socket for a short while finds
the reply there instead -- as kernel busy polling and the spin-then-park of
Java's locks do.  Polling burns the caller's core, so it is done only where
it pays, per method (a ``get()`` is answered at once, a ``barrier.wait()``
seldom is):

* a method's first call sleeps: a call that takes longer than ``SLOW``
  (1 ms, or 20 windows) counts as a miss, so a method that waits (a barrier,
  a lock) never starts polling;
* a poll that ran its window out without the reply, or a slow call, makes
  that method's next calls sleep at once: 2, then 4, 8 ... up to 1 024 calls
  after consecutive misses, then polls once more to see whether things
  changed;
* a poll that found the reply clears that;
* the window is ``spin_us`` (config, ``CRUCIAL_SPIN_US``; 50 µs by default,
  0 turns polling off), and a process allowed on one CPU only never polls:
  its poll would keep the node from answering.

Only a caller alone on its connection polls (threads sharing one take turns
reading it, see ``_sync``).  Pure bookkeeping: the socket is ``_sync``'s.
"""

from __future__ import annotations

import os

__all__ = ["MAX_SKIP", "Spin", "slow", "window"]

#: at most this many calls of a method sleep at once before it polls again
MAX_SKIP = 1024


def window(spin_us: int) -> float:
    """Seconds a lone caller polls (0: never) -- never on a process allowed on one CPU only."""
    if spin_us <= 0:
        return 0.0
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return spin_us / 1e6 if cpus > 1 else 0.0


def slow(window: float) -> float:
    """Seconds beyond which a call counts as a miss: polling would not have found its reply."""
    return max(0.001, 20 * window)


class Spin:
    """One method's record: whether its next call polls."""

    __slots__ = ("_misses", "_skip")

    def __init__(self) -> None:
        self._misses = 0  # consecutive polls that ran out (and slow calls)
        self._skip = 1  # calls that sleep at once before the next poll: the first one shows whether it may pay

    def wanted(self) -> bool:
        """Whether this call polls (counts a skipped one)."""
        if self._skip:
            self._skip -= 1
            return False
        return True

    def hit(self) -> None:
        """The poll found the reply."""
        self._misses = 0

    def miss(self) -> None:
        """The poll ran out, or the call was slow: sleep at once for the next 2, 4, 8 ... calls."""
        self._misses += 1
        self._skip = min(1 << self._misses, MAX_SKIP)
