"""io.l5d.consul's behaviour over the Consul emulator: paths, filters, options, and
Consul's blocking-query rules."""

from __future__ import annotations

import logging
from functools import partial

import pytest
import trio

from linkpy.activity import Var
from linkpy.naming import AddrBound, Failed, Neg, Ok, Path, Pending
from linkpy.testing import FakeConsul
from linkpy.testing.fakes.consul import CheckStatus
from linkpy_consul import TagWeight
from linkpy_consul.namer import ConsulNamer, TokenBucket, parse_path

from .helpers import (
    PREFIX,
    addresses,
    bound,
    eventually,
    make_namer,
    requests_for,
    until,
    until_addresses,
)


async def started(nursery: trio.Nursery, consul: FakeConsul, **config: object) -> ConsulNamer:
    namer = make_namer(consul, **config)  # type: ignore[arg-type]
    await nursery.start(namer.run)
    return namer


def watch(namer: ConsulNamer, path: str):  # type: ignore[no-untyped-def]
    """Look a path up and observe it (as a binding would)."""
    var = namer.lookup(Path.read(path))
    var.observe(lambda _: None)
    return var


# --- paths ------------------------------------------------------------------------------


def test_path_shapes() -> None:
    key, id_, rest = parse_path(Path.read("/dc1/Web/extra/more"), False)  # type: ignore[misc]
    assert (key.dc, key.service, key.tag) == ("dc1", "web", None)
    assert id_.show() == "/dc1/web" and rest.show() == "/extra/more"
    key, id_, rest = parse_path(Path.read("/.local/Prod/web"), True)  # type: ignore[misc]
    assert (key.dc, key.service, key.tag) == (".local", "web", "prod") and rest.elems == ()
    assert id_.show() == "/.local/prod/web"
    junk = [
        (b"dc1",),
        (),
        (b"dc 1", b"web"),
        (b"dc1", b"we b"),
        (b"dc1", b"\x00"),
        (b"d/c", b"web"),
        (b"dc1", b"a?b"),
        (b"dc1", b"x" * 300),
        (b"dc1", b"\xff"),
    ]
    for elems in junk:
        assert parse_path(Path(elems), False) is None, elems
    assert parse_path(Path.read("/dc1/web"), True) is None


async def test_a_service_binds_and_follows_its_instances(
    nursery: trio.Nursery, consul: FakeConsul
) -> None:
    consul.register("web", "10.0.0.1", 8080, service_id="web-1")
    namer = await started(nursery, consul)
    tree = watch(namer, "/dc1/Web/residual")
    await until_addresses(tree, {("10.0.0.1", 8080)})
    b = bound(tree.sample())
    assert b is not None and b.id_show() == f"{PREFIX}/dc1/web" and b.residual.show() == "/residual"
    version = tree.version
    consul.register("web", "10.0.0.2", 8080, service_id="web-2")
    await until_addresses(tree, {("10.0.0.1", 8080), ("10.0.0.2", 8080)})
    consul.deregister("web-1")
    await until_addresses(tree, {("10.0.0.2", 8080)})
    assert tree.version == version  # the Addr changed in place; the tree did not
    assert bound(tree.sample()) is b
    # every spelling shares the one watch
    assert namer.lookup(Path.read("/dc1/WEB/residual")).sample() == tree.sample()
    assert namer.watches.open == 1
    (first, *rest) = requests_for(consul, "web")
    assert not first.has_param("index") and first.param("dc") == "dc1"
    assert all(r.has_param("index") and r.param("wait") == "300s" for r in rest)


async def test_an_unknown_service_is_neg_until_it_exists(
    nursery: trio.Nursery, consul: FakeConsul
) -> None:
    namer = await started(nursery, consul)
    tree = watch(namer, "/dc1/later")
    await until(tree, lambda st: st == Ok(Neg))
    consul.register("later", "10.0.0.3", 80)
    await until_addresses(tree, {("10.0.0.3", 80)})
    consul.deregister("later")
    await until(tree, lambda st: st == Ok(Neg))


async def test_junk_paths_are_neg_without_a_request(
    nursery: trio.Nursery, consul: FakeConsul
) -> None:
    namer = await started(nursery, consul)
    for junk in [(b"dc1",), (b"dc1", b"a b"), (b"..", b"/web")]:
        assert namer.lookup(Path(junk)).sample() == Ok(Neg)
    await trio.sleep(0.1)
    assert namer.watches.open == 0 and consul.requests == []


