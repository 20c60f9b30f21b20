"""Binding (dtab-spec sections 4 and 8.5)."""

from __future__ import annotations

import pytest

from linkpy.errors import BindDepthExceeded, BindingBudgetExceeded, ParseError, UnknownNamer
from linkpy.naming import (
    WEIGHT_KEY,
    Addr,
    AddrBound,
    Address,
    AddrFailed,
    Bound,
    Dtab,
    Empty,
    Fail,
    Failed,
    Leaf,
    NameTree,
    Neg,
    Ok,
    Path,
    Pending,
    State,
    bind,
    resolve,
)

from .helpers import inet, scripted, system


def bound(state: State[NameTree[Bound]]) -> list[Bound]:
    assert isinstance(state, Ok), state
    names = state.value.eval()
    assert names is not None
    return sorted(names, key=lambda b: b.id_show())


def ports(state: State[NameTree[Bound]]) -> set[int]:
    addr = resolve(state)
    assert isinstance(addr, AddrBound), addr
    return {a.port for a in addr.addresses}


def weights(state: State[NameTree[Bound]]) -> dict[int, object]:
    """Port of each bound name's single address -> the union weight in its Addr metadata."""
    out: dict[int, object] = {}
    for b in bound(state):
        a = b.sample()
        assert isinstance(a, AddrBound)
        (address,) = a.addresses
        out[address.port] = a.metadata.get(WEIGHT_KEY)
    return out


def test_f1_inet() -> None:
    r = bind(Dtab.read("/foo=>/$/inet/8080"), Path.read("/foo"), system())
    (b,) = bound(r.state)
    assert b.id == Path.read("/$/inet/8080")
    assert b.residual == Path.empty
    assert b.sample() == AddrBound([Address("0.0.0.0", 8080)])


def test_f2_chain() -> None:
    r = bind(Dtab.read("/foo=>/bar;/bar=>/$/inet/8080"), Path.read("/foo"), system())
    assert ports(r.state) == {8080}


def test_f3_later_dentries_win() -> None:
    d1 = Dtab.read("/foo=>/bar")
    d2 = Dtab.read("/foo=>/biz;/biz=>/$/inet/8080;/bar=>/$/inet/9090")
    assert ports(bind(d1 + d2, Path.read("/foo"), system()).state) == {8080}
    assert ports(bind(d2 + d1, Path.read("/foo"), system()).state) == {9090}


def test_f4_namer_result_goes_back_through_the_dtab() -> None:
    d = Dtab.read(
        "/foo=>/$/com.twitter.finagle.naming.testnamer;/rewritten/by/test/namer=>/$/inet/7070"
    )
    assert ports(bind(d, Path.read("/foo"), system()).state) == {7070}


def test_f5_inner_weights_win() -> None:
    d = Dtab.read(
        "/foo=>/bar;"
        "/foo=>3*/baz & 2*/booz & /$/com.twitter.finagle.naming.testnamer;"
        "/rewritten/by/test/namer=>/$/inet/7070;"
        "/baz=>3*/$/inet/8080 & 2*/$/inet/9090;"
        "/booz=>~"
    )
    r = bind(d, Path.read("/foo"), system())
    assert weights(r.state) == {8080: 3.0, 9090: 2.0, 7070: 1.0}


def test_f6_cycle_hits_the_depth_limit() -> None:
    d = Dtab.read("/foo/bar=>/bar/foo;/bar/foo=>/foo/bar")
    r = bind(d, Path.read("/foo/bar"), system())
    assert isinstance(r.state, Failed)
    assert isinstance(r.state.exc, BindDepthExceeded)
    assert str(r.state.exc) == "Max recursion level: 100 reached in Namer lookup"


def test_f7_resolve_with_a_small_depth() -> None:
    r = bind(Dtab.read("/s => /s/srv"), Path.read("/s/foo/bar"), system(), max_depth=2)
    addr = resolve(r.state)
    assert isinstance(addr, AddrFailed)
    assert addr.message == "Max recursion level: 2 reached in Namer lookup"


def test_f8_invalid_path() -> None:
    with pytest.raises(ParseError):
        Path.read("invalid")


def test_depth_counts_lookups() -> None:
    # chain(n) takes n + 2 lookups (/p0 ... /pn, then /$/inet/1): exactly 100 bind,
    # 101 fail.
    def chain(n: int) -> Dtab:
        return Dtab.read(";".join(f"/p{i}=>/p{i + 1}" for i in range(n)) + f";/p{n}=>/$/inet/1")

    assert ports(bind(chain(98), Path.read("/p0"), system()).state) == {1}
    r = bind(chain(99), Path.read("/p0"), system())
    assert isinstance(r.state, Failed)
    assert isinstance(r.state.exc, BindDepthExceeded)


