"""get_job and list_jobs: the caller's own jobs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from comfyroute import messages
from comfyroute.jobs import lifecycle
from comfyroute.jobs.record import job_key

if TYPE_CHECKING:
    from comfyroute.jobs.record import JobRecord
    from comfyroute.ports import Caller, Ports


def owned_job(
    ports: Ports, caller: Caller, job_id: str, request: str, *, workflow_id: str | None = None
) -> JobRecord | None:
    """The caller's job, or None after telling them it was not found. A ``workflow_id`` the
    request names (nodetool sends one with every job command) must be the job's."""
    job = ports.jobs.get(job_key(caller.user_id, job_id))
    if job is None:
        # Records written before ids were scoped per user are keyed by the client's id.
        job = ports.jobs.get(job_id)
    wrong_workflow = workflow_id is not None and job is not None and job.workflow_id not in (None, workflow_id)
    if job is None or job.user_id != caller.user_id or wrong_workflow:
        messages.reply(ports, caller, messages.job_not_found(job_id, request, workflow_id))
        return None
    return job


def get_job(ports: Ports, caller: Caller, job_id: str, *, offset: int = 0, limit: int | None = None) -> None:
    """The job with fresh URLs to one page of its outputs (``protocol.commands.GetJobData``). Asked from
    a new connection while the job is active, the rest of the job's messages go there from now
    on (the client reconnected)."""
    job = owned_job(ports, caller, job_id, "get_job")
    if job is None:
        return
    if job.connection_id != caller.connection_id and not job.status.terminal:
        job = lifecycle.attach(ports.jobs, job.job_id, caller.connection_id).job
    answer = messages.job_message(job, ports.outputs, ports.config.presign_seconds, offset=offset, limit=limit)
    messages.reply(ports, caller, answer)


def list_jobs(ports: Ports, caller: Caller, limit: int) -> None:
    messages.reply(ports, caller, messages.job_list(ports.jobs.list_by_user(caller.user_id, limit)))
