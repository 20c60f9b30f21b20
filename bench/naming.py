"""Naming benchmarks: parsing a 100-dentry dtab, looking a path up in it, binding.

Targets (issue "Foundation"): parsing a 100-dentry dtab <= 5 ms, a lookup in it
<= 50 us.  The binding figures (performance.md section 7.5): a cold bind of a 10-rule
dtab with a 3-deep delegation and one fallback, and a 2-rule ``l5d-dtab`` override.
"""

from __future__ import annotations

import timeit
from collections.abc import Callable

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
    State,
    bind,
    chain_namers,
    global_lookup,
)

from . import report

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


def run() -> None:
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
    cached: dict[tuple[Path, Dtab], object] = {(users, Dtab.empty): bind(d10, users, namers)}
    cached_us = _best_us(lambda: cached[(users, Dtab.empty)], 200_000)
    rows = [
        ["parse a 100-dentry dtab", parse_us, "<= 5,000"],
        ["look a path up in a 100-dentry dtab", lookup_us, "<= 50"],
        [
            "cold bind: 10-rule dtab, 3-deep delegation, one fallback",
            cold_us,
            "<= 200 (moonshot 50)",
        ],
        ["cold bind with a 2-rule l5d-dtab override (parse included)", override_us, "<= 50 more"],
        ["cached binding: dict hit on (path, local dtab)", cached_us, "<= 3"],
    ]
    report.save(
        "naming",
        "Naming (pure core, one core, no I/O)",
        [{"columns": ["operation", "µs per op (best of 5)", "target µs"], "rows": rows}],
        notes=[
            "The cached figure is the lookup the router does per request on a known name; "
            "the HTTP benchmarks measure it in place."
        ],
    )
