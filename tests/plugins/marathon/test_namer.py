"""The Marathon namer over the emulator: naming rules, events, watches, auth."""

from __future__ import annotations

import base64
import json

import attrs
import pytest
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from linkpy.naming import Addr, Failed, Neg, Ok, Path, Pending
from linkpy.testing import FakeMarathon
from linkpy.testing.fakes._http import Response
from linkpy_marathon import namer as namer_module
from linkpy_marathon.auth import BasicAuth, DcosAuth, from_env

from .conftest import PREFIX, StartNamer, addrs, bound_of, eventually, follow

#: Intervals so long that only the event stream can deliver a change in a test.
EVENTS_ONLY = {"ttlMs": 600_000, "jitterMs": 0}


async def test_shortest_app_id_prefix_wins_and_the_rest_is_the_residual(
    marathon: FakeMarathon, start_namer: StartNamer
) -> None:
    marathon.add_app("/team/users")
    marathon.add_task("/team/users", "127.0.0.1", [18001])
    marathon.add_app("/team/users-v2")
    marathon.add_task("/team/users-v2", "127.0.0.1", [18002])
    namer, _ = await start_namer()
    v1 = namer.lookup(Path.read("/Team/USERS/Admin/x"))
    v2 = namer.lookup(Path.read("/team/users-v2"))
    stops = [follow(v1), follow(v2)]
    await eventually(lambda: addrs(v1) == {("127.0.0.1", 18001)}, "v1 bound")
    await eventually(lambda: addrs(v2) == {("127.0.0.1", 18002)}, "v2 bound")
    b1, b2 = bound_of(v1), bound_of(v2)
    assert b1 is not None and b2 is not None
    assert b1.id == PREFIX.concat(Path.read("/team/users"))
    assert b1.residual == Path.read("/Admin/x")  # the residual keeps its case
    assert b2.id == PREFIX.concat(Path.read("/team/users-v2")) and b2.residual == Path.empty
    for s in stops:
        s()


async def test_a_shorter_app_id_shadows_a_longer_one(
    marathon: FakeMarathon, start_namer: StartNamer
) -> None:
    marathon.add_app("/a/b")
    marathon.add_task("/a/b", "127.0.0.1", [18001])
    marathon.add_app("/a/b/c")
    marathon.add_task("/a/b/c", "127.0.0.1", [18002])
    namer, _ = await start_namer()
    var = namer.lookup(Path.read("/a/b/c"))
    stop = follow(var)
    await eventually(lambda: addrs(var) is not None, "bound")
    bound = bound_of(var)
    assert bound is not None and bound.id == PREFIX.concat(Path.read("/a/b"))
    assert bound.residual == Path.read("/c")
    stop()


@pytest.mark.parametrize("path", ["/", "/nobody", "/team", "/team/users-v3/x"])
async def test_paths_naming_no_app_are_neg(
    marathon: FakeMarathon, start_namer: StartNamer, path: str
) -> None:
    marathon.add_app("/team/users")
    marathon.add_task("/team/users", "127.0.0.1", [18001])
    namer, _ = await start_namer()
    var = namer.lookup(Path.read(path))
    stop = follow(var)
    await eventually(lambda: var.sample() != Pending, "known")
    assert var.sample() == Ok(Neg)
    assert namer.open_watches == 1  # the app list only: no watch for a name that is no app
    stop()


async def test_an_app_without_running_tasks_is_neg_until_one_runs(
    marathon: FakeMarathon, start_namer: StartNamer
) -> None:
    marathon.add_app("/web")
    namer, _ = await start_namer(**EVENTS_ONLY)
    var = namer.lookup(Path.read("/web"))
    seen: list[object] = []
    stop = var.observe(seen.append)
    await eventually(lambda: var.sample() == Ok(Neg), "no tasks: Neg")
    task = marathon.add_task("/web", "127.0.0.1", [18001], state="TASK_STAGING")
    await trio.sleep(0.2)
    assert var.sample() == Ok(Neg)
    marathon.update_task(task, state="TASK_RUNNING")
    await eventually(lambda: addrs(var) == {("127.0.0.1", 18001)}, "running: bound")
    marathon.update_task(task, state="TASK_KILLING")
    await eventually(lambda: var.sample() == Ok(Neg), "killing: Neg again")
    assert [s == Ok(Neg) for s in seen[-3:]] == [True, False, True]  # Neg, Leaf, Neg
    stop()


