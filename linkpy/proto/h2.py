"""HTTP/2 (RFC 9113) without I/O: the frame layer, stream states and flow control of
the h2 router, and the checks of request and response heads.

:class:`Connection` takes bytes in (:meth:`Connection.receive_data`, which returns
events) and queues bytes out (:meth:`Connection.data_to_send`).  It is linkpy's own
rather than the ``h2`` library's: a proxy runs two codecs per request, and the
library's general machinery (frame objects, a state machine per stream, validation
and logging hooks) cost more than half of an h2 request's CPU in the profile
(docs/benchmarks.md).  What it implements is what a router needs:

* every frame type; CONTINUATION; padding; unknown frame types ignored;
* stream states, with protocol and flow-control errors as *stream* errors where RFC 9113
  allows it (a RST_STREAM for that stream only, reported as a :class:`StreamReset`
  event) and as *connection* errors (GOAWAY with the code, then :class:`ProtocolError`
  from ``receive_data``) where it does not;
* flow control both ways: windows from SETTINGS and WINDOW_UPDATE for what we send;
  for what we receive, the peer is held to the windows we advertised and they are
  reopened only as the user acknowledges consumed bytes (Linkerd's
  ``windowUpdateRatio``: by default once 1 % of a window is consumed);
* SETTINGS (acknowledged at once), PING (answered), GOAWAY both ways.  A graceful
  GOAWAY (NO_ERROR) leaves the streams below its ``last_stream_id`` running (RFC 9113
  section 6.8);
* header blocks through :mod:`linkpy.proto.hpack`.

Malformed *messages* (bad pseudo-headers, uppercase names, connection headers) are not
the codec's business: :func:`parse_request`, :func:`check_response` and
:func:`check_trailers` check heads, and the transport resets the one stream with
PROTOCOL_ERROR (RFC 9113 section 8.1.1), so one bad stream never harms the others.
"""

from __future__ import annotations

import struct
from typing import Final

import attrs

from .hpack import STATIC, Decoder, Encoder, HeaderListTooLarge, HpackError

Headers = list[tuple[bytes, bytes]]

#: RFC 9113 section 7 error codes (what RST_STREAM and GOAWAY carry).
NO_ERROR: Final = 0x0
PROTOCOL_ERROR: Final = 0x1
INTERNAL_ERROR: Final = 0x2
FLOW_CONTROL_ERROR: Final = 0x3
SETTINGS_TIMEOUT: Final = 0x4
STREAM_CLOSED: Final = 0x5
FRAME_SIZE_ERROR: Final = 0x6
REFUSED_STREAM: Final = 0x7
CANCEL: Final = 0x8
COMPRESSION_ERROR: Final = 0x9
CONNECT_ERROR: Final = 0xA
ENHANCE_YOUR_CALM: Final = 0xB
INADEQUATE_SECURITY: Final = 0xC
HTTP_1_1_REQUIRED: Final = 0xD

_ERROR_NAMES: Final = (
    "NO_ERROR",
    "PROTOCOL_ERROR",
    "INTERNAL_ERROR",
    "FLOW_CONTROL_ERROR",
    "SETTINGS_TIMEOUT",
    "STREAM_CLOSED",
    "FRAME_SIZE_ERROR",
    "REFUSED_STREAM",
    "CANCEL",
    "COMPRESSION_ERROR",
    "CONNECT_ERROR",
    "ENHANCE_YOUR_CALM",
    "INADEQUATE_SECURITY",
    "HTTP_1_1_REQUIRED",
)

#: The window every HTTP/2 connection starts with (RFC 9113 section 6.9.2).
DEFAULT_WINDOW: Final = 65535
MAX_WINDOW: Final = 2**31 - 1
DEFAULT_FRAME: Final = 16384
MAX_FRAME: Final = 2**24 - 1
#: Linkerd's default ``windowUpdateRatio``.
WINDOW_UPDATE_RATIO: Final = 0.99
#: The connection preface a prior-knowledge client sends first.
PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

#: Headers that describe one connection; forbidden in HTTP/2 (RFC 9113 section 8.2.2).
CONNECTION_HEADERS: Final = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)


def error_name(code: int) -> str:
    if 0 <= code < len(_ERROR_NAMES):
        return _ERROR_NAMES[code]
    return f"0x{code:x}"


@attrs.frozen(kw_only=True)
class H2Settings:
    """One side's HTTP/2 settings (Linkerd's server and client keys, reference 12.2).

    ``None`` leaves the protocol's default: 65,535-byte windows, 16 KiB frames, no
    header-list limit, no stream limit, a 4 KiB HPACK table.  Received windows are
    reopened (WINDOW_UPDATE) once ``1 - window_update_ratio`` of them is consumed.
    """

    initial_stream_window: int | None = None
    initial_connection_window: int | None = None
    max_frame: int | None = None
    max_header_list: int | None = None
    max_concurrent_streams: int | None = None
    header_table: int | None = None
    #: reopen a receive window once it falls below this share of its size (Linkerd's
    #: ``windowUpdateRatio``, as Netty's flow controller reads it)
    window_update_ratio: float = WINDOW_UPDATE_RATIO


