"""Transformers: address rewriting that follows the namers, per namer or per router."""

from __future__ import annotations

from pathlib import Path

import httpx

from linkpy.activity import Var
from linkpy.naming import Addr, AddrBound, Address, Bound, Leaf, NameTree, Neg
from linkpy.naming import Path as NPath
from linkpy.router.transformers import (
    FilterTransformer,
    GatewayTransformer,
    PortConfig,
    ReplaceTransformer,
    local_ips,
    same_subnet,
)

from ..conftest import MakeBackend, StartLinker, admin_url, fs_config, router_url, write_disco

P = NPath.read


def bound(var: Var[Addr], id_: str = "/#/io.l5d.fs/web") -> Bound:
    return Bound(P(id_), NPath.empty, var)


def addrs(b: Bound) -> set[tuple[str, int]]:
    a = b.sample()
    assert isinstance(a, AddrBound)
    return {(x.host, x.port) for x in a.addresses}


def test_port_transformer_is_reactive_and_prefixes_the_id() -> None:
    var: Var[Addr] = Var(AddrBound([Address("10.0.0.1", 8080)]))
    t = PortConfig(port=4141).mk(None)  # type: ignore[arg-type]
    b = t.map_bound(bound(var))
    assert b.id == P("/%/io.l5d.port/4141/#/io.l5d.fs/web")
    assert addrs(b) == {("10.0.0.1", 4141)}
    seen: list[Addr] = []
    assert isinstance(b.addr, Var)
    b.addr.observe(seen.append)
    var.set(AddrBound([Address("10.0.0.2", 9090)]))
    assert addrs(b) == {("10.0.0.2", 4141)} and len(seen) == 1


def test_filter_empties_to_neg() -> None:
    var: Var[Addr] = Var(AddrBound([Address("10.0.0.1", 80), Address("10.0.1.1", 80)]))
    t = FilterTransformer(P("/%/x"), same_subnet({"10.0.0.9"}, 24))
    b = t.map_bound(bound(var))
    assert addrs(b) == {("10.0.0.1", 80)}
    var.set(AddrBound([Address("10.9.9.9", 80)]))
    assert b.sample() is Addr.Neg


def test_gateway_transformer_follows_both_sides() -> None:
    pods: Var[Addr] = Var(AddrBound([Address("10.1.1.5", 8080), Address("10.1.2.7", 8080)]))
    gateways: Var[Addr] = Var(AddrBound([Address("10.1.1.100", 4141), Address("10.1.2.100", 4141)]))
    t = GatewayTransformer(
        P("/%/gw"), gateways, lambda a, g: a.host.rsplit(".", 1)[0] == g.host.rsplit(".", 1)[0]
    )
    b = t.map_bound(bound(pods))
    assert addrs(b) == {("10.1.1.100", 4141), ("10.1.2.100", 4141)}
    b.addr.observe(lambda _: None)  # type: ignore[attr-defined]
    pods.set(AddrBound([Address("10.1.2.8", 8080)]))
    assert addrs(b) == {("10.1.2.100", 4141)}
    gateways.set(AddrBound([Address("10.1.1.100", 4141)]))  # no linker on that node now
    assert b.sample() is Addr.Neg


def test_replace_and_const() -> None:
    target = Bound(P("/$/inet/127.0.0.1/9"), NPath.empty, AddrBound([Address("127.0.0.1", 9)]))
    tree: NameTree[Bound] = Leaf(target)
    replace = ReplaceTransformer(P("/%/io.l5d.replace"), P("/$/inet/127.0.0.1/9"), tree)
    const = ReplaceTransformer(P("/%/io.l5d.const"), P("/$/inet/127.0.0.1/9"), tree, const=True)
    orig: NameTree[Bound] = Leaf(bound(Var(AddrBound([Address("10.0.0.1", 1)]))))
    out = replace.transform(orig)
    assert isinstance(out, Leaf) and out.value.id == P("/%/io.l5d.replace/$/inet/127.0.0.1/9")
    assert replace.transform(Neg) is Neg
    assert const.transform(Neg) != Neg


def test_local_ips_include_loopback() -> None:
    assert "127.0.0.1" in local_ips()


async def test_interpreter_transformer_through_the_router(
    backend: MakeBackend, start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    real = await backend("incoming-linker")
    # the file lists the application's port; the transformer sends to the linker's port
    (disco / "web").write_text("127.0.0.1 1\n")
    extra = (
        "  interpreter:\n    kind: default\n    transformers:\n"
        f"    - kind: io.l5d.port\n      port: {real.port}\n"
    )
    linker = await start_linker(fs_config(disco, extra=extra))
    r = await http.get(router_url(linker) + "/", headers={"Host": "web"})
    assert r.status_code == 200 and r.text.startswith("incoming-linker")
    assert real.seen[0].header("l5d-dst-client") == f"/%/io.l5d.port/{real.port}/#/io.l5d.fs/web"
    d = await http.get(
        admin_url(linker) + "/delegator.json",
        params={"path": "/svc/web", "dtab": "/svc=>/#/io.l5d.fs"},
    )
    tree = d.json()
    assert tree["delegate"]["type"] == "transformation"
    assert tree["delegate"]["name"] == "PortTransformer"
    assert tree["delegate"]["tree"]["bound"]["addr"]["addrs"][0]["port"] == real.port


async def test_namer_transformer(
    backend: MakeBackend, start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    real = await backend("b")
    (disco / "web").write_text("127.0.0.1 1\n")
    text = f"""
admin: {{ip: 127.0.0.1, port: 0}}
namers:
- kind: io.l5d.fs
  rootDir: {disco}
  pollIntervalMs: 20
  transformers:
  - kind: io.l5d.port
    port: {real.port}
routers:
- protocol: http
  label: out
  dtab: /svc => /#/io.l5d.fs
  servers: [{{port: 0}}]
"""
    linker = await start_linker(text)
    r = await http.get(router_url(linker) + "/", headers={"Host": "web"})
    assert r.status_code == 200
    # the port moves with the file
    write_disco(disco, "web", real)
    r = await http.get(router_url(linker) + "/", headers={"Host": "web"})
    assert r.status_code == 200
    assert real.seen[0].header("l5d-dst-client") == f"/%/io.l5d.port/{real.port}/#/io.l5d.fs/web"
