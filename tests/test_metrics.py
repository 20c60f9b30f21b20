"""The metrics registry: names, histograms and windows, removal, and the three exports."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.metrics_core import Metric as PromMetric
from prometheus_client.parser import text_string_to_metric_families

from linkpy import metrics as metrics_module
from linkpy.metrics import Counter, Counters, Gauge, Metrics, Scope, Stat, StatSnapshot

ROOT = Path(__file__).resolve().parent.parent


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def router_metrics(m: Metrics) -> None:
    """Some of the metrics a router keeps, Linkerd's names."""
    rt = m.labeled("rt", "outgoing")
    srv = rt.labeled("server", "127.0.0.1/4140")
    srv.counter("requests").incr(3)
    srv.counter("success").incr(2)
    srv.counter("failures").incr()
    srv.scope("failures").counter("connect_failed").incr()
    client = rt.labeled("client", "#/io.l5d.fs/users")
    client.counter("requests").incr(5)
    client.labeled("service", "svc/users").counter("success").incr(4)
    rt.labeled("service", "svc/users").stat("request_latency_ms").add(12.5)


def parse(text: str) -> dict[str, PromMetric]:
    families: dict[str, PromMetric] = {}
    for family in text_string_to_metric_families(text):
        assert family.name not in families, f"family {family.name} split in two"
        families[family.name] = family
    return families


def samples(family: PromMetric) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value for s in family.samples}


def true_percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    rank = max(1, math.ceil(p * len(ordered) - 1e-9))
    return ordered[rank - 1]


# --- metrics and scopes -------------------------------------------------------------


def test_counter() -> None:
    c = Counter()
    assert c.value == 0
    c.incr()
    c.incr(4)
    assert c.value == 5


def test_counters_by_status_are_the_scopes_counters() -> None:
    m = Metrics()
    status = m.labeled("rt", "outgoing").scope("status")
    statuses = Counters(status)
    statuses[200].incr()
    statuses[200].incr()
    statuses[503].incr()
    assert statuses[200] is status.counter("200")
    assert m.flat() == {"rt/outgoing/status/200": 2, "rt/outgoing/status/503": 1}


def test_gauge_set_and_fn() -> None:
    g = Gauge()
    assert g.value == 0.0
    g.set(2.5)
    assert g.value == 2.5
    box = [1]
    f = Gauge(lambda: box[0])
    assert f.value == 1.0
    assert isinstance(f.value, float)
    box[0] = 7
    assert f.value == 7.0
    with pytest.raises(TypeError):
        f.set(3.0)


def test_get_or_create_gives_the_same_object() -> None:
    m = Metrics()
    c = m.scope("a", "b").counter("c")
    assert m.counter("a", "b", "c") is c
    assert m.scope("a").scope("b").counter("c") is c
    assert m.counter("a/b/c") is c
    assert m.scope("a/b") is m.scope("a", "b")
    assert m.labeled("rt", "x") is m.labeled("rt", "x")
    assert m.stat("s") is m.stat("s")
    assert m.gauge("g") is m.gauge("g")
    assert m.scope() is m


def test_flat_names() -> None:
    m = Metrics()
    router_metrics(m)
    m.scope("jvm").gauge("num_cpus", fn=lambda: 4)
    flat = m.flat()
    assert flat["rt/outgoing/server/127.0.0.1/4140/requests"] == 3
    assert flat["rt/outgoing/server/127.0.0.1/4140/failures"] == 1
    assert flat["rt/outgoing/server/127.0.0.1/4140/failures/connect_failed"] == 1
    assert flat["rt/outgoing/client/#/io.l5d.fs/users/requests"] == 5
    assert flat["rt/outgoing/client/#/io.l5d.fs/users/service/svc/users/success"] == 4
    assert flat["jvm/num_cpus"] == 4.0
    stat = "rt/outgoing/service/svc/users/request_latency_ms"
    assert [k[len(stat) + 1 :] for k in flat if k.startswith(stat)] == [
        "count",
        "sum",
        "avg",
        "min",
        "max",
        "p50",
        "p90",
        "p95",
        "p99",
        "p9990",
        "p9999",
    ]
    assert flat[f"{stat}.count"] == 1
    assert flat[f"{stat}.sum"] == 12.5
    assert flat[f"{stat}.min"] == flat[f"{stat}.max"] == flat[f"{stat}.p99"] == 12.5


