"""The Marathon namer under the HTTP router, with real clients and backends."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import httpx
import trio

from linkpy.config.registry import Registry
from linkpy.naming import AddrBound
from linkpy.naming import Path as NPath
from linkpy.testing import FakeMarathon
from linkpy_marathon import MarathonConfig, MarathonNamer

from ...conftest import MakeBackend, StartLinker, router_url, write_disco
from .conftest import eventually

REGISTRY = Registry.discover().with_plugins("linkpy.namers", {"io.l5d.marathon": MarathonConfig})


DTAB = """/marathonId => /#/io.l5d.marathon;
    /svc => /$/io.buoyant.http.domainToPathPfx/marathonId;"""


def linker_config(marathon: FakeMarathon, *, extra_namers: str = "", dtab: str = DTAB) -> str:
    return f"""
admin: {{ip: 127.0.0.1, port: 0}}
namers:
- kind: io.l5d.marathon
  host: 127.0.0.1
  port: {marathon.port}
  ttlMs: 60000
  jitterMs: 0
  requestTimeoutMs: 500
{extra_namers}
routers:
- protocol: http
  label: out
  dtab: |
    {dtab}
  bindingTimeoutMs: 5000
  servers:
  - port: 0
    ip: 127.0.0.1
"""


async def test_endpoints_come_and_go_while_a_client_sends_requests(
    marathon: FakeMarathon,
    backend: MakeBackend,
    start_linker: StartLinker,
    http: httpx.AsyncClient,
) -> None:
    backends = [await backend(f"users{i}") for i in range(4)]
    marathon.add_app("/team/users")
    tasks = {0: marathon.add_task("/team/users", "127.0.0.1", [backends[0].port])}
    linker = await start_linker(linker_config(marathon), REGISTRY)
    url = router_url(linker) + "/hello"
    ((_, namer),) = linker.namers
    assert isinstance(namer, MarathonNamer)
    addr = namer.addr_var(NPath.read("/team/users"))
    #: answers by phase: a request counts in the phase it started in
    answers: list[Counter[str]] = [Counter()]
    failures: list[str] = []
    stop = trio.Event()

    async def client() -> None:
        while not stop.is_set():
            phase = answers[-1]
            r = await http.get(url, headers={"Host": "users.team"})
            if r.status_code != 200:
                failures.append(f"{r.status_code} {r.headers.get('l5d-err')}")
            else:
                phase[r.text.split()[0]] += 1

    def ports() -> set[int]:
        a = addr.sample()
        return {x.port for x in a.addresses} if isinstance(a, AddrBound) else set()

    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(client)
        await eventually(lambda: answers[-1]["users0"] > 10, "users0 serves")
        for i in (1, 2, 3):  # scale up: each new task gets traffic
            tasks[i] = marathon.add_task("/team/users", "127.0.0.1", [backends[i].port])
            name = f"users{i}"
            await eventually(lambda: answers[-1][name] > 10, f"{name} serves")  # noqa: B023
        for i in (0, 1):  # scale down: the removed tasks get no more traffic
            marathon.remove_task(tasks.pop(i))
        await eventually(lambda: ports() == {backends[2].port, backends[3].port}, "removed")
        answers.append(Counter())  # requests from now on cannot pick users0/1
        await eventually(lambda: answers[-1]["users2"] > 20, "more traffic")
        assert answers[-1]["users0"] == answers[-1]["users1"] == 0
        marathon.update_task(tasks[2], state="TASK_KILLING")  # draining: out at once
        await eventually(lambda: ports() == {backends[3].port}, "draining")
        answers.append(Counter())
        await eventually(lambda: answers[-1]["users3"] > 20, "users3 alone")
        assert answers[-1]["users2"] == 0
        stop.set()
    assert failures == []
    assert sum(sum(c.values()) for c in answers) > 100


async def test_a_failing_marathon_stops_no_other_namer(
    marathon: FakeMarathon,
    backend: MakeBackend,
    start_linker: StartLinker,
    http: httpx.AsyncClient,
    disco: Path,
) -> None:
    web = await backend("web")
    users = await backend("users")
    write_disco(disco, "web", web)
    marathon.add_app("/team/users")
    marathon.add_task("/team/users", "127.0.0.1", [users.port])
    fs = f"- kind: io.l5d.fs\n  rootDir: {disco}\n  pollIntervalMs: 20"
    linker = await start_linker(
        linker_config(marathon, extra_namers=fs, dtab=DTAB + "\n    /svc/web => /#/io.l5d.fs/web;"),
        REGISTRY,
    )
    url = router_url(linker)
    assert (await http.get(url, headers={"Host": "users.team"})).text.startswith("users")
    marathon.hang_next(None)  # Marathon stops answering...
    marathon.drop_connections()  # ...and its event stream breaks
    flat = linker.metrics.flat
    timeouts = "namer/io.l5d.marathon/event_stream/failures/timeout"
    while flat().get(timeouts, 0) < 2:
        assert (await http.get(url, headers={"Host": "web"})).text.startswith("web")
        # the last good answer keeps serving Marathon's app meanwhile
        assert (await http.get(url, headers={"Host": "users.team"})).text.startswith("users")
    marathon.clear_faults()
    connected = "namer/io.l5d.marathon/event_stream/connected"
    await eventually(lambda: flat().get(connected) == 1, "the stream is back", timeout=30)


async def test_an_unknown_app_falls_back_through_the_dtab(
    marathon: FakeMarathon,
    backend: MakeBackend,
    start_linker: StartLinker,
    http: httpx.AsyncClient,
) -> None:
    fallback = await backend("fallback")
    dtab = f"/svc => /$/inet/127.0.0.1/{fallback.port};\n    " + DTAB  # Neg falls back
    linker = await start_linker(linker_config(marathon, dtab=dtab), REGISTRY)
    r = await http.get(router_url(linker), headers={"Host": "nobody.team"})
    assert r.status_code == 200 and r.text.startswith("fallback")
