"""Path syntax and structure (dtab-spec sections 1 and 8.1)."""

from __future__ import annotations

import pytest

from linkpy.naming import ParseError, Path


@pytest.mark.parametrize(
    ("text", "elems", "shown"),
    [
        ("/", (), "/"),  # P1
        ("  /foo/bar  ", (b"foo", b"bar"), "/foo/bar"),  # P2
        ("/\\x66\\x6f\\x6F", (b"foo",), "/foo"),  # P3
        ("/#/io.l5d.fs", (b"#", b"io.l5d.fs"), "/#/io.l5d.fs"),
        ("/ #x", (), "/"),
        ("/\\x2f", (b"/",), "/\\x2f"),
        ("/a:b/$/%/-_.", (b"a:b", b"$", b"%", b"-_."), "/a:b/$/%/-_."),
        ("\t/x\n# trailing comment", (b"x",), "/x"),
    ],
)
def test_read_and_show(text: str, elems: tuple[bytes, ...], shown: str) -> None:
    p = Path.read(text)
    assert p.elems == elems
    assert p.show() == shown
    assert str(p) == shown
    assert Path.read(p.show()) == p


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "'/' expected but end of input found at '[]'"),  # P4
        ("/foo/bar/", "label char expected but end of input found at '/foo/bar/[]'"),  # P5
        ("/{}", "end of input expected but '{' found at '/[{]}'"),  # P6
        ("/\\?", "'x' expected but '?' found at '/\\[?]'"),
        ("/\\x?", "hex char expected but '?' found at '/\\x[?]'"),
        ("/\\x0?", "hex char expected but '?' found at '/\\x0[?]'"),
        ("/foo^bar", "end of input expected but '^' found at '/foo[^]bar'"),  # P7
        ("invalid-param", "'/' expected but 'i' found at '[i]nvalid-param'"),  # P8
        ("//", "end of input expected but '/' found at '/[/]'"),  # P10
        ("/ foo", "end of input expected but 'f' found at '/ [f]oo'"),
        ("/\\X41", "'x' expected but 'X' found at '/\\[X]41'"),
        ("/a*b", "end of input expected but '*' found at '/a[*]b'"),
    ],
)
def test_read_errors(text: str, message: str) -> None:
    with pytest.raises(ParseError) as exc:
        Path.read(text)
    assert str(exc.value) == message
    assert isinstance(exc.value, ValueError)


def test_unshowable_elements_print_every_byte_escaped() -> None:
    assert Path((b"foo bar",)).show() == "/\\x66\\x6f\\x6f\\x20\\x62\\x61\\x72"  # P9
    assert Path.utf8("é").show() == "/\\xc3\\xa9"
    assert Path.read(Path.utf8("a b", "ok").show()) == Path.utf8("a b", "ok")


def test_host_header_is_one_element() -> None:
    assert Path.utf8("svc", "web:8080").elems == (b"svc", b"web:8080")


def test_structure() -> None:
    p = Path.read("/a/b/c")
    assert len(p) == 3
    assert p.take(2) == Path.read("/a/b")
    assert p.drop(1) == Path.read("/b/c")
    assert p.drop(3) == Path.empty
    assert p.startswith(Path.read("/a/b"))
    assert not p.startswith(Path.read("/a/bc"))
    assert not Path.read("/a").startswith(p)
    assert p.startswith(Path.empty)
    assert p + Path.empty == p
    assert Path.empty + p == p
    assert Path.read("/a") + Path.read("/b") == Path.read("/a/b")
    assert Path.empty.is_empty
    assert bool(Path.empty)  # a value, not a container


def test_case_sensitive() -> None:
    assert Path.read("/Foo") != Path.read("/foo")


def test_empty_elements_are_refused() -> None:
    with pytest.raises(ValueError):
        Path.utf8("a", "")
    with pytest.raises(ValueError):
        Path.of(b"")
