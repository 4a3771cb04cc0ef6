"""Following a ComfyUI job as it runs: the Follow task of the state machine.

One invocation holds the prompt's ``/ws`` for one window (``FOLLOW_WINDOW_SECONDS``, well under
the function's timeout) through ``executors.comfyui_stream.follow_prompt`` and pushes what
ComfyUI says straight to the job's connection, in the order it said it: ``node_update`` per node
state, ``node_progress`` per sampler step (coalesced), and each output node's files as soon as
``executed`` names them (stored first, then ``output_update``). When the prompt ends, the same
invocation confirms it in ``/history``, stores what was not streamed, records the end and sends
the terminal ``job_update`` after every output (``notified``: the state machine goes straight to
Succeeded). A socket that cannot be used hands the job to the poll loop; a ComfyUI that cannot
be reached is told to the client at once and retried until
``EXECUTOR_UNREACHABLE_DEADLINE_SECONDS``. See docs/following.md.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from aws_lambda_powertools import Logger
from pydantic import BaseModel

from comfyroute import messages, metrics
from comfyroute.executors.base import Executor, ExecutorError, ExecutorStatus, ExecutorUnavailable, OutputFile
from comfyroute.executors.comfyui import ComfyUIExecutor, FileRef, TextRef
from comfyroute.executors.comfyui_stream import (
    FollowConfig,
    FollowEnd,
    FollowResult,
    NodeProgress,
    NodeState,
    NodeUpdate,
    OutputReady,
    PromptStarted,
    StatusSeen,
    StreamEvent,
    follow_prompt,
)
from comfyroute.executors.scrubbed import clean, clean_status, errors_scrubbed, unwrap
from comfyroute.jobs import lifecycle, stream
from comfyroute.jobs.cancel import stop_on_executor
from comfyroute.jobs.follow import executor_unreachable, where
from comfyroute.jobs.record import JobNotFound, JobRecord
from comfyroute.jobs.schedule import NO_OUTPUTS_MESSAGE, fallback_wait, unreachable_wait
from comfyroute.protocol import JobStatus
from comfyroute.protocol.server_messages import JobStreamMessage, NodeStatus

if TYPE_CHECKING:
    from comfyroute.ports import Ports

logger = Logger(child=True)

# Seconds of silence on the socket before one more look (at ComfyUI and at the job's record).
IDLE_LOOK_SECONDS = 5.0
# Pushes wait for the socket to go quiet and go out together (one log write, one look at the
# connection), but no more of them, nor longer, than this: a burst still reaches the client
# as it happens.
BATCH_MESSAGES = 100
BATCH_SECONDS = 0.2


class FollowAnswer(BaseModel):
    """What the Follow task answers; the state machine's ``Next`` Choice reads it (laid over
    the execution's input), and Wait / Poll read ``wait_seconds`` / ``polls`` after it."""

    job_id: str
    follows: int
    polls: int = 0
    done: bool = False
    notified: bool = False
    next: Literal["follow", "wait"] | None = None
    wait_seconds: int = 0
    status: JobStatus


def follow_job(ports: Ports, job_id: str, follows: int = 0) -> FollowAnswer:
    """One window of following ``job_id`` on its ComfyUI."""
    job = ports.jobs.get(job_id)
    if job is None:
        raise JobNotFound(f"job {job_id} has no record")
    count = follows + 1
    if job.status.terminal:
        return FollowAnswer(job_id=job_id, follows=count, status=job.status, done=True)
    if not job.executor_job_id:
        failed = lifecycle.fail(ports.jobs, job_id, "the job has no executor id (its submit did not finish)")
        return FollowAnswer(job_id=job_id, follows=count, status=failed.job.status, done=True)
    wrapped = ports.executors(job.executor, job.user_id, job.endpoint_id)
    comfyui = unwrap(wrapped)
    if not isinstance(comfyui, ComfyUIExecutor) or job.follow_by == "poll":
        # Only ComfyUI streams, and only where its socket worked: Poll looks at anything else.
        return FollowAnswer(job_id=job_id, follows=count, status=job.status, next="wait", wait_seconds=0)
    if time.time() >= job.deadline:
        stop_on_executor(wrapped, job.executor_job_id)
        timed_out = lifecycle.time_out(ports.jobs, job_id, ports.config.job_timeout_seconds)
        return FollowAnswer(job_id=job_id, follows=count, status=timed_out.job.status, done=True)
    return _Window(ports, job, comfyui.for_following(), wrapped, count).run()


