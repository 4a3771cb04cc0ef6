"""A fake ComfyUI server on loopback, built from recordings of a real one.

Behaves like ComfyUI 0.3.64 as recorded in /work/shared/reference/comfyui/ (status codes,
content types and body shapes of /prompt, /queue, /history, /view, /interrupt,
/upload/image, /object_info, /system_stats, /features), runs prompts FIFO on one worker
thread, and writes real files (PNG, APNG, GIF, WAV, safetensors latents) with the
standard library only, so it starts in milliseconds with nothing installed.

Run it by hand: ``python -m tests.fakes.comfyui_server --port 8188``.
See tests/fakes/README.md for what it does and does not imitate.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import email.policy
import hashlib
import hmac
import io
import json
import mimetypes
import posixpath
import random
import socket
import struct
import sys
import threading
import time
import traceback
import uuid
import wave
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, urlsplit

# ---------------------------------------------------------------------------------------------
# Media: tiny deterministic encoders (the same image always gives the same bytes)
# ---------------------------------------------------------------------------------------------

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
    colours = set()
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


# ---------------------------------------------------------------------------------------------
# Node schemas
# ---------------------------------------------------------------------------------------------

# Verbatim entries of /work/shared/reference/comfyui/object_info.json (ComfyUI 0.3.64) for the
# model-free classes the fake can execute.
OBJECT_INFO_FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "fakes" / "object_info.json"


def _schema(
    name: str,
    required: dict[str, list[Any]],
    outputs: list[str],
    *,
    output_node: bool,
    category: str,
    display_name: str,
    python_module: str,
) -> dict[str, Any]:
    return {
        "input": {"required": required},
        "input_order": {"required": list(required)},
        "output": outputs,
        "output_is_list": [False] * len(outputs),
        "output_name": outputs,
        "name": name,
        "display_name": display_name,
        "description": "Defined by the comfyroute test fake (not in the recorded server).",
        "python_module": python_module,
        "category": category,
        "output_node": output_node,
    }


# Classes the recorded server lacked but whose output kinds the backend must handle: audio
# (`audio`, modelled on comfy_extras' SaveAudio, but writing WAV) and video (`gifs`, modelled on
# VideoHelperSuite's VHS_VideoCombine).
FAKE_ONLY_CLASSES: dict[str, dict[str, Any]] = {
    "EmptyAudio": _schema(
        "EmptyAudio",
        {
            "duration": ["FLOAT", {"default": 1.0, "min": 0.01, "max": 60.0, "step": 0.01}],
            "sample_rate": ["INT", {"default": 44100, "min": 8000, "max": 192000}],
            "channels": ["INT", {"default": 1, "min": 1, "max": 2}],
        },
        ["AUDIO"],
        output_node=False,
        category="audio",
        display_name="Empty Audio (fake)",
        python_module="tests.fakes",
    ),
    "SaveAudio": _schema(
        "SaveAudio",
        {"audio": ["AUDIO"], "filename_prefix": ["STRING", {"default": "audio/ComfyUI"}]},
        [],
        output_node=True,
        category="audio",
        display_name="Save Audio (fake, WAV)",
        python_module="tests.fakes",
    ),
    "VHS_VideoCombine": _schema(
        "VHS_VideoCombine",
        {
            "images": ["IMAGE"],
            "frame_rate": ["FLOAT", {"default": 8.0, "min": 1.0, "max": 120.0, "step": 1.0}],
            "loop_count": ["INT", {"default": 0, "min": 0, "max": 100, "step": 1}],
            "filename_prefix": ["STRING", {"default": "AnimateDiff"}],
            "format": [["image/gif", "video/h264-mp4"], {}],
            "pingpong": ["BOOLEAN", {"default": False}],
            "save_output": ["BOOLEAN", {"default": True}],
        },
        [],
        output_node=True,
        category="Video Helper Suite",
        display_name="Video Combine (fake)",
        python_module="tests.fakes",
    ),
}


def load_object_info() -> dict[str, dict[str, Any]]:
    """The schemas the fake serves and validates against (a fresh copy each call)."""
    info: dict[str, dict[str, Any]] = json.loads(OBJECT_INFO_FIXTURE.read_text())
    info.update(copy.deepcopy(FAKE_ONLY_CLASSES))
    return info


# ---------------------------------------------------------------------------------------------
# Validation (a port of ComfyUI's execution.validate_prompt / validate_inputs)
# ---------------------------------------------------------------------------------------------


@dataclass
class Validation:
    ok: bool
    error: dict[str, Any] | None
    outputs: list[str]
    node_errors: dict[str, Any]


def _error(kind: str, message: str, details: str = "", **extra: Any) -> dict[str, Any]:
    return {"type": kind, "message": message, "details": details, "extra_info": extra}


def _type_matches(received: Any, expected: Any) -> bool:
    if received == expected:
        return True
    if not isinstance(received, str) or not isinstance(expected, str):
        return False
    if "*" in (received, expected):
        return True
    got = {t.strip() for t in received.split(",")}
    want = {t.strip() for t in expected.split(",")}
    return bool(got & want)


def _input_specs(schema: dict[str, Any]) -> list[tuple[str, str, Any, dict[str, Any]]]:
    """(name, category, type, extra) for every required and optional input, in schema order."""
    specs = []
    for category in ("required", "optional"):
        for name, spec in schema.get("input", {}).get(category, {}).items():
            extra = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            specs.append((name, category, spec[0], extra))
    return specs


def _combo_options(input_type: Any, extra: dict[str, Any]) -> list[Any] | None:
    if isinstance(input_type, list):
        return input_type
    if input_type == "COMBO":
        return list(extra.get("options", []))
    return None


class _Validator:
    def __init__(
        self, prompt: dict[str, Any], object_info: dict[str, Any], input_exists: Callable[[str], bool]
    ) -> None:
        self.prompt = prompt
        self.object_info = object_info
        self.input_exists = input_exists
        self.validated: dict[str, tuple[bool, list[dict[str, Any]]]] = {}

    def node(self, node_id: str) -> tuple[bool, list[dict[str, Any]]]:
        if node_id in self.validated:
            return self.validated[node_id]
        node = self.prompt[node_id]
        inputs = node.get("inputs", {})
        schema = self.object_info[node["class_type"]]
        errors: list[dict[str, Any]] = []
        valid = True
        custom = {"image"} if node["class_type"] == "LoadImage" else set()
        for name, category, input_type, extra in _input_specs(schema):
            config = [input_type, extra]
            if name not in inputs:
                if category == "required":
                    errors.append(_error("required_input_missing", "Required input is missing", name, input_name=name))
                continue
            value = inputs[name]
            if isinstance(value, list):
                if len(value) != 2:
                    errors.append(
                        _error(
                            "bad_linked_input",
                            "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                            name,
                            input_name=name,
                            input_config=config,
                            received_value=value,
                        )
                    )
                    continue
                source_id, slot = value
                # A link to a missing node raises KeyError here, exactly where ComfyUI does.
                received = self.object_info[self.prompt[source_id]["class_type"]]["output"][slot]
                if not _type_matches(received, input_type):
                    errors.append(
                        _error(
                            "return_type_mismatch",
                            "Return type mismatch between linked nodes",
                            f"{name}, received_type({received}) mismatch input_type({input_type})",
                            input_name=name,
                            input_config=config,
                            received_type=received,
                            linked_node=value,
                        )
                    )
                    continue
                try:
                    if not self.node(source_id)[0]:
                        valid = False
                except Exception as exc:
                    valid = False
                    self.validated[source_id] = (
                        False,
                        [
                            _error(
                                "exception_during_inner_validation",
                                "Exception when validating inner node",
                                str(exc),
                                input_name=name,
                                input_config=config,
                                exception_message=str(exc),
                                exception_type=type(exc).__name__,
                                traceback=traceback.format_tb(exc.__traceback__),
                                linked_node=value,
                            )
                        ],
                    )
                continue
            converters: dict[str, Callable[[Any], Any]] = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}
            if isinstance(input_type, str) and input_type in converters:
                try:
                    value = converters[input_type](value)
                except Exception as exc:
                    errors.append(
                        _error(
                            "invalid_input_type",
                            f"Failed to convert an input value to a {input_type} value",
                            f"{name}, {value}, {exc}",
                            input_name=name,
                            input_config=config,
                            received_value=value,
                            exception_message=str(exc),
                        )
                    )
                    continue
                inputs[name] = value
            if name in custom:
                continue
            if "min" in extra and value < extra["min"]:
                errors.append(
                    _error(
                        "value_smaller_than_min",
                        f"Value {value} smaller than min of {extra['min']}",
                        name,
                        input_name=name,
                        input_config=config,
                        received_value=value,
                    )
                )
                continue
            if "max" in extra and value > extra["max"]:
                errors.append(
                    _error(
                        "value_bigger_than_max",
                        f"Value {value} bigger than max of {extra['max']}",
                        name,
                        input_name=name,
                        input_config=config,
                        received_value=value,
                    )
                )
                continue
            options = _combo_options(input_type, extra)
            if options is not None and value not in options:
                big = len(options) > 20
                listing = f"(list of length {len(options)})" if big else str(options)
                errors.append(
                    _error(
                        "value_not_in_list",
                        "Value not in list",
                        f"{name}: '{value}' not in {listing}",
                        input_name=name,
                        input_config=None if big else config,
                        received_value=value,
                    )
                )
        # LoadImage.VALIDATE_INPUTS: the file must exist (this replaces the combo check).
        image = inputs.get("image")
        if custom and isinstance(image, str) and not self.input_exists(image):
            errors.append(
                _error(
                    "custom_validation_failed",
                    "Custom validation failed for node",
                    f"image - Invalid image file: {image}",
                    input_name="image",
                )
            )
        result = (not errors and valid, errors)
        self.validated[node_id] = result
        return result


def validate_prompt(
    prompt: dict[str, Any], object_info: dict[str, Any], input_exists: Callable[[str], bool]
) -> Validation:
    """ComfyUI's validation rules and error shapes. ``prompt`` gets INT/FLOAT inputs converted,
    as ComfyUI does. A prompt that is not a mapping of mappings raises (the server answers 500)."""
    outputs = []
    for node_id, node in prompt.items():
        if "class_type" not in node:
            message = "Cannot execute because a node is missing the class_type property."
            return Validation(False, _error("invalid_prompt", message, f"Node ID '#{node_id}'"), [], {})
        class_type = node["class_type"]
        if class_type not in object_info:
            message = f"Cannot execute because node {class_type} does not exist."
            return Validation(False, _error("invalid_prompt", message, f"Node ID '#{node_id}'"), [], {})
        if object_info[class_type].get("output_node") is True:
            outputs.append(node_id)
    if not outputs:
        return Validation(False, _error("prompt_no_outputs", "Prompt has no outputs"), [], {})

    validator = _Validator(prompt, object_info, input_exists)
    good: list[str] = []
    failed: list[tuple[str, list[dict[str, Any]]]] = []
    node_errors: dict[str, Any] = {}
    for output in outputs:
        try:
            ok, reasons = validator.node(output)
        except Exception as exc:
            ok = False
            reasons = [
                _error(
                    "exception_during_validation",
                    "Exception when validating node",
                    str(exc),
                    exception_type=type(exc).__name__,
                    traceback=traceback.format_tb(exc.__traceback__),
                )
            ]
            validator.validated[output] = (False, reasons)
        if ok:
            good.append(output)
            continue
        failed.append((output, reasons))
        for node_id, (node_ok, node_reasons) in validator.validated.items():
            if node_ok or not node_reasons:
                continue
            entry = node_errors.setdefault(
                node_id,
                {"errors": node_reasons, "dependent_outputs": [], "class_type": prompt[node_id]["class_type"]},
            )
            entry["dependent_outputs"].append(output)
    if not good:
        details = "\n".join(f"{r['message']}: {r['details']}" for _, reasons in failed for r in reasons)
        error = _error("prompt_outputs_failed_validation", "Prompt outputs failed validation", details)
        return Validation(False, error, [], node_errors)
    return Validation(True, None, good, node_errors)


# ---------------------------------------------------------------------------------------------
# Files (the output/, temp/ and input/ folders, in memory)
# ---------------------------------------------------------------------------------------------

FOLDER_TYPES = ("output", "temp", "input")
_CONTENT_TYPES = {
    ".png": "image/png",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".mp4": "video/mp4",
    ".latent": "application/octet-stream",
    ".txt": "text/plain",
}


def content_type_for(filename: str) -> str:
    suffix = PurePosixPath(filename).suffix.lower()
    return _CONTENT_TYPES.get(suffix) or mimetypes.guess_type(filename)[0] or "application/octet-stream"


class SaveOutsideFolder(Exception):
    """A filename_prefix that climbs out of the folder (ComfyUI refuses it at run time)."""


class FileStore:
    """ComfyUI's folders in memory, keyed by (folder type, subfolder, filename). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[tuple[str, str, str], bytes] = {}

    def put(self, folder: str, subfolder: str, filename: str, data: bytes) -> None:
        with self._lock:
            self._files[(folder, subfolder, filename)] = data

    def get(self, folder: str, subfolder: str, filename: str) -> bytes | None:
        with self._lock:
            return self._files.get((folder, subfolder, filename))

    def names(self, folder: str) -> list[str]:
        with self._lock:
            return sorted(f"{sub}/{name}" if sub else name for (kind, sub, name) in self._files if kind == folder)

    def reserve(self, folder: str, prefix: str, count: int, name: Callable[[str, int], str]) -> tuple[str, list[str]]:
        """Split ``prefix`` into subfolder and base name and pick ``count`` unused names,
        numbering after the highest counter already used for that base (ComfyUI's rule)."""
        normal = posixpath.normpath(prefix) if prefix else "ComfyUI"
        if normal.startswith(("/", "..")):
            raise SaveOutsideFolder("Saving image outside the output folder is not allowed.")
        subfolder, base = posixpath.split(normal)
        with self._lock:
            highest = 0
            for kind, sub, filename in self._files:
                if kind != folder or sub != subfolder or not filename.startswith(base + "_"):
                    continue
                digits = filename[len(base) + 1 :].split("_")[0].split(".")[0]
                if digits.isdigit():
                    highest = max(highest, int(digits))
            names = [name(base, highest + 1 + i) for i in range(count)]
            for filename in names:  # claimed now so a concurrent save cannot reuse the counter
                self._files[(folder, subfolder, filename)] = b""
        return subfolder, names


