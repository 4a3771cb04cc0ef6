"""The ComfyUI executor's progress peek: websocket messages -> Progress (a pure fold, checked on
the recorded ``ws_sequence_*`` of a real ComfyUI 0.3.64 in tests/fixtures/comfyui), and
``status()`` opening the prompt's websocket on a loopback FakeComfyUI."""

from __future__ import annotations

import json
import logging
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from fakes import FakeComfyUI
from fakes.comfyui.media import PNG_MAGIC
from fakes.loopback import Handler as _Handler
from fakes.loopback import Reply as _Reply
from support.recordings import load_recording

from comfyroute.executors import comfyui
from comfyroute.executors.base import ExecutorStatus, Progress
from comfyroute.executors.comfyui import (
    ComfyUIExecutor,
    ProgressTracker,
    progress_from_messages,
    websocket_url,
)
from comfyroute.protocol import JobStatus

SEQUENCES = ["ws_sequence_tiny", "ws_sequence_cached", "ws_sequence_runtime_error", "ws_sequence_interrupt"]
SEQUENCES += ["ws_sequence_ws_save"]
SECRET = "cf-secret-5c0ffee1d"
HEADERS = {"CF-Access-Client-Id": "client.access", "CF-Access-Client-Secret": SECRET}
# Three nodes, as in the recorded ws_sequence_tiny (EmptyImage -> ImageInvert -> SaveImage).
CHAIN = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "peek"}},
}
DEADLINE = 10.0


# --------------------------------------------------------------------------- recordings


def frames(name: str) -> list[str | bytes]:
    """A recording as the frames the socket delivered. Binary frames were recorded as their
    header fields only: rebuild one with that header and PNG magic (the executor skips them)."""
    out: list[str | bytes] = []
    for entry in load_recording(name):
        if entry["kind"] == "binary":
            header = entry["event_type"].to_bytes(4, "big") + entry["format"].to_bytes(4, "big")
            out.append(header + bytes.fromhex(entry["magic"]) + bytes(max(0, entry["len"] - 16)))
        else:
            out.append(json.dumps(entry["msg"]))
    return out


def prompt_of(name: str) -> str:
    for entry in load_recording(name):
        if entry["kind"] == "text" and "prompt_id" in entry["msg"]["data"]:
            return str(entry["msg"]["data"]["prompt_id"])
    raise AssertionError(f"{name} names no prompt")


def after_each(name: str, prompt_id: str | None = None) -> list[tuple[str | bytes, Progress | None]]:
    """(frame, progress after it) for every frame of a recording, fed in order."""
    tracker = ProgressTracker(prompt_id or prompt_of(name))
    seen = []
    for frame in frames(name):
        tracker.feed(frame)
        seen.append((frame, tracker.progress))
    return seen


def message(frame: str | bytes) -> dict[str, Any] | None:
    return None if isinstance(frame, bytes) else json.loads(frame)


@pytest.mark.parametrize("name", SEQUENCES)
def test_each_recorded_executing_node_becomes_the_progress(name: str) -> None:
    checked = 0
    for frame, progress in after_each(name):
        msg = message(frame)
        if msg and msg["type"] == "executing" and msg["data"]["node"] is not None:
            assert progress is not None
            assert progress.node_id == msg["data"]["node"]
            assert progress.max > 0
            checked += 1
    # In ws_sequence_cached every node came from cache: no node ran, so there is nothing to check.
    assert checked > 0 or name == "ws_sequence_cached"


@pytest.mark.parametrize("name", SEQUENCES)
def test_a_finished_prompt_has_no_progress(name: str) -> None:
    assert progress_from_messages(frames(name), prompt_of(name)) is None


def test_cached_prompt_never_shows_a_running_node() -> None:
    assert all(progress is None for _, progress in after_each("ws_sequence_cached"))


