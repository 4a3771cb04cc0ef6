"""The Follow task against a loopback ComfyUI over a real websocket: node updates, sampler
steps and outputs pushed as they happen, outputs before the terminal update, windows, the poll
fallback when the socket cannot be used, and an unreachable ComfyUI told at once."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from aws_lambda_powertools import Logger
from fakes import FakeComfyUI
from support.memory import CONN, MemoryPorts, connected_ports, key, stored_job

from comfyroute.executors.comfyui import ComfyUIExecutor
from comfyroute.jobs.follow import poll_job
from comfyroute.jobs.follow_stream import follow_job
from comfyroute.protocol import ExecutorKind, JobStatus

Logger(service="comfyroute")  # the rules' child loggers need their parent

PROMPT = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "follow"}},
}
CLASSES = {nid: node["class_type"] for nid, node in PROMPT.items()}


def ports_for(comfy: FakeComfyUI, **config: object) -> MemoryPorts:
    ports = connected_ports()
    ports.config = ports.config._replace(**config)
    ports.executors = lambda kind, user, endpoint: ComfyUIExecutor(comfy.url)  # type: ignore[assignment]
    return ports


def submit(ports: MemoryPorts, comfy: FakeComfyUI, job_id: str = "j1") -> None:
    ComfyUIExecutor(comfy.url).submit(PROMPT, key(job_id))
    stored_job(ports, job_id, executor=ExecutorKind.LOCAL, executor_job_id=key(job_id), node_classes=CLASSES)


@pytest.fixture
def comfy() -> Iterator[FakeComfyUI]:
    with FakeComfyUI(node_seconds=0.15, progress_steps=4) as server:
        yield server


def test_node_updates_steps_and_outputs_arrive_as_they_happen_and_the_end_comes_last(comfy: FakeComfyUI) -> None:
    ports = ports_for(comfy, follow_progress_per_second=1000.0)
    submit(ports, comfy)
    answer = follow_job(ports, key("j1"), 0)
    assert (answer.done, answer.notified, answer.status, answer.follows) == (True, True, JobStatus.COMPLETED, 1)
    sent = ports.pusher.messages(CONN)
    types = [m["type"] for m in sent]
    assert types[-1] == "job_update"
    assert sent[-1]["status"] == "completed"
    assert sent[-1]["output_count"] == 1
    # Every node ran and finished, in order, each announced once per state, with its class.
    nodes = [(m["node_id"], m["status"], m["node_type"]) for m in sent if m["type"] == "node_update"]
    assert nodes == [
        ("1", "running", "comfy.EmptyImage"),
        ("1", "completed", "comfy.EmptyImage"),
        ("2", "running", "comfy.ImageInvert"),
        ("2", "completed", "comfy.ImageInvert"),
        ("3", "running", "comfy.SaveImage"),
        ("3", "completed", "comfy.SaveImage"),
    ]
    # Every sampler-like step of every node (the fake reports 4 per node), none lost.
    steps = [(m["node_id"], m["progress"], m["total"]) for m in sent if m["type"] == "node_progress"]
    assert [s for s in steps if s[0] == "1"] == [("1", float(v), 4.0) for v in (1, 2, 3, 4)]
    # The output went out as soon as node 3 ran: before node 3's completion and the end.
    out = types.index("output_update")
    assert out < types.index("job_update", out)
    record = ports.jobs.records[key("j1")]
    assert record.status is JobStatus.COMPLETED
    (stored,) = record.outputs
    assert stored.key is not None
    assert ports.outputs.objects[stored.key] == comfy.file_bytes(stored.filename)
    assert ports.outputs.streamed == 1  # from /view to the store in parts, not whole in memory
    assert sent[out]["node_name"] == "SaveImage"
    assert comfy.ws_clients == [f"comfyroute-{key('j1')}"]


def test_progress_is_coalesced_to_the_configured_rate(comfy: FakeComfyUI) -> None:
    ports = ports_for(comfy, follow_progress_per_second=2.0)
    submit(ports, comfy)
    follow_job(ports, key("j1"), 0)
    steps = [m for m in ports.pusher.messages(CONN) if m["type"] == "node_progress"]
    # 12 steps in ~0.45 s at 2 a second: each node's last step always, few in between.
    assert 3 <= len(steps) < 12
    for node in "123":
        assert [s["progress"] for s in steps if s["node_id"] == node][-1] == 4.0


def test_a_window_that_ends_first_is_followed_by_the_next_without_repeating_a_node(comfy: FakeComfyUI) -> None:
    ports = ports_for(comfy, follow_window_seconds=0.2)
    submit(ports, comfy)
    first = follow_job(ports, key("j1"), 0)
    assert (first.done, first.next) == (False, "follow")
    assert ports.jobs.records[key("j1")].nodes  # carried to the next window
    follows = 1
    answer = first
    while not answer.done:
        answer = follow_job(ports, key("j1"), follows)
        follows += 1
    assert answer.notified
    assert answer.status is JobStatus.COMPLETED
    updates = [(m["node_id"], m["status"]) for m in ports.pusher.messages(CONN, "node_update")]
    assert len(updates) == len(set(updates)) == 6


def test_a_refused_websocket_hands_the_job_to_polling(comfy: FakeComfyUI) -> None:
    comfy.websocket = False
    ports = ports_for(comfy)
    submit(ports, comfy)
    answer = follow_job(ports, key("j1"), 0)
    assert (answer.done, answer.next, answer.wait_seconds) == (False, "wait", 1)
    assert ports.jobs.records[key("j1")].follow_by == "poll"
    polls = 0
    while True:
        result = poll_job(ports, key("j1"), polls)
        polls += 1
        assert result.next is None  # never back to the socket
        if result.done:
            break
    assert ports.jobs.records[key("j1")].status is JobStatus.COMPLETED


def test_a_dropped_websocket_that_cannot_be_reopened_hands_the_job_to_polling() -> None:
    with FakeComfyUI(node_seconds=0.4) as comfy:
        ports = ports_for(comfy)
        submit(ports, comfy)

        def drop() -> None:
            comfy.websocket = False
            comfy.drop_websockets()

        timer = threading.Timer(0.3, drop)
        timer.start()
        try:
            answer = follow_job(ports, key("j1"), 0)
        finally:
            timer.cancel()
        assert (answer.done, answer.next) == (False, "wait")
        assert ports.jobs.records[key("j1")].follow_by == "poll"


def test_an_unreachable_comfyui_is_told_at_once_and_retried() -> None:
    comfy = FakeComfyUI().start()
    url = comfy.url
    ports = ports_for(comfy)
    ports.executors = lambda kind, user, endpoint: ComfyUIExecutor(url)  # type: ignore[assignment]
    submit(ports, comfy)
    comfy.stop()
    answer = follow_job(ports, key("j1"), 0)
    assert (answer.done, answer.next, answer.wait_seconds) == (False, "wait", 5)
    (update,) = ports.pusher.messages(CONN, "job_update")
    assert update["status"] == "queued"
    assert update["message"].endswith("cannot be reached; retrying")
    assert update["message"].startswith(f"ComfyUI at {url.removeprefix('http://')} ")
    # The next window still cannot reach it: nothing more is said until the deadline.
    again = follow_job(ports, key("j1"), 1)
    assert again.next == "wait"
    assert len(ports.pusher.messages(CONN, "job_update")) == 1


def test_a_prompt_seen_whole_on_the_socket_needs_no_history_look_at_the_end(comfy: FakeComfyUI) -> None:
    ports = ports_for(comfy)
    comfy.pause()  # the prompt starts only once the socket is open: its every event goes by it
    submit(ports, comfy)
    comfy.requests.clear()
    threading.Timer(0.3, comfy.resume).start()
    answer = follow_job(ports, key("j1"), 0)
    assert answer.notified
    # One look after the socket opened (/queue: still running), then only /view for the file.
    assert [r for r in comfy.requests if r[1].startswith("/history")] == []
    assert ("GET", "/view") in [(m, p.split("?")[0]) for m, p in comfy.requests]


def test_cached_nodes_are_completed_with_the_cached_flag() -> None:
    with FakeComfyUI(node_seconds=0.2, cache=True) as comfy:
        ports = ports_for(comfy)
        submit(ports, comfy, "first")
        follow_job(ports, key("first"), 0)
        comfy.pause()
        submit(ports, comfy, "again")
        threading.Timer(0.3, comfy.resume).start()
        answer = follow_job(ports, key("again"), 0)
    assert answer.status is JobStatus.COMPLETED
    updates = [m for m in ports.pusher.messages(CONN, "node_update") if m["job_id"] == "again"]
    assert updates
    assert all(m["status"] == "completed" and m.get("cached") is True for m in updates)
