"""Test support for linkpy and its plugins.

- ``FakeConsul``, ``FakeKubernetes`` and ``FakeMarathon`` speak the real HTTP APIs of
  the discovery backends on a loopback port (see :mod:`linkpy.testing.fakes`);
- ``check_namer`` is the conformance suite every namer passes, described by a
  ``NamerScenario`` (see :mod:`linkpy.testing.conformance`).
"""

from .conformance import NamerScenario as NamerScenario
from .conformance import check_namer as check_namer
from .fakes.consul import FakeConsul as FakeConsul
from .fakes.kubernetes import FakeKubernetes as FakeKubernetes
from .fakes.marathon import FakeMarathon as FakeMarathon
