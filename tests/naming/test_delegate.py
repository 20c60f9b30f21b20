"""Delegation trees and their /delegator.json form (dtab-spec sections 6 and 8.6)."""

from __future__ import annotations

from linkpy.naming import (
    Addr,
    Bound,
    DAlt,
    DDelegate,
    Dentry,
    DException,
    DFail,
    DLeaf,
    DNeg,
    Dtab,
    DUnion,
    DWeighted,
    Failed,
    Ok,
    Path,
    Pending,
    delegate,
    delegate_json,
    dumps,
)

from .helpers import always_fails, binds_everything, configured

P = Path.read
D = Dentry.read

DELEGATOR_DTAB = Dtab.read(
    """
    /bah/humbug => /$/inet/127.1/8080 ;
    /beh => /#/error ;
    /foo => /bah | /$/fail ;
    /foo => /bar ;
    /boo => /foo ;
    /meh => /heh ;
    """
)

NAMERS = configured(namer=binds_everything("/#/namer"), error=always_fails("/#/error"))


def tree(dtab: Dtab, path: str) -> object:
    r = delegate(dtab, P(path), NAMERS)
    assert isinstance(r.state, Ok), r.state
    return r.state.value


def test_k1_namer_binds() -> None:
    t = tree(Dtab.read("/nah=>/#/namer;"), "/nah/bro")
    assert t == DDelegate(
        P("/nah/bro"),
        Dentry.nop,
        DLeaf(
            P("/#/namer/bro"), D("/nah=>/#/namer"), Bound(P("/#/namer"), P("/bro"), Addr.Pending)
        ),
    )
    assert isinstance(t, DDelegate) and isinstance(t.tree, DLeaf)
    assert t.tree.value.residual == P("/bro")  # type: ignore[union-attr]


def test_k2_neg_is_not_wrapped() -> None:
    assert tree(DELEGATOR_DTAB, "/nope") == DNeg(P("/nope"), Dentry.nop)


def test_k3_neg_after_a_rewrite() -> None:
    assert tree(DELEGATOR_DTAB, "/meh/hey") == DDelegate(
        P("/meh/hey"), Dentry.nop, DNeg(P("/heh/hey"), D("/meh=>/heh"))
    )


def test_k4_every_alt_branch_is_explored() -> None:
    assert tree(DELEGATOR_DTAB, "/boo/lol") == DDelegate(
        P("/boo/lol"),
        Dentry.nop,
        DAlt(
            P("/foo/lol"),
            D("/boo=>/foo"),
            DNeg(P("/bar/lol"), D("/foo=>/bar")),
            DNeg(P("/bah/lol"), D("/foo=>/bah|/$/fail")),
            DFail(P("/$/fail/lol"), D("/foo=>/bah|/$/fail")),
        ),
    )


def test_k5_bound_branch() -> None:
    assert tree(DELEGATOR_DTAB, "/boo/humbug/ya") == DDelegate(
        P("/boo/humbug/ya"),
        Dentry.nop,
        DAlt(
            P("/foo/humbug/ya"),
            D("/boo=>/foo"),
            DNeg(P("/bar/humbug/ya"), D("/foo=>/bar")),
            DDelegate(
                P("/bah/humbug/ya"),
                D("/foo=>/bah | /$/fail"),
                DLeaf(
                    P("/$/inet/127.1/8080/ya"),
                    D("/bah/humbug=>/$/inet/127.1/8080"),
                    Bound(P("/$/inet/127.1/8080"), P("/ya"), Addr.Pending),
                ),
            ),
            DFail(P("/$/fail/humbug/ya"), D("/foo=>/bah | /$/fail")),
        ),
    )


def test_k6_namer_error_is_shown() -> None:
    t = tree(DELEGATOR_DTAB, "/beh/humbug")
    assert isinstance(t, DDelegate)
    assert t.path == P("/beh/humbug")
    exc = t.tree
    assert isinstance(exc, DException)
    assert (exc.path, exc.dentry) == (P("/#/error/humbug"), D("/beh=>/#/error"))
    assert str(exc.exc) == "error naming /#/error/humbug"


