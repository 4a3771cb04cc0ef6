"""Server messages: flat objects with a ``type`` field, as nodetool's are. ``comfyroute.messages``
builds every one of them; clients parse them with ``parse_server_message``.
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, TypeAdapter

from comfyroute.protocol import ExecutorKind, JobStatus
from comfyroute.protocol.base import WireModel


class OutputValue(WireModel):
    # What nodetool's output renderer keys on: image, video, audio, text, latent, file.
    type: str | None = None
    uri: str | None = None
    filename: str
    content_type: str
    size: int
    data: str | None = None  # base64, only when the whole message stays under the limit


class NodeProblem(WireModel):
    """One problem of a workflow, where a client can show it: the prompt's node id (``"5"``,
    ``"11:10:6"`` inside subgraphs), its class, the input, and what is wrong. Parts that are not
    known are left out. From the conversion, or from ComfyUI's ``node_errors``."""

    node_id: str | None = None
    class_type: str | None = None
    input: str | None = None
    message: str


class JobState(WireModel):
    """What every job message says of the job: ``job_update`` and the views of ``get_job`` and
    ``list_jobs``."""

    job_id: str
    workflow_id: str | None = None
    status: JobStatus
    executor: ExecutorKind | None = None
    error: str | None = None
    # A failed job's problems per node, besides the readable ``error``; at most a bounded number,
    # ``errors_omitted`` says how many more there were.
    errors: list[NodeProblem] | None = None
    errors_omitted: int | None = None
    message: str | None = None
    duration: float | None = None  # seconds since the job was accepted


class OutputMetadata(WireModel):
    """nodetool's ``output_update.metadata`` (its schema requires one)."""

    filename: str
    content_type: str
    size: int


class JobUpdate(JobState):
    type: Literal["job_update"] = "job_update"
    queue_position: int | None = None  # 1 = next to run, when the executor reports it
    # The command this update answers (run_job, cancel_job); absent on pushes from the loop.
    request: str | None = None
    # On a terminal update: how many output_update messages came before it.
    output_count: int | None = None
    # Per job, 1, 2, 3, ... on every message of the job's stream (nodetool's replay cursor).
    job_seq: int | None = None
    # RunPod's own timings of a finished job (queued until a worker took it; running), in ms.
    delay_ms: int | None = None
    execution_ms: int | None = None


class NodeProgress(WireModel):
    type: Literal["node_progress"] = "node_progress"
    job_id: str
    workflow_id: str | None = None
    node_id: str
    progress: float
    total: float
    job_seq: int | None = None


NodeStatus = Literal["running", "completed", "error"]


class NodeUpdate(WireModel):
    """One node's state, in nodetool's shape: ``node_type`` is the graph's ``comfy.<class>``."""

    type: Literal["node_update"] = "node_update"
    job_id: str
    workflow_id: str | None = None
    node_id: str
    node_name: str
    node_type: str
    status: NodeStatus
    error: str | None = None
    result: dict[str, Any] | None = None
    # ComfyUI did not run the node: its result from an earlier prompt was reused.
    cached: bool | None = None
    job_seq: int | None = None


class JobOutput(WireModel):
    """One output file as clients see it (the wire view of ``executors.base.OutputFile``)."""

    node_id: str
    node_name: str
    output_name: str
    output_type: str
    value: OutputValue


class OutputUpdate(JobOutput):
    """One output file of a job, pushed as it becomes available."""

    type: Literal["output_update"] = "output_update"
    job_id: str
    workflow_id: str | None = None
    metadata: OutputMetadata | None = None
    job_seq: int | None = None


class JobResumed(WireModel):
    """The answer to ``reconnect_job``, before the replay (nodetool's ``job_resumed``):
    ``last_seq`` is the job's newest message, ``replay_count`` how many follow."""

    type: Literal["job_resumed"] = "job_resumed"
    job_id: str
    workflow_id: str | None = None
    status: Literal["running", "finished", "unknown"]
    last_seq: int
    replay_count: int
    replay_incomplete: bool = False


class JobInput(WireModel):
    """One input file of a job, as ``get_job`` lists it."""

    name: str
    size: int
    content_type: str


class JobView(JobState):
    """One job as ``get_job`` / ``list_jobs`` show it to its owner."""

    created_at: float
    updated_at: float
    outputs: list[JobOutput] = Field(default_factory=list)
    # How many outputs the job has; job_list leaves `outputs` out to stay small.
    output_count: int = 0
    inputs: list[JobInput] = Field(default_factory=list)  # the files the job was given
    # get_job's page of outputs: where it starts, and where the next one does (absent on the last).
    outputs_offset: int | None = None
    outputs_next: int | None = None


class JobMessage(WireModel):
    type: Literal["job"] = "job"
    request: str | None = None  # "get_job"
    job: JobView


class JobList(WireModel):
    type: Literal["job_list"] = "job_list"
    request: str | None = None  # "list_jobs"
    jobs: list[JobView]


class WorkflowSaved(WireModel):
    type: Literal["workflow_saved"] = "workflow_saved"
    request: str | None = None  # "save_workflow"
    workflow_id: str
    settings: dict[str, Any] = Field(default_factory=dict)


class ErrorMessage(WireModel):
    type: Literal["error"] = "error"
    message: str
    code: str = "bad_request"
    request: str | None = None  # the command that was refused
    job_id: str | None = None
    workflow_id: str | None = None
    errors: list[NodeProblem] | None = None  # as on the failed job's job_update
    errors_omitted: int | None = None


class Pong(WireModel):
    type: Literal["pong"] = "pong"
    ts: float | None = None  # server time, seconds (nodetool's pong schema requires it)


class UploadReady(WireModel):
    """The answer to ``request_upload``: an S3 presigned POST. Send one multipart/form-data POST
    to ``url`` with every ``fields`` entry, then the file as the field ``file``; the policy
    admits exactly ``max_bytes`` bytes of the declared content type until ``expires_in`` runs
    out. Then name ``upload_id`` in ``run_job`` (``files[].upload_id`` or ``workflow_upload_id``)."""

    type: Literal["upload_ready"] = "upload_ready"
    upload_id: str
    url: str
    fields: dict[str, str]
    method: Literal["POST"] = "POST"
    expires_in: int  # seconds the POST is accepted for
    max_bytes: int
    filename: str | None = None  # echoed from the request
    ref: str | None = None  # echoed from the request


# The messages of a job's stream: numbered (job_seq), logged and replayed on reconnect_job.
JobStreamMessage = JobUpdate | NodeProgress | NodeUpdate | OutputUpdate

ServerMessage = Annotated[
    JobUpdate
    | NodeProgress
    | NodeUpdate
    | OutputUpdate
    | JobResumed
    | JobMessage
    | JobList
    | WorkflowSaved
    | ErrorMessage
    | Pong
    | UploadReady,
    Field(discriminator="type"),
]


@cache
def server_message_adapter() -> TypeAdapter[ServerMessage]:
    # Built on first use: only clients parse server messages; the handlers only build them.
    return TypeAdapter(ServerMessage)


def encode(message: BaseModel) -> str:
    """A server message as the JSON text frame that goes on the wire."""
    return message.model_dump_json(exclude_none=True)


def parse_server_message(raw: str | bytes) -> ServerMessage:
    return server_message_adapter().validate_json(raw)
