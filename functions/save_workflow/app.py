"""save_workflow: keep a user's graph and its executor settings."""

from comfyroute import service
from comfyroute.awslambda.runtime import websocket_handler

handler = websocket_handler({"save_workflow": lambda svc, caller, cmd: service.save_workflow(svc, caller, cmd.data)})
