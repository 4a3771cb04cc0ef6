"""comfyroute's tools beside the Lambda library: the client, the `comfyroute` CLI, the dev stack
and the web client. They import the library (`comfyroute`); the library never imports them."""

from comfyroute import __version__

__all__ = ["__version__"]
