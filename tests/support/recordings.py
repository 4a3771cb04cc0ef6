"""Load recorded traffic copied into ``tests/fixtures/<source>/`` (see each folder's README).

The ComfyUI recordings come in a few shapes, as recorded: most are one exchange
``{status, content_type, body}``; some are the bare body; ``post_prompt_custom_id`` wraps the
exchange as ``resp``; ``wf_*`` / ``runtime_error`` hold ``{post: exchange, history: body}``;
``history_ok`` is ``{elapsed_s, body}``. ``exchange()`` and ``body()`` hide the difference.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def recording_path(name: str, source: str = "comfyui") -> Path:
    path = FIXTURES / source / name
    if not path.suffix:
        path = path.with_suffix(".json")
    if not path.is_file():
        raise FileNotFoundError(f"no recording {name!r} in {path.parent}")
    return path


def load_recording(name: str, source: str = "comfyui") -> Any:
    """The parsed JSON of a recording (``name`` with or without ``.json``)."""
    return json.loads(recording_path(name, source).read_text(encoding="utf-8"))


def load_bytes(name: str, source: str = "comfyui") -> bytes:
    """A binary recording, e.g. ``view_ok.png``."""
    return recording_path(name, source).read_bytes()


@dataclass(frozen=True)
class Exchange:
    status: int
    content_type: str | None
    body: Any


def exchange(name: str, source: str = "comfyui") -> Exchange:
    """The HTTP answer a recording holds, whichever shape it was saved in."""
    raw = load_recording(name, source)
    if isinstance(raw, dict) and "resp" in raw:
        raw = raw["resp"]
    elif isinstance(raw, dict) and "post" in raw:
        raw = raw["post"]
    if isinstance(raw, dict) and "status" in raw and isinstance(raw["status"], int):
        return Exchange(raw["status"], raw.get("content_type"), raw.get("body"))
    return Exchange(200, "application/json; charset=utf-8", raw)


def body(name: str, source: str = "comfyui") -> Any:
    """The JSON body of a recorded GET (``/history/{id}``, ``/queue``), whichever shape."""
    raw = load_recording(name, source)
    if isinstance(raw, dict):
        if "history" in raw and "post" in raw:
            return raw["history"]
        if "body" in raw and ("status" in raw or "elapsed_s" in raw):
            return raw["body"]
        if "queue_running" in raw:
            return {"queue_running": raw["queue_running"], "queue_pending": raw["queue_pending"]}
    return raw
