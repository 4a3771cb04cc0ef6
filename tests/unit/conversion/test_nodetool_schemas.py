"""nodetool graphs converted with object_info: ``_comfy_widgets`` and handles by name."""

from __future__ import annotations

from typing import Any

import pytest

from comfyroute.conversion.nodetool import convert_graph
from comfyroute.conversion.object_info import bundled_object_info
from comfyroute.conversion.problems import GraphError
from comfyroute.protocol.workflow_commands import Graph

OBJECT_INFO = bundled_object_info()


def graph(nodes: list[dict[str, Any]], edges: list[dict[str, Any]]) -> Graph:
    return Graph.model_validate({"nodes": nodes, "edges": edges})


def edge(source: str, source_handle: str, target: str, target_handle: str) -> dict[str, Any]:
    return {"source": source, "sourceHandle": source_handle, "target": target, "targetHandle": target_handle}


def test_imported_widgets_become_inputs_and_editor_properties_do_not() -> None:
    """An imported EmptyImage used to reach ComfyUI with only {"Node name for S&R": ...}."""
    imported = {
        "id": "1",
        "type": "comfy.EmptyImage",
        "data": {
            "Node name for S&R": "EmptyImage",
            "_comfy_widgets": [320, 240, 2, 255],
            "_comfy_metadata": {
                "original_type": "EmptyImage",
                "mode": 0,
                "inputs": [],
                "outputs": [{"name": "IMAGE", "type": "IMAGE"}],
            },
        },
    }
    save = {"id": "2", "type": "comfy.SaveImage", "data": {"_comfy_widgets": ["imported"]}}
    prompt = convert_graph(graph([imported, save], [edge("1", "output_0", "2", "images")]), OBJECT_INFO)
    assert prompt["1"]["inputs"] == {"width": 320, "height": 240, "batch_size": 2, "color": 255}
    assert prompt["2"]["inputs"] == {"filename_prefix": "imported", "images": ["1", 0]}
    # Without object_info nothing can map the list: only what the node says by name is sent.
    assert convert_graph(graph([imported, save], [edge("1", "output_0", "2", "images")]))["1"]["inputs"] == {
        "Node name for S&R": "EmptyImage"
    }


def test_seed_control_values_in_imported_widgets_are_skipped() -> None:
    sampler = {
        "id": "3",
        "type": "comfy.KSampler",
        "data": {"_comfy_widgets": [7, "fixed", 12, 6.5, "euler", "karras", 0.8]},
    }
    inputs = convert_graph(graph([sampler], []), OBJECT_INFO)["3"]["inputs"]
    assert inputs == {
        "seed": 7,
        "steps": 12,
        "cfg": 6.5,
        "sampler_name": "euler",
        "scheduler": "karras",
        "denoise": 0.8,
    }


def test_values_set_by_name_win_over_imported_widgets() -> None:
    node = {"id": "1", "type": "comfy.EmptyImage", "data": {"_comfy_widgets": [320, 240, 2, 255], "width": 64}}
    assert convert_graph(graph([node], []), OBJECT_INFO)["1"]["inputs"]["width"] == 64


def test_output_handles_by_name_without_comfy_metadata() -> None:
    """Built in nodetool's editor: CLIP and VAE used to both become ["ck", 0]."""
    nodes = [
        {"id": "ck", "type": "comfy.CheckpointLoaderSimple", "data": {"ckpt_name": "m.safetensors"}},
        {"id": "t", "type": "comfy.CLIPTextEncode", "data": {"text": "a cat"}},
        {"id": "d", "type": "comfy.VAEDecode", "data": {}},
        {"id": "k", "type": "comfy.KSampler", "data": {"seed": 1}},
    ]
    edges = [
        edge("ck", "CLIP", "t", "clip"),
        edge("ck", "VAE", "d", "vae"),
        edge("ck", "model", "k", "model"),
        edge("k", "LATENT", "d", "samples"),
    ]
    prompt = convert_graph(graph(nodes, edges), OBJECT_INFO)
    assert prompt["t"]["inputs"]["clip"] == ["ck", 1]
    assert prompt["d"]["inputs"] == {"vae": ["ck", 2], "samples": ["k", 0]}
    assert prompt["k"]["inputs"]["model"] == ["ck", 0]


def test_an_unknown_output_handle_of_a_multi_output_class_is_a_problem() -> None:
    nodes = [
        {"id": "ck", "type": "comfy.CheckpointLoaderSimple", "data": {}},
        {"id": "t", "type": "comfy.CLIPTextEncode", "data": {}},
    ]
    with pytest.raises(GraphError, match="source handle 'TEXT' is not an output"):
        convert_graph(graph(nodes, [edge("ck", "TEXT", "t", "clip")]), OBJECT_INFO)


def test_input_slots_by_the_class_inputs_without_comfy_metadata() -> None:
    """input_N counts the editor's inputs: sockets first, then widget inputs."""
    nodes = [
        {"id": "1", "type": "comfy.EmptyImage", "data": {}},
        {"id": "2", "type": "comfy.ImageBlend", "data": {}},
        {"id": "3", "type": "comfy.PrimitiveInt", "data": {"value": 5}},
        {"id": "4", "type": "comfy.EmptyImage", "data": {}},
    ]
    edges = [
        edge("1", "output_0", "2", "input_0"),
        edge("1", "output_0", "2", "input_1"),
        edge("3", "output_0", "4", "input_0"),
    ]
    prompt = convert_graph(graph(nodes, edges), OBJECT_INFO)
    assert prompt["2"]["inputs"]["image1"] == ["1", 0]
    assert prompt["2"]["inputs"]["image2"] == ["1", 0]
    assert prompt["4"]["inputs"]["width"] == ["3", 0]
