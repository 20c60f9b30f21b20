"""FakeKubernetes: the kube-apiserver's list/get/watch API for discovery resources.

Resources: core/v1 ``endpoints``, ``services``, ``pods``, ``nodes`` and
discovery.k8s.io/v1 ``endpointslices``, at their real paths (namespaced,
all-namespaces, and the deprecated ``/api/v1/watch/...`` forms).

Model: one cluster-wide revision counter (etcd's); every write that changes an
object bumps it and stamps the object's ``metadata.resourceVersion``; a list's
``resourceVersion`` is the revision it was taken at.  Each resource keeps a bounded
history of changes (:attr:`FakeKubernetes.history_events` /
:attr:`~FakeKubernetes.history_seconds`); a watch or continue token from before the
retained window is "too old" (410).  Watches are chunked streams of one JSON event
per line, with the apiserver's semantics: synthetic ``ADDED`` events without a
resourceVersion, replay of later changes with one, ``DELETED`` with the last state,
objects leaving a selector reported as ``DELETED``, bookmarks only when allowed,
``timeoutSeconds`` ending the stream cleanly.

Connection modes (``mode=``): ``"proxy"`` (``kubectl proxy``: no auth, ``Host`` must be
localhost/127.0.0.1/[::1]), ``"in-cluster"`` (``Authorization: Bearer <token>``), or
``"open"``.

Scripting (synchronous)::

    k8s = FakeKubernetes()
    await nursery.start(k8s.serve)
    k8s.set_endpoints("prod", "web", ["10.0.0.1", "10.0.0.2"], ports={"http": 8080})
    k8s.set_endpoint_slice("prod", "web-abc", "web", [slice_endpoint("10.0.0.1")],
                           ports={"http": 8080})
    k8s.delete("endpoints", "prod", "web")
"""

from __future__ import annotations

import base64
import copy
import json
import math
import random
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import attrs
import trio

from ._http import (
    FakeServer,
    Headers,
    Notifier,
    Request,
    Response,
    Stream,
    StreamResponse,
    json_response,
    text_response,
)
from ._selectors import (
    FieldRequirement,
    Requirement,
    parse_field_selector,
    parse_label_selector,
)
from ._util import now

Obj = dict[str, Any]
Mode = Literal["proxy", "in-cluster", "open"]
Chunking = Literal["event", "split", "batch"]

_BASIC_FIELDS = frozenset({"metadata.name", "metadata.namespace"})


@attrs.frozen
class ResourceType:
    """A served resource: its plural name, kind, group/version and scope."""

    resource: str
    kind: str
    group: str
    namespaced: bool
    fields: frozenset[str] = _BASIC_FIELDS

    @property
    def api_version(self) -> str:
        return f"{self.group}/v1" if self.group else "v1"

    @property
    def qualified(self) -> str:
        """``endpoints`` or ``endpointslices.discovery.k8s.io`` (as in error messages)."""
        return f"{self.resource}.{self.group}" if self.group else self.resource


RESOURCES: dict[str, ResourceType] = {
    r.resource: r
    for r in (
        ResourceType("endpoints", "Endpoints", "", True),
        ResourceType(
            "services", "Service", "", True, _BASIC_FIELDS | {"spec.clusterIP", "spec.type"}
        ),
        ResourceType(
            "pods",
            "Pod",
            "",
            True,
            _BASIC_FIELDS
            | {
                "spec.nodeName",
                "spec.hostNetwork",
                "status.phase",
                "status.podIP",
                "spec.serviceAccountName",
            },
        ),
        ResourceType(
            "nodes", "Node", "", False, frozenset({"metadata.name", "spec.unschedulable"})
        ),
        ResourceType(
            "endpointslices",
            "EndpointSlice",
            "discovery.k8s.io",
            True,
            _BASIC_FIELDS | {"addressType"},
        ),
    )
}

#: The label tying an EndpointSlice to its Service.
SERVICE_NAME_LABEL = "kubernetes.io/service-name"

ENDPOINTS_WARNING = (
    '299 - "v1 Endpoints is deprecated in v1.33+; use discovery.k8s.io/v1 EndpointSlice"'
)

_CONTINUE_TOO_OLD = (
    "The provided continue parameter is too old to display a consistent list result. "
    "You can start a new list without the continue parameter."
)

_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def status_object(
    code: int, reason: str, message: str, details: Mapping[str, Any] | None = None
) -> Obj:
    """A ``Status`` error object, as in every non-2xx body and watch ``ERROR`` event."""
    out: Obj = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
    }
    if details is not None:
        out["details"] = dict(details)
    out["code"] = code
    return out


