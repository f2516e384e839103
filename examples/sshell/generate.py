"""Generate a small, deterministic stand-in for a Common Crawl segment.

``python generate.py DIR [-n ARCHIVES] [-r RECORDS] [--seed S]`` writes
``DIR/CC-MAIN-00000.warc.wat.gz`` ... : each archive is a series of gzip
members (one per WARC record, as Common Crawl stores them, so ``zcat`` reads
the whole file), alternating

* a ``response`` record: WARC headers, then the HTTP headers of a crawled page
  with its ``Content-Length:`` (the size of the page; the payload itself is
  truncated to a few hundred bytes, as ``WARC-Truncated: length`` says), and
* a WAT-like ``metadata`` record whose JSON payload lists the page's
  outgoing links (``"url":"http(s)://domain/path"``), plus relative ones.

Line endings are CRLF as in real WARC files.  Domains follow a Zipf-like law
over a fixed population, so a few are very popular and the tail has ties.
The same arguments always give the same bytes (gzip mtime 0).
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
from pathlib import Path

TLDS = ("com", "org", "net", "io", "de", "fr", "es", "eu")
WORDS = ("cloud", "data", "news", "shop", "blog", "wiki", "mail", "code", "maps", "food", "play", "tech", "art", "bank")


def domains(rng: random.Random, count: int) -> list[str]:
    """``count`` distinct lowercase host names (some with ``www.``)."""
    seen: dict[str, None] = {}
    while len(seen) < count:
        name = rng.choice(WORDS) + rng.choice(WORDS) + str(rng.randrange(100))
        host = f"{name}.{rng.choice(TLDS)}"
        if rng.random() < 0.3:
            host = "www." + host
        seen.setdefault(host, None)
    return list(seen)


def record(headers: list[tuple[str, str]], block: bytes) -> bytes:
    """One WARC record: version line, headers, Content-Length of the block, blank line, block, two CRLFs."""
    lines = ["WARC/1.0", *(f"{k}: {v}" for k, v in headers), f"Content-Length: {len(block)}", "", ""]
    return "\r\n".join(lines).encode() + block + b"\r\n\r\n"


def archive(rng: random.Random, index: int, records: int, population: list[str], weights: list[float]) -> bytes:
    out = bytearray()
    for n in range(records):
        host = rng.choices(population, weights)[0]
        uri = f"http://{host}/page/{index}/{n}"
        date = f"2021-04-{10 + n % 20:02d}T12:{n % 60:02d}:00Z"
        size = int(rng.lognormvariate(9.5, 1.2)) + 100  # page sizes, mean of a few tens of KB
        body = ("<html>" + "x" * min(size, 300))[: min(size, 300)]
        http = "\r\n".join(
            [
                "HTTP/1.1 200 OK",
                "Content-Type: text/html; charset=UTF-8",
                f"Content-Length: {size}",
                "Server: nginx",
                "",
                body,
            ]
        ).encode()
        response = [
            ("WARC-Type", "response"),
            ("WARC-Date", date),
            ("WARC-Record-ID", f"<urn:uuid:{index:05d}-{n:06d}-r>"),
            ("WARC-Target-URI", uri),
            ("WARC-Truncated", "length"),
            ("Content-Type", "application/http; msgtype=response"),
        ]
        links = []
        for _ in range(rng.randrange(0, 12)):
            target = rng.choices(population, weights)[0]
            scheme = "https" if rng.random() < 0.6 else "http"
            links.append({"path": "A@/href", "url": f"{scheme}://{target}/{rng.choice(WORDS)}/{rng.randrange(1000)}"})
        for _ in range(rng.randrange(0, 3)):
            links.append({"path": "A@/href", "url": f"/{rng.choice(WORDS)}.html"})  # relative: not a domain
        wat = {
            "Envelope": {
                "WARC-Header-Metadata": {"WARC-Target-URI": uri, "WARC-Type": "response"},
                "Payload-Metadata": {
                    "HTTP-Response-Metadata": {
                        "Headers": {"Content-Length": str(size)},
                        "HTML-Metadata": {"Links": links},
                    }
                },
            }
        }
        metadata = [
            ("WARC-Type", "metadata"),
            ("WARC-Date", date),
            ("WARC-Record-ID", f"<urn:uuid:{index:05d}-{n:06d}-m>"),
            ("WARC-Target-URI", uri),
            ("Content-Type", "application/json"),
        ]
        for headers, block in ((response, http), (metadata, json.dumps(wat, separators=(",", ":")).encode())):
            out += gzip.compress(record(headers, block), mtime=0)
    return bytes(out)


def generate(directory: Path, archives: int = 8, records: int = 200, seed: int = 42, population: int = 400) -> list[Path]:
    """Write the archives into ``directory`` (created if missing) and return their paths."""
    rng = random.Random(seed)
    hosts = domains(rng, population)
    weights = [1 / (rank + 1) ** 1.1 for rank in range(population)]
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(archives):
        path = directory / f"CC-MAIN-{i:05d}.warc.wat.gz"
        path.write_bytes(archive(random.Random(f"{seed}/{i}"), i, records, hosts, weights))
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("-n", "--archives", type=int, default=8, help="number of archives (default 8)")
    parser.add_argument("-r", "--records", type=int, default=200, help="pages per archive (default 200)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--domains", type=int, default=400, help="size of the domain population (default 400)")
    args = parser.parse_args(argv)
    for path in generate(args.directory, args.archives, args.records, args.seed, args.domains):
        print(path)


if __name__ == "__main__":
    main()
