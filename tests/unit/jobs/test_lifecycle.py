"""Every status transition: what it writes, and the condition that refuses it."""

from __future__ import annotations

import pytest
from support.memory import MemoryPorts, key
from support.memory import stored_job as a_job

from comfyroute.defaults import MAX_TEXT_CHARS
from comfyroute.executors.base import ExecutorStatus, OutputFile, Progress
from comfyroute.jobs import lifecycle
from comfyroute.jobs.record import ACTIVE, JobChange, JobNotFound
from comfyroute.protocol import ExecutorKind, JobStatus

TERMINAL = [s for s in JobStatus if s.terminal]


def test_create_stores_a_new_job_and_answers_the_existing_one_for_a_taken_id(ports: MemoryPorts) -> None:
    first = a_job(ports)
    ports.jobs.records.clear()
    assert lifecycle.create(ports.jobs, first).applied
    again = lifecycle.create(ports.jobs, first.model_copy(update={"user_id": "bob"}))
    assert not again.applied
    assert again.job.user_id == "alice"


def test_submitted_records_the_executor_id_only_while_active(ports: MemoryPorts) -> None:
    a_job(ports, executor_job_id=None, execution_arn=None)
    out = lifecycle.submitted(ports.jobs, key("j1"), ExecutorKind.RUNPOD, "rp-1")
    assert out.applied
    assert (out.job.executor_job_id, out.job.message) == ("rp-1", "submitted to the runpod executor")
    a_job(ports, "j2", status=JobStatus.CANCELLED, executor_job_id=None)
    refused = lifecycle.submitted(ports.jobs, key("j2"), ExecutorKind.LOCAL, "x")
    assert not refused.applied
    assert refused.job.status is JobStatus.CANCELLED
    assert refused.job.executor_job_id is None


def test_loop_started_is_recorded_whatever_the_status(ports: MemoryPorts) -> None:
    a_job(ports, status=JobStatus.CANCELLED, execution_arn=None)
    out = lifecycle.loop_started(ports.jobs, key("j1"), "arn:exec")
    assert out.applied
    assert out.job.execution_arn == "arn:exec"


def test_attach_moves_an_active_job_to_a_new_connection_but_not_a_finished_one(ports: MemoryPorts) -> None:
    a_job(ports)
    assert lifecycle.attach(ports.jobs, key("j1"), "conn-2").job.connection_id == "conn-2"
    a_job(ports, "j2", status=JobStatus.COMPLETED)
    refused = lifecycle.attach(ports.jobs, key("j2"), "conn-2")
    assert (refused.applied, refused.job.connection_id) == (False, "conn-1")


def test_observed_keeps_only_what_the_look_reports(ports: MemoryPorts) -> None:
    a_job(ports, queue_position=3, message="old")
    queued = lifecycle.observed(
        ports.jobs, ports.jobs.records[key("j1")], ExecutorStatus(state=JobStatus.QUEUED, queue_position=0)
    )
    assert queued.job.queue_position == 0
    assert queued.job.message == "waiting in the local executor's queue (position 1)"
    progress = Progress(node_id="2", value=3, max=10)
    running = lifecycle.observed(ports.jobs, queued.job, ExecutorStatus(state=JobStatus.RUNNING, progress=progress))
    assert running.job.status is JobStatus.RUNNING
    assert running.job.progress == progress
    assert running.job.queue_position is None
    assert running.job.message is None
    started = running.job.started_at
    assert started is not None
    later = lifecycle.observed(ports.jobs, running.job, ExecutorStatus(state=JobStatus.RUNNING))
    assert later.job.started_at == started
    assert later.job.progress is None


def test_observed_refuses_a_finished_job_and_a_terminal_state(ports: MemoryPorts) -> None:
    job = a_job(ports, status=JobStatus.CANCELLED)
    out = lifecycle.observed(ports.jobs, job, ExecutorStatus(state=JobStatus.RUNNING))
    assert (out.applied, out.job.status) == (False, JobStatus.CANCELLED)
    with pytest.raises(ValueError, match="finish"):
        lifecycle.observed(ports.jobs, job, ExecutorStatus(state=JobStatus.COMPLETED))


