"""The whole backend, driven over a real WebSocket: `comfyroute dev` (the real handlers, the real
state machine in moto, the dev gateway) with fake executors on loopback, talked to by the real
``ComfyrouteClient`` and the real ``comfyroute run`` command.

Every wait is bounded: requests and ``follow`` have timeouts, polling helpers give up, and each
test body runs under ``asyncio.wait_for``. Deterministic "still running" states come from
``FakeComfyUI.pause()``, never from racing a sleep.
"""

from __future__ import annotations

import asyncio
import copy
import json
import threading
import time
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests
from fakes import FakeComfyUI, FakeRunPod
from support.executions import executions_of

from comfyroute.conversion.nodetool import convert_graph
from comfyroute.protocol import ExecutorKind, JobStatus
from comfyroute.protocol.server_messages import (
    ErrorMessage,
    JobOutput,
    JobUpdate,
    NodeUpdate,
    OutputUpdate,
    ServerMessage,
)
from comfyroute.protocol.workflow_commands import Graph
from comfyroute_tools.cli import run as client_cli
from comfyroute_tools.client import AuthError, ComfyrouteClient, JobResult, RequestError, download
from comfyroute_tools.dev.stack import DevStack

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
REQUEST_TIMEOUT = 10.0  # one command's answer
FOLLOW_TIMEOUT = 20.0  # one job from run_job to its terminal update
WAIT_TIMEOUT = 10.0  # a fake reaching a state
TEST_TIMEOUT = 60.0  # a whole test body
# follow() asks get_job after this much silence. Tests that must prove a push arrived use a
# value longer than FOLLOW_TIMEOUT, so only a pushed update can end the follow in time.
CATCH_UP_INTERVAL = 5.0
NO_CATCH_UP = FOLLOW_TIMEOUT * 3

T = TypeVar("T")
TokenMaker = Callable[[FakeComfyUI], str]
EndpointMaker = Callable[[FakeRunPod], str]


# --------------------------------------------------------------------------- helpers


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, TEST_TIMEOUT))


def example(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / name).read_text())


def example_graph(name: str) -> dict[str, Any]:
    """The nodetool graph of an example: the ``graph`` of a saved workflow, or the file itself."""
    body = example(name)
    return body.get("graph", body)


def with_input(graph: dict[str, Any], class_type: str, name: str, value: Any) -> dict[str, Any]:
    """A copy of ``graph`` with input ``name`` of its ``comfy.{class_type}`` node set to ``value``."""
    changed = copy.deepcopy(graph)
    nodes = [n for n in changed["nodes"] if n["type"] == f"comfy.{class_type}"]
    assert len(nodes) == 1, f"expected one {class_type} node"
    fields = nodes[0].get("properties") or nodes[0].get("data")
    assert fields is not None, f"the {class_type} node has no inputs to change"
    fields[name] = value
    return changed


def prompt_of(graph: dict[str, Any]) -> dict[str, Any]:
    return convert_graph(Graph.model_validate(graph))


def connect(stack: DevStack, token: str, *, poll_interval: float = CATCH_UP_INTERVAL) -> ComfyrouteClient:
    return ComfyrouteClient(
        stack.ws_url,
        token,
        open_timeout=5,
        request_timeout=REQUEST_TIMEOUT,
        poll_interval=poll_interval,
        reconnect_attempts=3,
        reconnect_delay=0.2,
    )


