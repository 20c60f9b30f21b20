"""The ``linkpy`` command line, run as a user runs it (a subprocess)."""

from __future__ import annotations

import json
import signal
import sys
from functools import partial
from pathlib import Path

import httpx
import trio

from .backends import Backend
from .conftest import ROOT, MakeBackend, write_disco

LINKPY = [sys.executable, "-m", "linkpy"]


async def linkpy(*args: str, check: bool = False) -> trio.CompletedProcess[bytes]:  # type: ignore[name-defined]
    return await trio.run_process(
        [*LINKPY, *args], capture_stdout=True, capture_stderr=True, check=check, cwd=ROOT
    )


async def test_help_everywhere() -> None:
    for args in ([], ["run"], ["check"], ["dtab"], ["dtab", "delegate"], ["demo"]):
        out = await linkpy(*args, "--help")
        assert out.returncode == 0, args
        assert b"usage: linkpy" in out.stdout


async def test_check(tmp_path: Path) -> None:
    out = await linkpy("check", "configs/quickstart.yaml")
    assert out.returncode == 0
    assert b"valid" in out.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("routers:\n- protocol: http\n  servers: [{port: x}]\n")
    out = await linkpy("check", str(bad))
    assert out.returncode == 2
    assert b"routers[0].servers[0].port: expected an integer" in out.stderr
    out = await linkpy("check", str(tmp_path / "missing.yaml"))
    assert out.returncode == 2
    assert b"cannot read" in out.stderr


async def test_dtab_delegate_without_a_config() -> None:
    out = await linkpy(
        "dtab", "delegate", "--dtab", "/svc=>/$/inet/127.0.0.1/8080;/svc/x=>/$/nil", "/svc/web"
    )
    assert out.returncode == 0, out.stderr
    tree = json.loads(out.stdout)
    assert tree["type"] == "delegate"
    leaf = tree["delegate"]
    assert leaf["type"] == "leaf"
    assert leaf["bound"]["id"] == "/$/inet/127.0.0.1/8080"
    assert leaf["bound"]["path"] == "/web"
    assert leaf["bound"]["addr"]["addrs"] == [{"ip": "127.0.0.1", "port": 8080, "meta": {}}]
    out = await linkpy("dtab", "delegate", "--dtab", "/svc=>", "/svc/web")
    assert out.returncode == 2
    assert b"Invalid dtab" in out.stderr


async def test_dtab_delegate_with_the_config_namers(tmp_path: Path) -> None:
    disco = tmp_path / "disco"
    disco.mkdir()
    (disco / "users").write_text("127.0.0.1 9000\n")
    cfg = tmp_path / "l.yaml"
    cfg.write_text(
        f"namers:\n- kind: io.l5d.fs\n  rootDir: {disco}\n"
        "routers:\n- protocol: http\n  dtab: /svc => /#/io.l5d.fs\n  servers: [{port: 4140}]\n"
    )
    out = await linkpy("dtab", "delegate", "--config", str(cfg), "/svc/users")
    assert out.returncode == 0, out.stderr
    tree = json.loads(out.stdout)
    assert tree["delegate"]["bound"]["id"] == "/#/io.l5d.fs/users"
    out = await linkpy(
        "dtab", "delegate", "--config", str(cfg), "--dtab", "/svc/users => /$/fail", "/svc/users"
    )
    tree = json.loads(out.stdout)
    assert tree["type"] == "alt"  # the override first, then the router dtab
    assert [t["type"] for t in tree["alt"]] == ["fail", "leaf"]


async def test_run_serves_then_drains_on_sigterm(
    backend: MakeBackend, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    b: Backend = await backend("b")
    disco = tmp_path / "disco"
    disco.mkdir()
    write_disco(disco, "web", b)
    listeners = [await trio.open_tcp_listeners(0, host="127.0.0.1") for _ in range(2)]
    ports = [ls[0].socket.getsockname()[1] for ls in listeners]
    for ls in listeners:
        await ls[0].aclose()
    cfg = tmp_path / "l.yaml"
    cfg.write_text(
        f"admin: {{port: {ports[1]}}}\nnamers:\n- kind: io.l5d.fs\n  rootDir: {disco}\n"
        "routers:\n- protocol: http\n  dtab: /svc => /#/io.l5d.fs\n"
        f"  servers: [{{port: {ports[0]}}}]\n"
    )
    async with trio.open_nursery() as nursery:
        proc: trio.Process = await nursery.start(
            partial(trio.run_process, [*LINKPY, "run", str(cfg)], cwd=ROOT, check=False)
        )
        for _ in range(200):
            try:
                r = await http.get(f"http://127.0.0.1:{ports[1]}/admin/ping")
                if r.status_code == 200:
                    break
            except httpx.TransportError:
                await trio.sleep(0.05)
        r = await http.get(f"http://127.0.0.1:{ports[0]}/", headers={"Host": "web"})
        assert r.text == "b GET /"
        proc.send_signal(signal.SIGTERM)
        assert await proc.wait() == 0
