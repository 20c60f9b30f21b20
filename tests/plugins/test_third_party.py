"""A third-party namer, as plugins/README.md tells one to write it: the template
(plugins/template, under a throwaway name) is built and pip-installed beside linkpy in
a fresh virtualenv; ``linkpy check`` knows its kind, its own tests pass there, and a
``linkpy run`` process routes a request through it.

The virtualenv gets the test environment's packages (trio, httpx, pytest, ...) through
a ``.pth`` file, so only linkpy and the plugin are installed.  Both are built without
the network (``--no-index --no-build-isolation``) when this environment can build
wheels (setuptools >= 70.1, or the wheel package); otherwise pip builds them in
isolated environments with setuptools from the configured index.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import signal
import sys
import sysconfig
from functools import partial
from pathlib import Path
from types import ModuleType

import httpx
import trio

from ..conftest import ROOT, MakeBackend

TEMPLATE = ROOT / "plugins" / "template"
KIND = "test.throwaway"
JUNK = shutil.ignore_patterns(
    ".git", ".venv", ".tox", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"
)


def can_build_offline() -> bool:
    try:
        version = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        return False
    major, minor = (int(x) for x in version.split(".")[:2])
    return (major, minor) >= (70, 1) or importlib.util.find_spec("wheel") is not None


def fake_registry_module() -> ModuleType:
    """The template's emulator (it needs only linkpy.testing, importable here)."""
    path = TEMPLATE / "src" / "linkpy_example" / "testing.py"
    spec = importlib.util.spec_from_file_location("throwaway_registry_testing", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def run(*cmd: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    out = await trio.run_process(
        [str(c) for c in cmd],
        cwd=cwd,
        env=env,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert out.returncode == 0, (cmd, out.stdout.decode()[-3000:], out.stderr.decode()[-3000:])
    return out.stdout.decode()


async def free_ports(n: int) -> list[int]:
    listeners = [await trio.open_tcp_listeners(0, host="127.0.0.1") for _ in range(n)]
    ports = [ls[0].socket.getsockname()[1] for ls in listeners]
    for ls in listeners:
        await ls[0].aclose()
    return ports


async def test_a_third_party_namer_installs_and_routes(
    tmp_path: Path, nursery: trio.Nursery, backend: MakeBackend, http: httpx.AsyncClient
) -> None:
    # the plugin, under a throwaway name and kind
    plugin = tmp_path / "plugin"
    shutil.copytree(TEMPLATE, plugin, ignore=JUNK)
    for path in [plugin / "pyproject.toml", *plugin.rglob("*.py")]:
        text = path.read_text()
        text = text.replace("linkpy-example-namer", "linkpy-throwaway-namer")
        path.write_text(text.replace("com.example.registry", KIND))
    assert f'"{KIND}" = "linkpy_example:RegistryConfig"' in (plugin / "pyproject.toml").read_text()
    # linkpy from this checkout (copied: building in place would leave build/ behind)
    checkout = tmp_path / "linkpy"
    shutil.copytree(ROOT, checkout, ignore=JUNK)
    shutil.rmtree(checkout / "plugins" / "template")

    venv = tmp_path / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    await run(base, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    purelib = await run(
        python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path
    )
    (Path(purelib.strip()) / "_test_environment.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n"
    )
    offline = ["--no-index", "--no-build-isolation"] if can_build_offline() else []
    await run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "-q",
        "--no-deps",
        "--disable-pip-version-check",
        *offline,
        checkout,
        plugin,
        cwd=tmp_path,
    )

    # the plugin's own tests pass where it is installed (only the trio plugin loaded:
    # the test environment's other pytest plugins are visible but not needed)
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    flags = ["-q", "-p", "no:cacheprovider", "-p", "pytest_trio.plugin"]
    out = await run(python, "-m", "pytest", *flags, cwd=plugin, env=env)
    assert "3 passed" in out

    # linkpy knows the kind; a router sends /svc/web through the plugin
    registry = fake_registry_module().FakeRegistry()
    await nursery.start(registry.serve)
    web = await backend("web")
    registry.set("web", [("127.0.0.1", web.port)])
    router_port, admin_port = await free_ports(2)
    config = tmp_path / "linkpy.yaml"
    config.write_text(
        f"admin: {{ip: 127.0.0.1, port: {admin_port}}}\n"
        f"namers:\n- kind: {KIND}\n  url: {registry.url}\n  pollIntervalMs: 100\n"
        f"routers:\n- protocol: http\n  dtab: /svc => /#/{KIND};\n"
        f"  servers: [{{ip: 127.0.0.1, port: {router_port}}}]\n"
    )
    out = await run(python, "-m", "linkpy", "check", config, cwd=tmp_path)
    assert "valid" in out and "1 namer(s)" in out
    proc: trio.Process = await nursery.start(
        partial(trio.run_process, [str(python), "-m", "linkpy", "run", str(config)], cwd=tmp_path)
    )
    with trio.fail_after(20):
        while True:
            try:
                if (await http.get(f"http://127.0.0.1:{admin_port}/admin/ping")).status_code == 200:
                    break
            except httpx.TransportError:
                await trio.sleep(0.05)
    r = await http.get(f"http://127.0.0.1:{router_port}/hello", headers={"Host": "web"})
    assert r.status_code == 200 and r.text == "web GET /hello"
    assert web.seen[0].header("l5d-dst-client") == f"/#/{KIND}/web"
    proc.send_signal(signal.SIGTERM)
    assert await proc.wait() == 0
