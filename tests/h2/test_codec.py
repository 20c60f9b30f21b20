"""linkpy's HTTP/2 codec (linkpy.proto.h2 and linkpy.proto.hpack) against the h2 and
hpack libraries as the peer: a second implementation, so a mistake on one side is not
mirrored on the other."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import h2.settings
import hpack
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from linkpy.proto.h2 import (
    COMPRESSION_ERROR,
    FLOW_CONTROL_ERROR,
    FRAME_SIZE_ERROR,
    NO_ERROR,
    PROTOCOL_ERROR,
    STREAM_CLOSED,
    Connection,
    DataReceived,
    Event,
    H2Error,
    H2Settings,
    ProtocolError,
    RequestReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    frame,
)
from linkpy.proto.hpack import Decoder, Encoder, HeaderListTooLarge, HpackError, NeverIndexed

GET = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a"), (b":path", b"/x")]
OK = [(b":status", b"200")]


def _lib(client_side: bool) -> h2.connection.H2Connection:
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=client_side, header_encoding=None)
    )
    conn.initiate_connection()
    return conn


def _server(settings: H2Settings | None = None) -> tuple[h2.connection.H2Connection, Connection]:
    """(the library as the client, linkpy as the server), settings exchanged."""
    peer = _lib(True)
    ours = Connection(False, settings or H2Settings())
    ours.receive_data(peer.data_to_send())
    peer.receive_data(ours.data_to_send())
    ours.receive_data(peer.data_to_send())
    return peer, ours


def _client(settings: H2Settings | None = None) -> tuple[Connection, h2.connection.H2Connection]:
    """(linkpy as the client, the library as the server), settings exchanged."""
    ours = Connection(True, settings or H2Settings())
    peer = _lib(False)
    peer.receive_data(ours.data_to_send())
    ours.receive_data(peer.data_to_send())
    peer.receive_data(ours.data_to_send())
    return ours, peer


def _kinds(events: list[Event] | list[h2.events.Event]) -> list[str]:
    return [type(e).__name__ for e in events]


def _goaway(peer: h2.connection.H2Connection, data: bytes) -> int:
    ended = [e for e in peer.receive_data(data) if isinstance(e, h2.events.ConnectionTerminated)]
    assert ended, "no GOAWAY"
    code = ended[0].error_code
    assert code is not None
    return int(code)


def _resets(peer: h2.connection.H2Connection, data: bytes) -> dict[int, int]:
    return {
        e.stream_id: int(e.error_code)
        for e in peer.receive_data(data)
        if isinstance(e, h2.events.StreamReset)
    }


# -- HPACK -------------------------------------------------------------------------------

_names = st.sampled_from(
    [b"content-type", b"x-a", b"l5d-reqid", b"user-agent", b"grpc-status", b"x-long-" * 9]
)
_values = st.binary(min_size=0, max_size=300).map(lambda b: b.replace(b"\0", b"v"))
_lists = st.lists(st.lists(st.tuples(_names, _values), max_size=12), min_size=1, max_size=8)


@settings(max_examples=150, deadline=None)
@given(_lists, st.sampled_from([0, 256, 4096]))
def test_our_blocks_decode_with_the_library(
    blocks: list[list[tuple[bytes, bytes]]], size: int
) -> None:
    enc = Encoder()
    dec = hpack.Decoder()
    if size != 4096:
        enc.set_max_size(size)
    for headers in blocks:
        block = enc.encode(headers)
        assert dec.decode(block, raw=True) == headers


@settings(max_examples=150, deadline=None)
@given(_lists, st.booleans())
def test_the_librarys_blocks_decode_with_ours(
    blocks: list[list[tuple[bytes, bytes]]], huffman: bool
) -> None:
    enc = hpack.Encoder()
    dec = Decoder()
    for headers in blocks:
        assert dec.decode(enc.encode(headers, huffman=huffman)) == headers


@settings(max_examples=150, deadline=None)
@given(_lists, st.booleans(), st.integers(0, 3000))
def test_a_header_list_over_the_limit_is_always_caught(
    blocks: list[list[tuple[bytes, bytes]]], huffman: bool, limit: int
) -> None:
    """SETTINGS_MAX_HEADER_LIST_SIZE: the decoder skips counting only where no list
    could exceed the limit, so a list over it is caught whatever its block looks like."""
    enc = hpack.Encoder()
    dec = Decoder()
    dec.max_header_list = limit
    for headers in blocks:
        size = sum(len(n) + len(v) + 32 for n, v in headers)
        block = enc.encode(headers, huffman=huffman)
        if size > limit:
            with pytest.raises(HeaderListTooLarge):
                dec.decode(block)
        else:
            assert dec.decode(block) == headers


def test_small_blocks_of_large_entries_are_caught() -> None:
    """One-byte indexes of one large table entry: a short block, a long list."""
    enc = Encoder()
    big = [(b"x-big", b"v" * 2000)]  # (indexed: at most half the table)
    dec = Decoder()
    dec.max_header_list = 100_000
    dec.decode(enc.encode(big))
    block = enc.encode(big * 60)
    assert len(block) == 60
    with pytest.raises(HeaderListTooLarge):
        dec.decode(block)
    dec.max_header_list = 2**31
    assert dec.decode(enc.encode(big * 60)) == big * 60


def test_repeated_headers_become_one_byte_indexes() -> None:
    enc = Encoder()
    headers = [(b"x-service", b"users"), (b":method", b"GET"), (b"l5d-reqid", b"0123456789")]
    first = enc.encode(headers)
    second = enc.encode(headers)
    assert len(second) < len(first)
    assert second.startswith(b"\xbe\x82")  # dynamic index 62, static index 2
    assert b"0123456789" in second  # per-request values are literals, never indexed


def test_never_indexed_headers_stay_literal() -> None:
    enc = Encoder()
    secret = NeverIndexed(b"authorization", b"Bearer t")
    for _ in range(2):
        block = enc.encode([secret])
        assert block[0] & 0xF0 == 0x10 and b"Bearer t" in block
    decoded = hpack.Decoder().decode(enc.encode([secret]), raw=True)
    assert [tuple(h) for h in decoded] == [(b"authorization", b"Bearer t")]


def test_table_size_update_is_announced_and_obeyed() -> None:
    enc = Encoder()
    lib = hpack.Decoder()
    lib.decode(enc.encode([(b"x-a", b"1" * 100)]), raw=True)
    enc.set_max_size(0)
    block = enc.encode([(b"x-a", b"1" * 100)])
    assert block[0] == 0x20  # size update to 0 first
    assert lib.decode(block, raw=True) == [(b"x-a", b"1" * 100)]
    assert lib.header_table_size == 0


def test_our_decoder_obeys_the_peers_table_size_updates() -> None:
    lib = hpack.Encoder()
    dec = Decoder()
    first = [(b"x-a", b"1" * 100), (b"x-b", b"2")]
    assert dec.decode(lib.encode(first)) == first
    lib.header_table_size = 64  # announced at the start of the next block
    block = lib.encode(first)
    assert block[0] & 0xE0 == 0x20
    assert dec.decode(block) == first
    assert dec.max_size == 64
    assert dec.decode(lib.encode(first)) == first


def test_bad_blocks_are_errors() -> None:
    for block in (
        b"\x80",
        b"\xff\xff\xff\xff\xff\xff\x0f",
        b"\x40\x85ab",
        b"\xc1",
        b"\x3f\xe2\x1f",
    ):
        with pytest.raises(HpackError):
            Decoder().decode(block)
    dec = Decoder()
    dec.max_header_list = 100
    block = hpack.Encoder().encode([(b"x-a", b"v" * 200)])
    with pytest.raises(HeaderListTooLarge):
        dec.decode(block)


# -- frames, streams and flow control ---------------------------------------------------


def test_request_and_response_with_the_library() -> None:
    peer, ours = _server()
    peer.send_headers(1, GET, end_stream=False)
    peer.send_data(1, b"body", end_stream=True)
    events = ours.receive_data(peer.data_to_send())
    assert _kinds(events) == ["RequestReceived", "DataReceived", "StreamEnded"]
    assert isinstance(events[0], RequestReceived) and events[0].headers == GET
    ours.send_headers(1, [*OK, (b"content-type", b"text/plain")])
    ours.send_data(1, b"answer")
    ours.send_headers(1, [(b"x-trailer", b"t")], end_stream=True)
    got = peer.receive_data(ours.data_to_send())
    assert _kinds(got) == ["ResponseReceived", "DataReceived", "TrailersReceived", "StreamEnded"]
    assert ours.streams == {}


def test_a_client_stream_with_informational_and_final_responses() -> None:
    ours, peer = _client()
    sid = ours.get_next_available_stream_id()
    ours.send_headers(sid, GET, end_stream=True)
    peer.receive_data(ours.data_to_send())
    peer.send_headers(sid, [(b":status", b"103"), (b"link", b"</a>")])
    peer.send_headers(sid, OK)
    peer.send_data(sid, b"x", end_stream=True)
    events = ours.receive_data(peer.data_to_send())
    assert _kinds(events) == ["ResponseReceived", "DataReceived", "StreamEnded"]
    assert isinstance(events[0], ResponseReceived) and events[0].headers == OK
    assert ours.get_next_available_stream_id() == sid + 2


def test_large_header_blocks_use_continuation_both_ways() -> None:
    big = [*GET, *((b"x-h%d" % i, b"v" * 1000) for i in range(40))]  # ~40 KB > 16 KB
    peer, ours = _server()
    peer.send_headers(1, big, end_stream=True)
    events = ours.receive_data(peer.data_to_send())
    assert isinstance(events[0], RequestReceived) and events[0].headers == big
    ours.send_headers(1, [*OK, *big[4:]], end_stream=True)
    got = peer.receive_data(ours.data_to_send())
    assert isinstance(got[0], h2.events.ResponseReceived)
    assert got[0].headers == [*OK, *big[4:]]


def test_padding_is_stripped_and_counted() -> None:
    peer, ours = _server()
    peer.send_headers(1, GET)
    peer.send_data(1, b"abc", pad_length=20, end_stream=True)
    events = ours.receive_data(peer.data_to_send())
    data = [e for e in events if isinstance(e, DataReceived)]
    assert data[0].data == b"abc" and data[0].flow_controlled_length == 24


def test_bodies_larger_than_the_windows_flow_as_they_are_consumed() -> None:
    """Both sides at the default 65,535-byte windows: 1 MB goes through only because
    acknowledged bytes reopen the windows."""
    peer, ours = _server()
    body = bytes(range(256)) * 4096
    peer.send_headers(1, GET)
    got = bytearray()
    sent = 0
    ended = False
    for _ in range(1000):
        while sent < len(body):
            n = min(peer.local_flow_control_window(1), peer.max_outbound_frame_size)
            if n <= 0:
                break
            n = min(n, len(body) - sent)
            peer.send_data(1, body[sent : sent + n], end_stream=sent + n == len(body))
            sent += n
        for e in ours.receive_data(peer.data_to_send()):
            if isinstance(e, DataReceived):
                got += e.data
                ours.acknowledge_received_data(e.flow_controlled_length, 1)
            ended = ended or isinstance(e, StreamEnded)
        peer.receive_data(ours.data_to_send())
        if ended:
            break
    assert ended and bytes(got) == body


def test_our_sends_respect_the_peers_windows() -> None:
    ours, peer = _client()
    sid = ours.get_next_available_stream_id()
    ours.send_headers(sid, GET)
    assert ours.local_flow_control_window(sid) == 65535
    ours.send_data(sid, b"x" * 16384)
    assert ours.local_flow_control_window(sid) == 65535 - 16384
    for _ in range(2):
        ours.send_data(sid, b"x" * 16384)
    ours.send_data(sid, b"x" * 16383)  # the window is now spent
    with pytest.raises(H2Error, match="flow-control window"):
        ours.send_data(sid, b"x")
    # the peer consumes: its WINDOW_UPDATEs reopen the windows
    for e in peer.receive_data(ours.data_to_send()):
        if isinstance(e, h2.events.DataReceived):
            peer.acknowledge_received_data(e.flow_controlled_length, sid)
    events = ours.receive_data(peer.data_to_send())
    assert "WindowUpdated" in _kinds(events)
    assert ours.local_flow_control_window(sid) > 16384


def test_a_settings_change_moves_the_stream_windows() -> None:
    ours, peer = _client()
    sid = ours.get_next_available_stream_id()
    ours.send_headers(sid, GET)
    peer.receive_data(ours.data_to_send())
    peer.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1000})
    events = ours.receive_data(peer.data_to_send())
    assert "RemoteSettingsChanged" in _kinds(events)
    assert ours.local_flow_control_window(sid) == 1000
    assert "SettingsAcknowledged" in _kinds(peer.receive_data(ours.data_to_send()))


def test_ping_is_answered() -> None:
    peer, ours = _server()
    peer.ping(b"12345678")
    ours.receive_data(peer.data_to_send())
    events = peer.receive_data(ours.data_to_send())
    assert any(
        isinstance(e, h2.events.PingAckReceived) and e.ping_data == b"12345678" for e in events
    )


def test_graceful_goaway_from_the_peer() -> None:
    ours, peer = _client()
    sid = ours.get_next_available_stream_id()
    ours.send_headers(sid, GET, end_stream=True)
    peer.receive_data(ours.data_to_send())
    peer.close_connection(last_stream_id=sid)
    events = ours.receive_data(peer.data_to_send())
    assert _kinds(events) == ["ConnectionTerminated"]


# -- errors --------------------------------------------------------------------------------


def _connection_error(ours: Connection, data: bytes) -> int:
    with pytest.raises(ProtocolError) as info:
        ours.receive_data(data)
    assert ours.receive_data(b"more") == []  # finished
    return info.value.code


def test_connection_errors_send_goaway_with_their_code() -> None:
    cases = [
        (frame(0, 0, 0, b"x"), PROTOCOL_ERROR),  # DATA on stream 0
        (frame(1, 4, 2, b"\x82"), PROTOCOL_ERROR),  # a client opening an even stream
        (frame(0, 0, 9, b"x"), PROTOCOL_ERROR),  # DATA on an idle stream
        (frame(3, 0, 9, b"\0\0\0\0"), PROTOCOL_ERROR),  # RST_STREAM on an idle stream
        (frame(1, 4, 1, b"\xc1"), COMPRESSION_ERROR),  # an index not in the table
        (frame(1, 0, 1, b"\x82") + frame(0, 0, 1, b"x"), PROTOCOL_ERROR),  # block interrupted
        (frame(9, 4, 1, b"\x82"), PROTOCOL_ERROR),  # CONTINUATION alone
        (frame(6, 0, 0, b"123"), FRAME_SIZE_ERROR),  # PING of 3 bytes
        (frame(4, 0, 0, b"\0\4\x80\0\0\0"), FLOW_CONTROL_ERROR),  # window over 2^31-1
        (frame(4, 0, 0, b"\0\5\0\0\0\1"), PROTOCOL_ERROR),  # MAX_FRAME_SIZE 1
        (frame(8, 0, 0, b"\0\0\0\0"), PROTOCOL_ERROR),  # WINDOW_UPDATE of 0
        (frame(0xA, 0, 0, b"x" * 16385), FRAME_SIZE_ERROR),  # over our frame size
        (frame(1, 0x0C, 1, b"\x40\x82\x82"), PROTOCOL_ERROR),  # padding past the frame
    ]
    for data, code in cases:
        peer, ours = _server()
        assert _connection_error(ours, data) == code, data
        assert _goaway(peer, ours.data_to_send()) == code


def test_a_bad_preface_is_a_connection_error() -> None:
    ours = Connection(False, H2Settings())
    assert _connection_error(ours, b"GET / HTTP/1.1\r\n\r\n" + b"x" * 20) == PROTOCOL_ERROR


def test_the_peer_is_held_to_our_windows() -> None:
    peer, ours = _server(H2Settings(initial_stream_window=100))
    # the library believes our window; send it one byte over by hand
    peer.send_headers(1, GET)
    ours.receive_data(peer.data_to_send())
    events = ours.receive_data(frame(0, 0, 1, b"x" * 101))
    assert [(type(e), e.error_code) for e in events if isinstance(e, StreamReset)] == [
        (StreamReset, FLOW_CONTROL_ERROR)
    ]
    assert _resets(peer, ours.data_to_send()) == {1: FLOW_CONTROL_ERROR}
    # a large stream window, the connection's at 65,535 and nothing consumed
    peer, ours = _server(H2Settings(initial_stream_window=1 << 20))
    peer.send_headers(1, GET)
    ours.receive_data(peer.data_to_send())
    with pytest.raises(ProtocolError) as info:
        ours.receive_data(b"".join(frame(0, 0, 1, b"x" * 16384) for _ in range(4)))
    assert info.value.code == FLOW_CONTROL_ERROR


def test_stream_errors_reset_only_their_stream() -> None:
    peer, ours = _server()
    for sid in (1, 3, 5, 7):
        peer.send_headers(sid, GET, end_stream=sid == 1)
    ours.receive_data(peer.data_to_send())
    data = (
        frame(0, 0, 1, b"late")  # DATA after END_STREAM
        + frame(8, 0, 3, b"\0\0\0\0")  # WINDOW_UPDATE of 0
        + frame(1, 4, 5, hpack.Encoder().encode([(b"x-t", b"1")]))  # trailers without END_STREAM
        + frame(2, 0, 7, b"\0\0\0\7\x10")  # a stream depending on itself
    )
    events = ours.receive_data(data)
    resets = {e.stream_id: e.error_code for e in events if isinstance(e, StreamReset)}
    assert resets == {1: STREAM_CLOSED, 3: PROTOCOL_ERROR, 5: PROTOCOL_ERROR, 7: PROTOCOL_ERROR}
    assert set(ours.streams) == set()
    peer2, ours2 = _server()
    peer2.send_headers(1, GET)
    ours2.receive_data(peer2.data_to_send())
    ours2.receive_data(frame(8, 0, 1, b"\0\0\0\0"))
    peer2.send_headers(3, GET, end_stream=True)
    events = ours2.receive_data(peer2.data_to_send())  # the connection carries on
    assert _kinds(events) == ["RequestReceived", "StreamEnded"]


def test_frames_in_flight_on_a_stream_we_reset_are_dropped() -> None:
    peer, ours = _server()
    peer.send_headers(1, GET)
    ours.receive_data(peer.data_to_send())
    ours.reset_stream(1, NO_ERROR)
    assert ours.receive_data(frame(0, 0, 1, b"x" * 100) + frame(0, 1, 1)) == []
    assert ours.data_to_send() != b""  # the RST_STREAM, and no error for the late frames


def test_an_oversized_header_list_resets_its_stream_only() -> None:
    peer, ours = _server(H2Settings(max_header_list=500))
    peer.send_headers(1, [*GET, (b"x-big", b"v" * 1000)], end_stream=True)
    peer.send_headers(3, [*GET, (b"x-small", b"v")], end_stream=True)
    events = ours.receive_data(peer.data_to_send())
    assert _kinds(events) == ["RequestReceived", "StreamEnded"]
    assert isinstance(events[0], RequestReceived) and events[0].stream_id == 3
    assert _resets(peer, ours.data_to_send()) == {1: PROTOCOL_ERROR}


def test_sending_on_a_closed_stream_is_refused() -> None:
    peer, ours = _server()
    peer.send_headers(1, GET, end_stream=True)
    ours.receive_data(peer.data_to_send())
    ours.send_headers(1, OK, end_stream=True)
    for call in (
        lambda: ours.send_headers(1, OK),
        lambda: ours.send_data(1, b"x"),
        lambda: ours.reset_stream(1, 0),
        lambda: ours.local_flow_control_window(1),
    ):
        with pytest.raises(Exception, match="closed"):
            call()


def test_a_content_length_must_match_the_data() -> None:
    """RFC 9113 section 8.1.1: a mismatch is a malformed message, a stream error."""
    peer, ours = _server()
    for sid, body in ((1, b"abc"), (3, b"abcdef"), (5, b"abcd")):
        peer.send_headers(sid, [*GET, (b"content-length", b"4")])
        peer.send_data(sid, body, end_stream=True)
    # (the library does not check what it sends against its content-length)
    events = ours.receive_data(peer.data_to_send())
    resets = {e.stream_id: e.error_code for e in events if isinstance(e, StreamReset)}
    assert resets == {1: PROTOCOL_ERROR, 3: PROTOCOL_ERROR}
    assert [e.stream_id for e in events if isinstance(e, StreamEnded)] == [5]


def test_responses_without_a_body_keep_their_content_length() -> None:
    ours, peer = _client()
    for method, status in ((b"HEAD", b"200"), (b"GET", b"204"), (b"GET", b"304")):
        sid = ours.get_next_available_stream_id()
        ours.send_headers(sid, [(b":method", method), *GET[1:]], end_stream=True)
        peer.receive_data(ours.data_to_send())
        peer.send_headers(sid, [(b":status", status), (b"content-length", b"10")], True)
        events = ours.receive_data(peer.data_to_send())
        assert _kinds(events) == ["ResponseReceived", "StreamEnded"], (method, status)


def test_window_updates_follow_the_window_update_ratio() -> None:
    """Linkerd's windowUpdateRatio: a window is reopened once it falls below that share
    of its size (0.99 by default: once 1 % is consumed)."""
    for ratio, quiet, loud in ((0.99, 600, 700), (0.5, 32000, 33000)):
        peer, ours = _server(H2Settings(window_update_ratio=ratio))
        peer.send_headers(1, GET)
        for _ in range(3):
            peer.send_data(1, b"x" * 16384)
        ours.receive_data(peer.data_to_send())
        ours.acknowledge_received_data(quiet, 1)
        assert ours.data_to_send() == b"", ratio
        ours.acknowledge_received_data(loud - quiet, 1)
        updates = [
            (e.stream_id, e.delta)
            for e in peer.receive_data(ours.data_to_send())
            if isinstance(e, h2.events.WindowUpdated)
        ]
        assert sorted(updates) == [(0, loud), (1, loud)], ratio


_frames = st.lists(
    st.tuples(
        st.integers(0, 12),  # type (10..12: unknown types)
        st.integers(0, 255),  # flags
        st.sampled_from([0, 1, 2, 3, 5, 2**31 - 1]),  # stream
        st.binary(max_size=40),
    ),
    max_size=12,
)


@settings(max_examples=400, deadline=None)
@given(st.booleans(), _frames, st.integers(1, 64))
@example(True, [(1, 4, 1, b"")], 9)  # an empty response head
@example(False, [(1, 5, 3, b"")], 9)  # an empty request head
def test_any_frames_give_events_or_a_protocol_error(
    client_side: bool, frames: list[tuple[int, int, int, bytes]], chunk: int
) -> None:
    """Whatever a peer sends, the codec answers with events or a ProtocolError (after
    which it is finished): no other exception reaches the transport."""
    if client_side:
        ours, _ = _client()
        sid = ours.get_next_available_stream_id()
        ours.send_headers(sid, GET)
    else:
        peer_c, ours = _server()
        peer_c.send_headers(1, GET)
        ours.receive_data(peer_c.data_to_send())
    data = b"".join(frame(kind, flags, sid, payload) for kind, flags, sid, payload in frames)
    try:
        for i in range(0, len(data), chunk):  # (split anywhere, as TCP may)
            ours.receive_data(data[i : i + chunk])
            ours.data_to_send()
    except ProtocolError as e:
        assert e.code in range(14)
        assert ours.receive_data(b"\0" * 9) == []


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_any_header_block_decodes_or_is_an_hpack_error(block: bytes) -> None:
    dec = Decoder()
    try:
        dec.decode(block)
    except (HpackError, HeaderListTooLarge):
        pass
    dec.decode(hpack.Encoder().encode([(b"x-after", b"1")]))  # the decoder is still usable
