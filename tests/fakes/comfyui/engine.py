"""ComfyUI's prompt queue without HTTP: submit (with validation), one worker thread running
prompts FIFO, the history, interrupts, and the websocket events as callbacks. FakeComfyUI serves
it over HTTP; FakeRunPod's worker drives a private one directly."""

from __future__ import annotations

import copy
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from .execution import NodeCache, PromptRun, QueueItem, now_ms
from .files import FileStore, split_annotated
from .media import Image, encode_png
from .schemas import load_object_info
from .validation import error_body, validate_prompt

# Receives the engine's websocket events: (type, data, client id or None for everyone). Data is
# a message's ``data`` object, or bytes for a binary frame (a preview image).
EventSink = Callable[[str, "dict[str, Any] | bytes", "str | None"], None]


class ComfyEngine:
    """ComfyUI's prompt queue: one worker thread runs prompts FIFO and records history.

    ``run_seconds``, ``node_seconds`` and ``progress_steps`` may be changed between prompts
    (tests slow a shared fake down for one case)."""

    def __init__(
        self,
        *,
        run_seconds: float = 0.2,
        node_seconds: float | None = None,
        progress_steps: int = 0,
        cache: bool = False,
    ) -> None:
        self.run_seconds = run_seconds
        self.node_seconds = node_seconds
        self.progress_steps = progress_steps
        self.cache_enabled = cache
        self.on_event: EventSink | None = None
        self.object_info = load_object_info()
        self.store = FileStore()
        # ComfyUI ships input/example.png, so `LoadImage example.png` works on a fresh server.
        self.store.put("input", "", "example.png", encode_png(Image.solid(64, 64, 0x808080)))
        self.executed_prompts = 0  # prompts that ran (cached or not), for tests
        # What ComfyUI's server keeps for its websocket: the client of the running prompt and
        # the node it runs (re-sent to that client when it reconnects).
        self._client_id: str | None = None
        self._last_node_id: str | None = None
        self._cond = threading.Condition()
        self._number = 0
        self._pending: list[QueueItem] = []
        self._running: QueueItem | None = None
        self._history: dict[str, dict[str, Any]] = {}
        self._cache: NodeCache = {}
        self._interrupt = threading.Event()
        self._stopping = False
        self._paused = False
        self._worker: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self._worker is None:
            self._stopping = False
            self._worker = threading.Thread(target=self._work, name="fake-comfyui-worker", daemon=True)
            self._worker.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._interrupt.set()
            self._cond.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=5)
            self._worker = None

    # -- the API --------------------------------------------------------------------------

    def object_info_now(self) -> dict[str, dict[str, Any]]:
        """``GET /object_info``: the schemas, LoadImage's combo listing the input folder."""
        info = copy.deepcopy(self.object_info)
        if "LoadImage" in info:
            info["LoadImage"]["input"]["required"]["image"][0] = self.store.names("input")
        return info

    def input_exists(self, name: str) -> bool:
        return self.store.get(*split_annotated(name)) is not None

    def submit(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """``POST /prompt``: (HTTP status, answer). Raises (-> HTTP 500) on the shapes that crash
        ComfyUI too."""
        if "prompt" not in body:
            error = error_body("no_prompt", "No prompt provided", "No prompt provided")
            return 400, {"error": error, "node_errors": {}}
        with self._cond:
            number = self._number
            self._number += 1
        prompt = copy.deepcopy(body["prompt"])
        prompt_id = str(body.get("prompt_id") or uuid.uuid4())
        result = validate_prompt(prompt, self.object_info, self.input_exists)
        if not result.ok:
            return 400, {"error": result.error, "node_errors": result.node_errors}
        extra_data = dict(body.get("extra_data") or {})
        if "client_id" in body:
            extra_data["client_id"] = body["client_id"]
        outputs = [node_id for node_id in prompt if node_id in result.outputs]
        with self._cond:
            self._pending.append(QueueItem(number, prompt_id, prompt, extra_data, outputs))
            self._cond.notify_all()
        self._status_event()
        return 200, {"prompt_id": prompt_id, "number": number, "node_errors": result.node_errors}

    def queue(self) -> dict[str, list[list[Any]]]:
        """``GET /queue``."""
        with self._cond:
            running = [self._running.as_list()] if self._running else []
            pending = [item.as_list() for item in sorted(self._pending, key=lambda it: it.number)]
            return copy.deepcopy({"queue_running": running, "queue_pending": pending})

    def queue_remaining(self) -> int:
        with self._cond:
            return len(self._pending) + (1 if self._running else 0)

    def delete_pending(self, prompt_ids: list[str]) -> None:
        """``POST /queue {"delete": [...]}``: a running prompt is not touched."""
        with self._cond:
            self._pending = [item for item in self._pending if item.prompt_id not in prompt_ids]

    def interrupt(self, prompt_id: str | None = None) -> bool:
        """``POST /interrupt``: the running prompt (only if it is ``prompt_id``, when given)."""
        with self._cond:
            if self._running is None or (prompt_id and self._running.prompt_id != prompt_id):
                return False
            self._interrupt.set()
            return True

    def history(self, prompt_id: str) -> dict[str, Any]:
        """``GET /history/{prompt_id}``: ``{}`` until the prompt is done."""
        with self._cond:
            entry = self._history.get(prompt_id)
            return {prompt_id: copy.deepcopy(entry)} if entry else {}

    def current_node_of(self, client_id: str) -> str | None:
        """The node running for ``client_id``'s prompt, if that client's prompt runs."""
        with self._cond:
            return self._last_node_id if self._client_id == client_id else None

    # -- test control ---------------------------------------------------------------------

    def pause(self) -> None:
        """Hold the queue: prompts stay pending (deterministic "queued" states for tests)."""
        with self._cond:
            self._paused = True

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Block until nothing is queued or running (for tests)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending or self._running:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    # -- websocket events -----------------------------------------------------------------

    def _emit(self, event: str, data: dict[str, Any] | bytes, client_id: str | None) -> None:
        sink = self.on_event
        if sink is not None:
            sink(event, data, client_id)

    def _status_event(self) -> None:
        # ComfyUI tells every socket when the queue changes.
        self._emit("status", {"status": {"exec_info": {"queue_remaining": self.queue_remaining()}}}, None)

    def _to_client(self, item: QueueItem) -> Callable[[str, dict[str, Any] | bytes], None]:
        # Execution events go only to the prompt's client, and nowhere without one.
        client_id = item.extra_data.get("client_id")

        def send(event: str, data: dict[str, Any] | bytes) -> None:
            if isinstance(client_id, str) and client_id:
                self._emit(event, data, client_id)

        return send

    def _node_started(self, node_id: str) -> None:
        with self._cond:
            self._last_node_id = node_id

    # -- the worker -----------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._cond:
                while (not self._pending or self._paused) and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                item = min(self._pending, key=lambda it: it.number)
                self._pending.remove(item)
                self._running = item
                self._interrupt.clear()  # ComfyUI resets the flag when a prompt starts
                client_id = item.extra_data.get("client_id")
                self._client_id = client_id if isinstance(client_id, str) and client_id else None
            self._status_event()
            to_client = self._to_client(item)
            run = PromptRun(
                item,
                store=self.store,
                cache=self._cache if self.cache_enabled else {},
                node_seconds=self.node_seconds,
                run_seconds=self.run_seconds,
                progress_steps=self.progress_steps,
                interrupt=self._interrupt,
                to_client=to_client,
                on_node=self._node_started,
            )
            try:
                entry, fresh_cache = run.execute()
                if self.cache_enabled:
                    self._cache = fresh_cache  # like ComfyUI's classic cache: only the last prompt's nodes
            except Exception as exc:  # a bug in the fake must not wedge the queue
                failure = {"prompt_id": item.prompt_id, "exception_message": str(exc), "timestamp": now_ms()}
                failure["exception_type"] = type(exc).__name__
                status = {"status_str": "error", "completed": False, "messages": [["execution_error", failure]]}
                entry = {"prompt": item.as_list(), "outputs": {}, "status": status, "meta": {}}
            with self._cond:
                self._last_node_id = None
                self._history[item.prompt_id] = entry
                self._running = None
                self.executed_prompts += 1
                self._cond.notify_all()
            # ComfyUI's worker: the queue status to everyone, then "nothing runs" to the client.
            self._status_event()
            to_client("executing", {"node": None, "prompt_id": item.prompt_id})
