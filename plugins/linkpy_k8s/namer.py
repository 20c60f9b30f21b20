"""The Kubernetes namers: ``io.l5d.k8s``, ``io.l5d.k8s.ns`` and ``io.l5d.k8s.external``.

``/#/io.l5d.k8s/<namespace>/<port>/<service>[/<label-value>]/<residual...>`` binds to
the endpoints of a Service port: ``<port>`` is a port name (looked up among the
endpoints' ports) or a Service port number (mapped through the Service's
``spec.ports``).  Segments are lower-cased, as in Linkerd.  The label-value segment is
required when ``labelSelector: <key>`` is configured and restricts every request to
``<key>=<label-value>``.

Endpoints come from the Service's EndpointSlices (``discovery.k8s.io/v1``: ready
endpoints, or the serving terminating ones while none is ready), or from the ``v1``
Endpoints object when the cluster does not serve EndpointSlices or RBAC forbids them.
Each address carries ``nodeName`` metadata (and ``zone`` when known).

Watches are shared: one reflector per (namespace, service, label value) and resource,
however many lookups, bindings and routers use it, closed once unobserved for
``idleTtlSecs``.  Names that cannot be Kubernetes names are Neg without any watch.
"""

from __future__ import annotations

import logging
import os
import re
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Literal, TypeVar

import attrs
import trio

from linkpy.activity import Var
from linkpy.errors import ConfigError
from linkpy.naming import (
    Addr,
    AddrBound,
    Address,
    Bound,
    Failed,
    Leaf,
    Name,
    NameTree,
    Neg,
    Ok,
    Path,
    Pending,
    State,
)
from linkpy.plugin import Activity, Namer, NamerConfig, NamerContext, Watches

from .api import (
    SERVICE_NAME_LABEL,
    Decoded,
    EndpointGroup,
    ServiceInfo,
    external_addresses,
    named_port_addresses,
    numbered_port_addresses,
    parse_endpoint_slice,
    parse_endpoints,
    parse_service,
)
from .client import (
    NAMESPACE_FILE,
    ApiError,
    Backoff,
    KubeApi,
    Reflector,
    Selection,
    WatchStatus,
    resolve_connection,
)

log = logging.getLogger("linkpy.namer.k8s")

T = TypeVar("T")

Mode = Literal["auto", "proxy", "inCluster"]
EndpointsApi = Literal["auto", "endpointslices", "endpoints"]

#: Errors that will not go away by retrying soon: a lookup that never had an answer
#: fails with them (transient ones leave it Pending while retrying).
_PERMANENT = frozenset({"http_400", "http_401", "http_403", "http_404", "credentials"})


# -- config --------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class _K8sKeys(NamerConfig):
    """Keys common to the Kubernetes namers."""

    #: API host: the kubectl proxy (``localhost``), or in-cluster the apiserver
    #: (default ``$KUBERNETES_SERVICE_HOST``)
    host: str | None = None
    #: API port: 8001 (kubectl proxy), or in-cluster ``$KUBERNETES_SERVICE_PORT``
    port: int | None = None
    #: a label key; lookups then take a label-value segment
    labelSelector: str | None = None
    #: ``proxy`` (plain HTTP to kubectl proxy), ``inCluster`` (HTTPS with the service
    #: account), ``auto`` (inCluster in a pod unless host/port are set)
    mode: Mode = "auto"
    #: in-cluster bearer token (re-read at every request)
    tokenFile: str | None = None
    #: in-cluster CA bundle
    caFile: str | None = None
    #: close a watch nobody has used for this long
    idleTtlSecs: float = 60.0
    #: timeout of a list request, and of a watch's response headers
    requestTimeoutMs: int = 10000
    #: ``timeoutSeconds`` asked of the server for each watch (jittered up to +25%)
    watchTimeoutSecs: int = 300
    #: retry backoff bounds (jittered exponential)
    backoffMinMs: int = 10
    backoffMaxMs: int = 10000

    def _checked(self) -> None:
        errors = []
        if self.labelSelector is not None and not _LABEL_KEY.fullmatch(self.labelSelector):
            errors.append(f"labelSelector: {self.labelSelector!r} is not a label key")
        if self.port is not None and not 0 < self.port < 65536:
            errors.append(f"port: {self.port} is not a port number")
        if self.idleTtlSecs < 0:
            errors.append("idleTtlSecs: must not be negative")
        if self.requestTimeoutMs <= 0:
            errors.append("requestTimeoutMs: must be positive")
        if self.watchTimeoutSecs <= 0:
            errors.append("watchTimeoutSecs: must be positive")
        if not 0 < self.backoffMinMs <= self.backoffMaxMs:
            errors.append("backoffMinMs, backoffMaxMs: need 0 < backoffMinMs <= backoffMaxMs")
        if errors:
            raise ConfigError("; ".join(f"namer {self.kind_name}: {e}" for e in errors))

    kind_name: ClassVar[str] = ""


