"""nodetool graph -> ComfyUI API prompt, and the checks an API prompt must pass.

A nodetool comfy graph is ``{"nodes": [...], "edges": [...]}`` where every node type is
``comfy.<ComfyUI class>`` and the node's ``properties`` (or, in older graphs, ``data``) hold its
widget values plus ``_comfy_metadata`` (``mode``, and the ``inputs`` / ``outputs`` slot lists of
the ComfyUI editor: names or ``{name, type, ...}`` objects). The ComfyUI API prompt is
``{node_id: {"class_type": ..., "inputs": {name: value | [source_id, slot]}}}``.

What ComfyUI's own frontend does when it builds a prompt is done here too: muted nodes vanish,
bypassed nodes pass their input of the matching type through, ``Reroute`` nodes are traced to the
real source, notes are dropped and ``PrimitiveNode`` values are written into the inputs they feed.

Given the executor's ``/object_info`` (an ``ObjectInfo``), the node schemas fill what a graph
leaves out: an imported node's saved editor widget values (``_comfy_widgets``) are mapped to
input names by the frontend's widget layout, properties that are not inputs of the class are
not sent, and nodes without ``_comfy_metadata`` (built in nodetool's own editor) get their
output handles resolved by name and their ``input_N`` handles by the class's inputs.

Everything runs in time linear in nodes + edges (dict look-ups, memoised tracing, iterative
Tarjan for cycles), so a 10,000-node graph neither slows down quadratically nor hits the
recursion limit. Every problem found is collected and raised together in one ``GraphError``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, NamedTuple

from pydantic import ValidationError

from comfyroute.conversion.detect import WorkflowKind, detect_workflow
from comfyroute.conversion.object_info import NodeSchema, ObjectInfo
from comfyroute.conversion.problems import GraphError
from comfyroute.conversion.widgets import UNDEFINED, layout
from comfyroute.protocol.workflow_commands import Graph, GraphEdge, GraphNode

Prompt = dict[str, dict[str, Any]]

COMFY_PREFIX = "comfy."
MODE_MUTED = 2  # LiteGraph "never"
MODE_BYPASSED = 4
REROUTE = "Reroute"
PRIMITIVE = "PrimitiveNode"
NOTE_TYPES = frozenset({"Note", "MarkdownNote"})
# Properties the ComfyUI editor keeps on a PrimitiveNode that are settings, not its value.
_PRIMITIVE_SETTINGS = frozenset({"Run widget replace on values", "Node name for S&R"})
_NOT_INPUTS = frozenset({"workflow_id"})

_OUTPUT_N = re.compile(r"output_(\d+)")
_INPUT_N = re.compile(r"input_(\d+)")

# Messages go back to clients over a 128 KB WebSocket frame: keep any one of them bounded.
_MAX_NAMED = 20


# --------------------------------------------------------------------------- node model


class _Kind(Enum):
    REAL = "real"
    MUTED = "muted"
    BYPASSED = "bypassed"
    REROUTE = "reroute"
    NOTE = "note"
    PRIMITIVE = "primitive"


class _Slot(NamedTuple):
    name: str | None
    type: str | None


_UNSET: Any = object()


class _Node:
    """One graph node as the converter sees it; slot metadata is parsed only when asked for."""

    __slots__ = ("_inputs", "_meta", "_output_index", "_outputs", "class_type", "id", "kind", "props", "schema")

    def __init__(self, node: GraphNode, schema: NodeSchema | None = None) -> None:
        props = node.props
        class_type = node.type.removeprefix(COMFY_PREFIX)
        meta = props.get("_comfy_metadata")
        meta = meta if isinstance(meta, dict) else {}
        mode = meta.get("mode")
        if class_type in NOTE_TYPES:
            kind = _Kind.NOTE
        elif mode == MODE_MUTED:
            kind = _Kind.MUTED
        elif class_type == REROUTE:
            kind = _Kind.REROUTE
        elif class_type == PRIMITIVE:
            kind = _Kind.PRIMITIVE
        elif mode == MODE_BYPASSED:
            kind = _Kind.BYPASSED
        else:
            kind = _Kind.REAL
        self.id: str = node.id
        self.class_type = class_type
        self.props = props
        self.kind = kind
        self._meta: dict[str, Any] = meta
        self.schema = schema
        self._inputs: tuple[_Slot, ...] | None = _UNSET
        self._outputs: tuple[_Slot, ...] | None = _UNSET
        self._output_index: dict[str, int] = _UNSET

    @property
    def label(self) -> str:
        return f"node {self.id} ({self.class_type})"

    @property
    def inputs(self) -> tuple[_Slot, ...] | None:
        """The editor's input slots; from the class schema without slot metadata; else None."""
        if self._inputs is _UNSET:
            self._inputs = _slots(self._meta.get("inputs"))
            if self._inputs is None and self.schema is not None:
                # The editor's own order: sockets, then widget inputs (what input_N counted).
                self._inputs = tuple(_Slot(name, kind) for name, kind, _ in layout(self.schema).inputs)
        return self._inputs

    @property
    def outputs(self) -> tuple[_Slot, ...] | None:
        if self._outputs is _UNSET:
            self._outputs = _slots(self._meta.get("outputs"))
            if self._outputs is None and self.schema is not None:
                self._outputs = tuple(_Slot(out.name, out.type) for out in self.schema.outputs)
        return self._outputs

    @property
    def output_index(self) -> dict[str, int]:
        """Output name -> the first slot with that name."""
        if self._output_index is _UNSET:
            index: dict[str, int] = {}
            for i, slot in enumerate(self.outputs or ()):
                if slot.name is not None:
                    index.setdefault(slot.name, i)
            self._output_index = index
        return self._output_index


