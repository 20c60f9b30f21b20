"""Fixtures of the h2 router tests: gRPC and raw h2 backends, h2 linker configs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import trio

from linkpy.linker import Linker

from .peers import BackendHandler, EchoService, GrpcServer, RawBackend

MakeRaw = Callable[..., Awaitable[RawBackend]]


@pytest.fixture
async def grpc_echo() -> AsyncIterator[GrpcServer]:
    server = GrpcServer(EchoService())
    server.start()
    try:
        yield server
    finally:
        await trio.to_thread.run_sync(server.stop)


@pytest.fixture
def raw_backend(nursery: trio.Nursery) -> MakeRaw:
    async def make(handler: BackendHandler, eager: bool = False) -> RawBackend:
        b = RawBackend(handler, eager)
        await nursery.start(b.serve)
        return b

    return make


def h2_config(
    d: Path,
    *,
    identifier: str = "kind: io.l5d.header.path\n    segments: 1",
    dtab: str = "/svc => /#/io.l5d.fs;",
    extra: str = "",
    server: str = "",
) -> str:
    return f"""
admin: {{ip: 127.0.0.1, port: 0}}
namers:
- kind: io.l5d.fs
  rootDir: {d}
  pollIntervalMs: 20
routers:
- protocol: h2
  label: h2
  dtab: |
    {dtab}
  bindingTimeoutMs: 2000
  identifier:
    {identifier}
{extra}
  servers:
  - port: 0
    ip: 127.0.0.1
{server}
"""


def h2_port(linker: Linker) -> int:
    return linker.ports()["h2"][0]


def metric(linker: Linker, name: str) -> float:
    value = linker.metrics.flat().get(name)
    assert value is not None, f"no metric {name}"
    return float(value)


def open_streams(linker: Linker) -> float:
    """Streams open in the router, downstream and upstream."""
    flat = linker.metrics.flat()
    return sum(
        float(v)
        for k, v in flat.items()
        if k.endswith("/open_streams") or k.endswith("upstream_streams")
    )


async def settled(linker: Linker) -> float:
    """The open-streams total once the router had a moment to close what ended."""
    for _ in range(50):
        if open_streams(linker) == 0:
            return 0.0
        await trio.sleep(0.02)
    return open_streams(linker)
