"""Delegation: the explanation of a binding, as Linkerd's ``/delegator.json`` shows it.

Unlike :func:`~linkpy.naming.bind`, the delegator explores every branch of every Alt
and records, at each node, the path being resolved and the dentry that produced it
(Linkerd's ``DelegateTree`` and ``ConfiguredNamersInterpreter.delegate``; dtab-spec
section 6).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import attrs

from ..errors import NamingError
from ._addr import Addr, AddrBound, AddrFailed, Bound
from ._dtab import Dentry, Dtab, _rewrite
from ._path import Path
from ._state import Failed, Ok, Pending, State
from ._tree import Alt, Empty, Fail, Leaf, NameTree, Neg, Union

Name = Path | Bound
NamerLookup = Callable[[Path], State[NameTree[Name]]]

MAX_DEPTH = 100


class DelegationDepthExceeded(NamingError):
    """The delegator followed more than 100 rewrites."""


@attrs.frozen
class DException:
    path: Path
    dentry: Dentry
    exc: BaseException = attrs.field(eq=False)


@attrs.frozen
class DEmpty:
    path: Path
    dentry: Dentry


@attrs.frozen
class DFail:
    path: Path
    dentry: Dentry


@attrs.frozen
class DNeg:
    path: Path
    dentry: Dentry


@attrs.frozen
class DDelegate:
    path: Path
    dentry: Dentry
    tree: DelegateTree


@attrs.frozen
class DLeaf:
    path: Path
    dentry: Dentry
    value: Name


@attrs.frozen(init=False)
class DAlt:
    path: Path
    dentry: Dentry
    trees: tuple[DelegateTree, ...]

    def __init__(self, path: Path, dentry: Dentry, *trees: DelegateTree) -> None:
        self.__attrs_init__(path, dentry, tuple(trees))


@attrs.frozen
class DWeighted:
    weight: float
    tree: DelegateTree


@attrs.frozen(init=False)
class DUnion:
    path: Path
    dentry: Dentry
    trees: tuple[DWeighted, ...]

    def __init__(self, path: Path, dentry: Dentry, *trees: DWeighted) -> None:
        self.__attrs_init__(path, dentry, tuple(trees))


@attrs.frozen
class DTransformation:
    """A transformer rewrote a bound leaf: ``value`` before, ``tree`` after."""

    path: Path
    name: str
    value: Bound
    tree: DelegateTree


DelegateTree = (
    DException | DEmpty | DFail | DNeg | DDelegate | DLeaf | DAlt | DUnion | DTransformation
)


def with_dentry(t: DelegateTree, dentry: Dentry) -> DelegateTree:
    if isinstance(t, DTransformation):
        return t
    if isinstance(t, DAlt):
        return DAlt(t.path, dentry, *t.trees)
    if isinstance(t, DUnion):
        return DUnion(t.path, dentry, *t.trees)
    return attrs.evolve(t, dentry=dentry)


def from_name_tree(path: Path, dentry: Dentry, names: NameTree[Name]) -> DelegateTree:
    if names is Empty:
        return DEmpty(path, dentry)
    if names is Fail:
        return DFail(path, dentry)
    if names is Neg:
        return DNeg(Path.empty, dentry)
    if isinstance(names, Leaf):
        return DLeaf(path, dentry, names.value)
    if isinstance(names, Alt):
        return DAlt(path, dentry, *(from_name_tree(path, dentry, t) for t in names.trees))
    if isinstance(names, Union):
        return DUnion(
            path,
            dentry,
            *(DWeighted(w.weight, from_name_tree(path, dentry, w.tree)) for w in names.trees),
        )
    raise TypeError(f"not a name tree: {names!r}")


class _PendingLookup(BaseException):
    """A namer has not answered yet: the delegation as a whole is Pending."""


class _Delegator:
    def __init__(self, dtab: Dtab, namers: NamerLookup, max_depth: int) -> None:
        self.dtab = dtab
        self.namers = namers
        self.max_depth = max_depth
        self.deps: set[Path] = set()

    def lookup(self, dentry: Dentry, path: Path) -> DelegateTree:
        matches: list[DelegateTree] = []
        pe = path.elems
        for d in reversed(self.dtab.dentries):
            if d.prefix.matches(path):
                suffix = Path(pe[len(d.prefix.elems) :])
                matches.append(from_name_tree(path, d, _rewrite(d.dst, suffix)))
        if len(matches) == 1:
            return DDelegate(path, dentry, matches[0])
        if matches:
            return DAlt(path, dentry, *matches)
        self.deps.add(path)
        try:
            st = self.namers(path)
        except Exception as e:  # a namer that throws is shown, not propagated
            return DException(path, dentry, e)
        if st is Pending:
            raise _PendingLookup()
        if isinstance(st, Failed):
            return DException(path, dentry, st.exc)
        assert isinstance(st, Ok)
        if st.value is Neg:
            return DNeg(path, dentry)
        return from_name_tree(path, dentry, st.value)

    def bind(self, tree: DelegateTree, depth: int) -> DelegateTree:
        if depth > self.max_depth:
            raise DelegationDepthExceeded("Max recursion level reached.")
        if isinstance(tree, DLeaf):
            v = tree.value
            if isinstance(v, Bound):
                return tree
            return self.bind(self.lookup(tree.dentry, v), depth + 1)
        if isinstance(tree, DDelegate):
            return DDelegate(tree.path, tree.dentry, self.bind(tree.tree, depth))
        if isinstance(tree, DAlt):
            if not tree.trees:
                return DNeg(tree.path, tree.dentry)
            if len(tree.trees) == 1:
                return DDelegate(tree.path, tree.dentry, self.bind(tree.trees[0], depth))
            return DAlt(tree.path, tree.dentry, *(self.branch(tree, t, depth) for t in tree.trees))
        if isinstance(tree, DUnion):
            if not tree.trees:
                return DNeg(tree.path, tree.dentry)
            if len(tree.trees) == 1:
                return DDelegate(tree.path, tree.dentry, self.bind(tree.trees[0].tree, depth))
            return DUnion(
                tree.path,
                tree.dentry,
                *(DWeighted(w.weight, self.branch(tree, w.tree, depth)) for w in tree.trees),
            )
        if isinstance(tree, DTransformation):
            return DTransformation(tree.path, tree.name, tree.value, self.bind(tree.tree, depth))
        return tree  # Exception, Empty, Fail, Neg

    def branch(self, parent: DAlt | DUnion, t: DelegateTree, depth: int) -> DelegateTree:
        try:
            return self.bind(t, depth)
        except Exception as e:
            return DException(parent.path, parent.dentry, e)


@attrs.frozen
class DelegateResult:
    """The state of a delegation, and the paths it asked the namers about."""

    state: State[DelegateTree]
    deps: frozenset[Path]


def delegate(
    dtab: Dtab,
    path: Path,
    namers: NamerLookup,
    *,
    max_depth: int = MAX_DEPTH,
    transform: Callable[[DelegateTree], DelegateTree] | None = None,
) -> DelegateResult:
    """Explain how ``path`` binds through ``dtab`` and ``namers``.

    Pending while any namer it asked has not answered; Failed if the delegation as a
    whole went too deep.  ``transform`` rewrites bound leaves (transformers).
    """
    d = _Delegator(dtab, namers, max_depth)
    root = DLeaf(Path.empty, Dentry.nop, path)
    try:
        tree = d.bind(root, 0)
    except _PendingLookup:
        return DelegateResult(Pending, frozenset(d.deps))
    except NamingError as e:
        return DelegateResult(Failed(e), frozenset(d.deps))
    if transform is not None:
        tree = transform(tree)
    return DelegateResult(Ok(simplify_delegate(tree)), frozenset(d.deps))


def simplify_delegate(tree: DelegateTree) -> DelegateTree:
    """Linkerd's ``DelegateTree.simplify``."""
    if isinstance(tree, DDelegate):
        s = simplify_delegate(tree.tree)
        if not isinstance(s, (DNeg, DFail, DEmpty)) and s.path == tree.path:
            return with_dentry(s, tree.dentry)
        return DDelegate(tree.path, tree.dentry, s)
    if isinstance(tree, DAlt):
        if not tree.trees:
            return DNeg(tree.path, tree.dentry)
        if len(tree.trees) == 1:
            return simplify_delegate(DDelegate(tree.path, tree.dentry, tree.trees[0]))
        out: list[DelegateTree] = []
        for t in tree.trees:
            s = simplify_delegate(t)
            if isinstance(s, DAlt) and s.path == tree.path:
                out.extend(s.trees)
            else:
                out.append(s)
        return DAlt(tree.path, tree.dentry, *out)
    if isinstance(tree, DUnion):
        if not tree.trees:
            return DNeg(tree.path, tree.dentry)
        if len(tree.trees) == 1:
            return simplify_delegate(DDelegate(tree.path, tree.dentry, tree.trees[0].tree))
        return DUnion(
            tree.path,
            tree.dentry,
            *(DWeighted(w.weight, simplify_delegate(w.tree)) for w in tree.trees),
        )
    return tree