async def test_unobserved_watches_close(
    nursery: trio.Nursery, consul: FakeConsul, autojump_clock: object
) -> None:
    """A scanner's names cost a watch each only while something looks at them."""
    namer = await started(nursery, consul, watchIdleSecs=10)
    for i in range(50):
        namer.lookup(Path.read(f"/dc1/scan{i}"))
    await trio.sleep(1)
    assert namer.watches.open == 50
    await trio.sleep(20)
    assert namer.watches.open == 0
    assert namer.stats.opens.value == namer.stats.closes.value == 50
    assert consul.open_connections == 0  # each watch's connection closed with it


async def test_local_is_the_agents_datacenter(nursery: trio.Nursery, consul: FakeConsul) -> None:
    consul.add_datacenter("dc2")
    consul.register("web", "10.0.0.1", 80)
    consul.register("web", "10.2.0.1", 80, dc="dc2")
    namer = await started(nursery, consul)
    local = watch(namer, "/.local/web")
    other = watch(namer, "/dc2/web")
    await until_addresses(local, {("10.0.0.1", 80)})
    await until_addresses(other, {("10.2.0.1", 80)})
    assert not any(r.has_param("dc") for r in requests_for(consul, "web") if r.param("dc") != "dc2")
    assert bound(local.sample()).id_show() == f"{PREFIX}/.local/web"  # type: ignore[union-attr]


async def test_an_unknown_datacenter_is_neg_and_retried(
    nursery: trio.Nursery, consul: FakeConsul, caplog: pytest.LogCaptureFixture
) -> None:
    namer = await started(nursery, consul)
    tree = watch(namer, "/dc9/web")
    await until(tree, lambda st: st == Ok(Neg))
    assert "unknown datacenter" in caplog.text
    consul.add_datacenter("dc9")
    consul.register("web", "10.9.0.1", 80, dc="dc9")
    await until_addresses(tree, {("10.9.0.1", 80)})
    assert namer.stats.scope.counter("errors", "unknown_dc").value >= 1


async def test_tags(nursery: trio.Nursery, consul: FakeConsul) -> None:
    consul.register("web", "10.0.0.1", 80, service_id="a", tags=["prod"])
    consul.register("web", "10.0.0.2", 80, service_id="b", tags=["canary"])
    namer = await started(nursery, consul, includeTag=True)
    prod = watch(namer, "/dc1/Prod/web")
    await until_addresses(prod, {("10.0.0.1", 80)})
    assert requests_for(consul, "web")[0].param("tag") == "prod"
    assert namer.lookup(Path.read("/dc1/web")).sample() == Ok(Neg)  # needs a tag segment


async def test_health_statuses(nursery: trio.Nursery, consul: FakeConsul) -> None:
    statuses: list[CheckStatus] = ["passing", "warning", "critical", "passing"]
    for i, status in enumerate(statuses):
        consul.register("web", f"10.0.0.{i}", 80, service_id=f"w{i}", checks={f"c{i}": status})
    consul.maintenance("w3")
    only_passing = await started(nursery, consul, useHealthCheck=True)
    lenient = await started(
        nursery, consul, useHealthCheck=True, healthStatuses=["passing", "warning"]
    )
    everything = await started(nursery, consul)  # the catalog: no health at all
    a = watch(only_passing, "/dc1/web")
    b = watch(lenient, "/dc1/web")
    c = watch(everything, "/dc1/web")
    await until_addresses(a, {("10.0.0.0", 80)})
    await until_addresses(b, {("10.0.0.0", 80), ("10.0.0.1", 80)})
    await until_addresses(c, {(f"10.0.0.{i}", 80) for i in range(4)})
    health = requests_for(consul, "web", "health")
    assert {r.param("passing") for r in health} == {"1", None}  # server-side only for [passing]
    consul.set_check("w0", "critical", check_id="c0")
    await until(a, lambda st: st == Ok(Neg))  # nothing healthy: Neg, so alternates apply
    consul.set_check("w0", "passing", check_id="c0")
    await until_addresses(a, {("10.0.0.0", 80)})


async def test_maintenance_can_be_chosen(nursery: trio.Nursery, consul: FakeConsul) -> None:
    consul.register("web", "10.0.0.1", 80, service_id="w1")
    consul.register("web", "10.0.0.2", 80, service_id="w2")
    consul.node_maintenance("node-a")
    consul.register("web", "10.0.0.3", 80, service_id="w3", node="node-b", node_address="10.1.0.3")
    namer = await started(
        nursery, consul, useHealthCheck=True, healthStatuses=["passing", "maintenance"]
    )
    tree = watch(namer, "/dc1/web")
    await until_addresses(tree, {("10.0.0.1", 80), ("10.0.0.2", 80), ("10.0.0.3", 80)})


