"""What every executor shares: the interface, its result types and its errors.

An executor runs one ComfyUI API prompt somewhere else. It never loops: ``status()`` is one
look, and the Step Functions poll loop decides when to look again.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

from comfyroute.protocol import ExecutorKind, JobStatus
from comfyroute.protocol.server_messages import NodeProblem

if TYPE_CHECKING:
    from comfyroute.executors.inputs import InputFile

Prompt = dict[str, Any]
OutputKind = Literal["image", "video", "audio", "text", "latent", "file"]
# How one node of a finished prompt ended (ComfyUI's history says; RunPod does not).
NodeOutcome = Literal["completed", "cached", "error"]


class ExecutorError(Exception):
    """Base of executor failures. ``str()`` never contains credentials; ``details`` are the
    problems the executor named per node (ComfyUI's ``node_errors``), for clients to show."""

    def __init__(self, message: str = "", *, details: Iterable[NodeProblem] = ()) -> None:
        super().__init__(message)
        self.details: list[NodeProblem] = list(details)


class ExecutorRejected(ExecutorError):
    """The executor refused the job (validation errors, bad request): the job fails."""


class ExecutorUnavailable(ExecutorError):
    """The executor could not be reached or answered 5xx after retries: worth trying again later.
    Step Functions retries the poll on this class name: keep it."""


class Lenient(BaseModel):
    """A body from an executor's server. Servers grow fields between releases: read what we
    know, ignore the rest."""

    # Built on first use: a server's answers are parsed only once a job reaches it.
    model_config = ConfigDict(extra="ignore", defer_build=True)


class Progress(BaseModel):
    """How far the running node is: what an executor reports and the job record keeps."""

    model_config = ConfigDict(frozen=True)

    node_id: str | None = None
    value: float
    max: float


class ExecutorStatus(BaseModel):
    """One look at a job on its executor."""

    model_config = ConfigDict(frozen=True)

    state: JobStatus
    error: str | None = None
    errors: list[NodeProblem] | None = None  # a failure's node, where the executor names it
    message: str | None = None
    queue_position: int | None = None
    progress: Progress | None = None
    # Per node, once the prompt has ended, when the executor reports it.
    nodes: dict[str, NodeOutcome] | None = None
    # RunPod's timings of a finished job (delayTime, executionTime), in ms.
    delay_ms: int | None = None
    execution_ms: int | None = None


# The node_id of RunPod's files: its worker names no node (jobs.follow attributes them to the
# prompt's one output node).
RUNPOD_NODE_ID = "runpod"


class OutputFile(BaseModel):
    """One file a job produced, from the executor's report to the job record.

    The executor fills in what it knows: the bytes (``data``, never stored or dumped) or a
    ``url`` where it left the file. Storing it adds the S3 ``key`` and the class name of the
    node that made it (``node_name``). Clients see it as ``protocol.server_messages.JobOutput``.
    """

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    node_id: str
    output_name: str  # the key under outputs[node]: images, gifs, audio, text, ...
    # Job records written before this model was the only one call it output_type.
    kind: OutputKind = Field(validation_alias=AliasChoices("kind", "output_type"))
    filename: str
    content_type: str
    size: int = 0
    node_name: str | None = None
    key: str | None = None  # S3 key in the outputs bucket, once stored
    url: str | None = None  # where the executor left it, when we did not copy it
    data: bytes | None = Field(default=None, repr=False, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _size_of_data(cls, values: Any) -> Any:
        if isinstance(values, dict) and isinstance(values.get("data"), bytes) and "size" not in values:
            return {**values, "size": len(values["data"])}
        return values


def guess_content_type(filename: str, default: str = "application/octet-stream") -> str:
    ctype, _ = mimetypes.guess_type(filename)
    return ctype or default


@runtime_checkable
class Executor(Protocol):
    kind: ExecutorKind

    def submit(self, prompt: Prompt, job_id: str) -> str:
        """Start the prompt; returns the executor's job id. Raises ExecutorRejected/Unavailable."""
        ...

    def submit_with_files(self, prompt: Prompt, job_id: str, files: Sequence[InputFile]) -> str:
        """``submit`` with the job's input files, each reaching the executor under its ``name``
        (ComfyUI: the job's own input subfolder, references rewritten; RunPod: ``input.images``).
        ``ExecutorRejected`` names a file the executor refused."""
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
