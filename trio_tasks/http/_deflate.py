"""``Content-Encoding: deflate`` for ``GET /events``, with each tick's text compressed once for
every reader.

A hundred dashboards following a busy node would otherwise cost the node more than its jobs:
the kernel's copy of every byte to every client is most of it. The JSON of job events
compresses eight- to tenfold (a no-op job's summary: ~270 bytes, ~35 compressed), and
compressing costs well under a microsecond per event, once, when the text is shared: every
tick's chunk is one text for every reader with the same filters and detail
(:meth:`~trio_tasks._events.EventHub.read`), so it is compressed once too, by
:class:`SharedPacker`.

Sharing compressed bytes between streams works because each text is compressed by a fresh
compressor and ends with a sync flush: its blocks refer to nothing before them and end on a
byte boundary, so they continue any deflate stream at a flush point. What each stream keeps for
itself is the zlib frame around the blocks: the two-byte header, and at the end an empty final
block and the Adler-32 checksum of everything it sent, combined from the texts' own checksums
(:func:`adler32_combine`) instead of reading every byte again.
"""

from __future__ import annotations

import zlib
from typing import NamedTuple

#: The zlib header: deflate with a 32 KiB window, no preset dictionary, "fastest" level flag.
HEADER = b"\x78\x01"
#: An empty final block (fixed Huffman codes): what ends the compressed data.
_FINAL_BLOCK = b"\x03\x00"
#: zlib's level 1: job events shrink eight- to tenfold at ~400 MB/s; level 6 gains 15% for 2.5
#: times the time.
LEVEL = 1
_ADLER_BASE = 65521


class Packed(NamedTuple):
    """One text compressed on its own: deflate blocks ending on a byte boundary (not final),
    the text's Adler-32 and its length."""

    data: bytes
    adler: int
    size: int


def pack(text: bytes) -> Packed:
    """``text`` compressed by a fresh compressor (see the module docstring)."""
    compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    data = compressor.compress(text) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return Packed(data, zlib.adler32(text), len(text))


def adler32_combine(first: int, second: int, second_size: int) -> int:
    """The Adler-32 of two texts one after the other, from their checksums (zlib's
    ``adler32_combine``, which Python's zlib module does not offer)."""
    remainder = second_size % _ADLER_BASE
    sum1 = first & 0xFFFF
    sum2 = (remainder * sum1) % _ADLER_BASE
    sum1 = (sum1 + (second & 0xFFFF) + _ADLER_BASE - 1) % _ADLER_BASE
    sum2 = (sum2 + (first >> 16) + (second >> 16) + _ADLER_BASE - remainder) % _ADLER_BASE
    return sum1 | (sum2 << 16)


class DeflateWriter:
    """The zlib stream of one response: :meth:`write` each packed text, then :meth:`end`."""

    __slots__ = ("_adler", "_started")

    def __init__(self) -> None:
        self._adler = 1  # the Adler-32 of nothing
        self._started = False

    def write(self, packed: Packed) -> bytes:
        """The bytes that send ``packed`` (the header first, once)."""
        self._adler = adler32_combine(self._adler, packed.adler, packed.size)
        if self._started:
            return packed.data
        self._started = True
        return HEADER + packed.data

    def end(self) -> bytes:
        """The bytes that end the stream: a final block and the checksum."""
        head = b"" if self._started else HEADER
        self._started = True
        return head + _FINAL_BLOCK + self._adler.to_bytes(4, "big")


class SharedPacker:
    """Packs shared texts once: the readers of one tick ask for the same ``bytes`` object, and
    all but the first get the packed text the first one made.

    Looked up by identity among the last :attr:`kept` texts (a tick has one text per set of
    filters read); the texts are held, so an identity stays theirs while it is looked up.
    """

    def __init__(self, kept: int = 16) -> None:
        self.kept = kept
        self._recent: list[tuple[bytes, Packed]] = []

    def pack(self, text: bytes) -> Packed:
        """``text`` packed, once for every caller with this very object."""
        for known, packed in self._recent:
            if known is text:
                return packed
        packed = pack(text)
        self._recent.append((text, packed))
        if len(self._recent) > self.kept:
            del self._recent[0]
        return packed


def accepts_deflate(header: str) -> bool:
    """Whether an ``Accept-Encoding`` header value admits ``deflate`` (by name or ``*``, with a
    quality above zero; an explicit ``deflate`` entry wins over ``*``)."""
    named: bool | None = None
    wildcard = False
    for item in header.lower().split(","):
        coding, _, params = item.partition(";")
        coding = coding.strip()
        if coding not in ("deflate", "*"):
            continue
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if coding == "deflate":
            named = quality > 0
        else:
            wildcard = quality > 0
    return wildcard if named is None else named
