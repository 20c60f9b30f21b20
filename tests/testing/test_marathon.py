"""FakeMarathon against the checklist of discovery-apis.md section 6.3 (M1-M16)."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from linkpy.testing import FakeMarathon

from .helpers import Events, client, outcome, raw_bytes, spawn

SSE = {"Accept": "text/event-stream"}


@pytest.fixture
async def marathon(nursery: trio.Nursery) -> FakeMarathon:
    fake = FakeMarathon(seed=1)
    await nursery.start(fake.serve)
    return fake


@pytest.fixture
async def http(marathon: FakeMarathon) -> AsyncIterator[httpx.AsyncClient]:
    async with client(marathon.url) as c:
        yield c


@pytest.fixture
def users(marathon: FakeMarathon) -> str:
    """The app /a/b/users with two tasks; returns the first task's ID."""
    marathon.add_app("/a/b/users", health_checks=1, labels={"team": "a"})
    first = marathon.add_task("/a/b/users", "srv1.example.com", [31000], alive=True)
    marathon.add_task("/a/b/users", "srv2.example.com", [31001], ip_addresses=["172.17.0.2"])
    return first


# --- M1-M6: REST ----------------------------------------------------------------------


@pytest.mark.parametrize("embed", ["apps.tasks", "app.tasks", "tasks", "group.apps.tasks"])
async def test_m1_apps_list_embeds_tasks_only_when_asked(
    users: str, http: httpx.AsyncClient, embed: str
) -> None:
    body = (await http.get("/v2/apps")).json()
    (app,) = body["apps"]
    assert app["id"] == "/a/b/users"
    assert "tasks" not in app
    assert (app["tasksRunning"], app["tasksHealthy"], app["deployments"]) == (2, 1, [])
    (app,) = (await http.get("/v2/apps", params={"embed": embed})).json()["apps"]
    assert [t["host"] for t in app["tasks"]] == ["srv1.example.com", "srv2.example.com"]


async def test_m1_apps_list_filters_by_id_and_label(
    marathon: FakeMarathon, users: str, http: httpx.AsyncClient
) -> None:
    marathon.add_app("/web")
    ids = [a["id"] for a in (await http.get("/v2/apps", params={"id": "USERS"})).json()["apps"]]
    assert ids == ["/a/b/users"]
    ids = [
        a["id"] for a in (await http.get("/v2/apps", params={"label": "team==a"})).json()["apps"]
    ]
    assert ids == ["/a/b/users"]


async def test_m2_one_app_always_embeds_tasks(users: str, http: httpx.AsyncClient) -> None:
    r = await http.get("/v2/apps/a/b/users")
    assert r.status_code == 200
    app = r.json()["app"]
    assert app["id"] == "/a/b/users"
    assert len(app["tasks"]) == 2
    assert app["healthChecks"][0]["protocol"] == "MESOS_HTTP"
    assert (await http.get("/v2/apps//a/b/users/")).json()["app"]["id"] == "/a/b/users"


async def test_m3_unknown_app_is_404_with_message(http: httpx.AsyncClient) -> None:
    r = await http.get("/v2/apps/x")
    assert r.status_code == 404
    assert r.json() == {"message": "App '/x' does not exist"}
    assert (await http.get("/v2/apps/x/tasks")).status_code == 404


async def test_m4_group_wildcard_lists_apps_under_the_group(
    marathon: FakeMarathon, users: str, http: httpx.AsyncClient
) -> None:
    marathon.add_app("/a/web")
    marathon.add_app("/ab/other")
    body = (await http.get("/v2/apps/a/*")).json()
    assert sorted(a["id"] for a in body["*"]) == ["/a/b/users", "/a/web"]
    assert all("tasks" in a for a in body["*"])
    r = await http.get("/v2/apps/nope/*")
    assert (r.status_code, r.json()) == (404, {"message": "Group '/nope' does not exist"})


async def test_m5_app_tasks_subresource(users: str, http: httpx.AsyncClient) -> None:
    body = (await http.get("/v2/apps/a/b/users/tasks")).json()
    assert [t["ports"] for t in body["tasks"]] == [[31000], [31001]]
    assert all(t["appId"] == "/a/b/users" for t in body["tasks"])
    running = (await http.get("/v2/tasks", params={"status": "running"})).json()["tasks"]
    assert len(running) == 2


