"""An image-folder dataset with PyTorch alone, for machines without torchvision or Pillow.

The GPU check's end-to-end baseline is torchvision's ImageFolder + DataLoader; where torchvision
is missing it uses this instead, so the comparison still runs (and says which loader it used).
It does what that baseline's transforms do: classes from sorted folder names, each file decoded
to RGB, resized (bilinear, antialiased, as PIL), flipped at random when training, scaled to 0-1
and normalised. Decoding is the standard library's: PNG only (8-bit gray, gray+alpha, RGB, RGBA;
not interlaced), through zlib, which is what Pillow's PNG decoder runs too.
"""

import struct
import zlib
from pathlib import Path

import torch
import torch.nn.functional as F

CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # PNG colour type -> samples per pixel


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _unfilter(raw: bytes, width: int, height: int, bpp: int) -> bytearray:
    """The rows of a PNG image with their filters undone (RFC 2083, 6.3)."""
    stride = width * bpp
    out = bytearray(stride * height)
    previous = bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        row = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if kind == 1:
            for i in range(bpp, stride):
                row[i] = (row[i] + row[i - bpp]) & 0xFF
        elif kind == 2:
            row = bytearray((r + p) & 0xFF for r, p in zip(row, previous))
        elif kind == 3:
            for i in range(stride):
                left = row[i - bpp] if i >= bpp else 0
                row[i] = (row[i] + ((left + previous[i]) >> 1)) & 0xFF
        elif kind == 4:
            for i in range(stride):
                left = row[i - bpp] if i >= bpp else 0
                up_left = previous[i - bpp] if i >= bpp else 0
                row[i] = (row[i] + _paeth(left, previous[i], up_left)) & 0xFF
        elif kind != 0:
            raise ValueError(f"PNG filter type {kind} is not one of 0-4")
        out[y * stride:(y + 1) * stride] = row
        previous = row
    return out


def decode_png(data: bytes, path="") -> torch.Tensor:
    """A PNG file's pixels as a uint8 tensor [3, H, W] (RGB; alpha dropped, gray repeated)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG file")
    position, idat, header = 8, [], None
    while position < len(data):
        (length,) = struct.unpack(">I", data[position:position + 4])
        kind = data[position + 4:position + 8]
        body = data[position + 8:position + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        position += 12 + length
    if header is None:
        raise ValueError(f"{path}: no IHDR chunk")
    width, height, depth, colour, _, _, interlace = header
    if depth != 8 or colour not in CHANNELS or interlace:
        raise ValueError(f"{path}: only 8-bit, non-interlaced gray/RGB(A) PNGs are read here")
    bpp = CHANNELS[colour]
    raw = zlib.decompress(b"".join(idat))
    stride = width * bpp
    if all(raw[y * (stride + 1)] == 0 for y in range(height)):
        # No row is filtered (as the check's own images): drop the filter bytes, no Python loop.
        rows = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(height, stride + 1)
        pixels = rows[:, 1:]
    else:
        pixels = torch.frombuffer(_unfilter(raw, width, height, bpp), dtype=torch.uint8)
    pixels = pixels.reshape(height, width, bpp).permute(2, 0, 1)
    if bpp <= 2:
        return pixels[:1].expand(3, height, width)
    return pixels[:3]


class ImageFolder(torch.utils.data.Dataset):
    """`torchvision.datasets.ImageFolder` over PNGs, with its transforms built in."""

    def __init__(self, root, side, mean, std, flip):
        root = Path(root)
        self.classes = sorted(p.name for p in root.iterdir() if p.is_dir())
        self.samples = [(path, label) for label, name in enumerate(self.classes)
                        for path in sorted((root / name).rglob("*"))
                        if path.is_file() and path.suffix.lower() == ".png"]
        found = {label for _, label in self.samples}
        empty = [name for label, name in enumerate(self.classes) if label not in found]
        if not self.classes or empty:
            raise ValueError(f"{root}: no PNG files in {', '.join(empty) or 'any class folder'}"
                             " (this loader reads PNGs only)")
        self.side = side
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)
        self.flip = flip

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        path, label = self.samples[index]
        pixels = decode_png(path.read_bytes(), path)
        x = pixels.unsqueeze(0).float()
        x = F.interpolate(x, size=(self.side, self.side), mode="bilinear",
                          align_corners=False, antialias=True)[0].clamp(0, 255) / 255.0
        if self.flip and torch.rand(()) < 0.5:
            x = x.flip(-1)
        return (x - self.mean) / self.std, label
