"""comfyroute: run ComfyUI workflows for WebSocket clients on AWS serverless."""

__version__ = "0.1.0"
