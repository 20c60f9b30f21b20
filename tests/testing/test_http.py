"""The emulators' HTTP core: listening, routing, streaming, dropping, faults, request log."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import attrs
import h11
import httpx
import pytest
import trio
import trio.testing

from linkpy.testing.fakes._http import (
    FakeServer,
    Notifier,
    Request,
    Response,
    Stream,
    StreamResponse,
    json_response,
    text_response,
)

from .helpers import RawClient, client, outcome, raw_bytes, spawn


class Echo(FakeServer):
    """A tiny emulator with one route of each kind."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = Notifier()
        self.value = 0
        self.handler_cancelled = trio.Event()
        self.router.add("GET", "/json", self.json)
        self.router.add("POST", "/json", self.json)
        self.router.add("GET", "/items/{name}", self.item)
        self.router.add("GET", "/tree/{rest:path}/leaf", self.item)
        self.router.add("GET", "/poll", self.poll)
        self.router.add("GET", "/chunks", self.chunks)
        self.router.add("GET", "/sse", self.sse)
        self.router.add("GET", "/half", self.half)

    async def json(self, request: Request, args: Mapping[str, str]) -> Response:
        return json_response({"method": request.method, "body": request.body.decode()})

    async def item(self, request: Request, args: Mapping[str, str]) -> Response:
        return json_response(dict(args))

    async def poll(self, request: Request, args: Mapping[str, str]) -> Response:
        """A long poll: answers when ``value`` changes."""
        start = self.value
        try:
            await self.changed.wait_for(lambda: self.value != start)
        finally:
            if self.value == start:
                self.handler_cancelled.set()
        return text_response(str(self.value))

    async def chunks(self, request: Request, args: Mapping[str, str]) -> StreamResponse:
        async def produce(out: Stream) -> None:
            for part in (b"one\n", b"two\n", b"three\n"):
                await out.send(part)

        return StreamResponse(200, produce, [("Content-Type", "application/json")])

    async def sse(self, request: Request, args: Mapping[str, str]) -> StreamResponse:
        async def produce(out: Stream) -> None:
            await out.send(b"event: a\r\ndata: {}\r\n\r\n")

        return StreamResponse(200, produce, [("Content-Type", "text/event-stream")], True)

    async def half(self, request: Request, args: Mapping[str, str]) -> StreamResponse:
        async def produce(out: Stream) -> None:
            await out.send(b'{"type":"ADDED"}\n')
            out.drop()

        return StreamResponse(200, produce)


@pytest.fixture
async def echo(nursery: trio.Nursery) -> Echo:
    fake = Echo()
    await nursery.start(fake.serve)
    return fake


@pytest.fixture
async def http(echo: Echo) -> AsyncIterator[httpx.AsyncClient]:
    async with client(echo.url) as c:
        yield c


async def test_x1_serve_binds_loopback_ephemeral_port(nursery: trio.Nursery) -> None:
    fake = Echo()
    port = await nursery.start(fake.serve)
    assert isinstance(port, int) and port > 0
    assert fake.port == port
    assert fake.host == "127.0.0.1"
    assert fake.url == f"http://127.0.0.1:{port}"
    async with client(fake.url) as c:
        assert (await c.get("/json")).json() == {"method": "GET", "body": ""}


async def test_url_before_serving_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        _ = Echo().url


async def test_routes_by_method_and_path(http: httpx.AsyncClient) -> None:
    assert (await http.post("/json", content=b"hi")).json() == {"method": "POST", "body": "hi"}
    assert (await http.get("/items/web")).json() == {"name": "web"}
    assert (await http.get("/tree/a/b/c/leaf")).json() == {"rest": "a/b/c"}
    assert (await http.get("/items/a%2Fb")).status_code == 404  # decoded: two segments
    assert (await http.get("/nowhere")).status_code == 404
    r = await http.delete("/json")
    assert r.status_code == 405


async def test_keep_alive_serves_many_requests_on_one_connection(
    echo: Echo, http: httpx.AsyncClient
) -> None:
    for _ in range(3):
        assert (await http.get("/json")).status_code == 200
    assert echo.open_connections == 1
    assert len(echo.requests) == 3


async def test_x3_request_log_records_method_path_query_headers(
    echo: Echo, http: httpx.AsyncClient
) -> None:
    await http.get("/items/web?stale&index=12&tag=a&tag=b", headers={"X-Consul-Token": "s3"})
    (r,) = echo.requests_to("/items/web")
    assert r.method == "GET"
    assert r.query == {"stale": ("",), "index": ("12",), "tag": ("a", "b")}
    assert r.has_param("stale") and r.param("index") == "12" and r.params("tag") == ("a", "b")
    assert r.header("x-consul-token") == "s3"
    assert r.header("X-CONSUL-TOKEN") == "s3"
    echo.clear_requests()
    assert echo.requests == []


async def test_long_poll_answers_when_state_changes(
    echo: Echo, http: httpx.AsyncClient, nursery: trio.Nursery
) -> None:
    pending = spawn(nursery, lambda: http.get("/poll"))
    await trio.testing.wait_all_tasks_blocked()
    assert not pending.done
    echo.value = 7
    echo.changed.notify()
    assert (await pending.result()).text == "7"


async def test_client_leaving_cancels_the_handler(echo: Echo, autojump_clock: object) -> None:
    async with client(echo.url) as c:
        with trio.move_on_after(5):
            await c.get("/poll")
    await echo.handler_cancelled.wait()
    await trio.testing.wait_all_tasks_blocked()
    assert echo.open_connections == 0


