"""Telemeters and the access log."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import httpx
import pytest
import trio

from linkpy.metrics import Metrics
from linkpy.naming import Path as Path_
from linkpy.proto.http1 import RequestHead
from linkpy.telemetry import AccessLog, StatsdConfig, Telemetry, influx_lines, statsd_lines

from .conftest import (
    MakeBackend,
    StartLinker,
    admin_url,
    fs_config,
    router_url,
    write_disco,
)


async def test_access_log_and_recent_requests(
    backend: MakeBackend,
    start_linker: StartLinker,
    disco: Path,
    tmp_path: Path,
    http: httpx.AsyncClient,
) -> None:
    b = await backend("b")
    write_disco(disco, "web", b)
    logfile = tmp_path / "logs" / "access.log"
    text = fs_config(disco, extra=f"  httpAccessLog: {logfile}\n") + (
        "telemetry:\n- kind: io.l5d.recentRequests\n  sampleRate: 1.0\n  capacity: 2\n"
    )
    linker = await start_linker(text)
    for i in range(3):
        headers = {"Host": "web", "User-Agent": "t/1"} | ({"Referer": "http://r/"} if i else {})
        await http.get(router_url(linker) + f"/p{i}", headers=headers)
    await http.get(router_url(linker) + "/", headers={"Host": "nope"})
    for log in linker.access_logs:
        await log.flush()
    lines = logfile.read_text().splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("127.0.0.1 - - [")
    assert '"GET /p0 HTTP/1.1" 200' in lines[0] and '"-" "t/1" /svc/web' in lines[0]
    assert '"GET /p1 HTTP/1.1" 200' in lines[1] and '"http://r/" "t/1" /svc/web' in lines[1]
    assert '"GET / HTTP/1.1" 502' in lines[3]
    recent = linker.telemetry.recent_requests()
    assert [r["target"] for r in recent] == ["/", "/p2"]  # newest first, capacity 2
    assert recent[1]["client"] == "/#/io.l5d.fs/web" and recent[1]["status"] == 200
    assert recent[1]["name"] == "/svc/web" and recent[1]["method"] == "GET"
    trace_id, span = recent[1]["trace"].split(".")  # trace.span<:parent
    assert span.split("<:") == [trace_id, trace_id]  # a new root trace
    # the telemeter's admin endpoints
    served = (await http.get(admin_url(linker) + "/requests.json")).json()
    assert [r["target"] for r in served] == ["/", "/p2"]
    text = (await http.get(admin_url(linker) + "/requests")).text
    assert "GET /p2 -> /svc/web via /#/io.l5d.fs/web: 200 in" in text


async def test_influxdb_telemeter_serves_line_protocol(
    backend: MakeBackend, start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    b = await backend("b")
    write_disco(disco, "web", b)
    linker = await start_linker(fs_config(disco) + "telemetry:\n- kind: io.l5d.influxdb\n")
    assert (await http.get(router_url(linker) + "/", headers={"Host": "web"})).status_code == 200
    r = await http.get(admin_url(linker) + "/admin/metrics/influxdb")
    assert r.status_code == 200
    lines = r.text.splitlines()
    assert lines and all(" value=" in line and ",host=" in line for line in lines)
    assert any(line.startswith("rt:server:requests,") for line in lines)


async def test_access_log_rolls_by_size(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    log = AccessLog(str(path), "1.kilobytes", rotate_count=2)
    entry = (
        "1.2.3.4",
        0.0,
        RequestHead(b"GET", b"/" + b"x" * 300, []),
        200,
        5,
        Path_.read("/svc/x"),
    )
    for _ in range(5):
        for _ in range(4):
            log.add(entry)
        await log.flush()
    rotated = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("a.log."))
    assert 1 <= len(rotated) <= 2
    assert path.exists()


async def test_tracelog(
    caplog: pytest.LogCaptureFixture,
    backend: MakeBackend,
    start_linker: StartLinker,
    disco: Path,
    http: httpx.AsyncClient,
) -> None:
    b = await backend("b")
    write_disco(disco, "web", b)
    text = fs_config(disco) + "telemetry:\n- kind: io.l5d.tracelog\n  sampleRate: 1.0\n"
    linker = await start_linker(text)
    with caplog.at_level(logging.INFO, logger="linkpy.telemetry"):
        await http.get(router_url(linker) + "/", headers={"Host": "web"})
    assert any("/svc/web -> /#/io.l5d.fs/web 200" in r.getMessage() for r in caplog.records)


async def test_statsd_pushes_counter_increases_and_gauges() -> None:
    m = Metrics()
    c = m.scope("rt", "out").counter("requests")
    m.gauge("load", fn=lambda: 3.0)
    last: dict[str, float] = {}
    c.incr(5)
    assert sorted(statsd_lines(m, "linkerd", last)) == [
        "linkerd.load:3|g",
        "linkerd.rt.out.requests:5|c",
    ]
    c.incr(2)
    assert "linkerd.rt.out.requests:2|c" in statsd_lines(m, "linkerd", last)
    assert not any(line.endswith("|c") for line in statsd_lines(m, "linkerd", last))


async def test_statsd_over_udp(nursery: trio.Nursery) -> None:
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    m = Metrics()
    m.counter("hits").incr(7)
    tel = Telemetry([StatsdConfig(port=port, gaugeIntervalMs=100, experimental=True)], m)
    await nursery.start(tel.run)
    with trio.fail_after(10):
        data = await sock.recv(65536)
    assert b"linkerd.hits:7|c" in data
    sock.close()


def test_influx_lines() -> None:
    m = Metrics()
    m.labeled("rt", "out").labeled("server", "127.0.0.1/4140").counter("requests").incr(3)
    text = influx_lines(m, "box")
    assert "rt:server:requests,rt=out,server=127.0.0.1/4140,host=box value=3.0" in text
