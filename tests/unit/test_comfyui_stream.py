"""Following a ComfyUI prompt on its /ws: the recorded ``ws_sequence_*`` of a real ComfyUI 0.3.64
(tests/fixtures/comfyui) replayed through the interpreter, and the follow loop against the loopback
FakeComfyUI."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fakes import FakeComfyUI
from support.recordings import body, load_recording

from comfyroute.executors import comfyui
from comfyroute.executors.base import ExecutorRejected, ExecutorStatus
from comfyroute.executors.comfyui import ComfyUIExecutor, FileRef, TextRef, history_status, websocket_url
from comfyroute.executors.comfyui_stream import (
    FollowConfig,
    FollowEnd,
    FollowResult,
    NodeInfo,
    NodeProgress,
    NodeState,
    NodeUpdate,
    OutputReady,
    PromptEnded,
    PromptStarted,
    PromptStream,
    QueueChanged,
    SocketTarget,
    StatusSeen,
    StreamEvent,
    follow_prompt,
    interpret,
    node_info,
)
from comfyroute.http import make_session
from comfyroute.protocol import JobStatus
from comfyroute.protocol.server_messages import NodeProblem

# The prompts the recordings ran (/work/shared/reference/comfyui/workflows), with a title added
# to one node so the lookup of titles is seen.
INVERT_SAVE = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}, "_meta": {"title": "Invert colours"}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "ws"}},
}
BLUR_ERROR = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 1, "height": 1, "batch_size": 1, "color": 0}},
    "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 31, "sigma": 1.0}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "rterr"}},
}
BLUR_CHAIN = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 1024, "height": 1024, "batch_size": 1, "color": 0}},
    **{
        str(i): {"class_type": "ImageBlur", "inputs": {"image": [str(i - 1), 0], "blur_radius": 31, "sigma": 10.0}}
        for i in (2, 3, 4)
    },
    "5": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": "slow"}},
}
WS_SAVE = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 2, "color": 65280}},
    "2": {"class_type": "SaveImageWebsocket", "inputs": {"images": ["1", 0]}},
}
RECORDED = {
    "ws_sequence_tiny": INVERT_SAVE,
    "ws_sequence_cached": INVERT_SAVE,
    "ws_sequence_runtime_error": BLUR_ERROR,
    "ws_sequence_interrupt": BLUR_CHAIN,
    "ws_sequence_ws_save": WS_SAVE,
}
SECRET = "cf-secret-5c0ffee1d"
HEADERS = {"CF-Access-Client-Id": "client.access", "CF-Access-Client-Secret": SECRET}
# Small windows keep the tests short; the loop's bounds are what is checked, not its speed.
QUICK = FollowConfig(window_seconds=10, connect_timeout=2, idle_look_seconds=5)


# --------------------------------------------------------------------------- recordings


def frames(name: str) -> list[str | bytes | dict[str, Any]]:
    """A recording as the socket delivered it; binary frames rebuilt from their recorded header."""
    out: list[str | bytes | dict[str, Any]] = []
    for entry in load_recording(name):
        if entry["kind"] == "binary":
            header = entry["event_type"].to_bytes(4, "big") + entry["format"].to_bytes(4, "big")
            out.append(header + bytes.fromhex(entry["magic"]) + bytes(max(0, entry["len"] - 16)))
        else:
            out.append(json.dumps(entry["msg"]))
    return out


def times(name: str) -> list[float]:
    return [float(entry["t"]) for entry in load_recording(name)]


def prompt_id_of(name: str) -> str:
    for entry in load_recording(name):
        if entry["kind"] == "text" and "prompt_id" in entry["msg"]["data"]:
            return str(entry["msg"]["data"]["prompt_id"])
    raise AssertionError(f"{name} names no prompt")


def replay(name: str, *, rate: float = 0.0, prompt_id: str | None = None) -> list[StreamEvent]:
    return interpret(
        frames(name), prompt_id or prompt_id_of(name), RECORDED[name], progress_per_second=rate, times=times(name)
    )


def summary(events: list[StreamEvent]) -> list[tuple[Any, ...]]:
    """Events as short tuples, QueueChanged left out."""
    out: list[tuple[Any, ...]] = []
    for e in events:
        if isinstance(e, PromptStarted):
            out.append(("started",))
        elif isinstance(e, NodeUpdate):
            out.append((e.state.value, e.node.node_id))
        elif isinstance(e, NodeProgress):
            out.append(("progress", e.node.node_id, e.value, e.max))
        elif isinstance(e, OutputReady):
            out.append(("output", e.node.node_id, tuple(getattr(r, "filename", None) for r in e.refs)))
        elif isinstance(e, PromptEnded):
            out.append(("ended", e.status.state.value))
    return out


def test_tiny_recording_announces_each_node_and_the_output_before_the_end() -> None:
    assert summary(replay("ws_sequence_tiny")) == [
        ("started",),
        ("running", "1"),
        ("completed", "1"),
        ("running", "2"),
        ("completed", "2"),
        ("running", "3"),
        ("output", "3", ("ws_82725b_00001_.png",)),
        ("completed", "3"),
        ("ended", "completed"),
    ]


def test_nodes_carry_class_and_title_from_the_prompt() -> None:
    updates = [e for e in replay("ws_sequence_tiny") if isinstance(e, NodeUpdate)]
    infos = {u.node.node_id: u.node for u in updates}
    assert infos["1"] == NodeInfo("1", "EmptyImage", "EmptyImage")
    assert infos["2"] == NodeInfo("2", "ImageInvert", "Invert colours")
    assert infos["3"] == NodeInfo("3", "SaveImage", "SaveImage")


def test_cached_recording_reports_cached_nodes_and_still_delivers_the_output() -> None:
    assert summary(replay("ws_sequence_cached")) == [
        ("started",),
        ("cached", "1"),
        ("cached", "2"),
        ("cached", "3"),
        # ComfyUI re-sends a cached output node's files: the client gets them without a run.
        ("output", "3", ("ws_82725b_00001_.png",)),
        ("ended", "completed"),
    ]


def test_runtime_error_recording_marks_the_node_and_fails_the_prompt() -> None:
    events = replay("ws_sequence_runtime_error")
    assert summary(events)[-2:] == [("error", "2"), ("ended", "failed")]
    error = next(e for e in events if isinstance(e, NodeUpdate) and e.state is NodeState.ERROR)
    assert error.node == NodeInfo("2", "ImageBlur", "ImageBlur")
    assert error.error is not None
    assert error.error.startswith("RuntimeError: Argument #4: Padding size should be less than")
    assert "\n" not in error.error  # ComfyUI's message ends in a newline; ours is one line


def test_socket_failure_reads_as_the_executor_reads_the_same_failure_in_history() -> None:
    # runtime_error is another run of the same workflow: the wording must be the same.
    (end,) = [e for e in replay("ws_sequence_runtime_error") if isinstance(e, PromptEnded)]
    recorded = body("runtime_error")
    (entry,) = recorded.values()
    from_history = history_status("any", comfyui._HistoryEntry.model_validate(entry))
    assert end.status == from_history
    assert from_history.error is not None
    assert from_history.error.startswith("ComfyUI node 2 (ImageBlur) failed: ")


def test_interrupt_recording_cancels_at_the_node_history_names() -> None:
    events = replay("ws_sequence_interrupt")
    assert summary(events)[-2:] == [("running", "3"), ("ended", "cancelled")]
    (end,) = [e for e in events if isinstance(e, PromptEnded)]
    # history_interrupted is the same prompt as ws_sequence_interrupt.
    pid = prompt_id_of("ws_sequence_interrupt")
    entry = comfyui._HistoryEntry.model_validate(body("history_interrupted")[pid])
    assert end.status == history_status(pid, entry)
    assert end.status.message == f"ComfyUI interrupted prompt {pid} at node 3 (ImageBlur)"


def test_ws_save_recording_gives_every_step_and_skips_preview_frames() -> None:
    assert summary(replay("ws_sequence_ws_save")) == [
        ("started",),
        ("running", "1"),
        ("completed", "1"),
        ("running", "2"),
        ("progress", "2", 0, 2),
        ("progress", "2", 1, 2),
        ("progress", "2", 2, 2),  # progress_state "finished": the bar reaches its end
        ("completed", "2"),
        ("ended", "completed"),
    ]
    stream = PromptStream(prompt_id_of("ws_sequence_ws_save"))
    for frame in frames("ws_sequence_ws_save"):
        stream.feed(frame, 0.0)
    assert stream.skipped == 0  # the two binary frames are not errors
    assert sum(isinstance(f, bytes) for f in frames("ws_sequence_ws_save")) == 2


def test_coalesced_recording_keeps_the_first_and_the_last_step() -> None:
    # The steps arrive 0.3 ms apart: at 2 per second only the first goes at once, and the held
    # one is released (as the last, 2 of 2) before the node's completion.
    steps = [s for s in summary(replay("ws_sequence_ws_save", rate=2)) if s[0] == "progress"]
    assert steps == [("progress", "2", 0, 2), ("progress", "2", 2, 2)]


@pytest.mark.parametrize("name", list(RECORDED))
def test_every_recording_ends_once_and_says_nothing_after(name: str) -> None:
    events = replay(name)
    ends = [i for i, e in enumerate(events) if isinstance(e, PromptEnded)]
    assert len(ends) == 1
    assert ends[0] == len(events) - 1  # executing {node: null} and status after it add nothing


@pytest.mark.parametrize("name", list(RECORDED))
def test_the_prompt_is_idle_only_after_comfyui_said_nothing_runs(name: str) -> None:
    # The terminal message comes before ComfyUI writes /history; executing {node: null} after it.
    stream = PromptStream(prompt_id_of(name))
    recorded = frames(name)
    index = 0
    while not stream.ended:
        stream.feed(recorded[index], 0.0)
        index += 1
    assert not stream.idle
    for frame in recorded[index:]:
        stream.feed(frame, 0.0)
    assert stream.idle


@pytest.mark.parametrize("name", list(RECORDED))
def test_another_prompts_events_only_move_the_queue(name: str) -> None:
    events = replay(name, prompt_id="someone-elses-prompt")
    assert events
    assert all(isinstance(e, QueueChanged) for e in events)


def test_status_frames_become_queue_changes() -> None:
    changes = [e for e in replay("ws_sequence_tiny") if isinstance(e, QueueChanged)]
    # The status after execution_success is not reported: once the prompt ended, nothing is.
    assert [c.queue_remaining for c in changes] == [0, 1, 1]


# --------------------------------------------------------------------------- the rules, one by one


PID = "job-1"


def msg(kind: str, **data: Any) -> str:
    return json.dumps({"type": kind, "data": {"prompt_id": PID, **data}})


def step(value: int, maximum: int, node: str = "5") -> str:
    return msg("progress", value=value, max=maximum, node=node)


def test_steps_are_coalesced_to_the_rate_and_the_held_one_is_released_on_time() -> None:
    stream = PromptStream(PID, progress_per_second=2)
    first = stream.feed(step(1, 20), 0.0)
    assert summary(first) == [("started",), ("running", "5"), ("progress", "5", 1, 20)]
    assert stream.feed(step(2, 20), 0.1) == []
    assert stream.feed(step(3, 20), 0.2) == []  # replaces step 2, which was never sent
    assert stream.next_flush_at == pytest.approx(0.5)
    assert stream.flush(0.49) == []
    assert summary(stream.flush(0.5)) == [("progress", "5", 3, 20)]
    assert stream.next_flush_at is None
    assert stream.feed(step(4, 20), 0.6) == []
    assert summary(stream.feed(step(5, 20), 1.0)) == [("progress", "5", 5, 20)]


def test_a_held_step_goes_before_the_next_other_event() -> None:
    stream = PromptStream(PID, progress_per_second=1)
    stream.feed(step(1, 3), 0.0)
    stream.feed(step(3, 3), 0.1)
    done = msg("progress_state", nodes={"5": {"value": 3, "max": 3, "state": "finished"}})
    assert summary(stream.feed(done, 0.2)) == [("progress", "5", 3, 3), ("completed", "5")]


def test_many_steps_at_a_high_rate_keep_order_bound_and_last_step() -> None:
    events = interpret(
        [step(i, 50) for i in range(1, 51)], PID, progress_per_second=4, times=[i * 0.05 for i in range(50)]
    )
    values = [e.value for e in events if isinstance(e, NodeProgress)]
    assert values == sorted(values)
    assert values[-1] == 50
    assert len(values) <= 2.5 * 4 + 2  # 2.45 s of steps at 4 per second, plus the last
    assert len(values) >= 8


def test_rate_zero_delivers_every_step_once() -> None:
    frames_ = [step(1, 3), step(1, 3), step(2, 3), step(3, 3)]
    assert [e.value for e in interpret(frames_, PID) if isinstance(e, NodeProgress)] == [1, 2, 3]


def test_a_node_started_with_one_unit_of_work_shows_no_progress() -> None:
    running = msg("progress_state", nodes={"4": {"value": 0, "max": 1, "state": "running"}})
    assert summary(interpret([running, msg("executing", node="4")], PID)) == [("started",), ("running", "4")]


def test_servers_without_progress_state_or_execution_success_are_followed_too() -> None:
    # ComfyUI before progress_state and execution_success: executing is all there is.
    seq = [msg("execution_start"), msg("executing", node="1"), msg("executing", node="2"), msg("executing", node=None)]
    assert summary(interpret(seq, PID)) == [
        ("started",),
        ("running", "1"),
        ("completed", "1"),
        ("running", "2"),
        ("completed", "2"),
        ("ended", "completed"),
    ]


def test_the_node_resent_on_connect_counts_without_a_prompt_id_and_only_once() -> None:
    resent = json.dumps({"type": "executing", "data": {"node": "4"}})
    seq = [resent, msg("executing", node="4", display_node="4"), resent]
    assert summary(interpret(seq, PID)) == [("started",), ("running", "4")]


def test_a_resumed_stream_does_not_announce_known_nodes_again() -> None:
    stream = PromptStream(PID)
    stream.resume({"1": "completed", "2": NodeState.RUNNING})
    resent = json.dumps({"type": "executing", "data": {"node": "2"}})
    assert stream.feed(resent, 0.0) == []
    finished = msg("progress_state", nodes={"2": {"value": 1, "max": 1, "state": "finished"}})
    assert summary(stream.feed(finished, 0.1)) == [("completed", "2")]
    assert stream.nodes == {"1": NodeState.COMPLETED, "2": NodeState.COMPLETED}


def test_executed_gives_every_kind_of_output_entry() -> None:
    output = {
        "images": [{"filename": "a.png", "subfolder": "x", "type": "temp"}],
        "text": ["hello"],
        "animated": [True],
    }
    (ready,) = [e for e in interpret([msg("executed", node="9", output=output)], PID) if isinstance(e, OutputReady)]
    assert ready.node == NodeInfo("9")
    assert ready.refs == (FileRef("9", "images", "a.png", "x", "temp"), TextRef("9", "text", 0, "hello"))


def test_executed_without_files_is_no_output() -> None:
    assert interpret([msg("executed", node="9", output={"animated": [True]})], PID) == []
    assert interpret([msg("executed", node="9", output=None)], PID) == []


def test_an_error_names_the_node_class_even_when_the_prompt_is_unknown() -> None:
    failure = msg("execution_error", node_id="7", node_type="KSampler", exception_type="", exception_message="OOM")
    events = interpret([failure], PID)
    update = next(e for e in events if isinstance(e, NodeUpdate))
    assert (update.node, update.state, update.error) == (NodeInfo("7", "KSampler", "KSampler"), NodeState.ERROR, "OOM")
    end = events[-1]
    assert isinstance(end, PromptEnded)
    assert end.status == ExecutorStatus(
        state=JobStatus.FAILED,
        error="ComfyUI node 7 (KSampler) failed: OOM",
        errors=[NodeProblem(node_id="7", class_type="KSampler", message="OOM")],
    )


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "[1, 2]",
        json.dumps({"data": {}}),
        msg("progress", value="many", max=2, node="1"),
        msg("progress_state", nodes={"1": {"value": 1}}),
        msg("executing", node={"nested": True}),
        msg("execution_cached", nodes="1,2"),
    ],
)
def test_frames_that_say_nothing_usable_are_skipped_and_counted(frame: str) -> None:
    stream = PromptStream(PID)
    assert stream.feed(frame, 0.0) == []
    assert stream.skipped == 1
    assert summary(stream.feed(msg("executing", node="2"), 0.0)) == [("started",), ("running", "2")]


def test_unknown_message_types_are_ignored_without_counting_as_errors() -> None:
    stream = PromptStream(PID)
    assert stream.feed(json.dumps({"type": "feature_flags", "data": {"x": 1}}), 0.0) == []
    assert stream.feed(json.dumps({"type": "crystools.monitor", "data": {}}), 0.0) == []
    assert stream.skipped == 0


def test_node_info_prefers_the_title_and_falls_back_to_the_class() -> None:
    prompt = {"3": {"class_type": "KSampler", "_meta": {"title": "  Sampler A "}}, "4": {"class_type": "VAEDecode"}}
    assert node_info(prompt, "3") == NodeInfo("3", "KSampler", "Sampler A")
    assert node_info(prompt, "4") == NodeInfo("4", "VAEDecode", "VAEDecode")
    assert node_info(prompt, "99", "Mystery") == NodeInfo("99", "Mystery", "Mystery")
    assert node_info(None, "1") == NodeInfo("1")


# --------------------------------------------------------------------------- the loop, on the fake


def executor_for(fake: FakeComfyUI, headers: dict[str, str] | None = None) -> ComfyUIExecutor:
    # As the following task would build it: no peek (the stream replaces it), few retries, so an
    # unreachable ComfyUI is noticed within seconds.
    return ComfyUIExecutor(
        fake.url, headers=headers, progress_peek_seconds=0, session=make_session(retries=0, timeout=(1.0, 5.0))
    )


def follow(
    executor: ComfyUIExecutor,
    job: str,
    *,
    prompt: dict[str, Any] | None = None,
    config: FollowConfig = QUICK,
    target: SocketTarget | None = None,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> tuple[FollowResult, list[StreamEvent]]:
    seen: list[StreamEvent] = []
    target = target or SocketTarget(websocket_url(executor.base_url, executor.client_id_for(job)), headers or {})
    result = follow_prompt(
        job,
        target=target,
        look=lambda: executor.status(job),
        on_event=kwargs.pop("on_event", seen.append),
        prompt=prompt,
        config=config,
        **kwargs,
    )
    return result, seen


def wait_until(probe: Callable[[], str | None], timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while (value := probe()) is None:
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)
    return value


def new_job() -> str:
    return f"follow-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def comfy() -> Iterator[FakeComfyUI]:
    with FakeComfyUI(node_seconds=0.15) as fake:
        yield fake


# What /history says of INVERT_SAVE's nodes once it ran (ComfyUIExecutor.status, node_outcomes).
ALL_COMPLETED = {"1": "completed", "2": "completed", "3": "completed"}


def test_a_prompt_is_followed_from_its_socket_to_the_end(comfy: FakeComfyUI) -> None:
    executor, job = executor_for(comfy), new_job()
    executor.submit(INVERT_SAVE, job)
    result, seen = follow(executor, job, prompt=INVERT_SAVE)
    assert result.end is FollowEnd.FINISHED
    assert result.status == ExecutorStatus(state=JobStatus.COMPLETED)
    assert not result.confirmed  # said by the socket: the caller confirms with /history
    assert result.outputs == ("3",)
    assert result.nodes == {"1": NodeState.COMPLETED, "2": NodeState.COMPLETED, "3": NodeState.COMPLETED}
    assert (result.connects, result.looks) == (1, 1)
    # The follow waited for "nothing runs": the confirming look finds the prompt in /history,
    # with how each node ended.
    assert executor.status(job) == ExecutorStatus(state=JobStatus.COMPLETED, nodes=ALL_COMPLETED)
    assert comfy.ws_clients == [f"comfyroute-{job}"]
    assert comfy.requests.count(("GET", "/queue")) == 2  # the follow's one look, and the check above
    kinds = summary(seen)
    assert kinds.index(("output", "3", ("ws_00001_.png",))) < kinds.index(("ended", "completed"))
    # Every node of the prompt was seen running and completed, in order, with its title.
    assert [k for k in kinds if k[0] in ("running", "completed")] == [
        (s, n) for n in ("1", "2", "3") for s in ("running", "completed")
    ]
    assert any(isinstance(e, NodeUpdate) and e.node.node_name == "Invert colours" for e in seen)
    assert isinstance(seen[0], StatusSeen)


def test_sampler_steps_are_coalesced_and_each_nodes_last_step_arrives() -> None:
    with FakeComfyUI(node_seconds=0.3, progress_steps=8) as fake:
        executor, job = executor_for(fake), new_job()
        executor.submit(INVERT_SAVE, job)
        result, seen = follow(executor, job, config=QUICK.model_copy(update={"progress_per_second": 4}))
    assert result.end is FollowEnd.FINISHED
    steps: dict[str, list[float]] = {}
    for e in seen:
        if isinstance(e, NodeProgress):
            assert e.max == 8
            steps.setdefault(e.node.node_id, []).append(e.value)
    assert set(steps) == {"1", "2", "3"}
    for values in steps.values():
        assert values[-1] == 8
        assert values == sorted(values)
        assert len(values) < 8  # 8 steps in 0.3 s at 4 per second: some were merged


def test_a_prompt_that_finished_before_the_socket_opened_is_found_in_history(comfy: FakeComfyUI) -> None:
    executor, job = executor_for(comfy), new_job()
    executor.submit(INVERT_SAVE, job)
    assert comfy.wait_idle(10)
    result, seen = follow(executor, job)
    assert result.end is FollowEnd.FINISHED
    assert result.confirmed
    assert result.status == ExecutorStatus(state=JobStatus.COMPLETED, nodes=ALL_COMPLETED)
    assert result.outputs == ()  # nothing streamed: the caller collects every output from /history
    assert seen == [StatusSeen(ExecutorStatus(state=JobStatus.COMPLETED, nodes=ALL_COMPLETED))]


def test_a_window_ends_the_follow_and_the_next_window_carries_on() -> None:
    with FakeComfyUI(node_seconds=0.4) as fake:
        executor, job = executor_for(fake), new_job()
        executor.submit(INVERT_SAVE, job)
        running = wait_until(lambda: fake.engine.current_node_of(executor.client_id_for(job)))
        first, seen1 = follow(executor, job, config=QUICK.model_copy(update={"window_seconds": 0.2}))
        assert first.end is FollowEnd.WINDOW_OVER
        assert first.status is not None
        assert first.status.state is JobStatus.RUNNING
        # ComfyUI re-sends the running node on connect.
        assert first.nodes.get(running) is NodeState.RUNNING
        second, seen2 = follow(executor, job, known_nodes=first.nodes)
    assert second.end is FollowEnd.FINISHED
    announced = [(e.state, e.node.node_id) for e in seen1 + seen2 if isinstance(e, NodeUpdate)]
    assert len(announced) == len(set(announced))  # the re-sent running node is not announced again
    assert (NodeState.COMPLETED, "3") in announced
    assert sum(isinstance(e, PromptStarted) for e in seen1 + seen2) == 1


def test_a_queued_prompt_reports_its_position(comfy: FakeComfyUI) -> None:
    executor, job = executor_for(comfy), new_job()
    comfy.pause()
    try:
        executor.submit(INVERT_SAVE, f"{job}-ahead")
        executor.submit(INVERT_SAVE, job)
        result, seen = follow(executor, job, config=QUICK.model_copy(update={"window_seconds": 0.3}))
    finally:
        comfy.resume()
    assert result.end is FollowEnd.WINDOW_OVER
    assert seen == [StatusSeen(ExecutorStatus(state=JobStatus.QUEUED, queue_position=1))]


def test_a_refused_socket_means_polling_and_says_why() -> None:
    with FakeComfyUI(node_seconds=0.3, required_headers=HEADERS) as fake:
        executor, job = executor_for(fake, HEADERS), new_job()
        executor.submit(INVERT_SAVE, job)
        # The handshake goes without the tunnel's headers: the gate answers 401, HTTP still works.
        result, seen = follow(executor, job, headers={})
    assert result.end is FollowEnd.SOCKET_UNAVAILABLE
    assert result.reason == "InvalidStatus 401"
    assert result.status is not None
    assert not result.status.state.terminal
    assert (result.connects, result.looks) == (1, 1)
    assert seen == [StatusSeen(result.status)]


def test_a_refused_socket_of_a_finished_prompt_is_still_finished() -> None:
    with FakeComfyUI(node_seconds=0.01, required_headers=HEADERS) as fake:
        executor, job = executor_for(fake, HEADERS), new_job()
        executor.submit(INVERT_SAVE, job)
        assert fake.wait_idle(10)
        result, _ = follow(executor, job, headers={})
    assert result.end is FollowEnd.FINISHED
    assert result.confirmed


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_executor_is_reported_as_such() -> None:
    port = closed_port()
    executor = ComfyUIExecutor(f"127.0.0.1:{port}", progress_peek_seconds=0, session=make_session(retries=0))
    result, seen = follow(executor, "gone-1")
    assert result.end is FollowEnd.EXECUTOR_UNREACHABLE
    assert result.reason is not None
    assert "is not reachable" in result.reason
    assert result.status is None
    assert seen == []


def test_a_socket_that_never_answers_the_handshake_is_given_up_on(comfy: FakeComfyUI) -> None:
    with socket.socket() as silent:  # listens, never accepts: TCP connects, no handshake answer
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        executor, job = executor_for(comfy), new_job()
        executor.submit(INVERT_SAVE, job)
        url = f"ws://127.0.0.1:{silent.getsockname()[1]}/ws?clientId=comfyroute-{job}"
        config = QUICK.model_copy(update={"connect_timeout": 0.2})
        result, _ = follow(executor, job, target=SocketTarget(url), config=config)
    assert result.end is FollowEnd.SOCKET_UNAVAILABLE
    assert result.reason == "TimeoutError"


class CuttableProxy:
    """A TCP relay in front of the fake's socket that the test can cut, as a tunnel drops a
    websocket while HTTP keeps working; ``refuse`` makes it turn new connections away."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.server.getsockname()[1])
        self.refuse = False
        self.accepted = 0
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if self.refuse:
                client.close()
                continue
            self.accepted += 1
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            with self._lock:
                self._conns += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            self._conns.clear()

    def close(self) -> None:
        self.cut()
        self.server.close()


