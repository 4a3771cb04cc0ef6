"""$connect: remember the connection and its user (from the authorizer's context)."""

from comfyroute.awslambda.runtime import connect_handler

handler = connect_handler()
