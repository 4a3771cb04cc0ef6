"""Pure functions of job state: the wait schedule, change detection, messages from records.

No I/O here, so the poll loop's decisions can be tested (and reasoned about) on their own.
"""

from __future__ import annotations

import json
from typing import Any

from comfyroute.aws.tables import JobRecord, StoredProgress
from comfyroute.executors.base import ExecutorStatus
from comfyroute.protocol import ExecutorKind, JobStatus, JobUpdate, JobView, NodeProgress

MAX_ERROR_CHARS = 2000
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
    return min(cap, start * 2 ** min(polls, 30))


def progress_of(status: ExecutorStatus) -> StoredProgress | None:
    if status.progress is None:
        return None
    p = status.progress
    return StoredProgress(node_id=p.node_id, value=p.value, max=p.max)


def changed(job: JobRecord, status: ExecutorStatus) -> bool:
    """Whether a look at the executor tells the client anything new."""
    if status.state != job.status:
        return True
    if status.queue_position != job.queue_position:
        return True
    return progress_of(status) != job.progress


def status_message(status: ExecutorStatus, executor: ExecutorKind) -> str | None:
    """What to tell the client about a job still on its executor."""
    if status.message:
        return status.message
    if status.state is JobStatus.QUEUED and status.queue_position is not None:
        # queue_position counts pending prompts before ours from 0: position 1 runs next.
        return f"waiting in the {executor.value} executor's queue (position {status.queue_position + 1})"
    return None


def describe_failure(failure: dict[str, Any] | None) -> str:
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
    return truncate(text)


def truncate(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def job_update(job: JobRecord) -> JobUpdate:
    return JobUpdate(
        job_id=job.job_id,
        workflow_id=job.workflow_id,
        status=job.status,
        executor=job.executor,
        error=job.error,
        message=job.message,
        duration=job.duration,
    )


def node_progress(job: JobRecord) -> NodeProgress | None:
    if job.progress is None:
        return None
    return NodeProgress(
        job_id=job.job_id,
        workflow_id=job.workflow_id,
        node_id=job.progress.node_id or "",
        progress=job.progress.value,
        total=job.progress.max,
    )


def job_view(job: JobRecord, outputs: list[Any] | None = None) -> JobView:
    return JobView(
        job_id=job.job_id,
        workflow_id=job.workflow_id,
        status=job.status,
        executor=job.executor,
        error=job.error,
        message=job.message,
        created_at=job.created_at,
        updated_at=job.updated_at,
        duration=job.duration,
        outputs=outputs or [],
        output_count=len(job.outputs),
    )


def is_terminal(status: JobStatus | str) -> bool:
    return JobStatus(status).terminal
