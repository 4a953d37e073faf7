"""Helpers for the tests of rows of big values written to a reader's pipe as frames
(worker/sqlite/chunks.py, `sent` chunks): put each sent chunk's payload back from the
frames, then compare the chunks with the ones made without a pipe."""

from __future__ import annotations

import marshal
from collections.abc import Sequence
from typing import Any

from worker.core.checksum import encoded_checksum


def take_frames(got: Sequence[Any], frames: bytes) -> None:
    """Give each sent chunk of `got` its payload from `frames` (b"P", an 8-byte length,
    the payload), in order; every byte of `frames` must belong to one. A chunk in parts
    (the others, when made for a reader's pipe) gets them joined."""
    at = 0
    for chunk in got:
        if chunk.parts is not None:
            assert chunk.payload == b"" and not chunk.sent
            chunk.payload, chunk.parts = b"".join(chunk.parts), None
        if chunk.sent:
            assert chunk.payload == b"" and frames[at:at + 1] == b"P"
            length = int.from_bytes(frames[at + 1:at + 9], "big")
            chunk.payload, at = frames[at + 9:at + 9 + length], at + 9 + length
            chunk.sent = False
    assert at == len(frames)


def assert_same_chunks(got: Sequence[Any], expected: Sequence[Any]) -> None:
    """The same rows as `expected`, and each chunk's checksum, size and key those of its
    own payload."""
    assert [row for c in got for row in c.rows] == [row for c in expected for row in c.rows]
    assert [(c.checksum, c.size_bytes, c.last_key, c.row_count) for c in got] == [
        (encoded_checksum(marshal.dumps(r, 2) for r in c.rows), len(c.payload) - 5, c.last_key,
         len(c.rows)) for c in got]
    assert sum(c.checksum for c in got) % 2**64 == sum(c.checksum for c in expected) % 2**64
