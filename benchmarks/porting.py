"""How many lines moving each example to crucial changed: the seed's Table 4, measured on our pairs.

    python benchmarks/porting.py [--show-diff] [--examples DIR]

Every application is a pair: the single-machine original,
``src/crucial/examples/original/<name>.py`` (``threading``,
``concurrent.futures``), and its port, ``src/crucial/examples/<name>.py``.
For each pair this prints the port's size, the lines the port changed and
their share, beside the seed's figure for the Java original (Table 4), as a
Markdown table; the last line of stdout is a JSON object with
``<name>_pct`` (changed lines in % of the port's SLOC, ``null`` while a pair
is missing), ``<name>_changed``, ``<name>_sloc`` and ``<name>_original_sloc``.

A third file, ``src/crucial/examples/dropin/<name>.py``, is the original
ported through the drop-in modules (``crucial.threading``,
``crucial.concurrent.futures``, ...: imports changed, ``@shared`` added);
its column counts the same way (``<name>_dropin_pct``,
``<name>_dropin_changed``, ``max_dropin_pct``; "—" where there is none).

**SLOC** (source lines of code) of a file: its physical lines that hold at
least one Python token other than comments and layout (found with
``tokenize``), minus the lines of string-expression statements (module,
class and function docstrings, or any other bare string: found with
``ast``), each line with its comment cut off and trailing blanks removed.
Blank lines, comment lines and docstrings do not count; indentation does
(a re-indented line is a changed line); a multi-line expression counts once
per physical line.  Helper modules both sides import unchanged (such as
``examples/_timing.py``) are not counted: they would add the same lines to
both sides.

**Changed lines**: ``difflib.SequenceMatcher`` (no junk heuristic) aligns the
two SLOC sequences; each ``replace`` block counts ``max(old, new)`` lines,
an ``insert`` its new lines, a ``delete`` its old lines.  So a swapped line
counts once, and a line moved elsewhere counts twice (deleted, inserted).
The percentage is changed lines / SLOC of the port.  Runs in well under a
second, without network or DSO.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import io
import json
import sys
import tokenize
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "src" / "crucial" / "examples"

#: the seed's Table 4, in its order: name -> (application, total lines, changed lines)
SEED: dict[str, tuple[str, int, int]] = {
    "montecarlo": ("Monte Carlo", 44, 2),
    "mandelbrot": ("Mandelbrot", 88, 3),
    "logreg": ("Logistic regression", 430, 10),
    "kmeans": ("k-means", 329, 8),
    "santa": ("Santa Claus problem", 255, 15),
    "randomforest": ("Random forest", 9882, 378),
}

#: tokens that are layout, not code
_LAYOUT = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}


def _string_statements(tree: ast.AST, lines: Sequence[str]) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """The (start, end) positions of every bare string statement: docstrings are such statements.

    Positions are (row, character column), as ``tokenize`` gives them (``ast`` counts UTF-8 bytes).
    """

    def column(row: int, byte_offset: int) -> int:
        return len(lines[row - 1].encode()[:byte_offset].decode(errors="ignore"))

    spans = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            start = (node.lineno, column(node.lineno, node.col_offset))
            end_row = node.end_lineno or node.lineno
            spans.append((start, (end_row, column(end_row, node.end_col_offset or 0))))
    return spans


def sloc(source: str) -> list[str]:
    """The source lines of code of ``source`` (see the module docstring), in order."""
    lines = io.StringIO(source).readlines()  # split as tokenize splits: on newlines only
    docstrings = _string_statements(ast.parse(source), lines)
    code_rows: set[int] = set()
    comment_at: dict[int, int] = {}  # row -> column where its comment starts
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comment_at[tok.start[0]] = tok.start[1]
        elif tok.type not in _LAYOUT and not any(start <= tok.start < end for start, end in docstrings):
            code_rows.update(range(tok.start[0], tok.end[0] + 1))
    return [lines[row - 1][: comment_at.get(row)].rstrip() for row in sorted(code_rows)]


def changed_lines(original: Sequence[str], port: Sequence[str]) -> int:
    """Lines the port changed: replace -> max(old, new), insert -> new, delete -> old."""
    matcher = difflib.SequenceMatcher(None, original, port, autojunk=False)
    changed = 0
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op != "equal":
            changed += max(i2 - i1, j2 - j1)  # insert: i2 == i1; delete: j2 == j1
    return changed


@dataclass(frozen=True)
class Pair:
    """One application's measurement."""

    name: str
    sloc: int  # of the port
    original_sloc: int
    changed: int
    dropin_sloc: int | None = None  # of the port through the drop-in modules, when there is one
    dropin_changed: int | None = None

    @property
    def pct(self) -> float:
        return 100.0 * self.changed / self.sloc if self.sloc else 0.0

    @property
    def dropin_pct(self) -> float | None:
        if self.dropin_sloc is None or self.dropin_changed is None:
            return None
        return 100.0 * self.dropin_changed / self.dropin_sloc if self.dropin_sloc else 0.0


def paths(name: str, examples: Path) -> tuple[Path, Path]:
    """(original, port) of application ``name``."""
    return examples / "original" / f"{name}.py", examples / f"{name}.py"


