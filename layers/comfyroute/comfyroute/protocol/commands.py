"""Client commands: nodetool's envelope ``{"command": NAME, "data": {...}}``, the commands that
carry no workflow, the registry of every command (``COMMANDS``, ``command_model``), and
``parse_command`` / ``command_from_frame``: the one way a frame becomes a typed command, every
rejection a ``ProtocolError`` whose message names the offending field.

run_job and save_workflow are in ``workflow_commands``, imported when one is parsed.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, NamedTuple, Self

from pydantic import Field, StringConstraints, TypeAdapter, ValidationError, model_validator

from comfyroute.defaults import MAX_MESSAGE_BYTES
from comfyroute.protocol import JOB_ID_PATTERN, UPLOAD_REF_PATTERN, WORKFLOW_ID_PATTERN
from comfyroute.protocol.base import WireModel

JobId = Annotated[str, StringConstraints(pattern=JOB_ID_PATTERN)]
WorkflowId = Annotated[str, StringConstraints(pattern=WORKFLOW_ID_PATTERN)]


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


class JobRef(WireModel):
    job_id: JobId
    # nodetool names the workflow beside the job; when given it must be the job's.
    workflow_id: WorkflowId | None = None


class ReconnectJobData(WireModel):
    """nodetool's reconnect_job: follow ``job_id`` on this connection, replaying every
    message after ``last_seq`` (all of them without it)."""

    job_id: JobId
    workflow_id: WorkflowId | None = None
    last_seq: int | None = Field(default=None, ge=0, le=2**53 - 1)


# get_job pages a job's outputs so every answer fits one frame: ``outputs_offset`` is where the
# page starts, ``outputs_limit`` caps its length (the server may send fewer, to stay under the
# frame limit); the answer's ``outputs_next`` is the offset of the next page, absent on the last.
MAX_OUTPUTS_PAGE = 500


class GetJobData(WireModel):
    job_id: JobId
    workflow_id: WorkflowId | None = None  # as JobRef: nodetool names the workflow beside the job
    outputs_offset: int = Field(default=0, ge=0)
    outputs_limit: int | None = Field(default=None, ge=1, le=MAX_OUTPUTS_PAGE)


class ListJobsData(WireModel):
    limit: int = Field(default=20, ge=1, le=100)


class RequestUploadData(WireModel):
    """Ask for an upload: the file's name, content type and exact size in bytes."""

    filename: str = Field(min_length=1, max_length=255)
    content_type: str = Field(min_length=1, max_length=255)
    size: int = Field(ge=1)
    # Echoed in upload_ready, so a client with several uploads in flight can pair the answers.
    ref: Annotated[str, StringConstraints(pattern=UPLOAD_REF_PATTERN)] | None = None


class Empty(WireModel):
    pass


class Command(WireModel):
    """A client command. nodetool's envelope repeats the command as ``type``
    (``{type: "run_job", command: "run_job", data}``): accepted when it says the same."""

    command: str
    type: str | None = None

    @model_validator(mode="after")
    def _type_is_the_command(self) -> Self:
        if self.type is not None and self.type != self.command:
            raise ValueError(f"type '{self.type[:64]}' differs from command '{self.command}'")
        return self


class CancelJob(Command):
    command: Literal["cancel_job"]
    data: JobRef


class GetJob(Command):
    command: Literal["get_job"]
    data: GetJobData


class ListJobs(Command):
    command: Literal["list_jobs"]
    data: ListJobsData = Field(default_factory=ListJobsData)


class ReconnectJob(Command):
    command: Literal["reconnect_job"]
    data: ReconnectJobData


class Ping(Command):
    """``{"command": "ping"}``, or nodetool's heartbeat ``{type: "ping", ts}``."""

    command: Literal["ping"]
    data: Empty = Field(default_factory=Empty)
    ts: float | None = None


class RequestUpload(Command):
    command: Literal["request_upload"]
    data: RequestUploadData


class ClientPong(Command):
    """nodetool's answer to a server ping (comfyroute sends none): accepted, not answered."""

    command: Literal["pong"]
    ts: float | None = None


class ToolsManifest(Command):
    """nodetool's ``client_tools_manifest``, sent on every open: the browser tools it offers to
    an agent. comfyroute runs no agent: accepted without an answer (see docs/nodetool.md)."""

    command: Literal["client_tools_manifest"]
    tools: list[Any] = Field(default_factory=list, max_length=1000)


# Every command, in the order messages list them.
COMMANDS: tuple[str, ...] = (
    "run_job",
    "cancel_job",
    "get_job",
    "list_jobs",
    "save_workflow",
    "reconnect_job",
    "ping",
    "request_upload",
    "pong",
    "client_tools_manifest",
)
# The models of the commands defined here; run_job's and save_workflow's are
# workflow_commands.MODELS (see command_model).
_MODELS: dict[str, type[Command]] = {
    "cancel_job": CancelJob,
    "get_job": GetJob,
    "list_jobs": ListJobs,
    "reconnect_job": ReconnectJob,
    "ping": Ping,
    "request_upload": RequestUpload,
    "pong": ClientPong,
    "client_tools_manifest": ToolsManifest,
}
# nodetool's frames that carry no ``command``, only ``type`` (WebSocketManager's liveness
# frames, GlobalWebSocketManager's tools manifest).
CONTROL_FRAMES = frozenset({"ping", "pong", "client_tools_manifest"})
# nodetool commands comfyroute does not serve: each answered with one ``unsupported`` error
# naming it (with the job's ids, so nodetool can route it).
UNSUPPORTED_COMMANDS: tuple[str, ...] = ("pause_job", "resume_job", "stream_input", "end_input_stream")


def command_model(name: str) -> type[Command]:
    """The model of command ``name`` (one of ``COMMANDS``). A frame is validated with its own
    command's model, so a route builds the validators of the commands it is sent and no others,
    and imports run_job's and save_workflow's (graphs, editor workflows, settings, files) only
    when one arrives."""
    model = _MODELS.get(name)
    if model is None:
        from comfyroute.protocol.workflow_commands import MODELS

        model = MODELS[name]
    return model


def command_json_schema() -> dict[str, Any]:
    """JSON Schema of a client command: one of every command, told apart by ``command``."""
    from comfyroute.protocol.workflow_commands import RunJob, SaveWorkflow

    every = (
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
    adapter: TypeAdapter[Any] = TypeAdapter(Annotated[every, Field(discriminator="command")])
    return adapter.json_schema()


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


def parse_command(body: str | bytes | None, limits: Limits = DEFAULT_LIMITS) -> Command:
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


def command_from_frame(raw: Mapping[str, Any], limits: Limits = DEFAULT_LIMITS) -> Command:
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
        parsed = command_model(command).model_validate(frame)
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


def _check_shapes(cmd: Command) -> None:
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


def _check_limits(cmd: Command, limits: Limits) -> None:
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


def _at_most(cmd: Command, where: str, count: int, what: str, limit: int) -> None:
    if count > limit:
        raise ProtocolError(f"{where}: {count} {what}; the limit is {limit}", code="too_large", command=cmd.command)