def test_flat_values_follow_updates() -> None:
    m = Metrics()
    c = m.counter("c")
    g = m.gauge("g")
    assert m.flat() == {"c": 0, "g": 0.0}
    c.incr()
    g.set(-1.5)
    assert m.flat() == {"c": 1, "g": -1.5}


def test_empty_stat_exports_only_its_count() -> None:
    m = Metrics()
    m.stat("a", "lat")
    assert m.flat() == {"a/lat.count": 0}
    assert m.tree() == {"a": {"lat": {"stat.count": 0}}}
    assert "lat" not in m.prometheus()
    assert m.stat("a", "lat").snapshot() == StatSnapshot(0, *[0.0] * 10)


def test_tree_shape() -> None:
    m = Metrics()
    srv = m.labeled("rt", "outgoing").labeled("server", "127.0.0.1/4140")
    srv.counter("requests").incr(3)
    srv.counter("failures").incr(2)
    srv.scope("failures").counter("connect_failed").incr()
    srv.gauge("connections").set(4)
    srv.stat("request_latency_ms").add(5.0)
    m.scope("empty", "scope")  # no metric below: not shown
    stat = {
        "stat.count": 1,
        "stat.sum": 5.0,
        "stat.avg": 5.0,
        "stat.min": 5.0,
        "stat.max": 5.0,
        "stat.p50": 5.0,
        "stat.p90": 5.0,
        "stat.p95": 5.0,
        "stat.p99": 5.0,
        "stat.p9990": 5.0,
        "stat.p9999": 5.0,
    }
    assert m.tree() == {
        "rt": {
            "outgoing": {
                "server": {
                    "127.0.0.1/4140": {
                        "requests": {"counter": 3},
                        "failures": {"counter": 2, "connect_failed": {"counter": 1}},
                        "connections": {"gauge": 4.0},
                        "request_latency_ms": stat,
                    }
                }
            }
        }
    }


def test_a_name_has_one_kind_of_metric() -> None:
    m = Metrics()
    m.counter("x")
    with pytest.raises(ValueError, match="not a Gauge"):
        m.gauge("x")
    with pytest.raises(ValueError, match="not a Stat"):
        m.stat("x")
    m.stat("y")
    with pytest.raises(ValueError, match="not a Counter"):
        m.counter("y")


def test_a_label_and_a_plain_scope_do_not_share_a_node() -> None:
    m = Metrics()
    m.labeled("rt", "outgoing")
    with pytest.raises(ValueError, match="already a label"):
        m.scope("rt", "outgoing")
    m.scope("a", "b")
    with pytest.raises(ValueError, match="already a plain scope"):
        m.labeled("a", "b")


@pytest.mark.parametrize("kind", ["", "a-b", "1x", "a/b", "__x", "quantile", "exception"])
def test_bad_label_kinds(kind: str) -> None:
    with pytest.raises(ValueError):
        Metrics().labeled(kind, "x")


def test_bad_names() -> None:
    m = Metrics()
    with pytest.raises(ValueError):
        m.labeled("rt", "")
    for bad in ("", "a//b", "/a", "a/"):
        with pytest.raises(ValueError):
            m.counter(bad)
    with pytest.raises(TypeError):
        m.counter()


def test_gauge_fn_is_replaced_by_a_new_registration() -> None:
    m = Metrics()
    g = m.gauge("pool", "size", fn=lambda: 1)
    assert m.gauge("pool", "size", fn=lambda: 2) is g
    assert g.value == 2.0
    assert m.gauge("pool", "size") is g
    assert g.value == 2.0


def test_a_failing_gauge_is_left_out_of_every_export() -> None:
    m = Metrics()

    def broken() -> float:
        raise RuntimeError("gone")

    m.gauge("bad", fn=broken)
    m.counter("good").incr()
    assert m.flat() == {"good": 1}
    assert m.tree() == {"good": {"counter": 1}}
    assert set(parse(m.prometheus())) == {"good"}


