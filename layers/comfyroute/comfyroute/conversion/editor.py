"""ComfyUI editor workflows -> API prompts, as ComfyUI's own frontend builds them when it queues.

The frontend loads a workflow into live nodes whose widgets come from ``/object_info``, then
its ``graphToPrompt`` walks them. This module does the same without a browser, from the saved
file and the same ``/object_info``:

- every node's widget values are mapped to input names by the frontend's widget layout
  (``widgets.layout``): seed controls, upload buttons and the like take a saved slot but are
  not sent; ``{"__value__": [...]}`` wraps list values; each node gets ``_meta.title``;
- a linked input takes its value from the link, followed back through Reroutes (and any
  frontend-only node), bypassed nodes (mode 4: the input of the matching type passes through,
  by the frontend's slot matching) and subgraphs;
- muted nodes (mode 2) and bypassed ones are left out, and inputs linked to a left-out node
  are dropped while their consumer stays;
- a PrimitiveNode writes its value into the widgets it feeds (the stale values saved in them
  do not count); notes are ignored; groups are UI only;
- subgraphs are flattened: an inner node becomes ``<subgraph node id>:<inner id>`` (nested:
  ``11:10:6``), and an inner input fed by an unlinked subgraph input takes the subgraph node's
  own widget value;
- ``dynamicPrompts`` text (CLIPTextEncode's) has comments removed and ``{a|b}`` resolved; save
  nodes' ``filename_prefix`` gets its ``%Node.widget%`` / ``%date:...%`` replacements; the seed a
  workflow carries is the one sent (``control_after_generate`` acts after queueing).

Where the frontend would quietly send a prompt that cannot be right (an unknown class, a link
to a node that is not there, widget values missing for required inputs), a problem is recorded
instead; all of them are raised together in one ``GraphError``. Work is linear in nodes and
links (subgraphs counted once per instance): every link chain is followed once, iteratively.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

from comfyroute.conversion.object_info import InputSpec, NodeSchema, ObjectInfo
from comfyroute.conversion.problems import ConversionProblem, GraphError
from comfyroute.conversion.widgets import (
    BROWSER_ONLY_TYPES,
    SAVE_NODE_TYPES,
    UNDEFINED,
    Layout,
    Widget,
    WidgetKind,
    apply_text_replacements,
    is_media_upload,
    js_string,
    layout,
    migrate_widgets_values,
    process_dynamic_prompt,
    upload_combo_value,
)
from comfyroute.conversion.workflow import (
    SUBGRAPH_INPUT_NODE,
    RawGraph,
    RawNode,
    RawWorkflow,
    Slot,
    is_editor_workflow,
    read_workflow,
)

__all__ = ["convert_editor_workflow", "is_editor_workflow"]

Prompt = dict[str, dict[str, Any]]

MODE_MUTED = 2  # LiteGraph "never"
MODE_BYPASSED = 4
REROUTE = "Reroute"
PRIMITIVE = "PrimitiveNode"
NOTE_TYPES = frozenset({"Note", "MarkdownNote"})
_VIRTUAL_TITLES = {REROUTE: "Reroute", PRIMITIVE: "Primitive", "Note": "Note", "MarkdownNote": "Markdown Note"}
_REPLACE_PROPERTY = "Run widget replace on values"
_SEARCH_NAME = "Node name for S&R"
_MAX_DEPTH = 32  # subgraphs inside subgraphs


class _Kind(Enum):
    REAL = "real"
    REROUTE = "reroute"
    PRIMITIVE = "primitive"
    NOTE = "note"
    SUBGRAPH = "subgraph"
    UNKNOWN = "unknown"
    GROUP = "group"


_VIRTUAL = frozenset({_Kind.REROUTE, _Kind.PRIMITIVE, _Kind.NOTE, _Kind.SUBGRAPH})


@dataclass(slots=True)
class _Input:
    name: str
    type: str
    link: str | None
    widget: str | None  # the widget this input edits, if it is a widget input


@dataclass(slots=True, eq=False)
class _Node:
    """One node of one graph (a subgraph's nodes are shared by all its instances, as in the frontend)."""

    raw: RawNode
    graph: RawGraph
    kind: _Kind
    title: str
    inputs: list[_Input]
    outputs: list[Slot]
    values: dict[str, Any] = field(default_factory=dict)  # widget name -> value, every widget
    schema: NodeSchema | None = None
    layout: Layout | None = None
    subgraph: RawGraph | None = None
    promoted: list[str] = field(default_factory=list)  # a subgraph node's widgets, by input name

    @property
    def id(self) -> str:
        return self.raw.id

    @property
    def virtual(self) -> bool:
        return self.kind in _VIRTUAL

    def input_index(self, link_id: str) -> int | None:
        for index, slot in enumerate(self.inputs):
            if slot.link == link_id:
                return index
        return None


@dataclass(frozen=True, slots=True)
class _Instance:
    exec_id: str
    path: tuple[str, ...]  # the subgraph node ids from the root down to the graph holding the node
    node: _Node


# What following an input gives: a link to a real node's output, a value, or nothing.
@dataclass(frozen=True, slots=True)
class _LinkTo:
    exec_id: str
    slot: int


@dataclass(frozen=True, slots=True)
class _ValueOf:
    value: Any


_Result = _LinkTo | _ValueOf | None
_StepKey = tuple[str, str, int, str | None]  # direction, exec id, slot, type


def convert_editor_workflow(
    workflow: Mapping[str, Any],
    object_info: ObjectInfo,
    *,
    rng: random.Random | None = None,
    now: Callable[[], datetime] = datetime.now,
) -> Prompt:
    """The API prompt of an editor workflow; ``GraphError`` lists every problem.

    ``rng`` makes the ``{a|b}`` choices of dynamic prompts (default: unseeded), ``now`` gives
    the time for ``%date:...%`` replacements.
    """
    if not is_editor_workflow(workflow):
        raise GraphError(["not a ComfyUI editor workflow: it needs a 'nodes' list of typed nodes and 'links'"])
    return _Converter(read_workflow(workflow), object_info, rng or random.Random(), now).run()  # noqa: S311 (prompt text, not secrets)


class _Converter:
    def __init__(
        self, workflow: RawWorkflow, object_info: ObjectInfo, rng: random.Random, now: Callable[[], datetime]
    ) -> None:
        self.workflow = workflow
        self.object_info = object_info
        self.rng = rng
        self.now = now
        self.problems: list[ConversionProblem] = list(workflow.problems)
        self.models: dict[tuple[str | None, str], _Node] = {}
        self.building: set[tuple[str | None, str]] = set()
        self.instances: dict[str, _Instance] = {}
        self.memo: dict[_StepKey, _Result] = {}
        self._by_search_name: dict[str, _Node] | None = None
        self._by_title: dict[str, _Node] = {}

    # ------------------------------------------------------------------ run

    def run(self) -> Prompt:
        graphs = [self.workflow.root, *self.workflow.subgraphs.values()]
        for graph in graphs:
            for node_id in graph.nodes:
                self._model(graph, node_id)
        for graph in graphs:
            self._apply_primitives(graph)
        for graph in graphs:
            self._sync_subgraph_widgets(graph)
        self._expand(self.workflow.root, (), ())
        prompt = self._build()
        if not prompt and not self.problems:
            self.problems.append(
                ConversionProblem(
                    message="the workflow has no nodes to run: every node is muted, bypassed, a note or UI-only"
                )
            )
        if self.problems:
            raise GraphError(self.problems)
        return prompt

    def _problem(
        self, message: str, node: _Node | None = None, exec_id: str | None = None, input_name: str | None = None
    ) -> None:
        self.problems.append(
            ConversionProblem(
                node_id=exec_id if exec_id is not None else (node.id if node is not None else None),
                class_type=node.raw.type if node is not None else None,
                input=input_name,
                message=message,
            )
        )

    # ------------------------------------------------------------------ nodes

    def _model(self, graph: RawGraph, node_id: str) -> _Node:
        key = (graph.id, node_id)
        model = self.models.get(key)
        if model is not None:
            return model
        raw = graph.nodes[node_id]
        self.building.add(key)
        try:
            model = self._make(graph, raw)
        finally:
            self.building.discard(key)
        self.models[key] = model
        return model

    def _make(self, graph: RawGraph, raw: RawNode) -> _Node:
        kind = self._kind(raw)
        saved_inputs = raw.inputs or []
        saved_outputs = raw.outputs or []
        if kind is _Kind.REAL:
            schema = self.object_info[raw.type]
            lay = layout(schema)
            by_name = {slot.name: slot for slot in saved_inputs}
            inputs = [
                _Input(name, kind_, by_name[name].link if name in by_name else None, name if has_widget else None)
                for name, kind_, has_widget in lay.inputs
            ]
            known = {name for name, _, _ in lay.inputs}
            inputs += [_Input(s.name, s.type, s.link, s.widget) for s in saved_inputs if s.name not in known]
            outputs = [
                Slot(name=out.name, type=out.type, links=saved_outputs[i].links if i < len(saved_outputs) else ())
                for i, out in enumerate(schema.outputs)
            ]
            outputs += saved_outputs[len(schema.outputs) :]
            node = _Node(raw, graph, kind, raw.title or schema.display_name, inputs, outputs, schema=schema, layout=lay)
            node.values = self._widget_values(node, schema, lay)
            return node
        # The frontend copies the saved slots over the class's own ones, index by index.
        subgraph = self.workflow.subgraphs.get(raw.type) if kind is _Kind.SUBGRAPH else None
        own_inputs: list[Slot] = []
        own_outputs: list[Slot] = []
        if subgraph is not None:
            own_inputs, own_outputs = subgraph.inputs, subgraph.outputs
        elif kind is _Kind.REROUTE:
            own_inputs, own_outputs = [Slot(name="", type="*")], [Slot(name="", type="*")]
        inputs = [_Input(s.name, s.type, s.link, s.widget) for s in _overlay(own_inputs, saved_inputs)]
        title = raw.title or (subgraph.name if subgraph is not None else _VIRTUAL_TITLES.get(raw.type, raw.type))
        node = _Node(raw, graph, kind, title, inputs, _overlay(own_outputs, saved_outputs), subgraph=subgraph)
        if subgraph is not None:
            self._promote_widgets(node)
        return node

    def _kind(self, raw: RawNode) -> _Kind:
        if raw.type in self.workflow.subgraphs:
            return _Kind.SUBGRAPH
        if raw.type == REROUTE:
            return _Kind.REROUTE
        if raw.type == PRIMITIVE:
            return _Kind.PRIMITIVE
        if raw.type in NOTE_TYPES:
            return _Kind.NOTE
        if raw.type in self.workflow.group_nodes or raw.type.startswith(("workflow>", "workflow/")):
            return _Kind.GROUP
        if raw.type in self.object_info:
            return _Kind.REAL
        return _Kind.UNKNOWN

    def _widget_values(self, node: _Node, schema: NodeSchema, lay: Layout) -> dict[str, Any]:
        values = {widget.name: widget.default for widget in lay.widgets}
        saved = node.raw.widgets_values
        if isinstance(saved, dict):
            # Core nodes never save this form; custom nodes that do (VideoHelperSuite) map it by name.
            for name, value in saved.items():
                if name in values:
                    values[name] = value
            return values
        given = migrate_widgets_values(schema, lay, list(saved or []))
        slots = [widget for widget in lay.widgets if widget.saved]
        for widget, value in zip(slots, given, strict=False):
            values[widget.name] = value
        if 0 < len(given) < len(slots) and node.raw.mode not in (MODE_MUTED, MODE_BYPASSED):
            self._check_missing(node, slots, len(given))
        if schema.name in ("KSampler", "KSamplerAdvanced"):
            sampler = values.get("sampler_name")
            if isinstance(sampler, str) and sampler.startswith("sample_"):
                values["sampler_name"] = sampler[len("sample_") :]
        return values

    def _check_missing(self, node: _Node, slots: list[Widget], given: int) -> None:
        """Too few widget values: the frontend takes defaults; that is right only for inputs added later.

        ComfyUI adds inputs to existing nodes as optional ones, so defaults for missing optional
        widgets are what the frontend does and what the author saw. A required one missing from
        a list that is there but short means the workflow and this object_info disagree about
        the node: refuse rather than guess. (A node saved with no values at all, as generated
        workflows have, takes the defaults.)
        """
        linked = {slot.widget for slot in node.inputs if slot.widget and slot.link is not None}
        missing = [
            w.name
            for w in slots[given:]
            if w.kind is WidgetKind.VALUE and w.spec is not None and not w.spec.optional and w.name not in linked
        ]
        if missing:
            names = ", ".join(f"'{name}'" for name in missing)
            self._problem(
                f"too few widget values: {given} saved, {len(slots)} widgets in this ComfyUI "
                f"({', '.join(w.name for w in slots)}); no value for {names}. "
                "The workflow was saved for another version of this node, or object_info is not the executor's",
                node,
            )

    def _promote_widgets(self, node: _Node) -> None:
        """A subgraph node's widgets: one per input that feeds a widget inside, with its value."""
        subgraph = node.subgraph
        assert subgraph is not None
        promoted = node.promoted
        for slot in node.inputs:
            index = next((i for i, s in enumerate(subgraph.inputs) if s.name == slot.name), None)
            if index is None:
                continue
            for link_id in subgraph.input_links[index]:
                link = subgraph.links.get(link_id)
                if link is None or link.target_id not in subgraph.nodes:
                    continue
                key = (subgraph.id, link.target_id)
                if key in self.building:
                    continue  # a subgraph inside itself: reported when it is expanded
                target = self._model(subgraph, link.target_id)
                at = target.input_index(link.id)
                widget = target.inputs[at].widget if at is not None else None
                if widget is None or widget not in target.values:
                    continue
                node.values[slot.name] = target.values[widget]
                slot.widget = slot.name
                promoted.append(slot.name)
                break
        saved = node.raw.widgets_values
        if isinstance(saved, list):
            for name, value in zip(promoted, saved, strict=False):
                node.values[name] = value

    # ------------------------------------------------------------------ primitives

    def _apply_primitives(self, graph: RawGraph) -> None:
        """A PrimitiveNode writes its value into every widget it feeds, whatever its mode."""
        targets: dict[str, list[tuple[_Node, _Input]]] = {}
        for node_id in graph.nodes:
            node = self._model(graph, node_id)
            for slot in node.inputs:
                link = graph.links.get(slot.link) if slot.link is not None else None
                if link is not None and link.origin_id in graph.nodes:
                    targets.setdefault(link.origin_id, []).append((node, slot))
        for node_id, fed in targets.items():
            primitive = self._model(graph, node_id)
            if primitive.kind is not _Kind.PRIMITIVE:
                continue
            fed = [(node, slot) for node, slot in fed if slot.widget is not None and slot.widget in node.values]
            if not fed:
                continue
            saved = primitive.raw.widgets_values
            value = saved[0] if isinstance(saved, list) and saved else fed[0][0].values[fed[0][1].widget or ""]
            if value and isinstance(value, str) and primitive.raw.properties.get(_REPLACE_PROPERTY):
                value = apply_text_replacements(value, self._lookup_widget, self.now)
            for node, slot in fed:
                node.values[slot.widget or ""] = value

    def _sync_subgraph_widgets(self, graph: RawGraph) -> None:
        """Each subgraph node writes its widget values into the widgets they feed inside.

        The frontend does this whenever it serializes the graph, which it does while queueing,
        after the primitives: the widgets inside are shared by every instance of the subgraph,
        so the instance serialized last (file order, root first) leaves its values there. They
        count where a subgraph input is linked to something that gives no link (a primitive).
        """
        for node_id in graph.nodes:
            node = self._model(graph, node_id)
            subgraph = node.subgraph
            if subgraph is None:
                continue
            for name in node.promoted:
                index = next((i for i, s in enumerate(subgraph.inputs) if s.name == name), None)
                if index is None:
                    continue
                for link_id in subgraph.input_links[index]:
                    link = subgraph.links.get(link_id)
                    key = (subgraph.id, link.target_id) if link is not None else None
                    if link is None or key not in self.models:
                        continue
                    target = self.models[key]
                    at = target.input_index(link.id)
                    widget = target.inputs[at].widget if at is not None else None
                    if widget is not None and widget in target.values:
                        target.values[widget] = node.values[name]

    def _lookup_widget(self, node_name: str, widget: str) -> Any:
        """A widget value for ``%Node.widget%``: the node found by its S&R name, then by its title."""
        if self._by_search_name is None:
            # The first node of each name counts, root graph first, as the frontend's search.
            self._by_search_name = {}
            for graph in (self.workflow.root, *self.workflow.subgraphs.values()):
                for node_id in graph.nodes:
                    node = self._model(graph, node_id)
                    name = _search_name(node)
                    if name is not None:
                        self._by_search_name.setdefault(name, node)
                    self._by_title.setdefault(node.title, node)
        found = self._by_search_name.get(node_name) or self._by_title.get(node_name)
        if found is None or widget not in found.values:
            return UNDEFINED
        return found.values[widget]

    # ------------------------------------------------------------------ flattening

    def _expand(self, graph: RawGraph, path: tuple[str, ...], within: tuple[str, ...]) -> None:
        prefix = ":".join(path) + ":" if path else ""
        for node_id in graph.nodes:
            node = self._model(graph, node_id)
            exec_id = prefix + node_id
            self.instances[exec_id] = _Instance(exec_id, path, node)
            if node.kind is not _Kind.SUBGRAPH or node.subgraph is None:
                continue
            sub_id = node.subgraph.id or ""
            if sub_id in within:
                self._problem(f"subgraph '{node.subgraph.name}' contains itself", node, exec_id)
                continue
            if len(within) >= _MAX_DEPTH:
                self._problem(f"subgraphs nested more than {_MAX_DEPTH} deep", node, exec_id)
                continue
            self._expand(node.subgraph, (*path, node_id), (*within, sub_id))

    def _instance(self, path: tuple[str, ...], node_id: str) -> _Instance | None:
        return self.instances.get(":".join((*path, node_id)))

    # ------------------------------------------------------------------ prompt

    def _build(self) -> Prompt:
        prompt: Prompt = {}
        for inst in self.instances.values():
            node = inst.node
            if node.virtual or node.raw.mode in (MODE_MUTED, MODE_BYPASSED):
                continue
            if node.kind is _Kind.UNKNOWN:
                self._problem(self._unknown_message(node), node, inst.exec_id)
                continue
            if node.kind is _Kind.GROUP:
                self._problem(
                    "legacy group nodes are not supported: open the workflow in ComfyUI and convert the group "
                    "node to a subgraph (or ungroup it), then save it again",
                    node,
                    inst.exec_id,
                )
                continue
            inputs = self._widget_inputs(inst)
            for index, slot in enumerate(node.inputs):
                result = self._resolve(("in", inst.exec_id, index, None))
                if isinstance(result, _LinkTo):
                    inputs[slot.name] = [result.exec_id, result.slot]
                elif isinstance(result, _ValueOf) and result.value is not UNDEFINED:
                    inputs[slot.name] = _wrap(result.value)
            prompt[inst.exec_id] = {"inputs": inputs, "class_type": node.raw.type, "_meta": {"title": node.title}}
        for entry in prompt.values():
            inputs = entry["inputs"]
            for name in [n for n, v in inputs.items() if _is_link(v) and v[0] not in prompt]:
                del inputs[name]
        return prompt

    def _unknown_message(self, node: _Node) -> str:
        version = f" (ComfyUI {self.object_info.comfyui_version})" if self.object_info.comfyui_version else ""
        return (
            f"unknown node class '{node.raw.type}': this ComfyUI{version} has no such node "
            f"({len(self.object_info)} classes); install the custom node or mute it"
        )

    def _widget_inputs(self, inst: _Instance) -> dict[str, Any]:
        node = inst.node
        assert node.layout is not None
        inputs: dict[str, Any] = {}
        for widget in node.layout.widgets:
            if not widget.sent:
                continue
            value = node.values.get(widget.name, UNDEFINED)
            spec = widget.spec
            if spec is not None:
                if spec.widget_type in BROWSER_ONLY_TYPES:
                    self._problem(
                        f"its {spec.widget_type} input is filled by ComfyUI's frontend in a browser when queued "
                        "(a camera frame or a 3D viewport capture); it cannot run from a saved workflow",
                        node,
                        inst.exec_id,
                        widget.name,
                    )
                value = self._serialized(node, widget.name, spec, value)
            if value is not UNDEFINED:
                inputs[widget.name] = _wrap(value)
        return inputs

    def _serialized(self, node: _Node, name: str, spec: InputSpec, value: Any) -> Any:
        """A widget's value as the frontend sends it (its ``serializeValue`` and widget quirks)."""
        options, kind = spec.options, spec.widget_type
        if kind == "STRING" and options.get("multiline"):
            # A textarea holds text: whatever is assigned to it reads back as a string.
            value = "" if value is None or value is UNDEFINED else js_string(value)
        if kind == "COMBO" and is_media_upload(options):
            value = upload_combo_value(spec, value)
        if options.get("dynamicPrompts") is True and isinstance(value, str):
            return process_dynamic_prompt(value, self.rng)
        if name == "filename_prefix" and node.raw.type in SAVE_NODE_TYPES and isinstance(value, str):
            return apply_text_replacements(value, self._lookup_widget, self.now)
        return value

    # ------------------------------------------------------------------ following links

    def _resolve(self, start: _StepKey) -> _Result:
        """What an input (``"in"``) or output (``"out"``) resolves to, following links iteratively."""
        path: list[_StepKey] = []
        seen: set[_StepKey] = set()
        step: _StepKey | _Result = start
        result: _Result = None
        while True:
            assert isinstance(step, tuple)
            if step in self.memo:
                result = self.memo[step]
                break
            if step in seen:
                inst = self.instances[step[1]]
                self._problem("a cycle of links through Reroutes, bypassed nodes or subgraphs", inst.node, inst.exec_id)
                break
            seen.add(step)
            path.append(step)
            direction, exec_id, slot, type_ = step
            inst = self.instances[exec_id]
            step = self._step_in(inst, slot, type_) if direction == "in" else self._step_out(inst, slot, type_)
            if not isinstance(step, tuple):
                result = step
                break
        for key in path:
            self.memo[key] = result
        return result

    def _step_in(self, inst: _Instance, index: int, type_: str | None) -> _StepKey | _Result:
        node = inst.node
        if index >= len(node.inputs):
            self._problem(f"has no input slot {index}", node, inst.exec_id)
            return None
        slot = node.inputs[index]
        if slot.link is None:
            return None
        link = node.graph.links.get(slot.link)
        if link is None:
            self._problem(
                f"is linked by link {slot.link}, which is not in the workflow's links", node, inst.exec_id, slot.name
            )
            return None
        if inst.path and link.origin_id == SUBGRAPH_INPUT_NODE:
            return self._from_subgraph_input(inst, link.origin_slot)
        origin = self._instance(inst.path, link.origin_id)
        if origin is None:
            self._problem(
                f"links to node {link.origin_id}, which is not in the workflow", node, inst.exec_id, slot.name
            )
            return None
        return ("out", origin.exec_id, link.origin_slot, type_ if type_ is not None else slot.type)

    def _from_subgraph_input(self, inst: _Instance, index: int) -> _StepKey | _Result:
        parent = self.instances.get(":".join(inst.path))
        if parent is None:
            return None
        owner = parent.node
        if index >= len(owner.inputs):
            self._problem(f"has no input slot {index} for its subgraph to read", owner, parent.exec_id)
            return None
        slot = owner.inputs[index]
        if slot.link is None:
            # Unlinked outside: the subgraph node's own widget for that input, if it has one.
            return _ValueOf(owner.values[slot.name]) if slot.widget and slot.name in owner.values else None
        return ("in", parent.exec_id, index, None)

    def _step_out(self, inst: _Instance, index: int, type_: str | None) -> _StepKey | _Result:
        node = inst.node
        if node.raw.mode == MODE_BYPASSED:
            through = self._bypass_input(inst, index, type_ or "*")
            return None if through is None else ("in", inst.exec_id, through, None)
        if node.kind is _Kind.SUBGRAPH and node.subgraph is not None:
            return self._from_subgraph_output(inst, index, type_)
        if node.virtual:
            return ("in", inst.exec_id, index, type_) if index < len(node.inputs) else None
        if node.schema is not None and index >= len(node.outputs):
            self._problem(
                f"output slot {index} is linked but the class has {len(node.outputs)} outputs", node, inst.exec_id
            )
            return None
        return _LinkTo(inst.exec_id, index)

    def _from_subgraph_output(self, inst: _Instance, index: int, type_: str | None) -> _StepKey | _Result:
        subgraph = inst.node.subgraph
        assert subgraph is not None
        if index >= len(subgraph.output_links):
            self._problem(
                f"output slot {index} is linked but its subgraph has {len(subgraph.output_links)} outputs",
                inst.node,
                inst.exec_id,
            )
            return None
        links = subgraph.output_links[index]
        link = subgraph.links.get(links[0]) if links else None
        if link is None:
            return None
        inner = self._instance((*inst.path, inst.node.id), link.origin_id)
        if inner is None:
            self._problem(
                f"output '{subgraph.outputs[index].name}' of subgraph '{subgraph.name}' is fed by "
                f"node {link.origin_id}, which is not in the subgraph",
                inst.node,
                inst.exec_id,
            )
            return None
        return ("out", inner.exec_id, link.origin_slot, type_)

    def _bypass_input(self, inst: _Instance, index: int, wanted: str) -> int | None:
        """The input a bypassed node passes to its output ``index``: the frontend's slot matching.

        For a wildcard target, the input at the same index (else the first); else the same
        index when its type fits both the output and the target, then the first input of
        exactly the target's type, then the first that fits both.
        """
        node = inst.node
        inputs = node.inputs
        if index >= len(node.outputs):
            self._problem(
                f"output slot {index} is linked but the node has {len(node.outputs)} outputs", node, inst.exec_id
            )
            return None
        if wanted in ("*", ""):
            chosen = index if len(inputs) > index else 0
            return chosen if chosen < len(inputs) else None
        produced = node.outputs[index].type
        if index < len(inputs) and _fits(inputs[index].type, produced) and _fits(inputs[index].type, wanted):
            return index
        for i, slot in enumerate(inputs):
            if slot.type == wanted:
                return i
        for i, slot in enumerate(inputs):
            if _fits(slot.type, produced) and _fits(slot.type, wanted):
                return i
        return None


def _overlay(own: list[Slot], saved: list[Slot]) -> list[Slot]:
    """Saved slots over a node's own, index by index (LiteGraph's ``cloneObject`` into the list)."""
    merged = [Slot(name=s.name, type=s.type) for s in own]
    for index, slot in enumerate(saved):
        if index < len(merged):
            merged[index] = slot
        else:
            merged.append(slot)
    return merged


def _search_name(node: _Node) -> str | None:
    """The "Node name for S&R" the frontend gives a node: saved, or its class (not for save nodes)."""
    saved = node.raw.properties.get(_SEARCH_NAME)
    if isinstance(saved, str):
        return saved
    if node.kind is _Kind.REAL and node.raw.type not in SAVE_NODE_TYPES:
        return node.raw.type
    return None


def _fits(a: str, b: str) -> bool:
    """LiteGraph's ``isValidConnection``: wildcards fit anything; types compare case-insensitively, by parts."""
    if a in ("", "*") or b in ("", "*") or a == b:
        return True
    a, b = a.lower(), b.lower()
    if "," not in a and "," not in b:
        return a == b
    return any(_fits(x, y) for x in a.split(",") for y in b.split(","))


def _wrap(value: Any) -> Any:
    # A list would read as a link [node, slot]: the backend unwraps this form.
    return {"__value__": value} if isinstance(value, list) else value


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
