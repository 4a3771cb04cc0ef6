"""``python -m comfyroute.dev``: the same as ``comfyroute dev``."""

from __future__ import annotations

import sys

from comfyroute.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["dev", *sys.argv[1:]]))
