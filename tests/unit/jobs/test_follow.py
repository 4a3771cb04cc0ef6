"""The poll task's rules: one look at the executor, what it records and what it answers."""

from __future__ import annotations

import time

import pytest
from support.memory import MemoryPorts, key, stored_job

from comfyroute.executors.base import ExecutorRejected, ExecutorStatus, ExecutorUnavailable, OutputFile, Progress
from comfyroute.jobs.follow import poll_job
from comfyroute.jobs.record import JobNotFound
from comfyroute.jobs.schedule import NO_OUTPUTS_MESSAGE
from comfyroute.protocol import JobStatus


def png(name: str = "out.png", node: str = "2") -> OutputFile:
    return OutputFile(
        node_id=node, output_name="images", kind="image", filename=name, content_type="image/png", data=b"\x89PNG"
    )


def test_a_job_without_a_record_raises_job_not_found(ports: MemoryPorts) -> None:
    with pytest.raises(JobNotFound):
        poll_job(ports, key("nope"), 0)


def test_a_finished_job_ends_the_loop_without_asking_the_executor(ports: MemoryPorts) -> None:
    stored_job(ports, status=JobStatus.CANCELLED)
    result = poll_job(ports, key("j1"), 3)
    assert (result.done, result.status, result.notify, result.polls) == (True, JobStatus.CANCELLED, False, 4)
    assert ports.executors.built == []


def test_a_job_whose_submit_never_recorded_an_executor_id_fails(ports: MemoryPorts) -> None:
    stored_job(ports, executor_job_id=None)
    result = poll_job(ports, key("j1"), 0)
    assert (result.done, result.status) == (True, JobStatus.FAILED)
    assert "no executor id" in (ports.jobs.records[key("j1")].error or "")


def test_past_its_deadline_a_job_is_cancelled_on_the_executor_and_timed_out(ports: MemoryPorts) -> None:
    stored_job(ports, deadline=time.time() - 1)
    result = poll_job(ports, key("j1"), 5)
    assert (result.done, result.status) == (True, JobStatus.TIMED_OUT)
    assert ports.executor.cancelled == ["exec-j1"]
    assert ports.executor.looks == 0


def test_a_change_is_recorded_and_asks_for_a_notify_an_unchanged_look_writes_nothing(ports: MemoryPorts) -> None:
    stored_job(ports)
    ports.executor.statuses = [ExecutorStatus(state=JobStatus.QUEUED, queue_position=2)]
    first = poll_job(ports, key("j1"), 0)
    assert (first.done, first.notify, first.status, first.wait_seconds) == (False, True, JobStatus.QUEUED, 1)
    assert ports.jobs.records[key("j1")].queue_position == 2
    writes = len(ports.jobs.changes)
    second = poll_job(ports, key("j1"), 1)
    assert (second.notify, second.wait_seconds) == (False, 2)
    assert len(ports.jobs.changes) == writes


def test_running_progress_is_recorded(ports: MemoryPorts) -> None:
    stored_job(ports)
    progress = Progress(node_id="2", value=4, max=20)
    ports.executor.statuses = [ExecutorStatus(state=JobStatus.RUNNING, progress=progress)]
    assert poll_job(ports, key("j1"), 0).notify
    job = ports.jobs.records[key("j1")]
    assert (job.status, job.progress) == (JobStatus.RUNNING, progress)
    assert job.started_at is not None


def test_a_completed_job_stores_its_outputs_named_after_their_nodes(ports: MemoryPorts) -> None:
    stored_job(ports, status=JobStatus.RUNNING, message="submitted to the local executor")
    ports.executor.statuses = [ExecutorStatus(state=JobStatus.COMPLETED)]
    ports.executor.files = [png("a.png"), png("b.png", node="9")]
    result = poll_job(ports, key("j1"), 2)
    assert (result.done, result.status, result.notify) == (True, JobStatus.COMPLETED, False)
    job = ports.jobs.records[key("j1")]
    assert [(o.node_name, o.key) for o in job.outputs] == [
        ("SaveImage", f"jobs/{key('j1')}/000-a.png"),
        ("9", f"jobs/{key('j1')}/001-b.png"),
    ]
    assert all(o.data is None for o in job.outputs)
    assert job.message is None  # "submitted to ..." described the queued job


def test_a_completed_job_without_files_says_why(ports: MemoryPorts) -> None:
    stored_job(ports)
    ports.executor.statuses = [ExecutorStatus(state=JobStatus.COMPLETED)]
    poll_job(ports, key("j1"), 0)
    job = ports.jobs.records[key("j1")]
    assert (job.status, job.outputs, job.message) == (JobStatus.COMPLETED, [], NO_OUTPUTS_MESSAGE)


