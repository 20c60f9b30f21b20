"""The metrics registry: a tree of counters, gauges and histograms, as Linkerd 1.x keeps it.

Every metric lives at a path in one tree (Linkerd's ``MetricsTree``).  Code gets a
:class:`Scope` for a subtree and asks it for metrics by name::

    metrics = Metrics()
    srv = metrics.labeled("rt", "outgoing").labeled("server", "127.0.0.1/4140")
    requests = srv.counter("requests")          # rt/outgoing/server/127.0.0.1/4140/requests
    latency = srv.stat("request_latency_ms")
    ...
    requests.incr()                             # on the hot path: an attribute +=
    latency.add(12.5)                           # a bucket index and a list increment

Names.  A plain segment (``scope("retries")``, ``counter("status", "200")``) is one path
element; a name holding ``/`` is split there, so ``counter("retries/total")`` is
``counter("retries", "total")``.  ``labeled(kind, label)`` adds two elements, ``kind``
and ``label``, and the label is one element even when it holds ``/`` (a client id
``#/io.l5d.fs/users``, a service ``svc/users``).  A metric's flat name is its path joined
with ``/``.  Asking again for the same name gives the same object.

Exports (all three read the live tree; counters and gauges are read as they are, and
every histogram through :meth:`Stat.snapshot`):

- :meth:`Metrics.flat` -- ``/admin/metrics.json``: ``{"rt/outgoing/.../requests": 3}``;
  a histogram gives ``<name>.count`` and, when it holds samples,
  ``.sum .avg .min .max .p50 .p90 .p95 .p99 .p9990 .p9999``.
- :meth:`Metrics.tree` -- ``/admin/metrics.json?tree=1``: one nested object per path
  element (a label is one element); a metric's node carries ``"counter": n``,
  ``"gauge": x`` or ``"stat.count": n, "stat.avg": x, ...`` next to its children.
- :meth:`Metrics.prometheus` -- ``io.l5d.prometheus``: plain elements join with ``:``,
  a labeled scope gives the name element ``kind`` and the label ``kind="label"``, the
  elements below a ``failures`` element go into an ``exception`` label (those below
  ``exn`` too, the name then saying ``exceptions``), and every character but
  ``[A-Za-z0-9:]`` becomes ``_``.  Counters keep Linkerd's bare names (no ``_total``:
  dashboards built for Linkerd query them), so they are untyped families; gauges are
  ``gauge`` families; a histogram
  is a ``summary`` (``_count``, ``_sum`` and quantiles 0, .5, .9, .95, .99, .999,
  .9999, 1, where 0 and 1 are the exact min and max) plus a ``<name>_avg`` gauge::

      rt:server:requests{rt="outgoing",server="127.0.0.1/4140"} 3.0
      rt:client:failures{client="$/inet/127.1/8080",exception="connect_failed",...} 1.0
      rt:service:request_latency_ms{quantile="0.99",rt="outgoing",service="svc/users"} 12.5
      rt:service:request_latency_ms_avg{rt="outgoing",service="svc/users"} 7.25

Histograms.  Linkerd snapshots its histograms every minute.  A :class:`Stat` instead
keeps two windows of ``snapshot_interval`` seconds, the current one and the one before,
and rotates them when an :meth:`~Stat.add` or :meth:`~Stat.snapshot` finds the current
window over (no background task).  A snapshot covers both windows, so new samples show at
once and old ones are gone after one to two intervals.  Samples fall into fixed
log-linear buckets: 64 per power of two from 2**-10 to 2**36, so a percentile is within
about 0.8% of the true value (two significant digits, as HdrHistogram's); values below
2**-10 (zero, negatives) share one bucket and values from 2**36 on share another.
``count``, ``sum``, ``min`` and ``max`` are exact.

The registry takes no locks: it belongs to the one thread that runs the router.  This
module imports only the standard library; :meth:`Metrics.prometheus` imports
``prometheus_client`` when it is first called.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from math import frexp, ldexp
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric as PromMetric

__all__ = ["Counter", "Counters", "Gauge", "Metrics", "Scope", "Stat", "StatSnapshot"]


# --- counters and gauges --------------------------------------------------------


class Counter:
    """A count that only goes up; ``value`` is the count so far."""

    __slots__ = ("value",)

    value: int

    def __init__(self) -> None:
        self.value = 0

    def incr(self, n: int = 1) -> None:
        """Add ``n`` (which should not be negative)."""
        self.value += n

    def __repr__(self) -> str:
        return f"Counter({self.value})"


class Counters(dict[int, Counter]):
    """The counters below one scope named by an int (a status code): ``statuses[200].incr()``.

    ``counters[n]`` is ``scope.counter(str(n))``, made on first use; after that it is a
    dict hit, where asking the scope would split and walk the name on every request.
    """

    __slots__ = ("_scope",)

    def __init__(self, scope: Scope) -> None:
        super().__init__()
        self._scope = scope

    def __missing__(self, key: int) -> Counter:
        counter = self[key] = self._scope.counter(str(key))
        return counter


class Gauge:
    """A current value: read from ``fn`` at export time, or the last value :meth:`set`."""

    __slots__ = ("_fn", "_value")

    def __init__(self, fn: Callable[[], float] | None = None) -> None:
        self._fn = fn
        self._value: float = 0.0

    def set(self, v: float) -> None:
        """Set the value; a gauge read from a function cannot be set."""
        if self._fn is not None:
            raise TypeError("this gauge reads its value from a function; it cannot be set")
        self._value = v

    @property
    def value(self) -> float:
        """The current value (calls the function, which may raise)."""
        if self._fn is not None:
            return float(self._fn())
        return float(self._value)

    def __repr__(self) -> str:
        return "Gauge(<fn>)" if self._fn is not None else f"Gauge({self._value!r})"


# --- histograms -----------------------------------------------------------------

#: Buckets per power of two (the precision: a bucket is at most 1/64 of its values wide).
_SUB_BUCKETS = 64
#: The smallest value with a bucket of its own (2**-10) and the first value past the
#: last bucket (2**36): a microsecond to two years in milliseconds, bytes to 64 GiB.
_LOWEST = 2.0**-10
_HIGHEST = 2.0**36
# frexp(v) == (m, e) with v == m * 2**e and 0.5 <= m < 1; v falls in bucket
# e * 64 + int(m * 128) + _OFFSET.  _LOWEST == 0.5 * 2**-9 is bucket 1; bucket 0 holds
# everything below it and bucket _OVERFLOW everything from _HIGHEST on.
_OFFSET = 1 + 9 * _SUB_BUCKETS - _SUB_BUCKETS
_OVERFLOW = 36 * _SUB_BUCKETS + (2 * _SUB_BUCKETS - 1) + _OFFSET + 1
_NBUCKETS = _OVERFLOW + 1


def _bucket_index(v: float) -> int:
    """The bucket ``v`` falls in (the computation :meth:`Stat.add` does inline)."""
    if v >= _LOWEST:
        if v < _HIGHEST:
            m, e = frexp(v)
            return e * _SUB_BUCKETS + int(m * (2 * _SUB_BUCKETS)) + _OFFSET
        return _OVERFLOW
    return 0


def _bucket_bounds(i: int) -> tuple[float, float]:
    """The values ``[low, high)`` of bucket ``i`` (the end buckets are unbounded)."""
    if i <= 0:
        return (-math.inf, _LOWEST)
    if i >= _OVERFLOW:
        return (_HIGHEST, math.inf)
    e, j = divmod(i - _OFFSET - _SUB_BUCKETS, _SUB_BUCKETS)
    j += _SUB_BUCKETS  # the bucket is [j / 128 * 2**e, (j + 1) / 128 * 2**e)
    return (ldexp(j, e - 7), ldexp(j + 1, e - 7))


def _representative(i: int) -> float:
    """The value a percentile falling in bucket ``i`` reports (before clamping)."""
    if i <= 0:
        return 0.0
    if i >= _OVERFLOW:
        return math.inf
    low, high = _bucket_bounds(i)
    return (low + high) / 2


_REPRESENTATIVE: tuple[float, ...] = tuple(_representative(i) for i in range(_NBUCKETS))

#: The percentiles Linkerd exports, in ten-thousandths (ranks are computed exactly).
_PERCENTILES = (5000, 9000, 9500, 9900, 9990, 9999)

#: The shared "no buckets yet" list of an empty window; never written to.
_NO_BUCKETS: list[int] = []


@dataclass(frozen=True, slots=True)
class StatSnapshot:
    """A histogram summary (Finagle's names).  All zero when ``count`` is 0."""

    count: int
    sum: float
    avg: float
    min: float
    max: float
    p50: float
    p90: float
    p95: float
    p99: float
    p9990: float
    p9999: float

    def items(self) -> Iterator[tuple[str, int | float]]:
        """``(suffix, value)`` pairs in export order: count, sum, avg, min, max, p50, ..."""
        yield "count", self.count
        yield "sum", self.sum
        yield "avg", self.avg
        yield "min", self.min
        yield "max", self.max
        yield "p50", self.p50
        yield "p90", self.p90
        yield "p95", self.p95
        yield "p99", self.p99
        yield "p9990", self.p9990
        yield "p9999", self.p9999


_EMPTY_SNAPSHOT = StatSnapshot(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


class Stat:
    """A histogram of float samples over the current and the previous time window.

    Windows are ``snapshot_interval`` seconds of ``clock`` long and start at ``start``
    (default: now) plus a whole number of intervals; a registry gives all its stats the
    same start so they rotate together.
    """

    __slots__ = (
        "_buckets",
        "_check_at",
        "_clock",
        "_count",
        "_interval",
        "_max",
        "_min",
        "_prev_buckets",
        "_prev_count",
        "_prev_max",
        "_prev_min",
        "_prev_sum",
        "_sum",
        "_window_end",
    )

    def __init__(
        self,
        *,
        snapshot_interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        start: float | None = None,
    ) -> None:
        if not snapshot_interval > 0:
            raise ValueError(f"snapshot_interval must be positive, not {snapshot_interval!r}")
        self._clock = clock
        self._interval = float(snapshot_interval)
        now = clock()
        if start is None:
            start = now
        self._window_end = start + self._interval * (math.floor((now - start) / self._interval) + 1)
        self._buckets = _NO_BUCKETS
        self._count = 0
        self._sum = 0.0
        self._min = math.inf
        self._max = -math.inf
        self._prev_buckets = _NO_BUCKETS
        self._prev_count = 0
        self._prev_sum = 0.0
        self._prev_min = math.inf
        self._prev_max = -math.inf
        # add() leaves its fast path when the clock reaches _check_at: at the end of the
        # window, or at once while the current window has no bucket list yet.
        self._check_at = -math.inf

    def add(self, v: float) -> None:
        """Record one sample (a NaN is ignored)."""
        if self._clock() >= self._check_at:
            self._advance(True)
        if v >= _LOWEST:
            if v < _HIGHEST:
                m, e = frexp(v)  # _bucket_index, inlined (64 == _SUB_BUCKETS)
                self._buckets[e * 64 + int(m * 128.0) + _OFFSET] += 1
            else:
                self._buckets[_OVERFLOW] += 1
        elif v != v:  # NaN
            return
        else:
            self._buckets[0] += 1
        self._count += 1
        self._sum += v
        if v < self._min:
            self._min = v
        if v > self._max:
            self._max = v

    def _advance(self, allocate: bool) -> None:
        """Rotate the windows if the current one is over; give it buckets if asked."""
        now = self._clock()
        if now >= self._window_end:
            elapsed = math.floor((now - self._window_end) / self._interval) + 1
            if elapsed == 1:
                self._prev_buckets = self._buckets
                self._prev_count = self._count
                self._prev_sum = self._sum
                self._prev_min = self._min
                self._prev_max = self._max
            else:
                self._prev_buckets = _NO_BUCKETS
                self._prev_count = 0
                self._prev_sum = 0.0
                self._prev_min = math.inf
                self._prev_max = -math.inf
            self._buckets = _NO_BUCKETS
            self._count = 0
            self._sum = 0.0
            self._min = math.inf
            self._max = -math.inf
            self._window_end += elapsed * self._interval
        if allocate and self._buckets is _NO_BUCKETS:
            self._buckets = [0] * _NBUCKETS
        self._check_at = -math.inf if self._buckets is _NO_BUCKETS else self._window_end

    def snapshot(self) -> StatSnapshot:
        """Summarize the samples of the current and the previous window."""
        if self._clock() >= self._window_end:
            self._advance(False)
        count = self._count + self._prev_count
        if count == 0:
            return _EMPTY_SNAPSHOT
        lo = float(min(self._min, self._prev_min))
        hi = float(max(self._max, self._prev_max))
        first, last = _bucket_index(lo), _bucket_index(hi) + 1
        cur, prev = self._buckets, self._prev_buckets
        if cur is _NO_BUCKETS:
            counts = prev[first:last]
        elif prev is _NO_BUCKETS:
            counts = cur[first:last]
        else:
            counts = [a + b for a, b in zip(cur[first:last], prev[first:last], strict=True)]
        # The smallest value with at least p of the samples at or below it: rank ceil(p*n).
        ranks = [-(-count * p // 10000) for p in _PERCENTILES]
        values: list[float] = []
        seen = 0
        for offset, n in enumerate(counts):
            if not n:
                continue
            seen += n
            while seen >= ranks[len(values)]:
                rep = _REPRESENTATIVE[first + offset]
                values.append(lo if rep < lo else hi if rep > hi else rep)
                if len(values) == len(ranks):
                    break
            if len(values) == len(ranks):
                break
        total = self._sum + self._prev_sum
        return StatSnapshot(count, total, total / count, lo, hi, *values)

    def __repr__(self) -> str:
        return f"Stat(count={self._count + self._prev_count})"


# --- the tree -------------------------------------------------------------------

_Metric = Counter | Gauge | Stat

_LABEL_KIND = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
#: Label names the Prometheus export uses itself.
_RESERVED_KINDS = frozenset({"quantile", "exception"})


def _split(names: tuple[str, ...]) -> list[str]:
    segments: list[str] = []
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"metric names are strings, not {type(name).__name__}")
        parts = name.split("/")
        if not all(parts):
            raise ValueError(f"empty path segment in metric name {name!r}")
        segments.extend(parts)
    return segments


class Scope:
    """A node of the metrics tree, and the handle to create metrics below it.

    Scopes come from :class:`Metrics` and from other scopes; the same path gives the same
    scope object.
    """

    __slots__ = ("_children", "_is_label", "_metric", "_name", "_parent", "_root")

    def __init__(self, name: str, parent: Scope | None, root: Metrics, is_label: bool) -> None:
        self._name = name
        self._parent = parent
        self._root = root
        self._is_label = is_label
        self._children: dict[str, Scope] = {}
        self._metric: _Metric | None = None

    # -- navigation -----------------------------------------------------------

    def _child(self, name: str, is_label: bool) -> Scope:
        child = self._children.get(name)
        if child is None:
            child = Scope(name, self, self._root, is_label)
            self._children[name] = child
        elif child._is_label != is_label:
            what = "a label" if child._is_label else "a plain scope"
            raise ValueError(f"{child.path!r} is already {what}")
        return child

    def scope(self, *names: str) -> Scope:
        """The scope at the plain path ``names`` below this one (created when new)."""
        node = self
        for segment in _split(names):
            node = node._child(segment, False)
        return node

    def labeled(self, kind: str, label: str) -> Scope:
        """The scope ``kind/label`` below this one; Prometheus sees ``kind="label"``.

        ``kind`` must be a Prometheus label name (and not ``quantile`` or
        ``exception``); ``label`` is any non-empty string and stays one path element.
        """
        if not isinstance(kind, str) or not _LABEL_KIND.match(kind) or kind.startswith("__"):
            raise ValueError(f"label kind must match [A-Za-z_][A-Za-z0-9_]*, not {kind!r}")
        if kind in _RESERVED_KINDS:
            raise ValueError(f"label kind {kind!r} is reserved for the Prometheus export")
        if not isinstance(label, str) or not label:
            raise ValueError(f"a label must be a non-empty string, not {label!r}")
        return self._child(kind, False)._child(label, True)

    @property
    def path(self) -> str:
        """The flat name of this scope: its path elements joined with ``/``."""
        names: list[str] = []
        node: Scope | None = self
        while node is not None and node._parent is not None:
            names.append(node._name)
            node = node._parent
        return "/".join(reversed(names))

    # -- metrics --------------------------------------------------------------

    def _leaf(self, names: tuple[str, ...]) -> Scope:
        if not names:
            raise TypeError("a metric needs a name")
        return self.scope(*names)

    def counter(self, *names: str) -> Counter:
        """The counter at ``names`` below this scope (created when new)."""
        node = self._leaf(names)
        metric = node._metric
        if metric is None:
            metric = node._metric = Counter()
        elif not isinstance(metric, Counter):
            raise ValueError(f"{node.path!r} is a {type(metric).__name__}, not a Counter")
        return metric

    def gauge(self, *names: str, fn: Callable[[], float] | None = None) -> Gauge:
        """The gauge at ``names`` below this scope (created when new).

        With ``fn``, the gauge reads its value from ``fn``; asking again with another
        ``fn`` gives the same gauge, now reading from the new function.
        """
        node = self._leaf(names)
        metric = node._metric
        if metric is None:
            metric = node._metric = Gauge(fn)
        elif not isinstance(metric, Gauge):
            raise ValueError(f"{node.path!r} is a {type(metric).__name__}, not a Gauge")
        elif fn is not None:
            metric._fn = fn
        return metric

    def stat(self, *names: str) -> Stat:
        """The histogram at ``names`` below this scope (created when new)."""
        node = self._leaf(names)
        metric = node._metric
        if metric is None:
            root = self._root
            metric = node._metric = Stat(
                snapshot_interval=root._interval, clock=root._clock, start=root._start
            )
        elif not isinstance(metric, Stat):
            raise ValueError(f"{node.path!r} is a {type(metric).__name__}, not a Stat")
        return metric

    def remove(self) -> None:
        """Drop this scope and every metric below it from the registry.

        Metric objects already handed out keep working but are no longer exported, and
        this scope object is detached: ask the parent again for a fresh one.  Removing
        the root empties the registry.
        """
        parent = self._parent
        if parent is None:
            self._children.clear()
            self._metric = None
        elif parent._children.get(self._name) is self:
            del parent._children[self._name]

    def __repr__(self) -> str:
        return f"<Scope {self.path or '/'!r}>"


class Metrics(Scope):
    """The root of the metrics tree, with the three export formats."""

    __slots__ = ("_clock", "_interval", "_start")

    def __init__(
        self,
        *,
        snapshot_interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not snapshot_interval > 0:
            raise ValueError(f"snapshot_interval must be positive, not {snapshot_interval!r}")
        super().__init__("", None, self, False)
        self._interval = float(snapshot_interval)
        self._clock = clock
        self._start = clock()

    # -- /admin/metrics.json --------------------------------------------------

    def flat(self) -> dict[str, int | float]:
        """Every metric by flat name (``/admin/metrics.json``)."""
        out: dict[str, int | float] = {}
        for name, metric in _walk_flat(self, ""):
            if isinstance(metric, Counter):
                out[name] = metric.value
            elif isinstance(metric, Gauge):
                value = _read_gauge(metric)
                if value is not None:
                    out[name] = value
            else:
                snap = metric.snapshot()
                if snap.count == 0:
                    out[f"{name}.count"] = 0
                else:
                    for suffix, v in snap.items():
                        out[f"{name}.{suffix}"] = v
        return out

    def counter_names(self) -> set[str]:
        """The flat names of every counter (as opposed to gauges and stats)."""
        return {name for name, metric in _walk_flat(self, "") if isinstance(metric, Counter)}

    def tree(self) -> dict[str, Any]:
        """Every metric in nested form (``/admin/metrics.json?tree=1``)."""
        return _tree(self)

    # -- /admin/metrics/prometheus --------------------------------------------

    def prometheus(self, prefix: str = "") -> str:
        """Every metric in the Prometheus text format, each name led by ``prefix``."""
        from prometheus_client.exposition import generate_latest
        from prometheus_client.metrics_core import Metric
        from prometheus_client.registry import Collector, CollectorRegistry

        families = _PromFamilies(prefix, Metric)
        families.walk(self, [], {}, None)

        class _Collector(Collector):
            def collect(self) -> Iterator[PromMetric]:
                return iter(families.families.values())

        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector())
        return generate_latest(registry).decode("utf-8")


# --- exports --------------------------------------------------------------------


def _read_gauge(gauge: Gauge) -> float | None:
    """The gauge's value, or None when its function fails (the gauge is then skipped)."""
    try:
        return gauge.value
    except Exception:
        return None


def _walk_flat(node: Scope, name: str) -> Iterator[tuple[str, _Metric]]:
    if node._metric is not None and name:
        yield name, node._metric
    for child in list(node._children.values()):
        yield from _walk_flat(child, f"{name}/{child._name}" if name else child._name)


def _tree(node: Scope) -> dict[str, Any]:
    out: dict[str, Any] = {}
    metric = node._metric
    if isinstance(metric, Counter):
        out["counter"] = metric.value
    elif isinstance(metric, Gauge):
        value = _read_gauge(metric)
        if value is not None:
            out["gauge"] = value
    elif isinstance(metric, Stat):
        snap = metric.snapshot()
        if snap.count == 0:
            out["stat.count"] = 0
        else:
            for suffix, v in snap.items():
                out[f"stat.{suffix}"] = v
    for child in list(node._children.values()):
        sub = _tree(child)
        if sub:
            out[child._name] = sub
    return out


_PROM_DISALLOWED = re.compile(r"[^A-Za-z0-9:]")
_QUANTILES = ("0", "0.5", "0.9", "0.95", "0.99", "0.999", "0.9999", "1")


def _prom_name(name: str) -> str:
    name = _PROM_DISALLOWED.sub("_", name)
    return "_" + name if name[:1].isdigit() else name


def _label_value(v: str) -> str:
    # prometheus_client escapes \ " and newline; only text that is not UTF-8 is left.
    return v if v.isascii() else v.encode("utf-8", "backslashreplace").decode("utf-8")


class _PromFamilies:
    """Turns the tree into Prometheus metric families, one family per name.

    The first metric to claim a family name sets its type; a later metric of another
    type under the same name, and a later sample with a name and labels already
    written, are left out (both come only from names that escape alike).
    """

    def __init__(self, prefix: str, metric_class: type[PromMetric]) -> None:
        self.prefix = prefix
        self.metric_class = metric_class
        self.families: dict[str, PromMetric] = {}
        self.seen: set[tuple[str, frozenset[tuple[str, str]]]] = set()

    def walk(self, node: Scope, parts: list[str], labels: dict[str, str], exn: str | None) -> None:
        """Export ``node`` and its subtree.

        ``parts`` are the name elements so far, ``labels`` the labels so far, and
        ``exn`` is None, or the name element that stands for ``failures``/``exn`` when
        the elements below go into the ``exception`` label.
        """
        if node._metric is not None and parts:
            self.add(node._metric, parts, labels)
        for child in list(node._children.values()):
            name = child._name
            if exn is not None:
                sub = dict(labels)
                sub["exception"] = f"{sub['exception']}:{_label_value(name)}"
                self.walk(child, parts, sub, exn)
            elif child._is_label and node._name not in labels:
                self.walk(child, parts, {**labels, node._name: _label_value(name)}, None)
            elif (
                not child._is_label
                and not node._is_label
                and node._name in ("failures", "exn")
                and "exception" not in labels
                and parts
            ):
                # failures/<exception...> -> failures{exception="a:b"}; exn/... -> exceptions
                elems = parts[:-1] + ["exceptions" if node._name == "exn" else "failures"]
                self.walk(child, elems, {**labels, "exception": _label_value(name)}, elems[-1])
            else:
                self.walk(child, [*parts, name], labels, None)

    def family(self, name: str, typ: str) -> PromMetric | None:
        """The family ``name``, created when new; None if it has another type."""
        family = self.families.get(name)
        if family is None:
            family = self.families[name] = self.metric_class(name, "", typ)
        elif family.type != typ:
            return None
        return family

    def first(self, name: str, labels: frozenset[tuple[str, str]]) -> bool:
        """Whether no sample ``name`` with these labels was written yet (and note it)."""
        key = (name, labels)
        if key in self.seen:
            return False
        self.seen.add(key)
        return True

    def add(self, metric: _Metric, parts: list[str], labels: dict[str, str]) -> None:
        name = _prom_name(self.prefix + ":".join(parts))
        key = frozenset(labels.items())
        if isinstance(metric, Counter):
            # untyped, as Linkerd writes them: a "counter" family would be renamed
            # <name>_total, and dashboards built on Linkerd query the bare names
            family = self.family(name, "unknown")
            if family is not None and self.first(name, key):
                family.add_sample(name, labels, metric.value)
        elif isinstance(metric, Gauge):
            value = _read_gauge(metric)
            if value is None:
                return
            family = self.family(name, "gauge")
            if family is not None and self.first(name, key):
                family.add_sample(name, labels, value)
        else:
            snap = metric.snapshot()
            if snap.count == 0:
                return  # as Linkerd: an empty histogram is not exported
            avg_name = name + "_avg"
            known = self.families.get(avg_name)
            if known is not None and known.type != "gauge":
                return
            summary = self.family(name, "summary")
            if summary is None or not self.first(name, key):
                return
            summary.add_sample(name + "_count", labels, snap.count)
            summary.add_sample(name + "_sum", labels, snap.sum)
            values = (snap.min, snap.p50, snap.p90, snap.p95, snap.p99, snap.p9990, snap.p9999)
            for q, v in zip(_QUANTILES, (*values, snap.max), strict=True):
                summary.add_sample(name, {**labels, "quantile": q}, v)
            avg = self.family(avg_name, "gauge")
            if avg is not None and self.first(avg_name, key):
                avg.add_sample(avg_name, labels, snap.avg)
