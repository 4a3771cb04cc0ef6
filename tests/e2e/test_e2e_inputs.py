"""Issue 13 end to end: input files and workflows bigger than one frame, over a real WebSocket
against `comfyroute dev` (real handlers, moto behind the dev stack's S3 POST policy checks),
with the real Python client's ``upload()`` / ``run(files=...)``.

A LoadImage -> ImageInvert -> SaveImage job returns exactly the inverted pixels of the image
it was given, on the fake ComfyUI (per-job input subfolder) and on the fake RunPod worker
(``input.images``); the same with an inline file; a 1,000-node workflow goes by
``workflow_upload_id``; another user's upload, an unknown id and an oversized upload are refused
by name; two concurrent jobs sending the same ``name`` each get their own file back.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from fakes import FakeComfyUI, FakeRunPod
from support.png import decode_rgb, encode_rgb, gradient, inverted
from test_e2e import FOLLOW_TIMEOUT, connect, run

from comfyroute.protocol import MAX_MESSAGE_BYTES, JobStatus
from comfyroute.protocol.server_messages import JobOutput
from comfyroute.protocol.workflow_commands import RunJob, RunJobData
from comfyroute_tools.client import ComfyrouteClient, JobResult, RequestError, download
from comfyroute_tools.dev.stack import DevStack

pytestmark = pytest.mark.e2e

W, H = 16, 12
PROMPT: dict[str, Any] = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "input.png"}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "inverted"}},
}
UNKNOWN_ID = "00000001.AAAAAAAAAAAAAAAAAAAAAAAA"

TokenMaker = Callable[[FakeComfyUI], str]
EndpointMaker = Callable[[FakeRunPod], str]


def png(seed: int) -> tuple[bytes, bytes]:
    """A PNG and its RGB pixels."""
    rgb = gradient(W, H, seed)
    return encode_rgb(W, H, rgb), rgb


async def pixels(output: JobOutput, dest: Path) -> bytes:
    path = await download(output, dest)
    width, height, rgb = decode_rgb(path.read_bytes())
    assert (width, height) == (W, H)
    return rgb


def the_image(result: JobResult) -> JobOutput:
    assert result.status is JobStatus.COMPLETED, result.error
    (image,) = [o for o in result.outputs if o.value.content_type == "image/png"]
    return image


def upload_keys(stack: DevStack) -> list[str]:
    listed = stack.client("s3").list_objects_v2(Bucket=stack.env["OUTPUTS_BUCKET"], Prefix="uploads/")
    return [o["Key"] for o in listed.get("Contents", [])]


def object_of(stack: DevStack, key: str) -> dict[str, Any]:
    return stack.client("s3").get_object(Bucket=stack.env["OUTPUTS_BUCKET"], Key=key)  # type: ignore[no-any-return]


def runpod_settings(endpoint_id: str) -> dict[str, str]:
    return {"comfy_executor": "runpod", "runpod_endpoint_id": endpoint_id}


async def refusal(client: ComfyrouteClient, **run_job: Any) -> RequestError:
    with pytest.raises(RequestError) as caught:
        await client.run(timeout=FOLLOW_TIMEOUT, **run_job)
    return caught.value


# --------------------------------------------------------------------------- uploaded image


def test_uploaded_image_comes_back_exactly_inverted_from_comfyui(
    dev_stack: DevStack, comfy: FakeComfyUI, token: str, tmp_path: Path
) -> None:
    data, rgb = png(seed=1)

    async def scenario() -> tuple[str, JobResult, bytes, Any]:
        async with connect(dev_stack, token) as client:
            upload_id = await client.upload(data, filename="photo.png")
            result = await client.run(prompt=PROMPT, files=[("input.png", upload_id)], timeout=FOLLOW_TIMEOUT)
            view = await client.get_job(result.job_id)
            return upload_id, result, await pixels(the_image(result), tmp_path), view

    upload_id, result, out, view = run(scenario())
    assert out == inverted(rgb)
    # The file went into the job's own subfolder, named by its key (the client's id and a hash
    # of the user), and the prompt ComfyUI ran names it there.
    image = comfy.submitted[-1]["1"]["inputs"]["image"]
    key = image.removeprefix("comfyroute/").removesuffix("/input.png")
    assert key.startswith(f"{result.job_id}-")
    assert comfy.file_bytes("input.png", f"comfyroute/{key}", folder="input") == data
    # The job keeps its own copy under its key (deleted with its outputs) and get_job lists it.
    kept = object_of(dev_stack, f"jobs/{key}/inputs/input.png")
    assert (kept["Body"].read(), kept["ContentType"]) == (data, "image/png")
    assert f"uploads/{upload_id}" in upload_keys(dev_stack)
    assert [(i.name, i.size, i.content_type) for i in view.inputs] == [("input.png", len(data), "image/png")]


def test_uploaded_image_comes_back_exactly_inverted_from_runpod(
    dev_stack: DevStack, comfy: FakeComfyUI, token: str, runpod_endpoint: EndpointMaker, tmp_path: Path
) -> None:
    data, rgb = png(seed=2)
    with FakeRunPod(comfy=comfy, queue_seconds=0.05, run_seconds=0.1) as runpod:
        endpoint_id = runpod_endpoint(runpod)

        async def scenario() -> bytes:
            async with connect(dev_stack, token) as client:
                upload_id = await client.upload(data, filename="input.png")
                result = await client.run(
                    prompt=PROMPT,
                    files=[("input.png", upload_id)],
                    settings=runpod_settings(endpoint_id),
                    timeout=FOLLOW_TIMEOUT,
                )
                return await pixels(the_image(result), tmp_path)

        assert run(scenario()) == inverted(rgb)
        (submitted,) = runpod.runs
        # worker-comfyui's images[]: the prompt unchanged, the file under its name, in base64.
        assert submitted["input"]["workflow"] == PROMPT
        assert [i["name"] for i in submitted["input"]["images"]] == ["input.png"]


def test_inline_small_file_comes_back_exactly_inverted_without_an_upload(
    dev_stack: DevStack, comfy: FakeComfyUI, token: str, runpod_endpoint: EndpointMaker, tmp_path: Path
) -> None:
    data, rgb = png(seed=3)
    before = set(upload_keys(dev_stack))
    sent: list[RunJobData] = []

    with FakeRunPod(comfy=comfy, queue_seconds=0.05, run_seconds=0.1) as runpod:
        endpoint_id = runpod_endpoint(runpod)

        async def scenario() -> list[bytes]:
            async with connect(dev_stack, token) as client:
                send = client._send

                async def spy(command: Any) -> None:
                    if isinstance(command, RunJob):
                        sent.append(command.data)
                    await send(command)

                client._send = spy  # type: ignore[method-assign]
                results = [
                    await client.run(prompt=PROMPT, files={"input.png": data}, timeout=FOLLOW_TIMEOUT),
                    await client.run(
                        prompt=PROMPT,
                        files={"input.png": data},
                        settings=runpod_settings(endpoint_id),
                        timeout=FOLLOW_TIMEOUT,
                    ),
                ]
                return [await pixels(the_image(r), tmp_path / str(i)) for i, r in enumerate(results)]

        assert run(scenario()) == [inverted(rgb), inverted(rgb)]
    # Both went inline (base64 in run_job), and nothing was uploaded.
    assert [f.data is not None and f.upload_id is None for d in sent for f in d.files or []] == [True, True]
    assert set(upload_keys(dev_stack)) == before


# --------------------------------------------------------------------------- big workflow


def fan_graph(chains: list[int]) -> dict[str, Any]:
    """A nodetool graph of one LoadImage feeding ``len(chains)`` chains of ImageInvert nodes
    (``chains[i]`` each), chain 0 ending in SaveImage and the others in PreviewImage, with the
    metadata a nodetool export carries (so it weighs what a real one does). Chains, not one
    long line: ComfyUI validates a prompt recursively and a chain ~1,000 deep passes Python's
    recursion limit (the fake ComfyUI does too)."""
    meta = {"inputs": [{"name": "image", "type": "IMAGE"}], "outputs": [{"name": "IMAGE", "type": "IMAGE"}]}
    nodes: list[dict[str, Any]] = [
        {"id": "load", "type": "comfy.LoadImage", "data": {"image": "input.png"}, "_comfy_metadata": meta}
    ]
    edges: list[dict[str, Any]] = []

    def link(source: str, target: str, handle: str) -> None:
        edge_id = f"e{len(edges)}"
        edges.append(
            {"id": edge_id, "source": source, "sourceHandle": "IMAGE", "target": target, "targetHandle": handle}
        )

    for c, length in enumerate(chains):
        previous = "load"
        for i in range(length):
            node_id = f"invert_{c:02d}_{i:02d}"
            nodes.append({"id": node_id, "type": "comfy.ImageInvert", "data": {}, "_comfy_metadata": meta})
            link(previous, node_id, "image")
            previous = node_id
        sink = "save" if c == 0 else f"preview_{c:02d}"
        kind = "comfy.SaveImage" if c == 0 else "comfy.PreviewImage"
        nodes.append({"id": sink, "type": kind, "data": {"filename_prefix": "chain"} if c == 0 else {}})
        link(previous, sink, "images")
    return {"nodes": nodes, "edges": edges}


def test_a_thousand_node_workflow_runs_through_workflow_upload_id(
    dev_stack: DevStack, comfy: FakeComfyUI, token: str, tmp_path: Path
) -> None:
    # 1 + (37 + 1) + 25 * (36 + 1) + (35 + 1) = 1,000 nodes; chain 0 inverts an odd number of times.
    graph = fan_graph([37] + [36] * 25 + [35])
    assert len(graph["nodes"]) == 1000
    frame = len(json.dumps({"command": "run_job", "data": {"graph": graph}}).encode())
    assert frame > MAX_MESSAGE_BYTES  # no single frame could carry it
    data, rgb = png(seed=4)
    sent: list[RunJobData] = []

    async def scenario() -> tuple[JobResult, bytes]:
        async with connect(dev_stack, token) as client:
            send = client._send

            async def spy(command: Any) -> None:
                if isinstance(command, RunJob):
                    sent.append(command.data)
                await send(command)

            client._send = spy  # type: ignore[method-assign]
            result = await client.run(graph=graph, files={"input.png": data}, timeout=FOLLOW_TIMEOUT * 2)
            assert result.status is JobStatus.COMPLETED, result.error
            (saved,) = [o for o in result.outputs if o.node_id == "save"]
            return result, await pixels(saved, tmp_path)

    result, out = run(scenario())
    assert out == inverted(rgb)  # 37 inverts of the uploaded image
    # Every chain ran to its sink: ComfyUI's history has all 27 outputs (the job reports the
    # saved image only; PreviewImage's temp files are left out when there is a saved one).
    # ComfyUI knows the job by its key (the client's id and a hash of the user), as the
    # uploaded file's subfolder names it.
    (image,) = {
        v
        for node in comfy.submitted[-1].values()
        for v in node["inputs"].values()
        if isinstance(v, str) and v.startswith(f"comfyroute/{result.job_id}-")
    }
    key = image.removeprefix("comfyroute/").removesuffix("/input.png")
    history = requests.get(f"{comfy.url}/history/{key}", timeout=10).json()[key]
    assert len(history["outputs"]) == 27
    (data_sent,) = sent
    assert data_sent.graph is None
    assert data_sent.workflow_upload_id is not None
    uploaded = object_of(dev_stack, f"uploads/{data_sent.workflow_upload_id}")
    assert uploaded["ContentType"] == "application/json"
    assert len(comfy.submitted[-1]) == 1000


# --------------------------------------------------------------------------- refusals


def test_another_users_upload_an_unknown_id_and_an_oversized_upload_are_refused_by_name(
    dev_stack: DevStack, comfy: FakeComfyUI, make_token: TokenMaker
) -> None:
    alice, bob = make_token(comfy), make_token(comfy)
    data, _ = png(seed=5)

    async def scenario() -> dict[str, Any]:
        found: dict[str, Any] = {}
        async with connect(dev_stack, bob) as client:
            bobs = await client.upload(data, filename="input.png")
        async with connect(dev_stack, alice) as client:
            found["theirs"] = await refusal(client, prompt=PROMPT, files=[("input.png", bobs)])
            found["unknown"] = await refusal(client, prompt=PROMPT, files=[("input.png", UNKNOWN_ID)])
            found["workflow"] = await refusal(client, workflow_upload_id=UNKNOWN_ID)
            with pytest.raises(RequestError) as too_big:
                await client.request_upload("huge.png", "image/png", 60 * 1024 * 1024)
            found["declared"] = too_big.value
            # A POST of more bytes than the ticket declares: S3's policy (enforced by the dev
            # stack as S3 does) refuses it, and nothing is stored.
            ready = await client.request_upload("input.png", "image/png", len(data))
            found["post"] = await asyncio.to_thread(
                requests.post,
                ready.url,
                data=ready.fields,
                files={"file": ("input.png", data + b"\0" * 100, "image/png")},
                timeout=10,
            )
            found["unposted"] = await refusal(client, prompt=PROMPT, files=[("input.png", ready.upload_id)])
        return found

    found = run(scenario())
    theirs = found["theirs"]
    assert theirs.code == "upload_forbidden"
    assert "belongs to another user" in str(theirs)
    assert "data.files[0] (input.png)" in str(theirs)
    assert found["unknown"].code == "upload_not_found"
    assert "unknown or expired" in str(found["unknown"])
    assert found["workflow"].code == "upload_not_found"
    assert "data.workflow_upload_id" in str(found["workflow"])
    assert found["declared"].code == "upload_too_large"
    assert "the limit is 52428800 bytes" in str(found["declared"])
    post = found["post"]
    assert post.status_code == 400
    assert "<Code>EntityTooLarge</Code>" in post.text
    assert found["unposted"].code == "upload_not_ready"
    # Nothing of this reached the executor.
    assert comfy.submitted == []


# --------------------------------------------------------------------------- same name, two jobs


def test_two_concurrent_jobs_sending_the_same_name_each_get_their_own_file_back(
    dev_stack: DevStack, comfy: FakeComfyUI, token: str, tmp_path: Path
) -> None:
    images = [png(seed=10 + i) for i in range(2)]

    async def one(i: int) -> bytes:
        data, _ = images[i]
        async with connect(dev_stack, token) as client:
            upload_id = await client.upload(data, filename="input.png")
            result = await client.run(prompt=PROMPT, files=[("input.png", upload_id)], timeout=FOLLOW_TIMEOUT)
            return await pixels(the_image(result), tmp_path / str(i))

    async def scenario() -> list[bytes]:
        return list(await asyncio.gather(one(0), one(1)))

    outs = run(scenario())
    assert outs == [inverted(rgb) for _, rgb in images]
    assert outs[0] != outs[1]
    subfolders = {p["1"]["inputs"]["image"].rsplit("/", 1)[0] for p in comfy.submitted[-2:]}
    assert len(subfolders) == 2


def test_a_file_too_big_for_runpods_run_limit_fails_the_job_naming_it(
    dev_stack: DevStack, comfy: FakeComfyUI, token: str, runpod_endpoint: EndpointMaker
) -> None:
    # 8 MiB is within the upload limit, but 4/3 of it in base64 passes RunPod's 10 MB /run body.
    data = b"\x89PNG\r\n\x1a\n" + bytes(8 * 1024 * 1024)
    with FakeRunPod(comfy=comfy) as runpod:
        endpoint_id = runpod_endpoint(runpod)

        async def scenario() -> JobResult:
            async with connect(dev_stack, token) as client:
                upload_id = await client.upload(data, filename="huge.png")
                return await client.run(
                    prompt=PROMPT,
                    files=[("input.png", upload_id)],
                    settings=runpod_settings(endpoint_id),
                    timeout=FOLLOW_TIMEOUT,
                )

        result = run(scenario())
        assert result.status is JobStatus.FAILED
        assert result.error is not None
        assert result.error.startswith(
            "runpod executor refused the job: the workflow and its input files (input.png (8.0 MB))"
        )
        assert "RunPod accepts at most 10485760 bytes (10 MB)" in result.error
        assert runpod.runs == []  # refused before anything was sent
