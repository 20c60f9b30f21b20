"""HPACK (RFC 7541): header compression for linkpy's HTTP/2 codec.

A proxy decodes and encodes every header block twice per request, so both directions
are written for the common case: dictionary lookups for the indexes to send, no
Huffman coding of what we send (plain literals are valid HPACK and cost a little more
on the wire), and Huffman-coded strings received decoded once and remembered (the
values peers send again and again, such as ``server`` or a ``date`` within a second,
cost a lookup after the first).  Huffman decoding itself and the static table come
from the ``hpack`` library.
"""

from __future__ import annotations

from collections import deque
from typing import Final

from hpack.exceptions import HPACKDecodingError
from hpack.huffman_table import decode_huffman
from hpack.table import HeaderTable

Header = tuple[bytes, bytes]

#: RFC 7541 Appendix A, index 1 first.
STATIC: Final[tuple[Header, ...]] = tuple(HeaderTable.STATIC_TABLE)
#: The table size both sides start with (SETTINGS_HEADER_TABLE_SIZE's default).
DEFAULT_TABLE: Final = 4096
#: RFC 7541 section 4.1: each entry's size counts 32 bytes of overhead.
ENTRY_OVERHEAD: Final = 32

_STATIC_NAME: dict[bytes, int] = {}
_STATIC_FULL_NEG: dict[Header, int] = {}
_STATIC_NAME_NEG: dict[bytes, int] = {}
for _i, (_n, _v) in enumerate(STATIC, 1):
    _STATIC_NAME.setdefault(_n, _i)
    _STATIC_FULL_NEG.setdefault((_n, _v), -_i)
    _STATIC_NAME_NEG.setdefault(_n, -_i)

#: Values that are new on every request: sent as literals without indexing, so they
#: do not push reusable entries out of the peer's table.
NOT_INDEXED: Final = frozenset(
    {
        b"l5d-reqid",
        b"l5d-ctx-trace",
        b"x-b3-traceid",
        b"x-b3-spanid",
        b"x-b3-parentspanid",
        b"x-request-id",
        b"date",
    }
)


#: The size (RFC 7541 section 4.1) of the largest static table entry.
_STATIC_LARGEST: Final = max(len(n) + len(v) for n, v in STATIC) + ENTRY_OVERHEAD


class HpackError(Exception):
    """A header block that cannot be decoded (a connection error, COMPRESSION_ERROR)."""


class HeaderListTooLarge(Exception):
    """A decoded header list larger than SETTINGS_MAX_HEADER_LIST_SIZE (the block was
    decoded all the same, so the dynamic table stays in step with the peer's)."""


class NeverIndexed(tuple[bytes, bytes]):
    """A header to send as a never-indexed literal (RFC 7541 section 7.1.3)."""

    __slots__ = ()

    def __new__(cls, name: bytes, value: bytes) -> NeverIndexed:
        return super().__new__(cls, (name, value))


