"""The dev WebSocket gateway behaves like API Gateway: authorizer, routing, event shapes,
limits, timeouts and the Management API — with small Python callables as handlers."""

from __future__ import annotations

import base64
import json
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import msgpack
import pytest
import requests
from aws_lambda_powertools.utilities.parser.models import (
    APIGatewayWebSocketConnectEventModel,
    APIGatewayWebSocketDisconnectEventModel,
    APIGatewayWebSocketMessageEventModel,
)
from botocore.config import Config
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from comfyroute.frames import decode_event_body
from comfyroute_tools.dev.gateway import Gateway, GatewayConfig, policy_allows, select_route

TIMEOUT = 5.0
GOOD_TOKEN = "good-token"
DENIED_TOKEN = "denied-token"


def allow_or_deny(event: dict[str, Any]) -> dict[str, Any]:
    """An authorizer in the shape ours returns: Allow with a user id, Deny otherwise."""
    token = (event.get("queryStringParameters") or {}).get("token")
    if token == "raise":
        raise Exception("Unauthorized")
    effect = "Allow" if token == GOOD_TOKEN else "Deny"
    policy: dict[str, Any] = {
        "principalId": "alice" if effect == "Allow" else "anonymous",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": [event["methodArn"]]}],
        },
    }
    if effect == "Allow":
        policy["context"] = {"user_id": "alice"}
    return policy


class Recorder:
    """Route handlers that record every event they get, per route key."""

    def __init__(self) -> None:
        self.events: dict[str, queue.Queue[dict[str, Any]]] = {}
        self.authorizer_events: queue.Queue[dict[str, Any]] = queue.Queue()

    def route(self, key: str, result: Any = None) -> Callable[[dict[str, Any]], Any]:
        q = self.events.setdefault(key, queue.Queue())

        def handler(event: dict[str, Any]) -> Any:
            q.put(event)
            return result if result is not None else {"statusCode": 200}

        return handler

    def authorizer(self, event: dict[str, Any]) -> dict[str, Any]:
        self.authorizer_events.put(event)
        return allow_or_deny(event)

    def next(self, key: str) -> dict[str, Any]:
        return self.events[key].get(timeout=TIMEOUT)

    def none_for(self, key: str) -> bool:
        return self.events[key].empty()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def start_gateway(recorder: Recorder, authorizer: Any = None, **config: Any) -> Gateway:
    routes = {key: recorder.route(key) for key in ("$connect", "$disconnect", "$default", "run_job", "get_job")}
    gw = Gateway(routes, authorizer or recorder.authorizer, GatewayConfig(**config))
    gw.start("127.0.0.1", 0)
    return gw


@pytest.fixture
def gateway(recorder: Recorder) -> Iterator[Gateway]:
    gw = start_gateway(recorder)
    yield gw
    gw.stop()


def open_ws(gw: Gateway, token: str | None = GOOD_TOKEN) -> ClientConnection:
    url = f"{gw.ws_url}/" + (f"?token={token}" if token is not None else "")
    return connect(url, open_timeout=TIMEOUT, close_timeout=TIMEOUT, max_size=None)


def drain(ws: ClientConnection) -> None:
    """Receive until the server closes the socket (raises ConnectionClosed)."""
    while True:
        ws.recv(timeout=TIMEOUT)


def management(gw: Gateway) -> Any:
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=gw.http_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1}),
    )


# --------------------------------------------------------------------------- $connect + authorizer


def test_missing_token_is_401_without_calling_the_authorizer(gateway: Gateway, recorder: Recorder) -> None:
    with pytest.raises(InvalidStatus) as err:
        open_ws(gateway, token=None)
    assert err.value.response.status_code == 401
    assert recorder.authorizer_events.empty()
    assert recorder.none_for("$connect")
    assert gateway.connections == {}


def test_denied_token_is_403_and_connect_never_runs(gateway: Gateway, recorder: Recorder) -> None:
    with pytest.raises(InvalidStatus) as err:
        open_ws(gateway, token=DENIED_TOKEN)
    assert err.value.response.status_code == 403
    assert recorder.authorizer_events.get(timeout=TIMEOUT)["queryStringParameters"]["token"] == DENIED_TOKEN
    assert recorder.none_for("$connect")
    assert gateway.connections == {}


def test_authorizer_raising_unauthorized_is_401(gateway: Gateway, recorder: Recorder) -> None:
    with pytest.raises(InvalidStatus) as err:
        open_ws(gateway, token="raise")
    assert err.value.response.status_code == 401
    assert recorder.none_for("$connect")


