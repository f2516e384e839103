"""Where a client puts what a call printed on its node: the caller's own ``sys.stdout``/``sys.stderr``.

A node sends it as OUTPUT frames, before the call's reply
(:mod:`crucial.server._output`), so a ``print`` in a shared method shows
where the program that called it prints -- in a cloud thread, that is the
worker's stdout, whose whole lines reach the program's (:mod:`crucial.compute._lines`).
"""

from __future__ import annotations

import sys

from .. import protocol as P

__all__ = ["show", "show_frame"]


def show(stream: int, text: str) -> None:
    """Write ``text`` to this process's stdout (stream 1) or stderr (2), whatever they are now."""
    target = sys.stdout if stream == P.STDOUT else sys.stderr
    if target is None:
        return
    try:
        target.write(text)
        if stream == P.STDERR:
            target.flush()
    except (OSError, ValueError):  # a closed stdout must not fail the call that printed
        pass


def show_frame(frame: P.Frame) -> None:
    show(*P.decode_output(frame.body))
