"""io.l5d.k8s.daemonset and io.l5d.k8s.localnode over the Kubernetes emulator."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from linkpy.activity import Var
from linkpy.config.load import load
from linkpy.errors import ConfigError
from linkpy.metrics import Metrics
from linkpy.naming import Addr, AddrBound, Address, Bound, Neg, Ok, Path
from linkpy.router.transformers import Transformer, TransformerContext
from linkpy.testing.fakes.kubernetes import FakeKubernetes, slice_endpoint
from linkpy_k8s import DaemonSetConfig, LocalNodeConfig
from linkpy_k8s.transformers import same_node_name, same_node_subnet

from .helpers import hostports, start_k8s, start_namer, until

ROUTERS = "routers:\n- protocol: http\n  servers: [{port: 1}]\n"


def ctx() -> TransformerContext:
    return TransformerContext(bind_path=lambda p: Ok(Neg), metrics=Metrics().scope("t"))


def pods(k8s: FakeKubernetes, ns: str, svc: str, port: int, where: dict[str, str]) -> None:
    """One EndpointSlice of ``svc``: an endpoint per ``ip -> node``, all on ``port``."""
    endpoints = [slice_endpoint(ip, node_name=node) for ip, node in where.items()]
    k8s.set_endpoint_slice(ns, f"{svc}-slice", svc, endpoints, ports={"incoming": port})


async def transformed(
    nursery: trio.Nursery, k8s: FakeKubernetes, t: Transformer, where: dict[str, str]
) -> tuple[Bound, Var[Addr]]:
    """The name /prod/http/web (pods ``where``) as ``t`` transforms it, observed."""
    k8s.set_endpoint_slice(
        "prod",
        "web-slice",
        "web",
        [slice_endpoint(ip, node_name=node) for ip, node in where.items()],
        ports={"http": 8080},
    )
    namer = await start_namer(nursery, k8s)
    st = await until(namer.lookup(Path.read("/prod/http/web")), lambda s: isinstance(s, Ok))
    assert isinstance(st, Ok)
    (bound,) = st.value.leaves()
    assert isinstance(bound, Bound)
    out = t.map_bound(bound)
    assert isinstance(out.addr, Var)
    out.addr.observe(lambda _: None)
    return out, out.addr


def test_node_predicates() -> None:
    a = Address("10.1.2.3", 80, metadata={"nodeName": "n1"})
    assert same_node_subnet(a, Address("10.1.2.200", 4141))
    assert not same_node_subnet(a, Address("10.1.3.3", 4141))
    assert not same_node_subnet(a, Address("fd00::1", 4141))
    assert same_node_name(a, Address("10.9.9.9", 4141, metadata={"nodeName": "n1"}))
    assert not same_node_name(a, Address("10.1.2.3", 4141, metadata={"nodeName": "n2"}))
    assert not same_node_name(Address("10.1.2.3", 80), Address("10.1.2.3", 4141))


async def test_daemonset_sends_each_pod_to_the_linkpy_on_its_node(nursery: trio.Nursery) -> None:
    k8s = await start_k8s(nursery)
    pods(k8s, "linkpy", "l5d", 4141, {"10.0.1.5": "a", "10.0.2.5": "b"})
    cfg = DaemonSetConfig(
        namespace="linkpy", service="l5d", port="incoming", k8sHost="127.0.0.1", k8sPort=k8s.port
    )
    t = cfg.mk(ctx())
    await nursery.start(t.run)
    where = {"10.0.1.20": "a", "10.0.2.30": "b", "10.0.3.40": "c"}  # no linkpy on c yet
    out, addr = await transformed(nursery, k8s, t, where)
    assert out.id == Path.read(
        "/%/io.l5d.k8s.daemonset/linkpy/incoming/l5d/#/io.l5d.k8s/prod/http/web"
    )
    await until(addr, lambda a: isinstance(a, AddrBound) and len(a.addresses) == 2)
    assert hostports(addr.sample()) == {("10.0.1.5", 4141), ("10.0.2.5", 4141)}
    # the DaemonSet reaches node c: its pod is used at once
    pods(k8s, "linkpy", "l5d", 4141, {"10.0.1.5": "a", "10.0.2.5": "b", "10.0.3.7": "c"})
    await until(addr, lambda a: isinstance(a, AddrBound) and ("10.0.3.7", 4141) in hostports(a))
    # no linkpy pod anywhere: the name is negative (the dtab falls back)
    pods(k8s, "linkpy", "l5d", 4141, {})
    await until(addr, lambda a: a is Addr.Neg)


async def test_daemonset_in_host_network_mode_matches_node_names(nursery: trio.Nursery) -> None:
    k8s = await start_k8s(nursery)
    # on the host network, the linkpy pods have their node's IP, in one /24 with the others
    pods(k8s, "linkpy", "l5d", 4141, {"192.168.0.11": "a", "192.168.0.12": "b"})
    cfg = DaemonSetConfig(
        namespace="linkpy",
        service="l5d",
        port="incoming",
        k8sHost="127.0.0.1",
        k8sPort=k8s.port,
        hostNetwork=True,
    )
    t = cfg.mk(ctx())
    await nursery.start(t.run)
    _, addr = await transformed(nursery, k8s, t, {"10.0.1.20": "b"})
    await until(addr, lambda a: isinstance(a, AddrBound))
    assert hostports(addr.sample()) == {("192.168.0.12", 4141)}


def test_localnode_keeps_this_nodes_addresses() -> None:
    addresses = AddrBound(
        [
            Address("10.0.1.20", 80, metadata={"nodeName": "a"}),
            Address("10.0.2.30", 80, metadata={"nodeName": "b"}),
        ]
    )
    bound = Bound(Path.read("/#/io.l5d.k8s/prod/http/web"), Path.empty, Var(addresses))

    def kept(t: Transformer) -> set[tuple[str, int]]:
        out = t.map_bound(bound)
        return hostports(out.addr.sample())

    by_ip = LocalNodeConfig().build({"POD_IP": "10.0.1.9"})
    assert kept(by_ip) == {("10.0.1.20", 80)}
    assert by_ip.map_bound(bound).id == Path.read(
        "/%/io.l5d.k8s.localnode/10.0.1.9/#/io.l5d.k8s/prod/http/web"
    )
    by_node = LocalNodeConfig(hostNetwork=True).build({"NODE_NAME": "b"})
    assert kept(by_node) == {("10.0.2.30", 80)}
    elsewhere = LocalNodeConfig().build({"POD_IP": "10.0.7.1"})
    assert elsewhere.map_bound(bound).addr.sample() is Addr.Neg


@pytest.mark.parametrize(
    ("cfg", "env", "message"),
    [
        (LocalNodeConfig(), {}, "POD_IP is not set"),
        (LocalNodeConfig(), {"POD_IP": "node-a"}, "POD_IP = 'node-a' is not an IP address"),
        (LocalNodeConfig(hostNetwork=True), {"POD_IP": "10.0.0.1"}, "needs the environment"),
    ],
)
def test_localnode_needs_its_environment(
    cfg: LocalNodeConfig, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        cfg.build(env)


def test_daemonset_config_is_checked() -> None:
    with pytest.raises(ConfigError, match="is not a Kubernetes namespace/port/service"):
        DaemonSetConfig(namespace="Bad_NS!", service="l5d", port="incoming").mk(ctx())
    text = (
        "routers:\n- protocol: http\n  servers: [{port: 1}]\n"
        "  interpreter:\n    transformers:\n"
        "    - {kind: io.l5d.k8s.daemonset, namespace: linkpy, service: l5d}\n"
    )
    with pytest.raises(ConfigError, match=r"transformers\[0\]\.port"):
        load(text)


def test_configs_load_from_yaml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_IP", "10.0.0.3")
    text = (
        "routers:\n- protocol: http\n  servers: [{port: 1}]\n"
        "  interpreter:\n    transformers:\n"
        "    - kind: io.l5d.k8s.daemonset\n      namespace: linkpy\n      port: incoming\n"
        "      service: l5d\n      hostNetwork: true\n"
        "    - {kind: io.l5d.k8s.localnode}\n"
    )
    cfg = load(text)
    transformers: list[Any] = cfg.routers[0].interpreter.transformers or []
    assert [type(t).__name__ for t in transformers] == ["DaemonSetConfig", "LocalNodeConfig"]
    assert transformers[0].hostNetwork is True
