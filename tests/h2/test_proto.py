"""The HTTP/2 codec layer (no I/O): connection settings, stream bookkeeping, heads."""

from __future__ import annotations

import hpack

from linkpy.proto.h2 import (
    Connection,
    ConnectionTerminated,
    H2Settings,
    Request,
    RequestReceived,
    ResponseReceived,
    check_response,
    check_trailers,
    new_connection,
    parse_request,
    send_goaway,
)

GET = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a"), (b":path", b"/x")]


def _pair(
    client: H2Settings | None = None, server: H2Settings | None = None
) -> tuple[Connection, Connection]:
    c = new_connection(True, client or H2Settings())
    s = new_connection(False, server or H2Settings(max_concurrent_streams=10))
    s.receive_data(c.data_to_send())
    c.receive_data(s.data_to_send())
    s.receive_data(c.data_to_send())
    return c, s


def test_closed_streams_do_not_pile_up() -> None:
    c, s = _pair()
    for _ in range(5000):
        sid = c.get_next_available_stream_id()
        c.send_headers(sid, GET, end_stream=True)
        s.receive_data(c.data_to_send())
        s.send_headers(sid, [(b":status", b"200")], end_stream=True)
        events = c.receive_data(s.data_to_send())
        assert isinstance(events[0], ResponseReceived)
    assert len(c.streams) <= 300
    assert len(s.streams) <= 300


def test_settings_are_advertised() -> None:
    settings = H2Settings(
        initial_stream_window=1 << 20,
        initial_connection_window=4 << 20,
        max_frame=32768,
        max_header_list=8192,
        max_concurrent_streams=7,
    )
    c, _ = _pair(server=settings)
    remote = c.remote_settings
    assert remote.initial_window_size == 1 << 20
    assert remote.max_frame_size == 32768
    assert remote.max_header_list_size == 8192
    assert remote.max_concurrent_streams == 7
    assert c.outbound_flow_control_window == 4 << 20


def test_graceful_goaway_keeps_streams_below_it() -> None:
    c, s = _pair()
    sid = c.get_next_available_stream_id()
    c.send_headers(sid, GET, end_stream=True)
    events = s.receive_data(c.data_to_send())
    assert isinstance(events[0], RequestReceived)
    send_goaway(s, sid)
    s.send_headers(sid, [(b":status", b"200")])
    s.send_data(sid, b"after goaway", end_stream=True)
    events = c.receive_data(s.data_to_send())
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "ConnectionTerminated"
    assert isinstance(events[0], ConnectionTerminated) and events[0].last_stream_id == sid
    assert "DataReceived" in kinds and "StreamEnded" in kinds


def test_request_heads() -> None:
    req = parse_request([*GET, (b"l5d-dtab", b"/a=>/b"), (b"content-type", b"application/grpc")])
    assert isinstance(req, Request)
    assert (req.method, req.target, req.get(b":authority")) == (b"GET", b"/x", b"a")
    assert req.has_l5d and req.grpc and req.version == b"2"
    assert req.get(b"l5d-dtab") == b"/a=>/b"
    assert parse_request(GET[:3]) == "missing :path or :scheme"
    assert "uppercase" in str(parse_request([*GET, (b"X-A", b"1")]))
    assert "connection-specific" in str(parse_request([*GET, (b"connection", b"close")]))
    assert parse_request([*GET, (b"te", b"gzip")]) == "te other than trailers"
    assert "after a regular" in str(parse_request([(b"x", b"1"), *GET]))
    assert "duplicate" in str(parse_request([*GET[:3], (b":path", b"/a"), (b":path", b"/b")]))
    assert check_response([(b":status", b"204"), (b"x", b"y")]) == (204, [(b"x", b"y")])
    assert check_response([(b"x", b"y")]) == "missing :status"
    assert check_trailers([(b"grpc-status", b"0")]) == [(b"grpc-status", b"0")]
    assert check_trailers([(b":status", b"200")]) == "pseudo-header in trailers"


def test_literals_are_sent_without_huffman_coding_and_decode_anywhere() -> None:
    """Our HPACK literals are plain (hpack's pure-Python Huffman coder was the largest
    cost of an h2 request); any decoder reads them back."""
    conn = new_connection(True, H2Settings())
    headers = [(b"l5d-reqid", b"0123456789abcdef"), (b"x-a", b"hello")]
    block = conn.encoder.encode(headers)
    assert b"0123456789abcdef" in block and b"hello" in block
    assert hpack.Decoder().decode(block, raw=True) == headers
