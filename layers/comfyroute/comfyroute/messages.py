"""Every server message, built here from records (``protocol.server_messages`` holds their shapes), and the
one way a route answers its caller.

Light at import (the server messages only): the default route, which answers ping, loads this too.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from comfyroute.defaults import MAX_MESSAGE_BYTES
from comfyroute.protocol import JobStatus
from comfyroute.protocol.server_messages import (
    ErrorMessage,
    JobInput,
    JobList,
    JobMessage,
    JobOutput,
    JobUpdate,
    JobView,
    NodeProblem,
    NodeProgress,
    NodeStatus,
    NodeUpdate,
    OutputMetadata,
    OutputUpdate,
    OutputValue,
    Pong,
    UploadReady,
    WorkflowSaved,
    encode,
)
from comfyroute.text import clip

if TYPE_CHECKING:
    from comfyroute.aws.uploads import UploadTicket
    from comfyroute.executors.base import OutputFile
    from comfyroute.jobs.record import JobRecord
    from comfyroute.ports import Caller, OutputStore, Ports
    from comfyroute.protocol.commands import ProtocolError


def reply(ports: Ports, caller: Caller, *messages: BaseModel) -> bool:
    """Push ``messages`` to the caller's connection; a connection found gone is recorded so."""
    delivered = ports.pusher.send_all(caller.connection_id, list(messages))
    if not delivered:
        ports.connections.mark_gone(caller.connection_id)
    return delivered


# --------------------------------------------------------------------------- job messages


def _state(job: JobRecord, *, with_errors: bool = True) -> dict[str, Any]:
    """The fields every job message shares (``protocol.server_messages.JobState``)."""
    return {
        "job_id": job.wire_id,
        "workflow_id": job.workflow_id,
        "status": job.status,
        "executor": job.executor,
        "error": job.error,
        **(_errors(job.errors, job.errors_omitted) if with_errors else {}),
        "message": job.message,
        "duration": job.duration,
    }


# --------------------------------------------------------------------------- problems per node

# What one message carries of a job's problems: a job_update and an error go in one frame each,
# with the readable text (up to MAX_TEXT_CHARS) beside them.
MAX_ERRORS = 50
ERRORS_BUDGET_BYTES = 48 * 1024
MAX_ERROR_FIELD_CHARS = 200
MAX_ERROR_MESSAGE_CHARS = 500


def bounded_errors(problems: Sequence[NodeProblem]) -> tuple[list[NodeProblem], int]:
    """The problems a message carries, each part clipped, as many of the first as fit in
    ``MAX_ERRORS`` and ``ERRORS_BUDGET_BYTES``; and how many were left out."""
    shown: list[NodeProblem] = []
    used = 2  # the list's brackets
    for problem in problems[:MAX_ERRORS]:
        clipped = NodeProblem(
            node_id=_clip_part(problem.node_id),
            class_type=_clip_part(problem.class_type),
            input=_clip_part(problem.input),
            message=clip(problem.message, MAX_ERROR_MESSAGE_CHARS),
        )
        size = len(clipped.model_dump_json(exclude_none=True).encode()) + 1
        if used + size > ERRORS_BUDGET_BYTES:
            break
        used += size
        shown.append(clipped)
    return shown, len(problems) - len(shown)


def _clip_part(value: str | None) -> str | None:
    return clip(value, MAX_ERROR_FIELD_CHARS) if value is not None else None


def _errors(problems: Sequence[NodeProblem] | None, omitted: int | None = None) -> dict[str, Any]:
    """``errors`` / ``errors_omitted`` for a message (nothing when there are none)."""
    if not problems:
        return {}
    shown, left = bounded_errors(problems)
    out: dict[str, Any] = {"errors": shown}
    total_omitted = left + (omitted or 0)
    if total_omitted:
        out["errors_omitted"] = total_omitted
    return out


def job_update(job: JobRecord, *, request: str | None = None, output_count: int | None = None) -> JobUpdate:
    """The job's state; ``request`` names the command it answers, if it is a reply. A terminal
    one carries RunPod's own timings when RunPod ran it."""
    terminal = job.status.terminal
    return JobUpdate(
        **_state(job),
        queue_position=job.queue_position if job.status is JobStatus.QUEUED else None,
        request=request,
        output_count=output_count,
        delay_ms=job.delay_ms if terminal else None,
        execution_ms=job.execution_ms if terminal else None,
    )


def final_pushes(
    job: JobRecord, store: OutputStore, presign_seconds: int
) -> list[NodeUpdate | OutputUpdate | JobUpdate]:
    """What a finished job's client gets: each node's outcome and every ``output_update`` first,
    then the terminal ``job_update`` saying how many outputs came (a client may stop reading at
    ``completed``)."""
    updates = output_updates(job, store, presign_seconds)
    return [*final_node_updates(job), *updates, job_update(job, output_count=len(updates))]


