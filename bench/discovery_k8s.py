"""Kubernetes discovery: change-to-Addr latency, and the cost of watching 1,000 services.

1. Latency: the emulator and ``io.l5d.k8s`` run in this process (one trio loop, real
   loopback HTTP); each of 200 changes writes an EndpointSlice and times the moment the
   bound name's Addr var lists the new address (watch event -> parse -> var).  Target:
   p99 <= 100 ms.
2. Scale: the emulator runs as a subprocess (``python -m linkpy.testing.fakes
   kubernetes``) seeded with 1,000 Services; this process looks them all up and
   follows them (1,000 watch streams), then measures its RSS growth and its CPU use
   while idle for a few seconds.
"""

from __future__ import annotations

import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path as FsPath
from typing import Any

import trio

from linkpy.activity import Var
from linkpy.metrics import Metrics
from linkpy.naming import AddrBound, Bound, Leaf, Ok, Path
from linkpy.plugin import NamerContext
from linkpy.testing.fakes.kubernetes import FakeKubernetes, slice_endpoint

from . import report

ROOT = FsPath(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "plugins"))

from linkpy_k8s import K8sConfig  # noqa: E402

CHANGES = 200
SERVICES = 1000
IDLE_SECONDS = 5.0


def _rss_kib() -> int:
    for line in FsPath("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def _namer(port: int, metrics: Metrics) -> Any:
    cfg = K8sConfig(host="127.0.0.1", port=port, idleTtlSecs=600.0)
    namer = cfg.mk(NamerContext(metrics=metrics))
    namer.prefix = Path.read("/#/io.l5d.k8s")
    return namer


def _addr_var(tree: Var[Any]) -> Var[Any]:
    st = tree.sample()
    assert isinstance(st, Ok) and isinstance(st.value, Leaf)
    b = st.value.value
    assert isinstance(b, Bound) and isinstance(b.addr, Var)
    return b.addr


async def _bound(tree: Var[Any]) -> Var[Any]:
    while not (isinstance(tree.sample(), Ok) and isinstance(tree.sample().value, Leaf)):
        await tree.wait_change(tree.version)
    return _addr_var(tree)


async def latency() -> list[float]:
    """Seconds from each emulator write to the Addr var listing the new address."""
    samples: list[float] = []
    k8s = FakeKubernetes()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(k8s.serve)
        k8s.set_endpoint_slice(
            "prod", "web-1", "web", [slice_endpoint("10.0.0.1")], ports={"http": 80}
        )
        namer = _namer(port, Metrics())
        await nursery.start(namer.run)
        tree = namer.lookup(Path.read("/prod/http/web"))
        tree.observe(lambda _: None)
        addr = await _bound(tree)
        seen: dict[str, float] = {}

        def record(a: object) -> None:
            if isinstance(a, AddrBound):
                for x in a.addresses:
                    seen.setdefault(x.host, time.perf_counter())

        addr.observe(record)
        for i in range(CHANGES):
            host = f"10.1.{i // 250}.{i % 250 + 1}"
            t0 = time.perf_counter()
            k8s.set_endpoint_slice(
                "prod", "web-1", "web", [slice_endpoint(host)], ports={"http": 80}
            )
            with trio.fail_after(10):
                while host not in seen:
                    await addr.wait_change(addr.version)
            samples.append(seen[host] - t0)
        nursery.cancel_scope.cancel()
    return samples


def _seed(path: FsPath) -> None:
    slices = [
        {
            "namespace": "prod",
            "name": f"svc{i}-a",
            "service": f"svc{i}",
            "ports": {"http": 8080},
            "endpoints": [{"address": f"10.{i // 250}.{i % 250}.{j + 1}"} for j in range(3)],
        }
        for i in range(SERVICES)
    ]
    path.write_text(json.dumps({"endpointslices": slices}))


def scale() -> dict[str, float]:
    """Start the seeded emulator process, then watch every service from this one."""
    with tempfile.TemporaryDirectory() as d:
        seed = FsPath(d) / "seed.json"
        _seed(seed)
        proc = subprocess.Popen(
            [sys.executable, "-m", "linkpy.testing.fakes", "kubernetes", "--load", str(seed)],
            stdout=subprocess.PIPE,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            text=True,
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            m = re.search(r":(\d+)\s*$", line)
            assert m, f"unexpected emulator output {line!r}"
            return trio.run(_watch_all, int(m.group(1)))
        finally:
            proc.terminate()
            proc.wait(10)


async def _watch_all(port: int) -> dict[str, float]:
    metrics = Metrics()
    out: dict[str, float] = {}
    async with trio.open_nursery() as nursery:
        namer = _namer(port, metrics)
        await nursery.start(namer.run)
        # warm up: one lookup, so that the client and the code paths exist
        warm = namer.lookup(Path.read("/prod/http/svc0"))
        warm.observe(lambda _: None)
        await _bound(warm)
        rss0 = _rss_kib()
        t0, c0 = time.perf_counter(), _cpu()
        trees = [namer.lookup(Path.read(f"/prod/http/svc{i}")) for i in range(1, SERVICES)]
        for t in trees:
            t.observe(lambda _: None)
        for t in trees:
            await _bound(t)
        out["bind_all_s"] = time.perf_counter() - t0
        out["bind_all_cpu_s"] = _cpu() - c0
        await trio.sleep(1.0)
        rss1 = _rss_kib()
        cpu0, w0 = _cpu(), time.perf_counter()
        await trio.sleep(IDLE_SECONDS)
        cpu1, w1 = _cpu(), time.perf_counter()
        out["rss_delta_mib"] = (rss1 - rss0) / 1024
        out["rss_per_watch_kib"] = (rss1 - rss0) / (SERVICES - 1)
        out["idle_cpu_pct"] = 100 * (cpu1 - cpu0) / (w1 - w0)
        out["watches"] = float(namer.open_watches())
        out["rss_total_mib"] = rss1 / 1024
        nursery.cancel_scope.cancel()
    return out


def run() -> None:
    samples = [s * 1000 for s in trio.run(latency)]
    p50, p99 = statistics.median(samples), _pct(samples, 99)
    sc = scale()
    report.save(
        "discovery_k8s",
        "Kubernetes discovery (io.l5d.k8s over the emulator, loopback HTTP)",
        [
            {
                "columns": ["measure", "value", "target"],
                "rows": [
                    [f"change -> Addr var, p50 ms ({CHANGES} changes)", round(p50, 2), ""],
                    [f"change -> Addr var, p99 ms ({CHANGES} changes)", round(p99, 2), "<= 100"],
                    ["change -> Addr var, max ms", round(max(samples), 2), ""],
                    ["services watched at once", int(sc["watches"]), str(SERVICES)],
                    ["time to bind them all, s (emulator-bound)", round(sc["bind_all_s"], 2), ""],
                    ["CPU of this process to bind them all, s", round(sc["bind_all_cpu_s"], 2), ""],
                    ["RSS growth for them, MiB", round(sc["rss_delta_mib"], 1), ""],
                    ["RSS growth per watched service, KiB", round(sc["rss_per_watch_kib"], 1), ""],
                    [
                        f"CPU while idle, % of a core ({IDLE_SECONDS:g} s)",
                        round(sc["idle_cpu_pct"], 2),
                        "",
                    ],
                    ["process RSS with them, MiB", round(sc["rss_total_mib"], 1), ""],
                ],
            }
        ],
        notes=[
            "Latency: emulator and namer share one trio loop in one process; each change "
            "is one EndpointSlice write, timed until the bound name's Addr var lists it.",
            "Scale: the emulator is a separate process; RSS and CPU are this process's "
            "(the namer, its 1,000 watch streams over 1,000 HTTP/1.1 connections, and "
            "the lookups followed).",
        ],
        command="tox -e bench -- discovery_k8s",
    )


if __name__ == "__main__":
    run()
