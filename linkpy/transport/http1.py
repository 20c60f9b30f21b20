"""HTTP/1.1 connections: the protocol core of :mod:`linkpy.proto.http1` on trio streams.

:class:`ServerConnection` is a downstream connection (we read requests, write
responses); :class:`ClientConnection` an upstream one (we write requests, read
responses).  Both read in 64 KiB pieces and hand out parsed events one at a time, so
a body streams through with bounded memory and natural backpressure.
"""

from __future__ import annotations

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


class ClientClosed(RemoteProtocolError):
    """The downstream client went away."""


class ClientTimedOut(ClientClosed):
    """The downstream client sent or read nothing for socketOptions' read/writeTimeoutMs."""


class ServerConnection:
    """A downstream HTTP/1.1 connection."""

    __slots__ = (
        "stream",
        "parser",
        "peer",
        "local",
        "requests",
        "eof",
        "sent_any",
        "read_timeout",
        "write_timeout",
    )

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        max_line: int = 4096,
        max_headers: int = 8192,
        peer: tuple[str, int] = ("", 0),
        local: tuple[str, int] = ("", 0),
        read_timeout: float | None = None,
        write_timeout: float | None = None,
    ) -> None:
        self.stream = stream
        self.parser = RequestParser(max_line, max_headers)
        self.peer = peer
        self.local = local
        self.requests = 0
        self.eof = False
        #: Whether any byte of the current response was written.
        self.sent_any = False
        #: socketOptions: the longest one read or write may wait (None: unbounded)
        self.read_timeout = read_timeout
        self.write_timeout = write_timeout

    async def _fill(self) -> bool:
        """Read and parse more bytes; False at end of stream."""
        if self.eof:
            return False
        # (try/except, not map_errors: a generator context manager on every read costs)
        try:
            if self.read_timeout is None:
                data = await self.stream.receive_some(RECV_SIZE)
            else:
                with trio.move_on_after(self.read_timeout) as scope:
                    data = await self.stream.receive_some(RECV_SIZE)
                if scope.cancelled_caught:
                    raise ClientTimedOut(f"nothing read for {self.read_timeout * 1000:.0f}ms")
        except TRANSPORT_ERRORS as e:
            raise ClientClosed(describe(e)) from e
        if not data:
            self.eof = True
            return False
        self.parser.feed(data)
        return True

    async def receive_head(self) -> RequestHead | None:
        """The next request's head, or None when the client closed between requests."""
        events = self.parser.events
        # the END of the previous (bodiless) request
        while events and events[0][0] == END:
            events.popleft()
        while not events:
            if not await self._fill():
                if self.parser._in_head:
                    raise ClientClosed("connection closed in the middle of a request head")
                return None
            while events and events[0][0] == END:
                events.popleft()
        kind, value = events.popleft()
        if kind != HEAD:
            raise RemoteProtocolError("unexpected request data")
        self.requests += 1
        self.sent_any = False
        return value  # type: ignore[return-value]

    async def receive_body(self) -> Event:
        """The next body event: ``(DATA, bytes)``, ``(END, trailers)`` or ``(UPGRADE, bytes)``."""
        events = self.parser.events
        while not events:
            if not await self._fill():
                raise ClientClosed("connection closed in the middle of a request body")
        return events.popleft()

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
                for _ in range(len(parts) + 1):
                    events.popleft()
                return b"".join(parts)
            else:
                return None
        return None

    async def send(self, data: bytes) -> None:
        self.sent_any = True
        try:
            if self.write_timeout is None:
                await self.stream.send_all(data)
                return
            with trio.move_on_after(self.write_timeout) as scope:
                await self.stream.send_all(data)
        except TRANSPORT_ERRORS as e:
            raise ClientClosed(describe(e)) from e
        if scope.cancelled_caught:
            raise ClientTimedOut(f"a write blocked for {self.write_timeout * 1000:.0f}ms")

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


class ClientConnection:
    """An upstream HTTP/1.1 connection to one endpoint."""

    __slots__ = (
        "stream",
        "parser",
        "uses",
        "born",
        "idle_since",
        "received_any",
        "closed",
        "read_timeout",
        "write_timeout",
    )

    def __init__(
        self,
        stream: trio.abc.Stream,
        read_timeout: float | None = None,
        write_timeout: float | None = None,
    ) -> None:
        self.stream = stream
        #: socketOptions: the longest one read or write may wait (None: unbounded)
        self.read_timeout = read_timeout
        self.write_timeout = write_timeout
        self.parser = ResponseParser()
        #: When it was opened (clientSession.lifeTimeMs counts from here).
        self.born = trio.current_time()
        #: Requests sent on this connection so far.
        self.uses = 0
        self.idle_since = 0.0
        #: Whether any byte of the current response arrived.
        self.received_any = False
        self.closed = False

    def start_request(self, head_request: bool) -> None:
        if self.parser.done:  # the previous response answered a HEAD
            self.parser = ResponseParser()
        if head_request:
            self.parser.expect_head_response()
        self.uses += 1
        self.received_any = False

    async def send(self, data: bytes) -> None:
        try:
            if self.write_timeout is None:
                await self.stream.send_all(data)
                return
            with trio.move_on_after(self.write_timeout) as scope:
                await self.stream.send_all(data)
        except TRANSPORT_ERRORS as e:
            raise UpstreamClosed(describe(e)) from e
        if scope.cancelled_caught:
            self.abort()
            raise UpstreamTimedOut(f"a write blocked for {self.write_timeout * 1000:.0f}ms")

    async def receive(self) -> Event:
        """The next response event."""
        events = self.parser.events
        while not events:
            try:
                if self.read_timeout is None:
                    data = await self.stream.receive_some(RECV_SIZE)
                else:
                    with trio.move_on_after(self.read_timeout) as scope:
                        data = await self.stream.receive_some(RECV_SIZE)
                    if scope.cancelled_caught:
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
        return events.popleft()

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
