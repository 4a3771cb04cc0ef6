"""Pure decisions of the follow loop: the wait schedule, change detection, status texts.

No I/O here, so the loop's decisions can be tested (and reasoned about) on their own.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from comfyroute.protocol import ExecutorKind, JobStatus
from comfyroute.text import clip

if TYPE_CHECKING:
    from comfyroute.executors.base import ExecutorStatus
    from comfyroute.jobs.record import JobRecord

NO_OUTPUTS_MESSAGE = (
    "completed without output files (outputs that stream over ComfyUI's websocket, "
    "such as SaveImageWebsocket, are not kept)"
)


def next_wait(polls: int, start: int, cap: int) -> int:
    """Seconds to wait before poll number ``polls + 1``: start, 2*start, 4*start, ... capped.

    Short jobs are seen finished within a second or two, long ones cost one poll per
    ``cap`` seconds instead of one every couple of seconds."""
    if start <= 0:
        return 0
    # Bound the exponent: 2**polls for a week-long job would be an absurdly large int.
    return int(min(cap, start * 2 ** min(polls, 30)))


def poll_budget(seconds: int, start: int, cap: int) -> int | None:
    """The ``polls`` count at which the state machine gives up on a job (its ``max_polls``):
    the first count whose waits alone (the execution input's ``start``, then :func:`next_wait`
    after each poll) add up to ``seconds``. Waiting is only part of a loop's time, so the
    budget never runs out before ``seconds`` have passed; it is a safety net behind Poll's own
    deadline. None when the schedule does not wait (``start`` or ``cap`` of 0): no count then
    stands for a time."""
    if start <= 0 or cap <= 0:
        return None
    polls, waited = 1, start
    while waited < seconds:
        waited += next_wait(polls - 1, start, cap)
        polls += 1
    return polls


def changed(job: JobRecord, status: ExecutorStatus) -> bool:
    """Whether a look at the executor tells the client anything new."""
    if status.state != job.status:
        return True
    if status.queue_position != job.queue_position:
        return True
    return status.progress != job.progress


def status_message(status: ExecutorStatus, executor: ExecutorKind) -> str | None:
    """What to tell the client about a job still on its executor."""
    if status.message:
        return status.message
    if status.state is JobStatus.QUEUED and status.queue_position is not None:
        # queue_position counts pending prompts before ours from 0: position 1 runs next.
        return f"waiting in the {executor.value} executor's queue (position {status.queue_position + 1})"
    return None


def describe_failure(failure: Mapping[str, Any] | None) -> str:
    """A readable error from a Step Functions Catch's ``{Error, Cause}``."""
    if not failure:
        return "the job's poll loop failed"
    error = str(failure.get("Error") or "Error")
    cause = failure.get("Cause")
    text = error
    if isinstance(cause, str) and cause:
        try:
            parsed = json.loads(cause)
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict) and parsed.get("errorMessage"):
            text = f"{parsed.get('errorType') or error}: {parsed['errorMessage']}"
        else:
            text = f"{error}: {cause}"
    if error == "States.Timeout":
        text = "the job's poll loop timed out"
    return clip(text)
