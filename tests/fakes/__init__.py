"""Loopback stand-ins for a ComfyUI server and the RunPod serverless API (standard library only).

Import as ``from fakes import FakeComfyUI, FakeRunPod`` inside the test suite (pytest puts
``tests/`` on sys.path), or run ``python -m tests.fakes.comfyui_server`` /
``python -m tests.fakes.runpod_server`` from the repository root. See README.md here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .comfyui_server import ComfyEngine, FakeComfyUI, Image, decode_png, encode_png, load_object_info
    from .runpod_server import FakeRunPod

__all__ = ["ComfyEngine", "FakeComfyUI", "FakeRunPod", "Image", "decode_png", "encode_png", "load_object_info"]


def __getattr__(name: str) -> Any:
    # Imported lazily so `python -m tests.fakes.comfyui_server` does not load the module twice.
    if name == "FakeRunPod":
        return importlib.import_module(".runpod_server", __name__).FakeRunPod
    if name in __all__:
        return getattr(importlib.import_module(".comfyui_server", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
