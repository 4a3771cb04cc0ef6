"""Run the fake RunPod API by hand: ``python -m tests.fakes.runpod_server --port 8189`` and point
``RUNPOD_API_BASE`` at the printed URL (options: ``--help``). The fake itself is the
``tests/fakes/runpod/`` package."""

from __future__ import annotations

import argparse
import contextlib
import time

from .comfyui import FakeComfyUI
from .runpod import FakeRunPod

__all__ = ["FakeRunPod", "main"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A fake RunPod serverless API (worker-comfyui) on loopback.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8189)
    parser.add_argument("--api-key", default="test-key")
    parser.add_argument("--queue-seconds", type=float, default=0.5)
    parser.add_argument("--run-seconds", type=float, default=2.0)
    parser.add_argument("--output-format", choices=["v5", "v4", "v4-bare"], default="v5")
    parser.add_argument("--comfy-port", type=int, help="also start a FakeComfyUI on this port and run jobs on it")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        comfy = None
        if args.comfy_port is not None:
            comfy = stack.enter_context(FakeComfyUI(args.host, args.comfy_port, run_seconds=0.1))
            print(f"fake ComfyUI listening on {comfy.url}", flush=True)
        fake = FakeRunPod(
            args.host,
            args.port,
            api_key=args.api_key,
            queue_seconds=args.queue_seconds,
            run_seconds=args.run_seconds,
            output_format=args.output_format,
            comfy=comfy,
        )
        stack.enter_context(fake)
        print(f"fake RunPod listening: RUNPOD_API_BASE={fake.url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)


if __name__ == "__main__":
    main()
