"""The admin endpoints (reference section 9.1)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import trio

from ..activity import Var
from ..errors import ConfigError, ParseError
from ..naming import (
    Addr,
    AddrBound,
    AddrFailed,
    DelegateTree,
    Dtab,
    Ok,
    Path,
    Pending,
    delegate_json,
    delegate_leaves,
    dumps,
)
from .server import Request, Response

if TYPE_CHECKING:
    from ..linker import Linker
    from .server import AdminServer

#: The delegator waits this long for names and addresses to be known (Linkerd's 2 s).
DELEGATE_TIMEOUT = 2.0


def install(admin: AdminServer, linker: Linker) -> None:
    async def ping(req: Request) -> Response:
        return Response.text("pong")

    async def metrics_json(req: Request) -> Response:
        pretty = req.arg("pretty") in ("1", "true")
        if req.arg("tree") in ("1", "true"):
            return Response.json(linker.metrics.tree(), pretty=pretty)
        flat = linker.metrics.flat()
        q = req.arg("q")
        if q:
            flat = {k: v for k, v in flat.items() if k.startswith(q)}
        return Response.json(flat, pretty=pretty)

    async def config_json(req: Request) -> Response:
        from ..config.load import parse_yaml

        return Response.json(parse_yaml(linker.config.source) or {}, pretty=True)

    async def shutdown(req: Request) -> Response:
        if req.method != "POST":
            return Response(405, b"POST to shut down\n", headers=(("Allow", "POST"),))
        linker.request_shutdown()
        return Response.text("shutting down\n")

    async def reload(req: Request) -> Response:
        if req.method != "POST":
            return Response(405, b"POST to reload\n", headers=(("Allow", "POST"),))
        try:
            message = await linker.reload()
        except ConfigError as e:
            return Response.text(f"reload refused, the running config stays:\n{e}\n", 400)
        return Response.text(message + "\n")

    async def client_state(req: Request) -> Response:
        out: dict[str, Any] = {}
        for rt in linker.routers:
            for client in rt.router.clients.values():
                out[client.id_show] = _client_state(client.addr)
        return Response.json(out)

    async def bound_names(req: Request) -> Response:
        names: set[str] = set()
        for _, namer in linker.namers:
            names.update(namer.bound_names())
        return Response.json(sorted(names))

    async def delegator_json(req: Request) -> Response:
        return await delegator(linker, req)

    admin.route("/admin/ping", ping)
    admin.route("/admin/metrics.json", metrics_json)
    admin.route("/config.json", config_json)
    admin.route("/admin/shutdown", shutdown)
    admin.route("/admin/reload", reload)
    admin.route("/client_state.json", client_state)
    admin.route("/bound-names.json", bound_names)
    admin.route("/delegator.json", delegator_json)


def _client_state(addr: Addr) -> dict[str, Any]:
    if isinstance(addr, AddrBound):
        return {
            "state": "bound",
            "addresses": sorted(a.show() for a in addr.addresses),
        }
    if isinstance(addr, AddrFailed):
        return {"state": f"Failed: {addr.message}", "addresses": []}
    return {"state": "Pending" if addr is Addr.Pending else "Neg", "addresses": []}


async def delegator(linker: Linker, req: Request) -> Response:
    """``/delegator.json``: GET with ``path``/``dtab``/``namespace``, or a JSON POST."""
    if req.method == "POST":
        ctype = req.headers.get("content-type", "")
        if "json" not in ctype:
            return Response.text("expected a JSON body (Content-Type: application/json)", 415)
        try:
            body = json.loads(req.body or b"{}")
            dtab_text = body["dtab"]
            path_text = body["path"]
            namespace = body.get("namespace")
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            return Response.text(f"Malformed delegation request: {e}", 400)
    elif req.method in ("GET", "HEAD"):
        dtab_text = req.arg("dtab")
        path_text = req.arg("path") or ""
        namespace = req.arg("namespace")
    else:
        return Response(405, b"GET or POST\n", headers=(("Allow", "GET, POST"),))
    try:
        dtab = Dtab.read(dtab_text) if dtab_text else Dtab.empty
    except ParseError as e:
        return Response.text(f"Invalid dtab: {e}", 400)
    try:
        path = Path.read(path_text)
    except ParseError as e:
        return Response.text(f"Invalid path: {e}", 400)
    routers = {rt.router.label: rt.router for rt in linker.routers}
    router = routers.get(namespace) if namespace else next(iter(routers.values()), None)
    if router is None:
        return Response.text(f"Name Interpreter for {namespace} cannot show delegations", 501)
    tree = await explain(router.interpreter, dtab, path)
    if tree is None:
        return Response.text("Request timed out.", 503)
    if isinstance(tree, BaseException):
        return Response.text(str(tree), 400)
    return Response(200, dumps(delegate_json(tree)).encode(), "application/json")


async def explain(interpreter: Any, dtab: Dtab, path: Path) -> DelegateTree | BaseException | None:
    """Delegate ``path``, waiting (up to 2 s) for Pending names and addresses."""
    with trio.move_on_after(DELEGATE_TIMEOUT):
        while True:
            result, consulted = interpreter.delegate_vars(dtab, path)
            if result.state is Pending:
                await _any_change(consulted)
                continue
            if not isinstance(result.state, Ok):
                return result.state.exc  # type: ignore[no-any-return]
            tree: DelegateTree = result.state.value
            pending = [
                b.addr
                for b in delegate_leaves(tree)
                if isinstance(b.addr, Var) and b.addr.sample() is Addr.Pending
            ]
            if not pending:
                return tree
            await _any_change(pending)
    return None


async def _any_change(vars_: list[Any]) -> None:
    if not vars_:
        await trio.sleep(0.05)
        return
    async with trio.open_nursery() as nursery:
        for v in vars_:

            async def wait(v: Any = v) -> None:
                await v.wait_change(v.version)
                nursery.cancel_scope.cancel()

            nursery.start_soon(wait)
