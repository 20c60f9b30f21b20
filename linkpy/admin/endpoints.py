"""The built-in admin endpoints: path, methods and a one-line description of each.

This table is the one list: the server routes from it, ``/admin`` prints it, the
telemeters may not take its paths, and the tests check docs/admin.md against it.  A
path ending in ``/`` with ``prefix`` set serves everything below it.
"""

from __future__ import annotations

from typing import Final

import attrs

READ: Final = frozenset({"GET", "HEAD"})


@attrs.frozen
class Endpoint:
    path: str
    help: str
    methods: frozenset[str] = READ
    prefix: bool = False


ENDPOINTS: Final = (
    Endpoint("/", "the dashboard: routers, servers, services, clients and endpoints, live"),
    Endpoint("/delegator", "the delegator: explain how a path binds through a dtab"),
    Endpoint("/files", "the loaded config file(s)"),
    Endpoint("/files/", "the text of one loaded file", prefix=True),
    Endpoint("/admin/files/", "the static files of the pages (HTML, JS, CSS)", prefix=True),
    Endpoint("/admin", "this list of endpoints"),
    Endpoint("/admin/index.txt", "this list of endpoints"),
    Endpoint("/admin/ping", "health check: 200 pong"),
    Endpoint("/admin/metrics.json", "every metric, flat (?q=prefix, ?tree=1, ?pretty=1)"),
    Endpoint("/admin/routers.json", "routers, servers, services, clients and endpoints"),
    Endpoint("/admin/tasks.json", "the tree of running trio tasks, as JSON"),
    Endpoint("/admin/tasks", "the tree of running trio tasks, as text"),
    Endpoint(
        "/admin/shutdown", "POST: drain and stop (grace admin.shutdownGraceMs)", frozenset({"POST"})
    ),
    Endpoint(
        "/admin/reload",
        "POST: re-read the config file and apply it without dropping connections",
        frozenset({"POST"}),
    ),
    Endpoint("/config.json", "the config file, as JSON"),
    Endpoint(
        "/delegator.json",
        "the delegation tree of ?path= through ?dtab= (&namespace=router), or a JSON POST",
        READ | {"POST"},
    ),
    Endpoint("/client_state.json", "each client's addresses (bound, Neg, Pending, Failed)"),
    Endpoint("/bound-names.json", "the concrete names the namers can list"),
    Endpoint("/namer_state/", "a namer's watch state: /namer_state/<prefix>.json", prefix=True),
)

#: The path of the Prometheus text when no ``io.l5d.prometheus`` telemeter sets one.
PROMETHEUS_PATH: Final = "/admin/metrics/prometheus"

BUILTIN_PATHS: Final = frozenset(e.path for e in ENDPOINTS)


def taken(path: str) -> bool:
    """Whether a built-in endpoint already serves ``path``."""
    return path in BUILTIN_PATHS or any(e.prefix and path.startswith(e.path) for e in ENDPOINTS)
