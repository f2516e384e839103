"""Programs written for the standard library, ported by changing their imports only (issue 14, item 4).

Every program in ``tests/ported/`` -- the examples of the Python
documentation's ``threading``, ``queue`` and ``multiprocessing`` pages and
classic synchronization problems written plainly with ``threading`` -- runs
twice: as written, and with only its import lines changed to crucial's
drop-in modules (the test checks that nothing else changed).  Then the
outputs are compared: equal, equal once sorted (threads finish in any
order), or checked for the invariant the problem guarantees.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from crucial.testing import unconfigured_env

PORTED = Path(__file__).resolve().parent / "ported"

#: import lines of the standard library -> the same names from crucial's drop-in modules
_REWRITES = [
    (re.compile(r"^import (threading|queue|multiprocessing)$"), r"import crucial.\1 as \1"),
    (re.compile(r"^from (threading|queue|multiprocessing|concurrent\.futures) import (.*)$"), r"from crucial.\1 import \2"),
]


def port(source: str) -> tuple[str, int]:
    """``source`` with its stdlib imports pointed at crucial's modules, and how many lines changed."""
    out, changed = [], 0
    for line in source.splitlines():
        new = line
        for pattern, replacement in _REWRITES:
            new = pattern.sub(replacement, new)
        changed += new != line
        out.append(new)
    return "\n".join(out) + "\n", changed


def test_port_changes_import_lines_only() -> None:
    src = "import threading\nimport queue as q\nfrom multiprocessing import Pool, Queue\nx = 'import threading'\n"
    ported, changed = port(src)
    assert ported.splitlines() == [
        "import crucial.threading as threading",
        "import queue as q",  # an aliased import is left as it is: none of ours is written so
        "from crucial.multiprocessing import Pool, Queue",
        "x = 'import threading'",
    ]
    assert changed == 2


# -- what the two runs must agree on ------------------------------------------------------------------


def same(plain: str, ported: str) -> None:
    assert ported == plain


def same_lines(plain: str, ported: str) -> None:
    assert sorted(ported.splitlines()) == sorted(plain.splitlines())


def same_messages(pattern: str) -> Callable[[str, str], None]:
    """The same messages, in any order: whole lines in the port (crucial writes whole lines); the
    plain run's threads share one stdout, and ``print`` writes the text and its newline separately,
    so two threads' lines can run together there -- the messages are found in its text instead."""

    def check(plain: str, ported: str) -> None:
        lines = ported.splitlines()
        torn = [line for line in lines if not re.fullmatch(pattern, line)]
        assert torn == [], f"lines ran together: {torn}"
        assert sorted(lines) == sorted(re.findall(pattern, plain.replace("\n", "")))

    return check


def _digits(text: str) -> str:
    return re.sub(r"\d+", "N", text)


def crawl(plain: str, ported: str) -> None:
    same_messages(r"crawl (?:started|ended) for https://[a-z.]+?\.org")(plain, ported)
    for out in (plain, ported):
        for link in ("https://python.org", "https://docs.python.org", "https://peps.python.org"):
            assert out.index(f"crawl started for {link}") < out.index(f"crawl ended for {link}")


def condition(plain: str, ported: str) -> None:
    for out in (plain, ported):
        lines = out.splitlines()
        assert lines[-1] == "all consumed: True"
        got = sorted(re.fullmatch(r"consumer (\d) got item (\d)", line).groups() for line in lines[:-1])  # type: ignore[union-attr]
        assert sorted(c for c, _ in got) == ["0", "1", "2"] and sorted(i for _, i in got) == ["0", "1", "2"]


def info(plain: str, ported: str) -> None:
    assert _digits(ported) == _digits(plain)
    assert ported.splitlines()[:2] == ["main line", "module name: __main__"]


