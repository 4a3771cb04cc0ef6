"""Text helpers shared by the library and the tools: clipping, one-line text, secret redaction,
safe file names. Standard library only."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable

from comfyroute.defaults import MAX_TEXT_CHARS

# The one marker that replaces a secret wherever text might show it.
REDACTED = "[redacted]"

MAX_FILENAME_CHARS = 150
# What a file name may hold besides ASCII letters, digits, "_", "." and "-": nothing where it
# becomes part of an S3 key or a header; these where a person reads or saves it.
NAME_PUNCTUATION = " ()+,=@"
_WINDOWS_RESERVED = re.compile(r"^(con|prn|aux|nul|com\d|lpt\d)(\..*)?$", re.IGNORECASE)


def clip(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """``text`` cut to at most ``limit`` characters, the cut marked with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (line breaks included) as one space."""
    return " ".join(text.split())


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret replaced by ``REDACTED``. Longer secrets go
    first, so a secret that contains another is replaced whole."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def safe_filename(name: str, default: str = "output", *, keep: str = "", unicode: bool = False) -> str:
    """A file name reduced to one safe path component: no directories or traversal, no hidden or
    device names, bounded length, extension kept. Besides ASCII letters, digits, ``_``, ``.``
    and ``-`` only the characters in ``keep`` (e.g. ``NAME_PUNCTUATION``) and, with ``unicode``,
    any letter or digit stay; every other character becomes ``_``."""
    base = re.split(r"[\\/]", name)[-1]
    base = "".join(ch for ch in base if ch.isprintable())
    base = "".join(
        ch if ch in keep or ch in "_.-" or (ch.isalnum() and (unicode or ch.isascii())) else "_" for ch in base
    )
    base = base.strip(" .")
    if not base:
        return default
    if _WINDOWS_RESERVED.match(base):
        base = f"_{base}"
    if len(base) > MAX_FILENAME_CHARS:
        stem, ext = os.path.splitext(base)
        ext = ext[:16]
        base = stem[: MAX_FILENAME_CHARS - len(ext)] + ext
    return base


# --------------------------------------------------------------------------- secrets by value

# Secret values this process has seen (each user's credentials, as they are loaded): every
# outbound text (pushed messages, stored errors, logs) is scrubbed of all of them, whatever an
# executor echoed back. Shorter values are not scrubbed: they would match ordinary text.
MIN_SECRET_CHARS = 6
_known_secrets: set[str] = set()


def remember_secrets(values: Iterable[str | None]) -> None:
    """Add ``values`` to what ``scrub`` removes, with their JSON-escaped forms (how they appear
    inside an encoded message or a JSON log line)."""
    for value in values:
        if value and len(value) >= MIN_SECRET_CHARS:
            _known_secrets.add(value)
            escaped = json.dumps(value)[1:-1]
            if escaped != value:
                _known_secrets.add(escaped)


def scrub(text: str) -> str:
    """``text`` without any secret value this process has seen."""
    return redact(text, _known_secrets) if _known_secrets and text else text
