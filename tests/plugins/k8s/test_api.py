"""The pure parts: JSON parsers on real-format payloads, address selection, names,
connection modes, backoff."""

from __future__ import annotations

import json
import random
from pathlib import Path as FsPath

import pytest

from linkpy.naming import Address, Path
from linkpy_k8s.api import (
    EndpointGroup,
    Malformed,
    external_addresses,
    named_port_addresses,
    numbered_port_addresses,
    parse_endpoint_slice,
    parse_endpoints,
    parse_event,
    parse_list,
    parse_service,
    parse_status,
)
from linkpy_k8s.client import Backoff, Connection, resolve_connection
from linkpy_k8s.namer import parse_name

# As kube-apiserver 1.30 serves them (kubectl get -o json, trimmed of managedFields).
SLICE = """{
  "addressType": "IPv4",
  "apiVersion": "discovery.k8s.io/v1",
  "endpoints": [
    {"addresses": ["10.244.1.7"],
     "conditions": {"ready": true, "serving": true, "terminating": false},
     "nodeName": "kind-worker", "zone": "eu-west-1a",
     "targetRef": {"kind": "Pod", "name": "web-5d7f8-abcde", "namespace": "prod",
                   "uid": "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"}},
    {"addresses": ["10.244.2.9"],
     "conditions": {"ready": false, "serving": true, "terminating": true},
     "nodeName": "kind-worker2",
     "targetRef": {"kind": "Pod", "name": "web-5d7f8-fghij", "namespace": "prod", "uid": "u2"}},
    {"addresses": ["10.244.2.10"], "conditions": {}, "nodeName": "kind-worker2"}
  ],
  "kind": "EndpointSlice",
  "metadata": {
    "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": "2024-05-01T10:00:00Z"},
    "creationTimestamp": "2024-05-01T09:00:00Z",
    "generateName": "web-",
    "generation": 12,
    "labels": {"app": "web",
               "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
               "kubernetes.io/service-name": "web"},
    "name": "web-7vzhx",
    "namespace": "prod",
    "ownerReferences": [{"apiVersion": "v1", "blockOwnerDeletion": true, "controller": true,
                         "kind": "Service", "name": "web", "uid": "5c3e"}],
    "resourceVersion": "61412986",
    "uid": "8e0b"
  },
  "ports": [{"name": "http", "port": 8080, "protocol": "TCP", "appProtocol": "http"},
            {"name": "admin", "port": 9990, "protocol": "TCP"},
            {"name": "dns", "port": 53, "protocol": "UDP"}]
}"""

# An empty placeholder slice exactly as the controller writes it (Go nil slice -> null).
EMPTY_SLICE = """{"addressType": "IPv4", "apiVersion": "discovery.k8s.io/v1",
  "endpoints": null, "kind": "EndpointSlice",
  "metadata": {"name": "web-empty", "namespace": "prod", "resourceVersion": "7",
               "labels": {"kubernetes.io/service-name": "web"}},
  "ports": null}"""

ENDPOINTS = """{
  "apiVersion": "v1", "kind": "Endpoints",
  "metadata": {"name": "web", "namespace": "prod", "resourceVersion": "61412986",
               "labels": {"app": "web"}, "creationTimestamp": "2024-05-01T09:00:00Z"},
  "subsets": [{
    "addresses": [{"ip": "10.196.5.84", "hostname": "web-0", "nodeName": "node-1",
                   "targetRef": {"kind": "Pod", "namespace": "prod", "name": "web-1mkr7",
                                 "uid": "x"}}],
    "notReadyAddresses": [{"ip": "10.196.5.90", "nodeName": "node-2"}],
    "ports": [{"name": "http", "port": 7778, "protocol": "TCP"},
              {"name": "admin", "port": 9990, "protocol": "TCP"}]
  }, {
    "addresses": [{"ip": "10.196.6.1", "nodeName": "node-3"}],
    "ports": [{"name": "http", "port": 7779, "protocol": "TCP"}]
  }]
}"""

