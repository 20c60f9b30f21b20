"""Errors a user can act on, bad input, limits, and graceful shutdown."""

from __future__ import annotations

import socket
import struct
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote_plus

import attrs
import httpx
import trio

from linkpy.activity import Var
from linkpy.config.registry import Registry
from linkpy.naming import Path as NamePath
from linkpy.naming import Pending
from linkpy.plugin import Activity, Namer, NamerConfig, NamerContext

from ..backends import Reply, Seen
from ..conftest import MakeBackend, StartLinker, fs_config, router_url, write_disco


async def raw(port: int, data: bytes) -> bytes:
    """Send bytes, read until the router closes (or a full answer arrived)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(data)
    out = b""
    with trio.move_on_after(10):
        while True:
            chunk = await stream.receive_some(65536)
            if not chunk:
                break
            out += chunk
    await stream.aclose()
    return out


async def test_unidentified_request_is_400(start_linker: StartLinker, disco: Path) -> None:
    linker = await start_linker(fs_config(disco))
    out = await raw(linker.ports()["out"][0], b"GET / HTTP/1.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400")
    assert b"l5d-err: Unknown+destination" in out
    assert b"Host header is absent" in out


async def test_no_hosts_is_502_with_linkerd_text(
    start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    linker = await start_linker(fs_config(disco))
    r = await http.get(router_url(linker) + "/", headers={"Host": "nothing", "l5d-dtab": "/a=>/b"})
    assert r.status_code == 502
    expected = (
        "No hosts are available for /svc/nothing, "
        "Dtab.base=[/svc=>/#/io.l5d.fs], Dtab.local=[/a=>/b]"
    )
    assert r.text == expected
    assert unquote_plus(r.headers["l5d-err"]) == expected
    assert r.headers["content-type"] == "text/plain"


async def test_empty_file_is_502(
    start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    (disco / "web").write_text("# nobody home\n")
    linker = await start_linker(fs_config(disco))
    r = await http.get(router_url(linker) + "/", headers={"Host": "web"})
    assert r.status_code == 502
    assert "No hosts are available for /svc/web" in r.text


async def test_bad_l5d_dtab_is_400(
    start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    linker = await start_linker(fs_config(disco))
    r = await http.get(
        router_url(linker) + "/", headers={"Host": "x", "l5d-dtab": "i am not a dtab"}
    )
    assert r.status_code == 400
    assert r.text == "Invalid dtab: '/' expected but 'i' found at '[i] am not a dtab'"
    assert "l5d-err" in r.headers


async def test_connect_failure_is_502_and_retryable(
    start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    await listener.aclose()  # nothing listens there now
    (disco / "web").write_text(f"127.0.0.1 {port}\n")
    linker = await start_linker(fs_config(disco))
    r = await http.get(router_url(linker) + "/", headers={"Host": "web"})
    assert r.status_code == 502
    assert r.headers["l5d-retryable"] == "true"
    assert "Unable to establish connection to 127.0.0.1:%d" % port in r.text
    assert "service name: /svc/web" in r.text


async def test_requeue_to_a_live_endpoint(
    backend: MakeBackend, start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    good = await backend("good")
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    dead = listener.socket.getsockname()[1]
    await listener.aclose()
    (disco / "web").write_text(f"127.0.0.1 {dead}\n127.0.0.1 {good.port}\n")
    linker = await start_linker(fs_config(disco))
    for _ in range(20):
        r = await http.get(router_url(linker) + "/", headers={"Host": "web"})
        assert r.status_code == 200


@attrs.frozen(kw_only=True)
class PendingNamerConfig(NamerConfig):
    """A namer that never answers (for the binding timeout)."""

    default_prefix = "/pending"

    def mk(self, ctx: NamerContext) -> Namer:
        return PendingNamer()


class PendingNamer(Namer):
    def __init__(self) -> None:
        self.var: Activity = Var(Pending)

    def lookup(self, path: NamePath) -> Activity:
        return self.var

    def state(self) -> Mapping[str, object]:
        return {}


async def test_binding_timeout_is_503(start_linker: StartLinker, http: httpx.AsyncClient) -> None:
    registry = Registry.discover().with_plugins(
        "linkpy.namers", {"test.pending": PendingNamerConfig}
    )
    text = """
admin: {ip: 127.0.0.1, port: 0}
namers:
- kind: test.pending
routers:
- protocol: http
  label: out
  dtab: /svc => /#/pending
  bindingTimeoutMs: 300
  servers: [{port: 0}]
