"""$connect REQUEST authorizer: the `token` query parameter -> the user id, or Deny."""

from comfyroute.runtime import authorizer_handler

handler = authorizer_handler()
