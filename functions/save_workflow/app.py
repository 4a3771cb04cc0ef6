"""save_workflow: keep a user's graph and its executor settings."""

from comfyroute.awslambda.websocket import websocket_handler
from comfyroute.workflows import save_workflow

handler = websocket_handler(
    {"save_workflow": lambda ports, caller, cmd: save_workflow(ports, caller, cmd.data)},
    uses=("workflows",),
)
