"""Following a job on its executor: the poll task of the Step Functions loop.

One look per invocation; the state machine waits between looks (``schedule.next_wait``) and
pushes what changed through the notify task. See docs/architecture.md for the contract.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from pydantic import BaseModel

from comfyroute.contenttypes import safe_content_type
from comfyroute.conversion.outputs import sole_output_node
from comfyroute.executors.base import ExecutorError, ExecutorUnavailable
from comfyroute.executors.runpod import RUNPOD_NODE_ID
from comfyroute.jobs import lifecycle
from comfyroute.jobs.cancel import stop_on_executor
from comfyroute.jobs.record import JobNotFound, JobRecord
from comfyroute.jobs.schedule import NO_OUTPUTS_MESSAGE, changed, next_wait
from comfyroute.protocol import JobStatus
from comfyroute.untrusted import FetchRefused, describe_url, fetch_untrusted, parse_networks

if TYPE_CHECKING:
    from comfyroute.executors.base import Executor, ExecutorStatus, OutputFile
    from comfyroute.ports import Ports


class PollResult(BaseModel):
    """The poll task's answer, which the state machine's Choice reads."""

    job_id: str
    polls: int
    done: bool
    status: JobStatus
    wait_seconds: int
    notify: bool


def poll_job(ports: Ports, job_id: str, polls: int) -> PollResult:
    """One look at the job on its executor, recorded."""
    job = ports.jobs.get(job_id)
    if job is None:
        raise JobNotFound(f"job {job_id} has no record")
    cfg = ports.config
    wait = next_wait(polls, cfg.poll_interval_start_seconds, cfg.poll_interval_cap_seconds)
    looks = polls + 1

    def result(status: JobStatus, *, done: bool, notify: bool = False) -> PollResult:
        return PollResult(job_id=job_id, polls=looks, done=done, status=status, wait_seconds=wait, notify=notify)

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

    status = executor.status(job.executor_job_id, submitted_at=job.created_at)
    if status.state.terminal:
        return result(_finish(ports, job, executor, status, looks).status, done=True)
    if not changed(job, status):
        return result(status.state, done=False)
    observed = lifecycle.observed(ports.jobs, job, status)
    if not observed.applied:
        # Finished (e.g. cancelled) while we looked: report that instead.
        return result(observed.job.status, done=True)
    return result(status.state, done=False, notify=True)


def _finish(ports: Ports, job: JobRecord, executor: Executor, status: ExecutorStatus, looks: int) -> JobRecord:
    """Record the executor's final state, with the outputs of a completed job stored."""
    assert job.executor_job_id is not None
    outputs: list[OutputFile] | None = None
    state, error = status.state, status.error
    if state is JobStatus.COMPLETED:
        try:
            files = executor.outputs(job.executor_job_id)
        except ExecutorUnavailable:
            raise  # Step Functions retries the poll
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
    ).job


def attribute_outputs(job: JobRecord, files: list[OutputFile]) -> list[OutputFile]:
    """RunPod names no node for its files (``node_id: "runpod"``): when the prompt has exactly
    one output node, they are that node's."""
    if not any(f.node_id == RUNPOD_NODE_ID for f in files):
        return files
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