def test_finish_clears_what_describes_an_active_job_and_stores_outputs_whole(ports: MemoryPorts) -> None:
    a_job(ports, status=JobStatus.RUNNING, progress=Progress(value=1, max=2), queue_position=1, message="submitted")
    files = [OutputFile(node_id="2", output_name="images", kind="image", filename="a.png", content_type="image/png")]
    out = lifecycle.finish(ports.jobs, key("j1"), JobStatus.COMPLETED, outputs=files, polls=4)
    job = out.job
    assert (job.status, job.progress, job.queue_position, job.message) == (JobStatus.COMPLETED, None, None, None)
    assert job.finished_at is not None
    assert job.outputs == files
    again = lifecycle.finish(ports.jobs, key("j1"), JobStatus.COMPLETED, outputs=files + files)
    assert not again.applied
    assert len(again.job.outputs) == 1


@pytest.mark.parametrize("status", TERMINAL)
def test_no_transition_reopens_a_finished_job(ports: MemoryPorts, status: JobStatus) -> None:
    a_job(ports, status=status)
    for out in (
        lifecycle.cancel(ports.jobs, key("j1")),
        lifecycle.fail(ports.jobs, key("j1"), "late"),
        lifecycle.time_out(ports.jobs, key("j1"), 60),
        lifecycle.finish(ports.jobs, key("j1"), JobStatus.COMPLETED),
    ):
        assert not out.applied
        assert out.job.status is status


def test_fail_clips_long_errors_and_time_out_names_the_limit(ports: MemoryPorts) -> None:
    a_job(ports)
    failed = lifecycle.fail(ports.jobs, key("j1"), "x" * 10_000)
    assert len(failed.job.error or "") == MAX_TEXT_CHARS
    a_job(ports, "j2")
    timed_out = lifecycle.time_out(ports.jobs, key("j2"), 90)
    assert timed_out.job.status is JobStatus.TIMED_OUT
    assert "90 s limit" in (timed_out.job.error or "")


def test_cancel_says_who_cancelled(ports: MemoryPorts) -> None:
    a_job(ports, message="submitted to the local executor")
    out = lifecycle.cancel(ports.jobs, key("j1"))
    assert (out.job.status, out.job.message) == (JobStatus.CANCELLED, "cancelled by the user")


def test_fail_stranded_only_fails_an_active_job_without_a_loop(ports: MemoryPorts) -> None:
    a_job(ports)  # has a loop
    assert not lifecycle.fail_stranded(ports.jobs, key("j1"), "interrupted").applied
    a_job(ports, "j2", execution_arn=None)
    out = lifecycle.fail_stranded(ports.jobs, key("j2"), "interrupted")
    assert (out.applied, out.job.status, out.job.error) == (True, JobStatus.FAILED, "interrupted")
    a_job(ports, "j3", execution_arn=None, status=JobStatus.CANCELLED)
    assert not lifecycle.fail_stranded(ports.jobs, key("j3"), "interrupted").applied


def test_a_change_to_a_missing_job_raises_job_not_found(ports: MemoryPorts) -> None:
    with pytest.raises(JobNotFound):
        lifecycle.cancel(ports.jobs, key("nope"))


def test_job_change_refuses_unknown_fields_and_contradictions() -> None:
    with pytest.raises(ValueError, match="not JobRecord fields"):
        JobChange("j1", {"colour": "red"})
    with pytest.raises(ValueError, match="both set and removed"):
        JobChange("j1", {"message": "x"}, remove={"message"})
    assert JobChange("j1", {}, only_in=ACTIVE).only_in == ACTIVE


def test_finish_and_observed_refuse_the_wrong_kind_of_state(ports: MemoryPorts) -> None:
    a_job(ports)
    with pytest.raises(ValueError, match="terminal"):
        lifecycle.finish(ports.jobs, key("j1"), JobStatus.RUNNING)
