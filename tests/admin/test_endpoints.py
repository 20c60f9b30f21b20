"""Every admin endpoint over real HTTP, after real traffic through the router."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import attrs
import httpx
import pytest
import trio
import yaml

from linkpy.activity import Var
from linkpy.admin.endpoints import ENDPOINTS
from linkpy.admin.server import MAX_BODY
from linkpy.config.load import load_file
from linkpy.config.registry import Registry
from linkpy.linker import Linker
from linkpy.naming import Addr, AddrBound, Address, Bound, Leaf, Ok, Pending
from linkpy.naming import Path as Path_
from linkpy.plugin import Activity, Namer, NamerConfig, NamerContext

from ..backends import Backend, Reply, Seen
from ..conftest import MakeBackend, StartLinker, admin_url, fs_config, router_url, write_disco


async def traffic(
    backend: MakeBackend, start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> tuple[Linker, Backend, Backend]:
    """A linker whose router sent 3 requests to web (2 endpoints) and 1 to nowhere."""
    a = await backend("a")
    b = await backend("b")
    write_disco(disco, "web", a, b)
    linker = await start_linker(fs_config(disco))
    for _ in range(3):
        r = await http.get(router_url(linker) + "/", headers={"Host": "web"})
        assert r.status_code == 200
    r = await http.get(router_url(linker) + "/", headers={"Host": "nope"})
    assert r.status_code == 502
    return linker, a, b


async def test_ping_head_and_not_found(
    start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    linker = await start_linker(fs_config(disco))
    url = admin_url(linker)
    r = await http.get(url + "/admin/ping")
    assert (r.status_code, r.text) == (200, "pong")
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["x-content-type-options"] == "nosniff"
    r = await http.head(url + "/admin/ping")
    assert r.status_code == 200 and r.content == b"" and r.headers["content-length"] == "4"
    r = await http.get(url + "/admin/nope")
    assert r.status_code == 404


async def test_index_lists_every_endpoint(
    start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    linker = await start_linker(fs_config(disco))
    for path in ("/admin", "/admin/index.txt"):
        r = await http.get(admin_url(linker) + path)
        assert r.status_code == 200
        listed = {line.split()[0].rstrip("*") for line in r.text.splitlines()}
        assert {e.path for e in ENDPOINTS} | {"/admin/metrics/prometheus"} == listed
    shutdown = next(line for line in r.text.splitlines() if line.startswith("/admin/shutdown "))
    assert shutdown.split()[1] == "POST"


async def test_metrics_json_flat_tree_and_query(
    backend: MakeBackend, start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    linker, _, _ = await traffic(backend, start_linker, disco, http)
    url = admin_url(linker) + "/admin/metrics.json"
    port = linker.ports()["out"][0]
    flat = (await http.get(url)).json()
    server = f"rt/out/server/127.0.0.1/{port}"
    assert flat[f"{server}/requests"] == 4
    assert flat[f"{server}/success"] == 3
    assert flat[f"{server}/failures/no_brokers"] == 1
    assert flat[f"{server}/request_latency_ms.count"] == 4
    assert flat[f"{server}/request_latency_ms.p99"] > 0
    assert flat["rt/out/client/#/io.l5d.fs/web/loadbalancer/size"] == 2
    tree = (await http.get(url, params={"tree": "1"})).json()
    srv = tree["rt"]["out"]["server"][f"127.0.0.1/{port}"]  # a label is one element
    assert srv["requests"] == {"counter": 4}
    assert srv["request_latency_ms"]["stat.count"] == 4
    assert tree["rt"]["out"]["client"]["#/io.l5d.fs/web"]["requests"] == {"counter": 3}
    q = (await http.get(url, params={"q": "rt/out/service/"})).json()
    assert q and all(k.startswith("rt/out/service/") for k in q)
    assert q["rt/out/service/svc/web/requests"] == 3
    pretty = await http.get(url, params={"pretty": "1", "q": "rt/out/service/svc/web/requests"})
    assert pretty.text == '{\n  "rt/out/service/svc/web/requests": 3\n}'


async def test_routers_json(
    backend: MakeBackend, start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    linker, a, b = await traffic(backend, start_linker, disco, http)
    data = (await http.get(admin_url(linker) + "/admin/routers.json")).json()
    assert isinstance(data["time"], float)
    (router,) = data["routers"]
    assert router["label"] == "out"
    assert router["protocol"] == "http"
    assert router["dstPrefix"] == "/svc"
    assert router["dentries"] == ["/svc=>/#/io.l5d.fs"]
    assert (router["requests"], router["success"], router["failures"]) == (4, 3, 1)
    (server,) = router["servers"]
    assert server["port"] == linker.ports()["out"][0]
    assert server["latency_ms"]["count"] == 4
    assert set(server["latency_ms"]) == {"count", "avg", "p50", "p90", "p95", "p99", "p9990", "max"}
    assert [s["name"] for s in router["services"]] == ["/svc/nope", "/svc/web"]
    web = router["services"][1]
    assert (web["requests"], web["success"], web["failures"]) == (3, 3, 0)
    (client,) = router["clients"]
    assert client["id"] == "/#/io.l5d.fs/web"
    assert client["state"] == "bound"
    assert client["requests"] == 3
    assert client["load"] == 0
    eps = {e["port"]: e for e in client["endpoints"]}
    assert set(eps) == {a.port, b.port}
    for e in eps.values():
        assert e["address"] == f"127.0.0.1:{e['port']}"
        assert e["state"] == "available" and e["available"] is True
        assert e["weight"] == 1.0 and e["load"] == 0 and e["failures"] == 0
    assert sum(e["requests"] for e in eps.values()) == 3


async def test_routers_json_shows_load_in_flight(
    backend: MakeBackend, start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    arrived, release = trio.Event(), trio.Event()

    async def slow(req: Seen) -> Reply:
        arrived.set()
        await release.wait()
        return Reply(200, b"done")

    b = await backend("slow", slow)
    write_disco(disco, "web", b)
    linker = await start_linker(fs_config(disco))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: http.get(router_url(linker) + "/", headers={"Host": "web"}))
        await arrived.wait()
        data = (await http.get(admin_url(linker) + "/admin/routers.json")).json()
        (client,) = data["routers"][0]["clients"]
        assert client["load"] == 1
        assert client["endpoints"][0]["load"] == 1
        assert data["routers"][0]["servers"][0]["pending"] == 1
        release.set()


async def test_client_state_and_bound_names(
    backend: MakeBackend, start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    linker, a, b = await traffic(backend, start_linker, disco, http)
    state = (await http.get(admin_url(linker) + "/client_state.json")).json()
    assert state == {
        "/#/io.l5d.fs/web": {
            "state": "bound",
            "addresses": sorted([f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"]),
        }
    }
    names = (await http.get(admin_url(linker) + "/bound-names.json")).json()
    assert names == ["/#/io.l5d.fs/web"]
    ns = (await http.get(admin_url(linker) + "/namer_state/io.l5d.fs.json")).json()
    assert ns["rootDir"] == str(disco)
    assert set(ns["files"]["web"]) == {f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"}
    r = await http.get(admin_url(linker) + "/namer_state/io.l5d.nope.json")
    assert r.status_code == 404


async def test_config_json_and_files(tmp_path: Path, disco: Path, http: httpx.AsyncClient) -> None:
    text = fs_config(disco)
    cfg_file = tmp_path / "linker.yaml"
    cfg_file.write_text(text)
    linker = Linker(load_file(str(cfg_file)))
    async with trio.open_nursery() as nursery:
        await nursery.start(linker.run)
        url = admin_url(linker)
        r = await http.get(url + "/config.json")
        assert r.json() == yaml.safe_load(text)
        for index in ("/files", "/files/"):
            r = await http.get(url + index)
            assert r.status_code == 200
            assert r.headers["content-type"] == "text/html; charset=utf-8"
            assert "default-src 'self'" in r.headers["content-security-policy"]
            assert '<a href="/files/linker.yaml">linker.yaml</a>' in r.text
            assert str(cfg_file) in r.text
        r = await http.get(url + "/files/linker.yaml")
        assert r.status_code == 200 and r.text == text
        assert r.headers["content-type"] == "text/plain; charset=utf-8"
        assert (await http.get(url + "/files/other.yaml")).status_code == 404
        assert (await http.get(url + "/files/../linker.yaml")).status_code == 404
        await linker.shutdown(0)


async def test_files_of_a_config_given_as_text(
    start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    linker = await start_linker(fs_config(disco))
    r = await http.get(admin_url(linker) + "/files")
    assert '<a href="/files/config.yaml">config.yaml</a>' in r.text
    r = await http.get(admin_url(linker) + "/files/config.yaml")
    assert r.text == fs_config(disco)


async def test_tasks(start_linker: StartLinker, disco: Path, http: httpx.AsyncClient) -> None:
    linker = await start_linker(fs_config(disco))
    tree = (await http.get(admin_url(linker) + "/admin/tasks.json")).json()
    assert tree["name"] == "<init>"

    def names(node: dict[str, object]) -> list[str]:
        out = [str(node["name"])]
        for c in node["children"]:  # type: ignore[attr-defined]
            out += names(c)
        return out

    every = names(tree)
    assert "linkpy.linker.Linker.run" in every
    assert "linkpy.linker.Linker._housekeeping" in every
    assert "linkpy.admin.server.AdminServer.serve" in every
    assert f"admin 127.0.0.1:{linker.admin_port} connection" in every  # this very request
    port = linker.ports()["out"][0]
    async with await trio.open_tcp_stream("127.0.0.1", port):  # an idle router connection
        await trio.sleep(0.1)
        tree = (await http.get(admin_url(linker) + "/admin/tasks.json")).json()
    assert f"router out 127.0.0.1:{port} connection" in names(tree)
    text = (await http.get(admin_url(linker) + "/admin/tasks")).text
    head, _, body = text.partition("\n\n")
    assert head == f"{len(every)} trio tasks"
    lines = body.splitlines()
    assert lines[0] == "<init>"
    run = next(line for line in lines if line.strip() == "linkpy.linker.Linker.run")
    assert run.startswith("  ")


async def test_task_text_folds_identical_siblings() -> None:
    from linkpy.admin.state import task_lines

    leaf = {"name": "conn", "children": []}
    tree = {"name": "root", "children": [leaf, leaf, leaf, {"name": "other", "children": []}]}
    assert list(task_lines(tree)) == ["root", "  conn  ×3", "  other"]


async def test_static_files(
    start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    linker = await start_linker(fs_config(disco))
    url = admin_url(linker)
    for path, ctype in (
        ("/", "text/html; charset=utf-8"),
        ("/delegator", "text/html; charset=utf-8"),
        ("/admin/files/admin.css", "text/css; charset=utf-8"),
        ("/admin/files/dashboard.js", "text/javascript; charset=utf-8"),
        ("/admin/files/delegator.js", "text/javascript; charset=utf-8"),
        ("/admin/files/common.js", "text/javascript; charset=utf-8"),
    ):
        r = await http.get(url + path)
        assert r.status_code == 200, path
        assert r.headers["content-type"] == ctype
    page = (await http.get(url + "/")).text
    # self-contained: every script and style sheet comes from the admin itself
    assert "http" not in page.replace('lang="en"', "")
    for bad in ("/admin/files/nope.js", "/admin/files/../handlers.py", "/admin/files/"):
        assert (await http.get(url + bad)).status_code == 404


# --- the delegator ----------------------------------------------------------------


async def test_delegator_json_get_and_post(
    backend: MakeBackend, start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    b = await backend("b")
    write_disco(disco, "web", b)
    linker = await start_linker(fs_config(disco))
    dtab = "/svc=>/#/io.l5d.fs"
    expected = {
        "type": "delegate",
        "path": "/svc/web",
        "delegate": {
            "type": "leaf",
            "path": "/#/io.l5d.fs/web",
            "dentry": {"prefix": "/svc", "dst": "/#/io.l5d.fs"},
            "bound": {
                "addr": {
                    "type": "bound",
                    "addrs": [{"ip": "127.0.0.1", "port": b.port, "meta": {}}],
                    "meta": {},
                },
                "id": "/#/io.l5d.fs/web",
                "path": "/",
            },
        },
    }
    url = admin_url(linker) + "/delegator.json"
    r = await http.get(url, params={"path": "/svc/web", "dtab": dtab})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == expected
    # the exact bytes: Linkerd's field order, compact
    assert r.text.startswith('{"type":"delegate","path":"/svc/web","delegate":{"type":"leaf"')
    body = {"namespace": "out", "dtab": dtab, "path": "/svc/web"}
    r = await http.post(url, json=body)
    assert r.status_code == 200 and r.json() == expected
    # a browser page of the admin itself may post
    r = await http.post(url, json=body, headers={"Origin": admin_url(linker)})
    assert r.status_code == 200


async def test_delegator_json_neg_fail_and_alt(
    start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    linker = await start_linker(fs_config(disco))
    dtab = "/svc=>/#/io.l5d.fs;/svc/x=>!;/svc/x=>/nowhere|/$/inet/127.1/1"
    r = await http.get(
        admin_url(linker) + "/delegator.json", params={"path": "/svc/x", "dtab": dtab}
    )
    assert r.status_code == 200
    alt = r.json()  # the root Delegate is simplified away: the Alt has the same path
    assert alt["type"] == "alt" and alt["path"] == "/svc/x" and "dentry" not in alt
    kinds = [(c["type"], c["path"]) for c in alt["alt"]]
    assert kinds == [
        ("neg", "/nowhere"),
        ("leaf", "/$/inet/127.1/1"),
        ("fail", "!"),
        ("neg", "/#/io.l5d.fs/x"),
    ]


@pytest.mark.parametrize(
    ("method", "kwargs", "status", "message"),
    [
        ("GET", {"params": {"path": "/svc/x", "dtab": "/a=>"}}, 400, "Invalid dtab: "),
        ("GET", {"params": {"path": "svc"}}, 400, "Invalid path: "),
        ("POST", {"json": {"path": "/svc/x"}}, 400, "Malformed delegation request: "),
        ("POST", {"json": {"path": 3, "dtab": ""}}, 400, "Malformed delegation request: "),
        ("POST", {"content": b"path=/a"}, 415, "expected a JSON body"),
        ("PUT", {"json": {}}, 405, "PUT not allowed"),
        ("GET", {"params": {"path": "/a", "namespace": "nope"}}, 501, "Name Interpreter for nope"),
    ],
)
async def test_delegator_json_errors(
    start_linker: StartLinker,
    disco: Path,
    http: httpx.AsyncClient,
    method: str,
    kwargs: dict[str, object],
    status: int,
    message: str,
) -> None:
    linker = await start_linker(fs_config(disco))
    r = await http.request(method, admin_url(linker) + "/delegator.json", **kwargs)  # type: ignore[arg-type]
    assert r.status_code == status
    assert r.text.startswith(message), r.text


async def test_request_bodies_are_bounded(
    start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    linker = await start_linker(fs_config(disco))
    url = admin_url(linker) + "/delegator.json"
    big = json.dumps({"path": "/a", "dtab": "x" * MAX_BODY}).encode()
    r = await http.post(url, content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413

    async def chunks() -> object:
        for _ in range(MAX_BODY // 4096 + 2):
            yield b"x" * 4096

    r = await http.post(url, content=chunks(), headers={"Content-Type": "application/json"})  # type: ignore[arg-type]
    assert r.status_code == 413
    assert (await http.get(admin_url(linker) + "/admin/ping")).text == "pong"


# --- shutdown ---------------------------------------------------------------------


async def test_shutdown_is_post_only_and_graceful(
    backend: MakeBackend, start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    arrived, release = trio.Event(), trio.Event()

    async def slow(req: Seen) -> Reply:
        arrived.set()
        await release.wait()
        return Reply(200, b"finished")

    b = await backend("slow", slow)
    write_disco(disco, "web", b)
    linker = await start_linker(fs_config(disco))
    url = admin_url(linker) + "/admin/shutdown"
    r = await http.get(url)
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    # a page of another origin cannot make a browser shut the process down
    r = await http.post(url, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403
    assert (await http.get(admin_url(linker) + "/admin/ping")).text == "pong"

    answers: list[httpx.Response] = []

    async def in_flight() -> None:
        answers.append(await http.get(router_url(linker) + "/", headers={"Host": "web"}))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(in_flight)
        await arrived.wait()
        r = await http.post(url)
        assert r.status_code == 200 and r.text.startswith("shutting down")
        assert r.headers["connection"] == "close"
        await trio.sleep(0.05)
        # draining: no new connections, the request in flight goes on
        with pytest.raises(httpx.ConnectError):
            await http.get(router_url(linker) + "/", headers={"Host": "web"})
        release.set()
    assert answers[0].status_code == 200 and answers[0].text == "finished"
    # then the process stops: the admin port closes too
    with trio.fail_after(5):
        while True:
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", linker.admin_port)
            except OSError:
                break
            await stream.aclose()
            await trio.sleep(0.02)


# --- a namer that answers only what someone observes ----------------------------------


class LazyNamer(Namer):
    """Resolves a name, and then its addresses, only while they are observed."""

    def __init__(self) -> None:
        self.active: list[str] = []
        self.vars: dict[Path_, Activity] = {}

    def lookup(self, path: Path_) -> Activity:
        if path not in self.vars:
            self.vars[path] = self._lookup(path)
        return self.vars[path]

    def _lookup(self, path: Path_) -> Activity:
        addr: Var[Addr] = Var(Addr.Pending)

        def addr_active(on: bool) -> None:
            self.active.append(f"addr {on}")
            if on:
                addr.set(AddrBound([Address("127.0.0.1", 9)]))

        bound = Bound(self.prefix.concat(path.take(1)), path.drop(1), addr)
        addr._on_active = addr_active
        tree: Activity = Var(Pending)

        def tree_active(on: bool) -> None:
            self.active.append(f"tree {on}")
            if on:
                tree.set(Ok(Leaf(bound)))

        tree._on_active = tree_active
        return tree


@attrs.frozen(kw_only=True)
class LazyConfig(NamerConfig):
    default_prefix: ClassVar[str] = "/lazy"
    namers: ClassVar[list[LazyNamer]] = []

    def mk(self, ctx: NamerContext) -> Namer:
        namer = LazyNamer()
        LazyConfig.namers.append(namer)
        return namer


async def test_delegator_observes_what_it_waits_for(
    start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    registry = Registry.discover().with_plugins("linkpy.namers", {"test.lazy": LazyConfig})
    cfg = fs_config(disco).replace("- kind: io.l5d.fs", "- kind: test.lazy\n- kind: io.l5d.fs")
    linker = await start_linker(cfg, registry)
    with trio.fail_after(1):  # well within the delegator's 2 s
        r = await http.get(
            admin_url(linker) + "/delegator.json",
            params={"path": "/svc/x/y", "dtab": "/svc=>/#/lazy"},
        )
    assert r.status_code == 200, r.text
    leaf = r.json()["delegate"]
    assert leaf["bound"] == {
        "addr": {
            "type": "bound",
            "addrs": [{"ip": "127.0.0.1", "port": 9, "meta": {}}],
            "meta": {},
        },
        "id": "/#/lazy/x",
        "path": "/y",
    }
    # and it lets go of them afterwards
    assert LazyConfig.namers[-1].active == ["tree True", "addr True", "tree False", "addr False"]


async def test_shutdown_stops_linkpy_run(
    tmp_path: Path, disco: Path, http: httpx.AsyncClient
) -> None:
    cfg = tmp_path / "linker.yaml"
    cfg.write_text(fs_config(disco))
    cmd = [sys.executable, "-m", "linkpy", "run", str(cfg)]
    proc = await trio.lowlevel.open_process(cmd, stderr=subprocess.PIPE)
    try:
        assert proc.stderr is not None
        log = b""
        with trio.fail_after(20):
            while (m := re.search(rb"admin on 127\.0\.0\.1:(\d+)", log)) is None:
                chunk = await proc.stderr.receive_some()
                assert chunk, log
                log += chunk
        r = await http.post(f"http://127.0.0.1:{int(m[1])}/admin/shutdown")
        assert r.status_code == 200
        with trio.fail_after(10):
            assert await proc.wait() == 0  # the process exits, not just the linker
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
