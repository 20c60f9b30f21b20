"""HTTP/1.1 connections: the protocol core of :mod:`linkpy.proto.http1` on trio streams.

:class:`ServerConnection` is a downstream connection (we read requests, write
responses).  Both read in 64 KiB pieces and hand out parsed events one at a time, so
a body streams through with bounded memory and natural backpressure.

The socket fast path.  On a plain :class:`trio.SocketStream` both connections call the
socket's ``recv``/``send`` first and wait for readiness
(:func:`trio.lowlevel.wait_readable` / :func:`~trio.lowlevel.wait_writable`) only when
the call would block: ``SocketStream.receive_some`` and ``send_all`` pass through the
scheduler on every call, blocking or not, which cost more than the rest of the I/O.
trio's rules still hold: every wait is a checkpoint, a read or write that happens is
never undone by a cancellation, and :meth:`ServerConnection.receive_head` makes sure
each request passes at least one checkpoint (a client whose bytes are always ready
cannot starve the other tasks, and a cancelled connection notices at its next
request).  Any other stream (TLS, a test's memory stream) uses the Stream API, whose
every call is a checkpoint.

A read that follows a send (the response, once the request went upstream; the next
request, once the response went down) cannot find its bytes at once: it passes a
checkpoint first (:attr:`ClientConnection.asked`, and the router's server loop), and
tries the socket after the other tasks have run.  When the router is busy the bytes
have come by then; only when they have not does it arm a wait.
"""

from __future__ import annotations

import socket
from typing import Final

import trio

from ..errors import RemoteProtocolError
from ..proto.http1 import (
    DATA,
    END,
    HEAD,
    Event,
    RequestHead,
    RequestParser,
    ResponseHead,
    ResponseParser,
)
from .errors import TRANSPORT_ERRORS, describe, map_errors

RECV_SIZE: Final = 65536
#: After this many reads in a row that did not wait, the next one waits for readiness
#: (a checkpoint) even if bytes are ready: a body streaming faster than we forward it
#: still lets the other tasks run and a cancellation land, with no byte read and lost.
EAGER_READS: Final = 16


def os_socket(stream: trio.abc.Stream) -> socket.socket | None:
    """The OS socket under a plain :class:`trio.SocketStream`, for the fast path.

    None for any other stream: a TLS stream (its socket carries ciphertext), or a
    stream that is not a socket.
    """
    if type(stream) is not trio.SocketStream:
        return None
    sock = getattr(stream.socket, "_sock", None)  # trio's socket wraps the stdlib one
    return sock if isinstance(sock, socket.socket) else None


async def recv_when_ready(sock: socket.socket) -> bytes:
    """Wait until ``sock`` (non-blocking) has bytes or their end, and read them."""
    while True:
        await trio.lowlevel.wait_readable(sock)
        try:
            return sock.recv(RECV_SIZE)
        except BlockingIOError:
            pass


async def send_when_ready(sock: socket.socket, data: bytes, sent: int) -> None:
    """Send ``data`` from ``sent`` on through ``sock`` (non-blocking), waiting for room."""
    view = memoryview(data)[sent:]
    while view:
        await trio.lowlevel.wait_writable(sock)
        try:
            view = view[sock.send(view) :]
        except BlockingIOError:
            pass