def split_annotated(name: str, default: str = "input") -> tuple[str, str, str]:
    """``"sub/pic.png [output]"`` -> (folder type, subfolder, filename); ``default`` without
    an annotation (ComfyUI's annotated_filepath)."""
    folder = default
    for kind in FOLDER_TYPES:
        if name.endswith(f" [{kind}]"):
            folder, name = kind, name[: -len(kind) - 3]
    subfolder, filename = posixpath.split(name)
    return folder, subfolder, filename


# ---------------------------------------------------------------------------------------------
# Node execution
# ---------------------------------------------------------------------------------------------


class NodeFailed(Exception):
    """A node raised while running; becomes an ``execution_error``."""

    def __init__(self, exception_type: str, message: str, frames: list[str] | None = None) -> None:
        super().__init__(message)
        self.exception_type = exception_type
        self.message = message
        self.frames = frames or []


# The frames of the recorded ImageBlur failure (responses/runtime_error.json), so a fake error
# carries a traceback that looks like the real one.
BLUR_TRACEBACK = [
    '  File "ComfyUI/execution.py", line 496, in execute\n    output_data, output_ui, has_subgraph, '
    "has_pending_tasks = await get_output_data(prompt_id, unique_id, obj, input_data_all, "
    "execution_block_cb=execution_block_cb, pre_execute_cb=pre_execute_cb, hidden_inputs=hidden_inputs)\n",
    '  File "ComfyUI/comfy_extras/nodes_post_processing.py", line 98, in execute\n    padded_image = '
    "F.pad(image, (blur_radius,blur_radius,blur_radius,blur_radius), 'reflect')\n",
    '  File "site-packages/torch/nn/functional.py", line 5849, in pad\n    return torch._C._nn.pad(input, '
    "pad, mode, value)\n",
]
MAX_PIXELS = 64 * 1024 * 1024  # keeps a typo'd 16384x16384 batch from eating the test machine


