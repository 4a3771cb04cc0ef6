"""`comfyroute keys list / revoke`: against `comfyroute dev` over real WebSockets (a revoked
token is refused and its open sockets are closed, other users' stay up), and against a deployed
stack's outputs under moto (DeleteConnection for each connection of the key)."""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from comfyroute.aws.connections import DynamoConnections
from comfyroute.ports import ApiKeyRecord
from comfyroute_tools.cli.dev import register
from comfyroute_tools.cli.keys import KeysError, select_keys
from comfyroute_tools.dev.stack import DevStack, issue_token_in_table

TIMEOUT = 10.0


def cli(*argv: str) -> Any:
    parser = argparse.ArgumentParser(prog="comfyroute")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["keys", *argv])
    return args.handler(args)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    state_file = tmp_path_factory.mktemp("keys") / "dev.json"
    with DevStack("127.0.0.1", 0, handler_log_level="WARNING", state_file=state_file) as s:
        yield s


def open_ws(stack: DevStack, token: str) -> ClientConnection:
    return connect(f"{stack.ws_url}/?token={token}", open_timeout=TIMEOUT, close_timeout=TIMEOUT)


def ping(ws: ClientConnection) -> dict[str, Any]:
    ws.send(json.dumps({"command": "ping"}))
    return json.loads(ws.recv(timeout=TIMEOUT))


def key_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def listed(stack: DevStack, capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, dict[str, Any]]:
    assert cli("list", "--json", "--state-file", str(stack.state_file), *extra) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return {row["key_id"]: row for row in rows}


def test_connect_records_the_key_of_the_connection(stack: DevStack) -> None:
    with open_ws(stack, stack.token) as ws:
        assert ping(ws)["type"] == "pong"
        conn_id = next(iter(stack.gateway.connections))  # type: ignore[union-attr]
        row = stack.client("dynamodb").get_item(
            TableName=stack.env["CONNECTIONS_TABLE"], Key={"connection_id": {"S": conn_id}}
        )["Item"]
    assert row["key_id"]["S"] == key_id(stack.token)
    assert row["user_id"]["S"] == "dev"


def test_list_shows_each_key_with_its_open_connections_and_never_a_token(
    stack: DevStack, capsys: pytest.CaptureFixture[str]
) -> None:
    carol = stack.issue_token("carol", label="laptop")
    with open_ws(stack, carol), open_ws(stack, carol):
        rows = listed(stack, capsys, "--user", "carol")
        (row,) = rows.values()
        assert row["key_id"] == key_id(carol)[:12]
        assert (row["user_id"], row["label"], row["status"], row["open_connections"]) == (
            "carol",
            "laptop",
            "active",
            2,
        )
        # The table form too, and neither shows the token.
        assert cli("list", "--state-file", str(stack.state_file)) == 0
        table = capsys.readouterr().out
    assert table.splitlines()[0].split() == ["KEY", "USER", "LABEL", "CREATED", "STATUS", "OPEN"]
    assert key_id(carol)[:12] in table
    assert carol not in table
    assert stack.token not in table


def test_revoke_refuses_the_token_and_closes_its_sockets_but_no_one_elses(
    stack: DevStack, capsys: pytest.CaptureFixture[str]
) -> None:
    alice = stack.issue_token("alice")
    alice_phone = stack.issue_token("alice")  # another key of the same user: stays valid
    bob = stack.issue_token("bob")
    with (
        open_ws(stack, alice) as a1,
        open_ws(stack, alice) as a2,
        open_ws(stack, alice_phone) as a3,
        open_ws(stack, bob) as b,
    ):
        for ws in (a1, a2, a3, b):
            assert ping(ws)["type"] == "pong"
        assert cli("revoke", key_id(alice)[:8], "--state-file", str(stack.state_file)) == 0
        out = capsys.readouterr().out
        assert f"revoked {key_id(alice)[:12]} (user alice): closed 2 open connections" in out
        for ws in (a1, a2):
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=TIMEOUT)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1000
        assert ping(a3)["type"] == "pong"
        assert ping(b)["type"] == "pong"
    with pytest.raises(InvalidStatus) as refused:
        open_ws(stack, alice)
    assert refused.value.response.status_code == 403
    rows = listed(stack, capsys, "--user", "alice")
    assert rows[key_id(alice)[:12]]["status"] == "revoked"
    assert rows[key_id(alice)[:12]]["open_connections"] == 0  # $disconnect removed the rows
    assert rows[key_id(alice_phone)[:12]]["status"] == "active"


def test_revoke_by_user_revokes_every_key_of_that_user(stack: DevStack, capsys: pytest.CaptureFixture[str]) -> None:
    tokens = [stack.issue_token("dave"), stack.issue_token("dave")]
    with open_ws(stack, tokens[0]) as ws:
        assert cli("revoke", "--user", "dave", "--state-file", str(stack.state_file)) == 0
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=TIMEOUT)
    assert capsys.readouterr().out.count("revoked ") == 2
    for token in tokens:
        with pytest.raises(InvalidStatus):
            open_ws(stack, token)


