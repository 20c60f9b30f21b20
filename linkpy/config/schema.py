"""The config file's structure: Linkerd 1.x's keys and defaults, as frozen attrs classes.

Field names are the YAML keys, spelled as Linkerd spells them (camelCase), so that a
Linkerd user's file loads unchanged.  Objects chosen by ``kind`` (namers, identifiers,
classifiers, load balancers, ...) are polymorphic: the loader picks the class from the
kind.  Nothing here opens a socket: runtime objects are built from these by
:mod:`linkpy.linker`.
"""

from __future__ import annotations

from typing import Any, ClassVar, NewType

import attrs

from ..plugin import NamerConfig
from ..router.transformers import TransformerConfig

PROTOCOLS = ("http", "h2")

#: A string the loader checks is a router protocol.
ProtocolName = NewType("ProtocolName", str)
#: A string the loader checks is a dtab.
DtabText = NewType("DtabText", str)
#: A string the loader checks is a path.
PathText = NewType("PathText", str)
#: A string the loader checks is a regular expression.
RegexText = NewType("RegexText", str)


class ConfigValueError(ValueError):
    """A value that is the right type but wrong; the message is shown as is.

    Raised by an attrs validator, ``key`` names the field (the validator's
    ``attribute.name``) so that the error is reported at the field's YAML path
    (``namers[0].port: ...``) rather than at its object's.
    """

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


# --- small shared objects -------------------------------------------------------


@attrs.frozen(kw_only=True)
class SocketOptions:
    noDelay: bool = True
    reuseAddr: bool = True
    reusePort: bool = False
    readTimeoutMs: int | None = None
    writeTimeoutMs: int | None = None
    keepAlive: bool = False
    backlog: int | None = None


@attrs.frozen(kw_only=True)
class ServerTls:
    enabled: bool = True
    certPath: str | None = None
    keyPath: str | None = None
    intermediateCertsPath: str | None = None
    caCertPath: str | None = None
    requireClientAuth: bool = False
    protocols: list[str] | None = None
    ciphers: list[str] | None = None


@attrs.frozen(kw_only=True)
class ClientAuth:
    certPath: str
    keyPath: str
    intermediateCertsPath: str | None = None


@attrs.frozen(kw_only=True)
class ClientTls:
    kind: str | None = None
    enabled: bool = True
    disableValidation: bool = False
    commonName: str | None = None
    trustCertsBundle: str | None = None
    trustCerts: list[str] | None = None
    caCertPath: str | None = None
    clientAuth: ClientAuth | None = None
    protocols: list[str] | None = None


@attrs.frozen(kw_only=True)
class Backoff:
    """``constant {ms}`` or ``jittered {minMs, maxMs}``."""

    kind: str = "constant"
    ms: int = 0
    minMs: int | None = None
    maxMs: int | None = None


@attrs.frozen(kw_only=True)
class Budget:
    minRetriesPerSec: int = 10
    percentCanRetry: float = 0.2
    ttlSecs: int = 10


# --- admin, telemetry, usage ------------------------------------------------------


@attrs.frozen(kw_only=True)
class AdminSecurity:
    uiEnabled: bool = True
    controlEnabled: bool = True
    diagnosticsEnabled: bool = True
    pathWhitelist: list[RegexText] | None = None
    pathBlacklist: list[RegexText] | None = None


@attrs.frozen(kw_only=True)
class AdminConfig:
    ip: str = "127.0.0.1"
    port: int = 9990
    socketOptions: SocketOptions | None = None
    httpIdentifierPort: int | None = None
    shutdownGraceMs: int = 10000
    tls: ServerTls | None = None
    security: AdminSecurity | None = None
    workerThreads: int = 2


@attrs.frozen(kw_only=True)
class TelemeterConfig:
    """Base of the ``telemetry`` entries (chosen by ``kind``)."""

    experimental: bool = False


@attrs.frozen(kw_only=True)
class UsageConfig:
    orgId: str | None = None
    enabled: bool = True


# --- per-prefix client and service parameters -------------------------------------


