"""The Kubernetes namer inside a running linker: config loading, shared and idle-closed
watches across routers, traffic while endpoints change, and faults that stay local."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import trio

import linkpy.linker
from linkpy.config.load import load, load_file
from linkpy.errors import ConfigError
from linkpy.linker import Linker
from linkpy.testing.fakes.kubernetes import FakeKubernetes

from ...conftest import ROOT, MakeBackend, StartLinker, router_url, write_disco
from .helpers import Slices, registry, start_k8s, until_true

ROUTERS = "routers:\n- protocol: http\n  servers: [{port: 1}]\n"


def linker_config(
    k8s: FakeKubernetes, *, routers: int = 1, extra_namers: str = "", dtab: str = ""
) -> str:
    dtab = dtab or "/svc => /#/io.l5d.k8s/prod/http;"
    text = f"""
admin: {{ip: 127.0.0.1, port: 0}}
namers:
- kind: io.l5d.k8s
  host: 127.0.0.1
  port: {k8s.port}
  idleTtlSecs: 0.5
  backoffMaxMs: 100
{extra_namers}
routers:
"""
    for i in range(routers):
        text += f"""
- protocol: http
  label: r{i}
  dtab: |
    {dtab}
  bindingTimeoutMs: 5000
  bindingCache: {{idleTtlSecs: 1}}
  servers:
  - {{port: 0, ip: 127.0.0.1}}
"""
    return text


@pytest.mark.parametrize(
    ("namer", "expected"),
    [
        ("{kind: io.l5d.k8s, bogus: 1}", "namers[0].bogus: unknown key"),
        ("{kind: io.l5d.k8s, port: x}", "namers[0].port: expected an integer, got a string 'x'"),
        ("{kind: io.l5d.k8s, mode: cluster}", "namers[0].mode: cluster not in literal"),
        ("{kind: io.l5d.k8s.ns, envVar: [x]}", "namers[0].envVar: expected a string"),
        (
            "{kind: io.l5d.k8s.external}",
            "namers[0]: namer 'io.l5d.k8s.external' is experimental",
        ),
    ],
)
def test_config_is_read_strictly(namer: str, expected: str) -> None:
    with pytest.raises(ConfigError) as e:
        load(f"namers:\n- {namer}\n{ROUTERS}", registry())
    assert expected in str(e.value)


def test_the_example_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAMESPACE", "default")
    cfg = load_file(str(ROOT / "configs" / "k8s-namer.yaml"), registry())
    kinds = [type(n).__name__ for n in cfg.namers]
    assert "K8sConfig" in kinds
    Linker(cfg, registry())  # builds without opening a socket


async def test_two_routers_share_one_watch_closed_when_idle(
    nursery: trio.Nursery,
    backend: MakeBackend,
    start_linker: StartLinker,
    http: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(linkpy.linker, "HOUSEKEEPING_INTERVAL", 0.2)
    k8s = await start_k8s(nursery)
    web = await backend("web")
    Slices(k8s).set([("127.0.0.1", web.port)])
    linker = await start_linker(linker_config(k8s, routers=2), registry())
    for label in ("r0", "r1"):
        for _ in range(3):
            r = await http.get(router_url(linker, label) + "/", headers={"Host": "web"})
            assert r.status_code == 200 and r.text == "web GET /"
    assert k8s.open_watches == 1
    watches = [r for r in k8s.requests if r.param("watch")]
    assert len(watches) == 1
    # nobody sends requests any more: bindings, then clients, then the watch go away
    await until_true(lambda: k8s.open_watches == 0, timeout=15)
    # and come back on demand
    r = await http.get(router_url(linker, "r1") + "/", headers={"Host": "web"})
    assert r.status_code == 200
    assert k8s.open_watches == 1


async def test_traffic_while_endpoints_change(
    nursery: trio.Nursery,
    backend: MakeBackend,
    start_linker: StartLinker,
    http: httpx.AsyncClient,
) -> None:
    k8s = await start_k8s(nursery)
    b1 = await backend("b1")
    b2 = await backend("b2")
    b3 = await backend("b3")
    slices = Slices(k8s)
    slices.set([("127.0.0.1", b1.port)])
    linker = await start_linker(linker_config(k8s), registry())
    url = router_url(linker) + "/"
    answers: list[str] = []
    failures: list[str] = []
    stop = trio.Event()

    async def client() -> None:
        while not stop.is_set():
            try:
                r = await http.get(url, headers={"Host": "web"})
            except httpx.HTTPError as e:
                failures.append(repr(e))
                continue
            if r.status_code != 200:
                failures.append(f"{r.status_code} {r.text}")
            else:
                answers.append(r.text.split()[0])

    async def served_by(name: str) -> None:
        start = len(answers)
        await until_true(lambda: name in answers[start:])

    nursery.start_soon(client)
    await served_by("b1")
    # scale up: the new endpoints take traffic
    slices.set([("127.0.0.1", b1.port), ("127.0.0.1", b2.port), ("127.0.0.1", b3.port)])
    await served_by("b2")
    await served_by("b3")
    # b1 is drained: removed from discovery (it keeps running, as a terminating pod does)
    slices.set([("127.0.0.1", b2.port), ("127.0.0.1", b3.port)])
    client_ = linker.routers[0].router.clients
    await until_true(
        lambda: all(b1.port not in {e.port for e in c.endpoints} for c in client_.values())
    )
    mark = len(answers)
    await until_true(lambda: len(answers) >= mark + 30)
    # at most the one request in flight when the change landed went to b1
    assert answers[mark + 1 :].count("b1") == 0
    assert {"b2", "b3"} <= set(answers[mark:])
    # and a rollout: b2 terminating (still serving), b3 ready
    slices.set([("127.0.0.1", b3.port)])
    await served_by("b3")
    stop.set()
    assert failures == []


async def test_a_broken_kubernetes_api_stops_nothing(
    nursery: trio.Nursery,
    backend: MakeBackend,
    start_linker: StartLinker,
    http: httpx.AsyncClient,
    disco: Path,
) -> None:
    k8s = await start_k8s(nursery)
    web = await backend("web")
    files = await backend("files")
    Slices(k8s).set([("127.0.0.1", web.port)])
    write_disco(disco, "files", files)
    fs = f"- kind: io.l5d.fs\n  rootDir: {disco}\n  pollIntervalMs: 20\n"
    text = linker_config(
        k8s, extra_namers=fs, dtab="/svc => /#/io.l5d.k8s/prod/http | /#/io.l5d.fs;"
    )
    linker = await start_linker(text, registry())
    url = router_url(linker) + "/"
    assert (await http.get(url, headers={"Host": "web"})).text == "web GET /"
    assert (await http.get(url, headers={"Host": "files"})).text == "files GET /"
    # the API answers garbage, errors, hangs and cut streams
    k8s.fail_next(500, count=None, path="/apis/")
    k8s.break_watches(partial=True)
    k8s.garble_next(None)
    for _ in range(20):
        assert (await http.get(url, headers={"Host": "web"})).text == "web GET /"
        assert (await http.get(url, headers={"Host": "files"})).text == "files GET /"
    flat = linker.metrics.flat()
    assert flat["namer/io.l5d.k8s/errors/connection"] >= 1
    k8s.clear_faults()
