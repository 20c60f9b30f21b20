"""Vars: a task waiting on a var observes it."""

from __future__ import annotations

import trio

from linkpy.activity import Mapped, Var


def observed(var: Var[int]) -> bool:
    return var.observed


async def test_a_task_waiting_on_a_mapped_var_wakes_when_its_source_changes() -> None:
    source = Var(1)
    doubled = Mapped(source, lambda v: v * 2)
    assert not observed(source)  # unobserved, the mapped var does not follow its source
    got: list[int] = []

    async def waiter() -> None:
        got.append(await doubled.wait_change(doubled.version))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        assert observed(source)  # the waiting task observes it
        source.set(5)
    assert got == [10]
    assert not observed(source)  # and stops observing once woken


async def test_on_active_hears_of_waiters() -> None:
    events: list[bool] = []
    var: Var[int] = Var(0, on_active=events.append)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(var.wait_change, 0)
        await trio.testing.wait_all_tasks_blocked()
        assert events == [True]
        var.set(1)
    assert events == [True, False]
