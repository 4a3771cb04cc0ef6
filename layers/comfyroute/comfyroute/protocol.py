"""The WebSocket wire protocol: client commands and server messages.

Client commands use nodetool's envelope ``{"command": NAME, "data": {...}}``; server messages
are flat objects with a ``type`` field, as nodetool's are. ``parse_command`` is the one way a
raw frame becomes a typed command; every rejection is a ``ProtocolError`` whose message names
the offending field.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Mapping
from enum import StrEnum
from functools import cache
from typing import Annotated, Any, Literal, NamedTuple, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

# Re-exported: clients check their frames against it too.
from comfyroute.defaults import MAX_MESSAGE_BYTES as MAX_MESSAGE_BYTES

# A job id doubles as the Step Functions execution name (1-80 chars, no spaces or
# wildcards), the ComfyUI prompt_id and an S3 key prefix: keep it to a safe alphabet.
JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$"
# RunPod endpoint ids are pasted into a URL path: never accept anything else.
ENDPOINT_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
WORKFLOW_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"

JobId = Annotated[str, StringConstraints(pattern=JOB_ID_PATTERN)]
WorkflowId = Annotated[str, StringConstraints(pattern=WORKFLOW_ID_PATTERN)]
EndpointId = Annotated[str, StringConstraints(strip_whitespace=True, pattern=ENDPOINT_ID_PATTERN)]
# An input file's name is what the workflow spells (LoadImage's ``image: "input.png"``) and what
# every executor stores as one plain file name: no folders, no leading dot or space, no trailing
# dot or space (Windows drops those).
INPUT_NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9 ._()+,=@-]{0,127}$"
# Upload ids go into an S3 key: a safe alphabet only. Which ids exist is the upload store's to
# say, so an id of the right alphabet that was never issued is "unknown", not malformed.
UPLOAD_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
UPLOAD_REF_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"

_UPLOAD_ID = re.compile(UPLOAD_ID_PATTERN)


def _upload_id(v: str) -> str:
    if not _UPLOAD_ID.match(v):
        raise ValueError(f"{v[:80]!r} is not an upload id (use the upload_id of an upload_ready message)")
    return v


UploadId = Annotated[str, AfterValidator(_upload_id)]


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


class Limits(NamedTuple):
    """Bounds on what one command may carry; the defaults match API Gateway's frame limit."""

    max_nodes: int = 2_000
    max_edges: int = 10_000
    max_body_bytes: int = MAX_MESSAGE_BYTES
    max_files: int = 32
    # JSON nesting (objects and arrays) of a whole frame: a nodetool graph needs about 8, and
    # Python's and pydantic's own limits (parse, serialize) are far beyond this.
    max_depth: int = 64


DEFAULT_LIMITS = Limits()