async def test_m6_task_fields_can_each_be_toggled(
    marathon: FakeMarathon, users: str, http: httpx.AsyncClient
) -> None:
    async def task() -> dict[str, Any]:
        (t, _) = (await http.get("/v2/apps/a/b/users")).json()["app"]["tasks"]
        assert isinstance(t, dict)
        return t

    t = await task()
    assert (t["id"], t["host"], t["ports"], t["state"]) == (
        users,
        "srv1.example.com",
        [31000],
        "TASK_RUNNING",
    )
    assert t["ipAddresses"] == []
    assert [h["alive"] for h in t["healthCheckResults"]] == [True]
    marathon.update_task(users, host="srv9.example.com", ports=[32000, 32001])
    marathon.update_task(users, ip_addresses=["10.0.0.7"], state="TASK_STAGING", alive=False)
    t = await task()
    assert (t["host"], t["ports"], t["state"]) == (
        "srv9.example.com",
        [32000, 32001],
        "TASK_STAGING",
    )
    assert t["ipAddresses"] == [{"ipAddress": "10.0.0.7", "protocol": "IPv4"}]
    assert [h["alive"] for h in t["healthCheckResults"]] == [False]
    marathon.update_task(users, clear_health=True)
    assert "healthCheckResults" not in await task()


async def test_m6_address_blocks_for_ip_per_task_and_bridge(
    marathon: FakeMarathon, http: httpx.AsyncClient
) -> None:
    marathon.add_app("/ippt", ip_address_ports=[80])
    marathon.add_app("/bridge", container_ports=[8080])
    ippt = (await http.get("/v2/apps/ippt")).json()["app"]
    assert ippt["ipAddress"]["discovery"]["ports"][0]["number"] == 80
    bridge = (await http.get("/v2/apps/bridge")).json()["app"]
    assert bridge["container"]["portMappings"][0]["containerPort"] == 8080


# --- M7-M13: event stream -----------------------------------------------------------------


@pytest.mark.parametrize("accept", [None, "application/json", "text/event-stream, */*"])
async def test_m7_events_without_event_stream_accept_is_405(
    http: httpx.AsyncClient, accept: str | None
) -> None:
    headers = {"Accept": accept} if accept else {}
    r = await http.get("/v2/events", headers=headers)
    assert r.status_code == 405


async def test_m8_event_stream_attaches_and_stays_open(
    marathon: FakeMarathon, http: httpx.AsyncClient, autojump_clock: object
) -> None:
    async with http.stream("GET", "/v2/events", headers=SSE) as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/event-stream; charset=UTF-8"
        assert r.headers["connection"] == "close"
        assert "transfer-encoding" not in r.headers
        events = Events(r)
        name, data = await events.next()
        assert name == "event_stream_attached"
        assert data["remoteAddress"]
        await trio.sleep(3600)
        assert marathon.open_event_streams == 1
        marathon.add_app("/web")
        assert (await events.next())[0] == "api_post_event"


async def test_m9_event_framing_is_crlf_and_event_type_matches(marathon: FakeMarathon) -> None:
    request = b"GET /v2/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
    data = await raw_bytes(marathon.port or 0, request, until=b"\r\n\r\nevent")
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    first, _, _ = body.partition(b"\r\n\r\n")
    name_line, data_line = first.split(b"\r\n")
    assert name_line == b"event: event_stream_attached"
    assert data_line.startswith(b"data: ")
    payload = json.loads(data_line[len(b"data: ") :])
    assert payload["eventType"] == "event_stream_attached"
    assert "timestamp" in payload


@pytest.mark.parametrize("interval", [10.0, 3.0])
async def test_m10_keepalive_blank_line_every_interval(
    marathon: FakeMarathon, http: httpx.AsyncClient, autojump_clock: object, interval: float
) -> None:
    assert marathon.keepalive_interval == 10.0
    marathon.keepalive_interval = interval
    async with http.stream("GET", "/v2/events", headers=SSE) as r:
        events = Events(r)
        start = trio.current_time()
        await events.next()
        for n in (1, 2):
            assert await events.item() is None
            assert trio.current_time() - start == pytest.approx(n * interval)
        assert events.raw.endswith(b"\r\n\r\n\r\n\r\n")  # event end, then two bare CRLFs


