"""The conformance kit itself, run against the file namer; and the watch helpers."""

from __future__ import annotations

from pathlib import Path

import trio

from linkpy.activity import Mapped, Var
from linkpy.metrics import Metrics
from linkpy.naming import Path as NPath
from linkpy.plugin import Namer, NamerContext
from linkpy.testing import check_namer
from linkpy.watches import Watches
from linkpy_fs import FsConfig


class FsScenario:
    """The file namer's backend is a directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dir = root / "disco"
        self.dir.mkdir()
        self.parked = root / "parked"

    def namer(self) -> Namer:
        n = FsConfig(rootDir=str(self.dir), pollIntervalMs=10).mk(NamerContext(metrics=Metrics()))
        n.prefix = NPath.read("/#/io.l5d.fs")
        return n

    def existing(self) -> NPath:
        return NPath.read("/users")

    def missing(self) -> NPath:
        return NPath.read("/nobody")

    async def set_addresses(self, addresses: list[tuple[str, int]]) -> None:
        (self.dir / "users").write_text("".join(f"{h} {p}\n" for h, p in addresses))

    async def break_backend(self) -> None:
        self.dir.rename(self.parked)

    async def mend_backend(self) -> None:
        self.parked.rename(self.dir)

    def open_watches(self) -> int:
        return 0  # one poller for the whole directory, nothing per service


async def test_the_file_namer_conforms(tmp_path: Path) -> None:
    await check_namer(FsScenario(tmp_path))


async def test_watches_are_shared_and_closed_when_idle(autojump_clock: object) -> None:
    started: list[str] = []

    async def watch(key: str, var: Var[int]) -> None:
        started.append(key)
        while True:
            await trio.sleep(1)
            var.set(var.sample() + 1)

    watches: Watches[str, int] = Watches(watch, lambda key: 0, idle=10)
    async with trio.open_nursery() as nursery:
        await nursery.start(watches.run)
        a = watches.get("a")
        assert watches.get("a") is a
        stop = a.observe(lambda _: None)
        await trio.sleep(5)
        assert started == ["a"] and a.sample() >= 4
        stop()
        await trio.sleep(20)
        assert watches.open == 0
        assert trio.current_time() < 30
        again = watches.get("a")
        await trio.sleep(1)
        assert again is not a and started == ["a", "a"]
        nursery.cancel_scope.cancel()


def observed(v: Var[int]) -> bool:
    return v.observed


async def test_mapped_follows_its_source_only_while_observed() -> None:
    src: Var[int] = Var(1)
    doubled = Mapped(src, lambda v: v * 2)
    assert doubled.sample() == 2
    assert not observed(src)
    seen: list[int] = []
    stop = doubled.observe(seen.append)
    assert observed(src)
    src.set(5)
    assert seen == [10] and doubled.sample() == 10
    stop()
    assert not observed(src)
    src.set(7)
    assert doubled.sample() == 14
