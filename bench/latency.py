"""Added latency at fixed rates: linkpy (and the pass-through proxy) minus direct.

performance.md 6.2 (2): h2load ``--h1 -c 50 --rps R/50 -n 10R -r 1 --rate-period=1ms
--log-file=...`` for R = 500, 1,000, 2,000 and 50 % of linkpy's maximum (measured
first, in this run, with wrk -c50).  Open loop at a low rate per connection, client
starts staggered by 1 ms; p50/p99/p99.9/max computed from the per-request log.  The
added latency of a proxy is its percentile minus the direct percentile at the same rate.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from typing import Any

from . import report, tools

RATES = (500, 1000, 2000)
SECONDS = 10
CLIENTS = 50
QUANTILES = (0.5, 0.99, 0.999)
TARGET_P99_MS = 1.0
TARGET_P999_MS = 4.0


def _stats(durations_us: list[int]) -> list[float]:
    v = sorted(durations_us)
    return [tools.percentile(v, q) / 1000.0 for q in QUANTILES] + [
        v[-1] / 1000.0 if v else float("nan")
    ]


def _gc_experiment() -> list[list[Any]]:
    """linkpy at 1,000 req/s as is and with gc.freeze() after start-up, GC pauses timed."""
    rows: list[list[Any]] = []
    with tools.nginx() as ngx:
        workers = tools.nginx_workers(ngx)
        variants: list[tuple[str, list[str]]] = [
            ("linkpy, as is", []),
            ("linkpy, gc.freeze() after start", ["--freeze"]),
        ]
        for name, extra in variants:
            out = tools.OUT / "gc" / f"{'freeze' if extra else 'plain'}.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.unlink(missing_ok=True)
            launcher = ["-m", "bench.gcprobe", "--out", str(out), *extra, "--"]
            with tools.linkpy(launcher=launcher) as lp:
                tools.wrk(tools.LINKPY_PORT, 50, 2)
                print(f"   GC experiment: {name}", flush=True)
                tools.wait_quiet()
                with tools.Meter([lp.pid, *workers]) as m:
                    r = tools.h2load(
                        tools.LINKPY_PORT,
                        tools.fixed_rate_args(1000, SECONDS, CLIENTS),
                        h1=True,
                        log=tools.OUT / "h2load" / f"gc-{'freeze' if extra else 'plain'}.log",
                    )
            gc = json.loads(out.read_text())
            rows.append(
                [
                    name,
                    *_stats(r.durations_us),
                    f"{gc['0']['count']} / {gc['1']['count']} / {gc['2']['count']}",
                    gc["2"]["max_ms"],
                    gc["0"]["total_ms"] + gc["1"]["total_ms"] + gc["2"]["total_ms"],
                    f"{m.foreign:.2f}",
                ]
            )
    return rows


def run() -> None:
    tools.ensure_tools()
    measured: dict[tuple[str, int], dict[str, Any]] = {}
    with ExitStack() as stack:
        ngx = stack.enter_context(tools.nginx())
        pt = stack.enter_context(tools.passthrough())
        lp = stack.enter_context(tools.linkpy())
        workers = tools.nginx_workers(ngx)
        tools.wrk(tools.PASSTHROUGH_PORT, 50, 2)
        tools.wrk(tools.LINKPY_PORT, 50, 2)
        tools.wait_quiet()
        max_rps = tools.wrk(tools.LINKPY_PORT, 50, 5).rps
        half = max(CLIENTS, round(max_rps / 2 / CLIENTS) * CLIENTS)
        rates = sorted({*RATES, half})
        targets = {
            "direct": (tools.NGINX_HTTP[0], workers),
            "pass-through": (tools.PASSTHROUGH_PORT, [pt.pid, *workers]),
            "linkpy": (tools.LINKPY_PORT, [lp.pid, *workers]),
        }
        for rate in rates:
            for name, (port, pids) in targets.items():
                print(f"   {name} at {rate} req/s", flush=True)
                log = tools.OUT / "h2load" / f"latency-{name}-{rate}.log"
                tools.wait_quiet()
                with tools.Meter(pids) as m:
                    r = tools.h2load(
                        port, tools.fixed_rate_args(rate, SECONDS, CLIENTS), h1=True, log=log
                    )
                measured[(name, rate)] = {
                    "stats": _stats(r.durations_us),
                    "rps": r.rps,
                    "ok": r.ok,
                    "total": r.total,
                    "cpu_us": m.cpu[pids[0]] / max(1, r.ok) * 1e6,
                    "util": m.cpu[pids[0]] / m.elapsed,
                    "foreign": m.foreign,
                }
    rows: list[list[Any]] = []
    added: list[list[Any]] = []
    at_1k: dict[str, float] = {}
    for rate in rates:
        label = f"{rate:,}" + (" (50 % of max)" if rate == half else "")
        d = measured[("direct", rate)]["stats"]
        for name in ("direct", "pass-through", "linkpy"):
            x = measured[(name, rate)]
            rows.append(
                [
                    label,
                    name,
                    x["rps"],
                    f"{x['ok']:,}/{x['total']:,}",
                    *x["stats"],
                    x["cpu_us"],
                    f"{x['util'] * 100:.0f} %",
                    f"{x['foreign']:.2f}",
                ]
            )
        for name in ("pass-through", "linkpy"):
            s = measured[(name, rate)]["stats"]
            diff = [a - b for a, b in zip(s, d, strict=True)]
            added.append([label, name, *diff])
            if name == "linkpy" and rate == 1000:
                at_1k = {"p50": diff[0], "p99": diff[1], "p999": diff[2]}
    print("   GC experiment", flush=True)
    gc_rows = _gc_experiment()
    lp1k = measured[("linkpy", 1000)]
    d1k = measured[("direct", 1000)]["stats"]
    p1k = measured[("pass-through", 1000)]["stats"]
    why = (
        f"at 1,000 req/s linkpy's core was {lp1k['util'] * 100:.0f} % busy "
        f"({lp1k['cpu_us']:.0f} µs of CPU per request); direct itself had p99 "
        f"{d1k[1]:.2f} ms and p99.9 {d1k[2]:.2f} ms, the pass-through proxy p99 "
        f"{p1k[1]:.2f} ms and p99.9 {p1k[2]:.2f} ms; other load {lp1k['foreign']:.2f} cores"
    )
    report.save(
        "latency",
        "Added latency at fixed rates (HTTP/1.1)",
        [
            {
                "caption": f"h2load --h1, {CLIENTS} connections at rate/{CLIENTS} requests/s "
                f"each, starts 1 ms apart, {SECONDS} s per rate; percentiles from the "
                "per-request log (ms). 50 % of max: half of linkpy's wrk -c50 maximum "
                f"measured in this run ({max_rps:,.0f} req/s).",
                "columns": [
                    "rate (req/s)",
                    "through",
                    "achieved req/s",
                    "2xx/sent",
                    "p50 ms",
                    "p99 ms",
                    "p99.9 ms",
                    "max ms",
                    "CPU µs/request",
                    "busy",
                    "other load",
                ],
                "rows": rows,
            },
            {
                "caption": "Added latency: the proxy's percentile minus direct's at the same "
                "rate (ms).",
                "columns": [
                    "rate (req/s)",
                    "through",
                    "+p50 ms",
                    "+p99 ms",
                    "+p99.9 ms",
                    "+max ms",
                ],
                "rows": added,
            },
            {
                "caption": "Experiment: linkpy's garbage-collector pauses at 1,000 req/s "
                f"({SECONDS} s, same load as above), as is and with `gc.freeze()` called 2 s "
                "after start (the objects alive then leave the collector's generations). "
                "`bench/gcprobe.py` runs the same `linkpy run` with a `gc.callbacks` timer; "
                "collections are counted from 2 s after start. Percentiles in ms.",
                "columns": [
                    "router",
                    "p50 ms",
                    "p99 ms",
                    "p99.9 ms",
                    "max ms",
                    "collections gen0 / gen1 / gen2",
                    "longest gen2 ms",
                    "GC total ms",
                    "other load",
                ],
                "rows": gc_rows,
            },
        ],
        notes=[
            "Open loop: h2load sends each connection's requests on a schedule, so a slow "
            "answer does not hide the requests queued behind it as a closed-loop tool "
            "would (performance.md section 5). With 20 requests/s per connection at "
            "1,000 req/s a connection is idle far longer than a request lasts.",
        ],
        commands=[
            tools.show(
                tools.h2load_cmd(
                    port,
                    tools.fixed_rate_args(1000, SECONDS, CLIENTS),
                    True,
                    tools.OUT / "h2load" / "latency.log",
                )
            )
            for port in (tools.NGINX_HTTP[0], tools.PASSTHROUGH_PORT, tools.LINKPY_PORT)
        ],
        targets=[
            report.target(
                "added p99 at 1,000 req/s",
                at_1k.get("p99", float("nan")),
                "<=",
                TARGET_P99_MS,
                unit="ms",
                why=why,
            ),
            report.target(
                "added p99.9 at 1,000 req/s",
                at_1k.get("p999", float("nan")),
                "<=",
                TARGET_P999_MS,
                unit="ms",
                why=why,
            ),
        ],
    )
