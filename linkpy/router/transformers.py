"""Transformers: rewrite bound names after binding (per-host daemons depend on them).

A transformer is a plugin of the ``linkpy.transformers`` group (the entry name is the
config ``kind``).  Under a namer (``namers[].transformers``) it applies to that namer's
bound names; under a router's ``interpreter.transformers`` to everything the router
binds.  A transformed name's id gets the prefix ``/%/<transformer prefix>`` (so client
configs can match it, e.g. ``/%/io.l5d.port/4141/#/io.l5d.fs/users``), and its
addresses follow the original ones live: transformers are as reactive as the namers.

Built in (reference section 5):

- ``io.l5d.port`` (``port``): every address gets that port (the linker on the
  destination host listens there);
- ``io.l5d.localhost``: keeps the addresses of this host;
- ``io.l5d.specificHost`` (``host``): keeps the addresses of that host;
- ``io.l5d.replace`` (``path``): each bound leaf becomes the binding of ``path`` (Neg
  stays Neg);
- ``io.l5d.const`` (``path``): the binding of ``path``, whatever the input;
- the Kubernetes ones (``io.l5d.k8s.daemonset``, ``io.l5d.k8s.localnode``) live in the
  Kubernetes plugin and build on :class:`GatewayTransformer` / :class:`FilterTransformer`.

An address set that a filter empties becomes ``Addr.Neg``, as in Linkerd.
"""

from __future__ import annotations

import abc
import array
import fcntl
import ipaddress
import socket
import struct
from collections.abc import Callable, Collection, Iterable
from typing import Any, ClassVar

import attrs
import trio

from ..activity import Mapped, Var
from ..metrics import Metrics, Scope
from ..naming import (
    Addr,
    AddrBound,
    Address,
    AddrSource,
    Alt,
    Bound,
    DAlt,
    DDelegate,
    DelegateTree,
    DLeaf,
    DTransformation,
    DUnion,
    DWeighted,
    Empty,
    Fail,
    Failed,
    Leaf,
    NameTree,
    Neg,
    Ok,
    Path,
    State,
    Union,
    Weighted,
)

Lookup = Callable[[Path], State[NameTree[Any]]]


@attrs.frozen(kw_only=True)
class TransformerContext:
    """What a transformer may need to build itself."""

    #: binds a path through the system namers (``/$/inet/...``), for replace/const
    bind_path: Callable[[Path], State[NameTree[Bound]]]
    #: metrics scope ``transformer/<kind>`` (a transformer that watches something)
    metrics: Scope = attrs.field(factory=lambda: Metrics().scope("transformer"))
    #: the directory of the config file
    config_dir: str = "."


@attrs.frozen(kw_only=True)
class TransformerConfig(abc.ABC):
    """Base of the transformer configs; ``prefix`` overrides the kind's default."""

    prefix: str | None = None

    default_prefix: ClassVar[str] = ""

    def full_prefix(self) -> Path:
        p = self.prefix or self.default_prefix
        return Path.utf8("%").concat(Path.read(p if p.startswith("/") else "/" + p))

    @abc.abstractmethod
    def mk(self, ctx: TransformerContext) -> Transformer:
        """Build the transformer."""


