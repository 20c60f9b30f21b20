"""Memory: RSS idle, at 1,000 requests/s, and per 1,000 idle client connections.

performance.md 6.2 (3): RSS (VmRSS) after start-up; during 60 s at 1,000 requests/s
(h2load --h1, 50 connections, fixed rate); with 1,000 and 2,000 idle keep-alive
downstream connections (each has carried one request), the slope in MB per 1,000.  The
upstream connections the router holds are read from its metrics, to check that the pool
does not grow one connection per downstream connection.  Baselines from the same run: a
bare Python + trio process, and the pass-through proxy (which holds one upstream
connection per downstream connection by design).
"""

from __future__ import annotations

import itertools
import json
import socket
import subprocess
import time
from contextlib import ExitStack
from typing import Any

from . import report, tools

LOAD_SECONDS = 60
STEPS = (1000, 2000)
TARGET_RSS_1K = 40.0
TARGET_PER_1K = 6.0

BARE = "import trio; trio.run(trio.sleep_forever)"
REQUEST = f"GET / HTTP/1.1\r\nHost: {tools.HOST}\r\n\r\n".encode()


def _one_request(s: socket.socket) -> None:
    s.sendall(REQUEST)
    data = b""
    while b"Hello, world!" not in data:
        chunk = s.recv(4096)
        if not chunk:
            raise RuntimeError("connection closed before the response")
        data += chunk


def _open(port: int, n: int, into: list[socket.socket]) -> None:
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        _one_request(s)
        into.append(s)


def _settled_rss(pid: int, seconds: float = 2.0) -> float:
    time.sleep(seconds)
    return tools.rss_mb(pid)


def _under_load(proc: tools.Proc, port: int, pids: list[int]) -> dict[str, float]:
    """RSS during 60 s at 1,000 req/s: the last and the peak sample, and CPU µs/request."""
    args = tools.fixed_rate_args(1000, LOAD_SECONDS, 50)
    log = tools.OUT / "h2load" / f"memory-{proc.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    samples: list[float] = []
    with tools.Meter(pids) as m:
        cmd = tools.h2load_cmd(port, args, True, log)
        loader = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        while loader.poll() is None:
            samples.append(proc.rss())
            time.sleep(1.0)
        out = loader.stdout.read().decode() if loader.stdout else ""
    r = tools.H2loadResult(out, None)
    return {
        "end": samples[-1] if samples else float("nan"),
        "peak": max(samples) if samples else float("nan"),
        "rps": r.rps,
        "ok": float(r.ok),
        "cpu_us": m.cpu[proc.pid] / max(1, r.ok) * 1e6,
        "foreign": m.foreign,
    }


def _upstreams(proc: tools.Proc) -> float:
    if proc.name != "linkpy":
        return float("nan")
    return tools.metric_sum(tools.admin_metrics(), r"rt/bench/client/.*/connections")


def _idle(proc: tools.Proc, port: int) -> list[tuple[int, float, float]]:
    """(connections, RSS, upstream connections) at 0 and each step."""
    socks: list[socket.socket] = []
    out = [(0, _settled_rss(proc.pid), _upstreams(proc))]
    try:
        for n in STEPS:
            _open(port, n - len(socks), socks)
            out.append((n, _settled_rss(proc.pid), _upstreams(proc)))
    finally:
        for s in socks:
            s.close()
    return out


def _probe() -> dict[str, Any]:
    """bench/memprobe.py in its own process (nginx must be up)."""
    cmd = tools.pinned(
        tools.router_cpu(),
        [tools.PYTHON, "-m", "bench.memprobe", str(tools.write_config("http")), str(STEPS[0])],
    )
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=tools.ROOT, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"bench.memprobe failed:\n{r.stderr}")
    data: dict[str, Any] = json.loads(r.stdout)
    return data


