"""The config: strict loading with YAML paths, Linkerd's defaults, TLS, the example file."""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path as FsPath

import pytest
import trio

from linkpy.config.load import load, load_file
from linkpy.config.registry import Registry
from linkpy.errors import ConfigError
from linkpy.linker import Linker
from linkpy.metrics import Metrics
from linkpy.naming import Failed, Path
from linkpy.plugin import NamerContext
from linkpy.testing import FakeMarathon
from linkpy_marathon import MarathonConfig, MarathonNamer
from linkpy_marathon.auth import Auth

from ...conftest import ROOT
from .conftest import addrs, eventually, follow

REGISTRY = Registry.discover().with_plugins("linkpy.namers", {"io.l5d.marathon": MarathonConfig})


def config(namer: str) -> str:
    return f"""
namers:
- kind: io.l5d.marathon
{namer}
routers:
- protocol: http
  dtab: /svc => /#/io.l5d.marathon;
  servers: [{{port: 0}}]
"""


def test_linkerd_defaults() -> None:
    (cfg,) = load(config("  prefix: /marathon"), REGISTRY).namers
    assert isinstance(cfg, MarathonConfig)
    assert (cfg.host, cfg.port, cfg.dst, cfg.uriPrefix) == ("marathon.mesos", 80, None, "")
    assert (cfg.ttlMs, cfg.jitterMs, cfg.useHealthCheck, cfg.tls) == (5000, 50, False, None)
    assert (cfg.useEventStream, cfg.requestTimeoutMs) == (True, 10_000)
    assert (cfg.eventStreamIdleTimeoutMs, cfg.watchIdleTtlMs) == (30_000, 30_000)
    assert MarathonConfig.default_prefix == "/io.l5d.marathon"
    assert cfg.base_url() == "http://marathon.mesos:80"


def test_every_key() -> None:
    text = config(
        """  host: marathon.example
  port: 8443
  dst: /$/inet/10.0.0.5/8443
  uriPrefix: /marathon
  ttlMs: 30000
  jitterMs: 500
  useHealthCheck: true
  tls: {commonName: marathon.example, disableValidation: false}
  useEventStream: false
  requestTimeoutMs: 2000
  eventStreamIdleTimeoutMs: 45000
  watchIdleTtlMs: 60000"""
    )
    (cfg,) = load(text, REGISTRY).namers
    assert isinstance(cfg, MarathonConfig)
    assert cfg.base_url() == "https://10.0.0.5:8443"
    assert cfg.connect_to() == ("10.0.0.5", 8443)
    assert cfg.sni_hostname() == "marathon.example"
    assert cfg.useHealthCheck and not cfg.useEventStream


