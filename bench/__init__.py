"""linkpy's benchmark harness (see bench/README.md).

Each scenario is a module ``bench/<name>.py`` with a ``run()`` that measures, and saves
its tables through :func:`bench.report.save`.  ``bench/run`` runs them in this order
(docs/benchmarks.md shows them in it too); to add one, write the module and add its
name here.
"""

SCENARIOS = [
    "http1",
    "telemetry",
    "latency",
    "h2",
    "memory",
    "naming",
    "discovery_consul",
    "discovery_k8s",
    "discovery_marathon",
    "balancing",
    "profile",
]
