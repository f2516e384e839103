"""The pages' rules (docs/writing-docs.md), and the harness that runs their blocks (tests/docs_harness.py).

The blocks themselves are collected from README.md and docs/*.md by the
root conftest.py; here: every fence names a language, every skip gives its
reason, generated figures are fresh, no page points at one machine's paths,
and the harness does what writing-docs.md promises -- compares output,
reports skips at their page and line, stops what a page leaves running.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest
from sybil import Document
from sybil.parsers.markdown.lexers import RawFencedCodeBlockLexer

import docs_harness as h

ROOT = h.ROOT


def pages() -> list[Path]:
    return sorted(p for pattern in h.PATTERNS for p in ROOT.glob(pattern))


def _load_gen_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "scripts" / "gen_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen_docs = _load_gen_docs()


# --------------------------------------------------------------------------- the pages' rules


def test_every_fence_names_its_language() -> None:
    lexer = RawFencedCodeBlockLexer(info_pattern=re.compile(r"(?P<info>[^\n]*)\n"), mapping={"info": "info"})
    bare = []
    for page in pages():
        document = Document(page.read_text(), str(page))
        for region in lexer(document):
            if not region.lexemes["info"].strip():
                bare.append(f"{page.relative_to(ROOT)}:{document.text.count(chr(10), 0, region.start) + 1}")
    assert len(pages()) >= 10
    assert not bare, f"fences without a language (write `text` for what does not run): {bare}"


def test_every_skip_gives_its_reason() -> None:
    directive = re.compile(r"^[ \t]*<!--+\s*skip:\s*(\w+)(.*?)-->", re.M)
    found, silent = 0, []
    for page in pages():
        text = page.read_text()
        for m in directive.finditer(text):
            found += 1
            if m.group(1) != "end" and not re.fullmatch(r'\s*"[^"]{10,}"\s*', m.group(2)):
                silent.append(f"{page.relative_to(ROOT)}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)}")
    assert found >= 10
    assert not silent, f'skips must say why, as a string: <!-- skip: next "needs AWS credentials" -->: {silent}'


def test_generated_figures_are_fresh() -> None:
    stale = gen_docs.stale()
    assert not stale, f"generated regions out of date -- run `python scripts/gen_docs.py`: {stale}"


def test_an_inline_generated_region_does_not_start_a_line() -> None:
    wrong = []
    for page in pages():
        text = page.read_text()
        for m in gen_docs.REGION.finditer(text):
            at_line_start = m.start() == 0 or text[m.start() - 1] == "\n"
            if at_line_start and not m.group("body").startswith("\n"):
                wrong.append(f"{page.relative_to(ROOT)}:{text.count(chr(10), 0, m.start()) + 1}")
    assert not wrong, f"Markdown would read these lines as HTML blocks: move the marker after some text: {wrong}"


def test_gen_docs_rewrites_a_stale_region_and_leaves_unknown_ones_alone() -> None:
    text = (
        "counts <!-- generated:porting-pair montecarlo -->7 lines<!-- /generated --> and "
        "<!-- generated:benchmarks -->| old table |<!-- /generated -->"
    )
    new, changed = gen_docs.regenerate(text)
    assert changed == ["porting-pair montecarlo"]
    assert "7 lines" not in new and re.search(r"montecarlo -->\d+ changed lines of \d+ \(\d+\.\d %", new)
    assert "<!-- generated:benchmarks -->| old table |<!-- /generated -->" in new
    assert gen_docs.regenerate(new) == (new, [])


def test_no_page_points_at_one_machines_virtualenv() -> None:
    wrong = [
        f"{page.relative_to(ROOT)}:{n}: {line.strip()}"
        for page in pages()
        for n, line in enumerate(page.read_text().splitlines(), 1)
        if re.search(r"/work/|(?<![.\w])venv/bin/", line)
    ]
    assert not wrong, f"use the README's .venv (or plain commands): {wrong}"


# --------------------------------------------------------------------------- console blocks, pure


def test_a_console_block_is_commands_and_their_output() -> None:
    commands = h.parse_console("$ echo a \\\n>   b\na b\n$ true\n$ printf 'x\\ny'; echo $?\nx\ny0\n")
    assert [(c.line, c.text, c.expected) for c in commands] == [
        (0, "echo a \\\n  b", "a b"),
        (3, "true", ""),
        (4, "printf 'x\\ny'; echo $?", "x\ny0"),
    ]
    assert [c.shows_status for c in commands] == [False, False, True]
    with pytest.raises(h.ConsoleSyntaxError, match="output before any `\\$ ` command"):
        h.parse_console("orphan output\n$ true\n")


@pytest.mark.parametrize(
    ("expected", "got", "match"),
    [
        ("a\nb", "a\nb\n", True),
        ("a  ", "a", True),  # trailing blanks are ignored
        ("took ... ms", "took 12.5 ms", True),
        ("took … ms", "took 12.5 ms", True),  # the typographic ellipsis too
        ("first\n...\nlast", "first\n1\n2\nlast", True),
        ("id 5b0e…-0", "id 3ca7-0", False),  # text around an ellipsis must match
        ("", "", True),
        ("", "something", False),  # showing nothing means printing nothing
        ("a\nb", "a\nc", False),
    ],
)
def test_output_is_compared_as_doctest_does_with_ellipsis(expected: str, got: str, match: bool) -> None:
    assert h.output_matches(expected, got) is match


# --------------------------------------------------------------------------- the harness on a page of its own


PAGE = """\
# A page

