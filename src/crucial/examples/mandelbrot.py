"""The Mandelbrot set, painted row by row into a shared image by a distributed parallel for.

The seed's Listing 3: the image is a ``@crucial.shared`` object; a
``ServerlessExecutor.parallel_for`` over the rows splits them statically over
``--workers`` cloud functions, and each function computes one row at a time
and stores it with one call, ``image.set_row(row, values)``, which runs on
the DSO node that owns the image.  The driver then reads the image back and
writes it as a PNG (encoded with zlib and struct: no imaging library).

    python -m crucial.examples.mandelbrot --rows 300 --cols 450 --workers 8 --out mandelbrot.png
"""

from __future__ import annotations

import argparse
import struct
import time
import uuid
import zlib

import crucial


@crucial.shared
class MandelbrotImage:
    """Listing 3, line 3: ``rows`` x ``cols`` escape-iteration counts, held by a DSO node."""

    def __init__(self, rows: int, cols: int) -> None:
        self.cols = cols
        self.pixels: list[list[int] | None] = [None] * rows

    def set_row(self, row: int, values: list[int]) -> None:  # setRowColor of line 10
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
    """Listing 3, line 5: the iteration at which each pixel of ``row`` escaped (``max_iters``: never)."""
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


def main(argv: list[str] | None = None) -> list[list[int]]:
    parser = argparse.ArgumentParser(prog="python -m crucial.examples.mandelbrot", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=300, help="image height in pixels (default 300)")
    parser.add_argument("--cols", type=int, default=450, help="image width in pixels (default 450)")
    parser.add_argument("--iters", type=int, default=200, help="iterations before a pixel is deemed inside (default 200)")
    parser.add_argument("--workers", type=int, default=8, help="cloud functions the rows are split over (default 8)")
    parser.add_argument("--out", default="mandelbrot.png", help="PNG file to write (default mandelbrot.png)")
    parser.add_argument("--backend", default=None, help="compute backend: local (default), inline, lithops")
    args = parser.parse_args(argv)
    if min(args.rows, args.cols, args.iters, args.workers) < 1:
        parser.error("--rows, --cols, --iters and --workers must be positive")
    rows, cols, max_iters = args.rows, args.cols, args.iters

    image = MandelbrotImage(rows, cols, key=f"mandelbrot-{uuid.uuid4().hex}/image")  # line 8: init

    def paint_row(row: int) -> None:  # the lambda of line 10; runs in a cloud function
        image.set_row(row, compute_row(row, cols, rows, max_iters))

    start = time.perf_counter()
    with crucial.ServerlessExecutor(args.backend) as se:  # lines 9-11
        se.parallel_for(paint_row, 0, rows, workers=args.workers)
    elapsed = time.perf_counter() - start
    pixels = image.to_list()
    image.delete()

    with open(args.out, "wb") as f:
        f.write(png(pixels, max_iters))
    inside = sum(n >= max_iters for row in pixels for n in row)
    print(f"{rows} x {cols} pixels ({inside:,} inside the set) by {args.workers} cloud functions in {elapsed:.2f} s")
    print(f"{rows * cols / elapsed:,.0f} pixels/s; wrote {args.out}")
    return pixels


if __name__ == "__main__":
    main()