class _Window:
    """One window's pushes and writes."""

    def __init__(
        self, ports: Ports, job: JobRecord, executor: ComfyUIExecutor, wrapped: Executor, count: int
    ) -> None:
        self.ports, self.job, self.executor, self.count = ports, job, executor, count
        # What ComfyUI says (errors on the socket, in /history, in exceptions) is scrubbed as
        # the wrapped executor scrubs it before it reaches a record, a message or a log.
        self.wrapped = wrapped
        self.pushed = 0
        self.batches = 0
        self.pending: list[JobStreamMessage] = []
        self.pending_since = 0.0
        self.temps: list[tuple[FileRef, str | None]] = []
        self.ended_elsewhere = False  # the record ended (a cancel) while the window ran
        # Nodes whose end the stream announced (this window or an earlier one).
        self.announced = {nid for nid, state in job.nodes.items() if state != NodeState.RUNNING.value}

    def answer(self, **fields: Any) -> FollowAnswer:
        return FollowAnswer(job_id=self.job.job_id, follows=self.count, status=self.job.status, **fields)

    def run(self) -> FollowAnswer:
        job = self.job
        prompt_id = job.executor_job_id
        assert prompt_id is not None
        try:
            result = self._follow(prompt_id)
        finally:
            self._flush()
        metrics.add("FollowSeconds", result.seconds)
        logger.info(
            "follow window ended",
            extra={
                "end": result.end.value,
                "frames": result.frames,
                "events": result.events,
                "pushed": self.pushed,
                "batches": self.batches,
                "reason": result.reason,
            },
        )
        answer = self.after(result)
        self._flush()
        return answer

    def _follow(self, prompt_id: str) -> FollowResult:
        cfg = self.ports.config
        job = self.job
        return follow_prompt(
            prompt_id,
            target=self.executor.stream_target(job.job_id),
            look=lambda: self.look(prompt_id),
            on_event=self.on_event,
            prompt={nid: {"class_type": cls} for nid, cls in job.node_classes.items()},
            config=FollowConfig(
                window_seconds=cfg.follow_window_seconds,
                progress_per_second=cfg.follow_progress_per_second,
                # Each look also reads the record: a cancel ends the window within this.
                idle_look_seconds=IDLE_LOOK_SECONDS,
            ),
            known_nodes=job.nodes,
            on_quiet=self._flush,
        )

    def look(self, prompt_id: str) -> ExecutorStatus:
        """One look at the prompt, after one at the record: a job cancelled (or otherwise ended)
        meanwhile ends the window at once."""
        current = self.ports.jobs.get(self.job.job_id)
        if current is not None and current.status.terminal:
            self.ended_elsewhere = True
            return ExecutorStatus(state=current.status, error=current.error, message=current.message)
        return self._status(prompt_id)

    def _status(self, prompt_id: str) -> ExecutorStatus:
        with errors_scrubbed(self.wrapped):
            status = self.executor.status(prompt_id, submitted_at=self.job.created_at, peek=False)
        return clean_status(self.wrapped, status)

    # -- events, in ComfyUI's order ----------------------------------------------------------

    def on_event(self, event: StreamEvent) -> None:
        if isinstance(event, NodeUpdate):
            node = event.node
            if event.state is not NodeState.RUNNING:
                self.announced.add(node.node_id)
            cached = event.state is NodeState.CACHED
            status: NodeStatus = "completed" if cached else event.state.value  # type: ignore[assignment]
            error = clean(self.wrapped, event.error)
            self._push(messages.node_update(self.job, node.node_id, status, error=error, cached=cached or None))
        elif isinstance(event, NodeProgress):
            self._push(messages.step_progress(self.job, event.node.node_id, event.value, event.max))
        elif isinstance(event, OutputReady):
            # Previews (temp files) count only when the prompt saves nothing else
            # (collect_refs' rule): kept back until the end.
            temps = [r for r in event.refs if isinstance(r, FileRef) and r.type == "temp"]
            self.temps += [(r, event.node.node_type) for r in temps]
            saved = [r for r in event.refs if r not in temps]
            if saved:
                # What came before goes out now, not after the download and the S3 upload.
                self._flush()
            self._store(saved, event.node.node_type)
        elif isinstance(event, StatusSeen):
            self._observed(clean_status(self.wrapped, event.status))
        elif isinstance(event, PromptStarted) and self.job.status is JobStatus.QUEUED:
            self._observed(ExecutorStatus(state=JobStatus.RUNNING))

    def _observed(self, status: ExecutorStatus) -> None:
        if status.state.terminal:
            return  # recorded at the end, after the last outputs
        job = self.job
        same = status.state == job.status and status.queue_position == job.queue_position
        if same and job.unreachable_since is None and job.message == status.message:
            return
        outcome = lifecycle.observed(self.ports.jobs, job, status)
        self.job = outcome.job
        if outcome.applied:
            self._push(messages.job_update(self.job))

    def _store(self, refs: Sequence[FileRef | TextRef], node_type: str | None, *, last: bool = False) -> None:
        """Fetch, store and announce the outputs among ``refs`` the job does not have yet
        (``last``: the job's end records them, with its status)."""
        stored = list(self.job.outputs)
        fresh: list[tuple[OutputFile, bytes | None]] = []
        for ref in refs:
            if any(_is(ref, s) for s in stored):
                continue
            name = node_type or self.job.node_classes.get(ref.node_id, ref.node_id)
            kept, data = self._keep(ref, name, len(stored))
            stored.append(kept)
            fresh.append((kept, data))
        if not fresh:
            return
        if last:
            self.job = self.job.model_copy(update={"outputs": stored})
        else:
            self.job = lifecycle.outputs_stored(self.ports.jobs, self.job.job_id, stored).job
        presign = self.ports.config.presign_seconds
        for kept, data in fresh:
            self._push(messages.output_update(self.job, kept, self.ports.outputs, presign, data))

    def _keep(self, ref: FileRef | TextRef, node_name: str, index: int) -> tuple[OutputFile, bytes | None]:
        """Store one output; a file goes from ComfyUI's /view to S3 in parts, never whole in
        this small function's memory. Answers it as recorded, and its bytes when small."""
        job_id = self.job.job_id
        with errors_scrubbed(self.wrapped):
            if isinstance(ref, TextRef):
                file = self.executor.output_file(ref).model_copy(update={"node_name": node_name})
                return self.ports.outputs.put(job_id, index, file), file.data
            with self.executor.open_output(ref) as (body, content_type):
                meta = self.executor.output_meta(ref, content_type).model_copy(update={"node_name": node_name})
                kept = self.ports.outputs.put_stream(job_id, index, meta, body)
        return kept, body.small

    def _push(self, message: JobStreamMessage) -> None:
        """Queued in order; sent with the others when the socket goes quiet (``_flush``)."""
        now = time.monotonic()
        if not self.pending:
            self.pending_since = now
        self.pending.append(message)
        if len(self.pending) >= BATCH_MESSAGES or now - self.pending_since >= BATCH_SECONDS:
            self._flush()

    def _flush(self) -> None:
        """Numbered, logged, then pushed (``jobs.stream``), so a client that reconnects gets
        them; a client gone meanwhile catches up with reconnect_job or get_job. Following goes
        on either way."""
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        self.batches += 1
        if stream.publish(self.ports, self.job, batch) is None:
            self.pushed += len(batch)

    # -- the end of the window ---------------------------------------------------------------

    def after(self, result: FollowResult) -> FollowAnswer:
        if self.ended_elsewhere:
            # Whoever ended it (cancel_job) recorded and told it.
            self.job = self.ports.jobs.get(self.job.job_id) or self.job
            return self.answer(done=True, notified=True)
        if result.end is FollowEnd.FINISHED:
            return self._finish(result)
        if result.end is FollowEnd.EXECUTOR_UNREACHABLE:
            return self._unreachable()
        if dict(result.nodes) != self.job.nodes:
            self.job = lifecycle.nodes_seen(self.ports.jobs, self.job.job_id, dict(result.nodes)).job
        if self.job.status.terminal:  # cancelled meanwhile
            return self.answer(done=True)
        if result.end is FollowEnd.WINDOW_OVER:
            return self.answer(next="follow")
        logger.info("ComfyUI websocket unusable: polling instead", extra={"reason": result.reason})
        metrics.add("FollowSocketUnavailable", 1)
        self.job = lifecycle.follow_by_polling(self.ports.jobs, self.job.job_id).job
        cfg = self.ports.config
        first = fallback_wait(0, cfg.poll_fallback_cap_seconds, cfg.poll_interval_start_seconds)
        return self.answer(next="wait", wait_seconds=first)

    def _unreachable(self) -> FollowAnswer:
        job, told = executor_unreachable(self.ports, self.job, where(self.executor))
        self.job = job
        if job.status.terminal:
            return self.answer(done=True)
        if told:
            self._push(messages.job_update(job))
        elapsed = time.time() - (job.unreachable_since or time.time())
        return self.answer(next="wait", wait_seconds=unreachable_wait(elapsed))

    def _finish(self, result: FollowResult) -> FollowAnswer:
        job = self.job
        prompt_id = job.executor_job_id
        assert prompt_id is not None
        status = clean_status(self.wrapped, result.status) if result.status is not None else None
        if result.whole and status is not None and status.state.terminal:
            # The socket showed the whole prompt, its end after the /history write: nothing to
            # look up, every output went by as it was made.
            return self._close(status, streamed=True)
        if status is None or not result.confirmed:
            # ComfyUI said so on the socket; /history is the record, and holds the outputs of
            # nodes that ran before the socket was open.
            try:
                looked = self._status(prompt_id)
            except ExecutorUnavailable:
                looked = None
            if looked is not None and looked.state.terminal:
                status = looked
        if status is None or not status.state.terminal:
            # It ended on the socket but is not in /history yet (or ComfyUI went away): Poll
            # takes it from here, with its own schedule.
            return self.answer(next="wait", wait_seconds=1)
        return self._close(status, streamed=False)

    def _close(self, status: ExecutorStatus, *, streamed: bool) -> FollowAnswer:
        """Store the last outputs, record the end, send the terminal update after them."""
        job = self.job
        prompt_id = job.executor_job_id
        assert prompt_id is not None
        state, error = status.state, status.error
        if state is JobStatus.COMPLETED and streamed:
            if not self.job.outputs:
                for ref, node_type in self.temps:
                    self._store([ref], node_type, last=True)
        elif state is JobStatus.COMPLETED:
            try:
                with errors_scrubbed(self.wrapped):
                    refs = self.executor.output_refs(prompt_id)
                self._store(refs, None, last=True)
            except ExecutorUnavailable:
                return self.answer(next="wait", wait_seconds=1)
            except (ExecutorError, ValueError) as exc:
                state, error = JobStatus.FAILED, f"the job finished but its outputs could not be fetched: {exc}"
        message = status.message
        if state is JobStatus.COMPLETED and not self.job.outputs and not message:
            message = NO_OUTPUTS_MESSAGE
        outcome = lifecycle.finish(
            self.ports.jobs,
            job.job_id,
            state,
            error=error,
            errors=status.errors if state is JobStatus.FAILED and status.errors else (),
            message=message,
            outputs=self.job.outputs,
            node_states=status.nodes,
        )
        self.job = outcome.job
        if outcome.applied:
            # Nodes that ran before the socket was open (or all of a prompt over before it):
            # their outcome from /history, as Notify sends it, before the terminal update.
            for update in messages.final_node_updates(self.job):
                if update.node_id not in self.announced:
                    self._push(update)
        # Every output_update went out already (streamed, or just above): the terminal one is
        # last. A job that ended meanwhile (cancelled) was told by whoever ended it.
        if outcome.applied:
            self._push(messages.job_update(self.job, output_count=len(self.job.outputs)))
        return self.answer(done=True, notified=True)


def _is(ref: FileRef | TextRef, stored: OutputFile) -> bool:
    if stored.node_id != ref.node_id or stored.output_name != ref.output_name:
        return False
    if isinstance(ref, TextRef):
        return stored.filename == f"{ref.node_id}-text-{ref.position}.txt"
    return stored.filename == ref.filename