class _Connection:
    """The I/O both kinds of connection share: the fast path, readiness waits, timeouts.

    The methods raise the transport's own errors (``TRANSPORT_ERRORS``); the
    subclasses say what they mean.
    """

    __slots__ = ("_stream", "sock", "read_timeout", "write_timeout", "eager")

    def __init__(
        self, stream: trio.abc.Stream, read_timeout: float | None, write_timeout: float | None
    ) -> None:
        self.stream = stream
        #: socketOptions: the longest one read or write may wait (None: unbounded)
        self.read_timeout = read_timeout
        self.write_timeout = write_timeout
        #: reads in a row that did not wait (see :data:`EAGER_READS`)
        self.eager = 0

    @property
    def stream(self) -> trio.abc.Stream:
        return self._stream

    @stream.setter
    def stream(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        #: the OS socket of the fast path (None: the Stream API)
        self.sock = os_socket(stream)

    def _try_recv(self) -> bytes | bytearray | None:
        """What the socket has to read now (b"" at end of stream); None if it would
        block, or on the Stream API."""
        sock = self.sock
        if sock is None or self.eager >= EAGER_READS:
            return None
        try:
            data = sock.recv(RECV_SIZE)
        except BlockingIOError:
            return None
        self.eager += 1
        return data

    async def _recv(self) -> bytes | bytearray | None:
        """Wait for bytes to read (b"" at end of stream); None after readTimeoutMs."""
        if self.read_timeout is None:
            return await self._recv_wait()
        with trio.move_on_after(self.read_timeout):
            return await self._recv_wait()
        return None

    async def _recv_wait(self) -> bytes | bytearray:
        self.eager = 0
        sock = self.sock
        if sock is None:
            return await self._stream.receive_some(RECV_SIZE)
        return await recv_when_ready(sock)

    def _try_send(self, data: bytes) -> int:
        """How much of ``data`` the socket took now (0 if it would block, or on the
        Stream API)."""
        sock = self.sock
        if sock is None:
            return 0
        try:
            return sock.send(data)
        except BlockingIOError:
            return 0

    async def _send(self, data: bytes, sent: int) -> bool:
        """Send ``data`` from ``sent`` on, waiting for room; False after writeTimeoutMs."""
        if self.write_timeout is None:
            await self._send_wait(data, sent)
            return True
        with trio.move_on_after(self.write_timeout):
            await self._send_wait(data, sent)
            return True
        return False

    async def _send_wait(self, data: bytes, sent: int) -> None:
        sock = self.sock
        if sock is None:  # (then nothing was sent yet)
            await self._stream.send_all(data)
            return
        await send_when_ready(sock, data, sent)


class ClientClosed(RemoteProtocolError):
    """The downstream client went away."""


class ClientTimedOut(ClientClosed):
    """The downstream client sent or read nothing for socketOptions' read/writeTimeoutMs."""


class RequestParsers:
    """The request parsers of a server's connections that are between requests.

    An idle keep-alive connection needs no parser: :meth:`ServerConnection.idle` gives
    its parser back here (an llhttp parser and its state are most of the memory of an
    idle connection) and :meth:`ServerConnection.wake` takes one when bytes come.  The
    parsers all have the same limits; at most ``limit`` are kept.
    """

    __slots__ = ("max_line", "max_headers", "limit", "free")

    def __init__(self, max_line: int = 4096, max_headers: int = 8192, limit: int = 1024) -> None:
        self.max_line = max_line
        self.max_headers = max_headers
        self.limit = limit
        self.free: list[RequestParser] = []

    def take(self) -> RequestParser:
        free = self.free
        return free.pop() if free else RequestParser(self.max_line, self.max_headers)

    def give(self, parser: RequestParser) -> None:
        if len(self.free) < self.limit:
            self.free.append(parser)


class _Parked(RequestParser):
    """The parser of every connection whose own went back to its pool: nothing to parse."""

    __slots__ = ()

    def feed(self, data: bytes | bytearray) -> None:
        raise AssertionError("bytes fed to a connection waiting between requests")


_PARKED: Final = _Parked()


class ServerConnection(_Connection):
    """A downstream HTTP/1.1 connection."""

    __slots__ = ("parser", "parsers", "peer", "local", "requests", "eof", "sent_any", "waited")

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        max_line: int = 4096,
        max_headers: int = 8192,
        parsers: RequestParsers | None = None,
        peer: tuple[str, int] = ("", 0),
        local: tuple[str, int] = ("", 0),
        read_timeout: float | None = None,
        write_timeout: float | None = None,
    ) -> None:
        super().__init__(stream, read_timeout, write_timeout)
        #: where the parser goes while the connection waits between requests (``parsers``
        #: shared by a server's connections; else the connection's own)
        self.parsers = parsers if parsers is not None else RequestParsers(max_line, max_headers)
        self.parser = self.parsers.take()
        self.peer = peer
        self.local = local
        self.requests = 0
        self.eof = False
        #: Whether any byte of the current response was written.
        self.sent_any = False
        #: Whether reading the current request waited (passed a checkpoint).
        self.waited = False

    async def _fill(self) -> bool:
        """Read and parse more bytes; False at end of stream."""
        if self.eof:
            return False
        try:
            data = self._try_recv()
            if data is None:
                self.waited = True
                data = await self._recv()
                if data is None:
                    assert self.read_timeout is not None
                    raise ClientTimedOut(f"nothing read for {self.read_timeout * 1000:.0f}ms")
        except TRANSPORT_ERRORS as e:
            raise ClientClosed(describe(e)) from e
        if not data:
            self.eof = True
            return False
        self.parser.feed(data)
        return True

    def idle(self) -> bool:
        """Between requests: True if the socket has nothing to read now.

        The connection's parser then goes back to its pool (when it is between two
        messages): the caller waits for readability itself
        (:func:`trio.lowlevel.wait_readable` on :attr:`sock`), so that an idle
        connection's task holds only that wait, then calls :meth:`wake` and
        ``receive_head(waited=True)``.  False when there are bytes or events to parse,
        at the end of stream, and on the Stream API (:attr:`sock` None); what the socket
        had is parsed then.
        """
        parser = self.parser
        if parser is _PARKED:  # (idle already)
            return True
        events = parser.events
        # the END of the previous (bodiless) request
        while events and events[0][0] == END:
            del events[0]
        if events or self.eof or self.sock is None:
            return False
        try:
            data = self._try_recv()
        except TRANSPORT_ERRORS as e:
            raise ClientClosed(describe(e)) from e
        if data is not None:
            if data:
                parser.feed(data)
            else:
                self.eof = True
            return False
        if parser.at_rest:
            self.parser = _PARKED
            self.parsers.give(parser)
        return True

    def wake(self) -> None:
        """The socket is readable after :meth:`idle`: take a parser back."""
        self.eager = 0
        if self.parser is _PARKED:
            self.parser = self.parsers.take()

    async def receive_head(self, waited: bool = False) -> RequestHead | None:
        """The next request's head, or None when the client closed between requests.

        A checkpoint, so that each request passes at least one: cancellation is checked
        before anything is read, and if reading the head did not wait, the task yields
        once it has it.  ``waited``: the caller has just passed a checkpoint (the server
        loop's, before it reads the next request, or its wait after :meth:`idle`).
        """
        if not waited:
            await trio.lowlevel.checkpoint_if_cancelled()
        self.waited = waited
        events = self.parser.events
        # the END of the previous (bodiless) request
        while events and events[0][0] == END:
            del events[0]
        while not events:
            if not await self._fill():
                if self.parser._in_head:
                    raise ClientClosed("connection closed in the middle of a request head")
                return None
            while events and events[0][0] == END:
                del events[0]
        kind, value = events.pop(0)
        if kind != HEAD:
            raise RemoteProtocolError("unexpected request data")
        self.requests += 1
        self.sent_any = False
        if not self.waited:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return value  # type: ignore[return-value]

    def parsed_head(self) -> RequestHead | None:
        """The next request's head if it is parsed already, else None: what
        ``receive_head(waited=True)`` returns then, without making its coroutine."""
        events = self.parser.events
        while events and events[0][0] == END:  # (as receive_head)
            del events[0]
        if not events or events[0][0] != HEAD:
            return None
        head = events.pop(0)[1]
        self.waited = True
        self.requests += 1
        self.sent_any = False
        return head  # type: ignore[return-value]

    async def receive_body(self) -> Event:
        """The next body event: ``(DATA, bytes)``, ``(END, trailers)`` or ``(UPGRADE, bytes)``."""
        events = self.parser.events
        while not events:
            if not await self._fill():
                raise ClientClosed("connection closed in the middle of a request body")
        return events.pop(0)

    def buffered_body(self, limit: int) -> bytes | None:
        """The whole body if it is already parsed (and fits ``limit``), else None.

        Consumes the body events (the END included) when it returns bytes.
        """
        events = self.parser.events
        parts: list[bytes] = []
        size = 0
        for kind, value in events:
            if kind == DATA:
                size += len(value)  # type: ignore[arg-type]
                if size > limit:
                    return None
                parts.append(value)  # type: ignore[arg-type]
            elif kind == END:
                del events[: len(parts) + 1]
                return b"".join(parts)
            else:
                return None
        return None

    def try_send(self, data: bytes) -> int:
        """How much of ``data`` the socket took now, without waiting (0 if it would
        block, or on the Stream API): the rest goes with ``send(data, sent)``.  (Most
        responses fit at once, and then no coroutine is made for them.)"""
        self.sent_any = True
        try:
            return self._try_send(data)
        except TRANSPORT_ERRORS as e:
            raise ClientClosed(describe(e)) from e

    async def send(self, data: bytes, sent: int = 0) -> None:
        """Send ``data``, from ``sent`` on when :meth:`try_send` took that much."""
        self.sent_any = True
        try:
            if not sent:
                sent = self._try_send(data)
            if sent < len(data) and not await self._send(data, sent):
                assert self.write_timeout is not None
                raise ClientTimedOut(f"a write blocked for {self.write_timeout * 1000:.0f}ms")
        except TRANSPORT_ERRORS as e:
            raise ClientClosed(describe(e)) from e

    async def linger(self, limit: int = 1 << 20, seconds: float = 1.0) -> None:
        """Stop sending, and read (and drop) what the client still sends, briefly.

        Closing a socket with unread input resets the connection, and the client may
        then lose the error response we just sent it.
        """
        with trio.move_on_after(seconds), map_errors(ClientClosed, quiet=True):
            send_eof = getattr(self.stream, "send_eof", None)
            if send_eof is not None:
                await send_eof()
            read = 0
            while read < limit:
                data = await self.stream.receive_some(RECV_SIZE)
                if not data:
                    break
                read += len(data)

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True), map_errors(ClientClosed, quiet=True):
            await trio.aclose_forcefully(self.stream)