def test_recorded_progress_messages_give_value_and_max_and_previews_change_nothing() -> None:
    seen = after_each("ws_sequence_ws_save")
    steps = [(message(f), p) for f, p in seen if not isinstance(f, bytes) and message(f)["type"] == "progress"]
    assert [(m["data"]["value"], m["data"]["max"]) for m, _ in steps] == [(0, 2), (1, 2)]
    assert [p for _, p in steps] == [Progress(node_id="2", value=0, max=2), Progress(node_id="2", value=1, max=2)]
    binaries = [i for i, (f, _) in enumerate(seen) if isinstance(f, bytes)]
    assert len(binaries) == 2
    for i in binaries:
        assert seen[i][0][8:16] == PNG_MAGIC
        assert seen[i][1] == seen[i - 1][1]  # a preview frame leaves the progress as it was


def test_progress_state_gives_the_running_nodes_value_and_max() -> None:
    seen = after_each("ws_sequence_ws_save")
    states = [p for f, p in seen if not isinstance(f, bytes) and message(f)["type"] == "progress_state"]
    # running 0/1, node 1 finished (keeps it), node 2 running 0/1, 0/2, 1/2, node 2 finished (keeps 1/2)
    assert states[0] == Progress(node_id="1", value=0, max=1)
    assert Progress(node_id="2", value=1, max=2) in states
    assert states[-1] == Progress(node_id="2", value=1, max=2)


def test_interrupted_prompt_shows_the_node_it_stopped_at_until_the_interrupt() -> None:
    seen = after_each("ws_sequence_interrupt")
    types = [(message(f) or {}).get("type") for f, _ in seen]
    index = types.index("execution_interrupted")
    assert seen[index - 1][1] == Progress(node_id="3", value=0, max=1)
    assert all(progress is None for _, progress in seen[index:])


@pytest.mark.parametrize("name", ["ws_sequence_tiny", "ws_sequence_ws_save"])
def test_messages_of_another_prompt_are_ignored(name: str) -> None:
    assert all(progress is None for _, progress in after_each(name, prompt_id="someone-elses-prompt"))


def test_the_node_comfyui_resends_on_connect_counts_without_a_prompt_id() -> None:
    connect = [
        {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 1}}, "sid": "comfyroute-j1"}},
        {"type": "executing", "data": {"node": "4"}},
    ]
    assert progress_from_messages([json.dumps(m) for m in connect], "j1") == Progress(node_id="4", value=0, max=1)


def test_newest_message_wins_but_a_repeat_of_the_same_node_does_not_reset_it() -> None:
    pid = "j1"
    step = {"type": "progress", "data": {"value": 7, "max": 20, "node": "3", "prompt_id": pid}}
    same = {"type": "executing", "data": {"node": "3", "display_node": "3", "prompt_id": pid}}
    older_state = {
        "type": "progress_state",
        "data": {"prompt_id": pid, "nodes": {"3": {"value": 2, "max": 20, "state": "running"}}},
    }
    next_node = {"type": "executing", "data": {"node": "4", "display_node": "4", "prompt_id": pid}}
    assert progress_from_messages([step, same], pid) == Progress(node_id="3", value=7, max=20)
    assert progress_from_messages([step, older_state], pid) == Progress(node_id="3", value=7, max=20)
    # Once node 4 runs, node 3's step count is stale.
    assert progress_from_messages([step, next_node], pid) == Progress(node_id="4", value=0, max=1)


def test_progress_state_follows_the_node_already_followed_when_several_run() -> None:
    pid = "j1"
    running = {
        "type": "progress_state",
        "data": {
            "prompt_id": pid,
            "nodes": {
                "5": {"value": 3, "max": 10, "state": "running"},
                "6": {"value": 1, "max": 4, "state": "running", "display_node_id": "6"},
                "7": {"value": 1, "max": 1, "state": "finished"},
            },
        },
    }
    executing_5 = {"type": "executing", "data": {"node": "5", "prompt_id": pid}}
    assert progress_from_messages([executing_5, running], pid) == Progress(node_id="5", value=3, max=10)
    assert progress_from_messages([running], pid) == Progress(node_id="6", value=1, max=4)


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "[1, 2]",
        json.dumps({"type": "progress", "data": {"value": "many", "max": 2, "prompt_id": "j1"}}),
        json.dumps({"type": "progress", "data": {"value": 1, "max": 0, "prompt_id": "j1"}}),
        json.dumps({"type": "progress_state", "data": {"prompt_id": "j1", "nodes": {"1": {"state": "running"}}}}),
        json.dumps({"type": "executing", "data": {"node": {"nested": True}, "prompt_id": "j1"}}),
        json.dumps({"data": {}}),
        b"\x00\x00\x00\x01\x00\x00\x00\x02",
    ],
)
def test_frames_that_say_nothing_usable_are_skipped(frame: str | bytes) -> None:
    executing = json.dumps({"type": "executing", "data": {"node": "2", "prompt_id": "j1"}})
    assert progress_from_messages([executing, frame], "j1") == Progress(node_id="2", value=0, max=1)
    assert progress_from_messages([frame], "j1") is None


