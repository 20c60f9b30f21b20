"""Resets, protocol errors and half-closed streams through the h2 router."""

from __future__ import annotations

import random
from pathlib import Path

import trio
from h2.errors import ErrorCodes

from ..conftest import StartLinker, require_tool, run, write_disco
from .conftest import MakeRaw, h2_config, h2_port, metric, settled
from .peers import Exchange, RawClient, get

HOST_ID = "kind: io.l5d.header.token"


class _At:
    def __init__(self, port: int) -> None:
        self.port = port


async def test_backend_reset_mid_body_reaches_the_client(
    start_linker: StartLinker, disco: Path, raw_backend: MakeRaw
) -> None:
    async def half_then_reset(ex: Exchange) -> None:
        ex.respond(200)
        await ex.send(b"x" * 1000)
        ex.reset(ErrorCodes.ENHANCE_YOUR_CALM)

    backend = await raw_backend(half_then_reset)
    write_disco(disco, "web", _At(backend.port))  # type: ignore[arg-type]
    linker = await start_linker(h2_config(disco, identifier=HOST_ID))
    c = await RawClient.open(h2_port(linker))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(c.run)
        r = await c.request(get(b"/reset"))
        assert r.status == 200
        assert r.reset_code == ErrorCodes.ENHANCE_YOUR_CALM  # the same code
        # the connection carries on
        r = await c.request(get(b"/reset"))
        assert r.reset_code == ErrorCodes.ENHANCE_YOUR_CALM
        nursery.cancel_scope.cancel()
    # curl reports the reset as an HTTP/2 stream error
    curl = require_tool("curl")
    url = f"http://127.0.0.1:{h2_port(linker)}/"
    out = await run(
        curl, "-s", "-S", "--http2-prior-knowledge", "-H", "Host: web", url, check=False
    )
    assert out.returncode == 92  # CURLE_HTTP2_STREAM
    assert metric(linker, "rt/h2/server/127.0.0.1/%d/failures" % h2_port(linker)) >= 2
    assert await settled(linker) == 0


async def test_backend_reset_before_the_response(
    start_linker: StartLinker, disco: Path, raw_backend: MakeRaw
) -> None:
    async def refuse_like(ex: Exchange) -> None:
        ex.reset(ErrorCodes.INTERNAL_ERROR)

    backend = await raw_backend(refuse_like)
    write_disco(disco, "web", _At(backend.port))  # type: ignore[arg-type]
    linker = await start_linker(h2_config(disco, identifier=HOST_ID))
    c = await RawClient.open(h2_port(linker))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(c.run)
        r = await c.request(get(b"/"))
        assert r.status == 0 and r.reset_code == ErrorCodes.INTERNAL_ERROR
        nursery.cancel_scope.cancel()
    assert await settled(linker) == 0


async def test_client_reset_cancels_the_upstream_stream(
    start_linker: StartLinker, disco: Path, raw_backend: MakeRaw
) -> None:
    """A downstream reset cancels only that stream's exchange: the connection's other
    streams, in flight or new, are served."""
    started = trio.Event()
    release = trio.Event()

    async def endless(ex: Exchange) -> None:
        path = ex.header(b":path")
        if path != b"/stream":
            if path == b"/slow":
                await release.wait()
            ex.respond(200)
            await ex.send(path or b"", end=True)
            return
        ex.respond(200)
        started.set()
        try:
            while ex.stream_id not in {sid for sid, _ in ex.peer.resets}:
                await ex.send(b"tick")
                await trio.sleep(0.005)
        except Exception:  # the stream is gone on the backend's side
            return

    backend = await raw_backend(endless)
    write_disco(disco, "web", _At(backend.port))  # type: ignore[arg-type]
    linker = await start_linker(h2_config(disco, identifier=HOST_ID))
    c = await RawClient.open(h2_port(linker))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(c.run)
        slow_sid = await c.start(get(b"/slow"))
        sid = await c.start(get(b"/stream"))
        await started.wait()
        await c.first_data[sid].wait()
        c.conn.reset_stream(sid, ErrorCodes.CANCEL)
        await c.flush()
        await backend.reset_seen.wait()
        for path in (b"/after", b"/again"):  # new streams on the same connection
            r = await c.request(get(path))
            assert r.status == 200 and r.body == path
        release.set()
        r = await c.wait(slow_sid)  # in flight during the reset
        assert r.status == 200 and r.body == b"/slow"
        assert c.goaway is None
        nursery.cancel_scope.cancel()
    assert [code for _, code in backend.resets] == [ErrorCodes.CANCEL]
    assert await settled(linker) == 0


async def test_a_malformed_stream_leaves_the_others_alone(
    start_linker: StartLinker, disco: Path, raw_backend: MakeRaw
) -> None:
    release = trio.Event()

    async def slow(ex: Exchange) -> None:
        if ex.header(b":path") == b"/slow":
            await release.wait()
        ex.respond(200)
        await ex.send(ex.header(b":path") or b"", end=True)

    backend = await raw_backend(slow)
    write_disco(disco, "web", _At(backend.port))  # type: ignore[arg-type]
    linker = await start_linker(h2_config(disco, identifier=HOST_ID))
    c = await RawClient.open(h2_port(linker), validate=False)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(c.run)
        slow_sid = await c.start(get(b"/slow"))
        bad = [
            (b":method", b"GET"),
            (b":scheme", b"http"),
            (b":authority", b"web"),
            (b":path", b"/bad"),
            (b"Upper-Case", b"not allowed in HTTP/2"),
        ]
        r = await c.request(bad)
        assert r.reset_code == ErrorCodes.PROTOCOL_ERROR
        no_path = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"web")]
        r = await c.request(no_path)
        assert r.reset_code == ErrorCodes.PROTOCOL_ERROR
        conn_specific = [*get(b"/c"), (b"connection", b"keep-alive")]
        r = await c.request(conn_specific)
        assert r.reset_code == ErrorCodes.PROTOCOL_ERROR
        r = await c.request(get(b"/fine"))
        assert r.status == 200 and r.body == b"/fine"
        release.set()
        r = await c.wait(slow_sid)
        assert r.status == 200 and r.body == b"/slow"
        assert c.goaway is None
        nursery.cancel_scope.cancel()
    assert await settled(linker) == 0


