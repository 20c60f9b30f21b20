"""Kubernetes label and field selectors (the query-string syntax of list and watch)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

import attrs

Op = Literal["=", "!=", "in", "notin", "exists", "!exists"]

_KEY = r"[A-Za-z0-9](?:[A-Za-z0-9._/-]*[A-Za-z0-9])?"
_VALUE = r"(?:[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)?"
_EQ = re.compile(rf"\s*({_KEY})\s*(==|=|!=)\s*({_VALUE})\s*\Z")
_SET = re.compile(rf"\s*({_KEY})\s+(in|notin)\s*\(([^()]*)\)\s*\Z")
_EXISTS = re.compile(rf"\s*({_KEY})\s*\Z")
_NOT_EXISTS = re.compile(rf"\s*!\s*({_KEY})\s*\Z")


@attrs.frozen
class Requirement:
    """One term of a label selector."""

    key: str
    op: Op
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        if self.op in ("=", "in"):
            return present and value in self.values
        # "!=" and "notin" also match objects without the label
        return not present or value not in self.values


def _split_terms(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    terms: list[str] = []
    depth = 0
    current = ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += ch
    terms.append(current)
    return terms


def parse_label_selector(text: str) -> list[Requirement]:
    """Parse ``k=v``, ``k==v``, ``k!=v``, ``k in (a,b)``, ``k notin (a)``, ``k``, ``!k``,
    joined by commas (AND).  Raises ValueError with the apiserver's wording."""
    if not text.strip():
        return []
    out: list[Requirement] = []
    for term in _split_terms(text):
        if m := _EQ.match(term):
            op: Op = "!=" if m.group(2) == "!=" else "="
            out.append(Requirement(m.group(1), op, frozenset({m.group(3)})))
        elif m := _SET.match(term):
            values = frozenset(v.strip() for v in m.group(3).split(","))
            if not all(re.fullmatch(_VALUE, v) for v in values):
                raise ValueError(f"unable to parse requirement: invalid values in {term!r}")
            out.append(Requirement(m.group(1), "in" if m.group(2) == "in" else "notin", values))
        elif m := _NOT_EXISTS.match(term):
            out.append(Requirement(m.group(1), "!exists"))
        elif m := _EXISTS.match(term):
            out.append(Requirement(m.group(1), "exists"))
        else:
            raise ValueError(f"unable to parse requirement: found {term.strip()!r}")
    return out


@attrs.frozen
class FieldRequirement:
    """One term of a field selector: ``field=value`` or ``field!=value``."""

    field: str
    equal: bool
    value: str

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return (field_value(obj, self.field) == self.value) == self.equal


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """The string form of a dotted field (``metadata.name``), "" when absent."""
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return ""
        cur = cur[part]
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return "" if cur is None else str(cur)


def parse_field_selector(text: str, supported: frozenset[str]) -> list[FieldRequirement]:
    """Parse ``a.b=v``, ``a.b==v``, ``a.b!=v`` joined by commas; only ``supported`` fields."""
    if not text.strip():
        return []
    out: list[FieldRequirement] = []
    for term in text.split(","):
        m = re.fullmatch(r"\s*([A-Za-z0-9._]+)\s*(==|=|!=)\s*(.*?)\s*", term)
        if m is None:
            raise ValueError(f"invalid selector: {term!r}; can't understand {term!r}")
        if m.group(1) not in supported:
            raise ValueError(f"field label not supported: {m.group(1)}")
        out.append(FieldRequirement(m.group(1), m.group(2) != "!=", m.group(3)))
    return out
