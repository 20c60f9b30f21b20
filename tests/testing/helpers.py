"""Helpers for the emulator tests: background requests, line streams, a raw h11 client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Generic, TypeVar

import h11
import httpx
import trio

T = TypeVar("T")


class Pending(Generic[T]):
    """The outcome of a coroutine running in the background (see :func:`spawn`)."""

    def __init__(self) -> None:
        self._done = trio.Event()
        self._value: list[T] = []

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def _set(self, value: T) -> None:
        self._value.append(value)
        self._done.set()

    async def result(self) -> T:
        await self._done.wait()
        return self._value[0]


def spawn(nursery: trio.Nursery, fn: Callable[[], Awaitable[T]]) -> Pending[T]:
    """Run ``fn()`` as a task of ``nursery``; its result is awaited later."""
    pending: Pending[T] = Pending()

    async def run() -> None:
        pending._set(await fn())

    nursery.start_soon(run)
    return pending


def client(url: str) -> httpx.AsyncClient:
    """An httpx client with no timeouts (time is virtual in most tests).

    Plain HTTP only: ``verify=False`` skips loading the CA bundle, which would cost
    tens of milliseconds per test.
    """
    return httpx.AsyncClient(base_url=url, timeout=None, verify=False)


class Lines:
    """Newline-delimited JSON objects read from a streaming response."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def next(self) -> dict[str, Any]:
        """The next object; StopAsyncIteration when the stream ended."""
        while True:
            line = await anext(self._lines)
            if line.strip():
                value = json.loads(line)
                assert isinstance(value, dict)
                return value

    async def ended(self) -> bool:
        """True when the stream ends cleanly with no further object."""
        try:
            extra = await self.next()
        except StopAsyncIteration:
            return True
        raise AssertionError(f"unexpected event {extra}")


class RawClient:
    """A bare h11 client on a trio socket: shows framing and chunk boundaries."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    async def request(self, target: str, headers: list[tuple[str, str]] | None = None) -> None:
        hdrs = [("Host", "127.0.0.1"), *(headers or [])]
        await self.stream.send_all(
            self.conn.send(h11.Request(method="GET", target=target, headers=hdrs)) or b""
        )
        await self.stream.send_all(self.conn.send(h11.EndOfMessage()) or b"")

    async def event(self) -> h11.Event:
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(await self.stream.receive_some(65536))
                continue
            assert not isinstance(event, type)
            return event

    async def response(self) -> h11.Response:
        event = await self.event()
        assert isinstance(event, h11.Response), event
        return event

    async def data_events(self) -> AsyncIterator[h11.Data]:
        """Every Data event until EndOfMessage."""
        while True:
            event = await self.event()
            if isinstance(event, h11.EndOfMessage):
                return
            assert isinstance(event, h11.Data), event
            yield event

    async def aclose(self) -> None:
        await self.stream.aclose()


async def raw_bytes(port: int, request: bytes, until: bytes) -> bytes:
    """Send raw request bytes; read until ``until`` has been received (or EOF)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(request)
        data = b""
        while until not in data:
            chunk = await stream.receive_some(65536)
            if not chunk:
                break
            data += chunk
        return data


class Events:
    """Server-Sent Events read from a streaming response (lines end in CRLF or LF)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._chunks = response.aiter_raw()
        self._buffer = b""
        #: Every byte received so far.
        self.raw = b""

    async def _line(self) -> bytes:
        while b"\n" not in self._buffer:
            chunk = await anext(self._chunks)
            self._buffer += chunk
            self.raw += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.removesuffix(b"\r")

    async def item(self) -> tuple[str, dict[str, Any]] | None:
        """The next event as ``(type, data)``, or None for a keepalive blank line."""
        name: str | None = None
        data: bytes | None = None
        while True:
            line = await self._line()
            if line == b"":
                if name is None and data is None:
                    return None
                assert name is not None and data is not None
                value = json.loads(data)
                assert isinstance(value, dict)
                return name, value
            field, _, rest = line.partition(b":")
            rest = rest.removeprefix(b" ")
            if field == b"event":
                name = rest.decode()
            elif field == b"data":
                data = rest

    async def next(self) -> tuple[str, dict[str, Any]]:
        """The next event, skipping keepalives."""
        while True:
            item = await self.item()
            if item is not None:
                return item


async def outcome(request: Awaitable[httpx.Response]) -> str:
    """The status code of a response, or the name of the httpx error it raised."""
    try:
        response = await request
    except httpx.HTTPError as exc:
        return type(exc).__name__
    return str(response.status_code)
