"""``kind: io.l5d.marathon``: the config keys, Linkerd's plus linkpy's extensions."""

from __future__ import annotations

import os
import re
import ssl
from typing import TYPE_CHECKING

import attrs

from linkpy.config.schema import ClientTls, ConfigValueError
from linkpy.plugin import Namer, NamerConfig, NamerContext

if TYPE_CHECKING:
    from .auth import Auth

_INET = re.compile(r"/\$/inet/([^/]+)/([0-9]+)\Z")


def _port(_: object, attr: attrs.Attribute[int], value: int) -> None:
    if not 0 < value < 65536:
        raise ConfigValueError(f"must be a port (1-65535), got {value}", key=attr.name)


def _positive(_: object, attr: attrs.Attribute[int], value: int) -> None:
    if value <= 0:
        raise ConfigValueError(f"must be positive, got {value}", key=attr.name)


def _not_negative(_: object, attr: attrs.Attribute[int], value: int) -> None:
    if value < 0:
        raise ConfigValueError(f"must not be negative, got {value}", key=attr.name)


def _dst(_: object, attr: attrs.Attribute[str | None], value: str | None) -> None:
    if value is None:
        return
    m = _INET.match(value)
    if m is None or not 0 < int(m.group(2)) < 65536:
        raise ConfigValueError(
            f"must be /$/inet/<host>/<port> (the only destination form linkpy's "
            f"Marathon namer takes), got {value!r}",
            key=attr.name,
        )


def _uri_prefix(_: object, attr: attrs.Attribute[str], value: str) -> None:
    if value and (not value.startswith("/") or "?" in value or "#" in value):
        raise ConfigValueError(
            f"must be empty or a path such as /marathon: {value!r}", key=attr.name
        )


def _tls(_: object, attr: attrs.Attribute[ClientTls | None], value: ClientTls | None) -> None:
    if value is None:
        return
    if value.kind is not None:
        raise ConfigValueError("not used by the Marathon namer; remove it", key="tls.kind")
    for p in value.protocols or []:
        if p not in _TLS_VERSIONS:
            raise ConfigValueError(
                f"unknown protocol {p!r} (known: {', '.join(_TLS_VERSIONS)})", key="tls.protocols"
            )


_TLS_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


@attrs.frozen(kw_only=True)
class MarathonConfig(NamerConfig):
    """``kind: io.l5d.marathon``.

    Linkerd 1.x's keys and defaults, plus ``useEventStream``, ``requestTimeoutMs``,
    ``eventStreamIdleTimeoutMs`` and ``watchIdleTtlMs`` (see docs/namers/marathon.md).
    """

    #: Marathon's host name; also the ``Host`` header of every request
    host: str = "marathon.mesos"
    port: int = attrs.field(default=80, validator=_port)
    #: where to connect instead of host:port (``/$/inet/<host>/<port>``)
    dst: str | None = attrs.field(default=None, validator=_dst)
    #: path prefix of Marathon's API (``/marathon`` behind DC/OS's admin router)
    uriPrefix: str = attrs.field(default="", validator=_uri_prefix)
    #: polling interval of the app list and of each app looked up
    ttlMs: int = attrs.field(default=5000, validator=_positive)
    #: each poll interval is ``ttlMs`` plus or minus up to ``jitterMs``
    jitterMs: int = attrs.field(default=50, validator=_not_negative)
    #: only tasks passing all their Marathon health checks get traffic
    useHealthCheck: bool = False
    #: TLS to Marathon (https)
    tls: ClientTls | None = attrs.field(default=None, validator=_tls)
    #: linkpy: follow ``/v2/events`` so that changes arrive at once (polling stays on)
    useEventStream: bool = True
    #: linkpy: deadline of each request (headers and body)
    requestTimeoutMs: int = attrs.field(default=10_000, validator=_positive)
    #: linkpy: an event stream silent this long (no event, no keepalive) is reopened
    eventStreamIdleTimeoutMs: int = attrs.field(default=30_000, validator=_positive)
    #: linkpy: how long the polling of an app nobody looks up any more goes on
    watchIdleTtlMs: int = attrs.field(default=30_000, validator=_not_negative)

    default_prefix = "/io.l5d.marathon"

    def __attrs_post_init__(self) -> None:
        if self.jitterMs >= self.ttlMs:
            raise ConfigValueError(
                f"must be less than ttlMs ({self.ttlMs}), got {self.jitterMs}", key="jitterMs"
            )

    # -- derived --------------------------------------------------------------

    @property
    def secure(self) -> bool:
        return self.tls is not None and self.tls.enabled

    def connect_to(self) -> tuple[str, int]:
        """Where connections go: ``dst`` if set, else host:port."""
        if self.dst is not None:
            m = _INET.match(self.dst)
            assert m is not None
            return m.group(1), int(m.group(2))
        return self.host, self.port

    def base_url(self) -> str:
        host, port = self.connect_to()
        if ":" in host:
            host = f"[{host}]"
        return f"{'https' if self.secure else 'http'}://{host}:{port}"

    def sni_hostname(self) -> str | None:
        """The name the server certificate must carry (``tls.commonName``, else ``host``)."""
        if not self.secure:
            return None
        assert self.tls is not None
        return self.tls.commonName or self.host

    def ssl_context(self, config_dir: str = ".") -> ssl.SSLContext | None:
        """The TLS context of ``tls`` (None for plain HTTP); files relative to ``config_dir``."""
        if not self.secure:
            return None
        tls = self.tls
        assert tls is not None

        def path(p: str) -> str:
            return p if os.path.isabs(p) else os.path.join(config_dir, p)

        try:
            cas = [tls.trustCertsBundle, tls.caCertPath, *(tls.trustCerts or [])]
            files = [path(c) for c in cas if c]
            ctx = ssl.create_default_context(cafile=files[0] if files else None)
            for f in files[1:]:
                ctx.load_verify_locations(cafile=f)
            if tls.disableValidation:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            if tls.clientAuth is not None:
                ctx.load_cert_chain(path(tls.clientAuth.certPath), path(tls.clientAuth.keyPath))
            versions = [_TLS_VERSIONS[p] for p in tls.protocols or []]
            if versions:
                ctx.minimum_version = min(versions)
                ctx.maximum_version = max(versions)
        except (OSError, ssl.SSLError) as e:
            from linkpy.errors import ConfigError

            raise ConfigError(f"io.l5d.marathon tls: {e}") from None
        return ctx

    def mk(self, ctx: NamerContext) -> Namer:
        from .auth import from_env
        from .namer import MarathonNamer

        auth: Auth = from_env(os.environ)
        return MarathonNamer(self, ctx, auth=auth)
