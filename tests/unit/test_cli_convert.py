"""The ``comfyroute convert`` and ``comfyroute schema`` commands."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import responses

from comfyroute.conversion.object_info import bundled_object_info
from comfyroute.protocol import protocol_json_schema
from comfyroute_tools.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
WORKFLOWS = Path(__file__).resolve().parents[1] / "fixtures" / "graph" / "workflows"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def reference(name: str) -> dict[str, Any]:
    return json.loads((WORKFLOWS / f"{name}.json").read_text())


def write(tmp_path: Path, name: str, obj: Any) -> str:
    path = tmp_path / name
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return str(path)


def test_convert_one_file_prints_its_prompt(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "convert", str(EXAMPLES / "empty_invert_save.json"))
    assert code == 0
    assert err == ""
    assert json.loads(out) == reference("empty_invert_save")


def test_convert_several_files_prints_prompts_by_file(capsys: pytest.CaptureFixture[str]) -> None:
    first, second = str(EXAMPLES / "empty_save.json"), str(EXAMPLES / "slow_blur_chain_for_interrupt.json")
    code, out, _ = run(capsys, "convert", first, second)
    assert code == 0
    assert json.loads(out) == {first: reference("empty_save"), second: reference("slow_blur_chain_for_interrupt")}


def test_convert_accepts_an_api_prompt(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "convert", str(WORKFLOWS / "empty_preview.json"))
    assert code == 0
    assert json.loads(out) == reference("empty_preview")


def test_convert_compact_prints_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "convert", "--compact", str(EXAMPLES / "empty_save.json"))
    assert code == 0
    assert out.count("\n") == 1
    assert json.loads(out) == reference("empty_save")


def test_convert_reads_stdin(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO((EXAMPLES / "empty_latent_save_latent.json").read_text()))
    code, out, _ = run(capsys, "convert", "-")
    assert code == 0
    assert json.loads(out) == reference("empty_latent_save_latent")


def test_bad_graph_prints_every_problem_and_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = write(
        tmp_path,
        "bad.json",
        {
            "nodes": [
                {"id": "1", "type": "comfy.EmptyImage"},
                {"id": "2", "type": "nodetool.image.Resize"},
                {"id": "3", "type": "comfy.ImageInvert"},
                {"id": "3", "type": "comfy.SaveImage"},
            ],
            "edges": [{"id": "e1", "source": "9", "sourceHandle": "IMAGE", "target": "3", "targetHandle": "image"}],
        },
    )
    code, out, err = run(capsys, "convert", bad)
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 3
    assert all(line.startswith(f"{bad}: ") for line in lines)
    assert "node 2 (nodetool.image.Resize)" in lines[0]
    assert "duplicate node id '3'" in lines[1]
    assert "edge e1 (9:IMAGE -> 3:image): source node '9' does not exist" in lines[2]


def test_one_bad_file_among_several_prints_nothing_on_stdout(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = write(tmp_path, "bad.json", {"1": {"class_type": "SaveImage", "inputs": {"images": ["7", 0]}}})
    code, out, err = run(capsys, "convert", str(EXAMPLES / "empty_save.json"), bad)
    assert code == 2
    assert out == ""
    assert err == f"{bad}: node 1 input 'images': links to node '7', which is not in the prompt\n"


def test_missing_file_is_a_clear_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.json")
    code, out, err = run(capsys, "convert", missing)
    assert code == 2
    assert out == ""
    assert err == f"comfyroute convert: cannot read {missing}: No such file or directory\n"


def test_directory_is_a_clear_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "convert", str(tmp_path))
    assert code == 2
    assert err.startswith(f"comfyroute convert: cannot read {tmp_path}: ")


def test_not_json_is_a_clear_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = write(tmp_path, "graph.json", "{nodes: [}")
    code, out, err = run(capsys, "convert", path)
    assert code == 2
    assert out == ""
    assert err.startswith(f"comfyroute convert: {path} is not JSON: ")
    assert "line 1 column 2" in err


def test_binary_file_is_a_clear_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "image.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    code, _, err = run(capsys, "convert", str(path))
    assert code == 2
    assert err.startswith(f"comfyroute convert: cannot read {path}: ")


def test_convert_needs_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["convert"])
    assert info.value.code == 2
    assert "FILE" in capsys.readouterr().err


def test_schema_prints_the_protocol_schema(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "schema")
    assert code == 0
    assert json.loads(out) == json.loads(json.dumps(protocol_json_schema()))


def test_installed_command_runs_convert() -> None:
    """The real entry point, in a fresh interpreter, as a user runs it."""
    result = subprocess.run(
        [sys.executable, "-m", "comfyroute_tools.cli", "convert", str(EXAMPLES / "text_to_image.json")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    prompt = json.loads(result.stdout)
    assert prompt["3"]["class_type"] == "KSampler"
    assert prompt["3"]["inputs"]["model"] == ["4", 0]


# --------------------------------------------------------------------------- editor workflows

EDITOR = Path(__file__).resolve().parents[1] / "fixtures" / "editor" / "recorded"


def recorded(name: str) -> dict[str, Any]:
    return json.loads((EDITOR / f"{name}.json").read_text())


def without_meta(prompt: dict[str, Any]) -> dict[str, Any]:
    return {node_id: {k: v for k, v in entry.items() if k != "_meta"} for node_id, entry in prompt.items()}


def test_convert_an_editor_workflow_with_the_bundled_object_info(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    fixture = recorded("reroute_chain")
    code, out, err = run(capsys, "convert", write(tmp_path, "wf.json", fixture["workflows"]["source"]))
    assert (code, err) == (0, "")
    assert without_meta(json.loads(out)) == without_meta(fixture["prompt"])


def test_convert_with_an_object_info_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    fixture = recorded("bypass")
    info = {k: v for k, v in bundled_object_info().raw.items() if k != "ImageBlend"}  # a ComfyUI without it
    schemas = write(tmp_path, "object_info.json", info)
    path = write(tmp_path, "wf.json", fixture["workflows"]["save"])
    code, out, err = run(capsys, "convert", "--object-info", schemas, path)
    assert code == 2
    assert out == ""
    assert "node 11 (ImageBlend): unknown node class 'ImageBlend'" in err


@responses.activate
def test_convert_with_object_info_from_a_comfyui(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    responses.get("http://comfy.test:8188/object_info", json=dict(bundled_object_info().raw))
    fixture = recorded("primitive_widgets")
    path = write(tmp_path, "wf.json", fixture["workflows"]["export"])
    code, out, _ = run(capsys, "convert", "--url", "http://comfy.test:8188/", "--compact", path)
    assert code == 0
    assert without_meta(json.loads(out)) == without_meta(fixture["prompt"])


@responses.activate
def test_an_unreachable_comfyui_is_a_clear_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    responses.get("http://comfy.test/object_info", status=502)
    code, out, err = run(capsys, "convert", "--url", "http://comfy.test", write(tmp_path, "wf.json", {}))
    assert (code, out) == (2, "")
    assert err.startswith("comfyroute convert: cannot fetch http://comfy.test/object_info: 502")


def test_a_bad_editor_workflow_prints_every_problem(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.json", recorded("bad_too_few_widgets")["workflows"]["source"])
    code, out, err = run(capsys, "convert", bad)
    assert (code, out) == (2, "")
    lines = err.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{bad}: node 1 (EmptyImage): too few widget values")
    assert lines[1].startswith(f"{bad}: node 2 (ImageBlur): too few widget values")


def test_object_info_and_url_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["convert", "--object-info", "a.json", "--url", "http://x", "wf.json"])
    assert info.value.code == 2
    assert "not allowed with" in capsys.readouterr().err
