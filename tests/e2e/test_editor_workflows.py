"""ComfyUI editor workflows (workflow.json as the editor saves it) through `comfyroute dev` over
a real WebSocket: converted on the server with the executor's node schemas — the fake ComfyUI's
live /object_info, or the snapshot pushed for a RunPod endpoint — and problems per node on the
failed job_update and error."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from fakes import FakeComfyUI, FakeRunPod, load_object_info

from comfyroute.protocol import JobStatus
from comfyroute.protocol.server_messages import ErrorMessage, JobUpdate, ServerMessage
from comfyroute.schemas import PREFIX, runpod_key
from comfyroute_tools.cli import main as comfyroute_main
from comfyroute_tools.client import ComfyrouteClient, JobResult, download
from comfyroute_tools.dev.stack import DevStack

pytestmark = pytest.mark.e2e

EDITOR = Path(__file__).resolve().parents[1] / "fixtures" / "editor"
RUNPOD_API_KEY = "test-key"
FOLLOW_TIMEOUT = 20.0
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 60.0))


def recorded(case: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EDITOR / "recorded" / f"{case}.json").read_text())
    return data


def without_meta(prompt: dict[str, Any]) -> dict[str, Any]:
    return {nid: {k: v for k, v in node.items() if k != "_meta"} for nid, node in prompt.items()}


def connect(stack: DevStack, token: str) -> ComfyrouteClient:
    return ComfyrouteClient(stack.ws_url, token, open_timeout=5, request_timeout=10, poll_interval=5)


def new_user(stack: DevStack, comfy: FakeComfyUI) -> tuple[str, str]:
    """A user whose local executor is ``comfy``: (user id, token)."""
    user_id = f"user-{uuid.uuid4().hex[:10]}"
    prefix = stack.env.get("SECRETS_PREFIX", "comfyroute")
    secret = {"COMFYUI_ADDR": comfy.addr, "RUNPOD_API_KEY": RUNPOD_API_KEY}
    stack.client("secretsmanager").create_secret(Name=f"{prefix}/users/{user_id}", SecretString=json.dumps(secret))
    return user_id, stack.issue_token(user_id, label="e2e editor")


def push_snapshot(stack: DevStack, user_id: str, endpoint_id: str, classes: dict[str, Any], tmp_path: Path) -> None:
    """``comfyroute object-info push`` against the dev stack, as a user would run it."""
    path = tmp_path / "object_info.json"
    path.write_text(json.dumps(classes))
    bucket = stack.env["OUTPUTS_BUCKET"]
    argv = ["object-info", "push", "--endpoint", endpoint_id, str(path), "--user", user_id]
    argv += ["--endpoint-url", stack.moto_endpoint, "--bucket", bucket, "--state-file", str(tmp_path / "none")]
    assert comfyroute_main(argv) == 0


async def save_and_run(client: ComfyrouteClient, workflow: dict[str, Any], settings: dict[str, Any] | None,
                       seen: list[ServerMessage]) -> JobResult:  # fmt: skip
    workflow_id = f"wf-{uuid.uuid4().hex[:8]}"
    await client.save_workflow(workflow_id, workflow=workflow, settings=settings)
    job_id = await client.run_job(workflow_id=workflow_id)
    return await client.follow(job_id, timeout=FOLLOW_TIMEOUT, on_message=seen.append)


def test_a_saved_editor_workflow_runs_on_comfyui_with_its_live_object_info(
    dev_stack: DevStack, comfy: FakeComfyUI, tmp_path: Path
) -> None:
    case = recorded("subgraph_modes")  # subgraphs, a muted and a bypassed subgraph node
    user_id, token = new_user(dev_stack, comfy)

    async def scenario() -> JobResult:
        async with connect(dev_stack, token) as client:
            result = await save_and_run(client, case["workflows"]["save"], None, [])
            for out in result.outputs:
                path = await download(out, tmp_path)
                assert path.read_bytes() == comfy.file_bytes(out.value.filename)
            return result

    result = run(scenario())
    assert result.status is JobStatus.COMPLETED, result.error
    [submitted] = comfy.submitted
    assert without_meta(submitted) == without_meta(case["prompt"])
    assert result.outputs
    # The fake's /object_info is cached for this user in the outputs bucket.
    listed = dev_stack.client("s3").list_objects_v2(
        Bucket=dev_stack.env["OUTPUTS_BUCKET"], Prefix=f"{PREFIX}/comfyui/{user_id}/"
    )
    assert listed.get("KeyCount") == 1


def test_an_editor_workflow_on_runpod_uses_the_endpoints_pushed_snapshot(
    dev_stack: DevStack, comfy: FakeComfyUI, runpod_endpoint: Any, tmp_path: Path
) -> None:
    case = recorded("notes_groups")
    user_id, token = new_user(dev_stack, comfy)
    with FakeRunPod() as runpod:
        endpoint_id = runpod_endpoint(runpod)
        push_snapshot(dev_stack, user_id, endpoint_id, load_object_info(), tmp_path)
        settings = {"comfy_executor": "runpod", "runpod_endpoint_id": endpoint_id}

        async def scenario() -> JobResult:
            async with connect(dev_stack, token) as client:
                return await save_and_run(client, case["workflows"]["save"], settings, [])

        result = run(scenario())
        assert result.status is JobStatus.COMPLETED, result.error
        [submitted] = runpod.runs
        assert without_meta(submitted["input"]["workflow"]) == without_meta(case["prompt"])
    # Only RunPod ran it; the user's ComfyUI was not even asked for its schemas.
    assert comfy.submitted == []
    stored = dev_stack.client("s3").head_object(
        Bucket=dev_stack.env["OUTPUTS_BUCKET"], Key=runpod_key(user_id, endpoint_id)
    )
    assert stored["ContentLength"] > 0


def test_a_class_the_snapshot_lacks_fails_naming_the_node_on_the_failed_update(
    dev_stack: DevStack, comfy: FakeComfyUI, runpod_endpoint: Any, tmp_path: Path
) -> None:
    case = recorded("reroute_chain")  # uses ImageBlend, which the fake's schemas do not have
    user_id, token = new_user(dev_stack, comfy)
    with FakeRunPod() as runpod:
        endpoint_id = runpod_endpoint(runpod)
        push_snapshot(dev_stack, user_id, endpoint_id, load_object_info(), tmp_path)
        seen: list[ServerMessage] = []

        async def scenario() -> JobResult:
            async with connect(dev_stack, token) as client:
                settings = {"comfy_executor": "runpod", "runpod_endpoint_id": endpoint_id}
                job_id = await client.run_job(workflow=case["workflows"]["save"], settings=settings)
                return await client.follow(job_id, timeout=FOLLOW_TIMEOUT, on_message=seen.append)

        result = run(scenario())
        assert runpod.runs == []
    assert result.status is JobStatus.FAILED
    # One answer to the refused run_job: its failed job_update, with the problems per node.
    assert not [m for m in seen if isinstance(m, ErrorMessage)]
    failed = [m for m in seen if isinstance(m, JobUpdate) and m.status is JobStatus.FAILED]
    for problems in (result.errors, failed[0].errors if failed else result.errors):
        assert problems is not None
        blend = [p for p in problems if p.class_type == "ImageBlend"]
        assert blend, problems
        assert blend[0].node_id == "10"
        assert blend[0].message.startswith("unknown node class 'ImageBlend'")
    assert "ImageBlend" in (result.error or "")


def test_comfyuis_node_errors_reach_the_client_per_input(dev_stack: DevStack, comfy: FakeComfyUI) -> None:
    workflow = json.loads(json.dumps(recorded("notes_groups")["workflows"]["save"]))
    empty = next(n for n in workflow["nodes"] if n["type"] == "EmptyImage")
    empty["widgets_values"][0] = 0  # width 0: ComfyUI's value_smaller_than_min
    _, token = new_user(dev_stack, comfy)

    async def scenario() -> JobResult:
        async with connect(dev_stack, token) as client:
            return await client.follow(await client.run_job(workflow=workflow), timeout=FOLLOW_TIMEOUT)

    result = run(scenario())
    assert result.status is JobStatus.FAILED
    assert result.errors is not None
    [width] = [p for p in result.errors if p.input == "width"]
    assert (width.node_id, width.class_type) == (str(empty["id"]), "EmptyImage")
    assert "smaller than min" in width.message


def test_a_runtime_error_reaches_the_client_naming_its_node(dev_stack: DevStack, comfy: FakeComfyUI) -> None:
    example = json.loads((EDITOR.parents[2] / "examples" / "runtime_error_blur_1px.json").read_text())
    _, token = new_user(dev_stack, comfy)

    async def scenario() -> JobResult:
        async with connect(dev_stack, token) as client:
            return await client.follow(
                await client.run_job(graph=example.get("graph", example)), timeout=FOLLOW_TIMEOUT
            )

    result = run(scenario())
    assert result.status is JobStatus.FAILED
    assert result.errors is not None
    [problem] = result.errors
    assert (problem.node_id, problem.class_type) == ("2", "ImageBlur")
    assert "RuntimeError" in problem.message
