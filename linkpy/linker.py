"""The linker: one process serving every router of a config, plus the admin port.

:class:`Linker` builds the runtime from a :class:`~linkpy.config.schema.LinkerConfig`
and owns the root nursery: the DNS resolver, the namers' background tasks, every
router's servers, the admin server and the housekeeping task all run in it.  Shutting
down drains: servers stop accepting, idle connections close, requests in flight finish
within the grace period (``admin.shutdownGraceMs``), then whatever is left is cancelled.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import attrs
import trio

from .config.load import namer_prefix
from .config.registry import Registry
from .config.schema import DEFAULT_PORTS, LinkerConfig
from .errors import ConfigError, ParseError
from .metrics import Metrics
from .naming import Dtab, Path
from .plugin import Namer, NamerContext
from .router.h2 import H2Router
from .router.http import HttpRouter, ServerCtx
from .router.inet import InetResolver
from .router.interpreter import Interpreter
from .transport.server import ConnState, TcpServer

log = logging.getLogger("linkpy")

#: How often idle bindings and clients are looked for.
HOUSEKEEPING_INTERVAL = 10.0


@attrs.define(eq=False)
class RouterRuntime:
    router: HttpRouter
    servers: list[tuple[TcpServer, ServerCtx]]


class Linker:
    """Everything a config describes, running."""

    def __init__(self, config: LinkerConfig, registry: Registry | None = None) -> None:
        self.config = config
        self.registry = registry or Registry.discover()
        self.metrics = Metrics()
        self.inet = InetResolver()
        self.namers: list[tuple[Path, Namer]] = []
        self.routers: list[RouterRuntime] = []
        self.dtab_files: list[DtabFile] = []
        self.admin: object | None = None
        self.admin_port = 0
        self._nursery: trio.Nursery | None = None
        self._stopped = trio.Event()
        self.shutdown_grace = config.admin.shutdownGraceMs / 1000.0
        self._build()

    def _build(self) -> None:
        cfg = self.config
        config_dir = os.path.dirname(cfg.path) if cfg.path and cfg.path != "-" else "."
        for n in cfg.namers:
            prefix = "/#" + namer_prefix(n)
            scope = self.metrics.scope("namer").scope(*[e for e in prefix.split("/") if e][1:])
            namer = n.mk(NamerContext(metrics=scope, config_dir=config_dir))
            namer.prefix = Path.read(prefix)
            self.namers.append((namer.prefix, namer))
        for r in cfg.routers:
            scope = self.metrics.labeled("rt", r.name)
            interp = Interpreter(
                Dtab.read(r.dtab),
                self.namers,
                self.inet,
                scope.scope("interpreter"),
                max_bindings=r.bindingCache.paths,
                idle_ttl=float(r.bindingCache.idleTtlSecs),
            )
            if r.interpreter.kind == "io.l5d.fs" and r.interpreter.dtabFile:
                watcher = DtabFile(r.interpreter.dtabFile, interp)
                interp.set_dtab(interp.dtab, watcher.read_now())
                self.dtab_files.append(watcher)
            router = (H2Router if r.protocol == "h2" else HttpRouter)(r, interp, scope)
            runtime = RouterRuntime(router, [])
            for s in r.servers:
                port = s.port if s.port is not None else DEFAULT_PORTS.get(r.protocol, 0)
                ctx = router.server(s, port)
                server = TcpServer(s.ip, port, self._handler(router, ctx), on_listen=ctx.bind)
                runtime.servers.append((server, ctx))
            self.routers.append(runtime)

    @staticmethod
    def _handler(router: HttpRouter, ctx: ServerCtx):  # type: ignore[no-untyped-def]
        async def handle(stream: trio.SocketStream, state: ConnState) -> None:
            await router.serve_connection(stream, state, ctx)

        return handle

    # -- running ----------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[Linker] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until :meth:`shutdown` (or cancellation)."""
        from .admin.server import AdminServer

        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(self.inet.run)
            for _, namer in self.namers:
                await nursery.start(namer.run)
            for watcher in self.dtab_files:
                nursery.start_soon(watcher.run)
            for rt in self.routers:
                if isinstance(rt.router, H2Router):
                    await nursery.start(rt.router.run)  # its upstream connections
                for server, ctx in rt.servers:
                    ctx.port = await nursery.start(server.serve)
            admin = AdminServer(self)
            self.admin = admin
            self.admin_port = await nursery.start(admin.serve)
            nursery.start_soon(self._housekeeping)
            log.info("linkpy is serving: %s", self.describe())
            task_status.started(self)
            await self._stopped.wait()
            nursery.cancel_scope.cancel()

    def describe(self) -> str:
        parts = [
            f"router {rt.router.label} on {s.ip}:{ctx.port}"
            for rt in self.routers
            for s, ctx in rt.servers
        ]
        parts.append(f"admin on {self.config.admin.ip}:{self.admin_port}")
        return ", ".join(parts)

    def ports(self) -> dict[str, list[int]]:
        """The bound port of every server, by router label."""
        return {rt.router.label: [ctx.port for _, ctx in rt.servers] for rt in self.routers}

    async def _housekeeping(self) -> None:
        while True:
            await trio.sleep(HOUSEKEEPING_INTERVAL)
            now = trio.current_time()
            for rt in self.routers:
                rt.router.evict_idle(now)

    async def shutdown(self, grace: float | None = None) -> None:
        """Drain every server, wait for requests in flight (up to ``grace``), stop."""
        grace = self.shutdown_grace if grace is None else grace
        servers = [s for rt in self.routers for s, _ in rt.servers]
        admin = self.admin
        for s in servers:
            s.drain()
        with trio.move_on_after(grace):
            for s in servers:
                await s.wait_closed()
        for s in servers:
            s.abort()
        if admin is not None:
            admin.drain()  # type: ignore[attr-defined]
        for rt in self.routers:
            rt.router.close()
        self._stopped.set()

    def request_shutdown(self, grace: float | None = None) -> None:
        """Start a shutdown from synchronous code (the admin's ``/admin/shutdown``)."""
        if self._nursery is not None:
            self._nursery.start_soon(self.shutdown, grace)


