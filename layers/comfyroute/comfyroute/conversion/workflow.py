"""The ComfyUI editor's workflow file (what *Save* and *Export* write), read into plain records.

Both schemas are read: 0.4 (``links`` as ``[id, origin_id, origin_slot, target_id,
target_slot, type]`` arrays, ``last_node_id``) and 1 (``links`` as objects, ``state``).
Subgraph definitions (``definitions.subgraphs``) become graphs of their own whose links may
start at the subgraph's input node (``-10``) or end at its output node (``-20``).

Reading is lenient about what the converter does not need (positions, sizes, colours, groups)
and records a problem for what it does need and cannot read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from comfyroute.conversion.problems import ConversionProblem

SUBGRAPH_INPUT_NODE = "-10"
SUBGRAPH_OUTPUT_NODE = "-20"
# Class names the frontend renames when it loads a workflow (old names and typos).
RENAMED_CLASSES = {
    "T2IAdapterLoader": "ControlNetLoader",
    "ConditioningAverage ": "ConditioningAverage",
    "SDV_img2vid_Conditioning": "SVD_img2vid_Conditioning",
}


@dataclass(frozen=True, slots=True)
class Link:
    id: str
    origin_id: str
    origin_slot: int
    target_id: str
    target_slot: int


@dataclass(slots=True)
class Slot:
    """An input or output slot as saved: ``link`` for an input, ``links`` for an output."""

    name: str
    type: str
    link: str | None = None
    links: tuple[str, ...] = ()
    widget: str | None = None  # an input that edits the widget of this name


@dataclass(slots=True)
class RawNode:
    id: str
    type: str
    mode: int
    title: str | None
    inputs: list[Slot] | None  # None when the file lists none
    outputs: list[Slot] | None
    widgets_values: list[Any] | dict[str, Any] | None
    properties: dict[str, Any]


@dataclass(slots=True)
class RawGraph:
    """The root graph or one subgraph definition."""

    id: str | None  # a subgraph's id (its nodes' ``type``), None for the root
    name: str
    nodes: dict[str, RawNode] = field(default_factory=dict)
    links: dict[str, Link] = field(default_factory=dict)
    inputs: list[Slot] = field(default_factory=list)  # a subgraph's inputs, in slot order
    outputs: list[Slot] = field(default_factory=list)
    # A subgraph's input/output slot -> the links inside that start / end there.
    input_links: list[tuple[str, ...]] = field(default_factory=list)
    output_links: list[tuple[str, ...]] = field(default_factory=list)


@dataclass(slots=True)
class RawWorkflow:
    root: RawGraph
    subgraphs: dict[str, RawGraph]
    group_nodes: frozenset[str]  # legacy group node types declared in extra.groupNodes
    problems: list[ConversionProblem]


def is_editor_workflow(obj: Any) -> bool:
    """Whether ``obj`` is a ComfyUI editor workflow: ``nodes`` of typed editor nodes and no nodetool ``edges``.

    An API prompt (``{id: {class_type, inputs}}``) and a nodetool graph (``nodes`` + ``edges``)
    are not. A workflow is told by its editor keys (``links``, ``last_node_id``, ``version``,
    ``state``, ``definitions``) or, failing those, by nodes that carry editor fields.
    """
    if not isinstance(obj, Mapping) or "edges" in obj:
        return False
    nodes = obj.get("nodes")
    if not isinstance(nodes, list):
        return False
    if not all(isinstance(n, Mapping) and isinstance(n.get("type"), str) for n in nodes):
        return False
    if any(key in obj for key in ("links", "last_node_id", "last_link_id", "state", "definitions")):
        return True
    editor_fields = ("widgets_values", "pos", "mode", "outputs", "flags", "order")
    return bool(nodes) and all(any(f in n for f in editor_fields) for n in nodes)


def read_workflow(obj: Mapping[str, Any]) -> RawWorkflow:
    problems: list[ConversionProblem] = []
    root = _read_graph(obj, None, "workflow", problems)
    subgraphs: dict[str, RawGraph] = {}
    definitions = obj.get("definitions")
    entries = definitions.get("subgraphs") if isinstance(definitions, Mapping) else None
    for entry in entries if isinstance(entries, list) else ():
        if not isinstance(entry, Mapping) or not isinstance(entry.get("id"), str):
            problems.append(ConversionProblem(message="a subgraph definition has no id"))
            continue
        name = entry.get("name")
        graph = _read_graph(entry, entry["id"], name if isinstance(name, str) and name else entry["id"], problems)
        _read_subgraph_io(entry, graph)
        subgraphs[graph.id or ""] = graph
    extra = obj.get("extra")
    groups = extra.get("groupNodes") if isinstance(extra, Mapping) else None
    group_nodes = frozenset(str(name) for name in groups) if isinstance(groups, Mapping) else frozenset()
    return RawWorkflow(root=root, subgraphs=subgraphs, group_nodes=group_nodes, problems=problems)


def _read_graph(obj: Mapping[str, Any], graph_id: str | None, name: str, problems: list[ConversionProblem]) -> RawGraph:
    graph = RawGraph(id=graph_id, name=name)
    where = f" in subgraph '{name}'" if graph_id is not None else ""
    nodes = obj.get("nodes")
    for position, entry in enumerate(nodes if isinstance(nodes, list) else ()):
        node = _read_node(entry)
        if node is None:
            problems.append(ConversionProblem(message=f"nodes[{position}]{where} is not a node with an id and a type"))
            continue
        if node.id in graph.nodes:
            problems.append(
                ConversionProblem(
                    node_id=node.id, class_type=node.type, message=f"duplicate node id{where}: two nodes share it"
                )
            )
            continue
        graph.nodes[node.id] = node
    links = obj.get("links")
    entries = links.values() if isinstance(links, Mapping) else links if isinstance(links, list) else ()
    for position, entry in enumerate(entries):
        if entry is None:  # old files keep holes where links were deleted
            continue
        link = _read_link(entry)
        if link is None:
            problems.append(ConversionProblem(message=f"links[{position}]{where} is not a link: {_short(entry)}"))
            continue
        graph.links[link.id] = link
    return graph


def _read_node(entry: Any) -> RawNode | None:
    if not isinstance(entry, Mapping):
        return None
    node_id, node_type = entry.get("id"), entry.get("type")
    if node_id is None or isinstance(node_id, (bool, list, dict)) or not isinstance(node_type, str):
        return None
    node_type = RENAMED_CLASSES.get(node_type, node_type)
    mode = entry.get("mode")
    title = entry.get("title")
    values = entry.get("widgets_values")
    properties = entry.get("properties")
    return RawNode(
        id=_key(node_id),
        type=node_type,
        mode=mode if isinstance(mode, int) and not isinstance(mode, bool) else 0,
        title=title if isinstance(title, str) and title else None,
        inputs=_slots(entry.get("inputs"), inputs=True),
        outputs=_slots(entry.get("outputs"), inputs=False),
        widgets_values=values if isinstance(values, (list, dict)) else None,
        properties=dict(properties) if isinstance(properties, Mapping) else {},
    )


def _slots(entries: Any, *, inputs: bool) -> list[Slot] | None:
    if not isinstance(entries, list):
        return None
    slots = []
    for entry in entries:
        if not isinstance(entry, Mapping):
            slots.append(Slot(name="", type="*"))
            continue
        name, kind = entry.get("name"), entry.get("type")
        widget = entry.get("widget")
        widget_name = widget.get("name") if isinstance(widget, Mapping) else None
        slot = Slot(
            name=str(name) if name is not None else "",
            type=kind if isinstance(kind, str) else "*" if kind in (None, 0, "") else str(kind),
            widget=widget_name if isinstance(widget_name, str) else None,
        )
        if inputs:
            slot.link = _optional_key(entry.get("link"))
        else:
            links = entry.get("links")
            slot.links = _keys(links)
        slots.append(slot)
    return slots


def _read_link(entry: Any) -> Link | None:
    if isinstance(entry, list) and len(entry) >= 5:
        link_id, origin_id, origin_slot, target_id, target_slot = entry[:5]
    elif isinstance(entry, Mapping):
        link_id, origin_id, origin_slot = entry.get("id"), entry.get("origin_id"), entry.get("origin_slot")
        target_id, target_slot = entry.get("target_id"), entry.get("target_slot")
    else:
        return None
    if link_id is None or origin_id is None or target_id is None:
        return None
    if not _is_slot(origin_slot) or not _is_slot(target_slot):
        return None
    return Link(
        id=_key(link_id),
        origin_id=_key(origin_id),
        origin_slot=int(origin_slot),
        target_id=_key(target_id),
        target_slot=int(target_slot),
    )


def _read_subgraph_io(entry: Mapping[str, Any], graph: RawGraph) -> None:
    sides = (("inputs", graph.inputs, graph.input_links), ("outputs", graph.outputs, graph.output_links))
    for key, slots, links in sides:
        declared = entry.get(key)
        for item in declared if isinstance(declared, list) else ():
            item = item if isinstance(item, Mapping) else {}
            name, kind = item.get("name"), item.get("type")
            slots.append(Slot(name=str(name) if name is not None else "", type=str(kind) if kind else "*"))
            links.append(_keys(item.get("linkIds")))
    # Files that omit linkIds still have the links themselves: derive them.
    for link in graph.links.values():
        into = link.origin_id == SUBGRAPH_INPUT_NODE and link.origin_slot < len(graph.input_links)
        if into and link.id not in graph.input_links[link.origin_slot]:
            graph.input_links[link.origin_slot] += (link.id,)
        out = link.target_id == SUBGRAPH_OUTPUT_NODE and link.target_slot < len(graph.output_links)
        if out and link.id not in graph.output_links[link.target_slot]:
            graph.output_links[link.target_slot] += (link.id,)


def _is_slot(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and value.is_integer()


def _key(value: Any) -> str:
    """A node or link id as the frontend writes it into a prompt: ``String(id)``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _keys(values: Any) -> tuple[str, ...]:
    if not isinstance(values, list):
        return ()
    return tuple(key for key in (_optional_key(v) for v in values) if key is not None)


def _optional_key(value: Any) -> str | None:
    if value is None or isinstance(value, (bool, list, dict)):
        return None
    return _key(value)


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
