"""``linkpy demo``: a routed request with nothing else running.

Starts two tiny HTTP backends on free loopback ports (``hello`` and ``hello-v2``),
writes their addresses into a temporary directory for the file namer, and runs a router
on the embedded quickstart config (``configs/quickstart.yaml`` is the same config with
its directory next to it).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import trio

from .config.load import load
from .proto.http1 import END
from .transport.http1 import ClientClosed, ServerConnection
from .transport.server import ConnState, TcpServer

QUICKSTART = """\
# The quickstart: one HTTP router, the file namer, and the admin port.
admin:
  ip: 127.0.0.1
  port: {admin_port}

namers:
- kind: io.l5d.fs
  rootDir: {root_dir}

routers:
- protocol: http
  label: outgoing
  dtab: |
    /svc => /#/io.l5d.fs;
  servers:
  - ip: 127.0.0.1
    port: {port}
"""


async def hello_backend(
    name: str, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """An HTTP/1.1 server answering every request with a greeting naming ``name``."""

    async def handle(stream: trio.SocketStream, state: ConnState) -> None:
        conn = ServerConnection(stream)
        try:
            while True:
                head = await conn.receive_head()
                if head is None:
                    return
                while head.has_body:
                    kind, _ = await conn.receive_body()
                    if kind == END:
                        break
                port = state.local[1]
                body = f"Hello from {name} (127.0.0.1:{port}) for {head.target.decode()}\n".encode()
                await conn.send(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s"
                    % (len(body), body)
                )
                if not head.keep_alive:
                    return
        except ClientClosed:
            return

    await TcpServer("127.0.0.1", 0, handle).serve(task_status=task_status)


async def run_demo(port: int = 4140, admin_port: int = 9990) -> int:
    from .cli import os_errors, serve_until_signalled
    from .linker import Linker

    with tempfile.TemporaryDirectory(prefix="linkpy-demo-") as root:
        async with trio.open_nursery() as nursery:
            p1 = await nursery.start(hello_backend, "hello")
            p2 = await nursery.start(hello_backend, "hello-v2")
            (Path(root) / "hello").write_text(f"127.0.0.1 {p1}\n")
            (Path(root) / "hello-v2").write_text(f"127.0.0.1 {p2}\n")
            cfg = load(QUICKSTART.format(port=port, admin_port=admin_port, root_dir=root))
            linker = Linker(cfg)
            banner = f"""
linkpy demo
  router  http://127.0.0.1:{port}   (label outgoing, dtab /svc => /#/io.l5d.fs)
  admin   http://127.0.0.1:{admin_port}
  backends: hello on 127.0.0.1:{p1}, hello-v2 on 127.0.0.1:{p2}
            (the file namer reads them from {root}; edit the files to re-route live)

Try:
  curl -H 'Host: hello' http://127.0.0.1:{port}/
  curl -H 'Host: hello' -H 'l5d-dtab: /svc/hello => /#/io.l5d.fs/hello-v2' http://127.0.0.1:{port}/
  http_proxy=http://127.0.0.1:{port} curl http://hello/
  curl -H 'Host: nope' http://127.0.0.1:{port}/        # 502 with an l5d-err header
  curl 'http://127.0.0.1:{admin_port}/delegator.json?path=/svc/hello&dtab=/svc=>/%23/io.l5d.fs'
  curl http://127.0.0.1:{admin_port}/admin/metrics.json?pretty=1

Ctrl-C to stop.
"""
            failed: list[OSError] = []
            try:
                await serve_until_signalled(linker, lambda: print(banner, flush=True))
            except* OSError as group:
                failed.extend(os_errors(group))
            nursery.cancel_scope.cancel()
    if failed:
        print(f"linkpy demo: cannot listen ({failed[0]}); try --port/--admin-port", file=sys.stderr)
        return 1
    return 0