async def test_addresses_and_weights(nursery: trio.Nursery, consul: FakeConsul) -> None:
    consul.register("web", "", 81, service_id="a", node="n1", node_address="10.1.0.1")
    consul.register(
        "web",
        "10.0.0.2",
        82,
        service_id="b",
        node="n2",
        node_address="10.1.0.2",
        tags=["canary", "Big"],
        weights={"Passing": 3, "Warning": 1},
    )
    consul.register("web", "localhost", 83, service_id="c", node="n3", node_address="10.1.0.3")
    service = await started(
        nursery,
        consul,
        weights=[TagWeight(tag="canary", weight=0.5), TagWeight(tag="big", weight=4)],
    )
    node = await started(nursery, consul, preferServiceAddress=False, useConsulWeights=True)
    s = watch(service, "/dc1/web")
    n = watch(node, "/dc1/web")
    await until_addresses(s, {("10.1.0.1", 81), ("10.0.0.2", 82), ("127.0.0.1", 83)})
    await until_addresses(n, {("10.1.0.1", 81), ("10.1.0.2", 82), ("10.1.0.3", 83)})
    addr = bound(s.sample()).sample()  # type: ignore[union-attr]
    assert isinstance(addr, AddrBound)
    weights = {a.port: a.weight for a in addr.addresses}
    assert weights == {81: 1.0, 82: 4.0, 83: 1.0}  # the heaviest matching tag, any case
    assert {a.metadata["nodeName"] for a in addr.addresses} == {"n1", "n2", "n3"}
    addr = bound(n.sample()).sample()  # type: ignore[union-attr]
    assert isinstance(addr, AddrBound)
    assert {a.port: a.weight for a in addr.addresses} == {81: 1.0, 82: 3.0, 83: 1.0}


async def test_transfer_metadata(nursery: trio.Nursery, consul: FakeConsul) -> None:
    consul.register(
        "web",
        "10.0.0.1",
        80,
        meta={"version": "2"},
        node_meta={"rack": "r1"},
        node="n1",
        node_address="10.1.0.1",
    )
    namer = await started(nursery, consul, transferMetadata=True)
    tree = watch(namer, "/dc1/web")
    await until_addresses(tree, {("10.0.0.1", 80)})
    addr = bound(tree.sample()).sample()  # type: ignore[union-attr]
    assert isinstance(addr, AddrBound) and addr.metadata == {"version": "2"}
    (a,) = addr.addresses
    assert a.metadata == {"rack": "r1", "nodeName": "n1"}


def has_authority(want: str, state: object) -> bool:
    return authority_of(state) == want


def authority_of(state: object) -> object:
    b = bound(state)  # type: ignore[arg-type]
    addr = b.sample() if b is not None else None
    return addr.metadata.get("authority") if isinstance(addr, AddrBound) else None


async def test_set_host(nursery: trio.Nursery, consul: FakeConsul) -> None:
    consul.register("web", "10.0.0.1", 80, tags=["prod"])
    consul.add_datacenter("dc2")
    consul.register("web", "10.2.0.1", 80, dc="dc2")
    namer = await started(nursery, consul, setHost=True)
    tagged = await started(nursery, consul, setHost=True, includeTag=True)
    for lookup, path, want in [
        (namer, "/.local/web", "web.service.dc1.consul"),
        (namer, "/dc2/web", "web.service.dc2.consul"),
        (tagged, "/dc1/prod/web", "prod.web.service.dc1.consul"),
    ]:
        tree = watch(lookup, path)
        await until(tree, partial(has_authority, want))
    assert len(consul.requests_to("/v1/agent/self")) >= 1


async def test_set_host_waits_for_no_agent(nursery: trio.Nursery, consul: FakeConsul) -> None:
    """The agent's answer is not needed to route: the domain defaults to consul and the
    datacenter of .local comes from the instances until /v1/agent/self answers."""
    consul.register("web", "10.0.0.1", 80)
    consul.fail_next(403, None, path="/v1/agent/self", message="Permission denied")
    namer = await started(nursery, consul, setHost=True)
    tree = watch(namer, "/.local/web")
    await until_addresses(tree, {("10.0.0.1", 80)})
    addr = bound(tree.sample()).sample()  # type: ignore[union-attr]
    assert isinstance(addr, AddrBound) and addr.metadata["authority"] == "web.service.dc1.consul"
    assert namer.stats.agent_errors.value >= 1
    consul.clear_faults()


