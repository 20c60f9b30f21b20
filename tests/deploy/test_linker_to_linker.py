"""The shipped linker-to-linker configs, each run as two linkpy processes on two hosts.

Node a is 127.0.0.2 and node b 127.0.0.3 (both loopback, so both in one /24: the
transformers run in their ``hostNetwork`` mode, matching by node name, as on a cluster
whose linkpys use the host network). The Kubernetes and Marathon APIs are the emulators;
the configs are the ones in ``configs/k8s/configmap.yaml`` and
``configs/linker-to-linker-marathon.yaml`` with addresses and ports changed.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
import trustme
import yaml

from linkpy.testing.fakes.kubernetes import FakeKubernetes, slice_endpoint
from linkpy.testing.fakes.marathon import FakeMarathon

from ..backends import Backend
from ..conftest import ROOT

NODES = {"node-a": "127.0.0.2", "node-b": "127.0.0.3"}
CONFIGMAPS = {
    "plain": ROOT / "configs" / "k8s" / "configmap.yaml",
    "tls": ROOT / "configs" / "k8s" / "configmap-tls.yaml",
}


def free_port(hosts: list[str]) -> int:
    """A port number free on every one of ``hosts`` (each node uses the same ports)."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind((hosts[0], 0))
            port = int(s.getsockname()[1])
        try:
            for h in hosts[1:]:
                with socket.socket() as s:
                    s.bind((h, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no common free port")


def shipped_config(variant: str, certs: Path) -> dict[str, Any]:
    """A ConfigMap's linkpy config, its /certs (the mounted Secret) at ``certs``."""
    (doc,) = [d for d in yaml.safe_load_all(CONFIGMAPS[variant].read_text()) if d]
    text = doc["data"]["config.yaml"].replace("/certs/", f"{certs}/")
    cfg: dict[str, Any] = yaml.safe_load(text)
    return cfg


def make_certs(d: Path, name: str = "linkpy.linkpy.svc") -> Path:
    """The certificates of the TLS configs: a CA and the linkpys' certificate."""
    d.mkdir()
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    leaf = ca.issue_cert(name)
    leaf.cert_chain_pems[0].write_to_path(str(d / "linkpy.pem"))
    leaf.private_key_pem.write_to_path(str(d / "linkpy-key.pem"))
    return d


def node_config(
    ip: str, ports: dict[str, int], k8s: FakeKubernetes, variant: str, certs: Path
) -> dict[str, Any]:
    """The shipped config on one node: its IP, the test's ports, the emulated API."""
    cfg = shipped_config(variant, certs)
    cfg["admin"] = {"ip": ip, "port": ports["admin"]}
    for n in cfg["namers"]:
        if n["kind"].startswith("io.l5d.k8s"):
            n.update(host="127.0.0.1", port=k8s.port, backoffMaxMs=200)
        for t in n.get("transformers", []):
            if t["kind"] == "io.l5d.k8s.daemonset":
                t.update(k8sHost="127.0.0.1", k8sPort=k8s.port, hostNetwork=True)
    for r in cfg["routers"]:
        (server,) = r["servers"]
        server.update(ip=ip, port=ports[r["label"]])
        for t in (r.get("interpreter") or {}).get("transformers", []):
            if t["kind"] == "io.l5d.k8s.localnode":
                t["hostNetwork"] = True
    return cfg


async def start_linkpy(
    nursery: trio.Nursery, path: Path, config: dict[str, Any], env: dict[str, str]
) -> trio.Process:
    """``linkpy run`` on ``config`` (written to ``path``) with ``env`` added."""
    path.write_text(yaml.safe_dump(config))
    run: Callable[..., Any] = partial(
        trio.run_process,
        [sys.executable, "-m", "linkpy", "run", str(path)],
        cwd=ROOT,
        env={**os.environ, **env},
        check=False,
    )
    proc: trio.Process = await nursery.start(run)
    return proc


async def wait_ready(ips: list[str], admin_port: int) -> None:
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        for ip in ips:
            with trio.fail_after(30):
                while True:
                    try:
                        r = await http.get(f"http://{ip}:{admin_port}/admin/ping")
                        if r.status_code == 200:
                            break
                    except httpx.TransportError:
                        await trio.sleep(0.05)


async def stop(procs: list[trio.Process]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        assert await p.wait() == 0  # SIGTERM drains and exits cleanly


@attrs.define
class Cluster:
    ports: dict[str, int]
    backends: dict[str, Backend]
    k8s: FakeKubernetes
    #: which ConfigMap runs: "plain" or "tls"
    variant: str


@pytest.fixture(params=sorted(CONFIGMAPS))
async def cluster(
    nursery: trio.Nursery, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Cluster]:
    variant: str = request.param
    certs = make_certs(tmp_path / "certs")
    k8s = FakeKubernetes()
    await nursery.start(k8s.serve)
    ips = list(NODES.values())
    ports = {name: free_port(ips) for name in ("outgoing", "incoming", "admin")}
    backends: dict[str, Backend] = {}
    for node, ip in NODES.items():
        b = Backend(f"web on {node}", host=ip)
        await nursery.start(b.serve)
        backends[node] = b
        k8s.set_endpoint_slice(
            "default",
            f"web-{node}",
            "web",
            [slice_endpoint(ip, node_name=node)],
            ports={"http": b.port},
        )
    k8s.set_endpoint_slice(
        "linkpy",
        "linkpy-pods",
        "linkpy",
        [slice_endpoint(ip, node_name=node) for node, ip in NODES.items()],
        ports={"outgoing": ports["outgoing"], "incoming": ports["incoming"]},
    )
    procs = [
        await start_linkpy(
            nursery,
            tmp_path / f"{node}.yaml",
            node_config(ip, ports, k8s, variant, certs),
            {"NODE_NAME": node, "POD_IP": ip, "POD_NAMESPACE": "linkpy"},
        )
        for node, ip in NODES.items()
    ]
    await wait_ready(ips, ports["admin"])
    yield Cluster(ports, backends, k8s, variant)
    await stop(procs)


async def test_requests_go_through_the_linkpy_of_the_destination_node(
    cluster: Cluster,
) -> None:
    ports, backends = cluster.ports, cluster.backends
    out = f"http://{NODES['node-a']}:{ports['outgoing']}"
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        bodies = set()
        for i in range(40):
            r = await http.get(f"{out}/r{i}", headers={"Host": "web"})
            assert r.status_code == 200, r.text
            bodies.add(r.text.split(" GET ")[0])
        assert bodies == {"web on node-a", "web on node-b"}  # both nodes' pods are used
        # each pod was reached by its own node's incoming router, and only by it
        for node, b in backends.items():
            clients = {req.header("l5d-dst-client") for req in b.seen}
            assert clients == {f"/%/io.l5d.k8s.localnode/{node}/#/io.l5d.k8s/default/http/web"}
            # it came through two linkpys: the outgoing one on a, the incoming one here
            vias = {", ".join(req.all("via")) for req in b.seen}
            assert vias == {"1.1 linkpy, 1.1 linkpy"}
        # node b's incoming router served what node a's outgoing sent its way
        admin_b = f"http://{NODES['node-b']}:{ports['admin']}"
        metrics = (await http.get(admin_b + "/admin/metrics.json")).json()
        incoming_b = f"rt/incoming/server/{NODES['node-b']}/{ports['incoming']}"
        assert metrics[f"{incoming_b}/requests"] == len(backends["node-b"].seen)
        if cluster.variant == "tls":
            # configmap-tls.yaml: the incoming router speaks TLS only, to callers with
            # the linkpys' certificate
            with pytest.raises(httpx.TransportError):
                await http.get(f"http://{NODES['node-b']}:{ports['incoming']}/")
            metrics = (await http.get(admin_b + "/admin/metrics.json")).json()
            assert metrics[f"{incoming_b}/tls/handshake_failures"] == 1
        # node a's outgoing client is the transformed name: the linkpys of the pods' nodes
        admin_a = f"http://{NODES['node-a']}:{ports['admin']}"
        state = (await http.get(admin_a + "/client_state.json")).json()
        daemonset = (
            "/%/io.l5d.k8s.daemonset/linkpy/incoming/linkpy/#/io.l5d.k8s.http/default/http/web"
        )
        assert sorted(state[daemonset]["addresses"]) == [
            f"{ip}:{ports['incoming']}" for ip in sorted(NODES.values())
        ]


async def test_a_node_without_linkpy_is_not_routed_to(
    cluster: Cluster,
) -> None:
    ports, backends, k8s = cluster.ports, cluster.backends, cluster.k8s
    # linkpy leaves node b (its pod is deleted): only node a's pods stay reachable
    k8s.set_endpoint_slice(
        "linkpy",
        "linkpy-pods",
        "linkpy",
        [slice_endpoint(NODES["node-a"], node_name="node-a")],
        ports={"outgoing": ports["outgoing"], "incoming": ports["incoming"]},
    )
    out = f"http://{NODES['node-a']}:{ports['outgoing']}"
    before = len(backends["node-b"].seen)
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        admin_a = f"http://{NODES['node-a']}:{ports['admin']}"
        daemonset = (
            "/%/io.l5d.k8s.daemonset/linkpy/incoming/linkpy/#/io.l5d.k8s.http/default/http/web"
        )
        with trio.fail_after(10):
            while True:  # the watch delivers the change to node a's linkpy
                r = await http.get(f"{out}/warmup", headers={"Host": "web"})
                state = (await http.get(admin_a + "/client_state.json")).json()
                if len(state.get(daemonset, {}).get("addresses", [])) == 1:
                    break
        before = len(backends["node-b"].seen)
        for i in range(20):
            r = await http.get(f"{out}/r{i}", headers={"Host": "web"})
            assert r.status_code == 200 and r.text.startswith("web on node-a")
    assert len(backends["node-b"].seen) == before


# -- Marathon -------------------------------------------------------------------------

MARATHON_CONFIGS = {
    "plain": ROOT / "configs" / "linker-to-linker-marathon.yaml",
    "tls": ROOT / "configs" / "linker-to-linker-marathon-tls.yaml",
}
AGENTS = {"agent-a": "127.0.0.2", "agent-b": "127.0.0.3"}


def agent_config(
    ip: str, ports: dict[str, int], marathon: FakeMarathon, variant: str, certs: Path
) -> dict[str, Any]:
    """The shipped Marathon config on one agent: its IP, the test's ports, the emulator,
    the test's certificates.

    Both agents are loopback addresses, which io.l5d.localhost cannot tell apart: the
    incoming router keeps its agent's tasks with io.l5d.specificHost instead.
    """
    text = MARATHON_CONFIGS[variant].read_text().replace("/certs/", f"{certs}/")
    # the incoming port is the test's, in the port transformer and the client prefixes
    text = text.replace("/%/io.l5d.port/4141", f"/%/io.l5d.port/{ports['incoming']}")
    cfg: dict[str, Any] = yaml.safe_load(text)
    cfg["admin"] = {"ip": ip, "port": ports["admin"]}
    (namer,) = cfg["namers"]
    namer.update(host="127.0.0.1", port=marathon.port, useHealthCheck=False)
    for r in cfg["routers"]:
        (server,) = r["servers"]
        server.update(ip=ip, port=ports[r["label"]])
        for t in r["interpreter"]["transformers"]:
            if t["kind"] == "io.l5d.port":
                t["port"] = ports["incoming"]
            if t["kind"] == "io.l5d.localhost":
                t.clear()
                t.update(kind="io.l5d.specificHost", host=ip)
    return cfg


@pytest.mark.parametrize("variant", sorted(MARATHON_CONFIGS))
async def test_marathon_requests_go_through_the_linkpy_of_the_task_agent(
    nursery: trio.Nursery, tmp_path: Path, variant: str
) -> None:
    certs = make_certs(tmp_path / "certs", "linkpy.marathon")
    marathon = FakeMarathon()
    await nursery.start(marathon.serve)
    ips = list(AGENTS.values())
    ports = {name: free_port(ips) for name in ("outgoing", "incoming", "admin")}
    marathon.add_app("/team/users")
    backends: dict[str, Backend] = {}
    for agent, ip in AGENTS.items():
        b = Backend(f"users on {agent}", host=ip)
        await nursery.start(b.serve)
        backends[agent] = b
        marathon.add_task("/team/users", host=ip, ports=[b.port])
    procs = [
        await start_linkpy(
            nursery,
            tmp_path / f"{agent}.yaml",
            agent_config(ip, ports, marathon, variant, certs),
            {},
        )
        for agent, ip in AGENTS.items()
    ]
    await wait_ready(ips, ports["admin"])
    out = f"http://{AGENTS['agent-a']}:{ports['outgoing']}"
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        bodies = set()
        for i in range(40):
            r = await http.get(f"{out}/r{i}", headers={"Host": "users.team"})
            assert r.status_code == 200, r.text
            bodies.add(r.text.split(" GET ")[0])
        assert bodies == {"users on agent-a", "users on agent-b"}
        for agent, b in backends.items():
            clients = {req.header("l5d-dst-client") for req in b.seen}
            assert clients == {"/%/io.l5d.specificHost/#/io.l5d.marathon/team/users"}
            assert {", ".join(req.all("via")) for req in b.seen} == {"1.1 linkpy, 1.1 linkpy"}
            # every request for this agent's task went through this agent's incoming router
            ip = AGENTS[agent]
            m = (await http.get(f"http://{ip}:{ports['admin']}/admin/metrics.json")).json()
            assert m[f"rt/incoming/server/{ip}/{ports['incoming']}/requests"] == len(b.seen)
        if variant == "tls":  # the incoming routers speak TLS only
            with pytest.raises(httpx.TransportError):
                await http.get(f"http://{AGENTS['agent-b']}:{ports['incoming']}/")
    await stop(procs)
