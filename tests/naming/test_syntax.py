"""NameTree, Prefix, Dentry and Dtab syntax (dtab-spec sections 2 and 8.2)."""

from __future__ import annotations

import pytest

from linkpy.naming import (
    ANY,
    Alt,
    Dentry,
    Dtab,
    Empty,
    Fail,
    Leaf,
    NameTree,
    Neg,
    ParseError,
    Path,
    Prefix,
    Union,
    Weighted,
)


def L(s: str) -> Leaf[Path]:
    return Leaf(Path.read(s))


def W(w: float, s: str) -> Weighted[Path]:
    return Weighted(w, L(s))


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("! | ~ | $", Alt(Fail, Neg, Empty)),  # S1
        (
            "/foo & /bar | /bar & /baz",
            Alt(Union(W(1, "/foo"), W(1, "/bar")), Union(W(1, "/bar"), W(1, "/baz"))),
        ),  # S2
        (
            "1 * /foo & 2 * /bar | .5 * /bar & .5 * /baz",  # S3
            Alt(Union(W(1, "/foo"), W(2, "/bar")), Union(W(0.5, "/bar"), W(0.5, "/baz"))),
        ),
        ("3*/a", L("/a")),  # S5: a lone weight is dropped
        ("2*/a | /b", Alt(L("/a"), L("/b"))),
        ("(/a | /b) | /c", Alt(Alt(L("/a"), L("/b")), L("/c"))),  # no flattening
        ("/a & /b | /c", Alt(Union(W(1, "/a"), W(1, "/b")), L("/c"))),
        ("0*/a & 1.*/b", Union(W(0, "/a"), W(1, "/b"))),
        ("( /a )", L("/a")),
        ("/", Leaf(Path.empty)),
    ],
)
def test_tree_read(text: str, tree: NameTree[Path]) -> None:
    assert NameTree.read(text) == tree


def test_tree_show_rounds_weights_to_two_decimals() -> None:
    t = NameTree.read("1 * /foo & 2 * /bar | .5 * /bar & .5 * /baz")
    assert t.show() == "/foo & 2.00*/bar | 0.50*/bar & 0.50*/baz"
    assert NameTree.read("0.125*/a & /b").show() == "0.13*/a & /b"  # JVM rounds half up
    assert NameTree.read("1.005*/a & /b").show() == "1.01*/a & /b"


@pytest.mark.parametrize(
    ("tree", "shown"),
    [
        (Alt(L("/a")), "/a"),
        (Union(W(3, "/a")), "/a"),
        (Alt(), ""),
        (Union(), ""),
        (Alt(Alt(L("/a"), L("/b")), L("/c")), "(/a | /b) | /c"),
        (Union(Weighted(1, Alt(L("/a"), L("/b"))), W(2, "/c")), "(/a | /b) & 2.00*/c"),
        (Union(Weighted(1, Union(W(1, "/a"), W(1, "/b"))), W(1, "/c")), "(/a & /b) & /c"),
        (Alt(Union(W(1, "/a"), W(1, "/b")), Fail), "/a & /b | !"),
    ],
)
def test_tree_show(tree: NameTree[Path], shown: str) -> None:
    assert tree.show() == shown


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "simple expected but end of input found at '[]'"),  # S4
        ("#", "simple expected but end of input found at '#[]'"),
        ("/foo &", "simple expected but end of input found at '/foo &[]'"),
        ("/foo & 0.1.2 * /bar", "number char expected but '.' found at '/foo & 0.1[.]2 * /bar'"),
        ("/foo & . * /bar", "weight expected but '.' found at '/foo & .[ ]* /bar'"),
        ("-1 * /a", "simple expected but '-' found at '[-]1 * /a'"),  # S6
        ("/a/*", "label char expected but '*' found at '/a/[*]'"),
        ("(/a", "')' expected but end of input found at '(/a[]'"),
        ("2 /a", "'*' expected but '/' found at '2 [/]a'"),
    ],
)
def test_tree_read_errors(text: str, message: str) -> None:
    with pytest.raises(ParseError) as exc:
        NameTree.read(text)
    assert str(exc.value) == message


def test_unicode_digit_weight_fails_number_conversion() -> None:
    with pytest.raises(ParseError, match="For input string"):
        NameTree.read("\u0661*/a & /b")


def test_deep_nesting_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="nested deeper"):
        NameTree.read("(" * 5000 + "/a" + ")" * 5000)
    assert NameTree.read("(" * 50 + "/a" + ")" * 50) == L("/a")