def test_outputs_that_cannot_be_fetched_fail_the_job(ports: MemoryPorts) -> None:
    stored_job(ports)
    ports.executor.statuses = [ExecutorStatus(state=JobStatus.COMPLETED)]
    ports.executor.files = ExecutorRejected("output file 'a.png' is over the limit")
    assert poll_job(ports, key("j1"), 0).status is JobStatus.FAILED
    assert "could not be fetched: output file 'a.png' is over the limit" in (ports.jobs.records[key("j1")].error or "")


def test_an_unreachable_executor_while_fetching_outputs_is_recorded_and_told_once(ports: MemoryPorts) -> None:
    stored_job(ports)
    ports.executor.statuses = [ExecutorStatus(state=JobStatus.COMPLETED)]
    ports.executor.files = ExecutorUnavailable("tunnel down")
    first = poll_job(ports, key("j1"), 0)
    job = ports.jobs.records[key("j1")]
    assert (first.done, first.notify, first.wait_seconds) == (False, True, 5)
    assert job.status is JobStatus.QUEUED
    assert job.unreachable_since is not None
    assert job.message == "the local executor cannot be reached; retrying"
    second = poll_job(ports, key("j1"), 1)
    assert (second.done, second.notify) == (False, False)  # told once


def test_an_unreachable_executor_fails_the_job_at_the_deadline(ports: MemoryPorts) -> None:
    stored_job(ports, unreachable_since=time.time() - 121)
    ports.executor.statuses = [ExecutorStatus(state=JobStatus.RUNNING)]
    ports.executor.files = ExecutorUnavailable("tunnel down")

    def down(executor_job_id: str, *, submitted_at: float | None = None) -> ExecutorStatus:
        raise ExecutorUnavailable("tunnel down")

    ports.executor.status = down  # type: ignore[method-assign]
    result = poll_job(ports, key("j1"), 4)
    job = ports.jobs.records[key("j1")]
    assert (result.done, result.status) == (True, JobStatus.FAILED)
    assert "could not be reached for 121 s (the limit is 120 s)" in (job.error or "")


def test_a_reachable_executor_again_clears_the_mark_and_sends_comfyui_back_to_its_socket(ports: MemoryPorts) -> None:
    stored_job(ports, status=JobStatus.RUNNING, unreachable_since=time.time() - 10, message="x cannot be reached")
    ports.executor.statuses = [ExecutorStatus(state=JobStatus.RUNNING)]
    result = poll_job(ports, key("j1"), 2)
    job = ports.jobs.records[key("j1")]
    assert (result.done, result.notify, result.next) == (False, True, "follow")
    assert job.unreachable_since is None
    assert job.message is None


def test_a_comfyui_job_polled_because_its_socket_failed_stays_polled(ports: MemoryPorts) -> None:
    stored_job(ports, status=JobStatus.RUNNING, follow_by="poll")
    ports.executor.statuses = [ExecutorStatus(state=JobStatus.RUNNING)]
    result = poll_job(ports, key("j1"), 2)
    assert (result.next, result.wait_seconds) == (None, 3)  # the fallback schedule: 1, 2, 3, 4, 6 ...


def test_the_executors_failure_is_recorded_with_its_error(ports: MemoryPorts) -> None:
    stored_job(ports)
    ports.executor.statuses = [ExecutorStatus(state=JobStatus.FAILED, error="node 2 (SaveImage) failed")]
    assert poll_job(ports, key("j1"), 0).status is JobStatus.FAILED
    assert ports.jobs.records[key("j1")].error == "node 2 (SaveImage) failed"


def test_a_job_cancelled_while_the_poll_looked_ends_the_loop_as_cancelled(ports: MemoryPorts) -> None:
    stored_job(ports)

    def cancelled_meanwhile(executor_job_id: str, *, submitted_at: float | None = None) -> ExecutorStatus:
        ports.jobs.records[key("j1")] = ports.jobs.records[key("j1")].model_copy(update={"status": JobStatus.CANCELLED})
        return ExecutorStatus(state=JobStatus.RUNNING)

    ports.executor.status = cancelled_meanwhile  # type: ignore[method-assign]
    result = poll_job(ports, key("j1"), 0)
    assert (result.done, result.status, result.notify) == (True, JobStatus.CANCELLED, False)
    assert ports.jobs.records[key("j1")].status is JobStatus.CANCELLED


def test_a_finish_refused_by_a_cancel_reports_the_cancel(ports: MemoryPorts) -> None:
    stored_job(ports)

    def completed_but_cancelled(executor_job_id: str, *, submitted_at: float | None = None) -> ExecutorStatus:
        ports.jobs.records[key("j1")] = ports.jobs.records[key("j1")].model_copy(update={"status": JobStatus.CANCELLED})
        return ExecutorStatus(state=JobStatus.COMPLETED)

    ports.executor.status = completed_but_cancelled  # type: ignore[method-assign]
    assert poll_job(ports, key("j1"), 0).status is JobStatus.CANCELLED
    assert ports.jobs.reads == 1
