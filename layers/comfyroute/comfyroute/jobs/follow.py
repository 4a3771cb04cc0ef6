"""Following a job on its executor: the poll task of the Step Functions loop.

One look per invocation; the state machine waits between looks (``schedule.fallback_wait``) and
pushes what changed through the notify task. It is the loop of RunPod jobs without a webhook and
of ComfyUI jobs whose websocket cannot be used, the confirmation after a webhook, and where an
unreachable executor is retried (the client told once). See docs/architecture.md for the contract.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel

from comfyroute import metrics
from comfyroute.contenttypes import safe_content_type
from comfyroute.executors.base import RUNPOD_NODE_ID, ExecutorError, ExecutorUnavailable
from comfyroute.jobs import lifecycle
from comfyroute.jobs.cancel import stop_on_executor
from comfyroute.jobs.record import JobNotFound, JobRecord
from comfyroute.jobs.schedule import NO_OUTPUTS_MESSAGE, changed, fallback_wait, unreachable_message, unreachable_wait
from comfyroute.protocol import ExecutorKind, JobStatus
from comfyroute.untrusted import FetchRefused, describe_url, fetch_untrusted, parse_networks

if TYPE_CHECKING:
    from comfyroute.executors.base import Executor, ExecutorStatus, OutputFile
    from comfyroute.ports import Ports


class PollResult(BaseModel):
    """The poll task's answer, which the state machine's Choice reads (laid over the
    execution's input)."""

    job_id: str
    polls: int
    done: bool
    status: JobStatus
    wait_seconds: int
    notify: bool
    # "follow": a ComfyUI job whose socket works goes back to the Follow task (after its
    # executor was unreachable); "arm": a RunPod job with a webhook waits for it again.
    next: Literal["follow", "arm"] | None = None


def poll_job(ports: Ports, job_id: str, polls: int) -> PollResult:
    """One look at the job on its executor, recorded."""
    job = ports.jobs.get(job_id)
    if job is None:
        raise JobNotFound(f"job {job_id} has no record")
    cfg = ports.config
    wait = fallback_wait(
        polls, min(cfg.poll_fallback_cap_seconds, cfg.poll_interval_cap_seconds), cfg.poll_interval_start_seconds
    )
    looks = polls + 1

    def result(
        status: JobStatus, *, done: bool, notify: bool = False, after: int | None = None, then: str | None = None
    ) -> PollResult:
        return PollResult(
            job_id=job_id,
            polls=looks,
            done=done,
            status=status,
            wait_seconds=wait if after is None else after,
            notify=notify,
            next=then,  # type: ignore[arg-type]
        )

    if job.status.terminal:
        return result(job.status, done=True)
    if not job.executor_job_id:
        failed = lifecycle.fail(ports.jobs, job_id, "the job has no executor id (its submit did not finish)")
        return result(failed.job.status, done=True)
    executor = ports.executors(job.executor, job.user_id, job.endpoint_id)
    if time.time() >= job.deadline:
        stop_on_executor(executor, job.executor_job_id)
        timed_out = lifecycle.time_out(ports.jobs, job_id, cfg.job_timeout_seconds, polls=looks)
        return result(timed_out.job.status, done=True)

    try:
        status = executor.status(job.executor_job_id, submitted_at=job.created_at)
        if status.state.terminal:
            return result(_finish(ports, job, executor, status, looks).status, done=True)
    except ExecutorUnavailable:
        # Not Step Functions' Retry: the client is told at once and the job fails at a clear
        # deadline (EXECUTOR_UNREACHABLE_DEADLINE_SECONDS) instead of minutes of silence.
        noted, told = executor_unreachable(ports, job, where(executor))
        if noted.status.terminal:
            return result(noted.status, done=True)
        elapsed = time.time() - (noted.unreachable_since or time.time())
        return result(noted.status, done=False, notify=told, after=unreachable_wait(elapsed))
    then = _next_for(job)
    if not changed(job, status) and job.unreachable_since is None:
        return result(status.state, done=False, then=then)
    observed = lifecycle.observed(ports.jobs, job, status)
    if not observed.applied:
        # Finished (e.g. cancelled) while we looked: report that instead.
        return result(observed.job.status, done=True)
    return result(status.state, done=False, notify=True, then=then)


def _next_for(job: JobRecord) -> str | None:
    if job.executor is ExecutorKind.LOCAL and job.follow_by != "poll":
        return "follow"
    if job.executor is ExecutorKind.RUNPOD and job.callback_digest:
        return "arm"
    return None


def where(executor: Executor) -> str:
    """The executor as the client may read it (no credentials)."""
    label = getattr(executor, "label", None)
    if executor.kind is ExecutorKind.LOCAL and label:
        return str(label)
    endpoint = getattr(executor, "endpoint_id", None)
    return f"RunPod endpoint {endpoint}" if endpoint else f"the {executor.kind.value} executor"


def executor_unreachable(ports: Ports, job: JobRecord, where: str) -> tuple[JobRecord, bool]:
    """Record that the job's executor cannot be reached, or fail the job once that has lasted
    ``EXECUTOR_UNREACHABLE_DEADLINE_SECONDS``. Answers the record and whether this was the
    first time (then the client is to be told)."""
    now = time.time()
    if job.unreachable_since is None:
        outcome = lifecycle.unreachable(ports.jobs, job, now, unreachable_message(where))
        if outcome.applied:
            metrics.add("ExecutorUnreachable", 1)
        return outcome.job, outcome.applied
    limit = ports.config.executor_unreachable_deadline_seconds
    if now - job.unreachable_since >= limit:
        lasted = int(now - job.unreachable_since)
        error = f"{where} could not be reached for {lasted} s (the limit is {limit} s), so the job failed"
        return lifecycle.fail(ports.jobs, job.job_id, error).job, False
    return job, False


def _finish(ports: Ports, job: JobRecord, executor: Executor, status: ExecutorStatus, looks: int) -> JobRecord:
    """Record the executor's final state, with the outputs of a completed job stored."""
    assert job.executor_job_id is not None
    outputs: list[OutputFile] | None = None
    state, error = status.state, status.error
    if state is JobStatus.COMPLETED:
        try:
            files = executor.outputs(job.executor_job_id)
        except ExecutorUnavailable:
            raise  # the poll records it and the loop tries again
        except (ExecutorError, ValueError) as exc:
            state, error = JobStatus.FAILED, f"the job finished but its outputs could not be fetched: {exc}"
        else:
            try:
                files = [_copied(ports, f) for f in files]
            except FetchRefused as exc:
                state, error = JobStatus.FAILED, f"the job finished but an output could not be copied: {exc}"
            else:
                outputs = [
                    ports.outputs.put(job.job_id, i, _attributed(job, f))
                    for i, f in enumerate(attribute_outputs(job, files))
                ]
    message = status.message
    if outputs == [] and not message:
        message = NO_OUTPUTS_MESSAGE
    errors = status.errors if state is JobStatus.FAILED and status.errors else ()
    return lifecycle.finish(
        ports.jobs,
        job.job_id,
        state,
        error=error,
        errors=errors,
        message=message,
        outputs=outputs,
        polls=looks,
        node_states=status.nodes,
        delay_ms=status.delay_ms,
        execution_ms=status.execution_ms,
    ).job


def attribute_outputs(job: JobRecord, files: list[OutputFile]) -> list[OutputFile]:
    """RunPod names no node for its files (``node_id: "runpod"``): when the prompt has exactly
    one output node, they are that node's."""
    if not any(f.node_id == RUNPOD_NODE_ID for f in files):
        return files
    # Imported for RunPod's files only: the bundled node schemas are not needed otherwise.
    from comfyroute.conversion.outputs import sole_output_node

    node_id = sole_output_node(job.node_classes)
    if node_id is None:
        return files
    return [f.model_copy(update={"node_id": node_id}) if f.node_id == RUNPOD_NODE_ID else f for f in files]


def _attributed(job: JobRecord, file: OutputFile) -> OutputFile:
    return file.model_copy(update={"node_name": _node_name(job, file)})


def _copied(ports: Ports, file: OutputFile) -> OutputFile:
    """The file with its bytes: one the executor left at a URL (RunPod's s3_url) is fetched as
    untrusted input, so clients only ever get our own presigned URL and the real size."""
    content_type = safe_content_type(file.content_type, file.filename)
    if file.data is not None or not file.url:
        return file.model_copy(update={"content_type": content_type})
    cfg = ports.config
    try:
        data, declared = fetch_untrusted(
            file.url, max_bytes=cfg.max_output_bytes, allow_networks=parse_networks(cfg.untrusted_fetch_allow)
        )
    except FetchRefused as exc:
        raise FetchRefused(f"{file.filename!r} at {describe_url(file.url)}: {exc}") from None
    kept = safe_content_type(declared or content_type, file.filename)
    return file.model_copy(update={"data": data, "size": len(data), "url": None, "content_type": kept})


def _node_name(job: JobRecord, file: OutputFile) -> str:
    """The class of the node that made the file (SaveImage, ...), else its id."""
    return job.node_classes.get(file.node_id, file.node_id)
