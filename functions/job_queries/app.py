"""get_job / list_jobs: the caller's own jobs, with fresh presigned output URLs."""

from comfyroute.awslambda.websocket import websocket_handler
from comfyroute.jobs.queries import get_job, list_jobs

handler = websocket_handler(
    {
        "get_job": lambda ports, caller, cmd: get_job(ports, caller, cmd.data.job_id),
        "list_jobs": lambda ports, caller, cmd: list_jobs(ports, caller, cmd.data.limit),
    },
    uses=("jobs", "outputs"),
)
