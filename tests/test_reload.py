"""Reloading the config (SIGHUP or POST /admin/reload) without dropping anything."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import httpx
import trio

from linkpy.config.load import load_file
from linkpy.linker import Linker

from .conftest import MakeBackend, admin_url, router_url, write_disco


def config(disco: Path, dtab: str, port: int = 0) -> str:
    return f"""
admin: {{ip: 127.0.0.1, port: 0}}
namers:
- kind: io.l5d.fs
  rootDir: {disco}
  pollIntervalMs: 20
routers:
- protocol: http
  label: out
  dtab: {dtab}
  servers: [{{port: {port}}}]
"""


async def test_reload_under_load_drops_nothing(
    backend: MakeBackend,
    nursery: trio.Nursery,
    tmp_path: Path,
    disco: Path,
    http: httpx.AsyncClient,
) -> None:
    v1 = await backend("v1")
    v2 = await backend("v2")
    write_disco(disco, "web", v1)
    write_disco(disco, "web-v2", v2)
    path = tmp_path / "linkpy.yaml"
    path.write_text(config(disco, "/svc => /#/io.l5d.fs"))
    linker = Linker(load_file(str(path)))
    await nursery.start(linker.run)
    url = router_url(linker)
    port = linker.ports()["out"][0]
    served: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    done = trio.Event()

    async def client() -> None:
        async with httpx.AsyncClient(trust_env=False) as c:  # its own keep-alive connections
            while not done.is_set():
                r = await c.get(url + "/", headers={"Host": "web"})
                statuses[r.status_code] += 1
                served[r.text.split()[0]] += 1

    async with trio.open_nursery() as clients:
        for _ in range(4):
            clients.start_soon(client)
        await trio.sleep(0.3)
        # a bad config is refused; the running one keeps serving
        path.write_text("routers: [")
        r = await http.post(admin_url(linker) + "/admin/reload")
        assert r.status_code == 400 and "refused" in r.text
        # a new dtab (and the same servers) applies at once
        path.write_text(
            config(disco, "/svc => /#/io.l5d.fs; /svc/web => /#/io.l5d.fs/web-v2", port)
        )
        r = await http.post(admin_url(linker) + "/admin/reload")
        assert r.status_code == 200, r.text
        before = served["v2"]
        await trio.sleep(0.3)
        done.set()
    assert set(statuses) == {200}
    assert served["v2"] > before
    r = await http.get(url + "/", headers={"Host": "web"})
    assert r.text.startswith("v2")
    assert linker.metrics.flat()["reloads"] == 1
    # a change of server needs a restart: reported, not applied
    path.write_text(config(disco, "/svc => /#/io.l5d.fs", port + 1 if port < 65535 else port - 1))
    message = await linker.reload()
    assert "a restart is needed for: servers of router out" in message
    r = await http.get(admin_url(linker) + "/admin/reload")
    assert r.status_code == 405
