"""Which kind of workflow a JSON document is, by its shape alone (no conversion here).

Used for files whose kind nobody states: an upload named by ``run_job.data.workflow_upload_id``,
a file given to ``comfyroute run``, and ``load_workflow``. The shapes:

- ``graph``: a nodetool graph ``{"nodes": [...], "edges": [...]}`` (``edges`` may be absent);
- ``saved_workflow``: a saved nodetool workflow ``{"id", "name", "graph": {nodes, edges},
  "settings"?, ...}``: the graph is inside, the settings ride along;
- ``prompt``: a ComfyUI API prompt ``{node_id: {"class_type", "inputs"}}``, or ComfyUI's own
  ``POST /prompt`` body ``{"prompt": {...}, "client_id"?}``, which holds one;
- ``editor``: a ComfyUI editor workflow (workflow.json, "Save" in ComfyUI's menu)
  ``{"nodes": [...], "links": [...], ...}``: LiteGraph nodes and links instead of edges. Turning
  it into a prompt needs the executor's ``/object_info`` (conversion/editor.py).

Anything else is one ``GraphError`` that names the shapes accepted and the keys it found.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from comfyroute.conversion.problems import GraphError
from comfyroute.conversion.workflow import is_editor_workflow

_MAX_KEYS_SHOWN = 8


class WorkflowKind(StrEnum):
    GRAPH = "graph"
    SAVED_WORKFLOW = "saved_workflow"
    PROMPT = "prompt"
    EDITOR = "editor"


@dataclass(frozen=True)
class DetectedWorkflow:
    """A workflow document and what it holds: ``body`` is the graph, the prompt or the editor
    workflow itself (unwrapped); ``settings`` and ``name`` come from a saved workflow."""

    kind: WorkflowKind
    body: Mapping[str, Any]
    settings: Mapping[str, Any] = field(default_factory=dict)
    name: str | None = None

    @property
    def is_graph(self) -> bool:
        """A nodetool graph, bare or inside a saved workflow."""
        return self.kind in (WorkflowKind.GRAPH, WorkflowKind.SAVED_WORKFLOW)


def _kind_of(value: Any) -> str:
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "null" if value is None else type(value).__name__


def is_editor_shape(obj: Mapping[str, Any]) -> bool:
    """LiteGraph's serialisation (``workflow.is_editor_workflow``): typed editor nodes, links, no ``edges``."""
    return is_editor_workflow(obj)


def _is_prompt_shape(obj: Mapping[str, Any]) -> bool:
    # Every entry an object and at least one that looks like a node: validate_prompt then names
    # whatever is wrong with each of them, which says more than "not a workflow".
    entries = list(obj.values())
    return all(isinstance(e, Mapping) for e in entries) and any("class_type" in e or "inputs" in e for e in entries)


def detect_workflow(obj: Any) -> DetectedWorkflow:
    """The kind of workflow ``obj`` (parsed JSON) is; ``GraphError`` if it is none of them."""
    if not isinstance(obj, Mapping):
        raise GraphError([f"workflow must be a JSON object, not {_kind_of(obj)}"])
    if not obj:
        raise GraphError(["workflow is an empty object"])
    graph = obj.get("graph")
    if isinstance(graph, Mapping) and "nodes" in graph:
        settings = obj.get("settings")
        name = obj.get("name")
        return DetectedWorkflow(
            WorkflowKind.SAVED_WORKFLOW,
            graph,
            settings=settings if isinstance(settings, Mapping) else {},
            name=name if isinstance(name, str) else None,
        )
    if isinstance(obj.get("nodes"), list):
        if is_editor_shape(obj):
            return DetectedWorkflow(WorkflowKind.EDITOR, obj)
        return DetectedWorkflow(WorkflowKind.GRAPH, obj)
    wrapped = obj.get("prompt")
    if isinstance(wrapped, Mapping) and "class_type" not in wrapped:
        return DetectedWorkflow(WorkflowKind.PROMPT, wrapped)
    if _is_prompt_shape(obj):
        return DetectedWorkflow(WorkflowKind.PROMPT, obj)
    keys = [str(k)[:40] for k in list(obj)[:_MAX_KEYS_SHOWN]]
    more = f" and {len(obj) - _MAX_KEYS_SHOWN} more" if len(obj) > _MAX_KEYS_SHOWN else ""
    raise GraphError(
        [
            "not a workflow: expected a nodetool graph {nodes, edges}, a saved nodetool workflow "
            "{graph: {nodes, edges}}, a ComfyUI API prompt {node_id: {class_type, inputs}} or a ComfyUI "
            f"editor workflow {{nodes, links}}; found an object with keys {', '.join(keys)}{more}"
        ]
    )


def parse_workflow_bytes(data: bytes) -> DetectedWorkflow:
    """Detect the workflow in uploaded bytes: UTF-8 JSON (a byte-order mark is allowed)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise GraphError([f"workflow is not UTF-8 text (byte {exc.start} is invalid)"]) from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GraphError([f"workflow is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"]) from None
    return detect_workflow(obj)
