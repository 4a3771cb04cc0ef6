"""The real statemachine/job.asl.json, run by moto's ASL interpreter, with small Python callables
standing in for the poll and notify Lambdas. These pin the loop's behaviour: which task runs
when, with what payload, what is retried and how a failure ends."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from support.sfn_harness import SFN_MOCK_CONFIG, StateMachineHarness, function_arn

from comfyroute.aws.push import Throttled

# The library's own exceptions: the ASL matches on their class names.
from comfyroute.executors.base import ExecutorUnavailable

POLL = "PollFunctionArn"
NOTIFY = "NotifyFunctionArn"
START = {"job_id": "job-1", "polls": 0, "wait_seconds": 0}


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws(config=SFN_MOCK_CONFIG):
        yield


def scripted_poll(answers: list[dict[str, Any] | Exception]) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """A poll handler answering from a script: a dict is merged into the usual answer, an
    exception is raised. Like the real poll it echoes job_id and counts polls."""
    remaining = list(answers)

    def poll(event: dict[str, Any], _context: Any) -> dict[str, Any]:
        step = remaining.pop(0)
        if isinstance(step, Exception):
            raise step
        answer = {
            "job_id": event["job_id"],
            "polls": event["polls"] + 1,
            "done": False,
            "status": "running",
            "wait_seconds": 1,
            "notify": False,
        }
        answer.update(step)
        return answer

    return poll


def ok_notify(event: dict[str, Any], _context: Any) -> dict[str, Any]:
    return {"sent": 1}


def failed_events(sfn: StateMachineHarness, arn: str) -> list[str]:
    return [e["taskFailedEventDetails"]["error"] for e in sfn.history(arn) if e["type"] == "TaskFailed"]


def test_done_on_first_poll_notifies_final_and_succeeds(aws: None) -> None:
    poll = scripted_poll([{"done": True, "status": "completed"}])
    with StateMachineHarness(tasks={POLL: poll, NOTIFY: ok_notify}) as sfn:
        arn = sfn.start(START)
        desc = sfn.wait(arn)

        assert desc["status"] == "SUCCEEDED"
        assert sfn.sequence() == [POLL, NOTIFY]
        assert sfn.invocations(POLL) == [{"job_id": "job-1", "polls": 0}]
        assert sfn.invocations(NOTIFY) == [{"job_id": "job-1", "final": True}]
        # START carries no executor: Route sends it to the poll loop.
        assert sfn.states_entered(arn) == ["Route", "Wait", "Poll", "Next", "NotifyFinal", "Succeeded"]
        assert sfn.waits == [0]
        # NotifyFinal's own result is discarded: the output is Poll's answer.
        assert json.loads(desc["output"])["status"] == "completed"


def test_running_job_loops_notifying_only_when_poll_says_so(aws: None) -> None:
    poll = scripted_poll(
        [
            {"notify": True, "wait_seconds": 1},  # first look: running -> progress message
            {"notify": False, "wait_seconds": 2},  # nothing changed -> straight back to Wait
            {"notify": True, "wait_seconds": 4},
            {"done": True, "status": "completed", "wait_seconds": 8},
        ]
    )
    with StateMachineHarness(tasks={POLL: poll, NOTIFY: ok_notify}) as sfn:
        arn = sfn.start(START)
        assert sfn.wait(arn)["status"] == "SUCCEEDED"

        assert sfn.sequence() == [POLL, NOTIFY, POLL, POLL, NOTIFY, POLL, NOTIFY]
        # The polls counter travels through the state: each Poll sees the previous answer's.
        assert [p["polls"] for p in sfn.invocations(POLL)] == [0, 1, 2, 3]
        assert [n["final"] for n in sfn.invocations(NOTIFY)] == [False, False, True]
        assert all(n["job_id"] == "job-1" and "failure" not in n for n in sfn.invocations(NOTIFY))
        # Wait takes the interval Poll answered (SecondsPath), starting from the input's 0.
        assert sfn.waits == [0, 1, 2, 4]


def test_poll_answer_without_notify_or_done_goes_back_to_wait(aws: None) -> None:
    # A Choice on a missing field would fail the execution outside any Catch; IsPresent guards it.
    answers = [
        {"job_id": "job-1", "polls": 1, "wait_seconds": 0},
        {"job_id": "job-1", "polls": 2, "wait_seconds": 0, "done": True, "notify": False},
    ]

    def poll(event: dict[str, Any], _context: Any) -> dict[str, Any]:
        return answers.pop(0)

    with StateMachineHarness(tasks={POLL: poll, NOTIFY: ok_notify}) as sfn:
        arn = sfn.start(START)
        assert sfn.wait(arn)["status"] == "SUCCEEDED"
        assert sfn.sequence() == [POLL, POLL, NOTIFY]


def test_executor_unavailable_is_not_retried_by_the_state_machine(aws: None) -> None:
    # Poll reports an unreachable executor itself (the client is told, the loop waits); an
    # ExecutorUnavailable that escapes it is a bug: caught, the job marked failed, no Retry.
    poll = scripted_poll([ExecutorUnavailable("tunnel down"), {"done": True}])
    with StateMachineHarness(tasks={POLL: poll, NOTIFY: ok_notify}) as sfn:
        arn = sfn.start(START)
        desc = sfn.wait(arn)
        assert desc["status"] == "FAILED"
        assert sfn.sequence() == [f"{POLL}!ExecutorUnavailable", NOTIFY]
        assert sfn.retry_sleeps == []


def test_aws_sdk_error_in_poll_is_retried_but_a_bug_is_not(aws: None) -> None:
    slow_down = ClientError({"Error": {"Code": "SlowDown", "Message": "reduce your request rate"}}, "PutObject")
    poll = scripted_poll([slow_down, {"done": True}])
    with StateMachineHarness(tasks={POLL: poll, NOTIFY: ok_notify}) as sfn:
        arn = sfn.start(START)
        assert sfn.wait(arn)["status"] == "SUCCEEDED"
        assert sfn.sequence() == [f"{POLL}!ClientError", POLL, NOTIFY]
        assert len(sfn.retry_sleeps) == 1
        assert 0 <= sfn.retry_sleeps[0] <= 2


def test_uncaught_poll_error_runs_mark_failed_then_fails(aws: None) -> None:
    poll = scripted_poll([{"notify": True}, ValueError("history entry has no outputs")])
    with StateMachineHarness(tasks={POLL: poll, NOTIFY: ok_notify}) as sfn:
        arn = sfn.start(START)
        desc = sfn.wait(arn)

        assert desc["status"] == "FAILED"
        # The Fail state reports the task's error, not a generic States.* one.
        assert desc["error"] == "ValueError"
        assert "history entry has no outputs" in desc["cause"]
        # Not retried: ValueError is in no Retry list.
        assert sfn.sequence() == [POLL, NOTIFY, f"{POLL}!ValueError", NOTIFY]
        progress, marked = sfn.invocations(NOTIFY)
        assert progress == {"job_id": "job-1", "final": False}
        assert set(marked) == {"job_id", "final", "failure"}
        assert marked["job_id"] == "job-1"
        assert marked["final"] is True
        assert marked["failure"]["Error"] == "ValueError"
        cause = json.loads(marked["failure"]["Cause"])
        assert cause["errorType"] == "ValueError"
        assert cause["errorMessage"] == "history entry has no outputs"
        assert sfn.states_entered(arn)[-2:] == ["MarkFailed", "Failed"]


def test_a_loop_that_never_ends_stops_at_max_polls_and_marks_the_job_failed(aws: None) -> None:
    # A Poll that never says done (a bug in its deadline handling, say): the execution input's
    # max_polls ends it, through MarkFailed, so the job is recorded failed and the client told.
    def endless(event: dict[str, Any], _context: Any) -> dict[str, Any]:
        return {"job_id": event["job_id"], "polls": event["polls"] + 1, "done": False, "wait_seconds": 1}

    with StateMachineHarness(tasks={POLL: endless, NOTIFY: ok_notify}) as sfn:
        arn = sfn.start({**START, "max_polls": 3})
        desc = sfn.wait(arn)

        assert desc["status"] == "FAILED"
        assert desc["error"] == "ExecutionTimedOut"
        assert sfn.sequence() == [POLL, POLL, POLL, NOTIFY]
        (marked,) = sfn.invocations(NOTIFY)
        assert marked["final"] is True
        assert marked["failure"]["Error"] == "ExecutionTimedOut"
        assert sfn.states_entered(arn)[-3:] == ["PollBudgetSpent", "MarkFailed", "Failed"]


def test_poll_answers_keep_the_inputs_other_fields(aws: None) -> None:
    # Poll answers without max_polls, yet every loop still sees it (JsonMerge over the input);
    # Poll's own fields win over the input's.
    poll = scripted_poll([{"notify": False}, {"notify": False}, {"done": True, "status": "completed"}])
    with StateMachineHarness(tasks={POLL: poll, NOTIFY: ok_notify}) as sfn:
        arn = sfn.start({**START, "max_polls": 10, "wait_seconds": 5})
        desc = sfn.wait(arn)
        assert desc["status"] == "SUCCEEDED"
        output = json.loads(desc["output"])
        assert output["max_polls"] == 10
        assert output["polls"] == 3
        assert output["status"] == "completed"
        # The first wait is the input's; later ones are Poll's answers.
        assert sfn.waits == [5, 1, 1]


def test_done_on_the_last_allowed_poll_still_completes(aws: None) -> None:
    poll = scripted_poll([{"notify": False}, {"done": True, "status": "completed"}])
    with StateMachineHarness(tasks={POLL: poll, NOTIFY: ok_notify}) as sfn:
        arn = sfn.start({**START, "max_polls": 2})
        assert sfn.wait(arn)["status"] == "SUCCEEDED"
        assert sfn.invocations(NOTIFY) == [{"job_id": "job-1", "final": True}]


def test_a_non_numeric_max_polls_is_ignored_not_a_runtime_error(aws: None) -> None:
    poll = scripted_poll([{"notify": False}, {"done": True}])
    with StateMachineHarness(tasks={POLL: poll, NOTIFY: ok_notify}) as sfn:
        arn = sfn.start({**START, "max_polls": "1"})
        assert sfn.wait(arn)["status"] == "SUCCEEDED"


def test_throttled_notify_is_retried(aws: None) -> None:
    attempts: list[int] = []

    def notify(event: dict[str, Any], _context: Any) -> dict[str, Any]:
        attempts.append(1)
        if len(attempts) == 1:
            raise Throttled("management API rate exceeded")
        return {"sent": 1}

    poll = scripted_poll([{"done": True}])
    with StateMachineHarness(tasks={POLL: poll, NOTIFY: notify}) as sfn:
        arn = sfn.start(START)
        assert sfn.wait(arn)["status"] == "SUCCEEDED"
        assert sfn.sequence() == [POLL, f"{NOTIFY}!Throttled", NOTIFY]
        assert sfn.invocations(NOTIFY) == [{"job_id": "job-1", "final": True}] * 2


def test_failing_final_notify_is_caught_and_marks_failed(aws: None) -> None:
    calls: list[dict[str, Any]] = []

    def notify(event: dict[str, Any], _context: Any) -> dict[str, Any]:
        calls.append(event)
        if "failure" not in event:
            raise KeyError("job-1")
        return {"sent": 1}

    poll = scripted_poll([{"done": True}])
    with StateMachineHarness(tasks={POLL: poll, NOTIFY: notify}) as sfn:
        arn = sfn.start(START)
        desc = sfn.wait(arn)
        assert desc["status"] == "FAILED"
        assert desc["error"] == "KeyError"
        assert [("failure" in c) for c in calls] == [False, True]
        assert calls[1]["failure"]["Error"] == "KeyError"


def test_mark_failed_failing_still_ends_failed_with_the_original_error(aws: None) -> None:
    def notify(event: dict[str, Any], _context: Any) -> dict[str, Any]:
        raise RuntimeError("jobs table unavailable")

    poll = scripted_poll([ValueError("bad output")])
    with StateMachineHarness(tasks={POLL: poll, NOTIFY: notify}) as sfn:
        arn = sfn.start(START)
        desc = sfn.wait(arn)
        assert desc["status"] == "FAILED"
        assert desc["error"] == "ValueError"
        assert sfn.sequence() == [f"{POLL}!ValueError", f"{NOTIFY}!RuntimeError"]


def test_handler_receives_a_lambda_context(aws: None) -> None:
    seen: list[Any] = []

    def poll(event: dict[str, Any], context: Any) -> dict[str, Any]:
        seen.append(context)
        return {**event, "done": True, "wait_seconds": 0, "notify": False}

    with StateMachineHarness(tasks={POLL: poll, NOTIFY: ok_notify}) as sfn:
        sfn.wait(sfn.start(START))
    (context,) = seen
    assert context.invoked_function_arn == function_arn(POLL)
    assert context.function_name == "harness-poll"
    assert context.get_remaining_time_in_millis() > 0
    assert context.aws_request_id


def test_unregistered_task_fails_like_a_missing_function(aws: None) -> None:
    # Only poll is registered: notify's invoke reaches moto's Lambda backend, which has no such
    # function, so the task fails and the execution still ends (MarkFailed fails the same way).
    poll = scripted_poll([{"done": True}])
    with StateMachineHarness(tasks={POLL: poll}) as sfn:
        desc = sfn.wait(sfn.start(START))
        assert desc["status"] == "FAILED"
        assert desc["error"].startswith("Lambda.")
        assert sfn.sequence() == [POLL]


def test_harness_rejects_tasks_that_are_not_placeholders(aws: None) -> None:
    with pytest.raises(ValueError, match="CancelFunctionArn"):
        StateMachineHarness(tasks={"CancelFunctionArn": ok_notify})


def test_harness_requires_state_machine_execution_in_moto() -> None:
    with mock_aws(), pytest.raises(RuntimeError, match="execute_state_machine"):  # noqa: SIM117
        with StateMachineHarness(tasks={POLL: ok_notify}):
            pass
