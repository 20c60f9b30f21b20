"""The pure parts: JSON parsers, the address rule, the SSE decoder, event meanings."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from marathon.models import MarathonApp, MarathonTask  # type: ignore[import-untyped]
from marathon.models.events import EventFactory  # type: ignore[import-untyped]

from linkpy.naming import Address, Path
from linkpy_marathon.events import BadEvent, Signal, classify, subscribed
from linkpy_marathon.parse import (
    BadPayload,
    addresses,
    app_path,
    event_app,
    parse_app,
    parse_app_ids,
    parse_apps,
)
from linkpy_marathon.sse import SseDecoder, SseError, SseEvent

from . import payloads as P

USERS = Path.utf8("appgroup", "usergroup", "users")


# --- app ids --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("/appgroup/usergroup/users", "/appgroup/usergroup/users"),
        ("web", "/web"),
        ("/Web/API/", "/web/api"),
        ("/a.b-c/d0", "/a.b-c/d0"),
        ("/", None),
        ("", None),
        ("/a//b", None),
        ("/a/../b", None),
        ("/a/-b", None),
        ("/a/b_c", None),
        ("/a/b?x", None),
        (None, None),
        (42, None),
    ],
)
def test_app_path(text: object, path: str | None) -> None:
    got = app_path(text)
    assert (got.show() if got is not None else None) == path


def test_app_ids_of_a_real_app_list() -> None:
    ids, warnings = parse_app_ids(P.APPS)
    assert ids == {USERS, Path.utf8("web")}
    assert warnings == []


def test_app_ids_skip_entries_without_an_id() -> None:
    doc = {"apps": [{"id": "/ok"}, {"cmd": "x"}, "junk", None, {"id": 7}]}
    ids, warnings = parse_app_ids(doc)
    assert ids == {Path.utf8("ok")}
    assert len(warnings) == 4
    assert warnings[0].startswith("apps[1]: no usable id")


@pytest.mark.parametrize(
    "doc", [None, [], {"apps": None}, {"apps": {}}, {"app": []}, "apps", {"message": "x"}]
)
def test_an_app_list_of_the_wrong_shape_is_bad(doc: object) -> None:
    with pytest.raises(BadPayload, match="expected"):
        parse_app_ids(doc)


# --- one app --------------------------------------------------------------------------


def test_a_real_app_with_host_networking() -> None:
    doc = P.app([P.task(), P.task(id="t2", host="srv8.example.com", ports=[31001, 31002])])
    app, warnings = parse_app(doc)
    assert warnings == []
    assert app.id == USERS
    assert app.health_checks == 1
    assert app.discovery_ports == () and app.container_ports == ()
    assert [t.alive for t in app.tasks] == [1, 1]
    found, skipped = addresses(app, use_health_check=False)
    assert found == {Address("srv7.example.com", 31756), Address("srv8.example.com", 31001)}
    assert skipped == []


def test_ip_per_task_uses_the_first_ip_and_the_discovery_port() -> None:
    doc = P.app(
        [P.task(), P.task(id="no-ip", ipAddresses=[]), P.task(id="t3", ipAddresses=None)],
        **P.IP_PER_TASK,
    )
    app, _ = parse_app(doc)
    assert app.discovery_ports == (8080,)
    found, skipped = addresses(app, use_health_check=False)
    assert found == {Address("172.17.0.2", 8080)}
    assert skipped == ["task no-ip has no IP address", "task t3 has no IP address"]


def test_a_container_network_uses_the_first_container_port() -> None:
    doc = P.app([P.task(ports=[])], **P.CONTAINER_NETWORK)
    app, _ = parse_app(doc)
    assert app.container_ports == (9000, 9990)
    found, _ = addresses(app, use_health_check=False)
    assert found == {Address("172.17.0.2", 9000)}


def test_bridge_networking_uses_the_host_ports() -> None:
    bridge = {
        "networks": [{"mode": "container/bridge"}],
        "container": {"type": "DOCKER", "portMappings": [{"containerPort": 80, "hostPort": 0}]},
    }
    app, _ = parse_app(P.app([P.task(ports=[31900])], **bridge))
    assert app.container_ports == ()
    assert addresses(app, use_health_check=False)[0] == {Address("srv7.example.com", 31900)}


@pytest.mark.parametrize(
    "state",
    ["TASK_STAGING", "TASK_STARTING", "TASK_KILLING", "TASK_KILLED", "TASK_UNREACHABLE"],
)
def test_only_running_tasks_get_traffic(state: str) -> None:
    app, _ = parse_app(P.app([P.task(state=state)]))
    assert addresses(app, use_health_check=False)[0] == frozenset()
    assert addresses(app, use_health_check=True)[0] == frozenset()


def test_a_task_without_a_state_counts_as_running_unless_health_is_checked() -> None:
    t = P.task()
    del t["state"]
    app, _ = parse_app(P.app([t]))
    assert len(addresses(app, use_health_check=False)[0]) == 1
    assert addresses(app, use_health_check=True)[0] == frozenset()


@pytest.mark.parametrize(
    ("results", "checks", "healthy"),
    [
        ([{"alive": True}], 1, True),
        ([{"alive": False}], 1, False),
        (None, 1, False),  # grace period: no results yet
        ([], 1, False),
        ([{"alive": True}], 2, False),
        ([{"alive": True}, {"alive": True}], 2, True),
        ([{"alive": "true"}], 1, False),
        (None, 0, True),  # no health checks: running is enough
    ],
)
def test_use_health_check(results: list[Any] | None, checks: int, healthy: bool) -> None:
    t = P.task(healthCheckResults=results)
    doc = P.app([t], healthChecks=[{"protocol": "HTTP"}] * checks)
    app, _ = parse_app(doc)
    assert bool(addresses(app, use_health_check=True)[0]) is healthy
    assert len(addresses(app, use_health_check=False)[0]) == 1


def test_unusable_tasks_are_skipped_with_a_reason() -> None:
    doc = P.app(
        [
            P.task(),
            "junk",
            P.task(id="nohost", host=None),
            P.task(id="noports", ports=[]),
            P.task(id="badports", ports=["x", 0, 70000, True]),
            P.task(id="oddips", ipAddresses=[None, {"ipAddress": 5}]),
        ]
    )
    app, warnings = parse_app(doc)
    assert warnings == ["tasks[1]: not an object ('junk')"]
    found, skipped = addresses(app, use_health_check=False)
    assert found == {Address("srv7.example.com", 31756)}
    assert skipped == [
        "task nohost has no host and port",
        "task noports has no host and port",
        "task badports has no host and port",
    ]


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        (None, "expected"),
        ({"apps": []}, "expected"),
        ({"app": None}, "expected"),
        ({"app": {"id": "/web"}}, "no task list"),
        ({"app": {"id": "/web", "tasks": None}}, "no task list"),
        ({"app": {"id": "/web", "tasks": {}}}, "no task list"),
        ({"app": {"id": None, "tasks": []}}, "no usable id"),
    ],
)
def test_an_app_of_the_wrong_shape_is_bad(doc: object, match: str) -> None:
    with pytest.raises(BadPayload, match=match):
        parse_app(doc)


def test_unexpected_fields_of_any_type_are_ignored() -> None:
    doc = P.app(
        [P.task(surprise={"a": [1, None]}, healthCheckResults=[None, 3, {"alive": True}])],
        ipAddress=None,
        networks=None,
        container="weird",
        healthChecks=None,
        newField=[{"x": None}],
    )
    app, _ = parse_app(doc)
    assert app.health_checks == 0 and app.tasks[0].alive == 1
    assert addresses(app, use_health_check=True)[0] == {Address("srv7.example.com", 31756)}


KEYS = st.sampled_from(
    [
        *("id", "tasks", "host", "ports", "ipAddresses", "ipAddress", "discovery", "number"),
        *("state", "healthCheckResults", "alive", "healthChecks", "networks", "mode"),
        *("container", "portMappings", "containerPort", "apps", "app"),
    ]
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.just("container"),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(KEYS | st.text(max_size=4), c, max_size=5),
    max_leaves=25,
)


@given(JSON)
def test_the_parsers_never_raise_anything_but_bad_payload(doc: object) -> None:
    for fn in (parse_app_ids, parse_app):
        try:
            fn(doc)
        except BadPayload:
            pass
    for wrapped in ({"apps": [doc]}, {"app": {"id": "/x", "tasks": [doc], "ipAddress": doc}}):
        try:
            result = parse_app(wrapped)
            addresses(result[0], use_health_check=True)
        except BadPayload:
            pass
        try:
            parse_app_ids(wrapped)
        except BadPayload:
            pass


# --- python-marathon: where it fails on real payloads (why these parsers exist) ---------


def test_python_marathon_rejects_real_task_fields() -> None:
    plain = P.task()
    for key in ("cpus", "mem", "checkResult"):
        del plain[key]
    assert MarathonTask.from_json(plain).host == "srv7.example.com"
    for key, value in [("checkResult", {"http": {"statusCode": 200}}), ("cpus", 0.5)]:
        with pytest.raises(TypeError, match="unexpected keyword argument"):
            MarathonTask.from_json({**plain, key: value})


def test_python_marathon_rejects_a_real_app() -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'interval'"):
        MarathonApp.from_json(P.APPS["apps"][0])
    # while linkpy's parser reads the same document
    assert parse_app(P.app([P.task()]))[0].id == USERS


# --- the event stream's framing -------------------------------------------------------

FRAMES = (
    b"event: event_stream_attached\r\n"
    b'data: {"remoteAddress":"10.0.0.1","eventType":"event_stream_attached"}\r\n\r\n'
    b"\r\n"  # a keepalive
    b"event: status_update_event\r\n"
    b'data: {"appId":"/web"}\r\n\r\n'
)


def _all(decoder: SseDecoder, chunks: list[bytes]) -> list[SseEvent]:
    out = []
    for c in chunks:
        out += decoder.feed(c)
    return out


def test_sse_crlf_frames_and_keepalives() -> None:
    d = SseDecoder()
    events = d.feed(FRAMES)
    assert [e.type for e in events] == ["event_stream_attached", "status_update_event"]
    assert json.loads(events[1].data) == {"appId": "/web"}
    assert d.keepalives == 1 and not d.partial


@pytest.mark.parametrize("eol", [b"\r\n", b"\n", b"\r"])
def test_sse_any_line_ending_split_anywhere(eol: bytes) -> None:
    text = FRAMES.replace(b"\r\n", eol)
    for cut in range(len(text) + 1):
        d = SseDecoder()
        events = _all(d, [text[:cut], text[cut:]])
        assert [e.type for e in events] == ["event_stream_attached", "status_update_event"], cut


def test_sse_byte_by_byte() -> None:
    d = SseDecoder()
    events = _all(d, [FRAMES[i : i + 1] for i in range(len(FRAMES))])
    assert len(events) == 2


def test_sse_comments_multiline_data_and_defaults() -> None:
    d = SseDecoder()
    events = d.feed(b": hello\nid: 7\nretry: 10\ndata: a\ndata:b\n\ndata\n\nevent: x\n\n")
    assert events == [SseEvent("message", "a\nb"), SseEvent("message", "")]
    assert d.partial is False  # an event name without data is dropped


def test_sse_a_truncated_event_is_partial_and_never_emitted() -> None:
    d = SseDecoder()
    assert d.feed(b'event: status_update_event\r\ndata: {"appId": "/w') == []
    assert d.partial


def test_sse_size_limits() -> None:
    with pytest.raises(SseError, match="line"):
        SseDecoder(max_event=100).feed(b"data: " + b"x" * 200)
    d = SseDecoder(max_event=100)
    for _ in range(6):
        d.feed(b"data: " + b"x" * 10 + b"\n")
    with pytest.raises(SseError, match="event"):
        d.feed(b"data: " + b"x" * 40 + b"\n")


# --- events ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "signal"),
    [
        (P.STATUS_UPDATE, Signal("app", USERS)),
        (P.INSTANCE_CHANGED, Signal("app", USERS)),
        (P.APP_TERMINATED, Signal("app_set", Path.utf8("web"))),
        (P.API_POST, Signal("app_set", Path.utf8("web"))),
        ({"eventType": "deployment_success", "timestamp": "t", "id": "x"}, Signal("app_set")),
        ({"eventType": "event_stream_attached", "timestamp": "t"}, Signal("attached")),
        (P.DEPLOYMENT_INFO, Signal("ignored")),
        ({"eventType": "pod_status_update_event", "timestamp": "t"}, Signal("ignored")),
        ({"eventType": "brand_new_event_type"}, Signal("ignored")),
    ],
)
def test_classify_real_events(doc: dict[str, Any], signal: Signal) -> None:
    assert classify(str(doc["eventType"]), json.dumps(doc), use_health_check=False) == signal


def test_health_events_matter_only_with_use_health_check() -> None:
    data = json.dumps(P.HEALTH_CHANGED)
    assert classify("health_status_changed_event", data, use_health_check=False).kind == "ignored"
    assert classify("health_status_changed_event", data, use_health_check=True) == Signal(
        "app", USERS
    )
    assert "health_status_changed_event" in subscribed(True)
    assert "health_status_changed_event" not in subscribed(False)


def test_python_marathon_decodes_the_real_discovery_events() -> None:
    f = EventFactory()
    assert f.process(P.STATUS_UPDATE).app_id == "/appgroup/usergroup/users"
    assert f.process(P.INSTANCE_CHANGED).run_spec_id == "/appgroup/usergroup/users"
    assert f.process(P.APP_TERMINATED).app_id == "/web"
    assert f.process(P.API_POST).app_definition["id"] == "/web"


def test_python_marathon_drops_false_values_and_rejects_unknown_types() -> None:
    f = EventFactory()
    assert not hasattr(f.process(P.HEALTH_CHANGED), "alive")  # alive: false is lost
    with pytest.raises(Exception, match="Unknown event_type"):
        f.process({"eventType": "pod_status_update_event", "timestamp": "t"})


@pytest.mark.parametrize(
    "doc",
    [
        {k: v for k, v in P.STATUS_UPDATE.items() if k != "timestamp"},  # TypeError in the lib
        {**P.STATUS_UPDATE, "ipAddresses": [{"ipAddress": "1.2.3.4", "surprise": 1}]},
    ],
)
def test_events_python_marathon_rejects_are_read_directly(doc: dict[str, Any]) -> None:
    got = classify("status_update_event", json.dumps(doc), use_health_check=False)
    assert got == Signal("app", USERS, fallback=True)


def test_the_event_name_is_used_when_the_json_has_no_type() -> None:
    got = classify("status_update_event", '{"appId": "/web"}', use_health_check=False)
    assert got == Signal("app", Path.utf8("web"), fallback=True)
    assert event_app({"runSpecId": "/a"}) == Path.utf8("a")
    assert event_app({"appDefinition": {"id": "/b"}}) == Path.utf8("b")
    assert event_app({"appId": 3}) is None


@pytest.mark.parametrize("data", ["{broken", "[1, 2]", "null", ""])
def test_malformed_events(data: str) -> None:
    with pytest.raises(BadEvent):
        classify("status_update_event", data, use_health_check=False)


def test_the_bulk_app_list_parses_only_the_wanted_apps() -> None:
    users = P.app([P.task()])["app"]
    web = {"id": "/web", "tasks": "not even a list"}
    ids, apps, warnings = parse_apps({"apps": [users, web, None]}, {USERS})
    assert ids == {USERS, Path.utf8("web")}
    assert list(apps) == [USERS] and apps[USERS] is users
    assert warnings == ["apps[2]: no usable id (null)"]
    with pytest.raises(BadPayload, match="no task list"):
        parse_apps({"apps": [users, web]}, {Path.utf8("web")})
