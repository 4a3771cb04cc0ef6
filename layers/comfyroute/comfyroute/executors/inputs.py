"""Input files a job hands to its executor (``run_job.data.files``), and the pure rules for them.

Each file reaches the executor under its ``name``, and the workflow refers to it by that name
(LoadImage's ``image: "input.png"``), as worker-comfyui's ``images[]`` does.

- ComfyUI (shared by many users): every job uploads into its own subfolder of ComfyUI's input
  folder, ``comfyroute/{job_id}``, and the prompt's references to ``name`` become
  ``comfyroute/{job_id}/name``. ComfyUI resolves such a value as a path under its input folder
  (``folder_paths.get_annotated_filepath``: ``os.path.join(input_dir, "sub/name")``, which is
  what LoadImage, LoadImageMask and the audio/video loaders open, and what LoadImage's
  ``VALIDATE_INPUTS`` checks exists, in place of its combo list), so two jobs that both send
  ``input.png`` never see each other's file. A value annotated ``"name [input]"`` keeps its
  annotation; ``[output]`` / ``[temp]`` name other folders and are left alone.
- RunPod worker-comfyui: ``input.images: [{name, image}]`` (base64). Its worker runs one job at a
  time and uploads them into the input folder under ``name``, so the prompt is left as it is.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

# The name rule is the wire's (run_job.data.files[].name), so a name the protocol admits is one
# every executor can store.
from comfyroute.protocol import INPUT_NAME_PATTERN, JOB_ID_PATTERN, input_name_problem

__all__ = ["INPUT_NAME_PATTERN"]

JOB_INPUT_FOLDER = "comfyroute"
_ANNOTATION = " [input]"


def check_input_name(name: object) -> str:
    """``name`` if it is a safe input file name, else a ValueError that says what is allowed."""
    problem = input_name_problem(name)
    if problem:
        raise ValueError(problem)
    assert isinstance(name, str)
    return name


class InputFile(BaseModel):
    """One input file of a job: its bytes under the name the workflow uses."""

    model_config = ConfigDict(frozen=True)

    name: str
    data: bytes = Field(repr=False)
    content_type: str = "application/octet-stream"

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        return check_input_name(v)

    @property
    def size(self) -> int:
        return len(self.data)


def check_unique_names(files: Iterable[InputFile]) -> None:
    seen: set[str] = set()
    duplicates: list[str] = []
    for file in files:
        if file.name in seen and file.name not in duplicates:
            duplicates.append(file.name)
        seen.add(file.name)
    if duplicates:
        raise ValueError(f"input file names must be unique; given more than once: {', '.join(duplicates[:10])}")


def job_input_subfolder(job_id: str) -> str:
    """The job's own subfolder of ComfyUI's input folder."""
    if not re.match(JOB_ID_PATTERN, job_id):
        raise ValueError(f"job id {job_id[:80]!r} cannot name an input folder")
    return f"{JOB_INPUT_FOLDER}/{job_id}"


def comfyui_reference(subfolder: str, name: str) -> str:
    """The value a workflow gives LoadImage for a file /upload/image stored as (subfolder, name)."""
    subfolder = subfolder.strip("/")
    return f"{subfolder}/{name}" if subfolder else name


def rewrite_file_references(
    prompt: Mapping[str, Mapping[str, Any]], references: Mapping[str, str]
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """A new prompt where every input value that is exactly an input file's name (or that name
    annotated `` [input]``) is replaced by ``references[name]``; and the names no input used.

    Only whole string values are replaced: links (``[node, slot]``), numbers and text that merely
    contains the name are left alone. The given prompt is not changed.
    """
    used: set[str] = set()
    out: dict[str, dict[str, Any]] = {}
    for node_id, node in prompt.items():
        inputs = node.get("inputs")
        if not isinstance(inputs, Mapping):
            out[node_id] = dict(node)
            continue
        new_inputs: dict[str, Any] = {}
        for key, value in inputs.items():
            if isinstance(value, str):
                bare = value[: -len(_ANNOTATION)] if value.endswith(_ANNOTATION) else value
                if bare in references:
                    used.add(bare)
                    value = references[bare] + value[len(bare) :]
            new_inputs[key] = value
        out[node_id] = {**node, "inputs": new_inputs}
    return out, [name for name in references if name not in used]


def runpod_images(files: Sequence[InputFile]) -> list[dict[str, str]]:
    """worker-comfyui's ``input.images``: ``[{name, image: base64}]`` (bare base64, which the
    worker takes as readily as a data URI, and a little shorter)."""
    check_unique_names(files)
    return [{"name": f.name, "image": base64.b64encode(f.data).decode("ascii")} for f in files]


def describe_sizes(files: Iterable[InputFile], limit: int = 10) -> str:
    """``a.png (1.2 MB), b.wav (300 KB)`` for messages."""
    shown = [f"{f.name} ({human_bytes(f.size)})" for f in files]
    return ", ".join(shown[:limit]) + (f" and {len(shown) - limit} more" if len(shown) > limit else "")


def human_bytes(size: int) -> str:
    # Binary units, as RunPod counts its "10 MB" /run limit (10 * 1024 * 1024 bytes).
    value = float(size)
    for unit in ("bytes", "KB", "MB"):
        if value < 1024:
            return f"{int(value)} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"
