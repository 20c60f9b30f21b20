"""The system namers under ``/$/`` (Finagle's ``Namer.global`` plus Linkerd's).

The path logic is pure; the address of an ``inet`` name comes from a factory the
caller passes in (the router resolves DNS in its own tasks).

- ``/$/inet/<host>/<port>/rest`` and ``/$/inet/<port>/rest`` bind to id
  ``/$/inet/<host>/<port>`` with residual ``rest``; ``/$/fixedinet`` likewise;
- ``/$/fail...`` is Fail, ``/$/nil...`` is Empty;
- ``/$/<name>/rest`` asks the system namer registered as ``<name>`` (an unknown
  name fails with ``Unknown namer: <name> for path: <path>``);
- anything else is Neg.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping

from ..errors import UnknownNamer
from ._addr import AddrFailed, AddrSource, Bound
from ._path import Path
from ._state import Failed, Ok, State
from ._tree import Empty, Fail, Leaf, NameTree, Neg

Name = Path | Bound
#: ``inet(host, port, fixed)`` gives the changing Addr of ``host:port``; ``fixed``
#: is True for ``/$/fixedinet`` (no periodic re-resolution).
InetFactory = Callable[[str, int, bool], AddrSource]
SystemNamer = Callable[[Path, InetFactory], State[NameTree[Name]]]

_DOLLAR = b"$"
_INT_MAX = 2**31 - 1


def java_parse_int(s: str) -> int | None:
    """``Integer.parseInt``: optional sign, decimal digits (any script), 32-bit range."""
    if not s:
        return None
    body = s[1:] if s[0] in "+-" else s
    if not body:
        return None
    value = 0
    for c in body:
        if unicodedata.category(c) != "Nd":
            return None
        value = value * 10 + unicodedata.decimal(c)
    if s[0] == "-":
        value = -value
    if value > _INT_MAX or value < -_INT_MAX - 1:
        return None
    return value


def _inet_leaf(
    inet: InetFactory, id_: Path, host: str, port: int, fixed: bool, residual: Path
) -> NameTree[Name]:
    addr: AddrSource
    if 0 <= port <= 65535:
        addr = inet(host, port, fixed)
    else:
        addr = AddrFailed(f"port out of range: {port}")
    return Leaf(Bound(id_, residual, addr))


def _utf8(elems: tuple[bytes, ...]) -> list[str]:
    return [e.decode("utf-8", "replace") for e in elems]


def global_lookup(
    path: Path,
    inet: InetFactory,
    namers: Mapping[str, SystemNamer],
) -> State[NameTree[Name]]:
    """Look up a ``/$/...`` path (or answer Neg for any other path)."""
    e = path.elems
    if not e or e[0] != _DOLLAR:
        return Ok(Neg)
    if len(e) >= 3 and e[1] in (b"inet", b"fixedinet"):
        fixed = e[1] == b"fixedinet"
        if len(e) >= 4:
            port = java_parse_int(e[3].decode("utf-8", "replace"))
            if port is not None:
                host = e[2].decode("utf-8", "replace")
                return Ok(_inet_leaf(inet, Path(e[:4]), host, port, fixed, Path(e[4:])))
        port = java_parse_int(e[2].decode("utf-8", "replace"))
        if port is not None:
            return Ok(_inet_leaf(inet, Path(e[:3]), "", port, fixed, Path(e[3:])))
    if len(e) >= 2 and e[1] == b"fail":
        return Ok(Fail)
    if len(e) >= 2 and e[1] == b"nil":
        return Ok(Empty)
    if len(e) >= 2:
        kind = e[1].decode("utf-8", "replace")
        namer = namers.get(kind)
        if namer is None:
            return Failed(UnknownNamer(f"Unknown namer: {kind} for path: {path.show()}"))
        return namer(Path(e[2:]), inet)
    return Ok(Neg)


# --- Linkerd's /$/io.buoyant.* namers ----------------------------------------------

_RINET = Path.utf8("$", "io.buoyant.rinet")


def _leaf_path(*elems: str, rest: Path) -> State[NameTree[Name]]:
    if not all(elems):
        return Ok(Neg)
    return Ok(Leaf(Path.utf8(*elems).concat(rest)))


def rinet(path: Path, inet: InetFactory) -> State[NameTree[Name]]:
    """``/<port>/<host>/rest``: like inet with the port first."""
    if len(path.elems) < 2:
        return Ok(Neg)
    port_s, host = _utf8(path.elems[:2])
    id_ = _RINET.concat(Path(path.elems[:2]))
    port = java_parse_int(port_s)
    if port is None:
        addr = AddrFailed(f"invalid port: {port_s}")
        return Ok(Leaf(Bound(id_, path.drop(2), addr)))
    return Ok(_inet_leaf(inet, id_, host, port, False, path.drop(2)))


def java_split(s: str, sep: str) -> list[str]:
    """``String.split`` with a literal separator: trailing empty strings dropped."""
    parts = s.split(sep)
    while len(parts) > 1 and parts[-1] == "":
        parts.pop()
    if parts == [""] and s:
        return []
    return parts


_DNS_LABEL = re.compile(r"[a-z0-9][-a-z0-9]*[a-z0-9]?")


def _host_colon_port(s: str) -> tuple[str, str] | None:
    parts = java_split(s, ":")
    if len(parts) == 2 and _DNS_LABEL.fullmatch(parts[1]) and len(parts[1]) <= 63:
        return parts[0], parts[1]
    return None


def _rewriting(
    rewrite: Callable[[Path], State[NameTree[Name]] | None],
) -> SystemNamer:
    def lookup(path: Path, inet: InetFactory) -> State[NameTree[Name]]:
        r = rewrite(path)
        return Ok(Neg) if r is None else r

    return lookup


def _hostport(path: Path) -> State[NameTree[Name]] | None:
    if len(path.elems) < 2:
        return None
    pfx, hp = _utf8(path.elems[:2])
    m = _host_colon_port(hp)
    if m is None:
        return None
    return _leaf_path(pfx, m[0], m[1], rest=path.drop(2))


def _porthost(path: Path) -> State[NameTree[Name]] | None:
    if len(path.elems) < 2:
        return None
    pfx, hp = _utf8(path.elems[:2])
    m = _host_colon_port(hp)
    if m is None:
        return None
    return _leaf_path(pfx, m[1], m[0], rest=path.drop(2))


_METHOD = re.compile(r"[A-Z]+")
_HOST = re.compile(r"[A-Za-z0-9.:_-]+")


def _drop_port(hostname: str) -> str:
    idx = hostname.find(":")
    return hostname[:idx] if idx > 0 else hostname


def _subdomain(domain: str, hostname: str) -> str | None:
    sfx = "." + domain
    host = _drop_port(hostname)
    if host.endswith(sfx) and len(host) > len(sfx):
        return host[: -len(sfx)]
    return None


def _any_method(path: Path) -> State[NameTree[Name]] | None:
    if path.elems and _METHOD.fullmatch(_utf8(path.elems[:1])[0]):
        return Ok(Leaf(path.drop(1)))
    return None


def _any_method_pfx(path: Path) -> State[NameTree[Name]] | None:
    if len(path.elems) >= 2:
        pfx, method = _utf8(path.elems[:2])
        if _METHOD.fullmatch(method):
            return _leaf_path(pfx, rest=path.drop(2))
    return None


def _any_host(path: Path) -> State[NameTree[Name]] | None:
    if path.elems and _HOST.fullmatch(_utf8(path.elems[:1])[0]):
        return Ok(Leaf(path.drop(1)))
    return None


def _any_host_pfx(path: Path) -> State[NameTree[Name]] | None:
    if len(path.elems) >= 2:
        pfx, host = _utf8(path.elems[:2])
        if _HOST.fullmatch(host):
            return _leaf_path(pfx, rest=path.drop(2))
    return None


def _subdomain_of(path: Path) -> State[NameTree[Name]] | None:
    if len(path.elems) >= 2:
        domain, host = _utf8(path.elems[:2])
        if _HOST.fullmatch(domain) and _HOST.fullmatch(host):
            sub = _subdomain(domain, host)
            if sub:
                return _leaf_path(sub, rest=path.drop(2))
    return None


def _subdomain_of_pfx(path: Path) -> State[NameTree[Name]] | None:
    if len(path.elems) >= 3:
        domain, pfx, host = _utf8(path.elems[:3])
        if _HOST.fullmatch(domain) and _HOST.fullmatch(host):
            sub = _subdomain(domain, host)
            if sub:
                return _leaf_path(pfx, sub, rest=path.drop(3))
    return None


def _domain_to_path(path: Path) -> State[NameTree[Name]] | None:
    if path.elems:
        host = _utf8(path.elems[:1])[0]
        if _HOST.fullmatch(host):
            labels = java_split(host, ".")
            if labels:
                return _leaf_path(*reversed(labels), rest=path.drop(1))
    return None


def _domain_to_path_pfx(path: Path) -> State[NameTree[Name]] | None:
    if len(path.elems) >= 2:
        pfx, host = _utf8(path.elems[:2])
        if _HOST.fullmatch(host):
            labels = java_split(host, ".")
            if labels:
                return _leaf_path(pfx, *reversed(labels), rest=path.drop(2))
    return None


#: The system namers every router has, by the name after ``/$/``.
SYSTEM_NAMERS: Mapping[str, SystemNamer] = {
    "io.buoyant.rinet": rinet,
    "io.buoyant.hostportPfx": _rewriting(_hostport),
    "io.buoyant.porthostPfx": _rewriting(_porthost),
    "io.buoyant.http.anyMethod": _rewriting(_any_method),
    "io.buoyant.http.anyMethodPfx": _rewriting(_any_method_pfx),
    "io.buoyant.http.anyHost": _rewriting(_any_host),
    "io.buoyant.http.anyHostPfx": _rewriting(_any_host_pfx),
    "io.buoyant.http.subdomainOf": _rewriting(_subdomain_of),
    "io.buoyant.http.subdomainOfPfx": _rewriting(_subdomain_of_pfx),
    "io.buoyant.http.domainToPath": _rewriting(_domain_to_path),
    "io.buoyant.http.domainToPathPfx": _rewriting(_domain_to_path_pfx),
}
