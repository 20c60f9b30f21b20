"""Prefix, Dentry and Dtab: delegation tables.

Grammar::

    dtab     ::= [ dentry ] ( ';' [ dentry ] )*   -- no leading ';', no ';;'
    dentry   ::= prefix '=>' tree
    prefix   ::= '/' [ pelem ( '/' pelem )* ]
    pelem    ::= '*' | label

``Dtab.lookup(path)`` walks the dentries from last to first and collects the
rewritten destination of every dentry whose prefix matches: none gives ``Neg``, one
gives its tree, several give an ``Alt`` (later dentries first).  Elements matched by
the prefix (``*`` included) are consumed; the rest of the path is appended to every
leaf of the destination.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar, Final

import attrs

from ._path import Path, show_elem
from ._tree import Alt, Fail, Leaf, NameTree, Neg, Union, Weighted, simplify


class _AnyElem:
    """The ``*`` wildcard of a dentry prefix."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ANY"

    def __reduce__(self) -> str:
        return "ANY"


ANY: Final = _AnyElem()

PrefixElem = bytes | _AnyElem


@attrs.frozen(cache_hash=True, repr=False)
class Prefix:
    """A dentry prefix: path elements, any of which may be the wildcard ``*``."""

    elems: tuple[PrefixElem, ...]

    empty: ClassVar[Prefix]

    @classmethod
    def read(cls, s: str) -> Prefix:
        from ._parse import parse_prefix

        return parse_prefix(s)

    @classmethod
    def from_path(cls, path: Path) -> Prefix:
        return cls(path.elems)

    @property
    def size(self) -> int:
        return len(self.elems)

    def __len__(self) -> int:
        return len(self.elems)

    def __bool__(self) -> bool:
        return True

    def matches(self, path: Path) -> bool:
        elems = self.elems
        pe = path.elems
        if len(elems) > len(pe):
            return False
        for i, e in enumerate(elems):
            if e is not ANY and e != pe[i]:
                return False
        return True

    def show(self) -> str:
        if not self.elems:
            return "/"
        return "/" + "/".join(
            ["*" if e is ANY else show_elem(e) for e in self.elems]  # type: ignore[arg-type]
        )

    def __str__(self) -> str:
        return self.show()

    def __repr__(self) -> str:
        return f"Prefix.read({self.show()!r})"


Prefix.empty = Prefix(())


@attrs.frozen(cache_hash=True, repr=False)
class Dentry:
    """One delegation rule ``prefix => dst``."""

    prefix: Prefix
    dst: NameTree[Path]

    nop: ClassVar[Dentry]

    @classmethod
    def read(cls, s: str) -> Dentry:
        from ._parse import parse_dentry

        return parse_dentry(s)

    def show(self) -> str:
        return f"{self.prefix.show()}=>{self.dst.show()}"

    def __str__(self) -> str:
        return self.show()

    def __repr__(self) -> str:
        return f"Dentry.read({self.show()!r})"


#: The "no dentry" marker of delegate trees: a prefix no syntax can write.
Dentry.nop = Dentry(Prefix((b"/",)), Neg)


def _rewrite(dst: NameTree[Path], suffix: Path) -> NameTree[Path]:
    if not suffix.elems:
        return dst
    if isinstance(dst, Leaf):
        return Leaf(dst.value.concat(suffix))
    if isinstance(dst, Alt):
        return Alt(*(_rewrite(t, suffix) for t in dst.trees))
    if isinstance(dst, Union):
        return Union(*(Weighted(w.weight, _rewrite(w.tree, suffix)) for w in dst.trees))
    return dst


class _Node:
    """A node of the prefix trie that ``Dtab.lookup`` walks."""

    __slots__ = ("any", "children", "ends")

    def __init__(self) -> None:
        self.children: dict[bytes, _Node] = {}
        self.any: _Node | None = None
        self.ends: list[int] = []  # indices of the dentries whose prefix ends here


