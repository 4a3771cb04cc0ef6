"""State machine task: one look at the job on its executor."""

from comfyroute.awslambda.runtime import poll_handler

handler = poll_handler()
