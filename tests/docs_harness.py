"""Running the code blocks of README.md and docs/*.md as tests, with Sybil.

Sybil finds the blocks and runs the Python ones; this module adds what is
ours: a session per page (a DSO node, a scratch directory, one namespace),
and the evaluators of shell blocks.  ``docs/writing-docs.md`` is the user's
guide; the rules in short::

    ```python      runs in the page's namespace (a ``>>>`` block is a doctest: output compared)
    ```console     ``$ command`` lines run through bash, each command's output compared
    ```sh/```bash  a script run through bash; it must exit 0 (no output shown, none compared)
    ```text, ...   not run (output samples, pseudo-code, config files)
    <!-- skip: next "why" -->   the next block is skipped, and the report says why

Every shell block of a page runs in the page's scratch directory, where the
repository's top-level entries (and ``.venv``, the virtualenv running the
tests) are symlinked, so commands read as they do from a clone; with
``CRUCIAL_DSO`` pointing at the page's node, the project's virtualenv first
on ``PATH`` and ``HOME`` in the scratch directory.  A block runs in its own
process group, which is killed when the block ends; processes that escaped
it (``setsid``) are found at the page's end by a marker in their
environment, and reported.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import dataclasses
import doctest
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sybil import Document, Example, Region, Sybil
from sybil.evaluators.doctest import OutputChecker
from sybil.evaluators.skip import Skipper
from sybil.integration.pytest import SybilItem
from sybil.parsers.markdown import CodeBlockParser, PythonCodeBlockParser, SkipParser

__all__ = [
    "PATTERNS",
    "ROOT",
    "STATS",
    "Command",
    "output_matches",
    "page_sybil",
    "parse_console",
    "pytest_runtest_makereport",
    "pytest_terminal_summary",
    "summary_line",
]

ROOT = Path(__file__).resolve().parent.parent
#: what the pages are (relative to ROOT); new pages under docs/ are picked up by themselves
PATTERNS = ("README.md", "docs/*.md")
#: the repository's entries a page's scratch directory links to (so `benchmarks/x.py` reads as from a clone)
LINKED = ("README.md", "benchmarks", "docs", "examples", "pyproject.toml", "scripts", "src", "tests")
#: a shell block that runs longer than this is killed and fails (pytest-timeout's 120 s would lose the output)
BLOCK_TIMEOUT = 100.0
#: how long the processes a page left behind get to end by themselves at the page's end (seconds;
#: DOCS_TEST_LEFTOVER_GRACE overrides it, for the harness's own test)
LEFTOVER_GRACE = float(os.environ.get("DOCS_TEST_LEFTOVER_GRACE", "10"))
#: the environment variable that marks every process a page's shell blocks started
MARKER = "DOCS_TEST_PAGE"
#: Python blocks: `...` matches anything, in doctest output as in console output
DOCTEST_FLAGS = doctest.ELLIPSIS
SHELL_LANGUAGES = ("sh", "bash")

#: counts for the summary line: blocks run, outputs compared (filled by the evaluators)
STATS: collections.Counter[str] = collections.Counter()


# --------------------------------------------------------------------------- console blocks (pure)


@dataclasses.dataclass(frozen=True)
class Command:
    """One ``$ command`` of a console block and the output the page shows for it."""

    line: int  # within the block, 0-based
    text: str  # what bash runs (continuation lines joined, prompts stripped)
    expected: str  # the shown output, "" when none

    @property
    def shows_status(self) -> bool:
        return "$?" in self.text


class ConsoleSyntaxError(ValueError):
    """A console block that is not ``$ command`` lines followed by their output."""


def parse_console(source: str) -> list[Command]:
    """Split a console block into commands and their shown output.

    A command starts with ``$ ``; a line ending in ``\\`` continues on the
    next one (which may start with the ``> `` prompt).  Everything up to the
    next ``$ `` line is the command's output.
    """
    commands: list[Command] = []
    lines = source.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.startswith("$ "):
            raise ConsoleSyntaxError(f"line {i + 1} of the block is output before any `$ ` command: {line!r}")
        start, text = i, line[2:]
        while text.endswith("\\") and i + 1 < len(lines):
            i += 1
            text += "\n" + re.sub(r"^> ", "", lines[i])
        i += 1
        output = []
        while i < len(lines) and not lines[i].startswith("$ "):
            output.append(lines[i])
            i += 1
        commands.append(Command(start, text, "\n".join(output).rstrip("\n")))
    return commands


_CHECKER = OutputChecker()


def output_matches(expected: str, got: str) -> bool:
    """Doctest's comparison: ``...`` (or ``…``) matches any text, trailing blanks are ignored."""
    want = expected.replace("…", "...").rstrip("\n")
    got = got.rstrip("\n")
    if not want:
        return not got.strip()
    return _CHECKER.check_output(want + "\n", got + "\n", doctest.ELLIPSIS)


