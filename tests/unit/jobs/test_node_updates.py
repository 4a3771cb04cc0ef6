"""node_update: how each node ended, from ComfyUI's /history (recorded), at the end of a job;
and RunPod's files on the prompt's one output node."""

from __future__ import annotations

import copy
from typing import Any

from support.memory import MemoryPorts, key, stored_job
from support.recordings import body

from comfyroute import messages
from comfyroute.conversion.outputs import output_node_ids, sole_output_node
from comfyroute.executors import comfyui
from comfyroute.executors.base import RUNPOD_NODE_ID, ExecutorStatus, OutputFile
from comfyroute.jobs.follow import attribute_outputs, poll_job
from comfyroute.protocol import JobStatus


def entry(name: str) -> Any:
    (first, *_) = body(name).values()
    return comfyui._HistoryEntry.model_validate(first)


def test_a_successful_prompt_completes_every_node() -> None:
    status = comfyui.final_status("p", entry("history_ok"))
    assert status.state is JobStatus.COMPLETED
    assert status.nodes == {"1": "completed", "2": "completed", "3": "completed"}


def test_cached_nodes_are_told_apart() -> None:
    raw = copy.deepcopy(next(iter(body("history_ok").values())))
    for event, data in raw["status"]["messages"]:
        if event == "execution_cached":
            data["nodes"] = ["1", "2"]
    nodes = comfyui.final_status("p", comfyui._HistoryEntry.model_validate(raw)).nodes
    assert nodes == {"1": "cached", "2": "cached", "3": "completed"}


def test_a_failed_prompt_marks_the_node_that_failed_and_claims_nothing_it_does_not_know() -> None:
    status = comfyui.final_status("p", entry("runtime_error"))
    assert status.state is JobStatus.FAILED
    assert status.nodes == {"2": "error"}


def test_an_interrupted_prompt_reports_no_node_it_cannot_vouch_for() -> None:
    assert comfyui.final_status("p", entry("history_interrupted")).nodes == {}


def test_the_final_node_updates_are_in_nodetools_shape_and_the_prompts_order(ports: MemoryPorts) -> None:
    job = stored_job(
        ports,
        status=JobStatus.FAILED,
        error="ComfyUI node 2 (ImageBlur) failed: RuntimeError",
        workflow_id="wf-1",
        node_classes={"1": "EmptyImage", "2": "ImageBlur", "3": "SaveImage"},
        node_states={"2": "error", "1": "cached"},
    )
    first, second = (u.model_dump(exclude_none=True) for u in messages.final_node_updates(job))
    assert first == {
        "type": "node_update",
        "job_id": "j1",
        "workflow_id": "wf-1",
        "node_id": "1",
        "node_name": "EmptyImage",
        "node_type": "comfy.EmptyImage",
        "status": "completed",
        "cached": True,
    }
    assert (second["node_id"], second["status"], second["error"]) == ("2", "error", job.error)


def test_a_completed_job_without_node_reports_completes_every_node(ports: MemoryPorts) -> None:
    job = stored_job(ports, status=JobStatus.COMPLETED, node_classes={"1": "EmptyImage", "2": "SaveImage"})
    assert [(u.node_id, u.status) for u in messages.final_node_updates(job)] == [("1", "completed"), ("2", "completed")]


def test_poll_records_the_node_states_the_executor_reports(ports: MemoryPorts) -> None:
    stored_job(ports, status=JobStatus.RUNNING)
    ports.executor.statuses = [ExecutorStatus(state=JobStatus.COMPLETED, nodes={"2": "completed"})]
    poll_job(ports, key("j1"), 1)
    assert ports.jobs.records[key("j1")].node_states == {"2": "completed"}


# --------------------------------------------------------------------------- RunPod's files

RUNPOD_FILE = OutputFile(
    node_id=RUNPOD_NODE_ID, output_name="images", kind="image", filename="a.png", content_type="image/png"
)


def test_output_nodes_come_from_the_schemas_output_node_flag() -> None:
    classes = {"1": "EmptyImage", "2": "ImageInvert", "3": "SaveImage", "4": "PreviewImage", "5": "MyCustomSaver"}
    # EmptyImage/ImageInvert are not output nodes; SaveImage/PreviewImage are by their schema;
    # a class the bundled schemas do not know counts by name only (Save*/Preview*).
    assert output_node_ids(classes) == ["3", "4"]
    assert sole_output_node({"1": "EmptyImage", "3": "SaveImage"}) == "3"
    assert sole_output_node(classes) is None


def test_runpods_files_are_the_sole_output_nodes(ports: MemoryPorts) -> None:
    job = stored_job(ports, node_classes={"1": "EmptyImage", "2": "ImageInvert", "3": "SaveImage"})
    (out,) = attribute_outputs(job, [RUNPOD_FILE])
    assert out.node_id == "3"


def test_runpods_files_stay_unattributed_when_the_prompt_has_several_output_nodes(ports: MemoryPorts) -> None:
    job = stored_job(ports, node_classes={"1": "EmptyImage", "2": "SaveImage", "3": "PreviewImage"})
    assert attribute_outputs(job, [RUNPOD_FILE]) == [RUNPOD_FILE]