class DtabFile:
    """The ``io.l5d.fs`` interpreter: a dtab read from a file, re-read when it changes.

    The file's dtab goes before the router's (Linkerd's interpreters prepend the dtab
    they hold).  A file that stops parsing is reported and the last good dtab kept.
    """

    def __init__(self, path: str, interpreter: Interpreter, poll_interval: float = 1.0) -> None:
        self.path = path
        self.interpreter = interpreter
        self.poll_interval = poll_interval
        self._stamp: tuple[float, int] | None = None

    def _stat(self) -> tuple[float, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime, st.st_size)

    def read_now(self) -> Dtab:
        """Read the file at start-up (a missing or bad file is a config error)."""
        self._stamp = self._stat()
        try:
            with open(self.path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise ConfigError(
                f"interpreter.dtabFile: cannot read {self.path}: {e.strerror}"
            ) from None
        try:
            return Dtab.read(text)
        except ParseError as e:
            raise ConfigError(f"interpreter.dtabFile: {self.path}: {e}") from None

    async def run(self) -> None:
        while True:
            await trio.sleep(self.poll_interval)
            stamp = await trio.to_thread.run_sync(self._stat)
            if stamp is None or stamp == self._stamp:
                continue
            self._stamp = stamp
            try:
                dtab = await trio.to_thread.run_sync(self.read_now)
            except ConfigError as e:
                log.error("%s; keeping the last good dtab", e)
                continue
            log.info("dtab file %s changed: %s", self.path, dtab.show())
            self.interpreter.set_dtab(self.interpreter.dtab, dtab)


def router_labels(cfg: LinkerConfig) -> Sequence[str]:
    return [r.name for r in cfg.routers]
