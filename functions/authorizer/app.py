"""$connect REQUEST authorizer: the `token` query parameter -> the user id, or Deny."""

from comfyroute.awslambda.connection import authorizer_handler

handler = authorizer_handler()