@pytest.mark.parametrize(
    ("tree", "expected"),
    [
        ("! | /test/1 | /test/2", Fail),  # F9
        ("~ | /$/fail | /test/1", Fail),
        ("/$/nil | /$/fail | /test/1", Empty),
    ],
)
def test_f9_bind_trees(tree: str, expected: NameTree[object]) -> None:
    r = bind(Dtab.read("/test=>/$/inet"), NameTree.read(tree), system())
    assert r.state == Ok(expected)


def test_union_of_one_cycle_never_recurses_forever() -> None:
    d = Dtab.read("/a=>/b & /b;/b=>/a & /a")
    r = bind(d, Path.read("/a"), system())
    assert isinstance(r.state, Failed)
    assert isinstance(r.state.exc, BindDepthExceeded)


def test_exploding_union_dtab_hits_the_lookup_budget() -> None:
    d = Dtab.read("/a=>/a/x & /a/y")
    r = bind(d, Path.read("/a"), system())
    assert isinstance(r.state, Failed)
    assert isinstance(r.state.exc, (BindDepthExceeded, BindingBudgetExceeded))


# --- live union states (NamerTest "union"): tree /test/0 & /test/1, /test/0 -> /test/2


def union_states(
    s1: State[NameTree[object]], s2: State[NameTree[object]]
) -> State[NameTree[Bound]]:
    namers = scripted(
        {"/test/0": Ok(Leaf(Path.read("/test/2"))), "/test/1": s1, "/test/2": s2}  # type: ignore[dict-item]
    )
    return bind(Dtab.empty, NameTree.read("/test/0 & /test/1"), namers).state


def inet_tree(port: int) -> State[NameTree[object]]:
    return Ok(Leaf(Path.read(f"/$/inet/{port}")))


ERR = Failed(RuntimeError("boom"))


def test_u1_pending() -> None:
    assert union_states(Pending, Pending) is Pending


def test_u2_one_ok() -> None:
    st = union_states(inet_tree(1), Pending)
    assert weights(st) == {1: 1.0}


def test_u3_failed_and_pending_is_failed() -> None:
    assert union_states(ERR, Pending) == ERR


def test_u4_both() -> None:
    assert ports(union_states(inet_tree(1), inet_tree(2))) == {1, 2}


def test_u5_neg_is_dropped() -> None:
    assert ports(union_states(inet_tree(1), Ok(Neg))) == {1}


def test_u6_failure_is_dropped() -> None:
    assert ports(union_states(inet_tree(1), ERR)) == {1}


def test_u7_all_failed() -> None:
    assert isinstance(union_states(ERR, ERR), Failed)


def test_u8_all_neg() -> None:
    st = union_states(Ok(Neg), Ok(Neg))
    assert isinstance(st, Ok)
    assert st.value.eval() is None


def test_u9_empty_and_neg() -> None:
    st = union_states(Ok(Empty), Ok(Neg))
    assert isinstance(st, Ok)
    assert st.value.eval() == frozenset()


# --- live failover (NamerTest "failover"): /test/0 | /test/1 & /test/2


def failover(s0: object, s1: object, s2: object) -> State[NameTree[Bound]]:
    namers = scripted({"/test/0": s0, "/test/1": s1, "/test/2": s2})  # type: ignore[dict-item]
    return bind(Dtab.empty, NameTree.read("/test/0 | /test/1 & /test/2"), namers).state


def test_a1_pending() -> None:
    assert failover(Pending, Pending, Pending) is Pending


def test_a2_empty_stops_the_alt() -> None:
    st = failover(Ok(Empty), Ok(Neg), Ok(Neg))
    assert isinstance(st, Ok)
    assert st.value.eval() == frozenset()


def test_a3_first_branch_without_weight() -> None:
    st = failover(inet_tree(1), Ok(Neg), Ok(Neg))
    assert weights(st) == {1: None}


def test_a4_all_neg() -> None:
    st = failover(Ok(Neg), Ok(Neg), Ok(Neg))
    assert isinstance(st, Ok)
    assert st.value.eval() is None


def test_a5_fallback_to_the_union() -> None:
    st = failover(Ok(Neg), Ok(Neg), inet_tree(2))
    assert weights(st) == {2: 1.0}


def test_a6_first_branch_again() -> None:
    st = failover(inet_tree(3), Ok(Neg), inet_tree(2))
    assert weights(st) == {3: None}


