"""The ``crucial`` command: a fast path for shell verbs, click for the rest.

``crucial ipc VERB …`` is what shell scripts call once per verb, so it skips
click, sends the common operations over one connection of its own
(:mod:`crucial.shell._thin`: no client library, no ``typing``), and exits
without interpreter teardown: a client-side verb call is mostly Python
start-up, and every millisecond of it counts.
"""

from __future__ import annotations

import os
import sys

__all__ = ["IPC_HELP", "main", "run_ipc"]

IPC_HELP = """\
usage: crucial ipc VERB -n NAME OPERATION [-1 X] [-2 Y] [-3 Z]

Run one IPC verb on the shared object NAME of the DSO (CRUCIAL_DSO; inside
sshell, through the invocation's verb server) and print its result, as the
verbs inside sshell do.  `crucial ipc VERB -h` shows one verb's usage.
Reads stdin when it is piped and the operation takes it (put-all,
merge-all without -1).  Exit status: 0, 1 for a failed operation, 2 for
bad usage.

verbs:
"""


def run_ipc(args: list[str]) -> int:
    """Run one verb (over a connection of its own, through the invocation's verb server, or the usual way) and print it."""
    from .shell import _grammar

    if args[:1] in (["-h"], ["--help"]):
        sys.stdout.write(IPC_HELP + "".join(f"  {line}\n" for line in _grammar.usage().splitlines()))
        return 0
    stdin = sys.stdin.read() if _grammar.wants_stdin(args) and not sys.stdin.isatty() else None
    result = None
    if not os.environ.get("CRUCIAL_IPC_PORT"):  # not inside sshell: the common operations go straight to the node
        from .shell import _thin

        result = _thin.run(args, stdin)
    if result is None:
        from .shell import ipc

        result = ipc.run_here_or_served(args, stdin)
    code, out, err = result
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
