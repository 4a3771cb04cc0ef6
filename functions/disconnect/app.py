"""$disconnect: forget the connection. Its jobs keep running; get_job catches up later."""

from comfyroute.awslambda.connection import disconnect_handler

handler = disconnect_handler()
