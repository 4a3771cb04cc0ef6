"""``comfyroute object-info push``: store the node schemas a RunPod endpoint's jobs are converted with.

RunPod serverless has no ``/object_info``, so editor workflows (and nodetool graphs with
``_comfy_widgets``) sent to an endpoint are converted with the snapshot stored for it, at
``object-info/runpod/{user}/{endpoint}.json.gz`` in the outputs bucket; without one, with the
snapshot of core ComfyUI bundled in the library. The snapshot comes from a file (``/object_info``
saved from a ComfyUI with the endpoint's custom nodes, gzipped or not, or a snapshot file) or is
fetched from a ComfyUI you name (``--from-url``, with its ``/system_stats`` version). Without
``--stack`` it goes to the running ``comfyroute dev`` (its moto endpoint and bucket from the dev
state file); with ``--stack`` to that deployed stack's ``OutputsBucketName``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path
from typing import Any

import requests

from comfyroute.conversion.object_info import ObjectInfo, snapshot
from comfyroute.protocol import ENDPOINT_ID_PATTERN
from comfyroute.schemas import runpod_key

HELP = "store the node schemas (ComfyUI /object_info) a RunPod endpoint's workflows are converted with"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
FETCH_TIMEOUT = (5.0, 60.0)


class PushError(Exception):
    pass


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="object_info_command", metavar="ACTION", required=True)
    push = sub.add_parser("push", help=HELP, description=__doc__.split("\n\n")[1] if __doc__ else HELP)
    push.add_argument("--endpoint", required=True, help="the RunPod endpoint id (runpod_endpoint_id)")
    source = push.add_mutually_exclusive_group(required=True)
    source.add_argument("file", nargs="?", metavar="FILE", help="/object_info JSON (or .json.gz, or a snapshot)")
    source.add_argument(
        "--from-url", metavar="URL", help="fetch URL/object_info from a ComfyUI (e.g. http://host:8188)"
    )
    push.add_argument("--user", default=None, help="the user id whose jobs use it (default: the dev stack's user)")
    push.add_argument("--stack", default=None, help="a deployed stack name: use its OutputsBucketName output")
    push.add_argument("--region", default=None, help="AWS region of --stack (default boto3's)")
    push.add_argument("--endpoint-url", default=None, help="the dev stack's moto endpoint (default: state file)")
    push.add_argument("--bucket", default=None, help="the outputs bucket (default discovered)")
    push.add_argument("--state-file", type=Path, default=None, help="dev state file (default ~/.comfyroute/dev.json)")


def build_snapshot(data: bytes, *, source: str, comfyui_version: str | None = None) -> tuple[bytes, ObjectInfo]:
    """The gzipped snapshot to store and what it holds; ``PushError`` when ``data`` is not object_info."""
    try:
        info = ObjectInfo.from_bytes(data, source=source)
    except (ValueError, OSError, EOFError) as exc:
        raise PushError(f"{source} is not ComfyUI's /object_info JSON: {str(exc)[:200]}") from None
    if not info or not all(isinstance(v, dict) for v in info.raw.values()):
        raise PushError(f"{source} is not ComfyUI's /object_info: expected an object of node classes")
    version = comfyui_version or info.comfyui_version
    body = snapshot(info.raw, comfyui_version=version, source=source, stored=time.strftime("%Y-%m-%dT%H:%M:%SZ"))
    packed = gzip.compress(json.dumps(body, separators=(",", ":")).encode(), compresslevel=6)
    return packed, ObjectInfo(info.raw, comfyui_version=version, source=source)


def fetch_from_comfyui(url: str) -> tuple[bytes, str | None]:
    base = url.rstrip("/")
    try:
        resp = requests.get(f"{base}/object_info", timeout=FETCH_TIMEOUT)
        resp.raise_for_status()
    except requests.RequestException as exc:
        raise PushError(f"cannot fetch {base}/object_info: {exc}") from None
    version: str | None = None
    try:
        stats = requests.get(f"{base}/system_stats", timeout=FETCH_TIMEOUT).json()
        found = stats.get("system", {}).get("comfyui_version") if isinstance(stats, dict) else None
        version = str(found) if found else None
    except (requests.RequestException, ValueError):
        pass  # an older server or a proxy that hides it: the snapshot just names no version
    return resp.content, version


def _dev_target(args: argparse.Namespace) -> tuple[Any, str, str | None]:
    import boto3

    from comfyroute_tools.cli.keys import default_state_file

    state_file: Path = args.state_file or default_state_file()
    state: dict[str, Any] = {}
    if args.endpoint_url is None or args.bucket is None or args.user is None:
        try:
            state = json.loads(state_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise PushError(
                f"no running dev stack: {state_file} does not exist (start `comfyroute dev`, give "
                "--endpoint-url and --bucket, or --stack for a deployed stack)"
            ) from None
        except (OSError, json.JSONDecodeError) as exc:
            raise PushError(f"cannot read {state_file}: {exc}") from None
    endpoint = args.endpoint_url or state.get("moto_endpoint")
    bucket = args.bucket or state.get("outputs_bucket")
    if not endpoint or not bucket:
        raise PushError(f"{state_file} names no moto endpoint or outputs bucket; give --endpoint-url and --bucket")
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=state.get("region", "us-east-1"),
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    return client, bucket, state.get("dev_user")


def _stack_target(args: argparse.Namespace) -> tuple[Any, str, str | None]:
    import boto3

    session = boto3.session.Session(region_name=args.region)
    bucket = args.bucket
    if not bucket:
        stacks = session.client("cloudformation").describe_stacks(StackName=args.stack)["Stacks"]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
        bucket = outputs.get("OutputsBucketName")
        if not bucket:
            raise PushError(f"stack {args.stack} has no OutputsBucketName output; give --bucket")
    return session.client("s3"), bucket, None


def run(args: argparse.Namespace) -> int:
    import re

    from botocore.exceptions import BotoCoreError, ClientError

    if not re.match(ENDPOINT_ID_PATTERN, args.endpoint):
        print(f"comfyroute object-info: {args.endpoint[:80]!r} is not a RunPod endpoint id", file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.from_url:
            raw, version = fetch_from_comfyui(args.from_url)
            data, info = build_snapshot(raw, source=args.from_url.rstrip("/") + "/object_info", comfyui_version=version)
        else:
            try:
                raw = Path(args.file).read_bytes()
            except OSError as exc:
                raise PushError(f"cannot read {args.file}: {exc.strerror or exc}") from None
            data, info = build_snapshot(raw, source=args.file)
        client, bucket, dev_user = _stack_target(args) if args.stack else _dev_target(args)
        user = args.user or dev_user
        if not user:
            raise PushError("give --user: the user id whose jobs on this endpoint use the snapshot")
        key = runpod_key(user, args.endpoint)
        client.put_object(
            Bucket=bucket,
            Key=key,
            Body=data,
            ContentType="application/gzip",
            Metadata={"stored-at": f"{time.time():.3f}"},
        )
    except PushError as exc:
        print(f"comfyroute object-info: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (BotoCoreError, ClientError) as exc:
        print(f"comfyroute object-info: {exc}", file=sys.stderr)
        return EXIT_FAILED
    version_note = f", ComfyUI {info.comfyui_version}" if info.comfyui_version else ""
    print(
        f"stored {len(info)} node classes{version_note} for RunPod endpoint {args.endpoint} of user {user} "
        f"at s3://{bucket}/{key} ({len(data)} bytes gzipped)"
    )
    return EXIT_OK


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("object-info", help=HELP, description=HELP)
    configure(parser)
    parser.set_defaults(handler=run)
