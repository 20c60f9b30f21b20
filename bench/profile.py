"""Where the time goes per request: py-spy on the router under wrk load.

py-spy samples the running router (``py-spy record --pid``, 200 Hz, 10 s) while wrk
drives it at its maximum rate (-c50), once with plain requests and once with a 2-rule
``l5d-dtab`` header on every request.  The router's CPU per request is measured at the
same time, so each function's share of the samples converts to microseconds per
request.  Only the router's main thread is counted (trio's idle worker threads are not).

An experiment measures what linkpy's HTTP/1.1 socket fast path saves: the
pass-through proxy on bare sockets (``bench/passthrough.py --raw``) against the same
proxy on trio's SocketStream.
"""

from __future__ import annotations

import collections
import shutil
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from . import report, tools

SECONDS = 10
RATE = 200
EXPERIMENT_RUNS = 5
#: Frames every request runs inside (the process, the server's connection task).
OUTER = ("linkpy/cli.py", "linkpy/__main__.py", "linkpy/linker.py", "linkpy/transport/server.py")
OVERRIDE = "/svc/web => /#/io.l5d.fs/web; /svc/users => /#/io.l5d.fs/web"

#: (category, predicate on the innermost frame's file)
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("socket system calls and trio's socket layer", ("trio/_socket.py", "trio/_highlevel_socket")),
    ("trio scheduler, checkpoints, parking lots", ("trio/", "outcome/", "sniffio/")),
    ("error-mapping context managers (contextlib)", ("contextlib.py", "linkpy/transport/errors")),
    ("HTTP/1.1 parsing and heads (httptools callbacks)", ("linkpy/proto/",)),
    ("connections (linkpy/transport)", ("linkpy/transport/",)),
    ("metrics", ("linkpy/metrics.py",)),
    ("naming (paths, dtabs, bindings)", ("linkpy/naming/", "linkpy/router/interpreter")),
    (
        "load balancing and the connection pool (router/balancers, client, routing)",
        ("linkpy/router/balancers", "linkpy/router/client", "linkpy/router/routing"),
    ),
    ("request handling (linkpy/router/http.py, identifiers)", ("linkpy/router/",)),
]


def _pyspy() -> str | None:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return exe if Path(exe).exists() else None


class Profile:
    def __init__(self, raw: str) -> None:
        self.self_: collections.Counter[str] = collections.Counter()
        self.incl: collections.Counter[str] = collections.Counter()
        self.cat: collections.Counter[str] = collections.Counter()
        self.total = 0
        for line in raw.splitlines():
            stack, _, count = line.rstrip().rpartition(" ")
            if not stack or not count.isdigit():
                continue
            frames = stack.split(";")
            if any("Thread._bootstrap" in f or "WorkerThread" in f for f in frames):
                continue
            n = int(count)
            self.total += n
            leaf = frames[-1]
            self.self_[leaf] += n
            self.cat[_category(leaf)] += n
            for f in set(frames):
                self.incl[f] += n

    def share(self, n: int) -> float:
        return n / self.total if self.total else 0.0


def _fname(frame: str) -> str:
    return frame.rsplit(" (", 1)[0]


def _file(frame: str) -> str:
    return frame.rsplit(" (", 1)[1].rstrip(")") if " (" in frame else ""


def _category(frame: str) -> str:
    file = _file(frame)
    for name, prefixes in CATEGORIES:
        if any(p in file for p in prefixes):
            return name
    return "other (Python runtime, stdlib)"


def _record(
    lp: tools.Proc, pids: list[int], headers: tuple[str, ...], out: Path
) -> tuple[Profile, float, float]:
    """Profile the router under wrk -c50: (profile, CPU µs/request, requests/s)."""
    exe = _pyspy()
    assert exe is not None
    result: dict[str, Any] = {}

    def load() -> None:
        with tools.Meter(pids) as m:
            result["wrk"] = tools.wrk(tools.LINKPY_PORT, 50, SECONDS + 3, headers)
        result["meter"] = m

    t = threading.Thread(target=load)
    t.start()
    time.sleep(1.5)
    subprocess.run(
        tools.pinned(
            tools.loader_cpu(),
            [
                exe,
                "record",
                "--pid",
                str(lp.pid),
                "--duration",
                str(SECONDS),
                "--rate",
                str(RATE),
                "--format",
                "raw",
                "--nolineno",
                "--output",
                str(out),
            ],
        ),
        capture_output=True,
        check=True,
    )
    t.join()
    w, m = result["wrk"], result["meter"]
    return Profile(out.read_text()), m.cpu[lp.pid] / w.requests * 1e6, w.rps


def _experiment() -> list[list[Any]]:
    """Both pass-through proxies at once (each idle while the other is loaded), runs
    interleaved, so that the machine's changing load hits both alike."""
    runs: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    with ExitStack() as stack:
        ngx = stack.enter_context(tools.nginx())
        workers = tools.nginx_workers(ngx)
        procs = {raw: stack.enter_context(tools.passthrough(raw=raw)) for raw in (False, True)}
        for raw in procs:
            tools.wrk(tools.PASSTHROUGH_PORT + raw, 50, 2)
        for _ in range(EXPERIMENT_RUNS):
            for raw, proc in procs.items():
                tools.wait_quiet()
                with tools.Meter([proc.pid, *workers]) as m:
                    w = tools.wrk(tools.PASSTHROUGH_PORT + raw, 50, 5)
                runs[raw].append((w.rps, m.cpu[proc.pid] / w.requests * 1e6))
    rows: list[list[Any]] = []
    for raw, r in runs.items():
        cpus = sorted(x[1] for x in r)
        rows.append(
            [
                "bare sockets (--raw)" if raw else "trio SocketStream (the baseline)",
                tools.median([x[0] for x in r]),
                tools.median(cpus),
                f"{cpus[0]:.0f}–{cpus[-1]:.0f}",
            ]
        )
    return rows