async def eventually(check: Callable[[], T], what: str, timeout: float = WAIT_TIMEOUT) -> T:
    """``check()``'s first truthy value, polled; fails naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g}s")
        await asyncio.sleep(0.02)
    return value


async def next_message(client: ComfyrouteClient, timeout: float = REQUEST_TIMEOUT) -> ServerMessage:
    """The next message no request or follow is waiting for."""
    stream = client.messages()
    try:
        return await asyncio.wait_for(anext(stream), timeout)
    finally:
        await stream.aclose()


async def follow(client: ComfyrouteClient, job_id: str) -> JobResult:
    return await client.follow(job_id, timeout=FOLLOW_TIMEOUT)


async def assert_outputs_match(outputs: list[JobOutput], comfy: FakeComfyUI, dest: Path) -> list[Path]:
    """Download every output and compare it byte for byte with the file the executor wrote."""
    assert outputs, "the job has no outputs"
    paths = []
    for out in outputs:
        expected = comfy.file_bytes(out.value.filename)
        assert expected is not None, f"the executor wrote no {out.value.filename}"
        path = await download(out, dest)
        assert path.read_bytes() == expected, out.value.filename
        paths.append(path)
    return paths


def hold_prompt_answers(comfy: FakeComfyUI, monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """Make ``comfy`` queue each prompt but hold its answer to ``POST /prompt`` until ``release``
    is set (bounded): run_job is then stuck between the executor taking the prompt and recording
    it, the window a client's next command can race. ``accepted`` is set once a prompt is queued."""
    accepted, release = threading.Event(), threading.Event()
    submit = comfy.engine.submit

    def held_submit(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        answer = submit(body)
        accepted.set()
        release.wait(WAIT_TIMEOUT)
        return answer

    monkeypatch.setattr(comfy.engine, "submit", held_submit)
    return accepted, release


def pending_ids(comfy: FakeComfyUI) -> list[str]:
    return [item[1] for item in comfy.engine.queue()["queue_pending"]]


def running_ids(comfy: FakeComfyUI) -> list[str]:
    return [item[1] for item in comfy.engine.queue()["queue_running"]]


def connection_ids(stack: DevStack) -> set[str]:
    items = stack.client("dynamodb").scan(TableName=stack.env["CONNECTIONS_TABLE"])["Items"]
    return {item["connection_id"]["S"] for item in items}


def job_ids(views: list[Any]) -> set[str]:
    return {v.job_id for v in views}


# --------------------------------------------------------------------------- 1. success


def test_graph_example_completes_with_the_executors_bytes(
    dev_stack: DevStack, comfy: FakeComfyUI, token: str, tmp_path: Path
) -> None:
    graph = example_graph("empty_invert_save.json")
    seen: list[ServerMessage] = []

    async def scenario() -> JobResult:
        async with connect(dev_stack, token) as client:
            job_id = await client.run_job(graph=graph)
            result = await client.follow(job_id, timeout=FOLLOW_TIMEOUT, on_message=seen.append)
            await assert_outputs_match(result.outputs, comfy, tmp_path)
            return result

    result = run(scenario())
    assert result.status is JobStatus.COMPLETED, result.error
    assert result.executor is ExecutorKind.LOCAL
    # ComfyUI got the converted graph, exactly once, and served the file through /view.
    assert comfy.submitted == [prompt_of(graph)]
    [out] = result.outputs
    assert (out.node_id, out.node_name, out.output_name) == ("3", "SaveImage", "images")
    assert out.value.content_type == "image/png"
    assert out.value.filename in comfy.files
    statuses = [m.status for m in seen if isinstance(m, JobUpdate)]
    assert statuses[0] is JobStatus.QUEUED
    assert statuses[-1] is JobStatus.COMPLETED
    # Every output_update comes before the terminal job_update, which counts them: a client that
    # stops reading at "completed" has every file.
    kinds = [type(m).__name__ for m in seen]
    (pushed,) = [m for m in seen if isinstance(m, OutputUpdate)]
    assert kinds.index("OutputUpdate") < len(kinds) - 1
    final = seen[-1]
    assert isinstance(final, JobUpdate)
    assert (final.status, final.output_count) == (JobStatus.COMPLETED, 1)
    assert (pushed.job_id, pushed.node_id, pushed.value.filename) == (result.job_id, "3", out.value.filename)
    assert seen.index(pushed) < len(seen) - 1
    # Live from ComfyUI's socket where it was open in time (running too), else from /history.
    assert {(m.node_id, m.status) for m in seen if isinstance(m, NodeUpdate)} >= {
        ("1", "completed"),
        ("2", "completed"),
        ("3", "completed"),
    }
    final = seen[-1]
    assert isinstance(final, JobUpdate)
    assert final.output_count == 1


def test_comfyroute_run_cli_saves_the_outputs(
    dev_stack: DevStack, comfy: FakeComfyUI, token: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "out"
    argv = ["run", str(EXAMPLES / "empty_invert_save.json"), "--url", dev_stack.ws_url, "--token", token]
    code = client_cli.main([*argv, "--out", str(out_dir), "--timeout", str(FOLLOW_TIMEOUT)])
    stdout, stderr = capsys.readouterr()
    assert code == client_cli.EXIT_OK, stderr
    saved = [Path(line) for line in stdout.splitlines() if line.strip()]
    assert len(saved) == 1
    assert saved[0].parent == out_dir
    assert saved[0].read_bytes() == comfy.file_bytes(saved[0].name)
    assert "completed" in stderr
    assert token not in stdout + stderr


def test_comfyroute_run_cli_reports_a_failed_job(
    dev_stack: DevStack, token: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", str(EXAMPLES / "runtime_error_blur_1px.json"), "--url", dev_stack.ws_url, "--token", token]
    code = client_cli.main([*argv, "--out", str(tmp_path / "out"), "--timeout", str(FOLLOW_TIMEOUT)])
    _, stderr = capsys.readouterr()
    assert code == client_cli.EXIT_JOB_FAILED
    assert "failed" in stderr
    assert "ImageBlur" in stderr
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- 2-3. failures


def test_validation_error_fails_with_node_errors_and_leaves_nothing_running(
    dev_stack: DevStack, comfy: FakeComfyUI, token: str
) -> None:
    graph = with_input(example_graph("empty_save.json"), "EmptyImage", "width", 0)

    async def scenario() -> tuple[JobResult, ServerMessage | None]:
        async with connect(dev_stack, token) as client:
            job_id = await client.run_job(graph=graph)
            result = await follow(client, job_id)
            # One refusal, one message: the failed job_update, and no error after it.
            try:
                return result, await next_message(client, timeout=1.0)
            except TimeoutError:
                return result, None

    result, extra = run(scenario())
    assert result.status is JobStatus.FAILED
    assert result.error is not None
    # ComfyUI's node errors, naming the node, its class and the input.
    assert "node 1 (EmptyImage)" in result.error
    assert "width" in result.error
    assert extra is None
    # Nothing left running: ComfyUI queued nothing, no poll loop was started.
    assert len(comfy.submitted) == 1
    assert comfy.engine.queue() == {"queue_running": [], "queue_pending": []}
    assert comfy.engine.executed_prompts == 0
    assert executions_of(dev_stack, result.job_id) == []


def test_runtime_error_fails_naming_the_node(dev_stack: DevStack, comfy: FakeComfyUI, token: str) -> None:
    async def scenario() -> JobResult:
        async with connect(dev_stack, token) as client:
            return await follow(client, await client.run_job(graph=example_graph("runtime_error_blur_1px.json")))

    result = run(scenario())
    assert result.status is JobStatus.FAILED
    assert result.error is not None
    assert "node 2 (ImageBlur)" in result.error
    assert result.outputs == []
    assert comfy.engine.executed_prompts == 1
    # The poll loop ended with the job.
    [execution] = executions_of(dev_stack, result.job_id)
    assert execution["status"] != "RUNNING"


# --------------------------------------------------------------------------- 4. cancel


async def start_following(client: ComfyrouteClient, job_id: str) -> asyncio.Task[JobResult]:
    """``follow`` in a task, returned once run_job's answer (the first job_update) is in: by then
    the job is recorded, submitted and its poll loop started."""
    answered = asyncio.Event()

    def on_message(msg: ServerMessage) -> None:
        if isinstance(msg, JobUpdate):
            answered.set()

    task = asyncio.create_task(client.follow(job_id, timeout=FOLLOW_TIMEOUT, on_message=on_message))
    waiter = asyncio.create_task(answered.wait())
    try:
        await asyncio.wait({task, waiter}, timeout=REQUEST_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    assert answered.is_set(), f"no answer to run_job {job_id} within {REQUEST_TIMEOUT:g}s"
    return task


def test_cancel_while_queued_removes_the_prompt_from_the_queue(
    dev_stack: DevStack, comfy: FakeComfyUI, token: str
) -> None:
    comfy.pause()

    async def scenario() -> tuple[JobResult, str]:
        async with connect(dev_stack, token) as client:
            job_id = await client.run_job(graph=example_graph("empty_invert_save.json"))
            following = await start_following(client, job_id)
            [prompt_id] = pending_ids(comfy)
            await client.cancel_job(job_id)
            return await following, prompt_id

    result, prompt_id = run(scenario())
    assert result.status is JobStatus.CANCELLED
    assert prompt_id in comfy.deletes
    assert pending_ids(comfy) == []
    # Stopped. AWS shows ABORTED at once; moto only once the task in flight returns, and then
    # as that task's outcome makes it: the Follow window ends at its next look (a few seconds
    # of silence at most) having seen the cancelled record.
    statuses = lambda: [e["status"] for e in executions_of(dev_stack, result.job_id)]  # noqa: E731
    run(eventually(lambda: len(statuses()) == 1 and "RUNNING" not in statuses(), "the execution stopped", timeout=30))
    # Released, the queue has nothing left to run.
    comfy.resume()
    assert comfy.wait_idle(WAIT_TIMEOUT)
    assert comfy.engine.executed_prompts == 0


def test_cancel_during_the_submit_still_removes_the_prompt(
    dev_stack: DevStack, comfy: FakeComfyUI, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cancel that lands after ComfyUI took the prompt but before run_job recorded the prompt's
    id (a client cancelling at once) must not leave the prompt behind on the executor."""
    comfy.pause()
    accepted, release = hold_prompt_answers(comfy, monkeypatch)

    async def scenario() -> JobResult:
        async with connect(dev_stack, token) as client:
            job_id = await client.run_job(graph=example_graph("empty_invert_save.json"))
            await eventually(accepted.is_set, "ComfyUI takes the prompt")
            [prompt_id] = pending_ids(comfy)
            await client.cancel_job(job_id)
            try:
                result = await follow(client, job_id)
            finally:
                release.set()
            await eventually(lambda: prompt_id in comfy.deletes, "the prompt is removed from ComfyUI's queue")
            await eventually(
                lambda: all(e["status"] != "RUNNING" for e in executions_of(dev_stack, job_id)),
                "no poll loop runs for the job",
            )
            return result

    result = run(scenario())
    assert result.status is JobStatus.CANCELLED
    assert pending_ids(comfy) == []
    comfy.resume()
    assert comfy.wait_idle(WAIT_TIMEOUT)
    assert comfy.engine.executed_prompts == 0


def test_cancel_while_running_interrupts_comfyui(dev_stack: DevStack, make_token: TokenMaker) -> None:
    # Far longer than any bound below: only the interrupt can end this run in time.
    with FakeComfyUI(run_seconds=120) as slow:
        token = make_token(slow)

        async def scenario() -> tuple[JobResult, str]:
            async with connect(dev_stack, token) as client:
                job_id = await client.run_job(graph=example_graph("empty_invert_save.json"))
                following = await start_following(client, job_id)
                [prompt_id] = await eventually(lambda: running_ids(slow), "the prompt runs on ComfyUI")
                await client.cancel_job(job_id)
                result = await following
                await eventually(lambda: slow.engine.history(prompt_id), "ComfyUI records the interrupted prompt")
                return result, prompt_id

        result, prompt_id = run(scenario())
        assert result.status is JobStatus.CANCELLED
        assert prompt_id in slow.interrupts
        messages = slow.engine.history(prompt_id)[prompt_id]["status"]["messages"]
        assert "execution_interrupted" in [name for name, _ in messages]
        assert running_ids(slow) == []
        assert result.outputs == []


# --------------------------------------------------------------------------- 5. disconnect


def test_reconnect_mid_job_then_get_job_and_follow_on_the_new_connection(
    dev_stack: DevStack, comfy: FakeComfyUI, token: str, tmp_path: Path
) -> None:
    comfy.pause()  # the job stays queued until the client is back

    async def scenario() -> tuple[JobResult, Any, Any]:
        async with connect(dev_stack, token) as first:
            job_id = await first.run_job(graph=example_graph("empty_invert_save.json"))
            (await start_following(first, job_id)).cancel()
        # Gone. A new connection asks where the job is, which also moves its updates here.
        async with connect(dev_stack, token, poll_interval=NO_CATCH_UP) as second:
            during = await second.get_job(job_id)
            comfy.resume()
            result = await follow(second, job_id)
            after = await second.get_job(job_id)
            await assert_outputs_match(after.outputs, comfy, tmp_path)
            return result, during, after

    result, during, after = run(scenario())
    assert not during.status.terminal
    assert result.status is JobStatus.COMPLETED
    assert after.status is JobStatus.COMPLETED
    assert len(after.outputs) == len(result.outputs) == 1
    assert after.outputs[0].value.filename == result.outputs[0].value.filename


def test_reconnect_before_run_job_answered_keeps_the_updates_on_the_new_connection(
    dev_stack: DevStack, comfy: FakeComfyUI, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first connection drops while its run_job is still submitting; the new connection's
    get_job moves the job's updates to it, and the late run_job must not move them back."""
    accepted, release = hold_prompt_answers(comfy, monkeypatch)

    async def scenario() -> tuple[JobResult, Any]:
        async with connect(dev_stack, token) as first:
            job_id = await first.run_job(graph=example_graph("empty_invert_save.json"))
            await eventually(accepted.is_set, "ComfyUI takes the prompt")
        async with connect(dev_stack, token, poll_interval=NO_CATCH_UP) as second:
            try:
                during = await second.get_job(job_id)
            finally:
                release.set()
            return await follow(second, job_id), during

    result, during = run(scenario())
    assert during.status is JobStatus.QUEUED
    assert result.status is JobStatus.COMPLETED
    assert len(result.outputs) == 1


def test_job_finishing_while_disconnected_is_complete_on_get_job(
    dev_stack: DevStack, comfy: FakeComfyUI, token: str, tmp_path: Path
) -> None:
    comfy.pause()

    async def scenario() -> Any:
        async with connect(dev_stack, token) as first:
            job_id = await first.run_job(graph=example_graph("empty_invert_save.json"))
            [prompt_id] = await eventually(lambda: pending_ids(comfy), "the prompt waits in ComfyUI's queue")
        comfy.resume()  # it runs and finishes while nobody is connected
        await eventually(lambda: comfy.engine.history(prompt_id), "ComfyUI finishes the prompt")
        async with connect(dev_stack, token) as second:
            view = await second.get_job(job_id)
            deadline = time.monotonic() + FOLLOW_TIMEOUT
            while not view.status.terminal:
                assert time.monotonic() < deadline, f"job {job_id} still {view.status} after {FOLLOW_TIMEOUT:g}s"
                await asyncio.sleep(0.2)
                view = await second.get_job(job_id)
            await assert_outputs_match(view.outputs, comfy, tmp_path)
            return view

    view = run(scenario())
    assert view.status is JobStatus.COMPLETED
    assert [o.node_id for o in view.outputs] == ["3"]


def test_follow_reconnects_by_itself_when_the_server_drops_the_connection(
    dev_stack: DevStack, comfy: FakeComfyUI, token: str, tmp_path: Path
) -> None:
    comfy.pause()

    async def scenario() -> JobResult:
        before = connection_ids(dev_stack)
        async with connect(dev_stack, token) as client:
            [conn_id] = connection_ids(dev_stack) - before
            job_id = await client.run_job(graph=example_graph("empty_invert_save.json"))
            await eventually(lambda: pending_ids(comfy), "the prompt waits in ComfyUI's queue")
            following = asyncio.create_task(follow(client, job_id))
            # The Management API's DELETE closes the socket from the server's side.
            resp = await asyncio.to_thread(
                requests.delete, f"{dev_stack.http_url}/@connections/{conn_id}", timeout=REQUEST_TIMEOUT
            )
            assert resp.status_code == 204
            comfy.resume()
            result = await following
            await assert_outputs_match(result.outputs, comfy, tmp_path)
            assert client.connected
            return result

    result = run(scenario())
    assert result.status is JobStatus.COMPLETED
    assert len(result.outputs) == 1


# --------------------------------------------------------------------------- 6-7. users and tokens


def test_two_users_see_only_their_own_jobs(dev_stack: DevStack, comfy: FakeComfyUI, make_token: TokenMaker) -> None:
    graph = example_graph("empty_save.json")
    with FakeComfyUI(run_seconds=0.2) as bobs_comfy:
        alice, bob = make_token(comfy), make_token(bobs_comfy)
        bobs_comfy.pause()  # bob's job is still running while alice pokes at it

        async def scenario() -> dict[str, Any]:
            async with connect(dev_stack, alice) as a, connect(dev_stack, bob) as b:
                bobs_job = await b.run_job(graph=graph)
                await eventually(lambda: pending_ids(bobs_comfy), "bob's prompt waits in his ComfyUI's queue")
                alices_job = await a.run_job(graph=graph)
                with pytest.raises(RequestError) as refused_get:
                    await a.get_job(bobs_job)
                await a.cancel_job(bobs_job)
                refused_cancel = await next_message(a)
                bobs_comfy.resume()
                alices, bobs = await asyncio.gather(follow(a, alices_job), follow(b, bobs_job))
                return {
                    "alices": alices,
                    "bobs": bobs,
                    "refused_get": refused_get.value,
                    "refused_cancel": refused_cancel,
                    "alice_lists": await a.list_jobs(),
                    "bob_lists": await b.list_jobs(),
                }

        r = run(scenario())
        assert r["alices"].status is JobStatus.COMPLETED
        assert r["bobs"].status is JobStatus.COMPLETED  # alice's cancel did nothing to it
        alices_job, bobs_job = r["alices"].job_id, r["bobs"].job_id
        assert (r["refused_get"].code, r["refused_get"].request) == ("not_found", "get_job")
        assert isinstance(r["refused_cancel"], ErrorMessage)
        assert (r["refused_cancel"].code, r["refused_cancel"].request) == ("not_found", "cancel_job")
        assert r["refused_cancel"].job_id == bobs_job
        assert job_ids(r["alice_lists"]) == {alices_job}
        assert job_ids(r["bob_lists"]) == {bobs_job}
        # Each user's job ran on the ComfyUI their own secret names.
        assert len(comfy.submitted) == len(bobs_comfy.submitted) == 1
        assert bobs_comfy.deletes == []
        assert bobs_comfy.interrupts == []


def test_a_bad_token_is_refused_at_the_handshake(dev_stack: DevStack) -> None:
    bad = f"crt_{uuid.uuid4().hex}{uuid.uuid4().hex}"
    before = connection_ids(dev_stack)

    async def scenario() -> tuple[AuthError, bool]:
        client = connect(dev_stack, bad)
        with pytest.raises(AuthError) as refused:
            await client.connect()
        return refused.value, client.connected

    error, connected = run(scenario())
    assert error.status in (401, 403)
    assert bad not in str(error)
    assert not connected
    # No connection was recorded (earlier tests' sockets may still be leaving: compare new ones).
    assert connection_ids(dev_stack) - before == set()


# --------------------------------------------------------------------------- 8. RunPod


def runpod_settings(endpoint_id: str) -> dict[str, str]:
    return {"comfy_executor": "runpod", "runpod_endpoint_id": endpoint_id}


def test_runpod_job_completes_with_the_workers_bytes(
    dev_stack: DevStack, comfy: FakeComfyUI, token: str, runpod_endpoint: EndpointMaker, tmp_path: Path
) -> None:
    graph = example_graph("empty_invert_save.json")
    with FakeRunPod(comfy=comfy) as runpod:
        endpoint_id = runpod_endpoint(runpod)

        async def scenario() -> JobResult:
            async with connect(dev_stack, token) as client:
                job_id = await client.run_job(graph=graph, settings=runpod_settings(endpoint_id))
                result = await follow(client, job_id)
                await assert_outputs_match(result.outputs, comfy, tmp_path)
                return result

        result = run(scenario())
        assert result.status is JobStatus.COMPLETED, result.error
        assert result.executor is ExecutorKind.RUNPOD
        [submitted] = runpod.runs
        assert submitted["input"]["workflow"] == prompt_of(graph)
        # worker-comfyui names files, not nodes; the one file is SaveImage's "test" prefix.
        [out] = result.outputs
        assert out.value.filename.startswith("test_")
        assert out.value.content_type == "image/png"


def test_runpod_failure_reports_the_workers_error(
    dev_stack: DevStack, token: str, runpod_endpoint: EndpointMaker
) -> None:
    with FakeRunPod(fail_with="GPU OOM") as runpod:
        endpoint_id = runpod_endpoint(runpod)

        async def scenario() -> JobResult:
            async with connect(dev_stack, token) as client:
                graph = example_graph("empty_invert_save.json")
                return await follow(client, await client.run_job(graph=graph, settings=runpod_settings(endpoint_id)))

        result = run(scenario())
        assert result.status is JobStatus.FAILED
        assert result.executor is ExecutorKind.RUNPOD
        assert result.error is not None
        assert "GPU OOM" in result.error
        assert len(runpod.runs) == 1


def test_runpod_rate_limit_is_retried(
    dev_stack: DevStack, comfy: FakeComfyUI, token: str, runpod_endpoint: EndpointMaker, tmp_path: Path
) -> None:
    with FakeRunPod(comfy=comfy, rate_limit_first=1) as runpod:
        endpoint_id = runpod_endpoint(runpod)

        async def scenario() -> JobResult:
            async with connect(dev_stack, token) as client:
                graph = example_graph("empty_invert_save.json")
                result = await follow(client, await client.run_job(graph=graph, settings=runpod_settings(endpoint_id)))
                await assert_outputs_match(result.outputs, comfy, tmp_path)
                return result

        result = run(scenario())
        assert result.status is JobStatus.COMPLETED, result.error
        assert runpod.requests["rate_limited"] == 1
        # The refused /run was sent again, and only one job came of it.
        assert runpod.requests["run"] == 1
        assert len(runpod.jobs) == 1


# --------------------------------------------------------------------------- 9. idempotency


def test_the_same_job_id_twice_runs_one_job(dev_stack: DevStack, comfy: FakeComfyUI, token: str) -> None:
    graph = example_graph("empty_invert_save.json")
    job_id = f"e2e-{uuid.uuid4().hex}"

    async def scenario() -> tuple[JobResult, JobResult, list[Any]]:
        async with connect(dev_stack, token) as client:
            assert await client.run_job(graph=graph, job_id=job_id) == job_id
            assert await client.run_job(graph=graph, job_id=job_id) == job_id
            first = await follow(client, job_id)
        # Sent again later, from another connection (a client that reconnected and resent).
        async with connect(dev_stack, token) as again:
            await again.run_job(graph=graph, job_id=job_id)
            second = await follow(again, job_id)
            return first, second, await again.list_jobs()

    first, second, listed = run(scenario())
    assert first.status is JobStatus.COMPLETED, first.error
    assert second.status is JobStatus.COMPLETED
    assert [o.value.filename for o in second.outputs] == [o.value.filename for o in first.outputs]
    assert len(comfy.submitted) == 1
    assert comfy.engine.executed_prompts == 1
    assert [v.job_id for v in listed] == [job_id]
    assert len(executions_of(dev_stack, job_id)) == 1


# --------------------------------------------------------------------------- 10. saved workflow


def test_saved_workflow_runs_on_runpod_by_id_alone(
    dev_stack: DevStack,
    comfy: FakeComfyUI,
    token: str,
    runpod_endpoint: EndpointMaker,
    tmp_path: Path,
) -> None:
    graph = example_graph("empty_invert_save.json")
    workflow_id = f"wf-{uuid.uuid4().hex[:8]}"
    with FakeComfyUI(run_seconds=0.2) as gpu_comfy, FakeRunPod(comfy=gpu_comfy) as runpod:
        endpoint_id = runpod_endpoint(runpod)

        async def scenario() -> tuple[Any, JobResult]:
            async with connect(dev_stack, token) as client:
                saved = await client.save_workflow(workflow_id, graph=graph, settings=runpod_settings(endpoint_id))
                result = await follow(client, await client.run_job(workflow_id=workflow_id))
                await assert_outputs_match(result.outputs, gpu_comfy, tmp_path)
                return saved, result

        saved, result = run(scenario())
        assert saved.settings == runpod_settings(endpoint_id)
        assert result.status is JobStatus.COMPLETED, result.error
        assert result.executor is ExecutorKind.RUNPOD
        assert result.workflow_id == workflow_id
        [submitted] = runpod.runs
        assert submitted["input"]["workflow"] == prompt_of(graph)
        # The user's own ComfyUI (the local executor) was not used.
        assert comfy.submitted == []
        assert len(gpu_comfy.submitted) == 1