def _slots(entries: Any) -> tuple[_Slot, ...] | None:
    if not isinstance(entries, list):
        return None
    return tuple(_slot(entry) for entry in entries)


def _slot(entry: Any) -> _Slot:
    if isinstance(entry, str):
        return _Slot(entry, None)
    if isinstance(entry, dict):
        return _Slot(_str_or_none(entry.get("name")), _str_or_none(entry.get("type")))
    return _Slot(None, None)


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _named(labels: list[str]) -> str:
    shown = ", ".join(labels[:_MAX_NAMED])
    rest = len(labels) - _MAX_NAMED
    return shown + (f" and {rest} more" if rest > 0 else "")


def _edge_label(edge: GraphEdge, position: int) -> str:
    ref = f"edge {edge.id}" if edge.id else f"edge #{position}"
    return f"{ref} ({edge.source}:{edge.sourceHandle or '?'} -> {edge.target}:{edge.targetHandle or '?'})"


def _node_inputs(props: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in props.items() if not k.startswith("_") and k not in _NOT_INPUTS}


# --------------------------------------------------------------------------- public API


def is_comfy_graph(graph: Graph) -> bool:
    """A graph is a comfy graph when it has nodes and every node type starts with ``comfy.``."""
    return bool(graph.nodes) and all(n.type.startswith(COMFY_PREFIX) for n in graph.nodes)


def convert_graph(graph: Graph, object_info: ObjectInfo | None = None) -> Prompt:
    """The ComfyUI API prompt of a nodetool comfy graph; ``GraphError`` lists every problem.

    With ``object_info`` the class schemas map ``_comfy_widgets`` to inputs and resolve handles
    by name (see the module's docstring); without it, only what the graph itself says is used.
    """
    if not graph.nodes:
        raise GraphError(["graph has no nodes"])
    return _Converter(graph, object_info).run()


