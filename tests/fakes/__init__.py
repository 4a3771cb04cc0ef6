"""Loopback stand-ins for a ComfyUI server (``comfyui/``) and the RunPod serverless API
(``runpod/``), on the standard library's HTTP server plus ``websockets`` for ComfyUI's /ws.

Import as ``from fakes import FakeComfyUI, FakeRunPod`` inside the test suite (pytest puts
``tests/`` on sys.path), or run ``python -m tests.fakes.comfyui_server`` /
``python -m tests.fakes.runpod_server`` from the repository root. See README.md here.
"""

from __future__ import annotations

from .comfyui import ComfyEngine, FakeComfyUI, Image, decode_png, encode_png, load_object_info
from .runpod import FakeRunPod

__all__ = ["ComfyEngine", "FakeComfyUI", "FakeRunPod", "Image", "decode_png", "encode_png", "load_object_info"]