async def test_connection_error_gets_goaway(start_linker: StartLinker, disco: Path) -> None:
    linker = await start_linker(h2_config(disco, identifier=HOST_ID))
    stream = await trio.open_tcp_stream("127.0.0.1", h2_port(linker))
    c = RawClient(stream)
    await c.flush()
    # a DATA frame on stream 0 is a connection error of type PROTOCOL_ERROR
    await stream.send_all(b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(c.run)
        await c.goaway_received.wait()
        nursery.cancel_scope.cancel()
    assert c.goaway is not None and c.goaway.error_code == ErrorCodes.PROTOCOL_ERROR


async def test_response_ends_before_the_request_body(
    start_linker: StartLinker, disco: Path, raw_backend: MakeRaw
) -> None:
    """A complete response to an incomplete request: the router ends the response,
    then resets both streams, so nothing stays half-closed (Linkerd issue #1696)."""

    async def early(ex: Exchange) -> None:
        ex.respond(200)
        await ex.send(b"early", end=True)

    backend = await raw_backend(early, eager=True)
    write_disco(disco, "web", _At(backend.port))  # type: ignore[arg-type]
    linker = await start_linker(h2_config(disco, identifier=HOST_ID))
    c = await RawClient.open(h2_port(linker))
    post = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"web"), (b":path", b"/")]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(c.run)
        sid = await c.start(post, None)  # the request body never ends
        c.conn.send_data(sid, b"part", end_stream=False)
        await c.flush()
        r = await c.wait(sid)
        assert r.status == 200 and r.body == b"early"
        await c.reset_seen[sid].wait()
        assert r.reset_code == ErrorCodes.NO_ERROR  # RFC 9113 section 8.1
        await backend.reset_seen.wait()
        nursery.cancel_scope.cancel()
    assert [code for _, code in backend.resets] == [ErrorCodes.CANCEL]
    assert await settled(linker) == 0


async def test_garbage_never_takes_the_router_down(
    start_linker: StartLinker, disco: Path, raw_backend: MakeRaw
) -> None:
    """Random frames (after a valid preface) and random bytes: connections may be
    closed, the router keeps serving."""

    async def ok(ex: Exchange) -> None:
        ex.respond(200, end=True)

    backend = await raw_backend(ok)
    write_disco(disco, "web", _At(backend.port))  # type: ignore[arg-type]
    linker = await start_linker(h2_config(disco, identifier=HOST_ID))
    port = h2_port(linker)
    rng = random.Random(5)
    junks = []
    for i in range(60):
        if i % 2:
            # a plausible frame header (length, type, flags, stream) with a random body
            length = rng.randrange(0, 64)
            head = length.to_bytes(3, "big") + bytes([rng.randrange(0, 10), rng.randrange(256)])
            junks.append(head + rng.randrange(0, 8).to_bytes(4, "big") + rng.randbytes(length))
        else:
            junks.append(rng.randbytes(rng.randrange(1, 200)))

    async def throw(junk: bytes) -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await RawClient(stream).flush()  # preface and SETTINGS
        try:
            await stream.send_all(junk)
            with trio.move_on_after(0.5):  # (the router may close, or wait for more)
                while await stream.receive_some(65536):
                    pass
        except (trio.BrokenResourceError, OSError):
            pass
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        for junk in junks:
            nursery.start_soon(throw, junk)
    c = await RawClient.open(port)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(c.run)
        r = await c.request(get(b"/after"))
        assert r.status == 200
        nursery.cancel_scope.cancel()
    assert await settled(linker) == 0


async def test_ping_and_the_stream_limit(
    start_linker: StartLinker, disco: Path, raw_backend: MakeRaw
) -> None:
    release = trio.Event()

    async def held(ex: Exchange) -> None:
        await release.wait()
        ex.respond(200, end=True)

    backend = await raw_backend(held)
    write_disco(disco, "web", _At(backend.port))  # type: ignore[arg-type]
    server = "    maxConcurrentStreamsPerConnection: 2\n"
    linker = await start_linker(h2_config(disco, identifier=HOST_ID, server=server))
    stream = await trio.open_tcp_stream("127.0.0.1", h2_port(linker))
    c = RawClient(stream)
    # three streams in the first flight, before the router's SETTINGS arrive
    sids = [await c.start(get(b"/%d" % i)) for i in range(3)]
    c.conn.ping(b"linkpy!!")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(c.run)
        await c.pong.wait()
        r = await c.wait(sids[2])
        assert r.reset_code == ErrorCodes.REFUSED_STREAM  # over the limit of 2
        release.set()
        assert [(await c.wait(sid)).status for sid in sids[:2]] == [200, 200]
        nursery.cancel_scope.cancel()
    assert c.conn.remote_settings.max_concurrent_streams == 2
    assert await settled(linker) == 0
