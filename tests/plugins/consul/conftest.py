"""Fixtures of the Consul namer tests."""

from __future__ import annotations

import pytest
import trio

from linkpy.testing import FakeConsul


@pytest.fixture
async def consul(nursery: trio.Nursery) -> FakeConsul:
    """A Consul emulator on a loopback port (datacenter dc1, agent node-a)."""
    fake = FakeConsul(seed=7)
    await nursery.start(fake.serve)
    return fake