async def test_token_and_consistency(nursery: trio.Nursery, consul: FakeConsul) -> None:
    consul.enable_acls("deny")
    consul.add_token("reader")
    consul.register("web", "10.0.0.1", 80)
    namer = await started(
        nursery, consul, token="reader", consistencyMode="consistent", useHealthCheck=True
    )
    tree = watch(namer, "/dc1/web")
    await until_addresses(tree, {("10.0.0.1", 80)})
    for r in requests_for(consul, "web", "health"):
        assert r.header("x-consul-token") == "reader" and r.has_param("consistent")
    stale = await started(nursery, consul, token="reader", consistencyMode="stale")
    consul.set_leader(False)  # stale reads work without a leader
    tree = watch(stale, "/dc1/web")
    await until_addresses(tree, {("10.0.0.1", 80)})
    assert all(r.has_param("stale") for r in requests_for(consul, "web"))


async def test_a_refused_token_fails_lookups_until_fixed(
    nursery: trio.Nursery, consul: FakeConsul, caplog: pytest.LogCaptureFixture
) -> None:
    consul.enable_acls("deny")
    consul.register("web", "10.0.0.1", 80)
    namer = await started(nursery, consul, token="not-yet")
    tree = watch(namer, "/dc1/web")
    st = await until(tree, lambda st: isinstance(st, Failed))
    assert "ACL: 403 ACL not found" in str(st.exc)
    assert "lookups fail until Consul answers" in caplog.text
    consul.add_token("not-yet")
    await until_addresses(tree, {("10.0.0.1", 80)}, timeout=15)