def validate_prompt(prompt: Any) -> Prompt:
    """Check an API-format prompt; returns a copy with string node ids.

    Every entry needs a ``class_type`` string and an ``inputs`` object; every link
    ``[node_id, slot]`` must name a node of the prompt and a non-negative integer slot; links
    must not form a cycle.
    """
    if not isinstance(prompt, Mapping):
        raise GraphError([f"prompt must be a JSON object of nodes, not {_kind_of(prompt)}"])
    if not prompt:
        raise GraphError(["prompt has no nodes"])
    problems: list[str] = []
    out: Prompt = {}
    ids = {str(raw_id) for raw_id in prompt}
    for raw_id, entry in prompt.items():
        node_id = str(raw_id)
        if not isinstance(entry, dict):
            problems.append(f"node {node_id}: must be an object with 'class_type' and 'inputs', not {_kind_of(entry)}")
            continue
        class_type = entry.get("class_type")
        if not isinstance(class_type, str) or not class_type.strip():
            problems.append(f"node {node_id}: 'class_type' must be a non-empty string")
        inputs = entry.get("inputs")
        if not isinstance(inputs, dict):
            problems.append(f"node {node_id}: 'inputs' must be an object, not {_kind_of(inputs)}")
            continue
        out[node_id] = {**entry, "inputs": dict(inputs)}

    successors: dict[str, list[str]] = {node_id: [] for node_id in out}
    for node_id, entry in out.items():
        inputs = entry["inputs"]
        for name, value in inputs.items():
            if not _is_link(value):
                continue
            source, slot = value
            where = f"node {node_id} input '{name}'"
            if source not in ids:
                problems.append(f"{where}: links to node '{source}', which is not in the prompt")
            elif source in successors:
                successors[source].append(node_id)
            if isinstance(slot, bool) or not isinstance(slot, int) or slot < 0:
                problems.append(f"{where}: output slot {slot!r} must be a non-negative integer")
    for cycle in _cycles(list(out), successors):
        problems.append(f"cycle through nodes {_named(cycle)}")
    if problems:
        raise GraphError(problems)
    return out


def apply_params(prompt: Mapping[str, Mapping[str, Any]], params: Mapping[str, Mapping[str, Any]]) -> Prompt:
    """A new prompt with ``{node_id: {input: value}}`` overrides; the given prompt is untouched."""
    problems = []
    for node_id, values in params.items():
        if str(node_id) not in prompt:
            problems.append(f"params: node '{node_id}' is not in the prompt")
        elif not isinstance(values, Mapping):
            problems.append(f"params: node '{node_id}' needs an object of input values, not {_kind_of(values)}")
    if problems:
        raise GraphError(problems)
    out: Prompt = {node_id: {**entry, "inputs": dict(entry["inputs"])} for node_id, entry in prompt.items()}
    for node_id, values in params.items():
        out[str(node_id)]["inputs"].update(values)
    return out


def load_workflow(obj: Any, object_info: ObjectInfo | None = None) -> Prompt:
    """A validated prompt from any workflow file comfyroute knows.

    Accepted shapes (``conversion.detect``): a ComfyUI editor workflow (what the editor's Save
    and Export write), converted with ``object_info`` and refused without it; ``{"nodes",
    "edges"}`` (a nodetool graph, converted with ``object_info``'s schemas when given);
    ``{"graph": {"nodes", "edges"}, ...}`` (nodetool's saved workflow files); an API prompt
    ``{id: {class_type, inputs}}``; and ComfyUI's own ``POST /prompt`` body ``{"prompt": {...}}``.
    """
    detected = detect_workflow(obj)
    if detected.kind is WorkflowKind.EDITOR:
        if object_info is None:
            raise GraphError(
                [
                    "this is a ComfyUI editor workflow (nodes + links): converting it needs the node schemas "
                    "of the ComfyUI that runs it (object_info); or export it from ComfyUI with 'Export (API)'"
                ]
            )
        from comfyroute.conversion.editor import convert_editor_workflow  # for editor workflows only

        return validate_prompt(convert_editor_workflow(detected.body, object_info))
    if detected.is_graph:
        try:
            graph = Graph.model_validate(detected.body)
        except ValidationError as exc:
            raise GraphError(_validation_problems(exc)) from None
        return validate_prompt(convert_graph(graph, object_info))
    return validate_prompt(detected.body)


# --------------------------------------------------------------------------- conversion


class _Outcome(Enum):
    DROP = "drop"  # the consumer's input is left out, as ComfyUI's frontend does
    FAILED = "failed"  # a problem was recorded; the graph will be rejected


@dataclass(frozen=True, slots=True)
class _Link:
    node_id: str
    slot: int


@dataclass(frozen=True, slots=True)
class _Value:
    value: Any


_Resolved = _Link | _Value | _Outcome
_TraceKey = tuple[str, int]
_REROUTE_INPUT = ""  # a Reroute has one input: its incoming edge is stored under this key


