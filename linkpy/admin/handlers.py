"""The admin endpoints (reference section 9.1); :mod:`.endpoints` lists them."""

from __future__ import annotations

import html
import json
import os
from collections.abc import Callable
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

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
from . import state
from .endpoints import PROMETHEUS_PATH
from .prometheus import PrometheusConfig
from .prometheus import handler as prometheus_handler
from .server import Request, Response

if TYPE_CHECKING:
    from ..linker import Linker
    from .server import AdminServer

#: The delegator waits this long for names and addresses to be known (Linkerd's 2 s).
DELEGATE_TIMEOUT = 2.0

#: The static files of the pages, by extension.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


def static_files() -> dict[str, bytes]:
    """Every file of ``linkpy/admin/static`` (package data), by name."""
    root = resources.files(__package__ or "linkpy.admin").joinpath("static")
    return {
        f.name: f.read_bytes()
        for f in root.iterdir()
        if f.is_file() and os.path.splitext(f.name)[1] in CONTENT_TYPES
    }


def install(admin: AdminServer, linker: Linker) -> None:
    files = static_files()

    def page(name: str) -> Response:
        return Response.html(files[name])

    async def dashboard(req: Request) -> Response:
        return page("index.html")

    async def delegator_page(req: Request) -> Response:
        return page("delegator.html")

    async def asset(req: Request) -> Response:
        name = req.path[len("/admin/files/") :]
        body = files.get(name)
        if body is None:
            return Response.text(f"not found: {req.path}\n", 404)
        ctype = CONTENT_TYPES[os.path.splitext(name)[1]]
        return Response(200, body, ctype)

    async def index(req: Request) -> Response:
        lines = []
        for r in admin.index():
            methods = ",".join(m for m in sorted(r.methods) if m != "HEAD")
            path = r.path + ("*" if r.prefix else "")
            lines.append(f"{path:<28} {methods:<9} {r.help}")
        return Response.text("\n".join(lines) + "\n")

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

    async def routers(req: Request) -> Response:
        return Response.json(state.routers_json(linker))

    async def tasks_json(req: Request) -> Response:
        return Response.json(state.task_tree())

    async def tasks_text(req: Request) -> Response:
        tree = state.task_tree()
        head = f"{state.count_tasks(tree)} trio tasks\n\n"
        return Response.text(head + "\n".join(state.task_lines(tree)) + "\n")

    async def config_json(req: Request) -> Response:
        from ..config.load import parse_yaml

        return Response.json(parse_yaml(linker.config.source) or {}, pretty=True)

    async def shutdown(req: Request) -> Response:
        grace = linker.shutdown_grace
        return Response(
            200,
            f"shutting down (grace {grace:g}s)\n".encode(),
            after=linker.request_shutdown,
        )

    async def reload(req: Request) -> Response:
        try:
            message = await linker.reload()
        except ConfigError as e:
            return Response.text(f"reload refused, the running config stays:\n{e}\n", 400)
        return Response.text(message + "\n")

    async def client_state(req: Request) -> Response:
        out: dict[str, Any] = {}
        for rt in linker.routers:
            for client in list(rt.router.clients.values()):
                out[client.id_show] = _client_state(client.addr)
        return Response.json(out)

    async def bound_names(req: Request) -> Response:
        names: set[str] = set()
        for _, namer in linker.namers:
            names.update(namer.bound_names())
        return Response.json(sorted(names))

    async def namer_state(req: Request) -> Response:
        name = req.path[len("/namer_state/") :].removesuffix(".json")
        for prefix, namer in linker.namers:
            if prefix.show()[len("/#/") :] == name:
                return Response.json(dict(namer.state()), pretty=True)
        return Response.text(f"no namer with prefix /#/{name}\n", 404)

    async def delegator_json(req: Request) -> Response:
        return await delegator(linker, req)

    config_files = _config_files(linker)

    async def files_index(req: Request) -> Response:
        items = "".join(
            f'<li><a href="/files/{quote(name)}">{html.escape(name)}</a>'
            f" <span class=muted>{html.escape(where)}</span></li>"
            for name, (where, _) in config_files.items()
        )
        body = f"<ul class=files>{items}</ul>" if items else "<p>No config file: built in code.</p>"
        return Response.html(_FILES_PAGE.replace("{body}", body))

    async def file_text(req: Request) -> Response:
        name = req.path[len("/files/") :]
        if not name:
            return await files_index(req)
        found = config_files.get(name)
        if found is None:
            return Response.text(f"not found: {req.path}\n", 404)
        return Response.text(found[1])

    admin.builtin("/", dashboard)
    admin.builtin("/delegator", delegator_page)
    admin.builtin("/admin/files/", asset)
    admin.builtin("/files", files_index)
    admin.builtin("/files/", file_text)
    admin.builtin("/admin", index)
    admin.builtin("/admin/index.txt", index)
    admin.builtin("/admin/ping", ping)
    admin.builtin("/admin/metrics.json", metrics_json)
    admin.builtin("/admin/routers.json", routers)
    admin.builtin("/admin/tasks.json", tasks_json)
    admin.builtin("/admin/tasks", tasks_text)
    admin.builtin("/admin/shutdown", shutdown)
    admin.builtin("/admin/reload", reload)
    admin.builtin("/config.json", config_json)
    admin.builtin("/delegator.json", delegator_json)
    admin.builtin("/client_state.json", client_state)
    admin.builtin("/bound-names.json", bound_names)
    admin.builtin("/namer_state/", namer_state)

    # Telemeters add their own endpoints; Prometheus is served even without one.
    telemeters = linker.config.telemetry
    for t in telemeters:
        routes = getattr(t, "admin_routes", None)
        if callable(routes):
            for path, handler, help in routes(linker):
                admin.route(path, handler, help=help)
    if not any(isinstance(t, PrometheusConfig) for t in telemeters):
        admin.route(
            PROMETHEUS_PATH,
            prometheus_handler(linker, ""),
            help="the metrics in the Prometheus text format",
        )