@pytest.mark.parametrize("refuse", [False, True])
def test_a_dropped_socket_is_reopened_once_else_polling_takes_over(refuse: bool) -> None:
    with FakeComfyUI(node_seconds=0.3) as fake:
        proxy = CuttableProxy(fake.port)
        try:
            executor, job = executor_for(fake), new_job()
            executor.submit(INVERT_SAVE, job)
            seen: list[StreamEvent] = []

            def on_event(event: StreamEvent) -> None:
                seen.append(event)
                if isinstance(event, NodeUpdate) and event.node.node_id == "1" and event.state is NodeState.RUNNING:
                    proxy.refuse = refuse
                    proxy.cut()

            url = f"ws://127.0.0.1:{proxy.port}/ws?clientId={executor.client_id_for(job)}"
            result, _ = follow(executor, job, target=SocketTarget(url), on_event=on_event)
        finally:
            proxy.close()
    assert result.looks == 2  # the first one, and one after the drop
    if refuse:
        assert result.end is FollowEnd.SOCKET_UNAVAILABLE
        assert result.reason is not None
        assert "reconnect failed" in result.reason
        assert result.connects == 2
    else:
        assert result.end is FollowEnd.FINISHED
        assert result.connects == 2
        assert proxy.accepted == 2
        assert ("completed", "3") in summary(seen)