@pytest.mark.parametrize(
    ("text", "prefix"),
    [
        ("/=>!", Prefix(())),  # S7
        ("/ => !", Prefix(())),
        ("/foo/*/bar => !", Prefix((b"foo", ANY, b"bar"))),  # S8
        ("/\\x2a => !", Prefix((b"*",))),  # escaped star is a literal element
    ],
)
def test_dentry_read(text: str, prefix: Prefix) -> None:
    d = Dentry.read(text)
    assert d.prefix == prefix
    assert d.dst is Fail


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("/foo/*bar/baz => !", "'=' expected but 'b' found at '/foo/*[b]ar/baz => !'"),  # S9
        ("/&!", "'=' expected but '&' found at '/[&]!'"),
        ("/foo*=>/bar", "'=' expected but '*' found at '/foo[*]=>/bar'"),
        ("/a = > /b", "'>' expected but ' ' found at '/a =[ ]> /b'"),
    ],
)
def test_dentry_read_errors(text: str, message: str) -> None:
    with pytest.raises(ParseError) as exc:
        Dentry.read(text)
    assert str(exc.value) == message


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("", 0),
        ("  /=>!  ", 1),
        ("/=>!;", 1),
        ("/=>!;/foo=>/bar", 2),
        (" # only a comment\n", 0),
        ("/a=>/b ; ", 1),
    ],
)
def test_dtab_read_counts(text: str, count: int) -> None:  # S10
    assert len(Dtab.read(text)) == count


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (";", "'/' expected but ';' found at '[;]'"),  # S11
        ("/a=>/b;;", "'/' expected but ';' found at '/a=>/b;[;]'"),
        (" ; /a=>/b", "'/' expected but ';' found at ' [;] /a=>/b'"),
    ],
)
def test_dtab_read_errors(text: str, message: str) -> None:
    with pytest.raises(ParseError) as exc:
        Dtab.read(text)
    assert str(exc.value) == message


def test_dtab_comments() -> None:  # S12
    d = Dtab.read(
        "# a comment\n/#foo => /biz  # c\n| ( /bliz & # c\n/bluth ) # c\n; #f\n#/ignore=>/me;"
    )
    assert len(d) == 1
    assert d[0] == Dentry(Prefix((b"#foo",)), Alt(L("/biz"), Union(W(1, "/bliz"), W(1, "/bluth"))))


def test_hash_after_label_chars_is_part_of_the_label() -> None:  # S13
    assert Dtab.read("/a=>/b#c")[0].dst == L("/b#c")


def test_dtab_concatenation() -> None:  # S14
    d = Dtab.read("/foo=>/bar") + Dtab.read("/foo=>/biz;/biz=>/$/inet/8080;/bar=>/$/inet/9090")
    assert d == Dtab.read("/foo=>/bar;/foo=>/biz;/biz=>/$/inet/8080;/bar=>/$/inet/9090")
    assert d + Dtab.empty is d
    assert Dtab.empty + d is d
    assert Dtab.empty + Dentry.read("/a=>/b") == Dtab.read("/a=>/b")


def test_show_formats() -> None:
    assert Dtab.read("/foo => /bah | /beh").show() == "/foo=>/bah | /beh"
    assert Dtab.read(" /a => /b ; /c => /d ;").show() == "/a=>/b;/c=>/d"
    assert Prefix.read("/a/*/b").show() == "/a/*/b"
    assert Prefix.empty.show() == "/"
    assert str(Dentry.read("/a=>/b")) == "/a=>/b"


def test_java_whitespace() -> None:
    # U+00A0 is not Java whitespace; U+2003 (EM SPACE) and U+001C are.
    assert Dtab.read("\u2003/a=>/b\u001c") == Dtab.read("/a=>/b")
    with pytest.raises(ParseError):
        Dtab.read("\u00a0/a=>/b")
    with pytest.raises(ParseError):
        Path.read("\u0085/a")  # NEL is not whitespace in Java


def test_nop_dentry_cannot_be_written() -> None:
    assert Dentry.nop.prefix.elems == (b"/",)
    assert Dentry.nop.dst is Neg
    assert Dentry.nop.show() == "/\\x2f=>~"


def test_strip_prefix_and_simplified() -> None:
    a = Dtab.read("/a=>/b;/c=>/d")
    d = a + Dtab.read("/e=>/f")
    assert d.strip_prefix(a) == Dtab.read("/e=>/f")
    assert d.strip_prefix(Dtab.read("/x=>/y")) == d
    assert a.strip_prefix(a) == Dtab.empty
    assert Dtab.read("/a=>~;/b=>~ | /c;/d=>! & ~").simplified() == Dtab.read("/b=>/c")
