"""State machine task: one look at the job on its executor."""

from comfyroute.runtime import poll_handler

handler = poll_handler()
