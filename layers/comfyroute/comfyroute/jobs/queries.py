"""get_job and list_jobs: the caller's own jobs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from comfyroute import messages
from comfyroute.jobs import lifecycle

if TYPE_CHECKING:
    from comfyroute.jobs.record import JobRecord
    from comfyroute.ports import Caller, Ports


def owned_job(ports: Ports, caller: Caller, job_id: str, request: str) -> JobRecord | None:
    """The caller's job, or None after telling them it was not found."""
    job = ports.jobs.get(job_id)
    if job is None or job.user_id != caller.user_id:
        messages.reply(ports, caller, messages.job_not_found(job_id, request))
        return None
    return job


def get_job(ports: Ports, caller: Caller, job_id: str) -> None:
    """The job with fresh URLs to its outputs. Asked from a new connection while the job is
    active, the rest of the job's messages go there from now on (the client reconnected)."""
    job = owned_job(ports, caller, job_id, "get_job")
    if job is None:
        return
    if job.connection_id != caller.connection_id and not job.status.terminal:
        job = lifecycle.attach(ports.jobs, job.job_id, caller.connection_id).job
    messages.reply(ports, caller, messages.job_message(job, ports.outputs, ports.config.presign_seconds))


def list_jobs(ports: Ports, caller: Caller, limit: int) -> None:
    messages.reply(ports, caller, messages.job_list(ports.jobs.list_by_user(caller.user_id, limit)))
