"""Pure JSON -> value parsers for the Kubernetes objects the namers read.

Nothing here does I/O.  The parsers are tolerant where the API is (unknown fields are
ignored, absent optional fields take their documented defaults, a JSON ``null`` where a
list is expected reads as the empty list, as Go's encoder writes an empty slice) and
strict where a wrong value would route traffic to the wrong place (a known field of
the wrong type, an IP address that is not one): such payloads raise :class:`Malformed`
and the caller keeps its last good answer.

The shapes are those of ``discovery.k8s.io/v1`` ``EndpointSlice``, ``core/v1``
``Endpoints`` and ``Service``, list responses and watch events (reference: the
Kubernetes API conventions; ``docs/namers/k8s.md``).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import attrs

from linkpy.naming import Address

#: The label tying an EndpointSlice to its Service.
SERVICE_NAME_LABEL: Final = "kubernetes.io/service-name"
#: Address metadata key of the node an endpoint runs on (Linkerd's ``nodeName``).
NODE_NAME: Final = "nodeName"
#: Address metadata key of the endpoint's zone (EndpointSlices only).
ZONE: Final = "zone"

EVENT_TYPES: Final = frozenset({"ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"})


class Malformed(ValueError):
    """A payload without the shape the Kubernetes API documents."""


# -- values --------------------------------------------------------------------------


@attrs.frozen
class Status:
    """A ``Status`` object: the body of an error response or of a watch ``ERROR``."""

    code: int
    reason: str
    message: str

    def show(self) -> str:
        return f"{self.code} {self.reason}: {self.message}" if self.message else str(self.code)


@attrs.frozen
class EndpointPort:
    """A port of an EndpointSlice or an Endpoints subset (``port`` None: unrestricted)."""

    name: str
    port: int | None
    protocol: str = "TCP"


@attrs.frozen
class Endpoint:
    """One endpoint with its conditions (nil conditions already defaulted)."""

    host: str
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    node_name: str | None = None
    zone: str | None = None

    def address(self, port: int) -> Address:
        meta: dict[str, str] = {}
        if self.node_name:
            meta[NODE_NAME] = self.node_name
        if self.zone:
            meta[ZONE] = self.zone
        return Address(self.host, port, metadata=meta)


@attrs.frozen
class EndpointGroup:
    """Endpoints sharing one port list: an EndpointSlice, or a subset of an Endpoints."""

    endpoints: tuple[Endpoint, ...] = ()
    ports: tuple[EndpointPort, ...] = ()


@attrs.frozen
class ServicePort:
    name: str
    port: int
    #: a number, or the name of a container port; equals ``port`` when absent
    target_port: int | str
    protocol: str = "TCP"


@attrs.frozen
class ServiceInfo:
    """What the namers read from a Service."""

    ports: tuple[ServicePort, ...] = ()
    #: ``status.loadBalancer.ingress[]``: the hostname, else the IP, of each
    ingress: tuple[str, ...] = ()


@attrs.frozen
class Decoded:
    """An object read from a list or a watch event."""

    name: str
    resource_version: str
    #: :class:`EndpointGroup` tuples or a :class:`ServiceInfo`, by resource
    value: Any
    #: where a ``null`` stood for a list (``endpoints``, ``subsets[0].ports``, ...)
    nulls: tuple[str, ...] = ()


@attrs.frozen
class ListPage:
    resource_version: str
    continue_token: str | None
    items: tuple[Mapping[str, Any], ...]
    nulls: tuple[str, ...] = ()


@attrs.frozen
class WatchEvent:
    type: str
    object: Mapping[str, Any]

    @property
    def resource_version(self) -> str | None:
        meta = self.object.get("metadata")
        if isinstance(meta, Mapping):
            rv = meta.get("resourceVersion")
            if isinstance(rv, str) and rv:
                return rv
        return None


# -- field readers -------------------------------------------------------------------


def _type(v: object) -> str:
    return "null" if v is None else type(v).__name__


def _obj(v: object, where: str) -> Mapping[str, Any]:
    if not isinstance(v, Mapping):
        raise Malformed(f"{where}: expected an object, got {_type(v)}")
    return v


def _opt_obj(v: object, where: str) -> Mapping[str, Any]:
    return {} if v is None else _obj(v, where)


def _list(v: object, where: str, nulls: list[str], *, absent: bool = False) -> list[Any]:
    if v is None:
        if not absent:
            nulls.append(where)
        return []
    if not isinstance(v, list):
        raise Malformed(f"{where}: expected a list, got {_type(v)}")
    return v


def _field_list(o: Mapping[str, Any], key: str, where: str, nulls: list[str]) -> list[Any]:
    """A list field: absent means empty; ``null`` means empty and is noted."""
    return _list(o.get(key), f"{where}.{key}", nulls, absent=key not in o)


def _str(v: object, where: str, default: str | None = None) -> str:
    if v is None and default is not None:
        return default
    if not isinstance(v, str):
        raise Malformed(f"{where}: expected a string, got {_type(v)}")
    return v


def _opt_str(v: object, where: str) -> str | None:
    if v is None:
        return None
    return _str(v, where)


def _int(v: object, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise Malformed(f"{where}: expected an integer, got {_type(v)}")
    return v


def _opt_bool(v: object, where: str) -> bool | None:
    if v is None:
        return None
    if not isinstance(v, bool):
        raise Malformed(f"{where}: expected a boolean, got {_type(v)}")
    return v


def _port_number(v: object, where: str) -> int:
    n = _int(v, where)
    if not 0 < n < 65536:
        raise Malformed(f"{where}: {n} is not a port number")
    return n


def _ip(v: object, where: str) -> str:
    s = _str(v, where)
    try:
        return str(ipaddress.ip_address(s))
    except ValueError:
        raise Malformed(f"{where}: {s!r} is not an IP address") from None


def _meta(o: Mapping[str, Any], where: str) -> tuple[str, str]:
    meta = _obj(o.get("metadata"), f"{where}.metadata")
    name = _str(meta.get("name"), f"{where}.metadata.name")
    if not name:
        raise Malformed(f"{where}.metadata.name: empty")
    rv = _str(meta.get("resourceVersion"), f"{where}.metadata.resourceVersion", "")
    return name, rv


# -- objects -------------------------------------------------------------------------


def parse_status(v: object) -> Status:
    """A ``Status`` (error) object; lenient, since it only feeds messages and codes."""
    o = v if isinstance(v, Mapping) else {}
    code = o.get("code")
    reason = o.get("reason")
    message = o.get("message")
    return Status(
        code if isinstance(code, int) and not isinstance(code, bool) else 0,
        reason if isinstance(reason, str) else "",
        message if isinstance(message, str) else "",
    )


def _endpoint_ports(raw: list[Any], where: str) -> tuple[EndpointPort, ...]:
    ports = []
    for i, p in enumerate(raw):
        w = f"{where}[{i}]"
        p = _obj(p, w)
        number = p.get("port")
        ports.append(
            EndpointPort(
                _str(p.get("name"), f"{w}.name", ""),
                None if number is None else _port_number(number, f"{w}.port"),
                _str(p.get("protocol"), f"{w}.protocol", "TCP"),
            )
        )
    return tuple(ports)


def parse_endpoint_slice(v: object) -> Decoded:
    """An ``EndpointSlice``: one :class:`EndpointGroup` (in a 1-tuple)."""
    o = _obj(v, "EndpointSlice")
    name, rv = _meta(o, "EndpointSlice")
    where = f"EndpointSlice {name}"
    nulls: list[str] = []
    address_type = _str(o.get("addressType"), f"{where}.addressType", "IPv4")
    raw_endpoints = _field_list(o, "endpoints", where, nulls)
    ports = _endpoint_ports(_field_list(o, "ports", where, nulls), f"{where}.ports")
    endpoints = []
    for i, e in enumerate(raw_endpoints):
        w = f"{where}.endpoints[{i}]"
        e = _obj(e, w)
        addresses = _field_list(e, "addresses", w, nulls)
        if not addresses:
            continue
        if address_type in ("IPv4", "IPv6"):
            host = _ip(addresses[0], f"{w}.addresses[0]")
        elif address_type == "FQDN":
            host = _str(addresses[0], f"{w}.addresses[0]")
            if not host:
                continue
        else:
            # an address type this namer does not know: nothing it can dial
            continue
        cond = _opt_obj(e.get("conditions"), f"{w}.conditions")
        ready = _opt_bool(cond.get("ready"), f"{w}.conditions.ready")
        serving = _opt_bool(cond.get("serving"), f"{w}.conditions.serving")
        terminating = _opt_bool(cond.get("terminating"), f"{w}.conditions.terminating")
        ready = True if ready is None else ready
        endpoints.append(
            Endpoint(
                host,
                ready=ready,
                serving=ready if serving is None else serving,
                terminating=bool(terminating),
                node_name=_opt_str(e.get("nodeName"), f"{w}.nodeName"),
                zone=_opt_str(e.get("zone"), f"{w}.zone"),
            )
        )
    group = EndpointGroup(tuple(endpoints), ports)
    return Decoded(name, rv, (group,), tuple(nulls))


def parse_endpoints(v: object) -> Decoded:
    """A ``core/v1`` ``Endpoints``: one :class:`EndpointGroup` per subset.

    ``notReadyAddresses`` become endpoints that are neither ready nor serving (so they
    are never routed to, as in Linkerd).
    """
    o = _obj(v, "Endpoints")
    name, rv = _meta(o, "Endpoints")
    where = f"Endpoints {name}"
    nulls: list[str] = []
    groups = []
    for i, s in enumerate(_field_list(o, "subsets", where, nulls)):
        w = f"{where}.subsets[{i}]"
        s = _obj(s, w)
        endpoints = []
        for key, ready in (("addresses", True), ("notReadyAddresses", False)):
            for j, a in enumerate(_field_list(s, key, w, nulls)):
                aw = f"{w}.{key}[{j}]"
                a = _obj(a, aw)
                endpoints.append(
                    Endpoint(
                        _ip(a.get("ip"), f"{aw}.ip"),
                        ready=ready,
                        serving=ready,
                        node_name=_opt_str(a.get("nodeName"), f"{aw}.nodeName"),
                    )
                )
        ports = _endpoint_ports(_field_list(s, "ports", w, nulls), f"{w}.ports")
        groups.append(EndpointGroup(tuple(endpoints), ports))
    return Decoded(name, rv, tuple(groups), tuple(nulls))


def parse_service(v: object) -> Decoded:
    """A ``Service``: its ports and load-balancer ingress (a :class:`ServiceInfo`)."""
    o = _obj(v, "Service")
    name, rv = _meta(o, "Service")
    where = f"Service {name}"
    nulls: list[str] = []
    spec = _opt_obj(o.get("spec"), f"{where}.spec")
    ports = []
    for i, p in enumerate(_field_list(spec, "ports", f"{where}.spec", nulls)):
        w = f"{where}.spec.ports[{i}]"
        p = _obj(p, w)
        number = _port_number(p.get("port"), f"{w}.port")
        target = p.get("targetPort")
        if target is None or target == 0:
            target_port: int | str = number
        elif isinstance(target, str):
            target_port = int(target) if target.isdigit() else target
        else:
            target_port = _port_number(target, f"{w}.targetPort")
        ports.append(
            ServicePort(
                _str(p.get("name"), f"{w}.name", ""),
                number,
                target_port,
                _str(p.get("protocol"), f"{w}.protocol", "TCP"),
            )
        )
    status = _opt_obj(o.get("status"), f"{where}.status")
    lb = _opt_obj(status.get("loadBalancer"), f"{where}.status.loadBalancer")
    ingress = []
    for i, ing in enumerate(_field_list(lb, "ingress", f"{where}.status.loadBalancer", nulls)):
        w = f"{where}.status.loadBalancer.ingress[{i}]"
        ing = _obj(ing, w)
        hostname = _opt_str(ing.get("hostname"), f"{w}.hostname")
        if hostname:
            ingress.append(hostname)
        elif ing.get("ip") is not None:
            ingress.append(_ip(ing.get("ip"), f"{w}.ip"))
    return Decoded(name, rv, ServiceInfo(tuple(ports), tuple(ingress)), tuple(nulls))


# -- responses -----------------------------------------------------------------------


def loads(data: bytes | str, what: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise Malformed(f"{what}: not JSON ({e})") from None


def parse_list(data: bytes) -> ListPage:
    """A list response (``{"kind": "...List", "metadata": {...}, "items": [...]}``)."""
    o = _obj(loads(data, "list response"), "list response")
    meta = _opt_obj(o.get("metadata"), "list response metadata")
    rv = _str(meta.get("resourceVersion"), "list response metadata.resourceVersion")
    cont = _opt_str(meta.get("continue"), "list response metadata.continue") or None
    nulls: list[str] = []
    items = _field_list(o, "items", "list response", nulls)
    return ListPage(
        rv,
        cont,
        tuple(_obj(i, f"list response items[{n}]") for n, i in enumerate(items)),
        tuple(nulls),
    )


def parse_event(line: bytes | str) -> WatchEvent:
    """One line of a watch stream (``{"type": ..., "object": {...}}``)."""
    o = _obj(loads(line, "watch event"), "watch event")
    typ = _str(o.get("type"), "watch event type")
    if typ not in EVENT_TYPES:
        raise Malformed(f"watch event type: unknown {typ!r}")
    return WatchEvent(typ, _obj(o.get("object"), f"{typ} event object"))


# -- address selection ---------------------------------------------------------------


def _tcp(protocol: str) -> bool:
    return protocol.upper() == "TCP"


def _pick(candidates: Iterable[tuple[Endpoint, int]]) -> frozenset[Address]:
    """The ready endpoints; when none is ready, the serving terminating ones
    (kube-proxy's rule: keep a draining service reachable until it is gone)."""
    ready: list[Address] = []
    draining: list[Address] = []
    for e, port in candidates:
        if e.ready:
            ready.append(e.address(port))
        elif e.serving and e.terminating:
            draining.append(e.address(port))
    return frozenset(ready or draining)


def named_port_addresses(
    groups: Sequence[EndpointGroup], port_name: str
) -> frozenset[Address] | None:
    """The addresses of the TCP port ``port_name``; None when no group has that port."""
    found = False
    candidates: list[tuple[Endpoint, int]] = []
    for g in groups:
        for p in g.ports:
            if p.name == port_name and _tcp(p.protocol):
                found = True
                if p.port is not None:
                    candidates.extend((e, p.port) for e in g.endpoints)
                break
    return _pick(candidates) if found else None


def service_port(service: ServiceInfo, number: int) -> ServicePort | None:
    for p in service.ports:
        if p.port == number and _tcp(p.protocol):
            return p
    return None


def numbered_port_addresses(
    service: ServiceInfo | None, groups: Sequence[EndpointGroup], number: int
) -> frozenset[Address] | None:
    """The addresses behind the Service's port ``number``; None when it has no such port.

    The endpoint ports carry the Service port's *name* with the resolved target port
    number (per pod), so the Service port is looked up by name among them; this also
    resolves named target ports correctly.  When no endpoint lists that name (no
    endpoints at all, or hand-written Endpoints with other names), a numeric
    ``targetPort`` is used directly, as Linkerd did.
    """
    if service is None:
        return None
    sp = service_port(service, number)
    if sp is None:
        return None
    found = named_port_addresses(groups, sp.name)
    if found is not None:
        return found
    if isinstance(sp.target_port, int):
        target = sp.target_port
        return _pick((e, target) for g in groups for e in g.endpoints)
    return None


def external_addresses(service: ServiceInfo | None, port: str) -> frozenset[Address] | None:
    """``io.l5d.k8s.external``: the load balancer's ingress addresses for a Service port
    (by name, or by number), with the Service port (not the target port).  None when
    the port is unknown or no ingress is provisioned yet."""
    if service is None or not service.ingress:
        return None
    sp: ServicePort | None
    if port.isdigit():
        sp = service_port(service, int(port))
    else:
        sp = next((p for p in service.ports if p.name == port and _tcp(p.protocol)), None)
    if sp is None:
        return None
    return frozenset(Address(host, sp.port) for host in service.ingress)
