"""run_job's input files (``data.files``) and uploaded workflows (``data.workflow_upload_id``).

Everything that can refuse them happens before a job exists (``resolve_files``,
``load_uploaded_workflow``): an unknown, expired or another user's upload, one over the size
limit or of a content type not allowed, a bad inline file, an upload that holds no workflow.
Such a refusal is ``InputRefused``: run_job answers it with an ``error`` and records nothing,
so the client can upload again and reuse its job id. Only metadata travels on from here (the
idempotency payload and the job record stay small); once the job is recorded, ``keep_inputs``
copies each file under the job's own prefix (``jobs/{job_id}/inputs/``, deleted with the job's
outputs) and reads the bytes the executor gets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from comfyroute.aws.uploads import UploadError, check_content_type, job_input_key
from comfyroute.conversion.detect import WorkflowKind, parse_workflow_bytes
from comfyroute.conversion.problems import GraphError
from comfyroute.executors.base import guess_content_type
from comfyroute.executors.inputs import InputFile, human_bytes
from comfyroute.jobs.record import InputRecord
from comfyroute.protocol.commands import DEFAULT_LIMITS, describe_validation_error
from comfyroute.protocol.workflow_commands import EditorWorkflow, ExecutorSettings, Graph, InputFileRef

if TYPE_CHECKING:
    from comfyroute.ports import Caller, Ports


class InputRefused(Exception):
    """run_job cannot start: ``message`` and ``code`` go into the ``error`` answer."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class UploadedWorkflow:
    """The workflow an upload holds: exactly one of ``graph``, ``prompt`` or ``editor``, and
    the settings of a saved workflow (which apply under the request's)."""

    graph: Graph | None = None
    prompt: dict[str, Any] | None = None
    editor: dict[str, Any] | None = None
    settings: ExecutorSettings | None = None


def _too_large(what: str, count: int, limit: int) -> InputRefused:
    return InputRefused(f"data.workflow_upload_id: the workflow has {count} {what}; the limit is {limit}", "too_large")


def load_uploaded_workflow(ports: Ports, caller: Caller, upload_id: str) -> UploadedWorkflow:
    """The caller's uploaded workflow, its kind told by its shape (``conversion.detect``)."""
    try:
        data = ports.uploads.open_workflow(caller.user_id, upload_id)
    except UploadError as exc:
        raise InputRefused(f"data.workflow_upload_id: {exc}", exc.code) from None
    try:
        detected = parse_workflow_bytes(data)
    except GraphError as exc:
        raise InputRefused(f"data.workflow_upload_id: upload {upload_id} holds {exc}", "bad_request") from None
    limits = DEFAULT_LIMITS
    body = dict(detected.body)
    try:
        if detected.is_graph:
            graph = Graph.model_validate(body)
            if len(graph.nodes) > limits.max_nodes:
                raise _too_large("nodes", len(graph.nodes), limits.max_nodes)
            if len(graph.edges) > limits.max_edges:
                raise _too_large("edges", len(graph.edges), limits.max_edges)
            settings = None
            if detected.kind is WorkflowKind.SAVED_WORKFLOW and detected.settings:
                settings = ExecutorSettings.model_validate(dict(detected.settings))
            return UploadedWorkflow(graph=graph, settings=settings)
        if detected.kind is WorkflowKind.EDITOR:
            nodes, links = EditorWorkflow.model_validate(body).counts()
            if nodes > limits.max_nodes:
                raise _too_large("nodes (subgraphs included)", nodes, limits.max_nodes)
            if links > limits.max_edges:
                raise _too_large("links (subgraphs included)", links, limits.max_edges)
            return UploadedWorkflow(editor=body)
    except ValidationError as exc:
        problems = describe_validation_error(exc, prefix=("workflow_upload_id",))
        raise InputRefused(f"the uploaded workflow is not valid: {problems}", "bad_request") from None
    if len(body) > limits.max_nodes:
        raise _too_large("nodes", len(body), limits.max_nodes)
    return UploadedWorkflow(prompt=body)


def resolve_files(
    ports: Ports, caller: Caller, job_id: str, files: Sequence[InputFileRef]
) -> tuple[list[InputRecord], dict[str, bytes]]:
    """Check every input file: uploads must be the caller's, there and within the limits;
    inline files of an allowed type. Returns what the job record keeps of each, and the bytes
    of the inline ones."""
    records: list[InputRecord] = []
    inline: dict[str, bytes] = {}
    max_bytes = ports.uploads.max_bytes
    for i, ref in enumerate(files):
        where = f"data.files[{i}] ({ref.name})"
        try:
            if ref.upload_id is not None:
                info = ports.uploads.head_upload(caller.user_id, ref.upload_id)
                size, ctype = info.size, info.content_type
            else:
                data = ref.decoded() or b""
                ctype = check_content_type(ref.content_type or guess_content_type(ref.name))
                size = len(data)
                inline[ref.name] = data
        except UploadError as exc:
            raise InputRefused(f"{where}: {exc}", exc.code) from None
        if size < 1:
            raise InputRefused(f"{where}: the file is empty", "upload_not_allowed")
        if size > max_bytes:
            raise InputRefused(f"{where}: the file is {size} bytes; the limit is {max_bytes} bytes", "upload_too_large")
        records.append(
            InputRecord(
                name=ref.name,
                size=size,
                content_type=ctype,
                key=job_input_key(job_id, ref.name),
                upload_id=ref.upload_id,
            )
        )
    total, limit = sum(r.size for r in records), ports.config.upload_max_job_bytes
    if total > limit:
        raise InputRefused(
            f"data.files: the job's input files are {total} bytes ({human_bytes(total)}) together; "
            f"a job may bring at most {limit} bytes ({human_bytes(limit)})",
            "upload_too_large",
        )
    return records, inline


def keep_inputs(
    ports: Ports, user_id: str, job_id: str, inputs: Sequence[InputRecord], inline: Mapping[str, bytes]
) -> list[InputFile]:
    """Copy each input under the job's prefix and return the files for the executor.
    ``UploadError`` when an upload went away since it was checked."""
    files: list[InputFile] = []
    for record in inputs:
        if record.upload_id is not None:
            stored = ports.uploads.keep_for_job(user_id, record.upload_id, job_id, record.name)
            data = ports.uploads.read_input(stored.key, stored.size)
        else:
            data = inline[record.name]
            stored = ports.uploads.keep_inline(job_id, record.name, data, record.content_type)
        files.append(InputFile(name=record.name, data=data, content_type=stored.content_type))
    return files
