"""The Consul API module: pure parsers on canned answers in Consul's real format, the
error classification, and the trio adapter of py-consul against the emulator."""

from __future__ import annotations

import json

import httpx
import pytest
import trio

from linkpy.testing import FakeConsul
from linkpy_consul.api import (
    AgentInfo,
    ConsulError,
    Instance,
    MalformedAnswer,
    TrioConsul,
    classify,
    health_status,
    parse_agent,
    parse_catalog,
    parse_health,
    parse_index,
    parse_wait,
)

#: An answer of GET /v1/health/service/web as Consul 1.17 writes it (two instances).
HEALTH = """[
 {"Node": {"ID": "40e4a748-2192-161a-0510-9bf59fe950b5", "Node": "node-a",
           "Address": "10.1.10.12", "Datacenter": "dc1",
           "TaggedAddresses": {"lan": "10.1.10.12", "wan": "10.1.10.12"},
           "Meta": {"rack": "r1"}, "CreateIndex": 11, "ModifyIndex": 12},
  "Service": {"ID": "web-1", "Service": "web", "Tags": ["prod", "Canary"],
              "Address": "172.17.0.3",
              "TaggedAddresses": {"lan": {"address": "172.17.0.3", "port": 8000}},
              "Meta": {"version": "2"}, "Port": 8000,
              "Weights": {"Passing": 10, "Warning": 1},
              "EnableTagOverride": false, "Proxy": {"Mode": "", "MeshGateway": {}, "Expose": {}},
              "Connect": {}, "PeerName": "", "CreateIndex": 40, "ModifyIndex": 40},
  "Checks": [{"Node": "node-a", "CheckID": "serfHealth", "Name": "Serf Health Status",
              "Status": "passing", "Notes": "", "Output": "Agent alive and reachable",
              "ServiceID": "", "ServiceName": "", "ServiceTags": [], "Type": "",
              "Definition": {}, "CreateIndex": 11, "ModifyIndex": 11},
             {"Node": "node-a", "CheckID": "service:web-1", "Name": "HTTP check",
              "Status": "warning", "Notes": "", "Output": "HTTP GET: 429",
              "ServiceID": "web-1", "ServiceName": "web", "ServiceTags": ["prod"],
              "Type": "http", "Definition": {}, "CreateIndex": 41, "ModifyIndex": 45}]},
 {"Node": {"ID": "a7f9a6c2-0000-0000-0000-000000000000", "Node": "node-b",
           "Address": "10.1.10.13", "Datacenter": "dc1", "TaggedAddresses": {},
           "Meta": {}, "CreateIndex": 13, "ModifyIndex": 13},
  "Service": {"ID": "web-2", "Service": "web", "Tags": [], "Address": "", "Meta": {},
              "Port": 8001, "Weights": {"Passing": 1, "Warning": 1},
              "EnableTagOverride": false, "CreateIndex": 50, "ModifyIndex": 50},
  "Checks": [{"Node": "node-b", "CheckID": "serfHealth", "Status": "passing"}]}
]"""

#: GET /v1/catalog/service/web (flattened, no health).
CATALOG = """[
 {"ID": "40e4a748-2192-161a-0510-9bf59fe950b5", "Node": "node-a", "Address": "192.168.10.10",
  "Datacenter": "dc1", "TaggedAddresses": {"lan": "192.168.10.10", "wan": "10.0.10.10"},
  "NodeMeta": {"k": "v"}, "ServiceID": "web-1", "ServiceName": "web",
  "ServiceTags": ["prod"], "ServiceAddress": "172.17.0.3", "ServicePort": 5000,
  "ServiceMeta": {"v": "2"}, "ServiceWeights": {"Passing": 1, "Warning": 1},
  "ServiceTaggedAddresses": {}, "ServiceEnableTagOverride": false, "ServiceKind": "",
  "ServiceProxy": {"Mode": ""}, "ServiceConnect": {}, "CreateIndex": 51, "ModifyIndex": 51},
 {"ID": "b", "Node": "node-b", "Address": "192.168.10.11", "Datacenter": "dc1",
  "ServiceID": "web-2", "ServiceName": "web", "ServiceTags": null, "ServiceAddress": "",
  "ServicePort": 5001, "CreateIndex": 52, "ModifyIndex": 52}
]"""

AGENT_SELF = """{"Config": {"Datacenter": "dc1", "PrimaryDatacenter": "dc1", "NodeName": "node-a",
 "NodeID": "40e4a748", "Revision": "abc", "Server": true, "Version": "1.17.0"},
 "DebugConfig": {"DNSDomain": "consul.example.", "Datacenter": "dc1"},
 "Coord": {"Vec": [0, 0], "Error": 1.5}, "Member": {"Name": "node-a"}, "Meta": {}}"""


