"""What each answer says and how it fits: get_job pages of outputs under the frame limit with
real-length presigned URLs, outputs before the terminal job_update, one answer per refusal."""

from __future__ import annotations

import json

from support.memory import ALICE, CONN, MemoryOutputs, MemoryPorts, key, stored_job

from comfyroute import messages
from comfyroute.defaults import MAX_MESSAGE_BYTES
from comfyroute.executors.base import OutputFile
from comfyroute.jobs.notify import notify_job
from comfyroute.jobs.queries import get_job
from comfyroute.protocol import JobStatus
from comfyroute.protocol.commands import ProtocolError, parse_command
from comfyroute.protocol.server_messages import encode


class RealLengthUrls(MemoryOutputs):
    """Presigned URLs as long as S3's with a session token (~1.5 KB each)."""

    def presign(self, output: OutputFile, expires_in: int) -> str | None:
        query = "X-Amz-Security-Token=" + "A" * 1300 + "&X-Amz-Signature=" + "f" * 64
        return f"https://comfyroute-outputs.s3.us-east-1.amazonaws.com/{output.key}?{query}"


def outputs(n: int) -> list[OutputFile]:
    return [
        OutputFile(
            node_id="9",
            node_name="SaveImage",
            output_name="images",
            kind="image",
            filename=f"batch_{i:05d}_.png",
            content_type="image/png",
            size=1234,
            key=f"jobs/{key('j1')}/{i:03d}-9-batch_{i:05d}_.png",
        )
        for i in range(n)
    ]


def frames(ports: MemoryPorts) -> list[str]:
    return [json.dumps(m) for m in ports.pusher.sent[CONN]]


def test_get_job_pages_500_outputs_each_answer_under_the_frame_limit(ports: MemoryPorts) -> None:
    ports.outputs = RealLengthUrls()
    stored_job(ports, status=JobStatus.COMPLETED, outputs=outputs(500), finished_at=1.0)
    seen: list[str] = []
    offset: int | None = 0
    pages = 0
    while offset is not None:
        get_job(ports, ALICE, "j1", offset=offset)
        answer = ports.pusher.sent[CONN][-1]
        assert len(json.dumps(answer).encode()) <= MAX_MESSAGE_BYTES
        job = answer["job"]
        assert (answer["type"], answer["request"], job["job_id"], job["output_count"]) == ("job", "get_job", "j1", 500)
        assert job["outputs_offset"] == offset
        assert len(job["outputs"][0]["value"]["uri"]) > 1400
        seen.extend(o["value"]["filename"] for o in job["outputs"])
        offset = job.get("outputs_next")
        pages += 1
    assert seen == [f"batch_{i:05d}_.png" for i in range(500)]
    assert pages >= 6  # 500 x ~1.6 KB cannot fit fewer 128 KB frames


def test_get_job_honours_a_smaller_page_limit(ports: MemoryPorts) -> None:
    stored_job(ports, status=JobStatus.COMPLETED, outputs=outputs(10), finished_at=1.0)
    get_job(ports, ALICE, "j1", offset=4, limit=3)
    job = ports.pusher.sent[CONN][-1]["job"]
    assert [o["value"]["filename"] for o in job["outputs"]] == [f"batch_{i:05d}_.png" for i in (4, 5, 6)]
    assert (job["outputs_offset"], job["outputs_next"]) == (4, 7)
    get_job(ports, ALICE, "j1", offset=7)
    assert "outputs_next" not in ports.pusher.sent[CONN][-1]["job"]


def test_the_get_job_command_takes_the_page_fields() -> None:
    cmd = parse_command(
        json.dumps({"command": "get_job", "data": {"job_id": "j1", "outputs_offset": 5, "outputs_limit": 2}})
    )
    assert (cmd.data.outputs_offset, cmd.data.outputs_limit) == (5, 2)  # type: ignore[union-attr]


def test_every_output_comes_before_the_terminal_job_update_which_counts_them(ports: MemoryPorts) -> None:
    ports.outputs = RealLengthUrls()
    stored_job(ports, status=JobStatus.COMPLETED, outputs=outputs(3), finished_at=1.0)
    assert notify_job(ports, key("j1"), final=True).sent == 5  # a node_update, 3 outputs, the job_update
    *updates, last = ports.pusher.sent[CONN]
    assert [m["type"] for m in updates] == ["node_update"] + ["output_update"] * 3
    assert (last["type"], last["status"], last["output_count"], last["job_id"]) == ("job_update", "completed", 3, "j1")


def test_a_final_notify_whose_outputs_fail_to_build_still_ends_the_job_for_the_client(ports: MemoryPorts) -> None:
    class Broken(MemoryOutputs):
        def presign(self, output: OutputFile, expires_in: int) -> str | None:
            raise RuntimeError("S3 is down")

    ports.outputs = Broken()
    stored_job(ports, status=JobStatus.COMPLETED, outputs=outputs(2), finished_at=1.0)
    assert notify_job(ports, key("j1"), final=True).delivered
    update = ports.pusher.sent[CONN][-1]
    assert (update["type"], update["status"]) == ("job_update", "completed")


def test_a_refused_run_job_frame_that_names_its_job_is_answered_by_that_jobs_job_update() -> None:
    frame = json.dumps({"command": "run_job", "data": {"job_id": "j9", "workflow_id": "wf", "graph": {"edges": []}}})
    try:
        parse_command(frame)
    except ProtocolError as exc:
        answer = json.loads(encode(messages.rejected(exc)))
    assert (answer["type"], answer["status"], answer["job_id"], answer["workflow_id"], answer["request"]) == (
        "job_update",
        "failed",
        "j9",
        "wf",
        "run_job",
    )
    assert "data.graph.nodes" in answer["error"]


def test_other_refusals_are_one_error_naming_the_request_and_job() -> None:
    try:
        parse_command(json.dumps({"command": "get_job", "data": {"job_id": "j9", "outputs_offset": -1}}))
    except ProtocolError as exc:
        answer = json.loads(encode(messages.rejected(exc)))
    assert (answer["type"], answer["request"], answer["job_id"]) == ("error", "get_job", "j9")
