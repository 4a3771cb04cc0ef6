"""The ``comfyroute dev`` and ``comfyroute keys`` subcommands.

Registered in :mod:`comfyroute_tools.cli`; heavy imports (moto, aiohttp) happen only when a
command runs, so ``comfyroute convert`` stays quick.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

DEV_HELP = "run the whole backend on this machine (moto, handlers, WebSocket gateway; no Docker, no AWS)"
KEYS_HELP = "issue API tokens for the dev stack or a deployed stack"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def default_state_file() -> Path:
    return Path(os.environ.get("COMFYROUTE_DEV_STATE", Path.home() / ".comfyroute" / "dev.json"))


# --------------------------------------------------------------------------- dev


def configure_dev(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Run the handlers, template and state machine that deploy, in one process: an embedded moto "
        "(DynamoDB, S3, Secrets Manager, Step Functions), the WebSocket API with its authorizer and "
        "routes, the Management API and the web client, all on one port. State is kept in memory "
        "and is gone when the process stops (use --token to keep a client's token across restarts). "
        "Executors: 'local' reaches COMFYUI_ADDR; 'runpod' uses RUNPOD_API_BASE and RUNPOD_API_KEY "
        "from the environment."
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help=(
            "address to listen on (default 127.0.0.1); beyond loopback the Management API on the port "
            "answers only calls signed with this stack's key"
        ),
    )
    parser.add_argument(
        "--port", type=int, default=3001, help="port for WebSocket, Management API and web (default 3001)"
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("COMFYROUTE_DEV_TOKEN"),
        help="use this dev token instead of a new one (16-256 characters; env COMFYROUTE_DEV_TOKEN)",
    )
    parser.add_argument(
        "--comfyui-addr",
        default=os.environ.get("COMFYUI_ADDR") or "127.0.0.1:8188",
        help="ComfyUI server for the 'local' executor (env COMFYUI_ADDR, default 127.0.0.1:8188)",
    )
    parser.add_argument(
        "--runpod-api-base",
        default=os.environ.get("RUNPOD_API_BASE"),
        help="RunPod API base URL (env RUNPOD_API_BASE; default the template's); the key comes from RUNPOD_API_KEY",
    )
    parser.add_argument(
        "--template", type=Path, default=None, help="template.yaml to build from (default the repository's)"
    )
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="the handlers' Powertools log level (default WARNING: job events are logged anyway)",
    )
    parser.add_argument(
        "--idle-timeout", type=float, default=600, help="seconds before an idle socket closes (default 600)"
    )
    parser.add_argument("--max-duration", type=float, default=7200, help="seconds a socket may live (default 7200)")
    parser.add_argument(
        "--state-file",
        type=Path,
        default=None,
        help=(
            "where to note the URL, the dev token and the moto endpoint for `comfyroute run` and "
            "`comfyroute keys` (mode 0600; default ~/.comfyroute/dev.json, env COMFYROUTE_DEV_STATE)"
        ),
    )


def _comfyui_headers_from_env() -> dict[str, str]:
    raw = os.environ.get("COMFYUI_HEADERS", "").strip()
    if not raw:
        return {}
    try:
        headers = json.loads(raw)
    except json.JSONDecodeError:
        raise ValueError("COMFYUI_HEADERS must be a JSON object of header names to values") from None
    if not isinstance(headers, dict):
        raise ValueError("COMFYUI_HEADERS must be a JSON object of header names to values")
    return {str(k): str(v) for k, v in headers.items()}


def _configure_logging() -> None:
    # "comfyroute_dev", not "comfyroute_tools.dev": Powertools' Logger owns the "comfyroute" logger
    # (the service name) and would turn our console lines into JSON.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    dev_log = logging.getLogger("comfyroute_dev")
    dev_log.setLevel(logging.INFO)
    dev_log.addHandler(handler)
    dev_log.propagate = False
    # Powertools warns on every invocation that no metric was emitted; metrics are off in dev.
    warnings.filterwarnings("ignore", message="No application metrics to publish")


def _wait_for_stop() -> None:
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_dev(args: argparse.Namespace) -> int:
    from comfyroute_tools.dev.stack import DevStack, DevStackError

    _configure_logging()
    try:
        headers = _comfyui_headers_from_env()
        stack = DevStack(
            args.host,
            args.port,
            comfyui_addr=args.comfyui_addr,
            comfyui_headers=headers,
            runpod_api_base=args.runpod_api_base,
            runpod_api_key=os.environ.get("RUNPOD_API_KEY") or None,
            token=args.token,
            idle_timeout=args.idle_timeout,
            max_duration=args.max_duration,
            template_path=args.template,
            handler_log_level=args.log_level,
            state_file=args.state_file or default_state_file(),
        )
    except ValueError as exc:
        print(f"comfyroute dev: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print("comfyroute dev: starting (moto, handlers, gateway)...", file=sys.stderr)
    try:
        stack.start()
    except DevStackError as exc:
        print(f"comfyroute dev: {exc}", file=sys.stderr)
        return EXIT_FAILED
    try:
        runpod_base = stack.env.get("RUNPOD_API_BASE", "")
        runpod_key = "set" if os.environ.get("RUNPOD_API_KEY") else "not set (RUNPOD_API_KEY)"
        print(
            "\n".join(
                [
                    "",
                    f"  WebSocket   {stack.ws_url}/?token=<token>",
                    f"  web client  {stack.http_url}/",
                    f"  token       {stack.token}   (user {stack.dev_user})",
                    f"  executors   local -> {args.comfyui_addr}   runpod -> {runpod_base} (API key {runpod_key})",
                    f"  moto        {stack.moto_endpoint}",
                    f"  state file  {stack.state_file}   (URL and token for `comfyroute run`, mode 0600)",
                    *(
                        ["  management  signed calls only (--host is not loopback; the key is in the state file)"]
                        if stack.signed_management
                        else []
                    ),
                    "",
                    "State is in memory and is gone when this stops. Ctrl-C to stop.",
                    "",
                ]
            ),
            flush=True,
        )
        _wait_for_stop()
    finally:
        print("comfyroute dev: stopping...", file=sys.stderr)
        stack.stop()
        print("comfyroute dev: stopped", file=sys.stderr)
    return EXIT_OK


# --------------------------------------------------------------------------- keys


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
    create.add_argument("--stack", default=None, help="a deployed stack name: use its ApiKeysTableName output")
    create.add_argument("--region", default=None, help="AWS region of --stack (default boto3's)")
    create.add_argument(
        "--endpoint-url", default=None, help="the dev stack's moto endpoint (default from the state file)"
    )
    create.add_argument("--table", default=None, help="the API keys table name (default discovered)")
    create.add_argument("--state-file", type=Path, default=None, help="dev state file (default ~/.comfyroute/dev.json)")


class KeysError(Exception):
    pass


def _dev_target(args: argparse.Namespace) -> tuple[Any, str]:
    import boto3

    endpoint, table, region = args.endpoint_url, args.table, "us-east-1"
    state_file: Path = args.state_file or default_state_file()
    if endpoint is None or table is None:
        try:
            state = json.loads(state_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            if endpoint is None:
                raise KeysError(
                    f"no running dev stack: {state_file} does not exist (start `comfyroute dev`, "
                    "or give --endpoint-url, or --stack for a deployed stack)"
                ) from None
            state = {}
        except (OSError, json.JSONDecodeError) as exc:
            raise KeysError(f"cannot read {state_file}: {exc}") from None
        endpoint = endpoint or state.get("moto_endpoint")
        table = table or state.get("api_keys_table")
        region = state.get("region", region)
    client = boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    if not table:
        names = [
            n for n in client.list_tables()["TableNames"] if "apikeys" in n.lower().replace("-", "").replace("_", "")
        ]
        if len(names) != 1:
            raise KeysError(f"cannot tell the API keys table at {endpoint} (candidates: {names}); give --table")
        table = names[0]
    return client, table


def _stack_target(args: argparse.Namespace) -> tuple[Any, str]:
    import boto3

    session = boto3.session.Session(region_name=args.region)
    stacks = session.client("cloudformation").describe_stacks(StackName=args.stack)["Stacks"]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    table = args.table or outputs.get("ApiKeysTableName")
    if not table:
        raise KeysError(f"stack {args.stack} has no ApiKeysTableName output; give --table")
    return session.client("dynamodb"), table


def run_keys(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    from comfyroute_tools.dev.stack import issue_token_in_table

    try:
        client, table = _stack_target(args) if args.stack else _dev_target(args)
        token = issue_token_in_table(client, table, args.user, args.label)
    except (KeysError, ValueError) as exc:
        print(f"comfyroute keys: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (BotoCoreError, ClientError) as exc:
        print(f"comfyroute keys: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"issued a token for user {args.user} in {table} (shown once):", file=sys.stderr)
    print(token)
    return EXIT_OK


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``dev`` and ``keys`` to the ``comfyroute`` parser; each sets ``handler(args) -> int``."""
    dev = subparsers.add_parser("dev", help=DEV_HELP, description=DEV_HELP)
    configure_dev(dev)
    dev.set_defaults(handler=run_dev)
    keys = subparsers.add_parser("keys", help=KEYS_HELP, description=KEYS_HELP)
    configure_keys(keys)
    keys.set_defaults(handler=run_keys)