class _Converter:
    def __init__(self, graph: Graph, object_info: ObjectInfo | None = None) -> None:
        self.graph = graph
        self.object_info = object_info
        self.problems: list[str] = []
        self.nodes: dict[str, _Node] = {}
        # target node id -> input name -> (edge, position)
        self.incoming: dict[str, dict[str, tuple[GraphEdge, int]]] = {}
        self.memo: dict[_TraceKey, _Resolved] = {}

    def run(self) -> Prompt:
        self._index_nodes()
        live = self._live_edges()
        self._check_cycles(live)
        self._index_incoming(live)
        prompt = self._build()
        if not prompt and not self.problems:
            self.problems.append("graph has no nodes to run: every node is a note, muted or UI-only")
        if self.problems:
            raise GraphError(self.problems)
        return prompt

    # -- structure

    def _index_nodes(self) -> None:
        foreign: list[str] = []
        counts: dict[str, int] = {}
        for node in self.graph.nodes:
            if not node.type.startswith(COMFY_PREFIX):
                foreign.append(f"node {node.id} ({node.type})")
            counts[node.id] = counts.get(node.id, 0) + 1
            # The first node with an id wins, so later checks still see a consistent graph.
            if node.id not in self.nodes:
                class_type = node.type.removeprefix(COMFY_PREFIX)
                info = self.object_info
                schema = info[class_type] if info is not None and class_type in info else None
                self.nodes[node.id] = _Node(node, schema)
        if foreign:
            self.problems.append(
                f"not a comfy graph: every node type must start with '{COMFY_PREFIX}', "
                f"but these do not: {_named(foreign)}"
            )
        for node_id, count in counts.items():
            if count > 1:
                self.problems.append(f"duplicate node id '{node_id}': {count} nodes share it")

    def _live_edges(self) -> list[tuple[GraphEdge, int]]:
        """Edges between existing nodes that matter: none into muted nodes or notes."""
        live = []
        for position, edge in enumerate(self.graph.edges):
            source, target = self.nodes.get(edge.source), self.nodes.get(edge.target)
            if source is None or target is None:
                ends = (("source", edge.source, source), ("target", edge.target, target))
                missing = [f"{role} node '{nid}' does not exist" for role, nid, node in ends if node is None]
                self.problems.append(f"{_edge_label(edge, position)}: {' and '.join(missing)}")
                continue
            if target.kind in (_Kind.MUTED, _Kind.NOTE, _Kind.PRIMITIVE) or source.kind is _Kind.NOTE:
                continue
            live.append((edge, position))
        return live

    def _check_cycles(self, live: list[tuple[GraphEdge, int]]) -> None:
        successors: dict[str, list[str]] = {}
        for edge, _ in live:
            if self.nodes[edge.source].kind is not _Kind.MUTED:
                successors.setdefault(edge.source, []).append(edge.target)
        for cycle in _cycles(list(self.nodes), successors):
            self.problems.append(f"cycle through {_named([self.nodes[n].label for n in cycle])}")

    def _index_incoming(self, live: list[tuple[GraphEdge, int]]) -> None:
        for edge, position in live:
            target = self.nodes[edge.target]
            found = _REROUTE_INPUT if target.kind is _Kind.REROUTE else self._input_name(edge, position, target)
            if found is None:
                continue
            name: str = found
            slots = self.incoming.setdefault(target.id, {})
            if name in slots:
                first, first_position = slots[name]
                shown = "its input" if name == _REROUTE_INPUT else f"input '{name}'"
                self.problems.append(
                    f"{target.label}: {shown} is fed by two edges, {_edge_label(first, first_position)} "
                    f"and {_edge_label(edge, position)}"
                )
                continue
            slots[name] = (edge, position)

    def _input_name(self, edge: GraphEdge, position: int, target: _Node) -> str | None:
        handle = edge.targetHandle
        if not handle:
            self.problems.append(f"{_edge_label(edge, position)}: the edge has no targetHandle")
            return None
        match = _INPUT_N.fullmatch(handle)
        if match is None:
            return handle
        inputs = target.inputs
        if inputs and any(slot.name == handle for slot in inputs):
            return handle  # an input really called "input_2" (custom nodes have them)
        index = int(match[1])
        if inputs is not None and index < len(inputs) and inputs[index].name:
            return inputs[index].name
        names = _named([s.name or "?" for s in inputs or ()])
        known = f"its inputs are {names}" if inputs else "it has no input metadata"
        self.problems.append(
            f"{_edge_label(edge, position)}: target handle '{handle}' does not resolve to an input of "
            f"{target.label}: {known}"
        )
        return None

    def _output_slot(self, edge: GraphEdge, position: int, source: _Node) -> int | None:
        handle = edge.sourceHandle
        outputs = source.outputs
        if handle is not None and handle in source.output_index:
            return source.output_index[handle]
        match = _OUTPUT_N.fullmatch(handle) if handle else None
        if match is not None:
            slot = int(match[1])
            if outputs and slot >= len(outputs):
                self.problems.append(
                    f"{_edge_label(edge, position)}: {source.label} has {len(outputs)} outputs, no slot {slot}"
                )
                return None
            return slot
        if handle and source.schema is not None and not source._meta.get("outputs"):
            named = source.schema.output_slot(handle)
            if named is not None:
                return named
        if not outputs or len(outputs) == 1:
            return 0
        self.problems.append(
            f"{_edge_label(edge, position)}: source handle '{handle or ''}' is not an output of "
            f"{source.label}; its outputs are {_named([s.name or '?' for s in outputs])}"
        )
        return None

    # -- prompt

    def _build(self) -> Prompt:
        prompt: Prompt = {}
        for node in self.nodes.values():
            if node.kind is not _Kind.REAL:
                continue
            inputs = _node_inputs(node.props) if node.schema is None else _schema_inputs(node.schema, node.props)
            for name, (edge, position) in self.incoming.get(node.id, {}).items():
                source = self.nodes[edge.source]
                if source.kind is _Kind.REAL:  # the common case, without the tracing machinery
                    slot = self._output_slot(edge, position, source)
                    if slot is not None:
                        inputs[name] = [source.id, slot]
                    continue
                resolved = self._trace(edge, position)
                if isinstance(resolved, _Link):
                    inputs[name] = [resolved.node_id, resolved.slot]
                elif isinstance(resolved, _Value):
                    inputs[name] = resolved.value
                else:
                    # A stale widget value of a linked input must not reach ComfyUI either.
                    inputs.pop(name, None)
            prompt[node.id] = {"class_type": node.class_type, "inputs": inputs}
        return prompt

    def _trace(self, edge: GraphEdge, position: int) -> _Resolved:
        """Follow an edge back through reroutes and bypassed nodes to what really feeds it.

        Iterative, and every UI node on the way is memoised with the answer, so each one is
        walked once however many consumers share it.
        """
        path: list[_TraceKey] = []
        on_path: set[_TraceKey] = set()
        result: _Resolved
        while True:
            source = self.nodes[edge.source]
            if source.kind is _Kind.REAL:
                slot = self._output_slot(edge, position, source)
                result = _Outcome.FAILED if slot is None else _Link(source.id, slot)
                break
            if source.kind is _Kind.MUTED:
                result = _Outcome.DROP
                break
            if source.kind is _Kind.PRIMITIVE:
                key = (source.id, -1)
                if key not in self.memo:
                    self.memo[key] = self._primitive_value(source)
                result = self.memo[key]
                break
            if source.kind is _Kind.REROUTE:
                key = (source.id, -1)
            else:  # bypassed: which of its outputs is used decides which input passes through
                slot = self._output_slot(edge, position, source)
                if slot is None:
                    result = _Outcome.FAILED
                    break
                key = (source.id, slot)
            if key in self.memo:
                result = self.memo[key]
                break
            if key in on_path:
                result = _Outcome.FAILED  # a cycle, already reported by _check_cycles
                break
            path.append(key)
            on_path.add(key)
            feeding = self._feeding_edge(source, key[1])
            if feeding is None:
                result = _Outcome.DROP
                break
            edge, position = feeding
        for visited in path:
            self.memo[visited] = result
        return result

    def _feeding_edge(self, node: _Node, out_slot: int) -> tuple[GraphEdge, int] | None:
        slots = self.incoming.get(node.id, {})
        if node.kind is _Kind.REROUTE:
            return slots.get(_REROUTE_INPUT)
        name = _bypass_input(node, out_slot)
        return slots.get(name) if name is not None else None

    def _primitive_value(self, node: _Node) -> _Resolved:
        props = node.props
        if "value" in props:
            return _Value(props["value"])
        for key, value in _node_inputs(props).items():
            if key not in _PRIMITIVE_SETTINGS:
                return _Value(value)
        # Imported ComfyUI editor graphs keep the widget list; a primitive's value comes first.
        widgets = props.get("_comfy_widgets")
        if isinstance(widgets, list) and widgets:
            return _Value(widgets[0])
        self.problems.append(f"{node.label} has no value to pass on (no 'value' property)")
        return _Outcome.FAILED


