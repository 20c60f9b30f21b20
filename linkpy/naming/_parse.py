"""The one parser of paths, prefixes, name trees, dentries and dtabs.

A recursive-descent parser without backtracking, a faithful port of Finagle's
``NameTreeParsers`` so that every input parses to the same value, and every bad
input fails with the same message::

    <expected> expected but <found> found at '<input with the offending char in [ ]>'

Whitespace is Java's ``Character.isWhitespace``; wherever whitespace is skipped, ``#``
starts a comment that runs to the end of the line.
"""

from __future__ import annotations

import re
import unicodedata

from ..errors import ParseError
from ._dtab import ANY, Dentry, Dtab, Prefix, PrefixElem
from ._path import SHOWABLE_CHARS, Path
from ._tree import DEFAULT_WEIGHT, Alt, Empty, Fail, Leaf, NameTree, Neg, Union, Weighted

_EOI = "\uffff"
_SHOWABLE_RUN = re.compile(r"[0-9A-Za-z_:.#$%-]+")
_HEX = frozenset("0123456789ABCDEFabcdef")
_JAVA_SPACE_EXCLUDED = frozenset("\u00a0\u2007\u202f")
_JAVA_SPACE_CONTROLS = frozenset("\t\n\x0b\f\r\x1c\x1d\x1e\x1f")
#: Parentheses may nest this deep; deeper input is refused rather than overflowing
#: the interpreter's stack.
MAX_NESTING = 100


def java_is_whitespace(c: str) -> bool:
    """``java.lang.Character.isWhitespace`` for one character."""
    if c in _JAVA_SPACE_CONTROLS:
        return True
    if c in _JAVA_SPACE_EXCLUDED:
        return False
    return unicodedata.category(c) in ("Zs", "Zl", "Zp")


def _java_is_digit(c: str) -> bool:
    return c != _EOI and unicodedata.category(c) == "Nd"


def _is_label_char(c: str) -> bool:
    return c in SHOWABLE_CHARS or c == "\\"


def _is_prefix_elem_char(c: str) -> bool:
    return _is_label_char(c) or c == "*"


def _is_number_char(c: str) -> bool:
    return c == "." or _java_is_digit(c)


