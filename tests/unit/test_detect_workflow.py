"""Workflow detection (comfyroute.conversion.detect) for uploads named by workflow_upload_id."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from comfyroute.conversion.detect import WorkflowKind, detect_workflow, parse_workflow_bytes
from comfyroute.conversion.nodetool import GraphError, load_workflow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SAVED = json.loads((EXAMPLES / "empty_invert_save.json").read_text())
PROMPT = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
}
# ComfyUI's editor workflow.json: LiteGraph 0.4 (links as arrays) and schema 1 (links as objects).
EDITOR_V04 = {
    "last_node_id": 2,
    "last_link_id": 1,
    "nodes": [
        {"id": 1, "type": "EmptyImage", "pos": [0, 0], "widgets_values": [8, 8, 1, 0]},
        {"id": 2, "type": "SaveImage", "pos": [300, 0], "widgets_values": ["x"]},
    ],
    "links": [[1, 1, 0, 2, 0, "IMAGE"]],
    "groups": [],
    "version": 0.4,
}
EDITOR_V1 = {
    "version": 1,
    "state": {"lastNodeId": 2, "lastLinkId": 1},
    "nodes": EDITOR_V04["nodes"],
    "links": [{"id": 1, "origin_id": 1, "origin_slot": 0, "target_id": 2, "target_slot": 0, "type": "IMAGE"}],
}


def test_a_saved_nodetool_workflow_yields_its_graph_settings_and_name() -> None:
    saved = {**SAVED, "settings": {"comfy_executor": "runpod", "runpod_endpoint_id": "ep1"}}
    detected = detect_workflow(saved)
    assert detected.kind is WorkflowKind.SAVED_WORKFLOW
    assert detected.is_graph
    assert detected.body is saved["graph"]
    assert detected.settings == {"comfy_executor": "runpod", "runpod_endpoint_id": "ep1"}
    assert detected.name == SAVED["name"]


def test_a_bare_nodetool_graph_is_a_graph() -> None:
    detected = detect_workflow(SAVED["graph"])
    assert detected.kind is WorkflowKind.GRAPH
    assert (detected.settings, detected.name) == ({}, None)
    assert detect_workflow({"nodes": [{"id": "1", "type": "comfy.EmptyImage"}]}).kind is WorkflowKind.GRAPH


def test_api_prompts_and_prompt_bodies_are_prompts() -> None:
    assert detect_workflow(PROMPT).kind is WorkflowKind.PROMPT
    wrapped = detect_workflow({"prompt": PROMPT, "client_id": "abc"})
    assert wrapped.kind is WorkflowKind.PROMPT
    assert wrapped.body is PROMPT
    # A prompt whose node is called "prompt" is still the prompt itself.
    named = {"prompt": PROMPT["1"], "2": PROMPT["2"]}
    assert detect_workflow(named).body is named


@pytest.mark.parametrize("editor", [EDITOR_V04, EDITOR_V1, {"nodes": [], "links": []}])
def test_comfyui_editor_workflows_are_recognised_by_their_links(editor: dict[str, Any]) -> None:
    detected = detect_workflow(editor)
    assert detected.kind is WorkflowKind.EDITOR
    assert not detected.is_graph
    with pytest.raises(GraphError, match="ComfyUI editor workflow"):
        load_workflow(editor)


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ([1, 2], "workflow must be a JSON object, not an array"),
        ("text", "workflow must be a JSON object, not a string"),
        ({}, "workflow is an empty object"),
        ({"id": "w", "title": "x", "steps": [1]}, "found an object with keys id, title, steps"),
        ({f"k{i}": i for i in range(10)}, "keys k0, k1, k2, k3, k4, k5, k6, k7 and 2 more"),
    ],
)
def test_anything_else_is_one_clear_error(obj: Any, message: str) -> None:
    with pytest.raises(GraphError) as err:
        detect_workflow(obj)
    assert len(err.value.problems) == 1
    assert message in str(err.value)


def test_the_not_a_workflow_error_names_every_accepted_shape() -> None:
    with pytest.raises(GraphError) as err:
        detect_workflow({"foo": 1})
    for shape in ("nodetool graph", "saved nodetool workflow", "API prompt", "editor workflow"):
        assert shape in str(err.value)


def test_a_prompt_with_broken_nodes_is_still_a_prompt_so_each_node_is_named() -> None:
    broken = {"1": {"inputs": {}}, "2": {"class_type": "SaveImage", "inputs": {"images": ["5", 0]}}}
    assert detect_workflow(broken).kind is WorkflowKind.PROMPT
    with pytest.raises(GraphError) as err:
        load_workflow(broken)
    assert "node 1: 'class_type' must be a non-empty string" in err.value.problems
    assert any("links to node '5'" in p for p in err.value.problems)


def test_uploaded_bytes_are_utf8_json_with_or_without_a_bom() -> None:
    data = json.dumps(SAVED).encode()
    assert parse_workflow_bytes(data).kind is WorkflowKind.SAVED_WORKFLOW
    assert parse_workflow_bytes(b"\xef\xbb\xbf" + data).kind is WorkflowKind.SAVED_WORKFLOW
    with pytest.raises(GraphError, match=r"not UTF-8 text \(byte 1 is invalid\)"):
        parse_workflow_bytes(b"{\xff}")
    with pytest.raises(GraphError, match="not JSON: Expecting value at line 1 column 7"):
        parse_workflow_bytes(b'{"a": }')


def test_a_thousand_node_upload_is_detected_and_loads() -> None:
    # As ComfyUI's "Export (API)" writes it: every node with its _meta title.
    prompt: dict[str, Any] = {"0": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8}}}
    for i in range(1, 1000):
        title = f"Invert step {i} of the long chain that makes this workflow bigger than one frame"
        prompt[str(i)] = {"class_type": "ImageInvert", "inputs": {"image": [str(i - 1), 0]}, "_meta": {"title": title}}
    data = json.dumps(prompt, indent=2).encode()
    assert len(data) > 128 * 1024  # over API Gateway's frame: the reason it is uploaded
    detected = parse_workflow_bytes(data)
    assert detected.kind is WorkflowKind.PROMPT
    assert len(load_workflow(json.loads(data))) == 1000