class ProtocolError(ValueError):
    """A client frame that cannot be accepted; ``str()`` is safe to send back to the client."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "bad_request",
        command: str | None = None,
        job_id: str | None = None,
        workflow_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.command = command
        # The ids the refused frame names, when they are well formed: nodetool routes an
        # error to a run by them and drops one without.
        self.job_id = job_id
        self.workflow_id = workflow_id


# Every model builds its validator on first use, not at import: each handler uses a few of
# these models (the default route only ping, pong and error), and building all of them would
# be a good part of every cold start.
class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class _Open(BaseModel):
    # Graph payloads come from editors that add their own keys (position, ui state, ...):
    # keep them, ignore them.
    model_config = ConfigDict(extra="allow", defer_build=True)


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

    @field_validator("id")
    @classmethod
    def _id_not_empty(cls, v: str) -> str:
        # An empty id reaches ComfyUI as a node named "" and breaks every later step of the job.
        return _not_blank(v)

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

    @field_validator("source", "target")
    @classmethod
    def _end_not_empty(cls, v: str) -> str:
        return _not_blank(v)


class Graph(_Open):
    nodes: list[GraphNode]
    edges: list[GraphEdge] = Field(default_factory=list)


class ExecutorSettings(_Open):
    """Per-workflow executor settings; other workflow settings ride along untouched."""

    comfy_executor: ExecutorKind | None = None
    runpod_endpoint_id: EndpointId | None = None

    @model_validator(mode="before")
    @classmethod
    def _keys_not_empty(cls, v: Any) -> Any:
        if isinstance(v, dict) and any(not isinstance(k, str) or not k.strip() for k in v):
            raise ValueError("setting names must not be empty")
        return v

    @field_validator("runpod_endpoint_id", mode="before")
    @classmethod
    def _blank_is_none(cls, v: Any) -> Any:
        return None if isinstance(v, str) and not v.strip() else v

    def merged(self, override: ExecutorSettings | None) -> ExecutorSettings:
        """These settings with each key ``override`` sets on top (a request's settings win,
        key by key, over its saved workflow's)."""
        if override is None:
            return self
        return ExecutorSettings.model_validate(
            {
                **self.model_dump(mode="json", exclude_unset=True),
                **override.model_dump(mode="json", exclude_unset=True),
            }
        )

    def stored(self) -> dict[str, Any]:
        """The settings as a saved workflow keeps them and ``workflow_saved`` shows them: the
        keys that were set, as JSON values."""
        return self.model_dump(mode="json", exclude_unset=True)


class EditorWorkflow(_Open):
    """A ComfyUI editor workflow (workflow.json as ComfyUI's Save writes it): LiteGraph ``nodes``
    with ``widgets_values``, ``links`` (arrays in schema 0.4, objects in schema 1), groups,
    ``definitions.subgraphs`` and whatever else the frontend keeps. Only the outline is checked
    here; converting it needs the executor's ``/object_info`` and names problems per node."""

    nodes: list[dict[str, Any]]
    links: list[Any] = Field(default_factory=list)

    def subgraphs(self) -> list[dict[str, Any]]:
        definitions = (self.model_extra or {}).get("definitions")
        entries = definitions.get("subgraphs") if isinstance(definitions, dict) else None
        return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []

    def counts(self) -> tuple[int, int]:
        """Nodes and links, those inside subgraph definitions included."""
        nodes, links = len(self.nodes), len(self.links)
        for sub in self.subgraphs():
            sub_nodes, sub_links = sub.get("nodes"), sub.get("links")
            nodes += len(sub_nodes) if isinstance(sub_nodes, list) else 0
            links += len(sub_links) if isinstance(sub_links, list) else 0
        return nodes, links


_INPUT_NAME = re.compile(INPUT_NAME_PATTERN)


def input_name_problem(name: object) -> str | None:
    """Why ``name`` cannot name an input file, or None when it can."""
    if isinstance(name, str) and _INPUT_NAME.match(name) and not name.endswith((" ", ".")):
        return None
    shown = repr(name[:80]) if isinstance(name, str) else type(name).__name__
    return (
        f"input file name {shown} is not allowed: use 1-128 letters, digits, spaces and . _ ( ) + , = @ -, "
        "starting with a letter, digit or _ (no folders), as the workflow spells it (e.g. input.png)"
    )


class InputFileRef(_Model):
    """One input file of ``run_job``: an earlier upload (``upload_id``) or, for a file small
    enough to fit in the frame, its bytes inline (``data``, base64). The executor gets it as
    ``name``, the name the workflow uses for it."""

    name: str
    upload_id: UploadId | None = None
    data: str | None = Field(default=None, repr=False)
    content_type: str | None = Field(default=None, max_length=255)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        problem = input_name_problem(v)
        if problem:
            raise ValueError(problem)
        return v

    @field_validator("data")
    @classmethod
    def _base64(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            base64.b64decode(v, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("not valid base64 (standard alphabet, with padding)") from None
        return v

    @model_validator(mode="after")
    def _one_source(self) -> InputFileRef:
        if (self.upload_id is None) == (self.data is None):
            raise ValueError(f"file '{self.name}' needs exactly one of 'upload_id' or 'data'")
        if self.upload_id is not None and self.content_type is not None:
            raise ValueError(
                f"file '{self.name}': 'content_type' goes with inline 'data'; "
                "an upload has the type it was uploaded with"
            )
        return self

    def decoded(self) -> bytes | None:
        """The inline bytes, or None for an upload."""
        return None if self.data is None else base64.b64decode(self.data, validate=True)


def _unique_names(files: list[InputFileRef] | None) -> list[InputFileRef] | None:
    if not files:
        return files
    seen: set[str] = set()
    twice: list[str] = []
    for f in files:
        if f.name in seen and f.name not in twice:
            twice.append(f.name)
        seen.add(f.name)
    if twice:
        raise ValueError(f"each input file name may be given once; given more than once: {', '.join(twice[:10])}")
    return files


def _editor_graph_as_workflow(data: Any) -> Any:
    """An editor workflow sent as ``graph`` (clients that send every file there) is taken as the
    ``workflow`` it is: told by its shape (``conversion.workflow.is_editor_workflow``)."""
    graph = data.get("graph") if isinstance(data, dict) else None
    if not isinstance(graph, dict) or "edges" in graph or data.get("workflow") is not None:
        return data
    # Imported only for such a graph: the routes that only build messages load no conversion.
    from comfyroute.conversion.workflow import is_editor_workflow

    if is_editor_workflow(graph):
        data = {**data, "workflow": graph}
        del data["graph"]
    return data


def _workflow_shapes(data: Any) -> Any:
    """A saved nodetool workflow unwrapped to its graph first, then an editor workflow sent as
    ``graph`` taken as ``workflow``: one validator, so the order is ours, not pydantic's."""
    return _editor_graph_as_workflow(_saved_workflow_unwrapped(data))


# The workflow sources of run_job: one of these, or a saved workflow by workflow_id alone.
_RUN_SOURCES = ("graph", "prompt", "workflow", "workflow_upload_id")
_SAVE_SOURCES = ("graph", "prompt", "workflow")


def _given(model: BaseModel, names: tuple[str, ...]) -> list[str]:
    return [name for name in names if getattr(model, name) is not None]


def _quoted(names: list[str] | tuple[str, ...], last: str) -> str:
    items = [f"'{n}'" for n in names]
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {last} {items[-1]}"


def _not_blank(v: str) -> str:
    if not v.strip():
        raise ValueError("must not be empty")
    return v


def _prompt_ids_not_blank(v: dict[str, Any] | None) -> dict[str, Any] | None:
    if v is not None and any(not k.strip() for k in v):
        raise ValueError("node ids must not be empty")
    return v


def _saved_workflow_unwrapped(data: Any) -> Any:
    """A saved nodetool workflow ``{id, name, graph, settings, ...}`` sent as ``graph`` or
    ``prompt`` is taken as its graph (its settings ride along under the request's own), or
    refused in one line when its graph is not a graph."""
    if not isinstance(data, dict):
        return data
    for field in ("graph", "prompt"):
        value = data.get(field)
        if not (isinstance(value, dict) and "graph" in value and "nodes" not in value and "class_type" not in value):
            continue
        inner = value.get("graph")
        if not (isinstance(inner, dict) and isinstance(inner.get("nodes"), list)):
            raise ValueError(
                f"'{field}' is a saved nodetool workflow whose 'graph' holds no nodes: "
                "send its 'graph' ({nodes, edges})"
            )
        from comfyroute.conversion.detect import detect_workflow

        detected = detect_workflow(value)
        data = {k: v for k, v in data.items() if k != field}
        if "graph" in data:
            raise ValueError("give either 'graph' or 'prompt', not both")
        data["graph"] = dict(detected.body)
        if detected.settings and isinstance(detected.settings, dict):
            request = data.get("settings")
            data["settings"] = {**detected.settings, **(request if isinstance(request, dict) else {})}
    return data


# --------------------------------------------------------------------------- client commands


def _dropped(value: Any) -> None:
    """What a field the server never uses becomes once it is accepted: nothing, so it cannot
    reach a log, a record or an error message."""
    return None


class RunJobData(_Model):
    """run_job's data: comfyroute's fields, and every field nodetool's ``WorkflowRunner.run``
    sets, accepted by name (docs/nodetool.md says which are used). Anything else is refused."""

    job_id: JobId | None = None
    workflow_id: WorkflowId | None = None
    graph: Graph | None = None
    prompt: dict[str, Any] | None = None
    workflow: EditorWorkflow | None = None  # a ComfyUI editor workflow.json, as saved
    # An upload (request_upload) holding the workflow JSON, for workflows over one frame.
    workflow_upload_id: UploadId | None = None
    # Overrides applied to the converted prompt: {node_id: {input_name: value}}.
    params: dict[str, dict[str, Any]] | None = None
    settings: ExecutorSettings | None = None
    # Input files, each handed to the executor under its name (LoadImage's image: "input.png").
    files: list[InputFileRef] | None = None

    @field_validator("files")
    @classmethod
    def _files_unique(cls, v: list[InputFileRef] | None) -> list[InputFileRef] | None:
        return _unique_names(v)

    # nodetool's run_job_request fields. Only job_type is checked ("workflow" is the only kind
    # comfyroute runs); the rest describe nodetool's own server and are ignored.
    type: Literal["run_job_request"] | None = None
    job_type: Literal["workflow"] | None = None
    api_url: str | None = Field(default=None, max_length=2048)
    execution_strategy: str | None = Field(default=None, max_length=64)
    explicit_types: bool | None = None
    resource_limits: dict[str, Any] | None = None
    job_name: str | None = Field(default=None, max_length=200)
    concurrent: bool | None = None
    # Never used: the user is the one the connection's token belongs to, and nodetool's
    # auth_token (its Supabase session, or "local_token") is not comfyroute's. Dropped at parse.
    user_id: None = Field(default=None, exclude=True, repr=False)
    auth_token: None = Field(default=None, exclude=True, repr=False)

    @field_validator("user_id", "auth_token", mode="before")
    @classmethod
    def _never_kept(cls, value: Any) -> None:
        return _dropped(value)

    @model_validator(mode="before")
    @classmethod
    def _workflow_shapes(cls, data: Any) -> Any:
        return _workflow_shapes(data)

    @field_validator("prompt")
    @classmethod
    def _prompt_ids(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        return _prompt_ids_not_blank(v)

    @model_validator(mode="after")
    def _one_source(self) -> RunJobData:
        given = _given(self, _RUN_SOURCES)
        if len(given) > 1:
            raise ValueError(f"give only one of {_quoted(_RUN_SOURCES, 'or')}; got {_quoted(given, 'and')}")
        if not given and self.workflow_id is None:
            raise ValueError(
                "needs 'graph', 'prompt', 'workflow' (a ComfyUI editor workflow), 'workflow_upload_id' "
                "or the 'workflow_id' of a saved workflow"
            )
        return self


class JobRef(_Model):
    job_id: JobId
    # nodetool names the workflow beside the job; when given it must be the job's.
    workflow_id: WorkflowId | None = None


class ReconnectJobData(_Model):
    """nodetool's reconnect_job: follow ``job_id`` on this connection, replaying every
    message after ``last_seq`` (all of them without it)."""

    job_id: JobId
    workflow_id: WorkflowId | None = None
    last_seq: int | None = Field(default=None, ge=0, le=2**53 - 1)


# get_job pages a job's outputs so every answer fits one frame: ``outputs_offset`` is where the
# page starts, ``outputs_limit`` caps its length (the server may send fewer, to stay under the
# frame limit); the answer's ``outputs_next`` is the offset of the next page, absent on the last.
MAX_OUTPUTS_PAGE = 500


class GetJobData(_Model):
    job_id: JobId
    workflow_id: WorkflowId | None = None  # as JobRef: nodetool names the workflow beside the job
    outputs_offset: int = Field(default=0, ge=0)
    outputs_limit: int | None = Field(default=None, ge=1, le=MAX_OUTPUTS_PAGE)


class ListJobsData(_Model):
    limit: int = Field(default=20, ge=1, le=100)


class SaveWorkflowData(_Model):
    workflow_id: WorkflowId
    name: str | None = Field(default=None, max_length=200)
    graph: Graph | None = None
    prompt: dict[str, Any] | None = None
    workflow: EditorWorkflow | None = None  # a ComfyUI editor workflow.json, as saved
    settings: ExecutorSettings | None = None

    @model_validator(mode="before")
    @classmethod
    def _workflow_shapes(cls, data: Any) -> Any:
        return _workflow_shapes(data)

    @field_validator("prompt")
    @classmethod
    def _prompt_ids(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        return _prompt_ids_not_blank(v)

    @model_validator(mode="after")
    def _not_both(self) -> SaveWorkflowData:
        given = _given(self, _SAVE_SOURCES)
        if len(given) > 1:
            raise ValueError(f"give only one of {_quoted(_SAVE_SOURCES, 'or')}; got {_quoted(given, 'and')}")
        return self


class RequestUploadData(_Model):
    """Ask for an upload: the file's name, content type and exact size in bytes."""

    filename: str = Field(min_length=1, max_length=255)
    content_type: str = Field(min_length=1, max_length=255)
    size: int = Field(ge=1)
    # Echoed in upload_ready, so a client with several uploads in flight can pair the answers.
    ref: Annotated[str, StringConstraints(pattern=UPLOAD_REF_PATTERN)] | None = None


class Empty(_Model):
    pass


class _Command(_Model):
    """A client command. nodetool's envelope repeats the command as ``type``
    (``{type: "run_job", command: "run_job", data}``): accepted when it says the same."""

    command: str
    type: str | None = None

    @model_validator(mode="after")
    def _type_is_the_command(self) -> Self:
        if self.type is not None and self.type != self.command:
            raise ValueError(f"type '{self.type[:64]}' differs from command '{self.command}'")
        return self


class RunJob(_Command):
    command: Literal["run_job"]
    data: RunJobData


class CancelJob(_Command):
    command: Literal["cancel_job"]
    data: JobRef


class GetJob(_Command):
    command: Literal["get_job"]
    data: GetJobData


class ListJobs(_Command):
    command: Literal["list_jobs"]
    data: ListJobsData = Field(default_factory=ListJobsData)


class SaveWorkflow(_Command):
    command: Literal["save_workflow"]
    data: SaveWorkflowData


class ReconnectJob(_Command):
    command: Literal["reconnect_job"]
    data: ReconnectJobData


class Ping(_Command):
    """``{"command": "ping"}``, or nodetool's heartbeat ``{type: "ping", ts}``."""

    command: Literal["ping"]
    data: Empty = Field(default_factory=Empty)
    ts: float | None = None


class RequestUpload(_Command):
    command: Literal["request_upload"]
    data: RequestUploadData


class ClientPong(_Command):
    """nodetool's answer to a server ping (comfyroute sends none): accepted, not answered."""

    command: Literal["pong"]
    ts: float | None = None


class ToolsManifest(_Command):
    """nodetool's ``client_tools_manifest``, sent on every open: the browser tools it offers to
    an agent. comfyroute runs no agent: accepted without an answer (see docs/nodetool.md)."""

    command: Literal["client_tools_manifest"]
    tools: list[Any] = Field(default_factory=list, max_length=1000)


AnyCommand = (
    RunJob
    | CancelJob
    | GetJob
    | ListJobs
    | SaveWorkflow
    | ReconnectJob
    | Ping
    | ClientPong
    | ToolsManifest
    | RequestUpload
)
ClientCommand = Annotated[AnyCommand, Field(discriminator="command")]
# parse_command validates a frame with its own command's model, so a route builds the
# validators of the commands it is sent and no others.
COMMAND_MODELS: dict[str, type[AnyCommand]] = {
    "run_job": RunJob,
    "cancel_job": CancelJob,
    "get_job": GetJob,
    "list_jobs": ListJobs,
    "save_workflow": SaveWorkflow,
    "reconnect_job": ReconnectJob,
    "ping": Ping,
    "request_upload": RequestUpload,
    "pong": ClientPong,
    "client_tools_manifest": ToolsManifest,
}
COMMANDS: tuple[str, ...] = tuple(COMMAND_MODELS)
# nodetool's frames that carry no ``command``, only ``type`` (WebSocketManager's liveness
# frames, GlobalWebSocketManager's tools manifest).
CONTROL_FRAMES = frozenset({"ping", "pong", "client_tools_manifest"})
# nodetool commands comfyroute does not serve: each answered with one ``unsupported`` error
# naming it (with the job's ids, so nodetool can route it).
UNSUPPORTED_COMMANDS: tuple[str, ...] = ("pause_job", "resume_job", "stream_input", "end_input_stream")


# --------------------------------------------------------------------------- server messages


class OutputValue(_Model):
    # What nodetool's output renderer keys on: image, video, audio, text, latent, file.
    type: str | None = None
    uri: str | None = None
    filename: str
    content_type: str
    size: int
    data: str | None = None  # base64, only when the whole message stays under the limit


class NodeProblem(_Model):
    """One problem of a workflow, where a client can show it: the prompt's node id (``"5"``,
    ``"11:10:6"`` inside subgraphs), its class, the input, and what is wrong. Parts that are not
    known are left out. From the conversion, or from ComfyUI's ``node_errors``."""

    node_id: str | None = None
    class_type: str | None = None
    input: str | None = None
    message: str


class JobState(_Model):
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


class OutputMetadata(_Model):
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


class NodeProgress(_Model):
    type: Literal["node_progress"] = "node_progress"
    job_id: str
    workflow_id: str | None = None
    node_id: str
    progress: float
    total: float
    job_seq: int | None = None


NodeStatus = Literal["running", "completed", "error"]


class NodeUpdate(_Model):
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


class JobOutput(_Model):
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


class JobResumed(_Model):
    """The answer to ``reconnect_job``, before the replay (nodetool's ``job_resumed``):
    ``last_seq`` is the job's newest message, ``replay_count`` how many follow."""

    type: Literal["job_resumed"] = "job_resumed"
    job_id: str
    workflow_id: str | None = None
    status: Literal["running", "finished", "unknown"]
    last_seq: int
    replay_count: int
    replay_incomplete: bool = False


class JobInput(_Model):
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


class JobMessage(_Model):
    type: Literal["job"] = "job"
    request: str | None = None  # "get_job"
    job: JobView


class JobList(_Model):
    type: Literal["job_list"] = "job_list"
    request: str | None = None  # "list_jobs"
    jobs: list[JobView]


class WorkflowSaved(_Model):
    type: Literal["workflow_saved"] = "workflow_saved"
    request: str | None = None  # "save_workflow"
    workflow_id: str
    settings: dict[str, Any] = Field(default_factory=dict)


class ErrorMessage(_Model):
    type: Literal["error"] = "error"
    message: str
    code: str = "bad_request"
    request: str | None = None  # the command that was refused
    job_id: str | None = None
    workflow_id: str | None = None
    errors: list[NodeProblem] | None = None  # as on the failed job's job_update
    errors_omitted: int | None = None


class Pong(_Model):
    type: Literal["pong"] = "pong"
    ts: float | None = None  # server time, seconds (nodetool's pong schema requires it)


class UploadReady(_Model):
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
def _command_adapter() -> TypeAdapter[ClientCommand]:
    return TypeAdapter(ClientCommand)


@cache
def server_message_adapter() -> TypeAdapter[ServerMessage]:
    # Built on first use: only clients parse server messages; the handlers only build them.
    return TypeAdapter(ServerMessage)


def encode(message: BaseModel) -> str:
    """A server message as the JSON text frame that goes on the wire."""
    return message.model_dump_json(exclude_none=True)


def parse_server_message(raw: str | bytes) -> ServerMessage:
    return server_message_adapter().validate_json(raw)


# --------------------------------------------------------------------------- parsing


_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_$-]{1,64}$")


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            out += f".{part}" if out else part
        else:
            # A client-chosen key: quoted (ASCII, so any code point can be sent back) and short.
            quoted = json.dumps(part[:40] + ("…" if len(part) > 40 else ""))
            out += f"[{quoted}]"
    return out


def _where(loc: tuple[int | str, ...]) -> str:
    """A field path for messages: ``data.graph.nodes[3].id``; the frame itself is ``body``."""
    out = _loc(loc)
    return "body" + out if not out or out.startswith("[") else out


def describe_validation_error(err: ValidationError, *, prefix: tuple[str, ...] = ()) -> str:
    """One line per problem, each naming the field path, e.g. ``data.graph.nodes[3].type: ...``."""
    problems = []
    for e in err.errors(include_url=False):
        # The discriminator's tag adds a path element that means nothing to a client.
        loc = tuple(p for p in e["loc"] if p not in COMMANDS)
        where = _where(prefix + loc)
        msg = e["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {msg}")
    return "; ".join(problems)


def parse_command(body: str | bytes | None, limits: Limits = DEFAULT_LIMITS) -> ClientCommand:
    """The typed client command in a raw JSON frame, or a ``ProtocolError`` naming what is wrong."""
    if body is None or body in ("", b""):
        raise ProtocolError('empty message: send a JSON object {"command": ..., "data": {...}}')
    # surrogatepass: a str frame may hold lone surrogates; they are refused below, by field.
    size = len(body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body)
    if size > limits.max_body_bytes:
        raise ProtocolError(
            f"message is {size} bytes; the limit is {limits.max_body_bytes} bytes",
            code="too_large",
        )
    raw = _load_json(body)
    _check_values(raw, limits)
    if not isinstance(raw, dict):
        raise ProtocolError(f"message must be a JSON object, not {type(raw).__name__}")
    return command_from_frame(raw, limits)


def command_name(raw: Mapping[str, Any]) -> str | None:
    """The command a decoded frame asks for: ``command``, or for nodetool's control frames
    (``{type: "ping", ts}``, which have no ``command``) its ``type``."""
    command = raw.get("command")
    kind = raw.get("type")
    if command is None and isinstance(kind, str) and kind in CONTROL_FRAMES:
        command = kind
    return command if isinstance(command, str) else None


def frame_ids(raw: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The well-formed ``data.job_id`` and ``data.workflow_id`` of a frame, for the errors about it."""
    data = raw.get("data")
    if not isinstance(data, Mapping):
        return None, None
    job_id, workflow_id = data.get("job_id"), data.get("workflow_id")
    return (
        job_id if isinstance(job_id, str) and re.match(JOB_ID_PATTERN, job_id) else None,
        workflow_id if isinstance(workflow_id, str) and re.match(WORKFLOW_ID_PATTERN, workflow_id) else None,
    )


def command_from_frame(raw: Mapping[str, Any], limits: Limits = DEFAULT_LIMITS) -> ClientCommand:
    """The typed command of a decoded frame (``frames.decode_frame``: JSON or MessagePack)."""
    command = command_name(raw)
    job_id, workflow_id = frame_ids(raw)
    if command is None:
        raise ProtocolError(
            f"'command' is missing; known commands: {', '.join(COMMANDS)}", job_id=job_id, workflow_id=workflow_id
        )
    if command in UNSUPPORTED_COMMANDS:
        raise ProtocolError(
            f"'{command}' is not supported by comfyroute (supported: {', '.join(COMMANDS)})",
            code="unsupported",
            command=command,
            job_id=job_id,
            workflow_id=workflow_id,
        )
    if command not in COMMANDS:
        raise ProtocolError(
            f"unknown command '{_printable(command[:64])}'; known commands: {', '.join(COMMANDS)}",
            code="unknown_command",
            job_id=job_id,
            workflow_id=workflow_id,
        )
    frame = dict(raw)
    frame.setdefault("command", command)
    try:
        parsed = COMMAND_MODELS[command].model_validate(frame)
    except ValidationError as exc:
        raise ProtocolError(
            describe_validation_error(exc), command=command, job_id=job_id, workflow_id=workflow_id
        ) from None
    _check_limits(parsed, limits)
    _check_shapes(parsed)
    return parsed


def _printable(text: str) -> str:
    """Client text echoed in a message: control characters escaped, so a reply stays one line."""
    return "".join(c if c.isprintable() else json.dumps(c)[1:-1] for c in text)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _load_json(body: str | bytes) -> Any:
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"message is not JSON: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"message is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    except RecursionError:
        raise ProtocolError("message is nested too deeply to read") from None
    except ValueError as exc:
        # Integers past Python's int-parsing limit (4,300 digits) and NaN / Infinity.
        text = str(exc)
        reason = "a number is too long" if "digits" in text else text
        raise ProtocolError(f"message is not acceptable JSON: {reason}") from None


# DynamoDB numbers: 38 significant digits, magnitude from 1e-130 to below 1e126. Client values
# can end up in DynamoDB maps (settings, job records), so nothing outside that range is taken.
_MAX_INT = 10**38
_MAX_FLOAT = 1e126
_MIN_FLOAT = 1e-130
_SURROGATE = re.compile("[\ud800-\udfff]")


def _value_problem(value: Any) -> str | None:
    if isinstance(value, str):
        found = _SURROGATE.search(value)
        if found:
            return f"contains the lone surrogate \\u{ord(found.group()):04x}, which is not Unicode text"
    elif isinstance(value, bool) or value is None:
        return None
    elif isinstance(value, int):
        if not -_MAX_INT < value < _MAX_INT:
            return "integers may have at most 38 digits"
    elif isinstance(value, float) and (
        not math.isfinite(value) or abs(value) >= _MAX_FLOAT or (value != 0 and abs(value) < _MIN_FLOAT)
    ):
        return "numbers must lie between 1e-130 and 1e126 in magnitude (or be 0)"
    return None


def _check_values(raw: Any, limits: Limits) -> None:
    """Refuse, naming the field, what the handlers could not serialize or DynamoDB not store:
    deep nesting, lone surrogates, numbers out of range, empty-string keys."""
    stack: list[tuple[Any, tuple[int | str, ...]]] = [(raw, ())]
    while stack:
        value, path = stack.pop()
        if isinstance(value, dict | list):
            if len(path) >= limits.max_depth:
                where = _where(path[: limits.max_depth])
                raise ProtocolError(f"{where}: nested more than {limits.max_depth} levels deep")
            if isinstance(value, list):
                stack.extend((v, (*path, i)) for i, v in enumerate(value))
                continue
            for key, v in value.items():
                if key == "":
                    raise ProtocolError(f'{_where(path)}: keys must not be empty (found "")')
                problem = _value_problem(key)
                if problem:
                    raise ProtocolError(f"{_where(path)}: a key {problem}")
                stack.append((v, (*path, key)))
            continue
        problem = _value_problem(value)
        if problem:
            raise ProtocolError(f"{_where(path)}: {problem}")


def _check_shapes(cmd: ClientCommand) -> None:
    """What the models leave open but the handlers rely on: non-empty ids, prompt nodes that
    are objects with a class_type."""
    data = getattr(cmd, "data", None)  # ping, pong and the tools manifest carry none
    graph = getattr(data, "graph", None)
    if graph is not None:
        for i, node in enumerate(graph.nodes):
            if not node.id.strip():
                raise ProtocolError(f"data.graph.nodes[{i}].id: must not be empty", command=cmd.command)
        for i, edge in enumerate(graph.edges):
            for end in ("source", "target"):
                if not getattr(edge, end).strip():
                    raise ProtocolError(f"data.graph.edges[{i}].{end}: must not be empty", command=cmd.command)
    prompt = getattr(data, "prompt", None)
    if prompt is not None:
        for node_id, node in prompt.items():
            where = _where(("data", "prompt", node_id))
            if not node_id.strip():
                raise ProtocolError(f"{where}: node ids must not be blank", command=cmd.command)
            if not isinstance(node, dict):
                raise ProtocolError(
                    f'{where}: must be an object {{"class_type": ..., "inputs": {{...}}}}', command=cmd.command
                )
            class_type = node.get("class_type")
            if not isinstance(class_type, str) or not class_type.strip():
                raise ProtocolError(f"{where}.class_type: must be a non-empty string", command=cmd.command)
            if not isinstance(node.get("inputs", {}), dict):
                raise ProtocolError(f"{where}.inputs: must be an object", command=cmd.command)


def _check_limits(cmd: ClientCommand, limits: Limits) -> None:
    data = getattr(cmd, "data", None)
    graph = getattr(data, "graph", None)
    if graph is not None:
        _at_most(cmd, "data.graph.nodes", len(graph.nodes), "nodes", limits.max_nodes)
        _at_most(cmd, "data.graph.edges", len(graph.edges), "edges", limits.max_edges)
    prompt = getattr(data, "prompt", None)
    if prompt is not None:
        _at_most(cmd, "data.prompt", len(prompt), "nodes", limits.max_nodes)
    workflow = getattr(data, "workflow", None)
    if workflow is not None:
        nodes, links = workflow.counts()
        _at_most(cmd, "data.workflow.nodes", nodes, "nodes (subgraphs included)", limits.max_nodes)
        _at_most(cmd, "data.workflow.links", links, "links (subgraphs included)", limits.max_edges)
    files = getattr(data, "files", None)
    if files is not None:
        _at_most(cmd, "data.files", len(files), "files", limits.max_files)


def _at_most(cmd: ClientCommand, where: str, count: int, what: str, limit: int) -> None:
    if count > limit:
        raise ProtocolError(f"{where}: {count} {what}; the limit is {limit}", code="too_large", command=cmd.command)


def protocol_json_schema() -> dict[str, Any]:
    """JSON Schema of every client command and server message, for client authors."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "comfyroute WebSocket protocol",
        "client_command": _command_adapter().json_schema(),
        "server_message": server_message_adapter().json_schema(),
    }
