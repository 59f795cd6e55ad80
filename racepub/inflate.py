"""gzip from strangers, inflated with a limit: a few hundred KB of a gzip
bomb would otherwise become gigabytes in memory. `racepub check --cdn`
reads what a CDN answers with it, `racepub tiles` and the publisher read
an archive's directories and metadata with it."""

from __future__ import annotations

import zlib


class TooLarge(ValueError):
    """It inflates to more than the limit."""


def inflate(raw: bytes | bytearray | memoryview, limit: int) -> bytearray:
    """gzip members, inflated as a stream that stops past `limit` bytes.
    zlib.error if it is not gzip or is cut short; TooLarge past the limit."""
    out = bytearray()
    rest: bytes | bytearray | memoryview = raw
    step = 1 << 20  # inflated a MB at a time: no second copy of the whole
    while True:
        member = zlib.decompressobj(wbits=31)  # gzip framing
        data = rest
        while not member.eof:
            piece = member.decompress(data, min(step, limit + 1 - len(out)))
            out += piece
            if len(out) > limit:
                raise TooLarge(f"inflates to more than {limit:,} bytes")
            data = member.unconsumed_tail
            if not piece and not data and not member.eof:
                raise zlib.error("truncated gzip stream")
        rest = member.unused_data
        if not rest:
            return out
