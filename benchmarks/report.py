"""Run every benchmark, keep its results, and write the results pages: tables and a chart of the ratios.

    python benchmarks/report.py [--quick (default) | --smoke | --full] [--only a,b] [--skip a,b]
                                [--from FILE.jsonl] [--no-docs] [--chart PATH]

1. **Runs** each benchmark script -- every ``benchmarks/NAME.py`` whose name
   does not start with ``_`` (this one excepted), in name order -- as its
   own process with ``--quick`` (or ``--smoke``, or nothing for ``--full``),
   one at a time; a script's progress goes to
   ``benchmarks/results/<stamp>/NAME.log``.
2. **Keeps** each script's JSON line (its last line of stdout) in
   ``benchmarks/results/<date>-<commit>-<mode>.jsonl``, one line per script;
   a script that fails leaves ``{"benchmark": NAME, "error": ...}`` there.
3. **Writes** the summary table of ``docs/benchmarks.md`` and the tables of
   README.md's "Measured against the peers" between the lines
   ``<!-- generated:benchmarks -->`` and ``<!-- /generated -->`` (nothing else
   in those files changes), and **draws** ``docs/benchmarks.png``: each
   figure that has a goal, as its ratio divided by the goal (left of the
   line: the goal is met), with matplotlib (the ``bench`` extra).

``--from FILE.jsonl`` skips the runs and writes the pages from kept
results (``--from`` several times merges files, the last one winning per
benchmark); ``--compare EARLIER.jsonl`` adds a *before* column to
docs/benchmarks.md's table (the same figures from an earlier run, e.g. of
the previous commit).

Adding a benchmark: write ``benchmarks/NAME.py`` that takes ``--quick`` and
``--smoke`` (``_common.parser`` gives them, with ``--runs``) and prints, as
its last line of stdout, one JSON object with ``"benchmark": "NAME"``, its
figures, ``"goals": {"ratio_vs_x": "<= 1.0", ...}`` and ``"labels":
{"ratio_vs_x": "what is compared, in words", ...}`` (``_common.emit`` and
``_common.meta`` add the rest).  This script and ``tests/test_benchmarks.py``
(which runs its ``--smoke``) find it by its name; add its expected keys to
that test's ``EXPECTED``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
DOC = REPO / "docs" / "benchmarks.md"
README = REPO / "README.md"
CHART = REPO / "docs" / "benchmarks.png"
BEGIN, END = "<!-- generated:benchmarks -->", "<!-- /generated -->"

#: README's tables: (title, benchmarks) in this order; docs/benchmarks.md has every benchmark
README_GROUPS = [
    ("The DSO against Redis", ["dso_latency", "dso_throughput", "barrier", "scaleout"]),
    ("Cloud threads", ["invoke", "montecarlo"]),
    ("The serverless shell", ["sshell"]),
    ("Stateful applications", ["kmeans", "logreg", "santa", "randomforest", "porting"]),
]


def scripts() -> list[str]:
    """Every benchmark script, by name."""
    return sorted(p.stem for p in HERE.glob("*.py") if not p.name.startswith("_") and p.stem != "report")


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def git_commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


# --------------------------------------------------------------------------- running


def run_one(name: str, mode: str, logdir: Path, timeout: float) -> dict[str, Any]:
    """Run ``benchmarks/NAME.py`` in ``mode``; its JSON line, or a record of its failure."""
    flag = [] if mode == "full" else [f"--{mode}"]
    logfile = logdir / f"{name}.log"
    t0 = time.monotonic()
    with open(logfile, "w") as err:
        try:
            proc = subprocess.run(
                [sys.executable, str(HERE / f"{name}.py"), *flag],
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            return {"benchmark": name, "error": f"no result within {timeout:.0f} s (log: {logfile})"}
    seconds = round(time.monotonic() - t0, 1)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"benchmark": name, "error": f"exit {proc.returncode} after {seconds} s (log: {logfile})"}
    try:
        result = json.loads(lines[-1])
    except ValueError:
        return {"benchmark": name, "error": f"its last line is not JSON (log: {logfile})"}
    result.setdefault("benchmark", name)
    result.setdefault("date", datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    result.setdefault("commit", git_commit())
    result["report_seconds"] = seconds
    return result


def run_all(names: list[str], mode: str, timeout: float, results: Path = RESULTS) -> Path:
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H%M%SZ")
    results.mkdir(parents=True, exist_ok=True)
    logdir = results / stamp
    logdir.mkdir()
    kept = results / f"{stamp}-{git_commit()}-{mode}.jsonl"
    for name in names:
        log(f"== {name} ({mode}) ...")
        result = run_one(name, mode, logdir, timeout)
        with open(kept, "a") as f:
            f.write(json.dumps(result) + "\n")
        log(f"   {result.get('error') or 'done'}")
    return kept


def load(paths: list[Path]) -> dict[str, dict[str, Any]]:
    """The last result of each benchmark in these files."""
    out: dict[str, dict[str, Any]] = {}
    for path in paths:
        for line in path.read_text().splitlines():
            if line.strip():
                result = json.loads(line)
                out[result["benchmark"]] = result
    return out


# --------------------------------------------------------------------------- pages


def parse_goal(goal: str) -> tuple[str, float]:
    m = re.fullmatch(r"\s*(<=|>=)\s*([0-9.]+)\s*", goal)
    if not m:
        raise ValueError(f"goal {goal!r} is not '<= X' or '>= X'")
    return m.group(1), float(m.group(2))


def met(value: Any, goal: str) -> bool | None:
    if not isinstance(value, (int, float)):
        return None
    op, bound = parse_goal(goal)
    return value <= bound if op == "<=" else value >= bound


def fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def rows(result: dict[str, Any]) -> list[tuple[str, str, Any, str, str]]:
    """(benchmark, what, value, goal, met) for each labelled figure (goals first), or the error."""
    name = result["benchmark"]
    if "error" in result:
        return [(name, "did not run", None, "", result["error"])]
    goals: dict[str, str] = result.get("goals") or {}
    labels: dict[str, str] = result.get("labels") or {}
    keys = list(goals) + [k for k in labels if k not in goals]
    out = []
    for key in keys:
        value = result.get(key)
        goal = goals.get(key, "")
        ok = met(value, goal) if goal else None
        out.append((name, labels.get(key, key), value, goal.replace("<=", "≤").replace(">=", "≥"), fmt(ok) if goal else ""))
    return out


def table(results: dict[str, dict[str, Any]], names: list[str], before: dict[str, dict[str, Any]] | None = None) -> str:
    """The Markdown table of these benchmarks' figures; with ``before``, a column of the same figures then."""
    head = "| benchmark | figure | before | value | goal | met |" if before else "| benchmark | figure | value | goal | met |"
    lines = [head, "|---|---|---|---|---|---|" if before else "|---|---|---|---|---|"]
    for name in names:
        if name in results:
            keys = _keys(results[name])
            for (bench, what, value, goal, ok), key in zip(rows(results[name]), keys or [None], strict=False):
                then = f" {fmt((before or {}).get(name, {}).get(key)) if key else ''} |" if before else ""
                lines.append(f"| `{bench}` | {what} |{then} {fmt(value)} | {goal} | {ok} |")
    return "\n".join(lines)


