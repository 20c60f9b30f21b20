"""Consul namer benchmarks: how fast a change reaches the namer, and what watching
1,000 services costs.

1. Latency: FakeConsul and the namer in one trio process; 200 changes to a watched
   service (an instance registered or deregistered, one at a time, 20 ms apart), each
   timed from the write in the emulator to the new Addr in the namer's var.
   Target (issue 6): p99 <= 100 ms.
2. Scale: the emulator in a subprocess (so that its memory is not counted) with 1,000
   services; the namer (this process) watches all of them.  Reported: the time until
   all are bound, the RSS growth, and the CPU the namer burns over 5 idle seconds
   (1,000 blocking queries held open).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio

from linkpy.activity import Var
from linkpy.metrics import Metrics
from linkpy.naming import Addr, AddrBound, Bound, Leaf, Ok
from linkpy.naming import Path as NPath
from linkpy.plugin import NamerContext
from linkpy.testing import FakeConsul

from . import report

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "plugins"))  # before linkpy_consul has its entry in setup.cfg

from linkpy_consul import ConsulConfig  # noqa: E402
from linkpy_consul.namer import ConsulNamer  # noqa: E402

CHANGES = 200
SERVICES = 1000
IDLE_SECONDS = 5.0


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _namer(port: int) -> ConsulNamer:
    namer = ConsulConfig(host="127.0.0.1", port=port).mk(NamerContext(metrics=Metrics()))
    assert isinstance(namer, ConsulNamer)
    namer.prefix = NPath.read("/#/io.l5d.consul")
    return namer


def _addr_var(state: object) -> Var[Addr] | None:
    if isinstance(state, Ok) and isinstance(state.value, Leaf):
        b = state.value.value
        if isinstance(b, Bound) and isinstance(b.addr, Var):
            return b.addr
    return None


async def _latency() -> list[float]:
    """Milliseconds from each change in the emulator to the namer's new Addr."""
    out: list[float] = []
    async with trio.open_nursery() as nursery:
        consul = FakeConsul(seed=1)
        await nursery.start(consul.serve)
        consul.register("web", "10.0.0.1", 8080, service_id="web-0")
        namer = _namer(consul.port or 0)
        await nursery.start(namer.run)
        tree = namer.lookup(NPath.read("/dc1/web"))
        tree.observe(lambda _: None)
        while _addr_var(tree.sample()) is None:
            await tree.wait_change(tree.version)
        addr = _addr_var(tree.sample())
        assert addr is not None
        for i in range(CHANGES):
            await trio.sleep(0.02)
            version = addr.version
            start = time.perf_counter()
            if i % 2 == 0:
                consul.register("web", "10.0.0.2", 8080 + i, service_id="web-x")
            else:
                consul.deregister("web-x")
            with trio.fail_after(10):
                await addr.wait_change(version)
            out.append((time.perf_counter() - start) * 1000)
            assert isinstance(addr.sample(), AddrBound)
        nursery.cancel_scope.cancel()
    return out


async def _scale() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        seed = Path(tmp) / "services.yaml"
        seed.write_text(
            "services:\n"
            + "".join(
                f"- {{name: svc{i}, address: 10.1.{i // 250}.{i % 250 + 1}, port: 8080}}\n"
                for i in range(SERVICES)
            )
        )
        cmd = [sys.executable, "-m", "linkpy.testing.fakes", "consul", "--load", str(seed)]
        async with trio.open_nursery() as nursery:
            proc = await trio.lowlevel.open_process(cmd, stdout=-1, cwd=ROOT)
            assert proc.stdout is not None
            line = b""
            with trio.fail_after(30):
                while not line.endswith(b"\n"):
                    line += await proc.stdout.receive_some(1)
            port = int(line.decode().rsplit(":", 1)[1])
            namer = _namer(port)
            await nursery.start(namer.run)
            await trio.sleep(0.5)
            rss0 = _rss_kib()
            start = time.perf_counter()
            trees = [namer.lookup(NPath.read(f"/dc1/svc{i}")) for i in range(SERVICES)]
            for t in trees:
                t.observe(lambda _: None)
            with trio.fail_after(300):
                for t in trees:
                    while _addr_var(t.sample()) is None:
                        await t.wait_change(t.version)
            bound_s = time.perf_counter() - start
            while namer.stats.requests.value < 2 * SERVICES:  # noqa: ASYNC110 - a metric
                await trio.sleep(0.1)
            await trio.sleep(1.0)
            rss1 = _rss_kib()
            cpu0 = time.process_time()
            await trio.sleep(IDLE_SECONDS)
            cpu = (time.process_time() - cpu0) / IDLE_SECONDS * 100
            nursery.cancel_scope.cancel()
            proc.terminate()
            await proc.wait()
    return {
        "bound_s": bound_s,
        "rss_mib": (rss1 - rss0) / 1024,
        "per_watch_kib": (rss1 - rss0) / SERVICES,
        "cpu_pct": cpu,
    }


def run() -> None:
    latencies = trio.run(_latency)
    q = statistics.quantiles(latencies, n=100)
    scale = trio.run(_scale)
    report.save(
        "discovery_consul",
        "Discovery: Consul namer (io.l5d.consul) over FakeConsul",
        [
            {
                "columns": ["change to Addr", "ms", "target"],
                "rows": [
                    ["p50", q[49], ""],
                    ["p99", q[98], "<= 100"],
                    ["max", max(latencies), ""],
                ],
            },
            {
                "columns": [f"watching {SERVICES:,} services", "value"],
                "rows": [
                    ["time until all are bound (s)", scale["bound_s"]],
                    ["RSS growth of the namer's process (MiB)", scale["rss_mib"]],
                    ["RSS per watch (KiB)", scale["per_watch_kib"]],
                    [f"CPU at idle over {IDLE_SECONDS:.0f} s (% of one core)", scale["cpu_pct"]],
                ],
            },
        ],
        notes=[
            f"Latency: {CHANGES} changes (register/deregister an instance, 20 ms apart) to "
            "a watched service, emulator and namer in one process: the figure includes the "
            "emulator's own work (waking the blocked query, building the answer).",
            "Scale: the emulator runs in a subprocess; each watch holds one blocking query "
            "(wait 300 s) on its own connection, so idle CPU is the cost of 1,000 sleeping "
            "tasks and sockets.  Start-up is bound by Python HTTP work on both sides "
            "(about two requests per service).",
        ],
        command="bench/run discovery_consul",
    )
