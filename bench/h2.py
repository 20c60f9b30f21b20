"""HTTP/2: small unary requests over h2c, linkpy vs direct to nginx.

performance.md 6.2 (1) for h2c: h2load -c10 -m10 -D10 (10 connections, 10 streams
each), three runs, median; and one fixed-rate run at 1,000 requests/s (-m1).

Before measuring, the scenario checks that linkpy routes h2c: the realistic config
with ``protocol: h2`` must pass ``linkpy check``, the router must start, and 20
prior-knowledge h2c requests through it must all get a 2xx.  If not, the linkpy rows
say "not available" and why; the direct baseline is still measured.
"""

from __future__ import annotations

import subprocess
from contextlib import ExitStack
from typing import Any

from . import report, tools

RUNS = 3
SECONDS = 10
TARGET_RPS = 4000
CLOSED = ["-c10", "-m10", f"-D{SECONDS}"]


def _closed_loop(port: int, pids: list[int]) -> list[dict[str, float]]:
    out = []
    for _ in range(RUNS):
        tools.wait_quiet()
        with tools.Meter(pids) as m:
            r = tools.h2load(port, CLOSED, h1=False)
        out.append(
            {
                "rps": r.rps,
                "ok": r.ok,
                "total": r.total,
                "cpu_us": m.cpu[pids[0]] / max(1, r.ok) * 1e6,
                "foreign": m.foreign,
            }
        )
    return out


def _availability() -> str | None:
    """None if linkpy routes h2c, else why not."""
    cfg = tools.write_config("h2")
    check = subprocess.run(
        [tools.PYTHON, "-m", "linkpy", "check", str(cfg)],
        capture_output=True,
        text=True,
        cwd=tools.ROOT,
    )
    if check.returncode != 0:
        first = (check.stderr or check.stdout).strip().splitlines()
        return "`linkpy check` rejects a config with `protocol: h2`" + (
            f" ({first[-1].strip()})" if first else ""
        )
    try:
        with tools.linkpy("h2", check_http=False):
            r = tools.h2load(tools.LINKPY_H2_PORT, ["-n20", "-c1"], h1=False, timeout=30)
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        return f"the router did not start with `protocol: h2` ({e})"
    if r.ok < 20:
        return (
            "`linkpy check` accepts `protocol: h2` and the router starts, but it does not "
            f"answer h2c prior-knowledge requests yet ({r.ok} of 20 got a 2xx; the "
            "router serves HTTP/1.1 only)"
        )
    return None


def run() -> None:
    tools.ensure_tools()
    results: dict[str, list[dict[str, float]]] = {}
    fixed: dict[str, list[float]] = {}
    with ExitStack() as stack:
        ngx = stack.enter_context(tools.nginx())
        workers = tools.nginx_workers(ngx)
        missing = _availability()  # with nginx up: the h2c requests need their upstream
        ports = {"direct": (tools.NGINX_H2C[0], workers)}
        if missing is None:
            lp = stack.enter_context(tools.linkpy("h2", check_http=False))
            ports["linkpy"] = (tools.LINKPY_H2_PORT, [lp.pid, *workers])
            tools.h2load(tools.LINKPY_H2_PORT, ["-c10", "-m10", "-D2"], h1=False)
        for name, (port, pids) in ports.items():
            print(f"   {name} h2c", flush=True)
            results[name] = _closed_loop(port, pids)
            log = tools.OUT / "h2load" / f"h2-{name}-1000.log"
            r = tools.h2load(port, tools.fixed_rate_args(1000, SECONDS, 50), h1=False, log=log)
            v = sorted(r.durations_us)
            fixed[name] = [tools.percentile(v, q) / 1000 for q in (0.5, 0.99, 0.999)]
    rows: list[list[Any]] = []
    for name in ("direct", "linkpy"):
        if name not in results:
            rows.append([name, "not available", "–", "–", "–", "–", "–", "–"])
            continue
        runs = results[name]
        rps = sorted(x["rps"] for x in runs)
        rows.append(
            [
                name,
                tools.median(rps),
                f"{rps[0]:,.0f}–{rps[-1]:,.0f}",
                tools.median([x["cpu_us"] for x in runs]),
                f"{max(x['foreign'] for x in runs):.2f}",
                *fixed[name],
            ]
        )
    notes = [
        "The h2c backend is nginx (`listen ... http2`, prior knowledge), the same worker "
        "as the HTTP/1.1 scenarios; requests carry `:authority: web`."
    ]
    if missing is not None:
        notes.append(f"**linkpy: not available.** {missing}.")
        lp_rps = float("nan")
        why = "no HTTP/2 router yet"
    else:
        lp_rps = tools.median([x["rps"] for x in results["linkpy"]])
        why = ""
    report.save(
        "h2",
        "HTTP/2 (h2c): small unary requests",
        [
            {
                "caption": f"h2load, 10 connections × 10 streams, {SECONDS} s, median of "
                f"{RUNS} runs; then 1,000 req/s fixed rate (50 connections, 1 stream each) "
                "with percentiles from the log (ms).",
                "columns": [
                    "through",
                    "requests/s",
                    "min–max",
                    "CPU µs/request",
                    "other load",
                    "p50 ms @1k",
                    "p99 ms @1k",
                    "p99.9 ms @1k",
                ],
                "rows": rows,
            }
        ],
        notes=notes,
        commands=[
            tools.show(tools.h2load_cmd(port, CLOSED, False))
            for port in (tools.NGINX_H2C[0], tools.LINKPY_H2_PORT)
        ],
        targets=[
            report.target(
                "HTTP/2 requests/s through linkpy", lp_rps, ">=", TARGET_RPS, unit="req/s", why=why
            )
        ],
    )