def test_connect_refusal_status_reaches_the_client(recorder: Recorder) -> None:
    routes = {"$connect": recorder.route("$connect", {"statusCode": 409, "body": "no"})}
    gw = Gateway(routes, recorder.authorizer, GatewayConfig())
    gw.start("127.0.0.1", 0)
    try:
        with pytest.raises(InvalidStatus) as err:
            open_ws(gw)
        assert err.value.response.status_code == 409
        assert gw.connections == {}
    finally:
        gw.stop()


def test_authorizer_event_has_the_request_authorizer_shape(gateway: Gateway, recorder: Recorder) -> None:
    with open_ws(gateway):
        event = recorder.authorizer_events.get(timeout=TIMEOUT)
    assert event["type"] == "REQUEST"
    assert event["methodArn"] == "arn:aws:execute-api:us-east-1:123456789012:devwsapi01/dev/$connect"
    assert event["queryStringParameters"] == {"token": GOOD_TOKEN}
    assert event["multiValueQueryStringParameters"] == {"token": [GOOD_TOKEN]}
    assert "Sec-WebSocket-Key" in event["headers"]
    ctx = event["requestContext"]
    assert ctx["routeKey"] == "$connect"
    assert ctx["eventType"] == "CONNECT"
    assert ctx["apiId"] == "devwsapi01"
    assert ctx["stage"] == "dev"
    assert ctx["domainName"] == gateway.domain_name
    assert ctx["connectionId"]
    assert "authorizer" not in ctx


def test_accepted_connect_gets_the_policy_context(gateway: Gateway, recorder: Recorder) -> None:
    with open_ws(gateway):
        event = recorder.next("$connect")
        auth_event = recorder.authorizer_events.get(timeout=TIMEOUT)
    APIGatewayWebSocketConnectEventModel.model_validate(event)
    ctx = event["requestContext"]
    assert ctx["authorizer"]["user_id"] == "alice"
    assert ctx["authorizer"]["principalId"] == "alice"
    # The authorizer and $connect see the same connection.
    assert ctx["connectionId"] == auth_event["requestContext"]["connectionId"]
    assert event["queryStringParameters"]["token"] == GOOD_TOKEN


# --------------------------------------------------------------------------- messages


def test_message_is_routed_by_command_with_the_message_event_shape(gateway: Gateway, recorder: Recorder) -> None:
    body = json.dumps({"command": "run_job", "data": {"prompt": {}}})
    with open_ws(gateway) as ws:
        conn_id = recorder.next("$connect")["requestContext"]["connectionId"]
        ws.send(body)
        event = recorder.next("run_job")
    APIGatewayWebSocketMessageEventModel.model_validate(event)
    assert event["body"] == body
    assert event["isBase64Encoded"] is False
    ctx = event["requestContext"]
    assert ctx["routeKey"] == "run_job"
    assert ctx["eventType"] == "MESSAGE"
    assert ctx["messageDirection"] == "IN"
    assert ctx["connectionId"] == conn_id
    assert ctx["authorizer"]["user_id"] == "alice"
    for key in ("domainName", "stage", "apiId", "requestId", "messageId", "connectedAt", "requestTimeEpoch"):
        assert ctx[key], key
    assert ctx["requestTimeEpoch"] >= ctx["connectedAt"]
    assert recorder.none_for("$default")


@pytest.mark.parametrize(
    "frame",
    [
        json.dumps({"command": "no_such_command"}),
        "this is not JSON",
        json.dumps({"data": {}}),
        json.dumps(["run_job"]),
        json.dumps({"command": "$connect"}),
    ],
)
def test_unroutable_frames_go_to_default(gateway: Gateway, recorder: Recorder, frame: str) -> None:
    with open_ws(gateway) as ws:
        ws.send(frame)
        event = recorder.next("$default")
    assert event["requestContext"]["routeKey"] == "$default"
    assert event["body"] == frame
    assert recorder.none_for("run_job")


@pytest.mark.parametrize(
    ("frame", "route"),
    [
        # Past Python's int-parsing limit: API Gateway still reads the command.
        ('{"command": "run_job", "data": {"n": ' + "9" * 5000 + "}}", "run_job"),
        ('{"command": "get_job", "data": {"x": 1e999, "y": NaN}}', "get_job"),
        # Nested past json.loads' recursion limit: unreadable, so $default.
        ('{"command": "run_job", "data": ' + "[" * 3000 + "]" * 3000 + "}", "$default"),
    ],
)
def test_frames_the_json_parser_chokes_on_still_reach_a_route(
    gateway: Gateway, recorder: Recorder, frame: str, route: str
) -> None:
    # These used to raise inside route selection: no route ran and the client got nothing.
    with open_ws(gateway) as ws:
        ws.send(frame)
        event = recorder.next(route)
    assert event["body"] == frame


