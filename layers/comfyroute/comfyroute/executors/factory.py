"""Choosing and building the executor for a job."""

from __future__ import annotations

from comfyroute.config import Config
from comfyroute.credentials import Credentials
from comfyroute.executors.base import Executor, ExecutorRejected
from comfyroute.executors.scrubbed import ScrubbedExecutor
from comfyroute.protocol import ExecutorKind
from comfyroute.text import remember_secrets

# How errors name the ComfyUI of the deployment's default secret: its address is not for users.
SHARED_COMFYUI = "the shared ComfyUI"


def build_executor(kind: ExecutorKind, credentials: Credentials, endpoint_id: str | None, config: Config) -> Executor:
    """The job's executor, wrapped so nothing it says carries the user's secret values."""
    remember_secrets(credentials.secret_values())
    secrets = credentials.secret_values()
    if kind is ExecutorKind.LOCAL and credentials.shared:
        secrets += [credentials.comfyui_addr]
    return ScrubbedExecutor(_build(kind, credentials, endpoint_id, config), secrets)


def _build(kind: ExecutorKind, credentials: Credentials, endpoint_id: str | None, config: Config) -> Executor:
    if kind is ExecutorKind.RUNPOD:
        from comfyroute.executors.runpod import RunPodExecutor

        if not endpoint_id:
            raise ExecutorRejected("runpod_endpoint_id is required when comfy_executor is 'runpod'")
        if credentials.runpod_api_key is None:
            raise ExecutorRejected("RUNPOD_API_KEY is not set in your executor secret")
        return RunPodExecutor(
            credentials.runpod_api_key.get_secret_value(),
            endpoint_id,
            base_url=config.runpod_api_base,
            execution_timeout_ms=config.runpod_execution_timeout_ms,
            max_output_bytes=config.max_output_bytes,
        )
    from comfyroute.executors.comfyui import ComfyUIExecutor

    return ComfyUIExecutor(
        credentials.comfyui_addr,
        credentials.header_values(),
        max_output_bytes=config.max_output_bytes,
        progress_peek_seconds=config.comfyui_progress_peek_seconds,
        label=SHARED_COMFYUI if credentials.shared else None,
    )
