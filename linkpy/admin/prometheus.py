"""The ``io.l5d.prometheus`` telemeter: the metrics in the Prometheus text format.

::

    telemetry:
    - kind: io.l5d.prometheus
      path: /admin/metrics/prometheus   # the admin path (default)
      prefix: linkpy_                   # put before every metric name (default none)

Linkerd serves the Prometheus text only when this telemeter is configured; linkpy
serves it at the default path, without a prefix, when no ``io.l5d.prometheus``
telemeter is configured.  With one (or more), each serves its own path only.

A telemeter config that has an ``admin_routes(linker)`` method adds admin endpoints:
the admin server calls it once at start and serves each ``(path, handler, help)``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import attrs

from ..config.schema import ConfigValueError, TelemeterConfig
from .endpoints import PROMETHEUS_PATH, taken

if TYPE_CHECKING:
    from ..linker import Linker
    from .server import Request, Response

#: Prometheus' own content type for the text format.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_PREFIX = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def _path(_: object, a: attrs.Attribute[str], value: str) -> None:
    if not value.startswith("/") or "?" in value or "#" in value:
        raise ConfigValueError(f"{value!r} must be an admin path starting with '/'", key=a.name)
    if taken(value):
        raise ConfigValueError(f"{value!r} is already an admin endpoint", key=a.name)


def _prefix(_: object, a: attrs.Attribute[str], value: str) -> None:
    if value and not _PREFIX.fullmatch(value):
        raise ConfigValueError(
            f"{value!r} must be a Prometheus metric name start ([A-Za-z_:][A-Za-z0-9_:]*)",
            key=a.name,
        )


@attrs.frozen(kw_only=True)
class PrometheusConfig(TelemeterConfig):
    """``kind: io.l5d.prometheus``."""

    path: str = attrs.field(default=PROMETHEUS_PATH, validator=_path)
    prefix: str = attrs.field(default="", validator=_prefix)

    def admin_routes(
        self, linker: Linker
    ) -> list[tuple[str, Callable[[Request], Awaitable[Response]], str]]:
        return [
            (self.path, handler(linker, self.prefix), "the metrics in the Prometheus text format")
        ]


def handler(linker: Linker, prefix: str) -> Callable[[Request], Awaitable[Response]]:
    from .server import Response

    async def prometheus(req: Request) -> Response:
        return Response(200, linker.metrics.prometheus(prefix).encode(), CONTENT_TYPE)

    return prometheus
