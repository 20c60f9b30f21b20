"""A small HTTP/1.1 server on trio and h11, the base of the discovery emulators.

:class:`FakeServer` listens on a loopback port, parses requests with h11 and hands
each one to a handler found by method and path (:class:`Router`).  A handler
returns a :class:`Response` (a whole body, sent with ``Content-Length``) or a
:class:`StreamResponse` whose body is produced piece by piece: chunked
(``Transfer-Encoding: chunked``, one chunk per :meth:`Stream.send`) or delimited by
the end of the connection (``Connection: close``, as Marathon's event stream).
A handler may block as long as it likes (long polls); it is cancelled when the
client goes away.

Every connection is served by a task in a nursery owned by :meth:`FakeServer.serve`,
each inside its own cancel scope, so :meth:`FakeServer.drop_connections` can close
them all at once.  Faults are injected per request (:meth:`FakeServer.fail_next`,
:meth:`~FakeServer.hang_next`, :meth:`~FakeServer.drop_next`,
:meth:`~FakeServer.delay_next`, :meth:`~FakeServer.truncate_next`,
:meth:`~FakeServer.garble_next`, :meth:`~FakeServer.rewrite_next`), and every request
is logged in
:attr:`FakeServer.requests`.
"""

from __future__ import annotations

import http
import json
import math
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, NoReturn

import attrs
import h11
import trio

#: Header list as sent: ``(name, value)`` pairs.
Headers = Sequence[tuple[str, str]]

_MAX_RECV = 65536


class DropConnection(Exception):
    """Raise from a handler or a stream producer to close the connection at once.

    Nothing more is written: a handler that raises it sends no response at all, a
    producer leaves its body unfinished (no terminal chunk).
    """


class _PeerGone(Exception):
    """Writing failed: the client closed or reset the connection."""


# --- requests -------------------------------------------------------------------


@attrs.frozen
class Request:
    """One request as received, and as recorded in :attr:`FakeServer.requests`.

    ``path`` is percent-decoded; ``query`` maps each parameter to its values in
    order (a bare ``?stale`` has the value ``""``); header names are lower case.
    """

    method: str
    target: str
    path: str
    query: Mapping[str, tuple[str, ...]]
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""

    @classmethod
    def parse(
        cls, method: str, target: str, headers: Iterable[tuple[str, str]], body: bytes
    ) -> Request:
        """Build a request from the request line, the headers and the body."""
        from urllib.parse import parse_qsl, unquote, urlsplit

        parts = urlsplit(target)
        query: dict[str, list[str]] = {}
        for k, v in parse_qsl(parts.query, keep_blank_values=True):
            query.setdefault(k, []).append(v)
        return cls(
            method=method,
            target=target,
            path=unquote(parts.path),
            query={k: tuple(v) for k, v in query.items()},
            headers=tuple((k.lower(), v) for k, v in headers),
            body=body,
        )

    def header(self, name: str) -> str | None:
        """The first value of a header, or None."""
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def header_values(self, name: str) -> list[str]:
        """Every value of a header, one per header line (not split on commas)."""
        name = name.lower()
        return [v for k, v in self.headers if k == name]

    def param(self, name: str) -> str | None:
        """The first value of a query parameter, or None when absent."""
        values = self.query.get(name)
        return values[0] if values else None

    def params(self, name: str) -> tuple[str, ...]:
        """Every value of a query parameter."""
        return self.query.get(name, ())

    def has_param(self, name: str) -> bool:
        return name in self.query

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


# --- responses ------------------------------------------------------------------


@attrs.frozen
class Response:
    """A response with a whole body (sent with ``Content-Length``).

    ``truncate`` (set by fault injection) sends the head and half the body, then
    closes the connection.
    """

    status: int
    body: bytes = b""
    headers: Headers = ()
    truncate: bool = False


def json_response(obj: object, status: int = 200, headers: Headers = ()) -> Response:
    """A compact JSON body with ``Content-Type: application/json``."""
    return Response(status, dump_json(obj), [("Content-Type", "application/json"), *headers])


def text_response(
    text: str,
    status: int = 200,
    headers: Headers = (),
    content_type: str = "text/plain; charset=utf-8",
) -> Response:
    """A text body."""
    return Response(status, text.encode("utf-8"), [("Content-Type", content_type), *headers])


def dump_json(obj: object) -> bytes:
    """Compact JSON, as Go and Java servers write it."""
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


class Stream:
    """The body of a :class:`StreamResponse`, handed to its producer."""

    def __init__(self, connection: _Connection, raw: bool) -> None:
        self._connection = connection
        self._raw = raw

    async def send(self, data: bytes) -> None:
        """Write ``data``: one HTTP chunk, or raw bytes for a close-delimited body."""
        if not data:
            return
        if self._raw:
            await self._connection.send_raw(data)
        else:
            await self._connection.send_event(h11.Data(data=data))

    def drop(self) -> NoReturn:
        """Close the connection now, leaving the body unfinished."""
        raise DropConnection