def run() -> None:
    tools.ensure_tools()
    if _pyspy() is None:
        report.save(
            "profile",
            "Where the time goes per request (py-spy)",
            [],
            notes=["**Not available:** py-spy is not installed (`pip install -e '.[bench]'`)."],
        )
        return
    out_dir = tools.OUT / "profile"
    out_dir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        ngx = stack.enter_context(tools.nginx())
        lp = stack.enter_context(tools.linkpy())
        pids = [lp.pid, *tools.nginx_workers(ngx)]
        tools.wrk(tools.LINKPY_PORT, 50, 2)
        print("   profiling plain requests", flush=True)
        tools.wait_quiet()
        plain, cpu, rps = _record(lp, pids, (), out_dir / "plain.txt")
        print("   profiling requests with l5d-dtab", flush=True)
        tools.wait_quiet()
        dtab, cpu_d, rps_d = _record(lp, pids, (f"l5d-dtab: {OVERRIDE}",), out_dir / "dtab.txt")
    print("   experiment: the pass-through proxy on bare sockets", flush=True)
    experiment = _experiment()

    cat_rows = [
        [name, f"{plain.share(n) * 100:.1f} %", plain.share(n) * cpu]
        for name, n in plain.cat.most_common()
    ]
    self_rows = [
        [_fname(f), _file(f), f"{plain.share(n) * 100:.1f} %", plain.share(n) * cpu]
        for f, n in plain.self_.most_common(15)
    ]
    incl_rows = [
        [_fname(f), _file(f), f"{plain.share(n) * 100:.1f} %", plain.share(n) * cpu]
        for f, n in plain.incl.most_common()
        if _file(f).startswith(("linkpy/", "trio/_highlevel", "contextlib"))
        and not _file(f).startswith(OUTER)
        and plain.share(n) >= 0.01
    ][:25]
    diff: list[tuple[float, str]] = []
    for f in set(plain.incl) | set(dtab.incl):
        a = plain.share(plain.incl.get(f, 0)) * cpu
        b = dtab.share(dtab.incl.get(f, 0)) * cpu_d
        if _file(f).startswith("linkpy/") and not _file(f).startswith(OUTER):
            diff.append((b - a, f))
    diff.sort(reverse=True)
    diff_rows = [[_fname(f), _file(f), d] for d, f in diff[:10]]
    per_req = [
        ["plain requests", rps, cpu, plain.total],
        ["with a 2-rule l5d-dtab", rps_d, cpu_d, dtab.total],
    ]
    report.save(
        "profile",
        "Where the time goes per request (py-spy)",
        [
            {
                "caption": f"The profiled runs: wrk -t1 -c50, py-spy record at {RATE} Hz for "
                f"{SECONDS} s on the router's main thread.",
                "columns": ["requests", "requests/s", "CPU µs/request", "samples"],
                "rows": per_req,
            },
            {
                "caption": "Plain requests, by kind of work (the innermost frame of each "
                "sample). C code (the system calls, httptools' parser) counts for the Python "
                "function that called it.",
                "columns": ["work", "share of samples", "µs per request"],
                "rows": cat_rows,
            },
            {
                "caption": "Plain requests: the top functions by self time.",
                "columns": ["function", "file", "self", "µs per request"],
                "rows": self_rows,
            },
            {
                "caption": "Plain requests: linkpy's functions (and trio's stream and contextlib "
                "helpers) by inclusive time, those with at least 1 % of the samples.",
                "columns": ["function", "file", "inclusive", "µs per request"],
                "rows": incl_rows,
            },
            {
                "caption": "What a 2-rule l5d-dtab header adds: linkpy functions by the growth "
                "of their inclusive µs per request.",
                "columns": ["function", "file", "added µs per request"],
                "rows": diff_rows,
            },
            {
                "caption": "Experiment: what trio's SocketStream costs against the bare "
                "sockets of linkpy's HTTP/1.1 fast path, on the pass-through proxy: trio's "
                f"SocketStream and bare sockets (wrk -t1 -c50, 5 s, {EXPERIMENT_RUNS} runs "
                "each, interleaved; medians, and the CPU's min–max). A gain smaller than "
                "the spread is not shown by this machine.",
                "columns": ["pass-through on", "requests/s", "CPU µs/request", "CPU min–max"],
                "rows": experiment,
            },
        ],
        notes=[
            "The raw stacks are in `bench/out/profile/` after a run "
            "(`py-spy record --format raw`; flamegraph.pl or speedscope read them).",
        ],
        commands=[
            tools.show(tools.wrk_cmd(tools.LINKPY_PORT, 50, SECONDS + 3)),
            f"py-spy record --pid <router pid> --duration {SECONDS} --rate {RATE} "
            "--format raw --nolineno --output bench/out/profile/plain.txt",
        ],
    )
