"""Telling the client: the notify task of the Step Functions loop pushes the job's status,
its progress or, at the end, its outputs to the job's connection."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from pydantic import BaseModel

from comfyroute import messages, metrics
from comfyroute.jobs import lifecycle, stream
from comfyroute.jobs.schedule import describe_failure

if TYPE_CHECKING:
    from comfyroute.jobs.record import JobRecord
    from comfyroute.ports import Ports
    from comfyroute.protocol.server_messages import JobStreamMessage

logger = Logger(child=True)


class NotifyResult(BaseModel):
    job_id: str
    delivered: bool
    sent: int = 0
    reason: str | None = None


def notify_job(ports: Ports, job_id: str, *, final: bool, failure: Mapping[str, Any] | None = None) -> NotifyResult:
    """Push what the job's record says. With ``failure`` (the loop's Catch) the job is first
    recorded failed, unless it already ended."""
    job = ports.jobs.get(job_id)
    if job is None:
        return NotifyResult(job_id=job_id, delivered=False, reason="no such job")
    if failure is not None and not job.status.terminal:
        job = lifecycle.fail(ports.jobs, job_id, describe_failure(failure)).job
    pushes: list[JobStreamMessage] = []
    if final or job.status.terminal:
        # Nodes and outputs before the final job_update, which counts the outputs: a client may
        # stop reading at a terminal status (nodetool's runner goes idle on it; ours returns).
        pushes.extend(_final_pushes(ports, job))
    else:
        pushes.extend(messages.progress_pushes(job))
    # Logged whether or not anyone is connected: a client that comes back replays it.
    undelivered = stream.publish(ports, job, pushes)
    if undelivered is not None:
        if undelivered == "connection gone":
            metrics.add("GoneConnections", 1)
        return NotifyResult(job_id=job_id, delivered=False, reason=undelivered)
    return NotifyResult(job_id=job_id, delivered=True, sent=len(pushes))


def _final_pushes(ports: Ports, job: JobRecord) -> list[JobStreamMessage]:
    """The outputs, then the terminal update. Should the outputs fail to build (S3 down, a bug),
    the client still learns that the job ended; get_job gives the outputs later."""
    try:
        return list(messages.final_pushes(job, ports.outputs, ports.config.presign_seconds))
    except Exception:
        logger.exception("could not build the job's output messages")
        return [messages.job_update(job)]
