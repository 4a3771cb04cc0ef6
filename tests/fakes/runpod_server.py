"""Run the fake RunPod API by hand: ``python -m tests.fakes.runpod_server --port 8189`` and point
``RUNPOD_API_BASE`` at the printed URL (options: ``--help``). The fake itself is the
``tests/fakes/runpod/`` package."""

from __future__ import annotations

from .runpod import FakeRunPod
from .runpod.server import main

__all__ = ["FakeRunPod", "main"]

if __name__ == "__main__":
    main()