def test_health_answer() -> None:
    parsed = parse_health(json.loads(HEALTH))
    assert parsed.problems == ()
    a, b = parsed.instances
    assert a == Instance(
        node="node-a",
        node_address="10.1.10.12",
        service_id="web-1",
        service_address="172.17.0.3",
        port=8000,
        tags=("prod", "Canary"),
        status="warning",
        weights=(10, 1),
        service_meta=(("version", "2"),),
        node_meta=(("rack", "r1"),),
        datacenter="dc1",
    )
    assert (b.service_address, b.node_address, b.port, b.status) == (
        "",
        "10.1.10.13",
        8001,
        "passing",
    )


def test_catalog_answer() -> None:
    parsed = parse_catalog(json.loads(CATALOG))
    assert parsed.problems == ()
    a, b = parsed.instances
    assert (a.service_address, a.node_address, a.port, a.tags) == (
        "172.17.0.3",
        "192.168.10.10",
        5000,
        ("prod",),
    )
    assert a.status == "passing" and a.node_meta == (("k", "v"),)
    assert b.tags == () and b.weights == (1, 1)  # null tags, no weights: defaults


def test_bad_entries_are_skipped_and_reported() -> None:
    data = json.loads(HEALTH)
    data[1]["Service"]["Port"] = "8001"  # wrong type
    data.append("junk")
    data.append({"Node": None, "Service": {}})
    data.append({"Node": {}, "Service": {"Port": 70000}})
    parsed = parse_health(data)
    assert [i.service_id for i in parsed.instances] == ["web-1"]
    assert len(parsed.problems) == 4
    assert "entry 1 (web-2): bad port '8001'" in parsed.problems[0]


def test_unexpected_fields_and_nulls_are_tolerated() -> None:
    entry = {
        "Node": {"Node": "n", "Address": "10.0.0.1", "Future": {"x": [1]}},
        "Service": {"ID": "s", "Port": 80, "Tags": None, "Meta": None, "Weights": None},
        "Checks": None,
        "SomethingNew": True,
    }
    (inst,) = parse_health([entry]).instances
    assert inst.tags == () and inst.status == "passing" and inst.weights == (1, 1)


@pytest.mark.parametrize("body", ["null", "{}", '"x"', "3"])
def test_an_answer_of_the_wrong_shape_is_malformed(body: str) -> None:
    with pytest.raises(MalformedAnswer, match="expected a JSON array"):
        parse_health(json.loads(body))
    with pytest.raises(MalformedAnswer):
        parse_catalog(json.loads(body))


def test_health_status_is_the_worst_check() -> None:
    def checks(*statuses: str) -> list[dict[str, str]]:
        return [{"CheckID": f"c{i}", "Status": s} for i, s in enumerate(statuses)]

    assert health_status([]) == "passing"
    assert health_status(None) == "passing"
    assert health_status(checks("passing", "warning")) == "warning"
    assert health_status(checks("warning", "critical", "passing")) == "critical"
    assert health_status(checks("passing", "weird")) == "critical"  # unknown: not healthy
    maint = [{"CheckID": "_service_maintenance:web-1", "Status": "critical"}]
    assert health_status(checks("passing") + maint) == "maintenance"
    assert health_status([{"CheckID": "_node_maintenance", "Status": "critical"}]) == "maintenance"


def test_agent_self() -> None:
    assert parse_agent(json.loads(AGENT_SELF)) == AgentInfo("dc1", "consul.example")
    old = {"Config": {"Datacenter": "eu", "Domain": "corp."}}
    assert parse_agent(old) == AgentInfo("eu", "corp")
    assert parse_agent({"Config": {"Datacenter": "eu"}}) == AgentInfo("eu", "consul")
    bad: object
    for bad in ([], {"Config": None}, {"Config": {"Datacenter": ""}}):
        with pytest.raises(MalformedAnswer):
            parse_agent(bad)


def test_index_and_wait() -> None:
    assert parse_index("42") == 42 and parse_index(" 7 ") == 7 and parse_index("0") == 0
    for bad in ("", "-1", "abc", "1, 2"):
        with pytest.raises(ConsulError) as e:
            parse_index(bad)
        assert e.value.kind == "no_index"
    assert parse_wait("300s") == 300 and parse_wait("5m") == 300 and parse_wait("250ms") == 0.25
    with pytest.raises(ValueError):
        parse_wait("soon")


