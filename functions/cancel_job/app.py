"""cancel_job: the owner stops a job on its executor and its follow loop."""

from comfyroute.awslambda.websocket import websocket_handler
from comfyroute.jobs.cancel import cancel_job

handler = websocket_handler(
    {
        "cancel_job": lambda ports, caller, cmd: cancel_job(
            ports, caller, cmd.data.job_id, workflow_id=cmd.data.workflow_id
        )
    },
    uses=("jobs", "executors", "state_machine", "message_log"),
)
