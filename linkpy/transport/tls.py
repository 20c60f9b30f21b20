"""TLS: ``ssl.SSLContext`` objects from the ``tls`` configs, and the handshakes.

- :func:`server_context` for a server's ``tls`` (certificate chain, client auth);
- :func:`client_context` for a client's ``tls`` (Linkerd's per-prefix client TLS:
  ``commonName`` checked and sent as SNI, ``trustCertsBundle``/``trustCerts``,
  ``disableValidation``, ``clientAuth``, ``protocols``).

Protocol-independent: the HTTP/2 router offers ALPN ``h2``, HTTP/1.1 ``http/1.1``.
Certificates are read once, when the router is built (a bad path is a config error
then, not a failed request later).
"""

from __future__ import annotations

import logging
import os
import ssl
import tempfile
from collections.abc import Sequence

import trio

from ..config.schema import ClientTls, ServerTls
from ..errors import ConfigError
from .errors import TRANSPORT_ERRORS, describe

log = logging.getLogger("linkpy.tls")

_VERSIONS = {
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}


def server_context(cfg: ServerTls, alpn: Sequence[str]) -> ssl.SSLContext:
    """The context of a TLS server: its certificate chain, client auth, ALPN protocols."""
    if not cfg.certPath or not cfg.keyPath:
        raise ConfigError("tls needs certPath and keyPath", "tls")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cfg.protocols:
        versions = [_VERSIONS[p] for p in cfg.protocols if p in _VERSIONS]
        if versions:
            ctx.minimum_version = min(versions)
            ctx.maximum_version = max(versions)
    try:
        _load_chain(ctx, cfg.certPath, cfg.keyPath, cfg.intermediateCertsPath)
        if cfg.caCertPath:
            ctx.load_verify_locations(cfg.caCertPath)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"cannot load certificates: {describe(e)}", "tls") from None
    if cfg.requireClientAuth:
        ctx.verify_mode = ssl.CERT_REQUIRED
    if cfg.ciphers:
        ctx.set_ciphers(":".join(cfg.ciphers))
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


#: ``tls.kind`` values of Linkerd's older client TLS configs that linkpy reads.
CLIENT_KINDS = ("io.l5d.noValidation", "io.l5d.static")


def validates(cfg: ClientTls) -> bool:
    """Whether the endpoints' certificates are checked (Linkerd's default)."""
    return not cfg.disableValidation and cfg.kind != "io.l5d.noValidation"


def client_context(cfg: ClientTls, alpn: Sequence[str], where: str = "tls") -> ssl.SSLContext:
    """The context of TLS connections to endpoints.

    With validation (the default) the endpoint's chain must lead to ``trustCertsBundle``,
    ``trustCerts`` or ``caCertPath`` (else the system's trusted roots) and name the
    ``commonName`` the connection is opened with; ``disableValidation`` (or ``kind:
    io.l5d.noValidation``) accepts any certificate.  ``where`` is the config path named
    in errors.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cfg.protocols:
        versions = [_VERSIONS[p] for p in cfg.protocols if p in _VERSIONS]
        if versions:
            ctx.minimum_version = min(versions)
            ctx.maximum_version = max(versions)
    try:
        if validates(cfg):
            roots = [*(cfg.trustCerts or []), cfg.trustCertsBundle, cfg.caCertPath]
            files = [f for f in roots if f]
            for f in files:
                ctx.load_verify_locations(f)
            if not files:
                ctx.load_default_certs()
        else:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        auth = cfg.clientAuth
        if auth is not None:
            _load_chain(ctx, auth.certPath, auth.keyPath, auth.intermediateCertsPath)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"cannot load certificates: {describe(e)}", where) from None
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def _load_chain(ctx: ssl.SSLContext, cert: str, key: str, intermediates: str | None) -> None:
    """Our certificate, and the intermediates sent after it (``ssl`` reads a chain only
    from one file: the two are joined in a private temporary one)."""
    if not intermediates:
        ctx.load_cert_chain(cert, key)
        return
    with open(cert, "rb") as a, open(intermediates, "rb") as b:
        data = a.read().rstrip(b"\n") + b"\n" + b.read()
    with tempfile.TemporaryDirectory(prefix="linkpy-tls-") as d:
        chain = os.path.join(d, "chain.pem")
        with open(chain, "wb") as f:
            f.write(data)
        ctx.load_cert_chain(chain, key)


async def handshake(
    stream: trio.abc.Stream, context: ssl.SSLContext, timeout: float = 10.0
) -> trio.SSLStream[trio.abc.Stream] | None:
    """The server side of a TLS handshake; None if it failed or took too long."""
    tls = trio.SSLStream(stream, context, server_side=True)
    with trio.move_on_after(timeout):
        try:
            await tls.do_handshake()
        except TRANSPORT_ERRORS as e:
            log.info("TLS handshake failed: %s", describe(e))
            return None
        return tls
    log.info("TLS handshake timed out")
    return None


async def connect_handshake(
    stream: trio.abc.Stream, context: ssl.SSLContext, server_name: str | None
) -> trio.SSLStream[trio.abc.Stream]:
    """The client side of a TLS handshake (the caller bounds its time).

    Raises the transport error (``ssl.SSLError``, ``trio.BrokenResourceError``) as is.
    """
    tls = trio.SSLStream(stream, context, server_hostname=server_name)
    await tls.do_handshake()
    return tls