def abort_stream(stream: trio.abc.Stream) -> None:
    """Close a stream's socket synchronously."""
    while True:
        sock = getattr(stream, "socket", None)
        if sock is not None:
            sock.close()
            return
        inner = getattr(stream, "transport_stream", None)
        if inner is None:
            return
        stream = inner


class UpstreamClosed(RemoteProtocolError):
    """The endpoint closed the connection or broke the protocol."""

    status_hint = 502


class UpstreamTimedOut(UpstreamClosed):
    """The endpoint sent or read nothing for socketOptions' read/writeTimeoutMs."""


class ClientConnection(_Connection):
    """An upstream HTTP/1.1 connection to one endpoint."""

    __slots__ = ("parser", "uses", "born", "idle_since", "received_any", "closed", "asked")

    def __init__(
        self,
        stream: trio.abc.Stream,
        read_timeout: float | None = None,
        write_timeout: float | None = None,
    ) -> None:
        super().__init__(stream, read_timeout, write_timeout)
        self.parser = ResponseParser()
        #: When it was opened (clientSession.lifeTimeMs counts from here).
        self.born = trio.current_time()
        #: Requests sent on this connection so far.
        self.uses = 0
        self.idle_since = 0.0
        #: Whether any byte of the current response arrived.
        self.received_any = False
        self.closed = False
        #: A request went out on the fast path since the last read.  Its answer cannot
        #: be there yet, so the next read lets the other tasks run first and then tries
        #: the socket: when the router is busy the answer has come by then, and the read
        #: needs no wait (no system calls to arm one, nor a read that fails).
        self.asked = False

    def start_request(self, head_request: bool) -> None:
        if self.parser.done:  # the previous response answered a HEAD
            self.parser = ResponseParser()
        if head_request:
            self.parser.expect_head_response()
        self.uses += 1
        self.received_any = False

    def try_send(self, data: bytes) -> int:
        """How much of ``data`` the socket took now, without waiting (0 if it would
        block, or on the Stream API): the rest goes with ``send(data, sent)``."""
        self.asked = self.sock is not None  # (a read on the Stream API is a checkpoint)
        try:
            return self._try_send(data)
        except TRANSPORT_ERRORS as e:
            raise UpstreamClosed(describe(e)) from e

    async def send(self, data: bytes, sent: int = 0) -> None:
        """Send ``data``, from ``sent`` on when :meth:`try_send` took that much."""
        self.asked = self.sock is not None  # (a read on the Stream API is a checkpoint)
        try:
            if not sent:
                sent = self._try_send(data)
            if sent < len(data) and not await self._send(data, sent):
                assert self.write_timeout is not None
                self.abort()
                raise UpstreamTimedOut(f"a write blocked for {self.write_timeout * 1000:.0f}ms")
        except TRANSPORT_ERRORS as e:
            raise UpstreamClosed(describe(e)) from e

    async def receive(self) -> Event:
        """The next response event."""
        events = self.parser.events
        while not events:
            try:
                if self.asked:
                    self.asked = False
                    await trio.lowlevel.checkpoint()
                    self.eager = 0
                data = self._try_recv()
                if data is None:
                    data = await self._recv()
                    if data is None:
                        assert self.read_timeout is not None
                        self.abort()
                        raise UpstreamTimedOut(f"nothing read for {self.read_timeout * 1000:.0f}ms")
            except TRANSPORT_ERRORS as e:
                raise UpstreamClosed(describe(e)) from e
            if not data:
                self.closed = True
                if not self.received_any:
                    raise UpstreamClosed("connection closed before a response")
                self.parser.eof()
                break
            self.received_any = True
            self.parser.feed(data)
        return events.pop(0)

    async def receive_head(self) -> ResponseHead:
        kind, value = await self.receive()
        if kind != HEAD:
            raise UpstreamClosed("response without a head")
        return value  # type: ignore[return-value]

    @property
    def reusable(self) -> bool:
        """Whether the connection may carry another request (the last one is over)."""
        return not self.closed and not self.parser.events

    def abort(self) -> None:
        """Close the connection now (no goodbye; fine for HTTP/1.1)."""
        self.closed = True
        abort_stream(self.stream)

    async def aclose(self) -> None:
        self.abort()