def _keys(result: dict[str, Any]) -> list[str]:
    goals, labels = result.get("goals") or {}, result.get("labels") or {}
    return [] if "error" in result else list(goals) + [k for k in labels if k not in goals]


def provenance(results: dict[str, dict[str, Any]]) -> str:
    runs = [r for r in results.values() if "error" not in r]
    if not runs:
        return "No benchmark ran."
    dates = sorted(r["date"] for r in runs if r.get("date")) or ["?" * 16]
    commits = sorted({r["commit"] for r in runs if r.get("commit")}) or ["?"]
    modes = sorted({r.get("mode", "full") for r in runs})
    loads = [r["loadavg_1m_before"] for r in runs if isinstance(r.get("loadavg_1m_before"), (int, float))]
    cores = sorted({r.get("cores") for r in runs if r.get("cores")})
    text = (
        f"Measured {dates[0][:16].replace('T', ' ')} to {dates[-1][11:16]} UTC at commit {', '.join(commits)}, "
        f"mode {'/'.join(modes)}, {'/'.join(map(str, cores))} cores"
    )
    if loads:
        text += f", load average {min(loads):g} to {max(loads):g} before the scripts"
    return text + " (`python benchmarks/report.py`; ratios are crucial / peer in the same run)."


def replace_region(path: Path, body: str) -> bool:
    """Put ``body`` between the markers of ``path``; False (and nothing written) when they are missing."""
    text = path.read_text()
    start = text.find(BEGIN)
    end = text.find(END, start) if start >= 0 else -1  # the first END after BEGIN: other regions use it too
    if end < 0:
        log(f"{path}: no {BEGIN} ... {END} region; left alone")
        return False
    path.write_text(text[: start + len(BEGIN)] + "\n" + body.strip() + "\n" + text[end:])
    return True


