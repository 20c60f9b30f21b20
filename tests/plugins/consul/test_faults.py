"""Bad input and faults: each gives a log line and a metric, keeps the last good answer,
and the namer recovers by itself."""

from __future__ import annotations

import logging
from collections.abc import Callable

import attrs
import pytest
import trio

from linkpy.metrics import Metrics
from linkpy.naming import Path
from linkpy.testing import FakeConsul
from linkpy.testing.fakes._http import Response

from .helpers import addresses, eventually, make_namer, until_addresses


def body(text: bytes) -> Callable[[Response], Response]:
    return lambda r: attrs.evolve(r, body=text)


def without_index(r: Response) -> Response:
    return attrs.evolve(r, headers=[h for h in r.headers if h[0] != "X-Consul-Index"])


Fault = Callable[[FakeConsul], None]

FAULTS: dict[str, tuple[Fault, str, str]] = {
    # name: (inject, metric kind, text in the log line)
    "malformed JSON": (lambda c: c.garble_next(), "malformed", "Failed to decode JSON"),
    "null instead of a list": (
        lambda c: c.rewrite_next(body(b"null")),
        "malformed",
        "expected a JSON array, got null",
    ),
    "an object instead of a list": (
        lambda c: c.rewrite_next(body(b'{"Node": {}}')),
        "malformed",
        "expected a JSON array, got dict",
    ),
    "truncated answer": (lambda c: c.truncate_next(), "transport", "connection closed mid-answer"),
    "connection dropped": (lambda c: c.drop_next(), "transport", "GET /v1/health/service/web"),
    "no index header": (lambda c: c.rewrite_next(without_index), "no_index", "X-Consul-Index"),
    "403": (lambda c: c.fail_next(403, message="ACL not found"), "acl", "ACL: 403 ACL not found"),
    "500": (lambda c: c.fail_next(500, message="rpc error"), "server", "server error 500"),
    "503": (lambda c: c.fail_next(503, message="overloaded"), "server", "server error 503"),
    "429": (lambda c: c.fail_next(429, message="slow down"), "rate_limited", "rate limited"),
    "no leader": (
        lambda c: c.fail_next(500, message="No cluster leader"),
        "no_leader",
        "Consul has no leader",
    ),
    "unknown datacenter": (
        lambda c: c.fail_next(500, message="No path to datacenter"),
        "unknown_dc",
        "unknown datacenter",
    ),
    "a hanging server": (lambda c: c.hang_next(), "timeout", "no answer to GET"),
}


@pytest.mark.parametrize("name", FAULTS)
async def test_fault(
    name: str, nursery: trio.Nursery, consul: FakeConsul, caplog: pytest.LogCaptureFixture
) -> None:
    inject, kind, logged = FAULTS[name]
    caplog.set_level(logging.INFO, "linkpy.namer.consul")
    consul.register("web", "10.0.0.1", 80, service_id="web-1")
    metrics = Metrics()
    namer = make_namer(consul, metrics, useHealthCheck=True, waitSecs=1, requestTimeoutMs=500)
    await nursery.start(namer.run)
    tree = namer.lookup(Path.read("/dc1/web"))
    tree.observe(lambda _: None)
    await until_addresses(tree, {("10.0.0.1", 80)})
    good = tree.sample()
    inject(consul)
    consul.touch("web")  # wake the blocked query: the next request meets the fault
    errors = metrics.scope("errors").counter(kind)
    await eventually(lambda: errors.value == 1)
    assert tree.sample() == good and addresses(tree.sample()) == {("10.0.0.1", 80)}
    assert metrics.flat()["service/errors"] == 1
    (warning,) = [r for r in caplog.records if r.levelname == "WARNING"]
    assert logged in warning.getMessage()
    assert "keeping the last good answer (1 addresses)" in warning.getMessage()
    # recovery: changes are seen again
    consul.register("web", "10.0.0.2", 80, service_id="web-2")
    await until_addresses(tree, {("10.0.0.1", 80), ("10.0.0.2", 80)})
    assert "Consul answers again (after 1 failed requests)" in caplog.text


async def test_unexpected_fields_and_bad_entries(
    nursery: trio.Nursery, consul: FakeConsul, caplog: pytest.LogCaptureFixture
) -> None:
    """Unknown fields are ignored; entries that cannot be used are skipped and counted,
    the rest of the answer is used."""
    consul.register("web", "10.0.0.1", 80, service_id="web-1")
    consul.register("web", "10.0.0.2", 0, service_id="no-port")
    namer = make_namer(consul, useHealthCheck=True)
    await nursery.start(namer.run)
    tree = namer.lookup(Path.read("/dc1/web"))
    tree.observe(lambda _: None)

    def extra(r: Response) -> Response:
        return attrs.evolve(
            r, body=r.body.replace(b'"Node":{', b'"Future":[1,{"x":null}],"Node":{')
        )

    consul.rewrite_next(extra)
    await until_addresses(tree, {("10.0.0.1", 80)})
    assert namer.stats.bad_entries.value == 1 and namer.stats.errors.value == 0
    assert "skipped 1 bad entries: entry 0 (no-port): bad port 0" in caplog.text


async def test_consul_gone_for_good_keeps_the_answer(
    nursery: trio.Nursery, consul: FakeConsul, autojump_clock: object
) -> None:
    """Consul unreachable for an hour: the answer stays, retries back off to 5 s."""
    consul.register("web", "10.0.0.1", 80)
    namer = make_namer(consul)
    await nursery.start(namer.run)
    tree = namer.lookup(Path.read("/dc1/web"))
    tree.observe(lambda _: None)
    await until_addresses(tree, {("10.0.0.1", 80)})
    consul.fail_next(503, None)
    consul.drop_connections()
    consul.clear_requests()
    await trio.sleep(3600)
    assert addresses(tree.sample()) == {("10.0.0.1", 80)}
    assert 3600 / 5 <= len(consul.requests) <= 3600 / 2.5 + 20  # backed off, not hot
    consul.clear_faults()
    consul.register("web", "10.0.0.2", 80, service_id="two")
    await until_addresses(tree, {("10.0.0.1", 80), ("10.0.0.2", 80)})
