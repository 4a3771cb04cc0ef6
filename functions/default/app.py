"""$default: answers `ping`, and an `error` naming the known commands for anything else."""

from comfyroute import service
from comfyroute.awslambda.runtime import websocket_handler

handler = websocket_handler({"ping": lambda svc, caller, _cmd: service.ping(svc, caller)})