async def test_m11_event_type_filter(
    marathon: FakeMarathon, users: str, http: httpx.AsyncClient
) -> None:
    params = {"event_type": "status_update_event"}
    async with http.stream("GET", "/v2/events", params=params, headers=SSE) as r:
        events = Events(r)
        await trio.testing.wait_all_tasks_blocked()
        marathon.update_task(users, alive=False)
        marathon.add_app("/other")
        marathon.update_task(users, state="TASK_KILLING")
        name, data = await events.next()
    assert name == "status_update_event"
    assert data["taskStatus"] == "TASK_KILLING"


async def test_m11_several_event_types(
    marathon: FakeMarathon, users: str, http: httpx.AsyncClient
) -> None:
    params = {"event_type": ["app_terminated_event", "health_status_changed_event"]}
    async with http.stream("GET", "/v2/events", params=params, headers=SSE) as r:
        events = Events(r)
        await trio.testing.wait_all_tasks_blocked()
        marathon.update_task(users, state="TASK_KILLING")
        marathon.update_task(users, alive=False)
        marathon.remove_app("/a/b/users")
        got = [(await events.next())[0] for _ in range(2)]
    assert got == ["health_status_changed_event", "app_terminated_event"]


async def test_m12_changes_emit_the_events_marathon_would(
    marathon: FakeMarathon, users: str, http: httpx.AsyncClient
) -> None:
    async with http.stream("GET", "/v2/events", headers=SSE) as r:
        events = Events(r)
        assert (await events.next())[0] == "event_stream_attached"
        marathon.update_task(users, state="TASK_KILLING")
        status, changed = await events.next(), await events.next()
        marathon.update_task(users, alive=False)
        health, instance_health = await events.next(), await events.next()
        marathon.remove_app("/a/b/users")
        tail = [await events.next() for _ in range(5)]
    assert status[0] == "status_update_event"
    assert (status[1]["taskId"], status[1]["taskStatus"], status[1]["appId"]) == (
        users,
        "TASK_KILLING",
        "/a/b/users",
    )
    assert changed[0] == "instance_changed_event"
    assert (changed[1]["condition"], changed[1]["runSpecId"]) == ("Killing", "/a/b/users")
    assert health[0] == "health_status_changed_event"
    assert (health[1]["appId"], health[1]["alive"]) == ("/a/b/users", False)
    assert instance_health[0] == "instance_health_changed_event"
    assert [n for n, _ in tail] == [
        "status_update_event",
        "instance_changed_event",
        "status_update_event",
        "instance_changed_event",
        "app_terminated_event",
    ]
    assert {d["taskStatus"] for n, d in tail if n == "status_update_event"} == {"TASK_KILLED"}
    assert tail[-1][1]["appId"] == "/a/b/users"
    for name, data in [status, changed, health, instance_health, *tail]:
        assert data["eventType"] == name


async def test_raw_frames_reach_the_streams_their_filter_lets_through(
    marathon: FakeMarathon, http: httpx.AsyncClient
) -> None:
    params = {"event_type": "status_update_event"}
    async with http.stream("GET", "/v2/events", params=params, headers=SSE) as r:
        events = Events(r)
        await trio.testing.wait_all_tasks_blocked()
        marathon.emit_raw(b"event: app_terminated_event\ndata: {}\n\n", "app_terminated_event")
        marathon.emit_raw(b'event: status_update_event\ndata: {"x": 1}\n\n')
        assert await events.next() == ("status_update_event", {"x": 1})
    assert b"app_terminated_event" not in events.raw


async def test_m13_event_streams_can_be_dropped(
    marathon: FakeMarathon, http: httpx.AsyncClient
) -> None:
    async with http.stream("GET", "/v2/events", headers=SSE) as r:
        events = Events(r)
        await events.next()
        marathon.drop_event_streams()
        with pytest.raises((StopAsyncIteration, httpx.HTTPError)):
            await events.next()
    await trio.testing.wait_all_tasks_blocked()
    assert marathon.open_event_streams == 0
    async with http.stream("GET", "/v2/events", headers=SSE) as r:
        assert (await Events(r).next())[0] == "event_stream_attached"


