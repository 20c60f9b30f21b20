"""Reading config files: Linkerd's structure, strictly, with the YAML path of each error."""

from __future__ import annotations

import pytest

from linkpy.config.load import load
from linkpy.config.schema import ClientParams, LinkerConfig, ServiceParams
from linkpy.errors import ConfigError
from linkpy.naming import Path
from linkpy.router.params import Params
from linkpy_fs import FsConfig


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load(text)
    return str(exc.value).splitlines()


MINIMAL = """
routers:
- protocol: http
  servers:
  - port: 4140
"""


def test_minimal_and_defaults() -> None:
    cfg = load(MINIMAL)
    assert isinstance(cfg, LinkerConfig)
    assert cfg.admin.ip == "127.0.0.1" and cfg.admin.port == 9990
    r = cfg.routers[0]
    assert r.name == "http"  # the label defaults to the protocol
    assert r.dstPrefix == "/svc"
    assert r.bindingTimeoutMs == 10000
    assert r.servers[0].ip == "127.0.0.1"
    assert r.maxHeadersKB == 8 and r.maxInitialLineKB == 4
    assert r.bindingCache.idleTtlSecs == 600
    assert cfg.source == MINIMAL


# A config in the shape Linkerd 1.x users write, using every key of the features
# linkpy has (composed for this test).
LINKERD_STYLE = """
admin:
  ip: 0.0.0.0
  port: 9990
  shutdownGraceMs: 5000
  security:
    uiEnabled: true
    controlEnabled: false
    pathWhitelist: ["/admin/ping"]

usage:
  orgId: acme
  enabled: false

namers:
- kind: io.l5d.fs
  rootDir: disco
- kind: io.l5d.rewrite
  prefix: /apiToSrv
  pattern: "/{service}/api"
  name: "/srv/{service}"

routers:
- protocol: http
  label: outgoing
  httpAccessLog: logs/access.log
  httpAccessLogRollPolicy: daily
  httpAccessLogAppend: true
  httpAccessLogRotateCount: -1
  maxHeadersKB: 16
  maxInitialLineKB: 16
  streamAfterContentLengthKB: 102400
  compressionLevel: 9
  bindingTimeoutMs: 5000
  bindingCache: {paths: 100, trees: 100, bounds: 100, clients: 100, idleTtlSecs: 60}
  originator: true
  identifier:
  - kind: io.l5d.header
    header: my-name
  - kind: io.l5d.path
    segments: 2
    consume: true
  - kind: io.l5d.methodAndHost
    httpUriInDst: true
  - kind: io.l5d.header.token
  - kind: io.l5d.static
    path: /default
  dtab: |
    /srv => /#/io.l5d.fs ;
    /svc => /#/apiToSrv ;
    /ph => /$/io.buoyant.rinet ;
  interpreter:
    kind: default
  servers:
  - port: 4140
    ip: 0.0.0.0
    maxConcurrentRequests: 1000
    clearContext: true
    timestampHeader: X-Request-Start
    maxCallDepth: 20
    addForwardedHeader:
      by: {kind: "ip:port"}
      for: {kind: ip}
    socketOptions:
      noDelay: true
      reuseAddr: true
      reusePort: false
      readTimeoutMs: 61000
      writeTimeoutMs: 61000
      keepAlive: true
      backlog: 128
    serverSession: {idleTimeMs: 60000, lifeTimeMs: 600000}
  client:
    kind: io.l5d.static
    configs:
    - prefix: /
      requestAttemptTimeoutMs: 1000
      loadBalancer: {kind: ewma, decayTimeMs: 10000}
    - prefix: /#/io.l5d.fs/cat
      hostConnectionPool: {minSize: 0, maxSize: 10, idleTimeMs: 10000, maxWaiters: 5000}
      failFast: false
      failureAccrual:
        kind: io.l5d.consecutiveFailures
        failures: 10
        backoff: {kind: jittered, minMs: 5000, maxMs: 300000}
    - prefix: /#/io.l5d.fs/dog
      loadBalancer: {kind: aperture, minAperture: 2}
      requeueBudget: {percentCanRetry: 0.25}
      failureAccrual: {kind: io.l5d.successRate, successRate: 0.9, requests: 1000}
    - prefix: "/#/*/{service}"
      tls:
        commonName: "{service}.linkerd.io"
        trustCertsBundle: /certs/ca.pem
  service:
    kind: io.l5d.static
    configs:
    - prefix: /svc
      totalTimeoutMs: 500
      responseClassifier: {kind: io.l5d.http.retryableRead5XX}
    - prefix: /svc/bar
      retries:
        budget: {minRetriesPerSec: 5, percentCanRetry: 0.5, ttlSecs: 15}
        backoff: {kind: jittered, minMs: 10, maxMs: 10000}
- protocol: http
  label: incoming
  dtab: /svc => /#/io.l5d.fs;
  servers:
  - port: 4141
    ip: 0.0.0.0
  client:
    loadBalancer: {kind: roundRobin, maxEffort: 10}
    failureAccrual: {kind: none}
  service:
    totalTimeoutMs: 1000
"""