def _trie(dentries: tuple[Dentry, ...]) -> _Node:
    root = _Node()
    for i, d in enumerate(dentries):
        node = root
        for e in d.prefix.elems:
            if isinstance(e, bytes):
                child = node.children.get(e)
                if child is None:
                    child = node.children[e] = _Node()
            else:
                child = node.any
                if child is None:
                    child = node.any = _Node()
            node = child
        node.ends.append(i)
    return root


@attrs.frozen(cache_hash=True, repr=False)
class Dtab:
    """An ordered list of dentries.  ``a + b`` appends b's dentries after a's."""

    dentries: tuple[Dentry, ...]
    # built on the first lookup
    _trie: _Node | None = attrs.field(default=None, init=False, eq=False, hash=False, repr=False)

    empty: ClassVar[Dtab]
    fail: ClassVar[Dtab]

    @classmethod
    def read(cls, s: str) -> Dtab:
        """Parse a dtab; raises :class:`~linkpy.errors.ParseError`."""
        from ._parse import parse_dtab

        return parse_dtab(s)

    @classmethod
    def of(cls, *dentries: Dentry) -> Dtab:
        return cls(tuple(dentries))

    def show(self) -> str:
        return ";".join(d.show() for d in self.dentries)

    def __str__(self) -> str:
        return self.show()

    def __repr__(self) -> str:
        return f"Dtab.read({self.show()!r})"

    def __len__(self) -> int:
        return len(self.dentries)

    def __bool__(self) -> bool:
        return True

    def __iter__(self) -> Iterator[Dentry]:
        return iter(self.dentries)

    def __getitem__(self, i: int) -> Dentry:
        return self.dentries[i]

    def __add__(self, other: Dtab | Dentry) -> Dtab:
        if isinstance(other, Dentry):
            return Dtab(self.dentries + (other,))
        if not other.dentries:
            return self
        if not self.dentries:
            return other
        return Dtab(self.dentries + other.dentries)

    def concat(self, other: Dtab) -> Dtab:
        return self + other

    def lookup(self, path: Path) -> NameTree[Path]:
        """Rewrite ``path`` through every matching dentry (last first)."""
        trie = self._trie
        if trie is None:
            trie = _trie(self.dentries)
            object.__setattr__(self, "_trie", trie)
        pe = path.elems
        # (dentry index, prefix length) of every matching dentry
        found = [(i, 0) for i in trie.ends]
        active = [trie]
        for j, e in enumerate(pe):
            nxt = []
            for node in active:
                child = node.children.get(e)
                if child is not None:
                    nxt.append(child)
                if node.any is not None:
                    nxt.append(node.any)
            if not nxt:
                break
            for node in nxt:
                for i in node.ends:
                    found.append((i, j + 1))
            active = nxt
        if not found:
            return Neg
        found.sort(reverse=True)  # the last dentry first
        dentries = self.dentries
        n = len(pe)
        matches: list[NameTree[Path]] = [
            _rewrite(dentries[i].dst, Path(pe[k:]) if k < n else Path.empty) for i, k in found
        ]
        if not matches:
            return Neg
        if len(matches) == 1:
            return matches[0]
        return Alt(*matches)

    def strip_prefix(self, prefix: Dtab) -> Dtab:
        """Drop a leading run of dentries equal to ``prefix``'s."""
        if self is prefix:
            return Dtab.empty
        if not prefix.dentries:
            return self
        n = len(prefix.dentries)
        if self.dentries[:n] == prefix.dentries:
            return Dtab(self.dentries[n:])
        return self

    def simplified(self) -> Dtab:
        """Simplify each destination and drop the dentries that become Neg."""
        out = []
        for d in self.dentries:
            s = simplify(d.dst)
            if s is not Neg:
                out.append(Dentry(d.prefix, s))
        return Dtab(tuple(out))


Dtab.empty = Dtab(())
Dtab.fail = Dtab((Dentry(Prefix.empty, Fail),))