SERVICE = """{
  "apiVersion": "v1", "kind": "Service",
  "metadata": {"name": "sessions", "namespace": "srv", "resourceVersion": "33186979"},
  "spec": {"type": "LoadBalancer", "clusterIP": "10.199.240.9", "clusterIPs": ["10.199.240.9"],
           "internalTrafficPolicy": "Cluster", "ipFamilies": ["IPv4"], "sessionAffinity": "None",
           "selector": {"name": "sessions"},
           "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 54321,
                      "nodePort": 31380},
                     {"name": "admin", "port": 9990, "protocol": "TCP", "targetPort": "admin"},
                     {"name": "grpc", "port": 81, "protocol": "TCP"}]},
  "status": {"loadBalancer": {"ingress": [{"ip": "35.184.61.229", "ipMode": "VIP"},
                                          {"hostname": "lb.example.com"}]}}
}"""


def test_endpoint_slice() -> None:
    d = parse_endpoint_slice(json.loads(SLICE))
    assert (d.name, d.resource_version, d.nulls) == ("web-7vzhx", "61412986", ())
    (g,) = d.value
    assert [e.host for e in g.endpoints] == ["10.244.1.7", "10.244.2.9", "10.244.2.10"]
    ready, terminating, unknown = g.endpoints
    assert ready.ready and ready.node_name == "kind-worker" and ready.zone == "eu-west-1a"
    assert not terminating.ready and terminating.serving and terminating.terminating
    # nil conditions: ready unknown -> ready; serving defers to ready; not terminating
    assert unknown.ready and unknown.serving and not unknown.terminating
    assert [(p.name, p.port, p.protocol) for p in g.ports] == [
        ("http", 8080, "TCP"),
        ("admin", 9990, "TCP"),
        ("dns", 53, "UDP"),
    ]


def test_null_lists_read_as_empty_and_are_noted() -> None:
    d = parse_endpoint_slice(json.loads(EMPTY_SLICE))
    assert d.value == (EndpointGroup((), ()),)
    assert d.nulls == ("EndpointSlice web-empty.endpoints", "EndpointSlice web-empty.ports")
    e = parse_endpoints({"metadata": {"name": "web", "resourceVersion": "3"}, "subsets": None})
    assert e.value == () and e.nulls == ("Endpoints web.subsets",)
    # absent lists are simply empty (omitempty), without a note
    e = parse_endpoints({"metadata": {"name": "web", "resourceVersion": "3"}})
    assert e.value == () and e.nulls == ()


def test_endpoints() -> None:
    d = parse_endpoints(json.loads(ENDPOINTS))
    first, _ = d.value
    assert [(e.host, e.ready, e.node_name) for e in first.endpoints] == [
        ("10.196.5.84", True, "node-1"),
        ("10.196.5.90", False, "node-2"),
    ]
    assert named_port_addresses(d.value, "http") == frozenset(
        {
            Address("10.196.5.84", 7778, metadata={"nodeName": "node-1"}),
            Address("10.196.6.1", 7779, metadata={"nodeName": "node-3"}),
        }
    )
    assert named_port_addresses(d.value, "admin") == frozenset(
        {Address("10.196.5.84", 9990, metadata={"nodeName": "node-1"})}
    )
    assert named_port_addresses(d.value, "nope") is None


def test_service() -> None:
    d = parse_service(json.loads(SERVICE))
    svc = d.value
    assert [(p.name, p.port, p.target_port) for p in svc.ports] == [
        ("http", 80, 54321),
        ("admin", 9990, "admin"),
        ("grpc", 81, 81),  # targetPort defaults to port
    ]
    assert svc.ingress == ("35.184.61.229", "lb.example.com")
    assert external_addresses(svc, "http") == frozenset(
        {
            Address("35.184.61.229", 80),
            Address("lb.example.com", 80),
        }
    )
    assert external_addresses(svc, "9990") == frozenset(
        {
            Address("35.184.61.229", 9990),
            Address("lb.example.com", 9990),
        }
    )
    assert external_addresses(svc, "nope") is None
    no_lb = parse_service({"metadata": {"name": "s"}, "spec": {"ports": []}, "status": {}})
    assert external_addresses(no_lb.value, "http") is None


