"""Write the figures the docs quote from the code that measures them, between markers.

    python scripts/gen_docs.py            # rewrite every region this script knows
    python scripts/gen_docs.py --check    # exit 1, naming each stale region, and write nothing

A region is ``<!-- generated:NAME [ARG] -->…<!-- /generated -->`` in README.md
or docs/*.md; what lies between the markers is replaced.  The names:

* ``porting`` -- the changed-lines table of ``benchmarks/porting.py`` (the
  script's own Markdown table, whatever its columns);
* ``porting-range`` -- the smallest and largest changes over the pairs,
  "2-6 lines of it (2.4-4.8 %)" (with en dashes);
* ``porting-pair NAME`` -- one pair, "5 changed lines of 160 (3.1 %; the
  seed's: 8 of 329, 2.4 %)".

Regions with other names (``benchmarks``: ``benchmarks/report.py`` writes
those from measured results) are left alone.  An inline region must not
start a line: Markdown would take a line that starts with ``<!--`` for an
HTML block.  ``tests/test_docs.py`` fails when a region is stale.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path

__all__ = ["PAGES", "REGION", "generators", "main", "regenerate", "stale"]

ROOT = Path(__file__).resolve().parent.parent
PAGES = ("README.md", "docs/*.md")
REGION = re.compile(
    r"(?P<open><!-- generated:(?P<name>[\w-]+)(?: (?P<arg>[^>]*?))? -->)(?P<body>.*?)(?P<close><!-- /generated -->)", re.S
)


@cache
def porting() -> tuple[str, dict[str, object]]:
    """``benchmarks/porting.py``'s output: its Markdown table and its JSON result (the last line)."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "porting.py")], capture_output=True, text=True, check=True, timeout=120
    )
    *table, last = proc.stdout.strip().splitlines()
    return "\n".join(table).strip(), json.loads(last)


def _pairs() -> dict[str, dict[str, float]]:
    result = porting()[1]
    names = [key[: -len("_changed")] for key in result if key.endswith("_changed") and not key.endswith("_dropin_changed")]
    return {name: {k: float(result[f"{name}_{k}"]) for k in ("changed", "sloc", "pct")} for name in names}  # type: ignore[arg-type]


def porting_table(arg: str | None) -> str:
    return "\n\n" + porting()[0] + "\n\n"


def porting_range(arg: str | None) -> str:
    pairs = _pairs().values()
    changed = sorted(int(p["changed"]) for p in pairs)
    pct = sorted(p["pct"] for p in pairs)
    dash = "\N{EN DASH}"
    return f"{changed[0]}{dash}{changed[-1]} lines of it ({pct[0]:.1f}{dash}{pct[-1]:.1f} %)"


def porting_pair(arg: str | None) -> str:
    if not arg or arg not in _pairs():
        raise ValueError(f"porting-pair {arg!r}: no such pair (known: {', '.join(sorted(_pairs()))})")
    p = _pairs()[arg]
    text = f"{int(p['changed'])} changed lines of {int(p['sloc'])} ({p['pct']:.1f} %"
    seed = porting()[1].get("seed", {}).get(arg)  # type: ignore[union-attr]
    if seed:
        text += f"; the seed's: {seed['changed']} of {seed['total']}, {100 * seed['changed'] / seed['total']:.1f} %"
    return text + ")"


def generators() -> dict[str, Callable[[str | None], str]]:
    return {"porting": porting_table, "porting-range": porting_range, "porting-pair": porting_pair}


def pages() -> list[Path]:
    return sorted(p for pattern in PAGES for p in ROOT.glob(pattern))


def regenerate(text: str) -> tuple[str, list[str]]:
    """``text`` with every known region rewritten, and the regions that changed (``NAME ARG``)."""
    known, changed = generators(), []

    def fill(m: re.Match[str]) -> str:
        generate = known.get(m.group("name"))
        if generate is None:
            return m.group(0)
        body = generate(m.group("arg"))
        if body != m.group("body"):
            changed.append(" ".join(filter(None, (m.group("name"), m.group("arg")))))
        return m.group("open") + body + m.group("close")

    return REGION.sub(fill, text), changed


def stale() -> list[str]:
    """``page: region`` for every region whose text is not what the code gives today."""
    found = []
    for page in pages():
        _, changed = regenerate(page.read_text())
        found += [f"{page.relative_to(ROOT)}: {name}" for name in changed]
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="list stale regions and exit 1 if any; write nothing")
    args = parser.parse_args(argv)
    if args.check:
        found = stale()
        for line in found:
            print(f"stale: {line}")
        return 1 if found else 0
    for page in pages():
        text = page.read_text()
        new, changed = regenerate(text)
        if changed:
            page.write_text(new)
            print(f"{page.relative_to(ROOT)}: {', '.join(changed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
