"""FakeConsul against the checklist of discovery-apis.md section 6.1 (C1-C21) and 6.4."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from linkpy.testing import FakeConsul
from linkpy.testing.fakes.consul import DEFAULT_WAIT, JITTER_FRACTION, MAX_WAIT

from .helpers import client, spawn


@pytest.fixture
async def consul(nursery: trio.Nursery) -> FakeConsul:
    fake = FakeConsul(seed=1)
    await nursery.start(fake.serve)
    return fake


@pytest.fixture
async def http(consul: FakeConsul) -> AsyncIterator[httpx.AsyncClient]:
    async with client(consul.url) as c:
        yield c


def index(r: httpx.Response) -> int:
    return int(r.headers["x-consul-index"])


def addresses(r: httpx.Response) -> list[tuple[str, int]]:
    return [(e["Service"]["Address"], e["Service"]["Port"]) for e in r.json()]


# --- C1-C2: reads ---------------------------------------------------------------


async def test_c1_health_service_answers_array_with_query_meta_headers(
    consul: FakeConsul, http: httpx.AsyncClient
) -> None:
    consul.register("web", "10.0.0.1", 8080, tags=["prod"])
    r = await http.get("/v1/health/service/web")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert isinstance(body, list) and len(body) == 1
    (entry,) = body
    assert set(entry) == {"Node", "Service", "Checks"}
    assert entry["Service"]["Service"] == "web"
    assert entry["Service"]["Tags"] == ["prod"]
    assert entry["Node"]["Node"] == "node-a" and entry["Node"]["Datacenter"] == "dc1"
    assert entry["Checks"][0]["CheckID"] == "serfHealth"
    assert index(r) >= 1
    assert r.headers["x-consul-knownleader"] == "true"
    assert r.headers["x-consul-lastcontact"] == "0"
    assert r.headers["x-consul-default-acl-policy"] == "allow"


async def test_c2_unknown_service_is_an_empty_array_with_an_index(
    http: httpx.AsyncClient,
) -> None:
    r = await http.get("/v1/health/service/nope")
    assert r.status_code == 200
    assert r.json() == []
    assert index(r) >= 1
    r = await http.get("/v1/catalog/service/nope")
    assert (r.status_code, r.json()) == (200, [])
    assert index(r) >= 1


# --- C3-C7: blocking queries ------------------------------------------------------


async def test_c3_lower_index_returns_at_once_with_current_index(
    consul: FakeConsul, http: httpx.AsyncClient, autojump_clock: object
) -> None:
    consul.register("web", "10.0.0.1", 8080)
    consul.set_check("web", "passing")
    current = consul.index("web")
    start = trio.current_time()
    r = await http.get("/v1/health/service/web", params={"index": current - 1, "wait": "5m"})
    assert trio.current_time() == start
    assert index(r) == current


async def test_c4_same_index_waits_for_wait_then_answers_unchanged(
    consul: FakeConsul, http: httpx.AsyncClient, autojump_clock: object
) -> None:
    consul.register("web", "10.0.0.1", 8080)
    first = await http.get("/v1/health/service/web")
    start = trio.current_time()
    r = await http.get("/v1/health/service/web", params={"index": index(first), "wait": "1s"})
    elapsed = trio.current_time() - start
    assert 1.0 <= elapsed <= 1.0 + 1.0 / JITTER_FRACTION + 1e-6
    assert index(r) == index(first)
    assert r.json() == first.json()


async def test_c4_without_jitter_the_wait_is_exact(
    consul: FakeConsul, http: httpx.AsyncClient, autojump_clock: object
) -> None:
    consul.jitter = False
    idx = consul.index("web")
    start = trio.current_time()
    await http.get("/v1/health/service/web", params={"index": idx, "wait": "250ms"})
    assert trio.current_time() - start == pytest.approx(0.25)


@pytest.mark.parametrize("change", ["register", "deregister", "check", "node check", "touch"])
async def test_c5_blocked_query_wakes_on_a_change_with_a_larger_index(
    consul: FakeConsul,
    http: httpx.AsyncClient,
    nursery: trio.Nursery,
    autojump_clock: object,
    change: str,
) -> None:
    consul.register(
        "web", "10.0.0.1", 8080, service_id="web-1", checks={"service:web-1": "passing"}
    )
    first = await http.get("/v1/health/service/web")
    start = trio.current_time()
    params = {"index": str(index(first)), "wait": "5m"}
    pending = spawn(nursery, lambda: http.get("/v1/health/service/web", params=params))
    await trio.testing.wait_all_tasks_blocked()
    assert not pending.done
    if change == "register":
        consul.register("web", "10.0.0.2", 8080, service_id="web-2")
    elif change == "deregister":
        consul.deregister("web-1")
    elif change == "check":
        consul.set_check("web-1", "critical")
    elif change == "node check":
        consul.set_node_check("node-a", "critical")
    else:
        consul.touch("web")  # an idempotent write: woken, same body
    r = await pending.result()
    assert trio.current_time() - start < 1.0
    assert index(r) > index(first)
    if change == "touch":
        assert r.json() == first.json()
    else:
        assert r.json() != first.json()


async def test_c6_a_change_to_another_service_does_not_wake_the_query(
    consul: FakeConsul,
    http: httpx.AsyncClient,
    nursery: trio.Nursery,
    autojump_clock: object,
) -> None:
    consul.register("web", "10.0.0.1", 8080)
    first = await http.get("/v1/health/service/web")
    start = trio.current_time()
    params = {"index": str(index(first)), "wait": "10s"}
    pending = spawn(nursery, lambda: http.get("/v1/health/service/web", params=params))
    await trio.testing.wait_all_tasks_blocked()
    consul.register("api", "10.0.0.9", 9090)
    consul.set_check("api", "critical")
    r = await pending.result()
    assert trio.current_time() - start >= 10.0
    assert index(r) == index(first)


async def test_c7_default_wait_is_five_minutes(
    consul: FakeConsul, http: httpx.AsyncClient, autojump_clock: object
) -> None:
    idx = consul.index("web")
    start = trio.current_time()
    await http.get("/v1/health/service/web", params={"index": idx})
    elapsed = trio.current_time() - start
    assert DEFAULT_WAIT == 300.0
    assert DEFAULT_WAIT <= elapsed <= DEFAULT_WAIT * (1 + 1 / JITTER_FRACTION) + 1e-6


async def test_c7_wait_above_ten_minutes_is_clamped(
    consul: FakeConsul, http: httpx.AsyncClient, autojump_clock: object
) -> None:
    idx = consul.index("web")
    start = trio.current_time()
    await http.get("/v1/health/service/web", params={"index": idx, "wait": "1h"})
    elapsed = trio.current_time() - start
    assert MAX_WAIT == 600.0
    assert MAX_WAIT <= elapsed <= MAX_WAIT * (1 + 1 / JITTER_FRACTION) + 1e-6


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("wait=abc", "Invalid wait time"),
        ("wait=10", "Invalid wait time"),  # Go durations need a unit
        ("index=abc", "Invalid index"),
        ("index=-1", "Invalid index"),
        ("stale&consistent", "Cannot specify ?stale with ?consistent, conflicting semantics."),
        ("passing=maybe", "Invalid value for ?passing"),
    ],
)
async def test_c8_bad_parameters_are_400(http: httpx.AsyncClient, query: str, message: str) -> None:
    r = await http.get(f"/v1/health/service/web?{query}")
    assert (r.status_code, r.text) == (400, message)
    assert r.headers["content-type"].startswith("text/plain")


async def test_c9_index_going_backwards_blocks_then_returns_the_smaller_index(
    consul: FakeConsul, http: httpx.AsyncClient, autojump_clock: object
) -> None:
    for port in range(8000, 8010):
        consul.register("web", "10.0.0.1", port)
    before = await http.get("/v1/health/service/web")
    consul.rewind_index(3)  # a snapshot restore
    start = trio.current_time()
    r = await http.get("/v1/health/service/web", params={"index": index(before), "wait": "2s"})
    assert trio.current_time() - start >= 2.0
    assert index(r) == 3 < index(before)
    consul.register("web", "10.0.0.1", 9000)
    assert consul.index("web") == 4  # writes continue from the restored index


async def test_c9_index_zero_can_be_reported(
    consul: FakeConsul, http: httpx.AsyncClient, autojump_clock: object
) -> None:
    consul.report_zero_index = True
    r = await http.get("/v1/health/service/web")
    assert index(r) == 0
    start = trio.current_time()
    await http.get("/v1/health/service/web", params={"index": 0, "wait": "1m"})
    assert trio.current_time() == start  # index=0 never blocks: the client must clamp to 1


async def test_c9_restart_with_wiped_state_restarts_the_index(
    consul: FakeConsul, http: httpx.AsyncClient
) -> None:
    for port in range(8000, 8005):
        consul.register("web", "10.0.0.1", port)
    before = index(await http.get("/v1/health/service/web"))
    consul.restart(wipe=True)
    await trio.testing.wait_all_tasks_blocked()  # let the dropped connection close
    r = await http.get("/v1/health/service/web")
    assert r.json() == []
    assert 1 <= index(r) < before


# --- C10-C12: filters and datacenters ----------------------------------------------


@pytest.fixture
def mixed(consul: FakeConsul) -> FakeConsul:
    """web-1 passing, web-2 warning, web-3 critical, web-4 on a node failing serfHealth."""
    consul.register("web", "10.0.0.1", 80, service_id="web-1", checks={"service:web-1": "passing"})
    consul.register("web", "10.0.0.2", 80, service_id="web-2", checks={"service:web-2": "warning"})
    consul.register("web", "10.0.0.3", 80, service_id="web-3", checks={"c": "critical"})
    consul.register("web", "10.0.0.4", 80, service_id="web-4", node="node-b")
    consul.set_node_check("node-b", "critical")
    return consul


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("?passing", ["10.0.0.1"]),
        ("?passing=1", ["10.0.0.1"]),
        ("?passing=true", ["10.0.0.1"]),
        ("?passing=false", ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]),
        ("", ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]),
    ],
)
async def test_c10_passing_drops_entries_with_any_non_passing_check(
    mixed: FakeConsul, http: httpx.AsyncClient, query: str, expected: list[str]
) -> None:
    r = await http.get(f"/v1/health/service/web{query}")
    assert sorted(a for a, _ in addresses(r)) == expected


async def test_c11_tags_match_case_insensitively_and_all_must_match(
    consul: FakeConsul, http: httpx.AsyncClient
) -> None:
    consul.register("web", "10.0.0.1", 80, service_id="a", tags=["prod"])
    consul.register("web", "10.0.0.2", 80, service_id="b", tags=["prod", "canary"])
    consul.register("web", "10.0.0.3", 80, service_id="c", tags=["dev"])
    r = await http.get("/v1/health/service/web?tag=Prod")
    assert sorted(a for a, _ in addresses(r)) == ["10.0.0.1", "10.0.0.2"]
    r = await http.get("/v1/health/service/web?tag=prod&tag=CANARY")
    assert addresses(r) == [("10.0.0.2", 80)]
    r = await http.get("/v1/catalog/service/web?tag=DEV")
    assert [e["ServiceAddress"] for e in r.json()] == ["10.0.0.3"]


async def test_c11_service_names_match_case_insensitively(
    consul: FakeConsul, http: httpx.AsyncClient
) -> None:
    consul.register("Web", "10.0.0.1", 80)
    r = await http.get("/v1/health/service/web")
    assert [e["Service"]["Service"] for e in r.json()] == ["Web"]


async def test_c12_unknown_dc_is_500_no_path_and_default_dc_is_the_agents(
    consul: FakeConsul, http: httpx.AsyncClient
) -> None:
    consul.register("web", "10.0.0.1", 80)
    r = await http.get("/v1/health/service/web?dc=mars")
    assert (r.status_code, r.text) == (500, "No path to datacenter")
    r = await http.get("/v1/catalog/service/web?dc=mars")
    assert (r.status_code, r.text) == (500, "No path to datacenter")
    r = await http.get("/v1/health/service/web")
    assert [e["Node"]["Datacenter"] for e in r.json()] == ["dc1"]
    r = await http.get("/v1/health/service/web?dc=dc1")
    assert len(r.json()) == 1


async def test_c12_other_known_datacenters_have_their_own_catalog(
    consul: FakeConsul, http: httpx.AsyncClient
) -> None:
    consul.add_datacenter("dc2")
    consul.register("web", "10.2.0.1", 80, dc="dc2")
    assert (await http.get("/v1/health/service/web")).json() == []
    r = await http.get("/v1/health/service/web?dc=dc2")
    assert [e["Node"]["Datacenter"] for e in r.json()] == ["dc2"]
    assert (await http.get("/v1/catalog/datacenters")).json() == ["dc1", "dc2"]


# --- C13-C16: leadership, ACLs, agent ------------------------------------------------


async def test_c13_without_leader_default_and_consistent_fail_stale_answers(
    consul: FakeConsul, http: httpx.AsyncClient, autojump_clock: object
) -> None:
    consul.register("web", "10.0.0.1", 80)
    consul.set_leader(False)
    await trio.sleep(2)
    for query in ("", "?consistent"):
        r = await http.get(f"/v1/health/service/web{query}")
        assert (r.status_code, r.text) == (500, "No cluster leader")
    r = await http.get("/v1/health/service/web?stale")
    assert r.status_code == 200 and len(r.json()) == 1
    assert r.headers["x-consul-knownleader"] == "false"
    assert int(r.headers["x-consul-lastcontact"]) > 0
    assert r.headers["x-consul-effective-consistency"] == "stale"
    assert (await http.get("/v1/status/leader")).json() == ""


async def test_c13_a_read_waits_for_a_leader_before_failing(
    consul: FakeConsul, http: httpx.AsyncClient, nursery: trio.Nursery, autojump_clock: object
) -> None:
    consul.set_leader(False)
    pending = spawn(nursery, lambda: http.get("/v1/health/service/web"))
    await trio.testing.wait_all_tasks_blocked()
    consul.set_leader(True)
    r = await pending.result()
    assert r.status_code == 200
    assert r.headers["x-consul-knownleader"] == "true"
    assert (await http.get("/v1/status/leader")).json() == "127.0.0.1:8300"


async def test_c14_acls_unknown_token_403_missing_permission_filters(
    consul: FakeConsul, http: httpx.AsyncClient
) -> None:
    consul.register("web", "10.0.0.1", 80)
    consul.enable_acls("deny")
    consul.add_token("reader", services=["web"])
    consul.add_token("other", services=["api"])
    path = "/v1/health/service/web"
    r = await http.get(path, headers={"X-Consul-Token": "bogus"})
    assert (r.status_code, r.text) == (403, "ACL not found")
    r = await http.get("/v1/catalog/service/web", headers={"X-Consul-Token": "bogus"})
    assert r.status_code == 403
    r = await http.get(path)  # anonymous, default deny
    assert (r.status_code, r.json()) == (200, [])
    assert "x-consul-results-filtered-by-acls" not in r.headers
    r = await http.get(path, headers={"X-Consul-Token": "other"})
    assert (r.status_code, r.json()) == (200, [])
    assert r.headers["x-consul-results-filtered-by-acls"] == "true"
    r = await http.get(path, headers={"X-Consul-Token": "reader"})
    assert len(r.json()) == 1
    assert "x-consul-results-filtered-by-acls" not in r.headers
    assert r.headers["x-consul-default-acl-policy"] == "deny"


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        ({"X-Consul-Token": "reader"}, ""),
        ({"Authorization": "Bearer reader"}, ""),
        ({}, "?token=reader"),
    ],
)
async def test_c15_token_from_header_bearer_or_query(
    consul: FakeConsul, http: httpx.AsyncClient, headers: dict[str, str], query: str
) -> None:
    consul.register("web", "10.0.0.1", 80)
    consul.enable_acls("deny")
    consul.add_token("reader")
    r = await http.get(f"/v1/health/service/web{query}", headers=headers)
    assert len(r.json()) == 1


async def test_c16_agent_self_gives_datacenter_and_node_name(
    consul: FakeConsul, http: httpx.AsyncClient
) -> None:
    r = await http.get("/v1/agent/self")
    config = r.json()["Config"]
    assert (config["Datacenter"], config["NodeName"]) == ("dc1", "node-a")
    assert "Domain" not in config
    consul.enable_acls("deny")
    consul.add_token("reader")
    consul.add_token("agent", agent=True)
    assert (await http.get("/v1/agent/self")).status_code == 403
    r = await http.get("/v1/agent/self", headers={"X-Consul-Token": "reader"})
    assert (r.status_code, r.text) == (403, "Permission denied")
    r = await http.get("/v1/agent/self", headers={"X-Consul-Token": "nope"})
    assert (r.status_code, r.text) == (403, "ACL not found")
    r = await http.get("/v1/agent/self", headers={"X-Consul-Token": "agent"})
    assert r.json()["Config"]["Datacenter"] == "dc1"


# --- C17-C20: shapes ----------------------------------------------------------------


async def test_c17_catalog_service_is_flat_with_empty_service_address(
    consul: FakeConsul,
    http: httpx.AsyncClient,
    nursery: trio.Nursery,
    autojump_clock: object,
) -> None:
    consul.register("web", "", 8080, node="node-b", node_address="192.168.10.10", tags=["prod"])
    r = await http.get("/v1/catalog/service/web")
    (entry,) = r.json()
    assert entry["ServiceAddress"] == ""
    assert entry["Address"] == "192.168.10.10"
    assert entry["ServicePort"] == 8080
    assert entry["ServiceTags"] == ["prod"]
    assert entry["ServiceWeights"] == {"Passing": 1, "Warning": 1}
    for key in ("ID", "Node", "Datacenter", "TaggedAddresses", "NodeMeta", "ServiceID"):
        assert key in entry
    assert index(r) == consul.index("web")
    # same blocking semantics as health
    pending = spawn(
        nursery, lambda: http.get("/v1/catalog/service/web", params={"index": index(r)})
    )
    await trio.testing.wait_all_tasks_blocked()
    consul.register("web", "10.0.0.5", 8080, service_id="web-2")
    r2 = await pending.result()
    assert index(r2) > index(r) and len(r2.json()) == 2


async def test_c18_catalog_services_maps_names_to_tags_and_blocks(
    consul: FakeConsul,
    http: httpx.AsyncClient,
    nursery: trio.Nursery,
    autojump_clock: object,
) -> None:
    consul.register("web", "10.0.0.1", 80, service_id="w1", tags=["prod"])
    consul.register("web", "10.0.0.2", 80, service_id="w2", tags=["prod", "canary"])
    r = await http.get("/v1/catalog/services")
    assert r.json() == {"consul": [], "web": ["prod", "canary"]}
    pending = spawn(nursery, lambda: http.get("/v1/catalog/services", params={"index": index(r)}))
    await trio.testing.wait_all_tasks_blocked()
    assert not pending.done
    consul.register("api", "10.0.0.3", 81)
    r2 = await pending.result()
    assert index(r2) > index(r)
    assert set(r2.json()) == {"consul", "web", "api"}


def _nulls(value: Any, path: str = "") -> list[str]:
    if value is None:
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _nulls(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _nulls(v, f"{path}[{i}]")]
    return []


async def test_c19_no_nulls_and_default_weights(
    consul: FakeConsul, http: httpx.AsyncClient
) -> None:
    consul.register("web", "", 80)
    for path in ("/v1/health/service/web", "/v1/catalog/service/web", "/v1/health/service/x"):
        r = await http.get(path)
        assert r.json() is not None
        assert _nulls(r.json()) == []
    (entry,) = (await http.get("/v1/health/service/web")).json()
    assert entry["Service"]["Tags"] == []
    assert entry["Service"]["Weights"] == {"Passing": 1, "Warning": 1}
    assert isinstance(entry["Checks"], list)
    assert entry["Checks"][0]["ServiceTags"] == []


async def test_c20_maintenance_is_an_extra_critical_check(
    consul: FakeConsul, http: httpx.AsyncClient
) -> None:
    consul.register("web", "10.0.0.1", 80, service_id="web-1")
    consul.maintenance("web-1", reason="deploy")
    (entry,) = (await http.get("/v1/health/service/web")).json()
    check = entry["Checks"][-1]
    assert (check["CheckID"], check["Status"], check["Notes"]) == (
        "_service_maintenance:web-1",
        "critical",
        "deploy",
    )
    assert all(c["Status"] in ("passing", "warning", "critical") for c in entry["Checks"])
    assert (await http.get("/v1/health/service/web?passing")).json() == []
    consul.maintenance("web-1", enable=False)
    consul.node_maintenance("node-a")
    (entry,) = (await http.get("/v1/health/service/web")).json()
    ids = {c["CheckID"]: c["Status"] for c in entry["Checks"]}
    assert ids == {"serfHealth": "passing", "_node_maintenance": "critical"}
    consul.node_maintenance("node-a", enable=False)
    assert len((await http.get("/v1/health/service/web?passing")).json()) == 1


# --- C21, X2, X3 ----------------------------------------------------------------------


async def test_c21_faults_per_request(
    consul: FakeConsul, http: httpx.AsyncClient, autojump_clock: object
) -> None:
    consul.register("web", "10.0.0.1", 80)
    consul.fail_next(500, message="rpc error")
    r = await http.get("/v1/health/service/web")
    assert (r.status_code, r.text) == (500, "rpc error")
    consul.fail_next(503)
    assert (await http.get("/v1/health/service/web")).status_code == 503
    consul.drop_next()
    with pytest.raises(httpx.RemoteProtocolError):
        await http.get("/v1/health/service/web")
    consul.delay_next(3.0)
    start = trio.current_time()
    assert (await http.get("/v1/health/service/web")).status_code == 200
    assert trio.current_time() - start == pytest.approx(3.0)
    assert (await http.get("/v1/health/service/web")).status_code == 200


async def test_x2_x3_scripting_is_synchronous_and_requests_are_logged(
    consul: FakeConsul, http: httpx.AsyncClient
) -> None:
    consul.register("web", "10.0.0.1", 80)
    await http.get(
        "/v1/health/service/web",
        params={"stale": "", "index": "1", "passing": "true"},
        headers={"X-Consul-Token": "t0k"},
    )
    (r,) = consul.requests_to("/v1/health/service/web")
    assert r.has_param("stale")
    assert r.param("index") == "1"
    assert r.param("passing") == "true"
    assert r.header("X-Consul-Token") == "t0k"


async def test_restart_drops_blocked_queries_but_keeps_state(
    consul: FakeConsul, http: httpx.AsyncClient, nursery: trio.Nursery
) -> None:
    consul.register("web", "10.0.0.1", 80)
    first = await http.get("/v1/health/service/web")

    async def blocked() -> str:
        try:
            await http.get("/v1/health/service/web", params={"index": index(first)})
        except httpx.RemoteProtocolError:
            return "dropped"
        return "answered"

    pending = spawn(nursery, blocked)
    await trio.testing.wait_all_tasks_blocked()
    consul.restart()
    assert await pending.result() == "dropped"
    r = await http.get("/v1/health/service/web")
    assert index(r) == index(first) and r.json() == first.json()