def test_port_selection() -> None:
    (g,) = parse_endpoint_slice(json.loads(SLICE)).value
    meta = {"nodeName": "kind-worker", "zone": "eu-west-1a"}
    # ready endpoints only, TCP only
    assert named_port_addresses([g], "http") == frozenset(
        {
            Address("10.244.1.7", 8080, metadata=meta),
            Address("10.244.2.10", 8080, metadata={"nodeName": "kind-worker2"}),
        }
    )
    assert named_port_addresses([g], "dns") is None
    # nothing ready: the serving terminating endpoints keep the service reachable
    draining = EndpointGroup(tuple(e for e in g.endpoints if e.terminating), g.ports)
    assert named_port_addresses([draining], "http") == frozenset(
        {Address("10.244.2.9", 8080, metadata={"nodeName": "kind-worker2"})}
    )
    # the port exists, no endpoint: bound to nothing (not Neg)
    assert named_port_addresses([EndpointGroup((), g.ports)], "http") == frozenset()


def test_numbered_ports() -> None:
    svc = parse_service(json.loads(SERVICE)).value
    (g,) = parse_endpoint_slice(json.loads(SLICE)).value
    renamed = EndpointGroup(g.endpoints, ())
    # port 9990 is named "admin": the endpoints' "admin" port (its per-pod number)
    assert {a.port for a in numbered_port_addresses(svc, [g], 9990) or ()} == {9990}
    # port 80 -> numeric targetPort 54321 once no endpoint port carries the name
    assert {a.port for a in numbered_port_addresses(svc, [renamed], 80) or ()} == {54321}
    # named targetPort and no such endpoint port: Neg
    assert numbered_port_addresses(svc, [renamed], 9990) is None
    assert numbered_port_addresses(svc, [g], 12345) is None
    assert numbered_port_addresses(None, [g], 80) is None


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"metadata": {"name": "s"}, "endpoints": "x"}, "endpoints: expected a list, got str"),
        (
            {"metadata": {"name": "s"}, "endpoints": [{"addresses": ["10.0.0.300"]}]},
            "addresses[0]: '10.0.0.300' is not an IP address",
        ),
        (
            {
                "metadata": {"name": "s"},
                "endpoints": [{"addresses": ["1.2.3.4"], "conditions": {"ready": "yes"}}],
            },
            "conditions.ready: expected a boolean, got str",
        ),
        ({"metadata": {"name": "s"}, "ports": [{"port": 70000}]}, "70000 is not a port number"),
        ({"metadata": {"name": "s"}, "ports": [{"port": True}]}, "expected an integer, got bool"),
        ({"metadata": {}}, "metadata.name: expected a string, got null"),
        ([], "EndpointSlice: expected an object, got list"),
    ],
)
def test_malformed_slices(payload: object, message: str) -> None:
    with pytest.raises(Malformed, match=message.replace("(", r"\(").replace("[", r"\[")):
        parse_endpoint_slice(payload)


def test_unexpected_fields_and_types_are_tolerated() -> None:
    raw = json.loads(SLICE)
    raw["someFutureField"] = {"x": [1, 2]}
    raw["endpoints"][0]["futureCondition"] = True
    raw["endpoints"][0]["conditions"]["futureFlag"] = "maybe"
    raw["ports"][0]["futurePortField"] = 3
    assert parse_endpoint_slice(raw).value == parse_endpoint_slice(json.loads(SLICE)).value
    # an address type from the future: nothing to dial, not an error
    raw["addressType"] = "IPv7"
    assert parse_endpoint_slice(raw).value[0].endpoints == ()
    fqdn = {
        "metadata": {"name": "f"},
        "addressType": "FQDN",
        "endpoints": [{"addresses": ["db.example.com"]}],
        "ports": [{"name": "sql", "port": 5432}],
    }
    assert named_port_addresses(parse_endpoint_slice(fqdn).value, "sql") == frozenset(
        {Address("db.example.com", 5432)}
    )


