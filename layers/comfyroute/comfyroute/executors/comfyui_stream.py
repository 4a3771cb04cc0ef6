"""Following one ComfyUI prompt as it runs, on ComfyUI's ``/ws?clientId=<the prompt's client id>``.

Two parts:

* ``PromptStream`` — a pure interpreter: websocket frames in (oldest first, each with the time it
  arrived), typed events out. Node starts, completions, cache hits and errors become
  ``NodeUpdate``; sampler steps become ``NodeProgress``, at most ``progress_per_second`` per prompt
  (a step held back is delivered when its interval is over or before the next other event, so
  the last step of a node is never lost); each ``executed`` becomes ``OutputReady`` with the
  node's file entries, so the caller can fetch and store them at once; ``execution_success`` /
  ``execution_error`` / ``execution_interrupted`` become ``PromptEnded``. Binary frames (preview
  images) and anything unparseable are skipped.
* ``follow_prompt`` — the I/O edge: one socket and the caller's one HTTP look for a bounded
  window. It opens the socket first and only then looks at ``/queue`` and ``/history`` once (a
  prompt can finish before the socket is open), forwards events to a callback, and returns how
  the follow ended: the prompt finished, the window is over (call again), the socket could not be
  used (fall back to polling), or the executor could not be reached at all. After the terminal
  message it reads on briefly for ``executing {node: null}``, which ComfyUI sends only once the
  prompt is in ``/history``, so the caller's confirming look finds it there.

What ComfyUI says (recorded from 0.3.64, ``ws_sequence_*``): ``status`` to every socket when the
queue changes; to the prompt's client only: ``execution_start``, ``execution_cached {nodes}``, per
node ``progress_state`` (node running) and ``executing {node}``, ``progress {value, max}`` for
nodes that report steps, ``executed {node, output}`` for output nodes (cached ones included),
``progress_state`` (node finished), then the terminal message and ``executing {node: null}``. On
connect ComfyUI re-sends ``executing {node}`` (without prompt_id) to the running prompt's client.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from comfyroute.executors.base import ExecutorStatus, ExecutorUnavailable, Lenient
from comfyroute.executors.comfyui import FileRef, TextRef, collect_refs, failure_problem
from comfyroute.protocol import JobStatus
from comfyroute.text import clip, one_line

logger = logging.getLogger(__name__)

# websockets logs handshake headers (tunnel tokens) at DEBUG: a logger outside the logging tree
# that is never enabled, whatever the application configures.
_SILENT_WS_LOGGER = logging.Logger("comfyroute.comfyui_stream.websocket", level=logging.CRITICAL + 1)


# --------------------------------------------------------------------------- events


class NodeState(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    CACHED = "cached"
    ERROR = "error"


@dataclass(frozen=True)
class NodeInfo:
    """A node as the prompt names it: ``node_type`` is its class, ``node_name`` its title
    (``_meta.title``) or else its class. Both are None for a node the prompt does not hold."""

    node_id: str
    node_type: str | None = None
    node_name: str | None = None


@dataclass(frozen=True)
class PromptStarted:
    prompt_id: str


@dataclass(frozen=True)
class NodeUpdate:
    node: NodeInfo
    state: NodeState
    error: str | None = None


@dataclass(frozen=True)
class NodeProgress:
    node: NodeInfo
    value: float
    max: float


@dataclass(frozen=True)
class OutputReady:
    """An output node finished: its files (``FileRef``, to fetch from ``/view``) and texts.
    ``temp`` files (PreviewImage) are included; whether to keep them is the caller's rule."""

    node: NodeInfo
    refs: tuple[FileRef | TextRef, ...]


@dataclass(frozen=True)
class QueueChanged:
    """ComfyUI's queue changed (``status``); says nothing about which prompt."""

    queue_remaining: int | None


@dataclass(frozen=True)
class PromptEnded:
    """The prompt ended as ComfyUI said on the socket. ``/history`` stays the record to confirm it
    and to collect outputs that were produced before the socket was open."""

    status: ExecutorStatus


@dataclass(frozen=True)
class StatusSeen:
    """What an HTTP look said (``follow_prompt`` only): queued with a position, running, or done."""

    status: ExecutorStatus


StreamEvent = PromptStarted | NodeUpdate | NodeProgress | OutputReady | QueueChanged | PromptEnded | StatusSeen


# --------------------------------------------------------------------------- ComfyUI messages


