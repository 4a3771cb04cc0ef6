"""What every executor shares: the interface, its result types and its errors.

An executor runs one ComfyUI API prompt somewhere else. It never loops: ``status()`` is one
look, and the Step Functions poll loop decides when to look again.
"""

from __future__ import annotations

import mimetypes
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from comfyroute.protocol import ExecutorKind, JobStatus

Prompt = dict[str, Any]
OutputKind = Literal["image", "video", "audio", "text", "latent", "file"]


class ExecutorError(Exception):
    """Base of executor failures. ``str()`` never contains credentials."""


class ExecutorRejected(ExecutorError):
    """The executor refused the job (validation errors, bad request): the job fails."""


class ExecutorUnavailable(ExecutorError):
    """The executor could not be reached or answered 5xx after retries: worth trying again later."""


class Progress(BaseModel):
    model_config = ConfigDict(frozen=True)

    node_id: str | None = None
    value: float
    max: float


class ExecutorStatus(BaseModel):
    """One look at a job on its executor."""

    model_config = ConfigDict(frozen=True)

    state: JobStatus
    error: str | None = None
    message: str | None = None
    queue_position: int | None = None
    progress: Progress | None = None


class OutputFile(BaseModel):
    """One file a job produced: either its bytes or a URL where the executor left it."""

    model_config = ConfigDict(frozen=True)

    node_id: str
    output_name: str  # the key under outputs[node]: images, gifs, audio, text, ...
    kind: OutputKind
    filename: str
    content_type: str
    data: bytes | None = Field(default=None, repr=False)
    url: str | None = None

    @property
    def size(self) -> int:
        return len(self.data) if self.data is not None else 0


def guess_content_type(filename: str, default: str = "application/octet-stream") -> str:
    ctype, _ = mimetypes.guess_type(filename)
    return ctype or default


@runtime_checkable
class Executor(Protocol):
    kind: ExecutorKind

    def submit(self, prompt: Prompt, job_id: str) -> str:
        """Start the prompt; returns the executor's job id. Raises ExecutorRejected/Unavailable."""
        ...

    def status(self, executor_job_id: str, *, submitted_at: float | None = None) -> ExecutorStatus:
        """One look at the job. ``submitted_at`` (epoch seconds) bounds the grace for a job
        the executor does not know yet."""
        ...

    def outputs(self, executor_job_id: str) -> list[OutputFile]:
        """Every output file of a completed job, with its bytes (or URL) fetched."""
        ...

    def cancel(self, executor_job_id: str) -> None:
        """Best effort: stop the job if it is still pending or running."""
        ...