@pytest.mark.parametrize(
    ("base", "url"),
    [
        ("http://127.0.0.1:8188", "ws://127.0.0.1:8188/ws?clientId=comfyroute-j1"),
        ("https://tunnel.example.com/a/comfy", "wss://tunnel.example.com/a/comfy/ws?clientId=comfyroute-j1"),
        ("http://[::1]:8188", "ws://[::1]:8188/ws?clientId=comfyroute-j1"),
    ],
)
def test_websocket_url_keeps_address_prefix_and_scheme(base: str, url: str) -> None:
    assert websocket_url(base, "comfyroute-j1") == url


def test_websocket_url_quotes_the_client_id() -> None:
    assert websocket_url("http://h:1", "a b&c=d/e").endswith("/ws?clientId=a%20b%26c%3Dd%2Fe")


# --------------------------------------------------------------------------- against the fake


def wait_for(look: Callable[[], ExecutorStatus], done: Callable[[ExecutorStatus], bool]) -> ExecutorStatus:
    deadline = time.monotonic() + DEADLINE
    while True:
        status = look()
        if done(status):
            return status
        if status.state.terminal or time.monotonic() > deadline:
            raise AssertionError(f"condition not met; last status {status!r}")
        time.sleep(0.02)


@pytest.fixture
def slow_comfy() -> Iterator[FakeComfyUI]:
    with FakeComfyUI(node_seconds=0.4) as fake:
        yield fake


def test_submit_queues_each_job_with_its_own_client_id(slow_comfy: FakeComfyUI) -> None:
    executor = ComfyUIExecutor(slow_comfy.addr, client_id="runner")
    executor.submit(CHAIN, "job-a")
    executor.submit(CHAIN, "job-b")
    queue = slow_comfy.engine.queue()
    items = queue["queue_running"] + queue["queue_pending"]
    assert {item[1]: item[3]["client_id"] for item in items} == {"job-a": "runner-job-a", "job-b": "runner-job-b"}
    assert executor.client_id_for("job-a") == "runner-job-a"


def test_running_prompt_reports_its_node(slow_comfy: FakeComfyUI) -> None:
    executor = ComfyUIExecutor(slow_comfy.addr, progress_peek_seconds=0.2)
    job = f"peek-{uuid.uuid4().hex[:8]}"
    executor.submit(CHAIN, job)
    status = wait_for(lambda: executor.status(job), lambda s: s.progress is not None)
    assert status.state is JobStatus.RUNNING
    assert status.progress is not None
    assert status.progress.node_id in CHAIN
    assert (status.progress.value, status.progress.max) == (0, 1)
    assert f"comfyroute-{job}" in slow_comfy.ws_clients
    assert wait_for(lambda: executor.status(job), lambda s: s.state.terminal).state is JobStatus.COMPLETED


def test_sampler_like_steps_give_value_and_max() -> None:
    with FakeComfyUI(node_seconds=0.6, progress_steps=3) as fake:
        executor = ComfyUIExecutor(fake.addr, progress_peek_seconds=0.5)
        executor.submit(CHAIN, "steps-1")
        status = wait_for(lambda: executor.status("steps-1"), lambda s: s.progress is not None and s.progress.max == 3)
        assert status.progress is not None
        assert status.progress.node_id in CHAIN
        assert 1 <= status.progress.value <= 3


def test_peek_off_never_opens_a_websocket(slow_comfy: FakeComfyUI) -> None:
    executor = ComfyUIExecutor(slow_comfy.addr, progress_peek_seconds=0)
    executor.submit(CHAIN, "off-1")
    status = wait_for(lambda: executor.status("off-1"), lambda s: s.state is JobStatus.RUNNING)
    assert status.progress is None
    assert slow_comfy.ws_clients == []
    assert ("GET", "/ws") not in slow_comfy.requests


