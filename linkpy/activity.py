"""Values that change over time, observed by trio tasks and by callbacks.

A :class:`Var` holds a value and tells its observers when it changes (equal values
are not announced again).  An *activity* is a ``Var`` of a naming state
(``Pending`` / ``Ok(value)`` / ``Failed(exc)``, from :mod:`linkpy.naming`): what a namer
publishes for a path, and what a binding publishes for a name.

Observers are either synchronous callbacks (``observe``), run in the task that set the
value and expected to be quick and never to raise, or tasks waiting with
``await var.wait_change(version)``.  A var can be told when it gains its first observer
and loses its last one (``on_active``), which is how namers start and stop watches.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Generic, TypeVar

import trio

from .naming import Failed, Ok, Pending, State

T = TypeVar("T")

log = logging.getLogger("linkpy.activity")


class Var(Generic[T]):
    """A value that changes over time."""

    __slots__ = ("_value", "_observers", "_event", "version", "_on_active", "__weakref__")

    def __init__(self, value: T, *, on_active: Callable[[bool], None] | None = None) -> None:
        self._value = value
        self._observers: dict[int, Callable[[T], None]] = {}
        self._event: trio.Event | None = None
        #: Incremented on every change.
        self.version = 0
        self._on_active = on_active

    def sample(self) -> T:
        """The current value."""
        return self._value

    def set(self, value: T) -> None:
        """Change the value; observers hear of it unless it equals the current one."""
        old = self._value
        if value is old or value == old:
            return
        self._value = value
        self.version += 1
        if self._observers:
            for cb in list(self._observers.values()):
                try:
                    cb(value)
                except Exception:  # an observer's bug must not stop the others
                    log.exception("observer of %r failed", self)
        event = self._event
        if event is not None:
            self._event = None
            event.set()

    def observe(self, cb: Callable[[T], None]) -> Callable[[], None]:
        """Call ``cb(value)`` on every change; returns the function that stops it."""
        key = id(cb)
        while key in self._observers:
            key += 1
        first = not self._observers
        self._observers[key] = cb
        if first and self._on_active is not None:
            self._on_active(True)

        def close() -> None:
            removed = self._observers.pop(key, None) is not None
            if removed and not self._observers and self._on_active is not None:
                self._on_active(False)

        return close

    @property
    def observed(self) -> bool:
        return bool(self._observers)

    async def wait_change(self, version: int) -> T:
        """Wait until the value is no longer the one of ``version``; return the new one.

        A waiting task counts as an observer: a var that only follows its source while
        observed (a :class:`Mapped`, a namer's lookup) does so while anyone waits on it.
        """
        if self._on_active is None:
            return await self._wait(version)
        stop = self.observe(_ignore)
        try:
            return await self._wait(version)
        finally:
            stop()

    async def _wait(self, version: int) -> T:
        while self.version == version:
            if self._event is None:
                self._event = trio.Event()
            await self._event.wait()
        return self._value

    def __repr__(self) -> str:
        return f"Var({self._value!r})"


def _ignore(_: object) -> None:
    pass


Activity = Var[State[T]]


def pending() -> Var[State[T]]:
    return Var(Pending)


def constant(value: T) -> Var[State[T]]:
    return Var(Ok(value))


def failed(exc: BaseException) -> Var[State[T]]:
    return Var(Failed(exc))


async def wait_ready(var: Var[State[T]]) -> State[T]:
    """Wait until an activity is no longer Pending; return its state."""
    st = var.sample()
    while st is Pending:
        st = await var.wait_change(var.version)
    return st


A = TypeVar("A")


class Mapped(Var[T]):
    """A var computed from another one by ``fn``.

    It follows its source only while it is observed itself, so that an unobserved
    mapped var does not keep its source (a namer's watch) alive.  Sampled while
    unobserved, it computes its value afresh.
    """

    __slots__ = ("_source", "_fn", "_unsubscribe")

    def __init__(self, source: Var[A], fn: Callable[[A], T]) -> None:
        self._source = source
        self._fn = fn
        self._unsubscribe: Callable[[], None] | None = None
        super().__init__(fn(source.sample()), on_active=self._active)

    def _active(self, active: bool) -> None:
        if active:
            self._unsubscribe = self._source.observe(self._changed)
            Var.set(self, self._fn(self._source.sample()))
        elif self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _changed(self, value: object) -> None:
        Var.set(self, self._fn(value))  # type: ignore[arg-type]

    def sample(self) -> T:
        if self._unsubscribe is None:
            return self._fn(self._source.sample())
        return self._value