async def test_addresses_change_in_place_and_the_tree_stays(
    marathon: FakeMarathon, start_namer: StartNamer
) -> None:
    marathon.add_app("/web")
    first = marathon.add_task("/web", "127.0.0.1", [18001])
    namer, metrics = await start_namer(**EVENTS_ONLY)
    var = namer.lookup(Path.read("/web"))
    stop = follow(var)
    await eventually(lambda: addrs(var) == {("127.0.0.1", 18001)}, "bound")
    version = var.version
    bound = bound_of(var)
    assert bound is not None
    marathon.add_task("/web", "127.0.0.1", [18002])
    await eventually(lambda: addrs(var) == {("127.0.0.1", 18001), ("127.0.0.1", 18002)}, "added")
    marathon.remove_task(first)
    await eventually(lambda: addrs(var) == {("127.0.0.1", 18002)}, "removed")
    assert var.version == version, "the tree var did not change"
    assert bound_of(var) is bound or bound_of(var) == bound
    assert metrics.counter("updates").value >= 3
    assert metrics.scope("event_stream").counter("connects").value == 1
    stop()


async def test_apps_created_and_deleted_are_seen_through_events(
    marathon: FakeMarathon, start_namer: StartNamer
) -> None:
    namer, _ = await start_namer(**EVENTS_ONLY)
    var = namer.lookup(Path.read("/new/app"))
    stop = follow(var)
    await eventually(lambda: var.sample() == Ok(Neg), "missing: Neg")
    marathon.add_app("/new/app")
    marathon.add_task("/new/app", "127.0.0.1", [18001])
    await eventually(lambda: addrs(var) == {("127.0.0.1", 18001)}, "created: bound")
    marathon.remove_app("/new/app")
    await eventually(lambda: var.sample() == Ok(Neg), "deleted: Neg")
    await eventually(lambda: namer.bound_names() == [], "the app list follows")
    stop()


async def test_polling_alone_when_the_event_stream_is_off(
    marathon: FakeMarathon, start_namer: StartNamer
) -> None:
    marathon.add_app("/web")
    namer, _ = await start_namer(useEventStream=False, ttlMs=100, jitterMs=10)
    var = namer.lookup(Path.read("/web"))
    stop = follow(var)
    await eventually(lambda: var.sample() == Ok(Neg), "Neg")
    marathon.add_task("/web", "127.0.0.1", [18001])
    await eventually(lambda: addrs(var) == {("127.0.0.1", 18001)}, "polled")
    assert marathon.requests_to("/v2/events") == []
    assert marathon.requests_to("/v2/apps/web")[0].query["embed"] == ("app.tasks",)
    stop()


async def test_use_health_check(marathon: FakeMarathon, start_namer: StartNamer) -> None:
    marathon.add_app("/web", health_checks=2)
    good = marathon.add_task("/web", "127.0.0.1", [18001], alive=True)
    marathon.add_task("/web", "127.0.0.1", [18002], alive=[True, False])
    marathon.add_task("/web", "127.0.0.1", [18003])  # no results yet (grace period)
    namer, _ = await start_namer(useHealthCheck=True, **EVENTS_ONLY)
    var = namer.lookup(Path.read("/web"))
    stop = follow(var)
    await eventually(lambda: addrs(var) == {("127.0.0.1", 18001)}, "healthy only")
    marathon.update_task(good, alive=False)
    await eventually(lambda: var.sample() == Ok(Neg), "none healthy: Neg")
    marathon.update_task(good, alive=True)
    await eventually(lambda: addrs(var) == {("127.0.0.1", 18001)}, "healthy again")
    assert (
        "health_status_changed_event" in marathon.requests_to("/v2/events")[0].query["event_type"]
    )
    stop()


