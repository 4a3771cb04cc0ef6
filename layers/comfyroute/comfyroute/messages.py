"""Every server message, built here from records (``protocol`` holds their shapes), and the
one way a route answers its caller.

Light at import (protocol only): the default route, which answers ping, loads this too.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from comfyroute.defaults import MAX_MESSAGE_BYTES
from comfyroute.protocol import (
    ErrorMessage,
    JobList,
    JobMessage,
    JobOutput,
    JobUpdate,
    JobView,
    NodeProgress,
    OutputUpdate,
    OutputValue,
    Pong,
    ProtocolError,
    WorkflowSaved,
    encode,
)

if TYPE_CHECKING:
    from pydantic import BaseModel

    from comfyroute.executors.base import OutputFile
    from comfyroute.jobs.record import JobRecord
    from comfyroute.ports import Caller, OutputStore, Ports


def reply(ports: Ports, caller: Caller, *messages: BaseModel) -> bool:
    """Push ``messages`` to the caller's connection; a connection found gone is recorded so."""
    delivered = ports.pusher.send_all(caller.connection_id, list(messages))
    if not delivered:
        ports.connections.mark_gone(caller.connection_id)
    return delivered


# --------------------------------------------------------------------------- job messages


def _state(job: JobRecord) -> dict[str, Any]:
    """The fields every job message shares (``protocol.JobState``)."""
    return {
        "job_id": job.job_id,
        "workflow_id": job.workflow_id,
        "status": job.status,
        "executor": job.executor,
        "error": job.error,
        "message": job.message,
        "duration": job.duration,
    }


def job_update(job: JobRecord) -> JobUpdate:
    return JobUpdate(**_state(job))


def node_progress(job: JobRecord) -> NodeProgress | None:
    if job.progress is None:
        return None
    return NodeProgress(
        job_id=job.job_id,
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
        value=OutputValue(uri=uri, filename=output.filename, content_type=output.content_type, size=output.size),
    )


def output_updates(job: JobRecord, store: OutputStore, presign_seconds: int) -> list[OutputUpdate]:
    """One ``output_update`` per output: a presigned URL always, the bytes inline (base64)
    only when the whole message still fits in one WebSocket frame."""
    updates = []
    for stored in job.outputs:
        out = job_output(stored, store.presign(stored, presign_seconds))
        update = OutputUpdate(job_id=job.job_id, workflow_id=job.workflow_id, **_fields(out))
        head = len(encode(update).encode())
        # base64 grows by 4/3; 16 bytes more for the `"data":"",` key.
        if stored.key and stored.size and head + (stored.size + 2) // 3 * 4 + 16 <= MAX_MESSAGE_BYTES:
            data = store.read(stored)
            if data is not None:
                value = update.value.model_copy(update={"data": base64.b64encode(data).decode()})
                update = update.model_copy(update={"value": value})
        updates.append(update)
    return updates


def _fields(out: JobOutput) -> dict[str, Any]:
    # The models, not a dump: OutputUpdate takes the JobOutput's fields as they are.
    return {name: getattr(out, name) for name in JobOutput.model_fields}


def job_view(job: JobRecord, outputs: list[JobOutput] | None = None) -> JobView:
    return JobView(
        **_state(job),
        created_at=job.created_at,
        updated_at=job.updated_at,
        outputs=outputs or [],
        output_count=len(job.outputs),
    )


def job_message(job: JobRecord, store: OutputStore, presign_seconds: int) -> JobMessage:
    """``get_job``'s answer: the job with fresh URLs to every output."""
    outputs = [job_output(o, store.presign(o, presign_seconds)) for o in job.outputs]
    return JobMessage(job=job_view(job, outputs))


def job_list(jobs: list[JobRecord]) -> JobList:
    # The list stays small: no presigned URLs here (get_job gives those), only the count.
    return JobList(jobs=[job_view(j) for j in jobs])


# --------------------------------------------------------------------------- other messages


def error(
    message: str,
    code: str,
    *,
    request: str | None = None,
    job_id: str | None = None,
    workflow_id: str | None = None,
) -> ErrorMessage:
    return ErrorMessage(message=message, code=code, request=request, job_id=job_id, workflow_id=workflow_id)


def rejected(exc: ProtocolError) -> ErrorMessage:
    """The answer to a frame that could not be accepted."""
    return error(exc.message, exc.code, request=exc.command)


def internal_error(request: str | None) -> ErrorMessage:
    return error("internal error; the request was not completed", "internal", request=request)


def job_not_found(job_id: str, request: str) -> ErrorMessage:
    # Someone else's job looks exactly like a missing one.
    return error(f"job {job_id} not found", "not_found", request=request, job_id=job_id)


def pong() -> Pong:
    return Pong()


def workflow_saved(workflow_id: str, settings: Mapping[str, Any]) -> WorkflowSaved:
    return WorkflowSaved(workflow_id=workflow_id, settings=dict(settings))
