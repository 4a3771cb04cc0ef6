"""An output file read as a stream: in parts, within its cap, the small ones kept."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from comfyroute.executors.base import ExecutorRejected, ExecutorUnavailable
from comfyroute.executors.download import KEEP_SMALL_BYTES, CappedBody


def body(chunks: list[bytes], cap: int = 10_000_000) -> CappedBody:
    return CappedBody(
        iter(chunks), cap=cap, what="out.png", on_error=lambda exc: ExecutorUnavailable(f"gone: {type(exc).__name__}")
    )


def test_reads_in_the_sizes_asked_and_counts_every_byte() -> None:
    b = body([b"abc", b"defgh", b"ij"])
    assert [b.read(4), b.read(4), b.read(4), b.read(4)] == [b"abcd", b"efgh", b"ij", b""]
    assert b.count == 10


def test_read_all_and_the_small_copy() -> None:
    b = body([b"x" * 1000, b"y" * 24])
    assert b.small is None  # not read to its end yet
    assert b.read() == b"x" * 1000 + b"y" * 24
    assert b.small == b"x" * 1000 + b"y" * 24


def test_a_large_body_keeps_no_copy() -> None:
    chunk = b"z" * 65536
    b = body([chunk] * (KEEP_SMALL_BYTES // len(chunk) + 1))
    while b.read(100_000):
        pass
    assert b.count > KEEP_SMALL_BYTES
    assert b.small is None


def test_more_than_the_cap_is_refused_naming_the_file_and_the_limit() -> None:
    b = body([b"a" * 600, b"b" * 600], cap=1000)
    assert b.read(500) == b"a" * 500
    with pytest.raises(ExecutorRejected, match=r"output file out.png is over the limit of 1000 bytes"):
        b.read(1000)


def test_a_source_that_fails_mid_file_raises_the_callers_error() -> None:
    def dropping() -> Iterator[bytes]:
        yield b"first"
        raise ConnectionResetError("peer reset")

    b = CappedBody(dropping(), cap=100, what="out.png", on_error=lambda exc: ExecutorUnavailable(type(exc).__name__))
    with pytest.raises(ExecutorUnavailable, match="ConnectionResetError"):
        b.read()
