"""The ``comfyroute`` command.

Each subcommand is one ``_Command``: a name, a one-line help, a function that adds its
arguments and a function that runs it and returns the exit code. Add a subcommand by writing
those two functions and appending a ``_Command`` to ``COMMANDS``.

Exit codes: 0 success, 1 the command ran and failed, 2 bad usage or bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import requests

from comfyroute import __version__
from comfyroute.conversion.nodetool import load_workflow
from comfyroute.conversion.object_info import ObjectInfo, bundled_object_info
from comfyroute.conversion.problems import GraphError
from comfyroute.protocol import protocol_json_schema
from comfyroute_tools.cli.dev import register as register_dev_commands
from comfyroute_tools.cli.object_info import register as register_object_info_commands
from comfyroute_tools.cli.run import register as register_client_commands

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

STDIN = "-"


class CliError(Exception):
    """A problem with the command's input; printed to stderr, exit code 2."""


@dataclass(frozen=True)
class _Command:
    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _dump(obj: Any, out: TextIO, indent: int | None) -> None:
    out.write(json.dumps(obj, indent=indent, ensure_ascii=False))
    out.write("\n")


def read_json(path: str) -> Any:
    """The JSON in a file (``-`` reads stdin); ``CliError`` says what went wrong and where."""
    name = "stdin" if path == STDIN else path
    try:
        text = sys.stdin.read() if path == STDIN else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CliError(f"cannot read {name}: {reason}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"{name} is not JSON: {exc}") from None


# --------------------------------------------------------------------------- convert


OBJECT_INFO_TIMEOUT = 60.0


def _configure_convert(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "files",
        metavar="FILE",
        nargs="+",
        help="ComfyUI editor workflow (as Save or Export writes it), nodetool graph, saved nodetool "
        "workflow or API prompt (JSON); '-' reads stdin",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--object-info",
        metavar="FILE",
        help="the node schemas to convert with: a ComfyUI's GET /object_info saved as JSON (or .json.gz). "
        f"Default: the bundled core snapshot (ComfyUI {_bundled_version()}, no custom nodes)",
    )
    source.add_argument("--url", help="fetch the node schemas from this ComfyUI (GET URL/object_info)")
    parser.add_argument("--indent", type=int, default=2, help="JSON indent (default 2)")
    parser.add_argument("--compact", action="store_true", help="print the JSON on one line")


def _bundled_version() -> str:
    try:
        return bundled_object_info().comfyui_version or "unknown"
    except (OSError, ValueError):
        return "unknown"


def load_object_info(path: str | None, url: str | None) -> ObjectInfo:
    """The schemas ``--object-info`` / ``--url`` name, else the bundled snapshot; ``CliError`` when unreadable."""
    if path is not None:
        try:
            return ObjectInfo.load(path)
        except OSError as exc:
            raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None
        except ValueError as exc:  # also JSON and gzip errors
            raise CliError(f"{path} is not an object_info JSON: {exc}") from None
    if url is not None:
        endpoint = url.rstrip("/") + "/object_info"
        try:
            response = requests.get(endpoint, timeout=OBJECT_INFO_TIMEOUT)
            response.raise_for_status()
            return ObjectInfo.from_bytes(response.content, source=endpoint)
        except requests.RequestException as exc:
            raise CliError(f"cannot fetch {endpoint}: {exc}") from None
        except ValueError as exc:
            raise CliError(f"{endpoint} did not answer with object_info JSON: {exc}") from None
    return bundled_object_info()


def _run_convert(args: argparse.Namespace) -> int:
    prompts: dict[str, Any] = {}
    failed = False
    object_info = load_object_info(args.object_info, args.url)
    for path in args.files:
        try:
            prompts[path] = load_workflow(read_json(path), object_info)
        except CliError as exc:
            print(f"comfyroute convert: {exc}", file=sys.stderr)
            failed = True
        except GraphError as exc:
            name = "stdin" if path == STDIN else path
            for problem in exc.problems:
                print(f"{name}: {problem}", file=sys.stderr)
            failed = True
    # Nothing on stdout when any file is bad: a half-converted batch must not be mistaken for a
    # whole one by whatever reads the output.
    if failed:
        return EXIT_USAGE
    result = prompts[args.files[0]] if len(args.files) == 1 else prompts
    _dump(result, sys.stdout, None if args.compact else args.indent)
    return EXIT_OK


# --------------------------------------------------------------------------- schema


def _configure_schema(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--indent", type=int, default=2, help="JSON indent (default 2)")


def _run_schema(args: argparse.Namespace) -> int:
    _dump(protocol_json_schema(), sys.stdout, args.indent)
    return EXIT_OK


# --------------------------------------------------------------------------- entry point

COMMANDS: list[_Command] = [
    _Command("convert", "print the ComfyUI API prompt of workflow files", _configure_convert, _run_convert),
    _Command("schema", "print the JSON Schema of the WebSocket protocol", _configure_schema, _run_schema),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="comfyroute",
        description="Run ComfyUI workflows for WebSocket clients on AWS serverless.",
    )
    parser.add_argument("--version", action="version", version=f"comfyroute {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        child = sub.add_parser(command.name, help=command.help, description=command.help)
        command.configure(child)
        child.set_defaults(handler=command.run)
    register_client_commands(sub)  # run, jobs: the WebSocket client
    register_dev_commands(sub)  # dev, keys: the local stack
    register_object_info_commands(sub)  # object-info push: RunPod endpoints' node schemas
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except CliError as exc:
        print(f"comfyroute {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`comfyroute schema | head`): not an error worth a traceback.
        # Point stdout at devnull so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