def test_a_linkerd_style_config_loads_unchanged() -> None:
    cfg = load(LINKERD_STYLE)
    out, inc = cfg.routers
    assert out.name == "outgoing" and inc.name == "incoming"
    assert isinstance(cfg.namers[0], FsConfig)
    assert len(out.identifier or []) == 5
    fwd = out.servers[0].addForwardedHeader
    assert fwd is not None and fwd.by.kind == "ip:port" and fwd.for_.kind == "ip"
    clients = Params(out.client, ClientParams)
    cat, _ = clients.resolve(Path.read("/#/io.l5d.fs/cat"))
    assert cat.loadBalancer.kind == "ewma"  # from the / entry
    assert cat.hostConnectionPool.maxSize == 10
    assert cat.failureAccrual.failures == 10
    dog, variables = clients.resolve(Path.read("/#/io.l5d.fs/dog"))
    assert dog.loadBalancer.kind == "aperture"  # a later entry overrides
    assert dog.tls.commonName == "{service}.linkerd.io"
    assert variables == {"service": "dog"}
    services = Params(out.service, ServiceParams)
    bar, _ = services.resolve(Path.read("/svc/bar"))
    assert bar.totalTimeoutMs == 500
    assert bar.retries.budget.percentCanRetry == 0.5
    incoming, _ = Params(inc.client, ClientParams).resolve(Path.read("/$/inet/1/2"))
    assert incoming.loadBalancer.kind == "roundRobin"


def test_json_config() -> None:
    cfg = load('{"routers": [{"protocol": "http", "servers": [{"port": 4140}]}]}')
    assert cfg.routers[0].servers[0].port == 4140


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "routers:\n- protocol: http\n  servers: [{port: x}]\n",
            "routers[0].servers[0].port: expected an integer, got a string 'x'",
        ),
        (
            "routers:\n- protocol: http\n  servers: [{port: 1, bogus: 2}]\n",
            "routers[0].servers[0].bogus: unknown key",
        ),
        (
            "routers:\n- protocol: http\n  servers: [{port: 1}]\n"
            "  identifier: {kind: io.l5d.nope}\n",
            "routers[0].identifier: unknown identifier kind 'io.l5d.nope'",
        ),
        (
            "routers:\n- protocol: thrift\n  servers: [{port: 1}]\n",
            "routers[0].protocol: unknown protocol 'thrift' (known: http, h2)",
        ),
        (
            "routers:\n- protocol: http\n  dtab: /a=>/b;;\n  servers: [{port: 1}]\n",
            "routers[0].dtab: invalid dtab: '/' expected but ';' found at '/a=>/b;[;]",
        ),
        (
            "namers:\n- kind: io.l5d.fs\nrouters:\n- protocol: http\n  servers: [{port: 1}]\n",
            "namers[0].rootDir: required",
        ),
        (
            "namers:\n- {kind: io.l5d.k9s}\nrouters:\n- protocol: http\n  servers: [{port: 1}]\n",
            "namers[0]: unknown namer kind 'io.l5d.k9s'",
        ),
        (
            "routers:\n- protocol: http\n  servers: [{port: 1}]\n"
            "  client:\n    kind: io.l5d.static\n    configs:\n    - prefix: /a\n"
            "      loadBalancer: {kind: fastest}\n",
            "routers[0].client.configs[0].loadBalancer: unknown load balancer kind 'fastest'",
        ),
        (
            "routers:\n- protocol: http\n  servers: [{port: 1}]\n"
            "  client:\n    kind: io.l5d.static\n    configs:\n    - loadBalancer: {kind: p2c}\n",
            "routers[0].client.configs[0]: each config needs a prefix",
        ),
        (
            "routers:\n- protocol: http\n  servers: [{port: 1}]\n  service:\n    retries:\n"
            "      backoff: {kind: jittered}\n",
            "routers[0].service.retries.backoff: a jittered backoff needs minMs and maxMs",
        ),
        (
            "routers:\n- protocol: http\n  servers: [{port: 1}]\n  bindingTimeoutMs: true\n",
            "routers[0].bindingTimeoutMs: expected an integer, got a boolean True",
        ),
        (
            "routers:\n- protocol: h2\n  servers: [{port: 1, windowUpdateRatio: 1.5}]\n",
            "routers[0].servers[0].windowUpdateRatio: 1.5 is not between 0 and 1",
        ),
        (
            "routers:\n- protocol: h2\n  servers: [{port: 1}]\n  client: {windowUpdateRatio: 0}\n",
            "routers[0].client.windowUpdateRatio: 0 is not between 0 and 1",
        ),
        ("routers: []\n", "routers: at least one router is required"),
        ("admin: {port: 1}\n", "routers: required"),
        ("- just\n- a list\n", "a config file holds an object"),
        ("routers:\n  - protocol: http\n  servers: [\n", "not valid YAML"),
        (
            "routers:\n- protocol: http\n  protocol: h2\n  servers: [{port: 1}]\n",
            "duplicate key 'protocol' (line 3)",
        ),
    ],
)
def test_errors_name_the_yaml_path(text: str, expected: str) -> None:
    lines = errors_of(text)
    assert any(line.startswith(expected) for line in lines), lines


