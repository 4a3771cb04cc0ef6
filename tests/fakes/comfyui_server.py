"""Run the fake ComfyUI by hand: ``python -m tests.fakes.comfyui_server --port 8188`` (options:
``--help``). The fake itself is the ``tests/fakes/comfyui/`` package."""

from __future__ import annotations

from .comfyui import FakeComfyUI
from .comfyui.server import main

__all__ = ["FakeComfyUI", "main"]

if __name__ == "__main__":
    main()
