"""request_upload: a presigned POST for one input file or workflow, under uploads/."""

from comfyroute.awslambda.websocket import websocket_handler
from comfyroute.jobs.uploads import request_upload

handler = websocket_handler(
    {"request_upload": lambda ports, caller, cmd: request_upload(ports, caller, cmd.data)},
    uses=("uploads",),
)
