"""The follow loop's pure decisions: wait schedule, change detection, failure text, messages."""

import json

import pytest

from comfyroute import messages
from comfyroute.defaults import MAX_TEXT_CHARS
from comfyroute.executors.base import ExecutorStatus, Progress
from comfyroute.jobs import schedule
from comfyroute.jobs.record import JobRecord
from comfyroute.protocol import ExecutorKind, JobStatus


def _job(**kw) -> JobRecord:
    base = dict(
        job_id="j1",
        user_id="u",
        executor=ExecutorKind.LOCAL,
        created_at=100.0,
        updated_at=100.0,
        deadline=200.0,
    )
    base.update(kw)
    return JobRecord(**base)


def test_changed_on_state_queue_position_and_progress():
    job = _job(status=JobStatus.QUEUED, queue_position=2)
    assert not schedule.changed(job, ExecutorStatus(state=JobStatus.QUEUED, queue_position=2))
    assert schedule.changed(job, ExecutorStatus(state=JobStatus.QUEUED, queue_position=1))
    assert schedule.changed(job, ExecutorStatus(state=JobStatus.RUNNING))
    running = _job(status=JobStatus.RUNNING, progress=Progress(node_id="3", value=2, max=10))
    same = ExecutorStatus(state=JobStatus.RUNNING, progress=Progress(node_id="3", value=2, max=10))
    more = ExecutorStatus(state=JobStatus.RUNNING, progress=Progress(node_id="3", value=3, max=10))
    assert not schedule.changed(running, same)
    assert schedule.changed(running, more)


def test_describe_failure_reads_lambda_error_cause():
    cause = json.dumps({"errorType": "ExecutorUnavailable", "errorMessage": "ComfyUI unreachable", "stackTrace": []})
    text = schedule.describe_failure({"Error": "ExecutorUnavailable", "Cause": cause})
    assert text == "ExecutorUnavailable: ComfyUI unreachable"
    assert "stackTrace" not in text


def test_describe_failure_plain_cause_timeout_and_missing():
    assert schedule.describe_failure({"Error": "States.TaskFailed", "Cause": "boom"}) == "States.TaskFailed: boom"
    assert "timed out" in schedule.describe_failure({"Error": "States.Timeout", "Cause": ""})
    assert schedule.describe_failure(None) == "the job's poll loop failed"


def test_describe_failure_truncates_long_text():
    text = schedule.describe_failure({"Error": "E", "Cause": "x" * 10_000})
    assert len(text) == MAX_TEXT_CHARS
    assert text.endswith("…")


def test_job_update_and_progress_messages():
    job = _job(status=JobStatus.RUNNING, workflow_id="wf", progress=Progress(node_id="7", value=3, max=20))
    update = messages.job_update(job)
    assert (update.job_id, update.workflow_id, update.status, update.executor) == (
        "j1",
        "wf",
        JobStatus.RUNNING,
        ExecutorKind.LOCAL,
    )
    progress = messages.node_progress(job)
    assert progress is not None
    assert (progress.node_id, progress.progress, progress.total) == ("7", 3, 20)
    assert messages.node_progress(_job()) is None


def test_duration_of_finished_job_is_fixed():
    job = _job(status=JobStatus.COMPLETED, finished_at=112.5)
    assert job.duration == 12.5


def test_status_message_prefers_the_executors_then_the_queue_position():
    queued = ExecutorStatus(state=JobStatus.QUEUED, queue_position=0)
    assert schedule.status_message(queued, ExecutorKind.LOCAL) == "waiting in the local executor's queue (position 1)"
    said = ExecutorStatus(state=JobStatus.RUNNING, message="worker warming up")
    assert schedule.status_message(said, ExecutorKind.RUNPOD) == "worker warming up"
    assert schedule.status_message(ExecutorStatus(state=JobStatus.RUNNING), ExecutorKind.LOCAL) is None


def _waited_before(polls: int, start: int, cap: int) -> int:
    """Seconds the loop has waited when Poll answers with ``polls``: the input's first wait,
    then the wait Poll answered after each earlier poll (poll_job's ``fallback_wait(polls)``
    for the ``polls`` it was given, i.e. one less than it answers)."""
    return start + sum(schedule.fallback_wait(i, cap, start) for i in range(polls - 1))


@pytest.mark.parametrize(
    ("seconds", "start", "cap"), [(4500, 1, 15), (1200, 1, 300), (87300, 1, 1), (10, 5, 5), (1, 1, 15), (4500, 7, 60)]
)
def test_poll_budget_never_runs_out_before_the_execution_timeout(seconds, start, cap):
    budget = schedule.poll_budget(seconds, start, cap)
    assert budget is not None
    # At the budget the waits alone cover the timeout; one poll earlier they did not.
    assert _waited_before(budget, start, cap) >= seconds
    assert budget == 1 or _waited_before(budget - 1, start, cap) < seconds


def test_poll_budget_counts_the_gentler_fallback_schedule():
    # Input 1 s, then 1, 2, 3, 4, 6, 8, 12 s (37 s waited at 8 polls), then 15 s each: 75 min is
    # 8 + ceil((4500 - 37) / 15) = 306 polls. Counted with the old doubling up to 30 s it
    # would be ~155, which the fallback loop spends in ~40 min: the job would fail early.
    assert schedule.poll_budget(4500, 1, 15) == 8 + -(-(4500 - 37) // 15) == 306
    assert _waited_before(155, 1, 15) < 4500


def test_no_poll_budget_without_waits():
    assert schedule.poll_budget(4500, 0, 30) is None
    assert schedule.poll_budget(4500, 1, 0) is None


def test_the_fallback_schedule_grows_gently_up_to_its_cap() -> None:
    from comfyroute.jobs.schedule import fallback_wait

    assert [fallback_wait(n, 15) for n in range(10)] == [1, 2, 3, 4, 6, 8, 12, 15, 15, 15]
    assert fallback_wait(10_000, 15) == 15  # no overflow for a week-long job
    assert [fallback_wait(n, 4) for n in range(5)] == [1, 2, 3, 4, 4]


def test_an_unreachable_executor_is_looked_at_after_5_10_20_then_30_seconds() -> None:
    from comfyroute.jobs.schedule import unreachable_wait

    assert [unreachable_wait(t) for t in (0, 4.9, 5, 14.9, 15, 34.9, 35, 500)] == [5, 5, 10, 10, 20, 20, 30, 30]
