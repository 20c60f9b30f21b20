"""The Kubernetes namers' behaviours over the emulator (real loopback HTTP)."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from linkpy.activity import Var
from linkpy.errors import ConfigError
from linkpy.metrics import Metrics
from linkpy.naming import Addr, AddrBound, Address, Failed, Neg, Ok, Path, Pending
from linkpy.plugin import Activity, NamerContext
from linkpy.testing.fakes.kubernetes import SERVICE_NAME_LABEL, slice_endpoint
from linkpy_k8s import K8sConfig, K8sExternalConfig, K8sNsConfig

from .helpers import (
    Slices,
    addresses,
    bound_of,
    start_k8s,
    start_namer,
    until,
    until_true,
)

SLICES = "/apis/discovery.k8s.io/v1/namespaces/prod/endpointslices"
SERVICES = "/api/v1/namespaces/prod/services"
ENDPOINTS = "/api/v1/namespaces/prod/endpoints"


def observe(var: Var[Any]) -> None:
    """Follow a var for the rest of the test (as a binding would)."""
    var.observe(lambda _: None)


async def test_named_port_binds_with_node_metadata(nursery: trio.Nursery) -> None:
    k8s = await start_k8s(nursery)
    k8s.set_endpoint_slice(
        "prod",
        "web-1",
        "web",
        [slice_endpoint("10.0.0.1", node_name="node-a", zone="z1"), slice_endpoint("10.0.0.2")],
        ports={"http": 8080, "admin": 9990},
    )
    namer = await start_namer(nursery, k8s)
    var = namer.lookup(Path.read("/Prod/HTTP/Web/users/42"))
    observe(var)
    b = await addresses(var, {("10.0.0.1", 8080), ("10.0.0.2", 8080)})
    assert b.id == Path.read("/#/io.l5d.k8s/prod/http/web")
    assert b.residual == Path.read("/users/42")
    addr = b.addr.sample()
    assert isinstance(addr, AddrBound)
    assert Address("10.0.0.1", 8080, metadata={"nodeName": "node-a", "zone": "z1"}) in (
        addr.addresses
    )
    # the same path gives the same activity; another residual shares the Addr var
    assert namer.lookup(Path.read("/prod/http/web/users/42")) is var
    other = namer.lookup(Path.read("/prod/http/web"))
    observe(other)
    await until(other, lambda s: s != Pending)
    assert bound_of(other).addr is b.addr
    assert namer.bound_names() == ["/#/io.l5d.k8s/prod/http/web"]


async def test_addresses_change_in_place(nursery: trio.Nursery) -> None:
    k8s = await start_k8s(nursery)
    slices = Slices(k8s)
    slices.set([("10.0.0.1", 80)])
    namer = await start_namer(nursery, k8s)
    var = namer.lookup(Path.read("/prod/http/web"))
    observe(var)
    b = await addresses(var, {("10.0.0.1", 80)})
    tree_version = var.version
    slices.set([("10.0.0.1", 80), ("10.0.0.2", 81)])
    await addresses(var, {("10.0.0.1", 80), ("10.0.0.2", 81)})
    slices.set([("10.0.0.2", 81)])
    await addresses(var, {("10.0.0.2", 81)})
    # the tree did not change, only its Addr var (bindings are not recomputed)
    assert var.version == tree_version and bound_of(var) is b


async def test_neg_and_empty(nursery: trio.Nursery) -> None:
    k8s = await start_k8s(nursery)
    k8s.set_endpoint_slice("prod", "web-1", "web", [], ports={"http": 8080})
    namer = await start_namer(nursery, k8s)
    missing = namer.lookup(Path.read("/prod/http/nobody"))
    no_port = namer.lookup(Path.read("/prod/grpc/web"))
    empty = namer.lookup(Path.read("/prod/http/web"))
    for v in (missing, no_port, empty):
        observe(v)
    await until(missing, lambda s: s == Ok(Neg))
    await until(no_port, lambda s: s == Ok(Neg))
    # the port exists but no endpoint is ready: bound to nothing (Linkerd's behaviour)
    await until(empty, lambda s: s != Pending)
    assert bound_of(empty).addr.sample() == AddrBound([])
    # the service appears: the Neg lookup binds
    k8s.set_endpoint_slice(
        "prod", "nobody-1", "nobody", [slice_endpoint("10.1.1.1")], ports={"http": 80}
    )
    await addresses(missing, {("10.1.1.1", 80)})
    # and goes away again
    k8s.delete("endpointslices", "prod", "nobody-1")
    await until(missing, lambda s: s == Ok(Neg))


async def test_ready_serving_terminating(nursery: trio.Nursery) -> None:
    k8s = await start_k8s(nursery)
    ports = {"http": 80}
    k8s.set_endpoint_slice(
        "prod",
        "web-1",
        "web",
        [
            slice_endpoint("10.0.0.1"),
            slice_endpoint("10.0.0.2", ready=False, serving=True, terminating=True),
            slice_endpoint("10.0.0.3", ready=False, serving=False, terminating=False),
            slice_endpoint("10.0.0.4", ready=None, serving=None, terminating=None),
        ],
        ports=ports,
    )
    namer = await start_namer(nursery, k8s)
    var = namer.lookup(Path.read("/prod/http/web"))
    observe(var)
    await addresses(var, {("10.0.0.1", 80), ("10.0.0.4", 80)})
    # a rollout's end: only terminating endpoints still serve; they keep the service up
    k8s.set_endpoint_slice(
        "prod",
        "web-1",
        "web",
        [slice_endpoint("10.0.0.2", ready=False, serving=True, terminating=True)],
        ports=ports,
    )
    await addresses(var, {("10.0.0.2", 80)})


async def test_numbered_port_maps_through_the_service(nursery: trio.Nursery) -> None:
    k8s = await start_k8s(nursery)
    slices = Slices(k8s)
    slices.set([("10.0.0.1", 8080)])
    namer = await start_namer(nursery, k8s)
    var = namer.lookup(Path.read("/prod/80/web"))
    observe(var)
    await until(var, lambda s: s == Ok(Neg))  # no Service yet
    # Service port 80 is named "http": the endpoints' "http" port, whatever its number
    k8s.set_service("prod", "web", [{"name": "http", "port": 80, "targetPort": "web-http"}])
    b = await addresses(var, {("10.0.0.1", 8080)})
    assert b.id == Path.read("/#/io.l5d.k8s/prod/80/web")
    # endpoints' ports named otherwise: a numeric targetPort is used directly (Linkerd)
    k8s.set_service("prod", "web", [{"name": "other", "port": 80, "targetPort": 9000}])
    await addresses(var, {("10.0.0.1", 9000)})
    k8s.set_service("prod", "web", [{"name": "http", "port": 81}])
    await until(var, lambda s: s == Ok(Neg))
    assert k8s.open_watches == 2  # the slices and the Service


async def test_label_selector(nursery: trio.Nursery) -> None:
    k8s = await start_k8s(nursery)
    k8s.set_endpoint_slice(
        "prod",
        "web-v1",
        "web",
        [slice_endpoint("10.0.0.1")],
        ports={"http": 80},
        labels={"version": "v1"},
    )
    k8s.set_endpoint_slice(
        "prod",
        "web-v2",
        "web",
        [slice_endpoint("10.0.0.2")],
        ports={"http": 80},
        labels={"version": "v2"},
    )
    namer = await start_namer(nursery, k8s, labelSelector="version")
    v2 = namer.lookup(Path.read("/prod/http/web/V2/rest"))
    observe(v2)
    b = await addresses(v2, {("10.0.0.2", 80)})
    assert b.id == Path.read("/#/io.l5d.k8s/prod/http/web/v2")
    assert b.residual == Path.read("/rest")
    (req,) = k8s.requests_to(SLICES)[:1]
    assert req.param("labelSelector") == f"{SERVICE_NAME_LABEL}=web,version=v2"
    # the label segment is required
    assert namer.lookup(Path.read("/prod/http/web")).sample() == Ok(Neg)


async def test_junk_names_are_neg_without_watches(nursery: trio.Nursery) -> None:
    k8s = await start_k8s(nursery)
    metrics = Metrics()
    namer = await start_namer(nursery, k8s, metrics=metrics)
    for junk in ("/.env", "/wp-admin/setup-config.php/x", "/a/b", "/x/y/z_z", "/ns/99999/svc"):
        assert namer.lookup(Path.read(junk)).sample() == Ok(Neg)
    await trio.sleep(0.1)
    assert k8s.requests == [] and k8s.open_watches == 0
    assert metrics.flat()["lookups/rejected"] == 5


async def test_one_watch_per_service_closed_when_idle(nursery: trio.Nursery) -> None:
    k8s = await start_k8s(nursery)
    Slices(k8s).set([("10.0.0.1", 80)])
    namer = await start_namer(nursery, k8s, idleTtlSecs=0.3)
    lookups = [
        namer.lookup(Path.read(p))
        for p in ("/prod/http/web", "/prod/http/web/a", "/prod/admin/web", "/PROD/HTTP/WEB/b")
    ]
    stops = [v.observe(lambda _: None) for v in lookups]
    await addresses(lookups[0], {("10.0.0.1", 80)})
    await until_true(lambda: k8s.open_watches == 1)
    assert len(k8s.requests_to(SLICES)) == 2  # one list, one watch
    for stop in stops:
        stop()
    await until_true(lambda: k8s.open_watches == 0)
    assert namer.open_watches() == 0
    # a later lookup opens a new watch and sees the current state
    again = namer.lookup(Path.read("/prod/http/web"))
    observe(again)
    await addresses(again, {("10.0.0.1", 80)})


async def test_watch_resumes_from_the_last_resource_version(nursery: trio.Nursery) -> None:
    k8s = await start_k8s(nursery)
    slices = Slices(k8s)
    slices.set([("10.0.0.1", 80)])
    namer = await start_namer(nursery, k8s)
    var = namer.lookup(Path.read("/prod/http/web"))
    observe(var)
    await addresses(var, {("10.0.0.1", 80)})
    slices.set([("10.0.0.1", 80), ("10.0.0.2", 80)])
    await addresses(var, {("10.0.0.1", 80), ("10.0.0.2", 80)})
    seen_rv = str(k8s.revision)
    k8s.clear_requests()
    k8s.end_watches()  # a server timeout: the stream ends cleanly
    await until_true(lambda: k8s.open_watches == 1 and bool(k8s.requests_to(SLICES)))
    (req,) = k8s.requests_to(SLICES)
    assert req.param("watch") == "1" and req.param("resourceVersion") == seen_rv
    assert req.param("allowWatchBookmarks") == "true" and req.param("timeoutSeconds")
    # changes made while reconnecting are not lost
    k8s.break_watches()
    slices.set([("10.0.0.3", 80)])
    await addresses(var, {("10.0.0.3", 80)})
    assert not [r for r in k8s.requests_to(SLICES) if r.param("watch") is None]  # no re-list


async def test_bookmarks_advance_the_resource_version(nursery: trio.Nursery) -> None:
    k8s = await start_k8s(nursery)
    Slices(k8s).set([("10.0.0.1", 80)])
    metrics = Metrics()
    namer = await start_namer(nursery, k8s, metrics=metrics)
    var = namer.lookup(Path.read("/prod/http/web"))
    observe(var)
    await addresses(var, {("10.0.0.1", 80)})
    await until_true(lambda: k8s.open_watches == 1)
    # other services change: the cluster revision moves on without events for "web"
    for i in range(5):
        k8s.set_endpoint_slice("prod", f"other-{i}", "other", [], ports={"http": 80})
    k8s.send_bookmarks()
    await until_true(lambda: metrics.flat().get("watch/bookmarks", 0) == 1)
    k8s.clear_requests()
    k8s.end_watches()
    await until_true(lambda: bool(k8s.requests_to(SLICES)))
    assert k8s.requests_to(SLICES)[0].param("resourceVersion") == str(k8s.revision)


@pytest.mark.parametrize("as_http", [False, True], ids=["error-event", "http-410"])
async def test_expired_resource_version_relists_and_drops_vanished_objects(
    nursery: trio.Nursery, as_http: bool
) -> None:
    k8s = await start_k8s(nursery)
    k8s.expired_watch_as_http_error = as_http
    slices = Slices(k8s)
    slices.set([("10.0.0.1", 80), ("10.0.0.2", 80)])
    metrics = Metrics()
    namer = await start_namer(nursery, k8s, metrics=metrics, backoffMinMs=200, backoffMaxMs=400)
    var = namer.lookup(Path.read("/prod/http/web"))
    observe(var)
    await addresses(var, {("10.0.0.1", 80), ("10.0.0.2", 80)})
    await until_true(lambda: k8s.open_watches == 1)
    # the watch drops and cannot come back for a while; meanwhile a slice is deleted
    # and the history compacted: no DELETED event will ever be replayed for it
    k8s.fail_next(500, count=None, path=SLICES)
    k8s.break_watches()
    await until_true(lambda: k8s.open_watches == 0 and metrics.flat().get("errors/http_500", 0) > 0)
    slices.set([("10.0.0.1", 80)])
    k8s.compact()
    k8s.clear_faults()
    await addresses(var, {("10.0.0.1", 80)})
    assert metrics.flat()["watch/expired"] >= 1
    lists = [r for r in k8s.requests_to(SLICES) if r.param("watch") is None]
    assert len(lists) == 2


async def test_falls_back_to_v1_endpoints_when_slices_are_not_served(
    nursery: trio.Nursery,
) -> None:
    k8s = await start_k8s(nursery)
    k8s.fail_next(404, count=None, path="/apis/discovery.k8s.io/")
    k8s.set_endpoints(
        "prod",
        "web",
        [{"ip": "10.0.0.1", "nodeName": "n1"}],
        ports={"http": 80},
        not_ready=["10.0.0.9"],
    )
    metrics = Metrics()
    namer = await start_namer(nursery, k8s, metrics=metrics)
    var = namer.lookup(Path.read("/prod/http/web"))
    observe(var)
    b = await addresses(var, {("10.0.0.1", 80)})
    assert b.addr.sample() == AddrBound([Address("10.0.0.1", 80, metadata={"nodeName": "n1"})])
    assert metrics.flat()["fallbacks/endpoints"] == 1
    assert namer.state()["endpointsApi"] == "endpoints"
    await until_true(lambda: any(r.param("watch") for r in k8s.requests_to(ENDPOINTS)))
    (watch,) = [r for r in k8s.requests_to(ENDPOINTS) if r.param("watch")]
    assert watch.param("fieldSelector") == "metadata.name=web"
    k8s.set_endpoints("prod", "web", [], ports={"http": 80})  # scaled to zero: no subsets
    await until(var, lambda s: s == Ok(Neg))


async def test_falls_back_when_rbac_forbids_slices(nursery: trio.Nursery) -> None:
    k8s = await start_k8s(nursery)
    k8s.deny("endpointslices")
    k8s.set_endpoints("prod", "web", ["10.0.0.1"], ports={"http": 80})
    namer = await start_namer(nursery, k8s)
    var = namer.lookup(Path.read("/prod/http/web"))
    observe(var)
    await addresses(var, {("10.0.0.1", 80)})


async def test_a_lasting_error_before_any_answer_fails_the_lookup(nursery: trio.Nursery) -> None:
    k8s = await start_k8s(nursery)
    k8s.deny("endpointslices")
    namer = await start_namer(nursery, k8s, endpointsApi="endpointslices")
    var = namer.lookup(Path.read("/prod/http/web"))
    observe(var)
    st = await until(var, lambda s: s != Pending)
    assert isinstance(st, Failed) and "403 Forbidden" in str(st.exc)
    assert "RBAC" in str(st.exc)
    k8s.allow_all()
    Slices(k8s).set([("10.0.0.1", 80)])
    await addresses(var, {("10.0.0.1", 80)})


async def test_a_transient_error_before_any_answer_stays_pending(nursery: trio.Nursery) -> None:
    k8s = await start_k8s(nursery)
    k8s.fail_next(500, count=3)
    Slices(k8s).set([("10.0.0.1", 80)])
    namer = await start_namer(nursery, k8s)
    var = namer.lookup(Path.read("/prod/http/web"))
    states: list[object] = []
    var.observe(states.append)
    await addresses(var, {("10.0.0.1", 80)})
    assert not any(isinstance(s, Failed) for s in states)
    assert len(k8s.requests_to(SLICES)) >= 4


async def test_ns_namer_takes_the_namespace_from_the_environment(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    k8s = await start_k8s(nursery)
    k8s.set_endpoint_slice(
        "team-a", "web-1", "web", [slice_endpoint("10.0.0.1")], ports={"http": 80}
    )
    monkeypatch.setenv("MY_NS", "Team-A")
    namer = await start_namer(nursery, k8s, K8sNsConfig, envVar="MY_NS")
    var = namer.lookup(Path.read("/http/web/x"))
    observe(var)
    b = await addresses(var, {("10.0.0.1", 80)})
    assert b.id == Path.read("/#/io.l5d.k8s.ns/http/web") and b.residual == Path.read("/x")
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    with pytest.raises(ConfigError, match="POD_NAMESPACE is not set"):
        K8sNsConfig().mk(NamerContext(metrics=Metrics()))


async def test_external_namer_binds_to_the_load_balancer(nursery: trio.Nursery) -> None:
    k8s = await start_k8s(nursery)
    ports = [{"name": "http", "port": 80, "targetPort": 8080}, {"name": "admin", "port": 9990}]
    k8s.set_service("prod", "web", ports, type="LoadBalancer")
    namer = await start_namer(nursery, k8s, K8sExternalConfig, experimental=True)
    by_name = namer.lookup(Path.read("/prod/http/web"))
    by_number = namer.lookup(Path.read("/prod/9990/web"))
    observe(by_name)
    observe(by_number)
    await until(by_name, lambda s: s == Ok(Neg))  # no ingress provisioned yet
    k8s.set_service(
        "prod",
        "web",
        ports,
        type="LoadBalancer",
        ingress=[{"ip": "35.1.2.3"}, {"hostname": "lb.example.com"}],
    )
    b = await addresses(by_name, {("35.1.2.3", 80), ("lb.example.com", 80)})
    assert b.id == Path.read("/#/io.l5d.k8s.external/prod/http/web")
    await addresses(by_number, {("35.1.2.3", 9990), ("lb.example.com", 9990)})
    k8s.delete("services", "prod", "web")
    await until(by_name, lambda s: s == Ok(Neg))


async def test_other_services_keep_updating_while_one_is_broken(nursery: trio.Nursery) -> None:
    k8s = await start_k8s(nursery)
    web = Slices(k8s)
    web.set([("10.0.0.1", 80)])
    api = Slices(k8s, svc="api")
    api.set([("10.0.1.1", 80)])
    metrics = Metrics()
    namer = await start_namer(nursery, k8s, metrics=metrics)
    web_var = namer.lookup(Path.read("/prod/http/web"))
    api_var = namer.lookup(Path.read("/prod/http/api"))
    observe(web_var)
    observe(api_var)
    await addresses(web_var, {("10.0.0.1", 80)})
    await addresses(api_var, {("10.0.1.1", 80)})
    # web's slice turns unreadable: web keeps its last good answer, api goes on
    k8s.put(
        "endpointslices",
        {
            "metadata": {
                "namespace": "prod",
                "name": "web-bad",
                "labels": {SERVICE_NAME_LABEL: "web"},
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["not-an-ip"]}],
            "ports": [{"name": "http", "port": 80}],
        },
    )
    await until_true(lambda: metrics.flat().get("errors/decode", 0) >= 1)
    api.set([("10.0.1.2", 80)])
    await addresses(api_var, {("10.0.1.2", 80)})
    assert hostports_of(web_var) == {("10.0.0.1", 80)}
    k8s.delete("endpointslices", "prod", "web-bad")
    web.set([("10.0.0.2", 80)])
    await addresses(web_var, {("10.0.0.2", 80)})


def hostports_of(var: Activity) -> set[tuple[str, int]]:
    addr = bound_of(var).addr.sample()
    assert isinstance(addr, AddrBound)
    return {(a.host, a.port) for a in addr.addresses}


def test_config_checks() -> None:
    ctx = NamerContext(metrics=Metrics())
    with pytest.raises(ConfigError, match="labelSelector: 'a b' is not a label key"):
        K8sConfig(labelSelector="a b").mk(ctx)
    with pytest.raises(ConfigError, match="backoffMinMs"):
        K8sConfig(backoffMinMs=100, backoffMaxMs=10).mk(ctx)
    assert Addr.Neg is not None
