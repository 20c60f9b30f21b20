"""Bad input and faults: each is logged and counted, the last good answer stays, and the
namer recovers once the server behaves."""

from __future__ import annotations

import logging
from typing import Any

import attrs
import pytest
import trio

from linkpy.metrics import Metrics
from linkpy.naming import AddrBound, Neg, Ok, Path
from linkpy.plugin import Activity
from linkpy.testing.fakes._http import Response, Stream
from linkpy.testing.fakes.kubernetes import SERVICE_NAME_LABEL, FakeKubernetes, slice_endpoint
from linkpy_k8s.namer import _K8sNamerBase

from .helpers import Slices, addresses, bound_of, start_namer, until_true

SLICES = "/apis/discovery.k8s.io/v1/namespaces/prod/endpointslices"


class GarblingKubernetes(FakeKubernetes):
    """The emulator, able to write a line of garbage into its watch streams."""

    garbage: bytes | None = None

    async def _emit(self, out: Stream, events: list[dict[str, Any]]) -> None:
        if self.garbage is not None:
            line, self.garbage = self.garbage, None
            await out.send(line)
        await super()._emit(out, events)


@attrs.define
class Setup:
    k8s: GarblingKubernetes
    namer: _K8sNamerBase
    metrics: Metrics
    slices: Slices
    var: Activity

    def counter(self, name: str) -> int:
        return int(self.metrics.flat().get(name, 0))

    def hostports(self) -> set[tuple[str, int]]:
        addr = bound_of(self.var).addr.sample()
        assert isinstance(addr, AddrBound)
        return {(a.host, a.port) for a in addr.addresses}

    async def cut_and_expire(self) -> None:
        """Cut the watch, keep it off while the revision moves on, and forget the
        history: the next watch is too old and the namer must list again."""
        self.k8s.clear_faults()
        refused = self.counter("errors/http_503")
        self.k8s.fail_next(503, count=None, path=SLICES)
        with trio.fail_after(10):
            # (a watch request already past the faults may register after a break)
            while self.k8s.open_watches or self.counter("errors/http_503") == refused:
                self.k8s.break_watches()
                await trio.sleep(0.01)
        self.k8s.set_endpoint_slice("prod", "other-1", "other", [], ports={"http": 80})
        self.k8s.compact()
        self.k8s.clear_faults()

    async def good(self, *hostports: tuple[str, int]) -> None:
        """Change the addresses and wait for the namer to see them."""
        self.slices.set(list(hostports))
        await addresses(self.var, set(hostports))


async def setup(nursery: trio.Nursery, **keys: Any) -> Setup:
    k8s = GarblingKubernetes()
    await nursery.start(k8s.serve)
    slices = Slices(k8s)
    slices.set([("10.0.0.1", 80)])
    metrics = Metrics()
    namer = await start_namer(nursery, k8s, metrics=metrics, **keys)
    var = namer.lookup(Path.read("/prod/http/web"))
    var.observe(lambda _: None)
    await addresses(var, {("10.0.0.1", 80)})
    await until_true(lambda: k8s.open_watches == 1)
    return Setup(k8s, namer, metrics, slices, var)


async def test_malformed_json_in_a_list(nursery: trio.Nursery, caplog: Any) -> None:
    s = await setup(nursery)
    await s.cut_and_expire()
    s.k8s.garble_next(None, path=SLICES)  # every list (a watch is not garbled)
    await until_true(lambda: s.counter("errors/decode") >= 2)
    assert s.hostports() == {("10.0.0.1", 80)}
    assert "malformed: list response: not JSON" in caplog.text
    assert "keeping the last good answer" in caplog.text
    s.k8s.clear_faults()
    await s.good(("10.0.0.2", 80))


