"""run_job with input files and uploaded workflows, and request_upload, against the in-memory
ports: refusals named before any job exists, inputs kept under the job's prefix and handed to
the executor with submit_with_files, get_job listing them."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from support.memory import ALICE, CONN, MemoryPorts, key

from comfyroute.executors.base import ExecutorRejected
from comfyroute.jobs.queries import get_job
from comfyroute.jobs.submit import run_job
from comfyroute.jobs.uploads import request_upload
from comfyroute.ports import Caller
from comfyroute.protocol import JobStatus
from comfyroute.protocol.commands import RequestUploadData
from comfyroute.protocol.workflow_commands import RunJobData

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(200))
PROMPT: dict[str, Any] = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "input.png"}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0]}},
}
BOB = Caller(user_id="bob", connection_id="conn-bob")


def run(ports: MemoryPorts, caller: Caller = ALICE, **data: Any) -> None:
    run_job(ports, caller, RunJobData.model_validate({"job_id": "j1", **data}))


def sent(ports: MemoryPorts, type_: str | None = None, connection_id: str = CONN) -> list[dict[str, Any]]:
    return ports.pusher.messages(connection_id, type_)


def refusal(ports: MemoryPorts) -> dict[str, Any]:
    (error,) = sent(ports, "error")
    assert error["request"] == "run_job"
    assert key() not in ports.jobs.records  # refused: nothing recorded, the job id stays free
    assert ports.executor.submitted == []
    return error


# --------------------------------------------------------------------------- request_upload


def test_request_upload_answers_upload_ready_with_the_ticket_and_echoes_ref(ports: MemoryPorts) -> None:
    request_upload(ports, ALICE, RequestUploadData(filename="cat.png", content_type="image/png", size=48, ref="r1"))
    (ready,) = sent(ports, "upload_ready")
    assert ready["method"] == "POST"
    assert ready["max_bytes"] == 48
    assert ready["expires_in"] == 900
    assert (ready["filename"], ready["ref"]) == ("cat.png", "r1")
    owner, ticket, _, ctype = ports.uploads.issued[ready["upload_id"]]
    assert (owner, ctype, ticket.fields) == ("alice", "image/png", ready["fields"])


@pytest.mark.parametrize(
    ("content_type", "size", "code", "words"),
    [
        ("image/svg+xml", 10, "upload_not_allowed", "'image/svg+xml' is not allowed"),
        ("image/png", 10**9, "upload_too_large", "the limit is 1048576 bytes"),
    ],
)
def test_request_upload_refusals_name_the_problem(
    ports: MemoryPorts, content_type: str, size: int, code: str, words: str
) -> None:
    request_upload(ports, ALICE, RequestUploadData(filename="x", content_type=content_type, size=size))
    (error,) = sent(ports, "error")
    assert (error["code"], error["request"]) == (code, "request_upload")
    assert words in error["message"]
    assert ports.uploads.issued == {}


# --------------------------------------------------------------------------- files with a job


def test_an_uploaded_file_is_kept_under_the_job_and_handed_to_the_executor_by_name(ports: MemoryPorts) -> None:
    upload_id = ports.uploads.upload("alice", PNG)
    run(ports, prompt=PROMPT, files=[{"name": "input.png", "upload_id": upload_id}])
    (file,) = ports.executor.inputs[key()]
    assert (file.name, file.data, file.content_type) == ("input.png", PNG, "image/png")
    assert ports.executor.submitted == [(PROMPT, key())]  # the executor rewrites references itself
    assert ports.uploads.objects[f"jobs/{key()}/inputs/input.png"] == (PNG, "image/png")
    job = ports.jobs.records[key()]
    assert job.status is JobStatus.QUEUED
    assert job.error is None
    assert [(i.name, i.size, i.content_type, i.upload_id) for i in job.inputs] == [
        ("input.png", len(PNG), "image/png", upload_id)
    ]


def test_an_inline_file_is_decoded_kept_and_handed_over_with_its_guessed_type(ports: MemoryPorts) -> None:
    run(ports, prompt=PROMPT, files=[{"name": "input.png", "data": base64.b64encode(PNG).decode()}])
    (file,) = ports.executor.inputs[key()]
    assert (file.data, file.content_type) == (PNG, "image/png")
    assert ports.uploads.objects[f"jobs/{key()}/inputs/input.png"] == (PNG, "image/png")
    assert ports.jobs.records[key()].inputs[0].upload_id is None


def test_get_job_lists_the_jobs_input_files(ports: MemoryPorts) -> None:
    upload_id = ports.uploads.upload("alice", PNG)
    run(
        ports,
        prompt=PROMPT,
        files=[
            {"name": "input.png", "upload_id": upload_id},
            {"name": "mask.webp", "data": base64.b64encode(b"RIFF0000WEBP").decode(), "content_type": "image/webp"},
        ],
    )
    get_job(ports, ALICE, "j1")
    (message,) = sent(ports, "job")
    assert message["job"]["inputs"] == [
        {"name": "input.png", "size": len(PNG), "content_type": "image/png"},
        {"name": "mask.webp", "size": 12, "content_type": "image/webp"},
    ]


def test_a_job_without_files_is_submitted_plainly(ports: MemoryPorts) -> None:
    run(ports, prompt=PROMPT)
    assert ports.executor.inputs == {}
    assert ports.executor.submitted == [(PROMPT, key())]
    assert ports.jobs.records[key()].inputs == []


def test_another_users_upload_is_refused_as_theirs(ports: MemoryPorts) -> None:
    upload_id = ports.uploads.upload("bob", PNG)
    run(ports, prompt=PROMPT, files=[{"name": "input.png", "upload_id": upload_id}])
    error = refusal(ports)
    assert error["code"] == "upload_forbidden"
    assert error["message"] == f"data.files[0] (input.png): upload {upload_id} belongs to another user"


def test_an_unknown_upload_id_is_refused_as_unknown(ports: MemoryPorts) -> None:
    run(ports, prompt=PROMPT, files=[{"name": "input.png", "upload_id": "00000001.AAAAAAAAAAAAAAAAAAAAAAAA"}])
    assert refusal(ports)["code"] == "upload_not_found"


def test_an_id_of_the_wrong_shape_is_unknown_too(ports: MemoryPorts) -> None:
    run(ports, prompt=PROMPT, files=[{"name": "input.png", "upload_id": "made-up"}])
    error = refusal(ports)
    assert error["code"] == "upload_not_found"
    assert "upload ids come from upload_ready" in error["message"]


def test_an_upload_not_posted_yet_says_so(ports: MemoryPorts) -> None:
    ticket = ports.uploads.request_upload("alice", "a.png", "image/png", 10)
    run(ports, prompt=PROMPT, files=[{"name": "input.png", "upload_id": ticket.upload_id}])
    assert refusal(ports)["code"] == "upload_not_ready"


def test_an_expired_upload_is_refused_as_expired(ports: MemoryPorts) -> None:
    upload_id = ports.uploads.upload("alice", PNG)
    ports.uploads.now += 2 * 86400
    run(ports, prompt=PROMPT, files=[{"name": "input.png", "upload_id": upload_id}])
    assert refusal(ports)["code"] == "upload_expired"


def test_an_upload_over_the_limit_is_refused_as_too_large(ports: MemoryPorts) -> None:
    upload_id = ports.uploads.upload("alice", PNG)
    ports.uploads.max_bytes = 100  # lowered after the upload
    run(ports, prompt=PROMPT, files=[{"name": "input.png", "upload_id": upload_id}])
    assert refusal(ports)["code"] == "upload_too_large"


def test_an_inline_file_of_a_type_not_allowed_is_refused(ports: MemoryPorts) -> None:
    data = base64.b64encode(b"<svg/>").decode()
    run(ports, prompt=PROMPT, files=[{"name": "x.svg", "data": data}])
    error = refusal(ports)
    assert error["code"] == "upload_not_allowed"
    assert "'image/svg+xml' is not allowed" in error["message"]


def test_the_sum_of_a_jobs_inputs_is_limited(ports: MemoryPorts) -> None:
    ports.config = ports.config._replace(upload_max_job_bytes=300)
    ids = [ports.uploads.upload("alice", PNG) for _ in range(2)]
    run(ports, prompt=PROMPT, files=[{"name": f"in{i}.png", "upload_id": u} for i, u in enumerate(ids)])
    error = refusal(ports)
    assert error["code"] == "upload_too_large"
    assert "at most 300 bytes" in error["message"]


def test_a_refused_job_id_can_be_used_again_once_the_file_is_uploaded(ports: MemoryPorts) -> None:
    ticket = ports.uploads.request_upload("alice", "a.png", "image/png", len(PNG))
    run(ports, prompt=PROMPT, files=[{"name": "input.png", "upload_id": ticket.upload_id}])
    assert refusal(ports)["code"] == "upload_not_ready"
    ports.uploads.post(ticket, PNG)
    run(ports, prompt=PROMPT, files=[{"name": "input.png", "upload_id": ticket.upload_id}])
    assert ports.jobs.records[key()].status is JobStatus.QUEUED
    assert ports.executor.inputs[key()][0].data == PNG


def test_an_upload_gone_after_the_check_fails_the_job_naming_it(ports: MemoryPorts) -> None:
    upload_id = ports.uploads.upload("alice", PNG)
    original = ports.uploads.keep_for_job

    def vanish(user: str, uid: str, job_id: str, name: str) -> Any:
        del ports.uploads.uploads[uid]
        return original(user, uid, job_id, name)

    ports.uploads.keep_for_job = vanish
    run(ports, prompt=PROMPT, files=[{"name": "input.png", "upload_id": upload_id}])
    job = ports.jobs.records[key()]
    assert job.status is JobStatus.FAILED
    assert job.error is not None
    assert "input files could not be kept" in job.error
    assert upload_id in job.error
    assert ports.executor.submitted == []


def test_a_file_the_executor_refuses_fails_the_job_with_its_words(ports: MemoryPorts) -> None:
    ports.executor.submit_error = ExecutorRejected("ComfyUI answered 413 for input file 'input.png' (2.0 MB)")
    run(ports, prompt=PROMPT, files=[{"name": "input.png", "data": base64.b64encode(PNG).decode()}])
    job = ports.jobs.records[key()]
    assert job.status is JobStatus.FAILED
    assert job.error == "local executor refused the job: ComfyUI answered 413 for input file 'input.png' (2.0 MB)"
    # One answer: the failed job_update, with the executor's words.
    assert not sent(ports, "error")
    (update,) = sent(ports, "job_update")
    assert update["status"] == "failed"
    assert "input file 'input.png'" in update["error"]


# --------------------------------------------------------------------------- workflow_upload_id


def upload_workflow(ports: MemoryPorts, body: Any, user: str = "alice") -> str:
    return ports.uploads.upload(user, json.dumps(body).encode(), "application/json", "workflow.json")


def test_an_uploaded_api_prompt_runs(ports: MemoryPorts) -> None:
    run(ports, workflow_upload_id=upload_workflow(ports, PROMPT))
    assert ports.executor.submitted == [(PROMPT, key())]


def test_an_uploaded_post_prompt_body_runs_its_prompt(ports: MemoryPorts) -> None:
    run(ports, workflow_upload_id=upload_workflow(ports, {"prompt": PROMPT, "client_id": "x"}))
    assert ports.executor.submitted == [(PROMPT, key())]


def test_an_uploaded_nodetool_graph_is_converted(ports: MemoryPorts) -> None:
    graph = {
        "nodes": [
            {"id": "a", "type": "comfy.EmptyImage", "data": {"width": 4, "height": 4, "batch_size": 1, "color": 0}},
            {"id": "b", "type": "comfy.SaveImage", "data": {"filename_prefix": "x"}},
        ],
        "edges": [{"source": "a", "sourceHandle": "output_0", "target": "b", "targetHandle": "images"}],
    }
    run(ports, workflow_upload_id=upload_workflow(ports, graph))
    ((prompt, _),) = ports.executor.submitted
    assert prompt["b"]["inputs"]["images"] == ["a", 0]


def test_an_uploaded_saved_workflow_brings_its_settings_under_the_requests(ports: MemoryPorts) -> None:
    saved = {
        "id": "w",
        "name": "w",
        "graph": {"nodes": [{"id": "a", "type": "comfy.SaveImage", "data": {}}], "edges": []},
        "settings": {"comfy_executor": "runpod", "runpod_endpoint_id": "ep1"},
    }
    run(ports, workflow_upload_id=upload_workflow(ports, saved))
    assert ports.executors.built[-1] == (ports.executor.kind.__class__("runpod"), "alice", "ep1")
    run_job(
        ports,
        ALICE,
        RunJobData.model_validate(
            {
                "job_id": "j2",
                "workflow_upload_id": upload_workflow(ports, saved),
                "settings": {"comfy_executor": "local"},
            }
        ),
    )
    assert ports.executors.built[-1][0].value == "local"


def test_an_uploaded_editor_workflow_is_converted_with_the_bundled_schemas(ports: MemoryPorts) -> None:
    editor = {
        "last_node_id": 2,
        "last_link_id": 1,
        "nodes": [
            {
                "id": 1,
                "type": "EmptyImage",
                "mode": 0,
                "inputs": [],
                "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [1]}],
                "widgets_values": [8, 8, 1, 0],
            },
            {
                "id": 2,
                "type": "SaveImage",
                "mode": 0,
                "inputs": [{"name": "images", "type": "IMAGE", "link": 1}],
                "outputs": [],
                "widgets_values": ["out"],
            },
        ],
        "links": [[1, 1, 0, 2, 0, "IMAGE"]],
        "version": 0.4,
    }
    run(ports, workflow_upload_id=upload_workflow(ports, editor))
    ((prompt, _),) = ports.executor.submitted
    assert {k: (v["class_type"], v["inputs"]) for k, v in prompt.items()} == {
        "1": ("EmptyImage", {"width": 8, "height": 8, "batch_size": 1, "color": 0}),
        "2": ("SaveImage", {"filename_prefix": "out", "images": ["1", 0]}),
    }


def test_an_uploaded_workflow_and_its_input_files_go_together(ports: MemoryPorts) -> None:
    upload_id = ports.uploads.upload("alice", PNG)
    run(ports, workflow_upload_id=upload_workflow(ports, PROMPT), files=[{"name": "input.png", "upload_id": upload_id}])
    assert ports.executor.submitted == [(PROMPT, key())]
    assert ports.executor.inputs[key()][0].data == PNG


def test_another_users_workflow_upload_is_refused(ports: MemoryPorts) -> None:
    run(ports, workflow_upload_id=upload_workflow(ports, PROMPT, user="bob"))
    error = refusal(ports)
    assert error["code"] == "upload_forbidden"
    assert error["message"].startswith("data.workflow_upload_id: upload ")


def test_an_image_upload_is_no_workflow(ports: MemoryPorts) -> None:
    run(ports, workflow_upload_id=ports.uploads.upload("alice", PNG))
    error = refusal(ports)
    assert error["code"] == "upload_not_allowed"
    assert "upload workflows as application/json" in error["message"]


def test_json_that_is_no_workflow_is_a_bad_request_naming_the_shapes(ports: MemoryPorts) -> None:
    run(ports, workflow_upload_id=upload_workflow(ports, {"hello": "world"}))
    error = refusal(ports)
    assert error["code"] == "bad_request"
    assert "not a workflow" in error["message"]
    assert "keys hello" in error["message"]


def test_an_uploaded_graph_over_the_node_limit_is_too_large(ports: MemoryPorts) -> None:
    nodes = [{"id": f"n{i}", "type": "comfy.SaveImage", "data": {}} for i in range(2001)]
    run(ports, workflow_upload_id=upload_workflow(ports, {"nodes": nodes, "edges": []}))
    error = refusal(ports)
    assert error["code"] == "too_large"
    assert "2001 nodes; the limit is 2000" in error["message"]


def test_an_uploaded_graph_with_a_bad_field_names_it(ports: MemoryPorts) -> None:
    run(ports, workflow_upload_id=upload_workflow(ports, {"nodes": [{"id": "a"}], "edges": []}))
    error = refusal(ports)
    assert error["code"] == "bad_request"
    assert "workflow_upload_id.nodes[0].type" in error["message"]


def test_a_workflow_that_does_not_convert_is_recorded_failed_as_an_inline_one_is(ports: MemoryPorts) -> None:
    graph = {"nodes": [{"id": "a", "type": "nodetool.Text", "data": {}}], "edges": []}
    run(ports, workflow_upload_id=upload_workflow(ports, graph))
    job = ports.jobs.records[key()]
    assert job.status is JobStatus.FAILED
    assert job.error is not None
    assert job.error.startswith("invalid workflow")


def test_bob_cannot_see_alices_inputs_by_job_id(ports: MemoryPorts) -> None:
    run(ports, prompt=PROMPT, files=[{"name": "input.png", "data": base64.b64encode(PNG).decode()}])
    ports.connections.put(BOB.connection_id, "bob")
    get_job(ports, BOB, "j1")
    (error,) = sent(ports, "error", BOB.connection_id)
    assert error["code"] == "not_found"