@attrs.frozen(kw_only=True)
class K8sConfig(_K8sKeys):
    """``kind: io.l5d.k8s``."""

    #: ``auto`` (EndpointSlices, falling back to Endpoints), ``endpointslices``, ``endpoints``
    endpointsApi: EndpointsApi = "auto"

    default_prefix = "/io.l5d.k8s"
    kind_name = "io.l5d.k8s"

    def mk(self, ctx: NamerContext) -> Namer:
        self._checked()
        return K8sNamer(self, ctx, namespace=None)


@attrs.frozen(kw_only=True)
class K8sNsConfig(_K8sKeys):
    """``kind: io.l5d.k8s.ns``: the namespace comes from an environment variable."""

    endpointsApi: EndpointsApi = "auto"
    #: the environment variable holding the namespace (downward API)
    envVar: str = "POD_NAMESPACE"

    default_prefix = "/io.l5d.k8s.ns"
    kind_name = "io.l5d.k8s.ns"

    def mk(self, ctx: NamerContext) -> Namer:
        self._checked()
        return K8sNamer(self, ctx, namespace=self.namespace())

    def namespace(self, env: Mapping[str, str] | None = None) -> str:
        """``$envVar``, else the service account's namespace file; ConfigError if neither."""
        env = os.environ if env is None else env
        ns = env.get(self.envVar, "").strip()
        source = f"${self.envVar}"
        if not ns and os.path.exists(NAMESPACE_FILE):
            with open(NAMESPACE_FILE, encoding="utf-8") as f:
                ns = f.read().strip()
            source = NAMESPACE_FILE
        if not ns:
            raise ConfigError(
                f"namer io.l5d.k8s.ns: the environment variable {self.envVar} is not set "
                "(set it from metadata.namespace with the downward API)"
            )
        ns = ns.lower()
        if not _DNS_LABEL.fullmatch(ns):
            raise ConfigError(f"namer io.l5d.k8s.ns: {source} = {ns!r} is not a namespace")
        return ns


@attrs.frozen(kw_only=True)
class K8sExternalConfig(_K8sKeys):
    """``kind: io.l5d.k8s.external`` (experimental): a Service's load-balancer ingress."""

    default_prefix = "/io.l5d.k8s.external"
    experimental_required = True
    kind_name = "io.l5d.k8s.external"

    def mk(self, ctx: NamerContext) -> Namer:
        self._checked()
        return K8sExternalNamer(self, ctx)


# -- names ---------------------------------------------------------------------------

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_LABEL_VALUE = re.compile(r"[a-z0-9]([-a-z0-9_.]*[a-z0-9])?")
_LABEL_KEY = re.compile(
    r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
)


def _label(s: str) -> bool:
    return len(s) <= 63 and _DNS_LABEL.fullmatch(s) is not None


def _port_ok(s: str) -> bool:
    if s.isdigit():
        return len(s) <= 5 and 0 < int(s) < 65536
    return _label(s)


@attrs.frozen
class ParsedName:
    """A lookup path cut into its Kubernetes parts (lower-cased)."""

    namespace: str
    port: str
    service: str
    label_value: str | None
    #: the consumed segments, as they appear in the bound id
    id_elems: tuple[str, ...]

    @property
    def numbered(self) -> bool:
        return self.port.isdigit()


def parse_name(
    path: Path, *, namespace: str | None, label_key: str | None
) -> tuple[ParsedName, Path] | None:
    """``(name, residual)``, or None when ``path`` cannot name a Kubernetes service
    (too short, not UTF-8, or segments that are not valid Kubernetes names)."""
    n = (3 if namespace is None else 2) + (1 if label_key else 0)
    if len(path.elems) < n:
        return None
    try:
        segs = [e.decode("utf-8").lower() for e in path.elems[:n]]
    except UnicodeDecodeError:
        return None
    if namespace is None:
        ns, port, svc = segs[0], segs[1], segs[2]
    else:
        ns, port, svc = namespace, segs[0], segs[1]
    value = segs[-1] if label_key else None
    if not (_label(ns) and _port_ok(port) and _label(svc)):
        return None
    if value is not None and not (len(value) <= 63 and _LABEL_VALUE.fullmatch(value)):
        return None
    return ParsedName(ns, port, svc, value, tuple(segs)), path.drop(n)


