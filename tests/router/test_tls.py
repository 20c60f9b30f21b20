"""TLS on HTTP/1.1 routers: servers, per-prefix clients, client certificates, errors.

Certificates come from a throwaway CA (trustme); the peers are real TLS clients and
servers (httpx, curl, Python's ssl under an h11 backend).
"""

from __future__ import annotations

import ssl
from pathlib import Path
from urllib.parse import unquote_plus

import httpx
import pytest
import trio
import trustme

from linkpy.config.load import load
from linkpy.errors import ConfigError
from linkpy.linker import Linker

from ..backends import Backend
from ..conftest import StartLinker, admin_url, fs_config, router_url, write_disco


class Pki:
    """A CA and the files of the certificates the tests hand out."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ca = trustme.CA()
        self.ca_path = root / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_path))

    def verify(self) -> ssl.SSLContext:
        """A client context trusting this CA."""
        return ssl.create_default_context(cafile=str(self.ca_path))

    def issue(self, name: str) -> tuple[trustme.LeafCert, Path, Path]:
        cert = self.ca.issue_cert(name)
        cert_path = self.root / f"{name}.crt"
        key_path = self.root / f"{name}.key"
        cert.cert_chain_pems[0].write_to_path(str(cert_path))
        cert.private_key_pem.write_to_path(str(key_path))
        return cert, cert_path, key_path

    def server_context(self, name: str, *, client_ca: bool = False) -> ssl.SSLContext:
        cert, _, _ = self.issue(name)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert.configure_cert(ctx)
        if client_ca:
            self.ca.configure_trust(ctx)
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    d = tmp_path / "pki"
    d.mkdir()
    return Pki(d)


async def tls_backend(
    nursery: trio.Nursery, ctx: ssl.SSLContext, names: list[str] | None = None
) -> Backend:
    """An HTTPS backend; the SNI names its clients send are appended to ``names``."""
    if names is not None:

        def sni(sock: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> None:
            names.append(name or "")

        ctx.sni_callback = sni
    b = Backend("secure", tls=ctx)
    await nursery.start(b.serve)
    return b


def client_tls(tls: str) -> str:
    """A router ``client`` section: TLS for the names of the file namer."""
    return (
        "  client:\n    kind: io.l5d.static\n    configs:\n"
        "    - prefix: /#/io.l5d.fs/{service}\n"
        f"      tls: {tls}\n"
    )


async def test_server_tls_on_an_http_router(
    pki: Pki, start_linker: StartLinker, disco: Path, nursery: trio.Nursery
) -> None:
    b = Backend("b")
    await nursery.start(b.serve)
    write_disco(disco, "web", b)
    _, cert, key = pki.issue("linkpy.example.com")
    server = f"    tls: {{certPath: {cert}, keyPath: {key}}}\n"
    linker = await start_linker(fs_config(disco, server=server))
    port = linker.ports()["out"][0]
    async with httpx.AsyncClient(verify=pki.verify(), trust_env=False) as http:
        # the certificate names linkpy.example.com; connect to 127.0.0.1 under that name
        r = await http.get(
            f"https://127.0.0.1:{port}/x",
            headers={"Host": "web"},
            extensions={"sni_hostname": "linkpy.example.com"},
        )
    assert r.status_code == 200 and r.text == "b GET /x"
    # curl, with the name resolved to loopback
    proc = await trio.run_process(
        [
            "curl", "-sS", "--cacert", str(pki.ca_path),
            "--resolve", f"linkpy.example.com:{port}:127.0.0.1",
            "-H", "Host: web", f"https://linkpy.example.com:{port}/c",
        ],
        capture_stdout=True,
    )  # fmt: skip
    assert proc.stdout == b"b GET /c"
    # plain HTTP on the TLS port: the handshake fails, it is counted, the server goes on
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")
    with trio.fail_after(15):
        while await stream.receive_some(1000):
            pass
    m = linker.metrics.flat()
    assert m[f"rt/out/server/127.0.0.1/{port}/tls/handshake_failures"] == 1


async def test_client_tls_checks_the_common_name_and_sends_it_as_sni(
    pki: Pki,
    start_linker: StartLinker,
    disco: Path,
    nursery: trio.Nursery,
    http: httpx.AsyncClient,
) -> None:
    names: list[str] = []
    b = await tls_backend(nursery, pki.server_context("web.example.com"), names)
    write_disco(disco, "web", b)
    write_disco(disco, "other", b)
    tls = f"{{commonName: '{{service}}.example.com', trustCertsBundle: {pki.ca_path}}}"
    linker = await start_linker(fs_config(disco, extra=client_tls(tls)))
    r = await http.get(router_url(linker) + "/s", headers={"Host": "web"})
    assert r.status_code == 200 and r.text == "secure GET /s"
    assert names == ["web.example.com"]
    # "other" expects other.example.com: the backend's certificate does not carry it
    r = await http.get(router_url(linker) + "/s", headers={"Host": "other"})
    assert r.status_code == 502
    err = unquote_plus(r.headers["l5d-err"])
    assert "TLS handshake with 127.0.0.1:" in err and "certificate verify failed" in err
    m = linker.metrics.flat()
    assert m["rt/out/client/#/io.l5d.fs/other/tls/handshake_failures"] >= 1
    assert len(b.seen) == 1


async def test_client_tls_without_validation(
    pki: Pki,
    start_linker: StartLinker,
    disco: Path,
    nursery: trio.Nursery,
    http: httpx.AsyncClient,
) -> None:
    # a certificate from a CA linkpy does not know
    b = await tls_backend(nursery, Pki(pki.root / "..").server_context("anything"))
    write_disco(disco, "web", b)
    for tls in ("{disableValidation: true}", "{kind: io.l5d.noValidation}"):
        linker = await start_linker(fs_config(disco, extra=client_tls(tls)))
        r = await http.get(router_url(linker) + "/", headers={"Host": "web"})
        assert r.status_code == 200, tls


async def test_client_certificates(
    pki: Pki,
    start_linker: StartLinker,
    disco: Path,
    nursery: trio.Nursery,
    http: httpx.AsyncClient,
) -> None:
    b = await tls_backend(nursery, pki.server_context("web", client_ca=True))
    write_disco(disco, "web", b)
    _, cert, key = pki.issue("linkpy")
    with_auth = (
        f"{{commonName: web, trustCertsBundle: {pki.ca_path}, "
        f"clientAuth: {{certPath: {cert}, keyPath: {key}}}}}"
    )
    linker = await start_linker(fs_config(disco, extra=client_tls(with_auth)))
    r = await http.get(router_url(linker) + "/", headers={"Host": "web"})
    assert r.status_code == 200
    without = f"{{commonName: web, trustCertsBundle: {pki.ca_path}}}"
    linker = await start_linker(fs_config(disco, extra=client_tls(without)))
    r = await http.get(router_url(linker) + "/", headers={"Host": "web"})
    assert r.status_code == 502


async def test_server_requires_client_certificates(
    pki: Pki, start_linker: StartLinker, disco: Path, nursery: trio.Nursery
) -> None:
    b = Backend("b")
    await nursery.start(b.serve)
    write_disco(disco, "web", b)
    _, cert, key = pki.issue("linkpy")
    server = (
        f"    tls: {{certPath: {cert}, keyPath: {key}, requireClientAuth: true, "
        f"caCertPath: {pki.ca_path}}}\n"
    )
    linker = await start_linker(fs_config(disco, server=server))
    port = linker.ports()["out"][0]
    url = f"https://127.0.0.1:{port}/"
    ext = {"sni_hostname": "linkpy"}
    client_cert = pki.ca.issue_cert("client")
    ctx = ssl.create_default_context(cafile=str(pki.ca_path))
    client_cert.configure_cert(ctx)
    async with httpx.AsyncClient(verify=ctx, trust_env=False) as http:
        r = await http.get(url, headers={"Host": "web"}, extensions=ext)
        assert r.status_code == 200
    async with httpx.AsyncClient(verify=pki.verify(), trust_env=False) as http:
        with pytest.raises(httpx.TransportError):
            await http.get(url, headers={"Host": "web"}, extensions=ext)


@pytest.mark.parametrize(
    ("snippet", "error"),
    [
        ("{trustCertsBundle: /x.pem}", "routers[0].client.configs[0].tls.commonName: required"),
        (
            "{disableValidation: true, clientAuth: {certPath: a, keyPath: b}}",
            "routers[0].client.configs[0].tls.clientAuth: cannot be used with disableValidation",
        ),
        ("{kind: io.l5d.boundPath}", "tls.kind: unknown client TLS kind 'io.l5d.boundPath'"),
        ("{commonName: x, protocols: [SSLv3]}", "tls.protocols: unknown protocol 'SSLv3'"),
    ],
)
def test_client_tls_config_errors(snippet: str, error: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load(fs_config(tmp_path, extra=client_tls(snippet)))
    assert error in str(e.value)


def test_server_tls_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load(fs_config(tmp_path, server="    tls: {certPath: /c.pem}\n"))
    assert "routers[0].servers[0].tls.keyPath: required to serve TLS" in str(e.value)
    with pytest.raises(ConfigError) as e:
        load("admin: {tls: {keyPath: k}}\n" + fs_config(tmp_path).split("\n", 2)[2])
    assert "admin.tls.certPath: required" in str(e.value)


async def test_unreadable_certificates_are_config_errors(pki: Pki, tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    cfg = load(fs_config(tmp_path, extra=client_tls(f"{{commonName: x, trustCerts: [{missing}]}}")))
    with pytest.raises(ConfigError) as e:
        Linker(cfg)
    assert "router out: client.configs[0].tls: cannot load certificates" in str(e.value)
    server = f"    tls: {{certPath: {missing}, keyPath: {missing}}}\n"
    with pytest.raises(ConfigError, match="cannot load certificates"):
        Linker(load(fs_config(tmp_path, server=server)))


async def test_admin_over_tls(pki: Pki, start_linker: StartLinker, disco: Path) -> None:
    _, cert, key = pki.issue("admin.example.com")
    text = fs_config(disco).replace(
        "admin: {ip: 127.0.0.1, port: 0}",
        f"admin: {{ip: 127.0.0.1, port: 0, tls: {{certPath: {cert}, keyPath: {key}}}}}",
    )
    linker = await start_linker(text)
    url = admin_url(linker).replace("http:", "https:") + "/admin/ping"
    async with httpx.AsyncClient(verify=pki.verify(), trust_env=False) as http:
        r = await http.get(url, extensions={"sni_hostname": "admin.example.com"})
    assert r.text.strip() == "pong"
