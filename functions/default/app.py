"""$default: answers `ping`, and an `error` naming the known commands for anything else."""

from comfyroute import messages
from comfyroute.awslambda.websocket import websocket_handler

handler = websocket_handler({"ping": lambda ports, caller, _cmd: messages.reply(ports, caller, messages.pong())})
