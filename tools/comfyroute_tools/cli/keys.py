"""``comfyroute keys create | list | revoke``: API tokens of the dev stack or a deployed stack.

A key is known by its id, the first characters of the SHA-256 the API keys table stores (the
token itself is shown once, at ``create``, and stored nowhere). ``revoke`` marks the key revoked,
so the authorizer refuses it from then on, and closes every connection still open with it:
$connect records the key on the connection (``Connections.put_for_key``), and ``revoke`` calls
the Management API's DeleteConnection on each — API Gateway then runs $disconnect as usual.

Where: without ``--stack``, the running ``comfyroute dev`` (its state file, or ``--endpoint-url``
for its moto); with ``--stack NAME``, that CloudFormation stack's outputs (``ApiKeysTableName``,
``ConnectionsTableName``, ``ManagementApiUrl``) under boto3's usual credentials.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

KEYS_HELP = "issue, list and revoke API tokens of the dev stack or a deployed stack"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

KEY_ID_CHARS = 12  # shown by `keys list`
MIN_KEY_ID_CHARS = 6  # accepted by `keys revoke`
_DEV_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def default_state_file() -> Path:
    return Path(os.environ.get("COMFYROUTE_DEV_STATE", Path.home() / ".comfyroute" / "dev.json"))


class KeysError(Exception):
    """Bad usage or a target that cannot be found; printed, exit 2."""


# --------------------------------------------------------------------------- arguments


def _add_target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack", default=None, help="a deployed stack name: use its outputs")
    parser.add_argument("--region", default=None, help="AWS region of --stack (default boto3's)")
    parser.add_argument(
        "--endpoint-url", default=None, help="the dev stack's moto endpoint (default from the state file)"
    )
    parser.add_argument("--table", default=None, help="the API keys table name (default discovered)")
    parser.add_argument("--state-file", type=Path, default=None, help="dev state file (default ~/.comfyroute/dev.json)")


def configure_keys(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    create = sub.add_parser(
        "create",
        help="issue a token for a user and print it (once; only its SHA-256 is stored)",
        description=(
            "Issue an API token for USER. Without --stack it goes to the running `comfyroute dev` "
            "(its moto endpoint from --endpoint-url or the dev state file); with --stack to the API "
            "keys table of that deployed CloudFormation stack."
        ),
    )
    create.add_argument("--user", required=True, help="the user id the token authenticates as")
    create.add_argument("--label", default=None, help="a note stored with the key (e.g. who or where it is used)")
    _add_target(create)

    listing = sub.add_parser(
        "list",
        help="the issued keys: id, user, label, when, revoked or not, open connections",
        description="List the API keys (never the tokens: only their ids) and how many connections each has open.",
    )
    listing.add_argument("--user", default=None, help="only this user's keys")
    listing.add_argument("--json", action="store_true", help="one JSON object per key instead of a table")
    _add_target(listing)

    revoke = sub.add_parser(
        "revoke",
        help="refuse a key from now on and close the connections open with it",
        description=(
            "Revoke keys by id (as `keys list` shows it; any unambiguous prefix of at least "
            f"{MIN_KEY_ID_CHARS} characters) or every key of --user. The authorizer refuses them at "
            "once, and each connection still open with them is closed through the Management API."
        ),
    )
    revoke.add_argument("key_ids", nargs="*", metavar="KEY_ID", help="ids of the keys to revoke")
    revoke.add_argument("--user", default=None, help="revoke every key of this user")
    _add_target(revoke)


# --------------------------------------------------------------------------- where the keys are


@dataclass
class Target:
    """One stack's key and connection tables, and a way to reach its Management API."""

    dynamodb: Any  # a boto3 DynamoDB client (keys create) for the same endpoint as `resource`
    resource: Any  # a boto3 DynamoDB service resource
    api_keys_table: str
    connections_table: str | None
    management: Callable[[], Any] | None  # builds an apigatewaymanagementapi client
    where: str  # for messages: "the dev stack" / "stack NAME"