def _script(commands: list[Command], mark: str) -> str:
    """Bash source running ``commands`` one by one, each followed by a marker line with its status."""
    parts = ['__docs_status() { return "$1"; }']
    for c in commands:
        parts.append(c.text)
        parts.append(f'__s=$?; printf \'\\n{mark} %d\\n\' "$__s"; __docs_status "$__s"')
    return "\n".join(parts) + "\n"


def _split_output(output: str, mark: str, n: int) -> list[tuple[str, int | None]]:
    """Each command's output and status, from the marked output of :func:`_script`."""
    results: list[tuple[str, int | None]] = []
    rest = output
    pattern = re.compile(rf"\n{re.escape(mark)} (\d+)\n")
    for _ in range(n):
        m = pattern.search(rest)
        if m is None:
            results.append((rest, None))  # the script ended (exit, or killed) inside this command
            rest = ""
            continue
        results.append((rest[: m.start()], int(m.group(1))))
        rest = rest[m.end() :]
    return results


# --------------------------------------------------------------------------- the session of a page


def _relative(path: str | Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


class PageSession:
    """What the blocks of one page share: a node, a scratch directory, an environment."""

    def __init__(self, page: str) -> None:
        self.page = page
        self.token = uuid.uuid4().hex
        self.tmp = Path(tempfile.mkdtemp(prefix=f"docs-{Path(page).stem}-"))
        self.cluster: Any = None
        self._saved_env: dict[str, str | None] | None = None
        for name in LINKED:
            if (ROOT / name).exists():
                (self.tmp / name).symlink_to(ROOT / name)
        (self.tmp / ".venv").symlink_to(Path(sys.prefix))
        (self.tmp / "home").mkdir()

    def node(self) -> Any:
        """The page's DSO node, started on first use (a page without running blocks starts nothing)."""
        if self.cluster is None:
            from crucial.testing import LocalCluster

            self.cluster = LocalCluster(nodes=1).start()
        return self.cluster

    def shell_env(self) -> dict[str, str]:
        from crucial.testing import unconfigured_env

        env = {k: v for k, v in unconfigured_env().items() if not k.startswith(("SSHELL_", "XDG_", "__LITHOPS"))}
        env.update(self.node().env_vars())
        bin_dir = str(Path(sys.executable).parent)
        env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", os.defpath)])
        env["HOME"] = str(self.tmp / "home")
        env["LC_ALL"] = "C.UTF-8"
        env["COLUMNS"] = "80"
        env[MARKER] = self.token
        env.pop("VIRTUAL_ENV", None)
        return env

    def activate_python(self) -> None:
        """Point the process's default client at the page's node (restored at the page's end)."""
        if self._saved_env is not None:
            return
        from crucial.client import _default

        env = self.node().env_vars()
        self._saved_env = {k: os.environ.get(k) for k in ("CRUCIAL_DSO", "CRUCIAL_TOKEN")}
        os.environ.pop("CRUCIAL_TOKEN", None)
        os.environ.update(env)
        _default.reset_clients()

    def run_bash(self, source: str, timeout: float = BLOCK_TIMEOUT) -> tuple[int | None, str]:
        """Run ``source`` with bash in the scratch directory: (status or None if killed, stdout+stderr)."""
        script = self.tmp / f".block-{uuid.uuid4().hex[:8]}.sh"
        script.write_text(source)
        proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc", str(script)],
            cwd=self.tmp,
            env=self.shell_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: background jobs end with the block
        )
        assert proc.stdout is not None
        chunks: list[bytes] = []
        reader = threading.Thread(target=lambda: chunks.extend(iter(lambda: proc.stdout.read1(65536), b"")), daemon=True)  # type: ignore[union-attr]
        reader.start()
        try:
            status: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            status = None
        _kill_group(proc.pid)
        proc.wait()
        reader.join(timeout=10)  # a process that left the group may still hold the pipe: don't wait for it
        proc.stdout.close()
        script.unlink()
        return status, b"".join(chunks).decode(errors="replace")

    def close(self) -> None:
        """End the page: stop what its blocks left running, restore the environment, remove the scratch."""
        try:
            left = self._stop_leftovers()
        finally:
            if self._saved_env is not None:
                from crucial.client import _default

                _default.reset_clients()
                for k, v in self._saved_env.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
            if self.cluster is not None:
                self.cluster.stop()
            shutil.rmtree(self.tmp, ignore_errors=True)
        if left:
            raise AssertionError(f"{self.page}: its blocks left processes running (killed now): " + "; ".join(left))

    def _stop_leftovers(self) -> list[str]:
        """Stop the per-user node a page started (as `sshell --stop-dso` would), then whatever else is left."""
        node_file = self.tmp / "home" / ".cache" / "crucial" / "dso"
        if node_file.exists():
            pid = dict(line.split("=", 1) for line in node_file.read_text().splitlines() if "=" in line).get("PID", "")
            if pid.isdigit() and int(pid) in marked_processes(self.token):
                with contextlib.suppress(OSError):
                    os.kill(int(pid), signal.SIGTERM)
        wait_for_exit(marked_processes(self.token), LEFTOVER_GRACE)
        left = marked_processes(self.token)
        for pid in left:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        return [f"pid {pid}: {cmdline}" for pid, cmdline in left.items()]


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pgid, signal.SIGKILL)