"""
    linker = await start_linker(text, registry)
    r = await http.get(router_url(linker) + "/", headers={"Host": "x"})
    assert r.status_code == 503
    assert "binding timeout" in r.text
    assert "/svc/x" in r.text


async def test_malformed_request_is_400_and_the_router_lives(
    backend: MakeBackend, start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    b = await backend("b")
    write_disco(disco, "web", b)
    linker = await start_linker(fs_config(disco))
    port = linker.ports()["out"][0]
    for junk in (
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 40,  # a TLS hello
        b"GET / HTTP/1.1\r\nHost: web\r\nContent-Length: -5\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: web\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx",
        b"NOT HTTP AT ALL\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
    ):
        out = await raw(port, junk)
        assert out.startswith(b"HTTP/1.1 400"), (junk, out)
    r = await http.get(router_url(linker) + "/", headers={"Host": "web"})
    assert r.status_code == 200


async def test_header_limits(backend: MakeBackend, start_linker: StartLinker, disco: Path) -> None:
    b = await backend("b")
    write_disco(disco, "web", b)
    linker = await start_linker(
        fs_config(disco, extra="  maxHeadersKB: 1\n  maxInitialLineKB: 1\n")
    )
    port = linker.ports()["out"][0]
    out = await raw(port, b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\nHost: web\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 414")
    out = await raw(port, b"GET / HTTP/1.1\r\nHost: web\r\nX-Big: " + b"b" * 2000 + b"\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 431")
    # a header that never ends is cut off too, without buffering it all
    out = await raw(port, b"GET / HTTP/1.1\r\nHost: web\r\nX-Big: " + b"c" * 200_000)
    assert out.startswith(b"HTTP/1.1 431")
    assert not b.seen


async def test_a_reset_idle_keep_alive_connection_is_no_failed_request(
    backend: MakeBackend, start_linker: StartLinker, disco: Path
) -> None:
    b = await backend("b")
    write_disco(disco, "web", b)
    linker = await start_linker(fs_config(disco))
    port = linker.ports()["out"][0]
    sock = trio.socket.socket()
    await sock.connect(("127.0.0.1", port))
    await sock.send(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")
    answer = b""
    with trio.fail_after(10):
        while b"b GET /" not in answer:  # the backend's body: the whole response
            answer += await sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200")
    # close with a reset (SO_LINGER 0) while the connection waits for its next request
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    server = f"rt/out/server/127.0.0.1/{port}/"
    with trio.fail_after(10):
        while linker.metrics.flat()[server + "connections"]:  # noqa: ASYNC110 - a gauge
            await trio.sleep(0.01)
    m = linker.metrics.flat()
    assert m[server + "requests"] == 1
    assert m[server + "success"] == 1
    assert m[server + "failures"] == 0
    assert server + "failures/bad_request" not in m
    assert server + "status/400" not in m


async def serve_script(nursery: trio.Nursery, reply: bytes) -> int:
    """A backend that answers every connection with ``reply`` and closes."""

    async def handle(stream: trio.SocketStream) -> None:
        await stream.receive_some(65536)
        await stream.send_all(reply)
        await stream.aclose()

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    nursery.start_soon(trio.serve_listeners, handle, listeners)
    return int(listeners[0].socket.getsockname()[1])


async def test_backend_answering_garbage_is_502(
    nursery: trio.Nursery, start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    port = await serve_script(nursery, b"SSH-2.0-OpenSSH_9.2\r\n")
    (disco / "web").write_text(f"127.0.0.1 {port}\n")
    linker = await start_linker(fs_config(disco))
    r = await http.get(router_url(linker) + "/", headers={"Host": "web"})
    assert r.status_code == 502
    assert "l5d-err" in r.headers


async def test_backend_closing_before_answering_is_502(
    nursery: trio.Nursery, start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    port = await serve_script(nursery, b"")
    (disco / "web").write_text(f"127.0.0.1 {port}\n")
    linker = await start_linker(fs_config(disco))
    r = await http.get(router_url(linker) + "/", headers={"Host": "web"})
    assert r.status_code == 502
    assert "closed before a response" in r.text


async def test_backend_closing_mid_body_closes_the_client_connection(
    nursery: trio.Nursery, start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    port = await serve_script(nursery, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")
    (disco / "web").write_text(f"127.0.0.1 {port}\n")
    linker = await start_linker(fs_config(disco))
    out = await raw(linker.ports()["out"][0], b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")
    # the head was already sent: the client sees the body cut short, then the close
    assert out.startswith(b"HTTP/1.1 200")
    assert out.endswith(b"short")


async def test_graceful_shutdown_finishes_requests_in_flight(
    backend: MakeBackend, start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    started = trio.Event()
    release = trio.Event()

    async def slow(req: Seen) -> Reply:
        started.set()
        await release.wait()
        return Reply(200, b"finished")

    b = await backend("b", slow)
    write_disco(disco, "web", b)
    linker = await start_linker(fs_config(disco))
    url = router_url(linker)
    result: list[httpx.Response] = []

    async def call() -> None:
        result.append(await http.get(url + "/", headers={"Host": "web"}))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(call)
        await started.wait()
        nursery.start_soon(linker.shutdown, 30.0)
        await trio.sleep(0.2)
        # no longer accepting
        try:
            await trio.open_tcp_stream("127.0.0.1", linker.ports()["out"][0])
            refused = False
        except OSError:
            refused = True
        release.set()
    assert refused
    assert [r.status_code for r in result] == [200]
    assert result[0].text == "finished"
