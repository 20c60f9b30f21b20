"""What the admin reports of the running process: routers, clients, endpoints, tasks.

Everything here reads live objects and returns plain JSON-able data; nothing changes
them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import trio

from ..metrics import Stat
from ..naming import Addr, AddrBound, AddrFailed

if TYPE_CHECKING:
    from ..linker import Linker
    from ..router.client import Client, Endpoint
    from ..router.http import HttpRouter, ServerCtx
    from ..router.service import Service


# --- routers ----------------------------------------------------------------------


def latency(stat: Stat) -> dict[str, float | int]:
    """A histogram's count and percentiles (the last one to two minutes)."""
    s = stat.snapshot()
    return {
        "count": s.count,
        "avg": s.avg,
        "p50": s.p50,
        "p90": s.p90,
        "p95": s.p95,
        "p99": s.p99,
        "p9990": s.p9990,
        "max": s.max,
    }


def addr_state(addr: Addr) -> str:
    if isinstance(addr, AddrBound):
        return "bound"
    if isinstance(addr, AddrFailed):
        return "failed"
    return "pending" if addr is Addr.Pending else "neg"


def endpoint_json(ep: Endpoint) -> dict[str, Any]:
    if ep.removed:
        state = "removed"
    elif not ep.available:
        state = "dead"  # failure accrual has marked it
    elif ep.weight <= 0:
        state = "drained"
    else:
        state = "available"
    return {
        "address": ep.show(),
        "host": ep.host,
        "port": ep.port,
        "weight": ep.weight,
        "load": ep.load,
        "available": ep.available,
        "state": state,
        "connections": ep.open,
        "idle": len(ep.idle),
        "requests": ep.requests,
        "failures": ep.failures,
    }


def client_json(client: Client) -> dict[str, Any]:
    addr = client.addr
    out: dict[str, Any] = {
        "id": client.id_show,
        "state": addr_state(addr),
        "requests": client.requests.value,
        "load": sum(e.load for e in client.endpoints),
        "connections": sum(e.open for e in client.endpoints),
        "balancer": type(client.balancer).__name__,
        "endpoints": [endpoint_json(e) for e in client.endpoints],
    }
    if isinstance(addr, AddrFailed):
        out["error"] = addr.message
    return out


def server_json(srv: ServerCtx) -> dict[str, Any]:
    return {
        "ip": srv.ip,
        "port": srv.port,
        "requests": srv.requests.value,
        "success": srv.success.value,
        "failures": srv.failures.value,
        "connections": srv.open_connections,
        "pending": srv.inflight,
        "latency_ms": latency(srv.latency),
    }


def service_json(svc: Service) -> dict[str, Any]:
    return {
        "name": svc.path.show(),
        "requests": svc.requests.value,
        "success": svc.success.value,
        "failures": svc.failures.value,
        "latency_ms": latency(svc.latency),
    }


def router_json(router: HttpRouter) -> dict[str, Any]:
    cfg = router.cfg
    servers = router.servers
    return {
        "label": router.label,
        "protocol": cfg.protocol,
        "dstPrefix": cfg.dstPrefix,
        "dtab": router.interpreter.dtab.show(),
        "dentries": [d.show() for d in router.interpreter.dtab],
        "requests": sum(s.requests.value for s in servers),
        "success": sum(s.success.value for s in servers),
        "failures": sum(s.failures.value for s in servers),
        "servers": [server_json(s) for s in servers],
        "services": sorted(
            (service_json(s) for s in list(router.services.values())), key=lambda s: s["name"]
        ),
        "clients": sorted(
            (client_json(c) for c in list(router.clients.values())), key=lambda c: c["id"]
        ),
    }


def routers_json(linker: Linker) -> dict[str, Any]:
    """``/admin/routers.json``: the data of the dashboard."""
    return {
        "time": time.monotonic(),
        "routers": [router_json(rt.router) for rt in linker.routers],
    }


# --- trio tasks ------------------------------------------------------------------------


def task_tree() -> dict[str, Any]:
    """The running trio tasks, from the root task down (``/admin/tasks.json``)."""

    def node(task: trio.lowlevel.Task) -> dict[str, Any]:
        children = [node(t) for n in task.child_nurseries for t in n.child_tasks]
        children.sort(key=lambda c: str(c["name"]))
        return {"name": task.name, "children": children}

    return node(trio.lowlevel.current_root_task())  # type: ignore[arg-type]


def task_lines(tree: dict[str, Any]) -> Iterator[str]:
    """The tree as indented text; identical sibling subtrees are shown once, ``×N``."""

    def render(n: dict[str, Any], indent: str) -> list[str]:
        groups: dict[tuple[str, ...], int] = {}
        for child in n["children"]:
            key = tuple(render(child, indent + "  "))
            groups[key] = groups.get(key, 0) + 1
        lines = [indent + n["name"]]
        for key, count in groups.items():
            first, *rest = key
            lines.append(first + (f"  ×{count}" if count > 1 else ""))
            lines.extend(rest)
        return lines

    yield from render(tree, "")


def count_tasks(tree: dict[str, Any]) -> int:
    return 1 + sum(count_tasks(c) for c in tree["children"])