NodeRef = str | int


class _Message(Lenient):
    type: str
    data: dict[str, Any] = Field(default_factory=dict)


class _Executing(Lenient):
    node: NodeRef | None = None
    display_node: NodeRef | None = None
    prompt_id: str | None = None


class _Progress(Lenient):
    value: float
    max: float
    node: NodeRef | None = None
    display_node: NodeRef | None = None
    prompt_id: str | None = None


class _NodeProgressState(Lenient):
    value: float = 0
    max: float = 1
    state: str
    display_node_id: NodeRef | None = None


class _ProgressState(Lenient):
    prompt_id: str | None = None
    nodes: dict[str, _NodeProgressState] = Field(default_factory=dict)


class _Cached(Lenient):
    prompt_id: str | None = None
    nodes: list[NodeRef] = Field(default_factory=list)


class _Executed(Lenient):
    node: NodeRef
    display_node: NodeRef | None = None
    output: dict[str, Any] | None = None
    prompt_id: str | None = None


class _Failure(Lenient):
    prompt_id: str | None = None
    node_id: NodeRef | None = None
    node_type: str | None = None
    exception_type: str | None = None
    exception_message: str | None = None


class _QueueStatus(Lenient):
    class _Status(Lenient):
        class _ExecInfo(Lenient):
            queue_remaining: int | None = None

        exec_info: _ExecInfo = Field(default_factory=_ExecInfo)

    status: _Status = Field(default_factory=_Status)


# --------------------------------------------------------------------------- pure helpers


def _label(node_id: str | None, node_type: str | None) -> str:
    if node_id is None:
        return f"node ({node_type})" if node_type else ""
    return f"node {node_id} ({node_type})" if node_type else f"node {node_id}"


def node_info(prompt: Mapping[str, Any] | None, node_id: str, fallback_type: str | None = None) -> NodeInfo:
    """The node's class and title as the prompt holds them (``class_type``, ``_meta.title``)."""
    spec = prompt.get(node_id) if prompt is not None else None
    node_type = fallback_type
    title: str | None = None
    if isinstance(spec, Mapping):
        if isinstance(spec.get("class_type"), str) and spec["class_type"]:
            node_type = spec["class_type"]
        meta = spec.get("_meta")
        if isinstance(meta, Mapping) and isinstance(meta.get("title"), str) and meta["title"].strip():
            title = meta["title"].strip()
    return NodeInfo(node_id=node_id, node_type=node_type, node_name=title or node_type)


def failure_status(prompt_id: str, failure: Mapping[str, Any], *, interrupted: bool) -> ExecutorStatus:
    """The terminal status for ``execution_error`` / ``execution_interrupted``, worded as the
    executor words the same entry of ``/history`` (``history_status``)."""
    info = _Failure.model_validate(failure)
    node_id = None if info.node_id is None else str(info.node_id)
    where = _label(node_id, info.node_type)
    if interrupted:
        return ExecutorStatus(
            state=JobStatus.CANCELLED,
            message=f"ComfyUI interrupted prompt {prompt_id}" + (f" at {where}" if where else ""),
        )
    exc_type = (info.exception_type or "").strip()
    exc_msg = one_line(info.exception_message or "") or "no message"
    what = f"{exc_type}: {exc_msg}" if exc_type else exc_msg
    return ExecutorStatus(
        state=JobStatus.FAILED,
        error=clip(f"ComfyUI {where or 'an unknown node'} failed: {what}"),
        errors=[failure_problem(node_id, info.node_type, what)],
    )


# --------------------------------------------------------------------------- the interpreter


