"""$connect: remember the connection and its user (from the authorizer's context)."""

from comfyroute.awslambda.connection import connect_handler

handler = connect_handler()