def test_lists_events_and_status() -> None:
    page = parse_list(
        b'{"kind":"EndpointSliceList","apiVersion":"discovery.k8s.io/v1",'
        b'"metadata":{"resourceVersion":"120","continue":"abc"},"items":[' + SLICE.encode() + b"]}"
    )
    assert (page.resource_version, page.continue_token, len(page.items)) == ("120", "abc", 1)
    assert parse_list(b'{"metadata":{"resourceVersion":"5"},"items":null}').nulls == (
        "list response.items",
    )
    with pytest.raises(Malformed, match="not JSON"):
        parse_list(b'{"malformed": [')
    with pytest.raises(Malformed, match="resourceVersion"):
        parse_list(b'{"metadata":{},"items":[]}')
    ev = parse_event(
        b'{"type":"BOOKMARK","object":{"kind":"EndpointSlice","apiVersion":"discovery.k8s.io/v1","metadata":{"resourceVersion":"12746"}}}'
    )
    assert (ev.type, ev.resource_version) == ("BOOKMARK", "12746")
    err = parse_event(
        '{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},'
        '"status":"Failure","message":"too old resource version: 101 (150)",'
        '"reason":"Expired","code":410}}'
    )
    assert parse_status(err.object).code == 410
    assert parse_status(err.object).show() == "410 Expired: too old resource version: 101 (150)"
    with pytest.raises(Malformed, match="unknown 'RESYNC'"):
        parse_event('{"type":"RESYNC","object":{}}')
    with pytest.raises(Malformed, match="not JSON"):
        parse_event('{"type":"MODIFIED","object":{"kind":"')
    assert parse_status("not a status").code == 0


@pytest.mark.parametrize(
    ("path", "label", "ns", "expected"),
    [
        ("/prod/http/web", None, None, ("prod", "http", "web", None, "")),
        ("/Prod/HTTP/Web/rest/of", None, None, ("prod", "http", "web", None, "/rest/of")),
        ("/prod/8080/web", None, None, ("prod", "8080", "web", None, "")),
        ("/prod/http/web/V2/x", "version", None, ("prod", "http", "web", "v2", "/x")),
        ("/http/web", None, "team-a", ("team-a", "http", "web", None, "")),
        ("/prod/http", None, None, None),
        ("/prod/http/web", "version", None, None),
        ("/prod/http/web_", None, None, None),
        ("/prod/70000/web", None, None, None),
        ("/.env/http/web", None, None, None),
        ("/prod/http/" + "a" * 64, None, None, None),
        ("/wp-admin/setup-config.php/x", None, None, None),
    ],
)
def test_names(
    path: str, label: str | None, ns: str | None, expected: tuple[object, ...] | None
) -> None:
    got = parse_name(Path.read(path), namespace=ns, label_key=label)
    if expected is None:
        assert got is None
        return
    assert got is not None
    name, residual = got
    assert (name.namespace, name.port, name.service, name.label_value, residual.show()) == (
        *expected[:4],
        expected[4] or "/",
    )


def test_connection_modes(tmp_path: FsPath) -> None:
    token = tmp_path / "token"
    token.write_text("t")
    pod = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    # Linkerd's default: kubectl proxy on localhost:8001
    assert resolve_connection("auto", None, None, str(token), None, {}) == Connection(
        "http://localhost:8001"
    )
    # in a pod with a service account: in-cluster
    c = resolve_connection("auto", None, None, str(token), "/ca.crt", pod)
    assert c == Connection("https://10.96.0.1:443", token_file=str(token), ca_file="/ca.crt")
    assert c.mode == "inCluster"
    # a config naming its proxy keeps it, even in a pod
    assert resolve_connection("auto", "localhost", 8001, str(token), None, pod).mode == "proxy"
    # no token file mounted: proxy
    missing = str(tmp_path / "none")
    assert resolve_connection("auto", None, None, missing, None, pod).mode == "proxy"
    # IPv6 apiservers are bracketed
    v6 = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "6443"}
    assert resolve_connection("inCluster", None, None, None, None, v6).base_url == (
        "https://[fd00::1]:6443"
    )
    with pytest.raises(ValueError, match="KUBERNETES_SERVICE_HOST"):
        resolve_connection("inCluster", None, None, None, None, {})


def test_backoff_is_jittered_exponential_and_capped() -> None:
    b = Backoff(0.01, 1.0, random.Random(1))
    delays = [b.next() for _ in range(12)]
    for n, d in enumerate(delays):
        cap = min(1.0, 0.01 * 2**n)
        assert cap / 2 <= d <= cap
    b.reset()
    assert b.next() <= 0.01
