"""Binding: Finagle's ``Namer.bind`` as a pure function over the namers' answers.

``bind(dtab, path, namers)`` rewrites ``path`` through ``dtab`` and the namers until
every leaf is a :class:`Bound` name, and returns the bound tree's current state
together with the set of paths it asked the namers about.  The trio layer keeps the
namers' answers live and calls ``bind`` again when one of those answers changes.

The lookup of one path (Linkerd's ``ConfiguredNamersInterpreter``): the dtab first;
only if it has no matching dentry (Neg) are the namers asked.

The rules (dtab-spec section 4.3):

- a path leaf is looked up, and the result bound one level deeper; more than
  ``max_depth`` levels fail with ``Max recursion level: 100 reached in Namer lookup``;
- a bound leaf is kept, with the weight of the nearest enclosing union;
- an Alt binds its children in order, lazily: Pending or Failed stop it, Fail
  ends it, Neg falls through to the next child, anything else wins;
- a Union binds every child; with any child Ok the result is the simplified union of
  the Ok children (Neg, Fail and failed children are dropped); with none Ok, the
  first failure, or Pending.

The result never contains Alt nodes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import attrs

from ..errors import BindDepthExceeded, BindingBudgetExceeded
from ._addr import Addr, AddrFailed, Bound, all_addr
from ._dtab import Dtab
from ._path import Path
from ._state import Failed, Ok, Pending, State
from ._tree import Alt, Empty, Fail, Leaf, NameTree, Neg, Union, Weighted

Name = Path | Bound
NamerLookup = Callable[[Path], State[NameTree[Name]]]

MAX_DEPTH = 100
#: A single binding may make at most this many lookups, and its result may hold at
#: most this many leaves.  Finagle has neither limit; they keep a union-heavy dtab
#: loop (each level doubling the work) from hanging the router.
MAX_LOOKUPS = 2_000
MAX_LEAVES = 2_000


@attrs.frozen
class BindResult:
    """The state of a binding and the paths it asked the namers about."""

    state: State[NameTree[Bound]]
    deps: frozenset[Path]


def depth_error(max_depth: int) -> BindDepthExceeded:
    return BindDepthExceeded(f"Max recursion level: {max_depth} reached in Namer lookup")


class _Abort(Exception):
    """A budget ran out: the binding as a whole fails (no partial union survives)."""

    def __init__(self, exc: BindingBudgetExceeded) -> None:
        self.exc = exc


class _Binder:
    __slots__ = ("deps", "dtab", "lookups", "max_depth", "max_lookups", "memo", "namers", "sizes")

    def __init__(self, dtab: Dtab, namers: NamerLookup, max_depth: int, max_lookups: int):
        self.dtab = dtab
        self.namers = namers
        self.max_depth = max_depth
        self.max_lookups = max_lookups
        self.deps: set[Path] = set()
        self.lookups = 0
        self.memo: dict[tuple[Path, int, float | None], State[NameTree[Bound]]] = {}
        # leaves of the union results built so far (results share subtrees); the
        # tree is kept beside its size so that its id cannot be reused meanwhile
        self.sizes: dict[int, tuple[NameTree[Bound], int]] = {}

    def size(self, tree: NameTree[Bound]) -> int:
        if isinstance(tree, Union):
            return self.sizes.get(id(tree), (tree, len(tree.trees)))[1]
        return 1

    def lookup(self, path: Path) -> State[NameTree[Name]]:
        t = self.dtab.lookup(path)
        if t is not Neg:
            return Ok(t)
        self.deps.add(path)
        return self.namers(path)

    def bind(
        self, tree: NameTree[Name], depth: int, weight: float | None
    ) -> State[NameTree[Bound]]:
        if depth > self.max_depth:
            return Failed(depth_error(self.max_depth))
        if isinstance(tree, Leaf):
            v = tree.value
            if isinstance(v, Bound):
                return Ok(Leaf(v.with_weight(weight)))
            key = (v, depth, weight)
            memo = self.memo.get(key)
            if memo is not None:
                return memo
            self.lookups += 1
            if self.lookups > self.max_lookups:
                raise _Abort(
                    BindingBudgetExceeded(f"binding needed more than {self.max_lookups} lookups")
                )
            looked = self.lookup(v)
            res = self.bind(looked.value, depth + 1, weight) if isinstance(looked, Ok) else looked
            self.memo[key] = res
            return res
        if tree is Neg or tree is Fail or tree is Empty:
            return Ok(tree)  # type: ignore[arg-type]
        if isinstance(tree, Union):
            ws = tree.trees
            if not ws:
                return Ok(Neg)
            if len(ws) == 1:
                return self.bind(ws[0].tree, depth, ws[0].weight)
            oks: list[Weighted[Bound]] = []
            first_failed: Failed | None = None
            for w in ws:
                st = self.bind(w.tree, depth, w.weight)
                if isinstance(st, Ok):
                    oks.append(Weighted(w.weight, st.value))
                elif isinstance(st, Failed) and first_failed is None:
                    first_failed = st
            if oks:
                # The children are bound, hence already simplified: only this level
                # needs it (re-simplifying shared subtrees would cost exponential time).
                kept = [w for w in oks if w.tree is not Neg and w.tree is not Fail]
                if not kept:
                    return Ok(Neg)
                if len(kept) == 1:
                    return Ok(kept[0].tree)
                leaves = sum(self.size(w.tree) for w in kept)
                if leaves > MAX_LEAVES:
                    raise _Abort(
                        BindingBudgetExceeded(f"bound tree has more than {MAX_LEAVES} leaves")
                    )
                u = Union(*kept)
                self.sizes[id(u)] = (u, leaves)
                return Ok(u)
            if first_failed is not None:
                return first_failed
            return Pending
        if isinstance(tree, Alt):
            ts = tree.trees
            if not ts:
                return Ok(Neg)
            if len(ts) == 1:
                return self.bind(ts[0], depth, weight)
            for t in ts:
                st = self.bind(t, depth, weight)
                if not isinstance(st, Ok):
                    return st
                if st.value is Neg:
                    continue
                return st
            return Ok(Neg)
        raise TypeError(f"not a name tree: {tree!r}")


def bind(
    dtab: Dtab,
    name: Path | NameTree[Path],
    namers: NamerLookup,
    *,
    max_depth: int = MAX_DEPTH,
    max_lookups: int = MAX_LOOKUPS,
) -> BindResult:
    """Bind a path (or a tree of paths) through ``dtab`` and ``namers``."""
    b = _Binder(dtab, namers, max_depth, max_lookups)
    tree: NameTree[Name] = Leaf(name) if isinstance(name, Path) else name
    try:
        state = b.bind(tree, 0, None)
    except _Abort as e:
        state = Failed(e.exc)
    return BindResult(state, frozenset(b.deps))


def resolve(state: State[NameTree[Bound]]) -> Addr:
    """Finagle's ``Namer.resolve``: flatten a bound tree's state into one Addr."""
    if state is Pending:
        return Addr.Pending
    if isinstance(state, Failed):
        return AddrFailed(state.exc)
    assert isinstance(state, Ok)
    names = state.value.eval()
    if names is None:
        return Addr.Neg
    return all_addr([b.sample() for b in names])


def chain_namers(namers: Sequence[tuple[Path, NamerLookup]], fallback: NamerLookup) -> NamerLookup:
    """Linkerd's configured-namer lookup.

    The namers whose prefix the path starts with are asked in order with the rest of
    the path; a Neg answer falls through to the next one, any other answer (Pending
    and Failed included) is the result.  When every namer said Neg (or none matched)
    ``fallback`` -- the system namers -- answers.
    """

    def lookup(path: Path) -> State[NameTree[Name]]:
        for prefix, namer in namers:
            if path.startswith(prefix):
                st = namer(path.drop(len(prefix.elems)))
                if isinstance(st, Ok) and st.value is Neg:
                    continue
                return st
        return fallback(path)

    return lookup