def _schema_inputs(schema: NodeSchema, props: Mapping[str, Any]) -> dict[str, Any]:
    """A node's widget inputs by the class schema: saved editor widgets first, named properties over them.

    ``_comfy_widgets`` is the editor's ``widgets_values`` (a list in widget order, or an object
    by name); properties named after an input of the class win (nodetool's editor writes
    those); properties that are not inputs (``Node name for S&R``, ...) are not sent.
    """
    lay = layout(schema)
    values: dict[str, Any] = {}
    saved = props.get("_comfy_widgets")
    if isinstance(saved, list):
        slots = [widget for widget in lay.widgets if widget.saved]
        for widget, value in zip(slots, saved, strict=False):
            values[widget.name] = value
    elif isinstance(saved, dict):
        values.update(saved)
    inputs = {
        widget.name: values.get(widget.name, widget.default)
        for widget in lay.widgets
        if widget.sent and widget.spec is not None and (widget.name in values or widget.default is not UNDEFINED)
    }
    for key, value in _node_inputs(props).items():
        if schema.input(key) is not None:
            inputs[key] = value
    return inputs


def _types_match(wanted: str, offered: str | None) -> bool:
    if offered is None:
        return False
    if "*" in (wanted, offered):
        return True
    return bool(set(wanted.split(",")) & set(offered.split(",")))


