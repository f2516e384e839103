"""The seed's first applications (crucial.examples), on small sizes.

montecarlo also runs end to end as ``python -m`` in a fresh process with
nothing configured (embedded node, local backend); the others run through
``main()`` against the ``dso`` fixture's cluster.  The single-machine
originals (crucial.examples.original) run too, and must compute what their
ports compute: the same hits for the same seeds, the same pixels.
"""

from __future__ import annotations

import collections
import math
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest

from crucial.examples import mandelbrot, montecarlo, wordcount
from crucial.examples.original import mandelbrot as mandelbrot_original
from crucial.examples.original import montecarlo as montecarlo_original
from crucial.testing import LocalCluster, unconfigured_env


@pytest.fixture
def examples_dso(dso1: LocalCluster, monkeypatch: pytest.MonkeyPatch) -> LocalCluster:
    """The one-node cluster, and fresh proxies for the class attributes the examples share state through.

    ``PiEstimator.hits`` and ``Mandelbrot.image`` are made at import time and
    keep the client of their first call, which the ``dso1`` fixture closes
    after each test: every test gets proxies of its own.  Warm workers import
    the examples once and keep their proxies too, so these tests stay on the
    one cluster, as a program does.
    """
    monkeypatch.setattr(montecarlo.PiEstimator, "hits", montecarlo.Counter(key="hits"))
    monkeypatch.setattr(mandelbrot.Mandelbrot, "image", mandelbrot.MandelbrotImage(key="image"))
    return dso1


# -- montecarlo (Listings 1 and 2) ---------------------------------------------------------


@pytest.mark.parametrize("mode", ["threads", "executor"])
def test_montecarlo_estimates_pi(examples_dso: LocalCluster, mode: str, capsys: pytest.CaptureFixture[str]) -> None:
    result = montecarlo.main(["--mode", mode, "--threads", "3", "--points", "40000"])
    assert result.points == 120_000 and result.threads == 3 and len(result.counts) == 3
    assert result.counter == sum(result.counts)  # every thread added exactly its own count, once
    assert len(set(result.counts)) == 3  # distinct seeds, distinct streams
    assert abs(result.estimate - math.pi) < 0.05
    out = capsys.readouterr().out
    what = "threads" if mode == "threads" else "executor tasks"
    assert f"pi ~= {result.estimate:.6f} from 120,000 points by 3 {what}\n" in out
    assert "shared counter holds the sum of the threads' counts: True" in out
    assert re.search(r"[\d,]+ points/s", out)


@pytest.mark.parametrize("mode", ["threads", "executor"])
def test_montecarlo_original_counts_what_the_port_counts(examples_dso: LocalCluster, mode: str) -> None:
    args = ["--mode", mode, "--threads", "3", "--points", "20000", "--seed", "5"]
    port, original = montecarlo.main(args), montecarlo_original.main(args)
    assert sorted(port.counts) == sorted(original.counts) and len(port.counts) == 3
    assert port.counter == original.counter == sum(original.counts)
    assert port.estimate == original.estimate


def test_montecarlo_starts_each_run_from_zero(examples_dso: LocalCluster) -> None:
    # the counter is a class attribute: one DSO object (key "hits") for every run, emptied by take()
    first = montecarlo.main(["--threads", "2", "--points", "10000"])
    montecarlo.PiEstimator.hits.add(12345)  # as a crashed run would leave it
    second = montecarlo.main(["--threads", "2", "--points", "10000"])
    assert second.counter == first.counter and sorted(second.counts) == sorted(first.counts)
    assert montecarlo.PiEstimator.hits.take() == (0, [])