@pytest.mark.parametrize(
    ("namer", "error"),
    [
        ("  hostname: x", "namers[0].hostname: unknown key"),
        ("  tls: {trustCert: x}", "namers[0].tls.trustCert: unknown key"),
        ("  port: http", "namers[0].port: expected an integer, got a string 'http'"),
        ("  port: 0", "namers[0].port: must be a port (1-65535), got 0"),
        ("  ttlMs: 0", "namers[0].ttlMs: must be positive"),
        ("  jitterMs: -1", "namers[0].jitterMs: must not be negative"),
        (
            "  ttlMs: 100\n  jitterMs: 100",
            "namers[0].jitterMs: must be less than ttlMs (100), got 100",
        ),
        ("  useHealthCheck: yes please", "namers[0].useHealthCheck: expected true or false"),
        ("  dst: /#/io.l5d.fs/marathon", "namers[0].dst: must be /$/inet/<host>/<port>"),
        ("  dst: /$/inet/host/99999", "namers[0].dst: must be /$/inet/<host>/<port>"),
        ("  uriPrefix: marathon", "namers[0].uriPrefix: must be empty or a path"),
        ("  tls: {kind: io.l5d.boundPath}", "namers[0].tls.kind: not used"),
        ("  tls: {protocols: [SSLv3]}", "namers[0].tls.protocols: unknown protocol 'SSLv3'"),
        ("  requestTimeoutMs: 0", "namers[0].requestTimeoutMs: must be positive"),
    ],
)
def test_bad_keys_are_errors_with_their_yaml_path(namer: str, error: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(config(namer), REGISTRY)
    assert error in str(info.value)


def test_the_example_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    cfg = load_file("configs/marathon-namer.yaml", REGISTRY)
    (namer,) = cfg.namers
    assert isinstance(namer, MarathonConfig) and namer.useEventStream
    linker = Linker(cfg, REGISTRY)  # builds without opening a socket
    ((prefix, built),) = linker.namers
    assert prefix == Path.read("/#/io.l5d.marathon") and isinstance(built, MarathonNamer)


def test_credentials_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARATHON_HTTP_AUTH_CREDENTIAL", "bm90IHVzZXI6cGFzcw==")
    cfg = load(config(""), REGISTRY)
    ((_, namer),) = Linker(cfg, REGISTRY).namers
    assert isinstance(namer, MarathonNamer) and namer.auth.kind == "basic"
    monkeypatch.setenv("DCOS_SERVICE_ACCOUNT_CREDENTIAL", "{}")
    with pytest.raises(ConfigError, match="DCOS_SERVICE_ACCOUNT_CREDENTIAL lacks"):
        Linker(cfg, REGISTRY)


# --- TLS ------------------------------------------------------------------------------


def make_certs(d: FsPath, name: str) -> tuple[FsPath, FsPath, FsPath]:
    """A CA, and a server certificate for ``name`` signed by it: (ca, cert, key) files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def cert(
        subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name, signer: object, ca: bool
    ) -> x509.Certificate:
        b = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), False)
        return b.sign(signer, hashes.SHA256())  # type: ignore[arg-type]

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = cert("test CA", ca_key, ca_name, ca_key, True)
    key = ec.generate_private_key(ec.SECP256R1())
    server = cert(name, key, ca_name, ca_key, False)
    pem = serialization.Encoding.PEM
    paths = (d / "ca.pem", d / "server.pem", d / "server.key")
    paths[0].write_bytes(ca.public_bytes(pem))
    paths[1].write_bytes(server.public_bytes(pem))
    paths[2].write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


async def tls_proxy(
    ctx: ssl.SSLContext,
    upstream: int,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Terminates TLS on a loopback port and forwards the bytes to ``upstream``."""

    async def pipe(src: trio.abc.Stream, dst: trio.abc.Stream) -> None:
        try:
            while data := await src.receive_some(65536):
                await dst.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(dst)

    async def handle(client: trio.SocketStream) -> None:
        tls = trio.SSLStream(client, ctx, server_side=True)
        try:
            await tls.do_handshake()
        except trio.BrokenResourceError:
            return
        back = await trio.open_tcp_stream("127.0.0.1", upstream)
        async with trio.open_nursery() as n:
            n.start_soon(pipe, tls, back)
            n.start_soon(pipe, back, tls)

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(handle, listeners)


def tls_namer(text: str, config_dir: FsPath) -> MarathonNamer:
    (cfg,) = load(text, REGISTRY).namers
    assert isinstance(cfg, MarathonConfig)
    ctx = NamerContext(metrics=Metrics().scope("namer"), config_dir=str(config_dir))
    namer = MarathonNamer(cfg, ctx, auth=Auth())
    namer.prefix = Path.read("/#/io.l5d.marathon")
    return namer


async def test_tls_with_a_trust_bundle_and_common_name(
    marathon: FakeMarathon, nursery: trio.Nursery, tmp_path: FsPath
) -> None:
    ca, cert, key = make_certs(tmp_path, "marathon.test")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    port = await nursery.start(tls_proxy, server, marathon.port)
    marathon.add_app("/web")
    marathon.add_task("/web", "127.0.0.1", [18001])
    namer = tls_namer(
        config(
            f"""  host: marathon.test
  dst: /$/inet/127.0.0.1/{port}
  ttlMs: 200
  tls: {{trustCertsBundle: {ca.name}, protocols: [TLSv1.2, TLSv1.3]}}"""
        ),
        tmp_path,  # the bundle's path is relative to the config file's directory
    )
    assert namer.config.base_url() == f"https://127.0.0.1:{port}"
    await nursery.start(namer.run)
    var = namer.lookup(Path.read("/web"))
    stop = follow(var)
    await eventually(lambda: addrs(var) == {("127.0.0.1", 18001)}, "bound over TLS")
    assert marathon.requests_to("/v2/apps")[0].header("host") == "marathon.test"
    stop()


async def test_tls_refuses_a_server_of_another_name(
    marathon: FakeMarathon, nursery: trio.Nursery, tmp_path: FsPath
) -> None:
    ca, cert, key = make_certs(tmp_path, "impostor.test")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    port = await nursery.start(tls_proxy, server, marathon.port)
    namer = tls_namer(
        config(
            f"""  host: marathon.test
  dst: /$/inet/127.0.0.1/{port}
  ttlMs: 200
  tls: {{trustCerts: [{ca}]}}"""
        ),
        tmp_path,
    )
    await nursery.start(namer.run)
    var = namer.lookup(Path.read("/web"))
    stop = follow(var)
    await eventually(lambda: isinstance(var.sample(), Failed), "refused")
    assert "CERTIFICATE_VERIFY_FAILED" in str(var.sample().exc)  # type: ignore[union-attr]
    assert marathon.requests == []
    stop()


def test_missing_tls_files_are_config_errors(tmp_path: FsPath) -> None:
    text = config("  tls: {trustCertsBundle: nowhere.pem}")
    (cfg,) = load(text, REGISTRY).namers
    assert isinstance(cfg, MarathonConfig)
    with pytest.raises(ConfigError, match=r"io\.l5d\.marathon tls"):
        cfg.ssl_context(str(tmp_path))
