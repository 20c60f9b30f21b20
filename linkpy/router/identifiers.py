"""Identifiers: name a request with a logical path (``/svc/users``).

Each identifier is a plugin in the ``linkpy.identifiers`` group (the entry name is the
config ``kind``): a config class with ``mk(dst_prefix, protocol)`` that builds the
:class:`Identifier`.  An identifier returns the logical path, or a string saying why it
could not name the request; a router with a list of identifiers uses the first one
that names it.  The HTTP/1.1 and HTTP/2 routers share these: header names are matched
without regard to case, and on HTTP/2 the default header is ``:authority``.
"""

from __future__ import annotations

import abc
from typing import Protocol

import attrs

from ..config.schema import IdentifierConfig
from ..errors import ParseError
from ..naming import Path


class Message(Protocol):
    """What an identifier reads of a request (HTTP/1.1 and HTTP/2 heads provide it)."""

    method: bytes
    target: bytes
    version: bytes

    def get(self, name: bytes) -> bytes | None: ...


class Identifier(abc.ABC):
    @abc.abstractmethod
    def identify(self, req: Message) -> Path | str:
        """The logical name of ``req``, or the reason it has none."""


def _split_target(target: bytes) -> tuple[bytes, bytes]:
    """(path, query-with-?) of an origin-form target."""
    q = target.find(b"?")
    if q < 0:
        return target, b""
    return target[:q], target[q:]


class HeaderToken(Identifier):
    """``/<prefix>/<header value>``: the value as one element, unchanged."""

    def __init__(self, prefix: Path, header: str) -> None:
        self.prefix = prefix
        self.header = header
        self.key = header.lower().encode()
        self._cache: dict[bytes, Path] = {}

    def identify(self, req: Message) -> Path | str:
        value = req.get(self.key)
        if not value:
            return f"{self.header} header is absent"
        path = self._cache.get(value)
        if path is None:
            try:
                path = self.prefix.concat(Path((value,)))
            except ValueError as e:  # pragma: no cover - value is non-empty
                return str(e)
            if len(self._cache) < 10_000:
                self._cache[value] = path
        return path


class HeaderPath(Identifier):
    """``/<prefix>/<header value read as a path>`` (``io.l5d.header``)."""

    def __init__(self, prefix: Path, header: str) -> None:
        self.prefix = prefix
        self.header = header
        self.key = header.lower().encode()

    def identify(self, req: Message) -> Path | str:
        value = req.get(self.key)
        if not value:
            return f"{self.header} header is absent"
        try:
            return self.prefix.concat(Path.read(value.decode("latin-1")))
        except ParseError as e:
            return f"{self.header} header is not a path: {e}"


class MethodAndHost(Identifier):
    """``/<prefix>/1.1/<METHOD>/<host>[/uri...]``, or ``/<prefix>/1.0/<METHOD>[/uri...]``."""

    def __init__(self, prefix: Path, uri_in_dst: bool) -> None:
        self.prefix = prefix
        self.uri_in_dst = uri_in_dst

    def _suffix(self, req: Message) -> Path | str:
        if not self.uri_in_dst:
            return Path.empty
        path, _ = _split_target(req.target)
        try:
            return Path.read(path.decode("latin-1"))
        except ParseError as e:
            return f"request path is not a name: {e}"

    def identify(self, req: Message) -> Path | str:
        suffix = self._suffix(req)
        if isinstance(suffix, str):
            return suffix
        method = req.method
        if req.version == b"1.0":
            return self.prefix.concat(Path((b"1.0", method))).concat(suffix)
        if req.version != b"1.1" and req.version != b"2":
            return f"Unknown HTTP version {req.version.decode()}"
        host = req.get(b"host") or req.get(b":authority")
        if not host:
            return "HTTP/1.1 request missing hostname"
        return self.prefix.concat(Path((b"1.1", method, host.lower()))).concat(suffix)


