"""request_upload: an S3 presigned POST for one file the caller is about to send with a job."""

from __future__ import annotations

from typing import TYPE_CHECKING

from comfyroute import messages
from comfyroute.aws.uploads import UploadError

if TYPE_CHECKING:
    from comfyroute.ports import Caller, Ports
    from comfyroute.protocol.commands import RequestUploadData


def request_upload(ports: Ports, caller: Caller, data: RequestUploadData) -> None:
    """Answer ``upload_ready``, or an ``error`` whose code names why no upload is possible
    (``upload_not_allowed``: content type or name; ``upload_too_large``: the declared size)."""
    try:
        ticket = ports.uploads.request_upload(caller.user_id, data.filename, data.content_type, data.size)
    except UploadError as exc:
        messages.reply(ports, caller, messages.error(str(exc), exc.code, request="request_upload"))
        return
    messages.reply(ports, caller, messages.upload_ready(ticket, filename=data.filename, ref=data.ref))
