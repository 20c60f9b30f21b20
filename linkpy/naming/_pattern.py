"""Path patterns of client/service prefixes and of ``io.l5d.rewrite``.

A pattern is a path whose elements may be ``*`` (any one element) or hold ``{var}``
captures (part of an element, greedily: ``{a}-{b}`` on ``x-y-z`` gives ``a=x-y``,
``b=z``).  A pattern matches a path that starts with it.
"""

from __future__ import annotations

import re
from typing import cast

from ._path import Path

_VAR = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class PathPattern:
    """A client/service prefix such as ``/#/io.l5d.fs/{service}`` or ``/$/inet/*/80``."""

    __slots__ = ("text", "elems")

    def __init__(self, text: str) -> None:
        self.text = text
        self.elems: list[tuple[str, object]] = []
        for elem in [e for e in text.split("/") if e]:
            if elem == "*":
                self.elems.append(("any", None))
            elif _VAR.search(elem):
                parts = _VAR.split(elem)  # literal, var, literal, var, ..., literal
                names = parts[1::2]
                regex = "".join(re.escape(p) if i % 2 == 0 else "(.*)" for i, p in enumerate(parts))
                self.elems.append(("vars", (re.compile(regex, re.S), names)))
            else:
                self.elems.append(("lit", Path.read("/" + elem).elems[0]))

    def match(self, path: Path) -> dict[str, str] | None:
        """The captured variables if ``path`` starts with this prefix, else None."""
        pe = path.elems
        if len(self.elems) > len(pe):
            return None
        captured: dict[str, str] = {}
        for (kind, value), elem in zip(self.elems, pe, strict=False):
            if kind == "lit":
                if value != elem:
                    return None
            elif kind == "vars":
                regex, names = cast("tuple[re.Pattern[str], list[str]]", value)
                m = regex.fullmatch(elem.decode("utf-8", "replace"))
                if m is None:
                    return None
                captured.update(zip(names, m.groups(), strict=True))
        return captured


def substitute(template: str, variables: dict[str, str]) -> str:
    """Fill ``{var}``s of a value (such as a TLS ``commonName``)."""
    return _VAR.sub(lambda m: variables.get(m.group(1), m.group(0)), template)
