"""io.l5d.consul passes linkpy's namer conformance suite over the Consul emulator."""

from __future__ import annotations

from typing import Any

import trio

from linkpy.naming import Path
from linkpy.plugin import Namer
from linkpy.testing import FakeConsul, check_namer

from .helpers import make_namer


class ConsulScenario:
    def __init__(self, consul: FakeConsul, **config: Any) -> None:
        self.consul = consul
        self.config = config
        self.ids: list[str] = []

    def namer(self) -> Namer:
        return make_namer(self.consul, watchIdleSecs=1, **self.config)

    def existing(self) -> Path:
        return Path.read("/dc1/users")

    def missing(self) -> Path:
        return Path.read("/dc1/nobody")

    async def set_addresses(self, addresses: list[tuple[str, int]]) -> None:
        for sid in self.ids:
            self.consul.deregister(sid)
        self.ids = [
            self.consul.register("users", host, port, service_id=f"users-{i}")
            for i, (host, port) in enumerate(addresses)
        ]

    async def break_backend(self) -> None:
        self.consul.fail_next(500, None, message="rpc error: something broke")
        self.consul.drop_connections()

    async def mend_backend(self) -> None:
        self.consul.clear_faults()

    def open_watches(self) -> int:
        return self.consul.open_connections


async def test_catalog_reads_conform(nursery: trio.Nursery) -> None:
    consul = FakeConsul()
    await nursery.start(consul.serve)
    await check_namer(ConsulScenario(consul))


async def test_health_reads_conform(nursery: trio.Nursery) -> None:
    consul = FakeConsul()
    await nursery.start(consul.serve)
    await check_namer(ConsulScenario(consul, useHealthCheck=True, consistencyMode="stale"))