def _int_tail(data: bytes, i: int, value: int) -> tuple[int, int]:
    """The rest of an integer whose prefix was all ones (RFC 7541 section 5.1)."""
    shift = 0
    while True:
        b = data[i]
        i += 1
        value += (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i
        if shift > 28:
            raise HpackError("integer too large")


class Decoder:
    """Decodes the header blocks one peer sends (one instance per direction)."""

    __slots__ = ("_table", "_size", "max_size", "max_allowed", "max_header_list", "_huff")

    def __init__(self) -> None:
        #: the dynamic table, oldest entry first
        self._table: list[Header] = []
        self._size = 0
        self.max_size = DEFAULT_TABLE
        #: what our SETTINGS_HEADER_TABLE_SIZE lets the peer choose
        self.max_allowed = DEFAULT_TABLE
        self.max_header_list = 2**31
        self._huff: dict[bytes, bytes] = {}

    def _entry(self, index: int) -> Header:
        if index <= 61:
            if index == 0:
                raise HpackError("index 0")
            return STATIC[index - 1]
        table = self._table
        k = index - 62
        if k >= len(table):
            raise HpackError(f"index {index} is not in the table")
        return table[-1 - k]

    def _evict(self, limit: int) -> None:
        table = self._table
        drop = 0
        size = self._size
        while size > limit:
            n, v = table[drop]
            size -= len(n) + len(v) + ENTRY_OVERHEAD
            drop += 1
        del table[:drop]
        self._size = size

    def _string(self, data: bytes, i: int) -> tuple[bytes, int]:
        b = data[i]
        n = b & 0x7F
        i += 1
        if n == 0x7F:
            n, i = _int_tail(data, i, n)
        end = i + n
        if end > len(data):
            raise HpackError("string runs past the block")
        raw = data[i:end]
        if b & 0x80:
            cache = self._huff
            text = cache.get(raw)
            if text is None:
                try:
                    text = decode_huffman(raw)
                except HPACKDecodingError as e:
                    raise HpackError(f"bad Huffman string: {e}") from None
                if len(cache) >= 512:
                    cache.clear()
                cache[raw] = text
            return text, end
        return raw, end

    def _field_bound(self, end: int) -> int:
        """An upper bound of the size of a field decoded from a block of ``end`` bytes."""
        return max(self.max_size, self.max_allowed, DEFAULT_TABLE) + 2 * end + _STATIC_LARGEST

    def decode(self, data: bytes) -> list[Header]:
        """The header list of one complete block.

        Raises :class:`HpackError` for a block that breaks the format (the peer's table
        and ours may now differ: a connection error), :class:`HeaderListTooLarge` after
        decoding a list over ``max_header_list``.
        """
        out: list[Header] = []
        append = out.append
        entry = self._entry
        string = self._string
        table = self._table
        i = 0
        end = len(data)
        # Each field takes at least one byte of the block, and its size is at most a
        # table entry's, plus twice the block (Huffman decodes 5 bits to a byte at
        # best), plus a static entry's: a list under that bound cannot be too large,
        # and its size is not counted field by field.
        count = end * self._field_bound(end) > self.max_header_list
        total = 0
        try:
            while i < end:
                b = data[i]
                if b & 0x80:  # indexed field
                    index = b & 0x7F
                    i += 1
                    if index == 0x7F:
                        index, i = _int_tail(data, i, index)
                    h = STATIC[index - 1] if 0 < index <= 61 else entry(index)
                elif (b & 0x60) == 0x20:  # dynamic table size update
                    if out:
                        raise HpackError("table size update after a field")
                    size = b & 0x1F
                    i += 1
                    if size == 0x1F:
                        size, i = _int_tail(data, i, size)
                    if size > self.max_allowed:
                        raise HpackError(f"table size {size} over the {self.max_allowed} allowed")
                    self.max_size = size
                    self._evict(size)
                    count = end * self._field_bound(end) > self.max_header_list
                    continue
                else:  # a literal: with incremental indexing (01), without (0000), never (0001)
                    indexing = b & 0x40
                    top = 0x3F if indexing else 0x0F
                    index = b & top
                    i += 1
                    if index == top:
                        index, i = _int_tail(data, i, index)
                    if index:
                        name = entry(index)[0]
                    else:
                        name, i = string(data, i)
                    value, i = string(data, i)
                    h = (name, value)
                    if indexing:  # (_add, inlined)
                        size = len(name) + len(value) + ENTRY_OVERHEAD
                        if size > self.max_size:
                            table.clear()
                            self._size = 0
                        else:
                            self._size += size
                            if self._size > self.max_size:
                                self._evict(self.max_size)
                            table.append(h)
                if count:
                    total += len(h[0]) + len(h[1]) + ENTRY_OVERHEAD
                append(h)
        except IndexError:
            raise HpackError("truncated header block") from None
        if total > self.max_header_list:
            raise HeaderListTooLarge(f"header list of {total} bytes")
        return out


def _put_int(out: bytearray, value: int, bits: int, flags: int) -> None:
    top = (1 << bits) - 1
    if value < top:
        out.append(flags | value)
        return
    out.append(flags | top)
    value -= top
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _put_string(out: bytearray, s: bytes) -> None:
    n = len(s)
    if n < 0x7F:
        out.append(n)
    else:
        _put_int(out, n, 7, 0)
    out += s


class Encoder:
    """Encodes the header blocks linkpy sends on one connection.

    The dynamic table is mirrored by two dictionaries, from (name, value) and from
    name to the insertion number of the newest such entry, so that finding an index
    is a lookup rather than a walk of the table.
    """

    __slots__ = ("_entries", "_full", "_names", "_seq", "_size", "max_size", "_update")

    def __init__(self) -> None:
        #: (header, size, insertion number), oldest first
        self._entries: deque[tuple[Header, int, int]] = deque()
        #: the static table's entries too, as minus their index (one lookup for both)
        self._full: dict[Header, int] = dict(_STATIC_FULL_NEG)
        self._names: dict[bytes, int] = dict(_STATIC_NAME_NEG)
        #: the insertion number of the newest entry (index 62)
        self._seq = 0
        self._size = 0
        self.max_size = DEFAULT_TABLE
        #: a table size to announce at the start of the next block
        self._update: int | None = None

    def set_max_size(self, peer_limit: int) -> None:
        """The peer's SETTINGS_HEADER_TABLE_SIZE changed: use at most that (and at
        most the default: a bigger table would only cost memory on both sides)."""
        size = min(peer_limit, DEFAULT_TABLE)
        if size == self.max_size:
            return
        self.max_size = size
        self._evict(size)
        self._update = size

    def _evict(self, limit: int) -> None:
        entries = self._entries
        full = self._full
        names = self._names
        while self._size > limit:
            h, size, seq = entries.popleft()
            self._size -= size
            if full.get(h) == seq:
                del full[h]
            name = h[0]
            if names.get(name) == seq:
                static = _STATIC_NAME.get(name)
                if static is None:
                    del names[name]
                else:
                    names[name] = -static

    def encode(self, headers: list[Header]) -> bytes:
        out = bytearray()
        if self._update is not None:
            _put_int(out, self._update, 5, 0x20)
            self._update = None
        full = self._full
        names = self._names
        for h in headers:
            never = type(h) is NeverIndexed
            if not never:
                found = full.get(h)
                if found is not None:
                    at = -found if found < 0 else 62 + self._seq - found
                    if at < 0x7F:
                        out.append(0x80 | at)
                    else:
                        _put_int(out, at, 7, 0x80)
                    continue
            name, value = h
            found = names.get(name)
            index = None if found is None else -found if found < 0 else 62 + self._seq - found
            size = len(name) + len(value) + ENTRY_OVERHEAD
            # a literal: without indexing (4-bit prefix; never indexed: flag 0x10), or
            # with incremental indexing (6-bit prefix, flag 0x40)
            indexed = not (never or name in NOT_INDEXED or size > self.max_size // 2)
            bits, flags = (6, 0x40) if indexed else (4, 0x10 if never else 0)
            if index is None:
                out.append(flags)
                _put_string(out, name)
            elif index < (1 << bits) - 1:
                out.append(flags | index)
            else:
                _put_int(out, index, bits, flags)
            if len(value) < 0x7F:  # (_put_string, inlined for the usual short value)
                out.append(len(value))
                out += value
            else:
                _put_string(out, value)
            if not indexed:
                continue
            # add it to the table, as the peer's decoder does
            if self._size + size > self.max_size:
                self._evict(self.max_size - size)
            self._seq += 1
            seq = self._seq
            self._size += size
            key = (name, value)
            self._entries.append((key, size, seq))
            full[key] = seq
            names[name] = seq
        return bytes(out)