def test_scope_path_and_repr() -> None:
    m = Metrics()
    s = m.labeled("rt", "outgoing").labeled("client", "$/inet/127.1/8080")
    assert s.path == "rt/outgoing/client/$/inet/127.1/8080"
    assert "rt/outgoing/client" in repr(s)
    assert m.path == ""
    assert isinstance(s, Scope)


# --- remove ---------------------------------------------------------------------


def test_remove_drops_the_subtree_from_every_export() -> None:
    m = Metrics()
    router_metrics(m)
    client = m.labeled("rt", "outgoing").labeled("client", "#/io.l5d.fs/users")
    old = client.counter("requests")
    client.remove()
    assert not any("client" in k for k in m.flat())
    assert "client" not in m.tree()["rt"]["outgoing"]
    assert not any(name.startswith("rt:client") for name in parse(m.prometheus()))
    # The other metrics stay.
    assert m.flat()["rt/outgoing/server/127.0.0.1/4140/requests"] == 3
    # A handed-out counter still counts, unseen; the same path now starts afresh.
    old.incr()
    fresh = m.labeled("rt", "outgoing").labeled("client", "#/io.l5d.fs/users")
    assert fresh is not client
    assert fresh.counter("requests") is not old
    assert m.flat()["rt/outgoing/client/#/io.l5d.fs/users/requests"] == 0
    # Removing the stale scope again leaves the fresh one alone.
    client.remove()
    assert "rt/outgoing/client/#/io.l5d.fs/users/requests" in m.flat()


def test_remove_a_plain_scope_and_the_root() -> None:
    m = Metrics()
    m.scope("a", "b").counter("c").incr()
    m.scope("a").counter("d").incr()
    m.scope("a", "b").remove()
    assert m.flat() == {"a/d": 1}
    m.remove()
    assert m.flat() == {}
    assert m.tree() == {}
    assert m.prometheus() == ""
    m.counter("again").incr()
    assert m.flat() == {"again": 1}


# --- histograms -----------------------------------------------------------------


def test_percentiles_of_1_to_1000() -> None:
    s = Stat()
    for i in range(1, 1001):
        s.add(float(i))
    snap = s.snapshot()
    assert snap.count == 1000
    assert snap.sum == 500500.0
    assert snap.avg == 500.5
    assert snap.min == 1.0
    assert snap.max == 1000.0
    expected = {"p50": 500, "p90": 900, "p95": 950, "p99": 990, "p9990": 999, "p9999": 1000}
    for name, true in expected.items():
        assert getattr(snap, name) == pytest.approx(true, rel=1 / 128), name


def test_percentiles_of_a_skewed_set() -> None:
    # 990 fast requests and 10 slow ones: p99 is fast, p9990 slow.
    s = Stat()
    values = [0.25] * 990 + [4000.0] * 10
    for v in values:
        s.add(v)
    snap = s.snapshot()
    assert snap.p50 == pytest.approx(0.25, rel=1 / 128)
    assert snap.p99 == pytest.approx(0.25, rel=1 / 128)
    assert snap.p9990 == 4000.0  # clamped to the exact max
    assert snap.min == 0.25
    assert snap.max == 4000.0


@given(
    st.lists(
        st.floats(min_value=0.0, max_value=1e10, allow_nan=False, allow_infinity=False),
        min_size=1,
        max_size=300,
    )
)
def test_percentiles_are_within_bucket_precision(values: list[float]) -> None:
    s = Stat()
    for v in values:
        s.add(v)
    snap = s.snapshot()
    assert snap.count == len(values)
    assert snap.min == min(values)
    assert snap.max == max(values)
    assert snap.sum == pytest.approx(math.fsum(values))
    for name, p in [
        ("p50", 0.5),
        ("p90", 0.9),
        ("p95", 0.95),
        ("p99", 0.99),
        ("p9990", 0.999),
        ("p9999", 0.9999),
    ]:
        true = true_percentile(values, p)
        # Half a bucket (at most 1/128 of the value), or the width of the lowest bucket.
        assert abs(getattr(snap, name) - true) <= max(true / 128, 2.0**-10), (name, true)


