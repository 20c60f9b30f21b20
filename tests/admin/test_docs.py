"""docs/admin.md says what the admin does: every endpoint, category and metric name."""

from __future__ import annotations

import configparser
import fnmatch
import re
from pathlib import Path

import httpx

from linkpy.admin.endpoints import ENDPOINTS, PROMETHEUS_PATH
from linkpy.admin.security import CONTROL_PATHS, UI_PATHS, Security

from ..conftest import ROOT, MakeBackend, StartLinker, admin_url, fs_config, router_url, write_disco

DOC = (ROOT / "docs" / "admin.md").read_text()


def endpoint_rows() -> dict[str, tuple[str, str]]:
    """``| `path` | methods | category | ... |`` rows: path -> (methods, category)."""
    rows = {}
    for m in re.finditer(r"^\| `([^`]+)` \| ([A-Z, ]+) \| (\w+) \|", DOC, re.M):
        rows[m[1]] = (m[2], m[3])
    return rows


def test_every_endpoint_is_documented() -> None:
    rows = endpoint_rows()
    security = Security()
    for e in ENDPOINTS:
        assert e.path in rows, f"{e.path} is not in docs/admin.md"
        methods, category = rows[e.path]
        assert set(methods.split(", ")) == set(e.methods) - {"HEAD"}, e.path
        probe = e.path + "x" if e.prefix else e.path
        assert security.category(probe) == category, e.path
    assert rows[PROMETHEUS_PATH] == ("GET", "diagnostics")
    assert set(rows) == {e.path for e in ENDPOINTS} | {PROMETHEUS_PATH}


def test_security_categories_are_documented() -> None:
    section = DOC[DOC.index("## Security") :]
    for pattern in (*UI_PATHS, *CONTROL_PATHS):
        assert f"`{pattern}`" in section, pattern


async def test_documented_metric_names_exist_after_traffic(
    backend: MakeBackend, start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    b = await backend("b")
    write_disco(disco, "web", b)
    linker = await start_linker(fs_config(disco))
    await http.get(router_url(linker), headers={"Host": "web"})
    await http.get(router_url(linker), headers={"Host": "nope"})
    flat = (await http.get(admin_url(linker) + "/admin/metrics.json")).json()
    (block,) = re.findall(r"```metrics\n(.*?)```", DOC, re.S)
    values = {
        "<router>": "out",
        "<server>": f"127.0.0.1/{linker.ports()['out'][0]}",
        "<service>": "svc/web",
        "<client>": "#/io.l5d.fs/web",
        "<kind>": "no_brokers",
        "<code>": "200",
        "<namer>": "io.l5d.fs",
    }
    names = block.split()
    assert len(names) > 20
    for pattern in names:
        name = pattern
        for k, v in values.items():
            name = name.replace(k, v)
        assert name in flat or f"{name}.count" in flat, f"{pattern} ({name}) is not exported"


def test_static_files_are_package_data() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    globs = [g.strip() for g in cfg["options.package_data"]["linkpy.admin"].split(",")]
    static = ROOT / "linkpy" / "admin" / "static"
    files = [p.relative_to(static.parent).as_posix() for p in static.iterdir()]
    assert files
    for f in files:
        assert any(fnmatch.fnmatch(f, g) for g in globs), f"{f} would not be installed"
