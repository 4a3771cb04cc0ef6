"""$disconnect: forget the connection. Its jobs keep running; get_job catches up later."""

from comfyroute.runtime import disconnect_handler

handler = disconnect_handler()
