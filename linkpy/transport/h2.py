"""HTTP/2 connections on trio: the codec of :mod:`linkpy.proto.h2` on a byte stream.

One :class:`H2Conn` runs two tasks: a reader that feeds received bytes to the codec
and hands each event to its :class:`H2Stream`, and a writer that sends whatever the
codec queued (so the frames of many streams go out in one write).  Each stream keeps
the items received for it (response or trailing headers, data, end, reset) until its
user takes them; data is acknowledged to the peer (WINDOW_UPDATE) only when taken, so
a slow consumer holds the sender back through HTTP/2 flow control and nothing is
buffered beyond the windows.  Sending waits for the stream's and the connection's
send windows and for the socket to drain.

:class:`ServerConn` serves a downstream connection: each request stream runs its
handler in a task of the connection's nursery (a new one, or one that has finished its
last stream and waits for the next), in that task's cancel scope; a downstream reset
or a lost connection cancels it, and the task ends with the stream.
:class:`ClientConn` is one multiplexed upstream connection, opened on first use,
carrying many streams within the peer's SETTINGS_MAX_CONCURRENT_STREAMS.

A stream's state is dropped when its handler ends (:meth:`H2Stream.close`): a stream
still open on either side is reset then, so no stream outlives its request.

On a plain :class:`trio.SocketStream` the reader and the writer use the socket fast
path of :mod:`linkpy.transport.http1` (call ``recv``/``send`` first, wait for readiness
only when the call would block, and wait anyway every ``EAGER_READS`` reads), and the
tasks wake each other with :class:`Signal` rather than a new :class:`trio.Event` per
wake-up.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final

import trio

from ..errors import ConnectFailed, RemoteProtocolError
from ..proto import h2 as ev
from ..proto.h2 import (
    CANCEL,
    INTERNAL_ERROR,
    NO_ERROR,
    PREFACE,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
    H2Settings,
    Headers,
    Request,
    error_name,
    new_connection,
    parse_request,
    send_goaway,
)
from .errors import TRANSPORT_ERRORS, describe
from .http1 import EAGER_READS, abort_stream, os_socket, recv_when_ready, send_when_ready
from .tls import connect_handshake

log = logging.getLogger("linkpy.h2")

RECV_SIZE: Final = 65536
#: Bytes queued for the socket past which senders wait for the writer.
HIGH_WATER: Final = 262144

# What a stream receives (the first element of each item).
HEADERS: Final = 0
DATA: Final = 1
TRAILERS: Final = 2
END: Final = 3
RESET: Final = 4
#: The peer's GOAWAY excluded this stream: it was not processed (safe to send again).
GONE: Final = 5

Item = tuple[int, object, int]


def _removing(waiting: list[Any], entry: object) -> Callable[[object], trio.lowlevel.Abort]:
    """The abort function of a task parked in ``waiting`` as ``entry``: a cancelled
    wait takes the entry out (no one wakes it any more)."""

    def abort(_: object) -> trio.lowlevel.Abort:
        waiting.remove(entry)
        return trio.lowlevel.Abort.SUCCEEDED

    return abort


class Signal:
    """Wakes the tasks waiting for it; a wake with nobody waiting is a no-op.

    For conditions a waiter re-checks after every wake (``while not cond: await
    sig.wait()``): unlike :class:`trio.Event` it needs no new object per round and no
    flag, which matters for the few wake-ups every request makes.
    """

    __slots__ = ("_tasks",)

    def __init__(self) -> None:
        self._tasks: list[trio.lowlevel.Task] = []

    async def wait(self) -> None:
        task = trio.lowlevel.current_task()
        self._tasks.append(task)
        await trio.lowlevel.wait_task_rescheduled(_removing(self._tasks, task))

    def wake(self) -> None:
        tasks = self._tasks
        if tasks:
            self._tasks = []
            for task in tasks:
                trio.lowlevel.reschedule(task)


class StreamReset(RemoteProtocolError):
    """The stream was reset (by the peer, or because its connection went away)."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message or f"stream reset ({error_name(code)})", 502)
        self.code = code