class Transformer(abc.ABC):
    """Rewrites the bound leaves of a tree."""

    def __init__(self, prefix: Path) -> None:
        self.prefix = prefix

    @property
    def name(self) -> str:
        return type(self).__name__

    @abc.abstractmethod
    def map_bound(self, bound: Bound) -> Bound:
        """The transformed version of one bound name."""

    def rename(self, bound: Bound, addr: AddrSource) -> Bound:
        id_ = self.prefix.concat(bound.id) if isinstance(bound.id, Path) else bound.id
        return Bound(id_, bound.residual, addr, bound.weight)

    def transform(self, tree: NameTree[Bound]) -> NameTree[Bound]:
        return tree.map(self.map_bound)

    def delegate(self, tree: DelegateTree) -> DelegateTree:
        """Linkerd's ``Transformation`` nodes for the delegator."""
        return _map_delegate(tree, self)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The transformer's background work (a watch of its gateways), if any.

        linkpy runs it in a task for as long as the transformer is in use; the default
        has nothing to do.
        """
        task_status.started()


def _map_delegate(t: DelegateTree, tr: Transformer) -> DelegateTree:
    if isinstance(t, DLeaf) and isinstance(t.value, Bound):
        new = tr.map_bound(t.value)
        path = new.id if isinstance(new.id, Path) else t.path
        return DTransformation(t.path, tr.name, t.value, DLeaf(path, t.dentry, new))
    if isinstance(t, DDelegate):
        return DDelegate(t.path, t.dentry, _map_delegate(t.tree, tr))
    if isinstance(t, DAlt):
        return DAlt(t.path, t.dentry, *(_map_delegate(c, tr) for c in t.trees))
    if isinstance(t, DUnion):
        return DUnion(
            t.path, t.dentry, *(DWeighted(w.weight, _map_delegate(w.tree, tr)) for w in t.trees)
        )
    if isinstance(t, DTransformation):
        return DTransformation(t.path, t.name, t.value, _map_delegate(t.tree, tr))
    return t


def _var(source: AddrSource) -> Var[Addr]:
    return source if isinstance(source, Var) else Var(source.sample())


class AddressTransformer(Transformer):
    """Maps each address set through a function (reactively)."""

    def map_addr(self, addr: Addr) -> Addr:
        if isinstance(addr, AddrBound):
            return self.map_bound_addr(addr)
        return addr

    @abc.abstractmethod
    def map_bound_addr(self, addr: AddrBound) -> Addr: ...

    def map_bound(self, bound: Bound) -> Bound:
        return self.rename(bound, Mapped(_var(bound.addr), self.map_addr))


class PortTransformer(AddressTransformer):
    def __init__(self, prefix: Path, port: int) -> None:
        super().__init__(prefix)
        self.port = port

    def map_bound_addr(self, addr: AddrBound) -> Addr:
        return AddrBound(
            {Address(a.host, self.port, a.weight, a.metadata) for a in addr.addresses},
            addr.metadata,
        )


class FilterTransformer(AddressTransformer):
    """Keeps the addresses ``keep`` accepts; none left is ``Addr.Neg``."""

    def __init__(self, prefix: Path, keep: Callable[[Address], bool]) -> None:
        super().__init__(prefix)
        self.keep = keep

    def map_bound_addr(self, addr: AddrBound) -> Addr:
        kept = [a for a in addr.addresses if self.keep(a)]
        if not kept:
            return Addr.Neg
        return AddrBound(kept, addr.metadata)


def same_subnet(ips: Collection[str], bits: int) -> Callable[[Address], bool]:
    """An address predicate: in the same /``bits`` network as one of ``ips``."""
    nets = []
    for ip in ips:
        try:
            nets.append(
                ipaddress.ip_network(f"{ip}/{bits if ':' not in ip else 128}", strict=False)
            )
        except ValueError:
            continue

    def keep(a: Address) -> bool:
        try:
            addr = ipaddress.ip_address(a.host)
        except ValueError:
            return True  # not an IP (a socket path...): assumed local, as in Linkerd
        return any(addr in n for n in nets if n.version == addr.version)

    return keep


class GatewayTransformer(Transformer):
    """Replaces each address with the gateway addresses that ``pair`` matches with it
    (the linker on the same node): ``io.l5d.k8s.daemonset`` and friends."""

    def __init__(
        self,
        prefix: Path,
        gateways: Var[Addr],
        pair: Callable[[Address, Address], bool],
    ) -> None:
        super().__init__(prefix)
        self.gateways = gateways
        self.pair = pair

    def map_bound(self, bound: Bound) -> Bound:
        source = _var(bound.addr)
        gateways = self.gateways

        def combine(_: object) -> Addr:
            addr = source.sample()
            gw = gateways.sample()
            if not isinstance(addr, AddrBound) or not isinstance(gw, AddrBound):
                return addr
            selected = {g for a in addr.addresses for g in gw.addresses if self.pair(a, g)}
            return AddrBound(selected, addr.metadata) if selected else Addr.Neg

        return self.rename(bound, Combined([source, gateways], combine))


class TreeAddr(Var[Addr]):
    """The addresses of a bound name tree's activity (all its leaves, joined).

    It follows the tree while observed and, each time the tree changes, the address
    vars of its leaves: a gateway found by a namer lookup, for example.
    """

    __slots__ = ("_tree", "_tree_stop", "_leaf_stops")

    def __init__(self, tree: Var[State[NameTree[Any]]]) -> None:
        self._tree = tree
        self._tree_stop: Callable[[], None] | None = None
        self._leaf_stops: list[Callable[[], None]] = []
        super().__init__(self._compute(), on_active=self._active)

    def _leaves(self) -> list[Var[Addr]] | Addr:
        st = self._tree.sample()
        if not isinstance(st, Ok):
            return Addr.Failed(st.exc) if isinstance(st, Failed) else Addr.Pending
        leaves = [_var(b.addr) for b in st.value.leaves() if isinstance(b, Bound)]
        return leaves if leaves else Addr.Neg

    def _compute(self) -> Addr:
        leaves = self._leaves()
        if isinstance(leaves, Addr):
            return leaves
        addrs = [v.sample() for v in leaves]
        bound = [a for a in addrs if isinstance(a, AddrBound)]
        if bound:
            return AddrBound({x for a in bound for x in a.addresses})
        if any(a is Addr.Pending for a in addrs):
            return Addr.Pending
        failed = [a for a in addrs if not isinstance(a, AddrBound) and a is not Addr.Neg]
        return failed[0] if failed else Addr.Neg

    def _follow_leaves(self) -> None:
        for stop in self._leaf_stops:
            stop()
        leaves = self._leaves()
        self._leaf_stops = (
            [] if isinstance(leaves, Addr) else [v.observe(self._changed) for v in leaves]
        )

    def _active(self, active: bool) -> None:
        if active:
            self._tree_stop = self._tree.observe(self._tree_changed)
            self._follow_leaves()
            Var.set(self, self._compute())
        else:
            if self._tree_stop is not None:
                self._tree_stop()
                self._tree_stop = None
            for stop in self._leaf_stops:
                stop()
            self._leaf_stops = []

    def _tree_changed(self, _: object) -> None:
        self._follow_leaves()
        Var.set(self, self._compute())

    def _changed(self, _: object) -> None:
        Var.set(self, self._compute())

    def sample(self) -> Addr:
        if self._tree_stop is None:
            return self._compute()
        return self._value


class Combined(Var[Addr]):
    """A var computed from several (following them only while observed)."""

    __slots__ = ("_sources", "_combine", "_closers")

    def __init__(self, sources: Iterable[Var[Any]], combine: Callable[[object], Addr]) -> None:
        self._sources = list(sources)
        self._combine = combine
        self._closers: list[Callable[[], None]] = []
        super().__init__(combine(None), on_active=self._active)

    def _active(self, active: bool) -> None:
        if active:
            self._closers = [s.observe(self._changed) for s in self._sources]
            Var.set(self, self._combine(None))
        else:
            for close in self._closers:
                close()
            self._closers = []

    def _changed(self, _: object) -> None:
        Var.set(self, self._combine(None))

    def sample(self) -> Addr:
        if not self._closers:
            return self._combine(None)
        return self._value


class ReplaceTransformer(Transformer):
    """Each bound leaf becomes the binding of a fixed path; Neg, Fail, Empty stay."""

    def __init__(
        self, prefix: Path, path: Path, replacement: NameTree[Bound], const: bool = False
    ) -> None:
        super().__init__(prefix)
        fixed = prefix.concat(path)
        self.replacement = replacement.map(lambda b: Bound(fixed, b.residual, b.addr, b.weight))
        self.const = const

    def map_bound(self, bound: Bound) -> Bound:
        tree = self.replacement
        if isinstance(tree, Leaf) and isinstance(tree.value, Bound):
            return tree.value
        return bound

    def transform(self, tree: NameTree[Bound]) -> NameTree[Bound]:
        if self.const:
            return self.replacement
        return _replace(tree, self.replacement)


def _replace(tree: NameTree[Bound], replacement: NameTree[Bound]) -> NameTree[Bound]:
    if tree is Neg or tree is Empty or tree is Fail:
        return tree
    if isinstance(tree, Alt):
        return Alt(*(_replace(t, replacement) for t in tree.trees))
    if isinstance(tree, Union):
        return Union(*(Weighted(w.weight, _replace(w.tree, replacement)) for w in tree.trees))
    return replacement


def apply(transformers: list[Transformer], tree: NameTree[Bound]) -> NameTree[Bound]:
    for t in transformers:
        tree = t.transform(tree)
    return tree


def is_bound(tree: NameTree[Any]) -> bool:
    """Every leaf is a bound name (a namer's answer that transformers may rewrite)."""
    return all(isinstance(v, Bound) for v in tree.leaves())


def transform_state(
    transformers: list[Transformer], st: State[NameTree[Any]]
) -> State[NameTree[Any]]:
    if not transformers or not isinstance(st, Ok) or not is_bound(st.value):
        return st
    return Ok(apply(transformers, st.value))


# --- local addresses -----------------------------------------------------------------


def local_ips() -> set[str]:
    """The IP addresses of this host's interfaces (and loopback)."""
    ips = {"127.0.0.1", "::1"}
    try:
        for _, name in socket.if_nameindex():
            ip = _ipv4_of(name)
            if ip:
                ips.add(ip)
    except OSError:
        pass
    try:
        with open("/proc/net/if_inet6", encoding="ascii") as f:
            for line in f:
                raw = line.split()[0]
                ips.add(str(ipaddress.ip_address(bytes.fromhex(raw))))
    except (OSError, ValueError):
        pass
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None):
            ips.add(str(info[4][0]))
    except OSError:
        pass
    return ips


