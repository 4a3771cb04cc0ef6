"""$default: nodetool's heartbeat and control frames, and commands that arrived in frames API
Gateway could not route (binary MessagePack), handed to the function of their route."""

from comfyroute import messages
from comfyroute.awslambda.websocket import websocket_handler

handler = websocket_handler(
    {
        "ping": lambda ports, caller, _cmd: messages.reply(ports, caller, messages.pong()),
        # nodetool's answer to a server ping, and its tools manifest: nothing to answer.
        "pong": lambda ports, caller, _cmd: None,
        "client_tools_manifest": lambda ports, caller, _cmd: None,
    },
    hands_over=True,
)
