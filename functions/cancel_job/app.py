"""cancel_job: the owner stops a job on its executor and its poll loop."""

from comfyroute import service
from comfyroute.awslambda.runtime import websocket_handler

handler = websocket_handler({"cancel_job": lambda svc, caller, cmd: service.cancel_job(svc, caller, cmd.data.job_id)})