def slice_endpoint(
    address: str,
    *,
    ready: bool | None = True,
    serving: bool | None = True,
    terminating: bool | None = False,
    node_name: str | None = None,
    zone: str | None = None,
    hostname: str | None = None,
    target_ref: Mapping[str, Any] | None = None,
) -> Obj:
    """One entry of an EndpointSlice's ``endpoints``; a condition that is None is left
    out of the JSON (nil: "unknown")."""
    conditions = {
        k: v
        for k, v in (("ready", ready), ("serving", serving), ("terminating", terminating))
        if v is not None
    }
    out: Obj = {"addresses": [address], "conditions": conditions}
    if hostname is not None:
        out["hostname"] = hostname
    if target_ref is not None:
        out["targetRef"] = dict(target_ref)
    if node_name is not None:
        out["nodeName"] = node_name
    if zone is not None:
        out["zone"] = zone
    return out


PortsSpec = Mapping[str, int | None] | Sequence[Mapping[str, Any]] | None


def _ports(ports: PortsSpec) -> list[Obj]:
    """``{"http": 8080}`` (name "" for an unnamed port) or raw port dicts -> port list."""
    if ports is None:
        return []
    if isinstance(ports, Mapping):
        out = []
        for name, number in ports.items():
            p: Obj = {"name": name} if name else {}
            if number is not None:
                p["port"] = number
            p["protocol"] = "TCP"
            out.append(p)
        return out
    return [dict(p) for p in ports]


def _address(a: str | Mapping[str, Any]) -> Obj:
    return {"ip": a} if isinstance(a, str) else dict(a)


def _timestamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@attrs.frozen
class _Change:
    rv: int
    key: tuple[str, str]
    old: Obj | None
    new: Obj | None
    at: float | None


class _Watcher:
    """One open watch: what it selects and the events waiting to be written."""

    def __init__(
        self,
        rtype: ResourceType,
        namespace: str | None,
        labels: list[Requirement],
        fields: list[FieldRequirement],
        bookmarks: bool,
    ) -> None:
        self.rtype = rtype
        self.namespace = namespace
        self.labels = labels
        self.fields = fields
        self.bookmarks = bookmarks
        self.pending: list[Obj] = []
        self.command: Literal["end", "break", "partial"] | None = None
        self._wake = trio.Event()

    def matches(self, obj: Obj) -> bool:
        meta = obj.get("metadata") or {}
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        labels = meta.get("labels") or {}
        return all(r.matches(labels) for r in self.labels) and all(
            f.matches(obj) for f in self.fields
        )

    def event_for(self, change: _Change) -> Obj | None:
        """The apiserver's conversion of a change for this watch's filter."""
        new_ok = change.new is not None and self.matches(change.new)
        old_ok = change.old is not None and self.matches(change.old)
        if new_ok:
            return {"type": "MODIFIED" if old_ok else "ADDED", "object": copy.deepcopy(change.new)}
        if old_ok:
            assert change.old is not None
            gone = copy.deepcopy(change.old)
            gone["metadata"]["resourceVersion"] = str(change.rv)
            return {"type": "DELETED", "object": gone}
        return None

    def offer(self, change: _Change) -> None:
        event = self.event_for(change)
        if event is not None:
            self.push(event)

    def push(self, event: Obj) -> None:
        self.pending.append(event)
        self._wake.set()

    def stop(self, command: Literal["end", "break", "partial"]) -> None:
        self.command = command
        self._wake.set()

    def take(self) -> list[Obj]:
        out, self.pending = self.pending, []
        self._wake = trio.Event()
        return out

    async def wait(self) -> None:
        if not self.pending and self.command is None:
            await self._wake.wait()


