"""The plugin's tests: its parser, linkpy's conformance suite, and its discovery."""

from __future__ import annotations

import pytest
import trio

from linkpy.config.load import load
from linkpy.config.registry import Registry
from linkpy.metrics import Metrics
from linkpy.naming import Address, Path
from linkpy.plugin import Namer, NamerContext
from linkpy.testing import check_namer

# linkpy's own repository type-checks this file without installing the plugin, hence
# the two ignores; in your copy (installed with pip install -e .) delete them.
from linkpy_example import RegistryConfig, parse_addresses  # type: ignore[import-not-found]
from linkpy_example.testing import FakeRegistry  # type: ignore[import-not-found]


def test_parse_addresses() -> None:
    assert parse_addresses({"addresses": ["10.0.0.1:80"]}) == [Address("10.0.0.1", 80)]
    for bad in (None, {}, {"addresses": ["10.0.0.1"]}, {"addresses": ["h:99999"]}):
        with pytest.raises(ValueError):
            parse_addresses(bad)


class Scenario:
    """How check_namer drives the namer and its backend."""

    def __init__(self, registry: FakeRegistry) -> None:
        self.registry = registry

    def namer(self) -> Namer:
        config = RegistryConfig(url=self.registry.url, pollIntervalMs=50)
        namer: Namer = config.mk(NamerContext(metrics=Metrics()))
        namer.prefix = Path.read("/#/com.example.registry")
        return namer

    def existing(self) -> Path:
        return Path.read("/users")

    def missing(self) -> Path:
        return Path.read("/nobody")

    async def set_addresses(self, addresses: list[tuple[str, int]]) -> None:
        self.registry.set("users", addresses)

    async def break_backend(self) -> None:
        self.registry.fail_next(500, None)

    async def mend_backend(self) -> None:
        self.registry.clear_faults()

    def open_watches(self) -> int:
        return 0  # polls hold no connection between reads


async def test_conformance(nursery: trio.Nursery) -> None:
    registry = FakeRegistry()
    await nursery.start(registry.serve)
    await check_namer(Scenario(registry))


def test_linkpy_finds_the_plugin_by_its_kind() -> None:
    """Run once the distribution is installed (pip install -e .): the entry point."""
    text = (
        "namers:\n- kind: com.example.registry\n  url: http://127.0.0.1:1\n"
        "routers:\n- protocol: http\n  dtab: /svc => /#/com.example.registry;\n"
        "  servers: [{port: 4140}]\n"
    )
    (namer,) = load(text).namers
    assert isinstance(namer, RegistryConfig) and namer.pollIntervalMs == 1000
    assert Registry.discover().get("linkpy.namers", "com.example.registry") is RegistryConfig