#: (namespace, service, label selector or None): what one watch follows
WatchKey = tuple[str, str, str | None]


# -- derived vars --------------------------------------------------------------------


class Derived(Var[T]):
    """A var computed from the vars of shared watches, following them only while observed.

    ``sources()`` is asked for the source vars each time this var gains an observer
    (and when it is sampled unobserved), so a watch closed while idle is reopened by
    the next use instead of leaving this var stuck on a dead one.
    """

    __slots__ = ("_sources", "_fn", "_unsubscribe", "_current")

    def __init__(self, sources: Callable[[], Sequence[Var[Any]]], fn: Callable[..., T]) -> None:
        self._sources = sources
        self._fn = fn
        self._unsubscribe: list[Callable[[], None]] | None = None
        self._current: Sequence[Var[Any]] = ()
        srcs = sources()
        super().__init__(fn(*[s.sample() for s in srcs]), on_active=self._active)

    def _active(self, active: bool) -> None:
        if active:
            self._current = self._sources()
            self._unsubscribe = [s.observe(self._changed) for s in self._current]
            Var.set(self, self._fn(*[s.sample() for s in self._current]))
        elif self._unsubscribe is not None:
            for close in self._unsubscribe:
                close()
            self._unsubscribe = None
            self._current = ()

    def _changed(self, _: object) -> None:
        Var.set(self, self._fn(*[s.sample() for s in self._current]))

    def sample(self) -> T:
        if self._unsubscribe is None:
            Var.set(self, self._fn(*[s.sample() for s in self._sources()]))
        return self._value


R = TypeVar("R")


def _join(states: Sequence[State[Any]], fn: Callable[..., R]) -> State[R]:
    """Failed if any source failed, Pending if any is pending, else ``Ok(fn(values))``."""
    for st in states:
        if isinstance(st, Failed):
            return st
    values = []
    for st in states:
        if not isinstance(st, Ok):
            return Pending
        values.append(st.value)
    return Ok(fn(*values))


AddrsState = State[frozenset[Address] | None]
#: the source vars of a name, and the function of their values giving its addresses
Sourced = tuple[Callable[[], list[Var[Any]]], Callable[..., frozenset[Address] | None]]


def _to_addr(st: AddrsState) -> Addr:
    if st is Pending:
        return Addr.Pending
    if isinstance(st, Failed):
        return Addr.Failed(st.exc)
    assert isinstance(st, Ok)
    return Addr.Neg if st.value is None else AddrBound(st.value)


# -- namers --------------------------------------------------------------------------


