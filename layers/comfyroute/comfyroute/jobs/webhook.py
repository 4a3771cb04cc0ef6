"""RunPod jobs woken by their webhook: the state machine's Arm task and the callback route.

Arm runs in the Poll function with the token of a ``waitForTaskToken`` state. It keeps the token
in the job record and looks at ``/status`` once, so progress still reaches the client and a job
that is already over is not waited for; it sends the token back itself when there is nothing to
wait for. Otherwise the callback (``handle_callback``) sends it when RunPod calls. Whichever comes
second sees the other's write: Arm reads ``webhook_seen_at`` in the record its token write
returns, the callback reads the token in the record its ``webhook_seen_at`` write returns. The
body RunPod POSTs is a hint only: the Poll after Arm confirms with ``/status`` before recording
anything (docs/following.md, section 4).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from pydantic import BaseModel

from comfyroute import messages, metrics
from comfyroute.executors.base import ExecutorUnavailable
from comfyroute.executors.runpod_webhook import JobView, Verdict, judge, parse_callback_path
from comfyroute.jobs import lifecycle, stream
from comfyroute.jobs.record import JobNotFound
from comfyroute.jobs.schedule import changed

if TYPE_CHECKING:
    from comfyroute.ports import Ports

logger = Logger(child=True)


class ArmResult(BaseModel):
    """What an Arm invocation answers (Step Functions keeps the token's output instead)."""

    job_id: str
    woke: bool
    reason: str


def arm_job(ports: Ports, job_id: str, task_token: str) -> ArmResult:
    job = ports.jobs.get(job_id)
    if job is None:
        raise JobNotFound(f"job {job_id} has no record")

    def wake(reason: str) -> ArmResult:
        ports.state_machine.wake(task_token, {"woken_by": reason})
        return ArmResult(job_id=job_id, woke=True, reason=reason)

    if job.status.terminal or not job.executor_job_id:
        return wake("job over")
    if time.time() >= job.deadline:
        return wake("deadline")  # Poll cancels it on RunPod and records timed_out
    runpod_job_id = job.executor_job_id
    job = lifecycle.armed(ports.jobs, job_id, task_token).job
    if job.webhook_seen_at is not None:
        return wake("the callback came first")
    executor = ports.executors(job.executor, job.user_id, job.endpoint_id)
    try:
        status = executor.status(runpod_job_id, submitted_at=job.created_at)
    except ExecutorUnavailable:
        return wake("executor unreachable")  # Poll tells the client and retries
    if status.state.terminal:
        return wake("over on RunPod")
    if changed(job, status):
        observed = lifecycle.observed(ports.jobs, job, status)
        if observed.applied:
            # Numbered and logged like every job message, so a client that reconnects gets it.
            stream.publish(ports, observed.job, messages.progress_pushes(observed.job))
    return ArmResult(job_id=job_id, woke=False, reason="waiting for the webhook")


def arm_seconds(ports: Ports, deadline: float) -> int:
    """How long one Arm waits: the slow poll, or less when the job's deadline comes sooner."""
    left = int(deadline - time.time()) + 1
    return max(1, min(ports.config.runpod_slow_poll_seconds, left))


class CallbackAnswer(BaseModel):
    """The function URL's response (``statusCode``, ``body``)."""

    statusCode: int  # the Lambda proxy response's name
    body: str = ""


def handle_callback(ports: Ports, method: str, path: str, body: bytes | None, prefix: str = "") -> CallbackAnswer:
    """One request to ``{prefix}/runpod/callback/{job_id}/{secret}``: 404 unless provably ours."""
    parsed = parse_callback_path(path, prefix)
    job = ports.jobs.get(parsed[0]) if parsed is not None else None
    view = None
    if job is not None:
        view = JobView(
            secret_digest=job.callback_digest, executor_job_id=job.executor_job_id, terminal=job.status.terminal
        )
    decision = judge(method, parsed[1] if parsed is not None else None, body, view)
    # Never the path (it holds the secret) nor the body.
    logger.info("RunPod callback", extra={"verdict": decision.verdict.value, "reason": decision.reason})
    if decision.verdict is not Verdict.WAKE or job is None:
        return CallbackAnswer(statusCode=decision.http_status)
    seen = lifecycle.webhook_seen(ports.jobs, job.job_id, time.time()).job
    metrics.add("RunPodWebhooks", 1)
    if seen.task_token:
        ports.state_machine.wake(seen.task_token, decision.task_output())
    return CallbackAnswer(statusCode=200)


def callback_request(event: Mapping[str, Any]) -> tuple[str, str, bytes | None]:
    """(method, path, body) of a Lambda function URL event (payload format 2.0)."""
    http = event.get("requestContext", {}).get("http", {})
    raw = event.get("body")
    body: bytes | None = None
    if isinstance(raw, str):
        body = base64.b64decode(raw) if event.get("isBase64Encoded") else raw.encode()
    return str(http.get("method", "")), str(event.get("rawPath", "")), body
