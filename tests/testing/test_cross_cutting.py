"""Checklist 6.4 (X1-X3) for every emulator, plus the package's public names."""

from __future__ import annotations

import inspect

import attrs
import httpx
import pytest
import trio

import linkpy.testing
from linkpy.testing import FakeConsul, FakeKubernetes, FakeMarathon
from linkpy.testing.fakes._http import FakeServer

from .helpers import client

FAKES: dict[str, type[FakeServer]] = {
    "consul": FakeConsul,
    "kubernetes": FakeKubernetes,
    "marathon": FakeMarathon,
}

#: A path each emulator answers 200 on, and a header its clients send.
PROBES = {
    "consul": ("/v1/health/service/web?stale&index=1&wait=1ms", "X-Consul-Token"),
    "kubernetes": ("/api/v1/namespaces/prod/endpoints?resourceVersion=0&limit=5", "Authorization"),
    "marathon": ("/v2/apps?embed=apps.tasks", "Authorization"),
}


@pytest.fixture(params=sorted(FAKES))
async def fake(request: pytest.FixtureRequest, nursery: trio.Nursery) -> FakeServer:
    instance = FAKES[request.param]()
    await nursery.start(instance.serve)
    return instance


def test_public_names() -> None:
    assert linkpy.testing.FakeConsul is FakeConsul
    assert linkpy.testing.FakeKubernetes is FakeKubernetes
    assert linkpy.testing.FakeMarathon is FakeMarathon


async def test_x1_binds_loopback_on_an_ephemeral_port_and_reports_its_url(
    fake: FakeServer,
) -> None:
    assert fake.host == "127.0.0.1"
    assert fake.port is not None and fake.port > 0
    assert fake.url == f"http://127.0.0.1:{fake.port}"
    # Nothing answers on the same port on another local address.
    with pytest.raises(OSError):
        await trio.open_tcp_stream("127.0.0.2", fake.port)


@pytest.mark.parametrize("kind", sorted(FAKES))
def test_x2_control_api_is_synchronous(kind: str) -> None:
    cls = FAKES[kind]
    public = {
        name: member
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }
    asynchronous = {name for name, fn in public.items() if inspect.iscoroutinefunction(fn)}
    assert asynchronous == {"serve", "dispatch"}
    for name in ("fail_next", "hang_next", "drop_next", "delay_next", "restart", "requests_to"):
        assert name in public or hasattr(cls, name)


async def test_x3_requests_are_logged_with_method_path_query_headers(fake: FakeServer) -> None:
    target, header = PROBES[fake.kind]
    async with client(fake.url) as http:
        r = await http.get(target, headers={header: "Bearer s3cret"})
    assert r.status_code == 200
    (logged,) = fake.requests
    assert logged.method == "GET"
    assert logged.target == target
    assert logged.path == target.partition("?")[0]
    query = dict(httpx.QueryParams(target.partition("?")[2]).multi_items())
    assert {k: v[0] for k, v in logged.query.items()} == query
    assert logged.header(header) == "Bearer s3cret"
    assert logged.header("host") == f"127.0.0.1:{fake.port}"


async def test_faults_use_each_emulators_error_format(fake: FakeServer) -> None:
    fake.fail_next(503, message="injected")
    async with client(fake.url) as http:
        r = await http.get(PROBES[fake.kind][0])
    assert r.status_code == 503
    if fake.kind == "consul":
        assert r.text == "injected"
    elif fake.kind == "kubernetes":
        assert (r.json()["kind"], r.json()["message"], r.json()["code"]) == (
            "Status",
            "injected",
            503,
        )
    else:
        assert r.json() == {"message": "injected"}


async def test_rewrite_next_can_serve_null_with_real_headers(nursery: trio.Nursery) -> None:
    consul = FakeConsul()
    await nursery.start(consul.serve)
    consul.rewrite_next(lambda r: attrs.evolve(r, body=b"null"))
    async with client(consul.url) as http:
        r = await http.get("/v1/health/service/web")
    assert r.json() is None
    assert int(r.headers["x-consul-index"]) >= 1
