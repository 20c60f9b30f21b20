"""The Consul HTTP API as the namer uses it: py-consul on a trio/httpx adapter, and
pure parsers from Consul's JSON to values.

py-consul (the ``consul`` module) builds every request (paths, ``dc``/``tag``/
``index``/``wait``/``passing``/consistency parameters, the ``X-Consul-Token``
header) and turns answers into values or exceptions through its callbacks.  Its
HTTP client is pluggable: :class:`TrioHTTPClient` performs the I/O with an
``httpx.AsyncClient`` on trio, so py-consul's API methods return coroutines and the
blocking ``requests`` client is never used (it is imported by py-consul's package,
never called).

Where py-consul is not enough, the adapter fills in (each is tested):

- ``health.service`` takes no consistency mode (only the catalog reads do): the
  adapter adds ``stale``/``consistent`` to health reads;
- ``agent.self()`` sends no token: the adapter adds the configured token to every
  request that has none;
- the constructor lets the environment (``CONSUL_HTTP_TOKEN``) override an explicit
  token: :class:`TrioConsul` puts the configured token back;
- its callbacks raise ``ConsulException("500 No path to datacenter")`` and the like,
  one class for many situations: the adapter re-raises them as :class:`ConsulError`
  with a ``kind`` the namer acts on (unknown datacenter, ACL, server error,
  malformed answer, ...), and a message cut to a readable length;
- it reads ``X-Consul-Index`` as a string and never checks it: :func:`parse_index`.

The answers' JSON is then read by the pure functions :func:`parse_health`,
:func:`parse_catalog` and :func:`parse_agent`, which tolerate unexpected fields,
``null`` lists and bad entries (skipped, and reported), and reject an answer that is
not the expected shape at all (:class:`MalformedAnswer`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final, Literal

import attrs
import consul.base  # type: ignore[import-untyped]
import consul.exceptions  # type: ignore[import-untyped]
import httpx
import trio

#: Health states of an instance, best first; ``maintenance`` is Consul's critical
#: ``_node_maintenance`` / ``_service_maintenance:<id>`` check.
STATUSES: Final = ("passing", "warning", "critical", "maintenance")
Status = Literal["passing", "warning", "critical", "maintenance"]
Consistency = Literal["default", "stale", "consistent"]

#: An answer larger than this is refused (a runaway or hostile server).
MAX_BODY: Final = 64 * 1024 * 1024
#: How much of a body an error message quotes.
_QUOTE: Final = 200

ErrorKind = Literal[
    "unknown_dc",  # 500 "No path to datacenter": the datacenter does not exist (or is cut off)
    "no_leader",  # 500 "No cluster leader"
    "acl",  # 401/403: bad token or no permission
    "bad_request",  # 400: a bug on our side (or a server we do not understand)
    "rate_limited",  # 429
    "server",  # other 5xx
    "client",  # other 4xx
    "malformed",  # not JSON, the wrong shape, too large
    "no_index",  # no (or a bad) X-Consul-Index
    "transport",  # connection refused/reset, truncated answer
    "timeout",  # no (complete) answer in time: a hung server
]


class ConsulError(Exception):
    """A failed Consul request, classified."""

    def __init__(self, kind: ErrorKind, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.status = status

    def __repr__(self) -> str:
        return f"ConsulError({self.kind}, {str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ConsulError):
            return NotImplemented
        return (self.kind, str(self), self.status) == (other.kind, str(other), other.status)

    def __hash__(self) -> int:
        return hash((self.kind, str(self), self.status))


class MalformedAnswer(ValueError):
    """The answer is not the JSON shape Consul sends."""


def quote(text: str, limit: int = _QUOTE) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    one = " ".join(text.split())
    return one if len(one) <= limit else one[:limit] + "..."


def classify(status: int, body: str) -> ConsulError:
    """The error of a non-200 answer (Consul answers errors in plain text)."""
    text = quote(body)
    if status == 500 and "No path to datacenter" in body:
        return ConsulError("unknown_dc", f"unknown datacenter ({text})", status)
    if status == 500 and "No cluster leader" in body:
        return ConsulError("no_leader", f"Consul has no leader ({text})", status)
    if status in (401, 403):
        return ConsulError("acl", f"ACL: {status} {text}", status)
    if status == 400:
        return ConsulError("bad_request", f"bad request: {text}", status)
    if status == 429:
        return ConsulError("rate_limited", f"rate limited: {text}", status)
    if status >= 500:
        return ConsulError("server", f"server error {status}: {text}", status)
    return ConsulError("client", f"unexpected {status}: {text}", status)


# --- the trio adapter for py-consul ---------------------------------------------------


class TrioHTTPClient(consul.base.HTTPClient):  # type: ignore[misc]
    """py-consul's HTTP client interface, on ``httpx.AsyncClient`` (so, on trio).

    ``get`` is a coroutine: py-consul's API methods return what the client returns,
    so ``await api.health.service(...)`` works.  Every request gets the whole-request
    deadline ``timeout`` (plus ``wait`` and Consul's ``wait/16`` jitter for a blocking
    query), so a server that accepts and never answers is noticed.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        host: str,
        port: int,
        scheme: str,
        *,
        timeout: float,
        token: Callable[[], str | None],
        consistency: Callable[[], Consistency],
        max_body: int = MAX_BODY,
    ) -> None:
        super().__init__(host, port, scheme, True, None)
        self.http = http
        self.timeout = timeout
        self.token = token
        self.consistency = consistency
        self.max_body = max_body

    def deadline(self, params: Iterable[tuple[str, Any]]) -> float:
        """Seconds the whole request may take."""
        p = dict(params)
        if "index" not in p:
            return self.timeout
        wait = parse_wait(str(p.get("wait", "5m")))
        return wait + wait / 16 + self.timeout

    def _params(self, path: str, params: list[tuple[str, Any]] | None) -> list[tuple[str, Any]]:
        out = list(params or ())
        mode = self.consistency()
        names = {k for k, _ in out}
        if (
            path.startswith("/v1/health/")
            and mode != "default"
            and not names & {"stale", "consistent"}
        ):
            out.append((mode, "1"))
        return out

    def _headers(self, headers: Mapping[str, str] | None) -> dict[str, str]:
        out = dict(headers or {})
        token = self.token()
        if token and not any(k.lower() == "x-consul-token" for k in out):
            out["X-Consul-Token"] = token
        return out

    async def get(
        self,
        callback: Callable[[Any], Any],
        path: str,
        params: list[tuple[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        raw: bool = False,
    ) -> Any:
        params = self._params(path, params)
        uri = self.uri(path, params)
        deadline = self.deadline(params)
        try:
            with trio.fail_after(deadline):
                async with self.http.stream(
                    "GET", uri, headers=self._headers(headers), timeout=None
                ) as r:
                    body = await self._read(r)
        except trio.TooSlowError:
            raise ConsulError(
                "timeout", f"no answer to GET {path} within {deadline:.1f}s"
            ) from None
        except httpx.HTTPError as e:
            raise ConsulError("transport", f"GET {path}: {_describe(e)}") from None
        except OSError as e:  # raised by some transports outside httpx's classes
            raise ConsulError("transport", f"GET {path}: {e}") from None
        text = body.decode("utf-8", errors="replace")
        if r.status_code != 200:
            raise classify(r.status_code, text)
        response = consul.base.Response(r.status_code, r.headers, text)
        try:
            return callback(response)
        except consul.exceptions.ConsulException as e:
            message = str(e)
            if message.startswith("Missing index header"):
                raise ConsulError("no_index", f"GET {path}: no X-Consul-Index header") from None
            raise ConsulError("malformed", f"GET {path}: {quote(message)}") from None

    async def _read(self, r: httpx.Response) -> bytes:
        declared = r.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            raise ConsulError("malformed", f"answer of {declared} bytes is too large")
        parts: list[bytes] = []
        size = 0
        async for chunk in r.aiter_raw():
            size += len(chunk)
            if size > self.max_body:
                raise ConsulError("malformed", f"answer larger than {self.max_body} bytes")
            parts.append(chunk)
        return b"".join(parts)

    def _unsupported(self, *args: object, **kwargs: object) -> Awaitable[Any]:
        raise NotImplementedError("the namer only reads from Consul")

    put = delete = post = _unsupported

    async def close(self) -> None:  # the namer owns (and closes) the httpx client
        return None


def _describe(e: httpx.HTTPError) -> str:
    text = str(e) or type(e).__name__
    if isinstance(e, httpx.RemoteProtocolError):
        return f"connection closed mid-answer ({text})"
    return text


class TrioConsul(consul.base.Consul):  # type: ignore[misc]
    """py-consul's API object, doing its I/O through :class:`TrioHTTPClient`."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        host: str = "localhost",
        port: int = 8500,
        scheme: str = "http",
        token: str | None = None,
        consistency: Consistency = "default",
        timeout: float = 10.0,
    ) -> None:
        self._http = http
        self._timeout = timeout
        super().__init__(host=host, port=port, token=token, scheme=scheme, consistency=consistency)
        # py-consul lets CONSUL_HTTP_TOKEN override an explicit token: the config wins
        self.token = token

    def http_connect(
        self, host: str, port: int, scheme: str, verify: object = True, cert: object = None
    ) -> TrioHTTPClient:
        return TrioHTTPClient(
            self._http,
            host,
            port,
            scheme,
            timeout=self._timeout,
            token=lambda: self.token,
            consistency=lambda: self.consistency,
        )

    async def service(
        self,
        service: str,
        *,
        dc: str | None,
        tag: str | None,
        index: int,
        wait: str,
        health: bool,
        passing: bool,
    ) -> tuple[int, object]:
        """One read of a service's instances: ``(X-Consul-Index, JSON)``.

        ``index`` 0 is a plain read; otherwise a blocking query for up to ``wait``.
        """
        if health:
            raw_index, data = await self.health.service(
                service,
                index=index or None,
                wait=wait,
                passing=passing,
                tag=tag,
                dc=dc,
            )
        else:
            raw_index, data = await self.catalog.service(
                service, index=index or None, wait=wait, tag=tag, dc=dc
            )
        return parse_index(raw_index), data

    async def agent_self(self) -> object:
        """``GET /v1/agent/self``."""
        return await self.agent.self()


def parse_index(raw: object) -> int:
    """The value of an ``X-Consul-Index`` header (a non-negative integer)."""
    text = str(raw).strip()
    if not text.isdigit():
        raise ConsulError("no_index", f"bad X-Consul-Index {quote(text, 40)!r}")
    return int(text)


def parse_wait(text: str) -> float:
    """A Go duration as Consul reads ``wait`` (``10s``, ``5m``, ``250ms``), in seconds."""
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for unit in ("ms", "s", "m", "h"):
        if text.endswith(unit):
            number = text[: -len(unit)]
            try:
                return float(number) * units[unit]
            except ValueError:
                break
    raise ValueError(f"bad duration {text!r}")


# --- pure parsers -------------------------------------------------------------------


@attrs.frozen
class Instance:
    """One service instance, as the namer needs it."""

    node: str
    node_address: str
    service_id: str
    service_address: str
    port: int
    tags: tuple[str, ...] = ()
    #: worst health of the instance's checks (``passing`` on catalog reads)
    status: Status = "passing"
    #: Consul's DNS weights: (Passing, Warning)
    weights: tuple[int, int] = (1, 1)
    service_meta: tuple[tuple[str, str], ...] = ()
    node_meta: tuple[tuple[str, str], ...] = ()
    #: the datacenter the answer says the node is in ("" if it does not say)
    datacenter: str = ""


@attrs.frozen
class Parsed:
    """The instances of an answer and a message per entry that had to be skipped."""

    instances: tuple[Instance, ...]
    problems: tuple[str, ...] = ()


def _type(v: object) -> str:
    return "null" if v is None else type(v).__name__


def _str(v: object) -> str:
    return v if isinstance(v, str) else ""


def _strings(v: object) -> tuple[str, ...]:
    if not isinstance(v, list):
        return ()
    return tuple(x for x in v if isinstance(x, str))


def _meta(v: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(v, dict):
        return ()
    return tuple(sorted((k, x) for k, x in v.items() if isinstance(k, str) and isinstance(x, str)))


def _weights(v: object) -> tuple[int, int]:
    if not isinstance(v, dict):
        return (1, 1)
    out = []
    for key in ("Passing", "Warning"):
        w = v.get(key, 1)
        out.append(w if isinstance(w, int) and not isinstance(w, bool) and w >= 0 else 1)
    return (out[0], out[1])


def _port(v: object) -> int | None:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 < v < 65536:
        return None
    return v


def health_status(checks: object) -> Status:
    """The worst status among an entry's checks; maintenance checks count as
    ``maintenance``, an unknown status as ``critical``, no checks as ``passing``."""
    if not isinstance(checks, list):
        return "passing"
    worst = 0
    for c in checks:
        if not isinstance(c, dict):
            continue
        cid = _str(c.get("CheckID"))
        if cid == "_node_maintenance" or cid.startswith("_service_maintenance:"):
            return "maintenance"
        status = c.get("Status")
        rank = STATUSES.index(status) if status in ("passing", "warning", "critical") else 2
        worst = max(worst, rank)
    return STATUSES[worst]


def _array(data: object) -> list[object]:
    if not isinstance(data, list):
        raise MalformedAnswer(f"expected a JSON array, got {_type(data)}")
    return data


def parse_health(data: object) -> Parsed:
    """The answer of ``GET /v1/health/service/<svc>``."""
    out: list[Instance] = []
    problems: list[str] = []
    for i, entry in enumerate(_array(data)):
        if not isinstance(entry, dict):
            problems.append(f"entry {i}: expected an object, got {_type(entry)}")
            continue
        node, svc = entry.get("Node"), entry.get("Service")
        if not isinstance(node, dict) or not isinstance(svc, dict):
            problems.append(f"entry {i}: Node and Service must be objects")
            continue
        port = _port(svc.get("Port"))
        if port is None:
            problems.append(f"entry {i} ({_str(svc.get('ID'))}): bad port {svc.get('Port')!r}")
            continue
        out.append(
            Instance(
                node=_str(node.get("Node")),
                node_address=_str(node.get("Address")),
                service_id=_str(svc.get("ID")),
                service_address=_str(svc.get("Address")),
                port=port,
                tags=_strings(svc.get("Tags")),
                status=health_status(entry.get("Checks")),
                weights=_weights(svc.get("Weights")),
                service_meta=_meta(svc.get("Meta")),
                node_meta=_meta(node.get("Meta")),
                datacenter=_str(node.get("Datacenter")),
            )
        )
    return Parsed(tuple(out), tuple(problems))


def parse_catalog(data: object) -> Parsed:
    """The answer of ``GET /v1/catalog/service/<svc>`` (no health information)."""
    out: list[Instance] = []
    problems: list[str] = []
    for i, entry in enumerate(_array(data)):
        if not isinstance(entry, dict):
            problems.append(f"entry {i}: expected an object, got {_type(entry)}")
            continue
        port = _port(entry.get("ServicePort"))
        if port is None:
            sid = _str(entry.get("ServiceID"))
            problems.append(f"entry {i} ({sid}): bad port {entry.get('ServicePort')!r}")
            continue
        out.append(
            Instance(
                node=_str(entry.get("Node")),
                node_address=_str(entry.get("Address")),
                service_id=_str(entry.get("ServiceID")),
                service_address=_str(entry.get("ServiceAddress")),
                port=port,
                tags=_strings(entry.get("ServiceTags")),
                weights=_weights(entry.get("ServiceWeights")),
                service_meta=_meta(entry.get("ServiceMeta")),
                node_meta=_meta(entry.get("NodeMeta")),
                datacenter=_str(entry.get("Datacenter")),
            )
        )
    return Parsed(tuple(out), tuple(problems))


@attrs.frozen
class AgentInfo:
    """What ``/v1/agent/self`` tells the namer."""

    datacenter: str
    #: the DNS domain (``consul`` unless the agent says otherwise)
    domain: str = "consul"


def parse_agent(data: object) -> AgentInfo:
    """The answer of ``GET /v1/agent/self``: ``Config.Datacenter`` (required) and the
    DNS domain (``Config.Domain`` on old agents, ``DebugConfig.DNSDomain`` on new
    ones, else ``consul``)."""
    if not isinstance(data, dict):
        raise MalformedAnswer(f"expected a JSON object, got {_type(data)}")
    config = data.get("Config")
    if not isinstance(config, dict):
        raise MalformedAnswer("no Config object")
    dc = config.get("Datacenter")
    if not isinstance(dc, str) or not dc:
        raise MalformedAnswer("no Config.Datacenter")
    debug = data.get("DebugConfig")
    domain = config.get("Domain")
    if not isinstance(domain, str) or not domain.strip("."):
        domain = debug.get("DNSDomain") if isinstance(debug, dict) else None
    if not isinstance(domain, str) or not domain.strip("."):
        domain = "consul"
    return AgentInfo(dc, domain.strip("."))
