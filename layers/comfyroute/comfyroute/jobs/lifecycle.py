"""The one owner of every job status transition.

Each function here is one transition, written as one conditional ``JobChange`` that the job
store applies atomically and answers with the record it left (``Outcome``), so callers never
read the job again to learn what happened. Every write after the job is created, but
recording its loop's execution id, happens only while the job is queued or running: a late
poll cannot reopen a cancelled job and a cancel cannot overwrite a completed one.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger

from comfyroute import metrics
from comfyroute.jobs.record import ACTIVE, JobChange, JobRecord, Outcome
from comfyroute.jobs.schedule import status_message
from comfyroute.messages import bounded_errors
from comfyroute.protocol import ExecutorKind, JobStatus
from comfyroute.protocol.server_messages import NodeProblem
from comfyroute.text import clip

if TYPE_CHECKING:
    from comfyroute.executors.base import ExecutorStatus, NodeOutcome, OutputFile
    from comfyroute.ports import JobStore

logger = Logger(child=True)

# What only describes a job still on its executor; a finished job carries none of it.
_WHILE_ACTIVE = frozenset({"progress", "queue_position", "unreachable_since", "task_token"})


def create(store: JobStore, record: JobRecord) -> Outcome:
    """queued: a new job. Not applied when the id is taken; the outcome holds that job."""
    outcome = store.insert(record)
    if outcome.applied:
        metrics.count("JobsSubmitted", executor=record.executor.value)
    return outcome


def submitted(store: JobStore, job_id: str, executor: ExecutorKind, executor_job_id: str) -> Outcome:
    """The executor accepted the job under ``executor_job_id``."""
    return store.apply(
        JobChange(
            job_id,
            {
                "executor_job_id": executor_job_id,
                "message": f"submitted to the {executor.value} executor",
                "updated_at": time.time(),
            },
            only_in=ACTIVE,
        )
    )


def loop_started(store: JobStore, job_id: str, execution_arn: str) -> Outcome:
    """The job's follow loop runs as ``execution_arn``. Recorded whatever the status: a cancel
    that landed meanwhile has nothing to stop without it, and the loop ends by itself."""
    return store.apply(JobChange(job_id, {"execution_arn": execution_arn, "updated_at": time.time()}))


def attach(store: JobStore, job_id: str, connection_id: str) -> Outcome:
    """Send the rest of an active job's messages to ``connection_id`` (the client came back
    on a new connection)."""
    return store.apply(JobChange(job_id, {"connection_id": connection_id, "updated_at": time.time()}, only_in=ACTIVE))


def observed(store: JobStore, job: JobRecord, status: ExecutorStatus) -> Outcome:
    """queued / running on the executor, with its queue position, progress and message. Only
    what the look says is kept: a field it does not report is removed."""
    if status.state.terminal:
        raise ValueError(f"observed() records an active state, not {status.state.value}; use finish()")
    now = time.time()
    values: dict[str, Any] = {"status": status.state, "updated_at": now}
    optional: dict[str, Any] = {
        "message": status_message(status, job.executor),
        "progress": status.progress,
        "queue_position": status.queue_position,
    }
    values.update({k: v for k, v in optional.items() if v is not None})
    if status.state is JobStatus.RUNNING and job.started_at is None:
        values["started_at"] = now
    # A look that answered means the executor is reachable again.
    remove = frozenset(k for k, v in optional.items() if v is None) | {"unreachable_since"}
    return store.apply(JobChange(job.job_id, values, remove=remove, only_in=ACTIVE))


def outputs_stored(store: JobStore, job_id: str, outputs: Sequence[OutputFile]) -> Outcome:
    """The outputs a running job has so far (stored as the executor named them)."""
    return store.apply(JobChange(job_id, {"outputs": list(outputs), "updated_at": time.time()}, only_in=ACTIVE))


def nodes_seen(store: JobStore, job_id: str, nodes: Mapping[str, str]) -> Outcome:
    """What the stream has announced of each node, for the next follow window."""
    return store.apply(JobChange(job_id, {"nodes": dict(nodes)}, only_in=ACTIVE))


def follow_by_polling(store: JobStore, job_id: str) -> Outcome:
    """The executor's websocket cannot be used: the loop polls from now on."""
    return store.apply(JobChange(job_id, {"follow_by": "poll", "updated_at": time.time()}, only_in=ACTIVE))


