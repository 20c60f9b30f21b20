"""The h2 router with real HTTP/2 peers: curl, h2load, nginx, and h2-library peers."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import pytest
import trio
import trustme

from linkpy.router.trace import TraceId, incoming

from ..conftest import StartLinker, require_tool, run, write_disco
from .conftest import MakeRaw, h2_config, h2_port, metric, settled
from .peers import Exchange, RawBackend, RawClient, get

HOST_ID = "kind: io.l5d.header.token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Nginx:
    """nginx serving h2c with prior knowledge (its stream limit: 128)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        nginx = require_tool("nginx")
        conf = self.root / "nginx.conf"
        tmp = self.root
        conf.write_text(
            f"""
worker_processes 1;
daemon off;
error_log {tmp}/error.log;
pid {tmp}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {tmp}; proxy_temp_path {tmp}; fastcgi_temp_path {tmp};
  uwsgi_temp_path {tmp}; scgi_temp_path {tmp};
  server {{
    listen 127.0.0.1:{self.port} http2;
    http2_max_concurrent_streams 128;
    keepalive_requests 1000000;
    location / {{ return 200 "nginx $request_uri"; }}
  }}
}}
"""
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                partial(trio.run_process, [nginx, "-c", str(conf), "-p", str(tmp)], check=False)
            )
            for _ in range(200):
                try:
                    s = await trio.open_tcp_stream("127.0.0.1", self.port)
                except OSError:
                    await trio.sleep(0.02)
                    continue
                await s.aclose()
                break
            task_status.started()


