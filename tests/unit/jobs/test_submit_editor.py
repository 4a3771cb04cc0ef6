"""run_job and save_workflow with ComfyUI editor workflows: converted with the executor's node
schemas (ports.object_info), as saved or sent in ``graph``; conversion problems and the
executor's node errors reach the client per node on the failed job_update and the error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from support.memory import ALICE, CONN, MemoryPorts, key

from comfyroute.defaults import MAX_MESSAGE_BYTES
from comfyroute.executors.base import ExecutorRejected
from comfyroute.jobs.submit import run_job
from comfyroute.messages import MAX_ERRORS
from comfyroute.protocol import ExecutorKind, JobStatus
from comfyroute.protocol.server_messages import NodeProblem, encode
from comfyroute.protocol.workflow_commands import RunJobData, SaveWorkflowData
from comfyroute.workflows import save_workflow

EDITOR = Path(__file__).resolve().parents[2] / "fixtures" / "editor"


def recorded(case: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EDITOR / "recorded" / f"{case}.json").read_text())
    return data


def bad_case(case: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EDITOR / "cases" / f"{case}.json").read_text())["workflow"]
    return data


def run(ports: MemoryPorts, **data: Any) -> None:
    run_job(ports, ALICE, RunJobData.model_validate({"job_id": "j1", **data}))


def sent(ports: MemoryPorts, type_: str) -> list[dict[str, Any]]:
    return ports.pusher.messages(CONN, type_)


def without_meta(prompt: dict[str, Any]) -> dict[str, Any]:
    return {nid: {k: v for k, v in node.items() if k != "_meta"} for nid, node in prompt.items()}


def test_an_editor_workflow_is_converted_with_the_executors_schemas_as_the_frontend_did(ports: MemoryPorts) -> None:
    case = recorded("reroute_chain")
    run(ports, workflow=case["workflows"]["save"])
    [(prompt, _)] = ports.executor.submitted
    assert without_meta(prompt) == without_meta(case["prompt"])
    [(kind, user, endpoint, classes)] = ports.object_info.asked
    assert (kind, user, endpoint) == (ExecutorKind.LOCAL, "alice", None)
    assert "Reroute" not in classes
    assert {"EmptyImage", "ImageInvert", "SaveImage"} <= classes
    assert sent(ports, "job_update")[-1]["status"] == "queued"


def test_an_editor_workflow_sent_as_graph_is_taken_as_the_workflow_it_is(ports: MemoryPorts) -> None:
    case = recorded("mute")
    run(ports, graph=case["workflows"]["export"])
    [(prompt, _)] = ports.executor.submitted
    assert without_meta(prompt) == without_meta(case["prompt"])


def test_a_saved_editor_workflow_runs_later_on_the_endpoint_it_was_saved_for(ports: MemoryPorts) -> None:
    case = recorded("bypass")
    settings = {"comfy_executor": "runpod", "runpod_endpoint_id": "ep1"}
    save = SaveWorkflowData.model_validate(
        {"workflow_id": "wf", "graph": case["workflows"]["save"], "settings": settings}
    )
    save_workflow(ports, ALICE, save)
    stored = ports.workflows.get("alice", "wf")
    assert stored is not None
    assert stored.workflow_json is not None
    assert stored.graph_json is None
    assert not ports.object_info.asked  # converted when it runs, with the schemas of then
    run(ports, workflow_id="wf")
    [(prompt, _)] = ports.executor.submitted
    assert without_meta(prompt) == without_meta(case["prompt"])
    assert ports.object_info.asked[0][:3] == (ExecutorKind.RUNPOD, "alice", "ep1")


def test_conversion_problems_reach_the_client_per_node_on_the_one_failed_update(ports: MemoryPorts) -> None:
    run(ports, workflow=bad_case("bad_unknown_class"))
    assert not ports.executor.submitted
    [update] = sent(ports, "job_update")
    assert not sent(ports, "error")  # one answer per refused run_job: its failed job_update
    assert (update["status"], update["request"]) == ("failed", "run_job")
    # As the case expects (its nulls are left out on the wire).
    [problem] = update["errors"]
    assert (problem["node_id"], problem["class_type"], "input" in problem) == ("2", "FancyUpscaler", False)
    assert problem["message"].startswith("unknown node class 'FancyUpscaler'")
    assert "errors_omitted" not in update
    job = ports.jobs.get(key())
    assert job is not None
    assert job.errors  # get_job explains it later
    assert job.status is JobStatus.FAILED


def test_the_executors_node_errors_reach_the_client_per_node(ports: MemoryPorts) -> None:
    details = [
        NodeProblem(node_id="1", class_type="EmptyImage", input="width", message="Value 0 smaller than min of 1")
    ]
    ports.executor.submit_error = ExecutorRejected("ComfyUI rejected the prompt (400): ...", details=details)
    run(ports, prompt={"1": {"class_type": "EmptyImage", "inputs": {"width": 0}}})
    [update] = sent(ports, "job_update")
    assert not sent(ports, "error")
    expected = [
        {"node_id": "1", "class_type": "EmptyImage", "input": "width", "message": "Value 0 smaller than min of 1"}
    ]
    assert update["errors"] == expected
    assert "ComfyUI rejected the prompt" in update["error"]


def test_thousands_of_problems_stay_within_one_frame_and_say_how_many_were_left_out(ports: MemoryPorts) -> None:
    nodes = [
        {"id": i, "type": f"NoSuchNode{i}" + "x" * 300, "mode": 0, "widgets_values": [], "title": "t" * 3000}
        for i in range(1, 1500)
    ]
    run(ports, workflow={"nodes": nodes, "links": []})
    [update] = sent(ports, "job_update")
    assert not sent(ports, "error")
    assert len(update["errors"]) <= MAX_ERRORS
    assert update["errors_omitted"] == 1499 - len(update["errors"])
    assert len(json.dumps(update).encode()) < MAX_MESSAGE_BYTES
    assert all(len(e["message"]) <= 500 for e in update["errors"])


def test_schemas_that_cannot_be_had_fail_the_editor_workflow_with_the_reason(ports: MemoryPorts) -> None:
    ports.object_info.unavailable = "could not read ComfyUI's node schemas (GET /object_info): refused"
    run(ports, workflow=recorded("reroute_chain")["workflows"]["save"])
    [update] = sent(ports, "job_update")
    assert update["status"] == "failed"
    assert "GET /object_info" in update["error"]


def test_a_nodetool_graph_uses_the_schemas_only_when_it_needs_them(ports: MemoryPorts) -> None:
    plain = {
        "nodes": [
            {"id": "a", "type": "comfy.EmptyImage", "data": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
            {"id": "b", "type": "comfy.SaveImage", "data": {"filename_prefix": "x"}},
        ],
        "edges": [{"source": "a", "sourceHandle": "output_0", "target": "b", "targetHandle": "images"}],
    }
    run(ports, graph=plain)
    assert ports.object_info.asked == []
    # nodetool's imported comfy graph: widget values under _comfy_widgets, mapped by the schema.
    imported = {
        "nodes": [{"id": "a", "type": "comfy.EmptyImage", "data": {"_comfy_widgets": [16, 24, 1, 255]}}],
        "edges": [],
    }
    ports.executor.submitted.clear()
    run_job(ports, ALICE, RunJobData.model_validate({"job_id": "j2", "graph": imported}))
    assert ports.object_info.asked[0][3] == frozenset({"EmptyImage"})
    [(prompt, _)] = ports.executor.submitted
    assert prompt["a"]["inputs"] == {"width": 16, "height": 24, "batch_size": 1, "color": 255}


def test_encoded_problems_leave_unknown_parts_out() -> None:
    assert encode(NodeProblem(message="x")) == '{"message":"x"}'
