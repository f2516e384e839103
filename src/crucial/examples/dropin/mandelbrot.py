"""The Mandelbrot set, ported through the drop-in modules.

``crucial.examples.original.mandelbrot`` with ``ThreadPoolExecutor`` imported
from ``crucial.concurrent.futures`` (a pool of cloud functions) and
``@shared`` on the image class (its object lives on a DSO node; every
function paints into it); nothing else changed.

    python -m crucial.examples.dropin.mandelbrot --rows 300 --cols 450 --workers 8 --out mandelbrot.png
"""

from __future__ import annotations

import argparse
import struct
import time
import zlib
from crucial.concurrent.futures import ThreadPoolExecutor

from crucial import shared
from crucial.examples._timing import plot_functions


@shared
class MandelbrotImage:
    """``rows`` x ``cols`` escape-iteration counts, one row written at a time."""

    def __init__(self) -> None:
        self.init(0, 0)

    def init(self, rows: int, cols: int) -> None:
        """Start a blank image: the one image object outlives a run (``main`` may run again)."""
        self.cols = cols
        self.pixels: list[list[int] | None] = [None] * rows

    def set_row(self, row: int, values: list[int]) -> None:
        if len(values) != self.cols:
            raise ValueError(f"row {row} has {len(values)} values, not {self.cols}")
        self.pixels[row] = list(values)

    def to_list(self) -> list[list[int]]:
        """The whole image; every row must have been painted."""
        missing = [r for r, values in enumerate(self.pixels) if values is None]
        if missing:
            raise ValueError(f"rows never painted: {missing}")
        return [values for values in self.pixels if values is not None]


def compute_row(row: int, cols: int, rows: int, max_iters: int) -> list[int]:
    """The iteration at which each pixel of ``row`` escaped (``max_iters``: never)."""
    y = 1.2 - 2.4 * row / max(rows - 1, 1)
    out = []
    for col in range(cols):
        c = complex(-2.1 + 3.0 * col / max(cols - 1, 1), y)
        z = 0j
        n = 0
        while n < max_iters and abs(z) <= 2.0:
            z = z * z + c
            n += 1
        out.append(n)
    return out


class Mandelbrot:
    """The program: its one piece of shared state is the image, a class attribute every worker paints into."""

    image = MandelbrotImage()

    def __init__(self, rows: int, cols: int, max_iters: int) -> None:
        self.rows, self.cols, self.max_iters = rows, cols, max_iters

    def paint_row(self, row: int) -> None:
        self.image.set_row(row, compute_row(row, self.cols, self.rows, self.max_iters))

    def compute(self, workers: int) -> list[list[int]]:
        """A parallel for over the rows: ``workers`` at a time, each taking a block of ``chunksize`` rows."""
        self.image.init(self.rows, self.cols)
        with ThreadPoolExecutor(max_workers=workers) as ex:
            list(ex.map(self.paint_row, range(self.rows), chunksize=-(-self.rows // workers)))
        return self.image.to_list()


def colour(n: int, max_iters: int) -> bytes:
    """A gradient from dark blue through orange to white; black inside the set."""
    if n >= max_iters:
        return b"\0\0\0"
    t = (n / max_iters) ** 0.4  # most pixels escape early: stretch the low counts
    return bytes((int(255 * min(1.0, 1.5 * t)), int(255 * t * t), int(40 + 120 * (1 - t))))


def png(pixels: list[list[int]], max_iters: int) -> bytes:
    """An 8-bit RGB PNG of the iteration counts: signature, IHDR, IDAT, IEND."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    height, width = len(pixels), len(pixels[0])
    raw = b"".join(b"\0" + b"".join(colour(n, max_iters) for n in row) for row in pixels)  # filter 0 per line
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8 bits, truecolour, no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=300, help="image height in pixels (default 300)")
    parser.add_argument("--cols", type=int, default=450, help="image width in pixels (default 450)")
    parser.add_argument("--iters", type=int, default=200, help="iterations before a pixel is deemed inside (default 200)")
    parser.add_argument("--workers", type=int, default=8, help="workers the rows are split over (default 8)")
    parser.add_argument("--out", default="mandelbrot.png", help="PNG file to write (default mandelbrot.png)")
    parser.add_argument("--plot", metavar="PATH", help="draw a timeline of the cloud functions to PATH (crucial[plot])")
    args = parser.parse_args(argv)
    if min(args.rows, args.cols, args.iters, args.workers) < 1:
        parser.error("--rows, --cols, --iters and --workers must be positive")
    return args


def main(argv: list[str] | None = None) -> list[list[int]]:
    args = parse(argv)
    start = time.perf_counter()
    pixels = Mandelbrot(args.rows, args.cols, args.iters).compute(args.workers)
    elapsed = time.perf_counter() - start

    with open(args.out, "wb") as f:
        f.write(png(pixels, args.iters))
    inside = sum(n >= args.iters for row in pixels for n in row)
    print(f"{args.rows} x {args.cols} pixels ({inside:,} inside the set) by {args.workers} workers in {elapsed:.2f} s")
    print(f"{args.rows * args.cols / elapsed:,.0f} pixels/s; wrote {args.out}")
    plot_functions(args.plot)
    return pixels


if __name__ == "__main__":
    main()
