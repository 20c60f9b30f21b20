"""HTTP/1.1 keep-alive small GETs at the maximum rate: direct, pass-through, linkpy.

performance.md 6.2 (1): wrk, one thread, 10 and 50 connections, 10 s, three runs each;
the median requests/s and the proxy's CPU per request (utime + stime from /proc).
The three targets are measured in the same run, interleaved run by run, so that a
change in the machine's speed hits all three alike.  The ratio target is the median of
the rounds' own linkpy / pass-through ratios (each round runs the two back to back):
this box's speed drifts by tens of percent over a minute, and a ratio of two medians
taken minutes apart carries that drift.
"""

from __future__ import annotations

import re
from contextlib import ExitStack
from typing import Any

from . import report, tools

RUNS = 3
SECONDS = 10
CONNS = (10, 50)
TARGET_RPS = 15000
TARGET_RATIO = 0.5


def measure(
    port: int, conns: int, seconds: float, pids: list[int], headers: tuple[str, ...] = ()
) -> dict[str, float]:
    """One wrk run: rps, CPU-µs per request of ``pids[0]``, other load on the box.

    ``pids`` are every process of the benchmark (the proxy first, then nginx's worker),
    so that "other load" counts only what does not belong to it.
    """
    tools.wait_quiet()
    with tools.Meter(pids) as m:
        r = tools.wrk(port, conns, seconds, headers)
    if r.errors or r.non2xx:
        raise RuntimeError(f"wrk on :{port}: {r.errors} socket errors, {r.non2xx} non-2xx")
    cpu = m.cpu[pids[0]]
    return {
        "rps": r.rps,
        "cpu_us": cpu / r.requests * 1e6 if r.requests else float("nan"),
        "util": cpu / m.elapsed,
        "foreign": m.foreign,
    }


