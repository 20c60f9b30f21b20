"""FakeKubernetes against the checklist of discovery-apis.md section 6.2 (K1-K21)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from linkpy.testing import FakeKubernetes
from linkpy.testing.fakes.kubernetes import ENDPOINTS_WARNING, SERVICE_NAME_LABEL, slice_endpoint

from .helpers import Lines, RawClient, client, spawn

EP = "/api/v1/namespaces/prod/endpoints"
SLICES = "/apis/discovery.k8s.io/v1/namespaces/prod/endpointslices"


@pytest.fixture
async def k8s(nursery: trio.Nursery) -> FakeKubernetes:
    fake = FakeKubernetes(seed=1)
    await nursery.start(fake.serve)
    return fake


@pytest.fixture
async def http(k8s: FakeKubernetes) -> AsyncIterator[httpx.AsyncClient]:
    async with client(k8s.url) as c:
        yield c


def rv(obj: dict[str, Any]) -> str:
    value = obj["metadata"]["resourceVersion"]
    assert isinstance(value, str)
    return value


def ips(event: dict[str, Any]) -> list[str]:
    return [a["ip"] for s in event["object"].get("subsets", []) for a in s.get("addresses", [])]


# --- K1-K2: get and revisions -------------------------------------------------------


async def test_k1_get_endpoints_and_not_found_status(
    k8s: FakeKubernetes, http: httpx.AsyncClient
) -> None:
    k8s.set_endpoints(
        "prod", "web", ["10.196.5.84"], ports={"http": 7778, "admin": 9990}, not_ready=["10.0.0.9"]
    )
    r = await http.get(f"{EP}/web")
    assert r.status_code == 200
    obj = r.json()
    assert (obj["kind"], obj["apiVersion"]) == ("Endpoints", "v1")
    assert rv(obj).isdigit()
    (subset,) = obj["subsets"]
    assert subset["addresses"] == [{"ip": "10.196.5.84"}]
    assert subset["notReadyAddresses"] == [{"ip": "10.0.0.9"}]
    assert subset["ports"] == [
        {"name": "http", "port": 7778, "protocol": "TCP"},
        {"name": "admin", "port": 9990, "protocol": "TCP"},
    ]
    r = await http.get(f"{EP}/missing")
    assert r.status_code == 404
    assert r.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'endpoints "missing" not found',
        "reason": "NotFound",
        "details": {"name": "missing", "kind": "endpoints"},
        "code": 404,
    }


async def test_k2_one_cluster_wide_revision(k8s: FakeKubernetes, http: httpx.AsyncClient) -> None:
    a = k8s.set_endpoints("prod", "a", ["10.0.0.1"], ports={"http": 80})
    s = k8s.set_service("prod", "a", [{"name": "http", "port": 80}])
    b = k8s.set_endpoints("dev", "b", ["10.0.0.2"], ports={"http": 80})
    assert [int(rv(o)) for o in (a, s, b)] == [1, 2, 3]
    assert k8s.revision == 3
    same = k8s.set_endpoints("prod", "a", ["10.0.0.1"], ports={"http": 80})  # no change
    assert rv(same) == "1" and k8s.revision == 3
    r = await http.get("/api/v1/namespaces/prod/endpoints")
    assert r.json()["metadata"]["resourceVersion"] == "3"
    assert [rv(i) for i in r.json()["items"]] == ["1"]
    assert (await http.get(f"{EP}/a")).json()["metadata"]["resourceVersion"] == "1"


# --- K3-K9: watches -------------------------------------------------------------------


async def test_k3_watch_from_list_rv_streams_only_later_changes(
    k8s: FakeKubernetes, http: httpx.AsyncClient
) -> None:
    k8s.set_endpoints("prod", "web", ["10.0.0.1"], ports={"http": 80})
    listed = (await http.get(EP)).json()
    params = {"watch": "true", "resourceVersion": rv(listed)}
    async with http.stream("GET", EP, params=params) as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/json"
        assert r.headers["transfer-encoding"] == "chunked"
        events = Lines(r)
        k8s.set_endpoints("prod", "web", ["10.0.0.2"], ports={"http": 80})
        k8s.set_endpoints("prod", "api", ["10.0.0.3"], ports={"http": 80})
        e1, e2 = await events.next(), await events.next()
    assert (e1["type"], ips(e1), rv(e1["object"])) == ("MODIFIED", ["10.0.0.2"], "2")
    assert (e2["type"], e2["object"]["metadata"]["name"]) == ("ADDED", "api")
    assert set(e1) == {"type", "object"}


async def test_k3_watch_replays_changes_after_an_older_rv(
    k8s: FakeKubernetes, http: httpx.AsyncClient
) -> None:
    k8s.set_endpoints("prod", "web", ["10.0.0.1"], ports={"http": 80})
    k8s.set_endpoints("prod", "web", ["10.0.0.2"], ports={"http": 80})
    k8s.set_endpoints("prod", "web", ["10.0.0.3"], ports={"http": 80})
    async with http.stream("GET", EP, params={"watch": "1", "resourceVersion": "1"}) as r:
        events = Lines(r)
        got = [await events.next(), await events.next()]
    assert [(e["type"], ips(e)) for e in got] == [
        ("MODIFIED", ["10.0.0.2"]),
        ("MODIFIED", ["10.0.0.3"]),
    ]


@pytest.mark.parametrize("params", [{}, {"resourceVersion": "0"}])
async def test_k4_watch_without_rv_starts_with_synthetic_added(
    k8s: FakeKubernetes, http: httpx.AsyncClient, params: dict[str, str]
) -> None:
    k8s.set_endpoints("prod", "b", ["10.0.0.2"], ports={"http": 80})
    k8s.set_endpoints("prod", "a", ["10.0.0.1"], ports={"http": 80})
    k8s.set_endpoints("dev", "c", ["10.0.0.3"], ports={"http": 80})
    async with http.stream("GET", EP, params={"watch": "true", **params}) as r:
        events = Lines(r)
        first = [await events.next(), await events.next()]
        k8s.set_endpoints("prod", "a", ["10.0.0.9"], ports={"http": 80})
        then = await events.next()
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in first] == [
        ("ADDED", "a"),
        ("ADDED", "b"),
    ]
    assert (then["type"], ips(then)) == ("MODIFIED", ["10.0.0.9"])


async def test_k5_deleted_carries_last_state_with_deletion_rv(
    k8s: FakeKubernetes, http: httpx.AsyncClient
) -> None:
    k8s.set_endpoints("prod", "web", ["10.0.0.1"], ports={"http": 80})
    async with http.stream("GET", EP, params={"watch": "true", "resourceVersion": "1"}) as r:
        events = Lines(r)
        k8s.delete("endpoints", "prod", "web")
        e = await events.next()
    assert e["type"] == "DELETED"
    assert ips(e) == ["10.0.0.1"]
    assert rv(e["object"]) == "2" == str(k8s.revision)
    assert (await http.get(f"{EP}/web")).status_code == 404


async def test_k6_timeout_seconds_ends_the_stream_cleanly(
    k8s: FakeKubernetes, http: httpx.AsyncClient, autojump_clock: object
) -> None:
    k8s.set_endpoints("prod", "web", ["10.0.0.1"], ports={"http": 80})
    start = trio.current_time()
    params = {"watch": "true", "resourceVersion": "1", "timeoutSeconds": "1"}
    async with http.stream("GET", EP, params=params) as r:
        assert await Lines(r).ended()  # no ERROR event, a complete chunked body
    assert trio.current_time() - start == pytest.approx(1.0)


async def test_k6_server_picks_a_timeout_when_none_is_given(
    k8s: FakeKubernetes, http: httpx.AsyncClient, autojump_clock: object
) -> None:
    start = trio.current_time()
    async with http.stream("GET", EP, params={"watch": "true"}) as r:
        assert await Lines(r).ended()
    assert 1800.0 <= trio.current_time() - start <= 3600.0


async def test_k7_too_old_rv_is_an_error_event_then_end(
    k8s: FakeKubernetes, http: httpx.AsyncClient
) -> None:
    k8s.history_events = 2
    for i in range(5):
        k8s.set_endpoints("prod", "web", [f"10.0.0.{i}"], ports={"http": 80})
    async with http.stream("GET", EP, params={"watch": "true", "resourceVersion": "1"}) as r:
        assert r.status_code == 200
        events = Lines(r)
        e = await events.next()
        assert await events.ended()
    assert e == {
        "type": "ERROR",
        "object": {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "too old resource version: 1 (3)",
            "reason": "Expired",
            "code": 410,
        },
    }
    k8s.expired_watch_as_http_error = True
    r = await http.get(EP, params={"watch": "true", "resourceVersion": "1"})
    assert r.status_code == 410
    assert (r.json()["kind"], r.json()["code"], r.json()["reason"]) == ("Status", 410, "Expired")


async def test_k8_history_window_by_events(k8s: FakeKubernetes, http: httpx.AsyncClient) -> None:
    k8s.history_events = 3
    for i in range(6):
        k8s.set_endpoints("prod", "web", [f"10.0.0.{i}"], ports={"http": 80})
    # changes 4..6 are retained: a watch from 3 is fine, from 2 is too old
    async with http.stream("GET", EP, params={"watch": "true", "resourceVersion": "3"}) as r:
        assert (await Lines(r).next())["type"] == "MODIFIED"
    async with http.stream("GET", EP, params={"watch": "true", "resourceVersion": "2"}) as r:
        assert (await Lines(r).next())["type"] == "ERROR"


async def test_k8_history_window_by_seconds(
    k8s: FakeKubernetes, http: httpx.AsyncClient, autojump_clock: object
) -> None:
    k8s.history_seconds = 60
    k8s.set_endpoints("prod", "web", ["10.0.0.1"], ports={"http": 80})
    k8s.set_endpoints("prod", "web", ["10.0.0.2"], ports={"http": 80})
    await trio.sleep(61)
    async with http.stream("GET", EP, params={"watch": "true", "resourceVersion": "1"}) as r:
        assert (await Lines(r).next())["type"] == "ERROR"


async def test_k8_compact_and_restart_forget_history(
    k8s: FakeKubernetes, http: httpx.AsyncClient
) -> None:
    k8s.set_endpoints("prod", "web", ["10.0.0.1"], ports={"http": 80})
    k8s.set_endpoints("prod", "web", ["10.0.0.2"], ports={"http": 80})
    k8s.restart()
    await trio.testing.wait_all_tasks_blocked()
    async with http.stream("GET", EP, params={"watch": "true", "resourceVersion": "1"}) as r:
        assert (await Lines(r).next())["object"]["code"] == 410
    async with http.stream("GET", EP, params={"watch": "true", "resourceVersion": "2"}) as r:
        events = Lines(r)
        k8s.delete("endpoints", "prod", "web")
        assert (await events.next())["type"] == "DELETED"


async def test_k9_bookmarks_only_when_allowed(
    k8s: FakeKubernetes, http: httpx.AsyncClient, autojump_clock: object
) -> None:
    k8s.set_endpoints("prod", "web", ["10.0.0.1"], ports={"http": 80})
    params = {"watch": "true", "resourceVersion": "1", "allowWatchBookmarks": "true"}
    async with http.stream("GET", EP, params=params) as r:
        events = Lines(r)
        start = trio.current_time()
        periodic = await events.next()
        assert trio.current_time() - start == pytest.approx(k8s.bookmark_interval)
        k8s.set_service("prod", "web", [{"port": 80}])  # another resource: RV moves on
        k8s.send_bookmarks()
        forced = await events.next()
    assert periodic == {
        "type": "BOOKMARK",
        "object": {"kind": "Endpoints", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}},
    }
    assert forced["object"]["metadata"] == {"resourceVersion": "2"}
    async with http.stream("GET", EP, params={"watch": "true", "resourceVersion": "1"}) as r:
        events = Lines(r)
        k8s.send_bookmarks()
        await trio.sleep(10 * k8s.bookmark_interval)
        k8s.set_endpoints("prod", "web", ["10.0.0.2"], ports={"http": 80})
        assert (await events.next())["type"] == "MODIFIED"  # no BOOKMARK before it


async def test_k9_send_initial_events_ends_with_annotated_bookmark(
    k8s: FakeKubernetes, http: httpx.AsyncClient
) -> None:
    k8s.set_endpoints("prod", "web", ["10.0.0.1"], ports={"http": 80})
    params = {
        "watch": "true",
        "sendInitialEvents": "true",
        "resourceVersionMatch": "NotOlderThan",
        "allowWatchBookmarks": "true",
    }
    async with http.stream("GET", EP, params=params) as r:
        events = Lines(r)
        added, bookmark = await events.next(), await events.next()
    assert added["type"] == "ADDED"
    assert bookmark["type"] == "BOOKMARK"
    assert bookmark["object"]["metadata"] == {
        "resourceVersion": "1",
        "annotations": {"k8s.io/initial-events-end": "true"},
    }


# --- K10: chunking ----------------------------------------------------------------------


async def test_k10_events_can_be_split_across_chunks_or_batched(
    k8s: FakeKubernetes, autojump_clock: object
) -> None:
    k8s.set_endpoints("prod", "a", ["10.0.0.1"], ports={"http": 80})
    k8s.set_endpoints("prod", "b", ["10.0.0.2"], ports={"http": 80})
    k8s.watch_chunking = "split"
    raw = await RawClient.connect(k8s.port or 0)
    await raw.request(f"{EP}?watch=true&timeoutSeconds=1")
    assert (await raw.response()).status_code == 200
    chunks = [e.data async for e in raw.data_events()]
    assert len(chunks) == 4
    assert not chunks[0].endswith(b"\n") and chunks[1].endswith(b"\n")
    assert b"".join(chunks).count(b"\n") == 2
    await raw.aclose()

    k8s.watch_chunking = "batch"
    raw = await RawClient.connect(k8s.port or 0)
    await raw.request(f"{EP}?watch=true&timeoutSeconds=1")
    await raw.response()
    chunks = [e.data async for e in raw.data_events()]
    assert len(chunks) == 1 and chunks[0].count(b"\n") == 2
    await raw.aclose()


async def test_k10_default_is_one_event_per_chunk(
    k8s: FakeKubernetes, autojump_clock: object
) -> None:
    k8s.set_endpoints("prod", "a", ["10.0.0.1"], ports={"http": 80})
    k8s.set_endpoints("prod", "b", ["10.0.0.2"], ports={"http": 80})
    raw = await RawClient.connect(k8s.port or 0)
    await raw.request(f"{EP}?watch=true&timeoutSeconds=1")
    await raw.response()
    chunks = [e.data async for e in raw.data_events()]
    assert [c.count(b"\n") for c in chunks] == [1, 1]
    assert all(e.endswith(b"\n") for e in chunks)
    await raw.aclose()


# --- K11-K12: selectors ------------------------------------------------------------------


@pytest.fixture
def labelled(k8s: FakeKubernetes) -> FakeKubernetes:
    k8s.set_endpoints("prod", "a", ["10.0.0.1"], labels={"app": "web", "tier": "front"})
    k8s.set_endpoints("prod", "b", ["10.0.0.2"], labels={"app": "api"})
    k8s.set_endpoints("prod", "c", ["10.0.0.3"])
    return k8s


@pytest.mark.parametrize(
    ("selector", "names"),
    [
        ("app=web", ["a"]),
        ("app==web", ["a"]),
        ("app!=web", ["b", "c"]),
        ("app in (web, api)", ["a", "b"]),
        ("app notin (web)", ["b", "c"]),
        ("app", ["a", "b"]),
        ("!app", ["c"]),
        ("app,tier=front", ["a"]),
        ("app in (web,api),!tier", ["b"]),
    ],
)
async def test_k11_label_selectors_filter_lists(
    labelled: FakeKubernetes, http: httpx.AsyncClient, selector: str, names: list[str]
) -> None:
    r = await http.get(EP, params={"labelSelector": selector})
    assert [i["metadata"]["name"] for i in r.json()["items"]] == names


async def test_k11_field_selectors_and_bad_selectors(
    labelled: FakeKubernetes, http: httpx.AsyncClient
) -> None:
    r = await http.get(EP, params={"fieldSelector": "metadata.name=b"})
    assert [i["metadata"]["name"] for i in r.json()["items"]] == ["b"]
    r = await http.get(EP, params={"fieldSelector": "metadata.name!=b"})
    assert [i["metadata"]["name"] for i in r.json()["items"]] == ["a", "c"]
    r = await http.get("/api/v1/endpoints", params={"fieldSelector": "metadata.namespace=prod"})
    assert len(r.json()["items"]) == 3
    r = await http.get(EP, params={"fieldSelector": "spec.bogus=x"})
    assert (r.status_code, r.json()["reason"]) == (400, "BadRequest")
    r = await http.get(EP, params={"labelSelector": "app in web"})
    assert (r.status_code, r.json()["reason"]) == (400, "BadRequest")


async def test_k11_selectors_filter_watches(
    labelled: FakeKubernetes, http: httpx.AsyncClient
) -> None:
    params = {"watch": "true", "labelSelector": "app=web", "fieldSelector": "metadata.name=a"}
    async with http.stream("GET", EP, params=params) as r:
        events = Lines(r)
        assert (await events.next())["object"]["metadata"]["name"] == "a"
        labelled.set_endpoints("prod", "b", ["10.0.0.8"], labels={"app": "api"})
        labelled.set_endpoints("prod", "a", ["10.0.0.9"], labels={"app": "web", "tier": "x"})
        e = await events.next()
    assert (e["type"], ips(e)) == ("MODIFIED", ["10.0.0.9"])


async def test_k12_object_leaving_the_selector_is_deleted_for_the_watch(
    labelled: FakeKubernetes, http: httpx.AsyncClient
) -> None:
    start = str(labelled.revision)
    params = {"watch": "true", "labelSelector": "app=web", "resourceVersion": start}
    async with http.stream("GET", EP, params=params) as r:
        events = Lines(r)
        labelled.set_labels("endpoints", "prod", "a", {"app": "other"})
        gone = await events.next()
        labelled.set_labels("endpoints", "prod", "c", {"app": "web"})
        came = await events.next()
    assert gone["type"] == "DELETED"
    assert gone["object"]["metadata"]["labels"] == {"app": "web", "tier": "front"}  # last match
    assert rv(gone["object"]) == str(int(start) + 1)
    assert (came["type"], came["object"]["metadata"]["name"]) == ("ADDED", "c")


# --- K13-K17: resources ------------------------------------------------------------------


async def test_k13_endpoint_slices_of_a_service(
    k8s: FakeKubernetes, http: httpx.AsyncClient
) -> None:
    k8s.set_endpoint_slice("prod", "web-1", "web", [slice_endpoint("10.0.0.1")], ports={"http": 80})
    k8s.set_endpoint_slice("prod", "web-2", "web", [slice_endpoint("10.0.0.2")], ports={"": 81})
    k8s.set_endpoint_slice("prod", "api-1", "api", [slice_endpoint("10.0.0.3")], ports={"http": 80})
    selector = {"labelSelector": f"{SERVICE_NAME_LABEL}=web"}
    r = await http.get(SLICES, params=selector)
    body = r.json()
    assert (body["kind"], body["apiVersion"]) == ("EndpointSliceList", "discovery.k8s.io/v1")
    assert [i["metadata"]["name"] for i in body["items"]] == ["web-1", "web-2"]
    assert body["items"][1]["ports"] == [{"port": 81, "protocol": "TCP"}]
    assert body["items"][0]["addressType"] == "IPv4"
    async with http.stream(
        "GET",
        SLICES,
        params={
            **selector,
            "watch": "true",
            "resourceVersion": body["metadata"]["resourceVersion"],
        },
    ) as w:
        events = Lines(w)
        k8s.set_endpoint_slice("prod", "web-3", "web", [slice_endpoint("10.0.0.4")])
        k8s.delete("endpointslices", "prod", "web-1")
        k8s.delete("endpointslices", "prod", "api-1")
        k8s.delete("endpointslices", "prod", "web-2")
        got = [await events.next() for _ in range(3)]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in got] == [
        ("ADDED", "web-3"),
        ("DELETED", "web-1"),
        ("DELETED", "web-2"),
    ]
    assert got[0]["object"]["kind"] == "EndpointSlice"
    r = await http.get(f"{SLICES}/nope")
    assert r.json()["message"] == 'endpointslices.discovery.k8s.io "nope" not found'
    assert (await http.get("/api/v1/namespaces/prod/endpointslices")).status_code == 404


async def test_k14_slice_conditions_nil_true_false_independently(
    k8s: FakeKubernetes, http: httpx.AsyncClient
) -> None:
    k8s.set_endpoint_slice(
        "prod",
        "web-1",
        "web",
        [
            slice_endpoint("10.0.0.1"),
            slice_endpoint("10.0.0.2", ready=None, serving=None, terminating=None),
            slice_endpoint("10.0.0.3", ready=False, serving=True, terminating=True),
            slice_endpoint("10.0.0.4", ready=None, serving=False, terminating=None),
        ],
        ports={"http": 80},
    )
    (item,) = (await http.get(SLICES)).json()["items"]
    assert [e["conditions"] for e in item["endpoints"]] == [
        {"ready": True, "serving": True, "terminating": False},
        {},
        {"ready": False, "serving": True, "terminating": True},
        {"serving": False},
    ]


async def test_k15_limit_and_continue_paginate_at_one_rv(
    k8s: FakeKubernetes, http: httpx.AsyncClient
) -> None:
    for name in "abcde":
        k8s.set_endpoints("prod", name, ["10.0.0.1"], ports={"http": 80})
    page1 = (await http.get(EP, params={"limit": "2"})).json()
    assert [i["metadata"]["name"] for i in page1["items"]] == ["a", "b"]
    assert page1["metadata"]["remainingItemCount"] == 3
    k8s.set_endpoints("prod", "aa", ["10.0.0.2"], ports={"http": 80})  # after the snapshot
    k8s.delete("endpoints", "prod", "d")
    page2 = (
        await http.get(EP, params={"limit": "2", "continue": page1["metadata"]["continue"]})
    ).json()
    assert [i["metadata"]["name"] for i in page2["items"]] == ["c", "d"]
    page3 = (
        await http.get(EP, params={"limit": "2", "continue": page2["metadata"]["continue"]})
    ).json()
    assert [i["metadata"]["name"] for i in page3["items"]] == ["e"]
    assert "continue" not in page3["metadata"]
    rvs = {p["metadata"]["resourceVersion"] for p in (page1, page2, page3)}
    assert rvs == {"5"}
    k8s.compact()
    r = await http.get(EP, params={"limit": "2", "continue": page1["metadata"]["continue"]})
    assert (r.status_code, r.json()["code"], r.json()["reason"]) == (410, 410, "Expired")
    r = await http.get(EP, params={"continue": "garbage"})
    assert r.status_code == 400


async def test_k16_deprecated_watch_path_of_one_object(
    k8s: FakeKubernetes, http: httpx.AsyncClient
) -> None:
    k8s.set_endpoints("prod", "web", ["10.0.0.1"], ports={"http": 80})
    k8s.set_endpoints("prod", "other", ["10.0.0.2"], ports={"http": 80})
    async with http.stream("GET", "/api/v1/watch/namespaces/prod/endpoints/web") as r:
        events = Lines(r)
        first = await events.next()
        k8s.set_endpoints("prod", "other", ["10.0.0.3"], ports={"http": 80})
        k8s.set_endpoints("prod", "web", ["10.0.0.4"], ports={"http": 80})
        then = await events.next()
    assert (first["type"], ips(first)) == ("ADDED", ["10.0.0.1"])
    assert (then["type"], ips(then)) == ("MODIFIED", ["10.0.0.4"])


async def test_k17_service_target_ports_and_load_balancer_ingress(
    k8s: FakeKubernetes, http: httpx.AsyncClient
) -> None:
    k8s.set_service(
        "srv",
        "sessions",
        [
            {"name": "http", "port": 80, "targetPort": 54321, "nodePort": 31380},
            {"name": "admin", "port": 9990, "targetPort": "admin"},
            {"name": "plain", "port": 7000},
        ],
        type="LoadBalancer",
        ingress=[{"ip": "35.184.61.229"}, {"hostname": "lb.example.com"}],
    )
    k8s.set_service("srv", "pending", [{"port": 80}], type="LoadBalancer")
    svc = (await http.get("/api/v1/namespaces/srv/services/sessions")).json()
    assert svc["kind"] == "Service"
    assert [p["targetPort"] for p in svc["spec"]["ports"]] == [54321, "admin", 7000]
    assert svc["status"]["loadBalancer"]["ingress"] == [
        {"ip": "35.184.61.229"},
        {"hostname": "lb.example.com"},
    ]
    pending = (await http.get("/api/v1/namespaces/srv/services/pending")).json()
    assert pending["status"]["loadBalancer"] == {}


async def test_pods_and_nodes_are_served(k8s: FakeKubernetes, http: httpx.AsyncClient) -> None:
    k8s.set_pod("prod", "web-0", "10.1.0.5", node_name="n1", host_ip="192.168.0.1")
    k8s.set_node("n1", internal_ip="192.168.0.1", pod_cidr="10.1.0.0/24")
    r = await http.get("/api/v1/namespaces/prod/pods", params={"fieldSelector": "spec.nodeName=n1"})
    (pod,) = r.json()["items"]
    assert (pod["status"]["podIP"], pod["status"]["hostIP"]) == ("10.1.0.5", "192.168.0.1")
    node = (await http.get("/api/v1/nodes/n1")).json()
    assert node["kind"] == "Node" and "namespace" not in node["metadata"]
    assert {"type": "InternalIP", "address": "192.168.0.1"} in node["status"]["addresses"]
    assert (await http.get("/api/v1/nodes")).json()["kind"] == "NodeList"


# --- K18-K21: auth, warnings, faults ------------------------------------------------------


async def test_k18_in_cluster_bearer_token_rbac_and_rotation(nursery: trio.Nursery) -> None:
    k8s = FakeKubernetes(mode="in-cluster", token="t1")
    await nursery.start(k8s.serve)
    k8s.set_endpoints("prod", "web", ["10.0.0.1"], ports={"http": 80})
    async with client(k8s.url) as http:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "t1"}):
            r = await http.get(f"{EP}/web", headers=headers)
            assert r.status_code == 401
            assert (r.json()["kind"], r.json()["reason"]) == ("Status", "Unauthorized")
        good = {"Authorization": "Bearer t1"}
        assert (await http.get(f"{EP}/web", headers=good)).status_code == 200
        k8s.deny("endpoints", "watch")
        r = await http.get(EP, params={"watch": "true"}, headers=good)
        assert (r.status_code, r.json()["reason"]) == (403, "Forbidden")
        assert 'cannot watch resource "endpoints"' in r.json()["message"]
        assert (await http.get(EP, headers=good)).status_code == 200
        k8s.deny("endpoints", namespace="prod")
        r = await http.get(f"{EP}/web", headers=good)
        assert r.status_code == 403
        assert r.json()["message"] == (
            'endpoints "web" is forbidden: User "system:serviceaccount:default:linkpy" '
            'cannot get resource "endpoints" in API group "" in the namespace "prod"'
        )
        k8s.allow_all()
        k8s.set_token("t2")
        assert (await http.get(f"{EP}/web", headers=good)).status_code == 401
        r = await http.get(f"{EP}/web", headers={"Authorization": "Bearer t2"})
        assert r.status_code == 200


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("localhost:8001", 200),
        ("127.0.0.1:8001", 200),
        ("localhost", 200),
        ("[::1]", 200),
        ("[::1]:8001", 403),  # kubectl strips the brackets with the port: "::1" fails ^\[::1\]$
        ("example.com:8001", 403),
        ("10.0.0.1", 403),
    ],
)
async def test_k19_kubectl_proxy_checks_the_host_header(
    k8s: FakeKubernetes, http: httpx.AsyncClient, host: str, status: int
) -> None:
    assert k8s.mode == "proxy"
    r = await http.get(EP, headers={"Host": host})
    assert r.status_code == status
    if status == 403:
        assert r.text == "Forbidden\n"


async def test_k20_endpoints_carry_the_deprecation_warning_from_1_33(
    k8s: FakeKubernetes, http: httpx.AsyncClient
) -> None:
    k8s.set_endpoints("prod", "web", ["10.0.0.1"], ports={"http": 80})
    assert (await http.get(f"{EP}/web")).headers["warning"] == ENDPOINTS_WARNING
    assert (await http.get(EP)).headers["warning"] == ENDPOINTS_WARNING
    assert "warning" not in (await http.get(SLICES)).headers
    k8s.version = (1, 32)
    assert "warning" not in (await http.get(f"{EP}/web")).headers
    assert (await http.get("/version")).json()["minor"] == "32"


async def test_k21_faults_429_500_and_broken_watch(
    k8s: FakeKubernetes, http: httpx.AsyncClient, nursery: trio.Nursery
) -> None:
    k8s.fail_next(429)
    r = await http.get(EP)
    assert r.status_code == 429
    assert r.headers["retry-after"] == "1"
    assert (r.json()["reason"], r.json()["code"]) == ("TooManyRequests", 429)
    k8s.fail_next(500)
    r = await http.get(EP)
    assert (r.status_code, r.json()["reason"]) == (500, "InternalError")
    k8s.set_endpoints("prod", "web", ["10.0.0.1"], ports={"http": 80})
    for partial in (False, True):
        async with http.stream("GET", EP, params={"watch": "true"}) as w:
            events = Lines(w)
            assert (await events.next())["type"] == "ADDED"
            k8s.break_watches(partial=partial)
            with pytest.raises(httpx.RemoteProtocolError):
                await events.next()


async def test_watch_control_end_and_error_events(
    k8s: FakeKubernetes, http: httpx.AsyncClient
) -> None:
    async with http.stream("GET", EP, params={"watch": "true"}) as w:
        events = Lines(w)
        await trio.testing.wait_all_tasks_blocked()
        assert k8s.open_watches == 1
        k8s.end_watches()
        assert await events.ended()
    async with http.stream("GET", EP, params={"watch": "true"}) as w:
        events = Lines(w)
        await trio.testing.wait_all_tasks_blocked()
        k8s.watch_error(500, message="internal", end=False)
        e = await events.next()
        assert (e["type"], e["object"]["code"], e["object"]["message"]) == (
            "ERROR",
            500,
            "internal",
        )
        k8s.watch_error()  # 410, then the end
        e = await events.next()
        assert (e["object"]["code"], e["object"]["reason"]) == (410, "Expired")
        assert await events.ended()


async def test_put_serves_odd_payloads_verbatim(
    k8s: FakeKubernetes, http: httpx.AsyncClient
) -> None:
    k8s.put("endpoints", {"metadata": {"namespace": "prod", "name": "web"}, "subsets": None})
    obj = (await http.get(f"{EP}/web")).json()
    assert obj["subsets"] is None
    k8s.garble_next(path=EP)
    r = await http.get(f"{EP}/web")
    with pytest.raises(ValueError):
        r.json()


async def test_x3_watch_requests_are_logged(
    k8s: FakeKubernetes, http: httpx.AsyncClient, nursery: trio.Nursery
) -> None:
    params = {"watch": "true", "resourceVersion": "0", "timeoutSeconds": "5"}
    pending = spawn(nursery, lambda: http.get(EP, params=params))
    await trio.testing.wait_all_tasks_blocked()
    k8s.end_watches()
    await pending.result()
    (r,) = k8s.requests_to(EP)
    assert r.param("watch") == "true" and r.param("resourceVersion") == "0"