class PathSegments(Identifier):
    """``/<prefix>/<first N segments of the URL path>``; ``consume`` strips them."""

    def __init__(self, prefix: Path, segments: int, consume: bool) -> None:
        self.prefix = prefix
        self.segments = segments
        self.consume = consume

    def identify(self, req: Message) -> Path | str:
        path, query = _split_target(req.target)
        parts = path.split(b"/")[1:]
        while parts and parts[-1] == b"":
            parts.pop()
        if len(parts) < self.segments:
            return "not enough segments in path"
        taken = parts[: self.segments]
        if not all(taken):
            return "empty segment in path"
        if self.consume:
            rest = parts[self.segments :]
            if rest:
                new = b"/" + b"/".join(rest) + (b"/" if path.endswith(b"/") else b"")
            else:
                new = b"/"
            req.target = new + query
        return self.prefix.concat(Path(tuple(taken)))


class Static(Identifier):
    def __init__(self, path: Path) -> None:
        self.path = path

    def identify(self, req: Message) -> Path | str:
        return self.path


def _read_path(text: str) -> Path:
    return Path.read(text)


# --- configs (entry points of linkpy.identifiers) ------------------------------------


class BuildsIdentifier(abc.ABC):
    @abc.abstractmethod
    def mk(self, prefix: Path, protocol: str) -> Identifier: ...


@attrs.frozen(kw_only=True)
class HeaderTokenConfig(IdentifierConfig, BuildsIdentifier):
    """``io.l5d.header.token``: ``header`` (``Host``; ``:authority`` on HTTP/2)."""

    header: str | None = None

    def mk(self, prefix: Path, protocol: str) -> Identifier:
        default = ":authority" if protocol == "h2" else "Host"
        return HeaderToken(prefix, self.header or default)


@attrs.frozen(kw_only=True)
class HeaderConfig(IdentifierConfig, BuildsIdentifier):
    """``io.l5d.header``: ``header`` (``l5d-name``), whose value is read as a path."""

    header: str = "l5d-name"

    def mk(self, prefix: Path, protocol: str) -> Identifier:
        return HeaderPath(prefix, self.header)


@attrs.frozen(kw_only=True)
class MethodAndHostConfig(IdentifierConfig, BuildsIdentifier):
    """``io.l5d.methodAndHost``: ``httpUriInDst`` (false)."""

    httpUriInDst: bool = False

    def mk(self, prefix: Path, protocol: str) -> Identifier:
        return MethodAndHost(prefix, self.httpUriInDst)


@attrs.frozen(kw_only=True)
class PathConfig(IdentifierConfig, BuildsIdentifier):
    """``io.l5d.path``: ``segments`` (1), ``consume`` (false)."""

    segments: int = 1
    consume: bool = False

    def mk(self, prefix: Path, protocol: str) -> Identifier:
        return PathSegments(prefix, max(0, self.segments), self.consume)


@attrs.frozen(kw_only=True)
class HeaderPathConfig(IdentifierConfig, BuildsIdentifier):
    """``io.l5d.header.path`` (HTTP/2): ``header`` (``:path``), ``segments`` (all)."""

    header: str = ":path"
    segments: int | None = None

    def mk(self, prefix: Path, protocol: str) -> Identifier:
        if self.header.lower() in (":path", "path"):
            return _PathHeader(prefix, self.segments)
        return HeaderPath(prefix, self.header)


class _PathHeader(Identifier):
    def __init__(self, prefix: Path, segments: int | None) -> None:
        self.prefix = prefix
        self.segments = segments

    def identify(self, req: Message) -> Path | str:
        path, _ = _split_target(req.target)
        parts = [p for p in path.split(b"/") if p]
        if self.segments is not None:
            if len(parts) < self.segments:
                return "not enough segments in path"
            parts = parts[: self.segments]
        return self.prefix.concat(Path(tuple(parts)))


@attrs.frozen(kw_only=True)
class StaticConfig(IdentifierConfig, BuildsIdentifier):
    """``io.l5d.static``: ``path`` (required), appended to the router's ``dstPrefix``."""

    path: str = attrs.field()

    @path.validator
    def _check(self, _: object, value: str) -> None:
        _read_path(value)

    def mk(self, prefix: Path, protocol: str) -> Identifier:
        return Static(prefix.concat(Path.read(self.path)))


def identify(identifiers: list[Identifier], req: Message) -> Path | str:
    """The first name any identifier gives, or the reasons none did."""
    if len(identifiers) == 1:  # (as most routers have)
        return identifiers[0].identify(req)
    reasons = []
    for ident in identifiers:
        r = ident.identify(req)
        if isinstance(r, Path):
            return r
        reasons.append(r)
    return "; ".join(reasons)