class ConnectionGone(RemoteProtocolError):
    """A connection that can open no new stream (closed, or after GOAWAY)."""


class H2Stream:
    """One stream: what was received for it, and the calls that send on it."""

    __slots__ = (
        "conn",
        "id",
        "items",
        "buffered",
        "_waiter",
        "local_closed",
        "remote_closed",
        "reset_code",
        "scope",
        "request",
        "forgotten",
    )

    def __init__(self, conn: H2Conn, stream_id: int) -> None:
        self.conn = conn
        self.id = stream_id
        self.items: deque[Item] = deque()
        #: data bytes received and not yet taken
        self.buffered = 0
        self._waiter = Signal()
        self.local_closed = False
        self.remote_closed = False
        #: the code this stream was reset with (by either side)
        self.reset_code: int | None = None
        #: the cancel scope of the handler serving it (server side, while it runs; a
        #: downstream reset cancels it)
        self.scope: trio.CancelScope | None = None
        self.request: Request | None = None
        self.forgotten = False

    def __repr__(self) -> str:
        return f"<H2Stream {self.id}>"

    # -- receiving -------------------------------------------------------------

    def _push(self, item: Item) -> None:
        self.items.append(item)
        self._waiter.wake()

    def wait(self) -> Coroutine[Any, Any, None]:
        """Until something more is received.

        (The waiting coroutine itself, not one wrapping it: every coroutine between a
        wait and the scheduler is passed again on each suspension and resumption.)
        """
        return self._waiter.wait()

    async def receive(self) -> Item:
        """The next item (data is acknowledged to the peer as it is taken)."""
        while not self.items:
            await self._waiter.wait()
        return self.take()

    def take(self) -> Item:
        """The next item, which is already here (``items`` is not empty)."""
        item = self.items.popleft()
        if item[0] == DATA:
            n = item[2]
            self.buffered -= len(item[1])  # type: ignore[arg-type]
            if n and self.reset_code is None:
                self.conn.ack(self.id, n)
        return item

    @property
    def closed(self) -> bool:
        """Closed at the protocol level (both ends sent END_STREAM, or a reset)."""
        return self.reset_code is not None or (self.local_closed and self.remote_closed)

    @property
    def finished(self) -> bool:
        """Everything the peer will send is here (end, trailers or reset)."""
        return self.remote_closed or self.reset_code is not None

    # -- sending ---------------------------------------------------------------

    def _check(self) -> None:
        if self.reset_code is not None:
            raise StreamReset(self.reset_code)
        if self.conn.closed:
            raise StreamReset(INTERNAL_ERROR, "connection closed")

    def send_headers(self, headers: Headers, end: bool = False) -> None:
        self._check()
        try:
            self.conn.h2.send_headers(self.id, headers, end_stream=end)
        except ev.H2Error as e:
            raise StreamReset(INTERNAL_ERROR, f"cannot send headers: {e}") from None
        if end:
            self.local_closed = True
        self.conn.kick()

    def try_send_data(self, data: bytes, end: bool = False) -> bool:
        """Send ``data`` now if that needs no wait (the windows and a frame hold it, the
        socket is not backed up); False, sending nothing, if it would."""
        conn = self.conn
        h2c = conn.h2
        n = len(data)
        if (
            self.reset_code is not None
            or conn.closed
            or n > h2c.max_outbound_frame_size
            or conn.unflushed + n > HIGH_WATER
        ):
            return False
        try:
            if n > h2c.local_flow_control_window(self.id):
                return False
            h2c.send_data(self.id, data, end_stream=end)
        except ev.H2Error:
            return False
        conn.unflushed += n
        if end:
            self.local_closed = True
        conn.kick()
        return True

    async def send_data(self, data: bytes, end: bool = False) -> None:
        """Send ``data`` within the flow-control windows (``end``: then end the stream)."""
        conn = self.conn
        h2c = conn.h2
        sid = self.id
        while True:
            self._check()
            n = len(data)
            try:
                if n == 0:
                    if end:
                        h2c.end_stream(sid)
                        self.local_closed = True
                        conn.kick()
                    return
                window = h2c.local_flow_control_window(sid)
                if window <= 0:
                    await conn.window_opened()
                    continue
                size = min(n, window, h2c.max_outbound_frame_size)
                last = size == n
                h2c.send_data(sid, data if last else data[:size], end_stream=end and last)
            except ev.H2Error as e:
                raise StreamReset(INTERNAL_ERROR, f"cannot send data: {e}") from None
            conn.unflushed += size
            conn.kick()
            if end and last:
                self.local_closed = True
            if conn.unflushed > HIGH_WATER:
                await conn.drained()
            if last:
                return
            data = data[size:]

    def send_trailers(self, headers: Headers) -> None:
        self.send_headers(headers, end=True)

    def reset(self, code: int) -> None:
        """Reset the stream (nothing if it is already closed or reset)."""
        if self.reset_code is not None or (self.local_closed and self.remote_closed):
            return
        self.reset_code = code
        conn = self.conn
        if not conn.closed:
            try:
                conn.h2.reset_stream(self.id, code)
            except ev.H2Error:
                pass  # the codec had closed it already
            conn.kick()
        conn.wake_senders()

    def close(self) -> None:
        """The user is done: reset the stream if either side is still open; forget it."""
        if self.forgotten:
            return
        if not (self.local_closed and self.remote_closed):
            # RFC 9113 section 8.1: a complete response to an incomplete request ends
            # with RST_STREAM NO_ERROR; anything else open is cancelled.
            self.reset(NO_ERROR if self.local_closed and self.conn.server_side else CANCEL)
        self.conn.forget(self)