@pytest.fixture
async def nginx(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[Nginx]:
    d = tmp_path / "nginx"
    d.mkdir()
    n = Nginx(d)
    await nursery.start(n.serve)
    yield n
    pid = d / "nginx.pid"
    if pid.exists():
        await run("kill", "-QUIT", pid.read_text().strip(), check=False)


class _At:
    def __init__(self, port: int) -> None:
        self.port = port


async def test_curl_prior_knowledge(start_linker: StartLinker, disco: Path, nginx: Nginx) -> None:
    curl = require_tool("curl")
    write_disco(disco, "web", _At(nginx.port))  # type: ignore[arg-type]
    linker = await start_linker(h2_config(disco, identifier=HOST_ID))
    url = f"http://127.0.0.1:{h2_port(linker)}/hello?x=1"
    out = await run(curl, "-s", "-i", "--http2-prior-knowledge", "-H", "Host: web", url)
    text = out.stdout.decode()
    assert text.startswith("HTTP/2 200")
    assert "l5d-success-class: 1.0" in text
    assert text.endswith("nginx /hello?x=1")
    # an unknown name: Linkerd's 502 with l5d-err
    out = await run(curl, "-s", "-i", "--http2-prior-knowledge", "-H", "Host: nope", url)
    text = out.stdout.decode()
    assert text.startswith("HTTP/2 502")
    assert "l5d-err: No+hosts+are+available+for+%2Fsvc%2Fnope" in text
    # HTTP/1.1 on the h2c port is told so
    out = await run(curl, "-s", "-i", "--http1.1", url, check=False)
    assert out.stdout.startswith(b"HTTP/1.1 505")
    assert await settled(linker) == 0


async def test_thousand_concurrent_streams_on_one_connection(
    start_linker: StartLinker, disco: Path, nginx: Nginx
) -> None:
    """h2load opens 1,000 streams at once on one connection; nginx takes 128 at a time."""
    h2load = require_tool("h2load")
    write_disco(disco, "web", _At(nginx.port))  # type: ignore[arg-type]
    linker = await start_linker(h2_config(disco, identifier=HOST_ID))
    url = f"http://127.0.0.1:{h2_port(linker)}/x"
    out = await run(h2load, "-n", "3000", "-c", "1", "-m", "1000", "-H", ":authority: web", url)
    text = out.stdout.decode()
    assert "3000 succeeded, 0 failed, 0 errored" in text, text
    assert "status codes: 3000 2xx" in text
    assert metric(linker, "rt/h2/server/127.0.0.1/%d/connects" % h2_port(linker)) == 1
    assert metric(linker, "rt/h2/client/#/io.l5d.fs/web/connects") == 1
    assert metric(linker, "rt/h2/client/#/io.l5d.fs/web/connect_latency_ms.count") == 1
    assert await settled(linker) == 0


async def test_tls_with_alpn_h2(
    start_linker: StartLinker, disco: Path, nginx: Nginx, tmp_path: Path
) -> None:
    curl = require_tool("curl")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    key_path = tmp_path / "key.pem"
    cert_path = tmp_path / "cert.pem"
    ca_path = tmp_path / "ca.pem"
    cert.private_key_pem.write_to_path(str(key_path))
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    ca.cert_pem.write_to_path(str(ca_path))
    write_disco(disco, "web", _At(nginx.port))  # type: ignore[arg-type]
    server = f"    tls:\n      certPath: {cert_path}\n      keyPath: {key_path}\n"
    linker = await start_linker(h2_config(disco, identifier=HOST_ID, server=server))
    port = h2_port(linker)
    out = await run(
        curl,
        "-s",
        "-i",
        "--http2",
        "--cacert",
        str(ca_path),
        "--resolve",
        f"localhost:{port}:127.0.0.1",
        "-H",
        "Host: web",
        f"https://localhost:{port}/secure",
    )
    text = out.stdout.decode()
    assert text.startswith("HTTP/2 200"), text
    assert text.endswith("nginx /secure")


async def test_client_tls_to_an_h2_endpoint(
    start_linker: StartLinker, disco: Path, nginx: Nginx, tmp_path: Path
) -> None:
    """linkpy to linkpy over TLS with ALPN h2 (the linker-to-linker hop), then h2c."""
    curl = require_tool("curl")
    ca = trustme.CA()
    cert = ca.issue_cert("linkpy.incoming")
    key_path, cert_path, ca_path = tmp_path / "k.pem", tmp_path / "c.pem", tmp_path / "ca.pem"
    cert.private_key_pem.write_to_path(str(key_path))
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    ca.cert_pem.write_to_path(str(ca_path))
    write_disco(disco, "web", _At(nginx.port))  # type: ignore[arg-type]
    server = f"    tls:\n      certPath: {cert_path}\n      keyPath: {key_path}\n"
    incoming = await start_linker(h2_config(disco, identifier=HOST_ID, server=server))
    client = f"  client:\n    tls: {{commonName: linkpy.incoming, trustCertsBundle: {ca_path}}}\n"
    outgoing = await start_linker(
        h2_config(
            disco,
            identifier=HOST_ID,
            dtab=f"/svc => /$/inet/127.0.0.1/{h2_port(incoming)};",
            extra=client,
        )
    )
    out = await run(
        curl, "-s", "-i", "--http2-prior-knowledge", "-H", "Host: web",
        f"http://127.0.0.1:{h2_port(outgoing)}/hop",
    )  # fmt: skip
    text = out.stdout.decode()
    assert text.startswith("HTTP/2 200"), text
    assert text.endswith("nginx /hop")
    assert metric(incoming, "rt/h2/server/127.0.0.1/%d/requests" % h2_port(incoming)) == 1


async def test_l5d_dtab_and_headers(
    start_linker: StartLinker, disco: Path, raw_backend: MakeRaw
) -> None:
    async def answer(ex: Exchange) -> None:
        ex.respond(200, [(b"x-seen", ex.header(b":authority") or b"")], end=True)

    a = await raw_backend(answer)
    b = await raw_backend(answer)
    write_disco(disco, "a", _At(a.port))  # type: ignore[arg-type]
    write_disco(disco, "b", _At(b.port))  # type: ignore[arg-type]
    linker = await start_linker(h2_config(disco, identifier=HOST_ID))
    c = await RawClient.open(h2_port(linker))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(c.run)
        r = await c.request(get(b"/p", b"a"))
        assert r.status == 200 and r.header(b"x-seen") == b"a"
        r = await c.request(get(b"/p", b"a", [(b"l5d-dtab", b"/svc/a => /#/io.l5d.fs/b")]))
        assert r.status == 200
        assert len(b.seen) == 1
        seen = b.seen[0]
        assert seen.header(b"l5d-dst-service") == b"/svc/a"
        assert seen.header(b"l5d-dst-client") == b"/#/io.l5d.fs/b"
        assert seen.header(b"l5d-ctx-dtab") == b"/svc/a=>/#/io.l5d.fs/b"
        assert seen.header(b"l5d-dtab") is None
        assert seen.header(b"via") == b"2 linkpy"
        r = await c.request(get(b"/p", b"a", [(b"l5d-dtab", b"not a dtab")]))
        assert r.status == 400 and r.header(b"l5d-err") is not None
        nursery.cancel_scope.cancel()
    assert await settled(linker) == 0


async def test_graceful_shutdown_finishes_streams_in_flight(
    start_linker: StartLinker, disco: Path, raw_backend: MakeRaw
) -> None:
    release = trio.Event()
    arrived = trio.Event()

    async def slow(ex: Exchange) -> None:
        ex.respond(200)
        arrived.set()
        await release.wait()
        await ex.send(b"finished", end=True)

    backend = await raw_backend(slow)
    write_disco(disco, "web", _At(backend.port))  # type: ignore[arg-type]
    linker = await start_linker(h2_config(disco, identifier=HOST_ID))
    c = await RawClient.open(h2_port(linker))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(c.run)
        sid = await c.start(get(b"/slow"))
        await arrived.wait()
        nursery.start_soon(linker.shutdown, 10.0)
        await c.goaway_received.wait()
        assert c.goaway is not None
        assert c.goaway.error_code == 0
        assert c.goaway.last_stream_id == sid
        release.set()
        r = await c.wait(sid)
        assert r.status == 200 and r.body == b"finished" and r.reset_code is None


async def test_backend_goaway_replaces_the_connection(
    start_linker: StartLinker, disco: Path, raw_backend: MakeRaw
) -> None:
    backend: RawBackend

    async def goaway_after_first(ex: Exchange) -> None:
        ex.respond(200, [(b"x-conn", b"%d" % backend.connections)])
        await ex.send(b"ok", end=True)
        if len(backend.seen) == 1:
            ex.goaway()

    backend = await raw_backend(goaway_after_first)
    write_disco(disco, "web", _At(backend.port))  # type: ignore[arg-type]
    linker = await start_linker(h2_config(disco, identifier=HOST_ID))
    c = await RawClient.open(h2_port(linker))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(c.run)
        bodies = []
        for _ in range(5):
            r = await c.request(get(b"/x"))
            assert r.status == 200
            bodies.append(r.body)
        nursery.cancel_scope.cancel()
    assert bodies == [b"ok"] * 5
    assert backend.connections == 2
    assert metric(linker, "rt/h2/client/#/io.l5d.fs/web/connects") == 2
    assert await settled(linker) == 0


@pytest.mark.parametrize("propagator", ["default", "zipkin"])
async def test_trace_context_propagates(
    start_linker: StartLinker, disco: Path, raw_backend: MakeRaw, propagator: str
) -> None:
    """Each request forwarded is a child span of the incoming trace, or a new root;
    ``l5d-reqid`` is the trace id; the incoming context headers are replaced."""

    async def answer(ex: Exchange) -> None:
        ex.respond(200, [], end=True)

    b = await raw_backend(answer)
    write_disco(disco, "web", _At(b.port))  # type: ignore[arg-type]
    zipkin = propagator == "zipkin"
    extra = "  tracePropagator: {kind: io.l5d.zipkin}\n" if zipkin else ""
    linker = await start_linker(h2_config(disco, identifier=HOST_ID, extra=extra))
    upstream = TraceId(0xABC, 0xABC, 0xDEF, True)
    context = upstream.to_b3() if zipkin else [(b"l5d-ctx-trace", upstream.to_l5d())]
    c = await RawClient.open(h2_port(linker))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(c.run)
        assert (await c.request(get(b"/p", b"web"))).status == 200
        assert (await c.request(get(b"/p", b"web", context))).status == 200
        nursery.cancel_scope.cancel()

    def seen_trace(n: int) -> TraceId | None:
        seen = b.seen[n]
        if zipkin:
            assert seen.header(b"l5d-ctx-trace") is None
            return incoming(
                [(k, v) for k, v in seen.headers if k.startswith(b"x-b3-")], zipkin=True
            )
        return TraceId.from_l5d(seen.header(b"l5d-ctx-trace") or b"")

    root = seen_trace(0)
    assert root is not None and root.parent_id == root.span_id == root.trace_id
    assert b.seen[0].header(b"l5d-reqid") == b"%016x" % root.trace_id
    child = seen_trace(1)
    assert child is not None
    assert child.trace_id == 0xABC and child.parent_id == 0xDEF and child.span_id != 0xDEF
    assert b.seen[1].header(b"l5d-reqid") == b"%016x" % 0xABC
    name = b"x-b3-spanid" if zipkin else b"l5d-ctx-trace"
    assert len([v for k, v in b.seen[1].headers if k == name]) == 1