@dataclass
class PromptStream:
    """Folds the frames of one prompt's socket into events (see the module docstring).

    ``feed(frame, now)`` returns the events a frame causes, ``flush(now)`` a held progress step
    whose interval is over (``next_flush_at`` says when one is due), ``drain()`` whatever is
    held, for the end of a window. Messages naming another prompt are ignored; messages naming
    none (the ``executing`` re-sent on connect, ``status``) are this prompt's, because the
    socket's client id belongs to this prompt alone. Every node is announced at most once per
    state. ``progress_per_second`` <= 0 delivers every step.
    """

    prompt_id: str
    prompt: Mapping[str, Any] | None = None
    progress_per_second: float = 2.0
    started: bool = False
    ended: bool = False
    # ComfyUI's ``executing {node: null}``: sent after the prompt reached /history, so a look
    # after it finds the prompt there (the terminal message comes before the history write).
    idle: bool = False
    saw_execution_start: bool = False  # on this stream: every event of the prompt went by it
    outcome: ExecutorStatus | None = None
    frames: int = 0
    skipped: int = 0
    _states: dict[str, NodeState] = field(default_factory=dict)
    _steps: dict[str, tuple[float, float]] = field(default_factory=dict)
    _has_progress_state: bool = False
    _held: NodeProgress | None = None
    _sent_at: float | None = None

    # -- public ---------------------------------------------------------------------------

    @property
    def next_flush_at(self) -> float | None:
        if self._held is None:
            return None
        return self._sent_at + self._interval if self._sent_at is not None else 0.0

    def feed(self, frame: str | bytes | Mapping[str, Any], now: float) -> list[StreamEvent]:
        self.frames += 1
        if isinstance(frame, bytes | bytearray | memoryview):
            return []  # preview images: the client gets outputs, not previews
        try:
            raw = json.loads(frame) if isinstance(frame, str) else frame
            message = _Message.model_validate(raw)
            if self.ended:
                self._note_idle(message)
                return []
            handler = self._handlers.get(message.type)
            if handler is None:
                return []
            produced = handler(self, message.data)
        except (ValueError, ValidationError):  # json's and pydantic's errors
            self.skipped += 1
            return []
        return self._deliver(produced, now)

    def flush(self, now: float) -> list[StreamEvent]:
        due = self.next_flush_at
        if due is None or now < due:
            return []
        return self.drain(now)

    def drain(self, now: float | None = None) -> list[StreamEvent]:
        """Whatever step is held back, at once (before another event, or at the end)."""
        held, self._held = self._held, None
        if held is None:
            return []
        if now is not None:
            self._sent_at = now
        return [held]

    @property
    def nodes(self) -> dict[str, NodeState]:
        """Each node's last announced state."""
        return dict(self._states)

    def resume(self, nodes: Mapping[str, NodeState | str]) -> None:
        """Carry on from an earlier stream of this prompt (another window): its nodes are not
        announced again, and the prompt counts as started."""
        self._states.update({str(k): NodeState(v) for k, v in nodes.items()})
        self.started = self.started or bool(nodes)

    def node(self, node_id: str, fallback_type: str | None = None) -> NodeInfo:
        return node_info(self.prompt, node_id, fallback_type)

    # -- delivery (coalescing of progress) --------------------------------------------------

    @property
    def _interval(self) -> float:
        return 1.0 / self.progress_per_second if self.progress_per_second > 0 else 0.0

    def _deliver(self, produced: list[StreamEvent], now: float) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for event in produced:
            if isinstance(event, NodeProgress):
                self._held = event  # a newer step replaces one not yet delivered
                out.extend(self.flush(now))
            elif isinstance(event, QueueChanged):
                out.append(event)  # says nothing about our nodes: no need to release a step first
            else:
                out.extend(self.drain(now))  # a held step goes before what follows it
                out.append(event)
        return out

    # -- messages ---------------------------------------------------------------------------

    def _note_idle(self, message: _Message) -> None:
        if message.type == "executing":
            info = _Executing.model_validate(message.data)
            if info.node is None and self._ours(info.prompt_id):
                self.idle = True

    def _ours(self, prompt_id: str | None) -> bool:
        return prompt_id is None or prompt_id == self.prompt_id

    def _announce(
        self, node_id: str, state: NodeState, *, node_type: str | None = None, error: str | None = None
    ) -> list[StreamEvent]:
        before = self._states.get(node_id)
        if before is state or before in (NodeState.CACHED, NodeState.ERROR):
            return []
        if state is NodeState.RUNNING and before is NodeState.COMPLETED:
            return []
        self._states[node_id] = state
        return [NodeUpdate(node=self.node(node_id, node_type), state=state, error=error)]

    def _start(self) -> list[StreamEvent]:
        if self.started:
            return []
        self.started = True
        return [PromptStarted(self.prompt_id)]

    def _running(self, node_id: str) -> list[StreamEvent]:
        out = self._start()
        if not self._has_progress_state:
            # Servers without progress_state run one node at a time: a node starting means the
            # one before it is done.
            for other, state in list(self._states.items()):
                if state is NodeState.RUNNING and other != node_id:
                    out += self._announce(other, NodeState.COMPLETED)
        return out + self._announce(node_id, NodeState.RUNNING)

    def _step(self, node_id: str, value: float, maximum: float) -> list[StreamEvent]:
        if maximum <= 0 or self._steps.get(node_id) == (value, maximum):
            return []
        if (value, maximum) == (0, 1) and node_id not in self._steps:
            return []  # "started, one unit of work": the running update says it already
        self._steps[node_id] = (value, maximum)
        return [NodeProgress(node=self.node(node_id), value=value, max=maximum)]

    def _end(self, status: ExecutorStatus) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        if status.state is JobStatus.COMPLETED:
            for node_id, state in list(self._states.items()):
                if state is NodeState.RUNNING:
                    out += self._announce(node_id, NodeState.COMPLETED)
        self.ended, self.outcome = True, status
        return [*out, PromptEnded(status)]

    def _on_status(self, data: dict[str, Any]) -> list[StreamEvent]:
        return [QueueChanged(_QueueStatus.model_validate(data).status.exec_info.queue_remaining)]

    def _on_execution_start(self, data: dict[str, Any]) -> list[StreamEvent]:
        if not self._ours(data.get("prompt_id")):
            return []
        self.saw_execution_start = True
        return self._start()

    def _on_execution_cached(self, data: dict[str, Any]) -> list[StreamEvent]:
        info = _Cached.model_validate(data)
        if not self._ours(info.prompt_id):
            return []
        out = self._start()
        for node in info.nodes:
            out += self._announce(str(node), NodeState.CACHED)
        return out

    def _on_executing(self, data: dict[str, Any]) -> list[StreamEvent]:
        info = _Executing.model_validate(data)
        if not self._ours(info.prompt_id):
            return []
        node = info.display_node if info.display_node is not None else info.node
        if node is None:
            # ComfyUI's "nothing runs any more". Servers from before execution_success end with
            # this alone; newer ones send it after the terminal message, which ended us already.
            self.idle = True
            return self._end(ExecutorStatus(state=JobStatus.COMPLETED))
        return self._running(str(node))

    def _on_progress(self, data: dict[str, Any]) -> list[StreamEvent]:
        info = _Progress.model_validate(data)
        if not self._ours(info.prompt_id):
            return []
        node = info.display_node if info.display_node is not None else info.node
        running = [n for n, s in self._states.items() if s is NodeState.RUNNING]
        node_id = str(node) if node is not None else (running[-1] if running else None)
        if node_id is None:
            return []
        return self._running(node_id) + self._step(node_id, info.value, info.max)

    def _on_progress_state(self, data: dict[str, Any]) -> list[StreamEvent]:
        info = _ProgressState.model_validate(data)
        if not self._ours(info.prompt_id):
            return []
        self._has_progress_state = True
        out: list[StreamEvent] = []
        for key, node in info.nodes.items():
            node_id = str(node.display_node_id if node.display_node_id is not None else key)
            if node.state == "running":
                out += self._running(node_id) + self._step(node_id, node.value, node.max)
            elif node.state == "finished":
                if node_id in self._steps:
                    out += self._step(node_id, node.value, node.max)  # the bar reaches its end
                out += self._announce(node_id, NodeState.COMPLETED)
        return out

    def _on_executed(self, data: dict[str, Any]) -> list[StreamEvent]:
        info = _Executed.model_validate(data)
        if not self._ours(info.prompt_id) or not info.output:
            return []
        node_id = str(info.display_node if info.display_node is not None else info.node)
        refs = tuple(collect_refs({node_id: info.output}))
        return [OutputReady(node=self.node(node_id), refs=refs)] if refs else []

    def _on_success(self, data: dict[str, Any]) -> list[StreamEvent]:
        if not self._ours(data.get("prompt_id")):
            return []
        return self._end(ExecutorStatus(state=JobStatus.COMPLETED))

    def _on_error(self, data: dict[str, Any]) -> list[StreamEvent]:
        info = _Failure.model_validate(data)
        if not self._ours(info.prompt_id):
            return []
        status = failure_status(self.prompt_id, data, interrupted=False)
        out: list[StreamEvent] = []
        if info.node_id is not None:
            exc_type = (info.exception_type or "").strip()
            exc_msg = one_line(info.exception_message or "") or "no message"
            error = clip(f"{exc_type}: {exc_msg}" if exc_type else exc_msg)
            out = self._announce(str(info.node_id), NodeState.ERROR, node_type=info.node_type, error=error)
        return out + self._end(status)

    def _on_interrupted(self, data: dict[str, Any]) -> list[StreamEvent]:
        if not self._ours(_Failure.model_validate(data).prompt_id):
            return []
        return self._end(failure_status(self.prompt_id, data, interrupted=True))

    _handlers: ClassVar[dict[str, Callable[[PromptStream, dict[str, Any]], list[StreamEvent]]]] = {
        "status": _on_status,
        "execution_start": _on_execution_start,
        "execution_cached": _on_execution_cached,
        "executing": _on_executing,
        "progress": _on_progress,
        "progress_state": _on_progress_state,
        "executed": _on_executed,
        "execution_success": _on_success,
        "execution_error": _on_error,
        "execution_interrupted": _on_interrupted,
    }


