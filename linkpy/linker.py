"""The linker: one process serving every router of a config, plus the admin port.

:class:`Linker` builds the runtime from a :class:`~linkpy.config.schema.LinkerConfig`
and owns the root nursery: the DNS resolver, the namers' background tasks, every
router's servers, the admin server and the housekeeping task all run in it.  Shutting
down drains: servers stop accepting, idle connections close, requests in flight finish
within the grace period (``admin.shutdownGraceMs``), then whatever is left is cancelled.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Awaitable, Callable, Sequence

import attrs
import trio

from .config.load import load_file, namer_prefix
from .config.registry import Registry
from .config.schema import DEFAULT_PORTS, LinkerConfig
from .errors import ConfigError, ParseError
from .metrics import Metrics
from .naming import SYSTEM_NAMERS, Bound, Dtab, NameTree, Path, State, bind, global_lookup
from .plugin import Namer, NamerContext
from .router.http import HttpRouter, ServerCtx
from .router.inet import InetResolver
from .router.interpreter import Interpreter, TransformingNamer
from .router.transformers import Transformer, TransformerConfig, TransformerContext
from .telemetry import AccessLog, Telemetry
from .transport.server import Handler, TcpServer

log = logging.getLogger("linkpy")

#: How often idle bindings and clients are looked for.
HOUSEKEEPING_INTERVAL = 10.0


@attrs.define(eq=False)
class RouterRuntime:
    router: HttpRouter
    servers: list[tuple[TcpServer, ServerCtx]]
    #: the task of an HTTP/2 router's upstream connections
    upstreams: Callable[..., Awaitable[None]] | None = None


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
        self.telemetry = Telemetry(config.telemetry, self.metrics)
        self.access_logs: list[AccessLog] = []
        self.admin: object | None = None
        self.admin_port = 0
        self._nursery: trio.Nursery | None = None
        self._stopped = trio.Event()
        self._scopes: dict[int, trio.CancelScope] = {}
        self._reload_lock = trio.Lock()
        self.reloads = self.metrics.counter("reloads")
        self.shutdown_grace = config.admin.shutdownGraceMs / 1000.0
        self._build()

    def _build_namers(self, cfg: LinkerConfig) -> list[tuple[Path, Namer]]:
        config_dir = os.path.dirname(cfg.path) if cfg.path and cfg.path != "-" else "."
        out: list[tuple[Path, Namer]] = []
        for n in cfg.namers:
            prefix = "/#" + namer_prefix(n)
            scope = self.metrics.scope("namer").scope(*[e for e in prefix.split("/") if e][1:])
            namer = n.mk(NamerContext(metrics=scope, config_dir=config_dir))
            namer.prefix = Path.read(prefix)
            if n.transformers:
                namer = TransformingNamer(namer, self._transformers(n.transformers))
                namer.prefix = Path.read(prefix)
            out.append((namer.prefix, namer))
        return out

    def _build(self) -> None:
        cfg = self.config
        self.namers = self._build_namers(cfg)
        for r in cfg.routers:
            scope = self.metrics.labeled("rt", r.name)
            interp = Interpreter(
                Dtab.read(r.dtab),
                self.namers,
                self.inet,
                scope.scope("interpreter"),
                transformers=self._transformers(r.interpreter.transformers or []),
                max_bindings=r.bindingCache.paths,
                idle_ttl=float(r.bindingCache.idleTtlSecs),
            )
            if r.interpreter.kind == "io.l5d.fs" and r.interpreter.dtabFile:
                watcher = DtabFile(r.interpreter.dtabFile, interp)
                interp.set_dtab(interp.dtab, watcher.read_now())
                self.dtab_files.append(watcher)
            access_log = None
            if r.httpAccessLog:
                access_log = AccessLog(
                    r.httpAccessLog,
                    r.httpAccessLogRollPolicy,
                    r.httpAccessLogAppend,
                    r.httpAccessLogRotateCount,
                )
                self.access_logs.append(access_log)
            router: HttpRouter
            upstreams = None
            if r.protocol == "h2":
                # imported only when a router speaks HTTP/2 (the codec and hpack)
                from .router.h2 import H2Router

                h2_router = H2Router(r, interp, scope, telemetry=self.telemetry)
                router, upstreams = h2_router, h2_router.run
            else:
                router = HttpRouter(
                    r, interp, scope, telemetry=self.telemetry, access_log=access_log
                )
            runtime = RouterRuntime(router, [], upstreams)
            for s in r.servers:
                port = s.port if s.port is not None else DEFAULT_PORTS.get(r.protocol, 0)
                ctx = router.server(s, port)
                opts = s.socketOptions
                server = TcpServer(
                    s.ip,
                    port,
                    self._handler(router, ctx),
                    on_listen=ctx.bind,
                    backlog=opts.backlog if opts else None,
                    reuse_port=bool(opts and opts.reusePort),
                    name=f"router {r.name}",
                )
                runtime.servers.append((server, ctx))
            self.routers.append(runtime)

    def _transformers(self, configs: Sequence[TransformerConfig]) -> list[Transformer]:
        inet = self.inet.addr
        cfg = self.config
        config_dir = os.path.dirname(cfg.path) if cfg.path and cfg.path != "-" else "."

        def bind_path(path: Path) -> State[NameTree[Bound]]:
            return bind(Dtab.empty, path, lambda p: global_lookup(p, inet, SYSTEM_NAMERS)).state

        out = []
        for c in configs:
            # metrics under the transformer's prefix: transformer/io.l5d.k8s.daemonset/...
            elems = c.full_prefix().elems
            kind = elems[1].decode() if len(elems) > 1 else type(c).__name__
            ctx = TransformerContext(
                bind_path=bind_path,
                metrics=self.metrics.scope("transformer", kind),
                config_dir=config_dir,
            )
            out.append(c.mk(ctx))
        return out

    @staticmethod
    def _handler(router: HttpRouter, ctx: ServerCtx) -> Handler:
        # a partial, not a closure: the connection's task then has no frame of ours
        # between the server's and the router's (an idle connection holds each frame)
        return functools.partial(router.serve_connection, srv=ctx)

    # -- running ----------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[Linker] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until :meth:`shutdown` (or cancellation)."""
        from .admin.server import AdminServer

        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(self.inet.run)
            for _, namer in self.namers:
                await self._start_namer(namer)
            for rt in self.routers:
                for t in rt.router.interpreter.transformers:
                    await self._start_namer(t)
            for watcher in self.dtab_files:
                nursery.start_soon(watcher.run)
            await nursery.start(self.telemetry.run)
            for access_log in self.access_logs:
                nursery.start_soon(access_log.run)
            for rt in self.routers:
                if rt.upstreams is not None:
                    await nursery.start(rt.upstreams)
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
        with trio.CancelScope(shield=True):
            for access_log in self.access_logs:
                await access_log.flush()
        self._stopped.set()

    async def _start_namer(self, namer: Namer | Transformer) -> None:
        """Run a namer's (or a transformer's) background work in its own cancel scope."""
        assert self._nursery is not None
        scope = trio.CancelScope()
        self._scopes[id(namer)] = scope

        async def run(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            with scope:
                await namer.run(task_status=task_status)

        await self._nursery.start(run)

    async def reload(self) -> str:
        """Read the config file again and apply what can change without a restart.

        Dtabs, namers, identifiers and client/service parameters take effect at once;
        connections stay open and requests in flight finish on what they started with.
        Servers, ports and the admin need a restart: such changes are reported, not
        applied.  A config that does not load is refused with its errors (ConfigError),
        and the running one keeps serving.
        """
        async with self._reload_lock:
            if not self.config.path or self.config.path == "-":
                raise ConfigError("the config was read from standard input: nothing to re-read")
            new = await trio.to_thread.run_sync(load_file, self.config.path, self.registry)
            notes = _restart_needed(self.config, new)
            by_label = {r.name: r for r in new.routers}
            # client certificates are read before anything changes: a bad one refuses
            # the whole reload
            client_tls = {
                rt.router.label: rt.router.tls_contexts(by_label[rt.router.label])
                for rt in self.routers
                if rt.router.label in by_label
            }
            old_namers = self.namers
            stale: list[Transformer] = []
            namers = self._build_namers(new)
            for _, namer in namers:
                await self._start_namer(namer)
            self.namers = namers
            for rt in self.routers:
                r = by_label.get(rt.router.label)
                if r is None:
                    continue
                interp = rt.router.interpreter
                interp.namers = list(namers)
                old_transformers = interp.transformers
                interp.transformers = self._transformers(r.interpreter.transformers or [])
                for t in interp.transformers:
                    await self._start_namer(t)
                stale.extend(old_transformers)
                rt.router.reconfigure(r, client_tls[rt.router.label])
                interp.set_dtab(Dtab.read(r.dtab))
            done: list[Namer | Transformer] = [n for _, n in old_namers]
            for old in done + stale:
                scope = self._scopes.pop(id(old), None)
                if scope is not None:
                    scope.cancel()
            self.config = attrs.evolve(new, path=self.config.path)
            self.reloads.incr()
            message = "reloaded " + self.config.path
            if notes:
                message += "; a restart is needed for: " + "; ".join(notes)
            log.info("%s", message)
            return message

    def request_shutdown(self, grace: float | None = None) -> None:
        """Start a shutdown from synchronous code (the admin's ``/admin/shutdown``)."""
        if self._nursery is not None:
            self._nursery.start_soon(self.shutdown, grace)


def _restart_needed(old: LinkerConfig, new: LinkerConfig) -> list[str]:
    """The differences a reload cannot apply."""
    notes = []
    if old.admin != new.admin:
        notes.append("admin")
    if old.telemetry != new.telemetry:
        notes.append("telemetry")
    old_routers = {r.name: r for r in old.routers}
    new_routers = {r.name: r for r in new.routers}
    for label in sorted(old_routers.keys() ^ new_routers.keys()):
        notes.append(f"router {label} added or removed")
    for label in sorted(old_routers.keys() & new_routers.keys()):
        a, b = old_routers[label], new_routers[label]
        if a.servers != b.servers or a.protocol != b.protocol:
            notes.append(f"servers of router {label}")
    return notes


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