class FakeKubernetes(FakeServer):
    """A kube-apiserver (or a ``kubectl proxy`` in front of one) on a loopback port."""

    kind = "kubernetes"

    def __init__(
        self,
        *,
        mode: Mode = "proxy",
        token: str = "fake-service-account-token",
        version: tuple[int, int] = (1, 33),
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.mode: Mode = mode
        #: Bearer tokens accepted in ``in-cluster`` mode.
        self.tokens: set[str] = {token}
        #: The identity named in 403 messages.
        self.user = "system:serviceaccount:default:linkpy"
        self.version = version
        #: Retained changes per resource (None: unbounded).
        self.history_events: int | None = 1000
        #: Age limit of retained changes in seconds of trio time (None: no limit).
        self.history_seconds: float | None = None
        #: Answer a watch from a too-old resourceVersion with HTTP 410 instead of
        #: 200 + an ERROR event.
        self.expired_watch_as_http_error = False
        #: ``reason`` of "too old" errors (``Expired``; some versions say ``Gone``).
        self.expired_reason = "Expired"
        #: Range of the server-chosen watch timeout when ``timeoutSeconds`` is absent
        #: (kube-apiserver: random between --min-request-timeout and twice that).
        self.watch_timeout: tuple[float, float] | None = (1800.0, 3600.0)
        #: Seconds between periodic bookmarks (to watches that allow them).
        self.bookmark_interval = 60.0
        #: How watch events map to HTTP chunks: one per event, each event split in
        #: two chunks, or all events ready at once in one chunk.
        self.watch_chunking: Chunking = "event"
        self._random = random.Random(seed)
        self._revision = 0
        self._objects: dict[str, dict[tuple[str, str], Obj]] = {r: {} for r in RESOURCES}
        self._history: dict[str, list[_Change]] = {r: [] for r in RESOURCES}
        self._floor: dict[str, int] = dict.fromkeys(RESOURCES, 0)
        self._watchers: set[_Watcher] = set()
        self._denied: set[tuple[str | None, str | None, str | None]] = set()
        self._changed = Notifier()
        self._add_routes()

    # -- routes ---------------------------------------------------------------

    def _add_routes(self) -> None:
        r = self.router
        r.add("GET", "/version", self._version)
        r.add("GET", "/healthz", self._healthz)
        for prefix, group in (("/api/v1", ""), ("/apis/discovery.k8s.io/v1", "discovery.k8s.io")):

            def h(kind: str, group: str = group) -> Any:
                async def handler(request: Request, args: Mapping[str, str]) -> Any:
                    return await self._resource_request(request, args, group, kind)

                return handler

            r.add("GET", prefix + "/watch/namespaces/{ns}/{resource}/{name}", h("watch"))
            r.add("GET", prefix + "/watch/namespaces/{ns}/{resource}", h("watch"))
            r.add("GET", prefix + "/watch/{resource}/{name}", h("watch"))
            r.add("GET", prefix + "/watch/{resource}", h("watch"))
            r.add("GET", prefix + "/namespaces/{ns}/{resource}/{name}", h("get"))
            r.add("GET", prefix + "/namespaces/{ns}/{resource}", h("collection"))
            r.add("GET", prefix + "/{resource}/{name}", h("get"))
            r.add("GET", prefix + "/{resource}", h("collection"))

    # -- scripting: objects ---------------------------------------------------

    @property
    def revision(self) -> int:
        """The current cluster-wide revision (the latest resourceVersion)."""
        return self._revision

    def put(self, resource: str, obj: Mapping[str, Any]) -> Obj:
        """Create or replace an object, verbatim apart from server-owned metadata.

        ``metadata.name`` (and ``metadata.namespace`` for namespaced resources) say
        where; ``kind``/``apiVersion``/``uid``/``creationTimestamp``/
        ``resourceVersion`` are filled in.  Anything else is stored as given, so a
        test can serve odd payloads (``"subsets": None``).  A write that changes
        nothing is a no-op (no new revision, no event), as in the apiserver.
        Returns the stored object.
        """
        rtype = RESOURCES[resource]
        new = copy.deepcopy(dict(obj))
        meta = new.setdefault("metadata", {})
        name = meta["name"]
        ns = meta.get("namespace", "") if rtype.namespaced else ""
        if rtype.namespaced and not ns:
            raise ValueError(f"{resource} {name!r} needs metadata.namespace")
        if not rtype.namespaced:
            meta.pop("namespace", None)
        new = {"kind": rtype.kind, "apiVersion": rtype.api_version, **new}
        key = (ns, name)
        old = self._objects[resource].get(key)
        if old is not None:
            meta["uid"] = old["metadata"]["uid"]
            meta["creationTimestamp"] = old["metadata"]["creationTimestamp"]
            meta["resourceVersion"] = old["metadata"]["resourceVersion"]
            if new == old:
                return copy.deepcopy(old)
        else:
            meta.setdefault("uid", str(uuid.UUID(int=self._random.getrandbits(128), version=4)))
            meta.setdefault("creationTimestamp", _timestamp())
        self._commit(rtype, key, new)
        return copy.deepcopy(new)

    def delete(self, resource: str, namespace: str | None, name: str) -> None:
        """Delete an object (KeyError if absent); watches see ``DELETED``."""
        rtype = RESOURCES[resource]
        key = (_ns(rtype, namespace), name)
        if key not in self._objects[resource]:
            raise KeyError(f"{resource} {namespace}/{name}")
        self._commit(rtype, key, None)

    def get(self, resource: str, namespace: str | None, name: str) -> Obj | None:
        """A copy of the stored object, or None."""
        rtype = RESOURCES[resource]
        obj = self._objects[resource].get((_ns(rtype, namespace), name))
        return copy.deepcopy(obj) if obj is not None else None

    def set_labels(
        self, resource: str, namespace: str | None, name: str, labels: Mapping[str, str]
    ) -> Obj:
        """Replace an object's labels (an object may thus leave a watch's selector)."""
        obj = self.get(resource, namespace, name)
        if obj is None:
            raise KeyError(f"{resource} {namespace}/{name}")
        obj["metadata"]["labels"] = dict(labels)
        if not labels:
            del obj["metadata"]["labels"]
        return self.put(resource, obj)

    def set_endpoints(
        self,
        namespace: str,
        name: str,
        addresses: Iterable[str | Mapping[str, Any]] = (),
        *,
        ports: PortsSpec = None,
        not_ready: Iterable[str | Mapping[str, Any]] = (),
        subsets: Sequence[Mapping[str, Any]] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> Obj:
        """Create or replace an Endpoints object with one subset.

        ``addresses`` (ready) and ``not_ready`` are IPs or full address dicts
        (``{"ip", "nodeName", "hostname", "targetRef"}``); ``ports`` maps port names
        to numbers (``{"http": 8080}``; name "" for an unnamed port) or is a list of
        port dicts.  ``subsets`` replaces all that verbatim.  An object without
        addresses has no ``subsets`` key, as the apiserver writes it.
        """
        if subsets is None:
            subset: Obj = {}
            ready = [_address(a) for a in addresses]
            unready = [_address(a) for a in not_ready]
            if ready:
                subset["addresses"] = ready
            if unready:
                subset["notReadyAddresses"] = unready
            if subset:
                subset["ports"] = _ports(ports)
            subsets = [subset] if subset else []
        obj: Obj = {"metadata": self._meta(namespace, name, labels)}
        if subsets:
            obj["subsets"] = [dict(s) for s in subsets]
        return self.put("endpoints", obj)

    def set_endpoint_slice(
        self,
        namespace: str,
        name: str,
        service: str,
        endpoints: Iterable[Mapping[str, Any]] = (),
        *,
        ports: PortsSpec = None,
        address_type: Literal["IPv4", "IPv6", "FQDN"] = "IPv4",
        labels: Mapping[str, str] | None = None,
    ) -> Obj:
        """Create or replace an EndpointSlice of ``service`` (see :func:`slice_endpoint`).

        ``ports`` as for :meth:`set_endpoints`; a port number of None means
        "unrestricted" and is left out of the JSON.
        """
        all_labels = {
            SERVICE_NAME_LABEL: service,
            "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            **(labels or {}),
        }
        obj: Obj = {
            "metadata": {
                **self._meta(namespace, name, all_labels),
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Service", "name": service, "controller": True}
                ],
            },
            "addressType": address_type,
            "endpoints": [dict(e) for e in endpoints],
            "ports": _ports(ports),
        }
        return self.put("endpointslices", obj)

    def set_service(
        self,
        namespace: str,
        name: str,
        ports: Sequence[Mapping[str, Any]],
        *,
        type: Literal["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"] = "ClusterIP",
        cluster_ip: str = "10.96.0.10",
        selector: Mapping[str, str] | None = None,
        ingress: Sequence[Mapping[str, str]] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> Obj:
        """Create or replace a Service.

        ``ports`` are port dicts (``{"name": "http", "port": 80, "targetPort": 8080}``;
        ``targetPort`` may be an int or a port name, and defaults to ``port``);
        ``ingress`` entries are ``{"ip": ...}`` or ``{"hostname": ...}`` (None leaves
        ``status.loadBalancer`` empty, as before the cloud provisions one).
        """
        spec_ports = []
        for p in ports:
            q = {"protocol": "TCP", **p}
            q.setdefault("targetPort", q["port"])
            spec_ports.append(q)
        spec: Obj = {"type": type, "clusterIP": cluster_ip, "ports": spec_ports}
        if selector is not None:
            spec["selector"] = dict(selector)
        status: Obj = {"loadBalancer": {}}
        if ingress:
            status["loadBalancer"]["ingress"] = [dict(i) for i in ingress]
        obj = {"metadata": self._meta(namespace, name, labels), "spec": spec, "status": status}
        return self.put("services", obj)

    def set_pod(
        self,
        namespace: str,
        name: str,
        ip: str,
        *,
        node_name: str,
        host_ip: str = "10.0.0.1",
        phase: str = "Running",
        ready: bool = True,
        host_network: bool = False,
        labels: Mapping[str, str] | None = None,
    ) -> Obj:
        """Create or replace a Pod (the fields node-locality logic reads)."""
        obj = {
            "metadata": self._meta(namespace, name, labels),
            "spec": {"nodeName": node_name, "hostNetwork": host_network, "containers": []},
            "status": {
                "phase": phase,
                "hostIP": host_ip,
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            },
        }
        return self.put("pods", obj)

    def set_node(
        self,
        name: str,
        *,
        internal_ip: str,
        external_ip: str | None = None,
        hostname: str | None = None,
        pod_cidr: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> Obj:
        """Create or replace a Node."""
        addresses = [{"type": "InternalIP", "address": internal_ip}]
        if external_ip is not None:
            addresses.append({"type": "ExternalIP", "address": external_ip})
        addresses.append({"type": "Hostname", "address": hostname or name})
        spec: Obj = {}
        if pod_cidr is not None:
            spec = {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]}
        meta: Obj = {"name": name}
        if labels:
            meta["labels"] = dict(labels)
        return self.put(
            "nodes", {"metadata": meta, "spec": spec, "status": {"addresses": addresses}}
        )

    @staticmethod
    def _meta(namespace: str, name: str, labels: Mapping[str, str] | None) -> Obj:
        meta: Obj = {"name": name, "namespace": namespace}
        if labels:
            meta["labels"] = dict(labels)
        return meta

    # -- scripting: history, watches, restarts --------------------------------

    def compact(self) -> None:
        """Forget all history: any older resourceVersion or continue token is now too old."""
        for resource in RESOURCES:
            self._history[resource].clear()
            self._floor[resource] = self._revision

    def restart(self) -> None:
        """An apiserver restart: every connection drops and the watch history is lost."""
        self.drop_connections()
        self.compact()

    def end_watches(self, resource: str | None = None) -> None:
        """End open watch streams cleanly (terminal chunk), as a server timeout does."""
        self._stop_watches(resource, "end")

    def break_watches(self, resource: str | None = None, *, partial: bool = False) -> None:
        """Reset open watch streams (no terminal chunk); ``partial`` first writes half an event."""
        self._stop_watches(resource, "partial" if partial else "break")

    def watch_error(
        self,
        code: int = 410,
        reason: str | None = None,
        message: str | None = None,
        *,
        resource: str | None = None,
        end: bool = True,
    ) -> None:
        """Send an ``ERROR`` event (a Status) to open watches, then end them if ``end``."""
        reason = reason or (self.expired_reason if code == 410 else _REASONS.get(code, "Unknown"))
        message = message or (
            f"too old resource version: 1 ({self._revision})" if code == 410 else reason
        )
        for w in list(self._watchers):
            if resource is None or w.rtype.resource == resource:
                w.push({"type": "ERROR", "object": status_object(code, reason, message)})
                if end:
                    w.stop("end")

    def send_bookmarks(self) -> None:
        """Send a ``BOOKMARK`` now to every open watch that allowed bookmarks."""
        for w in list(self._watchers):
            if w.bookmarks:
                w.push(self._bookmark(w.rtype))

    @property
    def open_watches(self) -> int:
        return len(self._watchers)

    def _stop_watches(
        self, resource: str | None, command: Literal["end", "break", "partial"]
    ) -> None:
        for w in list(self._watchers):
            if resource is None or w.rtype.resource == resource:
                w.stop(command)

    # -- scripting: auth ------------------------------------------------------

    def set_token(self, token: str, *, keep_old: bool = False) -> None:
        """Rotate the accepted bearer token (``in-cluster`` mode)."""
        if not keep_old:
            self.tokens.clear()
        self.tokens.add(token)

    def deny(
        self, resource: str | None = None, verb: str | None = None, namespace: str | None = None
    ) -> None:
        """RBAC: forbid ``verb`` (get/list/watch; None: all) on ``resource`` (None: all)
        in ``namespace`` (None: all) -- 403 Forbidden."""
        self._denied.add((resource, verb, namespace))

    def allow_all(self) -> None:
        """Remove every :meth:`deny` rule."""
        self._denied.clear()

    # -- store internals ------------------------------------------------------

    def _commit(self, rtype: ResourceType, key: tuple[str, str], new: Obj | None) -> None:
        store = self._objects[rtype.resource]
        old = store.get(key)
        self._revision += 1
        rv = self._revision
        if new is None:
            del store[key]
        else:
            new["metadata"]["resourceVersion"] = str(rv)
            store[key] = new
        change = _Change(rv, key, old, new, now())
        self._history[rtype.resource].append(change)
        self._trim(rtype.resource)
        for w in list(self._watchers):
            if w.rtype is rtype:
                w.offer(change)
        self._changed.notify()

    def _trim(self, resource: str) -> None:
        history = self._history[resource]
        drop = 0
        if self.history_events is not None and len(history) > self.history_events:
            drop = len(history) - self.history_events
        t = now()
        if self.history_seconds is not None and t is not None:
            while (
                drop < len(history)
                and (at := history[drop].at) is not None
                and at < t - self.history_seconds
            ):
                drop += 1
        if drop:
            self._floor[resource] = max(self._floor[resource], history[drop - 1].rv)
            del history[:drop]

    def _too_old(self, resource: str, rv: int) -> bool:
        self._trim(resource)
        return rv < self._floor[resource]

    def _state_at(self, resource: str, rv: int) -> dict[tuple[str, str], Obj]:
        """The objects as they were at revision ``rv`` (which must be retained)."""
        state = dict(self._objects[resource])
        for change in reversed(self._history[resource]):
            if change.rv <= rv:
                break
            if change.old is None:
                state.pop(change.key, None)
            else:
                state[change.key] = change.old
        return state

    def _bookmark(self, rtype: ResourceType, initial_end: bool = False) -> Obj:
        meta: Obj = {"resourceVersion": str(self._revision)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        return {
            "type": "BOOKMARK",
            "object": {"kind": rtype.kind, "apiVersion": rtype.api_version, "metadata": meta},
        }

    # -- HTTP -----------------------------------------------------------------

    def response_headers(self) -> list[tuple[str, str]]:
        return [
            ("Audit-Id", str(uuid.UUID(int=self._random.getrandbits(128), version=4))),
            ("Cache-Control", "no-cache, private"),
        ]

    def error_response(
        self, status: int, message: str | None = None, headers: Headers = ()
    ) -> Response:
        """A ``Status`` body; 429 carries ``Retry-After`` as API priority and fairness does."""
        reason = _REASONS.get(status, "Unknown")
        details: Obj | None = None
        extra = list(headers)
        if status == 429:
            message = message or "Too many requests, please try again later."
            if not any(k.lower() == "retry-after" for k, _ in extra):
                extra.append(("Retry-After", "1"))
            details = {"retryAfterSeconds": 1}
        elif status >= 500 and message is None:
            message = "Internal error occurred: injected failure"
        body = status_object(status, reason, message or reason, details)
        return json_response(body, status, extra)

    def not_found(self, request: Request) -> Response:
        return json_response(
            status_object(404, "NotFound", "the server could not find the requested resource", {}),
            404,
        )

    def check_request(self, request: Request) -> Response | None:
        if self.mode == "proxy":
            if not re.fullmatch(
                r"localhost|127\.0\.0\.1|\[::1\]", _go_host(request.header("host") or "")
            ):
                return text_response("Forbidden\n", 403)
        elif self.mode == "in-cluster":
            auth = request.header("authorization") or ""
            scheme, _, token = auth.partition(" ")
            if scheme.lower() != "bearer" or token.strip() not in self.tokens:
                return json_response(status_object(401, "Unauthorized", "Unauthorized"), 401)
        return None

    def _forbidden(
        self, rtype: ResourceType, verb: str, namespace: str | None, name: str | None
    ) -> Response | None:
        for resource, v, ns in self._denied:
            if (
                (resource is None or resource == rtype.resource)
                and (v is None or v == verb)
                and (ns is None or ns == namespace)
            ):
                subject = f'{rtype.qualified} "{name}"' if name else rtype.qualified
                scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
                message = (
                    f'{subject} is forbidden: User "{self.user}" cannot {verb} resource '
                    f'"{rtype.resource}" in API group "{rtype.group}" {scope}'
                )
                details: Obj = {"kind": rtype.resource}
                if name:
                    details = {"name": name, **details}
                if rtype.group:
                    details["group"] = rtype.group
                return json_response(status_object(403, "Forbidden", message, details), 403)
        return None

    def _bad_request(self, message: str) -> Response:
        return json_response(status_object(400, "BadRequest", message), 400)

    def _warnings(self, rtype: ResourceType) -> list[tuple[str, str]]:
        if rtype.resource == "endpoints" and self.version >= (1, 33):
            return [("Warning", ENDPOINTS_WARNING)]
        return []

    async def _version(self, request: Request, args: Mapping[str, str]) -> Response:
        major, minor = self.version
        return json_response(
            {
                "major": str(major),
                "minor": str(minor),
                "gitVersion": f"v{major}.{minor}.0",
                "platform": "linux/amd64",
            }
        )

    async def _healthz(self, request: Request, args: Mapping[str, str]) -> Response:
        return text_response("ok")

    async def _resource_request(
        self, request: Request, args: Mapping[str, str], group: str, kind: str
    ) -> Response | StreamResponse:
        rtype = RESOURCES.get(args["resource"])
        ns = args.get("ns")
        name = args.get("name")
        if rtype is None or rtype.group != group or (ns is not None and not rtype.namespaced):
            return self.not_found(request)
        if kind == "get":
            if rtype.namespaced and ns is None:
                return self.not_found(request)
            assert name is not None
            return self._get(rtype, ns, name)
        watch = kind == "watch" or request.param("watch") in ("true", "1")
        try:
            labels = parse_label_selector(request.param("labelSelector") or "")
            fields = parse_field_selector(request.param("fieldSelector") or "", rtype.fields)
        except ValueError as exc:
            return self._bad_request(str(exc))
        if name is not None:
            fields.append(FieldRequirement("metadata.name", True, name))
        if watch:
            return await self._watch(request, rtype, ns, labels, fields)
        return self._list(request, rtype, ns, labels, fields)

    def _get(self, rtype: ResourceType, ns: str | None, name: str) -> Response:
        denied = self._forbidden(rtype, "get", ns, name)
        if denied is not None:
            return denied
        obj = self._objects[rtype.resource].get((ns or "", name))
        if obj is None:
            details: Obj = {"name": name, "kind": rtype.resource}
            if rtype.group:
                details["group"] = rtype.group
            return json_response(
                status_object(404, "NotFound", f'{rtype.qualified} "{name}" not found', details),
                404,
            )
        return json_response(obj, headers=self._warnings(rtype))

    def _list(
        self,
        request: Request,
        rtype: ResourceType,
        ns: str | None,
        labels: list[Requirement],
        fields: list[FieldRequirement],
    ) -> Response:
        denied = self._forbidden(rtype, "list", ns, None)
        if denied is not None:
            return denied
        limit = 0
        if (text := request.param("limit")) is not None and text != "":
            if not text.isdigit():
                return self._bad_request(f"invalid limit {text!r}")
            limit = int(text)
        start: tuple[str, str] | None = None
        rv_param = request.param("resourceVersion") or ""
        exact = request.param("resourceVersionMatch") == "Exact"
        if cont := request.param("continue"):
            try:
                list_rv, start = _decode_continue(cont)
            except ValueError as exc:
                return self._bad_request(f"continue key is not valid: {exc}")
            if self._too_old(rtype.resource, list_rv):
                return json_response(
                    status_object(410, self.expired_reason, _CONTINUE_TOO_OLD), 410
                )
            objects = self._state_at(rtype.resource, list_rv)
        elif rv_param not in ("", "0") and (exact or limit):
            if not rv_param.isdigit():
                return self._bad_request(f"invalid resource version {rv_param!r}")
            list_rv = int(rv_param)
            if self._too_old(rtype.resource, list_rv):
                message = f"too old resource version: {list_rv} ({self._floor[rtype.resource]})"
                return json_response(status_object(410, self.expired_reason, message), 410)
            if list_rv > self._revision:
                return self._too_large(list_rv)
            objects = self._state_at(rtype.resource, list_rv)
        else:
            list_rv = self._revision
            objects = self._objects[rtype.resource]
        watcher = _Watcher(rtype, ns, labels, fields, False)
        selected = sorted(
            (k, o)
            for k, o in objects.items()
            if (start is None or k > start) and watcher.matches(o)
        )
        meta: Obj = {"resourceVersion": str(list_rv)}
        if limit and len(selected) > limit:
            meta["continue"] = _encode_continue(list_rv, selected[limit - 1][0])
            meta["remainingItemCount"] = len(selected) - limit
            selected = selected[:limit]
        items = []
        for _, o in selected:
            item = copy.deepcopy(o)
            item.pop("kind", None)
            item.pop("apiVersion", None)
            items.append(item)
        body = {
            "kind": f"{rtype.kind}List",
            "apiVersion": rtype.api_version,
            "metadata": meta,
            "items": items,
        }
        return json_response(body, headers=self._warnings(rtype))

    def _too_large(self, rv: int) -> Response:
        message = f"Too large resource version: {rv}, current: {self._revision}"
        body = status_object(504, "Timeout", message, {"retryAfterSeconds": 1})
        return json_response(body, 504)

    async def _watch(
        self,
        request: Request,
        rtype: ResourceType,
        ns: str | None,
        labels: list[Requirement],
        fields: list[FieldRequirement],
    ) -> Response | StreamResponse:
        denied = self._forbidden(rtype, "watch", ns, None)
        if denied is not None:
            return denied
        rv_param = request.param("resourceVersion") or ""
        bookmarks = request.param("allowWatchBookmarks") == "true"
        send_initial = request.param("sendInitialEvents") == "true"
        timeout = math.inf
        if (text := request.param("timeoutSeconds")) is not None and text != "":
            if not text.isdigit():
                return self._bad_request(f"invalid timeoutSeconds {text!r}")
            timeout = float(text)
        elif self.watch_timeout is not None:
            timeout = self._random.uniform(*self.watch_timeout)
        since: int | None = None
        if rv_param not in ("", "0") and not send_initial:
            if not rv_param.isdigit():
                return self._bad_request(f"invalid resource version {rv_param!r}")
            since = int(rv_param)
            if since > self._revision and not await self._changed.wait_for(
                lambda: self._revision >= since, 3.0
            ):
                return self._too_large(since)
            if self.expired_watch_as_http_error and self._too_old(rtype.resource, since):
                return json_response(self._expired(rtype, since), 410)
        watcher = _Watcher(rtype, ns, labels, fields, bookmarks)

        async def produce(out: Stream) -> None:
            # Set up synchronously: nothing may change between reading the state
            # and registering the watcher.
            if since is None:
                for key in sorted(self._objects[rtype.resource]):
                    obj = self._objects[rtype.resource][key]
                    if watcher.matches(obj):
                        watcher.push({"type": "ADDED", "object": copy.deepcopy(obj)})
                if send_initial and bookmarks:
                    watcher.push(self._bookmark(rtype, initial_end=True))
            elif self._too_old(rtype.resource, since):
                await self._emit(out, [{"type": "ERROR", "object": self._expired(rtype, since)}])
                return
            else:
                for change in self._history[rtype.resource]:
                    if change.rv > since:
                        watcher.offer(change)
            self._watchers.add(watcher)
            try:
                with trio.move_on_after(timeout):
                    await self._stream_watch(out, watcher)
            finally:
                self._watchers.discard(watcher)

        headers = [("Content-Type", "application/json"), *self._warnings(rtype)]
        return StreamResponse(200, produce, headers)

    async def _stream_watch(self, out: Stream, watcher: _Watcher) -> None:
        next_bookmark = trio.current_time() + self.bookmark_interval
        while True:
            batch = watcher.take()
            if batch:
                await self._emit(out, batch)
                continue  # more may have arrived while writing: send them first
            if watcher.command == "end":
                return
            if watcher.command == "break":
                out.drop()
            if watcher.command == "partial":
                await out.send(b'{"type":"MODIFIED","object":{"kind":"')
                out.drop()
            if watcher.bookmarks:
                with trio.move_on_at(next_bookmark) as scope:
                    await watcher.wait()
                if scope.cancelled_caught:
                    watcher.push(self._bookmark(watcher.rtype))
                    next_bookmark += self.bookmark_interval
            else:
                await watcher.wait()

    def _expired(self, rtype: ResourceType, since: int) -> Obj:
        message = f"too old resource version: {since} ({self._floor[rtype.resource]})"
        return status_object(410, self.expired_reason, message)

    async def _emit(self, out: Stream, events: list[Obj]) -> None:
        lines = [json.dumps(e, separators=(",", ":")).encode() + b"\n" for e in events]
        if self.watch_chunking == "batch":
            await out.send(b"".join(lines))
            return
        for line in lines:
            if self.watch_chunking == "split":
                mid = len(line) // 2
                await out.send(line[:mid])
                await out.send(line[mid:])
            else:
                await out.send(line)

    # -- command line seeding -------------------------------------------------

    def load(self, data: Mapping[str, Any]) -> None:
        """Seed from a mapping (the ``--load`` file)::

        endpoints:
          - {namespace: prod, name: web, addresses: [10.0.0.1], ports: {http: 8080},
             not_ready: [10.0.0.9]}
        endpointslices:
          - {namespace: prod, name: web-1, service: web, ports: {http: 8080},
             endpoints: [{address: 10.0.0.1, ready: true, node_name: n1}]}
        services:
          - {namespace: prod, name: web, ports: [{name: http, port: 80, targetPort: 8080}]}
        objects:                # raw objects, by resource
          pods: [{metadata: {namespace: prod, name: web-0}, status: {podIP: 10.0.0.1}}]
        """
        for e in data.get("endpoints", []):
            self.set_endpoints(
                e["namespace"],
                e["name"],
                e.get("addresses", []),
                ports=e.get("ports"),
                not_ready=e.get("not_ready", []),
                labels=e.get("labels"),
            )
        for s in data.get("endpointslices", []):
            eps = [
                slice_endpoint(str(ep.pop("address")), **ep)
                for ep in map(dict, s.get("endpoints", []))
            ]
            self.set_endpoint_slice(
                s["namespace"],
                s["name"],
                s["service"],
                eps,
                ports=s.get("ports"),
                address_type=s.get("address_type", "IPv4"),
            )
        for svc in data.get("services", []):
            self.set_service(
                svc["namespace"],
                svc["name"],
                svc.get("ports", []),
                type=svc.get("type", "ClusterIP"),
                ingress=svc.get("ingress"),
            )
        for resource, objects in (data.get("objects") or {}).items():
            for obj in objects:
                self.put(resource, obj)


def _ns(rtype: ResourceType, namespace: str | None) -> str:
    return (namespace or "") if rtype.namespaced else ""


def _go_host(header: str) -> str:
    """The host part of a Host header, as kubectl proxy extracts it (Go's SplitHostPort:
    ``[::1]:8001`` -> ``::1``; without a port the header is kept whole)."""
    m = re.fullmatch(r"\[([^\]]*)\]:(\d*)", header)
    if m:
        return m.group(1)
    if header.count(":") == 1:
        return header.split(":")[0]
    return header


def _encode_continue(rv: int, start: tuple[str, str]) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": f"{start[0]}/{start[1]}\x00"})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[int, tuple[str, str]]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        ns, _, name = str(data["start"]).rstrip("\x00").partition("/")
        return int(data["rv"]), (ns, name)
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(str(exc)) from exc


__all__ = [
    "ENDPOINTS_WARNING",
    "RESOURCES",
    "SERVICE_NAME_LABEL",
    "FakeKubernetes",
    "ResourceType",
    "slice_endpoint",
    "status_object",
]
