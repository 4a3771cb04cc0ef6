"""The WebSocket wire protocol: client commands and server messages.

Client commands use nodetool's envelope ``{"command": NAME, "data": {...}}``; server messages
are flat objects with a ``type`` field, as nodetool's are. ``parse_command`` is the one way a
raw frame becomes a typed command; every rejection is a ``ProtocolError`` whose message names
the offending field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

# A job id doubles as the Step Functions execution name (1-80 chars, no spaces or
# wildcards), the ComfyUI prompt_id and an S3 key prefix: keep it to a safe alphabet.
JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$"
# RunPod endpoint ids are pasted into a URL path: never accept anything else.
ENDPOINT_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
WORKFLOW_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"

JobId = Annotated[str, StringConstraints(pattern=JOB_ID_PATTERN)]
WorkflowId = Annotated[str, StringConstraints(pattern=WORKFLOW_ID_PATTERN)]
EndpointId = Annotated[str, StringConstraints(strip_whitespace=True, pattern=ENDPOINT_ID_PATTERN)]

# API Gateway WebSocket messages are at most 128 KB.
MAX_MESSAGE_BYTES = 128 * 1024


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def terminal(self) -> bool:
        return self not in (JobStatus.QUEUED, JobStatus.RUNNING)


class ExecutorKind(StrEnum):
    LOCAL = "local"
    RUNPOD = "runpod"


@dataclass(frozen=True)
class Limits:
    """Bounds on what one command may carry; the defaults match API Gateway's frame limit."""

    max_nodes: int = 2_000
    max_edges: int = 10_000
    max_body_bytes: int = MAX_MESSAGE_BYTES


DEFAULT_LIMITS = Limits()