def run() -> None:
    tools.ensure_tools()
    bare = tools.Proc(
        "python+trio",
        tools.pinned(tools.router_cpu(), [tools.PYTHON, "-c", BARE]),
        tools.OUT / "bare.log",
    )
    try:
        bare_rss = _settled_rss(bare.pid, 2.0)
    finally:
        bare.stop()
    data: dict[str, dict[str, Any]] = {}
    for name in ("pass-through", "linkpy"):
        with ExitStack() as stack:
            ngx = stack.enter_context(tools.nginx())
            workers = tools.nginx_workers(ngx)
            if name == "linkpy":
                proc = stack.enter_context(tools.linkpy())
                port = tools.LINKPY_PORT
            else:
                proc = stack.enter_context(tools.passthrough())
                port = tools.PASSTHROUGH_PORT
            print(f"   {name}: idle and {LOAD_SECONDS} s at 1,000 req/s", flush=True)
            idle_rss = _settled_rss(proc.pid)
            tools.wait_quiet()
            load = _under_load(proc, port, [proc.pid, *workers])
            print(f"   {name}: idle connections", flush=True)
            steps = _idle(proc, port)
            data[name] = {"idle": idle_rss, "load": load, "steps": steps}
            if name == "linkpy":
                proc.stop()
                print("   where an idle connection's memory goes (tracemalloc)", flush=True)
                probe = _probe()
    rows: list[list[Any]] = [["python + trio, doing nothing", bare_rss, "–", "–", "–", "–", "–"]]
    conn_rows: list[list[Any]] = []
    slope: dict[str, float] = {}
    for name, d in data.items():
        load = d["load"]
        rows.append(
            [
                name,
                d["idle"],
                load["end"],
                load["peak"],
                f"{load['ok']:,.0f} at {load['rps']:,.0f} req/s",
                load["cpu_us"],
                f"{load['foreign']:.2f}",
            ]
        )
        steps = d["steps"]
        for (n0, r0, _), (n1, r1, up1) in itertools.pairwise(steps):
            conn_rows.append([name, f"{n0:,} → {n1:,}", r1, (r1 - r0) / (n1 - n0) * 1000, up1])
        (n_a, r_a, _), (n_b, r_b, _) = steps[-2], steps[-1]
        slope[name] = (r_b - r_a) / (n_b - n_a) * 1000
    lp = data["linkpy"]
    report.save(
        "memory",
        "Memory (RSS)",
        [
            {
                "caption": f"VmRSS in MB. Under load: {LOAD_SECONDS} s at 1,000 req/s "
                "(h2load --h1, 50 connections, fixed rate), sampled every second.",
                "columns": [
                    "process",
                    "idle after start-up",
                    "after 60 s at 1k req/s",
                    "peak at 1k req/s",
                    "2xx responses",
                    "CPU µs/request",
                    "other load",
                ],
                "rows": rows,
            },
            {
                "caption": "Idle keep-alive downstream connections (each carried one request, "
                "then stays open); RSS 2 s after the last was opened. Upstream: the "
                "connections linkpy holds to the endpoints then (its `connections` gauge); "
                "the pass-through proxy holds one per downstream connection by design.",
                "columns": [
                    "process",
                    "connections",
                    "RSS MB",
                    "MB per 1,000 connections",
                    "upstream connections",
                ],
                "rows": conn_rows,
            },
            {
                "caption": "Where an idle connection's memory goes: `bench/memprobe.py` runs "
                "the same router in its own process with tracemalloc, opens "
                f"{probe['connections']:,} idle connections and lists the allocation "
                "sites that grew, per connection: "
                f"{probe['bytes_per_connection']:,.0f} bytes traced per connection in all.",
                "columns": ["allocated at", "code", "bytes per connection", "objects"],
                "rows": [
                    [f"`{x['site']}`", f"`{x['code']}`", x["bytes"], x["objects"]]
                    for x in probe["sites"]
                ],
            },
        ],
        notes=[
            "RSS counts user-space memory only; the kernel's socket buffers are not in it.",
        ],
        commands=[
            tools.show(
                tools.h2load_cmd(
                    tools.LINKPY_PORT,
                    tools.fixed_rate_args(1000, LOAD_SECONDS, 50),
                    True,
                    tools.OUT / "h2load" / "memory-linkpy.log",
                )
            ),
            f"python -c {BARE!r}  # the bare baseline, on the router's core",
        ],
        targets=[
            report.target(
                "RSS at 1,000 req/s (peak over 60 s)",
                lp["load"]["peak"],
                "<=",
                TARGET_RSS_1K,
                unit="MB",
                why=f"idle linkpy {lp['idle']:.1f} MB; a bare python + trio {bare_rss:.1f} MB",
            ),
            report.target(
                f"RSS per 1,000 idle connections ({STEPS[-2]:,} → {STEPS[-1]:,})",
                slope["linkpy"],
                "<=",
                TARGET_PER_1K,
                unit="MB",
                why=f"pass-through (a connection pair each): {slope['pass-through']:.1f} MB; "
                f"linkpy's upstream connections stayed at {lp['steps'][-1][2]:.0f}; "
                f"tracemalloc: {probe['bytes_per_connection']:,.0f} B per connection, the "
                "largest at "
                + ", ".join(f"{x['site']} ({x['bytes']:.0f} B)" for x in probe["sites"][:3]),
            ),
        ],
    )