@dataclass
class RunContext:
    prompt_id: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    store: FileStore

    def metadata(self) -> dict[str, str]:
        text = {"prompt": json.dumps(self.prompt)}
        for key, value in self.extra_data.get("extra_pnginfo", {}).items():
            text[key] = json.dumps(value)
        return text

    def save(
        self, folder: str, prefix: str, blobs: list[bytes], name: Callable[[str, int], str]
    ) -> list[dict[str, str]]:
        try:
            subfolder, names = self.store.reserve(folder, prefix, len(blobs), name)
        except SaveOutsideFolder as exc:
            raise NodeFailed("Exception", str(exc)) from exc
        for filename, blob in zip(names, blobs, strict=True):
            self.store.put(folder, subfolder, filename, blob)
        return [{"filename": n, "subfolder": subfolder, "type": folder} for n in names]


NodeResult = tuple[tuple[Any, ...], dict[str, list[Any]] | None]


def _images(value: Any) -> list[Image]:
    return list(value)


def _node_empty_image(ctx: RunContext, i: dict[str, Any]) -> NodeResult:
    if i["width"] * i["height"] * i["batch_size"] > MAX_PIXELS:
        raise NodeFailed("RuntimeError", "[fake ComfyUI] refusing to allocate a batch this large")
    image = Image.solid(i["width"], i["height"], i["color"])
    return ([image] * i["batch_size"],), None


def _node_invert(ctx: RunContext, i: dict[str, Any]) -> NodeResult:
    return ([img.inverted() for img in _images(i["image"])],), None


def _node_blur(ctx: RunContext, i: dict[str, Any]) -> NodeResult:
    images, radius = _images(i["image"]), i["blur_radius"]
    first = images[0]
    # torch's reflect padding needs pad < dimension, checked from the last (width) dimension.
    dim = 3 if radius >= first.width else 2 if radius >= first.height else None
    if dim is not None:
        message = (
            "Argument #4: Padding size should be less than the corresponding input dimension, but got: "
            f"padding ({radius}, {radius}) at dimension {dim} of input "
            f"[{len(images)}, 3, {first.height}, {first.width}]\n"
        )
        raise NodeFailed("RuntimeError", message, BLUR_TRACEBACK)
    # A Gaussian blur leaves a solid image unchanged; the fake does not blur anything else.
    return (images,), None


def _node_load_image(ctx: RunContext, i: dict[str, Any]) -> NodeResult:
    folder, subfolder, filename = split_annotated(i["image"])
    data = ctx.store.get(folder, subfolder, filename)
    if data is None:
        raise NodeFailed("FileNotFoundError", f"[Errno 2] No such file or directory: '{i['image']}'")
    try:
        image = decode_png(data)
    except MediaError as exc:
        raise NodeFailed("UnidentifiedImageError", f"{exc}: '{i['image']}'") from exc
    return ([image], [image.width, image.height]), None


def _node_save_image(ctx: RunContext, i: dict[str, Any]) -> NodeResult:
    images = _images(i["images"])
    blobs = [encode_png(img, text=ctx.metadata()) for img in images]
    saved = ctx.save("output", i["filename_prefix"], blobs, lambda base, n: f"{base}_{n:05}_.png")
    return (), {"images": saved}


def _node_preview_image(ctx: RunContext, i: dict[str, Any]) -> NodeResult:
    images = _images(i["images"])
    suffix = "".join(random.choice("abcdefghijklmnopqrstupvxyz") for _ in range(5))
    blobs = [encode_png(img, text=ctx.metadata(), level=1) for img in images]
    saved = ctx.save("temp", f"ComfyUI_temp_{suffix}", blobs, lambda base, n: f"{base}_{n:05}_.png")
    return (), {"images": saved}


def _node_save_websocket(ctx: RunContext, i: dict[str, Any]) -> NodeResult:
    # The real node streams the PNGs over /ws and records nothing in history.
    return (), None


