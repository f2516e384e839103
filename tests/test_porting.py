"""benchmarks/porting.py: the SLOC and changed-line counts on hand-made pairs, and every example pair within 5 %.

The counting is checked on sources written here, where the right answer is
known line by line; the repository's pairs are then measured with the same
code, and each must change at most 5 % of its port's lines.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parent.parent


def _load() -> ModuleType:
    """benchmarks/ is not a package: load the script as a module."""
    spec = importlib.util.spec_from_file_location("porting", REPO / "benchmarks" / "porting.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["porting"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


porting = _load()


def src(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


# -- SLOC ----------------------------------------------------------------------------------------


def test_sloc_drops_comments_blank_lines_and_docstrings() -> None:
    source = src('''
        #!/usr/bin/env python
        """Module docstring,
        on two lines."""

        import threading  # a trailing comment goes

        # a comment line goes
        class Counter:
            """Class docstring."""

            def add(self, n):
                """Function docstring."""
                "a bare string statement is no code either"
                return n  # so does this one
    ''')
    assert porting.sloc(source) == ["import threading", "class Counter:", "    def add(self, n):", "        return n"]


def test_sloc_keeps_strings_that_are_code_and_hashes_inside_strings() -> None:
    source = src('''
        TEXT = """not a docstring:
        # this line is inside a string
        """
        url = "http://x/#anchor"  # the comment is cut, the hash in the string stays
        call(
            1,

            2,  # two
        )
    ''')
    assert porting.sloc(source) == [
        'TEXT = """not a docstring:',
        "# this line is inside a string",
        '"""',
        'url = "http://x/#anchor"',
        "call(",
        "    1,",
        "    2,",
        ")",
    ]


def test_sloc_keeps_indentation() -> None:
    assert porting.sloc("if x:\n    y = 1\n") == ["if x:", "    y = 1"]
    assert porting.sloc("") == []


def test_sloc_positions_survive_non_ascii_text_and_form_feeds() -> None:
    # ast counts columns in UTF-8 bytes, tokenize in characters; str.splitlines() would also split at \f
    source = 'é = "ü"; "a bare string after code"\n\f\nx = "\f"  # ü\n'
    assert porting.sloc(source) == ['é = "ü"; "a bare string after code"', 'x = "\f"']


# -- changed lines ------------------------------------------------------------------------------

BASE = ["import threading", "class A:", "    pass", "t = threading.Thread()", "t.start()", "t.join()"]


@pytest.mark.parametrize(
    ("port", "changed"),
    [
        (BASE, 0),
        (["import threading", "class A:", "    pass", "t = crucial.CloudThread()", "t.start()", "t.join()"], 1),  # one swapped
        (["import threading", "import crucial", "@crucial.shared", *BASE[1:]], 2),  # two inserted
        (BASE[:-1], 1),  # one deleted
        (["import crucial", "@crucial.shared", *BASE[1:]], 2),  # replace 1 line by 2: max(1, 2)
        (["import crucial", *BASE[1:3], "t = 1", "u = 2", "v = 3"], 4),  # two blocks: 1 + max(3, 3)
        ([*BASE[1:], BASE[0]], 2),  # a moved line: deleted and inserted
        ([], 6),
    ],
)
def test_changed_lines(port: list[str], changed: int) -> None:
    assert porting.changed_lines(BASE, port) == changed


def test_changed_lines_do_not_count_reindented_lines_as_equal() -> None:
    assert porting.changed_lines(["x = 1"], ["    x = 1"]) == 1


# -- pairs, table, JSON --------------------------------------------------------------------------

ORIGINAL = src('''
    """Original."""
    import threading


    class Counter:
        def __init__(self):
            self.lock = threading.Lock()
            self.n = 0


    def main():
        threads = [threading.Thread(target=print) for _ in range(3)]
        for t in threads:
            t.start()
''')

PORT = src('''
    """The port: another docstring, other comments."""
    import threading

    import crucial


    @crucial.shared  # the counter lives on a DSO node
    class Counter:
        def __init__(self):
            self.lock = threading.Lock()
            self.n = 0


    def main():
        threads = [crucial.CloudThread(target=print) for _ in range(3)]
        for t in threads:
            t.start()
''')


def write_pair(examples: Path, name: str, original: str | None, port: str | None) -> None:
    (examples / "original").mkdir(parents=True, exist_ok=True)
    if original is not None:
        (examples / "original" / f"{name}.py").write_text(original)
    if port is not None:
        (examples / f"{name}.py").write_text(port)


def test_measure_a_pair(tmp_path: Path) -> None:
    write_pair(tmp_path, "montecarlo", ORIGINAL, PORT)
    pair = porting.measure("montecarlo", tmp_path)
    assert (pair.original_sloc, pair.sloc, pair.changed) == (9, 11, 3)
    assert pair.pct == pytest.approx(100 * 3 / 11)
    assert porting.measure("mandelbrot", tmp_path) is None