class H2Conn:
    """What the server and client sides share: the codec, the reader and the writer."""

    server_side: bool = False

    def __init__(self, stream: trio.abc.Stream, settings: H2Settings) -> None:
        self.stream = stream
        self.settings = settings
        self.h2 = new_connection(not self.server_side, settings)
        self.streams: dict[int, H2Stream] = {}
        self.closed = False
        #: a GOAWAY was sent or received: no new streams
        self.goaway = False
        self.unflushed = 0
        self._dirty = Signal()
        self._window = Signal()
        self._drained = Signal()
        self._writer_done = trio.Event()
        self._reader_scope = trio.CancelScope()
        self._closing = False
        #: reads in a row that did not wait (see :data:`EAGER_READS`)
        self._eager = 0
        self._handlers: dict[type, Callable[[ev.Event], None]] = {
            ev.DataReceived: self._on_data,  # type: ignore[dict-item]
            ev.StreamEnded: self._on_end,  # type: ignore[dict-item]
            ev.StreamReset: self._on_reset,  # type: ignore[dict-item]
            ev.WindowUpdated: self._on_window,
            ev.RemoteSettingsChanged: self._on_settings,  # type: ignore[dict-item]
            ev.ConnectionTerminated: self._on_goaway,  # type: ignore[dict-item]
            ev.TrailersReceived: self._on_trailers,  # type: ignore[dict-item]
        }

    # -- plumbing ----------------------------------------------------------------

    def kick(self) -> None:
        """Something was queued for the socket."""
        self._dirty.wake()

    def ack(self, stream_id: int, n: int) -> None:
        """``n`` bytes of a stream were consumed: reopen the windows (in batches)."""
        if self.closed:
            return
        try:
            self.h2.acknowledge_received_data(n, stream_id)
        except ev.H2Error:
            return
        self._dirty.wake()

    def window_opened(self) -> Coroutine[Any, Any, None]:
        return self._window.wait()

    def wake_senders(self) -> None:
        self._window.wake()

    async def drained(self) -> None:
        while self.unflushed > HIGH_WATER and not self.closed:
            await self._drained.wait()

    def forget(self, stream: H2Stream) -> None:
        stream.forgotten = True
        if self.streams.get(stream.id) is stream:
            del self.streams[stream.id]
        self._stream_gone()

    def _stream_gone(self) -> None:
        if self._closing and not self.streams:
            self._reader_scope.cancel()

    @property
    def open_streams(self) -> int:
        return len(self.streams)

    def at_limit(self, limit: int) -> bool:
        """``limit`` streams are open at the protocol level (a stream that closed
        counts until its user lets it go, unless the limit is reached)."""
        if len(self.streams) < limit:
            return False
        return sum(1 for s in self.streams.values() if not s.closed) >= limit

    async def _writer(self) -> None:
        h2c = self.h2
        sock = os_socket(self.stream)
        try:
            while True:
                data = h2c.data_to_send()
                if data:
                    self.unflushed = 0
                    if sock is None:
                        await self.stream.send_all(data)
                    else:
                        await self._send(sock, data)
                    self._drained.wake()
                    continue
                if self.closed:
                    return
                await self._dirty.wait()
        except TRANSPORT_ERRORS as e:
            log.debug("h2 write failed: %s", describe(e))
            self._reader_scope.cancel()
        finally:
            self._writer_done.set()

    @staticmethod
    async def _send(sock: socket.socket, data: bytes) -> None:
        """The socket fast path (see :mod:`linkpy.transport.http1`): send now, and
        wait for room only if the socket is full (the writer waits for work between
        writes, which is its checkpoint)."""
        try:
            sent = sock.send(data)
        except BlockingIOError:
            sent = 0
        if sent < len(data):
            await send_when_ready(sock, data, sent)

    async def _receive(self, sock: socket.socket | None) -> bytes | bytearray:
        """The next bytes read (b"" at end of stream).

        On the fast path a read that need not wait does not pass a checkpoint, except
        every :data:`EAGER_READS` reads in a row: the reader then lets the handlers
        of the streams it fed run, and a cancellation land.
        """
        if sock is None:
            return await self.stream.receive_some(RECV_SIZE)
        if self._eager < EAGER_READS:
            try:
                data = sock.recv(RECV_SIZE)
            except BlockingIOError:
                pass
            else:
                self._eager += 1
                return data
        self._eager = 0
        return await recv_when_ready(sock)

    async def _read_loop(self) -> None:
        """Feed the codec until the peer closes, a connection error, or close()."""
        handlers = self._handlers
        h2c = self.h2
        sock = os_socket(self.stream)
        with self._reader_scope:
            while True:
                try:
                    data = await self._receive(sock)
                except TRANSPORT_ERRORS as e:
                    log.debug("h2 read failed: %s", describe(e))
                    return
                if not data:
                    return
                try:
                    events = h2c.receive_data(data)
                except ev.H2Error as e:
                    # the codec queued a GOAWAY with the right code
                    log.info("h2 connection error from peer: %s", e)
                    self.goaway = True
                    self.kick()
                    return
                for event in events:
                    handler = handlers.get(type(event))
                    if handler is not None:
                        handler(event)
                    else:
                        self._other(event)
                self._dirty.wake()

    def _other(self, event: ev.Event) -> None:
        """Events the subclass handles (request or response heads)."""

    def _finish(self, code: int) -> None:
        """The connection is done: every stream left is reset."""
        self.closed = True
        for s in list(self.streams.values()):
            if s.reset_code is None and not (s.local_closed and s.remote_closed):
                s.reset_code = code
                s._push((RESET, code, 0))
        self.wake_senders()
        self._drained.wake()
        self._dirty.wake()

    async def _flush_and_close(self) -> None:
        self._dirty.wake()
        with trio.move_on_after(1.0):
            await self._writer_done.wait()
        await trio.aclose_forcefully(self.stream)

    # -- events --------------------------------------------------------------------

    def _on_data(self, e: ev.DataReceived) -> None:
        s = self.streams.get(e.stream_id)
        data = e.data or b""
        n = e.flow_controlled_length or 0
        if s is None or s.reset_code is not None:
            if n:  # nobody will take it: keep the connection window open
                try:
                    self.h2.acknowledge_received_data(n, e.stream_id)
                except ev.H2Error:
                    pass
            return
        s.buffered += len(data)
        s._push((DATA, data, n))

    def _on_end(self, e: ev.StreamEnded) -> None:
        s = self.streams.get(e.stream_id)
        if s is not None:
            s.remote_closed = True
            s._push((END, None, 0))

    def _on_trailers(self, e: ev.TrailersReceived) -> None:
        s = self.streams.get(e.stream_id)
        if s is not None:
            s._push((TRAILERS, e.headers, 0))

    def _on_reset(self, e: ev.StreamReset) -> None:
        s = self.streams.get(e.stream_id)
        if s is not None and s.reset_code is None:
            code = int(e.error_code) if e.error_code is not None else CANCEL
            s.reset_code = code
            s._push((RESET, code, 0))
            self.wake_senders()
            self._stream_reset(s)

    def _stream_reset(self, s: H2Stream) -> None:
        """The peer reset ``s`` (the server side cancels its handler)."""

    def _on_window(self, e: ev.Event) -> None:
        self.wake_senders()

    def _on_settings(self, e: ev.RemoteSettingsChanged) -> None:
        self.wake_senders()

    def _on_goaway(self, e: ev.ConnectionTerminated) -> None:
        self.goaway = True
        code = int(e.error_code) if e.error_code is not None else NO_ERROR
        last = e.last_stream_id if e.last_stream_id is not None else 0
        if code == NO_ERROR:
            if not self.server_side:
                # streams the peer will not process: safe to send elsewhere
                for sid, s in list(self.streams.items()):
                    if sid > last and s.reset_code is None:
                        s.reset_code = REFUSED_STREAM
                        s._push((GONE, REFUSED_STREAM, 0))
            self.wake_senders()
            self._closing = True
            self._stream_gone()
        else:
            log.info("h2 peer closed the connection: %s", error_name(code))
            self._reader_scope.cancel()


