"""``io.l5d.rewrite``: rewrite a path by a pattern, with no I/O.

``pattern: /{port}/{ns}/{svc}`` and ``name: /k8s/{ns}/{port}/{svc}`` turn
``/#/<prefix>/http/default/web/rest`` into ``/k8s/default/http/web/rest``, which goes
back through the dtab.  A path that does not match the pattern is Neg.
"""

from __future__ import annotations

import attrs

from linkpy.activity import Var
from linkpy.naming import Leaf, Name, NameTree, Neg, Ok, Path, State
from linkpy.plugin import Activity, Namer, NamerConfig, NamerContext, PathPattern, substitute


@attrs.frozen(kw_only=True)
class RewriteConfig(NamerConfig):
    """``kind: io.l5d.rewrite`` (``prefix`` is required)."""

    pattern: str = attrs.field()
    name: str = attrs.field()

    default_prefix = ""

    @pattern.validator
    def _pattern(self, _: object, value: str) -> None:
        PathPattern(value)

    def mk(self, ctx: NamerContext) -> Namer:
        if not self.prefix:
            raise ValueError("io.l5d.rewrite needs a prefix")
        return RewriteNamer(PathPattern(self.pattern), self.name)


class RewriteNamer(Namer):
    def __init__(self, pattern: PathPattern, name: str) -> None:
        self.pattern = pattern
        self.name = name
        self._cache: dict[Path, Activity] = {}

    def rewrite(self, path: Path) -> State[NameTree[Name]]:
        found = self.pattern.match(path)
        if found is None:
            return Ok(Neg)
        try:
            target = Path.read(substitute(self.name, found))
        except ValueError:
            return Ok(Neg)
        return Ok(Leaf(target.concat(path.drop(len(self.pattern.elems)))))

    def lookup(self, path: Path) -> Activity:
        var = self._cache.get(path)
        if var is None:
            if len(self._cache) > 10_000:
                self._cache = {p: v for p, v in self._cache.items() if v.observed}
            var = Var(self.rewrite(path))
            self._cache[path] = var
        return var