def interpret(
    frames: Sequence[str | bytes | Mapping[str, Any]],
    prompt_id: str,
    prompt: Mapping[str, Any] | None = None,
    *,
    progress_per_second: float = 0.0,
    times: Sequence[float] | None = None,
) -> list[StreamEvent]:
    """Every event of a whole sequence of frames (``times``: when each arrived; all at 0 by
    default), with whatever was held back delivered at the end."""
    stream = PromptStream(prompt_id, prompt, progress_per_second=progress_per_second)
    events: list[StreamEvent] = []
    for index, frame in enumerate(frames):
        now = times[index] if times is not None else 0.0
        events += stream.flush(now)
        events += stream.feed(frame, now)
    return events + stream.drain()


# --------------------------------------------------------------------------- the follow loop


class FollowEnd(StrEnum):
    FINISHED = "finished"  # the prompt ended: confirm with /history, collect what was not streamed
    WINDOW_OVER = "window_over"  # still running or queued: follow again
    SOCKET_UNAVAILABLE = "socket_unavailable"  # HTTP works, /ws does not: poll instead
    EXECUTOR_UNREACHABLE = "executor_unreachable"  # HTTP does not work either: tell the client, retry


class FollowConfig(BaseModel):
    """How one follow behaves. The window must stay well under the Lambda's timeout: the caller
    still stores outputs and writes the job after it."""

    model_config = ConfigDict(frozen=True)

    window_seconds: float = Field(default=240.0, gt=0, le=840)
    connect_timeout: float = Field(default=3.0, gt=0, le=30)  # TCP, TLS and the ws handshake
    close_timeout: float = Field(default=0.5, ge=0, le=10)
    # Preview frames of big images can be large; a bigger frame cuts the socket (then one
    # reconnect) rather than using memory.
    max_frame_bytes: int = Field(default=16 * 1024 * 1024, ge=64 * 1024)
    progress_per_second: float = Field(default=2.0, ge=0)
    # A node can run for minutes without a word: look over HTTP after this much silence, so a
    # prompt that ended unseen (deleted, ComfyUI restarted behind a proxy) is noticed.
    idle_look_seconds: float = Field(default=30.0, gt=0)
    # While queued, each ``status`` (the queue moved) may trigger a look for the new position,
    # at most this often.
    queue_look_seconds: float = Field(default=2.0, ge=0)
    reconnects: int = Field(default=1, ge=0, le=5)
    # After the terminal message, read on this long for ``executing {node: null}``, which ComfyUI
    # sends once the prompt is in /history: the caller's confirming look then finds it there.
    end_grace_seconds: float = Field(default=1.0, ge=0, le=10)