def test_every_error_is_reported_once() -> None:
    lines = errors_of(
        "routers:\n- protocol: http\n  servers: [{port: x}, {port: 2, what: 1}]\n  nope: 1\n"
    )
    assert len(lines) == 3
    assert len(set(lines)) == 3


def test_labels_and_ports_must_not_clash() -> None:
    lines = errors_of(
        """
admin: {port: 9990}
routers:
- protocol: http
  servers: [{port: 4140}]
- protocol: http
  servers: [{port: 4140, ip: 0.0.0.0}, {port: 9990}]
"""
    )
    assert "routers[1].label: router label 'http' is used twice (routers[0])" in lines
    assert "routers[1].servers[0]: port 4140 is already used by routers[0].servers[0]" in lines
    assert "routers[1].servers[1]: port 9990 is already used by admin" in lines


def test_same_port_on_different_ips_is_fine() -> None:
    cfg = load(
        """
routers:
- protocol: http
  label: a
  servers: [{port: 4140, ip: 127.0.0.2}]
- protocol: http
  label: b
  servers: [{port: 4140, ip: 127.0.0.3}]
"""
    )
    assert len(cfg.routers) == 2


def test_experimental_plugins_must_be_enabled() -> None:
    import attrs

    from linkpy.config.registry import Registry
    from linkpy.plugin import Namer, NamerConfig, NamerContext

    @attrs.frozen(kw_only=True)
    class Risky(NamerConfig):
        default_prefix = "/risky"
        experimental_required = True

        def mk(self, ctx: NamerContext) -> Namer:
            raise AssertionError("not built in this test")

    registry = Registry.discover().with_plugins("linkpy.namers", {"test.risky": Risky})
    text = "namers:\n- kind: test.risky\nrouters:\n- protocol: http\n  servers: [{port: 1}]\n"
    with pytest.raises(ConfigError, match=r"namers\[0\]: namer 'test.risky' is experimental"):
        load(text, registry)
    ok = load(text.replace("kind: test.risky", "kind: test.risky\n  experimental: true"), registry)
    assert ok.namers[0].experimental


def test_fs_interpreter_needs_a_file() -> None:
    lines = errors_of(
        "routers:\n- protocol: http\n  interpreter: {kind: io.l5d.fs}\n  servers: [{port: 1}]\n"
    )
    assert lines == ["routers[0].interpreter.dtabFile: required by io.l5d.fs"]
    lines = errors_of(
        "routers:\n- protocol: http\n  interpreter: {kind: io.l5d.namerd, dst: /x}\n"
        "  servers: [{port: 1}]\n"
    )
    assert any("unsupported interpreter 'io.l5d.namerd'" in line for line in lines)
