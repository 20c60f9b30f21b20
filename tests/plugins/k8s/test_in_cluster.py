"""In-cluster mode: HTTPS to the apiserver with the service account's CA and token.

The emulator speaks plain HTTP, so a TLS terminator (trio's SSLStream with a
certificate for 127.0.0.1 from a throwaway CA) stands in front of it, as the apiserver's
TLS would.
"""

from __future__ import annotations

import ssl
from pathlib import Path as FsPath

import attrs
import trio
import trustme

from linkpy.metrics import Metrics
from linkpy.naming import Path

from .helpers import Slices, addresses, start_k8s, start_namer, until_true


@attrs.frozen
class Pki:
    ca: FsPath
    cert: FsPath
    key: FsPath


async def make_pki(d: FsPath) -> Pki:
    """A cluster CA and the apiserver's certificate for 127.0.0.1 (trustme)."""
    ca = trustme.CA(organization_unit_name="test-kubernetes-ca")
    srv = ca.issue_cert("127.0.0.1", common_name="kube-apiserver")
    ca.cert_pem.write_to_path(str(d / "ca.crt"))
    srv.cert_chain_pems[0].write_to_path(str(d / "srv.crt"))
    srv.private_key_pem.write_to_path(str(d / "srv.key"))
    return Pki(d / "ca.crt", d / "srv.crt", d / "srv.key")


async def tls_terminator(
    nursery: trio.Nursery, pki: Pki, backend_port: int
) -> tuple[int, list[int]]:
    """Listen with TLS on 127.0.0.1; forward each connection to ``backend_port``.
    Returns the port and a list counting the handshakes."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(pki.cert), str(pki.key))
    handshakes: list[int] = []

    async def pump(src: trio.abc.Stream, dst: trio.abc.Stream) -> None:
        try:
            while data := await src.receive_some(65536):
                await dst.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(dst)

    async def handle(raw: trio.SocketStream) -> None:
        stream = trio.SSLStream(raw, ctx, server_side=True)
        try:
            await stream.do_handshake()
        except trio.BrokenResourceError:
            await trio.aclose_forcefully(raw)
            return
        handshakes.append(1)
        upstream = await trio.open_tcp_stream("127.0.0.1", backend_port)
        async with trio.open_nursery() as n:
            n.start_soon(pump, stream, upstream)
            n.start_soon(pump, upstream, stream)

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    nursery.start_soon(trio.serve_listeners, handle, listeners)
    return port, handshakes


async def test_in_cluster_https_with_rotating_token(
    nursery: trio.Nursery, tmp_path: FsPath
) -> None:
    pki = await make_pki(tmp_path)
    k8s = await start_k8s(nursery, mode="in-cluster", token="token-1")
    port, handshakes = await tls_terminator(nursery, pki, k8s.port or 0)
    token = tmp_path / "token"
    token.write_text("token-1\n")
    slices = Slices(k8s)
    slices.set([("10.0.0.1", 80)])
    metrics = Metrics()
    namer = await start_namer(
        nursery,
        k8s,
        metrics=metrics,
        mode="inCluster",
        host="127.0.0.1",
        port=port,
        tokenFile=str(token),
        caFile=str(pki.ca),
    )
    assert namer.state()["mode"] == "inCluster"
    assert namer.state()["api"] == f"https://127.0.0.1:{port}"
    var = namer.lookup(Path.read("/prod/http/web"))
    var.observe(lambda _: None)
    await addresses(var, {("10.0.0.1", 80)})
    assert handshakes
    assert {r.header("authorization") for r in k8s.requests} == {"Bearer token-1"}

    # kubelet rotates the token: the next connection reads the new one
    await until_true(lambda: k8s.open_watches == 1)
    k8s.set_token("token-2")
    token.write_text("token-2\n")
    k8s.break_watches()
    await until_true(
        lambda: (
            k8s.open_watches == 1 and k8s.requests[-1].header("authorization") == "Bearer token-2"
        )
    )
    slices.set([("10.0.0.2", 80)])
    await addresses(var, {("10.0.0.2", 80)})

    # the server moves on before the file is rewritten: 401s, the last answer
    # stays, and the new token is picked up as soon as it is there
    await until_true(lambda: k8s.open_watches == 1)
    k8s.set_token("token-3")
    k8s.break_watches()
    await until_true(lambda: metrics.flat().get("errors/http_401", 0) >= 1)
    token.write_text("token-3")
    slices.set([("10.0.0.3", 80)])
    await addresses(var, {("10.0.0.3", 80)})


async def test_in_cluster_refuses_an_untrusted_server(
    nursery: trio.Nursery, tmp_path: FsPath
) -> None:
    pki = await make_pki(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    stranger = await make_pki(other)
    k8s = await start_k8s(nursery, mode="in-cluster", token="t")
    port, _ = await tls_terminator(nursery, pki, k8s.port or 0)
    (tmp_path / "token").write_text("t")
    metrics = Metrics()
    namer = await start_namer(
        nursery,
        k8s,
        metrics=metrics,
        mode="inCluster",
        host="127.0.0.1",
        port=port,
        tokenFile=str(tmp_path / "token"),
        caFile=str(stranger.ca),
    )
    var = namer.lookup(Path.read("/prod/http/web"))
    var.observe(lambda _: None)
    await until_true(lambda: metrics.flat().get("errors/connection", 0) >= 1)
    assert k8s.requests == []


async def test_in_cluster_without_credentials(nursery: trio.Nursery, tmp_path: FsPath) -> None:
    k8s = await start_k8s(nursery, mode="in-cluster")
    metrics = Metrics()
    namer = await start_namer(
        nursery,
        k8s,
        metrics=metrics,
        mode="inCluster",
        tokenFile=str(tmp_path / "no-token"),
        caFile=str(tmp_path / "no-ca.crt"),
    )
    var = namer.lookup(Path.read("/prod/http/web"))
    var.observe(lambda _: None)
    await until_true(lambda: metrics.flat().get("errors/credentials", 0) >= 2)
    st = var.sample()
    assert "cannot load the CA file" in repr(st)
