"""The fake ComfyUI, by concept: ``media`` (PNG and friends), ``schemas`` (/object_info),
``validation`` (ComfyUI's prompt checks), ``files`` (the folders), ``nodes`` (what each class
does), ``execution`` (one prompt's run and its events), ``engine`` (queue, worker, history),
``websocket`` (/ws) and ``server`` (FakeComfyUI: the HTTP routes). See tests/fakes/README.md."""

from __future__ import annotations

from .engine import ComfyEngine
from .media import Image, decode_png, encode_png
from .schemas import load_object_info
from .server import FakeComfyUI

__all__ = ["ComfyEngine", "FakeComfyUI", "Image", "decode_png", "encode_png", "load_object_info"]
