"""Editor workflow conversion: detection, problems and rules the recorded fixtures do not reach."""

from __future__ import annotations

import copy
import random
from datetime import datetime
from typing import Any

import pytest

from comfyroute.conversion.editor import convert_editor_workflow
from comfyroute.conversion.nodetool import load_workflow
from comfyroute.conversion.object_info import bundled_object_info
from comfyroute.conversion.problems import ConversionProblem, GraphError
from comfyroute.conversion.workflow import is_editor_workflow

OBJECT_INFO = bundled_object_info()


def node(
    node_id: int,
    kind: str,
    widgets: list[Any] | None = None,
    inputs: list[dict[str, Any]] | None = None,
    outputs: list[dict[str, Any]] | None = None,
    mode: int = 0,
    **extra: Any,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": node_id,
        "type": kind,
        "mode": mode,
        "inputs": inputs or [],
        "outputs": outputs or [],
        "properties": {},
        **extra,
    }
    if widgets is not None:
        out["widgets_values"] = widgets
    return out


def slot(name: str, kind: str, link: int | None = None, widget: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "type": kind, "link": link}
    if widget:
        out["widget"] = {"name": widget}
    return out


def workflow(nodes: list[dict[str, Any]], links: list[list[Any]], **extra: Any) -> dict[str, Any]:
    return {"last_node_id": 99, "last_link_id": 99, "nodes": nodes, "links": links, "version": 0.4, **extra}


def empty_image(node_id: int = 1, width: int = 64) -> dict[str, Any]:
    return node(node_id, "EmptyImage", [width, 64, 1, 0], outputs=[{"name": "IMAGE", "type": "IMAGE", "links": []}])


def preview(node_id: int, link: int | None) -> dict[str, Any]:
    return node(node_id, "PreviewImage", inputs=[slot("images", "IMAGE", link)])


def convert(wf: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    return convert_editor_workflow(wf, OBJECT_INFO, **kwargs)


def problems(wf: dict[str, Any]) -> list[ConversionProblem]:
    with pytest.raises(GraphError) as info:
        convert(wf)
    return info.value.details


# --------------------------------------------------------------------------- detection


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (workflow([empty_image()], []), True),
        ({"version": 1, "state": {}, "nodes": [{"id": 1, "type": "EmptyImage"}], "links": []}, True),
        ({"nodes": [{"id": 1, "type": "EmptyImage", "pos": [0, 0], "widgets_values": [1]}]}, True),
        ({"nodes": [{"id": "1", "type": "comfy.EmptyImage"}], "edges": []}, False),  # nodetool graph
        ({"1": {"class_type": "EmptyImage", "inputs": {}}}, False),  # API prompt
        ({"nodes": [{"id": 1}], "links": []}, False),  # nodes without types
        ({"nodes": "x", "links": []}, False),
        ([1, 2], False),
    ],
)
def test_is_editor_workflow(obj: Any, expected: bool) -> None:
    assert is_editor_workflow(obj) is expected


def test_load_workflow_converts_an_editor_workflow_given_object_info() -> None:
    wf = workflow([empty_image(), preview(2, 1)], [[1, 1, 0, 2, 0, "IMAGE"]])
    assert load_workflow(wf, OBJECT_INFO)["2"]["inputs"] == {"images": ["1", 0]}
    with pytest.raises(GraphError, match="needs the node schemas"):
        load_workflow(wf)


# --------------------------------------------------------------------------- problems


def test_problems_are_structured_and_readable() -> None:
    wf = workflow(
        [
            empty_image(),
            node(2, "NoSuchNode", [1]),
            node(3, "ImageInvert", inputs=[slot("image", "IMAGE", 7)]),
            node(4, "ImageInvert", inputs=[slot("image", "IMAGE", 8)]),
        ],
        [[8, 42, 0, 4, 0, "IMAGE"]],
    )
    details = problems(wf)
    assert [(p.node_id, p.class_type, p.input) for p in details] == [
        ("2", "NoSuchNode", None),
        ("3", "ImageInvert", "image"),
        ("4", "ImageInvert", "image"),
    ]
    assert "unknown node class 'NoSuchNode'" in details[0].message
    assert details[1].message == "is linked by link 7, which is not in the workflow's links"
    assert details[2].text() == "node 4 (ImageInvert) input 'image': links to node 42, which is not in the workflow"