async def test_ip_per_task_and_container_networks(
    marathon: FakeMarathon, start_namer: StartNamer
) -> None:
    marathon.add_app("/ip", ip_address_ports=[8080])
    marathon.add_task("/ip", "srv1.example.com", [31000], ip_addresses=["127.0.0.2"])
    marathon.add_task("/ip", "srv2.example.com", [31001])  # no IP yet: skipped
    marathon.add_app(
        "/net",
        container_ports=[9000, 9990],
        extra={"networks": [{"mode": "container", "name": "dcos"}]},
    )
    marathon.add_task("/net", "srv1.example.com", [], ip_addresses=["127.0.0.3"])
    marathon.add_app("/bridge", container_ports=[80])
    marathon.add_task("/bridge", "127.0.0.1", [31900])
    namer, metrics = await start_namer()
    vars_ = {p: namer.lookup(Path.read(p)) for p in ("/ip", "/net", "/bridge")}
    stops = [follow(v) for v in vars_.values()]
    await eventually(lambda: addrs(vars_["/ip"]) == {("127.0.0.2", 8080)}, "ip-per-task")
    await eventually(lambda: addrs(vars_["/net"]) == {("127.0.0.3", 9000)}, "container network")
    await eventually(lambda: addrs(vars_["/bridge"]) == {("127.0.0.1", 31900)}, "bridge")
    assert metrics.counter("warnings").value >= 1  # the task without an IP
    for s in stops:
        s()


async def test_one_watch_per_app_however_many_lookups(
    marathon: FakeMarathon, start_namer: StartNamer
) -> None:
    marathon.add_app("/users")
    marathon.add_task("/users", "127.0.0.1", [18001])
    namer, _ = await start_namer(**EVENTS_ONLY)
    lookups = [namer.lookup(Path.read(f"/users/r{i}")) for i in range(50)]
    assert namer.lookup(Path.read("/users/r0")) is lookups[0]
    stops = [follow(v) for v in lookups]
    await eventually(lambda: all(addrs(v) for v in lookups), "all bound")
    assert namer.open_watches == 2  # the app list and /users
    assert len(marathon.requests_to("/v2/apps/users")) == 1
    assert {bound_of(v).addr for v in lookups} == {bound_of(lookups[0]).addr}  # type: ignore[union-attr]
    for s in stops:
        s()


