"""8-bit RGB PNGs for tests that send an image and check the pixels that come back (stdlib only)."""

from __future__ import annotations

import struct
import zlib

MAGIC = b"\x89PNG\r\n\x1a\n"


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def encode_rgb(width: int, height: int, rgb: bytes) -> bytes:
    """A PNG of ``rgb`` (``width * height * 3`` bytes, row by row), every row unfiltered."""
    assert len(rgb) == width * height * 3
    stride = width * 3
    raw = b"".join(b"\x00" + rgb[y * stride : (y + 1) * stride] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return MAGIC + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")


def gradient(width: int, height: int, seed: int = 0) -> bytes:
    """RGB bytes where every pixel differs from its neighbours (so a mix-up shows)."""
    return bytes((x * 7 + y * 13 + c * 29 + seed) % 256 for y in range(height) for x in range(width) for c in range(3))


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def decode_rgb(data: bytes) -> tuple[int, int, bytes]:
    """(width, height, rgb) of an 8-bit, non-interlaced RGB PNG, any row filters."""
    assert data.startswith(MAGIC), "not a PNG"
    pos, idat = 8, b""
    width = height = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        tag, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if tag == b"IHDR":
            width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert (depth, ctype, interlace) == (8, 2, 0), "only 8-bit RGB, non-interlaced"
        elif tag == b"IDAT":
            idat += body
    raw = zlib.decompress(idat)
    stride, bpp = width * 3, 3
    out = bytearray()
    previous = bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        row = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            left = row[i - bpp] if i >= bpp else 0
            up = previous[i]
            corner = previous[i - bpp] if i >= bpp else 0
            add = {0: 0, 1: left, 2: up, 3: (left + up) // 2, 4: _paeth(left, up, corner)}[kind]
            row[i] = (row[i] + add) & 0xFF
        out += row
        previous = row
    return width, height, bytes(out)


def inverted(rgb: bytes) -> bytes:
    """ImageInvert of 8-bit pixels as the fake ComfyUI computes it: 255 - v."""
    return bytes(255 - v for v in rgb)


def _f32(x: float) -> float:
    return float(struct.unpack("f", struct.pack("f", x))[0])


def comfyui_inverted(rgb: bytes) -> bytes:
    """ImageInvert as a real ComfyUI computes it: LoadImage's float32 ``v / 255``, ``1.0 - x``,
    SaveImage's ``255 * x`` truncated by ``astype(uint8)``; 159 of the 256 values come out as
    254 - v rather than 255 - v (e.g. 65 -> 189), so compare a real ComfyUI's output with this."""
    table = bytes(int(_f32(255.0 * _f32(1.0 - _f32(v / 255.0)))) for v in range(256))
    return rgb.translate(table)