def test_prompt_of_another_client_is_never_peeked_at(slow_comfy: FakeComfyUI) -> None:
    # Connecting with a browser tab's clientId would take its events away from it.
    body = {"prompt": CHAIN, "client_id": "browser-tab", "prompt_id": "theirs-1"}
    assert requests.post(f"{slow_comfy.url}/prompt", json=body, timeout=5).status_code == 200
    executor = ComfyUIExecutor(slow_comfy.addr)
    status = wait_for(lambda: executor.status("theirs-1"), lambda s: s.state is JobStatus.RUNNING)
    assert status.progress is None
    assert slow_comfy.ws_clients == []


class NoWebSocketComfy(FakeComfyUI):
    """A reverse proxy that does not pass websocket upgrades on."""

    def _websocket(self, h: _Handler, path: str, query: dict[str, str], body: bytes) -> None:
        raise _Reply(403, b"websockets not allowed here", "text/plain")


def test_refused_websocket_leaves_a_plain_running_status(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger=comfyui.logger.name)
    with NoWebSocketComfy(node_seconds=0.4) as fake:
        executor = ComfyUIExecutor(fake.addr, headers=HEADERS)
        executor.submit(CHAIN, "refused-1")
        status = wait_for(lambda: executor.status("refused-1"), lambda s: s.state is JobStatus.RUNNING)
        assert status == ExecutorStatus(state=JobStatus.RUNNING)
        assert ("GET", "/ws") in fake.requests
    (failed, *_) = [r for r in caplog.records if r.getMessage() == "ComfyUI progress peek failed"]
    assert failed.levelno == logging.DEBUG
    assert failed.error == "InvalidStatus"  # the 403
    assert failed.prompt_id == "refused-1"
    assert SECRET not in caplog.text
    assert all(SECRET not in str(vars(r)) for r in caplog.records)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_websocket_leaves_a_plain_running_status(
    slow_comfy: FakeComfyUI, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = closed_port()
    monkeypatch.setattr(comfyui, "websocket_url", lambda base, cid: f"ws://127.0.0.1:{port}/ws?clientId={cid}")
    executor = ComfyUIExecutor(slow_comfy.addr)
    executor.submit(CHAIN, "unreachable-1")
    status = wait_for(lambda: executor.status("unreachable-1"), lambda s: s.state is JobStatus.RUNNING)
    assert status == ExecutorStatus(state=JobStatus.RUNNING)


def test_a_server_that_never_answers_the_handshake_is_given_up_on(
    slow_comfy: FakeComfyUI, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as silent:  # listens, never accepts: TCP connects, no handshake answer
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        monkeypatch.setattr(comfyui, "websocket_url", lambda base, cid: f"ws://127.0.0.1:{port}/ws?clientId={cid}")
        monkeypatch.setattr(comfyui, "PEEK_CONNECT_TIMEOUT", 0.2)
        executor = ComfyUIExecutor(slow_comfy.addr)
        executor.submit(CHAIN, "silent-1")
        status = wait_for(lambda: executor.status("silent-1"), lambda s: s.state is JobStatus.RUNNING)
        assert status == ExecutorStatus(state=JobStatus.RUNNING)


def test_tunnel_headers_go_on_the_websocket_handshake_and_nowhere_in_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger=comfyui.logger.name)
    caplog.set_level(logging.DEBUG, logger="websockets")
    with FakeComfyUI(node_seconds=0.4, required_headers=HEADERS, prefix="/comfy") as fake:
        executor = ComfyUIExecutor(fake.url, headers=HEADERS)
        executor.submit(CHAIN, "gated-1")
        # The fake answers 401 to a handshake without both headers: progress proves they went.
        status = wait_for(lambda: executor.status("gated-1"), lambda s: s.progress is not None)
        assert status.progress is not None
        assert ("GET", "/comfy/ws") in fake.requests
        assert "comfyroute-gated-1" in fake.ws_clients
    assert SECRET not in caplog.text
    assert all(SECRET not in str(vars(r)) for r in caplog.records)
