"""Server-side TLS: an ``ssl.SSLContext`` from a server's ``tls`` config, and the handshake.

Protocol-independent: the HTTP/2 router offers ALPN ``h2``; an HTTP/1.1 server would
offer ``http/1.1``.  Certificates are read once, when the router starts.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Sequence

import trio

from ..config.schema import ServerTls
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
        ctx.load_cert_chain(cfg.certPath, cfg.keyPath)
        if cfg.intermediateCertsPath:
            ctx.load_verify_locations(cfg.intermediateCertsPath)
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
