"""State machine task: push job_update / node_progress / output_update to the job's client."""

from comfyroute.awslambda.runtime import notify_handler

handler = notify_handler()
