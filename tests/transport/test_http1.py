"""HTTP/1.1 connections on real sockets: the socket fast path and the Stream API path.

A plain ``trio.SocketStream`` is read and written through its socket directly; any other
stream (TLS here) through the Stream API.  Both must carry the same bytes, keep trio's
checkpoint and cancellation rules, and keep socketOptions' read and write timeouts.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing
import trustme

from linkpy.proto.http1 import DATA, END
from linkpy.transport.http1 import (
    EAGER_READS,
    ClientConnection,
    ClientTimedOut,
    RequestParsers,
    ServerConnection,
    UpstreamTimedOut,
)

REQUEST = b"GET /a HTTP/1.1\r\nHost: web\r\n\r\n"


async def tcp_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    """(accepted, connected) ends of one loopback TCP connection."""
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    connected = await trio.open_tcp_stream("127.0.0.1", port)
    accepted = await listener.accept()
    await listener.aclose()
    return accepted, connected


@pytest.fixture(params=["plain", "tls"])
async def streams(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[trio.abc.Stream, trio.abc.Stream]]:
    """(server side, client side) of one connection, plain TCP or TLS over TCP."""
    accepted, connected = await tcp_pair()
    server: trio.abc.Stream = accepted
    client: trio.abc.Stream = connected
    if request.param == "tls":
        ca = trustme.CA()
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("localhost").configure_cert(server_ctx)
        client_ctx = ssl.create_default_context()
        ca.configure_trust(client_ctx)
        tls_server = trio.SSLStream(accepted, server_ctx, server_side=True)
        tls_client = trio.SSLStream(connected, client_ctx, server_hostname="localhost")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(tls_server.do_handshake)
            nursery.start_soon(tls_client.do_handshake)
        server, client = tls_server, tls_client
    yield server, client
    await trio.aclose_forcefully(server)
    await trio.aclose_forcefully(client)


async def test_only_a_plain_socket_stream_takes_the_fast_path(
    streams: tuple[trio.abc.Stream, trio.abc.Stream],
) -> None:
    server, client = streams
    plain = isinstance(server, trio.SocketStream)
    assert (ServerConnection(server).sock is not None) is plain
    assert (ClientConnection(client).sock is not None) is plain


async def test_a_request_and_a_large_response_both_ways(
    streams: tuple[trio.abc.Stream, trio.abc.Stream],
) -> None:
    """ClientConnection to ServerConnection; the 4 MiB body fills the socket buffers, so
    the writer waits for room and the reader for bytes."""
    server = ServerConnection(streams[0])
    client = ClientConnection(streams[1])
    body = bytes(range(256)) * (4 * 4096)
    got: list[bytes] = []

    async def serve() -> None:
        head = await server.receive_head()
        assert head is not None and head.target == b"/a" and head.host == b"web"
        await server.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)

    async def call() -> None:
        client.start_request(head_request=False)
        await client.send(REQUEST)
        resp = await client.receive_head()
        assert resp.status == 200
        while True:
            kind, value = await client.receive()
            if kind == END:
                break
            assert kind == DATA
            got.append(value)  # type: ignore[arg-type]

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            nursery.start_soon(call)
    assert b"".join(got) == body
    assert client.reusable


@pytest.mark.parametrize("side", ["server", "client"])
async def test_what_try_send_leaves_send_sends_from_there(
    streams: tuple[trio.abc.Stream, trio.abc.Stream], side: str
) -> None:
    """try_send takes what the socket takes at once (a part of 4 MiB on a plain socket,
    nothing on TLS); send(data, sent) sends the rest, and the peer reads every byte
    once, in order."""
    ours, peer = streams if side == "server" else (streams[1], streams[0])
    conn = ServerConnection(ours) if side == "server" else ClientConnection(ours)
    data = bytes(range(256)) * (4 * 4096)
    sent = conn.try_send(data)
    if isinstance(ours, trio.SocketStream):
        assert 0 < sent < len(data)
    else:
        assert sent == 0
    got = bytearray()

    async def read() -> None:
        while len(got) < len(data):
            got.extend(await peer.receive_some(65536))

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            await conn.send(data, sent)
    assert got == data


async def test_a_response_that_came_before_the_read_is_read(
    streams: tuple[trio.abc.Stream, trio.abc.Stream],
) -> None:
    # After a request goes out, the first read lets the other tasks run before it tries
    # the socket (the answer cannot be there yet): a checkpoint even when the answer is
    # there already.  And a read that finds nothing still waits for the bytes.
    server = ServerConnection(streams[0])
    client = ClientConnection(streams[1])
    for delay in (True, False):
        client.start_request(head_request=False)
        await client.send(REQUEST)
        head = await server.receive_head()
        assert head is not None
        if delay:
            await server.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await trio.testing.wait_all_tasks_blocked()
            with trio.testing.assert_checkpoints():
                resp = await client.receive_head()
        else:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(server.send, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                resp = await client.receive_head()
        assert resp.status == 200
        assert await client.receive() == (DATA, b"ok")
        assert (await client.receive())[0] == END
        assert client.reusable


async def test_receive_head_is_a_checkpoint_when_the_head_is_already_read() -> None:
    accepted, connected = await tcp_pair()
    conn = ServerConnection(accepted)
    await connected.send_all(REQUEST + REQUEST)  # pipelined: the second is parsed early
    await trio.testing.wait_all_tasks_blocked()
    with trio.testing.assert_checkpoints():
        assert await conn.receive_head() is not None
    with trio.testing.assert_checkpoints():
        assert await conn.receive_head() is not None  # no read at all


async def test_a_cancelled_receive_head_consumes_nothing() -> None:
    accepted, connected = await tcp_pair()
    conn = ServerConnection(accepted)
    await connected.send_all(REQUEST)
    with trio.CancelScope() as scope:
        scope.cancel()
        await conn.receive_head()
    assert scope.cancelled_caught
    head = await conn.receive_head()
    assert head is not None and head.target == b"/a"


async def test_read_timeouts(autojump_clock: trio.abc.Clock) -> None:
    accepted, connected = await tcp_pair()
    server = ServerConnection(accepted, read_timeout=1.0)
    with pytest.raises(ClientTimedOut):
        await server.receive_head()
    client = ClientConnection(connected, read_timeout=1.0)
    client.start_request(head_request=False)
    await client.send(REQUEST)
    with pytest.raises(UpstreamTimedOut):
        await client.receive_head()
    assert client.closed  # aborted


async def small_buffers() -> tuple[trio.SocketStream, trio.SocketStream]:
    accepted, connected = await tcp_pair()
    for s in (accepted, connected):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return accepted, connected


async def test_write_timeouts(autojump_clock: trio.abc.Clock) -> None:
    big = b"x" * (8 << 20)  # far more than the buffers hold, and nobody reads
    silent, connected = await small_buffers()
    client = ClientConnection(connected, write_timeout=1.0)
    with pytest.raises(UpstreamTimedOut):
        await client.send(big)
    assert client.closed  # aborted
    accepted, deaf = await small_buffers()
    server = ServerConnection(accepted, write_timeout=1.0)
    with pytest.raises(ClientTimedOut):
        await server.send(big)
    for s in (silent, accepted, deaf):
        await trio.aclose_forcefully(s)


async def test_a_body_that_is_always_ready_still_lets_a_cancellation_land() -> None:
    """A body read faster than it is forwarded never waits on the fast path; every
    EAGER_READS reads one waits anyway, so a cancellation lands, losing no byte."""
    accepted, connected = await tcp_pair()
    for s in (accepted, connected):  # room for the whole body in the kernel
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    conn = ServerConnection(accepted)
    body = b"y" * (2 << 20)
    head = b"POST /a HTTP/1.1\r\nHost: web\r\nContent-Length: %d\r\n\r\n" % len(body)
    got: list[bytes] = []

    async with trio.open_nursery() as nursery:
        nursery.start_soon(connected.send_all, head + body)
        await trio.testing.wait_all_tasks_blocked()  # all sent, or the buffers are full
        assert await conn.receive_head() is not None
        with trio.CancelScope() as scope:
            scope.cancel()
            while True:
                kind, value = await conn.receive_body()
                if kind == END:
                    break
                got.append(value)  # type: ignore[arg-type]
        assert scope.cancelled_caught
        assert len(got) <= EAGER_READS
        while True:  # the rest, uncancelled
            kind, value = await conn.receive_body()
            if kind == END:
                break
            got.append(value)  # type: ignore[arg-type]
    assert b"".join(got) == body


# -- a connection between requests waits without a parser -------------------------------


async def next_head(conn: ServerConnection) -> object:
    """What a server's loop does between requests: idle, wait, wake, read the head."""
    if conn.idle():
        assert conn.sock is not None
        await trio.lowlevel.wait_readable(conn.sock)
        conn.wake()
        return await conn.receive_head(waited=True)
    return await conn.receive_head()