def _ipv4_of(ifname: str) -> str | None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        req = struct.pack("256s", ifname.encode()[:15])
        buf = array.array("B", req)
        res = fcntl.ioctl(sock.fileno(), 0x8915, buf)  # SIOCGIFADDR
        return socket.inet_ntoa(bytes(res)[20:24])
    except OSError:
        return None
    finally:
        sock.close()


# --- configs (entry points of linkpy.transformers) ----------------------------------------


@attrs.frozen(kw_only=True)
class PortConfig(TransformerConfig):
    """``io.l5d.port``."""

    port: int

    def full_prefix(self) -> Path:
        if self.prefix:
            return super().full_prefix()
        return Path.utf8("%", "io.l5d.port", str(self.port))

    def mk(self, ctx: TransformerContext) -> Transformer:
        return PortTransformer(self.full_prefix(), self.port)


@attrs.frozen(kw_only=True)
class LocalhostConfig(TransformerConfig):
    """``io.l5d.localhost``."""

    default_prefix = "/io.l5d.localhost"

    def mk(self, ctx: TransformerContext) -> Transformer:
        return FilterTransformer(self.full_prefix(), same_subnet(local_ips(), 32))


@attrs.frozen(kw_only=True)
class SpecificHostConfig(TransformerConfig):
    """``io.l5d.specificHost``."""

    host: str

    default_prefix = "/io.l5d.specificHost"

    def mk(self, ctx: TransformerContext) -> Transformer:
        try:
            ips = {str(i[4][0]) for i in socket.getaddrinfo(self.host, None)}
        except OSError:
            ips = {self.host}
        return FilterTransformer(self.full_prefix(), same_subnet(ips, 32))


def _bind_fixed(ctx: TransformerContext, path: str) -> NameTree[Bound]:
    st = ctx.bind_path(Path.read(path))
    return st.value if isinstance(st, Ok) else Neg


@attrs.frozen(kw_only=True)
class ReplaceConfig(TransformerConfig):
    """``io.l5d.replace``."""

    path: str

    default_prefix = "/io.l5d.replace"

    def mk(self, ctx: TransformerContext) -> Transformer:
        return ReplaceTransformer(
            self.full_prefix(), Path.read(self.path), _bind_fixed(ctx, self.path)
        )


@attrs.frozen(kw_only=True)
class ConstConfig(TransformerConfig):
    """``io.l5d.const``."""

    path: str

    default_prefix = "/io.l5d.const"

    def mk(self, ctx: TransformerContext) -> Transformer:
        return ReplaceTransformer(
            self.full_prefix(), Path.read(self.path), _bind_fixed(ctx, self.path), const=True
        )