@dataclass(frozen=True)
class SocketTarget:
    """Where the prompt's events are: ``websocket_url(base, client_id)`` and the headers a
    tunnel needs (sent on the handshake only, never logged)."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class FollowResult:
    end: FollowEnd
    # FINISHED: the terminal status (from the socket, or from /history when ``confirmed``);
    # otherwise the last one known (None when nothing could be asked).
    status: ExecutorStatus | None
    confirmed: bool
    outputs: tuple[str, ...]  # node ids whose OutputReady was delivered, in order
    nodes: dict[str, NodeState]  # what was announced: pass back as known_nodes next window
    reason: str | None = None  # why the socket or the executor failed (type and status only)
    frames: int = 0
    events: int = 0
    looks: int = 0
    connects: int = 0
    seconds: float = 0.0
    # The socket showed the whole prompt: its start (execution_start) and, after the terminal
    # message, "nothing runs" (sent once the prompt is in /history).
    whole: bool = False


Look = Callable[[], ExecutorStatus]
EventSink = Callable[[StreamEvent], None]
Connect = Callable[..., ClientConnection]


def follow_prompt(
    prompt_id: str,
    *,
    target: SocketTarget,
    look: Look,
    on_event: EventSink,
    prompt: Mapping[str, Any] | None = None,
    config: FollowConfig | None = None,
    known_nodes: Mapping[str, NodeState | str] | None = None,
    clock: Callable[[], float] = time.monotonic,
    connect: Connect = ws_connect,
    on_quiet: Callable[[], None] | None = None,
) -> FollowResult:
    """Follow one prompt for at most ``config.window_seconds``.

    ``look`` is one HTTP look at the prompt (``/queue``, then ``/history``), e.g. the executor's
    ``status(prompt_id)`` with its progress peek off: it raises ``ExecutorUnavailable`` when
    ComfyUI cannot be reached; ``ExecutorRejected`` (a tunnel refusing the credentials) is not
    caught. ``on_event`` runs on this thread, in order; it may fetch and store an output (the
    socket buffers meanwhile) and its exceptions end the follow. ``known_nodes`` (the ``nodes`` of
    the previous window's result) keeps a node from being announced twice across windows.
    ``on_quiet`` runs whenever every frame that has arrived was handled, before the follower
    waits for more: where a sink batches its pushes (a 1,000-node prompt sends 2,000 updates in
    a burst), that is when to send the batch.
    """
    follower = _Follower(prompt_id, target, look, on_event, prompt, config or FollowConfig(), clock, connect, on_quiet)
    if known_nodes:
        follower.stream.resume(known_nodes)
    return follower.run()


class _Follower:
    def __init__(
        self,
        prompt_id: str,
        target: SocketTarget,
        look: Look,
        on_event: EventSink,
        prompt: Mapping[str, Any] | None,
        config: FollowConfig,
        clock: Callable[[], float],
        connect: Connect,
        on_quiet: Callable[[], None] | None = None,
    ) -> None:
        self.prompt_id, self.target, self._look_fn, self._sink = prompt_id, target, look, on_event
        self.config, self.clock, self._connect = config, clock, connect
        self.stream = PromptStream(prompt_id, prompt, progress_per_second=config.progress_per_second)
        self.started_at = clock()
        self.deadline = self.started_at + config.window_seconds
        self.status: ExecutorStatus | None = None
        self.outputs: list[str] = []
        self.events = self.looks = self.connects = 0
        self.looked_at = self.heard_at = self.started_at
        self.reconnects_left = config.reconnects
        self._on_quiet = on_quiet

    # -- the loop -----------------------------------------------------------------------------

    def run(self) -> FollowResult:
        ws, why = self._open()
        if ws is None:
            # No socket: one look says whether HTTP works and whether the prompt is done anyway.
            return self._after_look(FollowEnd.SOCKET_UNAVAILABLE, why)
        try:
            # After the socket is open, so a prompt that ends now is either in /history or on
            # the socket: never in neither.
            first = self._look(emit_always=True)
            if first is not None:
                return first
            return self._listen(ws)
        finally:
            ws.close()

    def _listen(self, ws: ClientConnection) -> FollowResult:
        while True:
            now = self.clock()
            self._emit(self.stream.flush(now))
            if now >= self.deadline:
                self._emit(self.stream.drain(now))
                return self._result(FollowEnd.WINDOW_OVER)
            try:
                frame = self._next_frame(ws)
            except TimeoutError:
                if self.clock() - max(self.heard_at, self.looked_at) >= self.config.idle_look_seconds:
                    ended = self._look()
                    if ended is not None:
                        return ended
                continue
            except ConnectionClosed as exc:
                ended = self._look()
                if ended is not None:
                    return ended
                reopened = self._reopen(exc)
                if isinstance(reopened, FollowResult):
                    return reopened
                ws = reopened
                continue
            self.heard_at = self.clock()
            for event in self.stream.feed(frame, self.heard_at):
                if isinstance(event, QueueChanged):
                    ended = self._queue_moved()
                    if ended is not None:
                        return ended
                    continue
                self._emit([event])
            if self.stream.ended:
                self.status = self.stream.outcome
                self._await_idle(ws)
                return self._result(FollowEnd.FINISHED)

    def _next_frame(self, ws: ClientConnection) -> str | bytes:
        """The next frame: one that has arrived already, or else, once ``on_quiet`` has run
        (every frame so far handled), the next within the wait."""
        if self._on_quiet is not None:
            try:
                return ws.recv(timeout=0)
            except TimeoutError:
                self._on_quiet()
        return ws.recv(timeout=self._wait(self.clock()))

    def _await_idle(self, ws: ClientConnection) -> None:
        until = self.clock() + self.config.end_grace_seconds
        while not self.stream.idle:
            left = until - self.clock()
            if left <= 0:
                return
            try:
                self.stream.feed(ws.recv(timeout=left), self.clock())
            except (TimeoutError, ConnectionClosed):
                return

    def _wait(self, now: float) -> float:
        wait = self.deadline - now
        due = self.stream.next_flush_at
        if due is not None:
            wait = min(wait, due - now)
        wait = min(wait, max(self.heard_at, self.looked_at) + self.config.idle_look_seconds - now)
        return max(wait, 0.0)

    def _queue_moved(self) -> FollowResult | None:
        if self.stream.started or self.clock() - self.looked_at < self.config.queue_look_seconds:
            return None
        return self._look()

    def _reopen(self, closed: ConnectionClosed) -> ClientConnection | FollowResult:
        why = f"socket closed ({closed.rcvd.code if closed.rcvd else 'no close frame'})"
        if self.reconnects_left <= 0:
            return self._result(FollowEnd.SOCKET_UNAVAILABLE, why)
        self.reconnects_left -= 1
        self.stream.saw_execution_start = False  # what came between drop and reopen is lost
        ws, reopen_why = self._open()
        if ws is None:
            return self._result(FollowEnd.SOCKET_UNAVAILABLE, f"{why}; reconnect failed: {reopen_why}")
        # Events between the drop and now are lost; the re-sent ``executing`` and the next look
        # (idle or at the end) cover what matters.
        return ws

    # -- the edges ----------------------------------------------------------------------------

    def _open(self) -> tuple[ClientConnection | None, str | None]:
        self.connects += 1
        try:
            ws = self._connect(
                self.target.url,
                additional_headers=dict(self.target.headers),
                open_timeout=self.config.connect_timeout,
                close_timeout=self.config.close_timeout,
                max_size=self.config.max_frame_bytes,
                compression=None,
                logger=_SILENT_WS_LOGGER,
            )
        except Exception as exc:
            # Only the type (and an HTTP status): the text can carry the address and headers.
            why = type(exc).__name__
            if isinstance(exc, InvalidStatus):
                why = f"{why} {exc.response.status_code}"
            logger.info("ComfyUI websocket unavailable", extra={"prompt_id": self.prompt_id, "error": why})
            return None, why
        return ws, None

    def _look(self, *, emit_always: bool = False) -> FollowResult | None:
        """One HTTP look: a result when it ends the follow (done, or unreachable), else None."""
        self.looks += 1
        self.looked_at = self.clock()
        try:
            status = self._look_fn()
        except ExecutorUnavailable as exc:
            return self._result(FollowEnd.EXECUTOR_UNREACHABLE, clip(str(exc), 300))
        if emit_always or status != self.status:
            self._emit([StatusSeen(status)])
        self.status = status
        if status.state.terminal:
            self._emit(self.stream.drain(self.clock()))
            return self._result(FollowEnd.FINISHED, confirmed=True)
        return None

    def _after_look(self, end: FollowEnd, why: str | None) -> FollowResult:
        return self._look(emit_always=True) or self._result(end, why)

    def _emit(self, events: list[StreamEvent]) -> None:
        for event in events:
            self.events += 1
            if isinstance(event, OutputReady):
                self.outputs.append(event.node.node_id)
            self._sink(event)

    def _result(self, end: FollowEnd, reason: str | None = None, *, confirmed: bool = False) -> FollowResult:
        return FollowResult(
            end=end,
            status=self.status,
            confirmed=confirmed,
            outputs=tuple(self.outputs),
            nodes=self.stream.nodes,
            reason=reason,
            frames=self.stream.frames,
            events=self.events,
            looks=self.looks,
            connects=self.connects,
            seconds=round(self.clock() - self.started_at, 3),
            whole=self.stream.saw_execution_start and self.stream.idle,
        )
