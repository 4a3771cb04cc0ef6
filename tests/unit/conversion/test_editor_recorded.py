"""Editor workflows convert exactly as ComfyUI's own frontend converted them (recorded fixtures).

``tests/fixtures/editor/recorded/`` holds what the frontend (1.27.10, on ComfyUI 0.3.64) made of
each case: the workflow as written and as the frontend saves, exports and re-serializes it
(schema 1), and the prompt its ``graphToPrompt`` built. Every form must give that prompt here,
with the object_info the fixtures were recorded with. ``record.py`` beside them re-records.

What is compared: every node id, class and input. ``_meta.title`` is the saved title or, for
an untitled node, the class's display name: the frontend shows its own English names for some
classes ("Image Blend" for ImageBlend), which object_info does not carry, so there the
frontend's class title (recorded in ``widget_layouts.json.gz``) stands for ours.
"""

from __future__ import annotations

import gzip
import json
import random
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from comfyroute.conversion.editor import convert_editor_workflow
from comfyroute.conversion.object_info import ObjectInfo, bundled_object_info
from comfyroute.conversion.problems import GraphError
from comfyroute.conversion.widgets import UNDEFINED, is_media_upload, layout, upload_combo_value

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "editor"
RECORDED = sorted((FIXTURES / "recorded").glob("*.json*"))
FORMS = ("source", "save", "export", "schema1")
FRONTEND_VERSION = "1.27.10"
COMFYUI_VERSION = "0.3.64"


def _read(path: Path) -> Any:
    data = path.read_bytes()
    return json.loads(gzip.decompress(data) if path.suffix == ".gz" else data)


@cache
def fixture(name: str) -> dict[str, Any]:
    path = next(p for p in RECORDED if p.name.split(".")[0] == name)
    return _read(path)


@cache
def object_info() -> ObjectInfo:
    return ObjectInfo.from_bytes((FIXTURES / "object_info.json.gz").read_bytes())


@cache
def frontend_classes() -> dict[str, Any]:
    return _read(FIXTURES / "widget_layouts.json.gz")["classes"]


def _names() -> list[str]:
    return [p.name.split(".")[0] for p in RECORDED]


def _cases(*, bad: bool) -> list[tuple[str, str]]:
    out = []
    for name in _names():
        fx = fixture(name)
        failing = set(fx.get("expect", {}).get("forms", ()))
        for form in FORMS:
            if fx["workflows"].get(form) is not None and (form in failing) is bad:
                out.append((name, form))
    return out


def assert_same_prompt(ours: dict[str, Any], theirs: dict[str, Any], skip: dict[str, set[str]] | None = None) -> None:
    skip = skip or {}
    assert sorted(ours) == sorted(theirs)
    classes = frontend_classes()
    for node_id, entry in theirs.items():
        mine = ours[node_id]
        assert mine["class_type"] == entry["class_type"], node_id
        left = {k: v for k, v in mine["inputs"].items() if k not in skip.get(node_id, set())}
        right = {k: v for k, v in entry["inputs"].items() if k not in skip.get(node_id, set())}
        assert left == right, f"node {node_id} ({entry['class_type']})"
        title, class_type = entry["_meta"]["title"], entry["class_type"]
        if title != mine["_meta"]["title"]:
            assert title == classes[class_type]["title"], f"node {node_id}: frontend title {title!r}"
            assert mine["_meta"]["title"] == object_info()[class_type].display_name


def test_fixtures_say_what_made_them() -> None:
    assert len(RECORDED) >= 25
    for name in _names():
        fx = fixture(name)
        assert fx["frontend_version"] == FRONTEND_VERSION, name
        assert fx["comfyui_version"] == COMFYUI_VERSION, name
        assert fx["object_info"] == "object_info.json.gz", name


def test_the_bundled_snapshot_is_the_one_the_fixtures_were_recorded_with() -> None:
    bundled = bundled_object_info()
    assert bundled.comfyui_version == COMFYUI_VERSION
    assert dict(bundled.raw) == dict(object_info().raw)
    assert len(bundled) == 478


