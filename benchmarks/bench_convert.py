"""How graph -> prompt conversion scales: 100, 1,000 and 10,000 nodes with twice as many edges.

Not a test: it prints best-of-N timings. Conversion is meant to be linear in nodes + edges, so
µs/node should stay flat and the time ratio to the 100-node case should track the size ratio.

The graphs are layered DAGs shaped like real ComfyUI workflows: a first layer of LoadImage
nodes (IMAGE + MASK outputs, reached by handle name through ``_comfy_metadata``), then layers of
ImageBlend (two IMAGE inputs), ImageCompositeMasked (two IMAGE inputs and a MASK from the first
layer), a few Reroutes and a few bypassed nodes, each wired to nodes of the layer above.

Run: ``make bench`` or ``.venv/bin/python benchmarks/bench_convert.py [--repeat N]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import timeit
from typing import Any

from comfyroute.conversion.nodetool import convert_graph, load_workflow
from comfyroute.protocol import Graph

SIZES = (100, 1_000, 10_000)
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
    composite_meta = _meta(
        [("destination", "IMAGE"), ("source", "IMAGE"), ("mask", "MASK")], [("IMAGE", "IMAGE")]
    )
    sources = [str(i) for i in range(width)]
    for node_id in sources:
        nodes.append(_node(node_id, "LoadImage", {"image": f"input_{node_id}.png"}, load_meta))

    def wire(source: str, target: str, handle: str, source_handle: str = "IMAGE") -> None:
        edges.append({
            "id": f"e{len(edges)}", "source": source, "sourceHandle": source_handle,
            "target": target, "targetHandle": handle, "edge_type": "data",
        })

    previous, layer = sources, []
    for index, kind in enumerate(kinds, start=width):
        node_id = str(index)
        a, b = rng.choice(previous), rng.choice(previous)
        if kind == "reroute":
            nodes.append(_node(node_id, "Reroute", {}, None))
            wire(a, node_id, "input_0")
        elif kind == "composite":
            nodes.append(_node(node_id, "ImageCompositeMasked", {"x": 0, "y": 0, "resize_source": False},
                               composite_meta))
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
    header = (f"{'nodes':>7} {'edges':>7} {'prompt':>7} {'convert ms':>11} {'µs/node':>8} {'vs 100':>11}"
              f" {'load ms':>9} {'µs/node':>8} {'vs 100':>11}")
    # Best-of-N hides most noise from other processes, not all: say how busy the machine was.
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"convert_graph (Graph already parsed) and load_workflow (JSON dict: parse + convert + "
          f"validate); best of {args.repeat}")
    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load average {load}")
    print(header)
    print("-" * len(header))
    for n, n_edges, n_prompt, convert_s, load_s in rows:
        print(
            f"{n:>7,} {n_edges:>7,} {n_prompt:>7,} {convert_s * 1e3:>11.2f} {convert_s / n * 1e6:>8.2f}"
            f" {convert_s / base_convert:>10.1f}x {load_s * 1e3:>9.2f} {load_s / n * 1e6:>8.2f}"
            f" {load_s / base_load:>10.1f}x"
        )


if __name__ == "__main__":
    main()
