"""Addresses, Addr (the changing answer of a bound name) and Name.Bound.

``Addr`` is one of ``Addr.Pending`` (not known yet), ``Addr.Neg`` (no such
destination), ``Addr.Bound(addresses, metadata)`` or ``Addr.Failed(cause)``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, ClassVar, Final, Protocol

import attrs

if TYPE_CHECKING:
    from ._path import Path

MetaValue = str | int | float | bool | None

#: Addr metadata key holding the weight of the nearest enclosing union (Finagle's).
WEIGHT_KEY: Final = "namer_nametree_weight"
#: Address metadata key Finagle uses for a per-endpoint weight.
ENDPOINT_WEIGHT_KEY: Final = "endpoint_addr_weight"


class Metadata(Mapping[str, MetaValue]):
    """An immutable, hashable string-keyed mapping."""

    __slots__ = ("_d", "_hash")

    def __init__(self, items: Mapping[str, MetaValue] | Iterable[tuple[str, MetaValue]] = ()):
        self._d: dict[str, MetaValue] = dict(items)
        self._hash: int | None = None

    def __getitem__(self, key: str) -> MetaValue:
        return self._d[key]

    def get(self, key: str, default: MetaValue = None) -> MetaValue:  # type: ignore[override]
        # (Mapping's get raises and catches a KeyError for a missing key: the routers
        # ask every request's client for a key that is mostly absent)
        return self._d.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._d

    def __iter__(self) -> Iterator[str]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._d.items()))
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Metadata):
            return self._d == other._d
        if isinstance(other, Mapping):
            return self._d == dict(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"Metadata({self._d!r})"

    def updated(self, **kv: MetaValue) -> Metadata:
        d = dict(self._d)
        d.update(kv)
        return Metadata(d)

    def to_dict(self) -> dict[str, MetaValue]:
        return dict(self._d)


EMPTY_META: Final = Metadata()


def _to_meta(m: Mapping[str, MetaValue] | Metadata | None) -> Metadata:
    if m is None:
        return EMPTY_META
    if isinstance(m, Metadata):
        return m
    return Metadata(m) if m else EMPTY_META


@attrs.frozen(cache_hash=True)
class Address:
    """One endpoint: ``host`` (an IP address, or a name still to resolve) and port."""

    host: str
    port: int
    weight: float = 1.0
    metadata: Metadata = attrs.field(default=EMPTY_META, converter=_to_meta)

    @property
    def ip(self) -> str | None:
        """The host if it is an IP address literal, else None."""
        try:
            return str(ipaddress.ip_address(self.host))
        except ValueError:
            return None

    def show(self) -> str:
        h = self.host
        return f"[{h}]:{self.port}" if ":" in h else f"{h}:{self.port}"


class Addr:
    """Namespace and base of the Addr cases."""

    __slots__ = ()

    Pending: ClassVar[Addr]
    Neg: ClassVar[Addr]
    Bound: ClassVar[type[AddrBound]]
    Failed: ClassVar[type[AddrFailed]]

    def sample(self) -> Addr:
        """An Addr is its own (constant) source."""
        return self


class _AddrPending(Addr):
    __slots__ = ()

    def __repr__(self) -> str:
        return "Addr.Pending"


class _AddrNeg(Addr):
    __slots__ = ()

    def __repr__(self) -> str:
        return "Addr.Neg"


@attrs.frozen(init=False)
class AddrBound(Addr):
    addresses: frozenset[Address]
    metadata: Metadata

    def __init__(
        self,
        addresses: Iterable[Address] = (),
        metadata: Mapping[str, MetaValue] | None = None,
    ) -> None:
        self.__attrs_init__(frozenset(addresses), _to_meta(metadata))


@attrs.frozen(eq=False, init=False)
class AddrFailed(Addr):
    cause: BaseException

    def __init__(self, cause: BaseException | str) -> None:
        self.__attrs_init__(cause if isinstance(cause, BaseException) else Exception(cause))

    @property
    def message(self) -> str:
        return str(self.cause)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AddrFailed):
            return NotImplemented
        return type(self.cause) is type(other.cause) and str(self.cause) == str(other.cause)

    def __hash__(self) -> int:
        return hash((type(self.cause), str(self.cause)))


Addr.Pending = _AddrPending()
Addr.Neg = _AddrNeg()
Addr.Bound = AddrBound
Addr.Failed = AddrFailed


class AddrSource(Protocol):
    """Anything that can say its current Addr (an Addr itself, or a changing Var)."""

    def sample(self) -> Addr: ...


def with_weight(addr: Addr, weight: float | None) -> Addr:
    """Record the enclosing union weight in a bound Addr's metadata, as Finagle does."""
    if weight is None or not isinstance(addr, AddrBound):
        return addr
    return AddrBound(addr.addresses, addr.metadata.updated(**{WEIGHT_KEY: weight}))


@attrs.frozen(eq=False, repr=False)
class Bound:
    """``Name.Bound``: a name bound to a replica set.

    ``id`` identifies the replica set (usually a Path such as ``/#/io.l5d.fs/users``),
    ``residual`` is the part of the name the namer did not consume, and ``addr`` is
    where its current :class:`Addr` comes from.  Equality and hashing use ``id``
    only, as in Finagle.  ``weight`` is the nearest enclosing union weight set by
    binding (``None`` outside a union).
    """

    id: Path | object
    residual: Path
    addr: AddrSource
    weight: float | None = None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Bound):
            return NotImplemented
        return self.id == other.id

    def __hash__(self) -> int:
        return hash(self.id)

    def id_show(self) -> str:
        show = getattr(self.id, "show", None)
        return str(show()) if callable(show) else str(self.id)

    def show(self) -> str:
        return self.id_show()

    def sample(self) -> Addr:
        """The current Addr, with the union weight recorded in its metadata."""
        return with_weight(self.addr.sample(), self.weight)

    def with_weight(self, weight: float | None) -> Bound:
        if weight == self.weight:
            return self
        return attrs.evolve(self, weight=weight)

    def __repr__(self) -> str:
        return f"Bound({self.id_show()}, residual={self.residual.show()})"


def all_addr(addrs: list[Addr]) -> Addr:
    """Finagle's ``Name.all(names).addr``: combine the Addrs of several names."""
    if not addrs:
        return AddrBound()
    if len(addrs) == 1:
        return addrs[0]
    bound = [a for a in addrs if isinstance(a, AddrBound)]
    if bound:
        out: set[Address] = set()
        for b in bound:
            out |= b.addresses
        return AddrBound(out)
    if all(a is Addr.Neg for a in addrs):
        return Addr.Neg
    if all(isinstance(a, AddrFailed) for a in addrs):
        return addrs[0]
    return Addr.Pending
