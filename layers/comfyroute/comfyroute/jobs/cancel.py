"""cancel_job: the owner stops a job on its executor and its follow loop."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger

from comfyroute import messages
from comfyroute.credentials import CredentialsError
from comfyroute.executors.base import ExecutorError
from comfyroute.jobs import lifecycle, stream
from comfyroute.jobs.queries import owned_job

if TYPE_CHECKING:
    from comfyroute.executors.base import Executor
    from comfyroute.ports import Caller, Ports

logger = Logger(child=True)


def cancel_job(ports: Ports, caller: Caller, job_id: str, *, workflow_id: str | None = None) -> None:
    job = owned_job(ports, caller, job_id, "cancel_job", workflow_id=workflow_id)
    if job is None:
        return
    if not job.status.terminal:
        # Record the cancel first: a poll that looks while the executor is dropping the prompt
        # would otherwise see it vanish and record the job as lost instead of cancelled.
        outcome = lifecycle.cancel(ports.jobs, job.job_id)
        job = outcome.job
        if outcome.applied:
            # The record the cancel left names the executor's id if run_job had recorded it by
            # then (a cancel sent right after run_job); an id recorded later is stopped by
            # submit itself, which finds the job cancelled.
            if job.executor_job_id:
                try:
                    executor = ports.executors(job.executor, job.user_id, job.endpoint_id)
                except (CredentialsError, ExecutorError, ValueError) as exc:
                    logger.warning("could not build executor to cancel", extra={"error": str(exc)})
                else:
                    stop_on_executor(executor, job.executor_job_id)
            if job.execution_arn:
                ports.state_machine.stop(job.execution_arn, "cancelled by the user")
    stream.publish(ports, job, [messages.job_update(job, request="cancel_job")], to=caller.connection_id)


def stop_on_executor(executor: Executor, executor_job_id: str | None) -> None:
    """Best effort: the job is recorded finished already, whatever the executor answers."""
    if not executor_job_id:
        return
    try:
        executor.cancel(executor_job_id)
    except ExecutorError as exc:
        logger.warning("executor cancel failed", extra={"error": str(exc)})