Handler = Callable[[H2Stream], Awaitable[None]]


#: Idle stream workers a downstream connection keeps for its next streams.
IDLE_WORKERS: Final = 16


class ServerConn(H2Conn):
    """A downstream HTTP/2 connection: a task per request stream.

    A task that has finished its stream waits for the next one (up to
    :data:`IDLE_WORKERS` of them per connection), so that a new stream costs a wake-up
    rather than a task spawn.
    """

    server_side = True

    def __init__(
        self,
        stream: trio.abc.Stream,
        settings: H2Settings,
        handler: Handler,
        *,
        on_count: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__(stream, settings)
        self.handler = handler
        self.max_streams = settings.max_concurrent_streams
        self.on_count = on_count
        self._nursery: trio.Nursery | None = None
        self._last_accepted = 0
        self._goaway_sent = False
        #: (task, stream slot) of the workers waiting for a stream
        self._idle: list[list[object]] = []
        self._serving = True

    async def serve(self, initial: bytes = b"") -> None:
        """Serve until the peer closes, a connection error, or a drain completes."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._writer)
            try:
                if initial:
                    self._feed(initial)
                if not self.closed:
                    await self._read_loop()
            finally:
                self._finish(CANCEL)
                self._release_workers()
                for s in list(self.streams.values()):
                    if s.scope is not None:
                        s.scope.cancel()
        await self._flush_and_close()

    def _feed(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except ev.H2Error as e:
            log.info("h2 connection error from peer: %s", e)
            self.closed = True
            return
        for event in events:
            handler = self._handlers.get(type(event))
            if handler is not None:
                handler(event)
            else:
                self._other(event)

    def drain(self) -> None:
        """Graceful shutdown: GOAWAY, let the streams in flight finish, then close."""
        if self._goaway_sent or self.closed:
            return
        self._goaway_sent = True
        self.goaway = True
        send_goaway(self.h2, self.h2.highest_inbound_stream_id)
        self.kick()
        self._closing = True
        self._stream_gone()

    def _other(self, event: ev.Event) -> None:
        if type(event) is ev.RequestReceived:
            self._on_request(event)

    def _on_request(self, e: ev.RequestReceived) -> None:
        sid = e.stream_id
        if self._goaway_sent or (self.max_streams is not None and self.at_limit(self.max_streams)):
            self._refuse(sid, REFUSED_STREAM)
            return
        req = parse_request(e.headers)
        if isinstance(req, str):
            log.info("h2 stream %d: malformed request: %s", sid, req)
            self._refuse(sid, PROTOCOL_ERROR)
            return
        s = H2Stream(self, sid)
        s.request = req
        self.streams[sid] = s
        if self.on_count is not None:
            self.on_count(1)
        idle = self._idle
        if idle:
            worker = idle.pop()
            worker[1] = s
            trio.lowlevel.reschedule(worker[0])  # type: ignore[arg-type]
        else:
            assert self._nursery is not None
            self._nursery.start_soon(self._worker, s)

    def _refuse(self, sid: int, code: int) -> None:
        try:
            self.h2.reset_stream(sid, code)
        except ev.H2Error:
            pass

    async def _worker(self, s: H2Stream | None) -> None:
        """Serve streams until the connection ends (or enough workers are idle).

        The handler runs right in this loop, in the worker's cancel scope, which is the
        stream's (``H2Stream.scope``) while it serves that stream: a reset of the stream
        cancels the worker, which ends with it, and the next stream gets a new one.  A
        scope per stream would cost a CancelScope on every request; resets are rare.
        There is no helper coroutine in between either: every coroutine between a
        handler's wait and the scheduler is passed on each suspension and resumption.
        """
        handler = self.handler
        with trio.CancelScope() as scope:
            while s is not None:
                try:
                    if s.reset_code is None:  # (else: reset before its handler started)
                        s.scope = scope
                        await handler(s)
                except Exception:
                    log.exception("h2 stream %d handler failed", s.id)
                    s.reset(INTERNAL_ERROR)
                finally:
                    s.scope = None
                    s.close()
                if scope.cancel_called or not self._serving or len(self._idle) >= IDLE_WORKERS:
                    return
                s = await self._next_stream()

    async def _next_stream(self) -> H2Stream | None:
        """Wait for a stream (None: the connection is done)."""
        slot: list[object] = [trio.lowlevel.current_task(), None]
        self._idle.append(slot)
        await trio.lowlevel.wait_task_rescheduled(_removing(self._idle, slot))
        return slot[1]  # type: ignore[return-value]

    def _release_workers(self) -> None:
        self._serving = False
        idle, self._idle = self._idle, []
        for slot in idle:
            trio.lowlevel.reschedule(slot[0])  # type: ignore[arg-type]

    def forget(self, stream: H2Stream) -> None:
        if not stream.forgotten and self.on_count is not None:
            self.on_count(-1)
        super().forget(stream)

    def _stream_reset(self, s: H2Stream) -> None:
        if s.scope is not None:
            s.scope.cancel()


def _abort(stream: trio.abc.Stream | None) -> None:
    if stream is not None:
        abort_stream(stream)


class ClientConn(H2Conn):
    """One multiplexed upstream connection."""

    server_side = False

    def __init__(
        self,
        stream: trio.abc.Stream,
        settings: H2Settings,
        *,
        on_count: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__(stream, settings)
        self.on_count = on_count
        self._slots = trio.lowlevel.ParkingLot()
        #: the peer's first SETTINGS arrived
        self._settled = False

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        settings: H2Settings,
        timeout: float,
        *,
        on_count: Callable[[int], None] | None = None,
        tls: tuple[ssl.SSLContext, str | None] | None = None,
    ) -> ClientConn:
        """Connect (and, with ``tls`` = (context, server name), shake hands with ALPN h2)."""
        stream: trio.abc.Stream | None = None
        try:
            with trio.fail_after(timeout):
                stream = await trio.open_tcp_stream(host, port)
                if tls is not None:
                    secured = await connect_handshake(stream, tls[0], tls[1])
                    stream = secured
                    if secured.selected_alpn_protocol() not in (None, "h2"):
                        raise ConnectFailed(
                            f"{host}:{port} does not speak h2 over TLS (ALPN chose "
                            f"{secured.selected_alpn_protocol()!r})"
                        )
        except trio.TooSlowError:
            _abort(stream)
            raise ConnectFailed(f"connect to {host}:{port} timed out") from None
        except ConnectFailed:
            _abort(stream)
            raise
        except TRANSPORT_ERRORS as e:
            _abort(stream)
            what = "TLS handshake with" if stream is not None else "connect to"
            raise ConnectFailed(f"{what} {host}:{port} failed: {describe(e)}") from None
        return cls(stream, settings, on_count=on_count)

    async def run(self) -> None:
        """Read and write until the connection ends (peer close, GOAWAY, close())."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._writer)
            try:
                await self._read_loop()
            finally:
                self._finish(INTERNAL_ERROR)
                self._slots.unpark_all()
        await self._flush_and_close()

    @property
    def usable(self) -> bool:
        return not (self.closed or self.goaway or self._closing)

    async def open_stream(self, headers: Headers, end: bool) -> H2Stream:
        """A new stream carrying ``headers`` (waits for a free stream slot)."""
        while True:
            s = self.try_open_stream(headers, end)
            if s is not None:
                return s
            await self._slots.park()

    def try_open_stream(self, headers: Headers, end: bool) -> H2Stream | None:
        """A new stream carrying ``headers``, or None if no stream slot is free."""
        if not self.usable:
            raise ConnectionGone("connection closing")
        # Until the peer's SETTINGS arrive its limit is unknown: assume the
        # 100 streams RFC 9113 (section 6.5.2) recommends as a minimum.
        limit = self.h2.remote_settings.max_concurrent_streams if self._settled else 100
        if self.at_limit(limit):
            return None
        h2c = self.h2
        sid = h2c.get_next_available_stream_id()
        s = H2Stream(self, sid)
        self.streams[sid] = s
        if self.on_count is not None:
            self.on_count(1)
        try:
            h2c.send_headers(sid, headers, end_stream=end)
        except ev.H2Error as e:
            self.forget(s)
            raise ConnectionGone(str(e)) from None
        s.local_closed = end
        self.kick()
        return s

    def forget(self, stream: H2Stream) -> None:
        if not stream.forgotten:
            if self.on_count is not None:
                self.on_count(-1)
            self._slots.unpark()
        super().forget(stream)

    def close(self) -> None:
        """No new streams; close once the streams in flight are done."""
        self._closing = True
        self._slots.unpark_all()
        self._stream_gone()

    def abort(self) -> None:
        self._reader_scope.cancel()

    def _on_settings(self, e: ev.RemoteSettingsChanged) -> None:
        self._settled = True
        self.wake_senders()
        self._slots.unpark_all()  # (the stream limit may have grown)

    def _other(self, event: ev.Event) -> None:
        if type(event) is ev.ResponseReceived:
            s = self.streams.get(event.stream_id)
            if s is not None:
                s._push((HEADERS, event.headers, 0))


async def sniff_preface(stream: trio.abc.Stream) -> bytes | None:
    """The first bytes of a connection if they begin the HTTP/2 preface, else None.

    (A plaintext HTTP/2 server speaks prior knowledge only: an HTTP/1.1 request is
    answered by the caller rather than with binary GOAWAY garbage.)
    """
    data = b""
    while len(data) < len(PREFACE):
        try:
            more = await stream.receive_some(RECV_SIZE)
        except TRANSPORT_ERRORS:
            return None
        if not more:
            return None
        data += more
        if not PREFACE.startswith(data[: len(PREFACE)]):
            raise NotH2(data)
    return data


class NotH2(RemoteProtocolError):
    """The connection does not start with the HTTP/2 preface."""

    def __init__(self, data: bytes) -> None:
        super().__init__("not HTTP/2")
        self.data = data
