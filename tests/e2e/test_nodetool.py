"""nodetool's web client, as ``nodetool_client.NodetoolClient`` reproduces it on the wire, against
`comfyroute dev`: msgpack binary frames, ``/ws?api_key=``, its envelope and fields, cancel,
drop + ``reconnect_job``, heartbeat.

API Gateway rejects binary frames (close 1003); these tests run the dev gateway with
``binary_frames="default_route"``, which hands them to ``$default`` base64-encoded instead — the
behaviour a deployment would need from a binary-capable front (see docs/nodetool.md).
"""

from __future__ import annotations

import asyncio
import base64
import copy
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import msgpack
import pytest
from fakes import FakeComfyUI
from nodetool_client import (
    NO_RECONNECT_CODES,
    UNDEFINED,
    NodetoolClient,
    as_sent,
    load_fixture,
    msgpackr_pack,
)

from comfyroute.frames import decode_frame
from comfyroute_tools.dev.stack import DevStack

pytestmark = pytest.mark.e2e

T = TypeVar("T")
TEST_TIMEOUT = 60.0
RUN_TIMEOUT = 20.0
WORKFLOW_ID = "wf-nodetool-import"
# What nodetool's importer saves with a workflow made from a ComfyUI file (COMFY_WORKFLOW_FLAG).
SETTINGS = {"is_comfy_workflow": True, "comfy_executor": "local"}


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, TEST_TIMEOUT))


@pytest.fixture(scope="module")
def dev_stack(runpod_front: Any) -> Iterator[DevStack]:
    """Overrides conftest's (same settings; its users come from conftest's ``make_token``), with
    binary frames handed to $default."""
    with DevStack(
        "127.0.0.1",
        0,
        runpod_api_base=runpod_front.url,
        runpod_api_key="test-key",  # FakeRunPod's, as in conftest
        env_overrides={"POLL_INTERVAL_START_SECONDS": "1", "POLL_INTERVAL_CAP_SECONDS": "1"},
        handler_log_level="WARNING",
        idle_timeout=60,
        max_duration=300,
        nodetool=True,
    ) as stack:
        yield stack


def graph() -> dict[str, Any]:
    return copy.deepcopy(load_fixture("run_job_graph_empty_invert_save.json"))


def client(stack: DevStack, token: str) -> NodetoolClient:
    return NodetoolClient(stack.ws_url, token, WORKFLOW_ID)


# --------------------------------------------------------------------------- the client's own wire format


def test_the_client_packs_like_msgpackr_and_frames_reads_it_as_nodetool_means_it() -> None:
    frame = {"type": "run_job", "command": "run_job", "data": {"resource_limits": UNDEFINED, "seed": 2**40, "n": 3}}
    raw = msgpackr_pack(frame)
    assert raw[0] == 0xDE  # msgpackr writes every object as map16
    assert b"\xd4\x00\x00" in raw  # undefined
    assert msgpack.unpackb(raw, strict_map_key=False)["data"]["seed"] == float(2**40)  # float64 on the wire
    decoded = decode_frame(base64.b64encode(raw).decode(), base64_encoded=True)
    assert decoded == {"type": "run_job", "command": "run_job", "data": {"seed": 2**40, "n": 3}}


def test_the_graph_as_sent_carries_undefined_where_nodetool_leaves_fields_unset() -> None:
    sent = as_sent(graph())
    node = sent["nodes"][0]
    assert node["parent_id"] is UNDEFINED
    assert node["ui_properties"]["height"] is UNDEFINED
    assert sent["edges"][0]["ui_properties"] is UNDEFINED
    assert node["data"]["_comfy_widgets"] == [64, 64, 1, 0]
    assert sent["edges"][0]["sourceHandle"] == "IMAGE"
    assert sent["edges"][0]["targetHandle"] == "image"
    # Read back through frames, the undefined keys are gone, as JSON.stringify would leave them.
    raw = base64.b64encode(msgpackr_pack({"command": "run_job", "data": {"graph": sent}})).decode()
    back = decode_frame(raw, base64_encoded=True)["data"]["graph"]
    assert back == graph() | {"edges": back["edges"]}
    assert "parent_id" not in back["nodes"][0]


# --------------------------------------------------------------------------- nodetool against comfyroute dev


def test_connects_at_ws_with_api_key(dev_stack: DevStack, token: str) -> None:
    async def body() -> None:
        async with client(dev_stack, token) as nt:
            # The manifest on open must not cost the connection (an error frame is fine).
            await nt.ping()
            await nt.wait_for(lambda: nt.liveness, "a pong", 10)
            assert nt.close_code is None

    run(body())


def test_heartbeat_ping_is_answered_with_a_pong_and_no_error(dev_stack: DevStack, token: str) -> None:
    async def body() -> None:
        async with client(dev_stack, token) as nt:
            assert await nt.probe_liveness()
            pong = await nt.wait_for(lambda: [m for m in nt.liveness if m.get("type") == "pong"], "a pong", 10)
            assert isinstance(pong[0].get("ts"), int | float)  # nodetool's pong schema requires ts
            assert not [m for m in nt.unrouted if m.get("type") == "error" and "ping" in str(m)]

    run(body())


