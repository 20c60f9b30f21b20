"""The HTTP/2 connection's reader on the socket fast path (linkpy.transport.h2)."""

from __future__ import annotations

import socket

import hpack
import trio

from linkpy.proto.h2 import PREFACE, H2Settings, frame
from linkpy.transport.h2 import DATA, RECV_SIZE, H2Stream, ServerConn
from linkpy.transport.http1 import EAGER_READS

from .test_http1 import tcp_pair

GET = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"a"), (b":path", b"/")]


async def test_frames_that_are_always_ready_still_let_the_handlers_run() -> None:
    """Bytes that are already there are read without waiting; every EAGER_READS reads
    the reader waits anyway, so the streams' handlers run while a peer floods it.

    (The handler runs within two such rounds: trio may run the reader first in the
    batch where both are ready.)"""
    accepted, connected = await tcp_pair()
    for s in (accepted, connected):  # room for all of it in the kernel
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    total = 3 << 20
    chunk = b"d" * 16384
    flood = PREFACE + frame(4, 0, 0) + frame(1, 4, 1, hpack.Encoder().encode(GET))
    flood += b"".join(frame(0, 0, 1, chunk) for _ in range(total // len(chunk)))
    await connected.send_all(flood)
    seen: list[int] = []
    got = 0
    done = trio.Event()

    async def handler(s: H2Stream) -> None:
        nonlocal got
        seen.append(s.buffered)  # what the reader had fed it when the handler first ran
        while got < total:
            kind, value, _ = await s.receive()
            if kind == DATA:
                got += len(value)  # type: ignore[arg-type]
        done.set()

    window = 8 << 20
    conn = ServerConn(
        accepted,
        H2Settings(initial_stream_window=window, initial_connection_window=window),
        handler,
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.serve)
        await done.wait()
        nursery.cancel_scope.cancel()
    assert got == total
    assert seen and seen[0] <= 2 * (EAGER_READS + 1) * RECV_SIZE < total
    await trio.aclose_forcefully(connected)
