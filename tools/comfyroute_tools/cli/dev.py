"""The ``comfyroute dev`` subcommand, and the registration of ``comfyroute keys`` (cli/keys.py).

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

from comfyroute_tools.cli.keys import KEYS_HELP, configure_keys, default_state_file, run_keys

DEV_HELP = "run the whole backend on this machine (moto, handlers, WebSocket gateway; no Docker, no AWS)"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


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
        "--nodetool",
        action="store_true",
        help=(
            "serve nodetool's unchanged web client: its binary (msgpack) frames go to $default, which "
            "hands them to their routes (a deployed API Gateway closes such a socket with 1003), and a "
            "connection from loopback without a key is the dev user (nodetool sends none on localhost)"
        ),
    )
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
            nodetool=args.nodetool,
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
                        [f"  nodetool    VITE_API_URL={stack.http_url}   (socket {stack.ws_url}/ws)"]
                        if args.nodetool
                        else []
                    ),
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


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``dev`` and ``keys`` to the ``comfyroute`` parser; each sets ``handler(args) -> int``."""
    dev = subparsers.add_parser("dev", help=DEV_HELP, description=DEV_HELP)
    configure_dev(dev)
    dev.set_defaults(handler=run_dev)
    keys = subparsers.add_parser("keys", help=KEYS_HELP, description=KEYS_HELP)
    configure_keys(keys)
    keys.set_defaults(handler=run_keys)
