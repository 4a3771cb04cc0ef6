"""Which content types output files are served with: an allow-list, so an executor cannot make
our bucket serve a page (text/html, image/svg+xml) that a browser would run. Standard library only."""

from __future__ import annotations

import mimetypes

OCTET_STREAM = "application/octet-stream"

# Media a browser only displays or plays, and plain data. Nothing that can carry script.
SAFE_CONTENT_TYPES = frozenset(
    {
        "image/png",
        "image/jpeg",
        "image/webp",
        "image/gif",
        "image/bmp",
        "image/tiff",
        "image/avif",
        "video/mp4",
        "video/webm",
        "video/quicktime",
        "video/x-matroska",
        "audio/mpeg",
        "audio/wav",
        "audio/x-wav",
        "audio/flac",
        "audio/x-flac",
        "audio/ogg",
        "audio/webm",
        "audio/mp4",
        "audio/aac",
        "text/plain",
        "text/csv",
        "application/json",
        "model/gltf-binary",
        OCTET_STREAM,
    }
)


def safe_content_type(declared: str | None, filename: str = "") -> str:
    """``declared`` (parameters dropped) if it is on the allow-list, else what the file name
    says if that is, else ``application/octet-stream``."""
    for candidate in (declared, mimetypes.guess_type(filename)[0] if filename else None):
        if candidate:
            base = candidate.split(";", 1)[0].strip().lower()
            if base in SAFE_CONTENT_TYPES:
                return base
    return OCTET_STREAM
