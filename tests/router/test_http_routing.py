"""The HTTP/1.1 router end to end: real sockets, real clients (httpx, curl), h11 backends."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import unquote_plus

import httpx
import trio
import trio.testing

from ..backends import Reply, Seen
from ..conftest import (
    MakeBackend,
    StartLinker,
    admin_url,
    fs_config,
    require_tool,
    router_url,
    run,
    write_disco,
)


async def test_routes_by_host(
    backend: MakeBackend, start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    users = await backend("users")
    web = await backend("web")
    write_disco(disco, "users", users)
    write_disco(disco, "web", web)
    linker = await start_linker(fs_config(disco))
    url = router_url(linker)
    r = await http.get(url + "/profile?x=1", headers={"Host": "users"})
    assert r.status_code == 200
    assert r.text == "users GET /profile?x=1"
    r = await http.get(url + "/", headers={"Host": "web"})
    assert r.text == "web GET /"
    seen = users.seen[0]
    assert seen.header("l5d-dst-service") == "/svc/users"
    assert seen.header("l5d-dst-client") == "/#/io.l5d.fs/users"
    assert seen.header("l5d-dst-residual") is None
    assert seen.header("l5d-reqid") is not None
    assert seen.header("via") == "1.1 linkpy"
    assert r.headers["via"] == "1.1 linkpy"


async def test_via_is_extended_and_bounds_the_call_depth(
    backend: MakeBackend, start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    web = await backend("web")
    write_disco(disco, "web", web)
    linker = await start_linker(fs_config(disco, server="    maxCallDepth: 3\n"))
    url = router_url(linker)
    r = await http.get(url + "/", headers={"Host": "web", "Via": "1.1 a, 1.1 b"})
    assert r.status_code == 200
    assert web.seen[0].header("via") == "1.1 a, 1.1 b, 1.1 linkpy"
    # more hops than maxCallDepth (in two Via headers) is a proxy loop
    r = await http.get(
        url + "/", headers=[("Host", "web"), ("Via", "1.1 a, 1.1 b"), ("via", "c, d")]
    )
    assert r.status_code == 400
    assert "Maximum number of calls (3)" in unquote_plus(r.headers["l5d-err"])
    assert len(web.seen) == 1


async def test_routes_by_path_and_consumes(
    backend: MakeBackend, start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    api = await backend("api")
    write_disco(disco, "api", api)
    extra = "  identifier:\n    kind: io.l5d.path\n    segments: 1\n    consume: true\n"
    linker = await start_linker(fs_config(disco, extra=extra))
    r = await http.get(router_url(linker) + "/api/v1/users?q=2")
    assert r.status_code == 200
    assert r.text == "api GET /v1/users?q=2"
    assert api.seen[0].header("l5d-dst-service") == "/svc/api"


async def test_identifier_list_tries_each(
    backend: MakeBackend, start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    b = await backend("b")
    write_disco(disco, "named", b)
    extra = "  identifier:\n  - kind: io.l5d.header\n  - kind: io.l5d.static\n    path: /named\n"
    linker = await start_linker(fs_config(disco, extra=extra))
    r = await http.get(router_url(linker) + "/", headers={"l5d-name": "/named"})
    assert r.status_code == 200
    r = await http.get(router_url(linker) + "/x", headers={"Host": "whatever"})
    assert r.status_code == 200  # the static identifier
    assert [s.header("l5d-dst-service") for s in b.seen] == ["/svc/named", "/svc/named"]


async def test_residual_header(
    backend: MakeBackend, start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    b = await backend("b")
    write_disco(disco, "web", b)
    linker = await start_linker(fs_config(disco, dtab="/svc => /#/io.l5d.fs/web/extra;"))
    r = await http.get(router_url(linker) + "/", headers={"Host": "x"})
    assert r.status_code == 200
    assert b.seen[0].header("l5d-dst-residual") == "/extra/x"


async def test_http_proxy_absolute_form(
    backend: MakeBackend, start_linker: StartLinker, disco: Path
) -> None:
    curl = require_tool("curl")
    b = await backend("web")
    write_disco(disco, "web", b)
    linker = await start_linker(fs_config(disco))
    out = await run(curl, "-s", "-x", router_url(linker), "http://web/path?a=b")
    assert out.stdout == b"web GET /path?a=b"
    assert b.seen[0].target == "/path?a=b"  # origin-form upstream
    assert b.seen[0].header("host") == "web"


async def test_dtab_fallback_when_a_file_is_missing(
    backend: MakeBackend, start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    fallback = await backend("fallback")
    write_disco(disco, "default", fallback)
    dtab = "/svc => /#/io.l5d.fs/default | /#/io.l5d.fs;"
    linker = await start_linker(fs_config(disco, dtab=dtab))
    r = await http.get(router_url(linker) + "/", headers={"Host": "missing"})
    assert r.status_code == 200
    assert r.text.startswith("fallback")


async def test_weighted_split(
    backend: MakeBackend, start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    v1 = await backend("v1")
    v2 = await backend("v2")
    write_disco(disco, "v1", v1)
    write_disco(disco, "v2", v2)
    dtab = "/svc/web => 3 * /#/io.l5d.fs/v1 & 1 * /#/io.l5d.fs/v2;"
    linker = await start_linker(fs_config(disco, dtab=dtab))
    url = router_url(linker)
    counts: Counter[str] = Counter()
    for _ in range(2000):
        r = await http.get(url + "/", headers={"Host": "web"})
        counts[r.text.split()[0]] += 1
    assert counts["v1"] + counts["v2"] == 2000
    assert abs(counts["v1"] / 2000 - 0.75) < 0.05


async def test_l5d_dtab_override(
    backend: MakeBackend, start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    v1 = await backend("v1")
    v2 = await backend("v2")
    write_disco(disco, "web", v1)
    write_disco(disco, "web-v2", v2)
    linker = await start_linker(fs_config(disco))
    url = router_url(linker)
    r = await http.get(url + "/", headers={"Host": "web"})
    assert r.text.startswith("v1")
    r = await http.get(
        url + "/", headers={"Host": "web", "l5d-dtab": "/svc/web => /#/io.l5d.fs/web-v2"}
    )
    assert r.text.startswith("v2")
    seen = v2.seen[-1]
    assert seen.header("l5d-dtab") is None
    assert seen.header("l5d-ctx-dtab") == "/svc/web=>/#/io.l5d.fs/web-v2"
    # l5d-ctx-dtab from an upstream linker composes before l5d-dtab
    r = await http.get(
        url + "/",
        headers={
            "Host": "web",
            "l5d-ctx-dtab": "/svc/web => /#/io.l5d.fs/web-v2",
            "l5d-dtab": "/svc/web => /#/io.l5d.fs/web",
        },
    )
    assert r.text.startswith("v1")
    assert v1.seen[-1].header("l5d-ctx-dtab") == (
        "/svc/web=>/#/io.l5d.fs/web-v2;/svc/web=>/#/io.l5d.fs/web"
    )


async def test_clear_context_ignores_dtab_headers(
    backend: MakeBackend, start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    v1 = await backend("v1")
    v2 = await backend("v2")
    write_disco(disco, "web", v1)
    write_disco(disco, "web-v2", v2)
    linker = await start_linker(fs_config(disco, server="    clearContext: true\n"))
    r = await http.get(
        router_url(linker) + "/",
        headers={"Host": "web", "l5d-dtab": "/svc/web => /#/io.l5d.fs/web-v2", "l5d-ctx-x": "1"},
    )
    assert r.text.startswith("v1")
    assert v1.seen[0].header("l5d-ctx-x") is None
    # Finagle's dtab-local is context too, alone as well
    r = await http.get(router_url(linker) + "/", headers={"Host": "web", "dtab-local": "/a=>/b"})
    assert r.status_code == 200
    assert v1.seen[1].header("dtab-local") is None


async def test_editing_a_disco_file_under_load_fails_nothing(
    backend: MakeBackend, start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    a = await backend("a")
    b = await backend("b")
    write_disco(disco, "web", a)
    linker = await start_linker(fs_config(disco))
    url = router_url(linker)
    statuses: Counter[int] = Counter()
    served: Counter[str] = Counter()
    done = trio.Event()
    progress = trio.Event()

    async def client() -> None:
        nonlocal progress
        while not done.is_set():
            r = await http.get(url + "/", headers={"Host": "web"})
            statuses[r.status_code] += 1
            served[r.text.split()[0]] += 1
            progress.set()

    async def until(cond: Callable[[], bool]) -> None:
        nonlocal progress
        while not cond():
            progress = trio.Event()
            await progress.wait()

    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(client)
        await until(lambda: served["a"] >= 50)
        write_disco(disco, "web", a, b)
        await until(lambda: served["b"] >= 50)
        write_disco(disco, "web", b)
        before = served["a"]
        await until(lambda: served["b"] >= 200)
        settled = served["a"]
        n = sum(statuses.values())
        await until(lambda: sum(statuses.values()) >= n + 100)
        done.set()
    assert set(statuses) == {200}
    assert served["a"] >= before
    assert served["a"] <= settled + 4  # a removed endpoint gets no new requests


async def test_keep_alive_and_pipelining(
    backend: MakeBackend, start_linker: StartLinker, disco: Path
) -> None:
    b = await backend("b")
    write_disco(disco, "web", b)
    linker = await start_linker(fs_config(disco))
    port = linker.ports()["out"][0]
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    reqs = b"".join(b"GET /%d HTTP/1.1\r\nHost: web\r\n\r\n" % i for i in range(5))
    await stream.send_all(reqs)
    data = b""
    while data.count(b"HTTP/1.1 200") < 5 or not data.endswith(b"GET /4"):
        chunk = await stream.receive_some(65536)
        assert chunk
        data += chunk
    bodies = [part.split(b"\r\n\r\n", 1)[1][:12] for part in data.split(b"HTTP/1.1 200 OK\r\n")[1:]]
    assert [x.rstrip(b"H") for x in bodies] == [b"b GET /%d" % i for i in range(5)]
    await stream.aclose()
    assert b.connections == 1  # one upstream connection, reused


async def test_connections_between_requests_share_parsers(
    backend: MakeBackend, start_linker: StartLinker, disco: Path
) -> None:
    """A connection waiting for its next request lends its parser to the others
    (RequestParsers): requests that come in pieces, with bodies, on connections that
    took turns, each get their own answer."""

    async def echo(req: Seen) -> Reply:
        return Reply(200, f"{req.method} {req.target} {req.body.decode()}".encode())

    b = await backend("b", echo)
    write_disco(disco, "web", b)
    linker = await start_linker(fs_config(disco))
    port = linker.ports()["out"][0]
    streams = []
    for _ in range(3):
        streams.append(await trio.open_tcp_stream("127.0.0.1", port))
        await trio.testing.wait_all_tasks_blocked()

    async def call(stream: trio.SocketStream, i: int, n: int) -> None:
        body = b"body %d.%d" % (i, n)
        req = b"POST /%d/%d HTTP/1.1\r\nHost: web\r\nContent-Length: %d\r\n\r\n%s" % (
            i,
            n,
            len(body),
            body,
        )
        for piece in (req[:7], req[7:40], req[40:]):  # the head and the body in pieces
            await trio.testing.wait_all_tasks_blocked()
            await stream.send_all(piece)
        expected = b"POST /%d/%d %s" % (i, n, body)
        data = b""
        while not data.endswith(expected):
            chunk = await stream.receive_some(65536)
            assert chunk, data
            data += chunk
        assert data.startswith(b"HTTP/1.1 200 OK\r\n")

    for n in range(3):
        for i, stream in enumerate(streams):
            await call(stream, i, n)
    await trio.testing.wait_all_tasks_blocked()
    # the connections took turns: one parser served them all, and it is back in the pool
    assert len(linker.routers[0].router.parsers.free) == 1
    for stream in streams:
        await stream.aclose()


async def test_hop_by_hop_headers_are_removed(
    backend: MakeBackend, start_linker: StartLinker, disco: Path
) -> None:
    async def handler(req: Seen) -> Reply:
        return Reply(
            200,
            b"ok",
            headers=[
                ("Keep-Alive", "timeout=5"),
                ("Cache-Control", "private"),  # a common name, named by Connection below
                ("Connection", "X-Private, cache-control"),
                ("X-Private", "1"),
                ("Date", "Thu, 26 Nov 2026 06:00:00 GMT"),
            ],
        )

    b = await backend("b", handler)
    write_disco(disco, "web", b)
    linker = await start_linker(fs_config(disco))
    port = linker.ports()["out"][0]
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(
        b"GET / HTTP/1.1\r\nHost: web\r\nUser-Agent: secret-agent\r\n"
        b"Connection: keep-alive, X-Secret, user-agent\r\nX-Secret: 1\r\n"
        b"Keep-Alive: 1\r\nProxy-Authorization: basic x\r\nTE: trailers\r\nAccept: */*\r\n\r\n"
    )
    data = b""
    while not data.endswith(b"ok"):
        data += await stream.receive_some(65536)
    await stream.aclose()
    seen = b.seen[0]
    for h in ("x-secret", "keep-alive", "proxy-authorization", "te", "user-agent"):
        assert seen.header(h) is None, h
    assert seen.header("connection") is None
    assert seen.header("accept") == "*/*"
    head = data.split(b"\r\n\r\n")[0].lower()
    assert b"keep-alive:" not in head
    assert b"x-private" not in head
    assert b"cache-control" not in head
    assert b"\r\ndate: thu, 26 nov 2026 06:00:00 gmt\r\n" in head


async def test_head_request(
    backend: MakeBackend, start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    async def handler(req: Seen) -> Reply:
        return Reply(200, b"x" * 1000)

    b = await backend("b", handler)
    write_disco(disco, "web", b)
    linker = await start_linker(fs_config(disco))
    r = await http.head(router_url(linker) + "/", headers={"Host": "web"})
    assert r.status_code == 200
    assert r.headers["content-length"] == "1000"
    assert r.content == b""
    r = await http.get(router_url(linker) + "/", headers={"Host": "web"})
    assert r.content == b"x" * 1000  # the upstream connection is still in sync


async def test_chunked_both_ways_and_trailers(
    backend: MakeBackend, start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    async def handler(req: Seen) -> Reply:
        async def body() -> object:
            for i in range(3):
                yield b"part%d;" % i

        return Reply(200, body(), chunked=True, trailers=[("x-checksum", "42")])  # type: ignore[arg-type]

    b = await backend("b", handler)
    write_disco(disco, "web", b)
    linker = await start_linker(fs_config(disco))

    async def upload() -> AsyncIterator[bytes]:
        for i in range(4):
            yield b"up%d;" % i

    r = await http.post(router_url(linker) + "/", headers={"Host": "web"}, content=upload())
    assert r.status_code == 200
    assert r.text == "part0;part1;part2;"
    assert b.seen[0].body == b"up0;up1;up2;up3;"
    assert b.seen[0].header("transfer-encoding") == "chunked"


async def test_expect_100_continue(
    backend: MakeBackend, start_linker: StartLinker, disco: Path
) -> None:
    curl = require_tool("curl")
    b = await backend("b")
    write_disco(disco, "web", b)
    linker = await start_linker(fs_config(disco))
    payload = b"y" * 200_000
    out = await run(
        curl,
        "-s",
        "-v",
        "-H",
        "Host: web",
        "-H",
        "Expect: 100-continue",
        "--data-binary",
        "@-",
        router_url(linker) + "/up",
        stdin=payload,
    )
    assert out.stdout == b"b POST /up"
    assert b"100 Continue" in out.stderr
    assert b.body_bytes == len(payload)


async def test_connection_close(
    backend: MakeBackend, start_linker: StartLinker, disco: Path
) -> None:
    b = await backend("b")
    write_disco(disco, "web", b)
    linker = await start_linker(fs_config(disco))
    stream = await trio.open_tcp_stream("127.0.0.1", linker.ports()["out"][0])
    await stream.send_all(b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        chunk = await stream.receive_some(65536)
        if not chunk:
            break
        data += chunk
    assert data.startswith(b"HTTP/1.1 200")
    assert b"connection: close" in data.lower()


async def test_http10_client(backend: MakeBackend, start_linker: StartLinker, disco: Path) -> None:
    async def handler(req: Seen) -> Reply:
        async def body() -> object:
            yield b"streamed"

        return Reply(200, body(), chunked=True)  # type: ignore[arg-type]

    b = await backend("b", handler)
    write_disco(disco, "web", b)
    linker = await start_linker(fs_config(disco))
    stream = await trio.open_tcp_stream("127.0.0.1", linker.ports()["out"][0])
    await stream.send_all(b"GET / HTTP/1.0\r\nHost: web\r\n\r\n")
    data = b""
    while True:
        chunk = await stream.receive_some(65536)
        if not chunk:
            break
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    assert b"chunked" not in head.lower()  # an HTTP/1.0 client cannot read chunks
    assert body == b"streamed"


async def test_forwarded_and_timestamp_headers(
    backend: MakeBackend, start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    b = await backend("b")
    write_disco(disco, "web", b)
    server = (
        "    addForwardedHeader:\n      by: {kind: static, label: edge}\n      for: {kind: ip}\n"
        "    timestampHeader: X-Request-Start\n"
    )
    linker = await start_linker(fs_config(disco, server=server))
    r = await http.get(router_url(linker) + "/", headers={"Host": "web"})
    assert r.status_code == 200
    fwd = b.seen[0].header("forwarded")
    assert fwd is not None
    assert "by=_edge" in fwd and "for=127.0.0.1" in fwd and 'host="web"' in fwd
    ts = b.seen[0].header("x-request-start")
    assert ts is not None and ts.isdigit()


async def test_admin_ping_and_metrics(
    backend: MakeBackend, start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    b = await backend("b")
    write_disco(disco, "web", b)
    linker = await start_linker(fs_config(disco))
    await http.get(router_url(linker) + "/", headers={"Host": "web"})
    await http.get(router_url(linker) + "/", headers={"Host": "nope"})
    r = await http.get(admin_url(linker) + "/admin/ping")
    assert r.text == "pong"
    m = (await http.get(admin_url(linker) + "/admin/metrics.json")).json()
    port = linker.ports()["out"][0]
    server = f"rt/out/server/127.0.0.1/{port}"
    assert m[f"{server}/requests"] == 2
    assert m[f"{server}/success"] == 1
    assert m[f"{server}/failures"] == 1
    assert m[f"{server}/failures/no_brokers"] == 1
    assert m[f"{server}/status/502"] == 1
    assert m["rt/out/service/svc/web/requests"] == 1
    assert m["rt/out/client/#/io.l5d.fs/web/requests"] == 1
    assert m[f"{server}/request_latency_ms.count"] == 2
    assert m[f"{server}/pending"] == m[f"{server}/load"] == 0
    client = "rt/out/client/#/io.l5d.fs/web"
    assert m[f"{client}/connect_latency_ms.count"] == m[f"{client}/connects"] == 1
    assert m[f"{client}/pending"] == 0
    assert m["rt/out/service/svc/web/pending"] == 0


async def test_server_session_idle_time_closes_idle_connections(
    backend: MakeBackend, start_linker: StartLinker, disco: Path
) -> None:
    b = await backend("b")
    write_disco(disco, "web", b)
    linker = await start_linker(fs_config(disco, server="    serverSession: {idleTimeMs: 100}\n"))
    stream = await trio.open_tcp_stream("127.0.0.1", linker.ports()["out"][0])
    await stream.send_all(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")
    data = b""
    with trio.fail_after(10):
        while True:
            chunk = await stream.receive_some(65536)
            if not chunk:
                break  # the router closed the idle connection
            data += chunk
    assert data.startswith(b"HTTP/1.1 200")
    m = linker.metrics.flat()
    port = linker.ports()["out"][0]
    assert m[f"rt/out/server/127.0.0.1/{port}/idle_closes"] == 1


async def test_idle_clients_and_services_are_evicted(
    backend: MakeBackend, start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    b = await backend("b")
    write_disco(disco, "web", b)
    linker = await start_linker(fs_config(disco, extra="  bindingCache: {idleTtlSecs: 60}\n"))
    await http.get(router_url(linker) + "/", headers={"Host": "web"})
    router = linker.routers[0].router
    assert len(router.clients) == 1 and len(router.services) == 1
    now = trio.current_time()
    router.evict_idle(now)  # first sight of their counters
    router.evict_idle(now + 30)
    assert len(router.clients) == 1
    router.evict_idle(now + 61)
    assert not router.clients and not router.services
    assert "rt/out/client/#/io.l5d.fs/web/requests" not in linker.metrics.flat()
    # the name still routes: its client is built again
    r = await http.get(router_url(linker) + "/", headers={"Host": "web"})
    assert r.status_code == 200 and len(router.clients) == 1


async def test_pool_keeps_min_size_connections_and_closes_the_idle_rest(
    backend: MakeBackend, start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    gate = trio.Event()
    all_in = trio.Event()
    arrived = 0

    async def slow(req: Seen) -> Reply:
        nonlocal arrived
        arrived += 1
        if arrived == 3:  # all three in flight, each on its own connection
            all_in.set()
        await gate.wait()
        return Reply(200, b"ok")

    b = await backend("b", slow)
    write_disco(disco, "web", b)
    pool = "  client:\n    hostConnectionPool: {minSize: 1, idleTimeMs: 1000}\n"
    linker = await start_linker(fs_config(disco, extra=pool))
    url = router_url(linker)

    async def one() -> None:
        assert (await http.get(url + "/", headers={"Host": "web"})).status_code == 200

    async with trio.open_nursery() as n:
        for _ in range(3):
            n.start_soon(one)
        await all_in.wait()
        gate.set()
    assert b.connections == 3
    router = linker.routers[0].router
    (client,) = router.clients.values()
    (ep,) = client.endpoints
    assert ep.open == 3 and len(ep.idle) == 3
    now = trio.current_time()
    router.evict_idle(now + 0.5)  # not idle long enough
    assert ep.open == 3
    router.evict_idle(now + 2)  # idle past idleTimeMs: all but minSize close
    assert ep.open == 1 and len(ep.idle) == 1
    router.evict_idle(now + 500)  # minSize connections stay however long they idle
    assert ep.open == 1
    m = linker.metrics.flat()
    assert m["rt/out/client/#/io.l5d.fs/web/closes"] == 2
    r = await http.get(url + "/", headers={"Host": "web"})
    assert r.status_code == 200 and b.connections == 3  # the kept connection serves it


async def test_client_session_life_time_closes_connections_whatever_the_pool(
    backend: MakeBackend, start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    b = await backend("b")
    write_disco(disco, "web", b)
    extra = (
        "  client:\n    hostConnectionPool: {minSize: 2}\n"
        "    clientSession: {lifeTimeMs: 1000, idleTimeMs: 60000}\n"
    )
    linker = await start_linker(fs_config(disco, extra=extra))
    r = await http.get(router_url(linker) + "/", headers={"Host": "web"})
    assert r.status_code == 200
    router = linker.routers[0].router
    (client,) = router.clients.values()
    (ep,) = client.endpoints
    assert ep.open == 1
    router.evict_idle(trio.current_time() + 2)
    assert ep.open == 0
    r = await http.get(router_url(linker) + "/", headers={"Host": "web"})
    assert r.status_code == 200 and b.connections == 2


async def test_server_socket_read_timeout_closes_a_silent_connection(
    backend: MakeBackend, start_linker: StartLinker, disco: Path
) -> None:
    b = await backend("b")
    write_disco(disco, "web", b)
    server = "    socketOptions: {readTimeoutMs: 100}\n"
    linker = await start_linker(fs_config(disco, server=server))
    port = linker.ports()["out"][0]
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"GET / HTTP/1.1\r\nHost: web\r\n")  # and then nothing
    with trio.fail_after(10):
        assert await stream.receive_some(100) == b""  # closed by the router
    m = linker.metrics.flat()
    assert m[f"rt/out/server/127.0.0.1/{port}/socket_timeouts"] == 1
    assert not b.seen


async def test_client_socket_read_timeout_fails_a_silent_endpoint(
    backend: MakeBackend, start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    async def hang(req: Seen) -> Reply:
        await trio.sleep_forever()
        raise AssertionError

    b = await backend("b", hang)
    write_disco(disco, "web", b)
    extra = "  client:\n    socketOptions: {readTimeoutMs: 100, writeTimeoutMs: 1000}\n"
    linker = await start_linker(fs_config(disco, extra=extra))
    r = await http.get(router_url(linker) + "/", headers={"Host": "web"})
    assert r.status_code == 502
    assert "nothing read for 100ms" in unquote_plus(r.headers["l5d-err"])
    assert b.seen  # it was sent: not retried elsewhere, the endpoint may have acted on it
