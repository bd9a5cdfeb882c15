#!/usr/bin/env python3
"""Writes a seed-sized real image folder for the GPU check: 9,000 Fashion-MNIST product photos
(28x28 grayscale PNGs) in 5 classes of 1,800, the size of the art dataset Easel was made for.

Source: Debian's `dataset-fashion-mnist` package (MIT), its IDX files read straight from the
.deb (an ar archive holding a tar), standard library only.
Usage: fashion_data.py DEB OUT_DIR
"""
import gzip
import io
import lzma
import struct
import sys
import tarfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sample_data import png_gray8  # noqa: E402

CLASSES = {0: "0-tshirt", 1: "1-trouser", 3: "3-dress", 7: "7-sneaker", 8: "8-bag"}
PER_CLASS = 1800
IMAGES = "usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"
LABELS = "usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz"


def data_tar(deb: bytes) -> tarfile.TarFile:
    """The data.tar.* member of a .deb (ar format: 8-byte magic, then 60-byte headers)."""
    if not deb.startswith(b"!<arch>\n"):
        raise SystemExit("not a Debian package")
    position = 8
    while position < len(deb):
        header = deb[position:position + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        body = deb[position + 60:position + 60 + size]
        if name.startswith("data.tar"):
            if name.endswith(".xz"):
                body = lzma.decompress(body)
            elif name.endswith(".gz"):
                body = gzip.decompress(body)
            return tarfile.open(fileobj=io.BytesIO(body))
        position += 60 + size + (size % 2)
    raise SystemExit("the package has no data.tar")


def member(archive: tarfile.TarFile, name: str) -> bytes:
    for candidate in (name, "./" + name):
        try:
            return gzip.decompress(archive.extractfile(candidate).read())
        except KeyError:
            continue
    raise SystemExit(f"{name} is not in the package")


def main() -> int:
    if len(sys.argv) != 3:
        print("usage: fashion_data.py DEB OUT_DIR", file=sys.stderr)
        return 2
    archive = data_tar(Path(sys.argv[1]).read_bytes())
    images, labels = member(archive, IMAGES), member(archive, LABELS)
    magic, count, rows, cols = struct.unpack(">IIII", images[:16])
    if magic != 2051 or struct.unpack(">II", labels[:8]) != (2049, count):
        raise SystemExit("unexpected IDX headers")
    out = Path(sys.argv[2])
    for name in CLASSES.values():
        (out / name).mkdir(parents=True, exist_ok=True)
    written = {label: 0 for label in CLASSES}
    side = rows * cols
    for index in range(count):
        label = labels[8 + index]
        if label not in CLASSES or written[label] >= PER_CLASS:
            continue
        pixels = images[16 + index * side:16 + (index + 1) * side]
        (out / CLASSES[label] / f"{index:05d}.png").write_bytes(png_gray8(pixels, cols, rows))
        written[label] += 1
    if any(n != PER_CLASS for n in written.values()):
        raise SystemExit(f"too few images: {written}")
    print(f"fashion-data: wrote {PER_CLASS * len(CLASSES)} images in {len(CLASSES)} classes",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
