"""``comfyroute object-info push``: the snapshot a RunPod endpoint's jobs are converted with,
stored where the run_job handler reads it, from a file or from a ComfyUI's /object_info."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import responses
from moto.server import ThreadedMotoServer

from comfyroute.aws.object_info import S3SchemaStore
from comfyroute.conversion.object_info import ObjectInfo
from comfyroute.schemas import runpod_key
from comfyroute_tools.cli import main
from comfyroute_tools.cli.object_info import PushError, build_snapshot, fetch_from_comfyui

CLASSES = {"MyCustomNode": {"input": {"required": {"x": ["INT", {"default": 1}]}}, "output": ["IMAGE"]}}


MOTO_PORT = 31901  # this suite's loopback range


@pytest.fixture
def moto_s3() -> Iterator[object]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=MOTO_PORT, verbose=False)
    server.start()
    try:
        s3 = boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{MOTO_PORT}",
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        s3.create_bucket(Bucket="outs")
        yield s3
    finally:
        server.stop()


def test_push_a_file_to_the_dev_stack_stores_a_snapshot_the_server_reads(
    moto_s3: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "object_info.json"
    path.write_text(json.dumps(CLASSES))
    state = tmp_path / "dev.json"  # as `comfyroute dev` writes it
    state.write_text(json.dumps({"moto_endpoint": f"http://127.0.0.1:{MOTO_PORT}", "outputs_bucket": "outs",
                                 "dev_user": "u1", "region": "us-east-1"}))  # fmt: skip
    code = main(["object-info", "push", "--endpoint", "ep1", str(path), "--state-file", str(state)])
    assert code == 0
    assert "stored 1 node classes for RunPod endpoint ep1 of user u1" in capsys.readouterr().out
    stored = S3SchemaStore("outs", client=moto_s3).get(runpod_key("u1", "ep1"))
    assert stored is not None
    info = ObjectInfo.from_bytes(stored.data)
    assert list(info) == ["MyCustomNode"]
    assert info["MyCustomNode"].inputs[0].name == "x"


def test_push_without_a_dev_stack_or_user_says_what_to_give(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "object_info.json"
    path.write_text(json.dumps(CLASSES))
    assert main(["object-info", "push", "--endpoint", "ep1", str(path), "--state-file", str(tmp_path / "x")]) == 2
    assert "no running dev stack" in capsys.readouterr().err


def test_push_refuses_what_is_not_object_info_and_bad_endpoint_ids(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "prompt.json"
    path.write_text(json.dumps({"1": "not a class"}))
    assert main(["object-info", "push", "--endpoint", "ep1", str(path), "--user", "u"]) == 2
    assert "not ComfyUI's /object_info" in capsys.readouterr().err
    assert main(["object-info", "push", "--endpoint", "../x", str(path), "--user", "u"]) == 2
    assert "is not a RunPod endpoint id" in capsys.readouterr().err


def test_snapshot_keeps_the_version_and_reads_back_gzipped() -> None:
    data, info = build_snapshot(json.dumps(CLASSES).encode(), source="t", comfyui_version="0.3.64")
    assert gzip.decompress(data).startswith(b"{")
    back = ObjectInfo.from_bytes(data)
    assert back.comfyui_version == "0.3.64"
    assert set(back) == set(info) == {"MyCustomNode"}
    with pytest.raises(PushError):
        build_snapshot(b"{}", source="empty")


@responses.activate
def test_from_url_fetches_object_info_and_the_version() -> None:
    responses.get("http://127.0.0.1:31188/object_info", json=CLASSES)
    responses.get("http://127.0.0.1:31188/system_stats", json={"system": {"comfyui_version": "0.3.64"}})
    raw, version = fetch_from_comfyui("http://127.0.0.1:31188/")
    assert json.loads(raw) == CLASSES
    assert version == "0.3.64"
    responses.replace(responses.GET, "http://127.0.0.1:31188/object_info", status=404)
    with pytest.raises(PushError, match="cannot fetch"):
        fetch_from_comfyui("http://127.0.0.1:31188")
