"""run_job's rules: preparing the job, starting it once, and every way a start can end."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from support.memory import ALICE, CONN, MemoryPorts, key

from comfyroute.credentials import CredentialsError
from comfyroute.executors.base import ExecutorRejected, ExecutorStatus
from comfyroute.jobs import lifecycle
from comfyroute.jobs.record import JobRecord
from comfyroute.jobs.submit import prepare_job, run_job
from comfyroute.ports import Caller
from comfyroute.protocol import ExecutorKind, JobStatus
from comfyroute.protocol.workflow_commands import RunJobData
from comfyroute.workflows import WorkflowRecord

PROMPT = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}},
}


def run(ports: MemoryPorts, caller: Caller = ALICE, **data: Any) -> None:
    run_job(ports, caller, RunJobData.model_validate({"job_id": "j1", **data}))


def sent(ports: MemoryPorts, type_: str | None = None, connection_id: str = CONN) -> list[dict[str, Any]]:
    return ports.pusher.messages(connection_id, type_)


def save(ports: MemoryPorts, settings: dict[str, Any], prompt: dict[str, Any] | None = PROMPT) -> None:
    ports.workflows.put(
        WorkflowRecord(
            user_id="alice",
            workflow_id="wf",
            prompt_json=None if prompt is None else json.dumps(prompt),
            settings=settings,
            updated_at=time.time(),
        )
    )


# --------------------------------------------------------------------------- prepare


def test_prepare_converts_the_prompt_and_names_each_nodes_class(ports: MemoryPorts) -> None:
    prepared = prepare_job(ports, ALICE, RunJobData(job_id="j1", prompt=PROMPT))
    assert (prepared.user_id, prepared.connection_id, prepared.executor, prepared.error) == (
        "alice",
        CONN,
        ExecutorKind.LOCAL,
        None,
    )
    assert prepared.node_classes == {"1": "EmptyImage", "2": "SaveImage"}
    assert prepared.prompt == PROMPT


def test_prepare_uses_the_saved_workflow_and_its_settings_with_the_requests_on_top(ports: MemoryPorts) -> None:
    save(ports, {"comfy_executor": "runpod", "runpod_endpoint_id": "ep_1"})
    saved = prepare_job(ports, ALICE, RunJobData(workflow_id="wf"))
    assert (saved.executor, saved.endpoint_id, saved.prompt) == (ExecutorKind.RUNPOD, "ep_1", PROMPT)
    local = prepare_job(
        ports, ALICE, RunJobData.model_validate({"workflow_id": "wf", "settings": {"comfy_executor": "local"}})
    )
    assert (local.executor, local.endpoint_id) == (ExecutorKind.LOCAL, None)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"workflow_id": "missing"}, "workflow 'missing' not found"),
        ({"prompt": PROMPT, "settings": {"comfy_executor": "runpod"}}, "runpod_endpoint_id is required"),
        ({"prompt": {"1": {"class_type": "X"}}}, "invalid workflow"),
    ],
)
def test_prepare_turns_a_bad_request_into_the_error_that_fails_the_job(
    ports: MemoryPorts, data: dict[str, Any], error: str
) -> None:
    prepared = prepare_job(ports, ALICE, RunJobData.model_validate(data))
    assert prepared.error is not None
    assert prepared.error.startswith(error)
    assert prepared.prompt is None


# --------------------------------------------------------------------------- a start that runs


def test_a_job_is_recorded_submitted_and_followed_and_the_client_told_without_reading_it_back(
    ports: MemoryPorts,
) -> None:
    run(ports, prompt=PROMPT)
    job = ports.jobs.records[key("j1")]
    # The backend knows the job by its per-user key; the client sees its own id.
    assert (job.job_id, job.client_job_id) == (key("j1"), "j1")
    assert (job.status, job.executor_job_id, job.execution_arn) == (
        JobStatus.QUEUED,
        f"exec-{key('j1')}",
        f"memory:execution:{key('j1')}",
    )
    assert job.message == "submitted to the local executor"
    assert ports.executor.submitted == [(PROMPT, key("j1"))]
    # Route sends a ComfyUI job to the Follow task (its websocket); max_polls: the loop's own
    # limit, the fallback-schedule polls whose waits cover job timeout + 15 minutes.
    assert ports.state_machine.started == {
        key("j1"): {
            "job_id": key("j1"),
            "polls": 0,
            "follows": 0,
            "wait_seconds": 1,
            "executor": "comfyui",
            "max_polls": 306,
        }
    }
    (update,) = sent(ports)
    assert (update["type"], update["status"], update["executor"]) == ("job_update", "queued", "local")
    assert (update["job_id"], update["request"]) == ("j1", "run_job")
    assert ports.jobs.reads == 0


def test_a_bad_request_is_recorded_failed_and_explained(ports: MemoryPorts) -> None:
    run(ports, workflow_id="missing")
    job = ports.jobs.records[key("j1")]
    assert (job.status, job.error) == (JobStatus.FAILED, "workflow 'missing' not found")
    # One refusal, one message: the job_update that names the job, the request and the error.
    (update,) = sent(ports)
    assert (update["type"], update["status"], update["error"], update["job_id"], update["request"]) == (
        "job_update",
        "failed",
        job.error,
        "j1",
        "run_job",
    )
    assert update["workflow_id"] == "missing"
    assert ports.executor.submitted == []
    assert ports.state_machine.started == {}


def test_an_executor_refusal_fails_the_job_naming_the_executor(ports: MemoryPorts) -> None:
    ports.executor.submit_error = ExecutorRejected("node 1 (EmptyImage): width too small")
    run(ports, prompt=PROMPT)
    job = ports.jobs.records[key("j1")]
    assert job.status is JobStatus.FAILED
    assert job.error == "local executor refused the job: node 1 (EmptyImage): width too small"
    assert ports.state_machine.started == {}


def test_an_unusable_secret_fails_the_job(ports: MemoryPorts) -> None:
    ports.executors.refuse = CredentialsError("secret comfyroute/users/alice is not a JSON object")
    run(ports, prompt=PROMPT)
    assert "not a JSON object" in (ports.jobs.records[key("j1")].error or "")


def test_a_cancel_that_lands_while_the_executor_accepts_the_job_stops_the_executors_copy(ports: MemoryPorts) -> None:
    ports.executor.on_submit = lambda job_id: lifecycle.cancel(ports.jobs, job_id)
    run(ports, prompt=PROMPT)
    assert ports.jobs.records[key("j1")].status is JobStatus.CANCELLED
    assert ports.executor.cancelled == [f"exec-{key('j1')}"]
    assert ports.state_machine.started == {}
    assert sent(ports, "job_update")[-1]["status"] == "cancelled"


def test_a_loop_that_cannot_start_fails_the_job_and_stops_the_executor(ports: MemoryPorts) -> None:
    ports.state_machine.refuse_with = "StateMachineDoesNotExist"
    run(ports, prompt=PROMPT)
    job = ports.jobs.records[key("j1")]
    assert (job.status, job.error) == (
        JobStatus.FAILED,
        "could not start the job's poll loop (StateMachineDoesNotExist)",
    )
    assert ports.executor.cancelled == [f"exec-{key('j1')}"]


def test_an_unexpected_error_fails_the_stranded_job_and_answers_with_it(ports: MemoryPorts) -> None:
    ports.executors.refuse = RuntimeError("bug")
    run(ports, prompt=PROMPT)
    job = ports.jobs.records[key("j1")]
    assert job.status is JobStatus.FAILED
    assert "internal error" in (job.error or "")
    (update,) = sent(ports)
    assert (update["type"], update["status"], update["job_id"], update["request"]) == (
        "job_update",
        "failed",
        "j1",
        "run_job",
    )
    assert "bug" not in update["error"]


# --------------------------------------------------------------------------- starting once


def test_the_same_job_id_twice_starts_one_job_and_reports_it_as_it_is_now(ports: MemoryPorts) -> None:
    run(ports, prompt=PROMPT)
    lifecycle.observed(ports.jobs, ports.jobs.records[key("j1")], ExecutorStatus(state=JobStatus.RUNNING))
    run(ports, prompt=PROMPT)
    assert len(ports.executor.submitted) == 1
    assert [m["status"] for m in sent(ports, "job_update")] == ["queued", "running"]
    assert ports.jobs.reads == 1  # the replay's stored answer is old: one look at the job


def test_a_resend_from_a_new_connection_moves_the_jobs_pushes_there(ports: MemoryPorts) -> None:
    run(ports, prompt=PROMPT)
    ports.connections.put("conn-2", "alice")
    run(ports, Caller("alice", "conn-2"), prompt=PROMPT)
    assert ports.jobs.records[key("j1")].connection_id == "conn-2"
    assert sent(ports, "job_update", "conn-2")[0]["status"] == "queued"


def test_another_users_job_id_is_neither_revealed_nor_blocked(ports: MemoryPorts) -> None:
    run(ports, prompt=PROMPT)
    ports.connections.put("bob-conn", "bob")
    bob = Caller("bob", "bob-conn")
    run(ports, bob, prompt=PROMPT)
    (update,) = sent(ports, connection_id="bob-conn")
    assert (update["type"], update["status"], update["job_id"]) == ("job_update", "queued", "j1")
    assert ports.jobs.records[key("j1")].user_id == "alice"
    assert ports.jobs.records[key("j1", "bob")].user_id == "bob"
    assert len(ports.executor.submitted) == 2
    assert key("j1") != key("j1", "bob")


def test_the_same_job_id_with_a_different_request_is_refused_naming_it(ports: MemoryPorts) -> None:
    run(ports, prompt=PROMPT)
    other = {**PROMPT, "1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 8}}}
    run(ports, prompt=other)
    _first, second = sent(ports)
    assert (second["type"], second["status"], second["job_id"], second["request"]) == (
        "job_update",
        "failed",
        "j1",
        "run_job",
    )
    assert "different request" in second["error"]
    assert len(ports.executor.submitted) == 1
    assert ports.jobs.records[key("j1")].status is JobStatus.QUEUED  # the first job is untouched


def test_a_start_under_way_on_another_connection_subscribes_this_one(ports: MemoryPorts) -> None:
    ports.connections.put("conn-2", "alice")
    second = Caller("alice", "conn-2")

    def resend_meanwhile(_job_id: str) -> None:
        run(ports, second, prompt=PROMPT)

    ports.executor.on_submit = resend_meanwhile
    run(ports, prompt=PROMPT)
    (joined,) = sent(ports, connection_id="conn-2")
    assert (joined["type"], joined["status"], joined["job_id"], joined["request"]) == (
        "job_update",
        "queued",
        "j1",
        "run_job",
    )
    assert ports.jobs.records[key("j1")].connection_id == "conn-2"
    assert len(ports.executor.submitted) == 1


def test_a_start_under_way_with_no_record_yet_says_so_once(ports: MemoryPorts, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("comfyroute.jobs.submit.JOIN_PAUSE_SECONDS", 0)
    ports.start_once.in_progress.add(("alice", "j1"))
    run(ports, prompt=PROMPT)
    (error,) = sent(ports)
    assert (error["code"], error["job_id"], error["request"]) == ("in_progress", "j1", "run_job")
    assert key("j1") not in ports.jobs.records


def _stranded(ports: MemoryPorts, **fields: Any) -> None:
    """A record as a start that died half-way leaves it: queued, no loop."""
    now = time.time()
    ports.jobs.records[key("j1")] = JobRecord.model_validate(
        {
            "job_id": key("j1"),
            "client_job_id": "j1",
            "user_id": "alice",
            "connection_id": CONN,
            "executor": "local",
            "created_at": now,
            "updated_at": now,
            "deadline": now + 60,
            **fields,
        }
    )


def test_a_resend_of_a_start_that_died_after_the_executor_took_the_job_starts_its_loop(ports: MemoryPorts) -> None:
    _stranded(ports, executor_job_id="exec-j1")
    run(ports, prompt=PROMPT)
    job = ports.jobs.records[key("j1")]
    assert (job.status, job.execution_arn) == (JobStatus.QUEUED, f"memory:execution:{key('j1')}")
    assert ports.executor.submitted == []


def test_a_resend_of_a_start_that_died_before_the_executor_fails_the_job(ports: MemoryPorts) -> None:
    _stranded(ports)
    run(ports, prompt=PROMPT)
    job = ports.jobs.records[key("j1")]
    assert job.status is JobStatus.FAILED
    assert "interrupted" in (job.error or "")
    assert sent(ports, "job_update")[-1]["status"] == "failed"


def test_a_get_job_from_a_new_connection_during_the_start_keeps_the_job_there(ports: MemoryPorts) -> None:
    # The client reconnected while its run_job was still submitting and asked for the job from
    # the new connection: the late answer of the first run_job must not take the job back.
    ports.executor.on_submit = lambda job_id: lifecycle.attach(ports.jobs, job_id, "conn-2")
    run(ports, prompt=PROMPT)
    assert ports.jobs.records[key("j1")].connection_id == "conn-2"


def test_the_loop_gets_no_max_polls_when_the_schedule_does_not_wait(ports: MemoryPorts) -> None:
    ports.config = ports.config._replace(poll_interval_start_seconds=0)
    run(ports, prompt=PROMPT)
    assert "max_polls" not in ports.state_machine.started[key("j1")]
