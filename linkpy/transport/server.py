"""TCP servers: listeners, the accept loop, and graceful draining.

A :class:`TcpServer` listens on one address and runs ``handler(stream, conn)`` for each
connection, each in its own task of the server's nursery.  Draining stops accepting,
closes the connections that sit idle between requests, and lets the busy ones finish
their current request (the handler asks :meth:`ConnState.should_close`) before the
server's ``serve`` returns; whatever is still running when the grace period ends is
cancelled.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable

import trio

from .errors import OVERLOAD_ERRNOS

log = logging.getLogger("linkpy.transport")


class ConnState:
    """What the server knows of one connection: is it between requests?"""

    __slots__ = ("server", "cancel_scope", "idle", "peer", "local", "on_drain")

    def __init__(self, server: TcpServer, peer: tuple[str, int], local: tuple[str, int]) -> None:
        self.server = server
        self.cancel_scope = trio.CancelScope()
        self.idle = True
        self.peer = peer
        self.local = local
        #: Called when the server starts draining while this connection is busy
        #: (an HTTP/2 connection sends GOAWAY and closes once its streams are done).
        self.on_drain: Callable[[], None] | None = None

    def set_idle(self, idle: bool) -> None:
        """Mark the connection idle (waiting for a request) or busy.

        An idle connection of a draining server is closed at once.
        """
        self.idle = idle
        if idle and self.server.draining:
            self.cancel_scope.cancel()

    @property
    def should_close(self) -> bool:
        """The server is draining: finish the current request and close."""
        return self.server.draining


Handler = Callable[[trio.SocketStream, ConnState], Awaitable[None]]


def _addr(sockaddr: object) -> tuple[str, int]:
    if isinstance(sockaddr, tuple) and len(sockaddr) >= 2:
        return str(sockaddr[0]), int(sockaddr[1])
    return ("", 0)


class TcpServer:
    """Serves one listening address until drained or cancelled."""

    def __init__(
        self,
        ip: str,
        port: int,
        handler: Handler,
        *,
        backlog: int | None = None,
        reuse_port: bool = False,
        on_listen: Callable[[int], None] | None = None,
        name: str = "server",
    ) -> None:
        self.name = name
        #: what its connection tasks are called (in /admin/tasks), once it listens
        self.task_name = f"{name} connection"
        self.ip = ip
        self.port = port
        self.handler = handler
        self.backlog = backlog
        self.reuse_port = reuse_port
        self.on_listen = on_listen
        self.draining = False
        self.connections: set[ConnState] = set()
        self._accepting = trio.CancelScope()
        self._done = trio.Event()
        self._listeners: list[trio.SocketListener] = []

    @property
    def bound_port(self) -> int:
        if self._listeners:
            return int(self._listeners[0].socket.getsockname()[1])
        return self.port

    async def _listen(self) -> list[trio.SocketListener]:
        family = socket.AF_INET6 if ":" in self.ip else socket.AF_INET
        sock = trio.socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self.reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            await sock.bind((self.ip, self.port))
            sock.listen(self.backlog or 4096)
        except BaseException:
            sock.close()
            raise
        return [trio.SocketListener(sock)]

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen, report the bound port, and serve until drained."""
        self._listeners = await self._listen()
        self.task_name = f"{self.name} {self.ip}:{self.bound_port} connection"
        if self.on_listen is not None:
            self.on_listen(self.bound_port)
        try:
            async with trio.open_nursery() as nursery:
                task_status.started(self.bound_port)
                with self._accepting:
                    async with trio.open_nursery() as accepters:
                        for listener in self._listeners:
                            accepters.start_soon(self._accept_loop, listener, nursery)
                for listener in self._listeners:
                    await listener.aclose()
        finally:
            # also when cancelled: a listener left open would go on accepting into its
            # backlog, and the port would stay taken, until garbage collection
            for listener in self._listeners:
                listener.socket.close()
        self._done.set()

    async def _accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as e:
                if e.errno in OVERLOAD_ERRNOS:
                    log.error("accept on %s:%s failed (%s); backing off", self.ip, self.port, e)
                    await trio.sleep(0.1)
                    continue
                raise
            nursery.start_soon(self._run, stream, name=self.task_name)

    async def _run(self, stream: trio.SocketStream) -> None:
        try:
            peer = _addr(stream.socket.getpeername())
            local = _addr(stream.socket.getsockname())
        except OSError:
            await trio.aclose_forcefully(stream)
            return
        conn = ConnState(self, peer, local)
        self.connections.add(conn)
        try:
            with conn.cancel_scope:
                await self.handler(stream, conn)
        except Exception:
            log.exception("connection handler for %s:%s failed", *peer)
        finally:
            self.connections.discard(conn)
            await trio.aclose_forcefully(stream)

    def drain(self) -> None:
        """Stop accepting; close idle connections; busy ones close after their request."""
        self.draining = True
        self._accepting.cancel()
        for conn in list(self.connections):
            if conn.idle:
                conn.cancel_scope.cancel()
            elif conn.on_drain is not None:
                conn.on_drain()

    def abort(self) -> None:
        """Close every connection now."""
        self.drain()
        for conn in list(self.connections):
            conn.cancel_scope.cancel()

    async def wait_closed(self) -> None:
        await self._done.wait()
