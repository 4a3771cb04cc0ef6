"""An executor's output file as a stream: read in chunks, at most a cap, never whole in memory.

The Follow task runs with little memory and stores each output while ComfyUI is still running
the prompt: it hands this body straight to S3 (``OutputStore.put_stream``), so an output as big
as ``MAX_OUTPUT_BYTES`` needs one chunk of memory, not two copies of the file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from comfyroute.executors.base import ExecutorRejected

# Up to this many bytes a body also keeps what it read, so a small output can ride inline in
# its message without being read back from S3 (a message is 128 KB at most).
KEEP_SMALL_BYTES = 128 * 1024


class CappedBody:
    """A readable file (``read(size)``) over ``chunks`` that raises ``ExecutorRejected``
    (naming ``what`` and the cap) once more than ``cap`` bytes came, and ``on_error(exc)``'s
    exception for any other failure of the source (a dropped connection)."""

    def __init__(
        self,
        chunks: Iterator[bytes],
        *,
        cap: int,
        what: str,
        on_error: Callable[[Exception], Exception],
    ) -> None:
        self._chunks = chunks
        self._cap = cap
        self._what = what
        self._on_error = on_error
        self._left = b""
        self._ended = False
        self.count = 0
        self._kept: bytearray | None = bytearray()

    def read(self, size: int = -1, /) -> bytes:
        if size < 0:
            parts = [self._left]
            self._left = b""
            while chunk := self._next():
                parts.append(chunk)
            return b"".join(parts)
        parts, have = [self._left], len(self._left)
        while have < size and (chunk := self._next()):
            parts.append(chunk)
            have += len(chunk)
        joined = b"".join(parts)
        self._left = joined[size:]
        return joined[:size]

    @property
    def small(self) -> bytes | None:
        """Every byte of the body, once it has been read to its end and was at most
        ``KEEP_SMALL_BYTES``; else None."""
        return bytes(self._kept) if self._kept is not None and self._ended and not self._left else None

    def _next(self) -> bytes:
        if self._ended:
            return b""
        try:
            chunk = next(self._chunks, b"")
        except ExecutorRejected:
            raise
        except Exception as exc:
            raise self._on_error(exc) from exc
        if not chunk:
            self._ended = True
            return b""
        self.count += len(chunk)
        if self.count > self._cap:
            raise ExecutorRejected(f"output file {self._what} is over the limit of {self._cap} bytes")
        if self._kept is not None:
            if self.count <= KEEP_SMALL_BYTES:
                self._kept += chunk
            else:
                self._kept = None
        return chunk