def test_revoke_usage_errors_exit_2(stack: DevStack, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("revoke", "--state-file", str(stack.state_file)) == 2
    assert "name the keys to revoke" in capsys.readouterr().err
    assert cli("revoke", "ffffffffffff", "--state-file", str(stack.state_file)) == 2
    assert "no key with id ffffffffffff" in capsys.readouterr().err


def test_select_keys_wants_unambiguous_prefixes() -> None:
    def rec(h: str, user: str = "u") -> ApiKeyRecord:
        return ApiKeyRecord(key_hash=h, user_id=user, created_at=0)

    records = [rec("abcdef0011"), rec("abcdef0022"), rec("123456789a", "v")]
    with pytest.raises(KeysError, match="matches 2 keys"):
        select_keys(records, ["abcdef00"], None)
    with pytest.raises(KeysError, match="too short"):
        select_keys(records, ["abc"], None)
    assert [r.key_hash for r in select_keys(records, ["ABCDEF001"], None)] == ["abcdef0011"]
    assert [r.key_hash for r in select_keys(records, ["123456"], "v")] == ["123456789a"]
    with pytest.raises(KeysError, match="user w has no keys"):
        select_keys(records, [], "w")


# --------------------------------------------------------------------------- a deployed stack (moto)

STACK_TEMPLATE = {
    "Resources": {
        "ApiKeysTable": {
            "Type": "AWS::DynamoDB::Table",
            "Properties": {
                "TableName": "prod-keys",
                "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [{"AttributeName": "key_hash", "AttributeType": "S"}],
                "KeySchema": [{"AttributeName": "key_hash", "KeyType": "HASH"}],
            },
        },
        "ConnectionsTable": {
            "Type": "AWS::DynamoDB::Table",
            "Properties": {
                "TableName": "prod-connections",
                "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [
                    {"AttributeName": "connection_id", "AttributeType": "S"},
                    {"AttributeName": "key_id", "AttributeType": "S"},
                ],
                "KeySchema": [{"AttributeName": "connection_id", "KeyType": "HASH"}],
                "GlobalSecondaryIndexes": [
                    {
                        "IndexName": "by_key",
                        "KeySchema": [{"AttributeName": "key_id", "KeyType": "HASH"}],
                        "Projection": {"ProjectionType": "KEYS_ONLY"},
                    }
                ],
            },
        },
    },
    "Outputs": {
        "ApiKeysTableName": {"Value": {"Ref": "ApiKeysTable"}},
        "ConnectionsTableName": {"Value": {"Ref": "ConnectionsTable"}},
        "ManagementApiUrl": {"Value": "https://abc123.execute-api.us-east-1.amazonaws.com/prod"},
    },
}


def test_revoke_on_a_deployed_stack_deletes_each_connection_of_the_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from moto.apigatewaymanagementapi.models import apigatewaymanagementapi_backends

    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        boto3.client("cloudformation", region_name="us-east-1").create_stack(
            StackName="prod", TemplateBody=json.dumps(STACK_TEMPLATE)
        )
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        token = issue_token_in_table(ddb, "prod-keys", "erin")
        other = issue_token_in_table(ddb, "prod-keys", "frank")
        conns = DynamoConnections.from_table(
            boto3.resource("dynamodb", region_name="us-east-1").Table("prod-connections")
        )
        conns.put_for_key("conn1", "erin", key_id(token))
        conns.put_for_key("conn2", "erin", key_id(token))
        conns.put_for_key("conn3", "frank", key_id(other))
        backend = apigatewaymanagementapi_backends["123456789012"]["us-east-1"]
        # (ids without API Gateway's trailing "=": moto does not unquote the path of DeleteConnection)
        for cid in ("conn1", "conn2", "conn3"):
            backend.post_to_connection(b"{}", cid)  # moto's stand-in for an open connection

        assert cli("list", "--stack", "prod", "--region", "us-east-1", "--json") == 0
        rows = {json.loads(line)["user_id"]: json.loads(line) for line in capsys.readouterr().out.splitlines()}
        assert rows["erin"]["open_connections"] == 2
        assert cli("revoke", key_id(token)[:10], "--stack", "prod", "--region", "us-east-1") == 0
        assert "closed 2 open connections" in capsys.readouterr().out
        assert set(backend.connections) == {"conn3"}
        item = ddb.get_item(TableName="prod-keys", Key={"key_hash": {"S": key_id(token)}})["Item"]
        assert item["revoked"] == {"BOOL": True}


def test_keys_need_a_dev_stack_or_a_stack(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("list", "--state-file", str(tmp_path / "none.json")) == 2
    assert "comfyroute dev" in capsys.readouterr().err
