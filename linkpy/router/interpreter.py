"""The reactive name interpreter of a router: bindings that follow the namers.

``Interpreter.binding(path, local_dtab)`` gives a :class:`Binding`: the bound tree of
``path`` through ``router dtab ++ local dtab`` and the configured namers, kept current.
A binding observes exactly the namer activities its last binding consulted, so a
namer's new answer re-binds only the names that depended on it.  Bindings are cached
per (path, local dtab): a request on a known name does no dtab work.

As in Linkerd (``DynBoundFactory``), once a binding has been Ok, a later failure keeps
the last good tree.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import trio

from ..activity import Mapped, Var
from ..metrics import Scope
from ..naming import (
    SYSTEM_NAMERS,
    Bound,
    DelegateResult,
    DelegateTree,
    Dtab,
    Failed,
    Name,
    NameTree,
    Neg,
    Ok,
    Path,
    Pending,
    State,
    SystemNamer,
    bind,
    delegate,
    global_lookup,
)
from ..plugin import Namer
from .inet import InetResolver
from .transformers import Transformer, transform_state

log = logging.getLogger("linkpy.interpreter")

BoundState = State[NameTree[Bound]]


class Binding:
    """The live bound tree of one (path, local dtab)."""

    __slots__ = (
        "interpreter",
        "path",
        "local",
        "var",
        "_subs",
        "seen_ok",
        "last_used",
        "used",
        "route",
        "closed",
    )

    def __init__(self, interpreter: Interpreter, path: Path, local: Dtab) -> None:
        self.interpreter = interpreter
        self.path = path
        self.local = local
        self.var: Var[BoundState] = Var(Pending)
        self._subs: dict[int, Callable[[], None]] = {}
        self.seen_ok = False
        self.last_used = trio.current_time()
        #: set on every use; the idle sweep turns it into ``last_used``
        self.used = False
        #: What the router precomputed from the current tree (cleared on change).
        self.route: object = None
        self.closed = False
        self.recompute()

    @property
    def state(self) -> BoundState:
        return self.var.sample()

    def recompute(self, _: object = None) -> None:
        if self.closed:
            return
        interp = self.interpreter
        touched: dict[int, Var[State[NameTree[Name]]]] = {}
        result = bind(interp.base + self.local, self.path, interp.lookup_with(touched))
        # Follow exactly the activities this binding consulted.
        for key in [k for k in self._subs if k not in touched]:
            self._subs.pop(key)()
        for key, var in touched.items():
            if key not in self._subs:
                self._subs[key] = var.observe(self.recompute)
        st = result.state
        if interp.transformers:
            st = transform_state(interp.transformers, st)
        if isinstance(st, Failed) and self.seen_ok:
            interp.metrics.counter("rebind_failures_ignored").incr()
            log.warning("binding %s failed (%s); keeping the last good tree", self.path, st.exc)
            return
        if isinstance(st, Ok):
            self.seen_ok = True
        if st != self.var.sample():
            self.route = None
            self.var.set(st)

    def close(self) -> None:
        self.closed = True
        for close in self._subs.values():
            close()
        self._subs.clear()


class TransformingNamer(Namer):
    """A namer whose bound answers go through transformers (``namers[].transformers``)."""

    def __init__(self, inner: Namer, transformers: Sequence[Transformer]) -> None:
        self.inner = inner
        self.transformers = list(transformers)
        self._cache: dict[Path, Var[State[NameTree[Name]]]] = {}

    def lookup(self, path: Path) -> Var[State[NameTree[Name]]]:
        var = self._cache.get(path)
        if var is None:
            if len(self._cache) > 10_000:
                self._cache = {p: v for p, v in self._cache.items() if v.observed}
            ts = self.transformers
            var = Mapped(self.inner.lookup(path), lambda st: transform_state(ts, st))
            self._cache[path] = var
        return var

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            for t in self.transformers:
                await nursery.start(t.run)
            await nursery.start(self.inner.run)
            task_status.started()

    def bound_names(self) -> list[str]:
        return self.inner.bound_names()

    def state(self) -> Mapping[str, Any]:
        return self.inner.state()


class Interpreter:
    """Binds names through a router's dtab and namers (Linkerd's default interpreter)."""

    def __init__(
        self,
        dtab: Dtab,
        namers: Sequence[tuple[Path, Namer]],
        inet: InetResolver,
        metrics: Scope,
        *,
        system: Mapping[str, SystemNamer] | None = None,
        max_bindings: int = 1000,
        idle_ttl: float = 600.0,
        transformers: Sequence[Transformer] = (),
    ) -> None:
        self.dtab = dtab
        #: a dtab the interpreter itself holds (``io.l5d.fs``'s file), before the router's
        self.stored = Dtab.empty
        self.base = dtab
        self.namers = list(namers)
        self.transformers = list(transformers)
        self.inet = inet
        self.metrics = metrics
        self.system = dict(SYSTEM_NAMERS if system is None else system)
        self.max_bindings = max_bindings
        self.idle_ttl = idle_ttl
        self._bindings: OrderedDict[tuple[Path, Dtab], Binding] = OrderedDict()
        self._binds = metrics.counter("binds")

    # -- lookups --------------------------------------------------------------

    def lookup_with(
        self, touched: dict[int, Var[State[NameTree[Name]]]]
    ) -> Callable[[Path], State[NameTree[Name]]]:
        """The namer lookup of Linkerd's interpreter, recording the activities it reads."""
        namers = self.namers
        inet = self.inet.addr
        system = self.system

        def lookup(path: Path) -> State[NameTree[Name]]:
            for prefix, namer in namers:
                if path.startswith(prefix):
                    var = namer.lookup(path.drop(len(prefix.elems)))
                    touched[id(var)] = var
                    st = var.sample()
                    if isinstance(st, Ok) and st.value is Neg:
                        continue
                    return st
            return global_lookup(path, inet, system)

        return lookup

    def delegate(self, dtab: Dtab, path: Path) -> DelegateResult:
        """Explain ``path`` through ``dtab`` (the full dtab to use) and the namers."""
        return self.delegate_vars(dtab, path)[0]

    def delegate_vars(self, dtab: Dtab, path: Path) -> tuple[DelegateResult, list[Var[object]]]:
        """Like :meth:`delegate`, also giving the activities consulted (to wait on)."""
        touched: dict[int, Var[State[NameTree[Name]]]] = {}
        transform = None
        if self.transformers:

            def transform(tree: DelegateTree) -> DelegateTree:
                for t in self.transformers:
                    tree = t.delegate(tree)
                return tree

        r = delegate(dtab, path, self.lookup_with(touched), transform=transform)
        return r, list(touched.values())  # type: ignore[arg-type]

    # -- bindings -------------------------------------------------------------

    def binding(self, path: Path, local: Dtab = Dtab.empty) -> Binding:
        key = (path, local)
        b = self._bindings.get(key)
        if b is None:
            self._binds.incr()
            b = Binding(self, path, local)
            self._bindings[key] = b
            if len(self._bindings) > self.max_bindings:
                _, old = self._bindings.popitem(last=False)
                old.close()
        else:
            self._bindings.move_to_end(key)
            b.used = True
        return b

    def bindings(self) -> list[Binding]:
        return list(self._bindings.values())

    def evict_idle(self, now: float) -> int:
        """Close the bindings unused for ``idle_ttl`` seconds; return how many."""
        for b in self._bindings.values():
            if b.used:
                b.used = False
                b.last_used = now
        stale = [k for k, b in self._bindings.items() if now - b.last_used > self.idle_ttl]
        for k in stale:
            self._bindings.pop(k).close()
        return len(stale)

    def set_dtab(self, dtab: Dtab, stored: Dtab | None = None) -> None:
        """Replace the router dtab (or the stored one): every binding is recomputed."""
        self.dtab = dtab
        if stored is not None:
            self.stored = stored
        self.base = self.stored + self.dtab
        for b in list(self._bindings.values()):
            b.recompute()

    def close(self) -> None:
        for b in self._bindings.values():
            b.close()
        self._bindings.clear()