# -- errors and events ---------------------------------------------------------------


class H2Error(Exception):
    """A call the connection's state does not allow, or a connection error."""


class ProtocolError(H2Error):
    """The peer broke the protocol: a GOAWAY with ``code`` is queued, the connection is
    finished."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{error_name(code)}: {message}")
        self.code = code


class StreamClosedError(H2Error):
    """The stream cannot send (it is closed, reset, or unknown)."""


class Event:
    __slots__ = ()


class RequestReceived(Event):
    __slots__ = ("stream_id", "headers")

    def __init__(self, stream_id: int, headers: Headers) -> None:
        self.stream_id = stream_id
        self.headers = headers


class ResponseReceived(RequestReceived):
    __slots__ = ()


class TrailersReceived(RequestReceived):
    __slots__ = ()


class DataReceived(Event):
    __slots__ = ("stream_id", "data", "flow_controlled_length")

    def __init__(self, stream_id: int, data: bytes, flow_controlled_length: int) -> None:
        self.stream_id = stream_id
        self.data = data
        #: the bytes this frame took from the windows (padding included)
        self.flow_controlled_length = flow_controlled_length


class StreamEnded(Event):
    __slots__ = ("stream_id",)

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id


class StreamReset(Event):
    """The peer reset the stream, or (``remote`` false) the codec did, for a stream error."""

    __slots__ = ("stream_id", "error_code", "remote")

    def __init__(self, stream_id: int, error_code: int, remote: bool = True) -> None:
        self.stream_id = stream_id
        self.error_code = error_code
        self.remote = remote


class WindowUpdated(Event):
    __slots__ = ("stream_id", "delta")

    def __init__(self, stream_id: int, delta: int) -> None:
        self.stream_id = stream_id
        self.delta = delta


class RemoteSettingsChanged(Event):
    __slots__ = ()


class ConnectionTerminated(Event):
    """A GOAWAY arrived."""

    __slots__ = ("error_code", "last_stream_id", "additional_data")

    def __init__(self, error_code: int, last_stream_id: int, additional_data: bytes | None) -> None:
        self.error_code = error_code
        self.last_stream_id = last_stream_id
        self.additional_data = additional_data


# -- frames ----------------------------------------------------------------------------

DATA: Final = 0x0
HEADERS: Final = 0x1
PRIORITY: Final = 0x2
RST_STREAM: Final = 0x3
SETTINGS: Final = 0x4
PUSH_PROMISE: Final = 0x5
PING: Final = 0x6
GOAWAY: Final = 0x7
WINDOW_UPDATE: Final = 0x8
CONTINUATION: Final = 0x9

F_END_STREAM: Final = 0x1
F_ACK: Final = 0x1
F_END_HEADERS: Final = 0x4
F_PADDED: Final = 0x8
F_PRIORITY: Final = 0x20

S_HEADER_TABLE_SIZE: Final = 0x1
S_ENABLE_PUSH: Final = 0x2
S_MAX_CONCURRENT_STREAMS: Final = 0x3
S_INITIAL_WINDOW_SIZE: Final = 0x4
S_MAX_FRAME_SIZE: Final = 0x5
S_MAX_HEADER_LIST_SIZE: Final = 0x6

#: length (24 bits as 8 + 16), type, flags, stream id (with its reserved bit)
_HEAD = struct.Struct(">BHBBL")
_U32 = struct.Struct(">L")
_SETTING = struct.Struct(">HL")
_GOAWAY = struct.Struct(">LL")
#: bytes of header blocks (and CONTINUATION frames) buffered for one block at most
MAX_BLOCK: Final = 1 << 20
#: stream ids we reset that may still see frames in flight (remembered up to this many)
RECENT_RESETS: Final = 1024


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    n = len(payload)
    return _HEAD.pack(n >> 16, n & 0xFFFF, kind, flags, stream_id) + payload


class RemoteSettings:
    """The peer's settings as last received (RFC 9113 section 6.5.2 defaults)."""

    __slots__ = (
        "header_table_size",
        "enable_push",
        "max_concurrent_streams",
        "initial_window_size",
        "max_frame_size",
        "max_header_list_size",
    )

    def __init__(self) -> None:
        self.header_table_size = 4096
        self.enable_push = 1
        self.max_concurrent_streams = 2**31 - 1
        self.initial_window_size = DEFAULT_WINDOW
        self.max_frame_size = DEFAULT_FRAME
        self.max_header_list_size: int | None = None


