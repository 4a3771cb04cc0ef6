"""Run the fake ComfyUI by hand: ``python -m tests.fakes.comfyui_server --port 8188`` (options:
``--help``). The fake itself is the ``tests/fakes/comfyui/`` package."""

from __future__ import annotations

import argparse
import time

from .comfyui import FakeComfyUI

__all__ = ["FakeComfyUI", "main"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A fake ComfyUI server on loopback (no GPU, no models).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8188)
    parser.add_argument("--run-seconds", type=float, default=0.2, help="how long each prompt takes")
    parser.add_argument("--node-seconds", type=float, default=None, help="how long each node takes (overrides)")
    parser.add_argument("--progress-steps", type=int, default=0, help="progress steps each node reports on /ws")
    parser.add_argument("--prefix", default="", help="serve under this path, like a reverse proxy")
    parser.add_argument("--cache", action="store_true", help="serve identical resubmissions from cache")
    parser.add_argument(
        "--require-header", action="append", default=[], metavar="NAME=VALUE", help="answer 401 without it"
    )
    args = parser.parse_args(argv)
    headers = dict(item.split("=", 1) for item in args.require_header)
    fake = FakeComfyUI(
        args.host,
        args.port,
        run_seconds=args.run_seconds,
        node_seconds=args.node_seconds,
        progress_steps=args.progress_steps,
        prefix=args.prefix,
        required_headers=headers,
        cache=args.cache,
    )
    with fake:
        print(f"fake ComfyUI listening on {fake.url}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