def test_main_reports_missing_pairs_and_ends_with_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_pair(tmp_path, "montecarlo", ORIGINAL, PORT)
    write_pair(tmp_path, "santa", ORIGINAL, None)  # a port still being written
    write_pair(tmp_path, "kmeans", None, PORT)
    write_pair(tmp_path, "wordcount", ORIGINAL, ORIGINAL)  # a pair the seed has no figure for
    result = porting.main(["--examples", str(tmp_path)])
    lines = capsys.readouterr().out.splitlines()
    assert json.loads(lines[-1]) == result
    assert result["montecarlo_pct"] == round(100 * 3 / 11, 2) and result["montecarlo_changed"] == 3
    assert result["montecarlo_sloc"] == 11 and result["montecarlo_original_sloc"] == 9
    assert result["santa_pct"] is None and result["kmeans_pct"] is None and result["wordcount_pct"] == 0.0
    assert result["missing"] == ["mandelbrot", "logreg", "kmeans", "santa", "randomforest"]
    assert result["max_pct"] == round(100 * 3 / 11, 2)
    assert "| Monte Carlo | 11 | 3 | 27.3% | — | 44, 2 (4.5%) |" in lines  # no drop-in port: "—"
    assert "| Santa Claus problem | missing: port | | | | 255, 15 (5.9%) |" in lines
    assert "| k-means | missing: original | | | | 329, 8 (2.4%) |" in lines
    assert "| Mandelbrot | missing: original and port | | | | 88, 3 (3.4%) |" in lines
    assert "| wordcount | 9 | 0 | 0.0% | — | — |" in lines
    assert result["max_dropin_pct"] is None


DROPIN = src("""
    import threading
    from crucial import shared


    @shared
    class Counter:
        def __init__(self):
            self.lock = threading.Lock()
            self.n = 0


    def main():
        threads = [threading.Thread(target=print) for _ in range(3)]
        for t in threads:
            t.start()
""").replace("import threading", "from crucial import threading", 1)


def test_the_dropin_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_pair(tmp_path, "montecarlo", ORIGINAL, PORT)
    (tmp_path / "dropin").mkdir()
    (tmp_path / "dropin" / "montecarlo.py").write_text(DROPIN)
    pair = porting.measure("montecarlo", tmp_path)
    assert (pair.dropin_sloc, pair.dropin_changed) == (11, 3)  # the import, `from crucial import shared`, @shared
    result = porting.main(["--examples", str(tmp_path), "--show-diff"])
    out = capsys.readouterr().out
    assert result["montecarlo_dropin_changed"] == 3 and result["max_dropin_pct"] == round(100 * 3 / 11, 2)
    assert "| Monte Carlo | 11 | 3 | 27.3% | 11, 3 (27.3%) | 44, 2 (4.5%) |" in out
    assert "## montecarlo through the drop-in modules: 3 changed lines" in out


def test_show_diff_prints_what_was_counted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_pair(tmp_path, "montecarlo", ORIGINAL, PORT)
    porting.main(["--examples", str(tmp_path), "--show-diff"])
    out = capsys.readouterr().out
    assert "## montecarlo: 3 changed lines" in out
    assert "+import crucial\n+@crucial.shared\n class Counter:" in out
    assert "-    threads = [threading.Thread(target=print) for _ in range(3)]" in out
    assert "docstring" not in out and "DSO node" not in out  # neither docstrings nor comments are compared


# -- the repository's pairs -----------------------------------------------------------------------


def test_every_example_pair_changes_at_most_5_percent_of_its_lines() -> None:
    measured = {name: porting.measure(name, porting.EXAMPLES) for name in porting.names(porting.EXAMPLES)}
    present = {name: pair for name, pair in measured.items() if pair is not None}
    assert {"montecarlo", "mandelbrot"} <= set(present)
    assert present["montecarlo"].changed == 4 and present["mandelbrot"].changed == 3
    over = {name: f"{pair.changed}/{pair.sloc} = {pair.pct:.1f}%" for name, pair in present.items() if pair.pct > 5.0}
    assert not over, f"pairs changing more than 5% of their lines (benchmarks/porting.py --show-diff): {over}"


def test_dropin_ports_change_imports_and_add_shared_only() -> None:
    """Ports through the drop-in modules: the originals with stdlib imports swapped and @shared added, nothing else."""
    dropins = sorted((porting.EXAMPLES / "dropin").glob("[!_]*.py"))
    assert {p.stem for p in dropins} >= {"montecarlo", "mandelbrot", "logreg", "kmeans", "santa"}
    for path in dropins:
        original = porting.sloc((porting.EXAMPLES / "original" / path.name).read_text())
        port = porting.sloc(path.read_text())
        matcher = difflib.SequenceMatcher(None, original, port, autojunk=False)
        for op, i1, i2, j1, j2 in matcher.get_opcodes():
            if op == "equal":
                continue
            for line in original[i1:i2] + port[j1:j2]:
                assert line.lstrip().startswith(("import ", "from ", "@shared")), f"{path.name}: {line!r} changed"
        pair = porting.measure(path.stem, porting.EXAMPLES)
        assert pair is not None and pair.dropin_pct is not None and pair.dropin_pct <= pair.pct


def test_the_script_runs_as_a_command() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "porting.py")], capture_output=True, text=True, timeout=60, check=True
    )
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["montecarlo_changed"] == 4 and result["montecarlo_pct"] <= 5.0
    assert proc.stdout.startswith("| Application | Total lines (SLOC of the port) | Changed lines | % |")
