"""``admin.security`` (Linkerd's SecurityFilter) and the admin's other safety rules."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from linkpy.admin.security import CONTROL, DIAGNOSTICS, UI, Security
from linkpy.config.load import load
from linkpy.config.schema import AdminSecurity, RegexText
from linkpy.errors import ConfigError

from ..conftest import StartLinker, admin_url, fs_config


def with_security(disco: Path, security: str) -> str:
    cfg = fs_config(disco)
    return cfg.replace(
        "admin: {ip: 127.0.0.1, port: 0}",
        f"admin:\n  ip: 127.0.0.1\n  port: 0\n  security:\n{security}",
    )


async def status(http: httpx.AsyncClient, url: str, method: str = "GET") -> int:
    return (await http.request(method, url)).status_code


@pytest.mark.parametrize(
    ("path", "category"),
    [
        ("/", UI),
        ("/delegator", UI),
        ("/delegator.json", UI),
        ("/files", UI),
        ("/files/linker.yaml", UI),
        ("/admin/files/admin.css", UI),
        ("/config.json", UI),
        ("/admin/metrics.json", UI),
        ("/admin/routers.json", UI),
        ("/admin/shutdown", CONTROL),
        ("/logging.json", CONTROL),
        ("/admin/ping", DIAGNOSTICS),
        ("/admin/tasks", DIAGNOSTICS),
        ("/admin/metrics/prometheus", DIAGNOSTICS),
        ("/client_state.json", DIAGNOSTICS),
        ("/delegatorXjson", DIAGNOSTICS),  # the dot is literal
        ("/admin/shutdown/", DIAGNOSTICS),  # whole-path matches
    ],
)
def test_categories(path: str, category: str) -> None:
    assert Security().category(path) == category


def test_rules() -> None:
    s = Security(
        AdminSecurity(
            uiEnabled=False,
            pathWhitelist=[RegexText("/delegator.*")],
            pathBlacklist=[RegexText("/admin/tasks.*"), RegexText("/config.json")],
        )
    )
    assert not s.allows("/")  # ui disabled
    assert s.allows("/delegator") and s.allows("/delegator.json")  # but whitelisted
    assert not s.allows("/admin/tasks.json")  # diagnostics enabled, blacklisted
    assert s.allows("/admin/ping")
    assert not s.allows("/config.json")  # ui disabled and not whitelisted
    # a blacklist applies only while the category is enabled; a whitelist only when it is not
    ping = [RegexText("/admin/ping")]
    s = Security(AdminSecurity(pathWhitelist=ping, pathBlacklist=ping))
    assert not s.allows("/admin/ping")


async def test_ui_disabled(start_linker: StartLinker, disco: Path, http: httpx.AsyncClient) -> None:
    linker = await start_linker(with_security(disco, "    uiEnabled: false"))
    url = admin_url(linker)
    for path in ("/", "/delegator", "/admin/files/admin.css", "/config.json", "/files"):
        assert await status(http, url + path) == 404, path
    assert await status(http, url + "/admin/metrics.json") == 404
    assert await status(http, url + "/delegator.json?path=/a") == 404
    assert await status(http, url + "/admin/ping") == 200
    assert await status(http, url + "/admin/metrics/prometheus") == 200
    assert await status(http, url + "/admin/shutdown") == 405  # control: still there, POST only


async def test_control_disabled(
    start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    linker = await start_linker(with_security(disco, "    controlEnabled: false"))
    url = admin_url(linker)
    assert await status(http, url + "/admin/shutdown", "POST") == 404
    assert await status(http, url + "/admin/ping") == 200  # still running
    assert await status(http, url + "/") == 200


async def test_diagnostics_disabled_with_a_whitelist(
    start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    security = "    diagnosticsEnabled: false\n    pathWhitelist: [/admin/ping]"
    linker = await start_linker(with_security(disco, security))
    url = admin_url(linker)
    assert await status(http, url + "/admin/ping") == 200
    for path in ("/admin/tasks", "/admin/metrics/prometheus", "/client_state.json", "/admin"):
        assert await status(http, url + path) == 404, path
    assert await status(http, url + "/") == 200
    assert await status(http, url + "/admin/routers.json") == 200  # the dashboard's data is ui


async def test_blacklist(start_linker: StartLinker, disco: Path, http: httpx.AsyncClient) -> None:
    security = "    pathBlacklist: ['/admin/metrics[.]json', '/admin/tasks.*']"
    linker = await start_linker(with_security(disco, security))
    url = admin_url(linker)
    assert await status(http, url + "/admin/metrics.json?tree=1") == 404
    assert await status(http, url + "/admin/tasks") == 404
    assert await status(http, url + "/admin/tasks.json") == 404
    assert await status(http, url + "/admin/ping") == 200


def test_bad_patterns_are_config_errors(disco: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load(with_security(disco, "    pathBlacklist: ['/admin/(']"))
    msg = "admin.security.pathBlacklist[0]: invalid regular expression '/admin/(': missing )"
    assert msg in str(e.value)


async def test_binds_to_loopback_by_default(
    start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    cfg = fs_config(disco).replace("admin: {ip: 127.0.0.1, port: 0}", "admin: {port: 0}")
    linker = await start_linker(cfg)
    assert linker.config.admin.ip == "127.0.0.1"
    admin = linker.admin
    listeners = admin.server._listeners  # type: ignore[attr-defined]
    assert [sock.socket.getsockname()[0] for sock in listeners] == ["127.0.0.1"]
    assert (await http.get(admin_url(linker) + "/admin/ping")).text == "pong"


async def test_browser_posts_must_come_from_the_admin_itself(
    start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    linker = await start_linker(fs_config(disco))
    port = linker.admin_port
    url = admin_url(linker)
    body = {"path": "/svc/x", "dtab": ""}

    def browser(host: str, origin: str) -> dict[str, str]:
        return {"Host": host, "Origin": origin}

    # another site's page
    r = await http.post(
        url + "/delegator.json", json=body, headers={"Origin": "http://evil.example"}
    )
    assert r.status_code == 403
    # a page whose host name was rebound to 127.0.0.1: same origin as far as the browser knows
    rebound = browser(f"rebound.example:{port}", f"http://rebound.example:{port}")
    r = await http.post(url + "/delegator.json", json=body, headers=rebound)
    assert r.status_code == 200  # harmless: explains only
    r = await http.post(url + "/admin/shutdown", headers=rebound)
    assert r.status_code == 403
    assert (await http.get(url + "/admin/ping")).text == "pong"
    # the admin's own pages, named by address or localhost, may
    for host in (f"localhost:{port}", f"[::1]:{port}"):
        r = await http.post(
            url + "/delegator.json", json=body, headers=browser(host, "http://" + host)
        )
        assert r.status_code == 200
    r = await http.post(url + "/admin/shutdown", headers=browser(f"127.0.0.1:{port}", url))
    assert r.status_code == 200