@attrs.frozen(kw_only=True)
class LoadBalancerConfig:
    kind: str = "p2c"
    maxEffort: int = 5
    decayTimeMs: int = 10000
    smoothWindowMs: int = 5000
    lowLoad: float = 0.5
    highLoad: float = 2.0
    minAperture: int = 1
    enableProbation: bool = False

    KINDS: ClassVar[frozenset[str]] = frozenset({"p2c", "ewma", "aperture", "heap", "roundRobin"})


@attrs.frozen(kw_only=True)
class FailureAccrualConfig:
    kind: str = "io.l5d.consecutiveFailures"
    failures: int | None = None
    successRate: float | None = None
    requests: int | None = None
    window: int | None = None
    backoff: Backoff | None = None

    KINDS: ClassVar[frozenset[str]] = frozenset(
        {
            "io.l5d.consecutiveFailures",
            "io.l5d.successRate",
            "io.l5d.successRateWindowed",
            "none",
        }
    )


@attrs.frozen(kw_only=True)
class HostConnectionPool:
    minSize: int = 0
    maxSize: int | None = None
    idleTimeMs: int | None = None
    maxWaiters: int | None = None


@attrs.frozen(kw_only=True)
class Session:
    idleTimeMs: int | None = None
    lifeTimeMs: int | None = None


#: The keys a client entry may set (besides ``prefix``), and how to read each.
@attrs.frozen(kw_only=True)
class ClientParams:
    """Client parameters, per bound-name prefix (reference section 6)."""

    loadBalancer: LoadBalancerConfig | None = None
    failureAccrual: FailureAccrualConfig | None = None
    failFast: bool | None = None
    requeueBudget: Budget | None = None
    requestAttemptTimeoutMs: int | None = None
    hostConnectionPool: HostConnectionPool | None = None
    clientSession: Session | None = None
    tls: ClientTls | None = None
    socketOptions: SocketOptions | None = None
    requestAuthorizers: list[dict[str, Any]] | None = None
    forwardClientCert: bool | None = None
    connectTimeoutMs: int | None = None
    # HTTP/2
    initialStreamWindowBytes: int | None = None
    initialConnectionWindowBytes: int | None = None
    maxFrameBytes: int | None = None
    maxHeaderListBytes: int | None = None
    headerTableBytes: int | None = None
    windowUpdateRatio: float | None = None


@attrs.frozen(kw_only=True)
class RetryBufferSize:
    requestBytes: int = 16383
    responseBytes: int = 16383


@attrs.frozen(kw_only=True)
class RetriesConfig:
    budget: Budget | None = None
    backoff: Backoff | None = None


@attrs.frozen(kw_only=True)
class ClassifierConfig:
    """Base of response classifiers (chosen by ``kind``)."""


@attrs.frozen(kw_only=True)
class ServiceParams:
    """Service parameters, per logical-name prefix (reference section 7)."""

    retries: RetriesConfig | None = None
    totalTimeoutMs: int | None = None
    responseClassifier: ClassifierConfig | None = None
    classificationTimeoutMs: int | None = None
    retryBufferSize: RetryBufferSize | None = None


@attrs.frozen(kw_only=True)
class PrefixedParams:
    """One entry of an ``io.l5d.static`` client or service config."""

    prefix: str
    params: Any  # ClientParams or ServiceParams


@attrs.frozen(kw_only=True)
class PerPrefix:
    """``client`` / ``service``: ``io.l5d.global`` (one set) or ``io.l5d.static`` (by prefix).

    ``entries`` is the list of (prefix, params) in file order; a global config is one
    entry with the empty prefix, which matches every name.
    """

    kind: str = "io.l5d.global"
    entries: tuple[PrefixedParams, ...] = ()


# --- identifiers, interpreters --------------------------------------------------------


@attrs.frozen(kw_only=True)
class IdentifierConfig:
    """Base of identifiers (chosen by ``kind``)."""


@attrs.frozen(kw_only=True)
class InterpreterConfig:
    kind: str = "default"
    transformers: list[TransformerConfig] | None = None
    # io.l5d.fs
    dtabFile: str | None = None


