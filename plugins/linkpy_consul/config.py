"""``kind: io.l5d.consul``: the config keys (Linkerd 1.x's, plus a few of linkpy's)."""

from __future__ import annotations

from typing import Any

import attrs

from linkpy.plugin import Namer, NamerConfig, NamerContext

from .api import STATUSES, Consistency


def _port(_: Any, attribute: attrs.Attribute[int], value: int) -> None:
    if not 0 < value < 65536:
        raise ValueError(f"{attribute.name}: {value} is not a port (1..65535)")


def _positive(_: Any, attribute: attrs.Attribute[int], value: int) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name}: must be positive, not {value}")


def _wait(_: Any, attribute: attrs.Attribute[int], value: int) -> None:
    if not 0 < value <= 600:
        raise ValueError(f"{attribute.name}: must be 1..600 seconds (Consul caps waits at 10m)")


def _statuses(_: Any, attribute: attrs.Attribute[list[str]], value: list[str]) -> None:
    if not value:
        raise ValueError(f"{attribute.name}: must list at least one status")
    for s in value:
        if s not in STATUSES:
            raise ValueError(
                f"{attribute.name}: unknown status {s!r} (known: {', '.join(STATUSES)})"
            )


@attrs.frozen(kw_only=True)
class TagWeight:
    """One entry of ``weights``: instances tagged ``tag`` get ``weight``."""

    tag: str
    weight: float = attrs.field(validator=attrs.validators.ge(0.0))


@attrs.frozen(kw_only=True)
class ConsulConfig(NamerConfig):
    """``kind: io.l5d.consul`` (docs/namers/consul.md describes every key)."""

    #: the Consul agent (or server) HTTP API
    host: str = "localhost"
    port: int = attrs.field(default=8500, validator=_port)
    #: paths are ``/<dc>/<tag>/<service>`` instead of ``/<dc>/<service>``
    includeTag: bool = False
    #: read ``/v1/health/service`` (instances filtered by ``healthStatuses``) instead
    #: of ``/v1/catalog/service`` (every registered instance)
    useHealthCheck: bool = False
    #: with ``useHealthCheck``: the instance health states that receive traffic
    healthStatuses: list[str] = attrs.field(factory=lambda: ["passing"], validator=_statuses)
    #: ACL token, sent as ``X-Consul-Token``
    token: str | None = None
    #: rewrite the HTTP ``Host`` to ``[<tag>.]<service>.service.<dc>.<domain>``
    setHost: bool = False
    #: ``default``, ``stale`` or ``consistent`` reads
    consistencyMode: Consistency = "default"
    #: before a service has had a first answer, a failing Consul fails its lookups at
    #: once (true) or leaves them pending while the namer retries (false)
    failFast: bool = False
    #: use the service's address when it has one (else always the node's)
    preferServiceAddress: bool = True
    #: load-balancer weights by tag (an instance gets its heaviest tag's weight, else 1)
    weights: list[TagWeight] | None = None
    #: copy Consul's service meta (of the first instance) onto the address set and each
    #: node's meta onto its addresses
    transferMetadata: bool = False
    # -- linkpy's additions ---------------------------------------------------------
    #: multiply each instance's weight by Consul's own ``Weights`` (``Passing``, or
    #: ``Warning`` for an instance in warning), as Consul's DNS does
    useConsulWeights: bool = False
    #: how long a blocking query may wait for a change (Consul's ``wait``; max 600)
    waitSecs: int = attrs.field(default=300, validator=_wait)
    #: deadline of a plain request, and slack added to a blocking query's wait
    requestTimeoutMs: int = attrs.field(default=10_000, validator=_positive)
    #: close the watch of a service nobody has looked up for this long
    watchIdleSecs: int = attrs.field(default=30, validator=_positive)

    default_prefix = "/io.l5d.consul"

    def tag_weights(self) -> dict[str, float]:
        """``weights`` by lower-cased tag (the heaviest wins on duplicates)."""
        out: dict[str, float] = {}
        for w in self.weights or ():
            key = w.tag.lower()
            out[key] = max(out.get(key, 0.0), w.weight)
        return out

    def mk(self, ctx: NamerContext) -> Namer:
        from .namer import ConsulNamer

        return ConsulNamer(self, ctx)
