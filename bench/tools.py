"""What every scenario needs: the tools, pinning, nginx, the proxies under test, loaders.

Topology (performance.md section 6.1): nginx (one worker) and the loader share the
first core; the proxy under test runs alone on the second.  The harness itself sleeps
on the first core while a loader runs.  Everything listens on loopback; every run is
bounded.  Scenario modules use only this module's helpers, so a new scenario is a
``run()`` that starts what it needs here and calls :func:`bench.report.save`.
"""

from __future__ import annotations

import json
import math
import os
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
PYTHON = sys.executable

#: nginx ports: HTTP/1.1 and h2c (prior knowledge), three of each so p2c has a choice.
NGINX_HTTP = (18080, 18081, 18082)
NGINX_H2C = (18443, 18444, 18445)
LINKPY_PORT = 14140
LINKPY_H2_PORT = 14142
LINKPY_ADMIN = 19990
PASSTHROUGH_PORT = 14150
#: The logical name the benchmark requests carry (``Host: web`` / ``:authority: web``).
HOST = "web"

TOOLS = {"nginx": "nginx-light", "wrk": "wrk", "h2load": "nghttp2-client"}


# --- tools and pinning ---------------------------------------------------------------


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")


def ensure_tools() -> dict[str, str]:
    """nginx, wrk and h2load, installed from Debian's packages when missing."""
    missing = [pkg for tool, pkg in TOOLS.items() if _which(tool) is None]
    if missing:
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        print(f"installing {' '.join(missing)} (apt-get)", flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run([*sudo, "apt-get", "update", "-q"], check=True, env=env)
        subprocess.run([*sudo, "apt-get", "install", "-y", "-q", *missing], check=True, env=env)
    paths = {}
    for tool in TOOLS:
        path = _which(tool)
        if path is None:
            raise SystemExit(f"{tool} is still missing after apt-get install")
        paths[tool] = path
    return paths


def tool(name: str) -> str:
    path = _which(name)
    if path is None:
        ensure_tools()
        path = _which(name)
    assert path is not None
    return path


def tool_versions() -> dict[str, str]:
    out: dict[str, str] = {}
    probes = {
        "nginx": ([tool("nginx"), "-v"], r"nginx/(\S+)"),
        "wrk": ([tool("wrk"), "-v"], r"wrk (?:debian/)?([\d.]+)"),
        "h2load": ([tool("h2load"), "--version"], r"nghttp2/(\S+)"),
    }
    for name, (cmd, pattern) in probes.items():
        r = subprocess.run(cmd, capture_output=True, text=True)
        m = re.search(pattern, r.stdout + r.stderr)
        out[name] = m.group(1) if m else "?"
    return out


#: The cores this process may use, read before the harness pins itself.
_CPUS = sorted(os.sched_getaffinity(0))


def _cpus() -> list[int]:
    return _CPUS


def router_cpu() -> int | None:
    """The core the proxy under test gets to itself (None on a one-core machine)."""
    cpus = _cpus()
    return cpus[1] if len(cpus) >= 2 else None


def loader_cpu() -> int | None:
    cpus = _cpus()
    return cpus[0] if len(cpus) >= 2 else None


def pinned(cpu: int | None, cmd: Sequence[str]) -> list[str]:
    return ["taskset", "-c", str(cpu), *cmd] if cpu is not None else list(cmd)


def pinning() -> str:
    r, lo = router_cpu(), loader_cpu()
    nice = os.getpriority(os.PRIO_PROCESS, 0)
    prio = f"; every benchmark process at nice {nice} (BENCH_NICE)" if nice else ""
    if r is None:
        return "one core: nothing pinned (router, nginx and loader share it)" + prio
    return f"proxy under test on CPU {r}; nginx, the loader and the harness on CPU {lo}" + prio


#: The nice value of the harness and of everything it starts (``BENCH_NICE``; 0 = as is).
#: The machine may be shared with other work (other sessions' test suites used 1.5 of
#: the 2 cores during the first runs): a raised priority keeps the benchmark's processes
#: from waiting behind it, without starving it, and applies alike to linkpy and its
#: baselines.
NICE = int(os.environ.get("BENCH_NICE", "-10"))


def setup_process() -> None:
    """Pin the harness to the loader's core, raise its priority (inherited by every
    process it starts), and allow enough file descriptors."""
    lo = loader_cpu()
    if lo is not None:
        os.sched_setaffinity(0, {lo})
    if NICE:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, NICE)
        except PermissionError:
            pass
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 20000 if hard == resource.RLIM_INFINITY else min(hard, 20000)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def show(cmd: Sequence[str]) -> str:
    """A command as a reader would type it (paths relative to the repository)."""
    words = []
    for w in cmd:
        if w == PYTHON:
            w = "python"
        w = w.replace(str(ROOT) + "/", "")
        words.append(shlex.quote(w))
    return " ".join(words)