def test_message_of_128kb_is_accepted_and_one_byte_more_closes_with_1009(gateway: Gateway, recorder: Recorder) -> None:
    limit = 128 * 1024
    with open_ws(gateway) as ws:
        ws.send("x" * limit)
        assert len(recorder.next("$default")["body"]) == limit
        ws.send("x" * (limit + 1))
        with pytest.raises(ConnectionClosed) as err:
            ws.recv(timeout=TIMEOUT)
    assert err.value.rcvd is not None
    assert err.value.rcvd.code == 1009
    assert recorder.none_for("$default")
    disconnect = recorder.next("$disconnect")
    assert disconnect["requestContext"]["disconnectStatusCode"] == 1009
    assert disconnect["requestContext"]["disconnectReason"] == "Message too big"


def test_handler_exception_gives_the_client_internal_server_error(recorder: Recorder) -> None:
    def boom(event: dict[str, Any]) -> Any:
        raise RuntimeError("bug")

    routes = {"$connect": recorder.route("$connect"), "$default": boom}
    gw = Gateway(routes, recorder.authorizer, GatewayConfig())
    gw.start("127.0.0.1", 0)
    try:
        with open_ws(gw) as ws:
            ws.send("hello")
            reply = json.loads(ws.recv(timeout=TIMEOUT))
        assert reply["message"] == "Internal server error"
        assert reply["connectionId"]
    finally:
        gw.stop()


# --------------------------------------------------------------------------- Management API


def test_post_to_connection_reaches_the_socket(gateway: Gateway, recorder: Recorder) -> None:
    client = management(gateway)
    with open_ws(gateway) as ws:
        conn_id = recorder.next("$connect")["requestContext"]["connectionId"]
        client.post_to_connection(ConnectionId=conn_id, Data=b'{"type":"pong"}')
        assert ws.recv(timeout=TIMEOUT) == '{"type":"pong"}'
        info = client.get_connection(ConnectionId=conn_id)
    assert info["Identity"]["SourceIp"] == "127.0.0.1"
    assert info["ConnectedAt"] <= info["LastActiveAt"]


def test_post_to_a_closed_connection_is_gone(gateway: Gateway, recorder: Recorder) -> None:
    client = management(gateway)
    with open_ws(gateway):
        conn_id = recorder.next("$connect")["requestContext"]["connectionId"]
    disconnect = recorder.next("$disconnect")
    APIGatewayWebSocketDisconnectEventModel.model_validate(disconnect)
    assert disconnect["requestContext"]["connectionId"] == conn_id
    resp = requests.post(f"{gateway.http_url}/@connections/{conn_id}", data=b"x", timeout=TIMEOUT)
    assert resp.status_code == 410
    with pytest.raises(client.exceptions.GoneException):
        client.post_to_connection(ConnectionId=conn_id, Data=b"late")
    with pytest.raises(client.exceptions.GoneException):
        client.get_connection(ConnectionId="neverExisted0001=")


def test_post_under_the_stage_path_works_too(gateway: Gateway, recorder: Recorder) -> None:
    with open_ws(gateway) as ws:
        conn_id = recorder.next("$connect")["requestContext"]["connectionId"]
        resp = requests.post(f"{gateway.http_url}/dev/@connections/{conn_id}", data=b"staged", timeout=TIMEOUT)
        assert resp.status_code == 200
        assert ws.recv(timeout=TIMEOUT) == "staged"


def test_post_over_128kb_is_payload_too_large(gateway: Gateway, recorder: Recorder) -> None:
    client = management(gateway)
    with open_ws(gateway):
        conn_id = recorder.next("$connect")["requestContext"]["connectionId"]
        with pytest.raises(client.exceptions.PayloadTooLargeException):
            client.post_to_connection(ConnectionId=conn_id, Data=b"x" * (128 * 1024 + 1))


