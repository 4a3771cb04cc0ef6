"""run_job and save_workflow: the commands that carry a workflow, and the shapes of what they
carry (a nodetool graph, an API prompt, a ComfyUI editor workflow, executor settings, input
files). Imported by the routes that take a workflow; ``commands.command_model`` imports it for
the others when such a command reaches them.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, StringConstraints, field_validator, model_validator

from comfyroute.protocol import ENDPOINT_ID_PATTERN, UPLOAD_ID_PATTERN, ExecutorKind, input_name_problem
from comfyroute.protocol.base import OpenWireModel, WireModel
from comfyroute.protocol.commands import Command, JobId, WorkflowId

EndpointId = Annotated[str, StringConstraints(strip_whitespace=True, pattern=ENDPOINT_ID_PATTERN)]
_UPLOAD_ID = re.compile(UPLOAD_ID_PATTERN)


def _upload_id(v: str) -> str:
    if not _UPLOAD_ID.match(v):
        raise ValueError(f"{v[:80]!r} is not an upload id (use the upload_id of an upload_ready message)")
    return v


UploadId = Annotated[str, AfterValidator(_upload_id)]


# --------------------------------------------------------------------------- graph / prompt


class GraphNode(OpenWireModel):
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


class GraphEdge(OpenWireModel):
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


class Graph(OpenWireModel):
    nodes: list[GraphNode]
    edges: list[GraphEdge] = Field(default_factory=list)


class ExecutorSettings(OpenWireModel):
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


class EditorWorkflow(OpenWireModel):
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


class InputFileRef(WireModel):
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


class RunJobData(WireModel):
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


class SaveWorkflowData(WireModel):
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


class RunJob(Command):
    command: Literal["run_job"]
    data: RunJobData


class SaveWorkflow(Command):
    command: Literal["save_workflow"]
    data: SaveWorkflowData


MODELS: dict[str, type[Command]] = {"run_job": RunJob, "save_workflow": SaveWorkflow}
