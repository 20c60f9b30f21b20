"""Large bodies stream through the router in bounded memory (real nginx, real curl)."""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import httpx
import trio

from ..conftest import ROOT, require_tool, run

SIZE = 256 * 1024 * 1024


async def free_port() -> int:
    ls = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = int(ls[0].socket.getsockname()[1])
    await ls[0].aclose()
    return port


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


async def test_large_bodies_both_ways(
    tmp_path: Path, nursery: trio.Nursery, http: httpx.AsyncClient
) -> None:
    nginx = require_tool("nginx")
    curl = require_tool("curl")
    www = tmp_path / "www"
    www.mkdir()
    big = www / "big"
    with big.open("wb") as f:
        f.truncate(SIZE)
    nginx_port, router_port, admin_port = await free_port(), await free_port(), await free_port()
    (tmp_path / "logs").mkdir()
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"""
user root;
worker_processes 1;
error_log {tmp_path}/logs/error.log;
pid {tmp_path}/nginx.pid;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_max_body_size 0;
  client_body_temp_path {tmp_path}/body;
  server {{
    listen 127.0.0.1:{nginx_port};
    root {www};
    location /upload {{
      client_body_buffer_size 64k;
      proxy_pass http://127.0.0.1:{nginx_port}/sink;
    }}
    location /sink {{ return 200 "stored\\n"; }}
  }}
}}
"""
    )
    nursery.start_soon(
        partial(
            trio.run_process, [nginx, "-c", str(conf), "-p", str(tmp_path), "-g", "daemon off;"]
        )
    )
    disco = tmp_path / "disco"
    disco.mkdir()
    (disco / "files").write_text(f"127.0.0.1 {nginx_port}\n")
    cfg = tmp_path / "linkpy.yaml"
    cfg.write_text(
        f"admin: {{port: {admin_port}}}\n"
        f"namers:\n- kind: io.l5d.fs\n  rootDir: {disco}\n"
        "routers:\n- protocol: http\n  dtab: /svc => /#/io.l5d.fs\n"
        f"  servers: [{{port: {router_port}}}]\n"
    )
    proc = await nursery.start(
        partial(
            trio.run_process,
            [sys.executable, "-m", "linkpy", "run", str(cfg)],
            cwd=ROOT,
            check=False,
        )
    )
    for _ in range(200):
        try:
            if (await http.get(f"http://127.0.0.1:{admin_port}/admin/ping")).status_code == 200:
                break
        except httpx.TransportError:
            await trio.sleep(0.05)
    url = f"http://127.0.0.1:{router_port}"
    # download: 256 MB from nginx through the router
    out = await run(
        curl,
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{size_download}",
        "-H",
        "Host: files",
        url + "/big",
    )
    assert out.stdout == f"200 {SIZE}".encode()
    # upload: 256 MB, chunked (no length known in advance), through the router; nginx
    # proxies /upload to itself, so it must have received the whole body to answer
    out = await run(
        curl,
        "-s",
        "-H",
        "Host: files",
        "-H",
        "Transfer-Encoding: chunked",
        "-H",
        "Expect:",
        "-T",
        str(big),
        url + "/upload",
    )
    assert out.stdout == b"stored\n"
    rss = peak_rss_mb(proc.pid)
    assert rss < 120, f"peak RSS {rss:.0f} MB while streaming {SIZE >> 20} MB each way"
    proc.terminate()
    nursery.cancel_scope.cancel()