def write_pages(
    results: dict[str, dict[str, Any]],
    chart: Path,
    doc_path: Path = DOC,
    readme_path: Path = README,
    before: dict[str, dict[str, Any]] | None = None,
) -> None:
    every = scripts()
    named = [n for n in every if n in results] + sorted(set(results) - set(every))
    doc = [provenance(results)]
    if before:
        doc.append(f"The *before* column: {provenance(before)[0].lower()}{provenance(before)[1:]}")
    doc += ["", table(results, named, before), "", f"![ratios against the goals]({chart.name})"]
    replace_region(doc_path, "\n".join(doc))
    readme = [provenance(results)]
    for title, group in README_GROUPS:
        present = [n for n in group if n in results]
        if present:
            readme += ["", f"{title}:", "", table(results, present)]
    rest = [n for n in named if not any(n in group for _, group in README_GROUPS)]
    if rest:
        readme += ["", "Other benchmarks:", "", table(results, rest)]
    readme += ["", f"The chart: `docs/{chart.name}`; commands, raw results and profiles: `docs/benchmarks.md`."]
    replace_region(readme_path, "\n".join(readme))


def draw(results: dict[str, dict[str, Any]], path: Path) -> None:
    """A horizontal bar per goal: ratio / goal (≤ goal) or goal / ratio (≥ goal); left of 1 the goal is met."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is missing (pip install 'crucial[bench]'): no chart")
        return
    bars: list[tuple[str, float, str, bool]] = []
    for name in sorted(results):
        result = results[name]
        labels = result.get("labels") or {}
        for key, goal in (result.get("goals") or {}).items():
            value = result.get(key)
            if not isinstance(value, (int, float)) or value <= 0:
                continue
            op, bound = parse_goal(goal)
            score = value / bound if op == "<=" else bound / value
            text = f"{fmt(value)} (goal {goal.replace('<=', '≤').replace('>=', '≥')})"
            bars.append((f"{name}: {labels.get(key, key)}", score, text, score <= 1.0))
    if not bars:
        return
    fig, ax = plt.subplots(figsize=(11, 0.42 * len(bars) + 1.4))
    ys = range(len(bars))[::-1]
    ax.barh(list(ys), [b[1] for b in bars], color=["#2e8b57" if b[3] else "#c0392b" for b in bars])
    ax.set_yticks(list(ys), [b[0][:80] for b in bars], fontsize=8)
    for y, bar in zip(ys, bars, strict=True):
        ax.text(bar[1], y, f"  {bar[2]}", va="center", fontsize=7)
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("ratio ÷ goal (≤ goals) or goal ÷ ratio (≥ goals): left of the line, the goal is met; log scale")
    ax.set_title(provenance(results).split(" (")[0], fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    log(f"chart: {path}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="each script's --quick (the default)")
    mode.add_argument("--smoke", action="store_true", help="each script's --smoke: checks that all run (figures mean nothing)")
    mode.add_argument("--full", action="store_true", help="each script's full run (an hour or more)")
    p.add_argument("--only", default="", help="comma-separated benchmarks to run (default: all)")
    p.add_argument("--skip", default="", help="comma-separated benchmarks not to run")
    p.add_argument("--from", dest="sources", action="append", type=Path, default=[], help="write the pages from kept results")
    p.add_argument("--compare", action="append", type=Path, default=[], help="kept results of an earlier run: a 'before' column")
    p.add_argument("--no-docs", action="store_true", help="run and keep the results; leave the pages alone")
    p.add_argument("--chart", type=Path, default=CHART, help=f"where to draw the chart (default {CHART.relative_to(REPO)})")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds a script may take (default 3600)")
    p.add_argument("--results", type=Path, default=RESULTS, help="where runs are kept (default benchmarks/results)")
    p.add_argument("--doc", type=Path, default=DOC, help="the page with the full table (default docs/benchmarks.md)")
    p.add_argument("--readme", type=Path, default=README, help="the page with the short tables (default README.md)")
    args = p.parse_args()
    run_mode = "smoke" if args.smoke else "full" if args.full else "quick"
    names = [n for n in scripts() if not args.only or n in args.only.split(",")]
    names = [n for n in names if n not in args.skip.split(",")]
    sources = list(args.sources)
    if not sources:
        unknown = set(filter(None, args.only.split(","))) - set(scripts())
        if unknown:
            p.error(f"no such benchmark: {', '.join(sorted(unknown))} (scripts: {', '.join(scripts())})")
        sources = [run_all(names, run_mode, args.timeout, args.results)]
        log(f"results kept in {sources[0]}")
    results = load(sources)
    if not args.no_docs:
        write_pages(results, args.chart, args.doc, args.readme, load(args.compare) if args.compare else None)
        draw(results, args.chart)
    print(json.dumps({"benchmark": "report", "results": str(sources[-1]), "benchmarks": sorted(results)}), flush=True)


if __name__ == "__main__":
    main()
