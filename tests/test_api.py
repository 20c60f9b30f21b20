"""The public naming API that users and acceptance checks rely on (issue: foundation)."""

from __future__ import annotations

import pytest

import linkpy.naming as naming
from linkpy.errors import LinkpyError, NamingError
from linkpy.naming import Dentry, Dtab, NameTree, ParseError, Path


def test_names_are_exported() -> None:
    for name in ("Path", "NameTree", "Dentry", "Dtab", "ParseError"):
        assert hasattr(naming, name)


def test_path_api() -> None:
    p = Path.read("/svc/users")
    assert isinstance(p, Path)
    assert p.show() == "/svc/users"
    assert str(p) == p.show()


def test_tree_api() -> None:
    t = NameTree.read("/a | /b & /c")
    assert isinstance(t, NameTree)
    assert t.show() == "/a | /b & /c"
    assert isinstance(t.simplified(), NameTree)
    assert t.eval() == frozenset({Path.read("/a")})
    assert NameTree.read("~").eval() is None


def test_dtab_api() -> None:
    d1 = Dtab.read("/svc=>/#/io.l5d.fs")
    d2 = Dtab.read("/svc/web=>/svc/web-v2")
    d = d1 + d2
    assert len(d) == 2
    assert d.show() == "/svc=>/#/io.l5d.fs;/svc/web=>/svc/web-v2"
    assert isinstance(d.lookup(Path.read("/svc/web")), NameTree)
    assert d.lookup(Path.read("/svc/web")).show() == "/svc/web-v2 | /#/io.l5d.fs/web"
    assert isinstance(Dentry.read("/a=>/b"), Dentry)


def test_parse_error_is_a_linkpy_error_and_a_value_error() -> None:
    assert issubclass(ParseError, LinkpyError)
    assert issubclass(ParseError, NamingError)
    assert issubclass(ParseError, ValueError)
    with pytest.raises(ParseError, match=r"'/foo\[\^\]bar'"):
        Path.read("/foo^bar")