async def test_m13_other_streams_see_attach_and_detach(
    marathon: FakeMarathon, http: httpx.AsyncClient, nursery: trio.Nursery
) -> None:
    async with http.stream("GET", "/v2/events", headers=SSE) as r:
        events = Events(r)
        await events.next()
        async with (
            client(marathon.url) as other,
            other.stream("GET", "/v2/events", headers=SSE) as r2,
        ):
            await Events(r2).next()
        assert (await events.next())[0] == "event_stream_attached"
        assert (await events.next())[0] == "event_stream_detached"


# --- M14-M16: auth and faults ---------------------------------------------------------------


@pytest.mark.parametrize("path", ["/ping", "/v2/apps", "/v2/events", "/v2/apps/x", "/nowhere"])
async def test_m14_basic_auth_401_on_every_path(nursery: trio.Nursery, path: str) -> None:
    marathon = FakeMarathon(http_credentials=("user", "secret"))
    await nursery.start(marathon.serve)
    async with client(marathon.url) as http:
        for auth in (None, ("user", "wrong")):
            r = await http.get(path, headers=SSE, auth=auth)
            assert r.status_code == 401
            assert r.headers["www-authenticate"] == 'basic realm="Mesosphere"'
            assert r.json() == {"message": "Invalid username or password."}
        if path == "/ping":
            r = await http.get(path, auth=("user", "secret"))
            assert (r.status_code, r.text) == (200, "pong")


async def test_m15_dcos_token_login_expiry_and_relogin(nursery: trio.Nursery) -> None:
    marathon = FakeMarathon(prefix="/marathon", dcos_accounts={"linkpy": "pw"})
    await nursery.start(marathon.serve)
    marathon.add_app("/web")
    async with client(marathon.url) as http:
        r = await http.get("/marathon/v2/apps")
        assert (r.status_code, r.headers["www-authenticate"]) == (401, "acsjwt")
        login = "/acs/api/v1/auth/login"
        r = await http.post(login, json={"uid": "linkpy", "password": "bad"})
        assert r.status_code == 401
        token = (await http.post(login, json={"uid": "linkpy", "password": "pw"})).json()["token"]
        auth = {"Authorization": f"token={token}"}
        assert (await http.get("/marathon/v2/apps", headers=auth)).status_code == 200
        marathon.expire_tokens()
        assert (await http.get("/marathon/v2/apps", headers=auth)).status_code == 401
        claims = base64.urlsafe_b64encode(json.dumps({"uid": "linkpy"}).encode()).decode()
        jwt = f"eyJhbGciOiJSUzI1NiJ9.{claims.rstrip('=')}.c2ln"
        r = await http.post(login, json={"uid": "linkpy", "token": jwt})
        auth = {"Authorization": f"token={r.json()['token']}"}
        r = await http.get("/marathon/v2/apps", headers=auth)
        assert [a["id"] for a in r.json()["apps"]] == ["/web"]
        assert (await http.get("/v2/apps", headers=auth)).status_code == 404  # prefix needed


async def test_m16_ping_and_faults_on_apps(
    marathon: FakeMarathon,
    http: httpx.AsyncClient,
    nursery: trio.Nursery,
    autojump_clock: object,
) -> None:
    r = await http.get("/ping")
    assert (r.status_code, r.text) == (200, "pong")
    marathon.fail_next(503, path="/v2/apps")
    r = await http.get("/v2/apps")
    assert r.status_code == 503 and "message" in r.json()
    marathon.fail_next(500)
    assert (await http.get("/v2/apps")).status_code == 500
    marathon.hang_next(None, path="/v2/apps")
    stalled = spawn(nursery, lambda: outcome(http.get("/v2/apps")))
    await trio.sleep(3600)
    assert not stalled.done
    async with client(marathon.url) as other:
        assert (await other.get("/ping")).text == "pong"
    marathon.clear_faults()
    marathon.restart()  # drops the stalled request
    assert await stalled.result() == "RemoteProtocolError"


async def test_info_and_leader(marathon: FakeMarathon, http: httpx.AsyncClient) -> None:
    leader = (await http.get("/v2/leader")).json()["leader"]
    assert leader == f"127.0.0.1:{marathon.port}"
    assert (await http.get("/v2/info")).json()["leader"] == leader
