"""Naming benchmarks: the pure core, the router's own per-request calls, and the router.

1. The pure core (no I/O): parsing a 100-dentry dtab, a lookup in it (targets of issue
   "Foundation": <= 5 ms, <= 50 us); a cold bind of a 10-rule dtab with a 3-deep
   delegation and one fallback, and with a 2-rule ``l5d-dtab`` override
   (performance.md section 7.5).
2. The router's per-request naming, in process: a router built by
   :class:`linkpy.linker.Linker` from the realistic config (the file namer running),
   timed on the calls ``HttpRouter.handle`` makes for a request on a known name:
   ``identify``, ``Interpreter.binding`` and ``HttpRouter.route(...).pick()``, and
   ``HttpRouter.local_dtab`` for a request with an ``l5d-dtab`` header.
3. Through the running router (wrk -c10, CPU per request of the router process, median
   of 3 runs): no header; the same 2-rule ``l5d-dtab`` on every request (parsed once,
   binding cached); a different ``l5d-dtab`` on every request (a cold parse and bind
   each time).  The differences are what an override costs per request.
"""

from __future__ import annotations

import timeit
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import trio

from linkpy.config.load import load_file
from linkpy.linker import Linker
from linkpy.naming import (
    SYSTEM_NAMERS,
    AddrBound,
    Address,
    AddrSource,
    Bound,
    Dtab,
    Leaf,
    Name,
    NameTree,
    Neg,
    Ok,
    Path,
    Pending,
    State,
    bind,
    chain_namers,
    global_lookup,
)
from linkpy.proto.http1 import RequestHead
from linkpy.router.identifiers import identify

from . import report, tools

DTAB_100 = ";\n".join(
    [f"/svc/team{i}/*/api => /#/io.l5d.fs/team{i} | /$/inet/host{i}.example/80" for i in range(98)]
    + ["/svc => /#/io.l5d.fs", "/svc/web => 3*/#/io.l5d.fs/web & 1*/#/io.l5d.fs/web-v2"]
)
DTAB_10 = """
/srv => /#/io.l5d.fs;
/srv/legacy => /$/inet/127.0.0.1/9999;
/region => /srv;
/region/eu => /srv/eu;
/host => /region;
/host/users => /region/users-v2 | /region/users;
/svc => /host;
/svc/web => /host/web;
/svc/static => /$/nil;
/svc/admin => !;
"""


