"""FakeConsul: the Consul HTTP API (v1) as a discovery namer sees it.

Served: ``GET /v1/health/service/<svc>``, ``/v1/catalog/service/<svc>``,
``/v1/catalog/services`` (all three with blocking queries), ``/v1/agent/self``,
``/v1/catalog/datacenters`` and ``/v1/status/leader``.  Payloads, headers, status
codes and error texts are Consul's (docs/reference: discovery-apis.md section 1).

Model: each datacenter has a Raft index bumped by every write (idempotent ones
included, as in Consul).  The ``X-Consul-Index`` of a service query is the index of
the last write that touched that service (its instances, their checks, or node
checks of their nodes); for a service that does not exist it is the index at which
the last service went extinct (or of the services table).  A blocking query
(``index=N``) waits until that index exceeds N or ``wait`` (+ up to ``wait/16`` of
jitter) expires.

Scripting (synchronous; call from the test's trio task)::

    consul = FakeConsul()
    port = await nursery.start(consul.serve)
    consul.register("web", "10.0.0.1", 8080, tags=["prod"], checks={"service:web": "passing"})
    consul.set_check("web", "critical")
    consul.deregister("web")
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, Literal

import attrs

from ._http import (
    FakeServer,
    Headers,
    Notifier,
    Request,
    Response,
    json_response,
    text_response,
)
from ._util import now, parse_go_duration

CheckStatus = Literal["passing", "warning", "critical"]

#: Blocking-query defaults of a Consul server (``DefaultQueryTime``, ``MaxQueryTime``).
DEFAULT_WAIT = 300.0
MAX_WAIT = 600.0
#: Jitter of up to ``wait / JITTER_FRACTION`` is added to a blocking query.
JITTER_FRACTION = 16

_SERVICE_MAINT_NOTES = (
    "Maintenance mode is enabled for this service, but no reason was provided. "
    "This is a default message."
)
_NODE_MAINT_NOTES = (
    "Maintenance mode is enabled for this node, but no reason was provided. "
    "This is a default message."
)


@attrs.define
class _Check:
    node: str
    check_id: str
    name: str
    status: str
    service_id: str = ""
    service_name: str = ""
    notes: str = ""
    output: str = ""
    create_index: int = 0
    modify_index: int = 0

    def to_json(self, service_tags: Sequence[str]) -> dict[str, Any]:
        return {
            "Node": self.node,
            "CheckID": self.check_id,
            "Name": self.name,
            "Status": self.status,
            "Notes": self.notes,
            "Output": self.output,
            "ServiceID": self.service_id,
            "ServiceName": self.service_name,
            "ServiceTags": list(service_tags) if self.service_id else [],
            "Type": "",
            "Definition": {},
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        }


@attrs.define
class _Node:
    name: str
    address: str
    meta: dict[str, str]
    create_index: int
    modify_index: int
    checks: dict[str, _Check] = attrs.Factory(dict)

    @property
    def node_id(self) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_DNS, self.name))


@attrs.define
class _Service:
    service_id: str
    name: str
    node: str
    tags: list[str]
    address: str
    port: int
    meta: dict[str, str]
    weights: dict[str, int]
    tagged_addresses: dict[str, Any]
    enable_tag_override: bool
    create_index: int
    modify_index: int
    checks: dict[str, _Check] = attrs.Factory(dict)


class _Catalog:
    """One datacenter: nodes, service instances and the index bookkeeping."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.index = 0
        self.nodes: dict[str, _Node] = {}
        self.services: dict[tuple[str, str], _Service] = {}  # (node, service id)
        self.service_index: dict[str, int] = {}  # lower-cased service name -> index
        self.services_table = 0
        self.nodes_table = 0
        self.extinction = 0

    def bump(self) -> int:
        self.index += 1
        return self.index

    def instances(self, name: str) -> list[_Service]:
        key = name.lower()
        found = [s for s in self.services.values() if s.name.lower() == key]
        return sorted(found, key=lambda s: (s.node, s.service_id))

    def service_result_index(self, name: str) -> int:
        if self.instances(name):
            idx = self.service_index.get(name.lower(), 0)
        elif self.extinction:
            idx = self.extinction
        else:
            idx = max(self.services_table, self.nodes_table)
        return max(idx, 1)

    def services_result_index(self) -> int:
        return max(self.services_table, 1)

    def touch_service(self, name: str, idx: int) -> None:
        self.service_index[name.lower()] = idx

    def rewind(self, to: int) -> None:
        self.index = to
        self.services_table = min(self.services_table, to)
        self.nodes_table = min(self.nodes_table, to)
        self.extinction = min(self.extinction, to)
        self.service_index = {k: min(v, to) for k, v in self.service_index.items()}
        for node in self.nodes.values():
            node.create_index = min(node.create_index, to)
            node.modify_index = min(node.modify_index, to)
            for c in node.checks.values():
                c.create_index, c.modify_index = min(c.create_index, to), min(c.modify_index, to)
        for s in self.services.values():
            s.create_index, s.modify_index = min(s.create_index, to), min(s.modify_index, to)
            for c in s.checks.values():
                c.create_index, c.modify_index = min(c.create_index, to), min(c.modify_index, to)


