"""The conformance suite over the Kubernetes emulator, with EndpointSlices and Endpoints.

(``io.l5d.k8s.external`` binds one Service port to the load balancer's ingress hosts, so
it cannot list the kit's two ports of one host; ``test_namer.py`` covers it.)"""

from __future__ import annotations

from typing import Any

import trio

from linkpy.metrics import Metrics
from linkpy.naming import Path
from linkpy.plugin import Namer, NamerContext
from linkpy.testing import check_namer
from linkpy.testing.fakes.kubernetes import FakeKubernetes
from linkpy_k8s import K8sConfig

from .helpers import FAST, Slices


class K8sScenario:
    """``/#/io.l5d.k8s/prod/http/web`` over EndpointSlices (or v1 Endpoints)."""

    def __init__(self, k8s: FakeKubernetes, **keys: Any) -> None:
        self.k8s = k8s
        self.keys = keys
        self.slices = Slices(k8s)

    def namer(self) -> Namer:
        cfg = K8sConfig(host="127.0.0.1", port=self.k8s.port, **{**FAST, **self.keys})
        n = cfg.mk(NamerContext(metrics=Metrics()))
        n.prefix = Path.read("/#/io.l5d.k8s")
        return n

    def existing(self) -> Path:
        return Path.read("/prod/http/web")

    def missing(self) -> Path:
        return Path.read("/prod/http/nobody")

    async def set_addresses(self, addresses: list[tuple[str, int]]) -> None:
        if self.keys.get("endpointsApi") == "endpoints":
            subsets = [
                {"addresses": [{"ip": h, "nodeName": "n"}], "ports": [{"name": "http", "port": p}]}
                for h, p in addresses
            ]
            self.k8s.set_endpoints("prod", "web", subsets=subsets)
        else:
            self.slices.set(addresses)

    async def break_backend(self) -> None:
        self.k8s.fail_next(500, count=None)
        self.k8s.break_watches()

    async def mend_backend(self) -> None:
        self.k8s.clear_faults()

    def open_watches(self) -> int:
        return self.k8s.open_watches


async def test_k8s_namer_conforms_with_endpoint_slices(nursery: trio.Nursery) -> None:
    k8s = FakeKubernetes()
    await nursery.start(k8s.serve)
    await check_namer(K8sScenario(k8s))


async def test_k8s_namer_conforms_with_v1_endpoints(nursery: trio.Nursery) -> None:
    k8s = FakeKubernetes()
    await nursery.start(k8s.serve)
    await check_namer(K8sScenario(k8s, endpointsApi="endpoints"))