@pytest.mark.parametrize(("name", "form"), _cases(bad=False))
def test_recorded_workflow_converts_as_the_frontend_did(name: str, form: str) -> None:
    fx = fixture(name)
    assert fx["frontend_error"] is None
    ours = convert_editor_workflow(fx["workflows"][form], object_info(), rng=random.Random(0))
    # A documented difference is in the file as written; the frontend saves it back its own way.
    differs: dict[str, dict[str, Any]] = fx.get("expect", {}).get("differs", {}) if form == "source" else {}
    random_inputs: dict[str, dict[str, list[Any]]] = fx.get("random_inputs", {})
    skip = {node: set(inputs) for node, inputs in {**random_inputs, **differs}.items()}
    assert_same_prompt(ours, fx["prompt"], skip)
    for node_id, inputs in differs.items():
        for input_name, value in inputs.items():
            assert ours[node_id]["inputs"][input_name] == value
            assert fx["prompt"][node_id]["inputs"][input_name] != value  # still a documented difference


@pytest.mark.parametrize("name", [n for n in _names() if fixture(n).get("random_inputs")])
def test_random_choices_are_the_frontends(name: str) -> None:
    """{a|b} choices: over many runs, ours take exactly the values the frontend took."""
    fx = fixture(name)
    seen: dict[tuple[str, str], set[str]] = {}
    for seed in range(300):
        prompt = convert_editor_workflow(fx["workflows"]["source"], object_info(), rng=random.Random(seed))
        for node_id, inputs in fx["random_inputs"].items():
            for input_name in inputs:
                seen.setdefault((node_id, input_name), set()).add(prompt[node_id]["inputs"][input_name])
    for node_id, inputs in fx["random_inputs"].items():
        for input_name, values in inputs.items():
            assert seen[(node_id, input_name)] == set(values)


@pytest.mark.parametrize(("name", "form"), _cases(bad=True))
def test_bad_workflow_is_refused_with_every_problem(name: str, form: str) -> None:
    fx = fixture(name)
    with pytest.raises(GraphError) as info:
        convert_editor_workflow(fx["workflows"][form], object_info())
    expected = fx["expect"]["problems"]
    details = info.value.details
    assert len(details) == len(expected), info.value.problems
    for want, got in zip(expected, details, strict=True):
        assert (got.node_id, got.class_type, got.input) == (want["node_id"], want["class_type"], want["input"])
        assert want["message"] in got.message


def test_what_the_frontend_did_with_the_bad_workflows() -> None:
    """The frontend sends an unknown class without class_type, and fails on a dangling link."""
    unknown = fixture("bad_unknown_class")["prompt"]
    assert "class_type" not in unknown["2"]
    assert "InvalidLinkError" in fixture("bad_missing_node")["frontend_error"]
    too_few = fixture("bad_too_few_widgets")["prompt"]
    assert too_few["1"]["inputs"] == {"width": 64, "height": 512, "batch_size": 1, "color": 0}


@pytest.mark.parametrize("class_type", sorted(frontend_classes()))
def test_widget_layout_is_the_frontends(class_type: str) -> None:
    """Every class's widgets (names, order, saved, sent, starting value), inputs and outputs."""
    frontend = frontend_classes()[class_type]
    if class_type not in object_info():
        assert frontend["virtual"], class_type  # the frontend's own nodes: Reroute, PrimitiveNode, notes
        return
    schema = object_info()[class_type]
    lay = layout(schema)
    ours = []
    for widget in lay.widgets:
        value = widget.default
        if widget.spec is not None and widget.spec.type == "COMBO" and is_media_upload(widget.spec.options):
            value = upload_combo_value(widget.spec, value)
        ours.append(
            {
                "name": widget.name,
                "saved": widget.saved,
                "sent": widget.kind.value != "ui" and widget.sent,
                "value": {"undefined": True} if value is UNDEFINED else value,
            }
        )
    theirs = [
        {
            "name": w["name"],
            "saved": w["saved"],
            "sent": w["sent"] and w["name"] != "waiting for camera...",
            "value": w["value"],
        }
        for w in frontend["widgets"]
    ]
    assert ours == theirs
    assert list(lay.inputs) == [(i["name"], i["type"], i["widget"] is not None) for i in frontend["inputs"]]
    assert [(o.name, o.type) for o in schema.outputs] == [(o["name"], o["type"]) for o in frontend["outputs"]]
    assert [w["dynamic_prompts"] for w in frontend["widgets"]] == [
        bool(w.spec is not None and w.spec.options.get("dynamicPrompts") is True) for w in lay.widgets
    ]