def run_module(name: str, *args: str, cwd: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    """``python -m crucial.examples.<name>`` in a fresh process with nothing configured but ``CRUCIAL_<settings>``."""
    env = unconfigured_env({f"CRUCIAL_{name.upper()}": value for name, value in settings.items()})
    proc = subprocess.run(
        [sys.executable, "-m", f"crucial.examples.{name}", *args],
        env=env,
        cwd=cwd,  # no crucial.toml around
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def test_montecarlo_as_a_module_with_nothing_configured(tmp_path: Path) -> None:
    out = run_module("montecarlo", "--threads", "2", "--points", "50000", cwd=tmp_path).stdout
    match = re.search(r"pi ~= (\d\.\d{6}) from 100,000 points by 2 threads", out)
    assert match, out
    assert "counts: True" in out
    original = run_module("original.montecarlo", "--threads", "2", "--points", "50000", cwd=tmp_path).stdout
    assert f"pi ~= {match.group(1)} from 100,000 points by 2 threads" in original, original


def test_montecarlo_takes_its_backend_from_the_environment(tmp_path: Path) -> None:
    # no --backend flag (the original has none): CRUCIAL_BACKEND chooses, as for every crucial program
    out = run_module("montecarlo", "--threads", "2", "--points", "1000", "--mode", "executor", cwd=tmp_path, backend="inline")
    assert "by 2 executor tasks" in out.stdout and "counts: True" in out.stdout
    with pytest.raises(AssertionError, match="unknown compute backend 'nope'; known backends: dask, inline, lithops, local, ray"):
        run_module("montecarlo", "--threads", "1", "--points", "10", cwd=tmp_path, backend="nope")


def test_mandelbrot_and_wordcount_as_modules(tmp_path: Path) -> None:
    # as __main__, their functions (and the @shared image class) are pickled by value
    out = run_module("mandelbrot", "--rows", "12", "--cols", "20", "--workers", "3", "--out", "m.png", cwd=tmp_path).stdout
    assert "12 x 20 pixels" in out and (tmp_path / "m.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    run_module("original.mandelbrot", "--rows", "12", "--cols", "20", "--workers", "3", "--out", "o.png", cwd=tmp_path)
    assert (tmp_path / "o.png").read_bytes() == (tmp_path / "m.png").read_bytes()
    out = run_module("wordcount", "--generate", "1000", "--tasks", "3", cwd=tmp_path).stdout
    assert "1,000 words" in out, out
    original = run_module("original.wordcount", "--generate", "1000", "--tasks", "3", cwd=tmp_path).stdout
    assert _without_timing(original) == _without_timing(out)  # the same counts, the same top words


def _without_timing(out: str) -> str:
    return re.sub(r" in [0-9.]+ s$", "", out, flags=re.M)


@pytest.mark.parametrize("program", [montecarlo, montecarlo_original], ids=["port", "original"])
def test_montecarlo_rejects_bad_sizes(program: Any, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        program.main(["--threads", "0"])
    assert exc.value.code == 2
    assert "must be positive" in capsys.readouterr().err


# -- mandelbrot (Listing 3) -------------------------------------------------------------------


def test_mandelbrot_rows_match_a_sequential_run_and_the_png_is_valid(examples_dso: LocalCluster, tmp_path: Path) -> None:
    rows, cols, iters = 23, 31, 40
    out = tmp_path / "m.png"
    pixels = mandelbrot.main(
        ["--rows", str(rows), "--cols", str(cols), "--iters", str(iters), "--workers", "4", "--out", str(out)]
    )
    assert pixels == [mandelbrot.compute_row(r, cols, rows, iters) for r in range(rows)]
    assert any(n == iters for row in pixels for n in row) and any(n < 3 for row in pixels for n in row)

    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks = {}
    pos = 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body), kind
        chunks[kind] = body
        pos += 12 + length
    assert list(chunks) == [b"IHDR", b"IDAT", b"IEND"]
    assert struct.unpack(">IIBBBBB", chunks[b"IHDR"]) == (cols, rows, 8, 2, 0, 0, 0)
    raw = zlib.decompress(chunks[b"IDAT"])
    assert len(raw) == rows * (1 + 3 * cols)
    line = raw[(1 + 3 * cols) * 11 : (1 + 3 * cols) * 12]  # row 11, pixel by pixel
    assert line == b"\0" + b"".join(mandelbrot.colour(n, iters) for n in pixels[11])


def test_mandelbrot_original_paints_what_the_port_paints(examples_dso: LocalCluster, tmp_path: Path) -> None:
    args = ["--rows", "17", "--cols", "26", "--iters", "30", "--workers", "5"]
    port = mandelbrot.main([*args, "--out", str(tmp_path / "port.png")])
    original = mandelbrot_original.main([*args, "--out", str(tmp_path / "original.png")])
    assert port == original and len(port) == 17 and len(port[0]) == 26
    assert (tmp_path / "port.png").read_bytes() == (tmp_path / "original.png").read_bytes()


def test_mandelbrot_starts_each_run_with_a_blank_image(examples_dso: LocalCluster, tmp_path: Path) -> None:
    # the image is a class attribute: one DSO object (key "image") for every run, blanked by init()
    big = mandelbrot.main(["--rows", "9", "--cols", "8", "--workers", "2", "--out", str(tmp_path / "a.png")])
    small = mandelbrot.main(["--rows", "4", "--cols", "5", "--workers", "3", "--out", str(tmp_path / "b.png")])
    assert len(big) == 9 and len(small) == 4 and len(small[0]) == 5
    assert small == [mandelbrot.compute_row(r, 5, 4, 200) for r in range(4)]


# -- wordcount (Listing 4) --------------------------------------------------------------------


def test_chunks_cover_every_line_once(tmp_path: Path) -> None:
    path = tmp_path / "doc.txt"
    text = "alpha beta\n\ngamma delta epsilon\nzeta\n" * 7 + "no newline at the end"
    path.write_text(text)
    doc = wordcount.DocumentRef.of(str(path))
    for n in (1, 2, 3, 5, 8, 13, 40, len(text) + 3):  # more chunks than bytes: most are empty
        assert "".join(doc.chunk(i, n).read() for i in range(n)) == text, n
    url = wordcount.DocumentRef.of(path.as_uri())
    assert "".join(url.chunk(i, 4).read() for i in range(4)) == text
    with pytest.raises(ValueError, match="file:// URLs"):
        wordcount.DocumentRef("http://example.com/doc.txt", 0, 10).read()


@pytest.mark.parametrize("tasks", [1, 7])
def test_wordcount_matches_a_sequential_count(dso: LocalCluster, tmp_path: Path, tasks: int) -> None:
    path = tmp_path / "doc.txt"
    wordcount.generate(str(path), 3000, seed=7)
    text = path.read_text()
    expected = collections.Counter(wordcount.words(text))
    assert sum(expected.values()) == 3000
    counts = wordcount.main([path.as_uri(), "--tasks", str(tasks), "--top", "3"])
    assert counts == dict(expected)


def test_wordcount_counts_a_word_cut_by_a_chunk_boundary_once(dso: LocalCluster, tmp_path: Path) -> None:
    path = tmp_path / "doc.txt"
    path.write_text("serverless " * 50 + "\nfunctions\n")  # one long line: every cut falls inside a word
    counts = wordcount.main([str(path), "--tasks", "6"])
    assert counts == {"serverless": 50, "functions": 1}


def test_wordcount_generated_sample(dso: LocalCluster, capsys: pytest.CaptureFixture[str]) -> None:
    counts = wordcount.main(["--generate", "2000", "--tasks", "3", "--top", "2"])
    assert sum(counts.values()) == 2000
    out = capsys.readouterr().out
    assert "2,000 words" in out and "counted in 3 tasks" in out
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0]
    assert re.search(rf"^\s+{top[1]:,}  {top[0]}$", out, re.M), out


def test_mandelbrot_image_refuses_a_bad_row_and_an_unfinished_image(dso: LocalCluster, key: str) -> None:
    image = mandelbrot.MandelbrotImage(key=key)
    image.init(3, 4)
    image.set_row(0, [1, 2, 3, 4])
    with pytest.raises(ValueError, match="row 1 has 2 values, not 4"):
        image.set_row(1, [1, 2])
    with pytest.raises(ValueError, match=r"rows never painted: \[1, 2\]"):
        image.to_list()
    image.delete()


@pytest.mark.parametrize(
    "module",
    ["kmeans", "original.kmeans", "logreg", "original.logreg", "randomforest", "original.randomforest"],
)
def test_without_numpy_the_message_names_the_extra(module: str, tmp_path: Path) -> None:
    code = f"import sys, runpy; sys.modules['numpy'] = None; runpy.run_module('crucial.examples.{module}', run_name='__main__')"
    proc = subprocess.run(
        [sys.executable, "-c", code], env=unconfigured_env(), cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1
    assert "pip install 'crucial[examples]'" in proc.stderr
