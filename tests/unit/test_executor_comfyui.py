"""ComfyUIExecutor against `responses` fakes that answer like the recorded ComfyUI 0.3.64
(tests/fixtures/comfyui, copied from /work/shared/reference/comfyui/responses)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import responses
from responses import matchers
from support.recordings import FIXTURES, body, exchange, load_bytes, load_recording

from comfyroute.executors import comfyui
from comfyroute.executors.base import (
    Executor,
    ExecutorRejected,
    ExecutorStatus,
    ExecutorUnavailable,
    Progress,
)
from comfyroute.executors.comfyui import ComfyUIExecutor, collect_refs, normalize_address
from comfyroute.protocol import ExecutorKind, JobStatus

BASE = "http://127.0.0.1:8188"
SECRET = "cf-secret-7d1e9b0c"
HEADERS = {"CF-Access-Client-Id": "client.access", "CF-Access-Client-Secret": SECRET}

PNG = load_bytes("view_ok.png")
# workflows/empty_save.json of the reference recordings.
PROMPT = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 32, "batch_size": 1, "color": 16711680}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "test"}},
}

OK_ID = "0d2a604d-6c81-4eba-9694-69df36e6ab10"  # history_ok / post_prompt_ok
RUNNING_ID = "a415e11c-3f02-411b-ba13-48d247814c3e"  # queue_busy running, history_interrupted
PENDING_ID = "856876d5-0b57-4eda-bf9b-d52560603e43"  # queue_busy pending
ERROR_ID = "e1d5d514-be19-4df4-9f50-956db41c4ad6"  # runtime_error
PLAIN_ID = "f01f75fc-33d8-4f6a-b072-cb546dece714"  # wf_plain
LATENT_ID = "05b2f314-8b16-4a0e-8afa-15cb94f05e7b"  # wf_latent
PREVIEW_ID = "571dd57d-4037-442f-843b-edf8441ce1e6"  # wf_preview
QUEUE_IDLE = body("queue_idle")
QUEUE_BUSY = body("queue_busy")


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make(addr: str = BASE, **kwargs: Any) -> ComfyUIExecutor:
    return ComfyUIExecutor(addr, **kwargs)


def posts(rsps: responses.RequestsMock, path: str, base: str = BASE) -> list[Any]:
    return [c for c in rsps.calls if c.request.method == "POST" and c.request.url == base + path]


def add_queue(rsps: responses.RequestsMock, queue: Any, base: str = BASE) -> None:
    rsps.add(responses.GET, f"{base}/queue", json=queue)


def add_history(rsps: responses.RequestsMock, prompt_id: str, history: Any, base: str = BASE) -> None:
    rsps.add(responses.GET, f"{base}/history/{prompt_id}", json=history)


def add_view(
    rsps: responses.RequestsMock,
    filename: str,
    data: bytes = PNG,
    *,
    subfolder: str = "",
    type_: str = "output",
    content_type: str | None = "image/png",
    status: int = 200,
) -> None:
    rsps.add(
        responses.GET,
        f"{BASE}/view",
        body=data,
        status=status,
        content_type=content_type,
        match=[matchers.query_param_matcher({"filename": filename, "subfolder": subfolder, "type": type_})],
    )


def history_with(prompt_id: str, outputs: dict[str, Any]) -> dict[str, Any]:
    """The recorded success entry of history_ok with other outputs, under another id."""
    entry = copy.deepcopy(body("history_ok")[OK_ID])
    entry["outputs"] = outputs
    return {prompt_id: entry}


# --------------------------------------------------------------------------- address, headers


@pytest.mark.parametrize(
    ("addr", "base"),
    [
        ("127.0.0.1:8188", "http://127.0.0.1:8188"),
        ("  localhost:8188/  ", "http://localhost:8188"),
        ("http://127.0.0.1:8188/", "http://127.0.0.1:8188"),
        ("https://tunnel.example.com", "https://tunnel.example.com"),
        ("https://tunnel.example.com/comfy//", "https://tunnel.example.com/comfy"),
        ("HTTPS://Tunnel.Example.com:8443/a/comfy/", "https://tunnel.example.com:8443/a/comfy"),
        ("[::1]:8188", "http://[::1]:8188"),
        ("comfy_ui:8188", "http://comfy_ui:8188"),
    ],
)
def test_address_forms_normalise(addr: str, base: str) -> None:
    assert normalize_address(addr) == base
    assert make(addr).base_url == base


@pytest.mark.parametrize(
    ("addr", "complaint"),
    [
        ("", "empty"),
        ("localhost", "needs a port"),
        ("ftp://host:21", "http or https"),
        ("http://", "no valid host"),
        ("not a host:80", "no valid host"),
        ("host:notaport", "not host:port"),
        ("http://host:99999", "not host:port"),
        ("http://host/a b", "invalid path prefix"),
    ],
)
def test_garbage_address_is_a_clear_value_error(addr: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint) as info:
        ComfyUIExecutor(addr, headers=HEADERS)
    assert SECRET not in str(info.value)


@pytest.mark.parametrize("addr", ["http://user:pw-9f3k@host:8188", "http://host:8188/?token=tk-9f3k"])
def test_address_with_credentials_is_refused_without_echoing_them(addr: str) -> None:
    with pytest.raises(ValueError, match="COMFYUI_HEADERS") as info:
        normalize_address(addr)
    assert "9f3k" not in str(info.value)


def test_bad_header_value_is_refused_naming_the_header_not_the_value() -> None:
    with pytest.raises(ValueError, match="CF-Access-Client-Secret") as info:
        ComfyUIExecutor(BASE, headers={"CF-Access-Client-Secret": SECRET + "\r\nX-Evil: 1"})
    assert SECRET not in str(info.value)


def test_invalid_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="max_output_bytes"):
        ComfyUIExecutor(BASE, max_output_bytes=0)
    with pytest.raises(ValueError, match="progress_peek_seconds"):
        ComfyUIExecutor(BASE, progress_peek_seconds=-1)
    with pytest.raises(ValueError, match="progress_peek_seconds"):
        ComfyUIExecutor(BASE, progress_peek_seconds=float("nan"))
    with pytest.raises(ValueError, match="client_id"):
        ComfyUIExecutor(BASE, client_id="")


def test_is_a_local_executor_and_repr_hides_header_values() -> None:
    ex = make(headers=HEADERS)
    assert isinstance(ex, Executor)
    assert ex.kind is ExecutorKind.LOCAL
    assert SECRET not in repr(ex)
    assert "CF-Access-Client-Secret" in repr(ex)
    assert BASE in repr(ex)


def test_prefix_and_headers_are_used_on_every_call(rsps: responses.RequestsMock) -> None:
    base = "https://tunnel.example.com/comfy"
    sent = [matchers.header_matcher(HEADERS)]
    rsps.add(responses.POST, f"{base}/prompt", json=exchange("post_prompt_ok").body, match=sent)
    rsps.add(responses.GET, f"{base}/queue", json=QUEUE_IDLE, match=sent)
    rsps.add(responses.GET, f"{base}/history/{OK_ID}", json=body("history_ok"), match=sent)
    rsps.add(responses.GET, f"{base}/view", body=PNG, content_type="image/png", match=sent)
    ex = make("https://tunnel.example.com/comfy/", headers=HEADERS)

    assert ex.submit(PROMPT, OK_ID) == OK_ID
    assert ex.status(OK_ID).state is JobStatus.COMPLETED
    assert [f.data for f in ex.outputs(OK_ID)] == [PNG]
    ex.cancel(OK_ID)  # finished: only a /queue look
    assert len(rsps.calls) == 6
    assert all(c.request.headers["CF-Access-Client-Secret"] == SECRET for c in rsps.calls)


def test_secrets_never_reach_errors_or_logs(
    rsps: responses.RequestsMock, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # A proxy that echoes the token in its error page, and a socket error that quotes it.
    rsps.add(responses.GET, f"{BASE}/queue", status=403, body=f"forbidden: bad token {SECRET}")
    rsps.add(responses.POST, f"{BASE}/prompt", body=requests.ConnectionError(f"reset while sending {SECRET}"))
    ex = make(headers=HEADERS)

    with pytest.raises(ExecutorRejected) as rejected:
        ex.status(OK_ID)
    assert "403" in str(rejected.value)
    assert SECRET not in str(rejected.value)

    with pytest.raises(ExecutorRejected) as during_submit:
        ex.submit(PROMPT, OK_ID)  # the /queue check after the reset is refused too
    assert SECRET not in str(during_submit.value)
    out = capsys.readouterr()
    logged = out.out + out.err + caplog.text
    assert "checking whether it was queued" in logged  # the retry was logged ...
    assert SECRET not in logged  # ... without the token


def test_redirects_are_not_followed_so_headers_stay_with_comfyui(rsps: responses.RequestsMock) -> None:
    login = "https://login.example.com/auth?next=tk"
    rsps.add(responses.GET, f"{BASE}/queue", status=302, headers={"Location": login})
    rsps.add(responses.GET, login, body="<html>login</html>")
    with pytest.raises(ExecutorRejected, match="redirect \\(302\\)") as info:
        make(headers=HEADERS).status(OK_ID)
    assert "login.example.com" not in str(info.value)
    assert [c.request.url for c in rsps.calls] == [f"{BASE}/queue"]


# --------------------------------------------------------------------------- submit


def test_submit_sends_prompt_client_id_and_our_prompt_id(rsps: responses.RequestsMock) -> None:
    recorded = load_recording("post_prompt_custom_id")
    job_id = recorded["sent_prompt_id"]
    rsps.add(
        responses.POST,
        f"{BASE}/prompt",
        json=recorded["resp"]["body"],
        # Each job gets its own client id, so ComfyUI's websocket events for it go to it alone.
        match=[
            matchers.json_params_matcher({"prompt": PROMPT, "client_id": f"job-runner-{job_id}", "prompt_id": job_id})
        ],
    )
    assert make(client_id="job-runner").submit(PROMPT, job_id) == job_id


def test_submit_returns_the_server_prompt_id_when_it_chose_its_own(rsps: responses.RequestsMock) -> None:
    # Servers older than client-chosen ids ignore ours; the id to follow is theirs.
    rsps.add(responses.POST, f"{BASE}/prompt", json=exchange("post_prompt_ok").body)
    assert make().submit(PROMPT, "job-1") == OK_ID


def test_submit_accepts_a_prompt_queued_with_some_node_errors(rsps: responses.RequestsMock) -> None:
    # 200 + node_errors means ComfyUI queued the valid outputs: the prompt runs.
    answer = dict(exchange("post_prompt_ok").body, node_errors={"9": {"errors": [], "class_type": "SaveImage"}})
    rsps.add(responses.POST, f"{BASE}/prompt", json=answer)
    assert make().submit(PROMPT, OK_ID) == OK_ID


REJECTIONS = {
    "err_out_of_range": [
        "node 1 (EmptyImage): Value 0 smaller than min of 1 (width)",
        "node 1 (EmptyImage): Value 99999 bigger than max of 16384 (height)",
    ],
    "err_bad_combo": [
        "node 1 (LoadImage): Custom validation failed for node (image - Invalid image file: does_not_exist.png)"
    ],
    "err_bad_value_type": ["node 1 (EmptyImage): Failed to convert an input value to a INT value (width, abc"],
    "err_missing_input": ["node 2 (ImageInvert): Required input is missing (image)"],
    "err_missing_link": ["node 3 (SaveImage): Exception when validating node ('99')"],
    "err_wrong_link_type": [
        "node 3 (SaveImage): Return type mismatch between linked nodes "
        "(images, received_type(LATENT) mismatch input_type(IMAGE))"
    ],
    "err_empty_prompt": ["Prompt has no outputs"],
    "err_no_output_node": ["Prompt has no outputs"],
    "err_invalid_class": ["Cannot execute because node NoSuchNode does not exist. (Node ID '#1')"],
    "err_missing_class_type": ["a node is missing the class_type property. (Node ID '#1')"],
    "err_no_prompt_key": ["No prompt provided"],
}


def test_every_recorded_rejection_is_covered() -> None:
    recorded = {p.stem for p in (FIXTURES / "comfyui").glob("err_*.json")}
    assert recorded == set(REJECTIONS) | {"err_malformed_json"}


@pytest.mark.parametrize("name", sorted(REJECTIONS))
def test_rejections_name_each_node_error(rsps: responses.RequestsMock, name: str) -> None:
    rec = exchange(name)
    rsps.add(responses.POST, f"{BASE}/prompt", json=rec.body, status=rec.status)
    with pytest.raises(ExecutorRejected) as info:
        make().submit(PROMPT, "job-1")
    message = str(info.value)
    assert "400" in message
    for expected in REJECTIONS[name]:
        assert expected in message
    assert "Traceback" not in message
    assert "validate_prompt" not in message  # err_missing_link's traceback stays out
    assert "(No prompt provided)" not in message  # details equal to the message are not repeated
    assert len(posts(rsps, "/prompt")) == 1


def test_local_500_on_submit_fails_with_an_error_that_mentions_500(rsps: responses.RequestsMock) -> None:
    rec = exchange("err_malformed_json")
    rsps.add(responses.POST, f"{BASE}/prompt", body=rec.body, status=rec.status, content_type=rec.content_type)
    with pytest.raises(ExecutorRejected) as info:
        make().submit(PROMPT, "job-1")
    assert "500" in str(info.value)
    assert "Server got itself in trouble" in str(info.value)
    assert len(posts(rsps, "/prompt")) == 1  # a POST is never repeated on a status


def test_gateway_error_on_submit_is_unavailable(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.POST, f"{BASE}/prompt", body="Bad Gateway", status=502)
    with pytest.raises(ExecutorUnavailable, match="502"):
        make().submit(PROMPT, "job-1")
    assert len(posts(rsps, "/prompt")) == 1


@pytest.mark.parametrize("where", ["queue_pending", "queue_running", "history"])
def test_submit_after_a_dropped_connection_finds_the_prompt_and_does_not_post_twice(
    rsps: responses.RequestsMock, where: str
) -> None:
    rsps.add(responses.POST, f"{BASE}/prompt", body=requests.ConnectionError("connection reset by peer"))
    rsps.add(responses.POST, f"{BASE}/prompt", json=exchange("post_prompt_ok").body)
    queue = copy.deepcopy(QUEUE_IDLE)
    if where != "history":
        # Found by prompt id, whatever client id it was queued with.
        queue[where] = [[7, OK_ID, PROMPT, {"client_id": f"comfyroute-{OK_ID}"}, ["2"]]]
    add_queue(rsps, queue)
    add_history(rsps, OK_ID, body("history_ok") if where == "history" else {})

    assert make().submit(PROMPT, OK_ID) == OK_ID
    assert len(posts(rsps, "/prompt")) == 1


def test_submit_posts_again_only_after_seeing_the_prompt_is_nowhere(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.POST, f"{BASE}/prompt", body=requests.ReadTimeout("read timed out"))
    rsps.add(responses.POST, f"{BASE}/prompt", json=exchange("post_prompt_ok").body)
    add_queue(rsps, QUEUE_IDLE)
    add_history(rsps, OK_ID, body("history_unknown_id"))

    assert make().submit(PROMPT, OK_ID) == OK_ID
    assert len(posts(rsps, "/prompt")) == 2
    urls = [c.request.url for c in rsps.calls]
    assert urls == [f"{BASE}/prompt", f"{BASE}/queue", f"{BASE}/history/{OK_ID}", f"{BASE}/prompt"]


def test_submit_does_not_post_again_when_it_cannot_check(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.POST, f"{BASE}/prompt", body=requests.ConnectionError("reset"))
    rsps.add(responses.GET, f"{BASE}/queue", body=requests.ConnectionError("refused"))
    with pytest.raises(ExecutorUnavailable, match="could not be asked whether prompt job-1 was queued"):
        make().submit(PROMPT, "job-1")
    assert len(posts(rsps, "/prompt")) == 1


def test_submit_gives_up_after_bounded_attempts(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.POST, f"{BASE}/prompt", body=requests.ConnectionError("reset"))
    add_queue(rsps, QUEUE_IDLE)
    add_history(rsps, "job-1", {})
    with pytest.raises(
        ExecutorUnavailable, match=r"^ComfyUI at 127\.0\.0\.1:8188 is not reachable: the connection was dropped$"
    ):
        make().submit(PROMPT, "job-1")
    assert len(posts(rsps, "/prompt")) == 2


def test_submit_to_a_server_that_refuses_connections_says_so_in_one_short_sentence() -> None:
    # A real refused connection (nothing listens on port 9 of loopback), not a mocked one.
    executor = ComfyUIExecutor("http://127.0.0.1:9/tunnel-secret-prefix", {"X-Tunnel": "hdr-secret-1"})
    with pytest.raises(ExecutorUnavailable) as caught:
        executor.submit(PROMPT, "job-1")
    text = str(caught.value)
    assert text == "ComfyUI at 127.0.0.1:9 is not reachable: connection refused"
    assert len(text) < 300
    assert "tunnel-secret-prefix" not in text


def test_the_shared_comfyui_is_named_so_and_its_address_never_shown(rsps: responses.RequestsMock) -> None:
    executor = ComfyUIExecutor(BASE + "/private-prefix", label="the shared ComfyUI")
    rsps.add(responses.GET, f"{BASE}/private-prefix/queue", status=404, body=f"no route {BASE}/private-prefix/queue")
    with pytest.raises(ExecutorRejected) as caught:
        executor.status("job-1")
    text = str(caught.value)
    assert text.startswith("the shared ComfyUI answered 404")
    assert "127.0.0.1" not in text
    assert "private-prefix" not in text


# --------------------------------------------------------------------------- status


def test_status_running_from_queue(rsps: responses.RequestsMock) -> None:
    add_queue(rsps, QUEUE_BUSY)
    status = make().status(RUNNING_ID)
    assert status.state is JobStatus.RUNNING
    assert all("/history" not in c.request.url for c in rsps.calls)  # one look is enough


class ScriptedSocket:
    """Stands in for websockets' sync connection: hands out frames, then times out (or raises)."""

    def __init__(self, frames: list[str | bytes | BaseException]) -> None:
        self.frames = list(frames)
        self.timeouts: list[float | None] = []

    def __enter__(self) -> ScriptedSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def recv(self, timeout: float | None = None) -> str | bytes:
        self.timeouts.append(timeout)
        if not self.frames:
            raise TimeoutError
        frame = self.frames.pop(0)
        if isinstance(frame, BaseException):
            raise frame
        return frame


