"""Test support: emulators of the discovery backends the namers talk to.

``FakeConsul``, ``FakeKubernetes`` and ``FakeMarathon`` speak the real HTTP APIs on
a loopback port; see :mod:`linkpy.testing.fakes`.
"""

from .fakes.consul import FakeConsul as FakeConsul
from .fakes.kubernetes import FakeKubernetes as FakeKubernetes
from .fakes.marathon import FakeMarathon as FakeMarathon
