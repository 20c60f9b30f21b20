"""Emulators of the discovery backends' HTTP APIs (Consul, Kubernetes, Marathon).

Each emulator is a :class:`~linkpy.testing.fakes._http.FakeServer` that listens on a
loopback port inside the caller's nursery and is scripted with synchronous methods::

    consul = FakeConsul()
    port = await nursery.start(consul.serve)      # 127.0.0.1, ephemeral port
    consul.register("web", "10.0.0.1", 8080)      # wakes blocked queries
    consul.fail_next(500)                         # faults: fail/hang/drop/delay/...
    ... namer under test talks to consul.url ...
    assert consul.requests_to("/v1/health/service/web")[0].has_param("index")

Common to all three (from ``FakeServer``): ``serve``, ``url``/``host``/``port``,
``requests``/``requests_to``/``clear_requests``, ``fail_next``, ``hang_next``,
``drop_next``, ``delay_next``, ``truncate_next``, ``garble_next``, ``rewrite_next``,
``clear_faults``, ``drop_connections``, ``open_connections``.  Each adds its own
state and fault methods and a ``restart()`` with the real system's semantics.

``python -m linkpy.testing.fakes {consul,kubernetes,marathon}`` runs one from the
command line.

A plugin author emulating another backend builds on the same core (part of the
plugin API): subclass :class:`FakeServer`, add routes to ``self.router`` whose
handlers return :func:`json_response`/:func:`text_response`, and every fault method
above comes for free (plugins/README.md shows one).
"""

from ._http import FakeServer as FakeServer
from ._http import Request as Request
from ._http import Response as Response
from ._http import StreamResponse as StreamResponse
from ._http import json_response as json_response
from ._http import text_response as text_response

__all__ = [
    "FakeServer",
    "Request",
    "Response",
    "StreamResponse",
    "json_response",
    "text_response",
]