def running_as(client_id: str) -> dict[str, Any]:
    queue = copy.deepcopy(QUEUE_IDLE)
    queue["queue_running"] = [[3, OK_ID, PROMPT, {"client_id": client_id}, ["2"]]]
    return queue


def ws_message(type_: str, **data: Any) -> str:
    return json.dumps({"type": type_, "data": data})


def test_running_status_carries_the_progress_read_from_the_prompts_websocket(
    rsps: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_queue(rsps, running_as(f"comfyroute-{OK_ID}"), base="https://tunnel.example.com/comfy")
    socket = ScriptedSocket(
        [
            ws_message("status", status={"exec_info": {"queue_remaining": 1}}, sid=f"comfyroute-{OK_ID}"),
            ws_message("executing", node="2"),
            b"\x00\x00\x00\x01\x00\x00\x00\x02\x89PNG",
            ws_message("progress", value=3, max=20, node="2", prompt_id=OK_ID),
            ws_message("progress", value=4, max=20, node="2", prompt_id=OK_ID),
        ]
    )
    opened: list[tuple[str, dict[str, Any]]] = []

    def connect(url: str, **kwargs: Any) -> ScriptedSocket:
        opened.append((url, kwargs))
        return socket

    monkeypatch.setattr(comfyui, "ws_connect", connect)
    ex = make("https://tunnel.example.com/comfy/", headers=HEADERS, progress_peek_seconds=0.3)
    status = ex.status(OK_ID)
    assert status == ExecutorStatus(state=JobStatus.RUNNING, progress=Progress(node_id="2", value=3, max=20))
    ((url, kwargs),) = opened
    assert url == f"wss://tunnel.example.com/comfy/ws?clientId=comfyroute-{OK_ID}"
    assert kwargs["additional_headers"] == HEADERS
    assert 0 < kwargs["open_timeout"] <= 5
    assert 0 < kwargs["close_timeout"] <= 1
    # A progress message settles it: the next one is not waited for.
    assert len(socket.frames) == 1
    assert all(t is not None and 0 < t <= 0.3 for t in socket.timeouts)


def test_peek_keeps_what_arrived_before_the_socket_broke(
    rsps: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_queue(rsps, running_as(f"comfyroute-{OK_ID}"))
    socket = ScriptedSocket([ws_message("executing", node="5"), ConnectionResetError("reset")])
    monkeypatch.setattr(comfyui, "ws_connect", lambda url, **kw: socket)
    assert make().status(OK_ID).progress == Progress(node_id="5", value=0, max=1)


@pytest.mark.parametrize("error", [OSError("connection refused"), TimeoutError(), ValueError("bad uri")])
def test_peek_that_cannot_connect_gives_running_without_progress(
    rsps: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    add_queue(rsps, running_as(f"comfyroute-{OK_ID}"))

    def connect(url: str, **kwargs: Any) -> ScriptedSocket:
        raise error

    monkeypatch.setattr(comfyui, "ws_connect", connect)
    assert make().status(OK_ID) == ExecutorStatus(state=JobStatus.RUNNING)


@pytest.mark.parametrize("client_id", ["test", "comfyroute", "other-comfyroute-x", None])
def test_prompts_this_executor_did_not_queue_are_not_peeked_at(
    rsps: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch, client_id: str | None
) -> None:
    # The recorded busy queue was made by client "test": its socket is someone else's.
    queue = running_as(client_id) if client_id is not None else copy.deepcopy(QUEUE_BUSY)
    if client_id is None:
        queue["queue_running"][0][3] = {}
    add_queue(rsps, queue)
    opened: list[str] = []
    monkeypatch.setattr(comfyui, "ws_connect", lambda url, **kw: opened.append(url))
    prompt_id = queue["queue_running"][0][1]
    assert make().status(prompt_id) == ExecutorStatus(state=JobStatus.RUNNING)
    assert opened == []


def test_peek_off_opens_no_socket(rsps: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch) -> None:
    add_queue(rsps, running_as(f"comfyroute-{OK_ID}"))
    opened: list[str] = []
    monkeypatch.setattr(comfyui, "ws_connect", lambda url, **kw: opened.append(url))
    assert make(progress_peek_seconds=0).status(OK_ID) == ExecutorStatus(state=JobStatus.RUNNING)
    assert opened == []


@pytest.mark.parametrize("state", ["queue_pending", "history"])
def test_only_a_running_prompt_is_peeked_at(
    rsps: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch, state: str
) -> None:
    queue = copy.deepcopy(QUEUE_IDLE)
    if state == "queue_pending":
        queue["queue_pending"] = [[3, OK_ID, PROMPT, {"client_id": f"comfyroute-{OK_ID}"}, ["2"]]]
    add_queue(rsps, queue)
    add_history(rsps, OK_ID, body("history_ok"))
    opened: list[str] = []
    monkeypatch.setattr(comfyui, "ws_connect", lambda url, **kw: opened.append(url))
    assert make().status(OK_ID).progress is None
    assert opened == []


def test_status_pending_with_queue_position(rsps: responses.RequestsMock) -> None:
    add_queue(rsps, QUEUE_BUSY)
    status = make().status(PENDING_ID)
    assert status.state is JobStatus.QUEUED
    assert status.queue_position == 0


def test_queue_position_follows_queue_numbers_not_list_order(rsps: responses.RequestsMock) -> None:
    # /queue hands out ComfyUI's heap as it lies in memory; run order is by number.
    queue = copy.deepcopy(QUEUE_BUSY)
    item = queue["queue_pending"][0]
    queue["queue_pending"] = [
        [30, "c", *item[2:]],
        [26, "a", *item[2:]],
        [28, "b", *item[2:]],
    ]
    add_queue(rsps, queue)
    ex = make()
    assert [ex.status(pid).queue_position for pid in ("a", "b", "c")] == [0, 1, 2]


def test_status_completed_from_history(rsps: responses.RequestsMock) -> None:
    add_queue(rsps, QUEUE_IDLE)
    add_history(rsps, OK_ID, body("history_ok"))
    status = make().status(OK_ID, submitted_at=0)
    assert status.state is JobStatus.COMPLETED
    assert status.error is None


def test_status_execution_error_names_node_type_and_message_not_traceback(rsps: responses.RequestsMock) -> None:
    add_queue(rsps, QUEUE_IDLE)
    add_history(rsps, ERROR_ID, body("runtime_error"))
    status = make().status(ERROR_ID)
    assert status.state is JobStatus.FAILED
    assert status.error is not None
    assert "node 2 (ImageBlur)" in status.error
    assert "RuntimeError" in status.error
    assert "Padding size should be less than the corresponding input dimension" in status.error
    assert "execution.py" not in status.error
    assert "\n" not in status.error


def test_status_interrupted_is_cancelled(rsps: responses.RequestsMock) -> None:
    add_queue(rsps, QUEUE_IDLE)
    add_history(rsps, RUNNING_ID, body("history_interrupted"))
    status = make().status(RUNNING_ID)
    assert status.state is JobStatus.CANCELLED
    assert status.message is not None
    assert "node 3 (ImageBlur)" in status.message


def test_status_error_without_details_is_failed(rsps: responses.RequestsMock) -> None:
    history = body("runtime_error")
    history[ERROR_ID]["status"]["messages"] = []
    add_queue(rsps, QUEUE_IDLE)
    add_history(rsps, ERROR_ID, history)
    status = make().status(ERROR_ID)
    assert status.state is JobStatus.FAILED
    assert "'error'" in (status.error or "")


@pytest.mark.parametrize("history_name", ["history_unknown_id", "history_deleted_pending"])
def test_unknown_prompt_is_queued_within_grace(rsps: responses.RequestsMock, history_name: str) -> None:
    add_queue(rsps, QUEUE_IDLE)
    add_history(rsps, "job-1", body(history_name))
    ex = make(clock=Clock(1_000.0), lost_grace_seconds=15)
    status = ex.status("job-1", submitted_at=990.0)
    assert status.state is JobStatus.QUEUED
    assert status.queue_position is None


@pytest.mark.parametrize("submitted_at", [980.0, None])
def test_unknown_prompt_after_grace_is_lost_never_success(
    rsps: responses.RequestsMock, submitted_at: float | None
) -> None:
    add_queue(rsps, QUEUE_IDLE)
    add_history(rsps, "job-1", body("history_unknown_id"))
    ex = make(clock=Clock(1_000.0), lost_grace_seconds=15)
    status = ex.status("job-1", submitted_at=submitted_at)
    assert status.state is JobStatus.FAILED
    assert "lost prompt job-1" in (status.error or "")
    assert "restarted" in (status.error or "")


def test_status_connection_failure_is_unavailable(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.GET, f"{BASE}/queue", body=requests.ConnectionError("connection refused"))
    with pytest.raises(ExecutorUnavailable, match="is not reachable: connection refused"):
        make().status(OK_ID)


def test_status_retries_a_busy_gateway_then_answers(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.GET, f"{BASE}/queue", status=503)
    add_queue(rsps, QUEUE_BUSY)
    assert make().status(RUNNING_ID).state is JobStatus.RUNNING
    assert len(rsps.calls) == 2


def test_status_gateway_down_after_retries_is_unavailable(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.GET, f"{BASE}/queue", status=504, body="Gateway Timeout")
    with pytest.raises(ExecutorUnavailable, match="504"):
        make().status(OK_ID)
    assert len(rsps.calls) == 4  # the first try and make_session's 3 retries


def test_login_page_instead_of_json_says_what_to_check(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.GET, f"{BASE}/queue", body="<html>Sign in</html>", content_type="text/html")
    with pytest.raises(ExecutorRejected, match=r"not JSON .*headers"):
        make().status(OK_ID)


def test_prompt_ids_cannot_change_the_url_path(rsps: responses.RequestsMock) -> None:
    add_queue(rsps, QUEUE_IDLE)
    rsps.add(responses.GET, f"{BASE}/history/..%2Fqueue", json={})
    assert make().status("../queue").state is JobStatus.FAILED


# --------------------------------------------------------------------------- outputs


def test_outputs_images(rsps: responses.RequestsMock) -> None:
    add_history(rsps, PLAIN_ID, body("wf_plain"))
    add_view(rsps, "plain_00002_.png")
    [out] = make().outputs(PLAIN_ID)
    assert (out.node_id, out.output_name, out.kind) == ("2", "images", "image")
    assert (out.filename, out.content_type, out.data, out.size) == ("plain_00002_.png", "image/png", PNG, 443)


def test_outputs_latents(rsps: responses.RequestsMock) -> None:
    add_history(rsps, LATENT_ID, body("wf_latent"))
    add_view(rsps, "probe_00002_.latent", b"latent-bytes", subfolder="latents", content_type="application/octet-stream")
    [out] = make().outputs(LATENT_ID)
    assert (out.node_id, out.output_name, out.kind) == ("2", "latents", "latent")
    assert out.content_type == "application/octet-stream"
    assert out.data == b"latent-bytes"


def test_outputs_of_every_kind_in_history_order(rsps: responses.RequestsMock) -> None:
    # gifs/audio/text/3d are shaped like the recorded images entries (VideoHelperSuite,
    # SaveAudio, text nodes); node order is the history's, not sorted.
    outputs = {
        "12": {
            "gifs": [{"filename": "clip_00001.mp4", "subfolder": "video", "type": "output", "format": "video/h264-mp4"}]
        },
        "4": {"audio": [{"filename": "voice_00001_.flac", "subfolder": "audio", "type": "output"}]},
        "7": {"text": ["hello", "grüße ✓"]},
        "9": {
            "images": [
                {"filename": "a_00001_.png", "subfolder": "", "type": "output"},
                {"filename": "a_00002_.png", "subfolder": "", "type": "output"},
            ],
            "animated": [False],
        },
        "10": {"3d": [{"filename": "mesh.glb", "subfolder": "3d", "type": "output"}]},
    }
    add_history(rsps, "job-1", history_with("job-1", outputs))
    add_view(rsps, "clip_00001.mp4", b"mp4", subfolder="video", content_type="video/mp4")
    add_view(rsps, "voice_00001_.flac", b"flac", subfolder="audio", content_type=None)
    add_view(rsps, "a_00001_.png")
    add_view(rsps, "a_00002_.png", PNG[::-1])
    add_view(rsps, "mesh.glb", b"glb", subfolder="3d", content_type="model/gltf-binary")

    files = make().outputs("job-1")
    assert [(f.node_id, f.output_name, f.kind, f.filename, f.content_type) for f in files] == [
        ("12", "gifs", "video", "clip_00001.mp4", "video/mp4"),
        ("4", "audio", "audio", "voice_00001_.flac", "audio/flac"),  # from the filename
        ("7", "text", "text", "7-text-0.txt", "text/plain"),
        ("7", "text", "text", "7-text-1.txt", "text/plain"),
        ("9", "images", "image", "a_00001_.png", "image/png"),
        ("9", "images", "image", "a_00002_.png", "image/png"),
        ("10", "3d", "file", "mesh.glb", "model/gltf-binary"),
    ]
    assert [f.data for f in files] == [b"mp4", b"flac", b"hello", "grüße ✓".encode(), PNG, PNG[::-1], b"glb"]


def test_video_reported_under_images_is_a_video(rsps: responses.RequestsMock) -> None:
    add_history(
        rsps,
        "job-1",
        history_with(
            "job-1",
            {"5": {"images": [{"filename": "v_00001_.webm", "subfolder": "", "type": "output"}], "animated": [True]}},
        ),
    )
    add_view(rsps, "v_00001_.webm", b"webm", content_type="video/webm")
    [out] = make().outputs("job-1")
    assert (out.kind, out.content_type) == ("video", "video/webm")


def test_temp_previews_are_the_outputs_when_there_is_nothing_else(rsps: responses.RequestsMock) -> None:
    add_history(rsps, PREVIEW_ID, body("wf_preview"))
    add_view(rsps, "ComfyUI_temp_bvyry_00001_.png", type_="temp")
    add_view(rsps, "ComfyUI_temp_bvyry_00002_.png", PNG[:100], type_="temp")
    files = make().outputs(PREVIEW_ID)
    assert [f.filename for f in files] == ["ComfyUI_temp_bvyry_00001_.png", "ComfyUI_temp_bvyry_00002_.png"]
    assert [f.data for f in files] == [PNG, PNG[:100]]


def test_temp_previews_are_dropped_next_to_saved_outputs(rsps: responses.RequestsMock) -> None:
    # Both recordings use node "2": the preview node becomes "5" here.
    outputs = {
        "5": body("wf_preview")[PREVIEW_ID]["outputs"]["2"],
        **body("wf_plain")[PLAIN_ID]["outputs"],
        "8": {"text": ["caption"]},
    }
    add_history(rsps, "job-1", history_with("job-1", outputs))
    add_view(rsps, "plain_00002_.png")
    files = make().outputs("job-1")
    assert [(f.node_id, f.filename) for f in files] == [("2", "plain_00002_.png"), ("8", "8-text-0.txt")]
    assert not [c for c in rsps.calls if "type=temp" in c.request.url]


def test_collect_refs_is_deterministic_and_skips_non_file_entries() -> None:
    outputs = {
        "3": {"images": [{"filename": "x.png"}, {"subfolder": "no-name"}, "junk"], "animated": [True]},
        "1": "not-a-dict",
    }
    refs = collect_refs(outputs)
    assert [(r.node_id, r.filename, r.subfolder, r.type) for r in refs] == [("3", "x.png", "", "output")]


def test_view_params_are_url_encoded(rsps: responses.RequestsMock) -> None:
    name = "a b&c=d#e_00001_.png"
    add_history(
        rsps,
        "job-1",
        history_with("job-1", {"3": {"images": [{"filename": name, "subfolder": "sub dir/x", "type": "output"}]}}),
    )
    add_view(rsps, name, subfolder="sub dir/x")
    [out] = make().outputs("job-1")
    assert out.filename == name
    assert rsps.calls[-1].request.url == (
        f"{BASE}/view?filename=a+b%26c%3Dd%23e_00001_.png&subfolder=sub+dir%2Fx&type=output"
    )


def test_missing_output_file_names_the_file(rsps: responses.RequestsMock) -> None:
    add_history(rsps, PLAIN_ID, body("wf_plain"))
    rec = exchange("view_missing")
    add_view(rsps, "plain_00002_.png", b"", status=rec.status, content_type=None)
    with pytest.raises(ExecutorRejected, match=r"plain_00002_\.png.*404"):
        make().outputs(PLAIN_ID)


def test_refused_output_path_names_the_file(rsps: responses.RequestsMock) -> None:
    add_history(
        rsps,
        "job-1",
        history_with("job-1", {"3": {"images": [{"filename": "../../etc/passwd", "subfolder": "", "type": "output"}]}}),
    )
    rec = exchange("view_traversal")
    add_view(rsps, "../../etc/passwd", b"", status=rec.status, content_type=None)
    with pytest.raises(ExecutorRejected, match=r"400 to GET /view for '\.\./\.\./etc/passwd'"):
        make().outputs("job-1")


@pytest.mark.parametrize("declared", [True, False])
def test_output_over_the_size_cap_names_the_file(rsps: responses.RequestsMock, declared: bool) -> None:
    add_history(rsps, PLAIN_ID, body("wf_plain"))
    rsps.add(responses.GET, f"{BASE}/view", body=PNG, content_type="image/png", auto_calculate_content_length=declared)
    # With a Content-Length the download stops before reading; without, while streaming.
    expected = "is 443 bytes; the limit is 400 bytes" if declared else "is over the limit of 400 bytes"
    with pytest.raises(ExecutorRejected, match=r"'plain_00002_\.png' \(node 2, images, type output\)") as info:
        make(max_output_bytes=400).outputs(PLAIN_ID)
    assert expected in str(info.value)


def test_output_at_the_size_cap_is_fine(rsps: responses.RequestsMock) -> None:
    add_history(rsps, PLAIN_ID, body("wf_plain"))
    add_view(rsps, "plain_00002_.png")
    assert make(max_output_bytes=len(PNG)).outputs(PLAIN_ID)[0].data == PNG


def test_outputs_of_an_unfinished_prompt_is_an_error(rsps: responses.RequestsMock) -> None:
    add_history(rsps, "job-1", {})
    with pytest.raises(ExecutorRejected, match="no history for prompt job-1"):
        make().outputs("job-1")


def test_failed_prompt_has_no_outputs(rsps: responses.RequestsMock) -> None:
    add_history(rsps, ERROR_ID, body("runtime_error"))
    assert make().outputs(ERROR_ID) == []


# --------------------------------------------------------------------------- cancel


def test_cancel_pending_deletes_it_from_the_queue(rsps: responses.RequestsMock) -> None:
    add_queue(rsps, QUEUE_BUSY)
    rsps.add(
        responses.POST,
        f"{BASE}/queue",
        body=exchange("post_queue_delete").body,
        match=[matchers.json_params_matcher({"delete": [PENDING_ID]})],
    )
    make().cancel(PENDING_ID)
    assert len(posts(rsps, "/queue")) == 1
    assert posts(rsps, "/interrupt") == []


def test_cancel_running_ours_interrupts_naming_the_prompt(rsps: responses.RequestsMock) -> None:
    add_queue(rsps, QUEUE_BUSY)
    rsps.add(
        responses.POST,
        f"{BASE}/interrupt",
        body=exchange("post_interrupt").body,
        match=[matchers.json_params_matcher({"prompt_id": RUNNING_ID})],
    )
    make().cancel(RUNNING_ID)
    assert len(posts(rsps, "/interrupt")) == 1
    assert posts(rsps, "/queue") == []


@pytest.mark.parametrize("prompt_id", [OK_ID, "never-seen"])
def test_cancel_of_other_finished_or_unknown_prompt_touches_nothing(
    rsps: responses.RequestsMock, prompt_id: str
) -> None:
    # Someone else's prompt is running: /interrupt would stop it on servers that ignore
    # the prompt_id, so nothing may be posted.
    add_queue(rsps, QUEUE_BUSY)
    make().cancel(prompt_id)
    assert [c.request.method for c in rsps.calls] == ["GET"]


def test_cancel_of_a_prompt_that_started_meanwhile_interrupts_it(rsps: responses.RequestsMock) -> None:
    started = copy.deepcopy(QUEUE_BUSY)
    started["queue_running"] = started["queue_pending"]
    started["queue_pending"] = []
    add_queue(rsps, QUEUE_BUSY)
    add_queue(rsps, started)
    rsps.add(responses.POST, f"{BASE}/queue", body="")
    rsps.add(
        responses.POST, f"{BASE}/interrupt", body="", match=[matchers.json_params_matcher({"prompt_id": PENDING_ID})]
    )
    make().cancel(PENDING_ID)
    assert len(posts(rsps, "/queue")) == 1
    assert len(posts(rsps, "/interrupt")) == 1


def test_cancel_when_unreachable_is_unavailable(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.GET, f"{BASE}/queue", body=requests.ConnectionError("refused"))
    with pytest.raises(ExecutorUnavailable):
        make().cancel(PENDING_ID)


# --------------------------------------------------------------------------- the plan's scenario


def test_submits_prompt_polls_history_returns_images(rsps: responses.RequestsMock) -> None:
    """executor-routing-plan: "submits prompt, polls history, and returns images"."""
    rsps.add(responses.POST, f"{BASE}/prompt", json=exchange("post_prompt_ok").body)
    running = copy.deepcopy(QUEUE_IDLE)
    running["queue_running"] = [[0, OK_ID, PROMPT, {"client_id": "comfyroute"}, ["3"]]]
    add_queue(rsps, running)
    add_queue(rsps, QUEUE_IDLE)
    add_history(rsps, OK_ID, body("history_ok"))
    view_headers = load_recording("view_ok")
    add_view(rsps, "probe_cc93ae_00001_.png", content_type=view_headers["content_type"])
    clock = Clock(100.0)
    ex = make(clock=clock)

    prompt_id = ex.submit(PROMPT, OK_ID)
    assert ex.status(prompt_id, submitted_at=100.0).state is JobStatus.RUNNING
    clock.now = 160.0
    assert ex.status(prompt_id, submitted_at=100.0).state is JobStatus.COMPLETED
    [image] = ex.outputs(prompt_id)
    assert image.filename == "probe_cc93ae_00001_.png"
    assert image.kind == "image"
    assert image.content_type == "image/png"
    assert image.data == PNG
    assert image.size == view_headers["len"]
    assert image.data.startswith(bytes.fromhex(view_headers["first16"]))
