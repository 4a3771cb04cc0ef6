"""ComfyUIExecutor's schema side: GET /object_info (with the user's headers, bounded, not a
login page), and ComfyUI's node_errors as structured problems on the rejection."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests
import responses
from responses import matchers
from support.recordings import body, load_recording

from comfyroute.executors import comfyui
from comfyroute.executors.base import ExecutorRejected, ExecutorUnavailable
from comfyroute.executors.comfyui import ComfyUIExecutor, rejection_details

BASE = "http://127.0.0.1:8188"
SECRET = "cf-secret-7d1e9b0c"
HEADERS = {"CF-Access-Client-Secret": SECRET}
PROMPT = {"1": {"class_type": "EmptyImage", "inputs": {"width": 0, "height": 99999, "batch_size": 1, "color": 0}}}


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def test_fetch_object_info_sends_the_headers_and_returns_the_json_as_served(rsps: responses.RequestsMock) -> None:
    served = json.dumps({"EmptyImage": {"input": {"required": {}}, "output": ["IMAGE"]}}).encode()
    rsps.get(f"{BASE}/object_info", body=served, match=[matchers.header_matcher(HEADERS)])
    assert ComfyUIExecutor("127.0.0.1:8188", HEADERS).fetch_object_info() == served


def test_fetch_object_info_refuses_a_login_page_and_an_oversized_answer(
    rsps: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    rsps.get(f"{BASE}/object_info", body="<html>sign in</html>", content_type="text/html")
    with pytest.raises(ExecutorRejected, match="text/html, not a JSON object"):
        ComfyUIExecutor("127.0.0.1:8188").fetch_object_info()
    rsps.replace(responses.GET, f"{BASE}/object_info", body=b"{" + b" " * 300 + b"}")
    monkeypatch.setattr(comfyui, "OBJECT_INFO_MAX_BYTES", 100)
    with pytest.raises(ExecutorRejected, match="over 100 bytes"):
        ComfyUIExecutor("127.0.0.1:8188").fetch_object_info()


def test_fetch_object_info_unreachable_names_no_secret(rsps: responses.RequestsMock) -> None:
    rsps.get(f"{BASE}/object_info", body=requests.ConnectionError(f"refused {SECRET}"))
    with pytest.raises(ExecutorUnavailable) as caught:
        ComfyUIExecutor("127.0.0.1:8188", HEADERS).fetch_object_info()
    assert SECRET not in str(caught.value)
    assert "GET /object_info" in str(caught.value)


def test_node_errors_become_one_problem_per_error_with_the_input(rsps: responses.RequestsMock) -> None:
    rsps.post(f"{BASE}/prompt", status=400, json=body("err_out_of_range"))
    with pytest.raises(ExecutorRejected) as caught:
        ComfyUIExecutor("127.0.0.1:8188").submit(PROMPT, "job-1")
    assert [p.model_dump() for p in caught.value.details] == [
        {
            "node_id": "1",
            "class_type": "EmptyImage",
            "input": "width",
            "message": "Value 0 smaller than min of 1 (width)",
        },
        {
            "node_id": "1",
            "class_type": "EmptyImage",
            "input": "height",
            "message": "Value 99999 bigger than max of 16384 (height)",
        },
    ]
    assert "Value 0 smaller than min of 1" in str(caught.value)  # the readable text stays


def test_an_unknown_class_names_its_node_from_the_top_level_error() -> None:
    problems = rejection_details(body("err_invalid_class"))
    assert [(p.node_id, p.class_type, p.input) for p in problems] == [("1", None, None)]
    assert "NoSuchNode does not exist" in problems[0].message


def test_a_body_that_is_not_comfyuis_gives_no_problems() -> None:
    assert rejection_details("Internal Server Error") == []
    assert rejection_details({"node_errors": []}) == []


def test_a_runtime_error_names_its_node_as_a_problem_too() -> None:
    recorded = load_recording("runtime_error")["history"]
    prompt_id, entry = next(iter(recorded.items()))
    status = comfyui.history_status(prompt_id, comfyui._HistoryEntry.model_validate(entry))
    assert status.errors is not None
    [problem] = status.errors
    assert (problem.node_id, problem.class_type, problem.input) == ("2", "ImageBlur", None)
    assert problem.message.startswith("RuntimeError: ")
    assert "execution.py" not in problem.message  # no traceback
