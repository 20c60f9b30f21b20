"""io.l5d.consul end to end: a router resolving through the namer, real clients."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import httpx
import trio

from linkpy.testing import FakeConsul

from ...backends import Backend
from ...conftest import MakeBackend, StartLinker, router_url, write_disco
from .helpers import eventually, registry


def config(
    consul: FakeConsul,
    *,
    dtab: str = "/svc => /#/io.l5d.consul/dc1;",
    namer: str = "",
    namers: str = "",
) -> str:
    return f"""
admin: {{ip: 127.0.0.1, port: 0}}
namers:
- kind: io.l5d.consul
  host: 127.0.0.1
  port: {consul.port}
{namer}
{namers}
routers:
- protocol: http
  dtab: |
    {dtab}
  bindingTimeoutMs: 3000
  servers:
  - {{port: 0, ip: 127.0.0.1}}
"""


async def test_instances_change_under_load(
    consul: FakeConsul, backend: MakeBackend, start_linker: StartLinker, http: httpx.AsyncClient
) -> None:
    """Instances come and go while a client sends requests: none fails, new ones are used."""
    b1, b2, b3 = [await backend(f"b{i}") for i in (1, 2, 3)]
    consul.register("web", "127.0.0.1", b1.port, service_id="b1", checks={"c": "passing"})
    linker = await start_linker(config(consul, namer="  useHealthCheck: true"), registry())
    url = router_url(linker)
    seen: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    stop = trio.Event()

    async def client() -> None:
        while not stop.is_set():
            r = await http.get(url + "/", headers={"Host": "web"})
            statuses[r.status_code] += 1
            seen[r.text.split()[0]] += 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(client)
        nursery.start_soon(client)
        await eventually(lambda: seen["b1"] > 10)
        consul.register("web", "127.0.0.1", b2.port, service_id="b2", checks={"c": "passing"})
        await eventually(lambda: seen["b2"] > 10)
        consul.set_check("b1", "critical", check_id="c")  # b1 fails its check: drained
        consul.register("web", "127.0.0.1", b3.port, service_id="b3", checks={"c": "passing"})
        await eventually(lambda: seen["b3"] > 10)
        consul.deregister("b2")
        await trio.sleep(0.3)  # let requests already on their way to b1 and b2 finish
        before = (seen["b1"], seen["b2"])
        await eventually(lambda: seen["b3"] > 50)
        stop.set()
    assert statuses == Counter({200: sum(seen.values())}), statuses
    assert (seen["b1"], seen["b2"]) == before  # nothing more went to b1 and b2


async def test_set_host_rewrites_the_host_header(
    consul: FakeConsul, backend: MakeBackend, start_linker: StartLinker, http: httpx.AsyncClient
) -> None:
    b = await backend("b")
    consul.register("web", "127.0.0.1", b.port, tags=["v2"])
    linker = await start_linker(
        config(
            consul,
            dtab="/svc => /#/io.l5d.consul/.local/v2;",
            namer="  setHost: true\n  includeTag: true",
        ),
        registry(),
    )
    r = await http.get(router_url(linker) + "/x", headers={"Host": "web"})
    assert r.status_code == 200 and r.text == "b GET /x"
    assert b.seen[0].header("host") == "v2.web.service.dc1.consul"
    assert b.seen[0].header("l5d-dst-client") == "/#/io.l5d.consul/.local/v2/web"


async def test_unknown_services_fall_back_and_other_namers_are_unaffected(
    consul: FakeConsul,
    backend: MakeBackend,
    start_linker: StartLinker,
    http: httpx.AsyncClient,
    disco: Path,
) -> None:
    in_consul: Backend = await backend("consul")
    in_files: Backend = await backend("files")
    consul.register("web", "127.0.0.1", in_consul.port)
    write_disco(disco, "web", in_files)
    write_disco(disco, "users", in_files)
    linker = await start_linker(
        config(
            consul,
            dtab="/svc => /#/io.l5d.consul/dc1 | /#/io.l5d.fs;",  # Consul first
            namers=f"- kind: io.l5d.fs\n  rootDir: {disco}\n  pollIntervalMs: 20",
        ),
        registry(),
    )
    url = router_url(linker)
    r = await http.get(url + "/", headers={"Host": "web"})
    assert r.text == "consul GET /"
    r = await http.get(url + "/", headers={"Host": "users"})  # Neg in Consul: the fs namer
    assert r.text == "files GET /"
    # Consul now answers garbage, forever: routing goes on with the last good answers
    consul.garble_next(None)
    consul.drop_connections()
    for _ in range(20):
        r = await http.get(url + "/", headers={"Host": "web"})
        assert r.text == "consul GET /"
        r = await http.get(url + "/", headers={"Host": "users"})
        assert r.text == "files GET /"
    metrics = (await http.get(f"http://127.0.0.1:{linker.admin_port}/admin/metrics.json")).json()
    assert metrics["namer/io.l5d.consul/errors/malformed"] >= 1
    state = await http.get(f"http://127.0.0.1:{linker.admin_port}/namer_state/io.l5d.consul.json")
    assert state.status_code in (200, 404)
