"""HTTP/2 framing for the h2 router: the h2 library's connection, configured, and heads checked.

No I/O: :func:`new_connection` builds an ``h2.connection.H2Connection`` (bytes in,
events out) with the router's settings, and the functions below check the header
blocks it hands out.  The library's own header validation is switched off: it treats
a malformed header block as a *connection* error, which would let one bad stream kill
every other stream of its connection.  RFC 9113 section 8.1.1 makes a malformed
message a *stream* error, so linkpy checks heads itself (:func:`parse_request`,
:func:`check_response`, :func:`check_trailers`) and the transport resets only the
offending stream with ``PROTOCOL_ERROR``.

The library also moves its whole connection state machine to CLOSED when a GOAWAY is
sent or received, after which no stream may send a frame; a graceful GOAWAY (RFC 9113
section 6.8) lets the streams below its ``last_stream_id`` finish.
:func:`send_goaway` and :class:`Connection` keep the connection usable for those
streams.
"""

from __future__ import annotations

from typing import Any, Final

import attrs
import hpack.hpack
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import ConnectionTerminated, Event
from h2.settings import SettingCodes, Settings
from hyperframe.frame import Frame, GoAwayFrame

Headers = list[tuple[bytes, bytes]]


class _Quiet:
    """A logger that drops everything.

    hpack logs every header it encodes or decodes at DEBUG, some 60 logging calls
    per proxied request (each one a level check) on the hot path; linkpy never
    wants those records, so hpack's module logger is replaced by this on import.
    """

    def debug(self, *args: object, **kwargs: object) -> None:
        pass


hpack.hpack.log = _Quiet()  # type: ignore[assignment]

#: RFC 9113 section 7 error codes, as ints (what RST_STREAM and GOAWAY carry).
NO_ERROR: Final = int(ErrorCodes.NO_ERROR)
PROTOCOL_ERROR: Final = int(ErrorCodes.PROTOCOL_ERROR)
INTERNAL_ERROR: Final = int(ErrorCodes.INTERNAL_ERROR)
FLOW_CONTROL_ERROR: Final = int(ErrorCodes.FLOW_CONTROL_ERROR)
REFUSED_STREAM: Final = int(ErrorCodes.REFUSED_STREAM)
CANCEL: Final = int(ErrorCodes.CANCEL)
ENHANCE_YOUR_CALM: Final = int(ErrorCodes.ENHANCE_YOUR_CALM)

#: The window every HTTP/2 connection starts with (RFC 9113 section 6.9.2).
DEFAULT_WINDOW: Final = 65535
MAX_WINDOW: Final = 2**31 - 1
#: The connection preface a prior-knowledge client sends first.
PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

#: Headers that describe one connection; forbidden in HTTP/2 (RFC 9113 section 8.2.2).
CONNECTION_HEADERS: Final = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)
_REQUEST_PSEUDO: Final = frozenset({b":method", b":scheme", b":authority", b":path"})


def error_name(code: int) -> str:
    try:
        return ErrorCodes(code).name
    except ValueError:
        return f"0x{code:x}"


@attrs.frozen(kw_only=True)
class H2Settings:
    """One side's HTTP/2 settings (Linkerd's server and client keys, reference 12.2).

    ``None`` leaves the protocol's default: 65,535-byte windows, 16 KiB frames, no
    header-list limit, no stream limit, a 4 KiB HPACK table.
    """

    initial_stream_window: int | None = None
    initial_connection_window: int | None = None
    max_frame: int | None = None
    max_header_list: int | None = None
    max_concurrent_streams: int | None = None
    header_table: int | None = None


class _Encoder(hpack.hpack.Encoder):
    """HPACK without Huffman coding of the literals it sends.

    Headers that repeat are sent as indexes into the dynamic table either way; what is
    new on every request (``l5d-reqid``, the trace context, a path) is a literal, and
    hpack's Huffman coder, pure Python bit by bit, was the largest single cost of an
    h2 request in the profile.  Plain literals are valid HPACK (RFC 7541 5.2), a little
    longer on the wire; what we receive is decoded whichever way it was sent.
    """

    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        return super().encode(headers, huffman=False)


