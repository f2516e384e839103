"""The ``crucial`` command: a fast path for shell verbs, click for the rest.

``crucial ipc VERB …`` is what shell scripts call once per verb, so it skips
click and exits without interpreter teardown: a client-side verb call is
mostly Python start-up, and every millisecond of it counts.
"""

from __future__ import annotations

import os
import sys

__all__ = ["main", "run_ipc"]


def run_ipc(args: list[str]) -> int:
    """Run one verb (here, or through the invocation's verb server) and print its output."""
    from .shell import ipc

    stdin = sys.stdin.read() if ipc.wants_stdin(args) and not sys.stdin.isatty() else None
    code, out, err = ipc.run_here_or_served(args, stdin)
    if out:
        sys.stdout.write(out)
    if err:
        sys.stderr.write(err)
    return code


def main(argv: list[str] | None = None, prog_name: str = "crucial") -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["ipc"] and argv is None:
        code = run_ipc(args[1:])
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # nothing to tear down: the connection dies with the process
    from ._commands import cli

    cli.main(args=args, prog_name=prog_name)


if __name__ == "__main__":
    main()
