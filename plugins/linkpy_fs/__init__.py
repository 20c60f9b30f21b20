"""``io.l5d.fs``: service discovery from files, one file per service.

This plugin is the model for all namer plugins: a frozen config class (the YAML keys),
registered under the ``linkpy.namers`` entry-point group with the kind as its name, and
a :class:`~linkpy.plugin.Namer` that publishes activities.
"""

from .namer import FsConfig as FsConfig
from .namer import FsNamer as FsNamer
from .namer import parse_file as parse_file