def test_delete_connection_closes_the_socket(gateway: Gateway, recorder: Recorder) -> None:
    client = management(gateway)
    with open_ws(gateway) as ws:
        conn_id = recorder.next("$connect")["requestContext"]["connectionId"]
        client.delete_connection(ConnectionId=conn_id)
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=TIMEOUT)
    disconnect = recorder.next("$disconnect")["requestContext"]
    assert disconnect["connectionId"] == conn_id
    assert disconnect["disconnectStatusCode"] == 1000
    with pytest.raises(client.exceptions.GoneException):
        client.delete_connection(ConnectionId=conn_id)


def test_post_hook_sees_every_delivered_message(recorder: Recorder) -> None:
    seen: list[tuple[str, bytes]] = []
    routes = {"$connect": recorder.route("$connect")}
    gw = Gateway(routes, recorder.authorizer, GatewayConfig(), on_post=lambda c, d: seen.append((c, d)))
    gw.start("127.0.0.1", 0)
    try:
        with open_ws(gw) as ws:
            conn_id = recorder.next("$connect")["requestContext"]["connectionId"]
            management(gw).post_to_connection(ConnectionId=conn_id, Data=b"hello")
            ws.recv(timeout=TIMEOUT)
        assert seen == [(conn_id, b"hello")]
    finally:
        gw.stop()


# --------------------------------------------------------------------------- timeouts and shutdown


def test_idle_connection_is_closed_with_1001(recorder: Recorder) -> None:
    gw = start_gateway(recorder, idle_timeout=0.3)
    try:
        with open_ws(gw) as ws, pytest.raises(ConnectionClosed) as err:
            ws.recv(timeout=TIMEOUT)
        assert err.value.rcvd is not None
        assert err.value.rcvd.code == 1001
        disconnect = recorder.next("$disconnect")
        assert disconnect["requestContext"]["disconnectReason"] == "Idle timeout"
    finally:
        gw.stop()


def test_messages_keep_a_connection_alive_until_max_duration(recorder: Recorder) -> None:
    gw = start_gateway(recorder, idle_timeout=0.5, max_duration=1.0)
    try:
        with open_ws(gw) as ws:
            # Activity resets the idle timer, but not the connection's maximum age.
            stop = threading.Event()

            def chatter() -> None:
                while not stop.wait(0.1):
                    try:
                        ws.send("keepalive")
                    except ConnectionClosed:
                        return

            t = threading.Thread(target=chatter, daemon=True)
            t.start()
            with pytest.raises(ConnectionClosed) as err:
                drain(ws)
            stop.set()
            t.join(TIMEOUT)
        assert err.value.rcvd is not None
        assert err.value.rcvd.code == 1001
        assert recorder.next("$disconnect")["requestContext"]["disconnectReason"] == "Maximum connection duration"
    finally:
        gw.stop()


def test_stop_closes_sockets_with_1001_and_runs_disconnect(recorder: Recorder) -> None:
    gw = start_gateway(recorder)
    ws = open_ws(gw)
    conn_id = recorder.next("$connect")["requestContext"]["connectionId"]
    gw.stop()
    with pytest.raises(ConnectionClosed) as err:
        ws.recv(timeout=TIMEOUT)
    assert err.value.rcvd is not None
    assert err.value.rcvd.code == 1001
    disconnect = recorder.next("$disconnect")["requestContext"]
    assert disconnect["connectionId"] == conn_id
    assert disconnect["disconnectStatusCode"] == 1001
    assert gw.connections == {}


# --------------------------------------------------------------------------- HTTP: health and web client


