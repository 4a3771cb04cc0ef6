"""The notify task's rules: what reaches the job's client, and when nothing can."""

from __future__ import annotations

import base64

from support.memory import CONN, MemoryPorts, key, stored_job

from comfyroute.defaults import MAX_MESSAGE_BYTES
from comfyroute.executors.base import OutputFile, Progress
from comfyroute.jobs.notify import notify_job
from comfyroute.protocol import JobStatus


def stored_output(ports: MemoryPorts, name: str, data: bytes) -> OutputFile:
    key = f"jobs/j1/{name}"
    ports.outputs.objects[key] = data
    return OutputFile(
        node_id="2",
        node_name="SaveImage",
        output_name="images",
        kind="image",
        filename=name,
        content_type="image/png",
        size=len(data),
        key=key,
    )


def test_progress_goes_with_a_running_job_update(ports: MemoryPorts) -> None:
    stored_job(ports, status=JobStatus.RUNNING, progress=Progress(node_id="2", value=1, max=4))
    result = notify_job(ports, key("j1"), final=False)
    assert (result.delivered, result.sent) == (True, 2)
    update, progress = ports.pusher.messages(CONN)
    assert (update["type"], update["status"]) == ("job_update", "running")
    assert (progress["type"], progress["node_id"], progress["progress"], progress["total"]) == (
        "node_progress",
        "2",
        1,
        4,
    )


def test_the_final_notify_sends_every_output_inline_only_when_it_fits_one_frame(ports: MemoryPorts) -> None:
    small, big = b"\x89PNG small", b"\0" * MAX_MESSAGE_BYTES
    outputs = [stored_output(ports, "small.png", small), stored_output(ports, "big.png", big)]
    stored_job(ports, status=JobStatus.COMPLETED, outputs=outputs, finished_at=1.0)
    # the SaveImage node's node_update, both outputs, the job_update
    assert notify_job(ports, key("j1"), final=True).sent == 4
    first, second = ports.pusher.messages(CONN, "output_update")
    assert base64.b64decode(first["value"]["data"]) == small
    assert first["value"]["uri"] == "memory://jobs/j1/small.png?expires=3600"
    assert (first["node_id"], first["node_name"], first["output_type"]) == ("2", "SaveImage", "image")
    assert "data" not in second["value"]
    assert second["value"]["size"] == len(big)


def test_a_failure_from_the_loops_catch_fails_the_job_first(ports: MemoryPorts) -> None:
    stored_job(ports)
    failure = {"Error": "States.TaskFailed", "Cause": "boom"}
    assert notify_job(ports, key("j1"), final=True, failure=failure).delivered
    assert ports.jobs.records[key("j1")].error == "States.TaskFailed: boom"
    assert ports.pusher.messages(CONN)[0]["status"] == "failed"


def test_a_failure_does_not_overwrite_a_job_that_already_ended(ports: MemoryPorts) -> None:
    stored_job(ports, status=JobStatus.COMPLETED, finished_at=1.0)
    notify_job(ports, key("j1"), final=True, failure={"Error": "X"})
    assert ports.jobs.records[key("j1")].status is JobStatus.COMPLETED


def test_nothing_is_pushed_for_a_missing_job_or_connection(ports: MemoryPorts) -> None:
    assert notify_job(ports, key("nope"), final=True).reason == "no such job"
    stored_job(ports, connection_id=None)
    assert notify_job(ports, key("j1"), final=True).reason == "no connection"
    stored_job(ports, connection_id="elsewhere")
    assert notify_job(ports, key("j1"), final=True).reason == "connection gone"
    assert ports.pusher.sent == {}


def test_a_client_found_gone_is_remembered_so(ports: MemoryPorts) -> None:
    stored_job(ports)
    ports.pusher.gone.add(CONN)
    result = notify_job(ports, key("j1"), final=False)
    assert (result.delivered, result.reason) == (False, "connection gone")
    assert ports.connections.records[CONN].gone
    assert notify_job(ports, key("j1"), final=False).reason == "connection gone"


def test_the_terminal_update_comes_after_every_output_and_counts_them(ports: MemoryPorts) -> None:
    outputs = [stored_output(ports, "a.png", b"a"), stored_output(ports, "b.png", b"b")]
    stored_job(ports, status=JobStatus.COMPLETED, outputs=outputs, finished_at=1.0, delay_ms=120, execution_ms=900)
    notify_job(ports, key("j1"), final=True)
    types = [m["type"] for m in ports.pusher.messages(CONN) if m["type"] != "node_update"]
    assert types == ["output_update", "output_update", "job_update"]
    assert ports.pusher.messages(CONN)[-1]["type"] == "job_update"
    final = ports.pusher.messages(CONN, "job_update")[-1]
    assert (final["status"], final["output_count"], final["delay_ms"], final["execution_ms"]) == (
        "completed",
        2,
        120,
        900,
    )


def test_a_running_update_carries_no_output_count(ports: MemoryPorts) -> None:
    stored_job(ports, status=JobStatus.RUNNING)
    notify_job(ports, key("j1"), final=False)
    (update,) = ports.pusher.messages(CONN, "job_update")
    assert "output_count" not in update