def test_imported_comfy_workflow_runs_to_the_image(dev_stack: DevStack, token: str, comfy: FakeComfyUI) -> None:
    async def body() -> None:
        async with client(dev_stack, token) as nt:
            job_id = await nt.run_job(graph(), settings=SETTINGS)
            await nt.wait_for_state("idle", "error", timeout=RUN_TIMEOUT)
            assert nt.runner.state == "idle", nt.of_type("job_update")
            final = nt.of_type("job_update")[-1]
            assert final["status"] == "completed"
            assert final["job_id"] == job_id
            assert final["workflow_id"] == WORKFLOW_ID
            (output,) = nt.of_type("output_update")
            assert output["node_id"] == "3"  # the SaveImage node of the graph
            assert output["value"]["type"] == "image"
            assert output["value"]["uri"]
            assert output["metadata"]["content_type"] == "image/png"
            statuses = {(m["node_id"], m["status"]) for m in nt.of_type("node_update")}
            assert ("3", "completed") in statuses

    run(body())


def test_cancel_job_with_workflow_id_cancels(dev_stack: DevStack, token: str, comfy: FakeComfyUI) -> None:
    async def body() -> None:
        comfy.pause()
        try:
            async with client(dev_stack, token) as nt:
                await nt.run_job(graph(), settings=SETTINGS)
                await nt.wait_for(lambda: nt.of_type("job_update"), "a first job_update", RUN_TIMEOUT)
                await nt.cancel_job()
                await nt.wait_for(
                    lambda: any(m["status"] == "cancelled" for m in nt.of_type("job_update")), "cancelled", RUN_TIMEOUT
                )
        finally:
            comfy.resume()

    run(body())


def test_drop_and_reconnect_job_replays_what_was_missed(dev_stack: DevStack, token: str, comfy: FakeComfyUI) -> None:
    async def body() -> None:
        comfy.pause()
        nt = client(dev_stack, token)
        try:
            await nt.connect()
            job_id = await nt.run_job(graph(), settings=SETTINGS)
            await nt.wait_for(lambda: nt.of_type("job_update"), "a first job_update", RUN_TIMEOUT)
            seen = nt.runner.job_replay_cursor
            assert seen >= 1  # every message of a job carries job_seq
            await nt.drop()
            comfy.resume()  # the job finishes while nobody is connected
            await asyncio.sleep(2)
            assert nt.url().endswith(f"resume_job={job_id}")
            await nt.connect()  # sends reconnect_job {job_id, workflow_id, last_seq}
            await nt.wait_for_state("idle", "error", timeout=RUN_TIMEOUT)
            (resumed,) = nt.of_type("job_resumed")
            assert resumed["last_seq"] >= seen
            assert nt.runner.state == "idle"
            assert nt.of_type("output_update")
            seqs = [m["job_seq"] for m in nt.runner.messages if "job_seq" in m]
            assert seqs == sorted(set(seqs))  # no gap filled twice
        finally:
            comfy.resume()
            await nt.close()

    run(body())


def test_a_failed_run_ends_with_job_update_failed_carrying_its_ids(
    dev_stack: DevStack, token: str, comfy: FakeComfyUI
) -> None:
    async def body() -> None:
        broken = graph()
        broken["edges"][0]["target"] = "99"  # a dangling edge: refused by conversion
        async with client(dev_stack, token) as nt:
            job_id = await nt.run_job(broken, settings=SETTINGS)
            # nodetool ignores `error` frames when updating a run: only job_update can end it.
            await nt.wait_for_state("error", timeout=RUN_TIMEOUT)
            failed = [m for m in nt.of_type("job_update") if m["status"] == "failed"]
            assert failed[-1]["job_id"] == job_id
            assert failed[-1]["workflow_id"] == WORKFLOW_ID
            assert failed[-1]["error"]

    run(body())


def test_unsupported_commands_are_answered_by_name_and_keep_the_socket(dev_stack: DevStack, token: str) -> None:
    async def body() -> None:
        async with client(dev_stack, token) as nt:
            nt.runner.job_id = "job-unknown"
            for command in ("pause_job", "resume_job"):
                await nt.job_command(command)
            # One error each; frames are handled concurrently, so in either order.
            errors: list[dict[str, Any]] = await nt.wait_for(
                lambda: (e := [m for m in nt.runner.messages if m.get("type") == "error"]) and len(e) >= 2 and e,
                "two errors",
                10,
            )
            assert {(m["request"], m["code"], m["job_id"]) for m in errors} == {
                ("pause_job", "unsupported", "job-unknown"),
                ("resume_job", "unsupported", "job-unknown"),
            }
            assert all(f"'{m['request']}' is not supported" in m["message"] for m in errors)
            assert nt.close_code is None
            assert nt.close_code not in NO_RECONNECT_CODES

    run(body())
