"""Parallel word count over a document passed by reference, merged into a shared object.

The seed's Listing 4: the driver never reads the document.  It builds a
``DocumentRef`` -- where the document is and a byte range -- and a
``ServerlessExecutor`` maps ``count_chunk`` over the chunk indexes, one cloud
function per chunk.  Each function dereferences only its own chunk
(``document.chunk(i, n).read()``), counts its words locally, and adds the
counts to one ``WordCounts`` object with a single call,
``total.merge_all(counts)``, which runs on the DSO node that holds it (the
seed's ``mergeAll`` into a shared map).

This is ``crucial.examples.original.wordcount`` (a ``ThreadPoolExecutor``
and a dictionary behind a ``threading.Lock``) with these changes: ``import
crucial`` (for the ``ThreadPoolExecutor`` import), ``@crucial.shared`` on the
counts' class, ``crucial.ServerlessExecutor`` for ``ThreadPoolExecutor``, and
deleting the run's shared object at the end (``benchmarks/porting.py``
counts the lines).  ``WordCounts()`` made without a key is a
new shared object under a fresh key, as a constructor call is a new instance.

Chunks are cut at byte offsets and widened to whole lines: a chunk owns every
line that *starts* inside its range, so a word cut by a boundary is counted
once, by the chunk where its line starts.

    python -m crucial.examples.wordcount                       # a generated sample
    python -m crucial.examples.wordcount book.txt --tasks 8    # or a path / file:// URL
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import re
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass

import crucial

_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*")


def words(text: str) -> list[str]:
    """The words of ``text``: runs of letters (inner apostrophes kept), lower-cased."""
    return _WORD.findall(text.lower())


@dataclass(frozen=True)
class DocumentRef:
    """A distributed reference to bytes ``[start, end)`` of a document (a path or a ``file://`` URL).

    Small and picklable: it travels to the cloud functions instead of the
    text, and :meth:`read` fetches the text where it is needed.
    """

    location: str
    start: int = 0
    end: int = 0

    @classmethod
    def of(cls, location: str) -> DocumentRef:
        """The whole document (asks only for its size)."""
        return cls(location, 0, os.path.getsize(_path(location)))

    def chunk(self, i: int, n: int) -> DocumentRef:
        """The ``i``-th of ``n`` byte ranges of equal size (``document.split(i)`` in Listing 4)."""
        size = self.end - self.start
        return DocumentRef(self.location, self.start + size * i // n, self.start + size * (i + 1) // n)

    def read(self) -> str:
        """The lines that start in ``[start, end)``: the last one is read to its end, even past ``end``."""
        lines = []
        with open(_path(self.location), "rb") as f:
            pos = self.start
            if pos > 0:
                f.seek(pos - 1)
                if f.read(1) != b"\n":  # we start inside a line: it belongs to the chunk before
                    pos += len(f.readline())
            while pos < self.end:
                line = f.readline()
                if not line:
                    break
                lines.append(line)
                pos += len(line)
        return b"".join(lines).decode("utf-8")  # cut at line ends, never inside a UTF-8 sequence


def _path(location: str) -> str:
    parts = urllib.parse.urlsplit(location)
    if parts.scheme == "file":
        return urllib.request.url2pathname(parts.path)
    if len(parts.scheme) > 1:  # a one-letter scheme is a Windows drive
        raise ValueError(f"{location!r}: only paths and file:// URLs are supported")
    return location


@crucial.shared
class WordCounts:
    """Word -> occurrences in the whole document, merged chunk by chunk (the lock keeps each merge whole)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {}

    def merge_all(self, counts: dict[str, int]) -> None:
        """Add one chunk's counts: one call per chunk."""
        with self.lock:
            for word, n in counts.items():
                self.counts[word] = self.counts.get(word, 0) + n

    def items(self) -> list[tuple[str, int]]:
        with self.lock:
            return list(self.counts.items())


def count_chunk(chunk: DocumentRef, total: WordCounts) -> int:
    """One task: count our chunk's words locally, merge them in one call."""
    counts = collections.Counter(words(chunk.read()))
    total.merge_all(dict(counts))  # Listing 4, line 8: one merge, on the node
    return counts.total()


VOCABULARY = (
    "the of and to a in is that for it as with by on are this be from at or an "
    "function cloud thread data state object shared serverless program node counter key value "
    "compute storage memory latency scale elastic lambda invocation worker barrier executor"
).split()


def generate(path: str, n_words: int, seed: int = 42) -> None:
    """A sample document of ``n_words`` words, Zipf-distributed, 1-16 words a line."""
    rng = random.Random(seed)
    weights = [1 / (rank + 1) for rank in range(len(VOCABULARY))]
    text = rng.choices(VOCABULARY, weights, k=n_words)
    lines, i = [], 0
    while i < n_words:
        k = rng.randint(1, 16)
        line = " ".join(text[i : i + k])
        lines.append(line.capitalize() + ("." if rng.random() < 0.5 else ","))
        i += k
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> dict[str, int]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("document", nargs="?", help="a path or file:// URL (default: generate a sample)")
    parser.add_argument(
        "--generate", type=int, default=200_000, metavar="N", help="words of the generated sample (default 200000)"
    )
    parser.add_argument("--seed", type=int, default=42, help="seed of the generated sample (default 42)")
    parser.add_argument("--tasks", type=int, default=8, help="chunks, one task each (default 8)")
    parser.add_argument("--word", default="serverless", help="the word Listing 4 counts (default serverless)")
    parser.add_argument("--top", type=int, default=10, help="how many of the most frequent words to print")
    args = parser.parse_args(argv)
    if args.tasks < 1 or args.generate < 1 or args.top < 0:
        parser.error("--tasks and --generate must be positive, --top not negative")

    with tempfile.TemporaryDirectory() as tmp:
        location = args.document
        if location is None:
            location = os.path.join(tmp, "sample.txt")
            generate(location, args.generate, args.seed)
        document = DocumentRef.of(location)  # Listing 4, line 2: a reference, not the text
        total = WordCounts()
        tasks = args.tasks

        start = time.perf_counter()
        with crucial.ServerlessExecutor(max_workers=tasks) as ex:  # lines 7-8: one function per chunk
            list(ex.map(lambda i: count_chunk(document.chunk(i, tasks), total), range(tasks)))
        elapsed = time.perf_counter() - start

    counts: dict[str, int] = dict(total.items())
    total.delete()
    n = sum(counts.values())
    print(f"{location if args.document else f'a generated sample of {args.generate:,} words (seed {args.seed})'}:")
    print(f"{n:,} words ({len(counts):,} distinct) counted in {tasks} tasks in {elapsed:.2f} s")
    print(f"{args.word!r} occurs {counts.get(args.word.lower(), 0):,} times")
    for word, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: args.top]:
        print(f"{c:>10,}  {word}")
    return counts


if __name__ == "__main__":
    main()
