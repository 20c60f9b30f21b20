"""Shared pieces of the Kubernetes namer tests: the emulator, namers over it, waits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import trio

from linkpy.activity import Var
from linkpy.config.registry import Registry
from linkpy.metrics import Metrics
from linkpy.naming import Addr, AddrBound, Bound, Leaf, Ok, Path
from linkpy.plugin import Activity, NamerContext
from linkpy.testing.fakes.kubernetes import FakeKubernetes, slice_endpoint
from linkpy_k8s import PLUGINS, K8sConfig
from linkpy_k8s.namer import _K8sKeys, _K8sNamerBase

T = TypeVar("T")

#: Fast retries and idle closing for tests (the emulator is on loopback).
FAST: dict[str, Any] = {
    "backoffMinMs": 5,
    "backoffMaxMs": 100,
    "requestTimeoutMs": 2000,
    "idleTtlSecs": 0.5,
}


def registry() -> Registry:
    """The installed plugins plus the Kubernetes namers (before their entry points exist)."""
    return Registry.discover().with_plugins("linkpy.namers", PLUGINS)


async def start_k8s(nursery: trio.Nursery, **kw: Any) -> FakeKubernetes:
    k8s = FakeKubernetes(**kw)
    await nursery.start(k8s.serve)
    return k8s


async def start_namer(
    nursery: trio.Nursery,
    k8s: FakeKubernetes,
    cfg: type[_K8sKeys] = K8sConfig,
    *,
    prefix: str | None = None,
    metrics: Metrics | None = None,
    **keys: Any,
) -> _K8sNamerBase:
    """A running namer of ``cfg`` (io.l5d.k8s by default) talking to ``k8s``."""
    keys = {"host": "127.0.0.1", "port": k8s.port, **FAST, **keys}
    config = cfg(**keys)
    namer = config.mk(NamerContext(metrics=metrics or Metrics()))
    assert isinstance(namer, _K8sNamerBase)
    namer.prefix = Path.read("/#" + (prefix or config.default_prefix))
    await nursery.start(namer.run)
    return namer


async def until(var: Var[T], pred: Callable[[T], bool], timeout: float = 10.0) -> T:
    """Wait until ``pred(var.sample())``; fail after ``timeout`` seconds."""
    with trio.fail_after(timeout):
        while not pred(var.sample()):
            await var.wait_change(var.version)
    return var.sample()


async def until_true(pred: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll a condition on something that is not a var (emulator counts, metrics)."""
    with trio.fail_after(timeout):
        while not pred():  # noqa: ASYNC110 - the emulator's and metrics' state
            await trio.sleep(0.01)


def bound_of(var: Activity) -> Bound:
    st = var.sample()
    assert isinstance(st, Ok) and isinstance(st.value, Leaf), st
    b = st.value.value
    assert isinstance(b, Bound)
    return b


def hostports(addr: Addr) -> set[tuple[str, int]]:
    assert isinstance(addr, AddrBound), addr
    return {(a.host, a.port) for a in addr.addresses}


async def addresses(var: Activity, want: set[tuple[str, int]], timeout: float = 10.0) -> Bound:
    """Wait until the lookup is bound to exactly ``want``; return the bound name."""
    st = await until(var, lambda s: isinstance(s, Ok) and isinstance(s.value, Leaf), timeout)
    assert isinstance(st, Ok)
    b = bound_of(var)
    addr = b.addr
    assert isinstance(addr, Var)
    await until(addr, lambda a: isinstance(a, AddrBound) and hostports(a) == want, timeout)
    return b


class Slices:
    """Keeps a Service's EndpointSlices equal to a list of addresses: one slice per
    address (each with its own port, as loopback backends need)."""

    def __init__(self, k8s: FakeKubernetes, ns: str = "prod", svc: str = "web") -> None:
        self.k8s = k8s
        self.ns = ns
        self.svc = svc
        self.names: set[str] = set()

    def set(self, hostports_: list[tuple[str, int]], **endpoint: Any) -> None:
        wanted = set()
        for h, p in hostports_:
            name = f"{self.svc}-{h.replace('.', '-')}-{p}"
            wanted.add(name)
            ep = slice_endpoint(h, **{"node_name": f"node-{p}", **endpoint})
            self.k8s.set_endpoint_slice(self.ns, name, self.svc, [ep], ports={"http": p})
        for name in sorted(self.names - wanted):
            self.k8s.delete("endpointslices", self.ns, name)
        self.names = wanted