class _Stream:
    __slots__ = (
        "send_window",
        "recv_window",
        "pending",
        "unacked",
        "local_closed",
        "remote_closed",
        "head",
        "expect",
        "head_request",
    )

    def __init__(self, send_window: int, recv_window: int) -> None:
        #: what we may still send (may go negative after a SETTINGS change)
        self.send_window = send_window
        #: what the peer may still send
        self.recv_window = recv_window
        #: received bytes the user has not acknowledged yet
        self.pending = 0
        #: received bytes the user consumed that no WINDOW_UPDATE has returned yet
        self.unacked = 0
        self.local_closed = False
        self.remote_closed = False
        #: the peer's (final) head arrived
        self.head = False
        #: DATA bytes still due by the peer's content-length (-1: no content-length)
        self.expect = -1
        #: we sent a HEAD request (its response's content-length announces no DATA)
        self.head_request = False


class _ConnError(Exception):
    def __init__(self, code: int, message: str) -> None:
        self.code = code
        self.message = message


class _StreamError(Exception):
    def __init__(self, stream_id: int, code: int) -> None:
        self.stream_id = stream_id
        self.code = code


class Connection:
    """One HTTP/2 connection's protocol state, either side."""

    def __init__(self, client_side: bool, settings: H2Settings) -> None:
        self.client_side = client_side
        self.streams: dict[int, _Stream] = {}
        self._out: list[bytes] = []
        self.encoder = Encoder()
        self.decoder = Decoder()
        self.remote_settings = RemoteSettings()
        #: what we may send on the connection, and what the peer may
        self.outbound_flow_control_window = DEFAULT_WINDOW
        self._recv_window = DEFAULT_WINDOW
        self._recv_target = DEFAULT_WINDOW
        self._unacked = 0
        self._stream_target = DEFAULT_WINDOW
        self.max_outbound_frame_size = DEFAULT_FRAME
        self.max_inbound_frame_size = DEFAULT_FRAME
        self.highest_inbound_stream_id = 0
        self._next_id = 1 if client_side else 2
        self._buf = b""
        self._preface = not client_side
        #: (stream id, flags, fragments, size) of a header block awaiting CONTINUATION
        self._block: tuple[int, int, list[bytes], int] | None = None
        self._resets: dict[int, None] = {}
        self._dead = False
        self._settings_acked = False
        share = min(max(1.0 - settings.window_update_ratio, 0.0), 1.0)
        values: list[tuple[int, int]] = []
        if client_side:
            values.append((S_ENABLE_PUSH, 0))
        if settings.initial_stream_window is not None:
            self._stream_target = min(settings.initial_stream_window, MAX_WINDOW)
            values.append((S_INITIAL_WINDOW_SIZE, self._stream_target))
        if settings.max_frame is not None:
            self.max_inbound_frame_size = min(max(settings.max_frame, DEFAULT_FRAME), MAX_FRAME)
            values.append((S_MAX_FRAME_SIZE, self.max_inbound_frame_size))
        if settings.max_header_list is not None:
            values.append((S_MAX_HEADER_LIST_SIZE, settings.max_header_list))
            self.decoder.max_header_list = settings.max_header_list
        if settings.max_concurrent_streams is not None:
            values.append((S_MAX_CONCURRENT_STREAMS, settings.max_concurrent_streams))
        if settings.header_table is not None:
            values.append((S_HEADER_TABLE_SIZE, settings.header_table))
            self.decoder.max_allowed = max(settings.header_table, 4096)
        if client_side:
            self._out.append(PREFACE)
        self._out.append(frame(SETTINGS, 0, 0, b"".join(_SETTING.pack(k, v) for k, v in values)))
        window = settings.initial_connection_window
        if window is not None and window > DEFAULT_WINDOW:
            window = min(window, MAX_WINDOW)
            self._out.append(frame(WINDOW_UPDATE, 0, 0, _U32.pack(window - DEFAULT_WINDOW)))
            self._recv_window = self._recv_target = window
        #: consumed bytes that make a WINDOW_UPDATE, per stream and for the connection
        self._stream_batch = max(1, int(self._stream_target * share))
        self._conn_batch = max(1, int(self._recv_target * share))

    # -- sending ---------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        out = self._out
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        return data

    def get_next_available_stream_id(self) -> int:
        if self._next_id > MAX_WINDOW:
            raise H2Error("no stream ids left on this connection")
        return self._next_id

    def _sendable(self, stream_id: int) -> _Stream:
        s = self.streams.get(stream_id)
        if s is None or s.local_closed:
            raise StreamClosedError(f"stream {stream_id} is closed")
        return s

    def send_headers(self, stream_id: int, headers: Headers, end_stream: bool = False) -> None:
        s = self.streams.get(stream_id)
        if s is None and self.client_side and stream_id == self._next_id and not self._dead:
            s = self.streams[stream_id] = _Stream(
                self.remote_settings.initial_window_size, self._stream_initial()
            )
            self._next_id += 2
            s.head_request = headers[0] == (b":method", b"HEAD") if headers else False
        elif s is None or s.local_closed:
            raise StreamClosedError(f"stream {stream_id} is closed")
        block = self.encoder.encode(headers)
        flags = F_END_STREAM if end_stream else 0
        limit = self.max_outbound_frame_size
        out = self._out
        n = len(block)
        if n <= limit:
            out.append(_HEAD.pack(n >> 16, n & 0xFFFF, HEADERS, flags | F_END_HEADERS, stream_id))
            out.append(block)
        else:
            out.append(frame(HEADERS, flags, stream_id, block[:limit]))
            for i in range(limit, n, limit):
                last = F_END_HEADERS if i + limit >= n else 0
                out.append(frame(CONTINUATION, last, stream_id, block[i : i + limit]))
        if end_stream:
            self._close_local(stream_id, s)

    def _close_local(self, stream_id: int, s: _Stream) -> None:
        s.local_closed = True
        if s.remote_closed:
            self._drop(stream_id, s)

    def _drop(self, stream_id: int, s: _Stream) -> None:
        """The stream is closed: what it received and the user did not acknowledge yet
        goes back to the connection window now (acknowledgements that come later are
        ignored)."""
        del self.streams[stream_id]
        if s.pending:
            self._ack_connection(s.pending)

    def local_flow_control_window(self, stream_id: int) -> int:
        """What may be sent on the stream now (the smaller of its and the connection's
        windows)."""
        s = self._sendable(stream_id)
        w = self.outbound_flow_control_window
        return s.send_window if s.send_window < w else w

    def send_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        s = self._sendable(stream_id)
        n = len(data)
        if n > s.send_window or n > self.outbound_flow_control_window:
            raise H2Error(f"{n} bytes exceed the flow-control window")
        if n > self.max_outbound_frame_size:
            raise H2Error(f"{n} bytes exceed the peer's frame size")
        s.send_window -= n
        self.outbound_flow_control_window -= n
        flags = F_END_STREAM if end_stream else 0
        self._out.append(_HEAD.pack(n >> 16, n & 0xFFFF, DATA, flags, stream_id))
        if n:
            self._out.append(data)
        if end_stream:
            self._close_local(stream_id, s)

    def end_stream(self, stream_id: int) -> None:
        self.send_data(stream_id, b"", end_stream=True)

    def reset_stream(self, stream_id: int, error_code: int) -> None:
        s = self.streams.get(stream_id)
        if s is None:
            raise StreamClosedError(f"stream {stream_id} is closed")
        self._out.append(frame(RST_STREAM, 0, stream_id, _U32.pack(error_code)))
        self._reset(stream_id, s)

    def _reset(self, stream_id: int, s: _Stream) -> None:
        """Drop a reset stream, remembering it for the frames still in flight."""
        self._drop(stream_id, s)
        resets = self._resets
        resets[stream_id] = None
        if len(resets) > RECENT_RESETS:
            del resets[next(iter(resets))]

    def acknowledge_received_data(self, n: int, stream_id: int) -> None:
        """``n`` received bytes of the stream were consumed: the windows may reopen."""
        if n <= 0:
            return
        s = self.streams.get(stream_id)
        if s is None:
            return  # its bytes went back to the connection when it closed
        if n > s.pending:
            n = s.pending
        s.pending -= n
        self._ack_connection(n)
        if s.remote_closed:
            return
        s.unacked += n
        if s.unacked >= self._stream_batch:
            self._out.append(frame(WINDOW_UPDATE, 0, stream_id, _U32.pack(s.unacked)))
            s.recv_window += s.unacked
            s.unacked = 0

    def _ack_connection(self, n: int) -> None:
        if n <= 0:
            return
        self._unacked += n
        if self._unacked >= self._conn_batch:
            self._out.append(frame(WINDOW_UPDATE, 0, 0, _U32.pack(self._unacked)))
            self._recv_window += self._unacked
            self._unacked = 0

    def close_connection(
        self, error_code: int = NO_ERROR, last_stream_id: int | None = None
    ) -> None:
        """Queue a GOAWAY (``last_stream_id``: the highest stream the peer opened, by
        default)."""
        last = self.highest_inbound_stream_id if last_stream_id is None else last_stream_id
        self._out.append(frame(GOAWAY, 0, 0, _GOAWAY.pack(last, error_code)))

    def ping(self, data: bytes) -> None:
        self._out.append(frame(PING, 0, 0, data))

    def _stream_initial(self) -> int:
        # until the peer acknowledges our SETTINGS it may assume the default window
        t = self._stream_target
        return t if self._settings_acked or t >= DEFAULT_WINDOW else DEFAULT_WINDOW

    # -- receiving -------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray) -> list[Event]:
        """The events of the bytes received (a partial frame waits for the rest).

        Raises :class:`ProtocolError` for a connection error, after queueing the GOAWAY.
        """
        if self._dead:
            return []
        if type(data) is not bytes:
            data = bytes(data)
        if self._buf:
            data = self._buf + data
            self._buf = b""
        events: list[Event] = []
        pos = 0
        end = len(data)
        try:
            if self._preface:
                if end < 24:
                    if not PREFACE.startswith(data):
                        raise _ConnError(PROTOCOL_ERROR, "invalid connection preface")
                    self._buf = data
                    return events
                if data[:24] != PREFACE:
                    raise _ConnError(PROTOCOL_ERROR, "invalid connection preface")
                self._preface = False
                pos = 24
            limit = self.max_inbound_frame_size
            head = _HEAD.unpack_from
            while end - pos >= 9:
                hi, lo, kind, flags, sid = head(data, pos)
                n = hi << 16 | lo
                if n > limit:
                    raise _ConnError(FRAME_SIZE_ERROR, f"a frame of {n} bytes")
                stop = pos + 9 + n
                if stop > end:
                    break
                payload = data[pos + 9 : stop]
                pos = stop
                sid &= 0x7FFFFFFF
                try:
                    if self._block is not None:
                        self._continuation(kind, flags, sid, payload, events)
                    elif kind == HEADERS:
                        self._headers(flags, sid, payload, events)
                    elif kind == DATA:
                        self._data(flags, sid, payload, n, events)
                    elif kind == WINDOW_UPDATE:
                        self._window_update(sid, payload, events)
                    elif kind == SETTINGS:
                        self._settings(flags, sid, payload, events)
                    elif kind == RST_STREAM:
                        self._rst(sid, payload, events)
                    elif kind == PING:
                        self._ping(flags, sid, payload)
                    elif kind == GOAWAY:
                        self._goaway(sid, payload, events)
                    elif kind == PRIORITY:
                        self._priority(sid, payload)
                    elif kind == CONTINUATION:
                        raise _ConnError(PROTOCOL_ERROR, "CONTINUATION without HEADERS")
                    elif kind == PUSH_PROMISE:
                        raise _ConnError(PROTOCOL_ERROR, "PUSH_PROMISE (push is disabled)")
                    # other frame types are ignored (RFC 9113 section 5.5)
                except _StreamError as e:
                    self._stream_error(e.stream_id, e.code, events)
            if pos < end:
                self._buf = data[pos:]
        except _ConnError as e:
            self._dead = True
            self._buf = b""
            self.close_connection(e.code)
            raise ProtocolError(e.code, e.message) from None
        return events

    def _stream_error(self, stream_id: int, code: int, events: list[Event]) -> None:
        self._out.append(frame(RST_STREAM, 0, stream_id, _U32.pack(code)))
        s = self.streams.get(stream_id)
        if s is not None:
            self._reset(stream_id, s)
            events.append(StreamReset(stream_id, code, remote=False))

    def _idle(self, sid: int) -> bool:
        """No stream ``sid`` was ever opened (by either side)."""
        if (sid & 1) == (1 if self.client_side else 0):  # a stream we open
            return sid >= self._next_id
        return sid > self.highest_inbound_stream_id

    def _headers(self, flags: int, sid: int, payload: bytes, events: list[Event]) -> None:
        if sid == 0:
            raise _ConnError(PROTOCOL_ERROR, "HEADERS on stream 0")
        start = 0
        stop = len(payload)
        if flags & F_PADDED:
            if not payload:
                raise _ConnError(FRAME_SIZE_ERROR, "HEADERS too short for its padding")
            stop -= payload[0]
            start = 1
        if flags & F_PRIORITY:
            if stop - start < 5:
                raise _ConnError(FRAME_SIZE_ERROR, "HEADERS too short for its priority")
            if _U32.unpack_from(payload, start)[0] & 0x7FFFFFFF == sid:
                self._decode_block(payload[start + 5 : stop], sid)  # (keeps HPACK in step)
                raise _StreamError(sid, PROTOCOL_ERROR)
            start += 5
        if stop < start:
            raise _ConnError(PROTOCOL_ERROR, "padding longer than the frame")
        block = payload[start:stop] if start or stop != len(payload) else payload
        if not flags & F_END_HEADERS:
            self._block = (sid, flags, [block], len(block))
            return
        self._on_block(sid, flags, block, events)

    def _continuation(
        self, kind: int, flags: int, sid: int, payload: bytes, events: list[Event]
    ) -> None:
        assert self._block is not None
        bsid, bflags, parts, size = self._block
        if kind != CONTINUATION or sid != bsid:
            raise _ConnError(PROTOCOL_ERROR, "a header block interrupted")
        parts.append(payload)
        size += len(payload)
        if size > MAX_BLOCK:
            raise _ConnError(ENHANCE_YOUR_CALM, f"a header block over {MAX_BLOCK} bytes")
        if not flags & F_END_HEADERS:
            self._block = (bsid, bflags, parts, size)
            return
        self._block = None
        self._on_block(sid, bflags, b"".join(parts), events)

    def _decode_block(self, block: bytes, sid: int) -> Headers | None:
        """The header list, or None if it is too large (a stream error for ``sid``)."""
        try:
            return self.decoder.decode(block)
        except HpackError as e:
            raise _ConnError(COMPRESSION_ERROR, str(e)) from None
        except HeaderListTooLarge:
            return None

    def _on_block(self, sid: int, flags: int, block: bytes, events: list[Event]) -> None:
        headers = self._decode_block(block, sid)
        s = self.streams.get(sid)
        end = flags & F_END_STREAM
        if s is None:
            if self.client_side or (sid & 1) == 0 or sid <= self.highest_inbound_stream_id:
                if self._idle(sid):
                    raise _ConnError(PROTOCOL_ERROR, f"HEADERS on idle stream {sid}")
                if sid not in self._resets:
                    raise _StreamError(sid, STREAM_CLOSED)
                return  # in flight when we reset it
            self.highest_inbound_stream_id = sid
            if headers is None:
                raise _StreamError(sid, PROTOCOL_ERROR)
            s = self.streams[sid] = _Stream(
                self.remote_settings.initial_window_size, self._stream_initial()
            )
            s.head = True
            events.append(RequestReceived(sid, headers))
            self._content_length(sid, s, headers)
        elif headers is None:
            raise _StreamError(sid, PROTOCOL_ERROR)
        elif s.remote_closed:
            raise _StreamError(sid, STREAM_CLOSED)
        elif not s.head:  # a response (the client side)
            if headers and headers[0][0] == b":status" and headers[0][1][:1] == b"1":
                if end:
                    raise _StreamError(sid, PROTOCOL_ERROR)
                return  # informational (1xx): the final response follows
            s.head = True
            events.append(ResponseReceived(sid, headers))
            if not s.head_request:
                status = headers[0][1] if headers and headers[0][0] == b":status" else b""
                if status != b"204" and status != b"304":
                    self._content_length(sid, s, headers)
        else:
            if not end:
                raise _StreamError(sid, PROTOCOL_ERROR)  # trailers end the stream
            events.append(TrailersReceived(sid, headers))
        if end:
            if s.expect > 0:
                raise _StreamError(sid, PROTOCOL_ERROR)
            s.remote_closed = True
            events.append(StreamEnded(sid))
            if s.local_closed:
                self._drop(sid, s)

    @staticmethod
    def _content_length(sid: int, s: _Stream, headers: Headers) -> None:
        """RFC 9113 section 8.1.1: a content-length must match the DATA that follows."""
        for k, v in headers:
            if k == b"content-length":
                if not v.isdigit() or (s.expect >= 0 and s.expect != int(v)):
                    raise _StreamError(sid, PROTOCOL_ERROR)
                s.expect = int(v)

    def _data(self, flags: int, sid: int, payload: bytes, n: int, events: list[Event]) -> None:
        if sid == 0:
            raise _ConnError(PROTOCOL_ERROR, "DATA on stream 0")
        data = payload
        if flags & F_PADDED:
            if not n or payload[0] >= n:
                raise _ConnError(PROTOCOL_ERROR, "padding longer than the frame")
            data = payload[1 : n - payload[0]]
        self._recv_window -= n
        if self._recv_window < 0:
            raise _ConnError(FLOW_CONTROL_ERROR, "DATA beyond the connection window")
        s = self.streams.get(sid)
        if s is None:
            if self._idle(sid):
                raise _ConnError(PROTOCOL_ERROR, f"DATA on idle stream {sid}")
            self._ack_connection(n)
            if sid not in self._resets:
                raise _StreamError(sid, STREAM_CLOSED)
            return
        if s.remote_closed or not s.head:
            self._ack_connection(n)
            raise _StreamError(sid, STREAM_CLOSED if s.remote_closed else PROTOCOL_ERROR)
        s.recv_window -= n
        s.pending += n
        if s.recv_window < 0:
            raise _StreamError(sid, FLOW_CONTROL_ERROR)
        if s.expect >= 0:
            s.expect -= len(data)
            if s.expect < 0 or (flags & F_END_STREAM and s.expect):
                raise _StreamError(sid, PROTOCOL_ERROR)
        if n:
            events.append(DataReceived(sid, data, n))
        if flags & F_END_STREAM:
            s.remote_closed = True
            events.append(StreamEnded(sid))
            if s.local_closed:
                self._drop(sid, s)

    def _window_update(self, sid: int, payload: bytes, events: list[Event]) -> None:
        if len(payload) != 4:
            raise _ConnError(FRAME_SIZE_ERROR, "WINDOW_UPDATE of a wrong size")
        inc = _U32.unpack(payload)[0] & 0x7FFFFFFF
        if sid == 0:
            if inc == 0:
                raise _ConnError(PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            self.outbound_flow_control_window += inc
            if self.outbound_flow_control_window > MAX_WINDOW:
                raise _ConnError(FLOW_CONTROL_ERROR, "connection window over 2^31-1")
        else:
            s = self.streams.get(sid)
            if s is None:
                if self._idle(sid):
                    raise _ConnError(PROTOCOL_ERROR, f"WINDOW_UPDATE on idle stream {sid}")
                return
            if inc == 0:
                raise _StreamError(sid, PROTOCOL_ERROR)
            s.send_window += inc
            if s.send_window > MAX_WINDOW:
                raise _StreamError(sid, FLOW_CONTROL_ERROR)
        events.append(WindowUpdated(sid, inc))

    def _settings(self, flags: int, sid: int, payload: bytes, events: list[Event]) -> None:
        if sid:
            raise _ConnError(PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & F_ACK:
            if payload:
                raise _ConnError(FRAME_SIZE_ERROR, "SETTINGS ACK with a payload")
            self._settings_acked = True
            return
        if len(payload) % 6:
            raise _ConnError(FRAME_SIZE_ERROR, "SETTINGS of a wrong size")
        remote = self.remote_settings
        for i in range(0, len(payload), 6):
            key, value = _SETTING.unpack_from(payload, i)
            if key == S_INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise _ConnError(FLOW_CONTROL_ERROR, "INITIAL_WINDOW_SIZE over 2^31-1")
                delta = value - remote.initial_window_size
                remote.initial_window_size = value
                if delta:
                    for s in self.streams.values():
                        s.send_window += delta
                        if s.send_window > MAX_WINDOW:
                            raise _ConnError(FLOW_CONTROL_ERROR, "a stream window over 2^31-1")
            elif key == S_MAX_FRAME_SIZE:
                if not DEFAULT_FRAME <= value <= MAX_FRAME:
                    raise _ConnError(PROTOCOL_ERROR, f"MAX_FRAME_SIZE {value}")
                remote.max_frame_size = self.max_outbound_frame_size = value
            elif key == S_MAX_CONCURRENT_STREAMS:
                remote.max_concurrent_streams = value
            elif key == S_HEADER_TABLE_SIZE:
                remote.header_table_size = value
                self.encoder.set_max_size(value)
            elif key == S_ENABLE_PUSH:
                if value > 1:
                    raise _ConnError(PROTOCOL_ERROR, f"ENABLE_PUSH {value}")
                remote.enable_push = value
            elif key == S_MAX_HEADER_LIST_SIZE:
                remote.max_header_list_size = value
        self._out.append(frame(SETTINGS, F_ACK, 0))
        events.append(RemoteSettingsChanged())

    def _rst(self, sid: int, payload: bytes, events: list[Event]) -> None:
        if len(payload) != 4:
            raise _ConnError(FRAME_SIZE_ERROR, "RST_STREAM of a wrong size")
        if sid == 0:
            raise _ConnError(PROTOCOL_ERROR, "RST_STREAM on stream 0")
        s = self.streams.get(sid)
        if s is None:
            if self._idle(sid):
                raise _ConnError(PROTOCOL_ERROR, f"RST_STREAM on idle stream {sid}")
            return
        self._drop(sid, s)
        events.append(StreamReset(sid, _U32.unpack(payload)[0]))

    def _ping(self, flags: int, sid: int, payload: bytes) -> None:
        if len(payload) != 8:
            raise _ConnError(FRAME_SIZE_ERROR, "PING of a wrong size")
        if sid:
            raise _ConnError(PROTOCOL_ERROR, "PING on a stream")
        if not flags & F_ACK:
            self._out.append(frame(PING, F_ACK, 0, payload))

    def _goaway(self, sid: int, payload: bytes, events: list[Event]) -> None:
        if sid:
            raise _ConnError(PROTOCOL_ERROR, "GOAWAY on a stream")
        if len(payload) < 8:
            raise _ConnError(FRAME_SIZE_ERROR, "GOAWAY too short")
        last, code = _GOAWAY.unpack_from(payload)
        events.append(ConnectionTerminated(code, last & 0x7FFFFFFF, payload[8:] or None))

    def _priority(self, sid: int, payload: bytes) -> None:
        if sid == 0:
            raise _ConnError(PROTOCOL_ERROR, "PRIORITY on stream 0")
        if len(payload) != 5:
            raise _StreamError(sid, FRAME_SIZE_ERROR)
        if _U32.unpack_from(payload)[0] & 0x7FFFFFFF == sid:
            raise _StreamError(sid, PROTOCOL_ERROR)


def new_connection(client_side: bool, settings: H2Settings) -> Connection:
    """A configured connection; its preface and SETTINGS are queued to be sent."""
    return Connection(client_side, settings)


def send_goaway(conn: Connection, last_stream_id: int, code: int = NO_ERROR) -> None:
    """Queue a GOAWAY; the streams up to ``last_stream_id`` may go on."""
    conn.close_connection(code, last_stream_id)


class Request:
    """A request's head on HTTP/2: pseudo-headers apart, regular headers in order.

    It presents what identifiers read (``method``, ``target`` = ``:path``, ``version``
    and ``get``, which also answers the pseudo-headers).  ``headers`` is mutable: the
    router edits it in place.
    """

    __slots__ = (
        "method",
        "target",
        "version",
        "authority",
        "scheme",
        "headers",
        "has_l5d",
        "grpc",
        "te",
        "has_trace",
    )

    def __init__(
        self,
        method: bytes,
        target: bytes,
        authority: bytes | None,
        scheme: bytes,
        headers: Headers,
        has_l5d: bool = False,
        grpc: bool = False,
        te: bytes | None = None,
        has_trace: bool = False,
    ) -> None:
        self.method = method
        self.target = target
        self.version = b"2"
        self.authority = authority
        self.scheme = scheme
        self.headers = headers
        self.has_l5d = has_l5d
        self.grpc = grpc
        self.te = te
        #: a trace context header (l5d-ctx-trace, l5d-sample, x-b3-*) is present
        self.has_trace = has_trace

    def get(self, name: bytes) -> bytes | None:
        """The last value of a header (``:authority``, ``:path``, ... included)."""
        if name[:1] == b":":
            if name == b":authority":
                return self.authority
            if name == b":path":
                return self.target
            if name == b":method":
                return self.method
            if name == b":scheme":
                return self.scheme
            return None
        found = None
        for k, v in self.headers:
            if k == name:
                found = v
        if found is None and name == b"host":
            return self.authority
        return found

    def get_all(self, name: bytes) -> list[bytes]:
        return [v for k, v in self.headers if k == name]

    def pseudo(self) -> Headers:
        out = [(b":method", self.method), (b":scheme", self.scheme)]
        if self.authority is not None:
            out.append((b":authority", self.authority))
        out.append((b":path", self.target))
        return out

    def __repr__(self) -> str:
        return f"<Request {self.method.decode()} {self.target!r}>"


#: Header names known to be lowercase (the static table's, and those seen since).
_LOWER: set[bytes] = {n for n, _ in STATIC}


def _is_lower(name: bytes) -> bool:
    """Whether a name not in ``_LOWER`` is lowercase (then remembered there).  The
    callers test ``_LOWER`` first, which answers for nearly every name."""
    if name != name.lower():
        return False
    if len(_LOWER) < 4096:
        _LOWER.add(name)
    return True


def parse_request(headers: Headers) -> Request | str:
    """The request head of a HEADERS block, or why it is malformed (RFC 9113 8.3.1)."""
    method = path = authority = scheme = None
    te = None
    regular: Headers = []
    has_l5d = grpc = has_trace = False
    seen_regular = False
    for k, v in headers:
        if k[:1] == b":":
            if seen_regular:
                return "pseudo-header after a regular header"
            if k == b":method":
                if method is not None:
                    return "duplicate :method"
                method = v
            elif k == b":path":
                if path is not None:
                    return "duplicate :path"
                path = v
            elif k == b":authority":
                if authority is not None:
                    return "duplicate :authority"
                authority = v
            elif k == b":scheme":
                if scheme is not None:
                    return "duplicate :scheme"
                scheme = v
            else:
                return f"unknown pseudo-header {k!r}"
            continue
        seen_regular = True
        if k not in _LOWER and not _is_lower(k):
            return f"uppercase header name {k!r}"
        if k in CONNECTION_HEADERS:
            return f"connection-specific header {k.decode('latin-1')}"
        if k == b"te":
            if v != b"trailers":
                return "te other than trailers"
            te = v
        elif k[:4] == b"l5d-" or k == b"dtab-local":
            has_l5d = True
            if k == b"l5d-ctx-trace" or k == b"l5d-sample":
                has_trace = True
        elif k[:5] == b"x-b3-":
            has_trace = True
        elif k == b"content-type" and v[:16] == b"application/grpc":
            grpc = True
        elif k == b"host" and authority is None:
            authority = v
        regular.append((k, v))
    if method is None:
        return "missing :method"
    if method == b"CONNECT":
        return Request(
            method, path or b"", authority, scheme or b"", regular, has_l5d, grpc, te, has_trace
        )
    if not path or scheme is None:
        return "missing :path or :scheme"
    return Request(method, path, authority, scheme, regular, has_l5d, grpc, te, has_trace)


def check_response(headers: Headers) -> tuple[int, Headers] | str:
    """(status, regular headers) of a response HEADERS block, or why it is malformed."""
    status = None
    regular: Headers = []
    for k, v in headers:
        if k[:1] == b":":
            if k != b":status" or status is not None or regular:
                return f"bad pseudo-header {k!r} in a response"
            try:
                status = int(v)
            except ValueError:
                return f"bad :status {v!r}"
            continue
        if k not in _LOWER and not _is_lower(k):
            return f"uppercase header name {k!r}"
        if k in CONNECTION_HEADERS:
            continue  # not forwarded
        regular.append((k, v))
    if status is None or not 100 <= status <= 999:
        return "missing :status"
    return status, regular


def check_trailers(headers: Headers) -> Headers | str:
    """Trailers without pseudo-headers, or why they are malformed."""
    for k, _ in headers:
        if k[:1] == b":":
            return "pseudo-header in trailers"
        if k not in _LOWER and not _is_lower(k):
            return f"uppercase header name {k!r}"
    return headers
