"""The plugin registry: config ``kind`` -> plugin, discovered through entry points.

Groups (DESIGN section 3.4): ``linkpy.namers``, ``linkpy.identifiers``,
``linkpy.transformers``, ``linkpy.telemeters``, ``linkpy.classifiers``.  The entry
point's name is the ``kind``; its value is the plugin's config class.  The built-in
plugins are declared the same way in linkpy's own ``setup.cfg``.

The registry is discovered once (:meth:`Registry.discover`); tests may build one by
hand and pass it to the config loader.  Discovering reads the entry points' names
only: a plugin's module is imported when a config first uses its kind
(:meth:`Registry.get`), so that a process imports the plugins it runs and not the
others (the Kubernetes, Consul and Marathon namers and their HTTP clients weigh
megabytes of memory).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

import attrs

from ..errors import ConfigError

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

log = logging.getLogger("linkpy.config")

GROUPS: Final = (
    "linkpy.namers",
    "linkpy.identifiers",
    "linkpy.transformers",
    "linkpy.telemeters",
    "linkpy.classifiers",
)


class PluginLoadError(ConfigError):
    """A plugin's entry point names a class that cannot be imported."""


@attrs.frozen(eq=False)
class Registry:
    """Plugins by group and kind: each a class, or the entry point that loads it."""

    groups: Mapping[str, Mapping[str, type | EntryPoint]]
    _loaded: dict[tuple[str, str], type] = attrs.field(factory=dict, init=False)

    def kinds(self, group: str) -> frozenset[str]:
        """The kinds of a group (no plugin is imported)."""
        return frozenset(self.groups.get(group, {}))

    def get(self, group: str, kind: str) -> type | None:
        """The plugin class of a kind (None if no plugin has it), imported now if need be.

        Raises :class:`PluginLoadError` when its entry point cannot be loaded.
        """
        found = self._loaded.get((group, kind))
        if found is not None:
            return found
        entry = self.groups.get(group, {}).get(kind)
        if entry is None or isinstance(entry, type):
            return entry
        try:
            cls = entry.load()
        except Exception as e:  # a broken plugin breaks the configs that use it, only
            log.error("cannot load plugin %s (%s): %s", kind, entry.value, e)
            raise PluginLoadError(f"cannot load plugin {kind!r} ({entry.value}): {e}") from e
        if not isinstance(cls, type):
            raise PluginLoadError(f"plugin {kind!r} ({entry.value}) is not a class")
        self._loaded[(group, kind)] = cls
        return cls

    def with_plugins(self, group: str, plugins: Mapping[str, type | EntryPoint]) -> Registry:
        """A registry with more plugins in ``group`` (tests, embedding)."""
        groups = {g: dict(k) for g, k in self.groups.items()}
        groups.setdefault(group, {}).update(plugins)
        registry = Registry(groups)
        for (g, kind), cls in self._loaded.items():
            if g != group or kind not in plugins:
                registry._loaded[(g, kind)] = cls
        return registry

    @classmethod
    def discover(cls) -> Registry:
        """Read the entry points of the plugin groups (cached); import none of them."""
        global _discovered
        if _discovered is None:
            _discovered = cls._load()
        return _discovered

    @classmethod
    def _load(cls) -> Registry:
        from importlib.metadata import entry_points

        groups: dict[str, dict[str, type | EntryPoint]] = {}
        for group in GROUPS:
            found: dict[str, type | EntryPoint] = {}
            for ep in entry_points(group=group):
                other = found.get(ep.name)
                if other is not None:
                    raise ConfigError(
                        f"two plugins claim kind {ep.name!r} in {group}: "
                        f"{getattr(other, 'value', other)} and {ep.value}"
                    )
                found[ep.name] = ep
            groups[group] = found
        return cls(groups)


_discovered: Registry | None = None