```console
$ echo "hello from $(basename "$PWD" | cut -c1-5)"; echo $CRUCIAL_DSO | grep -c 127.0.0.1
hello from docs-
1
$ printf 'no newline'
no newline
$ false; echo "status $?"
status 1
```

```console
$ echo right
wrong
$ exit 3
```

<!-- skip: next "needs a cloud account" -->
```sh
exit 1
```

```python
>>> import crucial
>>> crucial.AtomicInt(key="n").add_and_get(2)
2
```

```sh
sleep 300 &
mkfifo up
setsid sh -c 'echo > up; exec sleep 301' < /dev/null > /dev/null 2>&1 &
read -r line < up
```
"""


def test_the_harness_runs_a_page_and_reports_it(tmp_path: Path) -> None:
    (tmp_path / "page.md").write_text(PAGE)
    (tmp_path / "conftest.py").write_text(
        textwrap.dedent("""
        from pathlib import Path
        from docs_harness import page_sybil, pytest_runtest_makereport, pytest_terminal_summary
        pytest_collect_file = page_sybil(Path(__file__).parent, ["*.md"]).pytest()
        """)
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRUCIAL_", "PYTEST_"))}
    env["PYTHONPATH"] = str(ROOT / "tests")
    env["DOCS_TEST_LEFTOVER_GRACE"] = "1"  # the page leaves a process on purpose: don't wait long for it
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-ra", "-p", "no:cacheprovider", "page.md"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = proc.stdout
    assert proc.returncode == 1, out
    # the failing block: the command whose output differs, and the one that exits 3 without showing it
    assert "page.md:14: $ echo right\n  output differs\n  page shows:\n    wrong\n  it printed:\n    right" in out, out
    assert "page.md:16: $ exit 3\n  the block ended here, exit status 3" in out, out
    # the skip, at its page and line, with the page's reason
    assert "SKIPPED [1] page.md:20: needs a cloud account" in out, out
    # the leftover: the setsid'd sleep left the block's process group, and fails the page at its end
    assert re.search(r"its blocks left processes running \(killed now\): pid \d+: sleep 301", out), out
    assert "docs: 6 examples on 1 pages: 5 ran (2 console blocks of 4 commands and 2 Python doctest examples" in out, out
    assert "1 skipped (the summary below gives each one's page, line and reason), 1 failed" in out, out
    assert "1 failed, 5 passed, 1 skipped, 1 error" in out, out
    assert "sleep 30" not in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