def test_classify() -> None:
    cases = {
        (500, "No path to datacenter"): "unknown_dc",
        (500, "rpc error: No path to datacenter"): "unknown_dc",
        (500, "No cluster leader"): "no_leader",
        (403, "ACL not found"): "acl",
        (401, ""): "acl",
        (400, "Invalid wait time"): "bad_request",
        (429, ""): "rate_limited",
        (503, "overloaded"): "server",
        (404, ""): "client",
    }
    for (status, body), kind in cases.items():
        assert classify(status, body).kind == kind, (status, body)
    long = classify(500, "x" * 5000)
    assert len(str(long)) < 300  # bodies are quoted, not dumped


async def api(consul: FakeConsul, http: httpx.AsyncClient, **kw: object) -> TrioConsul:
    return TrioConsul(http, host="127.0.0.1", port=consul.port, timeout=2.0, **kw)  # type: ignore[arg-type]


async def test_the_adapter_builds_consuls_requests(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "from-the-environment")
    consul = FakeConsul()
    await nursery.start(consul.serve)
    consul.register("web", "10.0.0.1", 80, tags=["prod"])
    async with httpx.AsyncClient(trust_env=False) as http:
        c = await api(consul, http, token="secret", consistency="stale")
        index, data = await c.service(
            "web", dc="dc1", tag="prod", index=0, wait="1s", health=True, passing=True
        )
        assert index == consul.index("web") and isinstance(data, list) and len(data) == 1
        (r,) = consul.requests_to("/v1/health/service/web")
        assert r.param("dc") == "dc1" and r.param("tag") == "prod"
        assert r.param("passing") == "1"
        assert r.has_param("stale")  # py-consul has no consistency for health: the adapter
        assert not r.has_param("index") and not r.has_param("wait")
        assert r.header("x-consul-token") == "secret"  # the config wins over the environment
        # a blocking read
        await c.service(
            "web", dc=None, tag=None, index=index, wait="1s", health=False, passing=False
        )
        (r,) = consul.requests_to("/v1/catalog/service/web")
        assert r.param("index") == str(index) and r.param("wait") == "1s"
        assert r.has_param("stale") and not r.has_param("dc")
        # py-consul sends no token to /v1/agent/self: the adapter does
        consul.enable_acls("deny")
        consul.add_token("secret", agent=True)
        parse_agent(await c.agent_self())
        assert consul.requests_to("/v1/agent/self")[0].header("x-consul-token") == "secret"


async def test_the_adapter_classifies_failures(nursery: trio.Nursery) -> None:
    consul = FakeConsul()
    await nursery.start(consul.serve)
    async with httpx.AsyncClient(trust_env=False) as http:
        c = await api(consul, http)

        async def kind() -> str:
            with pytest.raises(ConsulError) as e:
                await c.service(
                    "web", dc=None, tag=None, index=0, wait="1s", health=True, passing=False
                )
            return e.value.kind

        consul.fail_next(500, message="No path to datacenter")
        assert await kind() == "unknown_dc"
        consul.garble_next()
        assert await kind() == "malformed"
        consul.truncate_next()
        assert await kind() == "transport"
        consul.drop_next()
        assert await kind() == "transport"
        consul.rewrite_next(
            lambda r: type(r)(r.status, r.body, [h for h in r.headers if h[0] != "X-Consul-Index"])
        )
        assert await kind() == "no_index"
        consul.hang_next()
        with trio.fail_after(5):
            assert await kind() == "timeout"
        consul.fail_next(403, message="ACL not found")
        assert await kind() == "acl"
        with pytest.raises(ConsulError) as e:
            await c.service(
                "web", dc="nowhere", tag=None, index=0, wait="1s", health=True, passing=False
            )
        assert e.value.kind == "unknown_dc" and e.value.status == 500


async def test_a_blocking_read_may_take_its_wait(
    nursery: trio.Nursery, autojump_clock: object
) -> None:
    consul = FakeConsul(seed=1)
    await nursery.start(consul.serve)
    consul.register("web", "10.0.0.1", 80)
    async with httpx.AsyncClient(trust_env=False) as http:
        c = await api(consul, http)
        index, _ = await c.service(
            "web", dc=None, tag=None, index=0, wait="1s", health=False, passing=False
        )
        start = trio.current_time()
        again, _ = await c.service(
            "web", dc=None, tag=None, index=index, wait="60s", health=False, passing=False
        )
        # the deadline is wait + wait/16 + timeout: a 60 s wait does not time out at 2 s
        assert again == index and trio.current_time() - start >= 60
