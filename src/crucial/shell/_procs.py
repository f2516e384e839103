"""The processes under an invocation: tied to the one that started them, killed as a tree, statuses as bash says them.

Light on purpose (``os`` and ``_signal``; ``ctypes`` only when a worker ties
itself to its parent): the quick ``sshell`` path (:mod:`._quick`) uses it as
the forked worker of :mod:`.sshell` does.
"""

from __future__ import annotations

import _signal as signal  # the C module: ``signal`` would import ``enum`` for nothing we need
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["EXIT_FAILURE", "EXIT_TIMEOUT", "die_with_parent", "exit_status", "kill_descendants"]

#: sshell's own failures (as timeout(1) and env(1) use them)
EXIT_TIMEOUT = 124
EXIT_FAILURE = 125


def exit_status(returncode: int) -> int:
    """A process's exit status as bash reports it: a death by signal N is 128+N."""
    return 128 - returncode if returncode < 0 else returncode


def die_with_parent() -> None:
    """Tie this forked worker, and the command under it, to the sshell that forked it.

    When sshell dies (Ctrl-C, kill, a closed terminal) Linux sends this
    worker SIGTERM (``PR_SET_PDEATHSIG``), and SIGTERM or SIGINT here kill the
    command's process tree before the worker exits: nothing lingers.  The
    handlers also make bash start with SIGINT at its default (the pool's
    workers ignore it, and an ignored signal stays ignored across exec).
    """

    def end(signum: int, frame: Any) -> None:
        kill_descendants()
        os._exit(128 + signum)

    parent = os.getppid()
    signal.signal(signal.SIGTERM, end)
    signal.signal(signal.SIGINT, end)
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent or parent == 1:  # it died before the request took effect
        end(signal.SIGTERM, None)


def kill_descendants() -> None:
    """SIGKILL every process below this one (the command's whole tree), walking /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])  # the name may hold spaces and parentheses
        children.setdefault(ppid, []).append(int(entry))
    todo, found = [os.getpid()], []
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    for pid in found:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
