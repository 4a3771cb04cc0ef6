"""Settings from the environment (set by template.yaml or `comfyroute dev`).

Standard library only: every handler reads it, the authorizer included."""

from __future__ import annotations

import os
from typing import NamedTuple

from comfyroute.defaults import (
    MAX_OUTPUT_BYTES,
    RUNPOD_API_BASE,
    UPLOAD_MAX_BYTES,
    UPLOAD_MAX_JOB_BYTES,
    UPLOAD_MAX_WORKFLOW_BYTES,
    UPLOAD_PRESIGN_SECONDS,
    UPLOAD_RETENTION_DAYS,
)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw not in (None, "") else default


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw not in (None, "") else default


class Config(NamedTuple):
    """The deployment's settings. A NamedTuple (``config._replace(...)`` for a changed copy):
    every handler's init creates it, and a dataclass of this size costs several times more."""

    connections_table: str = "comfyroute-connections"
    jobs_table: str = "comfyroute-jobs"
    job_messages_table: str = "comfyroute-job-messages"
    workflows_table: str = "comfyroute-workflows"
    idempotency_table: str = "comfyroute-idempotency"
    api_keys_table: str = "comfyroute-api-keys"
    outputs_bucket: str = "comfyroute-outputs"
    state_machine_arn: str = ""
    # Management API endpoint for notify/poll, which are not invoked by API Gateway.
    websocket_endpoint: str = ""
    secrets_prefix: str = "comfyroute"
    runpod_api_base: str = RUNPOD_API_BASE
    job_timeout_seconds: int = 3600
    # How long the state machine may follow a job (job timeout + 15 min in template.yaml); 0
    # means job timeout + 900 s. run_job turns it into the execution input's max_polls.
    execution_timeout_seconds: int = 0
    poll_interval_start_seconds: int = 1
    poll_interval_cap_seconds: int = 30
    output_retention_days: int = 7
    job_ttl_days: int = 30
    max_output_bytes: int = MAX_OUTPUT_BYTES
    presign_seconds: int = 3600
    runpod_execution_timeout_ms: int = 600_000
    # How long Poll listens on ComfyUI's /ws for node progress of a running prompt (0: never).
    comfyui_progress_peek_seconds: float = 0.5
    # Input files and workflows uploaded with presigned POSTs under uploads/ (docs/uploads.md).
    upload_max_bytes: int = UPLOAD_MAX_BYTES
    upload_max_workflow_bytes: int = UPLOAD_MAX_WORKFLOW_BYTES
    upload_max_job_bytes: int = UPLOAD_MAX_JOB_BYTES
    upload_presign_seconds: int = UPLOAD_PRESIGN_SECONDS
    upload_retention_days: int = UPLOAD_RETENTION_DAYS
    # Networks (CIDRs, comma-separated) an executor's output URL may point into although they are
    # not public, over http too: the tests' loopback servers, a deployment's own private store.
    untrusted_fetch_allow: str = ""
    # Following (docs/following.md). The Follow task holds ComfyUI's /ws this long per
    # invocation (well under its Lambda timeout) and sends at most this many sampler steps a
    # second per job.
    follow_window_seconds: float = 240.0
    follow_progress_per_second: float = 2.0
    # The poll loop (ComfyUI without a usable /ws, RunPod without a callback route) waits
    # 1, 2, 3, 4, 6, 8, 12 ... s, at most this long.
    poll_fallback_cap_seconds: int = 15
    # An executor that cannot be reached is retried (the client is told at once) and the job
    # fails once this has passed.
    executor_unreachable_deadline_seconds: int = 120
    # Where RunPod's webhook reaches this stack (the callback function's URL; empty: RunPod
    # jobs are polled) and how often a job waiting for it is still looked at.
    runpod_callback_base_url: str = ""
    runpod_slow_poll_seconds: int = 180

    # `comfyroute dev --nodetool` only (never set by template.yaml): a connection from loopback
    # without a token is this user, as nodetool's client sends no key on localhost.
    dev_anonymous_user: str = ""
    # How long a ComfyUI's /object_info cached in S3 is used before it is fetched again (a class
    # the copy lacks fetches it at once anyway).
    object_info_ttl_seconds: int = 3600

    @property
    def execution_budget_seconds(self) -> int:
        return self.execution_timeout_seconds or self.job_timeout_seconds + 900

    @classmethod
    def from_env(cls) -> Config:
        e = os.environ.get
        d = cls()
        return cls(
            connections_table=e("CONNECTIONS_TABLE", d.connections_table),
            dev_anonymous_user=e("DEV_ANONYMOUS_USER", d.dev_anonymous_user),
            jobs_table=e("JOBS_TABLE", d.jobs_table),
            job_messages_table=e("JOB_MESSAGES_TABLE", d.job_messages_table),
            workflows_table=e("WORKFLOWS_TABLE", d.workflows_table),
            idempotency_table=e("IDEMPOTENCY_TABLE", d.idempotency_table),
            api_keys_table=e("API_KEYS_TABLE", d.api_keys_table),
            outputs_bucket=e("OUTPUTS_BUCKET", d.outputs_bucket),
            state_machine_arn=e("STATE_MACHINE_ARN", d.state_machine_arn),
            websocket_endpoint=e("WEBSOCKET_ENDPOINT", d.websocket_endpoint),
            secrets_prefix=e("SECRETS_PREFIX", d.secrets_prefix),
            runpod_api_base=e("RUNPOD_API_BASE", d.runpod_api_base),
            job_timeout_seconds=_env_int("JOB_TIMEOUT_SECONDS", d.job_timeout_seconds),
            execution_timeout_seconds=_env_int("EXECUTION_TIMEOUT_SECONDS", d.execution_timeout_seconds),
            poll_interval_start_seconds=_env_int("POLL_INTERVAL_START_SECONDS", d.poll_interval_start_seconds),
            poll_interval_cap_seconds=_env_int("POLL_INTERVAL_CAP_SECONDS", d.poll_interval_cap_seconds),
            output_retention_days=_env_int("OUTPUT_RETENTION_DAYS", d.output_retention_days),
            job_ttl_days=_env_int("JOB_TTL_DAYS", d.job_ttl_days),
            max_output_bytes=_env_int("MAX_OUTPUT_BYTES", d.max_output_bytes),
            presign_seconds=_env_int("PRESIGN_SECONDS", d.presign_seconds),
            runpod_execution_timeout_ms=_env_int("RUNPOD_EXECUTION_TIMEOUT_MS", d.runpod_execution_timeout_ms),
            comfyui_progress_peek_seconds=_env_float("COMFYUI_PROGRESS_PEEK_SECONDS", d.comfyui_progress_peek_seconds),
            upload_max_bytes=_env_int("UPLOAD_MAX_BYTES", d.upload_max_bytes),
            upload_max_workflow_bytes=_env_int("UPLOAD_MAX_WORKFLOW_BYTES", d.upload_max_workflow_bytes),
            upload_max_job_bytes=_env_int("UPLOAD_MAX_JOB_BYTES", d.upload_max_job_bytes),
            upload_presign_seconds=_env_int("UPLOAD_PRESIGN_SECONDS", d.upload_presign_seconds),
            upload_retention_days=_env_int("UPLOAD_RETENTION_DAYS", d.upload_retention_days),
            object_info_ttl_seconds=_env_int("OBJECT_INFO_TTL_SECONDS", d.object_info_ttl_seconds),
            untrusted_fetch_allow=e("UNTRUSTED_FETCH_ALLOW", d.untrusted_fetch_allow),
            follow_window_seconds=_env_float("FOLLOW_WINDOW_SECONDS", d.follow_window_seconds),
            follow_progress_per_second=_env_float("FOLLOW_PROGRESS_PER_SECOND", d.follow_progress_per_second),
            poll_fallback_cap_seconds=_env_int("POLL_FALLBACK_CAP_SECONDS", d.poll_fallback_cap_seconds),
            executor_unreachable_deadline_seconds=_env_int(
                "EXECUTOR_UNREACHABLE_DEADLINE_SECONDS", d.executor_unreachable_deadline_seconds
            ),
            runpod_callback_base_url=e("RUNPOD_CALLBACK_BASE_URL", d.runpod_callback_base_url),
            runpod_slow_poll_seconds=_env_int("RUNPOD_SLOW_POLL_SECONDS", d.runpod_slow_poll_seconds),
        )
