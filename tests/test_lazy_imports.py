"""A running linker imports the plugins and protocols its config uses, and not the others.

Each plugin kind's module is imported when a config names that kind; the HTTP/2 codec
(with hpack) when a router speaks HTTP/2, and the h2 library never (it is a test
dependency).  The Kubernetes, Consul and Marathon namers with their HTTP
clients (httpx, py-consul, marathon, requests) would otherwise cost a file-namer-only
linker some 10 MB of memory (docs/benchmarks.md, *Memory*).  Each check runs in a fresh
interpreter, since this one has imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from linkpy.config.load import load
from linkpy.config.registry import Registry
from linkpy.errors import ConfigError

from .conftest import ROOT

#: Modules a linker with neither HTTP/2 nor these namers must not import.
HEAVY = [
    "h2",
    "hpack",
    "httpx",
    "consul",
    "marathon",
    "requests",
    "jwt",
    "cryptography",
    "prometheus_client",
    "linkpy.router.h2",
    "linkpy.transport.h2",
    "linkpy.proto.h2",
    "linkpy.proto.hpack",
    "linkpy_k8s",
    "linkpy_consul",
    "linkpy_marathon",
]

#: Started in a fresh interpreter: serve the config, then list which HEAVY modules
#: were imported.
RUN = """
import json, sys
import trio
from linkpy.config.load import load_file
from linkpy.linker import Linker

async def main():
    linker = Linker(load_file(sys.argv[1]))
    async with trio.open_nursery() as nursery:
        await nursery.start(linker.run)
        print(json.dumps([m for m in json.loads(sys.argv[2]) if m in sys.modules]))
        await linker.shutdown(0)

trio.run(main)
"""

CHECK = """
import json, sys
from linkpy.config.load import load_file
load_file(sys.argv[1])
print(json.dumps([m for m in json.loads(sys.argv[2]) if m in sys.modules]))
"""


def imported(code: str, config: Path) -> list[str]:
    r = subprocess.run(
        [sys.executable, "-c", code, str(config), json.dumps(HEAVY)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    found: list[str] = json.loads(r.stdout.splitlines()[-1])
    return found


def config(tmp_path: Path, protocol: str = "http", namer: str = "") -> Path:
    (tmp_path / "disco").mkdir(exist_ok=True)
    text = (
        "admin: {ip: 127.0.0.1, port: 0}\n"
        "namers:\n"
        f"- {{kind: io.l5d.fs, rootDir: {tmp_path / 'disco'}}}\n"
        f"{namer}"
        "routers:\n"
        f"- protocol: {protocol}\n"
        "  dtab: /svc => /#/io.l5d.fs;\n"
        "  servers: [{ip: 127.0.0.1, port: 0}]\n"
    )
    path = tmp_path / "linkpy.yaml"
    path.write_text(text)
    return path


def test_a_file_namer_linker_imports_no_other_namer_nor_h2(tmp_path: Path) -> None:
    assert imported(RUN, config(tmp_path)) == []


def test_an_h2_router_imports_the_http2_codec_only(tmp_path: Path) -> None:
    found = imported(RUN, config(tmp_path, protocol="h2"))
    assert {"hpack", "linkpy.router.h2", "linkpy.proto.h2"} <= set(found)
    assert not {"h2", "httpx", "linkpy_k8s", "linkpy_consul", "linkpy_marathon"} & set(found)


@pytest.mark.parametrize(
    ("namer", "module"),
    [
        ("- {kind: io.l5d.k8s, host: 127.0.0.1, port: 1}\n", "linkpy_k8s"),
        ("- {kind: io.l5d.consul, host: 127.0.0.1, port: 1}\n", "linkpy_consul"),
        ("- {kind: io.l5d.marathon, host: 127.0.0.1, port: 1}\n", "linkpy_marathon"),
    ],
)
def test_a_config_imports_the_plugin_of_each_kind_it_names(
    tmp_path: Path, namer: str, module: str
) -> None:
    found = imported(CHECK, config(tmp_path, namer=namer))
    assert module in found
    assert not {"linkpy_k8s", "linkpy_consul", "linkpy_marathon"} - {module} & set(found)


def test_a_plugin_that_cannot_be_imported_is_an_error_of_the_configs_naming_it() -> None:
    broken = EntryPoint("test.broken", "linkpy_no_such_module:Config", "linkpy.namers")
    registry = Registry.discover().with_plugins("linkpy.namers", {"test.broken": broken})
    text = "routers:\n- protocol: http\n  servers: [{port: 1}]\n"
    assert load(text, registry).routers  # the others load
    with pytest.raises(ConfigError) as exc:
        load("namers:\n- kind: test.broken\n" + text, registry)
    assert str(exc.value) == (
        "namers[0]: cannot load plugin 'test.broken' (linkpy_no_such_module:Config): "
        "No module named 'linkpy_no_such_module'"
    )