def pool_workers(plain: str, ported: str) -> None:
    for out in (plain, ported):
        lines = out.splitlines()
        assert lines[0] == str([x * x for x in range(10)])
        assert sorted(int(x) for x in lines[1:11]) == [x * x for x in range(10)]
        assert lines[11] == "400"
        assert re.fullmatch(r"\d+", lines[12]) and re.fullmatch(r"\[\d+, \d+, \d+, \d+\]", lines[13])
        assert lines[14:] == [
            "We lacked patience and got a multiprocessing.TimeoutError",
            "For the moment, the pool remains available for more work",
            "Now the pool is closed and no longer available",
        ]


def workers(plain: str, ported: str) -> None:
    def results(out: str) -> list[str]:
        lines = out.splitlines()
        assert lines[0] == "Unordered results:"
        return sorted(re.sub(r"Process-\d+", "Process-N", line) for line in lines[1:])

    assert results(ported) == results(plain)
    assert len(results(plain)) == 30


def barber(plain: str, ported: str) -> None:
    for out in (plain, ported):
        lines = out.splitlines()
        assert lines[-1] == "the shop closes"
        visit = re.compile(r"customer (\d+) (got a haircut|left: no free chair)")
        seen = sorted(int(visit.fullmatch(line).group(1)) for line in lines[:-1])  # type: ignore[union-attr]
        assert seen == list(range(12)), "every customer is served or leaves, exactly once"
        assert any("haircut" in line for line in lines)


def barrier_phases(plain: str, ported: str) -> None:
    pattern = r"worker \d finished phase \d|-- phase complete|all phases done"
    same_messages(pattern)(plain, ported)
    for out in (plain, ported):
        messages = re.findall(pattern, out.replace("\n", ""))
        assert messages[-1] == "all phases done"
        phases = [int(m[-1]) for m in messages if m.startswith("worker")]
        assert phases == sorted(phases), "a worker started a phase before all had finished the one before"
        assert len(phases) == 4 * 3 and messages.count("-- phase complete") == 3
    # threading runs the action in the last thread before releasing the others, so its line comes first;
    # on a node it runs before the release too, but its output reaches the program through the last
    # party, racing the others' next lines: docs/porting.md
    plain_messages = re.findall(pattern, plain.replace("\n", ""))
    assert plain_messages[4] == "-- phase complete"


PROGRAMS: dict[str, Callable[[str, str], None]] = {
    "threading_crawl": crawl,
    "threading_timer": same,
    "threading_condition": condition,
    "threading_semaphore": same_messages(r"client \d+ used the database|clients done"),
    "threading_barrier": same,
    "queue_worker": same,
    "mp_pool_intro": same,
    "mp_process": same,
    "mp_info": info,
    "mp_queue": same,
    "mp_pipe": same,
    "mp_lock": same_messages(r"hello world \d"),
    "mp_value_array": same,
    "mp_manager": same,
    "mp_pool_workers": pool_workers,
    "mp_workers": workers,
    "sleeping_barber": barber,
    "dining_philosophers": same,
    "readers_writers": same,
    "bounded_buffer": same,
    "barrier_phases": barrier_phases,
    "map_reduce": same,
}


def test_every_program_is_checked() -> None:
    assert sorted(PROGRAMS) == sorted(p.stem for p in PORTED.glob("*.py"))


def _run(path: Path, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, str(path)], env=env, capture_output=True, text=True, timeout=120, cwd=path.parent)
    assert done.returncode == 0, f"{path.name} exited with {done.returncode}:\n{done.stderr[-3000:]}"
    assert done.stderr == "", done.stderr[-3000:]
    return done.stdout


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_ported_by_imports_alone(name: str, cluster, tmp_path: Path) -> None:
    source = (PORTED / f"{name}.py").read_text()
    ported, changed = port(source)
    assert changed >= 1, "the program imports nothing to port"
    plain_out = _run(PORTED / f"{name}.py", unconfigured_env())
    (tmp_path / f"{name}.py").write_text(ported)
    ported_out = _run(tmp_path / f"{name}.py", unconfigured_env(cluster.env_vars()))
    PROGRAMS[name](plain_out, ported_out)
