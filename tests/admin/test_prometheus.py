"""``/admin/metrics/prometheus`` and the ``io.l5d.prometheus`` telemeter."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from linkpy.admin.prometheus import PrometheusConfig
from linkpy.config.load import load
from linkpy.config.registry import Registry
from linkpy.errors import ConfigError

from ..conftest import MakeBackend, StartLinker, admin_url, fs_config, router_url, write_disco

REGISTRY = Registry.discover().with_plugins(
    "linkpy.telemeters", {"io.l5d.prometheus": PrometheusConfig}
)


def telemetry(entry: str) -> str:
    return f"telemetry:\n- kind: io.l5d.prometheus\n{entry}\n"


def families(text: str) -> dict[str, Metric]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample(
    fams: dict[str, Metric], family: str, name: str, **labels: str
) -> float:  # the one sample with exactly these labels
    found = [s.value for s in fams[family].samples if s.name == name and s.labels == labels]
    assert len(found) == 1, (family, name, labels, fams[family].samples)
    return found[0]


async def test_served_without_a_telemeter(
    backend: MakeBackend, start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    b = await backend("b")
    write_disco(disco, "web", b)
    linker = await start_linker(fs_config(disco))
    for _ in range(2):
        await http.get(router_url(linker) + "/", headers={"Host": "web"})
    await http.get(router_url(linker) + "/", headers={"Host": "nope"})
    r = await http.get(admin_url(linker) + "/admin/metrics/prometheus")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    fams = families(r.text)
    server = {"rt": "out", "server": f"127.0.0.1/{linker.ports()['out'][0]}"}
    assert fams["rt:server:requests"].type == "unknown"  # untyped, as Linkerd
    assert sample(fams, "rt:server:requests", "rt:server:requests", **server) == 3
    assert sample(fams, "rt:server:success", "rt:server:success", **server) == 2
    failures = "rt:server:failures"
    assert sample(fams, "rt:server:failures", failures, **server) == 1
    assert sample(fams, "rt:server:failures", failures, **server, exception="no_brokers") == 1
    assert sample(fams, "rt:server:status:200", "rt:server:status:200", **server) == 2
    svc = {"rt": "out", "service": "svc/web"}
    lat = fams["rt:service:request_latency_ms"]
    assert lat.type == "summary"
    assert sample(fams, lat.name, lat.name + "_count", **svc) == 2
    quantiles = sorted(
        float(s.labels["quantile"])
        for s in lat.samples
        if "quantile" in s.labels and s.labels["service"] == "svc/web"
    )
    assert quantiles == [0, 0.5, 0.9, 0.95, 0.99, 0.999, 0.9999, 1]
    assert fams["rt:service:request_latency_ms_avg"].type == "gauge"
    client = {"rt": "out", "client": "#/io.l5d.fs/web"}
    assert sample(fams, "rt:client:requests", "rt:client:requests", **client) == 2
    assert sample(fams, "rt:client:loadbalancer:size", "rt:client:loadbalancer:size", **client) == 1


async def test_telemeter_sets_path_and_prefix(
    start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    cfg = fs_config(disco) + telemetry("  path: /metrics\n  prefix: linkpy_")
    linker = await start_linker(cfg, REGISTRY)
    r = await http.get(admin_url(linker) + "/metrics")
    assert r.status_code == 200
    names = set(families(r.text))
    assert "linkpy_rt:interpreter:binds" in names
    assert all(n.startswith("linkpy_") for n in names)
    # with the telemeter configured, only its path serves the text (as in Linkerd)
    r = await http.get(admin_url(linker) + "/admin/metrics/prometheus")
    assert r.status_code == 404
    index = (await http.get(admin_url(linker) + "/admin")).text
    assert "/metrics " in index


async def test_telemeter_defaults(
    start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    linker = await start_linker(fs_config(disco) + telemetry("  experimental: false"), REGISTRY)
    (t,) = linker.config.telemetry
    assert t == PrometheusConfig(path="/admin/metrics/prometheus", prefix="")
    r = await http.get(admin_url(linker) + "/admin/metrics/prometheus")
    assert r.status_code == 200 and families(r.text)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("  path: metrics", "telemetry[0].path: 'metrics' must be an admin path"),
        (
            "  path: /admin/ping",
            "telemetry[0].path: '/admin/ping' is already an admin endpoint",
        ),
        ("  path: /files/metrics", "telemetry[0].path: '/files/metrics' is already"),
        ("  prefix: 1x", "telemetry[0].prefix: '1x' must be a Prometheus metric name"),
        ("  nope: 1", "telemetry[0].nope: unknown key"),
    ],
)
def test_telemeter_config_errors(disco: Path, entry: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        load(fs_config(disco) + telemetry(entry), REGISTRY)
    assert message in str(e.value)
