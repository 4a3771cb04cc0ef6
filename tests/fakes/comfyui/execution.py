"""Running one prompt as ComfyUI's executor does: the nodes its outputs need in dependency order,
each for its share of the run time, the events the ``ws_sequence_*`` recordings show sent to the
prompt's client, and the history entry at the end."""

from __future__ import annotations

import copy
import hashlib
import json
import struct
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .files import FileStore, split_annotated
from .media import Image, encode_png
from .nodes import NODE_FUNCTIONS, NodeFailed, NodeResult, RunContext

# ComfyUI's binary frame header: event type 1 (PREVIEW_IMAGE), image format 2 (PNG).
PREVIEW_IMAGE_HEADER = struct.pack(">II", 1, 2)
# (event type, data) for the prompt's client: a message's ``data`` object, or the bytes of a
# binary frame.
ClientEvents = Callable[[str, "dict[str, Any] | bytes"], None]
# Node signature -> what the node returned, for ComfyUI's cache.
NodeCache = dict[str, NodeResult]


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class QueueItem:
    number: int
    prompt_id: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    outputs: list[str]

    def as_list(self) -> list[Any]:
        """The item as ``/queue`` and ``/history`` show it."""
        return [self.number, self.prompt_id, self.prompt, self.extra_data, self.outputs]


def execution_order(prompt: dict[str, Any], outputs: list[str]) -> list[str]:
    """Every node the outputs need, dependencies first (depth-first from each output)."""
    order: list[str] = []
    seen: set[str] = set()

    def visit(node_id: str) -> None:
        if node_id in seen:
            return
        seen.add(node_id)
        for value in prompt[node_id].get("inputs", {}).values():
            if isinstance(value, list) and len(value) == 2:
                visit(value[0])
        order.append(node_id)

    for output in outputs:
        visit(output)
    return order


def node_signature(prompt: dict[str, Any], node_id: str, store: FileStore, memo: dict[str, str]) -> str:
    """A cache key: the node's class and inputs with links replaced by their sources' keys."""
    if node_id in memo:
        return memo[node_id]
    node = prompt[node_id]
    inputs: dict[str, Any] = {}
    for name, value in node.get("inputs", {}).items():
        if isinstance(value, list) and len(value) == 2:
            inputs[name] = [node_signature(prompt, value[0], store, memo), value[1]]
        else:
            inputs[name] = value
    if node["class_type"] == "LoadImage":  # ComfyUI's IS_CHANGED hashes the file
        data = store.get(*split_annotated(str(inputs.get("image", "")))) or b""
        inputs["__file__"] = hashlib.sha256(data).hexdigest()
    raw = json.dumps([node["class_type"], inputs], sort_keys=True, default=str)
    memo[node_id] = hashlib.sha256(raw.encode()).hexdigest()
    return memo[node_id]


class Interrupted(Exception):
    """An interrupt came while a node was running."""