def unreachable(store: JobStore, job: JobRecord, since: float, message: str) -> Outcome:
    """The executor cannot be reached (first noticed ``since``); the job waits for it."""
    return store.apply(
        JobChange(
            job.job_id,
            {"unreachable_since": since, "message": message, "updated_at": time.time()},
            only_in=ACTIVE,
            only_unset=frozenset({"unreachable_since"}),
        )
    )


def armed(store: JobStore, job_id: str, task_token: str) -> Outcome:
    """The loop waits for RunPod's webhook with ``task_token``."""
    return store.apply(JobChange(job_id, {"task_token": task_token}, only_in=ACTIVE))


def webhook_seen(store: JobStore, job_id: str, at: float) -> Outcome:
    """A callback with the job's secret came (a hint: the next look confirms it)."""
    return store.apply(JobChange(job_id, {"webhook_seen_at": at}, only_in=ACTIVE))


def finish(
    store: JobStore,
    job_id: str,
    status: JobStatus,
    *,
    error: str | None = None,
    errors: Sequence[NodeProblem] = (),
    message: str | None = None,
    outputs: Sequence[OutputFile] | None = None,
    polls: int | None = None,
    node_states: Mapping[str, NodeOutcome] | None = None,
    delay_ms: int | None = None,
    execution_ms: int | None = None,
) -> Outcome:
    """completed / failed / cancelled / timed_out, with the job's outputs when it has any, how
    each node ended when the executor said, the problems per node (``errors``) of a failed one,
    and RunPod's timings when it reported them."""
    change = _finish_change(job_id, status, error, message, outputs, errors)
    extra: dict[str, Any] = {k: v for k, v in (("delay_ms", delay_ms), ("execution_ms", execution_ms)) if v is not None}
    if node_states:
        extra["node_states"] = dict(node_states)
    if extra:
        change = JobChange(change.job_id, {**change.values, **extra}, remove=change.remove, only_in=change.only_in)
    return _finished(store, change, polls)


def fail(
    store: JobStore, job_id: str, error: str, *, errors: Sequence[NodeProblem] = (), polls: int | None = None
) -> Outcome:
    return finish(store, job_id, JobStatus.FAILED, error=error, errors=errors, polls=polls)


def cancel(store: JobStore, job_id: str) -> Outcome:
    return finish(store, job_id, JobStatus.CANCELLED, message="cancelled by the user")


def time_out(store: JobStore, job_id: str, limit_seconds: int, *, polls: int | None = None) -> Outcome:
    error = f"the job ran longer than its {limit_seconds} s limit and was cancelled"
    return finish(store, job_id, JobStatus.TIMED_OUT, error=error, polls=polls)


def fail_stranded(store: JobStore, job_id: str, error: str) -> Outcome:
    """failed, but only if the job is active with no follow loop: a start that broke off
    half-way leaves it so, and nothing else would ever finish it."""
    change = _finish_change(job_id, JobStatus.FAILED, error, None, None)
    stranded = JobChange(
        change.job_id, change.values, remove=change.remove, only_in=ACTIVE, only_unset=frozenset({"execution_arn"})
    )
    return _finished(store, stranded, None)


def _finish_change(
    job_id: str,
    status: JobStatus,
    error: str | None,
    message: str | None,
    outputs: Sequence[OutputFile] | None,
    errors: Sequence[NodeProblem] = (),
) -> JobChange:
    if not status.terminal:
        raise ValueError(f"finish() records a terminal state, not {status.value}")
    now = time.time()
    values: dict[str, Any] = {"status": status, "finished_at": now, "updated_at": now}
    remove = set(_WHILE_ACTIVE)
    if error:
        values["error"] = clip(error)
    if errors:
        shown, omitted = bounded_errors(errors)
        values["errors"] = shown
        if omitted:
            values["errors_omitted"] = omitted
    # A message describes the current state only; an old one ("submitted to ...") must go.
    if message:
        values["message"] = message
    else:
        remove.add("message")
    if outputs is not None:
        # The whole list at once: a retried poll replaces it rather than adding to it.
        values["outputs"] = list(outputs)
    return JobChange(job_id, values, remove=frozenset(remove), only_in=ACTIVE)


def _finished(store: JobStore, change: JobChange, polls: int | None) -> Outcome:
    outcome = store.apply(change)
    if outcome.applied:
        job = outcome.job
        metrics.count("JobsFinished", executor=job.executor.value, status=job.status.value)
        if polls is not None:
            metrics.add("PollsPerJob", polls)
        logger.info("job finished", extra={"job_id": job.job_id, "status": job.status.value})
    return outcome
