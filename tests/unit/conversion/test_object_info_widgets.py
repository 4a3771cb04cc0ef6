"""ObjectInfo parsing and loading; the frontend's widget rules (layouts, dynamic prompts, dates)."""

from __future__ import annotations

import gzip
import json
import random
from datetime import datetime
from pathlib import Path

import pytest

from comfyroute.conversion.object_info import ObjectInfo, bundled_object_info, parse_schema, snapshot
from comfyroute.conversion.widgets import (
    UNDEFINED,
    WidgetKind,
    apply_text_replacements,
    dynamic_prompt_choices,
    format_date,
    layout,
    migrate_widgets_values,
    process_dynamic_prompt,
    strip_comments,
)

KSAMPLER = bundled_object_info()["KSampler"]


def test_inputs_come_in_input_order_then_the_rest() -> None:
    schema = parse_schema(
        "X",
        {
            "input": {
                "required": {"b": ["INT", {}], "a": ["IMAGE"], "z": ["FLOAT"]},
                "optional": {"o": ["STRING", {}]},
            },
            "input_order": {"required": ["a", "b"], "optional": ["o"]},
            "output": ["IMAGE", ["x", "y"]],
            "output_name": ["out"],
            "display_name": "",
        },
    )
    assert [s.name for s in schema.inputs] == ["a", "b", "o", "z"]
    assert [(o.name, o.type) for o in schema.outputs] == [("out", "IMAGE"), ("output_1", "COMBO")]
    assert schema.display_name == "X"


def test_combos_in_both_forms_and_force_input() -> None:
    schema = parse_schema(
        "X",
        {
            "input": {
                "required": {
                    "old": [["a", "b"], {}],
                    "new": ["COMBO", {"options": ["c"]}],
                    "forced": ["INT", {"forceInput": True}],
                },
                "optional": {"legacy": ["FLOAT", {"defaultInput": True}]},
            }
        },
    )
    old, new, forced, legacy = schema.inputs
    assert (old.type, old.choices, new.type, new.choices) == ("COMBO", ("a", "b"), "COMBO", ("c",))
    assert forced.force_input
    assert legacy.force_input
    assert [w.name for w in layout(schema).widgets] == ["old", "new"]


def test_output_slot_by_name_case_or_unique_type() -> None:
    loader = bundled_object_info()["CheckpointLoaderSimple"]
    assert [loader.output_slot(h) for h in ("MODEL", "clip", "VAE", "nope")] == [0, 1, 2, None]
    split = bundled_object_info()["SplitImageWithAlpha"]
    assert split.output_slot("MASK") == 1


def test_object_info_is_a_lazy_mapping() -> None:
    info = ObjectInfo({"A": {"input": {}, "output": []}, "B": {}}, comfyui_version="1.2.3")
    assert len(info) == 2
    assert "A" in info
    assert "C" not in info
    assert info["B"].inputs == ()
    assert info["A"] is info["A"]  # parsed once
    with pytest.raises(KeyError):
        info["C"]
    assert repr(info) == "ObjectInfo(2 classes, ComfyUI 1.2.3)"


def test_loading_plain_gzipped_and_snapshot_files(tmp_path: Path) -> None:
    raw = {"EmptyImage": bundled_object_info().raw["EmptyImage"]}
    plain, zipped, snap = tmp_path / "a.json", tmp_path / "b.json.gz", tmp_path / "c.json"
    plain.write_text(json.dumps(raw))
    zipped.write_bytes(gzip.compress(json.dumps(raw).encode()))
    snap.write_text(json.dumps(snapshot(raw, comfyui_version="0.3.64", frontend_version="1.27.10")))
    for path in (plain, zipped, snap):
        info = ObjectInfo.load(path)
        assert list(info) == ["EmptyImage"]
        assert info.source == str(path)
    assert ObjectInfo.load(snap).comfyui_version == "0.3.64"
    assert ObjectInfo.load(plain).comfyui_version is None
    with pytest.raises(ValueError, match="JSON object"):
        ObjectInfo.from_bytes(b"[1, 2]")


