"""What the access log and the telemeters cost: linkpy with and without them.

Issue 7's bound: with metrics and access logging on, HTTP/1.1 throughput drops by at most
10 %.  Three linkpy processes on the realistic config share the router's core: one as
is ("plain"), one that also writes ``httpAccessLog`` and serves the ``io.l5d.prometheus``
telemeter ("access log": the bound's case), and one that moreover keeps
``io.l5d.recentRequests`` with every request sampled ("all telemetry", more than
Linkerd's advice to sample little).  wrk drives each in turn, interleaved run by run
(each first in turn), so a change in the machine's speed hits all alike, and each
variant is compared with "plain" round by round (the median of the rounds' ratios):
this box's speed drifts by ±20 % over tens of seconds, which would move the medians of
the two sides apart by more than the bound they are checked against.  The metrics
themselves cannot be turned off (every router keeps them); their share of the CPU is
in the profile scenario.
"""

from __future__ import annotations

import statistics
from contextlib import ExitStack

from . import report, tools
from .http1 import measure

RUNS = 10
SECONDS = 3
CONNS = 10
#: the most throughput the telemetry may cost (issue 7)
TARGET_LOSS = 0.10
#: the variants beside "plain": (name, port offset, recentRequests too)
VARIANTS = [("access log", 20, False), ("all telemetry", 21, True)]


def logging_config(offset: int, recent: bool) -> str:
    """The realistic config plus the access log and telemeters, on its own ports."""
    text = tools.config_text("http")
    text = text.replace(
        f"port: {tools.LINKPY_ADMIN}\n", f"port: {tools.LINKPY_ADMIN + offset}\n", 1
    )
    text = text.replace(
        f"    port: {tools.LINKPY_PORT}\n", f"    port: {tools.LINKPY_PORT + offset}\n", 1
    )
    text = text.replace(
        "  client:\n",
        f"  httpAccessLog: {tools.OUT / 'linkpy' / f'access-{offset}.log'}\n  client:\n",
        1,
    )
    text += "telemetry:\n- kind: io.l5d.prometheus\n"
    if recent:
        text += "- kind: io.l5d.recentRequests\n  sampleRate: 1.0\n"
    return text


def run() -> None:
    tools.ensure_tools()
    results: dict[str, list[dict[str, float]]] = {"plain": []}
    with ExitStack() as stack:
        ngx = stack.enter_context(tools.nginx())
        workers = tools.nginx_workers(ngx)
        plain = stack.enter_context(tools.linkpy())
        targets = {"plain": (tools.LINKPY_PORT, [plain.pid, *workers])}
        for name, offset, recent in VARIANTS:
            cfg = tools.OUT / "linkpy" / f"http-telemetry-{offset}.yaml"
            cfg.parent.mkdir(parents=True, exist_ok=True)
            cfg.write_text(logging_config(offset, recent))
            (tools.OUT / "linkpy" / f"access-{offset}.log").unlink(missing_ok=True)
            cmd = tools.pinned(tools.router_cpu(), [tools.PYTHON, "-m", "linkpy", "run", str(cfg)])
            proc = tools.Proc(f"linkpy-{offset}", cmd, tools.OUT / "linkpy" / f"http-{offset}.log")
            stack.callback(proc.stop)
            port = tools.LINKPY_PORT + offset
            tools.wait_port(port, proc=proc.popen)
            if tools.http_get(port) != 200:
                raise RuntimeError(f"linkpy with {name} did not answer; see {proc.log}")
            targets[name] = (port, [proc.pid, *workers])
            results[name] = []
        for port, _ in targets.values():
            tools.wrk(port, CONNS, 2)  # warm up
        for i in range(RUNS):
            order = list(targets.items())
            order = order[i % len(order) :] + order[: i % len(order)]  # each first in turn
            for name, (port, pids) in order:
                print(f"   {name} run {i + 1}", flush=True)
                results[name].append(measure(port, CONNS, SECONDS, pids))
    lines = (tools.OUT / "linkpy" / "access-20.log").read_text().count("\n")
    rps = {k: statistics.median(r["rps"] for r in v) for k, v in results.items()}
    cpu = {k: statistics.median(r["cpu_us"] for r in v) for k, v in results.items()}
    rows = [
        [name, rps[name], cpu[name], statistics.median(r["foreign"] for r in results[name])]
        for name in results
    ]
    # round by round: the variant against "plain" measured next to it
    base = results["plain"]
    losses = {
        name: [1 - r["rps"] / p["rps"] for r, p in zip(results[name], base, strict=True)]
        for name, _, _ in VARIANTS
    }
    added = {
        name: [r["cpu_us"] - p["cpu_us"] for r, p in zip(results[name], base, strict=True)]
        for name, _, _ in VARIANTS
    }
    loss = {name: statistics.median(v) for name, v in losses.items()}
    cpu_added = {name: statistics.median(v) for name, v in added.items()}
    report.save(
        "telemetry",
        "Telemetry cost: access log and telemeters on and off (HTTP/1.1)",
        [
            {
                "columns": ["linkpy", "req/s (median)", "CPU µs/request", "other load (cores)"],
                "rows": rows,
            },
            {
                "columns": [
                    "against plain",
                    "throughput lost",
                    "min–max over the rounds",
                    "CPU µs added per request",
                ],
                "rows": [
                    [
                        name,
                        f"{loss[name] * 100:.1f} %",
                        f"{min(losses[name]) * 100:.1f} – {max(losses[name]) * 100:.1f} %",
                        cpu_added[name],
                    ]
                    for name, _, _ in VARIANTS
                ],
            },
        ],
        notes=[
            f"wrk -t1 -c{CONNS} -d{SECONDS}s, {RUNS} rounds, each of them running every "
            "variant once (each goes first in turn). First table: the median of each "
            "variant's runs. Second table: each variant against plain in the same round, "
            "the median over the rounds (and their spread).",
            "'access log' adds httpAccessLog (common log format, formatted and written by a "
            "background task in batches) and io.l5d.prometheus: issue 7's case (metrics and "
            f"access logging); its access log got {lines:,} lines. 'all telemetry' adds "
            "io.l5d.recentRequests with sampleRate 1.0 (every request) to those.",
            "All keep the router's metrics, which are always on.",
        ],
        targets=[
            report.target(
                "throughput lost to the access log (with metrics and io.l5d.prometheus)",
                loss["access log"] * 100,
                "<=",
                TARGET_LOSS * 100,
                unit="%",
                why=f"{cpu_added['access log']:.0f} µs of CPU added per request; "
                f"with recentRequests sampling every request too: "
                f"{loss['all telemetry'] * 100:.1f} %",
            )
        ],
    )
