"""The reactive interpreter: bindings follow namer changes, cached, last good kept."""

from __future__ import annotations

import trio

from linkpy.activity import Var
from linkpy.metrics import Metrics
from linkpy.naming import (
    AddrBound,
    Address,
    Bound,
    Dtab,
    Failed,
    Leaf,
    Name,
    NameTree,
    Neg,
    Ok,
    Path,
    Pending,
    State,
)
from linkpy.plugin import Activity, Namer
from linkpy.router.inet import InetResolver
from linkpy.router.interpreter import Interpreter


class ScriptedNamer(Namer):
    """A namer whose answers the test sets; it counts lookups."""

    def __init__(self) -> None:
        self.vars: dict[Path, Activity] = {}
        self.lookups = 0

    def lookup(self, path: Path) -> Activity:
        self.lookups += 1
        if path not in self.vars:
            self.vars[path] = Var(Pending)
        return self.vars[path]

    def set(self, path: str, state: State[NameTree[Name]]) -> None:
        self.lookup(Path.read(path)).set(state)


def bound(name: str, port: int) -> State[NameTree[Name]]:
    addr = AddrBound([Address("127.0.0.1", port)])
    return Ok(Leaf(Bound(Path.read("/#/s/" + name), Path.empty, addr)))


def interp(namer: ScriptedNamer, dtab: str = "/svc => /#/s") -> Interpreter:
    return Interpreter(
        Dtab.read(dtab), [(Path.read("/#/s"), namer)], InetResolver(), Metrics().scope("i")
    )


def ids(binding: object) -> set[str]:
    st = binding.var.sample()  # type: ignore[attr-defined]
    assert isinstance(st, Ok)
    return {b.id_show() for b in st.value.eval() or ()}


async def test_binding_follows_its_namer() -> None:
    namer = ScriptedNamer()
    i = interp(namer)
    b = i.binding(Path.read("/svc/users"))
    assert b.state is Pending
    namer.set("/users", bound("users", 1))
    b = i.binding(Path.read("/svc/users"))
    assert ids(b) == {"/#/s/users"}
    namer.set("/users", Ok(Neg))
    assert b.state == Ok(Neg)


async def test_only_dependent_bindings_rebind() -> None:
    namer = ScriptedNamer()
    i = interp(namer)
    namer.set("/a", bound("a", 1))
    namer.set("/b", bound("b", 2))
    a = i.binding(Path.read("/svc/a"))
    b = i.binding(Path.read("/svc/b"))
    seen_a: list[object] = []
    seen_b: list[object] = []
    a.var.observe(seen_a.append)
    b.var.observe(seen_b.append)
    before = namer.lookups
    namer.vars[Path.read("/a")].set(bound("a2", 3))
    assert len(seen_a) == 1 and not seen_b
    assert namer.lookups == before + 1  # only /svc/a bound again


async def test_fallback_switches_live() -> None:
    namer = ScriptedNamer()
    i = interp(namer, "/svc => /#/s/fallback; /svc => /#/s/primary")
    namer.set("/fallback/x", bound("fallback", 1))
    namer.set("/primary/x", Ok(Neg))
    b = i.binding(Path.read("/svc/x"))
    assert ids(b) == {"/#/s/fallback"}
    namer.set("/primary/x", bound("primary", 2))
    assert ids(b) == {"/#/s/primary"}
    namer.set("/primary/x", Ok(Neg))
    assert ids(b) == {"/#/s/fallback"}


async def test_bindings_are_cached_per_path_and_local_dtab() -> None:
    namer = ScriptedNamer()
    i = interp(namer)
    p = Path.read("/svc/a")
    assert i.binding(p) is i.binding(p)
    local = Dtab.read("/svc/a => /#/s/b")
    assert i.binding(p, local) is not i.binding(p)
    assert i.binding(p, Dtab.read("/svc/a => /#/s/b")) is i.binding(p, local)


async def test_last_good_tree_is_kept_on_failure() -> None:
    namer = ScriptedNamer()
    i = interp(namer)
    namer.set("/a", bound("a", 1))
    b = i.binding(Path.read("/svc/a"))
    good = b.state
    namer.set("/a", Failed(RuntimeError("backend down")))
    assert b.state == good
    # but a failure before any good answer is reported
    c = i.binding(Path.read("/svc/c"))
    namer.set("/c", Failed(RuntimeError("down")))
    assert isinstance(c.state, Failed)


async def test_idle_bindings_are_evicted_and_release_their_namers() -> None:
    namer = ScriptedNamer()
    i = interp(namer)
    namer.set("/a", bound("a", 1))
    b = i.binding(Path.read("/svc/a"))
    assert namer.vars[Path.read("/a")].observed
    assert i.evict_idle(trio.current_time() + 3600) == 1
    assert not namer.vars[Path.read("/a")].observed
    assert b.closed


async def test_dtab_change_rebinds() -> None:
    namer = ScriptedNamer()
    i = interp(namer)
    namer.set("/a", bound("a", 1))
    namer.set("/b", bound("b", 2))
    binding = i.binding(Path.read("/svc/x"))
    i.set_dtab(Dtab.read("/svc/x => /#/s/b"))
    assert ids(binding) == {"/#/s/b"}


async def test_bindings_in_use_are_not_evicted() -> None:
    namer = ScriptedNamer()
    i = interp(namer)
    p = Path.read("/svc/a")
    b = i.binding(p)
    now = trio.current_time()
    i.binding(p)  # used
    assert i.evict_idle(now + 3600) == 0
    assert i.evict_idle(now + 3600 + 599) == 0
    assert i.evict_idle(now + 3600 + 601) == 1
    assert b.closed