def step_progress(job: JobRecord, node_id: str, value: float, total: float) -> NodeProgress:
    """One step of a node that reports steps (a sampler), as the executor streamed it."""
    return NodeProgress(job_id=job.wire_id, workflow_id=job.workflow_id, node_id=node_id, progress=value, total=total)


def progress_pushes(job: JobRecord) -> list[JobUpdate | NodeProgress]:
    """What a running job's client gets when a look saw it change: its state, and the progress
    the executor reported, if any."""
    progress = node_progress(job)
    return [job_update(job)] if progress is None else [job_update(job), progress]


def node_progress(job: JobRecord) -> NodeProgress | None:
    if job.progress is None:
        return None
    return NodeProgress(
        job_id=job.wire_id,
        workflow_id=job.workflow_id,
        node_id=job.progress.node_id or "",
        progress=job.progress.value,
        total=job.progress.max,
    )


def job_output(output: OutputFile, uri: str | None) -> JobOutput:
    """The wire view of one output file, fetchable at ``uri``."""
    return JobOutput(
        node_id=output.node_id,
        node_name=output.node_name or output.node_id,
        output_name=output.output_name,
        output_type=output.kind,
        value=OutputValue(
            type=output.kind, uri=uri, filename=output.filename, content_type=output.content_type, size=output.size
        ),
    )


def output_updates(job: JobRecord, store: OutputStore, presign_seconds: int) -> list[OutputUpdate]:
    """One ``output_update`` per output: a presigned URL always, the bytes inline (base64)
    only when the whole message still fits in one WebSocket frame."""
    return [output_update(job, stored, store, presign_seconds) for stored in job.outputs]


def output_update(
    job: JobRecord, stored: OutputFile, store: OutputStore, presign_seconds: int, data: bytes | None = None
) -> OutputUpdate:
    """The ``output_update`` of one stored output (see ``output_updates``); ``data``: its bytes
    when the caller has them still (just stored), so they are not read back."""
    out = job_output(stored, store.presign(stored, presign_seconds))
    metadata = OutputMetadata(filename=stored.filename, content_type=stored.content_type, size=stored.size)
    update = OutputUpdate(job_id=job.wire_id, workflow_id=job.workflow_id, metadata=metadata, **_fields(out))
    head = len(encode(update).encode())
    # base64 grows by 4/3; 16 bytes more for the `"data":"",` key and 32 for the job_seq
    # the stream adds when it is pushed.
    if stored.key and stored.size and head + (stored.size + 2) // 3 * 4 + 48 <= MAX_MESSAGE_BYTES:
        if data is None:
            data = store.read(stored)
        if data is not None:
            value = update.value.model_copy(update={"data": base64.b64encode(data).decode()})
            update = update.model_copy(update={"value": value})
    return update


def _fields(out: JobOutput) -> dict[str, Any]:
    # The models, not a dump: OutputUpdate takes the JobOutput's fields as they are.
    return {name: getattr(out, name) for name in JobOutput.model_fields}


def job_view(
    job: JobRecord,
    outputs: list[JobOutput] | None = None,
    *,
    outputs_offset: int | None = None,
    outputs_next: int | None = None,
) -> JobView:
    return JobView(
        **_state(job),
        created_at=job.created_at,
        updated_at=job.updated_at,
        outputs=outputs or [],
        output_count=len(job.outputs),
        inputs=[JobInput(name=i.name, size=i.size, content_type=i.content_type) for i in job.inputs],
        outputs_offset=outputs_offset,
        outputs_next=outputs_next,
    )


# Room left in a frame for what the sizing below does not count exactly (the outputs_next field,
# a longer duration): a page is cut well before the API Gateway limit.
_PAGE_MARGIN_BYTES = 2 * 1024


def job_message(
    job: JobRecord,
    store: OutputStore,
    presign_seconds: int,
    *,
    offset: int = 0,
    limit: int | None = None,
    frame_bytes: int = MAX_MESSAGE_BYTES,
) -> JobMessage:
    """``get_job``'s answer: the job with fresh URLs to one page of its outputs, from ``offset``,
    at most ``limit`` of them and as many as fit one frame, each measured with its real URL;
    ``outputs_next`` says where the next page starts."""
    total = len(job.outputs)
    end = total if limit is None else min(total, offset + limit)
    head = JobMessage(request="get_job", job=job_view(job, [], outputs_offset=offset, outputs_next=total))
    size = len(encode(head).encode())
    budget = frame_bytes - _PAGE_MARGIN_BYTES
    page: list[JobOutput] = []
    for stored in job.outputs[offset:end]:
        out = job_output(stored, store.presign(stored, presign_seconds))
        cost = len(encode(out).encode()) + 1  # and its comma
        if page and size + cost > budget:
            break
        page.append(out)
        size += cost
    following = offset + len(page)
    next_offset = following if following < total else None
    return JobMessage(request="get_job", job=job_view(job, page, outputs_offset=offset, outputs_next=next_offset))