async def test_chunked_stream_sends_one_chunk_per_send(echo: Echo) -> None:
    raw = await RawClient.connect(echo.port or 0)
    await raw.request("/chunks")
    response = await raw.response()
    assert (b"transfer-encoding", b"chunked") in response.headers
    chunks = [e async for e in raw.data_events()]
    assert [c.data for c in chunks] == [b"one\n", b"two\n", b"three\n"]
    assert all(c.chunk_start and c.chunk_end for c in chunks)
    await raw.aclose()


async def test_close_delimited_stream_is_not_chunked(echo: Echo) -> None:
    data = await raw_bytes(echo.port or 0, b"GET /sse HTTP/1.1\r\nHost: x\r\n\r\n", until=b"\0")
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Connection: close" in head
    assert b"chunked" not in head.lower() and b"content-length" not in head.lower()
    assert body == b"event: a\r\ndata: {}\r\n\r\n"  # then the server closed


async def test_stream_dropped_midway_breaks_the_body(http: httpx.AsyncClient) -> None:
    async with http.stream("GET", "/half") as r:
        lines = r.aiter_lines()
        assert await anext(lines) == '{"type":"ADDED"}'
        with pytest.raises(httpx.RemoteProtocolError):
            await anext(lines)


async def test_drop_connections_closes_everything_and_keeps_serving(
    echo: Echo, http: httpx.AsyncClient, nursery: trio.Nursery
) -> None:
    pending = spawn(nursery, lambda: outcome(http.get("/poll")))
    await trio.testing.wait_all_tasks_blocked()
    assert echo.open_connections == 1
    echo.drop_connections()
    assert await pending.result() == "RemoteProtocolError"
    await trio.testing.wait_all_tasks_blocked()
    assert echo.open_connections == 0
    async with client(echo.url) as c:
        assert (await c.get("/json")).status_code == 200


async def test_fail_next_answers_errors_for_count_requests_on_a_path(
    echo: Echo, http: httpx.AsyncClient
) -> None:
    echo.fail_next(503, 2, path="/items", message="busy")
    assert (await http.get("/json")).status_code == 200
    r = await http.get("/items/a")
    assert (r.status_code, r.text) == (503, "busy")
    assert (await http.get("/items/b")).status_code == 503
    assert (await http.get("/items/c")).status_code == 200
    echo.fail_next(500, body=b"{nope", headers=[("X-Why", "test")])
    r = await http.get("/json")
    assert (r.status_code, r.content, r.headers["x-why"]) == (500, b"{nope", "test")
    assert len(echo.requests) == 5  # faulted requests are logged too


async def test_fail_next_without_count_lasts_until_cleared(
    echo: Echo, http: httpx.AsyncClient
) -> None:
    echo.fail_next(500, None)
    for _ in range(3):
        assert (await http.get("/json")).status_code == 500
    echo.clear_faults()
    assert (await http.get("/json")).status_code == 200


async def test_hang_next_never_answers(echo: Echo, autojump_clock: object) -> None:
    echo.hang_next(path="/json")
    async with client(echo.url) as c:
        with trio.move_on_after(3600) as scope:
            await c.get("/json")
        assert scope.cancelled_caught
        assert (await c.get("/json")).status_code == 200


async def test_drop_next_closes_without_answering(echo: Echo, http: httpx.AsyncClient) -> None:
    echo.drop_next()
    with pytest.raises(httpx.RemoteProtocolError):
        await http.get("/json")
    assert (await http.get("/json")).status_code == 200


async def test_delay_next_answers_late(echo: Echo, autojump_clock: object) -> None:
    echo.delay_next(2.5)
    async with client(echo.url) as c:
        start = trio.current_time()
        assert (await c.get("/json")).status_code == 200
        assert trio.current_time() - start == pytest.approx(2.5)


async def test_truncate_next_cuts_the_body(echo: Echo, http: httpx.AsyncClient) -> None:
    echo.truncate_next()
    with pytest.raises(httpx.RemoteProtocolError):
        await http.get("/json")


async def test_garble_next_serves_malformed_json(echo: Echo, http: httpx.AsyncClient) -> None:
    echo.garble_next()
    r = await http.get("/json")
    assert r.status_code == 200
    with pytest.raises(ValueError):
        r.json()


async def test_rewrite_next_transforms_the_real_response(
    echo: Echo, http: httpx.AsyncClient
) -> None:
    echo.rewrite_next(lambda r: attrs.evolve(r, body=b"null", status=299), path="/json")
    r = await http.get("/json")
    assert (r.status_code, r.content, r.headers["content-type"]) == (
        299,
        b"null",
        "application/json",
    )
    assert (await http.get("/json")).json()["method"] == "GET"


async def test_malformed_request_gets_400(echo: Echo) -> None:
    data = await raw_bytes(echo.port or 0, b"GET /json HTTP/1.1\r\nbad header\r\n\r\n", b"\0")
    assert data.startswith(b"HTTP/1.1 400 ")


async def test_notifier_wait_for_times_out(autojump_clock: object) -> None:
    n = Notifier()
    assert not await n.wait_for(lambda: False, 10)
    assert await n.wait_for(lambda: True, 10)


def test_h11_is_the_parser() -> None:
    # The raw client above relies on h11's chunk flags.
    assert h11.Data(data=b"x", chunk_start=True).chunk_start