@pytest.mark.parametrize("fail_fast", [False, True])
async def test_consul_starting_after_linkpy(nursery: trio.Nursery, fail_fast: bool) -> None:
    """Linkerd bug #2003: the namer reconnects once Consul is up."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    for listener in listeners:
        await listener.aclose()
    consul = FakeConsul()
    namer = make_namer(consul, port=port, failFast=fail_fast)
    await nursery.start(namer.run)
    tree = watch(namer, "/dc1/web")
    if fail_fast:
        st = await until(tree, lambda st: isinstance(st, Failed))
        assert "GET /v1/catalog/service/web" in str(st.exc)
    else:
        await trio.sleep(0.5)
        assert tree.sample() is Pending
    consul.register("web", "10.0.0.1", 80)
    await nursery.start(partial(consul.serve, port=port))
    await until_addresses(tree, {("10.0.0.1", 80)}, timeout=15)


async def test_consul_restarts_empty(nursery: trio.Nursery) -> None:
    """Linkerd bug #1230: after Consul went away and came back (its index starting
    again from 1), changes are still picked up."""
    consul = FakeConsul()
    port = await nursery.start(consul.serve)
    for _ in range(30):
        consul.touch("web")  # a high index before the restart
    consul.register("web", "10.0.0.1", 80)
    namer = await started(nursery, consul)
    tree = watch(namer, "/dc1/web")
    await until_addresses(tree, {("10.0.0.1", 80)})
    consul.drop_connections()  # Consul goes away ...
    consul.fail_next(503, None)
    await trio.sleep(0.3)
    assert addresses(tree.sample()) == {("10.0.0.1", 80)}  # the last good answer stays
    consul.restart(wipe=True)  # back, with no memory: the index is 1 again
    consul.clear_faults()
    assert port == consul.port
    consul.register("web", "10.0.0.2", 80)
    await until_addresses(tree, {("10.0.0.2", 80)}, timeout=15)
    consul.register("web", "10.0.0.3", 80, service_id="web-3")
    await until_addresses(tree, {("10.0.0.2", 80), ("10.0.0.3", 80)})


# --- the blocking-query rules ------------------------------------------------------------


async def test_an_index_going_backwards_restarts_the_loop(
    nursery: trio.Nursery, consul: FakeConsul
) -> None:
    for _ in range(20):
        consul.touch("web")
    consul.register("web", "10.0.0.1", 80)
    namer = await started(nursery, consul, waitSecs=1)
    tree = watch(namer, "/dc1/web")
    await until_addresses(tree, {("10.0.0.1", 80)})
    consul.rewind_index(5)  # a snapshot restore: the blocked query times out with 5
    await eventually(lambda: namer.stats.index_resets.value > 0, timeout=5)
    consul.register("web", "10.0.0.2", 80, service_id="two")
    await until_addresses(tree, {("10.0.0.1", 80), ("10.0.0.2", 80)})
    reads = requests_for(consul, "web")
    resets = [i for i, r in enumerate(reads) if i and not r.has_param("index")]
    assert resets, "a fresh read (no index) follows the backwards index"


async def test_a_zero_index_is_clamped_and_churn_is_rate_limited(
    nursery: trio.Nursery, consul: FakeConsul, autojump_clock: object
) -> None:
    consul.register("web", "10.0.0.1", 80)
    consul.report_zero_index = True  # an old/buggy server: every answer says index 0
    namer = await started(nursery, consul)
    tree = watch(namer, "/dc1/web")
    await until_addresses(tree, {("10.0.0.1", 80)})
    consul.clear_requests()
    await trio.sleep(10)
    reads = requests_for(consul, "web")
    # index=1 returns at once (the real index is higher): without the bucket this
    # would be a hot loop; with it, about one read per second
    assert all(r.param("index") == "1" for r in reads)
    assert 5 <= len(reads) <= 13
    assert namer.stats.index_clamped.value >= len(reads)
    assert namer.stats.quiet_waits.value >= 5
    consul.register("web", "10.0.0.2", 80, service_id="two")
    await until_addresses(tree, {("10.0.0.1", 80), ("10.0.0.2", 80)}, timeout=3)


async def test_idempotent_writes_are_not_announced(
    nursery: trio.Nursery, consul: FakeConsul, autojump_clock: object
) -> None:
    consul.register("web", "10.0.0.1", 80)
    namer = await started(nursery, consul)
    tree = watch(namer, "/dc1/web")
    await until_addresses(tree, {("10.0.0.1", 80)})
    addr = bound(tree.sample()).addr  # type: ignore[union-attr]
    assert isinstance(addr, Var)
    versions = (tree.version, addr.version)
    updates = namer.stats.updates.value
    for _ in range(20):
        consul.touch("web")
        await trio.sleep(0.1)
    await trio.sleep(5)
    assert (tree.version, addr.version) == versions
    assert namer.stats.updates.value == updates


async def test_token_bucket(autojump_clock: object) -> None:
    bucket = TokenBucket(2, 1.0)
    start = trio.current_time()
    assert not await bucket.take() and not await bucket.take()
    assert await bucket.take()
    assert trio.current_time() - start == pytest.approx(1.0)
    await trio.sleep(10)
    assert not await bucket.take() and not await bucket.take() and await bucket.take()


async def test_introspection(nursery: trio.Nursery, consul: FakeConsul) -> None:
    consul.register("web", "10.0.0.1", 80)
    namer = await started(nursery, consul)
    tree = watch(namer, "/dc1/web")
    missing = watch(namer, "/dc1/nope")
    await until_addresses(tree, {("10.0.0.1", 80)})
    await until(missing, lambda st: st == Ok(Neg))
    assert namer.bound_names() == [f"{PREFIX}/dc1/web"]
    state = namer.state()
    assert state["watches"]["web@dc1"]["addresses"] == ["10.0.0.1:80"]
    assert state["watches"]["nope@dc1"]["state"] == "neg"


async def test_the_namer_logs_at_most_one_warning_per_outage(
    nursery: trio.Nursery,
    consul: FakeConsul,
    caplog: pytest.LogCaptureFixture,
    autojump_clock: object,
) -> None:
    consul.register("web", "10.0.0.1", 80)
    namer = await started(nursery, consul)
    tree = watch(namer, "/dc1/web")
    await until_addresses(tree, {("10.0.0.1", 80)})
    caplog.clear()
    caplog.set_level(logging.INFO, "linkpy.namer.consul")
    consul.fail_next(500, 8, message="boom")
    consul.drop_connections()
    await eventually(lambda: namer.stats.errors.value >= 8)
    consul.register("web", "10.0.0.2", 80, service_id="two")
    await until_addresses(tree, {("10.0.0.1", 80), ("10.0.0.2", 80)})
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert (
        len(warnings) == 1 and "keeping the last good answer (1 addresses)" in warnings[0].message
    )
    assert any("Consul answers again" in r.message for r in caplog.records)
