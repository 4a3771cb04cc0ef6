"""The protocol's additions for issue 13 (input files, uploads) and issue 12 (editor workflows):
``request_upload`` / ``upload_ready``, ``run_job.data.files``, ``workflow_upload_id``,
``workflow``, the one-source rule, and the inputs a job view lists."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from comfyroute.protocol import MAX_MESSAGE_BYTES, JobStatus, input_name_problem, protocol_json_schema
from comfyroute.protocol.commands import COMMANDS, Limits, ProtocolError, RequestUpload, parse_command
from comfyroute.protocol.server_messages import (
    ErrorMessage,
    JobInput,
    JobMessage,
    JobView,
    UploadReady,
    encode,
    parse_server_message,
)
from comfyroute.protocol.workflow_commands import InputFileRef, RunJob, SaveWorkflow

GRAPH = {"nodes": [{"id": 1, "type": "comfy.EmptyImage", "data": {"width": 8}}], "edges": []}
PROMPT = {"1": {"class_type": "LoadImage", "inputs": {"image": "input.png"}}}
# The shape ComfyUI's Save writes (schema 0.4): links are arrays.
EDITOR = {
    "last_node_id": 2,
    "last_link_id": 1,
    "nodes": [
        {"id": 1, "type": "LoadImage", "pos": [0, 0], "mode": 0, "widgets_values": ["input.png", "image"]},
        {"id": 2, "type": "PreviewImage", "pos": [300, 0], "mode": 0, "inputs": [{"name": "images", "link": 1}]},
    ],
    "links": [[1, 1, 0, 2, 0, "IMAGE"]],
    "groups": [],
    "extra": {"ds": {"scale": 1, "offset": [0, 0]}},
    "version": 0.4,
}
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))


def body(command: str, **data: Any) -> str:
    return json.dumps({"command": command, "data": data})


def refused(raw: str, limits: Limits | None = None) -> ProtocolError:
    with pytest.raises(ProtocolError) as err:
        parse_command(raw) if limits is None else parse_command(raw, limits)
    return err.value


# --------------------------------------------------------------------------- request_upload


def test_request_upload_parses_with_its_optional_ref() -> None:
    cmd = parse_command(body("request_upload", filename="cat.png", content_type="image/png", size=48213, ref="f1"))
    assert isinstance(cmd, RequestUpload)
    assert (cmd.data.filename, cmd.data.content_type, cmd.data.size, cmd.data.ref) == (
        "cat.png",
        "image/png",
        48213,
        "f1",
    )
    assert "request_upload" in COMMANDS


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"content_type": "image/png", "size": 3}, "data.filename: Field required"),
        ({"filename": "", "content_type": "image/png", "size": 3}, "data.filename: String should have at least 1"),
        (
            {"filename": "a" * 256, "content_type": "image/png", "size": 3},
            "data.filename: String should have at most 255",
        ),
        ({"filename": "a.png", "size": 3}, "data.content_type: Field required"),
        (
            {"filename": "a.png", "content_type": "image/png", "size": 0},
            "data.size: Input should be greater than or equal to 1",
        ),
        ({"filename": "a.png", "content_type": "image/png", "size": 3, "ref": "a b"}, "data.ref: String should match"),
        ({"filename": "a.png", "content_type": "image/png", "size": 3, "key": "uploads/x"}, "data.key: Extra inputs"),
    ],
)
def test_request_upload_refusals_name_the_field(data: dict[str, Any], expected: str) -> None:
    err = refused(body("request_upload", **data))
    assert expected in str(err)
    assert err.command == "request_upload"


def test_upload_ready_round_trips_as_a_server_message() -> None:
    ready = UploadReady(
        upload_id="6773a8c0.Xy3abcdefghijklmnopqrstu",
        url="https://bucket.s3.amazonaws.com/",
        fields={"key": "uploads/6773a8c0.Xy3abcdefghijklmnopqrstu", "Content-Type": "image/png", "policy": "e30="},
        expires_in=900,
        max_bytes=48213,
        ref="f1",
    )
    wire = json.loads(encode(ready))
    assert wire["type"] == "upload_ready"
    assert wire["method"] == "POST"
    assert "filename" not in wire  # nulls stay off the wire
    assert parse_server_message(encode(ready)) == ready


# --------------------------------------------------------------------------- run_job.data.files


def test_files_by_upload_and_inline() -> None:
    data = base64.b64encode(PNG).decode()
    cmd = parse_command(
        body(
            "run_job",
            prompt=PROMPT,
            files=[
                {"name": "input.png", "upload_id": "6773a8c0.Xy3abcdefghijklmnopqrstu"},
                {"name": "mask (1).png", "data": data, "content_type": "image/png"},
            ],
        )
    )
    assert isinstance(cmd, RunJob)
    files = cmd.data.files
    assert files is not None
    assert [(f.name, f.upload_id, f.decoded()) for f in files] == [
        ("input.png", "6773a8c0.Xy3abcdefghijklmnopqrstu", None),
        ("mask (1).png", None, PNG),
    ]
    assert files[1].content_type == "image/png"
    assert "AAEC" not in repr(files[1])  # the bytes never show in logs


@pytest.mark.parametrize(
    "name",
    ["../x.png", "a/b.png", "a\\b.png", ".hidden", " lead.png", "trail.png ", "trail.", "", "x" * 129, "é.png", "a\nb"],
)
def test_unsafe_file_names_are_refused(name: str) -> None:
    err = refused(body("run_job", prompt=PROMPT, files=[{"name": name, "upload_id": "u1"}]))
    assert "data.files[0].name: input file name" in str(err)
    assert "is not allowed" in str(err)
    assert input_name_problem(name) is not None


@pytest.mark.parametrize("name", ["input.png", "_x.webp", "My Photo (2).jpg", "a+b=c@d,e.wav", "x" * 128, "9"])
def test_safe_file_names_pass(name: str) -> None:
    assert input_name_problem(name) is None
    assert InputFileRef(name=name, upload_id="u1").name == name


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ([{"name": "a.png"}], "data.files[0]: file 'a.png' needs exactly one of 'upload_id' or 'data'"),
        (
            [{"name": "a.png", "upload_id": "u1", "data": "AAAA"}],
            "data.files[0]: file 'a.png' needs exactly one of 'upload_id' or 'data'",
        ),
        ([{"name": "a.png", "data": "not base64!"}], "data.files[0].data: not valid base64"),
        ([{"name": "a.png", "data": "AAA"}], "data.files[0].data: not valid base64"),
        ([{"name": "a.png", "upload_id": "../../etc"}], "data.files[0].upload_id: '../../etc' is not an upload id"),
        (
            [{"name": "a.png", "upload_id": "u1", "content_type": "image/png"}],
            "'content_type' goes with inline 'data'",
        ),
        (
            [{"name": "a.png", "upload_id": "u1"}, {"name": "b.png", "upload_id": "u2"}, {"name": "a.png", "data": ""}],
            "data.files: each input file name may be given once; given more than once: a.png",
        ),
        ([{"name": "a.png", "upload_id": "u1", "size": 3}], "data.files[0].size: Extra inputs are not permitted"),
        ({"name": "a.png"}, "data.files: Input should be a valid list"),
    ],
)
def test_bad_file_entries_name_the_entry(files: Any, expected: str) -> None:
    assert expected in str(refused(body("run_job", prompt=PROMPT, files=files)))


def test_file_count_limit() -> None:
    files = [{"name": f"f{i}.png", "upload_id": f"u{i}"} for i in range(4)]
    err = refused(body("run_job", prompt=PROMPT, files=files), Limits(max_files=3))
    assert "data.files: 4 files; the limit is 3" in str(err)
    assert err.code == "too_large"
    assert Limits().max_files == 32


def test_empty_base64_is_an_empty_file() -> None:
    cmd = parse_command(body("run_job", prompt=PROMPT, files=[{"name": "empty.txt", "data": ""}]))
    assert isinstance(cmd, RunJob)
    assert cmd.data.files is not None
    assert cmd.data.files[0].decoded() == b""


# --------------------------------------------------------------------------- the workflow's source


def test_workflow_upload_id_is_a_source_on_its_own() -> None:
    cmd = parse_command(body("run_job", workflow_upload_id="6773a8c0.Xy3abcdefghijklmnopqrstu", workflow_id="wf-1"))
    assert isinstance(cmd, RunJob)
    assert cmd.data.workflow_upload_id == "6773a8c0.Xy3abcdefghijklmnopqrstu"
    assert cmd.data.graph is None
    assert cmd.data.prompt is None


def test_editor_workflow_is_kept_whole() -> None:
    cmd = parse_command(body("run_job", workflow=EDITOR, files=[{"name": "input.png", "upload_id": "u1"}]))
    assert isinstance(cmd, RunJob)
    workflow = cmd.data.workflow
    assert workflow is not None
    # Every key the editor wrote survives, so the converter sees the file as saved.
    assert workflow.model_dump() == EDITOR


def test_editor_workflow_in_schema_1_with_subgraphs() -> None:
    schema1 = {
        "version": 1,
        "state": {"lastNodeId": 3, "lastLinkId": 1},
        "nodes": [{"id": 3, "type": "a0b1c2d3-subgraph", "mode": 0}],
        "links": [{"id": 1, "origin_id": 3, "origin_slot": 0, "target_id": 3, "target_slot": 0, "type": "IMAGE"}],
        "definitions": {"subgraphs": [{"id": "a0b1c2d3-subgraph", "nodes": [{"id": 1}, {"id": 2}], "links": [[1]]}]},
    }
    cmd = parse_command(body("save_workflow", workflow_id="wf", workflow=schema1))
    assert isinstance(cmd, SaveWorkflow)
    assert cmd.data.workflow is not None
    assert cmd.data.workflow.counts() == (3, 2)
    assert cmd.data.workflow.model_dump()["definitions"] == schema1["definitions"]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"graph": GRAPH, "prompt": PROMPT},
            "data: give only one of 'graph', 'prompt', 'workflow' or 'workflow_upload_id'; got 'graph' and 'prompt'",
        ),
        ({"graph": GRAPH, "workflow": EDITOR}, "got 'graph' and 'workflow'"),
        ({"prompt": PROMPT, "workflow_upload_id": "u1"}, "got 'prompt' and 'workflow_upload_id'"),
        (
            {"workflow": EDITOR, "workflow_upload_id": "u1", "graph": GRAPH},
            "got 'graph', 'workflow' and 'workflow_upload_id'",
        ),
        ({"files": [{"name": "a.png", "upload_id": "u1"}]}, "data: needs 'graph', 'prompt', 'workflow'"),
        ({"workflow": {"links": []}}, "data.workflow.nodes: Field required"),
        ({"workflow": {"nodes": [1, 2]}}, "data.workflow.nodes[0]: Input should be a valid dictionary"),
        ({"workflow": {"nodes": [], "links": {}}}, "data.workflow.links: Input should be a valid list"),
        ({"workflow_upload_id": "a/b"}, "data.workflow_upload_id: 'a/b' is not an upload id"),
    ],
)
def test_exactly_one_source(data: dict[str, Any], expected: str) -> None:
    assert expected in str(refused(body("run_job", **data)))


def test_a_saved_workflow_by_id_is_still_a_source() -> None:
    cmd = parse_command(body("run_job", workflow_id="wf-1", files=[{"name": "input.png", "upload_id": "u1"}]))
    assert isinstance(cmd, RunJob)
    assert cmd.data.workflow_id == "wf-1"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"graph": GRAPH, "workflow": EDITOR},
            "data: give only one of 'graph', 'prompt' or 'workflow'; got 'graph' and 'workflow'",
        ),
        ({"prompt": PROMPT, "workflow": EDITOR}, "got 'prompt' and 'workflow'"),
        ({"workflow_upload_id": "u1"}, "data.workflow_upload_id: Extra inputs are not permitted"),
    ],
)
def test_save_workflow_takes_one_source(data: dict[str, Any], expected: str) -> None:
    assert expected in str(refused(body("save_workflow", workflow_id="wf", **data)))


def test_editor_workflow_limits_count_subgraphs_too() -> None:
    limits = Limits(max_nodes=3, max_edges=2, max_body_bytes=100_000)
    sub: dict[str, Any] = {"id": "s", "nodes": [{"id": 1}, {"id": 2}], "links": [[1], [2]]}
    wf: dict[str, Any] = {"nodes": [{"id": 1}, {"id": 2}], "links": [], "definitions": {"subgraphs": [sub]}}
    err = refused(body("run_job", workflow=wf), limits)
    assert "data.workflow.nodes: 4 nodes (subgraphs included); the limit is 3" in str(err)
    assert err.code == "too_large"
    wf = {"nodes": [{"id": 1}], "links": [[9]], "definitions": {"subgraphs": [sub]}}
    assert "data.workflow.links: 3 links (subgraphs included); the limit is 2" in str(
        refused(body("run_job", workflow=wf), limits)
    )


def test_a_big_workflow_does_not_fit_one_frame_and_needs_an_upload() -> None:
    # Why workflow_upload_id exists: 1,000 editor nodes as the editor saves them pass 128 KB.
    nodes = [
        {
            "id": i,
            "type": "ImageInvert",
            "pos": [i, i],
            "size": [210, 26],
            "flags": {},
            "order": i,
            "mode": 0,
            "inputs": [{"name": "image", "type": "IMAGE", "link": i}],
            "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [i + 1], "slot_index": 0}],
            "properties": {"Node name for S&R": "ImageInvert"},
            "widgets_values": [],
        }
        for i in range(1000)
    ]
    raw = body("run_job", workflow={"nodes": nodes, "links": []})
    assert len(raw) > MAX_MESSAGE_BYTES
    assert refused(raw).code == "too_large"


# --------------------------------------------------------------------------- the job view


def test_job_view_lists_inputs_and_defaults_to_none() -> None:
    view = JobView(job_id="j", status=JobStatus.COMPLETED, created_at=1.0, updated_at=2.0)
    assert view.inputs == []
    view = view.model_copy(update={"inputs": [JobInput(name="input.png", size=48213, content_type="image/png")]})
    wire = json.loads(encode(JobMessage(job=view)))
    assert wire["job"]["inputs"] == [{"name": "input.png", "size": 48213, "content_type": "image/png"}]
    parsed = parse_server_message(encode(JobMessage(job=view)))
    assert isinstance(parsed, JobMessage)
    assert parsed.job.inputs[0].size == 48213


def test_upload_refusals_are_error_messages_for_request_upload() -> None:
    err = ErrorMessage(
        message="content type 'image/svg+xml' is not allowed", code="upload_not_allowed", request="request_upload"
    )
    parsed = parse_server_message(encode(err))
    assert isinstance(parsed, ErrorMessage)
    assert (parsed.request, parsed.code) == ("request_upload", "upload_not_allowed")


def test_json_schema_documents_the_additions() -> None:
    text = json.dumps(protocol_json_schema())
    for name in (
        '"request_upload"',
        '"upload_ready"',
        '"workflow_upload_id"',
        '"InputFileRef"',
        '"EditorWorkflow"',
        '"JobInput"',
    ):
        assert name in text