def marked_processes(token: str) -> dict[int, str]:
    """The processes (pid -> command line) whose environment carries the page's marker."""
    needle = f"{MARKER}={token}".encode()
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            with open(f"/proc/{entry}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":  # a zombie has ended; its parent reaps it
                    continue
        except OSError:
            continue
        found[int(entry)] = cmdline
    return found


def wait_for_exit(pids: Iterable[int], timeout: float) -> None:
    """Wait until every process in ``pids`` has exited, or ``timeout`` seconds (pidfds: no polling)."""
    fds = []
    for pid in pids:
        with contextlib.suppress(OSError):
            fds.append(os.pidfd_open(pid))
    try:
        deadline = time.monotonic() + timeout
        pending = list(fds)
        while pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            ready, _, _ = select.select(pending, [], [], remaining)
            pending = [fd for fd in pending if fd not in ready]
    finally:
        for fd in fds:
            os.close(fd)


# --------------------------------------------------------------------------- Sybil: documents, evaluators


class Page(Document):
    """A Markdown page whose blocks share a :class:`PageSession` (made when its first block runs)."""

    def __init__(self, text: str, path: str) -> None:
        super().__init__(text, path)
        self.relpath = _relative(path)
        self.namespace["__name__"] = "docs." + re.sub(r"\W", "_", self.relpath)  # not importable: code travels by value
        self.namespace["__file__"] = path
        self.session: PageSession | None = None

    def open_session(self) -> PageSession:
        if self.session is None:
            self.session = PageSession(self.relpath)
            _open.add(self)
        return self.session

    def close_session(self) -> None:
        session, self.session = self.session, None
        _open.discard(self)
        if session is not None:
            session.close()


_open: set[Page] = set()


@atexit.register
def _close_all() -> None:  # an interrupted run still stops the nodes and removes the scratch
    for page in list(_open):
        with contextlib.suppress(Exception):
            page.close_session()


def _page(example: Example) -> Page:
    assert isinstance(example.document, Page), "the docs Sybil parses pages as docs_harness.Page"
    return example.document


def evaluate_console(example: Example) -> str | None:
    """Run a console block's commands in one bash; compare each command's output with the page's."""
    page = _page(example)
    commands = parse_console(str(example.parsed))
    mark = f"@@docs-{uuid.uuid4().hex}@@"
    status, output = page.open_session().run_bash(_script(commands, mark))
    STATS["console blocks"] += 1
    problems = []
    for i, (command, (got, code)) in enumerate(zip(commands, _split_output(output, mark, len(commands)), strict=True)):
        line = example.line + 1 + command.line
        if code is None:
            why = f"the block ended here, exit status {status}" if status is not None else f"killed after {BLOCK_TIMEOUT:g} s"
            problems.append(_mismatch(page.relpath, line, command, got, why))
            break
        STATS["commands compared"] += 1
        if not output_matches(command.expected, got):
            problems.append(_mismatch(page.relpath, line, command, got, "output differs"))
        next_shows = i + 1 < len(commands) and commands[i + 1].shows_status
        if code != 0 and not (command.shows_status or next_shows):
            problems.append(
                _mismatch(page.relpath, line, command, got, f"exit status {code} (show it with `echo $?` if it is meant)")
            )
    return "\n\n".join(problems) or None


def _mismatch(page: str, line: int, command: Command, got: str, why: str) -> str:
    shown, printed = _indent(command.expected or "(no output)"), _indent(got.rstrip() or "(nothing)")
    return f"{page}:{line}: $ {command.text}\n  {why}\n  page shows:\n{shown}\n  it printed:\n{printed}"


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def evaluate_script(example: Example) -> str | None:
    """Run a sh/bash block as one script (``set -e``); it must exit 0."""
    page = _page(example)
    status, output = page.open_session().run_bash("set -e\n" + str(example.parsed))
    STATS["script blocks"] += 1
    if status == 0:
        return None
    why = f"killed after {BLOCK_TIMEOUT:g} s" if status is None else f"exit status {status}"
    return f"{page.relpath}:{example.line}: the block failed ({why}); it printed:\n{_indent(output.rstrip() or '(nothing)')}"


def _python_in_session(evaluator: Callable[[Example], str | None], kind: str) -> Callable[[Example], str | None]:
    def evaluate(example: Example) -> str | None:
        _page(example).open_session().activate_python()
        STATS[kind] += 1
        return evaluator(example)

    return evaluate


class PythonBlocks:
    """Sybil's parser of ```python blocks (plain code, or doctests when they start with ``>>>``), run in the page's session."""

    def __init__(self) -> None:
        self.parser = PythonCodeBlockParser(doctest_optionflags=DOCTEST_FLAGS)

    def __call__(self, document: Document) -> Iterator[Region]:
        for region in self.parser(document):
            kind = "python examples compared" if isinstance(region.parsed, doctest.Example) else "python blocks"
            assert region.evaluator is not None
            region.evaluator = _python_in_session(region.evaluator, kind)
            yield region


def _setup(namespace: dict[str, Any]) -> None:
    """Nothing to do before a page: its session starts with its first block that runs."""


def _teardown(namespace: dict[str, Any]) -> None:
    for page in [p for p in _open if p.namespace is namespace]:
        page.close_session()


def page_sybil(root: Path = ROOT, patterns: Iterable[str] = PATTERNS) -> Sybil:
    """The Sybil that collects the pages (README.md and docs/*.md; the repository's root conftest.py uses it)."""
    parsers: list[Any] = [
        SkipParser(),
        PythonBlocks(),
        CodeBlockParser("console", evaluate_console),
        *(CodeBlockParser(language, evaluate_script) for language in SHELL_LANGUAGES),
    ]
    return Sybil(
        parsers=parsers,
        patterns=list(patterns),
        path=str(root),
        setup=_setup,
        teardown=_teardown,
        document_types={".md": Page},
        name="docs",
    )


# --------------------------------------------------------------------------- reporting (pytest hooks)


def is_skip_directive(example: Example) -> bool:
    return isinstance(example.region.evaluator, Skipper)


def reported_skip(example: Example, longrepr: tuple[str, int, str]) -> tuple[str, int, str]:
    """A skip as the report shows it: at the block's page and line, with the page's reason."""
    return (_relative(example.path), example.line, longrepr[2])


_outcomes: collections.Counter[str] = collections.Counter()
_pages: set[str] = set()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """Report a skipped block at its page and line (not in Sybil's code), and count blocks for the summary."""
    report = yield
    if isinstance(item, SybilItem) and not is_skip_directive(item.example):
        if report.skipped and isinstance(report.longrepr, tuple):
            report.longrepr = reported_skip(item.example, report.longrepr)
        if report.when == "call" or report.skipped:
            _outcomes[report.outcome] += 1
            _pages.add(item.example.path)
    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _outcomes:
        terminalreporter.write_line(summary_line(dict(_outcomes), len(_pages)))


def summary_line(outcomes: dict[str, int], pages: int) -> str:
    """``docs: N examples on P pages: R ran (…), S skipped, F failed`` -- from the run's own counts."""
    ran = outcomes.get("passed", 0) + outcomes.get("failed", 0)
    return (
        f"docs: {ran + outcomes.get('skipped', 0)} examples on {pages} pages: {ran} ran "
        f"({STATS['console blocks']} console blocks of {STATS['commands compared']} commands and "
        f"{STATS['python examples compared']} Python doctest examples, their output compared; "
        f"{STATS['script blocks']} shell scripts and {STATS['python blocks']} Python blocks, which must succeed), "
        f"{outcomes.get('skipped', 0)} skipped (the summary below gives each one's page, line and reason), "
        f"{outcomes.get('failed', 0)} failed"
    )