def run() -> None:
    tools.ensure_tools()
    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    with ExitStack() as stack:
        ngx = stack.enter_context(tools.nginx())
        pt = stack.enter_context(tools.passthrough())
        lp = stack.enter_context(tools.linkpy())
        workers = tools.nginx_workers(ngx)
        targets = {
            "direct": (tools.NGINX_HTTP[0], workers),
            "pass-through": (tools.PASSTHROUGH_PORT, [pt.pid, *workers]),
            "linkpy": (tools.LINKPY_PORT, [lp.pid, *workers]),
        }
        for port, _ in targets.values():  # warm up
            tools.wrk(port, 50, 2)
        before = tools.admin_metrics()
        for conns in CONNS:
            for i in range(RUNS):
                for name, (port, pids) in targets.items():
                    print(f"   {name} -c{conns} run {i + 1}", flush=True)
                    results.setdefault((name, conns), []).append(
                        measure(port, conns, SECONDS, pids)
                    )
        after = tools.admin_metrics()
    served = tools.metric_sum(after, r"rt/bench/server/.*/requests") - tools.metric_sum(
        before, r"rt/bench/server/.*/requests"
    )
    ok = tools.metric_sum(after, r"rt/bench/server/.*/success") - tools.metric_sum(
        before, r"rt/bench/server/.*/success"
    )
    kinds = {
        k.rsplit("/", 1)[1]: after[k] - before.get(k, 0)
        for k in after
        if re.fullmatch(r"rt/bench/server/.*/failures/[^/]+", k) and after[k] - before.get(k, 0) > 0
    }
    failed = ", ".join(f"{n:,.0f} `{kind}`" for kind, n in sorted(kinds.items())) or "none"
    closed = RUNS * sum(CONNS)

    def med(name: str, conns: int, key: str) -> float:
        return tools.median([r[key] for r in results[(name, conns)]])

    def spread(name: str, conns: int) -> str:
        v = sorted(r["rps"] for r in results[(name, conns)])
        return f"{v[0]:,.0f}–{v[-1]:,.0f}"

    rows: list[list[Any]] = []
    for conns in CONNS:
        for name in ("direct", "pass-through", "linkpy"):
            rows.append(
                [
                    name,
                    conns,
                    med(name, conns, "rps"),
                    spread(name, conns),
                    med(name, conns, "cpu_us"),
                    f"{med(name, conns, 'util') * 100:.0f} %",
                    f"{max(r['foreign'] for r in results[(name, conns)]):.2f}",
                ]
            )

    def rounds(conns: int) -> list[float]:
        """linkpy / pass-through requests/s, round by round."""
        pairs = zip(results[("linkpy", conns)], results[("pass-through", conns)], strict=True)
        return sorted(lp["rps"] / pt["rps"] for lp, pt in pairs)

    ratio_rows: list[list[Any]] = []
    best = 0.0
    best_ratio = 0.0
    best_conns = CONNS[0]
    for conns in CONNS:
        lp_rps = med("linkpy", conns, "rps")
        pt_rps = med("pass-through", conns, "rps")
        d_rps = med("direct", conns, "rps")
        lp_cpu = med("linkpy", conns, "cpu_us")
        pt_cpu = med("pass-through", conns, "cpu_us")
        paired = rounds(conns)
        ratio_rows.append(
            [
                conns,
                tools.median(paired),
                f"{paired[0]:.3f}–{paired[-1]:.3f}",
                lp_rps / pt_rps,
                lp_rps / d_rps,
                pt_cpu / lp_cpu,
            ]
        )
        if lp_rps > best:
            best, best_ratio, best_conns = lp_rps, tools.median(paired), conns
    lp_cpu = med("linkpy", best_conns, "cpu_us")
    pt_cpu = med("pass-through", best_conns, "cpu_us")
    lp_busy = med("linkpy", best_conns, "util")
    m = report.machine()
    why_rps = (
        f"{lp_cpu:.0f} µs of CPU per request: a whole core would give at most "
        f"{1e6 / lp_cpu:,.0f} req/s (linkpy's core was {lp_busy * 100:.0f} % busy); the "
        f"pass-through proxy alone needs {pt_cpu:.0f} µs ({1e6 / pt_cpu:,.0f} req/s), and "
        f"one trio checkpoint costs {m['checkpoint_us']} µs here against "
        f"{report.REFERENCE_CHECKPOINT_US} µs where the target was set"
    )
    why_ratio = (
        f"CPU per request: linkpy {lp_cpu:.0f} µs, pass-through {pt_cpu:.0f} µs "
        f"(ratio {pt_cpu / lp_cpu:.2f})"
    )
    report.save(
        "http1",
        "HTTP/1.1 throughput: keep-alive small GETs at the maximum rate",
        [
            {
                "caption": f"wrk -t1, {SECONDS} s per run, median of {RUNS} runs (min–max "
                "beside it). CPU µs/request: the proxy's utime + stime over the requests "
                "served (for direct: the nginx worker's). Busy: the proxy's share of its "
                "core. Other load: CPU (in cores) used by processes outside the benchmark "
                "during the worst run, on this shared machine.",
                "columns": [
                    "through",
                    "connections",
                    "requests/s",
                    "min–max",
                    "CPU µs/request",
                    "busy",
                    "other load",
                ],
                "rows": rows,
            },
            {
                "caption": "Ratios. Per round: linkpy's requests/s over the pass-through's "
                "in the same round (the two ran back to back), the median of the rounds and "
                "their range; this is the ratio the target checks. The other columns are "
                "ratios of the medians above; the last compares CPU per request, which is "
                "less sensitive to the other load than requests/s.",
                "columns": [
                    "connections",
                    "linkpy / pass-through, per round (median)",
                    "per round (min–max)",
                    "linkpy / pass-through (medians)",
                    "linkpy / direct (medians)",
                    "pass-through / linkpy (CPU µs per request)",
                ],
                "rows": ratio_rows,
            },
        ],
        notes=[
            f"Pinning: {tools.pinning()}. The pass-through proxy is `bench/passthrough.py` "
            "(trio + httptools, one upstream connection per downstream connection, bytes "
            "passed through unchanged). linkpy runs the realistic config below "
            "(`bench/out/linkpy/http.yaml`, written by `bench/tools.py`; "
            "`bench/out/linkpy/disco/web` lists the three nginx HTTP/1.1 ports).",
            "```yaml\n" + tools.config_text("http").rstrip() + "\n```",
            f"linkpy's own metrics counted {served:,.0f} requests during the measured runs, "
            f"{ok:,.0f} of them successful; failures by kind: {failed}. wrk got a 2xx for "
            "every response it read: the failures are the connections wrk closed when each "
            f"run ended ({closed:,} in all), with a request in flight or idle, which linkpy "
            "counts as failed requests (a reset of an idle keep-alive connection as a "
            "`bad_request`, status 400).",
        ],
        commands=[
            tools.show(tools.wrk_cmd(port, c, SECONDS))
            for c in CONNS
            for port in (tools.NGINX_HTTP[0], tools.PASSTHROUGH_PORT, tools.LINKPY_PORT)
        ],
        targets=[
            report.target(
                "HTTP/1.1 requests/s through linkpy (best median of -c10/-c50)",
                best,
                ">=",
                TARGET_RPS,
                unit="req/s",
                why=why_rps,
            ),
            report.target(
                "HTTP/1.1 linkpy / pass-through (same connections as the best; median of "
                "the rounds' ratios)",
                best_ratio,
                ">=",
                TARGET_RATIO,
                unit="×",
                why=why_ratio,
            ),
        ],
    )
