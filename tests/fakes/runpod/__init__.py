"""The fake RunPod serverless API, by concept: ``jobs`` (a job and its clock), ``comfy`` (the
worker's ComfyUI: HTTP or in process), ``worker`` (worker-comfyui's handler and output formats)
and ``server`` (FakeRunPod: the HTTP API, webhooks). See tests/fakes/README.md."""

from __future__ import annotations

from .server import FakeRunPod

__all__ = ["FakeRunPod"]