@attrs.frozen
class StreamResponse:
    """A response whose body ``produce`` writes; the body ends when it returns.

    With ``close_delimited`` the body is not chunked: the head says
    ``Connection: close`` and the body ends with the connection (Marathon's SSE).
    """

    status: int
    produce: Callable[[Stream], Awaitable[None]]
    headers: Headers = ()
    close_delimited: bool = False


AnyResponse = Response | StreamResponse
Handler = Callable[[Request, Mapping[str, str]], Awaitable[AnyResponse]]


# --- routing --------------------------------------------------------------------


_PARAM = re.compile(r"\{(\w+)(:path)?\}")


class Router:
    """Routes by method and path pattern; the first route added that matches wins.

    A pattern is a path where ``{name}`` matches one segment and ``{name:path}``
    matches one or more segments (slashes included).
    """

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        regex = ""
        pos = 0
        for m in _PARAM.finditer(pattern):
            regex += re.escape(pattern[pos : m.start()])
            regex += f"(?P<{m.group(1)}>.+)" if m.group(2) else f"(?P<{m.group(1)}>[^/]+)"
            pos = m.end()
        regex += re.escape(pattern[pos:])
        self._routes.append((method.upper(), re.compile(regex + r"\Z"), handler))

    def route(self, method: str, path: str) -> tuple[Handler, dict[str, str]] | Literal[405] | None:
        """The handler and path parameters, or 405 (path known, method not), or None."""
        known_path = False
        for route_method, regex, handler in self._routes:
            m = regex.match(path)
            if m is None:
                continue
            if route_method == method:
                return handler, m.groupdict()
            known_path = True
        return 405 if known_path else None


# --- change notification ----------------------------------------------------------


class Notifier:
    """Wakes every task waiting for "something changed".

    :meth:`notify` is synchronous, so the emulators' scripting methods can call it.
    """

    def __init__(self) -> None:
        self._event = trio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = trio.Event()

    async def wait(self) -> None:
        """Wait for the next :meth:`notify`."""
        await self._event.wait()

    async def wait_for(self, predicate: Callable[[], bool], seconds: float = math.inf) -> bool:
        """Wait until ``predicate()`` is true (checked after every notify), at most
        ``seconds``; False when time ran out."""
        with trio.move_on_after(seconds):
            while not predicate():
                await self.wait()
            return True
        return False


# --- faults ---------------------------------------------------------------------

FaultKind = Literal["status", "hang", "drop", "delay", "truncate", "garble", "rewrite"]


@attrs.define
class _Fault:
    kind: FaultKind
    remaining: int | None  # None: until clear_faults()
    path: str | None
    status: int = 500
    message: str | None = None
    headers: Headers = ()
    body: bytes | None = None
    seconds: float = 0.0
    rewrite: Callable[[Response], Response] | None = None

    def matches(self, request: Request) -> bool:
        return self.path is None or request.path.startswith(self.path)


# --- the server -----------------------------------------------------------------


