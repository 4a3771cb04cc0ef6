"""$default's hand-over: the event another route's function gets for a frame API Gateway could
not route (a binary msgpack frame), and which functions own which commands."""

from __future__ import annotations

import json

import pytest
from support import load_event

from comfyroute.awslambda import dispatch
from comfyroute.frames import decode_event_body


@pytest.fixture(autouse=True)
def _fresh_mapping():
    dispatch.route_functions.cache_clear()
    yield
    dispatch.route_functions.cache_clear()


def test_the_routed_event_is_the_json_event_api_gateway_would_have_sent() -> None:
    event = load_event("default_msgpack_run_job")
    frame = decode_event_body(event)
    routed = dispatch.routed_event(event, frame, "run_job")
    assert routed["requestContext"]["routeKey"] == "run_job"
    assert routed["isBase64Encoded"] is False
    # The frame as sent, but for nodetool's auth_token, which never leaves $default.
    assert "auth_token" in frame["data"]
    assert json.loads(routed["body"]) == {
        **frame,
        "data": {k: v for k, v in frame["data"].items() if k != "auth_token"},
    }
    assert "auth_token" not in routed["body"]
    # Everything else is API Gateway's own: the connection, the authorizer's user, the ids.
    for key in ("connectionId", "authorizer", "domainName", "stage", "requestId"):
        assert routed["requestContext"][key] == event["requestContext"][key]
    assert event["requestContext"]["routeKey"] == "$default"  # the original is not changed


def test_owners_come_from_route_functions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROUTE_FUNCTIONS", json.dumps({"run_job": "fn-run", "get_job": "fn-q"}))
    assert dispatch.owner_of("run_job") == "fn-run"
    assert dispatch.owner_of("ping") is None
    assert dispatch.owner_of(None) is None


@pytest.mark.parametrize("raw", ["", "not json", "[1]", '{"run_job": 3}'])
def test_an_unusable_mapping_owns_nothing(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("ROUTE_FUNCTIONS", raw)
    assert dispatch.owner_of("run_job") is None


def test_a_frame_too_large_for_an_async_invoke_is_refused_before_calling_lambda() -> None:
    event = load_event("default_msgpack_run_job")
    frame = {"command": "run_job", "data": {"graph": {"nodes": [], "pad": "x" * dispatch.MAX_EVENT_BYTES}}}
    with pytest.raises(dispatch.HandOverFailed, match="too large"):
        dispatch.hand_over(event, frame, "run_job", "fn-run")
