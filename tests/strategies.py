"""Hypothesis strategies shared by the tests."""

from __future__ import annotations

from hypothesis import strategies as st

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
    Path,
    Prefix,
    Union,
    Weighted,
)

_SHOWABLE = b"abcXYZ019_:.#$%-"

#: Elements: mostly showable, sometimes any bytes (printed with \xNN escapes).
elements = st.one_of(
    st.binary(min_size=1, max_size=6).filter(bool),
    st.lists(st.sampled_from(_SHOWABLE), min_size=1, max_size=6).map(bytes),
)
paths = st.lists(elements, max_size=5).map(lambda es: Path(tuple(es)))

#: Weights with at most two decimals, so that the %.2f printer loses nothing.
weights = st.one_of(st.just(1.0), st.integers(min_value=0, max_value=1000).map(lambda n: n / 100))


def _compound(children: st.SearchStrategy[NameTree[Path]]) -> st.SearchStrategy[NameTree[Path]]:
    alts = st.lists(children, min_size=2, max_size=3).map(lambda ts: Alt(*ts))
    unions = st.lists(st.tuples(weights, children), min_size=2, max_size=3).map(
        lambda ws: Union(*(Weighted(w, t) for w, t in ws))
    )
    return st.one_of(alts, unions)


#: Trees of the shapes the parser builds (no one-child or empty Alt/Union).
trees: st.SearchStrategy[NameTree[Path]] = st.recursive(
    st.one_of(paths.map(Leaf), st.sampled_from([Neg, Fail, Empty])),
    _compound,
    max_leaves=8,
)

prefixes = st.lists(st.one_of(elements, st.just(ANY)), max_size=4).map(lambda es: Prefix(tuple(es)))
dentries = st.builds(Dentry, prefixes, trees)
dtabs = st.lists(dentries, max_size=5).map(lambda ds: Dtab(tuple(ds)))

#: Text drawn mostly from the characters the grammar cares about.
grammar_text = st.text(
    alphabet=st.sampled_from(list("/ab*&|()~!$#.09=>;\\x \n\t")) | st.characters(),
    max_size=40,
)

#: Small dtabs over a few names, to bind: loops, unions and alternates included.
_names = ["/a", "/b", "/c", "/a/x", "/$/inet/1", "/$/nil", "/$/fail", "~", "!"]
small_trees = st.recursive(
    st.sampled_from(_names),
    lambda c: st.one_of(
        st.lists(c, min_size=2, max_size=3).map(lambda ts: " | ".join(f"({t})" for t in ts)),
        st.lists(c, min_size=2, max_size=3).map(lambda ts: " & ".join(f"({t})" for t in ts)),
    ),
    max_leaves=5,
)
small_dtabs = st.lists(
    st.tuples(st.sampled_from(["/a", "/b", "/c", "/", "/a/*"]), small_trees), max_size=6
).map(lambda ds: Dtab.read(";".join(f"{p}=>{t}" for p, t in ds)))