def _node_empty_latent(ctx: RunContext, i: dict[str, Any]) -> NodeResult:
    return ({"shape": [i["batch_size"], 4, i["height"] // 8, i["width"] // 8]},), None


def _node_save_latent(ctx: RunContext, i: dict[str, Any]) -> NodeResult:
    blob = encode_latent(i["samples"]["shape"], ctx.metadata())
    saved = ctx.save("output", i["filename_prefix"], [blob], lambda base, n: f"{base}_{n:05}_.latent")
    return (), {"latents": saved}


def _node_save_webp(ctx: RunContext, i: dict[str, Any]) -> NodeResult:
    images = _images(i["images"])
    saved = ctx.save("output", i["filename_prefix"], [WEBP_1X1], lambda base, n: f"{base}_{n:05}_.webp")
    return (), {"images": saved, "animated": [len(images) != 1]}


def _node_save_apng(ctx: RunContext, i: dict[str, Any]) -> NodeResult:
    blob = encode_apng(_images(i["images"]), i["fps"], text=ctx.metadata())
    saved = ctx.save("output", i["filename_prefix"], [blob], lambda base, n: f"{base}_{n:05}_.png")
    return (), {"images": saved, "animated": [True]}


def _node_preview_any(ctx: RunContext, i: dict[str, Any]) -> NodeResult:
    source = i["source"]
    if isinstance(source, str):
        value = source
    elif isinstance(source, int | float | bool):
        value = str(source)
    else:
        try:
            value = json.dumps(source)
        except TypeError:
            value = str(source)
    return (), {"text": [value]}


def _node_primitive_string(ctx: RunContext, i: dict[str, Any]) -> NodeResult:
    return (i["value"],), None


def _node_concat(ctx: RunContext, i: dict[str, Any]) -> NodeResult:
    return (i["delimiter"].join([i["string_a"], i["string_b"]]),), None


def _node_empty_audio(ctx: RunContext, i: dict[str, Any]) -> NodeResult:
    frames = max(1, round(i["duration"] * i["sample_rate"]))
    return (
        {"sample_rate": i["sample_rate"], "channels": i["channels"], "pcm": bytes(frames * 2 * i["channels"])},
    ), None


def _node_save_audio(ctx: RunContext, i: dict[str, Any]) -> NodeResult:
    audio = i["audio"]
    blob = encode_wav(audio["pcm"], audio["sample_rate"], audio["channels"])
    saved = ctx.save("output", i["filename_prefix"], [blob], lambda base, n: f"{base}_{n:05}_.wav")
    return (), {"audio": saved}


def _node_video_combine(ctx: RunContext, i: dict[str, Any]) -> NodeResult:
    frames = _images(i["images"])
    if i["pingpong"]:
        frames = frames + frames[-2:0:-1]
    fmt, fps = i["format"], i["frame_rate"]
    if fmt == "image/gif":
        blob, ext = encode_gif(frames, fps, i["loop_count"]), "gif"
    else:
        blob, ext = encode_fake_mp4(len(frames), fps), "mp4"
    folder = "output" if i["save_output"] else "temp"
    saved = ctx.save(folder, i["filename_prefix"], [blob], lambda base, n: f"{base}_{n:05}.{ext}")
    return (), {"gifs": [{**entry, "format": fmt, "frame_rate": fps} for entry in saved]}


NODE_FUNCTIONS: dict[str, Callable[[RunContext, dict[str, Any]], NodeResult]] = {
    "EmptyImage": _node_empty_image,
    "ImageInvert": _node_invert,
    "ImageBlur": _node_blur,
    "LoadImage": _node_load_image,
    "SaveImage": _node_save_image,
    "PreviewImage": _node_preview_image,
    "SaveImageWebsocket": _node_save_websocket,
    "EmptyLatentImage": _node_empty_latent,
    "SaveLatent": _node_save_latent,
    "SaveAnimatedWEBP": _node_save_webp,
    "SaveAnimatedPNG": _node_save_apng,
    "PreviewAny": _node_preview_any,
    "PrimitiveString": _node_primitive_string,
    "StringConcatenate": _node_concat,
    "EmptyAudio": _node_empty_audio,
    "SaveAudio": _node_save_audio,
    "VHS_VideoCombine": _node_video_combine,
}


def execution_order(prompt: dict[str, Any], outputs: list[str]) -> list[str]:
    """Every node the outputs need, dependencies first (depth-first from each output)."""
    order: list[str] = []
    seen: set[str] = set()

    def visit(node_id: str) -> None:
        if node_id in seen:
            return
        seen.add(node_id)
        for value in prompt[node_id].get("inputs", {}).values():
            if isinstance(value, list) and len(value) == 2:
                visit(value[0])
        order.append(node_id)

    for output in outputs:
        visit(output)
    return order


def node_signature(prompt: dict[str, Any], node_id: str, store: FileStore, memo: dict[str, str]) -> str:
    """A cache key: the node's class and inputs with links replaced by their sources' keys."""
    if node_id in memo:
        return memo[node_id]
    node = prompt[node_id]
    inputs: dict[str, Any] = {}
    for name, value in node.get("inputs", {}).items():
        if isinstance(value, list) and len(value) == 2:
            inputs[name] = [node_signature(prompt, value[0], store, memo), value[1]]
        else:
            inputs[name] = value
    if node["class_type"] == "LoadImage":  # ComfyUI's IS_CHANGED hashes the file
        data = store.get(*split_annotated(str(inputs.get("image", "")))) or b""
        inputs["__file__"] = hashlib.sha256(data).hexdigest()
    raw = json.dumps([node["class_type"], inputs], sort_keys=True, default=str)
    memo[node_id] = hashlib.sha256(raw.encode()).hexdigest()
    return memo[node_id]


# ---------------------------------------------------------------------------------------------
# The queue, the worker and the history (no HTTP: FakeRunPod drives this directly)
# ---------------------------------------------------------------------------------------------


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class QueueItem:
    number: int
    prompt_id: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    outputs: list[str]

    def as_list(self) -> list[Any]:
        return [self.number, self.prompt_id, self.prompt, self.extra_data, self.outputs]


class _Interrupted(Exception):
    pass


# Receives the engine's websocket events: (type, data, client id or None for everyone). Data is
# a message's ``data`` object, or bytes for a binary frame (a preview image).
EventSink = Callable[[str, "dict[str, Any] | bytes", "str | None"], None]
# ComfyUI's binary frame header: event type 1 (PREVIEW_IMAGE), image format 2 (PNG).
PREVIEW_IMAGE_HEADER = struct.pack(">II", 1, 2)


class ComfyEngine:
    """ComfyUI's prompt queue: one worker thread runs prompts FIFO and records history."""

    def __init__(
        self,
        *,
        run_seconds: float = 0.2,
        node_seconds: float | None = None,
        progress_steps: int = 0,
        cache: bool = False,
        object_info: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.run_seconds = run_seconds
        self.node_seconds = node_seconds
        # > 0: every node reports that many `progress` steps (with a preview frame each) while
        # it runs, like a sampler; 0: nodes report only start and end, like ImageInvert.
        self.progress_steps = progress_steps
        # What ComfyUI's server keeps for its websocket: the client of the running prompt and
        # the node it runs (re-sent to that client when it reconnects).
        self.client_id: str | None = None
        self.last_node_id: str | None = None
        self.on_event: EventSink | None = None
        self.cache_enabled = cache
        self.object_info = object_info or load_object_info()
        self.store = FileStore()
        # ComfyUI ships input/example.png, so `LoadImage example.png` works on a fresh server.
        self.store.put("input", "", "example.png", encode_png(Image.solid(64, 64, 0x808080)))
        self._cond = threading.Condition()
        self._number = 0
        self._pending: list[QueueItem] = []
        self._running: QueueItem | None = None
        self._history: dict[str, dict[str, Any]] = {}
        self._cache: dict[str, tuple[tuple[Any, ...], dict[str, list[Any]] | None]] = {}
        self._interrupt = threading.Event()
        self._stopping = False
        self._paused = False
        self._worker: threading.Thread | None = None
        self.executed_prompts = 0  # prompts that ran (cached or not), for tests

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self._worker is None:
            self._stopping = False
            self._worker = threading.Thread(target=self._work, name="fake-comfyui-worker", daemon=True)
            self._worker.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._interrupt.set()
            self._cond.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=5)
            self._worker = None

    # -- the API --------------------------------------------------------------------------

    def object_info_now(self) -> dict[str, dict[str, Any]]:
        info = copy.deepcopy(self.object_info)
        if "LoadImage" in info:  # its combo lists the input folder, as on a real server
            info["LoadImage"]["input"]["required"]["image"][0] = self.store.names("input")
        return info

    def input_exists(self, name: str) -> bool:
        return self.store.get(*split_annotated(name)) is not None

    def submit(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """POST /prompt. Raises (-> HTTP 500) on the shapes that crash ComfyUI too."""
        if "prompt" not in body:
            error = _error("no_prompt", "No prompt provided", "No prompt provided")
            return 400, {"error": error, "node_errors": {}}
        with self._cond:
            number = int(body["number"]) if "number" in body else self._number
            if "number" not in body:
                self._number += 1
                if body.get("front"):
                    number = -number
        prompt = copy.deepcopy(body["prompt"])
        prompt_id = str(body.get("prompt_id") or uuid.uuid4())
        result = validate_prompt(prompt, self.object_info, self.input_exists)
        if not result.ok:
            return 400, {"error": result.error, "node_errors": result.node_errors}
        extra_data = dict(body.get("extra_data") or {})
        if "client_id" in body:
            extra_data["client_id"] = body["client_id"]
        outputs = [node_id for node_id in prompt if node_id in result.outputs]
        with self._cond:
            self._pending.append(QueueItem(number, prompt_id, prompt, extra_data, outputs))
            self._cond.notify_all()
        self._status_event()
        return 200, {"prompt_id": prompt_id, "number": number, "node_errors": result.node_errors}

    def queue(self) -> dict[str, list[list[Any]]]:
        with self._cond:
            running = [self._running.as_list()] if self._running else []
            pending = [item.as_list() for item in sorted(self._pending, key=lambda it: it.number)]
            return copy.deepcopy({"queue_running": running, "queue_pending": pending})

    def queue_remaining(self) -> int:
        with self._cond:
            return len(self._pending) + (1 if self._running else 0)

    def delete_pending(self, prompt_ids: list[str]) -> None:
        with self._cond:
            self._pending = [item for item in self._pending if item.prompt_id not in prompt_ids]

    def clear_pending(self) -> None:
        with self._cond:
            self._pending = []

    def interrupt(self, prompt_id: str | None = None) -> bool:
        """Interrupt the running prompt (only if it is ``prompt_id``, when given)."""
        with self._cond:
            if self._running is None or (prompt_id and self._running.prompt_id != prompt_id):
                return False
            self._interrupt.set()
            return True

    def history(self, prompt_id: str | None = None, max_items: int | None = None, offset: int = -1) -> dict[str, Any]:
        with self._cond:
            if prompt_id is not None:
                entry = self._history.get(prompt_id)
                return {prompt_id: copy.deepcopy(entry)} if entry else {}
            keys = list(self._history)
            if offset < 0 and max_items is not None:
                offset = len(keys) - max_items
            keys = keys[max(offset, 0) :]
            if max_items is not None:
                keys = keys[:max_items]
            return copy.deepcopy({key: self._history[key] for key in keys})

    def delete_history(self, prompt_ids: list[str] | None = None) -> None:
        with self._cond:
            if prompt_ids is None:
                self._history.clear()
            for prompt_id in prompt_ids or []:
                self._history.pop(prompt_id, None)

    def pause(self) -> None:
        """Hold the queue: prompts stay pending (deterministic "queued" states for tests)."""
        with self._cond:
            self._paused = True

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Block until nothing is queued or running (for tests)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending or self._running:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    # -- websocket events -----------------------------------------------------------------

    def _emit(self, event: str, data: dict[str, Any] | bytes, client_id: str | None) -> None:
        sink = self.on_event
        if sink is not None:
            sink(event, data, client_id)

    def current_node_of(self, client_id: str) -> str | None:
        """The node running for ``client_id``'s prompt, if that client's prompt runs."""
        with self._cond:
            return self.last_node_id if self.client_id == client_id else None

    def _status_event(self) -> None:
        # ComfyUI tells every socket when the queue changes.
        self._emit("status", {"status": {"exec_info": {"queue_remaining": self.queue_remaining()}}}, None)

    def _to_client(self, item: QueueItem, event: str, data: dict[str, Any] | bytes) -> None:
        # Execution events go only to the prompt's client, and nowhere without one.
        client_id = item.extra_data.get("client_id")
        if isinstance(client_id, str) and client_id:
            self._emit(event, data, client_id)

    def _progress_state(self, item: QueueItem, nodes: dict[str, tuple[str, float, float]]) -> None:
        """ComfyUI's `progress_state`: every node that started, with its state and value/max."""
        pid = item.prompt_id
        states = {
            node_id: {
                "value": value,
                "max": maximum,
                "state": state,
                "node_id": node_id,
                "prompt_id": pid,
                "display_node_id": node_id,
                "parent_node_id": None,
                "real_node_id": node_id,
            }
            for node_id, (state, value, maximum) in nodes.items()
        }
        self._to_client(item, "progress_state", {"prompt_id": pid, "nodes": states})

    def _wait_node(self, item: QueueItem, node_id: str, seconds: float, nodes: dict[str, Any]) -> None:
        """Spend a node's run time; raises _Interrupted as soon as an interrupt comes."""
        steps = self.progress_steps
        if steps <= 0:
            if self._interrupt.wait(seconds):  # ComfyUI notices an interrupt mid-node
                raise _Interrupted
            return
        preview = PREVIEW_IMAGE_HEADER + encode_png(Image.solid(1, 1, 0x808080))
        for step in range(1, steps + 1):
            if self._interrupt.wait(seconds / steps):
                raise _Interrupted
            # As a sampler's progress hook: progress_state, then progress, then the preview.
            nodes[node_id] = ("running", step, steps)
            self._progress_state(item, nodes)
            info = {"value": step, "max": steps, "prompt_id": item.prompt_id, "node": node_id}
            self._to_client(item, "progress", info)
            self._to_client(item, "preview", preview)

    # -- the worker -----------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._cond:
                while (not self._pending or self._paused) and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                item = min(self._pending, key=lambda it: it.number)
                self._pending.remove(item)
                self._running = item
                self._interrupt.clear()  # ComfyUI resets the flag when a prompt starts
                client_id = item.extra_data.get("client_id")
                self.client_id = client_id if isinstance(client_id, str) and client_id else None
            self._status_event()
            try:
                entry = self._execute(item)
            except Exception as exc:  # a bug in the fake must not wedge the queue
                failure = {"prompt_id": item.prompt_id, "exception_message": str(exc), "timestamp": _now_ms()}
                failure["exception_type"] = type(exc).__name__
                status = {"status_str": "error", "completed": False, "messages": [["execution_error", failure]]}
                entry = {"prompt": item.as_list(), "outputs": {}, "status": status, "meta": {}}
            with self._cond:
                self.last_node_id = None
                self._history[item.prompt_id] = entry
                self._running = None
                self.executed_prompts += 1
                self._cond.notify_all()
            # ComfyUI's worker: the queue status to everyone, then "nothing runs" to the client.
            self._status_event()
            self._to_client(item, "executing", {"node": None, "prompt_id": item.prompt_id})

    def _execute(self, item: QueueItem) -> dict[str, Any]:
        pid = item.prompt_id
        messages: list[list[Any]] = [["execution_start", {"prompt_id": pid, "timestamp": _now_ms()}]]
        self._to_client(item, *messages[-1])
        order = execution_order(item.prompt, item.outputs)
        memo: dict[str, str] = {}
        signatures = {n: node_signature(item.prompt, n, self.store, memo) for n in order}
        cached = [n for n in order if self.cache_enabled and signatures[n] in self._cache]
        messages.append(["execution_cached", {"nodes": cached, "prompt_id": pid, "timestamp": _now_ms()}])
        self._to_client(item, *messages[-1])
        to_run = [n for n in order if n not in cached]
        per_node = self.node_seconds if self.node_seconds is not None else self.run_seconds / max(1, len(to_run))
        values: dict[str, tuple[Any, ...]] = {}
        outputs: dict[str, Any] = {}
        executed: list[str] = []
        # Nodes that started, for progress_state: node -> (state, value, max).
        nodes: dict[str, tuple[str, float, float]] = {}
        fresh_cache: dict[str, tuple[tuple[Any, ...], dict[str, list[Any]] | None]] = {}
        ctx = RunContext(pid, item.prompt, item.extra_data, self.store)
        status_str, completed = "success", True
        for node_id in order:
            node = item.prompt[node_id]
            try:
                if node_id in cached:
                    result = self._cache[signatures[node_id]]
                else:
                    nodes[node_id] = ("running", 0.0, 1.0)
                    self._progress_state(item, nodes)
                    with self._cond:
                        self.last_node_id = node_id
                    self._to_client(item, "executing", {"node": node_id, "display_node": node_id, "prompt_id": pid})
                    self._wait_node(item, node_id, per_node, nodes)
                    inputs = {
                        name: values[v[0]][v[1]] if isinstance(v, list) and len(v) == 2 else v
                        for name, v in node.get("inputs", {}).items()
                    }
                    result = NODE_FUNCTIONS[node["class_type"]](ctx, inputs)
                    executed.append(node_id)
            except _Interrupted:
                status_str, completed = "error", False
                info = {"prompt_id": pid, "node_id": node_id, "node_type": node["class_type"]}
                info |= {"executed": executed[::-1], "timestamp": _now_ms()}
                messages.append(["execution_interrupted", info])
                break
            except Exception as exc:  # NodeFailed, or a bug here: either way the prompt fails, the worker lives
                status_str, completed = "error", False
                if not isinstance(exc, NodeFailed):
                    exc = NodeFailed(type(exc).__name__, str(exc), traceback.format_tb(exc.__traceback__))
                messages.append(["execution_error", self._error_message(item, node_id, executed, exc)])
                break
            values[node_id] = result[0]
            fresh_cache[signatures[node_id]] = result
            if result[1] is not None and node_id in item.outputs:
                outputs[node_id] = result[1]
                executed_info = {"node": node_id, "display_node": node_id, "output": result[1], "prompt_id": pid}
                self._to_client(item, "executed", copy.deepcopy(executed_info))
            if node_id in nodes or node_id in outputs:
                final = nodes.get(node_id, ("finished", 1.0, 1.0))[2]
                nodes[node_id] = ("finished", final, final)
                self._progress_state(item, nodes)
        if completed:
            messages.append(["execution_success", {"prompt_id": pid, "timestamp": _now_ms()}])
        self._to_client(item, *messages[-1])
        if self.cache_enabled:
            self._cache = fresh_cache  # like ComfyUI's classic cache: only the last prompt's nodes
        meta = {n: {"node_id": n, "display_node": n, "parent_node": None, "real_node_id": n} for n in outputs}
        return {
            "prompt": item.as_list(),
            "outputs": outputs,
            "status": {"status_str": status_str, "completed": completed, "messages": messages},
            "meta": meta,
        }

    def _error_message(self, item: QueueItem, node_id: str, executed: list[str], exc: NodeFailed) -> dict[str, Any]:
        node = item.prompt[node_id]
        current_inputs = {
            name: [f"<output of node {v[0]}>" if isinstance(v, list) else v]
            for name, v in node.get("inputs", {}).items()
        }
        return {
            "prompt_id": item.prompt_id,
            "node_id": node_id,
            "node_type": node["class_type"],
            "executed": executed[::-1],
            "exception_message": exc.message,
            "exception_type": exc.exception_type,
            "traceback": exc.frames,
            "current_inputs": current_inputs,
            "current_outputs": execution_order(item.prompt, item.outputs)[::-1],
            "timestamp": _now_ms(),
        }

    def upload(
        self, filename: str, data: bytes, *, subfolder: str = "", folder: str = "input", overwrite: bool = False
    ) -> dict[str, str] | None:
        """POST /upload/image; None when the name or subfolder is unacceptable (HTTP 400)."""
        if folder not in FOLDER_TYPES or not filename or "/" in filename or filename in (".", ".."):
            return None
        sub = posixpath.normpath(subfolder) if subfolder else ""
        if sub in (".",):
            sub = ""
        if sub.startswith(("/", "..")):
            return None
        name = filename
        if not overwrite:
            stem, dot, ext = filename.rpartition(".")
            stem, ext = (stem, dot + ext) if dot else (filename, "")
            n = 1
            while (existing := self.store.get(folder, sub, name)) is not None:
                if existing == data:  # ComfyUI reuses an identical file instead of renaming
                    break
                name = f"{stem} ({n}){ext}"
                n += 1
        self.store.put(folder, sub, name, data)
        return {"name": name, "subfolder": subfolder, "type": folder}


# ---------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------

# Bodies recorded from the reference server (responses/system_stats.json, features.json), with
# this process's own argv and a "fake" device name so nobody mistakes it for a GPU box.
SYSTEM_STATS: dict[str, Any] = {
    "system": {
        "os": "posix",
        "ram_total": 25276510208,
        "ram_free": 24223830016,
        "comfyui_version": "0.3.64",
        "required_frontend_version": "1.27.10",
        "installed_templates_version": "0.1.95",
        "required_templates_version": "0.1.95",
        "python_version": sys.version,
        "pytorch_version": "fake",
        "embedded_python": False,
        "argv": ["tests.fakes.comfyui_server"],
    },
    "devices": [
        {
            "name": "cpu (fake)",
            "type": "cpu",
            "index": None,
            "vram_total": 0,
            "vram_free": 0,
            "torch_vram_total": 0,
            "torch_vram_free": 0,
        }
    ],
}
FEATURES: dict[str, Any] = {"supports_preview_metadata": True, "max_upload_size": 104857600}
JSON_TYPE = "application/json; charset=utf-8"
SERVER_ERROR = b"500 Internal Server Error\n\nServer got itself in trouble"


class _Reply(Exception):
    """Raised by route code to answer at once."""

    def __init__(self, status: int, body: bytes = b"", content_type: str | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.content_type = status, body, content_type


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60  # an idle keep-alive connection does not pin a thread forever
    server: _FakeHTTPServer

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.open_connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.open_connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read assertions, not logs
        return

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            self.server.app.handle(self, method, body)
        except _Reply as reply:
            self.reply(reply.status, reply.body, reply.content_type)
        except Exception:  # anything unexpected is ComfyUI's generic 500
            self.reply(500, SERVER_ERROR, "text/plain; charset=utf-8")

    def reply(
        self, status: int, body: bytes = b"", content_type: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def reply_json(self, payload: Any, status: int = 200) -> None:
        self.reply(status, json.dumps(payload).encode(), JSON_TYPE)


# RFC 6455, the server side of it that ComfyUI's /ws needs: text and binary frames out
# (unmasked, unfragmented), the client's frames read and dropped, ping answered, close echoed.
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA
WS_MAX_CLIENT_FRAME = 1 << 20


def websocket_accept(key: str) -> str:
    # SHA-1 because RFC 6455 says so; it protects nothing here.
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


def websocket_frame(opcode: int, payload: bytes) -> bytes:
    size = len(payload)
    if size < 126:
        head = struct.pack(">BB", 0x80 | opcode, size)
    elif size < 1 << 16:
        head = struct.pack(">BBH", 0x80 | opcode, 126, size)
    else:
        head = struct.pack(">BBQ", 0x80 | opcode, 127, size)
    return head + payload


class _WebSocket:
    """One accepted websocket: sends from any thread, reads on the handler's thread."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._lock = threading.Lock()
        self.closed = False

    def send_frame(self, opcode: int, payload: bytes) -> None:
        with self._lock:
            if self.closed:
                return
            try:
                self._sock.sendall(websocket_frame(opcode, payload))
            except OSError:
                self.closed = True

    def send_json(self, message: dict[str, Any]) -> None:
        self.send_frame(OP_TEXT, json.dumps(message).encode())

    def serve(self, rfile: Any) -> None:
        """Read the client's frames until it closes or goes away."""
        try:
            while not self.closed:
                head = rfile.read(2)
                if len(head) < 2:
                    break
                opcode, size = head[0] & 0x0F, head[1] & 0x7F
                if size == 126:
                    (size,) = struct.unpack(">H", rfile.read(2))
                elif size == 127:
                    (size,) = struct.unpack(">Q", rfile.read(8))
                if size > WS_MAX_CLIENT_FRAME:
                    break
                mask = rfile.read(4) if head[1] & 0x80 else b"\0\0\0\0"
                data = rfile.read(size)
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
                if opcode == OP_CLOSE:
                    self.send_frame(OP_CLOSE, payload[:2])
                    break
                if opcode == OP_PING:
                    self.send_frame(OP_PONG, payload)
        except (OSError, struct.error):
            pass
        finally:
            with self._lock:
                self.closed = True


class _FakeHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    app: Any

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self.open_connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def close_connections(self) -> None:
        """Cut keep-alive connections too, so a stopped fake really stops answering."""
        with self.connections_lock:
            for conn in self.open_connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            self.open_connections.clear()


def _json_body(body: bytes) -> Any:
    try:
        return json.loads(body or b"null")
    except ValueError as exc:
        raise _Reply(500, SERVER_ERROR, "text/plain; charset=utf-8") from exc


def parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """Form fields of a multipart/form-data body: name -> (filename or None, bytes)."""
    message = BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    fields: dict[str, tuple[str | None, bytes]] = {}
    if not message.is_multipart():
        return fields
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str):
            payload = part.get_payload(decode=True)
            fields[name] = (part.get_filename(), payload if isinstance(payload, bytes) else b"")
    return fields


class FakeComfyUI:
    """A ComfyUI server on loopback that behaves like the recordings (see tests/fakes/README.md).

    Usable as a context manager or with ``start()`` / ``stop()``. Inspection for tests:
    ``submitted`` (every prompt POSTed, valid or not), ``interrupts`` (the prompt_id asked for,
    or None), ``deletes`` (prompt ids asked to be removed from the queue), ``files`` (names
    served by /view), ``requests`` ((method, path) of every request).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        run_seconds: float = 0.2,
        node_seconds: float | None = None,
        progress_steps: int = 0,
        required_headers: dict[str, str] | None = None,
        prefix: str = "",
        cache: bool = False,
    ) -> None:
        self.host, self._port = host, port
        self.required_headers = dict(required_headers or {})
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.engine = ComfyEngine(
            run_seconds=run_seconds, node_seconds=node_seconds, progress_steps=progress_steps, cache=cache
        )
        self.engine.on_event = self._broadcast
        self.submitted: list[dict[str, Any]] = []
        self.interrupts: list[str | None] = []
        self.deletes: list[str] = []
        self.files: list[str] = []
        self.requests: list[tuple[str, str]] = []
        self.ws_clients: list[str] = []  # the clientId of every websocket that connected
        # One socket per clientId, as in ComfyUI (a reconnect replaces the old one). The lock
        # keeps each event whole and the connect sequence (status, re-sent node) in order.
        self._sockets: dict[str, _WebSocket] = {}
        self._ws_lock = threading.Lock()
        self._httpd: _FakeHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:  # never shows the required header values
        return f"FakeComfyUI(url={self.url if self._httpd else None!r}, headers={sorted(self.required_headers)})"

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> FakeComfyUI:
        if self._httpd is None:
            self._httpd = _FakeHTTPServer((self.host, self._port), _Handler)
            self._httpd.app = self
            self.engine.start()
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd.close_connections()
            self._httpd = None
        self.engine.stop()

    def __enter__(self) -> FakeComfyUI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("FakeComfyUI is not started")
        return int(self._httpd.server_address[1])

    @property
    def addr(self) -> str:
        """``host:port`` (no scheme, no prefix), the COMFYUI_ADDR form."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """Base URL including the path prefix, e.g. ``http://127.0.0.1:8188/comfy``."""
        return f"http://{self.addr}{self.prefix}"

    # -- convenience for tests ------------------------------------------------------------

    def file_bytes(self, filename: str, subfolder: str = "", folder: str = "output") -> bytes | None:
        return self.engine.store.get(folder, subfolder, filename)

    def wait_idle(self, timeout: float = 5.0) -> bool:
        return self.engine.wait_idle(timeout)

    def pause(self) -> None:
        """Hold the queue: new prompts stay in ``queue_pending`` until ``resume()``."""
        self.engine.pause()

    def resume(self) -> None:
        self.engine.resume()

    # -- routing --------------------------------------------------------------------------

    def _authorised(self, handler: _Handler) -> bool:
        for name, expected in self.required_headers.items():
            got = handler.headers.get(name)
            if got is None or not hmac.compare_digest(got.encode(), expected.encode()):
                return False
        return True

    def handle(self, handler: _Handler, method: str, body: bytes) -> None:
        url = urlsplit(handler.path)
        path = url.path
        self.requests.append((method, path))
        if not self._authorised(handler):
            raise _Reply(401, b"Unauthorized", "text/plain; charset=utf-8")
        if self.prefix:
            if path != self.prefix and not path.startswith(self.prefix + "/"):
                raise _Reply(404, b"404: Not Found", "text/plain; charset=utf-8")
            path = path[len(self.prefix) :] or "/"
        if path.startswith("/api/"):  # ComfyUI serves every route under /api too
            path = path[4:]
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        route = self._route(method, path)
        if route is None:
            raise _Reply(404, b"404: Not Found", "text/plain; charset=utf-8")
        route(handler, path, query, body)

    def _route(self, method: str, path: str) -> Callable[[_Handler, str, dict[str, str], bytes], None] | None:
        exact = {
            ("GET", "/"): self._index,
            ("POST", "/prompt"): self._post_prompt,
            ("GET", "/prompt"): self._get_prompt,
            ("GET", "/queue"): self._get_queue,
            ("POST", "/queue"): self._post_queue,
            ("POST", "/interrupt"): self._post_interrupt,
            ("GET", "/history"): self._get_history,
            ("POST", "/history"): self._post_history,
            ("GET", "/view"): self._view,
            ("GET", "/system_stats"): lambda h, *_: h.reply_json(SYSTEM_STATS),
            ("GET", "/features"): lambda h, *_: h.reply_json(FEATURES),
            ("GET", "/object_info"): lambda h, *_: h.reply_json(self.engine.object_info_now()),
            ("POST", "/upload/image"): self._upload,
        }
        if (method, path) in exact:
            return exact[(method, path)]
        if method == "GET" and path == "/ws":
            return self._websocket
        if method == "GET" and path.startswith("/history/"):
            return self._get_history
        if method == "GET" and path.startswith("/object_info/"):
            return self._object_info_one
        return None

    # -- websocket ------------------------------------------------------------------------

    def _websocket(self, h: _Handler, path: str, query: dict[str, str], body: bytes) -> None:
        """ComfyUI's /ws: ``status`` on connect, the running node re-sent to the running prompt's
        client, then the events of that client's prompts until the client closes."""
        key = h.headers.get("Sec-WebSocket-Key", "")
        if "websocket" not in h.headers.get("Upgrade", "").lower() or not key:
            raise _Reply(400, b"No WebSocket UPGRADE hdr: None", "text/plain; charset=utf-8")
        h.close_connection = True
        h.send_response(101)
        h.send_header("Upgrade", "websocket")
        h.send_header("Connection", "Upgrade")
        h.send_header("Sec-WebSocket-Accept", websocket_accept(key))
        h.end_headers()
        sid = query.get("clientId") or uuid.uuid4().hex
        ws = _WebSocket(h.connection)
        with self._ws_lock:
            self._sockets[sid] = ws
            self.ws_clients.append(sid)
            queue_info = {"exec_info": {"queue_remaining": self.engine.queue_remaining()}}
            ws.send_json({"type": "status", "data": {"status": queue_info, "sid": sid}})
            # server.py: "On reconnect if we are the currently executing client send the current node"
            current = self.engine.current_node_of(sid)
            if current is not None:
                ws.send_json({"type": "executing", "data": {"node": current}})
        try:
            ws.serve(h.rfile)
        finally:
            with self._ws_lock:
                if self._sockets.get(sid) is ws:
                    del self._sockets[sid]

    def _broadcast(self, event: str, data: dict[str, Any] | bytes, client_id: str | None) -> None:
        with self._ws_lock:
            targets = list(self._sockets.values()) if client_id is None else [self._sockets.get(client_id)]
            for ws in targets:
                if ws is None:
                    continue
                if isinstance(data, bytes):
                    ws.send_frame(OP_BINARY, data)
                else:
                    ws.send_json({"type": event, "data": data})

    def _index(self, h: _Handler, path: str, query: dict[str, str], body: bytes) -> None:
        h.reply(200, b"<!doctype html><title>ComfyUI (fake)</title>", "text/html; charset=utf-8")

    def _post_prompt(self, h: _Handler, path: str, query: dict[str, str], body: bytes) -> None:
        data = _json_body(body)
        if not isinstance(data, dict):
            raise _Reply(500, SERVER_ERROR, "text/plain; charset=utf-8")
        if "prompt" in data:
            self.submitted.append(copy.deepcopy(data["prompt"]))
        status, payload = self.engine.submit(data)
        h.reply_json(payload, status)

    def _get_prompt(self, h: _Handler, path: str, query: dict[str, str], body: bytes) -> None:
        h.reply_json({"exec_info": {"queue_remaining": self.engine.queue_remaining()}})

    def _get_queue(self, h: _Handler, path: str, query: dict[str, str], body: bytes) -> None:
        h.reply_json(self.engine.queue())

    def _post_queue(self, h: _Handler, path: str, query: dict[str, str], body: bytes) -> None:
        data = _json_body(body)
        if not isinstance(data, dict):
            raise _Reply(500, SERVER_ERROR, "text/plain; charset=utf-8")
        if data.get("clear"):
            self.engine.clear_pending()
        if "delete" in data:
            ids = [str(x) for x in data["delete"]]
            self.deletes.extend(ids)
            self.engine.delete_pending(ids)
        h.reply(200)

    def _post_interrupt(self, h: _Handler, path: str, query: dict[str, str], body: bytes) -> None:
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            data = {}
        prompt_id = data.get("prompt_id") if isinstance(data, dict) else None
        self.interrupts.append(prompt_id)
        self.engine.interrupt(prompt_id)
        h.reply(200)

    def _get_history(self, h: _Handler, path: str, query: dict[str, str], body: bytes) -> None:
        if path.startswith("/history/"):
            h.reply_json(self.engine.history(path[len("/history/") :]))
            return
        max_items = int(query["max_items"]) if query.get("max_items") else None
        offset = int(query["offset"]) if query.get("offset") else -1
        h.reply_json(self.engine.history(max_items=max_items, offset=offset))

    def _post_history(self, h: _Handler, path: str, query: dict[str, str], body: bytes) -> None:
        data = _json_body(body)
        if isinstance(data, dict) and data.get("clear"):
            self.engine.delete_history()
        if isinstance(data, dict) and "delete" in data:
            self.engine.delete_history([str(x) for x in data["delete"]])
        h.reply(200)

    def _object_info_one(self, h: _Handler, path: str, query: dict[str, str], body: bytes) -> None:
        name = path[len("/object_info/") :]
        info = self.engine.object_info_now()
        h.reply_json({name: info[name]} if name in info else {})

    def _view(self, h: _Handler, path: str, query: dict[str, str], body: bytes) -> None:
        # The checks and status codes of ComfyUI's /view, in its order: a traversing or absolute
        # filename is 400, a subfolder that leaves the folder 403, anything absent 404.
        if "filename" not in query:
            raise _Reply(404)
        raw = query["filename"]
        folder, in_name, filename = split_annotated(raw, default=query.get("type", "output"))
        if not filename or raw.startswith("/") or ".." in raw or folder not in FOLDER_TYPES:
            raise _Reply(400)
        subfolder = in_name
        if "subfolder" in query:
            sub = posixpath.normpath(query["subfolder"]) if query["subfolder"] else "."
            if sub.startswith(("/", "..")):
                raise _Reply(403)
            subfolder = posixpath.normpath(posixpath.join(sub, in_name)).strip(".").strip("/")
        data = self.engine.store.get(folder, subfolder, filename)
        if data is None:
            raise _Reply(404)
        self.files.append(filename)
        h.reply(200, data, content_type_for(filename), {"Content-Disposition": f'filename="{filename}"'})

    def _upload(self, h: _Handler, path: str, query: dict[str, str], body: bytes) -> None:
        fields = parse_multipart(h.headers.get("Content-Type", ""), body)
        image = fields.get("image")
        if image is None or not image[0]:
            raise _Reply(400)

        def text(name: str, default: str = "") -> str:
            return fields[name][1].decode() if name in fields else default

        saved = self.engine.upload(
            image[0],
            image[1],
            subfolder=text("subfolder"),
            folder=text("type", "input") or "input",
            overwrite=text("overwrite") in ("true", "1"),
        )
        if saved is None:
            raise _Reply(400)
        h.reply_json(saved)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A fake ComfyUI server on loopback (no GPU, no models).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8188)
    parser.add_argument("--run-seconds", type=float, default=0.2, help="how long each prompt takes")
    parser.add_argument("--node-seconds", type=float, default=None, help="how long each node takes (overrides)")
    parser.add_argument("--progress-steps", type=int, default=0, help="progress steps each node reports on /ws")
    parser.add_argument("--prefix", default="", help="serve under this path, like a reverse proxy")
    parser.add_argument("--cache", action="store_true", help="serve identical resubmissions from cache")
    parser.add_argument(
        "--require-header", action="append", default=[], metavar="NAME=VALUE", help="answer 401 without it"
    )
    args = parser.parse_args(argv)
    headers = dict(item.split("=", 1) for item in args.require_header)
    fake = FakeComfyUI(
        args.host,
        args.port,
        run_seconds=args.run_seconds,
        node_seconds=args.node_seconds,
        progress_steps=args.progress_steps,
        prefix=args.prefix,
        required_headers=headers,
        cache=args.cache,
    )
    with fake:
        print(f"fake ComfyUI listening on {fake.url}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
