"""A job's message stream: every message about a job is numbered (``job_seq``), logged, then
pushed, so a client that comes back (nodetool's ``reconnect_job``) gets what it missed.

The order is what makes a reconnect lose nothing. ``publish`` logs a message before it reads
which connection follows the job; ``reconnect_job`` moves the job to the new connection before
it reads how far the log goes. A message logged before that read is in the replay; one logged
after it is pushed to the new connection. (One logged in between both reaches the new
connection and is replayed: nodetool applies a repeated frame again, which changes nothing.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from comfyroute import messages
from comfyroute.jobs import lifecycle
from comfyroute.jobs.queries import owned_job
from comfyroute.protocol.server_messages import JobResumed, JobStreamMessage, OutputUpdate, server_message_adapter

if TYPE_CHECKING:
    from comfyroute.jobs.record import JobRecord
    from comfyroute.ports import Caller, Ports
    from comfyroute.protocol.commands import ReconnectJobData

# A reconnect replays at most this many messages (the newest); job_resumed says when it cut.
MAX_REPLAY = 500


def publish(ports: Ports, job: JobRecord, stream: Sequence[JobStreamMessage], *, to: str | None = None) -> str | None:
    """Number and log ``stream``, then push it: to ``to`` (a route answering its caller) or to
    the connection that follows the job now. None when delivered, else why not ("no
    connection", "connection gone"): the messages are logged either way."""
    if not stream:
        return None
    seqs = ports.message_log.append(job.job_id, [_logged(m) for m in stream], ttl=job.ttl)
    numbered = [m.model_copy(update={"job_seq": seq}) for m, seq in zip(stream, seqs, strict=True)]
    connection_id = to
    if connection_id is None:
        # Read after logging (module docstring): a reconnect that moved the job meanwhile is seen.
        current = ports.jobs.get(job.job_id)
        connection_id = (current or job).connection_id
        if not connection_id:
            return "no connection"
        conn = ports.connections.get(connection_id)
        if conn is None or conn.gone:
            # The client left; it catches up with reconnect_job or get_job.
            return "connection gone"
    if not ports.pusher.send_all(connection_id, numbered):
        ports.connections.mark_gone(connection_id)
        return "connection gone"
    return None


def _logged(message: JobStreamMessage) -> dict[str, Any]:
    """The message as the log keeps it: an output's presigned URL expires and its inline bytes
    are large, so neither is kept; a replay signs a fresh URL."""
    if isinstance(message, OutputUpdate):
        message = message.model_copy(update={"value": message.value.model_copy(update={"uri": None, "data": None})})
    return message.model_dump(mode="json", exclude_none=True)


def reconnect_job(ports: Ports, caller: Caller, data: ReconnectJobData) -> None:
    """nodetool's ``reconnect_job``: the job follows this connection from now on; the answer is
    ``job_resumed``, then every logged message after ``last_seq``, in order."""
    job = owned_job(ports, caller, data.job_id, "reconnect_job", workflow_id=data.workflow_id)
    if job is None:
        return
    if not job.status.terminal and job.connection_id != caller.connection_id:
        job = lifecycle.attach(ports.jobs, job.job_id, caller.connection_id).job
    last = ports.message_log.last_seq(job.job_id)
    after = min(data.last_seq or 0, last)
    first = max(after, last - MAX_REPLAY)
    logged = ports.message_log.read(job.job_id, first, last, limit=MAX_REPLAY)
    replay: list[BaseModel] = [_restored(ports, job, seq, body) for seq, body in logged]
    if last == 0:
        # Nothing was ever logged for the job (it predates the log, or the log expired): its
        # current state, unnumbered, is all there is to tell.
        replay = [messages.job_update(job)]
    resumed = JobResumed(
        job_id=job.job_id,
        workflow_id=job.workflow_id,
        status="finished" if job.status.terminal else "running",
        last_seq=last,
        replay_count=len(replay),
        replay_incomplete=len(logged) < last - after and last > 0,
    )
    messages.reply(ports, caller, resumed, *replay)


def _restored(ports: Ports, job: JobRecord, seq: int, body: dict[str, Any]) -> BaseModel:
    message = server_message_adapter().validate_python({**body, "job_seq": seq})
    if isinstance(message, OutputUpdate):
        for output in job.outputs:
            if output.node_id == message.node_id and output.filename == message.value.filename:
                uri = ports.outputs.presign(output, ports.config.presign_seconds)
                message = message.model_copy(update={"value": message.value.model_copy(update={"uri": uri})})
                break
    return message
