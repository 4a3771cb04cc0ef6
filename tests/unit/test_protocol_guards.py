"""Client input the handlers cannot work with is refused by name at parse time: empty node ids
and setting names, and a saved nodetool workflow sent where its graph belongs is recognised."""

from __future__ import annotations

import json
from typing import Any

import pytest

from comfyroute.protocol.commands import ProtocolError, parse_command

NODES = [{"id": "1", "type": "comfy.EmptyImage", "data": {"width": 8}}, {"id": "2", "type": "comfy.SaveImage"}]
SAVED = {
    "id": "wf-77",
    "name": "Invert",
    "access": "private",
    "tags": ["a"],
    "graph": {"nodes": NODES, "edges": [{"source": "1", "target": "2", "targetHandle": "images"}]},
    "settings": {"comfy_executor": "runpod", "runpod_endpoint_id": "ep_9"},
}


def refusal(data: dict[str, Any], command: str = "run_job") -> str:
    with pytest.raises(ProtocolError) as caught:
        parse_command(json.dumps({"command": command, "data": data}))
    return caught.value.message


def test_an_empty_node_id_is_refused_naming_the_node() -> None:
    nodes = [NODES[0], {"id": "", "type": "comfy.SaveImage"}]
    assert refusal({"graph": {"nodes": nodes}}) == "data.graph.nodes[1].id: must not be empty"
    assert refusal({"prompt": {" ": {"class_type": "X", "inputs": {}}}}) == "data.prompt: node ids must not be empty"


def test_an_empty_edge_end_is_refused() -> None:
    edges = [{"source": "", "target": "2"}]
    assert refusal({"graph": {"nodes": NODES, "edges": edges}}) == "data.graph.edges[0].source: must not be empty"


def test_an_empty_setting_name_is_refused_on_save_and_run() -> None:
    # The parser refuses "" itself (keys must not be empty); a blank name reaches the model.
    assert "must not be empty" in refusal({"workflow_id": "wf", "settings": {"": 1}}, "save_workflow")
    assert "data.settings: setting names must not be empty" in refusal({"workflow_id": "wf", "settings": {" ": 1}})


@pytest.mark.parametrize("field", ["graph", "prompt"])
def test_a_saved_nodetool_workflow_sent_as_graph_or_prompt_is_taken_as_its_graph(field: str) -> None:
    cmd = parse_command(json.dumps({"command": "run_job", "data": {field: SAVED}}))
    data = cmd.data
    assert data.graph is not None  # type: ignore[union-attr]
    assert [n.id for n in data.graph.nodes] == ["1", "2"]  # type: ignore[union-attr]
    assert data.prompt is None  # type: ignore[union-attr]
    assert data.settings is not None  # type: ignore[union-attr]
    assert data.settings.runpod_endpoint_id == "ep_9"  # type: ignore[union-attr]


def test_the_requests_settings_win_over_the_saved_workflows() -> None:
    cmd = parse_command(
        json.dumps({"command": "run_job", "data": {"prompt": SAVED, "settings": {"comfy_executor": "local"}}})
    )
    assert cmd.data.settings.comfy_executor == "local"  # type: ignore[union-attr]


def test_a_saved_workflow_without_a_graph_is_refused_in_one_line() -> None:
    message = refusal({"graph": {**SAVED, "graph": {"edges": []}}})
    assert message.count(";") == 0
    assert "saved nodetool workflow" in message
    assert "send its 'graph'" in message