async def test_garbage_in_a_watch_stream(nursery: trio.Nursery) -> None:
    s = await setup(nursery)
    s.k8s.garbage = b"<html>502 Bad Gateway</html>\n"
    s.slices.set([("10.0.0.1", 80), ("10.0.0.2", 80)])  # an event after the garbage
    await until_true(lambda: s.counter("errors/decode") == 1)
    # the stream was abandoned and the state re-listed (the event is not lost)
    await addresses(s.var, {("10.0.0.1", 80), ("10.0.0.2", 80)})
    assert len([r for r in s.k8s.requests_to(SLICES) if r.param("watch") is None]) == 2


async def test_an_object_of_the_wrong_shape(nursery: trio.Nursery, caplog: Any) -> None:
    s = await setup(nursery)
    bad = {
        "metadata": {"namespace": "prod", "name": "web-bad", "labels": {SERVICE_NAME_LABEL: "web"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.0.0.9"], "conditions": {"ready": "True"}}],
        "ports": [{"name": "http", "port": 80}],
    }
    s.k8s.put("endpointslices", bad)
    await until_true(lambda: s.counter("errors/decode") >= 2)  # the event, then the re-list
    assert s.hostports() == {("10.0.0.1", 80)}
    assert "conditions.ready: expected a boolean, got str" in caplog.text
    s.k8s.delete("endpointslices", "prod", "web-bad")
    await s.good(("10.0.0.3", 80))


async def test_unexpected_fields_are_ignored(nursery: trio.Nursery) -> None:
    s = await setup(nursery)
    odd = {
        "metadata": {
            "namespace": "prod",
            "name": "web-odd",
            "labels": {SERVICE_NAME_LABEL: "web"},
            "futureMeta": [1, 2],
        },
        "addressType": "IPv4",
        "futureTopLevel": {"a": None},
        "endpoints": [
            {
                "addresses": ["10.0.0.5"],
                "conditions": {"ready": True, "futureCondition": "x"},
                "hints": {"forZones": [{"name": "z"}], "forNodes": [{"name": "n"}]},
                "futureField": 7,
            }
        ],
        "ports": [{"name": "http", "port": 80, "appProtocol": "kubernetes.io/h2c", "x": 1}],
    }
    s.k8s.put("endpointslices", odd)
    await addresses(s.var, {("10.0.0.1", 80), ("10.0.0.5", 80)})
    assert s.counter("errors/decode") == 0


async def test_null_endpoints_mean_no_endpoints(nursery: trio.Nursery, caplog: Any) -> None:
    """Monzo's outage: ``null`` where a list is expected (Go's empty slice) must not
    break anything; it reads as "no endpoints" for that object and is counted."""
    caplog.set_level(logging.INFO, "linkpy.namer.k8s")
    s = await setup(nursery)
    s.slices.set([("10.0.0.1", 80), ("10.0.0.2", 80)])
    await addresses(s.var, {("10.0.0.1", 80), ("10.0.0.2", 80)})
    raw = s.k8s.get("endpointslices", "prod", "web-10-0-0-2-80")
    assert raw is not None
    raw["endpoints"] = None
    s.k8s.put("endpointslices", raw)
    # the other slice's endpoint stays: the union of the slices
    await addresses(s.var, {("10.0.0.1", 80)})
    assert s.counter("decode/null_lists") >= 1 and s.counter("errors/decode") == 0
    assert "null read as an empty list at EndpointSlice web-10-0-0-2-80.endpoints" in caplog.text
    # v1 Endpoints with "subsets": null after a re-list (the object scaled to zero)
    s.k8s.put("endpointslices", {**raw, "ports": None})
    await until_true(lambda: s.counter("decode/null_lists") >= 3)
    await s.good(("10.0.0.3", 80))


async def test_null_list_items(nursery: trio.Nursery) -> None:
    s = await setup(nursery)

    def null_items(r: Response) -> Response:
        return attrs.evolve(r, body=r.body.replace(b'"items":[', b'"items":null,"x":['))

    await s.cut_and_expire()
    s.k8s.rewrite_next(null_items, None, path=SLICES)
    await until_true(lambda: s.counter("decode/null_lists") >= 1)
    # an empty list is a real answer: the service has no slices
    await until_true(lambda: s.var.sample() == Ok(Neg))
    assert s.counter("errors/decode") == 0
    await s.cut_and_expire()
    await s.good(("10.0.0.4", 80))


async def test_truncated_watch_stream(nursery: trio.Nursery) -> None:
    s = await setup(nursery)
    s.k8s.break_watches(partial=True)  # half an event, then the connection resets
    await until_true(lambda: s.counter("errors/connection") == 1)
    assert s.hostports() == {("10.0.0.1", 80)}
    await s.good(("10.0.0.2", 80))
    # resumed from the resourceVersion: no re-list
    assert len([r for r in s.k8s.requests_to(SLICES) if r.param("watch") is None]) == 1


@pytest.mark.parametrize("code", [403, 500, 503, 429])
async def test_error_statuses(nursery: trio.Nursery, code: int, caplog: Any) -> None:
    s = await setup(nursery, endpointsApi="endpointslices")
    await s.cut_and_expire()
    s.k8s.fail_next(code, count=3, path=SLICES)
    await until_true(lambda: s.counter(f"errors/http_{code}") >= 1)
    assert s.hostports() == {("10.0.0.1", 80)}
    assert f"HTTP {code}" in caplog.text
    await s.good(("10.0.0.2", 80))


async def test_a_hanging_server(nursery: trio.Nursery, caplog: Any) -> None:
    s = await setup(nursery, requestTimeoutMs=300)
    await s.cut_and_expire()
    s.k8s.hang_next(2, path=SLICES)  # the re-watch and the re-list never answer
    await until_true(lambda: s.counter("errors/timeout") >= 2)
    assert s.hostports() == {("10.0.0.1", 80)}
    assert "no answer within 0.3s" in caplog.text
    await s.good(("10.0.0.2", 80))


async def test_an_unreachable_server(nursery: trio.Nursery) -> None:
    s = await setup(nursery)
    s.k8s.fail_next(500, count=None)
    s.k8s.drop_connections()
    await until_true(lambda: s.counter("errors/connection") + s.counter("errors/http_500") >= 3)
    assert s.hostports() == {("10.0.0.1", 80)}
    s.k8s.clear_faults()
    await s.good(("10.0.0.2", 80))


async def test_a_watch_error_event(nursery: trio.Nursery) -> None:
    s = await setup(nursery)
    s.k8s.watch_error(500, message="etcdserver: request timed out")
    await until_true(lambda: s.counter("errors/watch_event") == 1)
    assert s.hostports() == {("10.0.0.1", 80)}
    await s.good(("10.0.0.2", 80))


async def test_failures_are_logged_once_then_quietly(nursery: trio.Nursery, caplog: Any) -> None:
    caplog.set_level(logging.INFO, "linkpy.namer.k8s")
    s = await setup(nursery)
    s.k8s.fail_next(500, count=6, path=SLICES)
    s.k8s.break_watches()
    await until_true(lambda: s.counter("errors/http_500") >= 6)
    await s.good(("10.0.0.2", 80))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    # the cut stream, then the first 500; the other 500s are debug lines
    assert len(warnings) == 2 and "HTTP 500" in warnings[1], warnings
    assert any("recovered after" in r.getMessage() for r in caplog.records)


async def test_namer_state_shows_the_watches(nursery: trio.Nursery) -> None:
    s = await setup(nursery)
    state = s.namer.state()
    assert state["mode"] == "proxy" and state["endpointsApi"] == "auto"
    (watch,) = state["watches"].values()
    assert watch["resource"] == "endpointslices" and watch["ok"] and watch["objects"] == 1
    assert slice_endpoint("1.2.3.4")["addresses"] == ["1.2.3.4"]
