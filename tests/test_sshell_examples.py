"""The seed's sshell scripts (examples/sshell/), run as a user would, against a plain local pipeline.

Each test runs one script with ``bash`` on a small generated crawl, with
``sshell`` on PATH and ``CRUCIAL_DSO`` naming the session's node, and checks
its answer against the same computation done locally (Python, or
``zcat | grep | awk``) on the same archives.
"""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from crucial.testing import LocalCluster

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "sshell"
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.sh"))
ARCHIVES = 7  # odd on purpose: shares of unequal size
LINK = re.compile(r'"url":"https?://([^/":?#]*)')


@pytest.fixture(scope="module")
def crawl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("crawl")
    subprocess.run(
        [sys.executable, str(EXAMPLES / "generate.py"), str(directory), "-n", str(ARCHIVES), "-r", "120"],
        check=True,
        capture_output=True,
    )
    return directory


@pytest.fixture(scope="module")
def lines(crawl: Path) -> list[str]:
    """The decompressed text of every archive, line by line (the local reference reads this)."""
    out: list[str] = []
    for path in sorted(crawl.glob("*.gz")):
        out += gzip.decompress(path.read_bytes()).decode().splitlines()
    return out


@pytest.fixture(scope="module")
def sizes(lines: list[str]) -> list[int]:
    return [int(line.split()[1]) for line in lines if line.startswith("Content-Length")]


@pytest.fixture(scope="module")
def domains(lines: list[str]) -> Counter[str]:
    return Counter(m.lower() for line in lines for m in LINK.findall(line))


@pytest.fixture
def env(cluster: LocalCluster, tmp_path: Path) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("CRUCIAL_", "SSHELL_"))}
    e.update(cluster.env_vars())
    e["PATH"] = os.path.dirname(sys.executable) + os.pathsep + e.get("PATH", "/usr/bin:/bin")
    e["XDG_CACHE_HOME"] = str(tmp_path / "cache")  # a stray per-user node would land here, not in ~
    e["CRUCIAL_SHARED_DIR"] = str(tmp_path / "shared")
    e["TIMEOUT"] = "60"  # gathering.sh: bound the barrier if an --async invocation were lost
    return e


