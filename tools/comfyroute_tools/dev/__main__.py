"""``python -m comfyroute_tools.dev``: the same as ``comfyroute dev``."""

from __future__ import annotations

import sys

from comfyroute_tools.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["dev", *sys.argv[1:]]))