class Connection(H2Connection):
    """h2's connection without its per-stream O(open streams) bookkeeping.

    The library counts open streams by walking every stream it holds each time a
    stream opens (to enforce SETTINGS_MAX_CONCURRENT_STREAMS), which makes opening a
    stream cost O(n) with n streams open: 1,000 concurrent streams made that the
    largest cost of a request.  linkpy enforces both limits itself (the server side
    refuses streams over its limit, the client side waits for a free slot), so the
    counts asked here only prune the streams the library has closed, once per
    ``max(256, n)`` new streams (amortised O(1)), and report none open.  (The library
    keeps closed streams until such a count: without it they would pile up.)
    """

    #: streams opened since the last pruning, and streams left by it
    _opened = 0
    _kept = 0

    def _amortised(self) -> int:
        self._opened += 1
        if self._opened >= 256 and self._opened >= self._kept:
            self._opened = 0
            self._open_streams(0)  # (deletes closed streams of both parities)
            self._kept = len(self.streams)
        return 0

    def _receive_goaway_frame(self, frame: GoAwayFrame) -> tuple[list[Frame], list[Event]]:
        """A graceful GOAWAY (NO_ERROR) leaves the connection open for the streams it
        kept: the library would close its state machine and drop the frames queued
        for them (which must still go out)."""
        if frame.error_code:
            return super()._receive_goaway_frame(frame)
        event = ConnectionTerminated()
        event.error_code = ErrorCodes.NO_ERROR
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]

    @property
    def open_outbound_streams(self) -> int:
        return self._amortised()

    @property
    def open_inbound_streams(self) -> int:
        return self._amortised()


def new_connection(client_side: bool, settings: H2Settings) -> Connection:
    """A configured connection; its preface and SETTINGS are queued to be sent."""
    config = H2Configuration(
        client_side=client_side,
        header_encoding=None,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
        validate_inbound_headers=False,
        normalize_inbound_headers=False,
    )
    conn = Connection(config=config)
    conn.encoder = _Encoder()
    values: dict[SettingCodes, int] = {}
    if client_side:
        values[SettingCodes.ENABLE_PUSH] = 0
    if settings.initial_stream_window is not None:
        values[SettingCodes.INITIAL_WINDOW_SIZE] = min(settings.initial_stream_window, MAX_WINDOW)
    if settings.max_frame is not None:
        values[SettingCodes.MAX_FRAME_SIZE] = min(max(settings.max_frame, 16384), 2**24 - 1)
    if settings.max_header_list is not None:
        values[SettingCodes.MAX_HEADER_LIST_SIZE] = settings.max_header_list
    if settings.max_concurrent_streams is not None:
        values[SettingCodes.MAX_CONCURRENT_STREAMS] = settings.max_concurrent_streams
    if settings.header_table is not None:
        values[SettingCodes.HEADER_TABLE_SIZE] = settings.header_table
    local = Settings(client=client_side, initial_values=values)
    conn.local_settings = local
    conn.max_inbound_frame_size = local.max_frame_size
    if settings.max_header_list is not None:
        conn.decoder.max_header_list_size = settings.max_header_list
    else:
        conn.decoder.max_header_list_size = 2**31  # the library's 64 KiB default is hidden
    if settings.header_table is not None:
        conn.decoder.max_allowed_table_size = settings.header_table
    conn.initiate_connection()
    window = settings.initial_connection_window
    if window is not None and window > DEFAULT_WINDOW:
        conn.increment_flow_control_window(min(window, MAX_WINDOW) - DEFAULT_WINDOW)
    return conn


def send_goaway(conn: H2Connection, last_stream_id: int, code: int = NO_ERROR) -> None:
    """Queue a GOAWAY; the streams up to ``last_stream_id`` may go on."""
    state = conn.state_machine.state
    conn.close_connection(error_code=code, last_stream_id=last_stream_id)
    if code == NO_ERROR:
        conn.state_machine.state = state


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


def _is_lower(name: bytes) -> bool:
    return name == name.lower()


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
        if not _is_lower(k):
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
        if not _is_lower(k):
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
        if not _is_lower(k):
            return f"uppercase header name {k!r}"
    return headers
