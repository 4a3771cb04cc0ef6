"""Tiny deterministic encoders for what the fake ComfyUI writes (the same image always gives the
same bytes), and a PNG decoder for what LoadImage reads. Standard library only."""

from __future__ import annotations

import base64
import io
import json
import struct
import wave
import zlib
from dataclasses import dataclass, field

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_INVERT = bytes(255 - i for i in range(256))
# A 1x1 lossless WebP (the one Modernizr uses to detect WebP support): the fakes cannot encode
# WebP with the standard library, so an "animated WebP" is this single valid frame.
WEBP_1X1 = base64.b64decode("UklGRhoAAABXRUJQVlA4TA0AAAAvAAAAEAcQERGIiP4HAA==")


class MediaError(ValueError):
    """A file the fakes cannot decode (the message says why, like PIL would)."""


@dataclass(frozen=True)
class Image:
    """One 8-bit RGB image; ``rgb`` holds ``width * height * 3`` bytes, row by row."""

    width: int
    height: int
    rgb: bytes = field(repr=False)

    @classmethod
    def solid(cls, width: int, height: int, color: int) -> Image:
        # ComfyUI's EmptyImage reads the colour as 0xRRGGBB.
        pixel = bytes(((color >> 16) & 0xFF, (color >> 8) & 0xFF, color & 0xFF))
        return cls(width, height, pixel * (width * height))

    def inverted(self) -> Image:
        return Image(self.width, self.height, self.rgb.translate(_INVERT))

    def pixel(self, x: int, y: int) -> tuple[int, int, int]:
        i = (y * self.width + x) * 3
        return self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def _scanlines(image: Image) -> bytes:
    stride = image.width * 3
    return b"".join(b"\x00" + image.rgb[y * stride : (y + 1) * stride] for y in range(image.height))


def _ihdr(width: int, height: int) -> bytes:
    return _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))


def _text_chunks(text: dict[str, str] | None) -> list[bytes]:
    # tEXt is Latin-1; ComfyUI stores json.dumps output there, which is ASCII.
    return [
        _chunk(b"tEXt", key.encode("latin-1") + b"\x00" + value.encode("latin-1", "replace"))
        for key, value in (text or {}).items()
    ]


def encode_png(image: Image, *, text: dict[str, str] | None = None, level: int = 4) -> bytes:
    """An RGB PNG; ``text`` becomes tEXt chunks (ComfyUI's SaveImage stores the prompt there)."""
    idat = _chunk(b"IDAT", zlib.compress(_scanlines(image), level))
    return PNG_MAGIC + _ihdr(image.width, image.height) + b"".join(_text_chunks(text)) + idat + _chunk(b"IEND", b"")


def encode_apng(frames: list[Image], fps: float, *, text: dict[str, str] | None = None) -> bytes:
    """An animated PNG (every frame the size of the first), looping forever."""
    first = frames[0]
    delay_ms = min(65535, max(1, round(1000 / fps)))
    parts = [PNG_MAGIC, _ihdr(first.width, first.height), *_text_chunks(text)]
    parts.append(_chunk(b"acTL", struct.pack(">II", len(frames), 0)))
    seq = 0
    for index, frame in enumerate(frames):
        fctl = struct.pack(">IIIIIHHBB", seq, first.width, first.height, 0, 0, delay_ms, 1000, 0, 0)
        parts.append(_chunk(b"fcTL", fctl))
        seq += 1
        data = zlib.compress(_scanlines(frame), 4)
        if index == 0:
            parts.append(_chunk(b"IDAT", data))
        else:
            parts.append(_chunk(b"fdAT", struct.pack(">I", seq) + data))
            seq += 1
    parts.append(_chunk(b"IEND", b""))
    return b"".join(parts)


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _unfilter(raw: bytes, height: int, stride: int, bpp: int) -> bytearray:
    out = bytearray()
    prev = bytearray(stride)
    pos = 0
    for _ in range(height):
        kind = raw[pos]
        line = bytearray(raw[pos + 1 : pos + 1 + stride])
        pos += 1 + stride
        if kind == 1:
            for x in range(bpp, stride):
                line[x] = (line[x] + line[x - bpp]) & 0xFF
        elif kind == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, prev, strict=True))
        elif kind == 3:
            for x in range(stride):
                left = line[x - bpp] if x >= bpp else 0
                line[x] = (line[x] + ((left + prev[x]) >> 1)) & 0xFF
        elif kind == 4:
            for x in range(stride):
                left = line[x - bpp] if x >= bpp else 0
                upleft = prev[x - bpp] if x >= bpp else 0
                line[x] = (line[x] + _paeth(left, prev[x], upleft)) & 0xFF
        elif kind != 0:
            raise MediaError(f"bad PNG filter type {kind}")
        out += line
        prev = line
    return out


