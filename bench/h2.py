"""HTTP/2: small unary requests over h2c, linkpy vs direct to nginx.

performance.md 6.2 (1) for h2c: h2load -c10 -m10 -D10 (10 connections, 10 streams
each), three runs, median; and one fixed-rate run at 1,000 requests/s (-m1).

While h2load drives it, py-spy samples the router (10 s at 200 Hz, its main thread), so
that the CPU per request splits into the HTTP/2 codec, trio, and the rest of linkpy.

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
from .profile import RATE as PROFILE_RATE
from .profile import Profile, _file, _pyspy

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


#: (what, files of the innermost frame): the profile's kinds of work
PROFILE_KINDS: list[tuple[str, tuple[str, ...]]] = [
    (
        "the HTTP/2 codec: frames, streams, flow control, HPACK (linkpy/proto, hpack)",
        ("linkpy/proto/", "hpack/"),
    ),
    ("trio: sockets, scheduler, events", ("trio/", "outcome/")),
    ("linkpy's HTTP/2 connections and streams (linkpy/transport)", ("linkpy/transport/",)),
    ("linkpy's routing, balancing, metrics (linkpy/router, naming, metrics)", ("linkpy/",)),
]


def _profile(lp_pid: int, pids: list[int]) -> tuple[Profile, float] | None:
    """py-spy on the router under the closed-loop load: (profile, CPU µs/request)."""
    exe = _pyspy()
    if exe is None:
        return None
    out = tools.OUT / "profile" / "h2.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = tools.h2load_cmd(tools.LINKPY_H2_PORT, ["-c10", "-m10", f"-D{SECONDS + 3}"], h1=False)
    with tools.Meter(pids) as m:
        load = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        spy = [exe, "record", "--pid", str(lp_pid), "--duration", str(SECONDS)]
        spy += ["--rate", str(PROFILE_RATE), "--format", "raw", "--nolineno"]
        subprocess.run(
            tools.pinned(tools.loader_cpu(), [*spy, "--output", str(out)]),
            capture_output=True,
            check=True,
        )
        text, _ = load.communicate(timeout=60)
    r = tools.H2loadResult(text, None)
    return Profile(out.read_text()), m.cpu[lp_pid] / max(1, r.ok) * 1e6


def _kind(frame: str) -> str:
    file = _file(frame)
    for name, prefixes in PROFILE_KINDS:
        if any(file.startswith(p) or f"/{p}" in file for p in prefixes):
            return name
    return "other (Python runtime, stdlib)"


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
        profiled = None
        if "linkpy" in ports:
            print("   profiling linkpy h2c", flush=True)
            tools.wait_quiet()
            profiled = _profile(ports["linkpy"][1][0], ports["linkpy"][1])
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
        lp_cpu = tools.median([x["cpu_us"] for x in results["linkpy"]])
        why = (
            f"{lp_cpu:.0f} µs of CPU per request: a whole core would give at most "
            f"{1e6 / lp_cpu:,.0f} req/s"
        )
    profile_tables: list[dict[str, Any]] = []
    if missing is None and profiled is not None:
        prof, cpu = profiled
        kinds: dict[str, int] = {}
        for frame, n in prof.self_.items():
            kinds[_kind(frame)] = kinds.get(_kind(frame), 0) + n
        ranked = sorted(kinds.items(), key=lambda kv: -kv[1])
        profile_tables.append(
            {
                "caption": f"Where linkpy's time goes per h2c request (py-spy, {PROFILE_RATE} Hz, "
                f"{SECONDS} s under the same h2load load; {cpu:.0f} µs of CPU per request, "
                f"{prof.total:,} samples), by the innermost frame of each sample. C code "
                "counts for the Python function that called it.",
                "columns": ["work", "share of samples", "µs per request"],
                "rows": [
                    [k, f"{prof.share(n) * 100:.1f} %", prof.share(n) * cpu] for k, n in ranked
                ],
            }
        )
        codec = prof.share(kinds.get(PROFILE_KINDS[0][0], 0))
        why += (
            f"; the HTTP/2 codec takes {codec * 100:.0f} % of it ({codec * cpu:.0f} µs: "
            "the downstream and the upstream connection each decode and encode every "
            "frame), trio and linkpy's routing the rest"
        )
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
            },
            *profile_tables,
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