class FakeServer:
    """Base of the emulators: listening, dispatch, request log and fault injection.

    Subclasses add routes to :attr:`router` and may override :meth:`check_request`
    (authentication), :meth:`error_response` (their error body format),
    :meth:`not_found` and :meth:`response_headers`.
    """

    #: Name printed by the command line.
    kind: str = "fake"

    def __init__(self) -> None:
        self.router = Router()
        #: Every request received, in order (faulted ones included).
        self.requests: list[Request] = []
        self.host: str | None = None
        self.port: int | None = None
        self._faults: list[_Fault] = []
        self._connections: set[trio.CancelScope] = set()

    # -- listening ------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` once :meth:`serve` has started."""
        if self.port is None:
            raise RuntimeError(f"{type(self).__name__} is not serving")
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``host:port`` (0: an ephemeral port) and serve until cancelled.

        Calls ``task_status.started(port)`` with the bound port once listening, so
        ``port = await nursery.start(fake.serve)`` returns when requests can be sent.
        """
        listeners = await trio.open_tcp_listeners(port, host=host)
        # With a name such as "localhost" there may be one listener per address
        # family, each on its own ephemeral port: keep the first one only.
        listener, extra = listeners[0], listeners[1:]
        for other in extra:
            await trio.aclose_forcefully(other)
        sockname = listener.socket.getsockname()
        try:
            async with trio.open_nursery() as nursery:
                self.host, self.port = sockname[0], sockname[1]
                nursery.start_soon(self._accept_loop, listener, nursery)
                task_status.started(sockname[1])
        finally:
            self.port = None
            await trio.aclose_forcefully(listener)

    async def _accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        while True:
            stream = await listener.accept()
            nursery.start_soon(self._serve_connection, stream)

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        scope = trio.CancelScope()
        self._connections.add(scope)
        try:
            with scope:
                await _Connection(self, stream).run()
        finally:
            self._connections.discard(scope)
            await trio.aclose_forcefully(stream)

    def drop_connections(self) -> None:
        """Close every open connection abruptly (in-flight requests get no answer)."""
        for scope in list(self._connections):
            scope.cancel()

    @property
    def open_connections(self) -> int:
        """How many client connections are open."""
        return len(self._connections)

    # -- request log ----------------------------------------------------------

    def requests_to(self, path: str, method: str | None = None) -> list[Request]:
        """Logged requests whose path equals ``path`` (and method, if given)."""
        return [
            r for r in self.requests if r.path == path and (method is None or r.method == method)
        ]

    def clear_requests(self) -> None:
        self.requests.clear()

    # -- faults ---------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        count: int | None = 1,
        *,
        path: str | None = None,
        message: str | None = None,
        headers: Headers = (),
        body: bytes | None = None,
    ) -> None:
        """Answer the next ``count`` requests (None: all, until :meth:`clear_faults`)
        whose path starts with ``path`` with ``status``.

        The body is the emulator's native error format carrying ``message``
        (see :meth:`error_response`), unless ``body`` is given verbatim.
        """
        self._faults.append(
            _Fault(
                "status", count, path, status=status, message=message, headers=headers, body=body
            )
        )

    def hang_next(self, count: int | None = 1, *, path: str | None = None) -> None:
        """Never answer the next ``count`` matching requests (until the client leaves)."""
        self._faults.append(_Fault("hang", count, path))

    def drop_next(self, count: int | None = 1, *, path: str | None = None) -> None:
        """Close the connection of the next ``count`` matching requests without answering."""
        self._faults.append(_Fault("drop", count, path))

    def delay_next(self, seconds: float, count: int | None = 1, *, path: str | None = None) -> None:
        """Wait ``seconds`` before handling the next ``count`` matching requests."""
        self._faults.append(_Fault("delay", count, path, seconds=seconds))

    def truncate_next(self, count: int | None = 1, *, path: str | None = None) -> None:
        """Send the head and half the body of the next matching responses, then close."""
        self._faults.append(_Fault("truncate", count, path))

    def garble_next(self, count: int | None = 1, *, path: str | None = None) -> None:
        """Replace the body of the next matching responses with malformed JSON."""
        self._faults.append(_Fault("garble", count, path))

    def rewrite_next(
        self,
        rewrite: Callable[[Response], Response],
        count: int | None = 1,
        *,
        path: str | None = None,
    ) -> None:
        """Pass the next matching (whole-body) responses through ``rewrite``.

        For payloads the real server should never send but clients must survive,
        keeping the real status and headers, e.g. a JSON ``null`` body::

            consul.rewrite_next(lambda r: attrs.evolve(r, body=b"null"))
        """
        self._faults.append(_Fault("rewrite", count, path, rewrite=rewrite))

    def clear_faults(self) -> None:
        self._faults.clear()

    def _take_fault(self, request: Request) -> _Fault | None:
        for fault in self._faults:
            if fault.matches(request):
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                return fault
        return None

    # -- hooks ----------------------------------------------------------------

    def load(self, data: Mapping[str, Any]) -> None:
        """Seed state from a mapping (the command line's ``--load`` file)."""
        raise NotImplementedError

    def check_request(self, request: Request) -> Response | None:
        """Authentication and similar: a response to refuse the request, or None."""
        return None

    def error_response(
        self, status: int, message: str | None = None, headers: Headers = ()
    ) -> Response:
        """An error in the emulated system's format (plain text here)."""
        text = message if message is not None else http.HTTPStatus(status).phrase
        return text_response(text, status, headers)

    def not_found(self, request: Request) -> Response:
        return self.error_response(404, "404 page not found")

    def method_not_allowed(self, request: Request) -> Response:
        return self.error_response(405, f"method {request.method} not allowed")

    def response_headers(self) -> list[tuple[str, str]]:
        """Headers added to every response."""
        return []

    # -- dispatch -------------------------------------------------------------

    async def dispatch(self, request: Request) -> AnyResponse:
        """Apply faults, :meth:`check_request`, then the route's handler."""
        self.requests.append(request)
        fault = self._take_fault(request)
        if fault is not None:
            if fault.kind == "status":
                if fault.body is not None:
                    return Response(fault.status, fault.body, fault.headers)
                return self.error_response(fault.status, fault.message, fault.headers)
            if fault.kind == "hang":
                await trio.sleep_forever()
            if fault.kind == "drop":
                raise DropConnection
            if fault.kind == "delay":
                await trio.sleep(fault.seconds)
        response: AnyResponse | None = self.check_request(request)
        if response is None:
            found = self.router.route(request.method, request.path)
            if found is None:
                response = self.not_found(request)
            elif found == 405:
                response = self.method_not_allowed(request)
            else:
                handler, args = found
                response = await handler(request, args)
        if fault is not None and isinstance(response, Response):
            if fault.kind == "truncate":
                response = attrs.evolve(response, truncate=True)
            elif fault.kind == "garble":
                response = attrs.evolve(response, body=b'{"malformed": [' + response.body[:16])
            elif fault.rewrite is not None:
                response = fault.rewrite(response)
        return response


@attrs.define
class _Outcome:
    close: bool = False


class _Connection:
    """One client connection: read a request, answer it, repeat (keep-alive)."""

    def __init__(self, server: FakeServer, stream: trio.SocketStream) -> None:
        self.server = server
        self.stream = stream
        self.conn = h11.Connection(h11.SERVER)

    async def run(self) -> None:
        while True:
            try:
                request = await self._read_request()
            except h11.RemoteProtocolError as exc:
                await self._refuse(exc)
                return
            if request is None:
                return
            if not await self._exchange(request):
                return
            if self.conn.our_state is not h11.DONE or self.conn.their_state is not h11.DONE:
                return
            self.conn.start_next_cycle()

    async def _refuse(self, exc: h11.RemoteProtocolError) -> None:
        if self.conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        body = f"{exc}\n".encode()
        try:
            await self.send_event(
                h11.Response(
                    status_code=exc.error_status_hint,
                    headers=[("Content-Length", str(len(body))), ("Connection", "close")],
                )
            )
            await self.send_event(h11.Data(data=body))
            await self.send_event(h11.EndOfMessage())
        except (_PeerGone, h11.LocalProtocolError):
            pass

    async def _receive(self) -> bytes:
        try:
            return await self.stream.receive_some(_MAX_RECV)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return b""

    async def _read_request(self) -> Request | None:
        head: h11.Request | None = None
        body = bytearray()
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(await self._receive())
            elif isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                return Request.parse(
                    head.method.decode("ascii"),
                    head.target.decode("latin-1"),
                    [(k.decode("latin-1"), v.decode("latin-1")) for k, v in head.headers],
                    bytes(body),
                )
            else:  # ConnectionClosed, PAUSED
                return None

    async def _exchange(self, request: Request) -> bool:
        """Answer one request; False when the connection must be closed."""
        outcome = _Outcome()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_peer, outcome, nursery.cancel_scope)
            try:
                await self._respond(request, outcome)
            except (DropConnection, _PeerGone):
                outcome.close = True
            nursery.cancel_scope.cancel()
        return not outcome.close

    async def _watch_peer(self, outcome: _Outcome, scope: trio.CancelScope) -> None:
        """While a response is pending, notice the client closing the connection."""
        while True:
            data = await self._receive()
            if not data:
                outcome.close = True
                scope.cancel()
                return
            self.conn.receive_data(data)  # kept by h11 for the next request

    async def _respond(self, request: Request, outcome: _Outcome) -> None:
        response = await self.server.dispatch(request)
        extra = self.server.response_headers()
        if isinstance(response, Response):
            headers = [("Content-Length", str(len(response.body))), *extra, *response.headers]
            await self.send_event(_head(response.status, headers))
            if response.truncate:
                await self.send_event(h11.Data(data=response.body[: len(response.body) // 2]))
                raise DropConnection
            if response.body:
                await self.send_event(h11.Data(data=response.body))
            await self.send_event(h11.EndOfMessage())
        elif response.close_delimited:
            lines = [f"HTTP/1.1 {response.status} {_reason(response.status)}"]
            lines += [f"{k}: {v}" for k, v in [*extra, *response.headers]]
            lines.append("Connection: close")
            await self.send_raw(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            await response.produce(Stream(self, raw=True))
            outcome.close = True
        else:
            await self.send_event(_head(response.status, [*extra, *response.headers]))
            await response.produce(Stream(self, raw=False))
            await self.send_event(h11.EndOfMessage())

    async def send_event(self, event: h11.Event) -> None:
        data = self.conn.send(event)
        if data:
            await self.send_raw(data)

    async def send_raw(self, data: bytes) -> None:
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise _PeerGone from exc


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _head(status: int, headers: Headers) -> h11.Response:
    return h11.Response(status_code=status, headers=list(headers), reason=_reason(status))
