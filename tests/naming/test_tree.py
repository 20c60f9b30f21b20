"""Dtab.lookup, NameTree.simplified and NameTree.eval (dtab-spec sections 3, 5, 8.3, 8.4)."""

from __future__ import annotations

import pytest

from linkpy.naming import Alt, Dtab, Leaf, NameTree, Neg, Path


@pytest.mark.parametrize(
    ("dtab", "path", "expected"),
    [
        ("/a/*/c => /d", "/a/b/c/e/f", "/d/e/f"),  # L1
        ("/s#/*/bar => /t/bah", "/s#/foo/bar/baz", "/t/bah/baz"),  # L2
        ("/s#/*/bar => /t/bah", "/s#/boo/bar/baz", "/t/bah/baz"),
        ("/s => /s#/foo/bar", "/s/crawler", "/s#/foo/bar/crawler"),  # L3
        ("/s => /s#/foo/bar", "/s#/foo/bar/crawler", "~"),
        ("/foo=>/bar;/foo=>/biz", "/foo", "/biz | /bar"),  # L4
        ("/svc/* => /x", "/svc", "~"),  # L5
        ("/=>/a", "/$/inet/1/2", "/a/$/inet/1/2"),  # the empty prefix matches everything
        ("/=>/a", "/", "/a"),
        ("/a=>/b & 2*/c", "/a/x", "/b/x & 2.00*/c/x"),
        ("/a=>! | ~ | $", "/a/x", "! | ~ | $"),
        ("/a=>/b;/a/b=>/c;/x=>/y", "/a/b/z", "/c/z | /b/b/z"),
        ("/svc=>/#/io.l5d.fs", "/svc/users", "/#/io.l5d.fs/users"),
    ],
)
def test_lookup(dtab: str, path: str, expected: str) -> None:
    assert Dtab.read(dtab).lookup(Path.read(path)) == NameTree.read(expected)


def test_lookup_collects_all_matches_unsimplified() -> None:
    d = Dtab.read("/a=>/x;/a=>/x;/b=>/y")
    assert d.lookup(Path.read("/a")) == Alt(Leaf(Path.read("/x")), Leaf(Path.read("/x")))
    assert Dtab.empty.lookup(Path.read("/a")) is Neg


@pytest.mark.parametrize(
    ("tree", "evaluated", "simplified"),
    [
        ("~", None, "~"),  # E1
        ("/ok", {"/ok"}, "/ok"),  # E2
        ("/ok & /ok1", {"/ok", "/ok1"}, "/ok & /ok1"),  # E3
        ("/ok & ~ & /blah & $", {"/ok", "/blah"}, "/ok & /blah & $"),  # E4
        ("$ & $ & $", set(), "$ & $ & $"),  # E5
        ("~ & ~ & (~ | ~)", None, "~"),  # E6
        ("~ | /foo | /bar", {"/foo"}, "/foo | /bar"),  # E7
        ("~ | $ | /blah", set(), "$ | /blah"),  # E8
        ("~ | (~ | $) | /blah", set(), "$ | /blah"),  # E9
        (
            "(~|$|/foo) & (/bar|/blah) & ~ & /FOO",
            {"/bar", "/FOO"},
            "($ | /foo) & (/bar | /blah) & /FOO",
        ),  # E10
        ("! | /ok", None, "!"),  # E11
        ("/ok & !", {"/ok"}, "/ok"),  # E12
        ("! & ! & !", None, "~"),  # E13
        ("~ | /ok | !", {"/ok"}, "/ok | !"),  # E14
        ("/a | ! | /b", {"/a"}, "/a | !"),  # E15
        ("(! & !) | /b", {"/b"}, "/b"),  # E16
        ("$", set(), "$"),
        ("!", None, "!"),
    ],
)
def test_eval_and_simplified(tree: str, evaluated: set[str] | None, simplified: str) -> None:
    t = NameTree.read(tree)
    expected = None if evaluated is None else frozenset(Path.read(p) for p in evaluated)
    assert t.eval() == expected
    s = t.simplified()
    assert s == NameTree.read(simplified)
    assert s.eval() == expected
    assert s.simplified() == s


def test_empty_alt_and_union_are_neg() -> None:
    assert NameTree.Alt().simplified() is Neg
    assert NameTree.Union().simplified() is Neg
    assert NameTree.Alt().eval() is None
    assert NameTree.Union().eval() is None


def test_map_and_leaves() -> None:
    t = NameTree.read("/a | /b & 2*/c")
    assert t.map(lambda p: p.show()).eval() == frozenset({"/a"})
    assert [p.show() for p in t.leaves()] == ["/a", "/b", "/c"]


def test_namespace() -> None:
    assert NameTree.Neg is Neg
    assert NameTree.Leaf(Path.read("/a")) == Leaf(Path.read("/a"))
    assert repr(NameTree.read("! | ~ | $")) == "Alt(Fail, Neg, Empty)"