async def test_an_idle_connection_lends_its_parser_to_the_pool() -> None:
    parsers = RequestParsers()
    (a, client_a), (b, client_b) = await tcp_pair(), await tcp_pair()
    conn_a = ServerConnection(a, parsers=parsers)
    parser = conn_a.parser
    await client_a.send_all(REQUEST)
    head = await next_head(conn_a)
    assert head is not None
    assert conn_a.idle()  # the request is done and nothing more came: the parser goes
    assert parsers.free == [parser] and conn_a.parser is not parser
    conn_b = ServerConnection(b, parsers=parsers)
    assert conn_b.parser is parser and parsers.free == []
    await client_b.send_all(REQUEST.replace(b"/a", b"/b"))
    head_b = await next_head(conn_b)
    assert getattr(head_b, "target", None) == b"/b"
    # a takes another parser when its next request comes, in two pieces, with a body
    body_request = b"POST /c HTTP/1.1\r\nHost: web\r\nContent-Length: 5\r\n\r\nhello"

    async def send() -> None:
        await client_a.send_all(body_request[:10])
        await trio.testing.wait_all_tasks_blocked()
        await client_a.send_all(body_request[10:])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        head_a = await next_head(conn_a)
    assert getattr(head_a, "target", None) == b"/c"
    assert conn_a.parser is not parser
    assert await conn_a.receive_body() == (DATA, b"hello")
    assert (await conn_a.receive_body())[0] == END
    for s in (a, b, client_a, client_b):
        await s.aclose()


