"""``python -m linkpy.testing.fakes``: seeding from a file, in process and as a subprocess."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
import trio

from linkpy.testing import FakeConsul, FakeKubernetes, FakeMarathon
from linkpy.testing.fakes.__main__ import build_parser, make_fake, run

from .helpers import client

SEEDS = {
    "consul": (
        """
datacenters: [dc2]
services:
  - {name: web, address: 10.0.0.1, port: 8080, tags: [prod], checks: {"service:web": passing}}
  - {name: web, id: web-2, address: 10.0.0.2, port: 8080, node: node-b, node_address: 10.0.1.2}
  - {name: api, address: 10.2.0.1, port: 9000, dc: dc2}
""",
        "/v1/health/service/web",
    ),
    "kubernetes": (
        """
endpoints:
  - {namespace: prod, name: web, addresses: [10.0.0.1], ports: {http: 8080}, not_ready: [10.0.0.9]}
endpointslices:
  - namespace: prod
    name: web-1
    service: web
    ports: {http: 8080}
    endpoints: [{address: 10.0.0.1, node_name: n1}, {address: 10.0.0.9, ready: false}]
services:
  - {namespace: prod, name: web, ports: [{name: http, port: 80, targetPort: 8080}]}
objects:
  nodes: [{metadata: {name: n1}, status: {addresses: [{type: InternalIP, address: 10.0.1.1}]}}]
""",
        "/api/v1/namespaces/prod/endpoints/web",
    ),
    "marathon": (
        """
apps:
  - id: /web
    health_checks: 1
    tasks:
      - {host: srv1.example.com, ports: [31000], alive: true}
      - {host: srv2.example.com, ports: [31001], state: TASK_STAGING}
""",
        "/v2/apps/web",
    ),
}


def seed_file(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.yaml"
    path.write_text(SEEDS[kind][0])
    return path


def test_load_seeds_consul(tmp_path: Path) -> None:
    args = build_parser().parse_args(["consul", "--load", str(seed_file(tmp_path, "consul"))])
    fake = make_fake(args)
    assert isinstance(fake, FakeConsul)
    assert fake.index("web") > 1
    assert fake.index("api", dc="dc2") >= 1


def test_load_seeds_kubernetes(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        ["kubernetes", "--mode", "open", "--load", str(seed_file(tmp_path, "kubernetes"))]
    )
    fake = make_fake(args)
    assert isinstance(fake, FakeKubernetes) and fake.mode == "open"
    ep = fake.get("endpoints", "prod", "web")
    assert ep is not None and ep["subsets"][0]["notReadyAddresses"] == [{"ip": "10.0.0.9"}]
    sl = fake.get("endpointslices", "prod", "web-1")
    assert sl is not None
    assert [e["conditions"].get("ready") for e in sl["endpoints"]] == [True, False]
    assert sl["endpoints"][0]["nodeName"] == "n1"
    assert fake.get("services", "prod", "web") is not None
    assert fake.get("nodes", None, "n1") is not None


def test_load_seeds_marathon(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        ["marathon", "--http-credentials", "u:p", "--load", str(seed_file(tmp_path, "marathon"))]
    )
    fake = make_fake(args)
    assert isinstance(fake, FakeMarathon) and fake.http_credentials == ("u", "p")
    app = fake.app("/web")
    assert app is not None
    assert [t["state"] for t in app["tasks"]] == ["TASK_RUNNING", "TASK_STAGING"]


def test_load_rejects_a_non_mapping(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(SystemExit):
        make_fake(build_parser().parse_args(["consul", "--load", str(bad)]))


async def test_run_in_process_prints_its_url(
    tmp_path: Path, nursery: trio.Nursery, capsys: pytest.CaptureFixture[str]
) -> None:
    args = build_parser().parse_args(["consul", "--load", str(seed_file(tmp_path, "consul"))])
    fake = await nursery.start(run, args)
    out = capsys.readouterr().out
    assert out == f"consul emulator listening on http://127.0.0.1:{fake.port}\n"
    async with client(fake.url) as http:
        r = await http.get("/v1/health/service/web")
        assert sorted(e["Service"]["Address"] for e in r.json()) == ["10.0.0.1", "10.0.0.2"]


async def test_subprocesses_with_port_zero_print_the_real_port(tmp_path: Path) -> None:
    # The three emulators run at once, each as `python -m linkpy.testing.fakes`.
    async with trio.open_nursery() as nursery:
        for kind in sorted(SEEDS):
            nursery.start_soon(check_subprocess, tmp_path, kind)


async def check_subprocess(tmp_path: Path, kind: str) -> None:
    command = [
        sys.executable,
        *("-m", "linkpy.testing.fakes", kind, "--port", "0"),
        *("--load", str(seed_file(tmp_path, kind))),
    ]
    async with trio.open_nursery() as nursery:
        process: trio.Process = await nursery.start(
            partial(
                trio.run_process,
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                check=False,
            )
        )
        assert process.stdout is not None
        with trio.fail_after(30):  # a safety net for a hung child, not a timing assertion
            line = b""
            while not line.endswith(b"\n"):
                chunk = await process.stdout.receive_some(1)
                assert chunk, f"{kind}: exited before printing its URL"
                line += chunk
            pattern = rf"{kind} emulator listening on (http://127\.0\.0\.1:(\d+))\n"
            m = re.fullmatch(pattern, line.decode())
            assert m is not None, line
            assert int(m.group(2)) > 0
            async with client(m.group(1)) as http:
                r = await http.get(SEEDS[kind][1])
                assert r.status_code == 200, r.text
            process.send_signal(signal.SIGINT)
            assert await process.wait() == 0
