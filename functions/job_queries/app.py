"""get_job / list_jobs: the caller's own jobs, with fresh presigned output URLs; reconnect_job:
nodetool's way back to a job (it follows this connection; what was missed is replayed)."""

from comfyroute.awslambda.websocket import websocket_handler
from comfyroute.jobs.queries import get_job, list_jobs
from comfyroute.jobs.stream import reconnect_job

handler = websocket_handler(
    {
        "get_job": lambda ports, caller, cmd: get_job(
            ports, caller, cmd.data.job_id, offset=cmd.data.outputs_offset, limit=cmd.data.outputs_limit
        ),
        "list_jobs": lambda ports, caller, cmd: list_jobs(ports, caller, cmd.data.limit),
        "reconnect_job": lambda ports, caller, cmd: reconnect_job(ports, caller, cmd.data),
    },
    uses=("jobs", "outputs", "message_log"),
)
