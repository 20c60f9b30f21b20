"""The states of a value that changes over time (Finagle's ``Activity.State``).

``Pending`` (not known yet), ``Ok(value)``, or ``Failed(exc)``.  The pure layers
pass these around; ``linkpy.activity`` makes them observable from trio tasks.
"""

from __future__ import annotations

from typing import Final, Generic, TypeVar

import attrs

T_co = TypeVar("T_co", covariant=True)
T = TypeVar("T")


class _PendingType:
    __slots__ = ()

    def __repr__(self) -> str:
        return "Pending"

    def __reduce__(self) -> str:
        return "Pending"


Pending: Final = _PendingType()
PendingType = _PendingType


@attrs.frozen
class Ok(Generic[T_co]):
    value: T_co


@attrs.frozen(eq=False)
class Failed:
    exc: BaseException

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Failed):
            return NotImplemented
        return self.exc is other.exc or (
            type(self.exc) is type(other.exc) and str(self.exc) == str(other.exc)
        )

    def __hash__(self) -> int:
        return hash((type(self.exc), str(self.exc)))


State = _PendingType | Ok[T] | Failed