def test_graph_error_details_json_is_the_wire_shape() -> None:
    err = GraphError([ConversionProblem(node_id="5", class_type="KSampler", input="seed", message="bad"), "plain"])
    assert err.details_json() == [
        {"node_id": "5", "class_type": "KSampler", "input": "seed", "message": "bad"},
        {"node_id": None, "class_type": None, "input": None, "message": "plain"},
    ]
    assert str(err) == "node 5 (KSampler) input 'seed': bad; plain"
    assert err.problems == ["node 5 (KSampler) input 'seed': bad", "plain"]


def test_muted_nodes_of_unknown_classes_are_fine_but_bypassed_ones_pass_through() -> None:
    wf = workflow(
        [
            empty_image(),
            node(
                2,
                "NoSuchNode",
                inputs=[slot("image", "IMAGE", 1)],
                outputs=[{"name": "IMAGE", "type": "IMAGE"}],
                mode=4,
            ),
            node(3, "NoSuchNode", mode=2),
            preview(4, 2),
        ],
        [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 4, 0, "IMAGE"]],
    )
    assert convert(wf)["4"]["inputs"] == {"images": ["1", 0]}


def test_a_cycle_of_reroutes_is_a_problem_not_a_hang() -> None:
    out = [{"name": "", "type": "*"}]
    wf = workflow(
        [
            node(2, "Reroute", inputs=[slot("", "*", 2)], outputs=out),
            node(3, "Reroute", inputs=[slot("", "*", 1)], outputs=out),
            preview(4, 3),
        ],
        [[1, 2, 0, 3, 0, "*"], [2, 3, 0, 2, 0, "*"], [3, 3, 0, 4, 0, "*"]],
    )
    assert any("cycle" in p.message for p in problems(wf))


def test_a_subgraph_inside_itself_is_a_problem() -> None:
    sub_id = "0b1e0000-0000-4000-8000-000000000001"
    definition = {
        "id": sub_id,
        "name": "loop",
        "inputs": [],
        "outputs": [],
        "links": [],
        "nodes": [{"id": 1, "type": sub_id, "mode": 0}],
    }
    wf = workflow(
        [node(5, sub_id), empty_image(6), preview(7, 1)],
        [[1, 6, 0, 7, 0, "IMAGE"]],
        definitions={"subgraphs": [definition]},
    )
    assert [p.message for p in problems(wf)] == ["subgraph 'loop' contains itself"]


def test_legacy_group_nodes_are_refused_with_a_way_out() -> None:
    wf = workflow([node(1, "workflow>Upscale"), empty_image(2)], [], extra={"groupNodes": {"Upscale": {}}})
    [problem] = problems(wf)
    assert problem.node_id == "1"
    assert "convert the group node to a subgraph" in problem.message


def test_nodes_only_a_browser_can_fill_are_refused() -> None:
    wf = workflow([node(1, "WebcamCapture", ["", 640, 480, True, "capture"])], [])
    [problem] = problems(wf)
    assert (problem.node_id, problem.input) == ("1", "image")
    assert "browser" in problem.message


def test_too_few_widget_values_is_fine_when_only_optional_inputs_lack_them() -> None:
    # CLIPLoader's "device" came later, as an optional input: old workflows lack its value.
    old = workflow([node(1, "CLIPLoader", ["clip_l.safetensors", "stable_diffusion"])], [])
    assert convert(old)["1"]["inputs"] == {
        "clip_name": "clip_l.safetensors",
        "type": "stable_diffusion",
        "device": "default",
    }
    wf = workflow(
        [empty_image(), node(2, "ImageBlur", [3], inputs=[slot("image", "IMAGE", 1)])], [[1, 1, 0, 2, 0, "IMAGE"]]
    )
    [problem] = problems(wf)
    assert "no value for 'sigma'" in problem.message
    # A node saved with no values at all (generated workflows) takes the defaults, as the frontend.
    wf["nodes"][1].pop("widgets_values")
    assert convert(wf)["2"]["inputs"] == {"blur_radius": 1, "sigma": 1.0, "image": ["1", 0]}


