"""get_job / list_jobs: the caller's own jobs, with fresh presigned output URLs."""

from comfyroute import service
from comfyroute.awslambda.runtime import websocket_handler

handler = websocket_handler(
    {
        "get_job": lambda svc, caller, cmd: service.get_job(svc, caller, cmd.data.job_id),
        "list_jobs": lambda svc, caller, cmd: service.list_jobs(svc, caller, cmd.data.limit),
    }
)