def test_the_bundled_snapshot_is_small_enough_for_a_layer() -> None:
    path = Path(__file__).resolve().parents[3] / "layers/comfyroute/comfyroute/conversion/data/object_info_core.json.gz"
    assert path.stat().st_size < 200_000
    assert bundled_object_info().comfyui_version == "0.3.64"


def test_seed_controls_and_upload_buttons_take_slots_but_are_not_sent() -> None:
    kinds = [(w.name, w.kind) for w in layout(KSAMPLER).widgets][:3]
    assert kinds == [
        ("seed", WidgetKind.VALUE),
        ("control_after_generate", WidgetKind.CONTROL),
        ("steps", WidgetKind.VALUE),
    ]
    load = layout(bundled_object_info()["LoadImageMask"])
    assert [(w.name, w.sent) for w in load.widgets] == [("image", True), ("channel", True), ("upload", False)]
    noise_float = parse_schema("X", {"input": {"required": {"seed": ["FLOAT", {}], "noise_seed": ["INT", {}]}}})
    assert [w.name for w in layout(noise_float).widgets] == ["seed", "noise_seed", "control_after_generate"]
    no_control = parse_schema("X", {"input": {"required": {"seed": ["INT", {"control_after_generate": False}]}}})
    assert [w.name for w in layout(no_control).widgets] == ["seed"]


def test_combo_default_is_the_first_choice_unless_a_truthy_default() -> None:
    schema = parse_schema(
        "X",
        {
            "input": {
                "required": {
                    "a": [["x", "y"], {"default": "y"}],
                    "b": [["x", "y"], {"default": ""}],
                    "c": [[], {}],
                }
            }
        },
    )
    assert [w.default for w in layout(schema).widgets] == ["y", "x", UNDEFINED]


def test_old_values_for_force_input_inputs_are_dropped_only_on_an_exact_count() -> None:
    schema = parse_schema(
        "X",
        {
            "input": {
                "required": {
                    "a": ["INT", {}],
                    "b": ["INT", {"forceInput": True}],
                    "c": ["STRING", {}],
                }
            }
        },
    )
    lay = layout(schema)
    assert migrate_widgets_values(schema, lay, [1, 2, "s"]) == [1, "s"]
    assert migrate_widgets_values(schema, lay, [1, "s"]) == [1, "s"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a // b\nc", "a \nc"),
        ("a /* b\nc */ d", "a  d"),
        ("http://x.org", "http:"),
        ("a\r// b", "a\r"),
    ],
)
def test_comments_are_removed_as_javascript_would(text: str, expected: str) -> None:
    assert strip_comments(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{one}", "one"),
        ("\\{x\\}", "{x}"),
        ("a \\| b", "a | b"),
        ("{\\{|\\{}", "{"),
        ("{a|b", "a"),  # unterminated block: the choices run to the end
        ("x\\", "x\\undefined"),  # JavaScript reads past the end of the string
    ],
)
def test_dynamic_prompt_edge_cases(text: str, expected: str) -> None:
    assert process_dynamic_prompt(text, random.Random(0)) in ({expected} | (dynamic_prompt_choices(text) or set()))
    assert expected in (dynamic_prompt_choices(text) or set())


def test_dynamic_prompt_choices_enumerates_nested_blocks() -> None:
    assert dynamic_prompt_choices("{a|{b|c}}-{1|2}") == {"a-1", "a-2", "b-1", "b-2", "c-1", "c-2"}
    assert dynamic_prompt_choices("{a|b}{a|b}{a|b}", limit=5) is None


def test_format_date_tokens() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5)
    assert format_date("yyyy yy yyy MM M dd d hh h mm m ss s y", now) == "2026 26 yyy 01 1 02 2 03 3 04 4 05 5 y"


def test_text_replacements_clean_values_for_file_names() -> None:
    values = {("Loader", "ckpt_name"): "sd/v1:5*.safetensors", ("N", "flag"): True}

    def lookup(node: str, widget: str) -> object:
        return values.get((node, widget), UNDEFINED)

    assert apply_text_replacements("%Loader.ckpt_name%_%N.flag%_%N.x%", lookup) == "sd_v1_5_.safetensors_true_%N.x%"