class ProtocolError(ValueError):
    """A client frame that cannot be accepted; ``str()`` is safe to send back to the client."""

    def __init__(self, message: str, *, code: str = "bad_request", command: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.command = command


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Open(BaseModel):
    # Graph payloads come from editors that add their own keys (position, ui state, ...):
    # keep them, ignore them.
    model_config = ConfigDict(extra="allow")


# --------------------------------------------------------------------------- graph / prompt


class GraphNode(_Open):
    id: str
    type: str
    properties: dict[str, Any] | None = None
    data: dict[str, Any] | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_str(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @property
    def props(self) -> dict[str, Any]:
        """The node's inputs and metadata: ``properties`` or, in older graphs, ``data``."""
        return self.properties if self.properties is not None else (self.data or {})


class GraphEdge(_Open):
    id: str | None = None
    source: str
    target: str
    sourceHandle: str | None = None  # nodetool's field names
    targetHandle: str | None = None

    @field_validator("id", "source", "target", mode="before")
    @classmethod
    def _id_as_str(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v


class Graph(_Open):
    nodes: list[GraphNode]
    edges: list[GraphEdge] = Field(default_factory=list)


class ExecutorSettings(_Open):
    """Per-workflow executor settings; other workflow settings ride along untouched."""

    comfy_executor: ExecutorKind | None = None
    runpod_endpoint_id: EndpointId | None = None

    @field_validator("runpod_endpoint_id", mode="before")
    @classmethod
    def _blank_is_none(cls, v: Any) -> Any:
        return None if isinstance(v, str) and not v.strip() else v


# --------------------------------------------------------------------------- client commands


class RunJobData(_Model):
    job_id: JobId | None = None
    workflow_id: WorkflowId | None = None
    graph: Graph | None = None
    prompt: dict[str, Any] | None = None
    # Overrides applied to the converted prompt: {node_id: {input_name: value}}.
    params: dict[str, dict[str, Any]] | None = None
    settings: ExecutorSettings | None = None

    @model_validator(mode="after")
    def _one_source(self) -> RunJobData:
        if self.graph is not None and self.prompt is not None:
            raise ValueError("give either 'graph' or 'prompt', not both")
        if self.graph is None and self.prompt is None and self.workflow_id is None:
            raise ValueError("needs 'graph', 'prompt' or the 'workflow_id' of a saved workflow")
        return self


class JobRef(_Model):
    job_id: JobId


class ListJobsData(_Model):
    limit: int = Field(default=20, ge=1, le=100)


class SaveWorkflowData(_Model):
    workflow_id: WorkflowId
    name: str | None = Field(default=None, max_length=200)
    graph: Graph | None = None
    prompt: dict[str, Any] | None = None
    settings: ExecutorSettings | None = None

    @model_validator(mode="after")
    def _not_both(self) -> SaveWorkflowData:
        if self.graph is not None and self.prompt is not None:
            raise ValueError("give either 'graph' or 'prompt', not both")
        return self


class Empty(_Model):
    pass


class RunJob(_Model):
    command: Literal["run_job"]
    data: RunJobData


class CancelJob(_Model):
    command: Literal["cancel_job"]
    data: JobRef


class GetJob(_Model):
    command: Literal["get_job"]
    data: JobRef


class ListJobs(_Model):
    command: Literal["list_jobs"]
    data: ListJobsData = Field(default_factory=ListJobsData)


class SaveWorkflow(_Model):
    command: Literal["save_workflow"]
    data: SaveWorkflowData


class Ping(_Model):
    command: Literal["ping"]
    data: Empty = Field(default_factory=Empty)


ClientCommand = Annotated[RunJob | CancelJob | GetJob | ListJobs | SaveWorkflow | Ping, Field(discriminator="command")]
_COMMAND_ADAPTER: TypeAdapter[ClientCommand] = TypeAdapter(ClientCommand)
COMMANDS: tuple[str, ...] = ("run_job", "cancel_job", "get_job", "list_jobs", "save_workflow", "ping")


# --------------------------------------------------------------------------- server messages


class OutputValue(_Model):
    uri: str | None = None
    filename: str
    content_type: str
    size: int
    data: str | None = None  # base64, only when the whole message stays under the limit


class JobUpdate(_Model):
    type: Literal["job_update"] = "job_update"
    job_id: str
    workflow_id: str | None = None
    status: JobStatus
    executor: ExecutorKind | None = None
    error: str | None = None
    message: str | None = None
    duration: float | None = None  # seconds since the job was accepted


class NodeProgress(_Model):
    type: Literal["node_progress"] = "node_progress"
    job_id: str
    workflow_id: str | None = None
    node_id: str
    progress: float
    total: float


class OutputUpdate(_Model):
    type: Literal["output_update"] = "output_update"
    job_id: str
    workflow_id: str | None = None
    node_id: str
    node_name: str
    output_name: str
    output_type: str
    value: OutputValue


class JobOutput(_Model):
    node_id: str
    node_name: str
    output_name: str
    output_type: str
    value: OutputValue


class JobView(_Model):
    """One job as ``get_job`` / ``list_jobs`` show it to its owner."""

    job_id: str
    workflow_id: str | None = None
    status: JobStatus
    executor: ExecutorKind | None = None
    error: str | None = None
    message: str | None = None
    created_at: float
    updated_at: float
    duration: float | None = None
    outputs: list[JobOutput] = Field(default_factory=list)
    # How many outputs the job has; job_list leaves `outputs` out to stay small.
    output_count: int = 0


class JobMessage(_Model):
    type: Literal["job"] = "job"
    job: JobView


class JobList(_Model):
    type: Literal["job_list"] = "job_list"
    jobs: list[JobView]


class WorkflowSaved(_Model):
    type: Literal["workflow_saved"] = "workflow_saved"
    workflow_id: str
    settings: dict[str, Any] = Field(default_factory=dict)


class ErrorMessage(_Model):
    type: Literal["error"] = "error"
    message: str
    code: str = "bad_request"
    request: str | None = None  # the command that was refused
    job_id: str | None = None
    workflow_id: str | None = None


class Pong(_Model):
    type: Literal["pong"] = "pong"


ServerMessage = Annotated[
    JobUpdate | NodeProgress | OutputUpdate | JobMessage | JobList | WorkflowSaved | ErrorMessage | Pong,
    Field(discriminator="type"),
]
SERVER_MESSAGE_ADAPTER: TypeAdapter[ServerMessage] = TypeAdapter(ServerMessage)


def encode(message: BaseModel) -> str:
    """A server message as the JSON text frame that goes on the wire."""
    return message.model_dump_json(exclude_none=True)


def parse_server_message(raw: str | bytes) -> ServerMessage:
    return SERVER_MESSAGE_ADAPTER.validate_json(raw)


# --------------------------------------------------------------------------- parsing


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def describe_validation_error(err: ValidationError, *, prefix: tuple[str, ...] = ()) -> str:
    """One line per problem, each naming the field path, e.g. ``data.graph.nodes[3].type: ...``."""
    problems = []
    for e in err.errors(include_url=False):
        # The discriminator's tag adds a path element that means nothing to a client.
        loc = tuple(p for p in e["loc"] if p not in COMMANDS)
        where = _loc(prefix + loc) or "body"
        msg = e["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {msg}")
    return "; ".join(problems)


def parse_command(body: str | bytes | None, limits: Limits = DEFAULT_LIMITS) -> ClientCommand:
    """The typed client command in a raw frame, or a ``ProtocolError`` naming what is wrong."""
    if body is None or body in ("", b""):
        raise ProtocolError('empty message: send a JSON object {"command": ..., "data": {...}}')
    size = len(body.encode() if isinstance(body, str) else body)
    if size > limits.max_body_bytes:
        raise ProtocolError(
            f"message is {size} bytes; the limit is {limits.max_body_bytes} bytes",
            code="too_large",
        )
    try:
        raw = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"message is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ProtocolError(f"message must be a JSON object, not {type(raw).__name__}")
    command = raw.get("command")
    if not isinstance(command, str):
        raise ProtocolError(f"'command' is missing; known commands: {', '.join(COMMANDS)}")
    if command not in COMMANDS:
        raise ProtocolError(
            f"unknown command '{command[:64]}'; known commands: {', '.join(COMMANDS)}",
            code="unknown_command",
        )
    try:
        parsed = _COMMAND_ADAPTER.validate_python(raw)
    except ValidationError as exc:
        raise ProtocolError(describe_validation_error(exc), command=command) from None
    _check_limits(parsed, limits)
    return parsed


def _check_limits(cmd: ClientCommand, limits: Limits) -> None:
    graph = getattr(cmd.data, "graph", None)
    if graph is not None:
        if len(graph.nodes) > limits.max_nodes:
            raise ProtocolError(
                f"data.graph.nodes: {len(graph.nodes)} nodes; the limit is {limits.max_nodes}",
                code="too_large",
                command=cmd.command,
            )
        if len(graph.edges) > limits.max_edges:
            raise ProtocolError(
                f"data.graph.edges: {len(graph.edges)} edges; the limit is {limits.max_edges}",
                code="too_large",
                command=cmd.command,
            )
    prompt = getattr(cmd.data, "prompt", None)
    if prompt is not None and len(prompt) > limits.max_nodes:
        raise ProtocolError(
            f"data.prompt: {len(prompt)} nodes; the limit is {limits.max_nodes}",
            code="too_large",
            command=cmd.command,
        )


def protocol_json_schema() -> dict[str, Any]:
    """JSON Schema of every client command and server message, for client authors."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "comfyroute WebSocket protocol",
        "client_command": _COMMAND_ADAPTER.json_schema(),
        "server_message": SERVER_MESSAGE_ADAPTER.json_schema(),
    }
