"""Test support: emulators of the discovery backends the namers talk to.

See :mod:`linkpy.testing.fakes`.
"""

from .fakes.consul import FakeConsul as FakeConsul
from .fakes.kubernetes import FakeKubernetes as FakeKubernetes
