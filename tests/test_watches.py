"""Watches: one per key, closed when idle, restarted when they raise."""

from __future__ import annotations

import pytest
import trio

from linkpy.activity import Var
from linkpy.watches import Watches


async def test_a_watch_that_raises_is_restarted_on_the_same_var(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    runs = 0

    async def watch(key: str, var: Var[str]) -> None:
        nonlocal runs
        runs += 1
        if runs < 3:
            raise ValueError(f"bug #{runs}")
        var.set(f"{key} ok")
        await trio.sleep_forever()

    watches: Watches[str, str] = Watches(watch, lambda k: "pending", idle=60.0, name="w")
    async with trio.open_nursery() as nursery:
        await nursery.start(watches.run)
        var = watches.get("a")
        stop = var.observe(lambda _: None)
        while var.sample() != "a ok":
            await var.wait_change(var.version)
        assert runs == 3 and watches.crashes == 2
        assert watches.get("a") is var  # the names bound to it stay current
        assert "w of 'a' failed; restarting" in caplog.text
        stop()
        nursery.cancel_scope.cancel()


async def test_idle_watches_close(autojump_clock: trio.testing.MockClock) -> None:
    started: list[str] = []

    async def watch(key: str, var: Var[int]) -> None:
        started.append(key)
        await trio.sleep_forever()

    watches: Watches[str, int] = Watches(watch, lambda k: 0, idle=10.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(watches.run)
        var = watches.get("a")
        stop = var.observe(lambda _: None)
        await trio.sleep(30)
        assert watches.open == 1  # observed: kept
        stop()
        await trio.sleep(30)
        assert watches.open == 0
        watches.get("a")  # used again: a new watch
        await trio.sleep(0.1)
        assert started == ["a", "a"]
        nursery.cancel_scope.cancel()