def job_list(jobs: list[JobRecord]) -> JobList:
    # The list stays small: no presigned URLs here (get_job gives those), only the count, and no
    # problems per node (get_job has them).
    views = [
        JobView(
            **_state(j, with_errors=False),
            created_at=j.created_at,
            updated_at=j.updated_at,
            output_count=len(j.outputs),
        )
        for j in jobs
    ]
    return JobList(request="list_jobs", jobs=views)


# --------------------------------------------------------------------------- node updates


def node_update(
    job: JobRecord,
    node_id: str,
    status: NodeStatus,
    *,
    error: str | None = None,
    result: dict[str, Any] | None = None,
    cached: bool | None = None,
) -> NodeUpdate:
    """One node's state as nodetool shows it; ``node_type`` is the graph's ``comfy.<class>``.
    The one builder of ``node_update``: from ComfyUI's history at the end here, and from
    whatever follows the executor live."""
    class_type = job.node_classes.get(node_id) or ""
    return NodeUpdate(
        job_id=job.wire_id,
        workflow_id=job.workflow_id,
        node_id=node_id,
        node_name=class_type or node_id,
        node_type=f"comfy.{class_type}" if class_type else "comfy",
        status=status,
        error=error,
        result=result,
        cached=cached,
    )


def final_node_updates(job: JobRecord) -> list[NodeUpdate]:
    """Every node's outcome once the job has ended, in the prompt's order: what the executor
    reported per node (``job.node_states``: completed, cached, error), else, for a completed
    job, every node completed (RunPod reports no nodes)."""
    states = dict(job.node_states)
    if not states and job.status is JobStatus.COMPLETED:
        states = dict.fromkeys(job.node_classes, "completed")
    order = {nid: i for i, nid in enumerate(job.node_classes)}
    updates = []
    for node_id in sorted(states, key=lambda nid: (order.get(nid, len(order)), nid)):
        state = states[node_id]
        if state == "error":
            updates.append(node_update(job, node_id, "error", error=job.error or "the node failed"))
        else:
            updates.append(node_update(job, node_id, "completed", cached=True if state == "cached" else None))
    return updates


# --------------------------------------------------------------------------- other messages


def error(
    message: str,
    code: str,
    *,
    request: str | None = None,
    job_id: str | None = None,
    workflow_id: str | None = None,
    errors: Sequence[NodeProblem] | None = None,
    errors_omitted: int | None = None,
) -> ErrorMessage:
    """``errors``: the problems per node behind ``message`` (bounded here, as on the job)."""
    return ErrorMessage(
        message=message,
        code=code,
        request=request,
        job_id=job_id,
        workflow_id=workflow_id,
        **_errors(errors, errors_omitted),
    )


def rejected(exc: ProtocolError) -> ErrorMessage | JobUpdate:
    """The answer to a frame that could not be accepted: one ``error`` naming the request, or
    for a run_job that names its job, that job's ``job_update failed`` (nodetool's client ends
    a run on that message only)."""
    if exc.command == "run_job" and exc.job_id:
        return refused_run(exc.job_id, exc.workflow_id, exc.message)
    return error(exc.message, exc.code, request=exc.command, job_id=exc.job_id, workflow_id=exc.workflow_id)


def refusal(exc: ProtocolError) -> list[BaseModel]:
    """Everything a refused frame is answered with: one message (``rejected``)."""
    return [rejected(exc)]


def refused_run(job_id: str, workflow_id: str | None, reason: str) -> JobUpdate:
    """The one answer to a run_job that started nothing."""
    return JobUpdate(job_id=job_id, workflow_id=workflow_id, status=JobStatus.FAILED, error=reason, request="run_job")


def internal_error(request: str | None) -> ErrorMessage:
    return error("internal error; the request was not completed", "internal", request=request)


def job_not_found(job_id: str, request: str, workflow_id: str | None = None) -> ErrorMessage:
    # Someone else's job looks exactly like a missing one.
    return error(f"job {job_id} not found", "not_found", request=request, job_id=job_id, workflow_id=workflow_id)


def pong() -> Pong:
    return Pong(ts=round(time.time(), 3))


def upload_ready(ticket: UploadTicket, *, filename: str | None = None, ref: str | None = None) -> UploadReady:
    return UploadReady(
        upload_id=ticket.upload_id,
        url=ticket.url,
        fields=dict(ticket.fields),
        method=ticket.method,
        expires_in=ticket.expires_in,
        max_bytes=ticket.max_bytes,
        filename=filename,
        ref=ref,
    )


def workflow_saved(workflow_id: str, settings: Mapping[str, Any]) -> WorkflowSaved:
    return WorkflowSaved(request="save_workflow", workflow_id=workflow_id, settings=dict(settings))
