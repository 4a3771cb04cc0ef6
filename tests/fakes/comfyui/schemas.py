"""The node schemas the fake ComfyUI serves on /object_info and validates prompts against."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

# Verbatim entries of the recorded ComfyUI 0.3.64's /object_info (the whole of it is
# tests/fixtures/graph/object_info.json) for the model-free classes the fake can execute.
OBJECT_INFO_FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "fakes" / "object_info.json"


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