class _K8sNamerBase(Namer):
    """The watches, lookup cache and state shared by the Kubernetes namers."""

    kind = ""

    def __init__(self, cfg: _K8sKeys, ctx: NamerContext) -> None:
        try:
            self.conn = resolve_connection(cfg.mode, cfg.host, cfg.port, cfg.tokenFile, cfg.caFile)
        except ValueError as e:
            raise ConfigError(f"namer {self.kind}: {e}") from None
        self.metrics = ctx.metrics
        self.label_key = cfg.labelSelector
        self.backoff_bounds = (cfg.backoffMinMs / 1000.0, cfg.backoffMaxMs / 1000.0)
        self.api = KubeApi(
            self.conn,
            ctx.metrics,
            request_timeout=cfg.requestTimeoutMs / 1000.0,
            watch_timeout=cfg.watchTimeoutSecs,
        )
        self.services: Watches[WatchKey, State[ServiceInfo | None]] = Watches(
            self._watch_service, lambda _: Pending, idle=cfg.idleTtlSecs, name="k8s services"
        )
        self._trees: weakref.WeakValueDictionary[tuple[Path, Path], Activity] = (
            weakref.WeakValueDictionary()
        )
        self._addrs: weakref.WeakValueDictionary[Path, Var[Addr]] = weakref.WeakValueDictionary()
        self._status: dict[tuple[str, WatchKey], WatchStatus] = {}
        self._neg: Activity = Var(Ok(Neg))
        self._rejected = ctx.metrics.counter("lookups", "rejected")
        ctx.metrics.gauge("watches", "services", fn=lambda: float(self.services.open))

    # -- watches ------------------------------------------------------------------

    def _describe(self, key: WatchKey, resource: str) -> str:
        ns, svc, label = key
        where = f"{ns}/{svc}" + (f" [{label}]" if label else "")
        return f"{self.prefix.show()}: {resource} of {where}"

    def _failed_state(self, var: Var[State[Any]], e: ApiError) -> None:
        """Before any answer, a lasting error fails the lookups; afterwards the last
        good answer stays (the reflector logs and counts every failure)."""
        if not isinstance(var.sample(), Ok) and e.kind in _PERMANENT:
            var.set(Failed(e))

    async def _reflect(
        self,
        key: WatchKey,
        select: Callable[[], Selection],
        publish: Callable[[Mapping[str, Decoded]], None],
        failed: Callable[[ApiError, Selection], None],
        what: str,
    ) -> None:
        status = WatchStatus()
        self._status[(what, key)] = status
        reflector = Reflector(
            self.api,
            self._describe(key, what),
            select,
            publish,
            failed,
            Backoff(*self.backoff_bounds),
            self.metrics,
            status,
        )
        try:
            await reflector.run()
        finally:
            del self._status[(what, key)]

    async def _watch_service(self, key: WatchKey, var: Var[State[ServiceInfo | None]]) -> None:
        ns, svc, label = key
        params = {"fieldSelector": f"metadata.name={svc}"}
        if label:
            params["labelSelector"] = label
        sel = Selection(f"/api/v1/namespaces/{ns}/services", params, parse_service, "services")

        def publish(objects: Mapping[str, Decoded]) -> None:
            d = objects.get(svc)
            var.set(Ok(d.value if d is not None else None))

        await self._reflect(
            key, lambda: sel, publish, lambda e, _: self._failed_state(var, e), "services"
        )

    def _key(self, name: ParsedName) -> WatchKey:
        label = f"{self.label_key}={name.label_value}" if self.label_key else None
        return (name.namespace, name.service, label)

    # -- lookups ------------------------------------------------------------------

    def _parse(self, path: Path) -> tuple[ParsedName, Path] | None:
        raise NotImplementedError

    def _addresses(self, name: ParsedName) -> Sourced:
        """The source vars of a name and the function of their states giving its
        addresses (None: no such service port)."""
        raise NotImplementedError

    def lookup(self, path: Path) -> Activity:
        parsed = self._parse(path)
        if parsed is None:
            self._rejected.incr()
            return self._neg
        name, residual = parsed
        bound_id = self.prefix.concat(Path.utf8(*name.id_elems))
        tree = self._trees.get((bound_id, residual))
        if tree is not None:
            return tree
        sources, fn = self._addresses(name)

        def addrs(*states: State[Any]) -> AddrsState:
            return _join(states, fn)

        addr = self._addrs.get(bound_id)
        if addr is None:
            addr = Derived(sources, lambda *sts: _to_addr(addrs(*sts)))
            self._addrs[bound_id] = addr
        bound = Bound(bound_id, residual, addr)

        def to_tree(*states: State[Any]) -> State[NameTree[Name]]:
            st = addrs(*states)
            if isinstance(st, Ok):
                return Ok(Neg) if st.value is None else Ok(Leaf(bound))
            return st

        tree = Derived(sources, to_tree)
        self._trees[(bound_id, residual)] = tree
        return tree

    # -- running ------------------------------------------------------------------

    async def _run_watches(self, nursery: trio.Nursery) -> None:
        await nursery.start(self.services.run)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        log.info(
            "%s: Kubernetes API at %s (%s)", self.prefix.show(), self.conn.base_url, self.conn.mode
        )
        async with trio.open_nursery() as nursery:
            await self._run_watches(nursery)
            task_status.started()

    def open_watches(self) -> int:
        return self.services.open

    def bound_names(self) -> list[str]:
        """The ids bound by the lookups in use."""
        names = set()
        for (bound_id, _), tree in list(self._trees.items()):
            if tree.observed:
                st = tree.sample()
                if isinstance(st, Ok) and isinstance(st.value, Leaf):
                    names.add(bound_id.show())
        return sorted(names)

    def state(self) -> Mapping[str, Any]:
        return {
            "api": self.conn.base_url,
            "mode": self.conn.mode,
            "watches": {
                self._describe(key, what): st.to_json()
                for (what, key), st in sorted(self._status.items(), key=lambda kv: repr(kv[0]))
            },
        }


