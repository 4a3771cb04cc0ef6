"""``python -m comfyroute_tools.cli``: the same as the ``comfyroute`` command."""

from comfyroute_tools.cli import main

raise SystemExit(main())
