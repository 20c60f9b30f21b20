"""The HTTP/1.1 parsers' header size limits, however a head arrives.

The parsers count header bytes only while a head could be over its limit (see
``linkpy.proto.http1.quiet_bytes``); these tests pin that a head over the limit is
caught whatever its chunks, and that one under it never is.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from linkpy.errors import RemoteProtocolError
from linkpy.proto.http1 import (
    HEAD,
    RequestHead,
    RequestParser,
    ResponseHead,
    ResponseParser,
    TooLarge,
    header_bytes,
)

_NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-"
_VALUE_CHARS = _NAME_CHARS + " _/;=."

names = st.text(_NAME_CHARS, min_size=1, max_size=20).map(lambda n: ("x-" + n).encode())
values = st.text(_VALUE_CHARS, max_size=40).map(lambda v: v.strip().encode())
headers = st.lists(st.tuples(names, values), max_size=30)
#: where a head is cut into the chunks it arrives in
cuts = st.lists(st.integers(min_value=1, max_value=60), max_size=80)


def _head(first_line: bytes, hs: list[tuple[bytes, bytes]]) -> bytes:
    return first_line + b"".join(k + b": " + v + b"\r\n" for k, v in hs) + b"\r\n"


def _chunks(data: bytes, sizes: list[int]) -> list[bytes]:
    out, at = [], 0
    for n in sizes:
        if at >= len(data):
            break
        out.append(data[at : at + n])
        at += n
    if at < len(data):
        out.append(data[at:])
    return out


#: per parser: its first line, the headers every head has, the error over the limit
_KINDS = {
    "request": (b"GET / HTTP/1.1\r\n", [(b"Host", b"web")], ("request headers too large", 431)),
    "response": (
        b"HTTP/1.1 200 OK\r\n",
        [(b"Content-Length", b"0")],
        ("response headers too large", 502),
    ),
}


@pytest.mark.parametrize("kind", sorted(_KINDS))
@given(headers, st.integers(min_value=16, max_value=800), cuts)
def test_headers_over_the_limit_are_caught_however_the_head_is_split(
    kind: str, hs: list[tuple[bytes, bytes]], limit: int, sizes: list[int]
) -> None:
    first_line, fixed, (message, status) = _KINDS[kind]
    parser: RequestParser | ResponseParser = (
        RequestParser(max_line=4096, max_headers=limit)
        if kind == "request"
        else ResponseParser(max_headers=limit)
    )
    over = header_bytes(fixed + hs) > limit
    try:
        for chunk in _chunks(_head(first_line, fixed + hs), sizes):
            parser.feed(chunk)
    except RemoteProtocolError as e:
        assert over, e
        assert message in str(e) and e.status_hint == status
    else:
        assert not over
        event, head = parser.events[0]
        assert event == HEAD
        assert isinstance(head, RequestHead | ResponseHead)
        assert head.headers == fixed + hs


@pytest.mark.parametrize("split", [1, 7, 100, 10_000])
def test_headers_counted_before_the_head_grew_large_still_count(split: int) -> None:
    """Large headers in the first chunks, then small ones: the limit sees them all."""
    big = [(b"x-big-%d" % i, b"v" * 90) for i in range(8)]  # 8 * 100 bytes
    small = [(b"x-s%d" % i, b"") for i in range(60)]  # 60 * 8 bytes
    data = _head(b"GET / HTTP/1.1\r\n", [(b"Host", b"web"), *big, *small])
    limit = header_bytes([(b"Host", b"web"), *big]) + 300
    parser = RequestParser(max_line=4096, max_headers=limit)

    def feed_all() -> None:
        for chunk in _chunks(data, [split] * (len(data) // split + 1)):
            parser.feed(chunk)

    with pytest.raises(TooLarge):
        feed_all()