def delegate_leaves(tree: DelegateTree) -> list[Bound]:
    """Every bound name in the tree, left to right."""
    out: list[Bound] = []

    def walk(t: DelegateTree) -> None:
        if isinstance(t, DLeaf) and isinstance(t.value, Bound):
            out.append(t.value)
        elif isinstance(t, (DDelegate, DTransformation)):
            if isinstance(t, DTransformation):
                out.append(t.value)
            walk(t.tree)
        elif isinstance(t, DAlt):
            for c in t.trees:
                walk(c)
        elif isinstance(t, DUnion):
            for w in t.trees:
                walk(w.tree)

    walk(tree)
    return out


# --- JSON ---------------------------------------------------------------------

_FAIL_PREFIX = Path.utf8("$", "fail")


def addr_json(addr: Addr) -> dict[str, Any]:
    if isinstance(addr, AddrBound):
        addrs = []
        for a in sorted(addr.addresses, key=lambda a: (a.host, a.port)):
            ip = a.ip
            if ip is None:
                continue  # only resolved Inet addresses are listed
            meta: dict[str, Any] = a.metadata.to_dict()
            if a.weight != 1.0:
                meta["endpoint_addr_weight"] = a.weight
            addrs.append({"ip": ip, "port": a.port, "meta": meta})
        return {"type": "bound", "addrs": addrs, "meta": addr.metadata.to_dict()}
    if isinstance(addr, AddrFailed):
        return {"type": "failed", "cause": addr.message}
    if addr is Addr.Neg:
        return {"type": "neg"}
    return {"type": "pending"}


