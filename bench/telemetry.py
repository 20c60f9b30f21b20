"""What the access log and the telemeters cost: linkpy with and without them.

Issue 7's bound: with metrics and access logging on, HTTP/1.1 throughput drops by at most
10 %.  Two linkpy processes on the realistic config run on the router's core: one as
is, one that also writes ``httpAccessLog`` and keeps ``io.l5d.recentRequests`` (every
request sampled) and the ``io.l5d.prometheus`` telemeter.  wrk drives each in turn,
interleaved run by run, so a change in the machine's speed hits both alike.  The metrics
themselves cannot be turned off (every router keeps them); their share of the CPU is
in the profile scenario.
"""

from __future__ import annotations

import statistics
from contextlib import ExitStack

from . import report, tools
from .http1 import measure

RUNS = 5
SECONDS = 6
CONNS = 10
#: the most throughput the telemetry may cost (issue 7)
TARGET_LOSS = 0.10
PORT = tools.LINKPY_PORT + 20
ADMIN = tools.LINKPY_ADMIN + 20


def logging_config() -> str:
    """The realistic config plus the access log and the telemeters, on its own ports."""
    text = tools.config_text("http")
    text = text.replace(f"port: {tools.LINKPY_ADMIN}\n", f"port: {ADMIN}\n", 1)
    text = text.replace(f"    port: {tools.LINKPY_PORT}\n", f"    port: {PORT}\n", 1)
    text = text.replace(
        "  client:\n",
        f"  httpAccessLog: {tools.OUT / 'linkpy' / 'access.log'}\n  client:\n",
        1,
    )
    text += (
        "telemetry:\n- kind: io.l5d.prometheus\n- kind: io.l5d.recentRequests\n  sampleRate: 1.0\n"
    )
    return text


def run() -> None:
    tools.ensure_tools()
    cfg = tools.OUT / "linkpy" / "http-logging.yaml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(logging_config())
    (tools.OUT / "linkpy" / "access.log").unlink(missing_ok=True)
    results: dict[str, list[dict[str, float]]] = {"plain": [], "logging": []}
    with ExitStack() as stack:
        ngx = stack.enter_context(tools.nginx())
        workers = tools.nginx_workers(ngx)
        plain = stack.enter_context(tools.linkpy())
        cmd = tools.pinned(tools.router_cpu(), [tools.PYTHON, "-m", "linkpy", "run", str(cfg)])
        logging = tools.Proc("linkpy-logging", cmd, tools.OUT / "linkpy" / "http-logging.log")
        stack.callback(logging.stop)
        tools.wait_port(PORT, proc=logging.popen)
        if tools.http_get(PORT) != 200:
            raise RuntimeError(f"linkpy with logging did not answer; see {logging.log}")
        targets = {
            "plain": (tools.LINKPY_PORT, [plain.pid, *workers]),
            "logging": (PORT, [logging.pid, *workers]),
        }
        for port, _ in targets.values():
            tools.wrk(port, CONNS, 2)  # warm up
        for i in range(RUNS):
            order = list(targets.items())
            if i % 2:
                order.reverse()  # neither goes first every time
            for name, (port, pids) in order:
                print(f"   {name} run {i + 1}", flush=True)
                results[name].append(measure(port, CONNS, SECONDS, pids))
    lines = (tools.OUT / "linkpy" / "access.log").read_text().count("\n")
    rps = {k: statistics.median(r["rps"] for r in v) for k, v in results.items()}
    cpu = {k: statistics.median(r["cpu_us"] for r in v) for k, v in results.items()}
    loss = 1 - rps["logging"] / rps["plain"]
    rows = [
        [name, rps[name], cpu[name], statistics.median(r["foreign"] for r in results[name])]
        for name in results
    ]
    report.save(
        "telemetry",
        "Telemetry cost: access log and telemeters on and off (HTTP/1.1)",
        [
            {
                "columns": ["linkpy", "req/s (median)", "CPU µs/request", "other load (cores)"],
                "rows": rows,
            },
            {
                "columns": ["throughput lost to telemetry", "CPU µs added per request"],
                "rows": [[f"{loss * 100:.1f} %", cpu["logging"] - cpu["plain"]]],
            },
        ],
        notes=[
            f"wrk -t1 -c{CONNS} -d{SECONDS}s, {RUNS} runs each, interleaved (each goes first "
            "in turn); the median.",
            "'logging' adds httpAccessLog (common log format, written by a background task "
            "in batches), io.l5d.recentRequests with sampleRate 1.0 (every request) and "
            f"io.l5d.prometheus; its access log got {lines:,} lines.",
            "Both keep the router's metrics, which are always on.",
        ],
        targets=[
            report.target(
                "throughput lost to the access log and telemeters",
                loss * 100,
                "<=",
                TARGET_LOSS * 100,
                unit="%",
                why=f"{cpu['logging'] - cpu['plain']:.0f} µs of CPU added per request",
            )
        ],
    )
