"""Bad input and faults: each is logged and counted, the last good answer stays, and the
namer recovers when Marathon does."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import attrs
import pytest
import trio

from linkpy.activity import Var
from linkpy.metrics import Scope
from linkpy.naming import Name, NameTree, Path, State
from linkpy.testing import FakeMarathon
from linkpy.testing.fakes._http import Response
from linkpy_marathon import MarathonNamer

from .conftest import StartNamer, addrs, eventually, follow

GOOD = {("127.0.0.1", 18001)}
LATER = {("127.0.0.1", 18001), ("127.0.0.1", 18002)}
EVENTS_ONLY = {"ttlMs": 600_000, "jitterMs": 0}


def body(doc: object) -> Callable[[Response], Response]:
    return lambda r: attrs.evolve(r, body=json.dumps(doc).encode())


def add_fields(r: Response) -> Response:
    doc = json.loads(r.body)
    doc["brandNew"] = {"x": [1, None]}
    for t in doc.get("app", {}).get("tasks", []):
        t["futureField"] = None
        t["healthCheckResults"] = None
    return attrs.evolve(r, body=json.dumps(doc).encode())


FAULTS: dict[str, tuple[Callable[[FakeMarathon, str], None], str]] = {
    "malformed JSON": (lambda m, p: m.garble_next(None, path=p), "malformed_json"),
    "null tasks": (
        lambda m, p: m.rewrite_next(body({"app": {"id": "/web", "tasks": None}}), None, path=p),
        "bad_payload",
    ),
    "a JSON array": (lambda m, p: m.rewrite_next(body([]), None, path=p), "bad_payload"),
    "a truncated body": (lambda m, p: m.truncate_next(None, path=p), "truncated"),
    "a closed connection": (lambda m, p: m.drop_next(None, path=p), "connection"),
    "403": (
        lambda m, p: m.fail_next(
            403, None, path=p, message="Not Authorized to perform this action!"
        ),
        "http_403",
    ),
    "500": (lambda m, p: m.fail_next(500, None, path=p), "http_500"),
    "503 with HTML": (
        lambda m, p: m.fail_next(503, None, path=p, body=b"<html>down</html>"),
        "http_503",
    ),
    "a hanging server": (lambda m, p: m.hang_next(None, path=p), "timeout"),
    "a slow server": (lambda m, p: m.delay_next(5, None, path=p), "timeout"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("target", ["/v2/apps/web", "/v2/apps"])
async def test_a_fault_keeps_the_last_good_answer_until_marathon_recovers(
    marathon: FakeMarathon,
    start_namer: StartNamer,
    fault: str,
    target: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    inject, kind = FAULTS[fault]
    marathon.add_app("/web")
    marathon.add_task("/web", "127.0.0.1", [18001])
    namer, metrics = await start_namer(
        useEventStream=False, ttlMs=50, jitterMs=5, requestTimeoutMs=300
    )
    var = namer.lookup(Path.read("/web"))
    stop = follow(var)
    await eventually(lambda: addrs(var) == GOOD, "bound")

    caplog.set_level(logging.INFO, "linkpy.namer.marathon")
    failures = metrics.scope("failures").counter(kind)
    if target == "/v2/apps":
        inject(marathon, "/v2/apps")  # a prefix: the app reads fail too
    else:
        inject(marathon, target)
    marathon.add_task("/web", "127.0.0.1", [18002])  # unseen while Marathon fails
    await eventually(lambda: failures.value >= 3, f"{kind} counted")
    assert addrs(var) == GOOD, "the last good answer is kept"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert 1 <= len(warnings) <= 2, "logged once per source (the app list, the app)"
    assert any("keeping the last" in w and f"failures/{kind}" in w for w in warnings)

    marathon.clear_faults()
    await eventually(lambda: addrs(var) == LATER, "recovered")
    assert any("works again" in r.getMessage() for r in caplog.records)
    stop()


async def test_unexpected_fields_are_no_fault(
    marathon: FakeMarathon, start_namer: StartNamer
) -> None:
    marathon.add_app("/web")
    marathon.add_task("/web", "127.0.0.1", [18001])
    marathon.rewrite_next(add_fields, None, path="/v2/apps")
    namer, metrics = await start_namer(useEventStream=False)
    var = namer.lookup(Path.read("/web"))
    stop = follow(var)
    await eventually(lambda: addrs(var) == GOOD, "bound")
    assert metrics.scope("failures").counter("bad_payload").value == 0
    stop()


async def test_a_fault_on_one_app_leaves_the_others_alone(
    marathon: FakeMarathon, start_namer: StartNamer
) -> None:
    for app, port in (("/web", 18001), ("/api", 18003)):
        marathon.add_app(app)
        marathon.add_task(app, "127.0.0.1", [port])
    namer, _ = await start_namer(useEventStream=False, ttlMs=50, jitterMs=5)
    web, api = namer.lookup(Path.read("/web")), namer.lookup(Path.read("/api"))
    stops = [follow(web), follow(api)]
    await eventually(lambda: addrs(web) == GOOD and addrs(api) is not None, "bound")
    marathon.hang_next(None, path="/v2/apps/web")
    marathon.add_task("/api", "127.0.0.1", [18004])
    await eventually(lambda: addrs(api) == {("127.0.0.1", 18003), ("127.0.0.1", 18004)}, "api")
    assert addrs(web) == GOOD
    for s in stops:
        s()


# --- the event stream ---------------------------------------------------------------


@attrs.define
class Setup:
    namer: MarathonNamer
    var: Var[State[NameTree[Name]]]
    metrics: Scope
    stop: Callable[[], None]


async def bound_with_stream(
    marathon: FakeMarathon, start_namer: StartNamer, **keys: object
) -> Setup:
    """/web bound to GOOD, the event stream up, changes reaching the namer by events only."""
    marathon.add_app("/web")
    marathon.add_task("/web", "127.0.0.1", [18001])
    namer, metrics = await start_namer(**{**EVENTS_ONLY, **keys})
    var = namer.lookup(Path.read("/web"))
    stop = follow(var)
    await eventually(lambda: addrs(var) == GOOD, "bound")
    await eventually(lambda: namer.state()["eventStream"]["connected"], "stream up")
    return Setup(namer, var, metrics, stop)


@pytest.mark.parametrize(
    "frame",
    [
        b"event: status_update_event\r\ndata: {broken\r\n\r\n",
        b"event: status_update_event\r\ndata: [1,2]\r\n\r\n",
        b"event: status_update_event\ndata: null\n\n",
    ],
)
async def test_a_malformed_event_is_dropped_and_the_stream_goes_on(
    marathon: FakeMarathon, start_namer: StartNamer, frame: bytes
) -> None:
    t = await bound_with_stream(marathon, start_namer)
    marathon.emit_raw(frame)
    stream = t.metrics.scope("event_stream")
    await eventually(lambda: stream.counter("malformed").value == 1, "counted")
    marathon.add_task("/web", "127.0.0.1", [18002])
    await eventually(lambda: addrs(t.var) == LATER, "the next event still works")
    assert stream.counter("connects").value == 1
    t.stop()


async def test_unknown_and_odd_events(marathon: FakeMarathon, start_namer: StartNamer) -> None:
    t = await bound_with_stream(marathon, start_namer)
    stream = t.metrics.scope("event_stream")
    marathon.emit_raw(b'event: pod_status_update_event\r\ndata: {"id": "/p"}\r\n\r\n')
    marathon.emit_raw(b": a comment\r\n\r\n\r\n")
    # an event python-marathon rejects (no timestamp): read directly, still acted on
    marathon.add_task("/web", "127.0.0.1", [18002])
    marathon.emit_raw(b'event: status_update_event\ndata: {"appId": "/web"}\n\n')
    await eventually(lambda: stream.counter("fallback_parses").value == 1, "fallback")
    await eventually(lambda: addrs(t.var) == LATER, "acted on")
    assert stream.counter("ignored").value == 1
    assert stream.counter("malformed").value == 0
    t.stop()


async def test_a_truncated_event_stream_reconnects(
    marathon: FakeMarathon, start_namer: StartNamer
) -> None:
    t = await bound_with_stream(marathon, start_namer)
    stream = t.metrics.scope("event_stream")
    marathon.fail_next(503, 1, path="/v2/events")  # keep the stream down for a moment
    marathon.emit_raw(b'event: status_update_event\r\ndata: {"appId": "/w')
    marathon.drop_event_streams()
    await eventually(lambda: stream.scope("failures").counter("truncated").value == 1, "counted")
    marathon.add_task("/web", "127.0.0.1", [18002])  # while the stream is down
    await eventually(lambda: addrs(t.var) == LATER, "re-read after reconnecting")
    await eventually(lambda: stream.counter("connects").value == 2, "reconnected")
    assert stream.counter("malformed").value == 0
    t.stop()


@pytest.mark.parametrize(
    ("inject", "kind"),
    [
        (lambda m: m.fail_next(500, 3, path="/v2/events"), "http_500"),
        (lambda m: m.fail_next(405, 3, path="/v2/events"), "http_405"),
        (lambda m: m.hang_next(2, path="/v2/events"), "timeout"),
        (lambda m: m.drop_next(3, path="/v2/events"), "connection"),
    ],
    ids=["500", "405", "hang", "drop"],
)
async def test_a_failing_event_stream_is_retried_with_backoff_while_polling_goes_on(
    marathon: FakeMarathon,
    start_namer: StartNamer,
    inject: Callable[[FakeMarathon], None],
    kind: str,
) -> None:
    inject(marathon)
    marathon.add_app("/web")
    marathon.add_task("/web", "127.0.0.1", [18001])
    namer, metrics = await start_namer(ttlMs=100, jitterMs=10, requestTimeoutMs=300)
    var = namer.lookup(Path.read("/web"))
    stop = follow(var)
    await eventually(lambda: addrs(var) == GOOD, "bound by polling")
    failures = metrics.scope("event_stream", "failures").counter(kind)
    await eventually(lambda: failures.value >= 2, "stream failures counted")
    marathon.add_task("/web", "127.0.0.1", [18002])
    await eventually(lambda: addrs(var) == LATER, "polling meanwhile")
    await eventually(lambda: namer.state()["eventStream"]["connected"], "the stream comes back")
    stop()


async def test_a_silent_event_stream_is_reopened(
    marathon: FakeMarathon, start_namer: StartNamer
) -> None:
    marathon.keepalive_interval = 3600  # not even keepalives
    t = await bound_with_stream(marathon, start_namer, eventStreamIdleTimeoutMs=200)
    stream = t.metrics.scope("event_stream")
    await eventually(lambda: stream.scope("failures").counter("idle").value >= 1, "idle")
    await eventually(lambda: stream.counter("connects").value >= 2, "reopened")
    t.stop()


async def test_keepalives_keep_a_quiet_stream_open_past_the_request_timeout(
    marathon: FakeMarathon, start_namer: StartNamer
) -> None:
    marathon.keepalive_interval = 0.3
    t = await bound_with_stream(
        marathon, start_namer, eventStreamIdleTimeoutMs=1000, requestTimeoutMs=100
    )
    await trio.sleep(1.5)  # several keepalives, each gap longer than requestTimeoutMs
    stream = t.metrics.scope("event_stream")
    assert stream.counter("connects").value == 1
    assert t.namer.state()["eventStream"]["connected"]
    marathon.add_task("/web", "127.0.0.1", [18002])
    await eventually(lambda: addrs(t.var) == LATER, "events still arrive")
    t.stop()