def test_alt_does_not_skip_a_pending_branch() -> None:
    assert failover(Pending, inet_tree(1), inet_tree(2)) is Pending


def test_alt_stops_at_a_failed_branch() -> None:
    assert failover(ERR, inet_tree(1), inet_tree(2)) == ERR


def test_alt_does_not_fall_back_on_a_neg_addr() -> None:
    # /$/inet never answers a NameTree Neg: an address that is Neg stays in the leaf.
    neg = {"/test/0": Ok(Leaf(Bound(Path.read("/x"), Path.empty, Addr.Neg)))}
    st = bind(Dtab.empty, NameTree.read("/test/0 | /$/inet/1"), scripted(neg)).state
    assert resolve(st) is Addr.Neg


def test_deps_are_the_paths_asked_of_namers() -> None:
    r = bind(
        Dtab.read("/svc=>/#/io.l5d.fs;/svc/b=>/$/inet/1"),
        Path.read("/svc/a"),
        system(),
    )
    assert r.deps == {Path.read("/#/io.l5d.fs/a")}
    assert r.state == Ok(Neg)  # no namer is configured at /#/io.l5d.fs


# --- the global namer (F10-F15)


def test_global_lookups() -> None:
    g = system()
    st = g(Path.read("/$/inet/1234/foobar"))  # F10
    assert isinstance(st, Ok) and isinstance(st.value, Leaf)
    b = st.value.value
    assert (b.id, b.residual) == (Path.read("/$/inet/1234"), Path.read("/foobar"))
    assert b.sample() == AddrBound([Address("0.0.0.0", 1234)])
    st = g(Path.read("/$/inet/127.0.0.1/1234"))  # F11
    assert isinstance(st, Ok) and isinstance(st.value, Leaf)
    assert st.value.value.sample() == AddrBound([Address("127.0.0.1", 1234)])
    st = g(Path.read("/$/inet/8080/9090"))  # host first: host 8080, port 9090
    assert isinstance(st, Ok) and isinstance(st.value, Leaf)
    assert st.value.value.sample() == inet("8080", 9090, False)
    for p in ("/$/inet", "/$/fixedinet", "/$/inet/host"):  # F12
        st = g(Path.read(p))
        assert isinstance(st, Failed)
        assert isinstance(st.exc, UnknownNamer)
    assert str(g(Path.read("/$/inet")).exc) == "Unknown namer: inet for path: /$/inet"  # type: ignore[union-attr]
    for p in ("/$/fail", "/$/fail/foo/bar"):  # F13
        assert g(Path.read(p)) == Ok(Fail)
    for p in ("/$/nil", "/$/nil/foo/bar"):
        assert g(Path.read(p)) == Ok(Empty)
    for p in ("/foo/bar", "/foo/bar/bah/blah", "/$"):  # F14
        assert g(Path.read(p)) == Ok(Neg)
    st = g(Path.read("/$/inet/h/99999"))
    assert isinstance(st, Ok) and isinstance(st.value, Leaf)
    assert isinstance(st.value.value.sample(), AddrFailed)


def test_resolve_combines_names() -> None:
    st = bind(Dtab.empty, NameTree.read("/$/inet/1 & /$/inet/2"), system()).state
    addr = resolve(st)
    assert addr == AddrBound([Address("0.0.0.0", 1), Address("0.0.0.0", 2)])
    assert resolve(Pending) is Addr.Pending
    assert resolve(Ok(Neg)) is Addr.Neg
    assert resolve(Ok(Fail)) is Addr.Neg
    assert resolve(Ok(Empty)) == AddrBound()
    assert isinstance(resolve(ERR), AddrFailed)


def test_doubling_dtab_is_bounded() -> None:
    # Each level doubles the bound tree; without limits this would never finish.
    d = Dtab.read(";".join(f"/p{i}=>/p{i + 1} & /p{i + 1}" for i in range(60)) + ";/p60=>/$/inet/1")
    r = bind(d, Path.read("/p0"), system())
    assert isinstance(r.state, Failed)  # 2 ** 60 leaves
    assert isinstance(r.state.exc, BindingBudgetExceeded)
    d = Dtab.read(
        ";".join(f"/p{i}=>/p{i + 1}/a & /p{i + 1}/b" for i in range(60)) + ";/p60=>/$/inet/1"
    )
    r = bind(d, Path.read("/p0"), system())
    assert isinstance(r.state, Failed)
    assert isinstance(r.state.exc, BindingBudgetExceeded)