API_DTAB = Dtab.read(
    """
    /beh => /#/error ;
    /bah/humbug => /$/inet/127.1/8080 ;
    /foo => /bah | /beh | /$/fail ;
    /foo => /bar ;
    /boo => /foo ;
    /meh => /heh ;
    /neg => ~ ;
    """
)


def as_json(path: str) -> str:
    t = tree(API_DTAB, path)
    return dumps(delegate_json(t))  # type: ignore[arg-type]


def test_k7_json() -> None:
    assert as_json("/meh") == (
        '{"type":"delegate","path":"/meh","delegate":'
        '{"type":"neg","path":"/heh","dentry":{"prefix":"/meh","dst":"/heh"}}}'
    )
    assert as_json("/neg") == (
        '{"type":"delegate","path":"/neg","delegate":'
        '{"type":"neg","path":"~","dentry":{"prefix":"/neg","dst":"~"}}}'
    )
    assert as_json("/boo/humbug") == (
        '{"type":"delegate","path":"/boo/humbug","delegate":{'
        '"type":"alt","path":"/foo/humbug","dentry":{"prefix":"/boo","dst":"/foo"},"alt":['
        '{"type":"neg","path":"/bar/humbug","dentry":{"prefix":"/foo","dst":"/bar"}},'
        '{"type":"delegate","path":"/bah/humbug",'
        '"dentry":{"prefix":"/foo","dst":"/bah | /beh | /$/fail"},"delegate":{'
        '"type":"leaf","path":"/$/inet/127.1/8080","dentry":{"prefix":"/bah/humbug",'
        '"dst":"/$/inet/127.1/8080"},'
        '"bound":{"addr":{"type":"bound","addrs":[{"ip":"127.0.0.1","port":8080,"meta":{}}],"meta":{}},'
        '"id":"/$/inet/127.1/8080","path":"/"}}},'
        '{"type":"delegate","path":"/beh/humbug",'
        '"dentry":{"prefix":"/foo","dst":"/bah | /beh | /$/fail"},"delegate":{'
        '"type":"exception","path":"/#/error/humbug","dentry":{"prefix":"/beh","dst":"/#/error"},'
        '"message":"error naming /#/error/humbug"}},'
        '{"type":"fail","path":"/$/fail/humbug",'
        '"dentry":{"prefix":"/foo","dst":"/bah | /beh | /$/fail"}}]}}'
    )


def test_union_json_keeps_weights() -> None:
    # The root Delegate collapses into the union (same path), taking the nop dentry.
    u = tree(Dtab.read("/a => 3*/$/inet/127.1/1 & /$/nil"), "/a")
    assert isinstance(u, DUnion)
    assert u.dentry == Dentry.nop
    assert [w.weight for w in u.trees] == [3.0, 1.0]
    assert isinstance(u.trees[0], DWeighted)
    j = delegate_json(u)
    assert "dentry" not in j
    assert [w["weight"] for w in j["union"]] == [3.0, 1.0]
    assert j["union"][1]["tree"] == {
        "type": "empty",
        "path": "/$/nil",
        "dentry": {"prefix": "/a", "dst": "3.00*/$/inet/127.1/1 & /$/nil"},
    }


def test_pending_namer_makes_the_delegation_pending() -> None:
    r = delegate(Dtab.read("/a=>/#/x"), P("/a"), configured(x=lambda p: Pending))
    assert r.state is Pending
    assert r.deps == {P("/#/x")}


def test_too_deep_fails_at_the_root_and_is_shown_in_a_branch() -> None:
    r = delegate(Dtab.read("/a=>/a"), P("/a"), NAMERS)
    assert isinstance(r.state, Failed)
    assert str(r.state.exc) == "Max recursion level reached."
    t = tree(Dtab.read("/a=>/a;/b=>/a | /$/nil"), "/b")
    assert isinstance(t, DAlt)
    first = t.trees[0]
    assert isinstance(first, DException)
    assert first.path == P("/b")
    assert str(first.exc) == "Max recursion level reached."


def test_pending_addr_json() -> None:
    t = tree(Dtab.read("/nah=>/#/namer"), "/nah/bro")
    j = delegate_json(t)  # type: ignore[arg-type]
    assert j["delegate"]["bound"] == {"addr": {"type": "pending"}, "id": "/#/namer", "path": "/bro"}
