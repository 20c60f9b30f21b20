"""HTTP/2 peers for the tests: a scriptable backend and a client on the h2 library, and
a grpcio echo service.

The h2 peers drive ``h2.connection.H2Connection`` directly (with its own header
validation on), independently of linkpy's transport; grpcio is Google's gRPC core.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent import futures
from typing import Any

import attrs
import grpc  # type: ignore[import-untyped]  # (grpcio ships no type stubs)
import h2.config
import h2.connection
import h2.events
import trio
import trio.lowlevel

Headers = list[tuple[bytes, bytes]]


@attrs.define
class Exchange:
    """A request as a backend got it, and the calls that answer it."""

    peer: RawBackend
    conn: h2.connection.H2Connection
    stream_id: int
    headers: Headers
    body: bytes = b""
    reset_code: int | None = None

    def header(self, name: bytes) -> bytes | None:
        return next((v for k, v in self.headers if k == name), None)

    def respond(self, status: int, headers: Headers = [], end: bool = False) -> None:  # noqa: B006
        self.conn.send_headers(self.stream_id, [(b":status", b"%d" % status), *headers], end)
        self.peer.flush_soon()

    async def send(self, data: bytes, end: bool = False) -> None:
        while data:
            window = self.conn.local_flow_control_window(self.stream_id)
            if window <= 0:
                await self.peer.window.wait()
                continue
            n = min(len(data), window, self.conn.max_outbound_frame_size)
            self.conn.send_data(self.stream_id, data[:n], end_stream=end and n == len(data))
            data = data[n:]
            await self.peer.flush()
        if end and not data:
            pass

    def trailers(self, headers: Headers) -> None:
        self.conn.send_headers(self.stream_id, headers, end_stream=True)
        self.peer.flush_soon()

    def reset(self, code: int) -> None:
        self.conn.reset_stream(self.stream_id, code)
        self.peer.flush_soon()

    def goaway(self) -> None:
        """A graceful GOAWAY naming this stream as the last one processed."""
        self.conn.close_connection(last_stream_id=self.stream_id)
        self.peer.flush_soon()


BackendHandler = Callable[[Exchange], Awaitable[None]]


class RawBackend:
    """An h2c server: reads each request whole, then runs ``handler`` in a task."""

    def __init__(self, handler: BackendHandler, eager: bool = False) -> None:
        self.handler = handler
        #: run the handler on the request head, before the body ends
        self.eager = eager
        self.reset_seen = trio.Event()
        self.port = 0
        self.connections = 0
        self.seen: list[Exchange] = []
        self.resets: list[tuple[int, int]] = []
        self.window = trio.Event()
        self._stream: trio.SocketStream | None = None
        self._kicks: set[_Kick] = set()

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self._conn, listeners)

    def flush_soon(self) -> None:
        for k in self._kicks:
            k.event.set()

    async def flush(self) -> None:
        self.flush_soon()
        await trio.lowlevel.checkpoint()

    async def _conn(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding=None)
        )
        conn.initiate_connection()
        pending: dict[int, Exchange] = {}
        kick = _Kick()
        self._kicks.add(kick)

        async def writer() -> None:
            while True:
                data = conn.data_to_send()
                if data:
                    await stream.send_all(data)
                    continue
                kick.event = trio.Event()
                await kick.event.wait()

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(writer)
                while True:
                    data = await stream.receive_some(65536)
                    if not data:
                        nursery.cancel_scope.cancel()
                        return
                    for e in conn.receive_data(data):
                        if isinstance(e, h2.events.RequestReceived):
                            new = Exchange(self, conn, e.stream_id, list(e.headers))
                            pending[e.stream_id] = new
                            if self.eager:
                                self.seen.append(new)
                                nursery.start_soon(self.handler, new)
                        elif isinstance(e, h2.events.DataReceived):
                            got = pending.get(e.stream_id or 0)
                            if got is not None:
                                got.body += e.data or b""
                            conn.acknowledge_received_data(
                                e.flow_controlled_length or 0, e.stream_id or 0
                            )
                        elif isinstance(e, h2.events.StreamEnded):
                            ex = pending.pop(e.stream_id or 0, None)
                            if ex is not None and not self.eager:
                                self.seen.append(ex)
                                nursery.start_soon(self.handler, ex)
                        elif isinstance(e, h2.events.StreamReset):
                            self.resets.append((e.stream_id or 0, int(e.error_code or 0)))
                            self.reset_seen.set()
                        elif isinstance(
                            e, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged
                        ):
                            w, self.window = self.window, trio.Event()
                            w.set()
                    kick.event.set()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        finally:
            self._kicks.discard(kick)
            await trio.aclose_forcefully(stream)


class _Kick:
    def __init__(self) -> None:
        self.event = trio.Event()


class _GracefulConnection(h2.connection.H2Connection):
    """h2 closes its whole state machine on any GOAWAY; after a graceful one the
    streams below its last_stream_id must still finish."""

    def _receive_goaway_frame(self, frame: Any) -> tuple[list[Any], list[Any]]:
        state = self.state_machine.state
        frames, events = super()._receive_goaway_frame(frame)
        if not frame.error_code:
            self.state_machine.state = state
        return frames, events


@attrs.define
class Response:
    status: int = 0
    headers: Headers = attrs.Factory(list)
    body: bytes = b""
    trailers: Headers = attrs.Factory(list)
    reset_code: int | None = None

    def header(self, name: bytes) -> bytes | None:
        return next((v for k, v in self.headers if k == name), None)


class RawClient:
    """An h2c client connection that can also send what a well-behaved client would not."""

    def __init__(self, stream: trio.SocketStream, validate: bool = True) -> None:
        self.stream = stream
        self.conn = _GracefulConnection(
            h2.config.H2Configuration(
                client_side=True,
                header_encoding=None,
                validate_outbound_headers=validate,
                normalize_outbound_headers=validate,
            )
        )
        self.conn.initiate_connection()
        self.responses: dict[int, Response] = {}
        self.done: dict[int, trio.Event] = {}
        self.goaway: h2.events.ConnectionTerminated | None = None
        self.goaway_received = trio.Event()
        self.pong = trio.Event()
        self.first_data: dict[int, trio.Event] = {}
        self.reset_seen: dict[int, trio.Event] = {}
        self._send_lock = trio.StrictFIFOLock()

    @classmethod
    async def open(cls, port: int, validate: bool = True) -> RawClient:
        return cls(await trio.open_tcp_stream("127.0.0.1", port), validate)

    async def run(self) -> None:
        await self.flush()
        try:
            while True:
                data = await self.stream.receive_some(65536)
                if not data:
                    break
                for e in self.conn.receive_data(data):
                    self._event(e)
                await self.flush()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        for ev in self.done.values():
            ev.set()

    def _event(self, e: Any) -> None:
        sid = getattr(e, "stream_id", None)
        r = self.responses.get(sid) if sid is not None else None
        if isinstance(e, h2.events.ResponseReceived) and r is not None:
            r.status = int(dict(e.headers)[b":status"])
            r.headers = list(e.headers)
        elif isinstance(e, h2.events.DataReceived) and r is not None:
            r.body += e.data or b""
            self.conn.acknowledge_received_data(e.flow_controlled_length or 0, e.stream_id or 0)
            self.first_data[sid or 0].set()
        elif isinstance(e, h2.events.TrailersReceived) and r is not None:
            r.trailers = list(e.headers)
        elif isinstance(e, h2.events.StreamEnded) and r is not None:
            self.done[sid or 0].set()
        elif isinstance(e, h2.events.StreamReset) and r is not None:
            r.reset_code = int(e.error_code or 0)
            self.done[sid or 0].set()
            self.reset_seen[sid or 0].set()
        elif isinstance(e, h2.events.PingAckReceived):
            self.pong.set()
        elif isinstance(e, h2.events.ConnectionTerminated):
            self.goaway = e
            self.goaway_received.set()

    async def flush(self) -> None:
        async with self._send_lock:
            data = self.conn.data_to_send()
            if data:
                await self.stream.send_all(data)

    async def start(self, headers: Headers, body: bytes | None = b"") -> int:
        """Open a stream; ``body`` None leaves the request open."""
        sid = self.conn.get_next_available_stream_id()
        self.responses[sid] = Response()
        self.done[sid] = trio.Event()
        self.first_data[sid] = trio.Event()
        self.reset_seen[sid] = trio.Event()
        self.conn.send_headers(sid, headers, end_stream=body == b"")
        if body:
            self.conn.send_data(sid, body, end_stream=True)
        await self.flush()
        return sid

    async def wait(self, sid: int) -> Response:
        await self.done[sid].wait()
        return self.responses[sid]

    async def request(self, headers: Headers, body: bytes = b"") -> Response:
        return await self.wait(await self.start(headers, body))


def get(path: bytes, authority: bytes = b"web", extra: Headers | None = None) -> Headers:
    return [
        (b":method", b"GET"),
        (b":scheme", b"http"),
        (b":authority", authority),
        (b":path", path),
        *(extra or []),
    ]


# --- gRPC ------------------------------------------------------------------------------


@attrs.define
class EchoService:
    """``test.Echo``: Unary, ServerStream, ClientStream, Bidi on raw bytes; Flaky fails
    its first ``fail_first`` calls with UNAVAILABLE."""

    fail_first: int = 0
    calls: int = 0
    metadata: list[dict[str, str]] = attrs.Factory(list)
    lock: threading.Lock = attrs.Factory(threading.Lock)

    def _seen(self, ctx: grpc.ServicerContext) -> None:
        with self.lock:
            self.metadata.append(dict(ctx.invocation_metadata()))

    def unary(self, req: bytes, ctx: grpc.ServicerContext) -> bytes:
        self._seen(ctx)
        return req

    def server_stream(self, req: bytes, ctx: grpc.ServicerContext) -> Iterator[bytes]:
        self._seen(ctx)
        count = int(req.decode())
        for i in range(count):
            yield b"msg %d" % i

    def client_stream(self, reqs: Iterator[bytes], ctx: grpc.ServicerContext) -> bytes:
        self._seen(ctx)
        return b"|".join(reqs)

    def bidi(self, reqs: Iterator[bytes], ctx: grpc.ServicerContext) -> Iterator[bytes]:
        self._seen(ctx)
        for r in reqs:
            yield b"echo " + r

    def flaky(self, req: bytes, ctx: grpc.ServicerContext) -> bytes:
        with self.lock:
            self.calls += 1
            n = self.calls
        if n <= self.fail_first:
            ctx.abort(grpc.StatusCode.UNAVAILABLE, f"call {n} fails")
        return req

    def flaky_stream(self, reqs: Iterator[bytes], ctx: grpc.ServicerContext) -> bytes:
        with self.lock:
            self.calls += 1
            n = self.calls
        if n <= self.fail_first:
            ctx.abort(grpc.StatusCode.UNAVAILABLE, f"call {n} fails")
        return b"|".join(reqs)

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            "test.Echo",
            {
                "Unary": grpc.unary_unary_rpc_method_handler(self.unary),
                "ServerStream": grpc.unary_stream_rpc_method_handler(self.server_stream),
                "ClientStream": grpc.stream_unary_rpc_method_handler(self.client_stream),
                "Bidi": grpc.stream_stream_rpc_method_handler(self.bidi),
                "Flaky": grpc.unary_unary_rpc_method_handler(self.flaky),
                "FlakyStream": grpc.stream_unary_rpc_method_handler(self.flaky_stream),
            },
        )


class GrpcServer:
    """A grpcio server (its own threads) on a free loopback port."""

    def __init__(self, service: EchoService) -> None:
        self.service = service
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=16),
            options=[("grpc.max_receive_message_length", 64 << 20)],
        )
        self.server.add_generic_rpc_handlers((service.handler(),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop(grace=None)


def channel(port: int) -> grpc.Channel:
    return grpc.insecure_channel(
        f"127.0.0.1:{port}",
        options=[
            ("grpc.max_receive_message_length", 64 << 20),
            ("grpc.enable_retries", 0),
        ],
    )