def _read_state(path: Path, required: bool) -> dict[str, Any]:
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if required:
            raise KeysError(
                f"no running dev stack: {path} does not exist (start `comfyroute dev`, "
                "or give --endpoint-url, or --stack for a deployed stack)"
            ) from None
        return {}
    except (OSError, json.JSONDecodeError) as exc:
        raise KeysError(f"cannot read {path}: {exc}") from None
    if not isinstance(state, dict):
        raise KeysError(f"cannot read {path}: not a JSON object")
    return state


def _discover(names: list[str], fragment: str, endpoint: str | None, option: str) -> str:
    found = [n for n in names if fragment in n.lower().replace("-", "").replace("_", "")]
    if len(found) != 1:
        raise KeysError(f"cannot tell the {fragment} table at {endpoint} (candidates: {found}); give {option}")
    return found[0]


def dev_target(args: argparse.Namespace) -> Target:
    import boto3

    state = _read_state(args.state_file or default_state_file(), required=args.endpoint_url is None)
    endpoint = args.endpoint_url or state.get("moto_endpoint")
    region = state.get("region", "us-east-1")
    session = boto3.session.Session(
        region_name=region,
        aws_access_key_id=_DEV_CREDENTIALS["aws_access_key_id"],
        aws_secret_access_key=_DEV_CREDENTIALS["aws_secret_access_key"],
    )
    client = session.client("dynamodb", endpoint_url=endpoint)
    resource = session.resource("dynamodb", endpoint_url=endpoint)
    keys_table = args.table or state.get("api_keys_table")
    connections_table = state.get("connections_table")
    if not keys_table or not connections_table:
        names = client.list_tables()["TableNames"]
        keys_table = keys_table or _discover(names, "apikeys", endpoint, "--table")
        connections_table = connections_table or _discover(names, "connections", endpoint, "--state-file")
    management: Callable[[], Any] | None = None
    http_url = state.get("http_url")
    if http_url:

        def management() -> Any:
            # Signed with the stack's own key: beyond loopback the dev gateway wants it.
            return boto3.session.Session(
                region_name=region,
                aws_access_key_id=state.get("management_access_key", "testing"),
                aws_secret_access_key=state.get("management_secret_key", "testing"),
            ).client("apigatewaymanagementapi", endpoint_url=http_url)

    return Target(client, resource, keys_table, connections_table, management, "the dev stack")


def stack_target(args: argparse.Namespace) -> Target:
    import boto3

    session = boto3.session.Session(region_name=args.region)
    stacks = session.client("cloudformation").describe_stacks(StackName=args.stack)["Stacks"]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    keys_table = args.table or outputs.get("ApiKeysTableName")
    if not keys_table:
        raise KeysError(f"stack {args.stack} has no ApiKeysTableName output; give --table")
    url = outputs.get("ManagementApiUrl")

    def management() -> Any:
        return session.client("apigatewaymanagementapi", endpoint_url=url)

    return Target(
        session.client("dynamodb"),
        session.resource("dynamodb"),
        keys_table,
        outputs.get("ConnectionsTableName"),
        management if url else None,
        f"stack {args.stack}",
    )


# --------------------------------------------------------------------------- the actions


