"""NameTree: Finagle's tree of names.

Cases: :class:`Leaf` (a value), :class:`Alt` (ordered fallback), :class:`Union` of
:class:`Weighted` trees (weighted split), and the singletons ``Neg`` (``~``: no such
name), ``Fail`` (``!``: fail, stop fallback) and ``Empty`` (``$``: an empty set).

Grammar (read by :meth:`NameTree.read`)::

    tree     ::= tree1 ( '|' tree1 )*          -- Alt, lowest precedence
    tree1    ::= weighted ( '&' weighted )*    -- Union
    weighted ::= [ number '*' ] simple
    simple   ::= '(' tree ')' | path | '!' | '~' | '$'

``simplified()`` and ``eval()`` follow Finagle exactly (dtab-spec section 5); the law
``t.simplified().simplified() == t.simplified()`` holds, and simplification never
changes what a tree evaluates to.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, ClassVar, Generic, Never, TypeVar

import attrs

if TYPE_CHECKING:
    from ._path import Path

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
U = TypeVar("U")

DEFAULT_WEIGHT = 1.0


class NameTree(Generic[T_co]):
    """Base of the name-tree cases.  See the module docstring."""

    __slots__ = ()

    # The cases, reachable as NameTree.Leaf etc. (set at the end of this module).
    Leaf: ClassVar[type[Leaf[object]]]
    Alt: ClassVar[type[Alt[object]]]
    Union: ClassVar[type[Union[object]]]
    Weighted: ClassVar[type[Weighted[object]]]
    Neg: ClassVar[NameTree[Never]]
    Fail: ClassVar[NameTree[Never]]
    Empty: ClassVar[NameTree[Never]]

    @staticmethod
    def read(s: str) -> NameTree[Path]:
        """Parse a name tree; raises :class:`~linkpy.errors.ParseError`."""
        from ._parse import parse_tree

        return parse_tree(s)

    def show(self) -> str:
        """The concrete syntax; ``NameTree.read(t.show()) == t`` for parsed trees."""
        return _show(self)

    def __str__(self) -> str:
        return self.show()

    def simplified(self) -> NameTree[T_co]:
        return simplify(self)

    def eval(self) -> frozenset[T_co] | None:
        """The set of leaf values this tree denotes, or None (Neg or Fail)."""
        r = _eval(self)
        if isinstance(r, frozenset):
            return r
        return None

    def map(self, f: Callable[[T_co], U]) -> NameTree[U]:
        return map_tree(self, f)

    def leaves(self) -> Iterable[T_co]:
        """Every leaf value, left to right."""
        if isinstance(self, Leaf):
            yield self.value
        elif isinstance(self, Alt):
            for t in self.trees:
                yield from t.leaves()
        elif isinstance(self, Union):
            for w in self.trees:
                yield from w.tree.leaves()


@attrs.frozen(repr=False)
class Leaf(NameTree[T_co]):
    value: T_co

    def __repr__(self) -> str:
        return f"Leaf({self.value!r})"


@attrs.frozen(init=False, repr=False)
class Alt(NameTree[T_co]):
    """Ordered fallback: the first child that is not Neg wins."""

    trees: tuple[NameTree[T_co], ...]

    def __init__(self, *trees: NameTree[T_co]) -> None:
        self.__attrs_init__(tuple(trees))

    def __repr__(self) -> str:
        return "Alt(" + ", ".join(repr(t) for t in self.trees) + ")"


@attrs.frozen(repr=False)
class Weighted(Generic[T_co]):
    weight: float
    tree: NameTree[T_co]

    def __repr__(self) -> str:
        return f"{self.weight!r}*{self.tree!r}"


@attrs.frozen(init=False, repr=False)
class Union(NameTree[T_co]):
    """Weighted split between the children."""

    trees: tuple[Weighted[T_co], ...]

    def __init__(self, *trees: Weighted[T_co]) -> None:
        self.__attrs_init__(tuple(trees))

    @classmethod
    def of(cls, *trees: NameTree[U]) -> Union[U]:
        """A union of equally weighted trees."""
        return Union(*(Weighted(DEFAULT_WEIGHT, t) for t in trees))

    def __repr__(self) -> str:
        return "Union(" + ", ".join(repr(t) for t in self.trees) + ")"


class _Singleton(NameTree[T_co]):
    __slots__ = ()
    _symbol: ClassVar[str]
    _name: ClassVar[str]

    def __repr__(self) -> str:
        return self._name

    def __reduce__(self) -> str:
        return self._name


class _Neg(_Singleton[T_co]):
    __slots__ = ()
    _symbol = "~"
    _name = "Neg"


class _Fail(_Singleton[T_co]):
    __slots__ = ()
    _symbol = "!"
    _name = "Fail"


class _Empty(_Singleton[T_co]):
    __slots__ = ()
    _symbol = "$"
    _name = "Empty"


Neg: NameTree[Never] = _Neg()
Fail: NameTree[Never] = _Fail()
Empty: NameTree[Never] = _Empty()


# --- map ----------------------------------------------------------------------


def map_tree(tree: NameTree[T], f: Callable[[T], U]) -> NameTree[U]:
    if isinstance(tree, Leaf):
        return Leaf(f(tree.value))
    if isinstance(tree, Alt):
        return Alt(*(map_tree(t, f) for t in tree.trees))
    if isinstance(tree, Union):
        return Union(*(Weighted(w.weight, map_tree(w.tree, f)) for w in tree.trees))
    return tree  # type: ignore[return-value]  # Neg, Fail, Empty hold no values


# --- simplify -----------------------------------------------------------------


def simplify(tree: NameTree[T]) -> NameTree[T]:
    """Finagle's ``NameTree.simplify`` (dtab-spec section 5)."""
    if isinstance(tree, Alt):
        trees = tree.trees
        if not trees:
            return Neg
        if len(trees) == 1:
            return simplify(trees[0])
        kept: list[NameTree[T]] = []
        for t in trees:
            s = simplify(t)
            if s is Fail:
                kept.append(s)
                break
            if s is Neg:
                continue
            kept.append(s)
        if not kept:
            return Neg
        if len(kept) == 1:
            return kept[0]
        return Alt(*kept)
    if isinstance(tree, Union):
        ws = tree.trees
        if not ws:
            return Neg
        if len(ws) == 1:
            return simplify(ws[0].tree)
        kept_w: list[Weighted[T]] = []
        for w in ws:
            s = simplify(w.tree)
            if s is Fail or s is Neg:
                continue
            kept_w.append(Weighted(w.weight, s))
        if not kept_w:
            return Neg
        if len(kept_w) == 1:
            return kept_w[0].tree
        return Union(*kept_w)
    return tree


