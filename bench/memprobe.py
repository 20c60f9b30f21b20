"""Where the memory of an idle downstream connection goes (tracemalloc), for memory.py.

Run as its own process (never inside the harness): builds the router with
:class:`linkpy.linker.Linker` from the realistic config, serves on trio in this process
with tracemalloc on, has a client process open N keep-alive connections (each carries
one request, then stays open) and prints, as JSON, the allocation sites that grew, per
connection.  nginx must be up (the requests go through to it).

    python -m bench.memprobe bench/out/linkpy/http.yaml 1000
"""

from __future__ import annotations

import gc
import json
import linecache
import socket
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import trio

from linkpy.config.load import load_file
from linkpy.linker import Linker

REQUEST = b"GET / HTTP/1.1\r\nHost: web\r\n\r\n"
ROOT = str(Path(__file__).resolve().parent.parent) + "/"


def _client(port: int, n: int) -> None:
    """Open ``n`` keep-alive connections (one request each), say so, hold them until EOF."""
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(REQUEST)
        data = b""
        while b"Hello, world!" not in data:
            chunk = s.recv(4096)
            if not chunk:
                raise RuntimeError("closed before the response")
            data += chunk
        socks.append(s)
    print("ready", flush=True)
    sys.stdin.read()


async def _connections(port: int, n: int) -> trio.Process:
    """A client process holding ``n`` idle connections (it runs until its stdin closes)."""
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "bench.memprobe", "--client", str(port), str(n)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = b""
    while not line.endswith(b"\n"):
        chunk = await proc.stdout.receive_some(64)
        if not chunk:
            raise RuntimeError("the client process failed")
        line += chunk
    return proc


def _site(filename: str, lineno: int) -> str:
    name = filename.replace(ROOT, "")
    for marker in ("site-packages/", "lib/python3."):
        if marker in name:
            name = name.split(marker, 1)[1]
            if marker.startswith("lib/"):
                name = "stdlib/" + name.split("/", 1)[1]
    return f"{name}:{lineno}"


async def _main(config: str, n: int) -> dict[str, Any]:
    linker = Linker(load_file(config))
    async with trio.open_nursery() as nursery:
        await nursery.start(linker.run)
        port = linker.ports()[linker.routers[0].router.label][0]
        warm = await _connections(port, 1)  # the first request binds the name
        await trio.sleep(0.2)
        gc.collect()
        tracemalloc.start(1)
        before = tracemalloc.take_snapshot()
        client = await _connections(port, n)
        await trio.sleep(0.5)
        gc.collect()
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        opened = n
        stats = after.compare_to(before, "lineno")
        total = sum(s.size_diff for s in stats)
        sites = [
            {
                "site": _site(s.traceback[0].filename, s.traceback[0].lineno),
                "code": linecache.getline(s.traceback[0].filename, s.traceback[0].lineno).strip(),
                "bytes": s.size_diff / opened,
                "objects": s.count_diff / opened,
            }
            for s in stats[:15]
        ]
        for p in (warm, client):
            assert p.stdin is not None
            await p.stdin.aclose()
            await p.wait()
        nursery.cancel_scope.cancel()
    return {"connections": opened, "bytes_per_connection": total / opened, "sites": sites}


def main() -> None:
    if sys.argv[1] == "--client":
        _client(int(sys.argv[2]), int(sys.argv[3]))
        return
    config, n = sys.argv[1], int(sys.argv[2])
    print(json.dumps(trio.run(_main, config, n)))


if __name__ == "__main__":
    main()