def dropin_path(name: str, examples: Path) -> Path:
    """The original of ``name`` ported through the drop-in modules."""
    return examples / "dropin" / f"{name}.py"


def names(examples: Path) -> list[str]:
    """The seed's applications first, in its order, then any other pair that has an original."""
    extra = sorted(p.stem for p in (examples / "original").glob("*.py") if not p.stem.startswith("_") and p.stem not in SEED)
    return [*SEED, *extra]


def measure(name: str, examples: Path) -> Pair | None:
    """The pair's counts, or ``None`` while either side is missing."""
    original, port = paths(name, examples)
    if not (original.is_file() and port.is_file()):
        return None
    a, b = sloc(original.read_text()), sloc(port.read_text())
    dropin = dropin_path(name, examples)
    if not dropin.is_file():
        return Pair(name, len(b), len(a), changed_lines(a, b))
    c = sloc(dropin.read_text())
    return Pair(name, len(b), len(a), changed_lines(a, b), len(c), changed_lines(a, c))


def diff(name: str, examples: Path, port: Path | None = None) -> str:
    """The SLOC of the pair as a unified diff (what ``changed_lines`` counted); ``port``: another port of the original."""
    original, default = paths(name, examples)
    port = port or default
    a, b = sloc(original.read_text()), sloc(port.read_text())
    return "\n".join(difflib.unified_diff(a, b, _shown(original), _shown(port), n=1, lineterm=""))


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it is below it (shorter diff headers)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def missing_side(name: str, examples: Path) -> str:
    original, port = paths(name, examples)
    gone = [what for what, path in (("original", original), ("port", port)) if not path.is_file()]
    return "missing: " + " and ".join(gone)


def table(results: dict[str, Pair | None], examples: Path) -> str:
    """A Markdown table: ours beside the seed's."""
    rows = [
        "| Application | Total lines (SLOC of the port) | Changed lines | % "
        "| Drop-in modules: total, changed | Seed (Java): total, changed |",
        "|---|---:|---:|---:|---|---|",
    ]
    for name, pair in results.items():
        title, seed_total, seed_changed = SEED.get(name, (name, 0, 0))
        seed = f"{seed_total}, {seed_changed} ({100 * seed_changed / seed_total:.1f}%)" if seed_total else "—"
        if pair is None:
            rows.append(f"| {title} | {missing_side(name, examples)} | | | | {seed} |")
        else:
            dropin = "—" if pair.dropin_pct is None else f"{pair.dropin_sloc}, {pair.dropin_changed} ({pair.dropin_pct:.1f}%)"
            rows.append(f"| {title} | {pair.sloc} | {pair.changed} | {pair.pct:.1f}% | {dropin} | {seed} |")
    return "\n".join(rows)


def summary(results: dict[str, Pair | None]) -> dict[str, object]:
    """The JSON result: per application ``_pct``, ``_changed``, ``_sloc``, ``_original_sloc``."""
    out: dict[str, object] = {}
    for name, pair in results.items():
        out[f"{name}_pct"] = None if pair is None else round(pair.pct, 2)
        if pair is not None:
            out.update({f"{name}_changed": pair.changed, f"{name}_sloc": pair.sloc, f"{name}_original_sloc": pair.original_sloc})
            if pair.dropin_pct is not None:
                out.update({f"{name}_dropin_pct": round(pair.dropin_pct, 2), f"{name}_dropin_changed": pair.dropin_changed})
    present = [pair.pct for pair in results.values() if pair is not None]
    out["max_pct"] = round(max(present), 2) if present else None
    dropins = [pair.dropin_pct for pair in results.values() if pair is not None and pair.dropin_pct is not None]
    out["max_dropin_pct"] = round(max(dropins), 2) if dropins else None
    out["missing"] = [name for name, pair in results.items() if pair is None]
    out["seed"] = {name: {"total": total, "changed": changed} for name, (_, total, changed) in SEED.items()}
    return out


def main(argv: Iterable[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--show-diff", action="store_true", help="print each pair's SLOC diff before the table")
    parser.add_argument("--examples", type=Path, default=EXAMPLES, help=f"the examples package (default {EXAMPLES})")
    # accepted as every benchmark accepts them (benchmarks/report.py, the smoke tests): this one is always quick
    parser.add_argument("--quick", action="store_true", help="the same as without it: the table takes well under a second")
    parser.add_argument("--smoke", action="store_true", help="the same as without it")
    args = parser.parse_args(None if argv is None else list(argv))
    results = {name: measure(name, args.examples) for name in names(args.examples)}
    if args.show_diff:
        for name, pair in results.items():
            if pair is not None:
                print(f"## {name}: {pair.changed} changed lines\n{diff(name, args.examples)}\n")
            if pair is not None and pair.dropin_changed is not None:
                dropin = diff(name, args.examples, dropin_path(name, args.examples))
                print(f"## {name} through the drop-in modules: {pair.dropin_changed} changed lines\n{dropin}\n")
    print(table(results, args.examples))
    result = {"benchmark": "porting", **summary(results)}
    result["goals"] = {f"{name}_pct": "<= 5" for name in results}
    result["labels"] = {f"{name}_pct": f"porting {name}: lines changed, % of the port's SLOC" for name in results}
    result["mode"] = "smoke" if args.smoke else "quick" if args.quick else "full"
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
