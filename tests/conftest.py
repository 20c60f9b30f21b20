"""Shared fixtures: test backends, linkers built from YAML, tools the tests drive."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
import trio

from linkpy.config.load import load
from linkpy.config.registry import Registry
from linkpy.linker import Linker

from .backends import Backend, Handler

ROOT = Path(__file__).resolve().parent.parent


def require_tool(name: str) -> str:
    """The path of a system tool the test needs; fail (never skip) when it is missing."""
    path = shutil.which(name)
    if path is None:
        for d in ("/usr/sbin", "/usr/bin", "/sbin"):
            if os.access(os.path.join(d, name), os.X_OK):
                path = os.path.join(d, name)
                break
    if path is None:
        pytest.fail(f"{name} is not installed (scripts/test installs it)")
    return path


MakeBackend = Callable[..., Awaitable[Backend]]
StartLinker = Callable[..., Awaitable[Linker]]


@pytest.fixture
def backend(nursery: trio.Nursery) -> MakeBackend:
    """``await backend(name, handler)``: an h11 backend on a free loopback port."""

    async def make(name: str = "backend", handler: Handler | None = None) -> Backend:
        b = Backend(name, handler)
        await nursery.start(b.serve)
        return b

    return make


@pytest.fixture
def disco(tmp_path: Path) -> Path:
    """An empty directory for the file namer."""
    d = tmp_path / "disco"
    d.mkdir()
    return d


def write_disco(d: Path, name: str, *backends: Backend | tuple[Backend, float]) -> None:
    lines = []
    for b in backends:
        if isinstance(b, tuple):
            lines.append(f"127.0.0.1 {b[0].port} {b[1]}")
        else:
            lines.append(f"127.0.0.1 {b.port}")
    tmp = d / f".{name}.tmp"
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(d / name)


@pytest.fixture
def start_linker(nursery: trio.Nursery) -> StartLinker:
    """``await start_linker(yaml)``: a running linker (use port 0 everywhere)."""

    async def start(text: str, registry: Registry | None = None) -> Linker:
        cfg = load(text, registry)
        linker = Linker(cfg, registry)
        await nursery.start(linker.run)
        return linker

    return start


def router_url(linker: Linker, label: str | None = None) -> str:
    ports = linker.ports()
    port = ports[label][0] if label else next(iter(ports.values()))[0]
    return f"http://127.0.0.1:{port}"


def admin_url(linker: Linker) -> str:
    return f"http://127.0.0.1:{linker.admin_port}"


def fs_config(
    d: Path, *, dtab: str = "/svc => /#/io.l5d.fs;", extra: str = "", server: str = ""
) -> str:
    return f"""
admin: {{ip: 127.0.0.1, port: 0}}
namers:
- kind: io.l5d.fs
  rootDir: {d}
  pollIntervalMs: 20
routers:
- protocol: http
  label: out
  dtab: |
    {dtab}
  bindingTimeoutMs: 2000
{extra}
  servers:
  - port: 0
    ip: 127.0.0.1
{server}
"""


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False, timeout=30) as client:
        yield client


async def run(
    *cmd: str, stdin: bytes | None = None, check: bool = True
) -> subprocess.CompletedProcess[bytes]:
    """Run a process (curl, h2load, linkpy) and capture its output."""
    return await trio.run_process(
        list(cmd), stdin=stdin, capture_stdout=True, capture_stderr=True, check=check
    )