def _best_us(fn: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def _fs(rest: Path) -> State[NameTree[Name]]:
    files = {b"users", b"web", b"web-v2"}
    if rest.elems and rest.elems[0] in files:
        f = rest.elems[0].decode()
        addr = AddrBound([Address("127.0.0.1", 8080)])
        return Ok(Leaf(Bound(Path.utf8("#", "io.l5d.fs", f), rest.drop(1), addr)))
    return Ok(Neg)


def _inet(host: str, port: int, fixed: bool) -> AddrSource:
    return AddrBound([Address(host or "0.0.0.0", port)])


OVERRIDE = "/svc/web => /#/io.l5d.fs/web; /svc/users => /#/io.l5d.fs/web"
COLD_LUA = """\
local n = 0
request = function()
  n = n + 1
  local dtab = "/svc/web => /#/io.l5d.fs/web; /cold/" .. n .. " => /x"
  return wrk.format(nil, nil, {["l5d-dtab"] = dtab})
end
"""
RUNS = 3
SECONDS = 5
TARGET_CACHED_US = 3.0


def _pure() -> list[list[Any]]:
    namers = chain_namers(
        [(Path.read("/#/io.l5d.fs"), _fs)],
        lambda p: global_lookup(p, _inet, SYSTEM_NAMERS),
    )
    d100 = Dtab.read(DTAB_100)
    d10 = Dtab.read(DTAB_10)
    override = Dtab.read("/svc/users => /#/io.l5d.fs/web; /svc/web => /#/io.l5d.fs/users")
    path = Path.read("/svc/team42/x/api/v1")
    users = Path.read("/svc/users")
    parse_us = _best_us(lambda: Dtab.read(DTAB_100), 20)
    lookup_us = _best_us(lambda: d100.lookup(path), 2000)
    cold_us = _best_us(lambda: bind(d10, users, namers), 2000)
    override_us = _best_us(lambda: bind(d10 + Dtab.read(override.show()), users, namers), 2000)
    return [
        ["parse a 100-dentry dtab", parse_us, "<= 5,000"],
        ["look a path up in a 100-dentry dtab", lookup_us, "<= 50"],
        [
            "cold bind: 10-rule dtab, 3-deep delegation, one fallback",
            cold_us,
            "<= 200 (moonshot 50)",
        ],
        ["cold bind with a 2-rule l5d-dtab override (parse included)", override_us, "<= 50 more"],
    ]


async def _router_calls() -> dict[str, float]:
    """The router's per-request naming calls, on a router built from the realistic config."""
    linker = Linker(load_file(str(tools.write_config("http"))))
    router = linker.routers[0].router
    async with trio.open_nursery() as nursery:
        await nursery.start(linker.inet.run)
        for _, namer in linker.namers:
            await nursery.start(namer.run)
        head = RequestHead(b"GET", b"/", [(b"Host", b"web"), (b"Accept", b"*/*")])
        head.host = b"web"
        path = identify(router.identifiers, head)
        assert isinstance(path, Path), path
        binding = router.interpreter.binding(path, Dtab.empty)
        while binding.var.sample() is Pending:
            await binding.var.wait_change(binding.var.version)
        router.route(binding).pick()
        interp = router.interpreter
        ids = router.identifiers
        empty = Dtab.empty

        def cached() -> object:
            return router.route(interp.binding(path, empty)).pick()

        def naming() -> object:
            p = identify(ids, head)
            return router.route(interp.binding(p, empty)).pick()  # type: ignore[arg-type]

        headers = [(b"Host", b"web"), (b"l5d-dtab", OVERRIDE.encode()), (b"Accept", b"*/*")]
        dhead = RequestHead(b"GET", b"/", list(headers))
        dhead.host = b"web"
        dhead.has_l5d = True
        local = router.local_dtab(dhead)
        b2 = interp.binding(path, local)
        while b2.var.sample() is Pending:
            await b2.var.wait_change(b2.var.version)

        def with_override() -> object:
            dhead.headers = list(headers)
            loc = router.local_dtab(dhead)
            p = identify(ids, dhead)
            return router.route(interp.binding(p, loc)).pick()  # type: ignore[arg-type]

        out = {
            "identify": _best_us(lambda: identify(ids, head), 100_000),
            "cached": _best_us(cached, 100_000),
            "naming": _best_us(naming, 100_000),
            "override": _best_us(with_override, 50_000),
        }
        nursery.cancel_scope.cancel()
    linker.routers[0].router.close()
    return out


def _through_router() -> dict[str, list[dict[str, float]]]:
    script = tools.OUT / "cold-dtab.lua"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(COLD_LUA)
    out: dict[str, list[dict[str, float]]] = {}
    with ExitStack() as stack:
        ngx = stack.enter_context(tools.nginx())
        lp = stack.enter_context(tools.linkpy())
        pids = [lp.pid, *tools.nginx_workers(ngx)]
        tools.wrk(tools.LINKPY_PORT, 10, 2)
        variants: dict[str, tuple[tuple[str, ...], Any]] = {
            "no l5d-dtab": ((), None),
            "the same 2-rule l5d-dtab on every request": ((f"l5d-dtab: {OVERRIDE}",), None),
            "a different 2-rule l5d-dtab on every request": ((), script),
        }
        for _ in range(RUNS):
            for name, (headers, lua) in variants.items():
                tools.wait_quiet()
                with tools.Meter(pids) as m:
                    r = tools.wrk(tools.LINKPY_PORT, 10, SECONDS, headers, lua)
                if r.errors or r.non2xx:
                    raise RuntimeError(f"{name}: {r.errors} socket errors, {r.non2xx} non-2xx")
                out.setdefault(name, []).append(
                    {
                        "rps": r.rps,
                        "cpu_us": m.cpu[lp.pid] / r.requests * 1e6,
                        "foreign": m.foreign,
                    }
                )
    return out


def run() -> None:
    print("   the pure core", flush=True)
    rows = _pure()
    print("   the router's calls, in process", flush=True)
    calls = trio.run(_router_calls)
    print("   through the running router", flush=True)
    via = _through_router()
    call_rows = [
        ["identify the request (io.l5d.header.token on Host)", calls["identify"], "–"],
        [
            "cached binding: Interpreter.binding + HttpRouter.route(...).pick()",
            calls["cached"],
            f"<= {TARGET_CACHED_US:g}",
        ],
        ["both: a request on a known name, no l5d-dtab", calls["naming"], "–"],
        [
            "the same with a 2-rule l5d-dtab header (local_dtab, cached parse and binding)",
            calls["override"],
            "–",
        ],
    ]
    base = tools.median([x["cpu_us"] for x in via["no l5d-dtab"]])
    via_rows: list[list[Any]] = []
    for name, runs in via.items():
        cpu = tools.median([x["cpu_us"] for x in runs])
        via_rows.append(
            [
                name,
                tools.median([x["rps"] for x in runs]),
                cpu,
                cpu - base,
                f"{max(x['foreign'] for x in runs):.2f}",
            ]
        )
    report.save(
        "naming",
        "Naming: dtab parsing, binding, l5d-dtab overrides",
        [
            {
                "caption": "The pure core (one core, no I/O), best of 5.",
                "columns": ["operation", "µs per op", "target µs"],
                "rows": rows,
            },
            {
                "caption": "The router's per-request naming calls, in process, on a router "
                "built from the realistic config (best of 5 loops).",
                "columns": ["per request", "µs", "target µs"],
                "rows": call_rows,
            },
            {
                "caption": f"Through the running router: wrk -t1 -c10, {SECONDS} s, median of "
                f"{RUNS} runs; CPU µs per request of the router process. Override: `{OVERRIDE}`.",
                "columns": [
                    "requests carry",
                    "requests/s",
                    "CPU µs/request",
                    "added CPU µs/request",
                    "other load",
                ],
                "rows": via_rows,
            },
        ],
        notes=[
            "A different l5d-dtab on every request makes every request a new "
            "(name, local dtab) pair: the router parses it, binds it and builds its route "
            "(it keeps up to `bindingCache.paths` such bindings and 1,000 parsed dtabs).",
        ],
        commands=[
            tools.show(tools.wrk_cmd(tools.LINKPY_PORT, 10, SECONDS)),
            tools.show(tools.wrk_cmd(tools.LINKPY_PORT, 10, SECONDS, (f"l5d-dtab: {OVERRIDE}",))),
            tools.show(
                tools.wrk_cmd(tools.LINKPY_PORT, 10, SECONDS, script=tools.OUT / "cold-dtab.lua")
            ),
        ],
        targets=[
            report.target(
                "cached binding per request (Interpreter.binding + route pick)",
                calls["cached"],
                "<=",
                TARGET_CACHED_US,
                unit="µs",
            )
        ],
    )