_FILES_PAGE = """<!doctype html>
<html lang=en><head><meta charset=utf-8><title>linkpy files</title>
<link rel=icon href="data:,"><link rel=stylesheet href="/admin/files/admin.css"></head>
<body><nav class=top><span class=brand>linkpy</span><a href="/">dashboard</a>
<a href="/delegator">delegator</a><a href="/files" class=here>files</a>
<a href="/admin">endpoints</a></nav>
<main><h1>Loaded files</h1>{body}</main></body></html>
"""


def _config_files(linker: Linker) -> dict[str, tuple[str, str]]:
    """The files the config came from: name -> (where, text)."""
    cfg = linker.config
    if not cfg.source:
        return {}
    if cfg.path in ("", "-"):
        return {"config.yaml": ("standard input" if cfg.path == "-" else "text", cfg.source)}
    return {os.path.basename(cfg.path): (cfg.path, cfg.source)}


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
            if not isinstance(dtab_text, str) or not isinstance(path_text, str):
                raise TypeError("dtab and path must be strings")
            if namespace is not None and not isinstance(namespace, str):
                raise TypeError("namespace must be a string")
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            return Response.text(f"Malformed delegation request: {e}", 400)
    else:
        dtab_text = req.arg("dtab")
        path_text = req.arg("path") or ""
        namespace = req.arg("namespace")
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
    """Delegate ``path``, waiting (up to 2 s) for Pending names and addresses.

    The activities consulted are observed while it waits, as Linkerd's delegator does:
    a namer that watches only what someone observes (``on_active``) starts its watch.
    """
    observed: dict[int, Callable[[], None]] = {}

    def observe(vars_: list[Any]) -> bool:
        """Observe the vars not observed yet; True if there were any."""
        new = [v for v in vars_ if id(v) not in observed]
        for v in new:
            observed[id(v)] = v.observe(_ignore)
        return bool(new)

    try:
        with trio.move_on_after(DELEGATE_TIMEOUT):
            while True:
                result, consulted = interpreter.delegate_vars(dtab, path)
                if result.state is Pending:
                    if observe(consulted):  # a new observer may get an answer at once
                        await trio.lowlevel.checkpoint()
                    else:
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
                if observe(pending):
                    await trio.lowlevel.checkpoint()
                else:
                    await _any_change(pending)
        return None
    finally:
        for close in observed.values():
            close()


def _ignore(value: object) -> None:
    pass


async def _any_change(vars_: list[Any]) -> None:
    """Wait until one of the vars changes from the value it has now."""
    if not vars_:
        await trio.sleep(0.05)
        return
    versions = [(v, v.version) for v in vars_]  # now, before any checkpoint
    async with trio.open_nursery() as nursery:
        for v, version in versions:

            async def wait(v: Any = v, version: int = version) -> None:
                await v.wait_change(version)
                nursery.cancel_scope.cancel()

            nursery.start_soon(wait)
