"""$disconnect: forget the connection. Its jobs keep running; get_job catches up later."""

from comfyroute.awslambda.runtime import disconnect_handler

handler = disconnect_handler()
