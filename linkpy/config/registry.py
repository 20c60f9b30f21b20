"""The plugin registry: config ``kind`` -> plugin, discovered through entry points.

Groups (DESIGN section 3.4): ``linkpy.namers``, ``linkpy.identifiers``,
``linkpy.transformers``, ``linkpy.telemeters``, ``linkpy.classifiers``.  The entry
point's name is the ``kind``; its value is the plugin's config class.  The built-in
plugins are declared the same way in linkpy's own ``setup.cfg``.

The registry is discovered once (:meth:`Registry.discover`); tests may build one by
hand and pass it to the config loader.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Final

import attrs

from ..errors import ConfigError

log = logging.getLogger("linkpy.config")

GROUPS: Final = (
    "linkpy.namers",
    "linkpy.identifiers",
    "linkpy.transformers",
    "linkpy.telemeters",
    "linkpy.classifiers",
)


@attrs.frozen
class Registry:
    """Plugins by group and kind."""

    groups: Mapping[str, Mapping[str, type]]

    def kinds(self, group: str) -> Mapping[str, type]:
        return self.groups.get(group, {})

    def get(self, group: str, kind: str) -> type | None:
        return self.kinds(group).get(kind)

    def with_plugins(self, group: str, plugins: Mapping[str, type]) -> Registry:
        """A registry with more plugins in ``group`` (tests, embedding)."""
        groups = {g: dict(k) for g, k in self.groups.items()}
        groups.setdefault(group, {}).update(plugins)
        return Registry(groups)

    @classmethod
    def discover(cls) -> Registry:
        """Load every entry point of the plugin groups (cached)."""
        global _discovered
        if _discovered is None:
            _discovered = cls._load()
        return _discovered

    @classmethod
    def _load(cls) -> Registry:
        groups: dict[str, dict[str, type]] = {}
        for group in GROUPS:
            found: dict[str, type] = {}
            for ep in entry_points(group=group):
                if ep.name in found:
                    other = found[ep.name]
                    raise ConfigError(
                        f"two plugins claim kind {ep.name!r} in {group}: "
                        f"{other.__module__}.{other.__qualname__} and {ep.value}"
                    )
                try:
                    found[ep.name] = ep.load()
                except Exception as e:  # a broken plugin must not take the others down
                    log.error("cannot load plugin %s (%s): %s", ep.name, ep.value, e)
            groups[group] = found
        return cls(groups)


_discovered: Registry | None = None