class K8sNamer(_K8sNamerBase):
    """``io.l5d.k8s`` (and, with a fixed namespace, ``io.l5d.k8s.ns``)."""

    def __init__(
        self, cfg: K8sConfig | K8sNsConfig, ctx: NamerContext, *, namespace: str | None
    ) -> None:
        self.kind = cfg.kind_name
        super().__init__(cfg, ctx)
        self.namespace = namespace
        #: which API the endpoints come from (``auto`` turns into one of the others)
        self.endpoints_api: str = cfg.endpointsApi
        self._auto = cfg.endpointsApi == "auto"
        self._use_slices = cfg.endpointsApi != "endpoints"
        self.endpoints: Watches[WatchKey, State[tuple[EndpointGroup, ...]]] = Watches(
            self._watch_endpoints, lambda _: Pending, idle=cfg.idleTtlSecs, name="k8s endpoints"
        )
        ctx.metrics.gauge("watches", "endpoints", fn=lambda: float(self.endpoints.open))

    def _parse(self, path: Path) -> tuple[ParsedName, Path] | None:
        return parse_name(path, namespace=self.namespace, label_key=self.label_key)

    def _addresses(self, name: ParsedName) -> Sourced:
        key = self._key(name)
        if name.numbered:
            number = int(name.port)
            return (
                lambda: [self.endpoints.get(key), self.services.get(key)],
                lambda groups, svc: numbered_port_addresses(svc, groups, number),
            )
        port = name.port
        return (
            lambda: [self.endpoints.get(key)],
            lambda groups: named_port_addresses(groups, port),
        )

    def _select(self, key: WatchKey) -> Selection:
        ns, svc, label = key
        if self._use_slices:
            selector = f"{SERVICE_NAME_LABEL}={svc}" + (f",{label}" if label else "")
            return Selection(
                f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices",
                {"labelSelector": selector},
                parse_endpoint_slice,
                "endpointslices",
            )
        params = {"fieldSelector": f"metadata.name={svc}"}
        if label:
            params["labelSelector"] = label
        return Selection(f"/api/v1/namespaces/{ns}/endpoints", params, parse_endpoints, "endpoints")

    def _fall_back(self, e: ApiError) -> None:
        if self._use_slices:
            self._use_slices = False
            self.endpoints_api = "endpoints"
            self.metrics.counter("fallbacks", "endpoints").incr()
            log.warning(
                "%s: EndpointSlices unavailable (%s); using v1 Endpoints from now on",
                self.prefix.show(),
                e,
            )

    async def _watch_endpoints(
        self, key: WatchKey, var: Var[State[tuple[EndpointGroup, ...]]]
    ) -> None:
        def publish(objects: Mapping[str, Decoded]) -> None:
            var.set(Ok(tuple(g for name in sorted(objects) for g in objects[name].value)))

        def failed(e: ApiError, sel: Selection) -> None:
            if sel.resource == "endpointslices" and self._auto and e.code in (403, 404):
                self._fall_back(e)
                return
            self._failed_state(var, e)

        await self._reflect(key, lambda: self._select(key), publish, failed, "endpoints")

    async def _run_watches(self, nursery: trio.Nursery) -> None:
        await nursery.start(self.endpoints.run)
        await nursery.start(self.services.run)

    def open_watches(self) -> int:
        return self.endpoints.open + self.services.open

    def state(self) -> Mapping[str, Any]:
        return {**super().state(), "endpointsApi": self.endpoints_api}


class K8sExternalNamer(_K8sNamerBase):
    """``io.l5d.k8s.external``: ``/<namespace>/<port>/<service>[/<label-value>]`` binds to
    the Service's load-balancer ingress (hostname, else IP) and Service port."""

    kind = "io.l5d.k8s.external"

    def _parse(self, path: Path) -> tuple[ParsedName, Path] | None:
        return parse_name(path, namespace=None, label_key=self.label_key)

    def _addresses(self, name: ParsedName) -> Sourced:
        key = self._key(name)
        port = name.port
        return (lambda: [self.services.get(key)], lambda svc: external_addresses(svc, port))