def _bypass_input(node: _Node, out_slot: int) -> str | None:
    """The input a bypassed node passes through to its output ``out_slot``, as ComfyUI does it.

    ComfyUI matches the output's type against the node's input types: the input at the same
    index if compatible, else the first input of exactly that type, else the first compatible.
    """
    if not node.inputs or not node.outputs or out_slot >= len(node.outputs):
        return None
    output = node.outputs[out_slot]
    # ComfyUI names an output after its type unless told otherwise.
    wanted = output.type or output.name
    if wanted is None:
        return None
    inputs = node.inputs
    if out_slot < len(inputs) and _types_match(wanted, inputs[out_slot].type):
        return inputs[out_slot].name
    for slot in inputs:
        if slot.type == wanted:
            return slot.name
    for slot in inputs:
        if _types_match(wanted, slot.type):
            return slot.name
    return None


# --------------------------------------------------------------------------- helpers


def _cycles(order: list[str], successors: Mapping[str, list[str]]) -> list[list[str]]:
    """The node sets of every cycle (strongly connected components), by iterative Tarjan.

    Only nodes on a cycle are named, not those merely downstream of one. Components come out
    in ``order``'s order, each listed in ``order``'s order.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in order:
        if root in index:
            continue
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        work = [(root, iter(successors.get(root, ())))]
        while work:
            node, children = work[-1]
            descended = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(successors.get(child, ()))))
                    descended = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if descended:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in successors.get(node, ()):
                    found.append(component)
    position = {node: i for i, node in enumerate(order)}
    for component in found:
        component.sort(key=lambda n: position.get(n, len(position)))
    found.sort(key=lambda c: position.get(c[0], len(position)))
    return found


def _is_link(value: Any) -> bool:
    """ComfyUI's link shape (its own ``is_link``): ``[source_node_id: str, output_slot]``."""
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)


def _kind_of(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", type(None): "null", bool: "a boolean"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__
    )


def _validation_problems(exc: ValidationError) -> list[str]:
    problems = []
    for error in exc.errors(include_url=False):
        where = ""
        for part in error["loc"]:
            where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else str(part))
        problems.append(f"{where or 'graph'}: {error['msg']}")
    return problems