def test_no_runnable_nodes_is_a_problem() -> None:
    wf = workflow([node(1, "Note", ["hi"]), node(2, "EmptyImage", [1, 1, 1, 0], mode=2)], [])
    assert problems(wf)[0].message.startswith("the workflow has no nodes to run")


# --------------------------------------------------------------------------- values


def test_dynamic_prompts_use_the_given_random_source() -> None:
    text_node = node(2, "CLIPTextEncode", ["{a|b|c|d|e|f|g|h}"], inputs=[slot("clip", "CLIP")])
    wf = workflow([text_node], [])
    picks = {convert(wf, rng=random.Random(seed))["2"]["inputs"]["text"] for seed in range(50)}
    assert picks == set("abcdefgh")
    assert convert(wf, rng=random.Random(7)) == convert(copy.deepcopy(wf), rng=random.Random(7))


def test_date_replacements_in_a_save_node_use_the_clock() -> None:
    prefix = "run_%date:yyyy-MM-dd_hh-mm-ss%_%date:d.M%_%date:yy.M.d%"
    wf = workflow(
        [empty_image(), node(2, "SaveImage", [prefix], inputs=[slot("images", "IMAGE", 1)])], [[1, 1, 0, 2, 0, "IMAGE"]]
    )
    prompt = convert(wf, now=lambda: datetime(2026, 3, 4, 5, 6, 7))
    # As in the frontend, a dot splits the text first: with one dot it is read as %Node.widget%
    # (no such node: kept), with two only the part before the first dot is a date.
    assert prompt["2"]["inputs"]["filename_prefix"] == "run_2026-03-04_05-06-07_%date:d.M%_26"


def test_a_primitive_with_text_replacements_on() -> None:
    wf = workflow(
        [
            empty_image(width=77),
            node(
                2,
                "PrimitiveNode",
                ["size_%EmptyImage.width%"],
                outputs=[{"name": "STRING", "type": "STRING", "links": [2]}],
                properties={"Run widget replace on values": True},
            ),
            node(
                3,
                "SaveImage",
                ["x"],
                inputs=[slot("images", "IMAGE", 1), slot("filename_prefix", "STRING", 2, "filename_prefix")],
            ),
        ],
        [[1, 1, 0, 3, 0, "IMAGE"], [2, 2, 0, 3, 1, "STRING"]],
    )
    assert convert(wf)["3"]["inputs"]["filename_prefix"] == "size_77"


def test_list_values_are_wrapped_so_they_do_not_read_as_links() -> None:
    wf = workflow([node(1, "EmptyImage", [[1, 2], 64, 1, 0])], [])
    assert convert(wf)["1"]["inputs"]["width"] == {"__value__": [1, 2]}


def test_node_ids_may_be_strings_and_links_objects() -> None:
    wf = {
        "version": 1,
        "nodes": [empty_image("a"), preview("b", 5)],  # type: ignore[arg-type]
        "links": [{"id": 5, "origin_id": "a", "origin_slot": 0, "target_id": "b", "target_slot": 0, "type": "IMAGE"}],
    }
    assert convert(wf)["b"]["inputs"] == {"images": ["a", 0]}


def test_old_class_names_are_renamed_as_the_frontend_does() -> None:
    wf = workflow([node(1, "T2IAdapterLoader", ["adapter.safetensors"])], [])
    assert convert(wf)["1"]["class_type"] == "ControlNetLoader"


def test_conversion_is_iterative_for_long_reroute_chains() -> None:
    count = 5_000  # far past Python's recursion limit
    nodes = [empty_image()]
    links = []
    for i in range(count):
        nodes.append(node(10 + i, "Reroute", inputs=[slot("", "*", i + 1)], outputs=[{"name": "", "type": "*"}]))
        links.append([i + 1, 1 if i == 0 else 9 + i, 0, 10 + i, 0, "*"])
    nodes.append(preview(9, count + 1))
    links.append([count + 1, 9 + count, 0, 9, 0, "*"])
    assert convert(workflow(nodes, links))["9"]["inputs"] == {"images": ["1", 0]}