# --- eval ---------------------------------------------------------------------


def _eval(tree: NameTree[T]) -> frozenset[T] | NameTree[object]:
    """Three-valued evaluation: a set, or Neg, or Fail.  Weights are discarded."""
    if isinstance(tree, Leaf):
        return frozenset((tree.value,))
    if tree is Empty:
        return frozenset()
    if tree is Fail or tree is Neg:
        return tree
    if isinstance(tree, Alt):
        for t in tree.trees:
            r = _eval(t)
            if r is Fail:
                return Fail
            if r is Neg:
                continue
            return r
        return Neg
    if isinstance(tree, Union):
        sets: list[frozenset[T]] = []
        for w in tree.trees:
            r = _eval(w.tree)
            if isinstance(r, frozenset):
                sets.append(r)
        if not sets:
            return Neg
        return frozenset().union(*sets)
    raise TypeError(f"not a name tree: {tree!r}")


# --- show ---------------------------------------------------------------------


def format_weight(w: float) -> str:
    """``%.2f`` as the JVM prints it (half-up rounding of the shortest decimal)."""
    if math.isinf(w):
        return "Infinity" if w > 0 else "-Infinity"
    if math.isnan(w):
        return "NaN"
    return str(Decimal(repr(w)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def _show_leaf(value: object) -> str:
    show = getattr(value, "show", None)
    if callable(show):
        return str(show())
    return str(value)


def _unwrap(tree: NameTree[T]) -> NameTree[T]:
    # A one-child Alt or Union prints as its child.
    while True:
        if isinstance(tree, Alt) and len(tree.trees) == 1:
            tree = tree.trees[0]
        elif isinstance(tree, Union) and len(tree.trees) == 1:
            tree = tree.trees[0].tree
        else:
            return tree


def _show(tree: NameTree[T]) -> str:
    tree = _unwrap(tree)
    if isinstance(tree, Alt):
        return " | ".join(_show1(t) for t in tree.trees)
    return _show1(tree)


def _show1(tree: NameTree[T]) -> str:
    tree = _unwrap(tree)
    if isinstance(tree, Union):
        parts = []
        for w in tree.trees:
            if w.weight == DEFAULT_WEIGHT:
                parts.append(_show_simple(w.tree))
            else:
                parts.append(f"{format_weight(w.weight)}*{_show_simple(w.tree)}")
        return " & ".join(parts)
    if isinstance(tree, Alt):
        return f"({_show(tree)})"
    return _show_simple(tree)


def _show_simple(tree: NameTree[T]) -> str:
    tree = _unwrap(tree)
    if isinstance(tree, (Union, Alt)):
        return f"({_show(tree)})"
    if isinstance(tree, Leaf):
        return _show_leaf(tree.value)
    if isinstance(tree, _Singleton):
        return tree._symbol
    raise TypeError(f"not a name tree: {tree!r}")


NameTree.Leaf = Leaf
NameTree.Alt = Alt
NameTree.Union = Union
NameTree.Weighted = Weighted
NameTree.Neg = Neg
NameTree.Fail = Fail
NameTree.Empty = Empty