def run(script: str, *args: object, env: dict[str, str]) -> str:
    r = subprocess.run(
        ["bash", str(EXAMPLES / script), *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 0, f"{script} exited {r.returncode}: {r.stderr}"
    return r.stdout


def ranking(counts: Counter[str], top: int) -> str:
    """The expected ranking: most mentioned first, ties by name (as `treemap … top` orders them)."""
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return "".join(f"{d} {n}\n" for d, n in items)


# --------------------------------------------------------------------------- the data and its reference


def test_the_scripts_parse_and_the_generator_is_deterministic(crawl: Path, tmp_path: Path):
    assert SCRIPTS == [
        "average.sh",
        "average_stateful.sh",
        "gathering.sh",
        "linkrun_stateful.sh",
        "linkrun_stateless.sh",
    ]
    for script in SCRIPTS:
        subprocess.run(["bash", "-n", str(EXAMPLES / script)], check=True)
    again = tmp_path / "again"
    subprocess.run([sys.executable, str(EXAMPLES / "generate.py"), str(again), "-n", "2", "-r", "120"], check=True)
    for path in sorted(again.iterdir()):
        assert path.read_bytes() == (crawl / path.name).read_bytes()


def test_the_python_reference_is_the_plain_pipeline(crawl: Path, sizes: list[int], domains: Counter[str]):
    """zcat | grep | awk on the client agrees with the Python reference the tests use."""
    average = subprocess.run(
        "zcat *.gz | grep ^Content-Length | awk '{ sum += $2 } END { printf \"%.0f\\n\", int(sum / NR) }'",
        shell=True,
        cwd=crawl,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert int(average) == sum(sizes) // len(sizes)
    links = subprocess.run(
        'zcat *.gz | grep -o \'"url":"https\\?://[^/":?#]*\' | cut -d/ -f3 | LC_ALL=C sort | uniq -c',
        shell=True,
        cwd=crawl,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert Counter({d: int(n) for n, d in (line.split() for line in links.splitlines())}) == domains
    assert len(domains) > 100  # the ranking is cut


# --------------------------------------------------------------------------- Figures 9, 11 and 10


def test_average_figure_9(crawl: Path, sizes: list[int], env: dict[str, str]):
    assert run("average.sh", crawl, 3, env=env) == f"{sum(sizes) // len(sizes)}\n"


def test_average_stateful_figure_11(crawl: Path, sizes: list[int], env: dict[str, str]):
    assert run("average_stateful.sh", crawl, 4, env=env) == f"{sum(sizes) // len(sizes)}\n"


@pytest.mark.parametrize("jobs", [1, 3])
def test_gathering_figure_10(crawl: Path, sizes: list[int], env: dict[str, str], jobs: int):
    average = sum(sizes) // len(sizes)
    larger = sum(s > average for s in sizes)
    assert run("gathering.sh", crawl, jobs, env=env) == f"{average} {larger} {len(sizes)}\n"


# --------------------------------------------------------------------------- LinkRun


def test_linkrun_stateful_and_stateless_rank_as_the_local_pipeline(crawl: Path, domains: Counter[str], env: dict[str, str]):
    expected = ranking(domains, 100)
    stateful = run("linkrun_stateful.sh", crawl, 4, env=env)
    stateless = run("linkrun_stateless.sh", crawl, 4, env=env)
    assert stateful == expected
    assert stateless == stateful
    assert len(stateful.splitlines()) == 100


def test_linkrun_top_k(crawl: Path, domains: Counter[str], env: dict[str, str]):
    assert run("linkrun_stateful.sh", crawl, 8, 5, env=env) == ranking(domains, 5)
    assert run("linkrun_stateless.sh", crawl, 8, 5, env=env) == ranking(domains, 5)


@pytest.mark.parametrize("script", SCRIPTS)
def test_usage_and_missing_data(script: str, tmp_path: Path, env: dict[str, str]):
    r = subprocess.run(["bash", str(EXAMPLES / script)], env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "usage:" in r.stderr
    (tmp_path / "empty").mkdir()
    r = subprocess.run(
        ["bash", str(EXAMPLES / script), str(tmp_path / "empty")], env=env, capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 1 and "no *.gz archive" in r.stderr


def test_gathering_with_more_jobs_than_archives_and_a_corrupt_one(crawl: Path, env: dict[str, str], tmp_path: Path):
    """An empty share is fine; a failure in phase 1 still fills the barrier, so the script fails at once."""
    few = tmp_path / "few"
    few.mkdir()
    for path in sorted(crawl.glob("*.gz"))[:2]:
        (few / path.name).write_bytes(path.read_bytes())
    sizes = [
        int(line.split()[1])
        for path in sorted(few.glob("*.gz"))
        for line in gzip.decompress(path.read_bytes()).decode().splitlines()
        if line.startswith("Content-Length")
    ]
    average = sum(sizes) // len(sizes)
    assert run("gathering.sh", few, 3, env=env) == f"{average} {sum(s > average for s in sizes)} {len(sizes)}\n"

    (few / "A-corrupt.gz").write_bytes(b"not gzip at all\n")  # sorts first: the --async invocation's share
    r = subprocess.run(
        ["bash", str(EXAMPLES / "gathering.sh"), str(few), "2"], env=env, capture_output=True, text=True, timeout=50
    )
    assert r.returncode == 1, r.stderr
    assert "1 invocation(s) failed in phase 1" in r.stderr


def test_the_stateful_scripts_delete_their_objects(crawl: Path, env: dict[str, str]):
    """Objects outlive a run (they live as long as the node): each script deletes its own with the verbs' `delete`."""
    with LocalCluster() as own:
        e = {**env, **own.env_vars()}
        run("average_stateful.sh", crawl, 2, env=e)
        run("gathering.sh", crawl, 2, env=e)
        run("linkrun_stateful.sh", crawl, 2, 3, env=e)
        client = own.client()
        keys = [obj["key"] for address in client.nodes for obj in client.info(address, 10_000)["listed"]]
    assert keys, "gathering.sh's --async invocations leave their exit status (sshell/<id>/status) on the node"
    assert [k for k in keys if k.startswith(("average.", "gathering.", "linkrun."))] == []
