"""run_job: validate, convert, resolve input files, record, submit to the executor, start the follow loop."""

from comfyroute.awslambda.websocket import websocket_handler
from comfyroute.jobs.submit import run_job

handler = websocket_handler(
    {"run_job": lambda ports, caller, cmd: run_job(ports, caller, cmd.data)},
    uses=("jobs", "workflows", "uploads", "start_once", "executors", "state_machine", "message_log"),
)
