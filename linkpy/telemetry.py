"""Telemeters (``telemetry:`` entries) and the HTTP access log.

Linkerd's telemeter kinds, each a plugin of the ``linkpy.telemeters`` group:

- ``io.l5d.prometheus`` — the Prometheus endpoint on the admin port (see the admin);
- ``io.l5d.recentRequests`` (``sampleRate``, ``capacity`` 10) — the last sampled
  requests, at ``/requests`` and ``/requests.json`` on the admin port;
- ``io.l5d.tracelog`` (``sampleRate`` 1.0, ``level`` INFO) — a log line per sampled
  request with its trace context;
- ``io.l5d.statsd`` (experimental; ``prefix`` linkerd, ``hostname`` 127.0.0.1, ``port``
  8125, ``gaugeIntervalMs`` 10000, ``sampleRate``) — pushes every counter's increase
  and every gauge over UDP each interval (exact counts: nothing is sampled away);
- ``io.l5d.influxdb`` — InfluxDB line protocol at ``/admin/metrics/influxdb``;
- ``io.l5d.zipkin`` (``host``, ``port``, ``sampleRate``) — accepted: the trace context
  (``l5d-ctx-trace`` or B3) is propagated, but spans are not exported.

The per-request work on the router's path is appending a tuple to a list (access log)
or a sampling draw; formatting and file I/O happen in a background task.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import trio

from .config.schema import TelemeterConfig
from .metrics import Metrics

if TYPE_CHECKING:
    from .admin.server import Request, Response
    from .linker import Linker

    AdminRoute = tuple[str, Callable[[Request], Awaitable[Response]], str]

log = logging.getLogger("linkpy.telemetry")


@attrs.frozen(kw_only=True)
class RecentRequestsConfig(TelemeterConfig):
    sampleRate: float
    capacity: int = 10

    def admin_routes(self, linker: Linker) -> list[AdminRoute]:
        from .admin.server import Response

        async def requests_json(req: Request) -> Response:
            return Response.json(linker.telemetry.recent_requests())

        async def requests_text(req: Request) -> Response:
            lines = [
                f"{r['method']} {r['target']} -> {r['name']} via {r['client']}: "
                f"{r['status']} in {r['latency_ms']:.1f} ms"
                for r in linker.telemetry.recent_requests()
            ]
            return Response.text("\n".join(lines) + "\n" if lines else "no requests yet\n")

        return [
            ("/requests.json", requests_json, "the last sampled requests (io.l5d.recentRequests)"),
            ("/requests", requests_text, "the last sampled requests, as text"),
        ]


@attrs.frozen(kw_only=True)
class TracelogConfig(TelemeterConfig):
    sampleRate: float = 1.0
    level: str = "INFO"
    host: str | None = None


@attrs.frozen(kw_only=True)
class StatsdConfig(TelemeterConfig):
    prefix: str = "linkerd"
    hostname: str = "127.0.0.1"
    port: int = 8125
    gaugeIntervalMs: int = 10000
    sampleRate: float = 0.01

    experimental_required = True


@attrs.frozen(kw_only=True)
class InfluxDbConfig(TelemeterConfig):
    def admin_routes(self, linker: Linker) -> list[AdminRoute]:
        from .admin.server import Response

        host = socket.gethostname()

        async def influxdb(req: Request) -> Response:
            return Response.text(influx_lines(linker.metrics, host))

        return [("/admin/metrics/influxdb", influxdb, "the metrics in InfluxDB line protocol")]


@attrs.frozen(kw_only=True)
class ZipkinConfig(TelemeterConfig):
    host: str = "localhost"
    port: int = 9410
    sampleRate: float = 0.001


@attrs.frozen
class RequestRecord:
    """One request, as the recent-requests table and the trace log show it."""

    time: float
    router: str
    method: str
    target: str
    name: str
    client: str
    status: int
    latency_ms: float
    trace: str


def request_record(raw: tuple[Any, ...]) -> RequestRecord:
    """A :class:`RequestRecord` from what the router recorded: (time, router, request
    head, path or name, client id, status, latency ms, trace span or None)."""
    when, router, head, path, client, status, latency_ms, span = raw
    return RequestRecord(
        when,
        router,
        head.method.decode("latin-1"),
        head.target.decode("latin-1"),
        path if isinstance(path, str) else path.show(),
        client,
        status,
        latency_ms,
        span.show() if span is not None else "",
    )


class Telemetry:
    """The telemeters of a config, running."""

    def __init__(self, configs: Sequence[TelemeterConfig], metrics: Metrics) -> None:
        self.metrics = metrics
        #: the last sampled requests, as recorded (made records only when shown)
        self.recent: deque[tuple[Any, ...]] | None = None
        self.recent_rate = 0.0
        self.tracelog_rate = 0.0
        self.tracelog_level = logging.INFO
        self.statsd: StatsdConfig | None = None
        self.influxdb = False
        self.prometheus: Any = None
        self.zipkin: ZipkinConfig | None = None
        for c in configs:
            if isinstance(c, RecentRequestsConfig):
                self.recent = deque(maxlen=max(1, c.capacity))
                self.recent_rate = c.sampleRate
            elif isinstance(c, TracelogConfig):
                self.tracelog_rate = c.sampleRate
                level = logging.getLevelName(c.level.upper())
                self.tracelog_level = level if isinstance(level, int) else logging.INFO
            elif isinstance(c, StatsdConfig):
                self.statsd = c
            elif isinstance(c, InfluxDbConfig):
                self.influxdb = True
            elif isinstance(c, ZipkinConfig):
                self.zipkin = c
                log.warning(
                    "io.l5d.zipkin: trace context is propagated, but spans are not exported"
                )
            else:
                self.prometheus = c
        #: whether the router must call :meth:`record` for each request
        self.active = self.recent is not None or self.tracelog_rate > 0
        self._random = random.random

    def record(self, raw: tuple[Any, ...]) -> None:
        """A request finished (``raw`` as :func:`request_record` takes it)."""
        r = self._random()
        if self.recent is not None and r < self.recent_rate:
            self.recent.append(raw)
        if r < self.tracelog_rate:
            rec = request_record(raw)
            log.log(
                self.tracelog_level,
                "trace %s %s %s %s %s -> %s %d %.3fms",
                rec.trace,
                rec.router,
                rec.method,
                rec.target,
                rec.name,
                rec.client,
                rec.status,
                rec.latency_ms,
            )

    def recent_requests(self) -> list[dict[str, Any]]:
        if self.recent is None:
            return []
        return [attrs.asdict(request_record(r)) for r in reversed(self.recent)]

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        if self.statsd is not None:
            await self._statsd(self.statsd)
        await trio.sleep_forever()

    async def _statsd(self, cfg: StatsdConfig) -> None:
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        last: dict[str, float] = {}
        interval = max(cfg.gaugeIntervalMs, 100) / 1000.0
        try:
            await sock.connect((cfg.hostname, cfg.port))
        except OSError as e:
            log.error("io.l5d.statsd: cannot reach %s:%d: %s", cfg.hostname, cfg.port, e)
            await trio.sleep_forever()
        with sock:
            while True:
                await trio.sleep(interval)
                lines = statsd_lines(self.metrics, cfg.prefix, last)
                for i in range(0, len(lines), 20):
                    try:
                        await sock.send("\n".join(lines[i : i + 20]).encode())
                    except OSError as e:
                        log.warning("io.l5d.statsd: send failed: %s", e)
                        break


def statsd_lines(metrics: Metrics, prefix: str, last: dict[str, float]) -> list[str]:
    """Counter increases (``|c``) and gauges (``|g``) since ``last``."""
    out = []
    flat = metrics.flat()
    counters = metrics.counter_names()
    for name, value in flat.items():
        key = _statsd_name(prefix, name)
        if name in counters:
            delta = value - last.get(name, 0)
            last[name] = value
            if delta:
                out.append(f"{key}:{delta:g}|c")
        else:
            out.append(f"{key}:{value:g}|g")
    return out


def _statsd_name(prefix: str, name: str) -> str:
    clean = "".join(c if c.isalnum() or c in "._-" else "_" for c in name.replace("/", "."))
    return f"{prefix}.{clean}" if prefix else clean


def influx_lines(metrics: Metrics, host: str) -> str:
    """InfluxDB line protocol from the Prometheus exposition (one line per sample)."""
    from prometheus_client.parser import text_string_to_metric_families

    out = []
    now = time.time_ns()
    tag_host = _influx_escape(host or "localhost")
    for family in text_string_to_metric_families(metrics.prometheus()):
        for sample in family.samples:
            labels = sorted(sample.labels.items())
            tags = "".join(f",{_influx_escape(k)}={_influx_escape(v)}" for k, v in labels)
            name = _influx_escape(sample.name)
            out.append(f"{name}{tags},host={tag_host} value={sample.value} {now}")
    return "\n".join(out) + ("\n" if out else "")


def _influx_escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace(" ", "\\ ").replace(",", "\\,").replace("=", "\\=")


# --- the access log -------------------------------------------------------------------


class AccessLog:
    """``httpAccessLog``: Common Log Format lines, written by a background task.

    ``rollPolicy``: ``never``, ``hourly``, ``daily``, ``weekly(n)`` (n = 0..6, Sunday =
    0), or a size such as ``3.megabytes`` / ``1.gigabyte``; ``rotateCount`` rotated files
    are kept (-1: all).
    """

    def __init__(
        self, path: str, roll: str | None = None, append: bool = True, rotate_count: int = -1
    ) -> None:
        self.path = path
        self.roll = (roll or "never").strip()
        self.append = append
        self.rotate_count = rotate_count
        self.pending: list[tuple[Any, ...]] = []
        self.max_size = _size(self.roll)
        self._period = _period(self.roll)
        self._opened = False

    def add(self, entry: tuple[Any, ...]) -> None:
        """(peer, time, request head, status, response size or None, path or name)."""
        self.pending.append(entry)

    async def run(self) -> None:
        while True:
            await trio.sleep(0.2)
            if self.pending:
                await self.flush()

    async def flush(self) -> None:
        entries, self.pending = self.pending, []
        stamps = _Stamps()
        names = _Names()
        text = "".join([_clf(e, stamps, names) for e in entries])
        await trio.to_thread.run_sync(self._write, text)

    def _write(self, text: str) -> None:
        mode = "a"
        if not self._opened:
            self._opened = True
            if not self.append:
                mode = "w"
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self._maybe_roll()
        with open(self.path, mode, encoding="utf-8") as f:
            f.write(text)

    def _maybe_roll(self) -> None:
        try:
            st = os.stat(self.path)
        except OSError:
            return
        roll = False
        if self.max_size is not None and st.st_size >= self.max_size:
            roll = True
        elif self._period is not None:
            roll = _period_key(self._period, st.st_mtime) != _period_key(self._period, time.time())
        if not roll:
            return
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(st.st_mtime))
        os.replace(self.path, f"{self.path}.{stamp}")
        if self.rotate_count >= 0:
            directory = os.path.dirname(os.path.abspath(self.path))
            base = os.path.basename(self.path) + "."
            rotated = sorted(n for n in os.listdir(directory) if n.startswith(base))
            for old in rotated[: max(0, len(rotated) - self.rotate_count)]:
                os.remove(os.path.join(directory, old))


class _Stamps(dict[int, str]):
    """The log's date for each second (a batch's lines share a few seconds)."""

    def __missing__(self, second: int) -> str:
        stamp = self[second] = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(second))
        return stamp


class _Names(dict[object, str]):
    """The logical names as shown (a batch's requests share a few names)."""

    def __missing__(self, path: object) -> str:
        shown = path if isinstance(path, str) else path.show()  # type: ignore[attr-defined]
        self[path] = shown
        return shown


def _clf(e: tuple[Any, ...], stamps: _Stamps, names: _Names) -> str:
    """A Common Log Format line, with the referer, the user agent and the logical name."""
    peer, when, head, status, size, path = e
    referer = agent = None
    for k, v in head.headers:  # (one pass for both)
        if len(k) == 7 and k.lower() == b"referer":
            referer = v if referer is None else referer
        elif len(k) == 10 and k.lower() == b"user-agent":
            agent = v if agent is None else agent
    return (
        f"{peer} - - [{stamps[int(when)]}] "
        f'"{head.method.decode("latin-1")} {head.target.decode("latin-1")} '
        f'HTTP/{head.version.decode("latin-1")}" {status} {"-" if size is None else size} '
        f'"{"-" if referer is None else referer.decode("latin-1")}" '
        f'"{"-" if agent is None else agent.decode("latin-1")}" '
        f"{names[path]}\n"
    )


def _size(roll: str) -> int | None:
    parts = roll.lower().split(".")
    if len(parts) != 2 or not parts[0].isdigit():
        return None
    unit = {
        "byte": 1,
        "bytes": 1,
        "kilobyte": 1 << 10,
        "kilobytes": 1 << 10,
        "megabyte": 1 << 20,
        "megabytes": 1 << 20,
        "gigabyte": 1 << 30,
        "gigabytes": 1 << 30,
    }.get(parts[1])
    return None if unit is None else int(parts[0]) * unit


def _period(roll: str) -> str | None:
    r = roll.lower()
    if r in ("hourly", "daily"):
        return r
    if r.startswith("weekly(") and r.endswith(")"):
        return r
    return None


def _period_key(period: str, t: float) -> tuple[int, ...]:
    lt = time.localtime(t)
    if period == "hourly":
        return (lt.tm_year, lt.tm_yday, lt.tm_hour)
    if period == "daily":
        return (lt.tm_year, lt.tm_yday)
    week_start = int(period[7:-1] or 0)
    days = int(t // 86400) - ((lt.tm_wday + 1 - week_start) % 7)
    return (days,)