class PromptRun:
    """One prompt's execution. ``cache`` holds the previous prompt's node results (empty when
    caching is off); ``interrupt`` is watched while nodes run; ``on_node`` hears which node starts."""

    def __init__(
        self,
        item: QueueItem,
        *,
        store: FileStore,
        cache: NodeCache,
        node_seconds: float | None,
        run_seconds: float,
        progress_steps: int,
        interrupt: threading.Event,
        to_client: ClientEvents,
        on_node: Callable[[str], None],
    ) -> None:
        self.item = item
        self.store = store
        self.cache = cache
        self.node_seconds = node_seconds
        self.run_seconds = run_seconds
        # > 0: every node reports that many `progress` steps (with a preview frame each) while
        # it runs, like a sampler; 0: nodes report only start and end, like ImageInvert.
        self.progress_steps = progress_steps
        self.interrupt = interrupt
        self.to_client = to_client
        self.on_node = on_node
        # Nodes that started, for progress_state: node -> (state, value, max).
        self.started: dict[str, tuple[str, float, float]] = {}

    def execute(self) -> tuple[dict[str, Any], NodeCache]:
        """Run the prompt: its history entry, and the node results to cache for the next one."""
        item, pid = self.item, self.item.prompt_id
        messages: list[list[Any]] = [["execution_start", {"prompt_id": pid, "timestamp": now_ms()}]]
        self.to_client(*messages[-1])
        order = execution_order(item.prompt, item.outputs)
        memo: dict[str, str] = {}
        signatures = {n: node_signature(item.prompt, n, self.store, memo) for n in order}
        cached = [n for n in order if signatures[n] in self.cache]
        messages.append(["execution_cached", {"nodes": cached, "prompt_id": pid, "timestamp": now_ms()}])
        self.to_client(*messages[-1])
        to_run = [n for n in order if n not in cached]
        per_node = self.node_seconds if self.node_seconds is not None else self.run_seconds / max(1, len(to_run))
        values: dict[str, tuple[Any, ...]] = {}
        outputs: dict[str, Any] = {}
        executed: list[str] = []
        fresh_cache: NodeCache = {}
        ctx = RunContext(pid, item.prompt, item.extra_data, self.store)
        status_str, completed = "success", True
        for node_id in order:
            node = item.prompt[node_id]
            try:
                if node_id in cached:
                    result = self.cache[signatures[node_id]]
                else:
                    self.started[node_id] = ("running", 0.0, 1.0)
                    self._progress_state()
                    self.on_node(node_id)
                    self.to_client("executing", {"node": node_id, "display_node": node_id, "prompt_id": pid})
                    self._wait_node(node_id, per_node)
                    inputs = {
                        name: values[v[0]][v[1]] if isinstance(v, list) and len(v) == 2 else v
                        for name, v in node.get("inputs", {}).items()
                    }
                    result = NODE_FUNCTIONS[node["class_type"]](ctx, inputs)
                    executed.append(node_id)
            except Interrupted:
                status_str, completed = "error", False
                info = {"prompt_id": pid, "node_id": node_id, "node_type": node["class_type"]}
                info |= {"executed": executed[::-1], "timestamp": now_ms()}
                messages.append(["execution_interrupted", info])
                break
            except Exception as exc:  # NodeFailed, or a bug here: either way the prompt fails, the worker lives
                status_str, completed = "error", False
                if not isinstance(exc, NodeFailed):
                    exc = NodeFailed(type(exc).__name__, str(exc), traceback.format_tb(exc.__traceback__))
                messages.append(["execution_error", self._error_message(node_id, executed, exc)])
                break
            values[node_id] = result[0]
            fresh_cache[signatures[node_id]] = result
            if result[1] is not None and node_id in item.outputs:
                outputs[node_id] = result[1]
                executed_info = {"node": node_id, "display_node": node_id, "output": result[1], "prompt_id": pid}
                self.to_client("executed", copy.deepcopy(executed_info))
            if node_id in self.started or node_id in outputs:
                final = self.started.get(node_id, ("finished", 1.0, 1.0))[2]
                self.started[node_id] = ("finished", final, final)
                self._progress_state()
        if completed:
            messages.append(["execution_success", {"prompt_id": pid, "timestamp": now_ms()}])
        self.to_client(*messages[-1])
        meta = {n: {"node_id": n, "display_node": n, "parent_node": None, "real_node_id": n} for n in outputs}
        entry = {
            "prompt": item.as_list(),
            "outputs": outputs,
            "status": {"status_str": status_str, "completed": completed, "messages": messages},
            "meta": meta,
        }
        return entry, fresh_cache

    def _progress_state(self) -> None:
        """ComfyUI's `progress_state`: every node that started, with its state and value/max."""
        pid = self.item.prompt_id
        states = {
            node_id: {
                "value": value,
                "max": maximum,
                "state": state,
                "node_id": node_id,
                "prompt_id": pid,
                "display_node_id": node_id,
                "parent_node_id": None,
                "real_node_id": node_id,
            }
            for node_id, (state, value, maximum) in self.started.items()
        }
        self.to_client("progress_state", {"prompt_id": pid, "nodes": states})

    def _wait_node(self, node_id: str, seconds: float) -> None:
        """Spend a node's run time; raises Interrupted as soon as an interrupt comes."""
        steps = self.progress_steps
        if steps <= 0:
            if self.interrupt.wait(seconds):  # ComfyUI notices an interrupt mid-node
                raise Interrupted
            return
        preview = PREVIEW_IMAGE_HEADER + encode_png(Image.solid(1, 1, 0x808080))
        for step in range(1, steps + 1):
            if self.interrupt.wait(seconds / steps):
                raise Interrupted
            # As a sampler's progress hook: progress_state, then progress, then the preview.
            self.started[node_id] = ("running", step, steps)
            self._progress_state()
            info = {"value": step, "max": steps, "prompt_id": self.item.prompt_id, "node": node_id}
            self.to_client("progress", info)
            self.to_client("preview", preview)

    def _error_message(self, node_id: str, executed: list[str], exc: NodeFailed) -> dict[str, Any]:
        item = self.item
        node = item.prompt[node_id]
        current_inputs = {
            name: [f"<output of node {v[0]}>" if isinstance(v, list) else v]
            for name, v in node.get("inputs", {}).items()
        }
        return {
            "prompt_id": item.prompt_id,
            "node_id": node_id,
            "node_type": node["class_type"],
            "executed": executed[::-1],
            "exception_message": exc.message,
            "exception_type": exc.exception_type,
            "traceback": exc.frames,
            "current_inputs": current_inputs,
            "current_outputs": execution_order(item.prompt, item.outputs)[::-1],
            "timestamp": now_ms(),
        }