def _created(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def select_keys(records: list[Any], key_ids: list[str], user: str | None) -> list[Any]:
    """The records ``revoke`` acts on: each id an unambiguous prefix, or all of ``user``'s."""
    if not key_ids and user is None:
        raise KeysError("name the keys to revoke (KEY_ID as `keys list` shows it) or give --user")
    chosen: list[Any] = []
    for key_id in key_ids:
        wanted = key_id.strip().lower()
        if len(wanted) < MIN_KEY_ID_CHARS:
            raise KeysError(f"key id '{key_id}' is too short: give at least {MIN_KEY_ID_CHARS} characters")
        matches = [r for r in records if r.key_hash.startswith(wanted)]
        if not matches:
            raise KeysError(f"no key with id {key_id}")
        if len(matches) > 1:
            raise KeysError(f"key id {key_id} matches {len(matches)} keys; give more characters")
        chosen.append(matches[0])
    if user is not None:
        mine = [r for r in records if r.user_id == user]
        if not mine:
            raise KeysError(f"user {user} has no keys")
        chosen.extend(mine)
    unique = {r.key_hash: r for r in chosen}
    return list(unique.values())


def _create(target: Target, args: argparse.Namespace) -> int:
    from comfyroute_tools.dev.stack import issue_token_in_table

    token = issue_token_in_table(target.dynamodb, target.api_keys_table, args.user, args.label)
    print(f"issued a token for user {args.user} in {target.api_keys_table} (shown once):", file=sys.stderr)
    print(token)
    return EXIT_OK


def _list(target: Target, args: argparse.Namespace) -> int:
    from comfyroute.aws.apikeys import DynamoApiKeys
    from comfyroute.aws.connections import DynamoConnections

    records = DynamoApiKeys.from_table(target.resource.Table(target.api_keys_table)).list_keys(args.user)
    conns = (
        DynamoConnections.from_table(target.resource.Table(target.connections_table))
        if target.connections_table
        else None
    )
    rows = []
    for r in records:
        rows.append(
            {
                "key_id": r.key_hash[:KEY_ID_CHARS],
                "user_id": r.user_id,
                "label": r.label or "",
                "created": _created(r.created_at),
                "status": "revoked" if r.revoked else "active",
                "open_connections": len(conns.list_by_key(r.key_hash)) if conns else None,
            }
        )
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return EXIT_OK
    if not rows:
        print(f"no keys in {target.where}" + (f" for user {args.user}" if args.user else ""), file=sys.stderr)
        return EXIT_OK
    header = {"key_id": "KEY", "user_id": "USER", "label": "LABEL", "created": "CREATED", "status": "STATUS"}
    widths = {k: max(len(header[k]), *(len(str(row[k])) for row in rows)) for k in header}
    print("  ".join(header[k].ljust(widths[k]) for k in header) + "  OPEN")
    for row in rows:
        opened = "?" if row["open_connections"] is None else str(row["open_connections"])
        print("  ".join(str(row[k]).ljust(widths[k]) for k in header) + f"  {opened}")
    return EXIT_OK


def _revoke(target: Target, args: argparse.Namespace) -> int:
    from botocore.exceptions import ClientError

    from comfyroute.aws.apikeys import DynamoApiKeys
    from comfyroute.aws.connections import DynamoConnections

    keys = DynamoApiKeys.from_table(target.resource.Table(target.api_keys_table))
    chosen = select_keys(keys.list_keys(), list(args.key_ids), args.user)
    conns = (
        DynamoConnections.from_table(target.resource.Table(target.connections_table))
        if target.connections_table
        else None
    )
    management = target.management() if target.management and conns else None
    failed = False
    for record in chosen:
        # Revoke first: a client that reconnects after its socket closes is refused.
        keys.revoke(record.key_hash)
        summary = f"revoked {record.key_hash[:KEY_ID_CHARS]} (user {record.user_id})"
        if conns is None or management is None:
            print(
                f"{summary}; cannot close its connections: {target.where} names no connections table or Management API",
                file=sys.stderr,
            )
            failed = True
            continue
        closed = gone = 0
        for connection_id in conns.list_by_key(record.key_hash):
            try:
                management.delete_connection(ConnectionId=connection_id)
                closed += 1
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "GoneException":
                    print(f"{summary}; could not close {connection_id}: {exc}", file=sys.stderr)
                    failed = True
                    continue
                # Closed already, and $disconnect never cleaned up: drop the stale row.
                conns.delete(connection_id)
                gone += 1
        note = f", {gone} already gone" if gone else ""
        print(f"{summary}: closed {closed} open connection{'s' if closed != 1 else ''}{note}")
    return EXIT_FAILED if failed else EXIT_OK


ACTIONS: dict[str, Callable[[Target, argparse.Namespace], int]] = {
    "create": _create,
    "list": _list,
    "revoke": _revoke,
}


def run_keys(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        target = stack_target(args) if args.stack else dev_target(args)
        return ACTIONS[args.keys_command](target, args)
    except (KeysError, ValueError) as exc:
        print(f"comfyroute keys: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (BotoCoreError, ClientError) as exc:
        print(f"comfyroute keys: {exc}", file=sys.stderr)
        return EXIT_FAILED