# --- servers and routers -----------------------------------------------------------


@attrs.frozen(kw_only=True)
class Labeler:
    kind: str = "requestRandom"
    label: str | None = None

    KINDS: ClassVar[frozenset[str]] = frozenset(
        {"ip", "ip:port", "connectionRandom", "requestRandom", "router", "static"}
    )


@attrs.frozen(kw_only=True)
class ForwardedConfig:
    by: Labeler = attrs.field(factory=Labeler)
    for_: Labeler = attrs.field(factory=Labeler, alias="for_")


@attrs.frozen(kw_only=True)
class ServerConfig:
    port: int | None = None
    ip: str = "127.0.0.1"
    socketOptions: SocketOptions | None = None
    tls: ServerTls | None = None
    maxConcurrentRequests: int | None = None
    announce: list[str] | None = None
    clearContext: bool = False
    serverSession: Session | None = None
    # HTTP/1.1
    addForwardedHeader: ForwardedConfig | None = None
    timestampHeader: str | None = None
    maxCallDepth: int | None = None
    # HTTP/2
    windowUpdateRatio: float | None = None
    headerTableBytes: int | None = None
    initialStreamWindowBytes: int | None = None
    initialConnectionWindowBytes: int | None = None
    maxConcurrentStreamsPerConnection: int | None = None
    maxFrameBytes: int | None = None
    maxHeaderListBytes: int | None = None


@attrs.frozen(kw_only=True)
class BindingCache:
    paths: int = 1000
    trees: int = 1000
    bounds: int = 1000
    clients: int = 1000
    idleTtlSecs: int = 600


@attrs.frozen(kw_only=True)
class TracePropagator:
    kind: str = "io.l5d.default"

    KINDS: ClassVar[frozenset[str]] = frozenset({"io.l5d.default", "io.l5d.zipkin"})


#: Default server port of each protocol (Linkerd's).
DEFAULT_PORTS: dict[str, int] = {"http": 4140, "h2": 4142}


@attrs.frozen(kw_only=True)
class RouterConfig:
    protocol: ProtocolName
    label: str | None = None
    servers: list[ServerConfig]
    dtab: DtabText = DtabText("")
    dstPrefix: PathText = PathText("/svc")
    identifier: list[IdentifierConfig] | None = None
    interpreter: InterpreterConfig = attrs.field(factory=InterpreterConfig)
    client: PerPrefix = attrs.field(factory=PerPrefix)
    service: PerPrefix = attrs.field(factory=PerPrefix)
    bindingTimeoutMs: int = 10000
    bindingCache: BindingCache = attrs.field(factory=BindingCache)
    announcers: list[dict[str, Any]] | None = None
    originator: bool = False
    experimental: bool = False
    tracePropagator: TracePropagator | None = None
    # HTTP/1.1
    httpAccessLog: str | None = None
    httpAccessLogRollPolicy: str | None = None
    httpAccessLogAppend: bool = True
    httpAccessLogRotateCount: int = -1
    streamingEnabled: bool = True
    streamAfterContentLengthKB: int = 5
    maxHeadersKB: int = 8
    maxInitialLineKB: int = 4
    maxErrResponseKB: int = 5120
    compressionLevel: int = -1
    # HTTP/2
    h2AccessLog: str | None = None
    h2AccessLogRollPolicy: str | None = None
    h2AccessLogAppend: bool = True
    h2AccessLogRotateCount: int = -1

    @property
    def name(self) -> str:
        return self.label or self.protocol


@attrs.frozen(kw_only=True)
class LinkerConfig:
    """A whole config file."""

    routers: list[RouterConfig]
    namers: list[NamerConfig] = attrs.field(factory=list)
    admin: AdminConfig = attrs.field(factory=AdminConfig)
    telemetry: list[TelemeterConfig] = attrs.field(factory=list)
    usage: UsageConfig | None = None
    #: the text of the file, for /config.json and the admin's file view
    source: str = attrs.field(default="", repr=False)
    #: where the file was read from ("" for text)
    path: str = ""
