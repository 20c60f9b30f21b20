"""The stable API for plugin authors: namers (and the other plugin kinds).

A namer plugin is a distribution that declares an entry point in the
``linkpy.namers`` group whose name is the config ``kind`` and whose value is a
:class:`NamerConfig` subclass::

    [options.entry_points]
    linkpy.namers =
        com.example.mynamer = example_namer:MyNamerConfig

The config class is a frozen attrs class whose fields are the YAML keys of the namer
(camelCase, as Linkerd spells them); linkpy reads the config strictly (unknown keys are
errors) and calls :meth:`NamerConfig.mk` to build the :class:`Namer`.

A :class:`Namer` answers :meth:`Namer.lookup` with a :class:`~linkpy.activity.Var` of
a naming state (an *activity*): ``Pending`` until it knows, then ``Ok(tree)`` where the
tree's leaves are :class:`~linkpy.naming.Bound` names (each with a ``Var`` of
:class:`~linkpy.naming.Addr` for its endpoints) or paths to rewrite further, or
``Ok(Neg)`` when the name does not exist.  It updates those vars as its backend
changes.  Its background work (watches, polling) runs in :meth:`Namer.run`, which
linkpy starts in its own nursery with ``nursery.start``.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any, ClassVar

import attrs
import trio

from .activity import Mapped as Mapped
from .activity import Var as Var
from .metrics import Scope
from .naming import Name, NameTree, Path, PathPattern, State, substitute
from .router.transformers import Transformer as Transformer
from .router.transformers import TransformerConfig as TransformerConfig
from .router.transformers import TransformerContext as TransformerContext
from .watches import Watches as Watches

Activity = Var[State[NameTree[Name]]]

__all__ = [
    "Activity",
    "Mapped",
    "Namer",
    "NamerConfig",
    "NamerContext",
    "PathPattern",
    "Transformer",
    "TransformerConfig",
    "TransformerContext",
    "Var",
    "Watches",
    "substitute",
]


@attrs.frozen(kw_only=True)
class NamerContext:
    """What linkpy gives a namer when it is built."""

    #: metrics scope ``namer/<prefix>``
    metrics: Scope
    #: the directory of the config file (relative paths are relative to it)
    config_dir: str = "."


class Namer(abc.ABC):
    """A namer's runtime object: answers lookups, keeps the answers current."""

    #: The path under ``/#`` this namer serves (``/#/io.l5d.fs``); set by linkpy.
    prefix: Path = Path.empty

    @abc.abstractmethod
    def lookup(self, path: Path) -> Activity:
        """The activity for ``path`` (the part after the namer's prefix).

        Called on the event loop; must not block.  Return the same Var for the same
        path while it is in use, so that bindings share it.
        """

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the namer's background work until cancelled; report readiness."""
        task_status.started()
        await trio.sleep_forever()

    def bound_names(self) -> list[str]:
        """The concrete names this namer knows (``/bound-names.json``), if it can list them."""
        return []

    def state(self) -> Mapping[str, Any]:
        """Internal state for ``/namer_state/<prefix>.json``."""
        return {}


@attrs.frozen(kw_only=True)
class NamerConfig(abc.ABC):
    """Base of every namer's config: the keys common to all namers."""

    #: ``/#/<prefix>``; the kind's ``default_prefix`` when absent
    prefix: str | None = None
    #: must be true for namers marked experimental
    experimental: bool = False
    #: transformers applied to this namer's bound names
    transformers: list[TransformerConfig] | None = None

    #: set by subclasses
    default_prefix: ClassVar[str] = ""
    experimental_required: ClassVar[bool] = False

    @abc.abstractmethod
    def mk(self, ctx: NamerContext) -> Namer:
        """Build the namer this config describes."""
