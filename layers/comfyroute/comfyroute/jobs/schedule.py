"""Pure decisions of the follow loop: the wait schedule, change detection, status texts.

No I/O here, so the loop's decisions can be tested (and reasoned about) on their own.
"""

from __future__ import annotations

import json
import math
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


def poll_budget(seconds: int, start: int, cap: int) -> int | None:
    """The ``polls`` count at which the state machine gives up on a job (its ``max_polls``):
    the first count whose waits alone (the execution input's ``start``, then
    :func:`fallback_wait` after each poll, the schedule Poll answers) add up to ``seconds``.
    Counted with the shortest waits the loop can take: Poll's longer waits (an unreachable
    executor's :func:`unreachable_wait`, Arm's slow poll) and each task's own time only make a
    count last longer, so the budget never runs out before ``seconds`` have passed; it is a
    safety net behind Poll's and Follow's own deadline checks. Follow windows do not count:
    a Follow answer carries ``polls`` 0, and Follow fails a job past its deadline itself.
    None when the schedule does not wait (``start`` or ``cap`` of 0): no count then stands
    for a time."""
    if start <= 0 or cap <= 0:
        return None
    polls, waited = 1, start
    while waited < seconds:
        waited += fallback_wait(polls - 1, cap, start)
        polls += 1
    return polls


def fallback_wait(polls: int, cap: int, start: int = 1) -> int:
    """Seconds before poll number ``polls + 1`` of the poll loop that stands in for a stream or
    a webhook: 1, 2, 3, 4, 6, 8, 12, 15, 15 ... (growth 1.5 from ``start``, capped), gentler
    than the doubling before issue 10 because nothing else tells the client the job ended.
    ``start`` 0: no wait."""
    if start <= 0:
        return 0
    return int(min(cap, math.ceil(start * 1.5 ** min(polls, 40))))


def unreachable_wait(elapsed: float) -> int:
    """Seconds before looking again at an executor unreachable for ``elapsed`` seconds:
    5, 10, 20, then every 30."""
    for within, wait in ((5.0, 5), (15.0, 10), (35.0, 20)):
        if elapsed < within:
            return wait
    return 30


def unreachable_message(where: str) -> str:
    return f"{where} cannot be reached; retrying"


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