@given(st.floats(min_value=2.0**-10, max_value=2.0**36, exclude_max=True))
def test_buckets_are_two_significant_digits_wide(v: float) -> None:
    i = metrics_module._bucket_index(v)
    low, high = metrics_module._bucket_bounds(i)
    assert low <= v < high
    assert high - low <= low / 64
    assert 0 < i < metrics_module._OVERFLOW


@pytest.mark.parametrize(
    "v", [0.0, -3.0, 2.0**-11, 2.0**-10, 1.0, 1.5, 999.999, 2.0**36 - 1, 2.0**36, math.inf]
)
def test_add_uses_the_bucket_index(v: float) -> None:
    s = Stat()
    s.add(v)
    buckets = s._buckets
    assert buckets[metrics_module._bucket_index(v)] == 1
    assert sum(buckets) == 1


def test_bucket_bounds_are_contiguous() -> None:
    last = metrics_module._OVERFLOW
    for i in range(last):
        assert metrics_module._bucket_bounds(i)[1] == metrics_module._bucket_bounds(i + 1)[0]
    assert metrics_module._bucket_bounds(1)[0] == 2.0**-10
    assert metrics_module._bucket_bounds(last)[0] == 2.0**36


def test_out_of_range_samples() -> None:
    s = Stat()
    s.add(math.nan)  # ignored
    assert s.snapshot().count == 0
    s.add(0.0)
    s.add(0.0)
    s.add(0.0)
    s.add(1e12)
    snap = s.snapshot()
    assert snap.count == 4
    assert snap.p50 == 0.0
    assert snap.p9999 == 1e12  # the overflow bucket reports the exact max
    assert snap.max == 1e12


# --- windows --------------------------------------------------------------------


def test_windows_rotate_on_the_clock() -> None:
    clock = FakeClock(1000.0)
    s = Stat(snapshot_interval=60.0, clock=clock)
    s.add(1.0)
    assert s.snapshot().count == 1
    clock.now = 1059.9
    assert s.snapshot().count == 1
    clock.now = 1060.0  # the first window is now the previous one: still shown
    assert s.snapshot().count == 1
    s.add(3.0)
    snap = s.snapshot()
    assert (snap.count, snap.sum, snap.min, snap.max) == (2, 4.0, 1.0, 3.0)
    clock.now = 1120.0  # the first window is gone
    snap = s.snapshot()
    assert (snap.count, snap.sum, snap.min, snap.max, snap.p50) == (1, 3.0, 3.0, 3.0, 3.0)
    clock.now = 1180.0
    assert s.snapshot().count == 0


def test_a_long_gap_drops_both_windows() -> None:
    clock = FakeClock(0.0)
    s = Stat(snapshot_interval=10.0, clock=clock)
    s.add(5.0)
    clock.now = 25.0  # two windows later: the sample is older than the previous window
    s.add(7.0)
    snap = s.snapshot()
    assert (snap.count, snap.min) == (1, 7.0)
    clock.now = 30.0  # one window later
    assert s.snapshot().count == 1


def test_rotation_frees_the_buckets_of_an_idle_stat() -> None:
    clock = FakeClock(0.0)
    s = Stat(snapshot_interval=10.0, clock=clock)
    assert s._buckets is metrics_module._NO_BUCKETS
    s.add(1.0)
    assert s._buckets is not metrics_module._NO_BUCKETS
    clock.now = 20.0
    assert s.snapshot().count == 0
    assert s._buckets is metrics_module._NO_BUCKETS
    assert s._prev_buckets is metrics_module._NO_BUCKETS
    s.add(2.0)
    assert s.snapshot().count == 1


def test_registry_stats_share_window_boundaries() -> None:
    clock = FakeClock(100.0)
    m = Metrics(snapshot_interval=60.0, clock=clock)
    clock.now = 150.0
    late = m.stat("late")  # created mid-window: its window still ends at 160
    early = m.stat("early")
    late.add(1.0)
    early.add(1.0)
    clock.now = 160.0
    late.add(2.0)
    early.add(2.0)
    clock.now = 220.0
    assert late.snapshot().count == early.snapshot().count == 1


def test_snapshot_interval_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Metrics(snapshot_interval=0)
    with pytest.raises(ValueError):
        Stat(snapshot_interval=-1.0)


# --- Prometheus -----------------------------------------------------------------