class _Parser:
    __slots__ = ("idx", "nesting", "s", "size")

    def __init__(self, s: str) -> None:
        self.s = s
        self.idx = 0
        self.size = len(s)
        self.nesting = 0

    # -- errors ---------------------------------------------------------------

    @staticmethod
    def _char(c: str) -> str:
        return "end of input" if c == _EOI else f"'{c}'"

    def display(self) -> str:
        s, i = self.s, self.idx
        if self.at_end():
            return f"{s}[]"
        return f"{s[:i]}[{s[i]}]{s[i + 1 :]}"

    def illegal(self, expected: str, found: str) -> ParseError:
        return ParseError(f"{expected} expected but {found} found at '{self.display()}'")

    # -- scanning -------------------------------------------------------------

    def at_end(self) -> bool:
        return self.idx >= self.size

    def peek(self) -> str:
        return _EOI if self.idx >= self.size else self.s[self.idx]

    def maybe_eat(self, c: str) -> bool:
        if self.peek() != c:
            return False
        self.idx += 1
        return True

    def eat(self, c: str) -> None:
        if not self.maybe_eat(c):
            raise self.illegal(self._char(c), self._char(self.peek()))

    def eat_whitespace(self) -> None:
        s = self.s
        while self.idx < self.size:
            c = s[self.idx]
            if c == "#":
                self.eat_line()
            elif c == " " or c == "\n" or java_is_whitespace(c):
                self.idx += 1
            else:
                break

    def eat_line(self) -> None:
        nl = self.s.find("\n", self.idx)
        self.idx = self.size if nl < 0 else nl + 1

    def ensure_end(self) -> None:
        if not self.at_end():
            raise self.illegal("end of input", self._char(self.peek()))

    # -- labels and paths -----------------------------------------------------

    def parse_hex_char(self) -> str:
        c = self.peek()
        if c in _HEX:
            self.idx += 1
            return c
        raise self.illegal("hex char", self._char(c))

    def parse_label(self) -> bytes:
        m = _SHOWABLE_RUN.match(self.s, self.idx)
        if m is not None:
            end = m.end()
            if end >= self.size or self.s[end] != "\\":
                self.idx = end  # the common case: a plain label
                return m.group().encode("ascii")
        out = bytearray()
        while True:
            c = self.peek()
            if c in SHOWABLE_CHARS:
                self.idx += 1
                out.append(ord(c))
            elif c == "\\":
                self.idx += 1
                self.eat("x")
                hi = self.parse_hex_char()
                lo = self.parse_hex_char()
                out.append(int(hi + lo, 16))
            else:
                raise self.illegal("label char", self._char(c))
            if not _is_label_char(self.peek()):
                return bytes(out)

    def parse_path(self) -> Path:
        self.eat_whitespace()
        self.eat("/")
        if not _is_label_char(self.peek()):
            return Path.empty
        labels = [self.parse_label()]
        while self.maybe_eat("/"):
            labels.append(self.parse_label())
        return Path(tuple(labels))

    def parse_prefix_elem(self) -> PrefixElem:
        if self.peek() == "*":
            self.idx += 1
            return ANY
        return self.parse_label()

    def parse_prefix(self) -> Prefix:
        self.eat_whitespace()
        self.eat("/")
        if not _is_prefix_elem_char(self.peek()):
            return Prefix.empty
        elems = [self.parse_prefix_elem()]
        while self.maybe_eat("/"):
            elems.append(self.parse_prefix_elem())
        return Prefix(tuple(elems))

    # -- trees ----------------------------------------------------------------

    def parse_number(self) -> float:
        start = self.idx
        seen_dot = False
        while _is_number_char(self.peek()):
            if self.peek() == ".":
                if seen_dot:
                    raise self.illegal("number char", self._char("."))
                seen_dot = True
            self.idx += 1
        text = self.s[start : self.idx]
        if text == ".":
            raise self.illegal("weight", self._char("."))
        if not text.replace(".", "").isascii():
            # Java's Double.parseDouble accepts only ASCII digits.
            raise ParseError(f'For input string: "{text}"')
        return float(text)

    def parse_tree(self) -> NameTree[Path]:
        trees = [self.parse_tree1()]
        self.eat_whitespace()
        while self.maybe_eat("|"):
            trees.append(self.parse_tree1())
            self.eat_whitespace()
        if len(trees) > 1:
            return Alt(*trees)
        return trees[0]

    def parse_tree1(self) -> NameTree[Path]:
        trees = [self.parse_weighted()]
        self.eat_whitespace()
        while self.maybe_eat("&"):
            trees.append(self.parse_weighted())
            self.eat_whitespace()
        if len(trees) > 1:
            return Union(*trees)
        return trees[0].tree

    def parse_weighted(self) -> Weighted[Path]:
        self.eat_whitespace()
        if not _is_number_char(self.peek()):
            weight = DEFAULT_WEIGHT
        else:
            weight = self.parse_number()
            self.eat_whitespace()
            self.eat("*")
            self.eat_whitespace()
        return Weighted(weight, self.parse_simple())

    def parse_simple(self) -> NameTree[Path]:
        self.eat_whitespace()
        c = self.peek()
        if c == "(":
            if self.nesting >= MAX_NESTING:
                raise ParseError(
                    f"parentheses nested deeper than {MAX_NESTING} at '{self.display()}'"
                )
            self.idx += 1
            self.nesting += 1
            tree = self.parse_tree()
            self.eat_whitespace()
            self.eat(")")
            self.nesting -= 1
            return tree
        if c == "/":
            return Leaf(self.parse_path())
        if c == "!":
            self.idx += 1
            return Fail
        if c == "~":
            self.idx += 1
            return Neg
        if c == "$":
            self.idx += 1
            return Empty
        raise self.illegal("simple", self._char(c))

    # -- dentries and dtabs ---------------------------------------------------

    def parse_dentry(self) -> Dentry:
        prefix = self.parse_prefix()
        self.eat_whitespace()
        self.eat("=")
        self.eat(">")
        tree = self.parse_tree()
        return Dentry(prefix, tree)

    def parse_dtab(self) -> Dtab:
        dentries = []
        while True:
            self.eat_whitespace()
            if not self.at_end():
                dentries.append(self.parse_dentry())
                self.eat_whitespace()
            if not self.maybe_eat(";"):
                break
        return Dtab(tuple(dentries))


def _all(p: _Parser) -> None:
    p.eat_whitespace()
    p.ensure_end()


def parse_path(s: str) -> Path:
    p = _Parser(s)
    path = p.parse_path()
    _all(p)
    return path


def parse_prefix(s: str) -> Prefix:
    p = _Parser(s)
    prefix = p.parse_prefix()
    _all(p)
    return prefix


def parse_tree(s: str) -> NameTree[Path]:
    p = _Parser(s)
    tree = p.parse_tree()
    _all(p)
    return tree


def parse_dentry(s: str) -> Dentry:
    p = _Parser(s)
    dentry = p.parse_dentry()
    _all(p)
    return dentry


def parse_dtab(s: str) -> Dtab:
    p = _Parser(s)
    dtab = p.parse_dtab()
    _all(p)
    return dtab
