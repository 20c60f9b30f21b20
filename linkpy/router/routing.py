"""From a bound tree to a request's destination: routes, clients, services.

A binding's tree (``Leaf``, weighted ``Union`` of trees, or ``Neg``/``Fail``/``Empty``)
is turned once into a :class:`Route` that picks a :class:`Target` per request: a leaf is
one target, a union picks a branch with probability ``w / sum(w)`` (a weight of 0 is
never picked; if all are 0 the pick is uniform), and ``Empty`` (alone or as a union
branch) and ``Neg``/``Fail`` answer "No hosts are available".
"""

from __future__ import annotations

import abc
import random
from bisect import bisect_right
from collections.abc import Callable
from itertools import accumulate

from ..errors import NoBrokersAvailable
from ..naming import Bound, Dtab, Empty, Leaf, NameTree, Path, Union
from .client import Client


class Target:
    """A bound name the request goes to: its client and the headers it adds."""

    __slots__ = ("client", "bound", "client_header", "residual_header", "dst_path", "dst_lines")

    def __init__(self, client: Client, bound: Bound) -> None:
        self.client = client
        self.bound = bound
        self.client_header = bound.id_show().encode("latin-1", "replace")
        res = bound.residual
        self.residual_header = res.show().encode("latin-1", "replace") if res.elems else b""
        #: the HTTP/1.1 router's ``l5d-dst-*`` header lines, made for the requests to
        #: ``dst_path`` (the path of the binding that made the target)
        self.dst_path: Path | None = None
        self.dst_lines = b""


class Route(abc.ABC):
    __slots__ = ()

    @abc.abstractmethod
    def pick(self) -> Target:
        """The target of one request (raises NoBrokersAvailable)."""


class Single(Route):
    __slots__ = ("target",)

    def __init__(self, target: Target) -> None:
        self.target = target

    def pick(self) -> Target:
        return self.target


class NoRoute(Route):
    """Every request fails: the name bound to nothing."""

    __slots__ = ("error",)

    def __init__(self, error: NoBrokersAvailable) -> None:
        self.error = error

    def pick(self) -> Target:
        raise self.error


class Split(Route):
    """A weighted union of routes."""

    __slots__ = ("routes", "cumulative", "total", "random")

    def __init__(self, weighted: list[tuple[float, Route]]) -> None:
        if all(w <= 0 for w, _ in weighted):
            weighted = [(1.0, r) for _, r in weighted]
        kept = [(w, r) for w, r in weighted if w > 0]
        self.routes = [r for _, r in kept]
        self.cumulative = list(accumulate(w for w, _ in kept))
        self.total = self.cumulative[-1]
        self.random = random.random

    def pick(self) -> Target:
        i = bisect_right(self.cumulative, self.random() * self.total)
        return self.routes[min(i, len(self.routes) - 1)].pick()


def no_hosts(path: Path, base: Dtab, local: Dtab) -> NoBrokersAvailable:
    """Linkerd's error for a name that binds to nothing."""
    return NoBrokersAvailable(
        f"No hosts are available for {path.show()}, "
        f"Dtab.base=[{base.show()}], Dtab.local=[{local.show()}]"
    )


def build_route(
    tree: NameTree[Bound],
    client_for: Callable[[Bound], Client],
    error: Callable[[], NoBrokersAvailable],
) -> Route:
    if isinstance(tree, Leaf):
        return Single(Target(client_for(tree.value), tree.value))
    if isinstance(tree, Union):
        return Split([(w.weight, build_route(w.tree, client_for, error)) for w in tree.trees])
    if tree is Empty:
        return NoRoute(error())
    return NoRoute(error())
