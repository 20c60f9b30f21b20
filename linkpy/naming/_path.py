"""Path: an ordered sequence of non-empty byte-string elements.

Grammar (read by :meth:`Path.read`)::

    path   ::= ws* '/' [ label ( '/' label )* ] ws*
    label  ::= ( showable-char | '\\x' HEX HEX )+

Showable characters are ``0-9 A-Z a-z`` and ``_ : . # $ % -``.  An element whose bytes
are all showable prints as is; any other element prints every byte as ``\\xNN``.
The empty path prints as ``/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import attrs

SHOWABLE: frozenset[int] = frozenset(
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_:.#$%-"
)
SHOWABLE_CHARS: frozenset[str] = frozenset(chr(b) for b in SHOWABLE)


def show_elem(elem: bytes) -> str:
    """Print one element as Finagle does."""
    if all(b in SHOWABLE for b in elem):
        return elem.decode("ascii")
    return "".join(f"\\x{b:02x}" for b in elem)


@attrs.frozen(cache_hash=True, repr=False)
class Path:
    """A path such as ``/svc/users``; elements are bytes and compare byte for byte."""

    elems: tuple[bytes, ...]

    empty: ClassVar[Path]

    # -- construction ---------------------------------------------------------

    @classmethod
    def read(cls, s: str) -> Path:
        """Parse the concrete syntax; raises :class:`~linkpy.errors.ParseError`."""
        from ._parse import parse_path

        return parse_path(s)

    @classmethod
    def utf8(cls, *elems: str) -> Path:
        """Build a path from text elements (encoded as UTF-8); none may be empty."""
        encoded = tuple(e.encode("utf-8") for e in elems)
        if not all(encoded):
            raise ValueError("path elements must be non-empty")
        return cls(encoded)

    @classmethod
    def of(cls, *elems: bytes) -> Path:
        """Build a path from byte elements; none may be empty."""
        if not all(elems):
            raise ValueError("path elements must be non-empty")
        return cls(tuple(elems))

    # -- printing -------------------------------------------------------------

    def show(self) -> str:
        if not self.elems:
            return "/"
        return "/" + "/".join([show_elem(e) for e in self.elems])

    def __str__(self) -> str:
        return self.show()

    def __repr__(self) -> str:
        return f"Path.read({self.show()!r})"

    # -- structure ------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.elems)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.elems)

    def __bool__(self) -> bool:
        # A path is a value, not a container: the empty path is still a path.
        return True

    @property
    def size(self) -> int:
        return len(self.elems)

    @property
    def is_empty(self) -> bool:
        return not self.elems

    def take(self, n: int) -> Path:
        return Path(self.elems[:n]) if n < len(self.elems) else self

    def drop(self, n: int) -> Path:
        if n <= 0:
            return self
        return Path(self.elems[n:])

    def startswith(self, other: Path) -> bool:
        """Whole-element prefix test."""
        n = len(other.elems)
        return n <= len(self.elems) and self.elems[:n] == other.elems

    def concat(self, other: Path) -> Path:
        if not other.elems:
            return self
        if not self.elems:
            return other
        return Path(self.elems + other.elems)

    def __add__(self, other: Path) -> Path:
        return self.concat(other)

    def texts(self) -> tuple[str, ...]:
        """The elements decoded as UTF-8 (undecodable bytes are replaced)."""
        return tuple(e.decode("utf-8", "replace") for e in self.elems)


Path.empty = Path(())
