"""RunPod's webhook rules: Arm keeps the task token and wakes itself when there is nothing to
wait for; the callback wakes the wait only for the job's own secret."""

from __future__ import annotations

import time

import pytest
from support.memory import MemoryPorts, key, stored_job

from comfyroute.executors.base import ExecutorStatus, ExecutorUnavailable, Progress
from comfyroute.executors.runpod_webhook import new_secret, secret_digest
from comfyroute.jobs.webhook import arm_job, arm_seconds, callback_request, handle_callback
from comfyroute.protocol import ExecutorKind, JobStatus

SECRET = new_secret()


def runpod_job(ports: MemoryPorts, **fields: object) -> None:
    stored_job(
        ports,
        executor=ExecutorKind.RUNPOD,
        endpoint_id="ep1",
        executor_job_id="rp-1",
        callback_digest=secret_digest(SECRET),
        **fields,
    )


def path(job_id: str = key("j1"), secret: str = SECRET) -> str:
    return f"/runpod/callback/{job_id}/{secret}"


def test_arm_keeps_the_token_and_waits_while_runpod_runs_the_job(ports: MemoryPorts) -> None:
    runpod_job(ports)
    ports.executor.statuses = [ExecutorStatus(state=JobStatus.RUNNING, progress=Progress(node_id="3", value=1, max=2))]
    result = arm_job(ports, key("j1"), "token-1")
    assert (result.woke, ports.state_machine.woken) == (False, {})
    job = ports.jobs.records[key("j1")]
    assert (job.task_token, job.status) == ("token-1", JobStatus.RUNNING)
    # RunPod's progress still reaches the client while the loop waits.
    assert [m["type"] for m in ports.pusher.messages("conn-1")] == ["job_update", "node_progress"]
    # Numbered and logged like every message of the job: a client that reconnects replays them.
    assert [m.get("job_seq") for m in ports.pusher.messages("conn-1")] == [1, 2]
    assert ports.message_log.last_seq(key("j1")) == 2


@pytest.mark.parametrize(
    ("fields", "status", "reason"),
    [
        ({"status": JobStatus.CANCELLED}, None, "job over"),
        ({"deadline": time.time() - 1}, None, "deadline"),
        ({"webhook_seen_at": time.time()}, None, "the callback came first"),
        ({}, ExecutorStatus(state=JobStatus.COMPLETED), "over on RunPod"),
    ],
)
def test_arm_wakes_itself_when_there_is_nothing_to_wait_for(
    ports: MemoryPorts, fields: dict[str, object], status: ExecutorStatus | None, reason: str
) -> None:
    runpod_job(ports, **fields)
    if status is not None:
        ports.executor.statuses = [status]
    result = arm_job(ports, key("j1"), "token-1")
    assert (result.woke, result.reason) == (True, reason)
    assert ports.state_machine.woken == {"token-1": {"woken_by": reason}}


def test_arm_wakes_itself_for_an_unreachable_runpod_so_poll_tells_the_client(ports: MemoryPorts) -> None:
    runpod_job(ports)

    def down(executor_job_id: str, *, submitted_at: float | None = None) -> ExecutorStatus:
        raise ExecutorUnavailable("RunPod /status could not be reached")

    ports.executor.status = down  # type: ignore[method-assign]
    assert arm_job(ports, key("j1"), "token-1").woke


def test_the_right_secret_records_the_callback_and_wakes_the_armed_wait(ports: MemoryPorts) -> None:
    runpod_job(ports, task_token="token-1")
    body = b'{"id": "rp-1", "status": "COMPLETED", "delayTime": 12, "output": {"images": []}}'
    answer = handle_callback(ports, "POST", path(), body)
    assert answer.statusCode == 200
    assert ports.jobs.records[key("j1")].webhook_seen_at is not None
    assert ports.state_machine.woken == {"token-1": {"woken_by": "runpod_webhook", "hint_status": "COMPLETED"}}
    # Only a hint: nothing about the job's result is recorded from the body.
    assert ports.jobs.records[key("j1")].status is JobStatus.QUEUED


def test_a_callback_before_arm_is_remembered_for_the_next_arm(ports: MemoryPorts) -> None:
    runpod_job(ports)
    assert handle_callback(ports, "POST", path(), b"{}").statusCode == 200
    assert ports.state_machine.woken == {}
    assert arm_job(ports, key("j1"), "token-2").reason == "the callback came first"


@pytest.mark.parametrize(
    ("method", "request_path", "status"),
    [
        ("POST", path(secret=new_secret()), 404),  # wrong secret
        ("POST", path(job_id="other"), 404),  # no such job
        ("POST", "/runpod/callback/j1", 404),  # not a callback path
        ("GET", path(), 405),
    ],
)
def test_anything_but_the_jobs_own_callback_wakes_nothing(
    ports: MemoryPorts, method: str, request_path: str, status: int
) -> None:
    runpod_job(ports, task_token="token-1")
    assert handle_callback(ports, method, request_path, b"{}").statusCode == status
    assert ports.state_machine.woken == {}
    assert ports.jobs.records[key("j1")].webhook_seen_at is None


def test_a_callback_naming_another_runpod_job_is_answered_but_ignored(ports: MemoryPorts) -> None:
    runpod_job(ports, task_token="token-1")
    assert handle_callback(ports, "POST", path(), b'{"id": "rp-other", "status": "COMPLETED"}').statusCode == 200
    assert ports.state_machine.woken == {}


def test_the_function_url_event_gives_method_path_and_body() -> None:
    import base64

    event = {
        "rawPath": "/runpod/callback/j1/x",
        "requestContext": {"http": {"method": "POST"}},
        "body": base64.b64encode(b'{"a": 1}').decode(),
        "isBase64Encoded": True,
    }
    assert callback_request(event) == ("POST", "/runpod/callback/j1/x", b'{"a": 1}')
    assert callback_request({"requestContext": {"http": {"method": "POST"}}, "body": "x"})[2] == b"x"


def test_one_arm_waits_the_slow_poll_or_until_the_deadline(ports: MemoryPorts) -> None:
    assert arm_seconds(ports, time.time() + 3600) == 180
    assert arm_seconds(ports, time.time() + 30) in (30, 31)
    assert arm_seconds(ports, time.time() - 10) == 1