def test_healthz_and_static_files(recorder: Recorder, tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<h1>comfyroute</h1>")
    (tmp_path / "app.js").write_text("export const x = 1;")
    (tmp_path.parent / "secret.txt").write_text("not served")
    gw = Gateway({}, None, GatewayConfig(web_dir=tmp_path))
    gw.start("127.0.0.1", 0)
    try:
        assert requests.get(f"{gw.http_url}/healthz", timeout=TIMEOUT).json()["status"] == "ok"
        index = requests.get(f"{gw.http_url}/", timeout=TIMEOUT)
        assert index.status_code == 200
        assert index.text == "<h1>comfyroute</h1>"
        js = requests.get(f"{gw.http_url}/app.js", timeout=TIMEOUT)
        assert js.headers["Content-Type"].startswith("text/javascript")
        assert requests.get(f"{gw.http_url}/missing.css", timeout=TIMEOUT).status_code == 404
        assert requests.get(f"{gw.http_url}/%2e%2e/secret.txt", timeout=TIMEOUT).status_code == 404
    finally:
        gw.stop()


# --------------------------------------------------------------------------- pure helpers


def test_select_route() -> None:
    routes = {"$default": 1, "run_job": 1, "ping": 1}
    expr = "$request.body.command"
    assert select_route('{"command": "run_job"}', expr, routes) == "run_job"
    assert select_route('{"command": "other"}', expr, routes) == "$default"
    assert select_route('{"command": 3}', expr, routes) == "$default"
    assert select_route("nope", expr, routes) == "$default"
    assert select_route('{"a": {"b": "ping"}}', "$request.body.a.b", routes) == "ping"
    assert select_route('{"command": "ping", "n": ' + "1" * 4301 + "}", expr, routes) == "ping"
    assert select_route("[" * 5000, expr, routes) == "$default"


def test_policy_allows_needs_a_matching_allow_and_no_deny() -> None:
    arn = "arn:aws:execute-api:us-east-1:1:api/dev/$connect"

    def policy(*statements: dict[str, Any]) -> dict[str, Any]:
        return {"policyDocument": {"Statement": list(statements)}}

    allow_all = {"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": "arn:aws:execute-api:*"}
    deny_this = {"Effect": "Deny", "Action": "execute-api:Invoke", "Resource": [arn]}
    allow_other = {"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": "arn:aws:execute-api:eu-west-1:*"}
    assert policy_allows(policy(allow_all), arn)
    assert not policy_allows(policy(allow_all, deny_this), arn)
    assert not policy_allows(policy(allow_other), arn)
    assert not policy_allows(policy(), arn)


def test_handshake_before_ready_is_503_starting_and_healthz_says_so(recorder: Recorder) -> None:
    import requests
    from websockets.exceptions import InvalidStatus

    gw = Gateway({}, recorder.authorizer, GatewayConfig(), ready=False)
    gw.start("127.0.0.1", 0)
    try:
        health = requests.get(f"{gw.http_url}/healthz", timeout=TIMEOUT)
        assert health.status_code == 503
        assert health.json()["status"] == "starting"
        with pytest.raises(InvalidStatus) as err:
            open_ws(gw)
        assert err.value.response.status_code == 503
        assert recorder.authorizer_events.empty()  # refused before any handler ran
        gw.ready.set()
        assert requests.get(f"{gw.http_url}/healthz", timeout=TIMEOUT).status_code == 200
        open_ws(gw).close()
    finally:
        gw.stop()


# --------------------------------------------------------------------------- binary frames, paths, nodetool's query


def test_binary_frame_closes_with_1003_and_reaches_no_route(gateway: Gateway, recorder: Recorder) -> None:
    # API Gateway's documented behaviour (Binary media types for WebSocket APIs): reject, disconnect, 1003.
    frame = msgpack.packb({"type": "run_job", "command": "run_job", "data": {}})
    with open_ws(gateway) as ws:
        ws.send(frame)
        with pytest.raises(ConnectionClosed) as err:
            ws.recv(timeout=TIMEOUT)
    assert err.value.rcvd is not None
    assert err.value.rcvd.code == 1003
    disconnect = recorder.next("$disconnect")["requestContext"]
    assert disconnect["disconnectStatusCode"] == 1003
    assert recorder.none_for("$default")
    assert recorder.none_for("run_job")


def test_binary_frames_to_default_route_arrive_base64_at_default(recorder: Recorder) -> None:
    gw = start_gateway(recorder, binary_frames="default_route")
    frame = {"type": "run_job", "command": "run_job", "data": {"job_id": "j1", "seed": 2**40}}
    raw = msgpack.packb(frame)
    try:
        with open_ws(gw) as ws:
            conn_id = recorder.next("$connect")["requestContext"]["connectionId"]
            ws.send(raw)
            event = recorder.next("$default")
            ws.send(json.dumps({"command": "run_job", "data": {}}))  # text still goes by its command
            assert recorder.next("run_job")["isBase64Encoded"] is False
    finally:
        gw.stop()
    APIGatewayWebSocketMessageEventModel.model_validate(event)
    # Route selection cannot read a binary frame: even a run_job lands at $default.
    assert event["requestContext"]["routeKey"] == "$default"
    assert event["requestContext"]["connectionId"] == conn_id
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == raw
    assert decode_event_body(event) == frame
    assert recorder.none_for("run_job")


@pytest.mark.parametrize("path", ["/", "/ws", "/ws/", "/dev", "/dev/"])
def test_websocket_is_served_at_root_stage_and_ws(recorder: Recorder, gateway: Gateway, path: str) -> None:
    with connect(f"{gateway.ws_url}{path}?token={GOOD_TOKEN}", open_timeout=TIMEOUT) as ws:
        ws.send(json.dumps({"command": "get_job", "data": {}}))
        assert recorder.next("get_job")["requestContext"]["routeKey"] == "get_job"


@pytest.mark.parametrize("path", ["/nope", "/ws/extra", "/prod"])
def test_websocket_elsewhere_is_403_before_the_authorizer(recorder: Recorder, gateway: Gateway, path: str) -> None:
    with pytest.raises(InvalidStatus) as err:
        connect(f"{gateway.ws_url}{path}?token={GOOD_TOKEN}", open_timeout=TIMEOUT)
    assert err.value.response.status_code == 403
    assert recorder.authorizer_events.empty()
    assert recorder.none_for("$connect")
    assert gateway.serves_websocket_at("/ws")
    assert not gateway.serves_websocket_at(path)


def nodetool_style_authorizer(event: dict[str, Any]) -> dict[str, Any]:
    """Allows ?api_key=, ?token= or Authorization: Bearer — whichever carries the good token."""
    query = event.get("queryStringParameters") or {}
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    bearer = headers.get("authorization", "").removeprefix("Bearer ")
    granted = GOOD_TOKEN in (query.get("api_key"), query.get("token"), bearer)
    return allow_or_deny({**event, "queryStringParameters": {"token": GOOD_TOKEN if granted else "x"}})


def test_api_key_and_resume_job_reach_the_authorizer_and_connect_as_api_gateway_passes_them(
    recorder: Recorder,
) -> None:
    def authorizer(event: dict[str, Any]) -> dict[str, Any]:
        recorder.authorizer_events.put(event)
        return nodetool_style_authorizer(event)

    # No identity source: API Gateway then calls the authorizer for every handshake.
    gw = start_gateway(recorder, authorizer, identity_sources=())
    try:
        # nodetool's GlobalWebSocketManager.buildAuthenticatedUrl: BASE/ws?api_key=…&resume_job=…
        with connect(f"{gw.ws_url}/ws?api_key={GOOD_TOKEN}&resume_job=job-42", open_timeout=TIMEOUT):
            auth = recorder.authorizer_events.get(timeout=TIMEOUT)
            connect_event = recorder.next("$connect")
    finally:
        gw.stop()
    assert auth["queryStringParameters"] == {"api_key": GOOD_TOKEN, "resume_job": "job-42"}
    assert auth["multiValueQueryStringParameters"] == {"api_key": [GOOD_TOKEN], "resume_job": ["job-42"]}
    assert connect_event["queryStringParameters"] == {"api_key": GOOD_TOKEN, "resume_job": "job-42"}
    assert connect_event["requestContext"]["authorizer"]["user_id"] == "alice"


def test_bearer_header_reaches_the_authorizer(recorder: Recorder) -> None:
    def authorizer(event: dict[str, Any]) -> dict[str, Any]:
        recorder.authorizer_events.put(event)
        return nodetool_style_authorizer(event)

    gw = start_gateway(recorder, authorizer, identity_sources=())
    try:
        with connect(
            f"{gw.ws_url}/ws", open_timeout=TIMEOUT, additional_headers={"Authorization": f"Bearer {GOOD_TOKEN}"}
        ):
            auth = recorder.authorizer_events.get(timeout=TIMEOUT)
        with pytest.raises(InvalidStatus) as err:
            connect(f"{gw.ws_url}/ws", open_timeout=TIMEOUT, additional_headers={"Authorization": "Bearer wrong"})
        assert err.value.response.status_code == 403
    finally:
        gw.stop()
    assert auth["headers"]["Authorization"] == f"Bearer {GOOD_TOKEN}"
    assert auth["multiValueHeaders"]["Authorization"] == [f"Bearer {GOOD_TOKEN}"]
    assert "queryStringParameters" in auth


def test_api_key_alone_is_401_while_the_identity_source_is_the_token(gateway: Gateway, recorder: Recorder) -> None:
    # What the deployed template does today (IdentitySource route.request.querystring.token):
    # nodetool's ?api_key= never reaches the authorizer.
    with pytest.raises(InvalidStatus) as err:
        connect(f"{gateway.ws_url}/ws?api_key={GOOD_TOKEN}", open_timeout=TIMEOUT)
    assert err.value.response.status_code == 401
    assert recorder.authorizer_events.empty()