# --- processes -----------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (its threads included), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for {pid}")


def children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def wait_port(
    port: int, timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(
                    f"process exited ({proc.returncode}) before port {port}"
                ) from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on 127.0.0.1:{port}") from None
            time.sleep(0.05)


class Proc:
    """A server process the harness started (stopped with SIGTERM, then SIGKILL)."""

    def __init__(self, name: str, cmd: Sequence[str], log: Path) -> None:
        self.name = name
        self.cmd = list(cmd)
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log = log.open("wb")
        self.popen = subprocess.Popen(
            self.cmd, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
        )
        self.pid = self.popen.pid

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def rss(self) -> float:
        return rss_mb(self.pid)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()


# --- nginx -----------------------------------------------------------------------------

NGINX_CONF = """\
worker_processes 1;
{affinity}
worker_rlimit_nofile 20000;
daemon off;
pid {out}/nginx.pid;
error_log {out}/error.log warn;
events {{ worker_connections 10000; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  client_body_temp_path {out}/body;
  proxy_temp_path {out}/proxy;
  fastcgi_temp_path {out}/fastcgi;
  uwsgi_temp_path {out}/uwsgi;
  scgi_temp_path {out}/scgi;
  server {{
{http}
    location / {{ return 200 "Hello, world!"; }}
  }}
  server {{
{h2c}
    location / {{ return 200 "Hello, world!"; }}
  }}
}}
"""


@contextmanager
def nginx() -> Iterator[Proc]:
    """nginx with one worker on the loader's core: ``return 200 "Hello, world!"``."""
    out = OUT / "nginx"
    out.mkdir(parents=True, exist_ok=True)
    lo = loader_cpu()
    mask = f"worker_cpu_affinity {1 << lo:b};" if lo is not None else ""
    conf = NGINX_CONF.format(
        affinity=mask,
        out=out,
        http="\n".join(f"    listen 127.0.0.1:{p};" for p in NGINX_HTTP),
        h2c="\n".join(f"    listen 127.0.0.1:{p} http2;" for p in NGINX_H2C),
    )
    (out / "nginx.conf").write_text(conf)
    proc = Proc("nginx", pinned(lo, [tool("nginx"), "-c", str(out / "nginx.conf")]), out / "log")
    try:
        for port in NGINX_HTTP + NGINX_H2C:
            wait_port(port, proc=proc.popen)
        yield proc
    finally:
        proc.stop()


def nginx_workers(master: Proc) -> list[int]:
    return children(master.pid)


# --- the proxies under test -------------------------------------------------------------

#: The realistic config: the file namer, a 10-rule dtab the request goes 4 rules deep
#: through, p2c over three endpoints, consecutive-failures accrual, and the metrics
#: the router always keeps (read back through the admin port after each run).
DTAB = """\
/srv => /#/io.l5d.fs;
/srv/legacy => /$/inet/127.0.0.1/9999;
/region => /srv;
/region/eu => /srv/eu;
/host => /region;
/host/users => /region/users-v2 | /region/users;
/svc => /host;
/svc/web => /host/web;
/svc/static => /$/nil;
/svc/admin => !;
"""

CONFIG = """\
# Written by bench/tools.py: the realistic config of the benchmarks.
admin:
  ip: 127.0.0.1
  port: {admin}
namers:
- kind: io.l5d.fs
  rootDir: {disco}
routers:
- protocol: {protocol}
  label: {label}
  dtab: |
{dtab}
  client:
    kind: io.l5d.global
    loadBalancer:
      kind: p2c
      maxEffort: 5
    failureAccrual:
      kind: io.l5d.consecutiveFailures
      failures: 5
  servers:
  - ip: 127.0.0.1
    port: {port}
"""


def write_config(protocol: str = "http") -> Path:
    """bench/out/linkpy/<protocol>.yaml and its disco/ directory."""
    out = OUT / "linkpy"
    disco = out / ("disco" if protocol == "http" else f"disco-{protocol}")
    disco.mkdir(parents=True, exist_ok=True)
    ports = NGINX_HTTP if protocol == "http" else NGINX_H2C
    (disco / HOST).write_text("".join(f"127.0.0.1 {p}\n" for p in ports))
    dtab = "".join("    " + line + "\n" for line in DTAB.splitlines())
    text = CONFIG.format(
        admin=LINKPY_ADMIN if protocol == "http" else LINKPY_ADMIN + 1,
        protocol=protocol,
        disco=disco.relative_to(ROOT),  # linkpy runs in ROOT: rootDir is relative to it
        label="bench" if protocol == "http" else "bench-h2",
        dtab=dtab.rstrip("\n"),
        port=LINKPY_PORT if protocol == "http" else LINKPY_H2_PORT,
    )
    path = out / f"{protocol}.yaml"
    path.write_text(text)
    return path


def config_text(protocol: str = "http") -> str:
    return write_config(protocol).read_text()


def http_get(port: int, path: str = "/", host: str = HOST, timeout: float = 5.0) -> int:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Host": host})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            r.read()
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


@contextmanager
def linkpy(
    protocol: str = "http", check_http: bool = True, launcher: Sequence[str] = ("-m", "linkpy")
) -> Iterator[Proc]:
    """``python -m linkpy run`` on the realistic config, alone on the router's core.

    ``launcher`` replaces ``-m linkpy`` for an experiment that wraps the same CLI
    (``bench/gcprobe.py``).
    """
    cfg = write_config(protocol)
    cmd = pinned(router_cpu(), [PYTHON, *launcher, "run", str(cfg)])
    proc = Proc("linkpy", cmd, OUT / "linkpy" / f"{protocol}.log")
    try:
        wait_port(LINKPY_PORT if protocol == "http" else LINKPY_H2_PORT, proc=proc.popen)
        wait_port(LINKPY_ADMIN if protocol == "http" else LINKPY_ADMIN + 1, proc=proc.popen)
        if check_http:
            status = http_get(LINKPY_PORT)
            if status != 200:
                raise RuntimeError(f"linkpy answered {status}; see {proc.log}")
        yield proc
    finally:
        proc.stop()


@contextmanager
def passthrough(raw: bool = False) -> Iterator[Proc]:
    """bench/passthrough.py, alone on the router's core (``raw``: on PASSTHROUGH_PORT + 1)."""
    port = PASSTHROUGH_PORT + 1 if raw else PASSTHROUGH_PORT
    cmd = pinned(
        router_cpu(),
        [
            PYTHON,
            "-m",
            "bench.passthrough",
            "--listen",
            f"127.0.0.1:{port}",
            "--upstream",
            f"127.0.0.1:{NGINX_HTTP[0]}",
            *(["--raw"] if raw else []),
        ],
    )
    proc = Proc("passthrough", cmd, OUT / f"passthrough{'-raw' if raw else ''}.log")
    try:
        wait_port(port, proc=proc.popen)
        if http_get(port) != 200:
            raise RuntimeError("the pass-through proxy does not answer 200")
        yield proc
    finally:
        proc.stop()


def admin_metrics(admin_port: int = LINKPY_ADMIN) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/admin/metrics.json") as r:
        data: dict[str, Any] = json.loads(r.read())
    return data


def metric_sum(metrics: dict[str, Any], pattern: str) -> float:
    rx = re.compile(pattern)
    return float(
        sum(v for k, v in metrics.items() if rx.fullmatch(k) and isinstance(v, int | float))
    )


# --- how busy the box is ---------------------------------------------------------------


def _busy_jiffies() -> int:
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return user + nice + system + irq + softirq + steal


class Meter:
    """CPU used by the processes of a measurement, and by everything else on the box.

    ``foreign`` is the CPU (in cores) that processes outside the benchmark used during
    the measurement: other work on a shared machine, which the tables report.
    """

    def __init__(self, pids: Sequence[int]) -> None:
        self.pids = list(pids)
        self.cpu: dict[int, float] = {}
        self.elapsed = 0.0
        self.foreign = 0.0

    def __enter__(self) -> Meter:
        self._t = time.monotonic()
        self._busy = _busy_jiffies()
        self._own = {p: cpu_seconds(p) for p in self.pids}
        self._self = os.times()
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed = time.monotonic() - self._t
        busy = (_busy_jiffies() - self._busy) / CLK_TCK
        self.cpu = {p: cpu_seconds(p) - c for p, c in self._own.items()}
        t = os.times()
        harness = sum(t[:4]) - sum(self._self[:4])  # the harness and the loaders it waited for
        ours = sum(self.cpu.values()) + harness
        self.foreign = max(0.0, busy - ours) / self.elapsed if self.elapsed else 0.0


def wait_quiet(limit: float = 0.3, max_wait: float = 3.0) -> float:
    """Wait (at most ``max_wait`` s) until other work uses under ``limit`` of a core.

    The machine may be shared; this keeps a measurement from starting in the middle of
    someone else's burst.  Returns the load last seen (in cores).
    """
    deadline = time.monotonic() + max_wait
    while True:
        t, b, s = time.monotonic(), _busy_jiffies(), os.times()
        time.sleep(0.5)
        busy = (_busy_jiffies() - b) / CLK_TCK - (sum(os.times()[:4]) - sum(s[:4]))
        load = max(0.0, busy) / (time.monotonic() - t)
        if load < limit or time.monotonic() > deadline:
            return load


# --- loaders ---------------------------------------------------------------------------


class WrkResult:
    def __init__(self, rps: float, requests: int, seconds: float, errors: int, non2xx: int) -> None:
        self.rps = rps
        self.requests = requests
        self.seconds = seconds
        self.errors = errors
        self.non2xx = non2xx


def wrk_cmd(
    port: int,
    conns: int,
    seconds: float,
    headers: Sequence[str] = (),
    script: Path | None = None,
) -> list[str]:
    cmd = [tool("wrk"), "-t1", f"-c{conns}", f"-d{seconds:g}s", "-H", f"Host: {HOST}"]
    for h in headers:
        cmd += ["-H", h]
    if script is not None:
        cmd += ["-s", str(script)]
    cmd.append(f"http://127.0.0.1:{port}/")
    return pinned(loader_cpu(), cmd)


def wrk(
    port: int,
    conns: int,
    seconds: float,
    headers: Sequence[str] = (),
    script: Path | None = None,
) -> WrkResult:
    r = subprocess.run(
        wrk_cmd(port, conns, seconds, headers, script), capture_output=True, text=True, check=True
    )
    text = r.stdout
    m = re.search(r"(\d+) requests in ([\d.]+)(m?s)", text)
    if m is None:
        raise RuntimeError(f"unexpected wrk output:\n{text}{r.stderr}")
    seconds = float(m.group(2)) / (1000.0 if m.group(3) == "ms" else 1.0)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return WrkResult(
        rps=float(rps.group(1)) if rps else 0.0,
        requests=int(m.group(1)),
        seconds=seconds,
        errors=sum(int(x) for x in errs.groups()) if errs else 0,
        non2xx=int(non2xx.group(1)) if non2xx else 0,
    )


class H2loadResult:
    def __init__(self, text: str, log: Path | None) -> None:
        self.text = text
        m = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", text)
        self.seconds = float(m.group(1)) / (1000.0 if m and m.group(2) == "ms" else 1.0) if m else 0
        self.rps = float(m.group(3)) if m else 0.0
        m = re.search(
            r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed", text
        )
        self.total, self.done, self.succeeded, self.failed = (
            (int(m.group(1)), int(m.group(3)), int(m.group(4)), int(m.group(5))) if m else (0,) * 4
        )
        m = re.search(r"status codes: (\d+) 2xx", text)
        self.ok = int(m.group(1)) if m else 0
        self.durations_us: list[int] = []
        if log is not None and log.exists():
            for line in log.read_text().splitlines():
                parts = line.split("\t")
                if len(parts) >= 3 and parts[1].startswith("2"):
                    self.durations_us.append(int(parts[2]))


def h2load_cmd(port: int, args: Sequence[str], h1: bool, log: Path | None = None) -> list[str]:
    cmd = [tool("h2load"), *args, "-H", f":authority: {HOST}"]
    if h1:
        cmd.append("--h1")
    if log is not None:
        cmd.append(f"--log-file={log}")
    cmd.append(f"http://127.0.0.1:{port}/")
    return pinned(loader_cpu(), cmd)


def h2load(
    port: int, args: Sequence[str], *, h1: bool, log: Path | None = None, timeout: float = 120
) -> H2loadResult:
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.unlink(missing_ok=True)
    r = subprocess.run(
        h2load_cmd(port, args, h1, log), capture_output=True, text=True, timeout=timeout
    )
    return H2loadResult(r.stdout + r.stderr, log)


def fixed_rate_args(rate: int, seconds: int = 10, clients: int = 50) -> list[str]:
    """performance.md 6.2: many clients at a low rate each, starts staggered 1 ms apart."""
    per_client = max(1, round(rate / clients))
    return [
        "-c",
        str(clients),
        f"--rps={per_client}",
        "-n",
        str(per_client * clients * seconds),
        "-r",
        "1",
        "--rate-period=1ms",
    ]


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank."""
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values), max(1, math.ceil(q * len(sorted_values))))
    return float(sorted_values[k - 1])


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")