_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def decode_png(data: bytes) -> Image:
    """Decode an 8-bit, non-interlaced PNG (grey, RGB, palette, with or without alpha) to RGB.

    That covers what the fakes themselves write and what tests upload; anything else raises
    MediaError, which LoadImage turns into a runtime error like PIL's.
    """
    if not data.startswith(PNG_MAGIC):
        raise MediaError("cannot identify image file (not a PNG)")
    pos, idat, palette = 8, [], b""
    width = height = depth = ctype = interlace = -1
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        tag, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if tag == b"IHDR":
            width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
        elif tag == b"PLTE":
            palette = body
        elif tag == b"IDAT":
            idat.append(body)
        elif tag == b"IEND":
            break
    if depth != 8 or interlace != 0 or ctype not in _CHANNELS:
        raise MediaError(f"unsupported PNG (bit depth {depth}, colour type {ctype}, interlace {interlace})")
    channels = _CHANNELS[ctype]
    try:
        raw = zlib.decompress(b"".join(idat))
    except zlib.error as exc:
        raise MediaError(f"broken PNG data: {exc}") from exc
    if len(raw) < height * (1 + width * channels):
        raise MediaError("truncated PNG data")
    px = _unfilter(raw, height, width * channels, channels)
    rgb = bytearray(width * height * 3)
    if ctype == 2:
        rgb[:] = px
    elif ctype == 6:
        rgb[0::3], rgb[1::3], rgb[2::3] = px[0::4], px[1::4], px[2::4]
    elif ctype in (0, 4):
        grey = px[0::channels]
        rgb[0::3], rgb[1::3], rgb[2::3] = grey, grey, grey
    else:  # palette
        padded = palette.ljust(768, b"\x00")
        rgb[0::3] = px.translate(padded[0::3])
        rgb[1::3] = px.translate(padded[1::3])
        rgb[2::3] = px.translate(padded[2::3])
    return Image(width, height, bytes(rgb))


def _palette_indices(frames: list[Image]) -> tuple[bytes, list[bytes]]:
    colours: set[tuple[int, int, int]] = set()
    for frame in frames:
        colours.update(zip(frame.rgb[0::3], frame.rgb[1::3], frame.rgb[2::3], strict=True))
    if len(colours) <= 256:
        ordered = sorted(colours)
        lut = {c: i for i, c in enumerate(ordered)}
        palette = b"".join(bytes(c) for c in ordered)
        index = [bytes(lut[c] for c in zip(f.rgb[0::3], f.rgb[1::3], f.rgb[2::3], strict=True)) for f in frames]
    else:  # too many colours: a fixed 3-3-2 palette is good enough for a fake
        palette = bytes(v for i in range(256) for v in ((i & 0xE0), (i & 0x1C) << 3, (i & 0x03) << 6))
        index = [
            bytes(
                (r & 0xE0) | ((g & 0xE0) >> 3) | (b >> 6)
                for r, g, b in zip(f.rgb[0::3], f.rgb[1::3], f.rgb[2::3], strict=True)
            )
            for f in frames
        ]
    return palette.ljust(768, b"\x00"), index


def _lzw_uncompressed(indices: bytes) -> bytes:
    # "Uncompressed" GIF LZW: 9-bit literal codes with a clear code often enough that the
    # decoder's table never grows past 9 bits. Valid for every decoder, trivial to write.
    clear, end = 256, 257
    bits = acc = 0
    out = bytearray()

    def emit(code: int) -> None:
        nonlocal bits, acc
        acc |= code << bits
        bits += 9
        while bits >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            bits -= 8

    for start in range(0, len(indices), 250):
        emit(clear)
        for value in indices[start : start + 250]:
            emit(value)
    emit(end)
    if bits:
        out.append(acc & 0xFF)
    blocks = b"".join(bytes((len(out[i : i + 255]),)) + out[i : i + 255] for i in range(0, len(out), 255))
    return b"\x08" + blocks + b"\x00"


def encode_gif(frames: list[Image], fps: float, loop_count: int = 0) -> bytes:
    """An (animated) GIF of the frames, each the size of the first."""
    first = frames[0]
    palette, indices = _palette_indices(frames)
    parts = [b"GIF89a", struct.pack("<HHBBB", first.width, first.height, 0xF7, 0, 0), palette]
    if len(frames) > 1:
        parts.append(b"\x21\xff\x0bNETSCAPE2.0\x03\x01" + struct.pack("<H", loop_count) + b"\x00")
    delay = max(1, round(100 / fps))
    for frame_indices in indices:
        parts.append(b"\x21\xf9\x04\x00" + struct.pack("<H", delay) + b"\x00\x00")
        parts.append(b"\x2c" + struct.pack("<HHHHB", 0, 0, first.width, first.height, 0))
        parts.append(_lzw_uncompressed(frame_indices))
    parts.append(b"\x3b")
    return b"".join(parts)


def encode_wav(pcm16: bytes, sample_rate: int, channels: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm16)
    return buf.getvalue()


def encode_latent(shape: list[int], metadata: dict[str, str] | None = None) -> bytes:
    """A zero latent in the safetensors layout ComfyUI's SaveLatent writes."""
    size = 4
    for dim in shape:
        size *= dim
    header: dict[str, object] = {
        "latent_tensor": {"dtype": "F32", "shape": shape, "data_offsets": [0, size]},
        "latent_format_version_0": {"dtype": "F32", "shape": [0], "data_offsets": [size, size]},
    }
    if metadata:
        header["__metadata__"] = metadata
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + bytes(size)


# An MP4 the fakes can write without an encoder: a valid `ftyp` box plus a `free` box naming
# the frame count. Players reject it; content-type handling and byte transport are what it tests.
def encode_fake_mp4(frame_count: int, fps: float) -> bytes:
    ftyp = b"ftypisom" + struct.pack(">I", 0x200) + b"isomiso2mp41"
    note = f"comfyroute fake video: {frame_count} frames at {fps} fps".encode()
    return struct.pack(">I", 4 + len(ftyp)) + ftyp + struct.pack(">I", 8 + len(note)) + b"free" + note