def test_prometheus_names_and_labels() -> None:
    m = Metrics()
    router_metrics(m)
    text = m.prometheus()
    families = parse(text)
    srv = {"rt": "outgoing", "server": "127.0.0.1/4140"}

    requests = families["rt:server:requests"]
    assert requests.type == "unknown"  # untyped, as Linkerd
    assert samples(requests) == {("rt:server:requests", frozenset(srv.items())): 3.0}

    failures = families["rt:server:failures"]
    assert samples(failures) == {
        ("rt:server:failures", frozenset(srv.items())): 1.0,
        (
            "rt:server:failures",
            frozenset({**srv, "exception": "connect_failed"}.items()),
        ): 1.0,
    }
    assert text.count("# TYPE rt:server:failures ") == 1

    client = {"rt": "outgoing", "client": "#/io.l5d.fs/users"}
    assert samples(families["rt:client:requests"]) == {
        ("rt:client:requests", frozenset(client.items())): 5.0
    }
    assert samples(families["rt:client:service:success"]) == {
        (
            "rt:client:service:success",
            frozenset({**client, "service": "svc/users"}.items()),
        ): 4.0
    }

    latency = families["rt:service:request_latency_ms"]
    assert latency.type == "summary"
    svc = {"rt": "outgoing", "service": "svc/users"}
    got = samples(latency)
    assert got[("rt:service:request_latency_ms_count", frozenset(svc.items()))] == 1.0
    assert got[("rt:service:request_latency_ms_sum", frozenset(svc.items()))] == 12.5
    quantiles = {s.labels["quantile"]: s.value for s in latency.samples if "quantile" in s.labels}
    assert quantiles == dict.fromkeys(
        ["0", "0.5", "0.9", "0.95", "0.99", "0.999", "0.9999", "1"], 12.5
    )
    avg = families["rt:service:request_latency_ms_avg"]
    assert avg.type == "gauge"
    assert samples(avg) == {("rt:service:request_latency_ms_avg", frozenset(svc.items())): 12.5}


def test_prometheus_summary_quantiles() -> None:
    m = Metrics()
    s = m.labeled("rt", "r").stat("lat")
    for i in range(1, 1001):
        s.add(float(i))
    fam = parse(m.prometheus())["rt:lat"]
    q = {s.labels["quantile"]: s.value for s in fam.samples if "quantile" in s.labels}
    assert q["0"] == 1.0
    assert q["1"] == 1000.0
    assert q["0.5"] == pytest.approx(500, rel=1 / 128)
    assert q["0.99"] == pytest.approx(990, rel=1 / 128)
    assert {s.name: s.value for s in fam.samples if "quantile" not in s.labels} == {
        "rt:lat_count": 1000.0,
        "rt:lat_sum": 500500.0,
    }


def test_prometheus_gauge() -> None:
    m = Metrics()
    m.labeled("rt", "r").labeled("client", "c").gauge("connections", fn=lambda: 3)
    fam = parse(m.prometheus())["rt:client:connections"]
    assert fam.type == "gauge"
    assert samples(fam) == {
        ("rt:client:connections", frozenset({"rt": "r", "client": "c"}.items())): 3.0
    }


@pytest.mark.parametrize(
    "label",
    [
        "#/io.l5d.fs/users",
        "$/inet/127.1/8080",
        "svc/users",
        'a "quoted" name',
        "back\\slash",
        "new\nline",
        "ünïcode/☃",
        "{curly}=,",
    ],
)
def test_prometheus_label_values_round_trip(label: str) -> None:
    m = Metrics()
    m.labeled("rt", "outgoing").labeled("client", label).counter("requests").incr(2)
    fam = parse(m.prometheus())["rt:client:requests"]
    assert samples(fam) == {
        ("rt:client:requests", frozenset({"rt": "outgoing", "client": label}.items())): 2.0
    }


def test_prometheus_label_with_lone_surrogate_does_not_break_the_export() -> None:
    m = Metrics()
    m.labeled("client", "bad\udcff").counter("requests").incr()
    fam = parse(m.prometheus())["client:requests"]
    assert [s.labels["client"] for s in fam.samples] == ["bad\\udcff"]


