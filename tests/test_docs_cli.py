"""The command line against its documentation, both ways, read from the commands themselves.

Every command of ``crucial`` (click's command tree, subcommands of
subcommands included) and ``sshell`` must have an options table in README.md
or docs/*.md: a Markdown table right after ``<!-- options: PROG [SUBCOMMAND…] -->``,
whose first column names the options (`` `-f`, `--file FILE` ``).  The table
must list every option the command has, and nothing it lacks; ``--help`` may
be listed, and need not be.  Every invocation the pages show (`` `crucial
server --port 0` `` in a sentence, ``$ sshell --debug …`` in a block) may
only use options its command has.  So a new option needs one line of docs,
and the failure says which line, where.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from crucial._commands import cli
from crucial.shell.sshell import sshell
from docs_harness import PATTERNS, ROOT

MARKER = re.compile(r"^<!-- options: (?P<command>[\w ./-]+?) -->\s*$", re.M)
OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")
INLINE_CODE = re.compile(r"`((?:[^`\n]|\n(?![ \t]*\n))+)`")  # a code span may wrap, not cross a blank line
FENCE = re.compile(r"^\s*```[^\n]*\n(.*?)^\s*```", re.M | re.S)
INVOCATION = re.compile(r"(?:^|[\s;|&(`])(?:\$ )?(crucial|sshell)(?=\s)")
SHELL_END = re.compile(r"\s(?:\||;|&&|>|<(?=[\s<])|#|\))")  # where a command's words end (`<word>` is a placeholder)


def pages() -> list[Path]:
    return sorted(p for pattern in PATTERNS for p in ROOT.glob(pattern))


def tree() -> dict[str, click.Command]:
    """Every command line by name: ``crucial``, ``crucial server``, …, ``sshell``."""
    found: dict[str, click.Command] = {}

    def walk(name: str, command: click.Command) -> None:
        found[name] = command
        if isinstance(command, click.Group):
            for sub_name, sub in sorted(command.commands.items()):
                if not sub.hidden:
                    walk(f"{name} {sub_name}", sub)

    walk("crucial", cli)
    walk("sshell", sshell)
    return found


def options(command: click.Command) -> dict[str, click.Parameter]:
    """Option string -> parameter, for every option a user may pass (hidden ones left out)."""
    return {
        opt: param
        for param in command.params
        if isinstance(param, click.Option) and not param.hidden
        for opt in (*param.opts, *param.secondary_opts)
    }


def help_options(command: click.Command) -> set[str]:
    ctx = click.Context(command, **command.context_settings)
    option = command.get_help_option(ctx)
    return set(option.opts) if option is not None else set()


@dataclass(frozen=True)
class Table:
    page: Path
    line: int
    options: frozenset[str]

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def tables() -> dict[str, list[Table]]:
    """Command -> its options tables (a marker followed by prose, not a table, documents no options)."""
    found: dict[str, list[Table]] = {}
    for page in pages():
        text = page.read_text()
        for m in MARKER.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            rows = []
            for row in text[m.end() :].lstrip("\n").splitlines():
                if not row.startswith("|"):
                    break
                rows.append(row)
            first_cells = [r.strip("|").split(" | ")[0] for r in rows[2:]]  # past the header and the |---| line
            opts = frozenset(o for cell in first_cells for o in OPTION.findall(cell))
            found.setdefault(m.group("command"), []).append(Table(page, line, opts))
    return found


def invocations() -> Iterator[tuple[str, int, str]]:
    """(page, line, text) of every `crucial …`/`sshell …` in inline code and code blocks."""
    for page in pages():
        text = page.read_text()
        spans = [(m.start(1), m.group(1)) for m in FENCE.finditer(text)]
        prose = FENCE.sub(lambda f: " " * len(f.group()), text)
        spans += [(m.start(1), m.group(1).replace("\n", " ")) for m in INLINE_CODE.finditer(prose)]
        for start, span in spans:
            for offset, line_text in _lines(span):
                for m in INVOCATION.finditer(line_text):
                    line = text.count("\n", 0, start + offset) + 1
                    yield f"{page.relative_to(ROOT)}:{line}", line, line_text[m.start(1) :]


def _lines(span: str) -> Iterator[tuple[int, str]]:
    offset = 0
    for line in span.splitlines(keepends=True):
        yield offset, line
        offset += len(line)


def used_options(commands: dict[str, click.Command], text: str) -> tuple[str, list[str]] | None:
    """The command an invocation names and the options it passes, as its parser would take them."""
    text = SHELL_END.split(" " + text, maxsplit=1)[0].strip()
    try:
        words = shlex.split(text)
    except ValueError:  # an unbalanced quote in a sentence
        words = text.split()
    words = [w.strip("[]") for w in words]
    name, rest = words[0], words[1:]
    command = commands[name]
    while isinstance(command, click.Group) and rest and f"{name} {rest[0]}" in commands:
        name = f"{name} {rest[0]}"
        command, rest = commands[name], rest[1:]
    if name == "crucial ipc":
        return None  # the verbs' own options: sshell.md's reference, checked by the verbs' tests
    known = options(command)
    used, i = [], 0
    while i < len(rest):
        word = rest[i]
        if not word.startswith("-") or word == "-":
            if not command.params or all(isinstance(p, click.Option) for p in command.params):
                i += 1  # a placeholder such as <address>: this command takes no arguments
                continue
            break  # the first argument: for sshell, the words of CMD start here
        opt = word.split("=", 1)[0]
        used.append(opt)
        param = known.get(opt)
        takes_value = param is not None and not getattr(param, "is_flag", False) and "=" not in word
        i += 2 if takes_value else 1
    return name, used


# --------------------------------------------------------------------------- the tests


COMMANDS = tree()


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_of_the_command_is_documented_and_every_documented_one_exists(name: str) -> None:
    command = COMMANDS[name]
    found = tables().get(name, [])
    assert found, (
        f"`{name}` has no options table in the docs: add `<!-- options: {name} -->` followed by a table of its "
        f"options (first column `--option VALUE`) to {'docs/sshell.md' if name == 'sshell' else 'docs/cli.md'}"
    )
    assert len(found) == 1, f"`{name}` has several options tables ({', '.join(t.where for t in found)}): keep one"
    table = found[0]
    have, helps = set(options(command)), help_options(command)
    undocumented = sorted(have - helps - table.options)
    assert not undocumented, "\n".join(
        f"`{name} {opt}` is not documented: add a row for it to the options table at {table.where} "
        f"(its help: {options(command)[opt].help or 'none'!r})"
        for opt in undocumented
    )
    unknown = sorted(table.options - have - helps)
    assert not unknown, f"the options table at {table.where} lists {', '.join(unknown)}, which `{name}` does not have"


def test_every_options_table_names_a_command() -> None:
    strays = [t.where + f" ({name})" for name, found in tables().items() if name not in COMMANDS for t in found]
    assert not strays, f"options tables for commands that do not exist: {strays}"


def test_every_invocation_in_the_docs_uses_options_its_command_has() -> None:
    checked, wrong = 0, []
    for where, _, text in invocations():
        parsed = used_options(COMMANDS, text)
        if parsed is None:
            continue
        name, used = parsed
        known = set(options(COMMANDS[name])) | help_options(COMMANDS[name])
        checked += 1
        wrong += [f"{where}: `{name} {opt}` (in `{text.strip()}`)" for opt in used if opt not in known]
    assert checked > 20, f"only {checked} invocations found: is the search broken?"
    assert not wrong, "options the commands do not have:\n" + "\n".join(wrong)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_works_and_shows_every_documented_option(name: str) -> None:
    prog, *path = name.split()
    root = cli if prog == "crucial" else sshell
    result = CliRunner().invoke(root, [*path, "--help"], prog_name=prog)
    assert result.exit_code == 0, result.output
    # `crucial ipc` parses its verbs itself (no click: a shell verb must start fast) and says "usage:" as argparse
    usage = "usage" if name == "crucial ipc" else "Usage"
    assert result.output.startswith(f"{usage}: {name} "), result.output[:200]
    for table in tables().get(name, []):
        missing = [opt for opt in table.options if opt not in result.output]
        assert not missing, f"`{name} --help` does not show {missing} (documented at {table.where})"


# --------------------------------------------------------------------------- the checker itself


def test_the_checker_reads_options_as_the_parser_does() -> None:
    @click.command(context_settings={"help_option_names": ["-h", "--help"]})
    @click.option("--alpha", is_flag=True)
    @click.option("-b", "--beta", default=1)
    @click.argument("cmd", nargs=-1)
    def shell(alpha: bool, beta: int, cmd: tuple[str, ...]) -> None:
        """Options, then the words of a command."""

    @click.command()
    @click.option("--host", default="x")
    def server(host: str) -> None:
        """Options only."""

    assert set(options(shell)) == {"--alpha", "-b", "--beta"} and help_options(shell) == {"-h", "--help"}
    commands = {"sshell": shell, "crucial": server}
    assert used_options(commands, "sshell -b 3 --alpha echo --not-mine | x") == ("sshell", ["-b", "--alpha"])
    assert used_options(commands, "sshell [--beta N] [--gamma]") == ("sshell", ["--beta", "--gamma"])
    assert used_options(commands, "crucial --host <an address> --port 7000; x") == ("crucial", ["--host", "--port"])
    assert OPTION.findall("`-f`, `--file FILE`") == ["-f", "--file"]
