"""The conformance suite of every namer, over the Marathon emulator."""

from __future__ import annotations

import pytest

from linkpy.naming import Path
from linkpy.plugin import Namer
from linkpy.testing import FakeMarathon, check_namer
from linkpy_marathon import MarathonNamer

from .conftest import build


class MarathonScenario:
    """The app ``/team/users`` (looked up as ``/team/users/v1``), its tasks on loopback."""

    def __init__(self, fake: FakeMarathon, **keys: object) -> None:
        self.fake = fake
        self.keys = keys
        self._namer: MarathonNamer | None = None
        fake.add_app("/team/users")

    def namer(self) -> Namer:
        self._namer, _ = build(self.fake, **self.keys)  # type: ignore[arg-type]
        return self._namer

    def existing(self) -> Path:
        return Path.read("/team/users/v1")

    def missing(self) -> Path:
        return Path.read("/team/nobody")

    async def set_addresses(self, addresses: list[tuple[str, int]]) -> None:
        self.fake.set_tasks(
            "/team/users", [{"host": host, "ports": [port]} for host, port in addresses]
        )

    async def break_backend(self) -> None:
        self.fake.fail_next(500, None)
        self.fake.drop_connections()

    async def mend_backend(self) -> None:
        self.fake.clear_faults()

    def open_watches(self) -> int:
        assert self._namer is not None
        return self._namer.open_watches + self.fake.open_event_streams


@pytest.mark.parametrize(
    "keys",
    [
        {},  # the event stream, with polling as the safety net
        {"useEventStream": False},  # Linkerd's polling only
        {"ttlMs": 60_000, "jitterMs": 0},  # the event stream alone delivers changes
    ],
    ids=["events+polling", "polling", "events"],
)
async def test_the_marathon_namer_conforms(marathon: FakeMarathon, keys: dict[str, object]) -> None:
    await check_namer(MarathonScenario(marathon, **keys))