def test_silence_is_broken_by_a_look() -> None:
    looks: list[float] = []
    with FakeComfyUI(node_seconds=0.5) as fake:
        executor, job = executor_for(fake), new_job()
        # One node that runs for 0.5 s without a word, then a quick save.
        quiet = {
            "1": INVERT_SAVE["1"],
            "3": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "q"}},
        }
        executor.submit(quiet, job)

        def look() -> ExecutorStatus:
            looks.append(0)
            return executor.status(job)

        target = SocketTarget(websocket_url(executor.base_url, executor.client_id_for(job)))
        config = QUICK.model_copy(update={"idle_look_seconds": 0.1, "window_seconds": 0.45})
        result = follow_prompt(job, target=target, look=look, on_event=lambda e: None, config=config)
    assert result.end in (FollowEnd.WINDOW_OVER, FollowEnd.FINISHED)
    assert result.looks == len(looks) >= 2


def test_tunnel_headers_go_on_the_handshake_and_nowhere_else(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="websockets")
    with FakeComfyUI(node_seconds=0.05, required_headers=HEADERS, prefix="/comfy") as fake:
        executor, job = executor_for(fake, HEADERS), new_job()
        executor.submit(INVERT_SAVE, job)
        result, _ = follow(executor, job, headers=HEADERS)
        assert ("GET", "/comfy/ws") in fake.requests
    assert result.end is FollowEnd.FINISHED
    assert SECRET not in caplog.text
    assert all(SECRET not in str(vars(r)) for r in caplog.records)
    assert SECRET not in repr(SocketTarget("ws://x/ws", HEADERS))


def test_a_rejecting_look_and_a_failing_callback_end_the_follow(comfy: FakeComfyUI) -> None:
    executor, job = executor_for(comfy), new_job()
    executor.submit(INVERT_SAVE, job)
    target = SocketTarget(websocket_url(executor.base_url, executor.client_id_for(job)))

    def rejected() -> ExecutorStatus:
        raise ExecutorRejected("tunnel refused the credentials")

    with pytest.raises(ExecutorRejected):
        follow_prompt(job, target=target, look=rejected, on_event=lambda e: None, config=QUICK)

    def boom(event: StreamEvent) -> None:
        if isinstance(event, NodeUpdate):
            raise RuntimeError("push failed")

    with pytest.raises(RuntimeError, match="push failed"):
        follow_prompt(job, target=target, look=lambda: executor.status(job), on_event=boom, config=QUICK)


def test_config_bounds_are_checked() -> None:
    with pytest.raises(ValueError, match="greater than 0"):
        FollowConfig(window_seconds=0)
    with pytest.raises(ValueError, match="less than or equal to 840"):
        FollowConfig(window_seconds=900)  # no room left under Lambda's 15-minute limit
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        FollowConfig(progress_per_second=-1)