async def test_a_parser_in_the_middle_of_a_request_stays_with_its_connection() -> None:
    parsers = RequestParsers()
    accepted, connected = await tcp_pair()
    conn = ServerConnection(accepted, parsers=parsers)
    await connected.send_all(REQUEST[:10])
    await trio.testing.wait_all_tasks_blocked()
    assert not conn.idle()  # it had bytes: it parsed them
    parser = conn.parser
    assert conn.idle() and conn.parser is parser and parsers.free == []
    await connected.send_all(REQUEST[10:])
    assert conn.sock is not None
    await trio.lowlevel.wait_readable(conn.sock)
    conn.wake()
    head = await conn.receive_head(waited=True)
    assert head is not None and head.target == b"/a" and conn.parser is parser
    await accepted.aclose()
    await connected.aclose()


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /a HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n",
        b"GET /a HTTP/1.0\r\nHost: web\r\n\r\n",
    ],
)
async def test_no_parser_that_ended_a_connection_goes_to_the_pool(request_bytes: bytes) -> None:
    # llhttp parses no request after one that does not keep the connection alive
    parsers = RequestParsers()
    accepted, connected = await tcp_pair()
    conn = ServerConnection(accepted, parsers=parsers)
    await connected.send_all(request_bytes)
    head = await next_head(conn)
    assert head is not None and not getattr(head, "keep_alive", True)
    assert conn.idle() and parsers.free == []
    await accepted.aclose()
    await connected.aclose()


async def test_the_pool_keeps_at_most_its_limit() -> None:
    parsers = RequestParsers(limit=1)
    pairs = [await tcp_pair() for _ in range(3)]
    conns = [ServerConnection(accepted, parsers=parsers) for accepted, _ in pairs]
    assert all(c.idle() for c in conns)
    assert len(parsers.free) == 1
    for accepted, connected in pairs:
        await accepted.aclose()
        await connected.aclose()
