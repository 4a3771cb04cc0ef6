"""run_job: validate, convert, record, submit to the executor, start the poll loop."""

from comfyroute import service
from comfyroute.awslambda.runtime import websocket_handler

handler = websocket_handler({"run_job": lambda svc, caller, cmd: service.run_job(svc, caller, cmd.data)})
