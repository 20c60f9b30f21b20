"""Namers for the pure binding tests: scripted states and Finagle's test namers."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from linkpy.naming import (
    SYSTEM_NAMERS,
    Addr,
    AddrBound,
    Address,
    AddrSource,
    Failed,
    Leaf,
    Name,
    NamerLookup,
    NameTree,
    Ok,
    Path,
    State,
    SystemNamer,
    chain_namers,
    global_lookup,
)


def inet(host: str, port: int, fixed: bool) -> AddrSource:
    """Resolve like the JVM would on loopback: no host is the wildcard address."""
    hosts = {"": "0.0.0.0", "127.1": "127.0.0.1", "localhost": "127.0.0.1"}
    return AddrBound([Address(hosts.get(host, host), port)])


def testnamer(rest: Path, inet: Callable[[str, int, bool], AddrSource]) -> State[NameTree[Name]]:
    """Finagle's ``com.twitter.finagle.naming.testnamer``: always ``/rewritten/by/test/namer``."""
    return Ok(Leaf(Path.read("/rewritten/by/test/namer")))


EXTRA: Mapping[str, SystemNamer] = {"com.twitter.finagle.naming.testnamer": testnamer}


def system(extra: Mapping[str, SystemNamer] = EXTRA) -> NamerLookup:
    namers = {**SYSTEM_NAMERS, **extra}
    return lambda p: global_lookup(p, inet, namers)


def scripted(states: Mapping[str, State[NameTree[Name]]]) -> NamerLookup:
    """Namers answering ``states[path]`` for the listed paths, the system namers otherwise."""
    fallback = system()
    table = {Path.read(k): v for k, v in states.items()}

    def lookup(p: Path) -> State[NameTree[Name]]:
        return table[p] if p in table else fallback(p)

    return lookup


class NamingFailure(Exception):
    pass


def configured(**namers: NamerLookup) -> NamerLookup:
    """Configured namers under ``/#/<name>`` in keyword order, then the system namers."""
    return chain_namers([(Path.utf8("#", k), v) for k, v in namers.items()], system())


def binds_everything(prefix: str) -> NamerLookup:
    """Linkerd's TestNamer: binds ``/#/<prefix>/<rest>`` to id ``/#/<prefix>``, pending addr."""
    pfx = Path.read(prefix)

    def lookup(rest: Path) -> State[NameTree[Name]]:
        from linkpy.naming import Bound

        return Ok(Leaf(Bound(pfx, rest, Addr.Pending)))

    return lookup


def always_fails(prefix: str) -> NamerLookup:
    """Linkerd's ErrorNamer: every lookup fails with ``error naming <path>``."""
    pfx = Path.read(prefix)
    return lambda rest: Failed(NamingFailure(f"error naming {(pfx + rest).show()}"))
