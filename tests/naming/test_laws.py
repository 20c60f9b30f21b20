"""Round-trip and simplification laws, and bad input, checked by Hypothesis."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from linkpy.naming import Dentry, Dtab, NameTree, ParseError, Path, Prefix, bind
from tests.strategies import dtabs, grammar_text, paths, small_dtabs, trees

from .helpers import system


@given(paths)
def test_path_round_trip(p: Path) -> None:
    assert Path.read(p.show()) == p


@given(trees)
def test_tree_round_trip(t: NameTree[Path]) -> None:
    assert NameTree.read(t.show()) == t


@given(dtabs)
def test_dtab_round_trip(d: Dtab) -> None:
    assert Dtab.read(d.show()) == d
    for dentry in d:
        assert Dentry.read(dentry.show()) == dentry
        assert Prefix.read(dentry.prefix.show()) == dentry.prefix


@given(trees)
def test_simplified_is_idempotent_and_preserves_eval(t: NameTree[Path]) -> None:
    s = t.simplified()
    assert s.simplified() == s
    assert s.eval() == t.eval()


@given(dtabs, dtabs)
def test_concatenation_appends(a: Dtab, b: Dtab) -> None:
    assert (a + b).dentries == a.dentries + b.dentries


@settings(max_examples=300)
@given(grammar_text)
def test_read_never_raises_anything_but_parse_error(text: str) -> None:
    for read in (Path.read, NameTree.read, Dentry.read, Dtab.read, Prefix.read):
        try:
            read(text)
        except ParseError as e:
            assert " found at '" in str(e) or str(e).startswith("For input string")


@given(st.text(max_size=60))
def test_read_arbitrary_text(text: str) -> None:
    try:
        Dtab.read(text)
    except ParseError:
        pass


@settings(max_examples=150, deadline=None)
@given(small_dtabs, st.sampled_from(["/a", "/b", "/c", "/a/x/y"]))
def test_binding_any_dtab_ends(d: Dtab, path: str) -> None:
    # Loops end at the depth limit (or the lookup budget); nothing raises.
    r = bind(d, Path.read(path), system(), max_lookups=300)
    assert r.state is not None
