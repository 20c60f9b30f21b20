"""io.l5d.consul's config: Linkerd's keys and defaults, read strictly."""

from __future__ import annotations

import pytest

from linkpy.config.load import load
from linkpy.errors import ConfigError
from linkpy.linker import Linker
from linkpy_consul import ConsulConfig, TagWeight
from linkpy_consul.namer import ConsulNamer

from ...conftest import ROOT
from .helpers import registry

ROUTER = "routers:\n- protocol: http\n  servers: [{port: 1}]\n"


def namer(body: str) -> ConsulConfig:
    cfg = load(f"namers:\n- kind: io.l5d.consul\n{body}{ROUTER}", registry())
    (n,) = cfg.namers
    assert isinstance(n, ConsulConfig)
    return n


def test_defaults_are_linkerds() -> None:
    c = namer("")
    assert (c.host, c.port) == ("localhost", 8500)
    assert not c.includeTag and not c.useHealthCheck and c.healthStatuses == ["passing"]
    assert c.token is None and not c.setHost and c.consistencyMode == "default"
    assert not c.failFast and c.preferServiceAddress and c.weights is None
    assert not c.transferMetadata and not c.experimental
    assert type(c).default_prefix == "/io.l5d.consul"
    assert (c.waitSecs, c.requestTimeoutMs, c.watchIdleSecs) == (300, 10_000, 30)


def test_every_key() -> None:
    c = namer(
        "  prefix: /consul\n  host: consul.internal\n  port: 8501\n  includeTag: true\n"
        "  useHealthCheck: true\n  healthStatuses: [passing, warning]\n  token: t0k3n\n"
        "  setHost: true\n  consistencyMode: consistent\n  failFast: true\n"
        "  preferServiceAddress: false\n"
        "  weights: [{tag: canary, weight: 0.5}, {tag: Big, weight: 2}]\n"
        "  transferMetadata: true\n  useConsulWeights: true\n  waitSecs: 60\n"
        "  requestTimeoutMs: 2000\n  watchIdleSecs: 5\n"
    )
    assert c.prefix == "/consul" and c.host == "consul.internal" and c.port == 8501
    assert c.healthStatuses == ["passing", "warning"] and c.consistencyMode == "consistent"
    assert c.weights == [TagWeight(tag="canary", weight=0.5), TagWeight(tag="Big", weight=2.0)]
    assert c.tag_weights() == {"canary": 0.5, "big": 2.0}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("  hots: x\n", "namers[0].hots: unknown key"),
        ("  port: x\n", "namers[0].port: expected an integer"),
        ("  port: 0\n", "port: 0 is not a port"),
        ("  includeTag: yes please\n", "namers[0].includeTag: expected true or false"),
        ("  consistencyMode: eventual\n", "namers[0].consistencyMode: eventual not in literal"),
        ("  healthStatuses: [passing, sick]\n", "healthStatuses: unknown status 'sick'"),
        ("  healthStatuses: []\n", "healthStatuses: must list at least one status"),
        ("  weights: [{tag: a}]\n", "namers[0].weights[0].weight: required"),
        ("  weights: [{tag: a, weight: 1, extra: 2}]\n", "namers[0].weights[0].extra: unknown key"),
        ("  waitSecs: 900\n", "waitSecs: must be 1..600 seconds"),
        ("  tls: {disableValidation: true}\n", "namers[0].tls: unknown key"),
    ],
)
def test_bad_keys_are_errors_with_their_path(body: str, error: str) -> None:
    with pytest.raises(ConfigError) as e:
        namer(body)
    assert error in str(e.value)


def test_the_example_config_loads_and_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    path = ROOT / "configs" / "consul.yaml"
    cfg = load(path.read_text(), registry(), path=str(path))
    linker = Linker(cfg, registry())  # builds without opening a socket
    ((prefix, n),) = linker.namers
    assert prefix.show() == "/#/io.l5d.consul" and isinstance(n, ConsulNamer)
    assert n.passing and n.statuses == frozenset({"passing"})
