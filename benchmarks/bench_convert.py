"""How workflow -> prompt conversion scales: nodetool graphs and ComfyUI editor workflows.

Not a test: it prints best-of-N timings. Conversion is meant to be linear in nodes + links, so
µs/node should stay flat and the time ratio to the 100-node case should track the size ratio.

nodetool graphs: 100, 1,000 and 10,000 nodes with twice as many edges.

The graphs are layered DAGs shaped like real ComfyUI workflows: a first layer of LoadImage
nodes (IMAGE + MASK outputs, reached by handle name through ``_comfy_metadata``), then layers of
ImageBlend (two IMAGE inputs), ImageCompositeMasked (two IMAGE inputs and a MASK from the first
layer), a few Reroutes and a few bypassed nodes, each wired to nodes of the layer above.

Editor workflows (``convert_editor_workflow``, with the bundled object_info): 100, 1,000,
2,000 and 10,000 nodes, links in the old array form: a layer of EmptyImage nodes, then layers
of ImageBlend (two IMAGE links, widget values), with one in 50 a Reroute, one in 50 bypassed,
one in 50 a PrimitiveNode feeding three blend_factor widgets converted to inputs, and one in 25
an instance of a three-node subgraph (flattened to ``<instance>:<inner>`` ids), and SaveImage
nodes on the last layer.

Run: ``make bench`` or ``.venv/bin/python benchmarks/bench_convert.py [--repeat N]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import timeit
from typing import Any

from comfyroute.conversion.editor import convert_editor_workflow
from comfyroute.conversion.nodetool import convert_graph, load_workflow
from comfyroute.conversion.object_info import bundled_object_info
from comfyroute.protocol.workflow_commands import Graph

SIZES = (100, 1_000, 10_000)
EDITOR_SIZES = (100, 1_000, 2_000, 10_000)
SUBGRAPH_ID = "5ab96a1e-0000-4000-8000-000000000001"
LAYER_WIDTH = 20


def _slot(name: str, type_: str) -> dict[str, Any]:
    return {"name": name, "type": type_, "link": None}


def _meta(inputs: list[tuple[str, str]], outputs: list[tuple[str, str]], mode: int = 0) -> dict[str, Any]:
    return {
        "mode": mode,
        "flags": {},
        "inputs": [_slot(n, t) for n, t in inputs],
        "outputs": [_slot(n, t) for n, t in outputs],
    }


def _node(node_id: str, cls: str, data: dict[str, Any], meta: dict[str, Any] | None) -> dict[str, Any]:
    if meta is not None:
        data = {**data, "_comfy_metadata": meta}
    return {
        "id": node_id,
        "type": f"comfy.{cls}",
        "data": data,
        "ui_properties": {"position": {"x": 0, "y": 0}},
        "sync_mode": "on_any",
    }


def make_graph(n: int, seed: int = 0) -> dict[str, Any]:
    """A layered DAG of ``n`` nodes and exactly ``2 * n`` edges."""
    rng = random.Random(seed)
    width = min(LAYER_WIDTH, n)
    rest = n - width
    reroutes = rest // 50  # one input each
    composites = 2 * width + reroutes  # three inputs each: makes the edge count exactly 2n
    bypassed = rest // 50
    if composites + reroutes > rest:
        raise ValueError(f"{n} nodes are too few for a {width}-wide first layer")
    kinds = ["reroute"] * reroutes + ["composite"] * composites + ["bypassed"] * bypassed
    kinds += ["blend"] * (rest - len(kinds))
    rng.shuffle(kinds)

    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []
    load_meta = _meta([], [("IMAGE", "IMAGE"), ("MASK", "MASK")])
    blend_meta = _meta([("image1", "IMAGE"), ("image2", "IMAGE")], [("IMAGE", "IMAGE")])
    bypass_meta = _meta([("image1", "IMAGE"), ("image2", "IMAGE")], [("IMAGE", "IMAGE")], mode=4)
    composite_meta = _meta([("destination", "IMAGE"), ("source", "IMAGE"), ("mask", "MASK")], [("IMAGE", "IMAGE")])
    sources = [str(i) for i in range(width)]
    for node_id in sources:
        nodes.append(_node(node_id, "LoadImage", {"image": f"input_{node_id}.png"}, load_meta))

    def wire(source: str, target: str, handle: str, source_handle: str = "IMAGE") -> None:
        edges.append(
            {
                "id": f"e{len(edges)}",
                "source": source,
                "sourceHandle": source_handle,
                "target": target,
                "targetHandle": handle,
                "edge_type": "data",
            }
        )

    previous, layer = sources, []
    for index, kind in enumerate(kinds, start=width):
        node_id = str(index)
        a, b = rng.choice(previous), rng.choice(previous)
        if kind == "reroute":
            nodes.append(_node(node_id, "Reroute", {}, None))
            wire(a, node_id, "input_0")
        elif kind == "composite":
            nodes.append(
                _node(node_id, "ImageCompositeMasked", {"x": 0, "y": 0, "resize_source": False}, composite_meta)
            )
            wire(a, node_id, "destination")
            wire(b, node_id, "source")
            wire(rng.choice(sources), node_id, "mask", "MASK")
        else:
            meta = bypass_meta if kind == "bypassed" else blend_meta
            nodes.append(_node(node_id, "ImageBlend", {"blend_factor": 0.5, "blend_mode": "normal"}, meta))
            wire(a, node_id, "image1")
            wire(b, node_id, "image2")
        layer.append(node_id)
        if len(layer) == width:
            previous, layer = layer, []
    return {"nodes": nodes, "edges": edges}


class _Editor:
    """Builds an editor workflow (schema 0.4) node by node, keeping inputs, outputs and links consistent."""

    def __init__(self) -> None:
        self.nodes: list[dict[str, Any]] = []
        self.links: list[list[Any]] = []
        self.by_id: dict[int, dict[str, Any]] = {}

    def add(
        self,
        node_id: int,
        kind: str,
        widgets: list[Any] | None,
        inputs: list[tuple[str, str]],
        outputs: list[tuple[str, str]],
        mode: int = 0,
    ) -> None:
        node = {
            "id": node_id,
            "type": kind,
            "pos": [0, 0],
            "size": [200, 100],
            "flags": {},
            "order": node_id,
            "mode": mode,
            "inputs": [{"name": n, "type": t, "link": None} for n, t in inputs],
            "outputs": [{"name": n, "type": t, "links": []} for n, t in outputs],
            "properties": {},
        }
        if widgets is not None:
            node["widgets_values"] = widgets
        self.nodes.append(node)
        self.by_id[node_id] = node

    def link(self, source: int, slot: int, target: int, name: str) -> None:
        link_id = len(self.links) + 1
        inputs = self.by_id[target]["inputs"]
        index = next(i for i, x in enumerate(inputs) if x["name"] == name)
        inputs[index]["link"] = link_id
        self.by_id[source]["outputs"][slot]["links"].append(link_id)
        self.links.append([link_id, source, slot, target, index, inputs[index]["type"]])


def _subgraph_definition() -> dict[str, Any]:
    def inner(
        node_id: int, kind: str, widgets: list[Any], inputs: list[dict[str, Any]], links: list[int]
    ) -> dict[str, Any]:
        return {
            "id": node_id,
            "type": kind,
            "pos": [0, 0],
            "size": [200, 100],
            "flags": {},
            "order": node_id,
            "mode": 0,
            "inputs": inputs,
            "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": links}],
            "properties": {},
            "widgets_values": widgets,
        }

    def link(link_id: int, origin: int, origin_slot: int, target: int, target_slot: int) -> dict[str, Any]:
        return {
            "id": link_id,
            "origin_id": origin,
            "origin_slot": origin_slot,
            "target_id": target,
            "target_slot": target_slot,
            "type": "IMAGE",
        }

    return {
        "id": SUBGRAPH_ID,
        "version": 1,
        "name": "invert, blur, blend",
        "revision": 0,
        "config": {},
        "state": {"lastGroupId": 0, "lastNodeId": 3, "lastLinkId": 6, "lastRerouteId": 0},
        "inputNode": {"id": -10, "bounding": [0, 0, 100, 60]},
        "outputNode": {"id": -20, "bounding": [500, 0, 100, 60]},
        "inputs": [{"id": "in", "name": "image", "type": "IMAGE", "linkIds": [1, 4]}],
        "outputs": [{"id": "out", "name": "IMAGE", "type": "IMAGE", "linkIds": [6]}],
        "widgets": [],
        "groups": [],
        "extra": {},
        "nodes": [
            inner(1, "ImageInvert", [], [{"name": "image", "type": "IMAGE", "link": 1}], [2]),
            inner(2, "ImageBlur", [1, 1.0], [{"name": "image", "type": "IMAGE", "link": 2}], [3]),
            inner(
                3,
                "ImageBlend",
                [0.5, "normal"],
                [{"name": "image1", "type": "IMAGE", "link": 3}, {"name": "image2", "type": "IMAGE", "link": 4}],
                [6],
            ),
        ],
        "links": [
            link(1, -10, 0, 1, 0),
            link(2, 1, 0, 2, 0),
            link(3, 2, 0, 3, 0),
            link(4, -10, 0, 3, 1),
            link(6, 3, 0, -20, 0),
        ],
    }


def make_editor_workflow(n: int, seed: int = 0) -> dict[str, Any]:
    """A layered editor workflow of ``n`` root nodes (see the module docstring)."""
    rng = random.Random(seed)
    width = min(LAYER_WIDTH, n)
    editor = _Editor()
    image = [("IMAGE", "IMAGE")]
    sources = list(range(1, width + 1))
    for node_id in sources:
        editor.add(node_id, "EmptyImage", [64, 64, 1, node_id], [], image)
    previous: list[int] = sources
    layer: list[int] = []
    primitive: tuple[int, int] | None = None  # a primitive and how many widgets it still feeds
    node_id = width
    last = n - width  # the last layer holds the SaveImage nodes
    while node_id < last:
        node_id += 1
        a, b = rng.choice(previous), rng.choice(previous)
        roll = node_id % 50
        if roll == 0:
            editor.add(node_id, "Reroute", None, [("", "*")], [("", "*")])
            editor.link(a, 0, node_id, "")
        elif roll == 1:
            editor.add(node_id, "PrimitiveNode", [0.25, "fixed"], [], [("FLOAT", "FLOAT")])
            primitive = (node_id, 3)
            continue  # feeds widgets, produces no image for the next layer
        elif node_id % 25 == 2:
            editor.add(node_id, SUBGRAPH_ID, [], [("image", "IMAGE")], image)
            editor.link(a, 0, node_id, "image")
        else:
            mode = 4 if roll == 3 else 0
            inputs = [("image1", "IMAGE"), ("image2", "IMAGE")]
            fed = primitive is not None and primitive[1] > 0
            if fed:
                inputs.append(("blend_factor", "FLOAT"))
            editor.add(node_id, "ImageBlend", [0.5, "normal"], inputs, image, mode)
            editor.link(a, 0, node_id, "image1")
            editor.link(b, 0, node_id, "image2")
            if fed and primitive is not None:
                editor.by_id[node_id]["inputs"][2]["widget"] = {"name": "blend_factor"}
                editor.link(primitive[0], 0, node_id, "blend_factor")
                primitive = (primitive[0], primitive[1] - 1)
        layer.append(node_id)
        if len(layer) == width:
            previous, layer = layer, []
    for source in (layer + previous)[:width]:
        node_id += 1
        editor.add(node_id, "SaveImage", ["bench"], [("images", "IMAGE")], [])
        editor.link(source, 0, node_id, "images")
    while node_id < n:  # fill up to exactly n with previews of the first layer
        node_id += 1
        editor.add(node_id, "PreviewImage", None, [("images", "IMAGE")], [])
        editor.link(sources[node_id % width], 0, node_id, "images")
    return {
        "last_node_id": node_id,
        "last_link_id": len(editor.links),
        "nodes": editor.nodes,
        "links": editor.links,
        "groups": [],
        "config": {},
        "extra": {},
        "version": 0.4,
        "definitions": {"subgraphs": [_subgraph_definition()]},
    }


def best_seconds(func: Any, repeat: int, number: int) -> float:
    return min(timeit.repeat(func, repeat=repeat, number=number)) / number


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9, help="timing runs per size; the best counts")
    args = parser.parse_args()

    rows = []
    for n in SIZES:
        raw = make_graph(n, seed=n)
        graph = Graph.model_validate(raw)
        prompt = convert_graph(graph)  # also proves the generated graph is valid
        number = max(1, 5_000 // n)
        convert_s = best_seconds(lambda graph=graph: convert_graph(graph), args.repeat, number)
        load_s = best_seconds(lambda raw=raw: load_workflow(raw), args.repeat, number)
        rows.append((n, len(raw["edges"]), len(prompt), convert_s, load_s))

    base_convert, base_load = rows[0][3], rows[0][4]
    header = (
        f"{'nodes':>7} {'edges':>7} {'prompt':>7} {'convert ms':>11} {'µs/node':>8} {'vs 100':>11}"
        f" {'load ms':>9} {'µs/node':>8} {'vs 100':>11}"
    )
    # Best-of-N hides most noise from other processes, not all: say how busy the machine was.
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"convert_graph (Graph already parsed) and load_workflow (JSON dict: parse + convert + "
        f"validate); best of {args.repeat}"
    )
    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load average {load}")
    print(header)
    print("-" * len(header))
    for n, n_edges, n_prompt, convert_s, load_s in rows:
        print(
            f"{n:>7,} {n_edges:>7,} {n_prompt:>7,} {convert_s * 1e3:>11.2f} {convert_s / n * 1e6:>8.2f}"
            f" {convert_s / base_convert:>10.1f}x {load_s * 1e3:>9.2f} {load_s / n * 1e6:>8.2f}"
            f" {load_s / base_load:>10.1f}x"
        )
    editor_table(args.repeat)


def editor_table(repeat: int) -> None:
    object_info = bundled_object_info()
    rows = []
    for n in EDITOR_SIZES:
        workflow = make_editor_workflow(n, seed=n)
        prompt = convert_editor_workflow(workflow, object_info)  # also proves the workflow converts cleanly
        number = max(1, 5_000 // n)
        seconds = best_seconds(lambda w=workflow: convert_editor_workflow(w, object_info), repeat, number)
        rows.append((n, len(workflow["links"]), len(prompt), seconds))
    base = rows[0][3]
    header = f"{'nodes':>7} {'links':>7} {'prompt':>7} {'convert ms':>11} {'µs/node':>8} {'vs 100':>11}"
    print()
    print(f"convert_editor_workflow (editor workflow dict, bundled object_info); best of {repeat}")
    print(header)
    print("-" * len(header))
    for n, n_links, n_prompt, seconds in rows:
        print(
            f"{n:>7,} {n_links:>7,} {n_prompt:>7,} {seconds * 1e3:>11.2f} {seconds / n * 1e6:>8.2f}"
            f" {seconds / base:>10.1f}x"
        )


if __name__ == "__main__":
    main()