def _dentry_json(d: Dentry) -> dict[str, str]:
    return {"prefix": d.prefix.show(), "dst": d.dst.show()}


def _with_dentry(obj: dict[str, Any], d: Dentry) -> dict[str, Any]:
    if d != Dentry.nop:
        obj["dentry"] = _dentry_json(d)
    return obj


def bound_json(path: Path, b: Bound, addr: Addr) -> dict[str, Any]:
    id_ = b.id.show() if isinstance(b.id, Path) else path.show()
    return {"addr": addr_json(addr), "id": id_, "path": b.residual.show()}


def delegate_json(
    tree: DelegateTree, addr_of: Callable[[Bound], Addr] | None = None
) -> dict[str, Any]:
    """The ``/delegator.json`` object of a delegate tree (fields in Linkerd's order).

    ``addr_of`` gives the Addr shown for a bound name (default: its current sample).
    """
    sample = addr_of or (lambda b: b.sample())

    def mk(t: DelegateTree) -> dict[str, Any]:
        if isinstance(t, DException):
            o = _with_dentry({"type": "exception", "path": t.path.show()}, t.dentry)
            o["message"] = str(t.exc)
            return o
        if isinstance(t, DEmpty):
            return _with_dentry({"type": "empty", "path": t.path.show()}, t.dentry)
        if isinstance(t, DFail):
            p = t.path.show() if t.path.startswith(_FAIL_PREFIX) else "!"
            return _with_dentry({"type": "fail", "path": p}, t.dentry)
        if isinstance(t, DNeg):
            p = "~" if not t.path.elems else t.path.show()
            return _with_dentry({"type": "neg", "path": p}, t.dentry)
        if isinstance(t, DDelegate):
            o = _with_dentry({"type": "delegate", "path": t.path.show()}, t.dentry)
            o["delegate"] = mk(t.tree)
            return o
        if isinstance(t, DAlt):
            o = _with_dentry({"type": "alt", "path": t.path.show()}, t.dentry)
            o["alt"] = [mk(c) for c in t.trees]
            return o
        if isinstance(t, DUnion):
            o = _with_dentry({"type": "union", "path": t.path.show()}, t.dentry)
            o["union"] = [{"weight": w.weight, "tree": mk(w.tree)} for w in t.trees]
            return o
        if isinstance(t, DLeaf):
            o = _with_dentry({"type": "leaf", "path": t.path.show()}, t.dentry)
            v = t.value
            if isinstance(v, Bound):
                o["bound"] = bound_json(t.path, v, sample(v))
            return o
        if isinstance(t, DTransformation):
            return {
                "type": "transformation",
                "path": t.path.show(),
                "name": t.name,
                "bound": bound_json(t.path, t.value, sample(t.value)),
                "tree": mk(t.tree),
            }
        raise TypeError(f"not a delegate tree: {t!r}")

    return mk(tree)


def dumps(obj: Any) -> str:
    """Compact JSON, as Jackson writes it."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