@attrs.frozen
class _Token:
    services: frozenset[str] | None  # None: every service
    nodes: bool
    agent: bool

    def can_read_service(self, name: str) -> bool:
        return self.services is None or name in self.services


_ALLOW_ALL = _Token(None, True, True)
_DENY_ALL = _Token(frozenset(), False, False)


class FakeConsul(FakeServer):
    """A Consul agent (and its servers) on a loopback port.

    ``datacenter`` and ``node_name`` are the agent's own; the agent's node runs the
    ``consul`` service, as in a real cluster.  ``seed`` seeds the blocking-query
    jitter; set :attr:`jitter` to False to remove it.
    """

    kind = "consul"

    def __init__(
        self,
        *,
        datacenter: str = "dc1",
        node_name: str = "node-a",
        node_address: str = "127.0.0.1",
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.datacenter = datacenter
        self.node_name = node_name
        self.node_address = node_address
        #: Add up to ``wait/16`` to blocking queries, as Consul does.
        self.jitter = True
        #: How long a default/consistent read waits for a leader before failing.
        self.rpc_hold_timeout = 7.0
        #: Error texts (Consul's wording changed across versions).
        self.no_path_message = "No path to datacenter"
        self.no_leader_message = "No cluster leader"
        #: Report ``X-Consul-Index: 0`` (old/buggy servers) instead of the real index.
        self.report_zero_index = False
        self.leader = True
        self._leader_lost_at: float | None = None
        self.acl_enabled = False
        self.acl_default_policy: Literal["allow", "deny"] = "allow"
        self._tokens: dict[str, _Token] = {}
        self._random = random.Random(seed)
        self._changed = Notifier()
        self._catalogs: dict[str, _Catalog] = {}
        self._reset()
        r = self.router
        r.add("GET", "/v1/health/service/{name}", self._health_service)
        r.add("GET", "/v1/catalog/service/{name}", self._catalog_service)
        r.add("GET", "/v1/catalog/services", self._catalog_services)
        r.add("GET", "/v1/catalog/datacenters", self._datacenters)
        r.add("GET", "/v1/agent/self", self._agent_self)
        r.add("GET", "/v1/status/leader", self._status_leader)

    def _reset(self) -> None:
        self._catalogs = {self.datacenter: _Catalog(self.datacenter)}
        self.register("consul", "", 8300, node=self.node_name, node_address=self.node_address)

    # -- scripting: catalog ---------------------------------------------------

    def add_datacenter(self, name: str) -> None:
        """Make another (empty) datacenter known; register into it with ``dc=name``."""
        self._catalogs.setdefault(name, _Catalog(name))

    def register(
        self,
        service: str,
        address: str = "",
        port: int = 0,
        *,
        service_id: str | None = None,
        tags: Iterable[str] = (),
        checks: Mapping[str, CheckStatus] | None = None,
        meta: Mapping[str, str] | None = None,
        weights: Mapping[str, int] | None = None,
        tagged_addresses: Mapping[str, Any] | None = None,
        enable_tag_override: bool = False,
        node: str | None = None,
        node_address: str | None = None,
        node_meta: Mapping[str, str] | None = None,
        dc: str | None = None,
    ) -> str:
        """Register (or re-register) a service instance; returns its ID.

        ``address`` "" means "use the node's address" (``Service.Address`` stays "").
        ``checks`` maps check IDs (e.g. ``"service:web"``) to statuses; they replace
        the instance's service checks.  The node (default: the agent's) is created
        on first use with a passing ``serfHealth`` check and address ``node_address``
        (default ``127.0.0.1``).  Always bumps the index, even when nothing changed.
        """
        cat = self._catalog(dc)
        node_name = node or self.node_name
        sid = service_id or service
        idx = cat.bump()
        n = cat.nodes.get(node_name)
        if n is None:
            n = _Node(
                node_name,
                node_address or "127.0.0.1",
                dict(node_meta) if node_meta is not None else {"consul-network-segment": ""},
                idx,
                idx,
            )
            n.checks["serfHealth"] = _Check(
                node_name,
                "serfHealth",
                "Serf Health Status",
                "passing",
                output="Agent alive and reachable",
                create_index=idx,
                modify_index=idx,
            )
            cat.nodes[node_name] = n
            cat.nodes_table = idx
        elif node_address is not None or node_meta is not None:
            if node_address is not None:
                n.address = node_address
            if node_meta is not None:
                n.meta = dict(node_meta)
            n.modify_index = idx
            cat.nodes_table = idx
        old = cat.services.get((node_name, sid))
        s = _Service(
            service_id=sid,
            name=service,
            node=node_name,
            tags=list(tags),
            address=address,
            port=port,
            meta=dict(meta or {}),
            weights=dict(weights) if weights is not None else {"Passing": 1, "Warning": 1},
            tagged_addresses=dict(tagged_addresses or {}),
            enable_tag_override=enable_tag_override,
            create_index=old.create_index if old else idx,
            modify_index=idx,
        )
        for check_id, status in (checks or {}).items():
            prev = old.checks.get(check_id) if old else None
            s.checks[check_id] = _Check(
                node_name,
                check_id,
                f"Service '{service}' check",
                status,
                service_id=sid,
                service_name=service,
                create_index=prev.create_index if prev else idx,
                modify_index=idx,
            )
        cat.services[(node_name, sid)] = s
        if old is not None and old.name.lower() != service.lower():
            cat.touch_service(old.name, idx)
        cat.touch_service(service, idx)
        cat.services_table = idx
        self._changed.notify()
        return sid

    def deregister(
        self, service_id: str, *, node: str | None = None, dc: str | None = None
    ) -> None:
        """Remove a service instance (by ID; ``node`` disambiguates)."""
        cat = self._catalog(dc)
        s = self._find(cat, service_id, node)
        idx = cat.bump()
        del cat.services[(s.node, s.service_id)]
        cat.touch_service(s.name, idx)
        cat.services_table = idx
        if not cat.instances(s.name):
            cat.extinction = idx
        self._changed.notify()

    def deregister_node(self, node: str, *, dc: str | None = None) -> None:
        """Remove a node and every service instance on it."""
        cat = self._catalog(dc)
        if node not in cat.nodes:
            raise KeyError(node)
        idx = cat.bump()
        del cat.nodes[node]
        cat.nodes_table = idx
        for key, s in list(cat.services.items()):
            if s.node == node:
                del cat.services[key]
                cat.touch_service(s.name, idx)
                cat.services_table = idx
                if not cat.instances(s.name):
                    cat.extinction = idx
        self._changed.notify()

    def set_check(
        self,
        service_id: str,
        status: CheckStatus,
        *,
        check_id: str | None = None,
        output: str = "",
        node: str | None = None,
        dc: str | None = None,
    ) -> None:
        """Set (creating if needed) a service check; default ID ``service:<id>``."""
        cat = self._catalog(dc)
        s = self._find(cat, service_id, node)
        cid = check_id or f"service:{s.service_id}"
        idx = cat.bump()
        c = s.checks.get(cid)
        if c is None:
            c = _Check(
                s.node,
                cid,
                f"Service '{s.name}' check",
                status,
                service_id=s.service_id,
                service_name=s.name,
                create_index=idx,
            )
            s.checks[cid] = c
        c.status, c.output, c.modify_index = status, output, idx
        cat.touch_service(s.name, idx)
        self._changed.notify()

    def set_node_check(
        self,
        node: str,
        status: CheckStatus,
        *,
        check_id: str = "serfHealth",
        output: str = "",
        dc: str | None = None,
    ) -> None:
        """Set a node-level check (``serfHealth`` by default); affects every service on it."""
        cat = self._catalog(dc)
        n = cat.nodes[node]
        idx = cat.bump()
        c = n.checks.get(check_id)
        if c is None:
            c = _Check(node, check_id, check_id, status, create_index=idx)
            n.checks[check_id] = c
        c.status, c.output, c.modify_index = status, output, idx
        self._touch_node_services(cat, node, idx)
        self._changed.notify()

    def maintenance(
        self,
        service_id: str,
        enable: bool = True,
        *,
        reason: str = "",
        node: str | None = None,
        dc: str | None = None,
    ) -> None:
        """Service maintenance mode: an extra critical check ``_service_maintenance:<id>``."""
        cat = self._catalog(dc)
        s = self._find(cat, service_id, node)
        cid = f"_service_maintenance:{s.service_id}"
        idx = cat.bump()
        if enable:
            s.checks[cid] = _Check(
                s.node,
                cid,
                "Service Maintenance Mode",
                "critical",
                service_id=s.service_id,
                service_name=s.name,
                notes=reason or _SERVICE_MAINT_NOTES,
                create_index=idx,
                modify_index=idx,
            )
        else:
            s.checks.pop(cid, None)
        cat.touch_service(s.name, idx)
        self._changed.notify()

    def node_maintenance(
        self,
        node: str | None = None,
        enable: bool = True,
        *,
        reason: str = "",
        dc: str | None = None,
    ) -> None:
        """Node maintenance mode: an extra critical node check ``_node_maintenance``."""
        cat = self._catalog(dc)
        name = node or self.node_name
        n = cat.nodes[name]
        idx = cat.bump()
        if enable:
            n.checks["_node_maintenance"] = _Check(
                name,
                "_node_maintenance",
                "Node Maintenance Mode",
                "critical",
                notes=reason or _NODE_MAINT_NOTES,
                create_index=idx,
                modify_index=idx,
            )
        else:
            n.checks.pop("_node_maintenance", None)
        self._touch_node_services(cat, name, idx)
        self._changed.notify()

    def touch(self, service: str, *, dc: str | None = None) -> None:
        """An idempotent write: bumps the service's index without changing anything."""
        cat = self._catalog(dc)
        cat.touch_service(service, cat.bump())
        self._changed.notify()

    def index(self, service: str | None = None, *, dc: str | None = None) -> int:
        """The index a query would report now (for ``service``, or the Raft index)."""
        cat = self._catalog(dc)
        return cat.index if service is None else cat.service_result_index(service)

    # -- scripting: index faults, leadership, restarts ------------------------

    def rewind_index(self, to: int, *, dc: str | None = None) -> None:
        """Snapshot restore: the Raft index (and every index above it) goes back to ``to``.

        Blocked queries keep waiting (their index is now ahead of the server's) and
        time out with the smaller index; data is unchanged.
        """
        self._catalog(dc).rewind(to)
        self._changed.notify()

    def set_leader(self, leader: bool) -> None:
        """Lose or regain the cluster leader.

        Without a leader, default and ``consistent`` reads wait :attr:`rpc_hold_timeout`
        for one, then fail 500 ``No cluster leader``; ``stale`` reads still answer, with
        ``X-Consul-KnownLeader: false`` and a growing ``X-Consul-LastContact``.
        """
        if self.leader and not leader:
            self._leader_lost_at = now()
        self.leader = leader
        self._changed.notify()

    def restart(self, *, wipe: bool = False) -> None:
        """Drop every connection.  ``wipe``: also lose all state (a dev-mode agent),
        so the index starts again from 1 -- it goes backwards for clients."""
        self.drop_connections()
        if wipe:
            self._reset()
            self._changed.notify()

    # -- scripting: ACLs ------------------------------------------------------

    def enable_acls(self, default_policy: Literal["allow", "deny"] = "deny") -> None:
        """Turn ACLs on; requests without a token get ``default_policy``."""
        self.acl_enabled = True
        self.acl_default_policy = default_policy

    def disable_acls(self) -> None:
        self.acl_enabled = False
        self.acl_default_policy = "allow"

    def add_token(
        self,
        secret: str,
        *,
        services: Collection[str] | Literal["*"] = "*",
        nodes: bool = True,
        agent: bool = False,
    ) -> None:
        """A valid token with ``service:read`` on ``services`` (names, or ``"*"``),
        ``node:read`` on every node if ``nodes``, ``agent:read`` if ``agent``."""
        self._tokens[secret] = _Token(
            None if services == "*" else frozenset(services), nodes, agent
        )

    def remove_token(self, secret: str) -> None:
        """Delete a token: it becomes unknown (403 ``ACL not found``)."""
        self._tokens.pop(secret, None)

    # -- internals ------------------------------------------------------------

    def _catalog(self, dc: str | None) -> _Catalog:
        return self._catalogs[dc or self.datacenter]

    @staticmethod
    def _find(cat: _Catalog, service_id: str, node: str | None) -> _Service:
        found = [
            s
            for s in cat.services.values()
            if s.service_id == service_id and (node is None or s.node == node)
        ]
        if len(found) != 1:
            raise KeyError(f"{len(found)} instances with ID {service_id!r}")
        return found[0]

    @staticmethod
    def _touch_node_services(cat: _Catalog, node: str, idx: int) -> None:
        for s in cat.services.values():
            if s.node == node:
                cat.touch_service(s.name, idx)

    def response_headers(self) -> list[tuple[str, str]]:
        policy = self.acl_default_policy if self.acl_enabled else "allow"
        return [("X-Consul-Default-ACL-Policy", policy)]

    def _token(self, request: Request) -> tuple[str, _Token] | Response:
        """The request's token (query, then ``X-Consul-Token``, then bearer) and rules."""
        secret = request.param("token") or request.header("x-consul-token") or ""
        if not secret:
            auth = request.header("authorization") or ""
            scheme, _, rest = auth.partition(" ")
            if scheme.lower() == "bearer" and rest:
                secret = rest.strip()
        if not self.acl_enabled:
            return secret, _ALLOW_ALL
        if not secret:
            return "", _ALLOW_ALL if self.acl_default_policy == "allow" else _DENY_ALL
        rules = self._tokens.get(secret)
        if rules is None:
            return self.error_response(403, "ACL not found")
        return secret, rules

    def _last_contact_ms(self) -> int:
        if self.leader:
            return 0
        t = now()
        if t is None or self._leader_lost_at is None:
            return 1
        return max(1, int((t - self._leader_lost_at) * 1000))

    async def _read(
        self,
        request: Request,
        index_of: Callable[[_Catalog], int],
        body_of: Callable[[_Catalog, _Token], tuple[object, bool]],
    ) -> Response:
        """A catalog/health read: parameters, ACLs, leadership, blocking, headers."""
        token = self._token(request)
        if isinstance(token, Response):
            return token
        secret, rules = token
        stale = request.has_param("stale")
        consistent = request.has_param("consistent")
        if stale and consistent:
            return self.error_response(
                400, "Cannot specify ?stale with ?consistent, conflicting semantics."
            )
        wait = DEFAULT_WAIT
        if (w := request.param("wait")) is not None and w != "":
            try:
                wait = parse_go_duration(w)
            except ValueError:
                return self.error_response(400, "Invalid wait time")
        min_index = 0
        if (i := request.param("index")) is not None and i != "":
            if not i.isdigit():
                return self.error_response(400, "Invalid index")
            min_index = int(i)
        dc = request.param("dc") or self.datacenter
        cat = self._catalogs.get(dc)
        if cat is None:
            return self.error_response(500, self.no_path_message)
        if not stale and not await self._changed.wait_for(
            lambda: self.leader, self.rpc_hold_timeout
        ):
            return self.error_response(500, self.no_leader_message)
        if min_index > 0:
            timeout = MAX_WAIT if wait > MAX_WAIT else DEFAULT_WAIT if wait <= 0 else wait
            if self.jitter:
                timeout += self._random.uniform(0, timeout / JITTER_FRACTION)
            await self._changed.wait_for(lambda: index_of(cat) > min_index, timeout)
        body, filtered = body_of(cat, rules)
        headers = [
            ("X-Consul-Index", "0" if self.report_zero_index else str(index_of(cat))),
            ("X-Consul-KnownLeader", "true" if self.leader else "false"),
            ("X-Consul-LastContact", str(self._last_contact_ms())),
            (
                "X-Consul-Effective-Consistency",
                "stale" if stale else "consistent" if consistent else "leader",
            ),
        ]
        if filtered and secret:
            headers.append(("X-Consul-Results-Filtered-By-ACLs", "true"))
        return json_response(body, headers=headers)

    def _selected(
        self, cat: _Catalog, request: Request, name: str, rules: _Token
    ) -> tuple[list[_Service], bool]:
        """Instances of ``name`` matching ``tag``/``node-meta``, and whether ACLs hid some."""
        tags = [t.lower() for t in request.params("tag")]
        metas = [m.partition(":") for m in request.params("node-meta")]
        out: list[_Service] = []
        filtered = False
        for s in cat.instances(name):
            if not rules.can_read_service(s.name) or not rules.nodes:
                filtered = True
                continue
            lowered = {t.lower() for t in s.tags}
            if not all(t in lowered for t in tags):
                continue
            node = cat.nodes[s.node]
            if not all(node.meta.get(k) == v for k, _, v in metas):
                continue
            out.append(s)
        return out, filtered

    async def _health_service(self, request: Request, args: Mapping[str, str]) -> Response:
        name = args["name"]
        passing = False
        if request.has_param("passing"):
            value = request.param("passing") or ""
            if value == "" or value in ("1", "t", "T", "TRUE", "true", "True"):
                passing = True
            elif value in ("0", "f", "F", "FALSE", "false", "False"):
                passing = False
            else:
                return self.error_response(400, "Invalid value for ?passing")

        def body(cat: _Catalog, rules: _Token) -> tuple[object, bool]:
            services, filtered = self._selected(cat, request, name, rules)
            entries = []
            for s in services:
                node = cat.nodes[s.node]
                checks = [*node.checks.values(), *s.checks.values()]
                if passing and any(c.status != "passing" for c in checks):
                    continue
                entries.append(
                    {
                        "Node": self._node_json(cat, node),
                        "Service": self._service_json(s),
                        "Checks": [c.to_json(s.tags) for c in checks],
                    }
                )
            return entries, filtered

        return await self._read(request, lambda cat: cat.service_result_index(name), body)

    async def _catalog_service(self, request: Request, args: Mapping[str, str]) -> Response:
        name = args["name"]

        def body(cat: _Catalog, rules: _Token) -> tuple[object, bool]:
            services, filtered = self._selected(cat, request, name, rules)
            entries = []
            for s in services:
                node = cat.nodes[s.node]
                entries.append(
                    {
                        "ID": node.node_id,
                        "Node": node.name,
                        "Address": node.address,
                        "Datacenter": cat.name,
                        "TaggedAddresses": self._node_tagged(node),
                        "NodeMeta": dict(node.meta),
                        "ServiceKind": "",
                        "ServiceID": s.service_id,
                        "ServiceName": s.name,
                        "ServiceTags": list(s.tags),
                        "ServiceAddress": s.address,
                        "ServiceTaggedAddresses": dict(s.tagged_addresses),
                        "ServiceWeights": dict(s.weights),
                        "ServiceMeta": dict(s.meta),
                        "ServicePort": s.port,
                        "ServiceEnableTagOverride": s.enable_tag_override,
                        "ServiceProxy": {"Mode": "", "MeshGateway": {}, "Expose": {}},
                        "ServiceConnect": {},
                        "CreateIndex": s.create_index,
                        "ModifyIndex": s.modify_index,
                    }
                )
            return entries, filtered

        return await self._read(request, lambda cat: cat.service_result_index(name), body)

    async def _catalog_services(self, request: Request, args: Mapping[str, str]) -> Response:
        def body(cat: _Catalog, rules: _Token) -> tuple[object, bool]:
            out: dict[str, list[str]] = {}
            filtered = False
            for s in cat.services.values():
                if not rules.can_read_service(s.name):
                    filtered = True
                    continue
                tags = out.setdefault(s.name, [])
                tags.extend(t for t in s.tags if t not in tags)
            return {k: out[k] for k in sorted(out)}, filtered

        return await self._read(request, lambda cat: cat.services_result_index(), body)

    async def _datacenters(self, request: Request, args: Mapping[str, str]) -> Response:
        others = sorted(dc for dc in self._catalogs if dc != self.datacenter)
        return json_response([self.datacenter, *others])

    async def _status_leader(self, request: Request, args: Mapping[str, str]) -> Response:
        return json_response(f"{self.node_address}:8300" if self.leader else "")

    async def _agent_self(self, request: Request, args: Mapping[str, str]) -> Response:
        token = self._token(request)
        if isinstance(token, Response):
            return token
        if not token[1].agent:
            return self.error_response(403, "Permission denied")
        node = self._catalog(None).nodes.get(self.node_name)
        node_id = node.node_id if node else ""
        return json_response(
            {
                "Config": {
                    "Datacenter": self.datacenter,
                    "PrimaryDatacenter": self.datacenter,
                    "NodeName": self.node_name,
                    "NodeID": node_id,
                    "Revision": "fake",
                    "Server": True,
                    "Version": "1.17.0",
                    "BuildDate": "2023-11-03T00:00:00Z",
                },
                "DebugConfig": {"DNSDomain": "consul", "Datacenter": self.datacenter},
                "Coord": {"Vec": [0.0] * 8, "Error": 1.5, "Adjustment": 0.0, "Height": 1e-05},
                "Member": {
                    "Name": self.node_name,
                    "Addr": self.node_address,
                    "Port": 8301,
                    "Tags": {"dc": self.datacenter, "role": "consul", "id": node_id},
                    "Status": 1,
                },
                "Meta": {"consul-network-segment": ""},
            }
        )

    @staticmethod
    def _node_tagged(node: _Node) -> dict[str, str]:
        a = node.address
        return {"lan": a, "lan_ipv4": a, "wan": a, "wan_ipv4": a}

    def _node_json(self, cat: _Catalog, node: _Node) -> dict[str, Any]:
        return {
            "ID": node.node_id,
            "Node": node.name,
            "Address": node.address,
            "Datacenter": cat.name,
            "TaggedAddresses": self._node_tagged(node),
            "Meta": dict(node.meta),
            "CreateIndex": node.create_index,
            "ModifyIndex": node.modify_index,
        }

    @staticmethod
    def _service_json(s: _Service) -> dict[str, Any]:
        return {
            "Kind": "",
            "ID": s.service_id,
            "Service": s.name,
            "Tags": list(s.tags),
            "Address": s.address,
            "TaggedAddresses": dict(s.tagged_addresses),
            "Meta": dict(s.meta),
            "Port": s.port,
            "Weights": dict(s.weights),
            "EnableTagOverride": s.enable_tag_override,
            "Proxy": {"Mode": "", "MeshGateway": {}, "Expose": {}},
            "Connect": {},
            "CreateIndex": s.create_index,
            "ModifyIndex": s.modify_index,
        }

    def error_response(
        self, status: int, message: str | None = None, headers: Headers = ()
    ) -> Response:
        """Consul answers errors in plain text."""
        return text_response(message if message is not None else "Internal error", status, headers)

    # -- command line seeding -------------------------------------------------

    def load(self, data: Mapping[str, Any]) -> None:
        """Seed from a mapping (the ``--load`` file)::

        datacenter: dc1            # optional, must match the constructor's
        datacenters: [dc2]         # other known datacenters
        services:
          - {name: web, address: 10.0.0.1, port: 8080, tags: [prod],
             id: web-1, node: node-b, node_address: 10.0.0.10,
             checks: {"service:web-1": passing}, dc: dc1}
        """
        for dc in data.get("datacenters", []):
            self.add_datacenter(str(dc))
        for svc in data.get("services", []):
            self.register(
                str(svc["name"]),
                str(svc.get("address", "")),
                int(svc.get("port", 0)),
                service_id=svc.get("id"),
                tags=[str(t) for t in svc.get("tags", [])],
                checks=svc.get("checks"),
                meta=svc.get("meta"),
                node=svc.get("node"),
                node_address=svc.get("node_address"),
                dc=svc.get("dc"),
            )


__all__ = ["DEFAULT_WAIT", "JITTER_FRACTION", "MAX_WAIT", "FakeConsul"]
