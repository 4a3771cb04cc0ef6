"""What each model-free node class does in the fake, with real pixels and real files: a node
function takes its resolved inputs and returns (output values, UI output for history or None)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .files import FileStore, SaveOutsideFolder, split_annotated
from .media import (
    WEBP_1X1,
    Image,
    MediaError,
    decode_png,
    encode_apng,
    encode_fake_mp4,
    encode_gif,
    encode_latent,
    encode_png,
    encode_wav,
)


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
    """What a node function may use besides its inputs: the prompt (for PNG metadata) and the files."""

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
