"""nodetool graph -> ComfyUI API prompt (comfyroute.conversion.nodetool)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from comfyroute.conversion.nodetool import (
    GraphError,
    apply_params,
    convert_graph,
    is_comfy_graph,
    load_workflow,
    validate_prompt,
)
from comfyroute.protocol.workflow_commands import Graph

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "graph"
REFERENCE_WORKFLOWS = sorted(p.stem for p in (FIXTURES / "workflows").glob("*.json"))

# --------------------------------------------------------------------------- builders


def node(
    node_id: str,
    cls: str,
    props: dict[str, Any] | None = None,
    *,
    meta: dict[str, Any] | None = None,
    field: str = "properties",
) -> dict[str, Any]:
    body = dict(props or {})
    if meta is not None:
        body["_comfy_metadata"] = meta
    return {"id": node_id, "type": cls if "." in cls else f"comfy.{cls}", field: body}


def edge(
    source: str, source_handle: str | None, target: str, target_handle: str | None, edge_id: str | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "source": source,
        "sourceHandle": source_handle,
        "target": target,
        "targetHandle": target_handle,
    }
    if edge_id:
        out["id"] = edge_id
    return out


def slot(name: str, type_: str) -> dict[str, Any]:
    return {"name": name, "type": type_, "link": None}


def meta(inputs: list[Any] | None = None, outputs: list[Any] | None = None, mode: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {"mode": mode}
    if inputs is not None:
        out["inputs"] = inputs
    if outputs is not None:
        out["outputs"] = outputs
    return out


def graph(nodes: list[dict[str, Any]], edges: list[dict[str, Any]] | None = None) -> Graph:
    return Graph.model_validate({"nodes": nodes, "edges": edges or []})


def convert(nodes: list[dict[str, Any]], edges: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return convert_graph(graph(nodes, edges))


def problems_of(nodes: list[dict[str, Any]], edges: list[dict[str, Any]] | None = None) -> list[str]:
    with pytest.raises(GraphError) as info:
        convert(nodes, edges)
    return info.value.problems


IMAGE_SOURCE = meta(outputs=[slot("IMAGE", "IMAGE")])
LOAD_IMAGE = meta(outputs=[slot("IMAGE", "IMAGE"), slot("MASK", "MASK")])


# --------------------------------------------------------------------------- detection


def test_is_comfy_graph_needs_nodes_all_of_comfy_type() -> None:
    assert is_comfy_graph(graph([node("1", "EmptyImage"), node("2", "SaveImage")]))
    assert not is_comfy_graph(graph([]))
    assert not is_comfy_graph(graph([node("1", "EmptyImage"), node("2", "nodetool.image.Resize")]))
    assert not is_comfy_graph(graph([node("1", "nodetool.text.Concat")]))


# --------------------------------------------------------------------------- nodes and inputs


def test_node_becomes_class_type_and_inputs_without_private_keys() -> None:
    prompt = convert(
        [
            node(
                "1",
                "EmptyImage",
                {
                    "width": 64,
                    "height": 32,
                    "_comfy_widgets": [64, 32],
                    "_comfy_metadata": {"mode": 0},
                    "workflow_id": "wf-1",
                },
            ),
        ]
    )
    assert prompt == {"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 32}}}


def test_inputs_come_from_data_when_properties_are_absent() -> None:
    prompt = convert([node("7", "EmptyLatentImage", {"width": 512, "_secret": 1}, field="data")])
    assert prompt["7"]["inputs"] == {"width": 512}


def test_integer_node_ids_become_strings() -> None:
    prompt = convert_graph(
        Graph.model_validate(
            {
                "nodes": [{"id": 1, "type": "comfy.EmptyImage"}, {"id": 2, "type": "comfy.ImageInvert"}],
                "edges": [{"source": 1, "sourceHandle": "IMAGE", "target": 2, "targetHandle": "image"}],
            }
        )
    )
    assert prompt["2"]["inputs"]["image"] == ["1", 0]


# --------------------------------------------------------------------------- source handles


def test_output_n_handle_gives_slot_n() -> None:
    prompt = convert([node("1", "LoadImage"), node("2", "MaskToImage")], [edge("1", "output_1", "2", "mask")])
    assert prompt["2"]["inputs"]["mask"] == ["1", 1]


@pytest.mark.parametrize(
    "outputs",
    [
        ["IMAGE", "MASK"],
        [slot("IMAGE", "IMAGE"), slot("MASK", "MASK")],
        [{"name": "IMAGE", "type": "IMAGE", "links": [3], "slot_index": 0}, {"name": "MASK", "type": "MASK"}],
    ],
    ids=["names", "slot-objects", "editor-slots"],
)
def test_named_handle_resolves_through_output_metadata(outputs: list[Any]) -> None:
    prompt = convert(
        [node("1", "LoadImage", meta=meta(outputs=outputs)), node("2", "MaskToImage")], [edge("1", "MASK", "2", "mask")]
    )
    assert prompt["2"]["inputs"]["mask"] == ["1", 1]


def test_unknown_handle_is_slot_0_for_a_single_output_or_no_metadata() -> None:
    prompt = convert(
        [node("1", "EmptyImage", meta=IMAGE_SOURCE), node("2", "EmptyImage"), node("3", "ImageBlend")],
        [edge("1", "image", "3", "image1"), edge("2", "whatever", "3", "image2")],
    )
    assert prompt["3"]["inputs"] == {"image1": ["1", 0], "image2": ["2", 0]}


def test_unknown_handle_on_a_node_with_several_outputs_names_the_edge() -> None:
    problems = problems_of(
        [node("1", "LoadImage", meta=LOAD_IMAGE), node("2", "ImageInvert")],
        [edge("1", "PIXELS", "2", "image", edge_id="e-17")],
    )
    assert len(problems) == 1
    assert "edge e-17 (1:PIXELS -> 2:image)" in problems[0]
    assert "'PIXELS' is not an output of node 1 (LoadImage)" in problems[0]
    assert "IMAGE, MASK" in problems[0]


def test_output_n_beyond_the_known_outputs_is_an_error() -> None:
    problems = problems_of(
        [node("1", "LoadImage", meta=LOAD_IMAGE), node("2", "ImageInvert")], [edge("1", "output_5", "2", "image")]
    )
    assert "node 1 (LoadImage) has 2 outputs, no slot 5" in problems[0]


# --------------------------------------------------------------------------- target handles


@pytest.mark.parametrize(
    "inputs", [["samples", "vae"], [slot("samples", "LATENT"), slot("vae", "VAE")]], ids=["names", "slot-objects"]
)
def test_input_n_handle_resolves_to_the_input_name(inputs: list[Any]) -> None:
    prompt = convert(
        [node("1", "VAELoader"), node("2", "VAEDecode", meta=meta(inputs=inputs))], [edge("1", "VAE", "2", "input_1")]
    )
    assert prompt["2"]["inputs"] == {"vae": ["1", 0]}


def test_unresolvable_input_n_names_the_edge_and_the_node() -> None:
    problems = problems_of(
        [node("1", "VAELoader"), node("2", "VAEDecode", meta=meta(inputs=["samples", "vae"])), node("3", "SaveImage")],
        [edge("1", "VAE", "2", "input_4", edge_id="a"), edge("1", "VAE", "3", "input_0", edge_id="b")],
    )
    assert len(problems) == 2
    assert problems[0].startswith("edge a (1:VAE -> 2:input_4)")
    assert "its inputs are samples, vae" in problems[0]
    assert problems[1].startswith("edge b (1:VAE -> 3:input_0)")
    assert "no input metadata" in problems[1]


def test_handles_that_are_real_slot_names_win_over_the_index_form() -> None:
    # A custom node whose inputs are literally called input_0 / input_1, and whose outputs are
    # called output_1 / output_0 in that order.
    switch = meta(
        inputs=[slot("select", "INT"), slot("input_0", "IMAGE"), slot("input_1", "IMAGE")],
        outputs=[slot("output_1", "IMAGE"), slot("output_0", "IMAGE")],
    )
    prompt = convert(
        [node("1", "EmptyImage"), node("2", "Switch", meta=switch), node("3", "ImageInvert")],
        [edge("1", "IMAGE", "2", "input_1"), edge("2", "output_0", "3", "image")],
    )
    assert prompt["2"]["inputs"] == {"input_1": ["1", 0]}
    assert prompt["3"]["inputs"] == {"image": ["2", 1]}


def test_edge_without_a_target_handle_is_an_error() -> None:
    problems = problems_of(
        [node("1", "EmptyImage"), node("2", "SaveImage")], [edge("1", "IMAGE", "2", None, edge_id="e9")]
    )
    assert problems == ["edge e9 (1:IMAGE -> 2:?): the edge has no targetHandle"]


def test_edge_value_replaces_a_stale_property_of_the_same_input() -> None:
    prompt = convert(
        [node("1", "EmptyImage"), node("2", "ImageInvert", {"image": "stale.png"})], [edge("1", "IMAGE", "2", "image")]
    )
    assert prompt["2"]["inputs"] == {"image": ["1", 0]}


# --------------------------------------------------------------------------- muted / bypassed


def test_muted_node_and_its_edges_are_dropped() -> None:
    prompt = convert(
        [
            node("1", "EmptyImage"),
            node("2", "ImageInvert", {"image": "stale"}, meta=meta(mode=2)),
            node("3", "SaveImage", {"filename_prefix": "x", "images": "stale"}),
            node("4", "PreviewImage"),
        ],
        [edge("1", "IMAGE", "2", "image"), edge("2", "IMAGE", "3", "images"), edge("1", "IMAGE", "4", "images")],
    )
    assert prompt == {
        "1": {"class_type": "EmptyImage", "inputs": {}},
        "3": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x"}},
        "4": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }


def test_bypassed_node_passes_its_input_of_the_output_type_through() -> None:
    blur = meta(inputs=[slot("image", "IMAGE")], outputs=[slot("IMAGE", "IMAGE")], mode=4)
    prompt = convert(
        [
            node("1", "EmptyImage", meta=IMAGE_SOURCE),
            node("2", "ImageBlur", {"sigma": 1.0}, meta=blur),
            node("3", "SaveImage"),
        ],
        [edge("1", "IMAGE", "2", "image"), edge("2", "IMAGE", "3", "images")],
    )
    assert set(prompt) == {"1", "3"}
    assert prompt["3"]["inputs"]["images"] == ["1", 0]


def test_bypass_matches_types_not_positions() -> None:
    # Output 1 (MASK) of a bypassed node must come from its MASK input, not its first input.
    composite = meta(
        inputs=[slot("image", "IMAGE"), slot("mask", "MASK")],
        outputs=[slot("IMAGE", "IMAGE"), slot("MASK", "MASK")],
        mode=4,
    )
    prompt = convert(
        [
            node("1", "LoadImage", meta=LOAD_IMAGE),
            node("2", "Masker", meta=composite),
            node("3", "SaveImage"),
            node("4", "MaskToImage"),
        ],
        [
            edge("1", "IMAGE", "2", "image"),
            edge("1", "MASK", "2", "mask"),
            edge("2", "IMAGE", "3", "images"),
            edge("2", "MASK", "4", "mask"),
        ],
    )
    assert prompt["3"]["inputs"]["images"] == ["1", 0]
    assert prompt["4"]["inputs"]["mask"] == ["1", 1]


def test_bypass_prefers_the_same_slot_among_inputs_of_one_type() -> None:
    swap = meta(
        inputs=[slot("a", "IMAGE"), slot("b", "IMAGE")], outputs=[slot("A", "IMAGE"), slot("B", "IMAGE")], mode=4
    )
    prompt = convert(
        [node("1", "EmptyImage"), node("2", "EmptyImage"), node("3", "Swap", meta=swap), node("4", "ImageBlend")],
        [
            edge("1", "IMAGE", "3", "a"),
            edge("2", "IMAGE", "3", "b"),
            edge("3", "B", "4", "image1"),
            edge("3", "A", "4", "image2"),
        ],
    )
    assert prompt["4"]["inputs"] == {"image1": ["2", 0], "image2": ["1", 0]}


def test_bypass_prefers_an_exact_type_over_a_wildcard_input() -> None:
    node_meta = meta(
        inputs=[slot("anything", "*"), slot("latent", "LATENT"), slot("image", "IMAGE")],
        outputs=[slot("LATENT", "LATENT"), slot("IMAGE", "IMAGE")],
        mode=4,
    )
    prompt = convert(
        [node("1", "EmptyImage"), node("2", "EmptyImage"), node("3", "Custom", meta=node_meta), node("4", "SaveImage")],
        [edge("1", "IMAGE", "3", "anything"), edge("2", "IMAGE", "3", "image"), edge("3", "IMAGE", "4", "images")],
    )
    assert prompt["4"]["inputs"]["images"] == ["2", 0]


def test_chains_of_bypassed_nodes_reach_the_first_real_source() -> None:
    blur = meta(inputs=[slot("image", "IMAGE")], outputs=[slot("IMAGE", "IMAGE")], mode=4)
    nodes = [node("1", "EmptyImage", meta=IMAGE_SOURCE)]
    nodes += [node(str(i), "ImageBlur", meta=blur) for i in range(2, 6)]
    nodes.append(node("6", "SaveImage"))
    edges = [edge(str(i), "IMAGE", str(i + 1), "image") for i in range(1, 5)]
    edges.append(edge("5", "IMAGE", "6", "images"))
    prompt = convert(nodes, edges)
    assert set(prompt) == {"1", "6"}
    assert prompt["6"]["inputs"]["images"] == ["1", 0]


def test_bypassed_node_without_an_input_of_that_type_drops_the_consumer_input() -> None:
    # VAEDecode bypassed: its IMAGE output has no IMAGE input to come from.
    decode = meta(inputs=[slot("samples", "LATENT"), slot("vae", "VAE")], outputs=[slot("IMAGE", "IMAGE")], mode=4)
    prompt = convert(
        [
            node("1", "EmptyLatentImage"),
            node("2", "VAEDecode", meta=decode),
            node("3", "SaveImage", {"filename_prefix": "x", "images": "stale"}),
        ],
        [edge("1", "LATENT", "2", "samples"), edge("2", "IMAGE", "3", "images")],
    )
    assert prompt["3"]["inputs"] == {"filename_prefix": "x"}


def test_bypassed_node_with_its_matching_input_unconnected_drops_the_consumer_input() -> None:
    blur = meta(inputs=[slot("image", "IMAGE")], outputs=[slot("IMAGE", "IMAGE")], mode=4)
    prompt = convert([node("2", "ImageBlur", meta=blur), node("3", "SaveImage")], [edge("2", "IMAGE", "3", "images")])
    assert prompt == {"3": {"class_type": "SaveImage", "inputs": {}}}


# --------------------------------------------------------------------------- UI-only nodes


def test_reroute_chains_are_traced_to_the_real_source() -> None:
    prompt = convert(
        [
            node("1", "LoadImage", meta=LOAD_IMAGE),
            node("r1", "Reroute"),
            node("r2", "Reroute"),
            node("3", "MaskToImage"),
            node("4", "SaveImage"),
        ],
        [
            edge("1", "MASK", "r1", "input_0"),
            edge("r1", "output_0", "r2", ""),
            edge("r2", "output_0", "3", "mask"),
            edge("r1", "", "4", "images"),
        ],
    )
    assert set(prompt) == {"1", "3", "4"}
    assert prompt["3"]["inputs"]["mask"] == ["1", 1]
    assert prompt["4"]["inputs"]["images"] == ["1", 1]


def test_reroute_without_an_input_drops_the_consumer_input() -> None:
    prompt = convert([node("r", "Reroute"), node("2", "SaveImage")], [edge("r", "output_0", "2", "images")])
    assert prompt == {"2": {"class_type": "SaveImage", "inputs": {}}}


def test_notes_are_dropped() -> None:
    prompt = convert(
        [node("1", "EmptyImage"), node("n1", "Note", {"text": "hello"}), node("n2", "MarkdownNote", {"text": "# hi"})]
    )
    assert list(prompt) == ["1"]


@pytest.mark.parametrize(
    "props",
    [
        {"value": 7, "Run widget replace on values": False},
        {"Run widget replace on values": False, "steps": 7},
        {"Run widget replace on values": False, "_comfy_widgets": [7, "fixed"]},
    ],
    ids=["value", "first-property", "editor-widgets"],
)
def test_primitive_value_is_written_into_every_input_it_feeds(props: dict[str, Any]) -> None:
    prompt = convert(
        [node("p", "PrimitiveNode", props), node("1", "KSampler", {"steps": 20}), node("2", "KSampler")],
        [edge("p", "INT", "1", "steps"), edge("p", "INT", "2", "steps")],
    )
    assert prompt == {
        "1": {"class_type": "KSampler", "inputs": {"steps": 7}},
        "2": {"class_type": "KSampler", "inputs": {"steps": 7}},
    }


def test_primitive_through_a_reroute_still_gives_its_value() -> None:
    prompt = convert(
        [node("p", "PrimitiveNode", {"value": "cat"}), node("r", "Reroute"), node("1", "CLIPTextEncode")],
        [edge("p", "STRING", "r", "input_0"), edge("r", "output_0", "1", "text")],
    )
    assert prompt["1"]["inputs"] == {"text": "cat"}


def test_primitive_without_a_value_is_an_error() -> None:
    problems = problems_of([node("p", "PrimitiveNode"), node("1", "KSampler")], [edge("p", "INT", "1", "seed")])
    assert problems == ["node p (PrimitiveNode) has no value to pass on (no 'value' property)"]


def test_graph_of_only_ui_nodes_has_nothing_to_run() -> None:
    problems = problems_of([node("n", "Note"), node("m", "EmptyImage", meta=meta(mode=2))])
    assert problems == ["graph has no nodes to run: every node is a note, muted or UI-only"]


# --------------------------------------------------------------------------- errors


def test_mixed_graph_names_the_non_comfy_nodes() -> None:
    problems = problems_of(
        [node("1", "EmptyImage"), node("2", "nodetool.image.Resize"), node("3", "nodetool.text.Concat")]
    )
    assert len(problems) == 1
    assert "node 2 (nodetool.image.Resize), node 3 (nodetool.text.Concat)" in problems[0]
    assert "node 1" not in problems[0]


def test_empty_graph_is_an_error() -> None:
    with pytest.raises(GraphError) as info:
        convert_graph(graph([]))
    assert info.value.problems == ["graph has no nodes"]


def test_duplicate_ids_are_named() -> None:
    problems = problems_of([node("1", "EmptyImage"), node("1", "SaveImage"), node("2", "EmptyImage")])
    assert problems == ["duplicate node id '1': 2 nodes share it"]


def test_dangling_edges_name_the_missing_end() -> None:
    problems = problems_of(
        [node("1", "EmptyImage"), node("2", "SaveImage")],
        [
            edge("9", "IMAGE", "2", "images", edge_id="e1"),
            edge("1", "IMAGE", "8", "images", edge_id="e2"),
            edge("7", "IMAGE", "6", "images"),
        ],
    )
    assert problems == [
        "edge e1 (9:IMAGE -> 2:images): source node '9' does not exist",
        "edge e2 (1:IMAGE -> 8:images): target node '8' does not exist",
        "edge #2 (7:IMAGE -> 6:images): source node '7' does not exist and target node '6' does not exist",
    ]


def test_cycle_names_only_the_nodes_on_it() -> None:
    # 1 -> 2 -> 3 -> 2 is a cycle through 2 and 3; 4 only hangs off it.
    problems = problems_of(
        [node("1", "EmptyImage"), node("2", "ImageBlend"), node("3", "ImageInvert"), node("4", "SaveImage")],
        [
            edge("1", "IMAGE", "2", "image1"),
            edge("2", "IMAGE", "3", "image"),
            edge("3", "IMAGE", "2", "image2"),
            edge("3", "IMAGE", "4", "images"),
        ],
    )
    assert problems == ["cycle through node 2 (ImageBlend), node 3 (ImageInvert)"]


def test_self_loop_is_a_cycle() -> None:
    problems = problems_of([node("1", "ImageInvert")], [edge("1", "IMAGE", "1", "image")])
    assert problems == ["cycle through node 1 (ImageInvert)"]


def test_cycle_through_reroutes_is_reported_and_does_not_hang() -> None:
    problems = problems_of(
        [node("r1", "Reroute"), node("r2", "Reroute"), node("3", "SaveImage")],
        [edge("r1", "", "r2", ""), edge("r2", "", "r1", ""), edge("r2", "", "3", "images")],
    )
    assert problems == ["cycle through node r1 (Reroute), node r2 (Reroute)"]


def test_two_edges_into_one_input_are_an_error() -> None:
    problems = problems_of(
        [node("1", "EmptyImage"), node("2", "EmptyImage"), node("3", "SaveImage")],
        [edge("1", "IMAGE", "3", "images"), edge("2", "IMAGE", "3", "images")],
    )
    assert len(problems) == 1
    assert problems[0].startswith("node 3 (SaveImage): input 'images' is fed by two edges")


def test_every_problem_is_collected_not_just_the_first() -> None:
    problems = problems_of(
        [
            node("1", "LoadImage", meta=LOAD_IMAGE),
            node("1", "SaveImage"),
            node("2", "other.Node"),
            node("3", "ImageInvert"),
            node("4", "ImageInvert"),
        ],
        [
            edge("1", "X", "3", "image"),
            edge("5", "IMAGE", "3", "image"),
            edge("3", "IMAGE", "4", "image"),
            edge("4", "IMAGE", "3", "image"),
        ],
    )
    text = "\n".join(problems)
    assert "not a comfy graph" in text
    assert "duplicate node id '1'" in text
    assert "source node '5' does not exist" in text
    assert "cycle through node 3 (ImageInvert), node 4 (ImageInvert)" in text
    assert "'X' is not an output of node 1 (LoadImage)" in text


def test_graph_error_str_joins_the_problems_and_stays_bounded() -> None:
    err = GraphError(["a", "b"])
    assert str(err) == "a; b"
    assert isinstance(err, ValueError)
    many = GraphError([f"problem {i}" for i in range(500)])
    assert len(many.problems) == 500
    assert str(many).endswith("; and 450 more problems")


def test_long_lists_of_offending_nodes_are_truncated_in_the_message() -> None:
    nodes = [node(str(i), "nodetool.X") for i in range(100)]
    problems = problems_of(nodes)
    assert problems[0].endswith("node 19 (nodetool.X) and 80 more")


# --------------------------------------------------------------------------- scale


def test_10000_node_chain_converts_without_recursion() -> None:
    n = 10_000
    nodes = [node("0", "EmptyImage")] + [node(str(i), "ImageInvert") for i in range(1, n)]
    edges = [edge(str(i - 1), "IMAGE", str(i), "image") for i in range(1, n)]
    prompt = convert(nodes, edges)
    assert len(prompt) == n
    assert prompt[str(n - 1)]["inputs"]["image"] == [str(n - 2), 0]


def test_10000_node_cycle_is_found_without_recursion() -> None:
    n = 10_000
    nodes = [node(str(i), "ImageInvert") for i in range(n)]
    edges = [edge(str(i), "IMAGE", str((i + 1) % n), "image") for i in range(n)]
    problems = problems_of(nodes, edges)
    assert len(problems) == 1
    assert problems[0].startswith("cycle through node 0 (ImageInvert), node 1 (ImageInvert)")
    assert problems[0].endswith(f"and {n - 20} more")


def test_10000_reroutes_in_a_row_are_traced() -> None:
    n = 10_000
    nodes = [node("src", "EmptyImage")] + [node(f"r{i}", "Reroute") for i in range(n)] + [node("out", "SaveImage")]
    edges = [edge("src", "IMAGE", "r0", "")]
    edges += [edge(f"r{i - 1}", "", f"r{i}", "") for i in range(1, n)]
    edges.append(edge(f"r{n - 1}", "", "out", "images"))
    assert convert(nodes, edges)["out"]["inputs"]["images"] == ["src", 0]


# --------------------------------------------------------------------------- API prompts


def test_validate_prompt_accepts_a_reference_prompt_unchanged() -> None:
    prompt = json.loads((FIXTURES / "workflows" / "slow_blur_chain_for_interrupt.json").read_text())
    assert validate_prompt(prompt) == prompt


def test_validate_prompt_stringifies_node_ids_and_copies() -> None:
    prompt: dict[Any, Any] = {
        1: {"class_type": "EmptyImage", "inputs": {}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}, "_meta": {"title": "x"}},
    }
    out = validate_prompt(prompt)
    assert list(out) == ["1", "2"]
    assert out["2"]["_meta"] == {"title": "x"}
    out["2"]["inputs"]["images"] = "changed"
    assert prompt["2"]["inputs"]["images"] == ["1", 0]


def _linked(slot_value: Any) -> dict[str, Any]:
    return {
        "1": {"class_type": "EmptyImage", "inputs": {}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", slot_value]}},
    }


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ({}, "prompt has no nodes"),
        ([], "prompt must be a JSON object of nodes, not an array"),
        ({"1": "EmptyImage"}, "node 1: must be an object with 'class_type' and 'inputs', not a string"),
        ({"1": {"inputs": {}}}, "node 1: 'class_type' must be a non-empty string"),
        ({"1": {"class_type": 5, "inputs": {}}}, "node 1: 'class_type' must be a non-empty string"),
        ({"1": {"class_type": "EmptyImage"}}, "node 1: 'inputs' must be an object, not null"),
        ({"1": {"class_type": "EmptyImage", "inputs": [1]}}, "node 1: 'inputs' must be an object, not an array"),
        (
            {"2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}}},
            "node 2 input 'images': links to node '1', which is not in the prompt",
        ),
        (_linked("0"), "node 2 input 'images': output slot '0' must be a non-negative integer"),
        (_linked(True), "node 2 input 'images': output slot True must be a non-negative integer"),
        (_linked(-1), "node 2 input 'images': output slot -1 must be a non-negative integer"),
        (_linked(0.5), "node 2 input 'images': output slot 0.5 must be a non-negative integer"),
        (
            {
                "1": {"class_type": "ImageInvert", "inputs": {"image": ["2", 0]}},
                "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
            },
            "cycle through nodes 1, 2",
        ),
    ],
    ids=[
        "empty",
        "array",
        "entry-not-object",
        "no-class",
        "class-not-str",
        "no-inputs",
        "inputs-array",
        "missing-node",
        "slot-str",
        "slot-bool",
        "slot-negative",
        "slot-float",
        "cycle",
    ],
)
def test_validate_prompt_rejects(prompt: Any, expected: str) -> None:
    with pytest.raises(GraphError) as info:
        validate_prompt(prompt)
    assert info.value.problems == [expected]


def test_validate_prompt_leaves_non_link_lists_alone() -> None:
    prompt = {"1": {"class_type": "Custom", "inputs": {"size": [512, 512], "tags": ["a", "b", "c"]}}}
    assert validate_prompt(prompt) == prompt


def test_validate_prompt_collects_every_problem() -> None:
    with pytest.raises(GraphError) as info:
        validate_prompt({"1": {"inputs": {"a": ["9", 0]}}, "2": {"class_type": "X"}})
    assert info.value.problems == [
        "node 1: 'class_type' must be a non-empty string",
        "node 2: 'inputs' must be an object, not null",
        "node 1 input 'a': links to node '9', which is not in the prompt",
    ]


# --------------------------------------------------------------------------- params


def test_apply_params_overrides_inputs_in_a_new_prompt() -> None:
    prompt = {
        "3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 20, "model": ["4", 0]}},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "a.safetensors"}},
    }
    before = copy.deepcopy(prompt)
    out = apply_params(prompt, {"3": {"seed": 42, "cfg": 6.5}})
    assert out["3"]["inputs"] == {"seed": 42, "steps": 20, "model": ["4", 0], "cfg": 6.5}
    assert out["4"] == prompt["4"]
    assert prompt == before
    assert out is not prompt


def test_apply_params_names_unknown_nodes() -> None:
    prompt = {"3": {"class_type": "KSampler", "inputs": {}}}
    with pytest.raises(GraphError) as info:
        apply_params(prompt, {"3": {"seed": 1}, "99": {"x": 1}, "98": {"y": 2}})
    assert info.value.problems == ["params: node '99' is not in the prompt", "params: node '98' is not in the prompt"]


# --------------------------------------------------------------------------- load_workflow


def _prompt_of(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / "workflows" / f"{name}.json").read_text())


def test_load_workflow_accepts_every_shape() -> None:
    saved = json.loads((EXAMPLES / "empty_invert_save.json").read_text())
    expected = _prompt_of("empty_invert_save")
    assert "graph" in saved
    assert load_workflow(saved) == expected
    assert load_workflow(saved["graph"]) == expected
    assert load_workflow(expected) == expected
    assert load_workflow({"prompt": expected, "client_id": "abc"}) == expected


def test_load_workflow_checks_an_api_prompt() -> None:
    with pytest.raises(GraphError, match="links to node '7'"):
        load_workflow({"1": {"class_type": "SaveImage", "inputs": {"images": ["7", 0]}}})


def test_load_workflow_reports_malformed_graphs_by_path() -> None:
    with pytest.raises(GraphError) as info:
        load_workflow({"nodes": [{"id": "1"}, {"id": "2", "type": "comfy.X"}], "edges": [{"source": "1"}]})
    assert info.value.problems == [
        "nodes[0].type: Field required",
        "edges[0].target: Field required",
    ]


def test_load_workflow_explains_a_comfyui_editor_workflow() -> None:
    editor = {"last_node_id": 2, "nodes": [{"id": 1, "type": "EmptyImage"}], "links": [[1, 1, 0, 2, 0, "IMAGE"]]}
    with pytest.raises(GraphError, match="ComfyUI editor workflow"):
        load_workflow(editor)


def test_load_workflow_rejects_non_objects() -> None:
    with pytest.raises(GraphError, match="workflow must be a JSON object, not an array"):
        load_workflow([1, 2])


# --------------------------------------------------------------------------- examples


@pytest.mark.parametrize("name", REFERENCE_WORKFLOWS)
def test_example_converts_to_the_reference_prompt(name: str) -> None:
    example = json.loads((EXAMPLES / f"{name}.json").read_text())
    assert load_workflow(example) == _prompt_of(name)


def test_every_reference_workflow_is_covered() -> None:
    assert set(REFERENCE_WORKFLOWS) == {
        "empty_invert_save",
        "empty_save",
        "empty_preview",
        "empty_latent_save_latent",
        "loadimage_invert_save",
        "runtime_error_blur_1px",
        "slow_blur_chain_for_interrupt",
    }


def test_text_to_image_example_wires_the_checkpoint_outputs_by_name() -> None:
    prompt = load_workflow(json.loads((EXAMPLES / "text_to_image.json").read_text()))
    classes = {node_id: entry["class_type"] for node_id, entry in prompt.items()}
    assert sorted(classes.values()) == sorted(
        [
            "CheckpointLoaderSimple",
            "CLIPTextEncode",
            "CLIPTextEncode",
            "EmptyLatentImage",
            "KSampler",
            "VAEDecode",
            "SaveImage",
        ]
    )
    ckpt = next(i for i, c in classes.items() if c == "CheckpointLoaderSimple")
    sampler = next(i for i, c in classes.items() if c == "KSampler")
    decode = next(i for i, c in classes.items() if c == "VAEDecode")
    assert prompt[sampler]["inputs"]["model"] == [ckpt, 0]
    assert prompt[decode]["inputs"]["vae"] == [ckpt, 2]
    assert all(prompt[i]["inputs"]["clip"] == [ckpt, 1] for i, c in classes.items() if c == "CLIPTextEncode")


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.json")), ids=lambda p: p.stem)
def test_example_matches_the_servers_node_schemas(path: Path) -> None:
    """Every input is known to its class, every required input is given, every link's type fits."""
    info = json.loads((FIXTURES / "object_info.json").read_text())
    prompt = load_workflow(json.loads(path.read_text()))
    for node_id, entry in prompt.items():
        schema = info[entry["class_type"]]
        declared = {**schema["input"].get("required", {}), **schema["input"].get("optional", {})}
        assert set(entry["inputs"]) <= set(declared), f"node {node_id}: unknown inputs"
        assert set(schema["input"].get("required", {})) <= set(entry["inputs"]), f"node {node_id}: missing inputs"
        for name, value in entry["inputs"].items():
            if isinstance(value, list):
                source_id, slot_index = value
                produced = info[prompt[source_id]["class_type"]]["output"][slot_index]
                assert produced == declared[name][0], f"node {node_id} input {name}: {produced}"