async def test_junk_names_make_no_watches_and_bounded_state(
    marathon: FakeMarathon, start_namer: StartNamer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(namer_module, "MAX_LOOKUPS", 100)
    marathon.add_app("/users")
    namer, _ = await start_namer()
    keep = namer.lookup(Path.read("/users"))
    stop = follow(keep)
    await eventually(lambda: keep.sample() != Pending, "known")
    for i in range(1000):
        junk = namer.lookup(Path.read(f"/wp-admin/{i}/.env"))
        unfollow = follow(junk)
        assert junk.sample() == Ok(Neg)
        unfollow()
    assert namer.open_watches == 2
    assert len(namer.state()["watches"]) == 1
    assert namer.state()["lookups"] <= 100
    assert namer.lookup(Path.read("/users")) is keep  # followed lookups survive pruning
    stop()


async def test_watches_close_when_nobody_follows(
    marathon: FakeMarathon, start_namer: StartNamer
) -> None:
    marathon.add_app("/users")
    marathon.add_task("/users", "127.0.0.1", [18001])
    namer, _ = await start_namer(ttlMs=50, jitterMs=5, watchIdleTtlMs=200)
    var = namer.lookup(Path.read("/users"))
    stop = follow(var)
    await eventually(lambda: addrs(var) is not None, "bound")
    await eventually(lambda: marathon.open_event_streams == 1, "stream open")
    stop()
    await eventually(lambda: namer.open_watches == 0, "watches closed")
    await eventually(lambda: marathon.open_event_streams == 0, "stream closed")
    marathon.clear_requests()
    await trio.sleep(0.3)
    assert marathon.requests == []
    # following again starts afresh, with a new Addr var that works
    stop = follow(var)
    await eventually(lambda: addrs(var) == {("127.0.0.1", 18001)}, "bound again")
    marathon.add_task("/users", "127.0.0.1", [18002])
    await eventually(lambda: addrs(var) == {("127.0.0.1", 18001), ("127.0.0.1", 18002)}, "live")
    stop()


async def test_a_broken_event_stream_reconnects_and_rereads(
    marathon: FakeMarathon, start_namer: StartNamer
) -> None:
    marathon.add_app("/web")
    marathon.add_task("/web", "127.0.0.1", [18001])
    namer, metrics = await start_namer(**EVENTS_ONLY)
    var = namer.lookup(Path.read("/web"))
    stop = follow(var)
    await eventually(lambda: addrs(var) is not None, "bound")
    await eventually(lambda: namer.state()["eventStream"]["connected"], "stream up")
    marathon.fail_next(503, 2, path="/v2/events")
    marathon.drop_event_streams()
    await eventually(lambda: marathon.open_event_streams == 0, "stream dropped")
    marathon.add_task("/web", "127.0.0.1", [18002])  # while no stream is open
    await eventually(lambda: len(addrs(var) or ()) == 2, "re-read after reconnecting")
    stream = metrics.scope("event_stream")
    assert stream.counter("disconnects").value >= 1
    assert stream.scope("failures").counter("http_503").value == 2
    assert stream.counter("connects").value == 2
    stop()


async def test_uri_prefix(nursery: trio.Nursery, start_namer: StartNamer) -> None:
    fake = FakeMarathon(prefix="/marathon")
    await nursery.start(fake.serve)
    fake.add_app("/web")
    fake.add_task("/web", "127.0.0.1", [18001])
    namer, _ = await start_namer(fake, uriPrefix="/marathon")
    var = namer.lookup(Path.read("/web"))
    stop = follow(var)
    await eventually(lambda: addrs(var) == {("127.0.0.1", 18001)}, "bound")
    assert fake.requests_to("/marathon/v2/apps/web")
    assert {r.header("host") for r in fake.requests} == {"127.0.0.1"}
    stop()


async def test_basic_auth(nursery: trio.Nursery, start_namer: StartNamer) -> None:
    fake = FakeMarathon(http_credentials=("linkpy", "s3cret"))
    await nursery.start(fake.serve)
    fake.add_app("/web")
    fake.add_task("/web", "127.0.0.1", [18001])
    token = base64.b64encode(b"linkpy:s3cret").decode()
    auth = from_env({"MARATHON_HTTP_AUTH_CREDENTIAL": token})
    assert isinstance(auth, BasicAuth)
    namer, _ = await start_namer(fake, auth=auth)
    var = namer.lookup(Path.read("/web"))
    stop = follow(var)
    await eventually(lambda: addrs(var) == {("127.0.0.1", 18001)}, "bound")
    await eventually(lambda: bool(fake.open_event_streams), "the stream is authenticated too")
    stop()

    anonymous, metrics = await start_namer(fake)
    var = anonymous.lookup(Path.read("/web"))
    stop = follow(var)
    await eventually(lambda: isinstance(var.sample(), Failed), "no credentials: Failed")
    assert "HTTP 401" in str(var.sample().exc)  # type: ignore[union-attr]
    assert metrics.scope("failures").counter("http_401").value >= 1
    stop()


def rsa_pem() -> tuple[rsa.RSAPrivateKey, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return key, pem


async def test_dcos_token_auth_logs_in_again_when_the_token_expires(
    nursery: trio.Nursery, start_namer: StartNamer
) -> None:
    fake = FakeMarathon(dcos_accounts={"linkpy-sa": "unused-password"})
    await nursery.start(fake.serve)
    fake.add_app("/web")
    fake.add_task("/web", "127.0.0.1", [18001])
    key, pem = rsa_pem()
    credential = {
        "login_endpoint": f"{fake.url}/acs/api/v1/auth/login",
        "private_key": pem,
        "scheme": "RS256",
        "uid": "linkpy-sa",
    }
    env = {
        "DCOS_SERVICE_ACCOUNT_CREDENTIAL": json.dumps(credential),
        "MARATHON_HTTP_AUTH_CREDENTIAL": base64.b64encode(b"ignored:x").decode(),
    }
    auth = from_env(env)
    assert isinstance(auth, DcosAuth)  # DC/OS wins over basic auth
    namer, _ = await start_namer(fake, auth=auth, **EVENTS_ONLY)
    var = namer.lookup(Path.read("/web"))
    stop = follow(var)
    await eventually(lambda: addrs(var) == {("127.0.0.1", 18001)}, "bound")
    (login,) = fake.requests_to("/acs/api/v1/auth/login")
    import jwt

    claims = jwt.decode(login.json()["token"], key.public_key(), algorithms=["RS256"])
    assert claims["uid"] == "linkpy-sa" and claims["exp"] > 0
    assert fake.requests_to("/v2/apps")[0].header("authorization") == "token=dcos-token-1"
    await eventually(lambda: bool(fake.open_event_streams), "stream up")

    fake.expire_tokens()
    fake.drop_event_streams()  # the stream reconnects with an expired token: 401, login
    fake.add_task("/web", "127.0.0.1", [18002])
    await eventually(lambda: len(addrs(var) or ()) == 2, "works after a new login")
    assert auth.logins == 2
    assert fake.requests[-1].header("authorization") == "token=dcos-token-2"
    stop()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DCOS_SERVICE_ACCOUNT_CREDENTIAL": "{"}, "is not JSON"),
        ({"DCOS_SERVICE_ACCOUNT_CREDENTIAL": "[]"}, "must be a JSON object"),
        ({"DCOS_SERVICE_ACCOUNT_CREDENTIAL": '{"uid": "a"}'}, "lacks login_endpoint"),
        (
            {
                "DCOS_SERVICE_ACCOUNT_CREDENTIAL": json.dumps(
                    {"login_endpoint": "/l", "private_key": "k", "scheme": "HS256", "uid": "a"}
                )
            },
            "only RS256",
        ),
        (
            {
                "DCOS_SERVICE_ACCOUNT_CREDENTIAL": json.dumps(
                    {"login_endpoint": "/l", "private_key": "SECRET", "scheme": "RS256", "uid": "a"}
                )
            },
            "not an unencrypted PEM private key",
        ),
        ({"MARATHON_HTTP_AUTH_CREDENTIAL": "not base64!"}, "base64 of 'user:password'"),
        ({"MARATHON_HTTP_AUTH_CREDENTIAL": base64.b64encode(b"nocolon").decode()}, "base64"),
    ],
)
def test_bad_credentials_are_config_errors(env: dict[str, str], message: str) -> None:
    from linkpy.errors import ConfigError

    with pytest.raises(ConfigError, match=message) as info:
        from_env(env)
    assert "SECRET" not in str(info.value)


def test_no_credentials_no_auth() -> None:
    assert from_env({}).kind == "none"


async def test_redirects_to_the_leader_keep_the_credentials(
    nursery: trio.Nursery, start_namer: StartNamer
) -> None:
    leader = FakeMarathon(http_credentials=("u", "p"))
    standby = FakeMarathon(http_credentials=("u", "p"))
    await nursery.start(leader.serve)
    await nursery.start(standby.serve)
    leader.add_app("/web")
    leader.add_task("/web", "127.0.0.1", [18001])

    def to_leader(response: Response) -> Response:
        return attrs.evolve(response, status=307, headers=[("Location", leader.url + "/v2/apps")])

    standby.rewrite_next(to_leader, None, path="/v2/apps")
    auth = BasicAuth(base64.b64encode(b"u:p").decode())
    namer, _ = await start_namer(standby, auth=auth, useEventStream=False)
    var = namer.apps_var()
    stop = follow(var)
    await eventually(lambda: var.sample() == Ok(frozenset({Path.read("/web")})), "app list")
    assert (
        leader.requests_to("/v2/apps")[0].header("authorization") == auth._headers["Authorization"]
    )
    stop()


async def test_state_bound_names_and_metrics(
    marathon: FakeMarathon, start_namer: StartNamer
) -> None:
    marathon.add_app("/web")
    marathon.add_app("/a/b")
    marathon.add_task("/web", "127.0.0.1", [18001])
    namer, metrics = await start_namer()
    var = namer.lookup(Path.read("/web"))
    stop = follow(var)
    await eventually(lambda: addrs(var) is not None, "bound")
    await eventually(lambda: namer.state()["eventStream"]["connected"], "stream up")
    assert namer.bound_names() == ["/#/io.l5d.marathon/a/b", "/#/io.l5d.marathon/web"]
    state = namer.state()
    assert state["watches"]["/web"]["addr"] == ["127.0.0.1:18001"]
    assert state["auth"] == "none" and state["apps"] == 2
    assert metrics.gauge("apps").value == 2
    assert metrics.gauge("watches").value == 1
    assert metrics.scope("event_stream").gauge("connected").value == 1
    assert metrics.counter("requests").value >= 3
    json.dumps(state)  # /namer_state/<prefix>.json serialises it
    stop()


async def test_a_lookup_before_the_first_answer_is_pending_then_failed_then_ok(
    marathon: FakeMarathon, start_namer: StartNamer
) -> None:
    marathon.add_app("/web")
    marathon.add_task("/web", "127.0.0.1", [18001])
    marathon.fail_next(500, None, path="/v2/apps", message="leader election in progress")
    namer, metrics = await start_namer()
    var = namer.lookup(Path.read("/web"))
    assert var.sample() is Pending
    stop = follow(var)
    await eventually(lambda: isinstance(var.sample(), Failed), "Failed")
    assert "leader election in progress" in str(var.sample().exc)  # type: ignore[union-attr]
    marathon.clear_faults()
    await eventually(lambda: addrs(var) == {("127.0.0.1", 18001)}, "recovered")
    assert metrics.scope("failures").counter("http_500").value >= 1
    stop()


async def test_an_app_deleted_between_list_and_read_is_neg(
    marathon: FakeMarathon, start_namer: StartNamer
) -> None:
    marathon.add_app("/web")
    marathon.add_task("/web", "127.0.0.1", [18001])
    namer, _ = await start_namer(useEventStream=False, ttlMs=100, jitterMs=0)
    var = namer.lookup(Path.read("/web"))
    stop = follow(var)
    await eventually(lambda: addrs(var) is not None, "bound")
    marathon.fail_next(404, None, path="/v2/apps/web", message="App '/web' does not exist")
    await eventually(lambda: var.sample() == Ok(Neg), "404: Neg")
    assert namer.addr_var(Path.read("/web")).sample() is Addr.Neg
    stop()


async def test_the_namer_starts_without_waiting_for_marathon(
    marathon: FakeMarathon, start_namer: StartNamer
) -> None:
    marathon.hang_next(None)
    with trio.fail_after(5):
        namer, _ = await start_namer(requestTimeoutMs=100)
    var = namer.lookup(Path.read("/web"))
    stop = follow(var)
    await eventually(lambda: isinstance(var.sample(), Failed), "a hung Marathon: Failed")
    assert "no answer in 0.1s" in str(var.sample().exc)  # type: ignore[union-attr]
    stop()


async def test_a_burst_of_new_watches_queues_in_the_namer_not_in_marathon(
    marathon: FakeMarathon, start_namer: StartNamer
) -> None:
    for i in range(40):
        marathon.add_app(f"/app{i}")
        marathon.add_task(f"/app{i}", "127.0.0.1", [18000 + i])
    marathon.delay_next(0.05, None, path="/v2/apps/")
    namer, _ = await start_namer(**EVENTS_ONLY)
    lookups = [namer.lookup(Path.read(f"/app{i}")) for i in range(40)]
    stops = [follow(v) for v in lookups]
    most = 0
    while not all(addrs(v) for v in lookups):
        most = max(most, marathon.open_connections)
        await trio.sleep(0.005)
    assert most <= 16 + 2  # the REST requests, the event stream and the app list
    reads = [r for r in marathon.requests if r.path.startswith("/v2/apps/")]
    assert len(reads) < 40, "most of the new watches were answered by one bulk read"
    assert any(r.query.get("embed") == ("apps.tasks",) for r in marathon.requests_to("/v2/apps"))
    for s in stops:
        s()


def many_apps(marathon: FakeMarathon, n: int = 10) -> None:
    for i in range(n):
        marathon.add_app(f"/app{i}")
        marathon.add_task(f"/app{i}", "127.0.0.1", [18000 + i])


async def test_many_watched_apps_are_reread_in_one_request(
    marathon: FakeMarathon, start_namer: StartNamer
) -> None:
    many_apps(marathon)
    namer, metrics = await start_namer(useEventStream=False, ttlMs=100, jitterMs=10)
    lookups = [namer.lookup(Path.read(f"/app{i}")) for i in range(10)]
    stops = [follow(v) for v in lookups]
    await eventually(lambda: all(addrs(v) for v in lookups), "all bound")
    await eventually(lambda: metrics.gauge("bulk").value == 1, "bulk re-reads")
    await trio.sleep(0.2)  # app reads begun before the switch finish
    marathon.clear_requests()
    marathon.add_task("/app3", "127.0.0.1", [18100])
    await eventually(lambda: len(addrs(lookups[3]) or ()) == 2, "seen through the bulk read")
    await trio.sleep(0.3)
    paths = {r.path for r in marathon.requests}
    assert paths == {"/v2/apps"}, "no request per app"
    assert all(r.query.get("embed") == ("apps.tasks",) for r in marathon.requests)
    assert namer.state()["resync"] == "bulk"
    marathon.remove_app("/app5")
    await eventually(lambda: lookups[5].sample() == Ok(Neg), "a deleted app is Neg")
    for s in stops:
        s()


async def test_a_marathon_that_does_not_embed_tasks_is_read_app_by_app(
    marathon: FakeMarathon, start_namer: StartNamer
) -> None:
    many_apps(marathon)

    def no_tasks(r: Response) -> Response:
        doc = json.loads(r.body)
        for app in doc.get("apps", []):
            app.pop("tasks", None)
        return attrs.evolve(r, body=json.dumps(doc).encode())

    marathon.rewrite_next(no_tasks, None, path="/v2/apps")
    namer, metrics = await start_namer(useEventStream=False, ttlMs=100, jitterMs=10)
    lookups = [namer.lookup(Path.read(f"/app{i}")) for i in range(10)]
    stops = [follow(v) for v in lookups]
    await eventually(lambda: all(addrs(v) for v in lookups), "all bound")
    await eventually(lambda: len(marathon.requests_to("/v2/apps/app0")) >= 3, "polled per app")
    marathon.add_task("/app3", "127.0.0.1", [18100])
    await eventually(lambda: len(addrs(lookups[3]) or ()) == 2, "seen")
    assert metrics.gauge("bulk").value == 0
    assert metrics.scope("failures").counter("bad_payload").value == 0
    for s in stops:
        s()


async def test_a_failing_bulk_read_keeps_every_last_good_answer(
    marathon: FakeMarathon, start_namer: StartNamer
) -> None:
    many_apps(marathon)
    namer, metrics = await start_namer(useEventStream=False, ttlMs=100, jitterMs=10)
    lookups = [namer.lookup(Path.read(f"/app{i}")) for i in range(10)]
    stops = [follow(v) for v in lookups]
    await eventually(lambda: metrics.gauge("bulk").value == 1, "bulk re-reads")
    before = [addrs(v) for v in lookups]
    marathon.garble_next(None, path="/v2/apps")
    marathon.add_task("/app3", "127.0.0.1", [18100])
    failures = metrics.scope("failures").counter("malformed_json")
    await eventually(lambda: failures.value >= 5, "counted")
    assert [addrs(v) for v in lookups] == before
    marathon.clear_faults()
    await eventually(lambda: len(addrs(lookups[3]) or ()) == 2, "recovered")
    for s in stops:
        s()


async def test_a_failing_dcos_login_is_not_retried_by_every_request(
    nursery: trio.Nursery, start_namer: StartNamer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(namer_module, "BULK_MIN_WATCHED", 10**9)  # a request per app
    fake = FakeMarathon(dcos_accounts={"linkpy-sa": "pw"})
    await nursery.start(fake.serve)
    for i in range(20):
        fake.add_app(f"/app{i}")
        fake.add_task(f"/app{i}", "127.0.0.1", [18000 + i])
    _, pem = rsa_pem()
    auth = DcosAuth("linkpy-sa", from_pem(pem), f"{fake.url}/acs/api/v1/auth/login")
    namer, metrics = await start_namer(
        fake, auth=auth, useEventStream=False, ttlMs=100, jitterMs=10
    )
    lookups = [namer.lookup(Path.read(f"/app{i}")) for i in range(20)]
    stops = [follow(v) for v in lookups]
    await eventually(lambda: all(addrs(v) for v in lookups), "all bound")
    auth.uid = "revoked-sa"  # the account stops working, and so does every token
    fake.expire_tokens()
    fake.clear_requests()
    failures = metrics.scope("failures").counter("login")
    await eventually(lambda: failures.value >= 60, "every read fails to log in")
    logins = len(fake.requests_to("/acs/api/v1/auth/login"))
    assert logins < failures.value / 4, "failed logins are not repeated by every request"
    assert all(addrs(v) for v in lookups), "the last good answers stay"
    auth.uid = "linkpy-sa"
    fake.add_task("/app0", "127.0.0.1", [18100])
    await eventually(lambda: len(addrs(lookups[0]) or ()) == 2, "logged in again")
    for s in stops:
        s()


def from_pem(pem: str) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key
