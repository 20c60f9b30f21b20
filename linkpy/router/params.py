"""Per-prefix client and service parameters (``io.l5d.global`` / ``io.l5d.static``).

An entry's prefix is matched against a name element by element: ``*`` matches any one
element, and ``{var}`` captures (part of) an element, greedily (``{a}-{b}`` on
``x-y-z`` gives ``a=x-y``, ``b=z``).  Every matching entry applies, in file order, so a
later entry's keys override an earlier one's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import attrs

from ..config.schema import PerPrefix
from ..naming import Path, PathPattern

T = TypeVar("T")


class Params:
    """The entries of a ``client`` or ``service`` section, ready to match names."""

    def __init__(self, section: PerPrefix, params_cls: type) -> None:
        self.params_cls = params_cls
        self.entries: Sequence[tuple[PathPattern, Any]] = [
            (PathPattern(e.prefix), e.params) for e in section.entries
        ]

    def resolve(self, name: Path) -> tuple[Any, dict[str, str]]:
        """The merged parameters for ``name`` and the variables their prefixes captured."""
        merged: dict[str, Any] = {}
        variables: dict[str, str] = {}
        for pattern, params in self.entries:
            found = pattern.match(name)
            if found is None:
                continue
            variables.update(found)
            for field in attrs.fields(type(params)):
                value = getattr(params, field.name)
                if value is not None:
                    merged[field.name] = value
        return self.params_cls(**merged), variables
