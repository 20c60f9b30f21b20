"""``com.example.registry``: an example namer plugin for linkpy.

Names ``/#/com.example.registry/<service>[/residual]`` after a small HTTP registry
whose ``GET <url>/v1/services/<service>`` answers ``{"addresses": ["host:port", ...]}``
(404 when the service does not exist).  Copy it to write your own namer.
"""

from .namer import RegistryConfig as RegistryConfig
from .namer import RegistryNamer as RegistryNamer
from .namer import parse_addresses as parse_addresses
