"""Real-time following through `comfyroute dev` over a real WebSocket (issue 10): ComfyUI's node
updates and sampler steps while a job runs, outputs before the terminal update, the poll
fallback when ComfyUI's /ws cannot be used, an unreachable ComfyUI told at once, and RunPod
jobs ended by their webhook (or by the slow poll when the webhook never comes)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from fakes import FakeComfyUI, FakeRunPod
from support.executions import executions_of

from comfyroute.protocol import JobStatus
from comfyroute.protocol.server_messages import JobUpdate, NodeProgress, NodeUpdate, OutputUpdate, ServerMessage
from comfyroute_tools.client import ComfyrouteClient, JobResult
from comfyroute_tools.dev.stack import DevStack

RUNPOD_API_KEY = "test-key"  # FakeRunPod's default key; only ever sent to loopback
POLL_ENV = {"POLL_INTERVAL_START_SECONDS": "1", "POLL_INTERVAL_CAP_SECONDS": "1"}
FOLLOW_TIMEOUT = 20.0
TEST_TIMEOUT = 60.0

# A short slow poll, so the lost-webhook test takes seconds; the webhook test's job is shorter
# than one slow poll, so only the webhook can end it that early.
SLOW_POLL_SECONDS = 4
PROMPT = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": 0}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "follow"}},
}


T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, TEST_TIMEOUT))


def connect(stack: DevStack, token: str, *, poll_interval: float) -> ComfyrouteClient:
    return ComfyrouteClient(
        stack.ws_url, token, open_timeout=5, request_timeout=10, poll_interval=poll_interval, reconnect_attempts=3
    )


@pytest.fixture(scope="module")
def dev_stack(runpod_front: Any) -> Iterator[DevStack]:
    with DevStack(
        "127.0.0.1",
        0,
        runpod_api_base=runpod_front.url,
        runpod_api_key=RUNPOD_API_KEY,
        env_overrides={**POLL_ENV, "RUNPOD_SLOW_POLL_SECONDS": str(SLOW_POLL_SECONDS)},
        handler_log_level="WARNING",
        idle_timeout=60,
        max_duration=300,
    ) as stack:
        yield stack


def follow_job(
    stack: DevStack, token: str, *, settings: dict[str, str] | None = None
) -> tuple[JobResult, list[ServerMessage]]:
    seen: list[ServerMessage] = []

    async def scenario() -> JobResult:
        # No catch-up polling by the client: only pushed messages can end the follow in time.
        async with connect(stack, token, poll_interval=FOLLOW_TIMEOUT * 3) as client:
            job_id = await client.run_job(prompt=PROMPT, settings=settings)
            return await client.follow(job_id, timeout=FOLLOW_TIMEOUT, on_message=seen.append)

    return run(scenario()), seen


def states_of(stack: DevStack, job_id: str) -> list[str]:
    sfn = stack.client("stepfunctions")
    [execution] = executions_of(stack, job_id)
    events = sfn.get_execution_history(executionArn=execution["executionArn"], maxResults=1000)["events"]
    return [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]


def wake_outputs(stack: DevStack, job_id: str) -> list[dict[str, Any]]:
    """What each Arm state was woken with (SendTaskSuccess outputs)."""
    sfn = stack.client("stepfunctions")
    [execution] = executions_of(stack, job_id)
    events = sfn.get_execution_history(executionArn=execution["executionArn"], maxResults=1000)["events"]
    return [
        json.loads(e["taskSucceededEventDetails"]["output"])
        for e in events
        if "taskSucceededEventDetails" in e and "woken_by" in e["taskSucceededEventDetails"]["output"]
    ]


# --------------------------------------------------------------------------- ComfyUI


def test_node_updates_and_every_sampler_step_arrive_while_the_job_runs(
    dev_stack: DevStack, make_token: Callable[[FakeComfyUI], str]
) -> None:
    with FakeComfyUI(node_seconds=0.8, progress_steps=4) as comfy:
        result, seen = follow_job(dev_stack, make_token(comfy))
    assert result.status is JobStatus.COMPLETED, result.error
    nodes = [(m.node_id, m.status, m.node_type) for m in seen if isinstance(m, NodeUpdate)]
    # The loop starts a moment after the prompt; from then on every state of every node, once.
    assert nodes[-2:] == [("3", "running", "comfy.SaveImage"), ("3", "completed", "comfy.SaveImage")]
    assert ("2", "running", "comfy.ImageInvert") in nodes
    assert len(nodes) == len(set(nodes))
    steps = [(m.node_id, m.progress) for m in seen if isinstance(m, NodeProgress)]
    # 4 steps in 0.8 s per node, coalesced to 2 a second: the last step of each node always.
    for node in ("2", "3"):
        assert (node, 4.0) in steps
    # Progress arrived while the job ran, not at its end: node 2's steps before node 3 started.
    index = {id(m): i for i, m in enumerate(seen)}
    node3_start = next(index[id(m)] for m in seen if isinstance(m, NodeUpdate) and m.node_id == "3")
    assert any(index[id(m)] < node3_start for m in seen if isinstance(m, NodeProgress) and m.node_id == "2")
    # The output before the terminal update, which counts it.
    outputs = [i for i, m in enumerate(seen) if isinstance(m, OutputUpdate)]
    final = seen[-1]
    assert isinstance(final, JobUpdate)
    assert final.status is JobStatus.COMPLETED
    assert len(outputs) == 1
    assert outputs[0] < len(seen) - 1
    assert final.output_count == 1
    assert states_of(dev_stack, result.job_id) == ["Route", "Follow", "Next", "Succeeded"]


def test_a_comfyui_without_websockets_is_followed_by_polling(
    dev_stack: DevStack, make_token: Callable[[FakeComfyUI], str]
) -> None:
    with FakeComfyUI(node_seconds=0.4, websocket=False) as comfy:
        result, seen = follow_job(dev_stack, make_token(comfy))
        assert comfy.ws_clients == []
    assert result.status is JobStatus.COMPLETED, result.error
    assert len(result.outputs) == 1
    states = states_of(dev_stack, result.job_id)
    assert states[:4] == ["Route", "Follow", "Next", "Wait"]
    assert states.count("Follow") == 1
    assert "Poll" in states
    # No socket, so nothing live: each node's outcome from /history at the end.
    assert {(m.node_id, m.status) for m in seen if isinstance(m, NodeUpdate)} == {
        ("1", "completed"),
        ("2", "completed"),
        ("3", "completed"),
    }
    assert isinstance(seen[-1], JobUpdate)
    assert seen[-1].output_count == 1


def test_a_websocket_dropped_mid_job_falls_back_to_polling(
    dev_stack: DevStack, make_token: Callable[[FakeComfyUI], str]
) -> None:
    with FakeComfyUI(node_seconds=1.0) as comfy:
        token = make_token(comfy)

        async def scenario() -> JobResult:
            async with connect(dev_stack, token, poll_interval=FOLLOW_TIMEOUT * 3) as client:
                job_id = await client.run_job(prompt=PROMPT)
                task = asyncio.create_task(client.follow(job_id, timeout=FOLLOW_TIMEOUT))
                while not comfy.ws_clients:
                    await asyncio.sleep(0.02)
                await asyncio.sleep(0.3)
                comfy.websocket = False  # the tunnel stops passing websockets
                comfy.drop_websockets()
                return await task

        result = run(scenario())
    assert result.status is JobStatus.COMPLETED, result.error
    states = states_of(dev_stack, result.job_id)
    assert states.count("Follow") == 1
    assert "Poll" in states


def test_an_unreachable_comfyui_is_told_within_seconds(
    dev_stack: DevStack, make_token: Callable[[FakeComfyUI], str]
) -> None:
    comfy = FakeComfyUI(node_seconds=2.0).start()
    token = make_token(comfy)
    seen: list[ServerMessage] = []

    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        async with connect(dev_stack, token, poll_interval=FOLLOW_TIMEOUT * 3) as client:
            await client.run_job(prompt=PROMPT)
            stream = client.messages()
            while not comfy.ws_clients:
                await asyncio.sleep(0.02)
            comfy.stop()  # ComfyUI goes away mid-job
            gone_at = loop.time()
            while True:
                msg = await asyncio.wait_for(anext(stream), 10)
                seen.append(msg)
                if isinstance(msg, JobUpdate) and (msg.message or "").endswith("cannot be reached; retrying"):
                    return loop.time() - gone_at

    told_after = run(scenario())
    assert told_after < 10
    update = seen[-1]
    assert isinstance(update, JobUpdate)
    assert not update.status.terminal


# --------------------------------------------------------------------------- RunPod


def test_the_webhook_ends_a_runpod_job_without_polling_it_to_the_end(
    dev_stack: DevStack, make_token: Callable[[FakeComfyUI], str], runpod_endpoint: Callable[[FakeRunPod], str]
) -> None:
    with FakeComfyUI(run_seconds=0.1) as comfy, FakeRunPod(comfy=comfy, run_seconds=1.5) as runpod:
        endpoint_id = runpod_endpoint(runpod)
        settings = {"comfy_executor": "runpod", "runpod_endpoint_id": endpoint_id}
        result, seen = follow_job(dev_stack, make_token(comfy), settings=settings)
        [(url, status)] = runpod.webhooks
        [submitted] = runpod.runs
        looks = runpod.requests["status"]
    assert result.status is JobStatus.COMPLETED, result.error
    assert status == 200
    assert submitted["webhook"] == url
    # The path names the job by its per-user key (the client's id, then a digest) and its secret.
    assert url.startswith(f"{dev_stack.http_url}/runpod/callback/{result.job_id}-")
    # One Arm, woken by the callback (not by its slow-poll timeout), then one confirming Poll.
    states = states_of(dev_stack, result.job_id)
    assert states == ["Route", "Arm", "Poll", "Next", "NotifyFinal", "Succeeded"]
    assert wake_outputs(dev_stack, result.job_id) == [{"woken_by": "runpod_webhook", "hint_status": "COMPLETED"}]
    assert looks <= 3  # Arm's look, Poll's confirmation and its outputs: no polling loop
    final = seen[-1]
    assert isinstance(final, JobUpdate)
    assert final.status is JobStatus.COMPLETED
    assert final.output_count == 1
    assert final.execution_ms is not None
    assert final.delay_ms is not None
    # The record keeps the secret's digest only.
    key = url.removeprefix(f"{dev_stack.http_url}/runpod/callback/").split("/")[0]
    item = dev_stack.client("dynamodb").get_item(TableName=dev_stack.env["JOBS_TABLE"], Key={"job_id": {"S": key}})[
        "Item"
    ]
    assert item["client_job_id"]["S"] == result.job_id
    assert item["callback_digest"]["S"].startswith("sha256:")
    assert url.rsplit("/", 1)[1] not in json.dumps(item)


def test_a_lost_webhook_is_made_up_for_by_the_slow_poll(
    dev_stack: DevStack, make_token: Callable[[FakeComfyUI], str], runpod_endpoint: Callable[[FakeRunPod], str]
) -> None:
    with (
        FakeComfyUI(run_seconds=0.1) as comfy,
        FakeRunPod(comfy=comfy, run_seconds=0.5, webhooks=False) as runpod,
    ):
        endpoint_id = runpod_endpoint(runpod)
        settings = {"comfy_executor": "runpod", "runpod_endpoint_id": endpoint_id}
        result, _ = follow_job(dev_stack, make_token(comfy), settings=settings)
        assert runpod.webhooks == []
    assert result.status is JobStatus.COMPLETED, result.error
    states = states_of(dev_stack, result.job_id)
    assert states[:3] == ["Route", "Arm", "Rearm"]  # the token timed out: the slow poll
    assert wake_outputs(dev_stack, result.job_id)[-1]["woken_by"] == "over on RunPod"