def test_prometheus_prefix() -> None:
    m = Metrics()
    router_metrics(m)
    families = parse(m.prometheus(prefix="linkerd_"))
    assert families
    assert all(name.startswith("linkerd_rt:") for name in families)
    assert "linkerd_rt:server:requests" in families
    assert "linkerd_rt:service:request_latency_ms_avg" in families
    assert "my_prefix:rt:server:requests" in parse(m.prometheus(prefix="my-prefix:"))


def test_prometheus_name_escaping() -> None:
    m = Metrics()
    m.labeled("rt", "r").scope("status").counter("200").incr()
    m.scope("namer", "io.l5d.fs").counter("lookups").incr()
    m.counter("5xx").incr()
    families = parse(m.prometheus())
    assert set(families) == {"rt:status:200", "namer:io_l5d_fs:lookups", "_5xx"}


def test_nested_failures_join_with_colons_and_exn_becomes_exceptions() -> None:
    m = Metrics()
    srv = m.labeled("rt", "r").labeled("server", "s")
    srv.scope("failures", "com.twitter.finagle.ChannelWriteException").counter(
        "java.net.ConnectException"
    ).incr()
    srv.scope("exn").counter("java.io.IOException").incr(2)
    srv.counter("exn").incr(5)
    families = parse(m.prometheus())
    base = {"rt": "r", "server": "s"}
    assert samples(families["rt:server:failures"]) == {
        (
            "rt:server:failures",
            frozenset(
                {
                    **base,
                    "exception": "com.twitter.finagle.ChannelWriteException"
                    ":java.net.ConnectException",
                }.items()
            ),
        ): 1.0
    }
    assert samples(families["rt:server:exceptions"]) == {
        (
            "rt:server:exceptions",
            frozenset({**base, "exception": "java.io.IOException"}.items()),
        ): 2.0
    }
    assert samples(families["rt:server:exn"]) == {("rt:server:exn", frozenset(base.items())): 5.0}


def test_same_family_from_many_scopes_is_one_family() -> None:
    m = Metrics()
    for router in ("incoming", "outgoing"):
        rt = m.labeled("rt", router)
        for svc in ("svc/a", "svc/b"):
            rt.labeled("service", svc).counter("requests").incr()
            rt.labeled("service", svc).stat("request_latency_ms").add(1.0)
        rt.counter("requests").incr()
    text = m.prometheus()
    families = parse(text)
    assert len(families["rt:service:requests"].samples) == 4
    assert len(families["rt:requests"].samples) == 2
    # Eight quantiles, _count and _sum for each of the four label sets.
    assert len(families["rt:service:request_latency_ms"].samples) == 4 * 10
    for name in ("rt:service:requests", "rt:service:request_latency_ms"):
        assert text.count(f"# TYPE {name} ") == 1


def test_a_repeated_label_kind_becomes_a_name_element() -> None:
    m = Metrics()
    m.labeled("service", "a").labeled("service", "svc/b").counter("requests").incr()
    fam = parse(m.prometheus())["service:service:svc_b:requests"]
    assert [s.labels for s in fam.samples] == [{"service": "a"}]


def test_names_that_escape_alike_export_once() -> None:
    m = Metrics()
    m.counter("a.b").incr(1)
    m.counter("a_b").incr(2)
    m.scope("z").counter("q").incr()
    m.labeled("z", "1").gauge("q").set(1)  # family "z:q" too, but a counter claimed it
    families = parse(m.prometheus())
    assert samples(families["a_b"]) == {("a_b", frozenset()): 1.0}
    assert families["z:q"].type == "unknown"
    assert samples(families["z:q"]) == {("z:q", frozenset()): 1.0}


def test_prometheus_text_is_prometheus_clients() -> None:
    m = Metrics()
    m.labeled("rt", "r").counter("requests").incr(3)
    assert m.prometheus() == (
        '# HELP rt:requests \n# TYPE rt:requests untyped\nrt:requests{rt="r"} 3.0\n'
    )


# --- purity ---------------------------------------------------------------------


def test_importing_metrics_loads_no_io_module() -> None:
    code = (
        "import sys, linkpy.metrics; "
        "bad = [m for m in ('trio', 'socket', 'ssl', 'threading', 'asyncio', "
        "'prometheus_client') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
