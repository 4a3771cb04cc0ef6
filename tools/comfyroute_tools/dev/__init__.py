"""`comfyroute dev`: the whole backend on one machine, from the deployment's own template.

``DevStack`` (in :mod:`comfyroute_tools.dev.stack`) is the programmatic entry point; it is exported
lazily here so importing the CLI does not pull in moto and aiohttp.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DevStack", "DevStackError"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from comfyroute_tools.dev import stack

        return getattr(stack, name)
    raise AttributeError(f"module 'comfyroute_tools.dev' has no attribute {name!r}")
