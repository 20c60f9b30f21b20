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
"""
