"""The Kubernetes API client of the namers: connection modes, list and watch, reflectors.

:class:`KubeApi` speaks HTTP to the apiserver (in-cluster: HTTPS with the service
account's token, re-read on every request since kubelet rotates it, and its CA) or to a
``kubectl proxy`` (plain HTTP on localhost, no auth; Linkerd's mode).  It uses
``httpx.AsyncClient`` directly (it runs on trio through anyio): the namers need one
list call and one streaming watch call, and owning the loop makes resourceVersion
handling, bookmarks, 410 re-lists, timeouts and tolerant parsing explicit.

:class:`Reflector` keeps one selection of objects (the EndpointSlices of a Service, an
Endpoints or a Service by name) current with list + watch: list, then watch from the
list's resourceVersion (bookmarks allowed), advance the resourceVersion with every
event and bookmark, re-watch from it when the stream ends, and re-list (replacing the
state wholesale, so objects deleted meanwhile disappear) when the server says the
version is too old (410) or sent something unreadable.  Every failure is logged,
counted under ``namer/<prefix>/...`` and retried with jittered exponential backoff;
the last good state stays published meanwhile.
"""

from __future__ import annotations

import logging
import os
import random
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, Final, TypeVar

import attrs
import httpx
import trio

from linkpy.metrics import Scope

from .api import (
    Decoded,
    ListPage,
    Malformed,
    Status,
    WatchEvent,
    loads,
    parse_event,
    parse_list,
    parse_status,
)

log = logging.getLogger("linkpy.namer.k8s")

R = TypeVar("R")

SERVICE_ACCOUNT_DIR: Final = "/var/run/secrets/kubernetes.io/serviceaccount"
TOKEN_FILE: Final = SERVICE_ACCOUNT_DIR + "/token"
CA_FILE: Final = SERVICE_ACCOUNT_DIR + "/ca.crt"
NAMESPACE_FILE: Final = SERVICE_ACCOUNT_DIR + "/namespace"

#: Items per page of a list (``limit``); longer lists are read with ``continue``.
LIST_PAGE: Final = 500
#: Reflectors per HTTP client (connection pool).
WATCHES_PER_CLIENT: Final = 16
#: A watch stream silent for its ``timeoutSeconds`` plus this is taken for hung.
WATCH_SLACK: Final = 30.0


class ApiError(Exception):
    """A failed request, classified for metrics, logs and the retry policy."""

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        status: Status | None = None,
        relist: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        #: metric name under ``errors/``: ``http_<code>``, ``connection``, ``timeout``,
        #: ``decode``, ``watch_event``, ``credentials``
        self.kind = kind
        self.status = status
        #: the local state can no longer be trusted to follow the server: list again
        self.relist = relist
        self.retry_after = retry_after

    @property
    def code(self) -> int | None:
        return self.status.code if self.status is not None else None


class Expired(Exception):
    """The resourceVersion is too old (410): list again."""


# -- connection ----------------------------------------------------------------------


@attrs.frozen
class Connection:
    """Where the API is and how to authenticate."""

    #: ``http://localhost:8001`` or ``https://10.96.0.1:443``
    base_url: str
    #: in-cluster mode: the bearer token file (read on every request)
    token_file: str | None = None
    #: in-cluster mode: the CA bundle the server's certificate must chain to
    ca_file: str | None = None

    @property
    def mode(self) -> str:
        return "inCluster" if self.token_file is not None else "proxy"


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def resolve_connection(
    mode: str,
    host: str | None,
    port: int | None,
    token_file: str | None,
    ca_file: str | None,
    env: Mapping[str, str] | None = None,
) -> Connection:
    """The connection a namer config asks for.

    ``proxy``: ``http://host:port`` (default ``localhost:8001``), no auth.
    ``inCluster``: ``https://host:port`` (default ``$KUBERNETES_SERVICE_HOST:
    $KUBERNETES_SERVICE_PORT``) with the service account's token and CA.
    ``auto``: ``proxy`` when ``host`` or ``port`` is set (a Linkerd config naming its
    kubectl proxy), else ``inCluster`` when running in a pod (``KUBERNETES_SERVICE_HOST``
    set and the token file present), else ``proxy`` on ``localhost:8001``.
    Raises ValueError for an impossible combination.
    """
    env = os.environ if env is None else env
    token_file = token_file or TOKEN_FILE
    ca_file = ca_file or CA_FILE
    if mode == "auto":
        in_pod = bool(env.get("KUBERNETES_SERVICE_HOST")) and os.path.exists(token_file)
        mode = "inCluster" if host is None and port is None and in_pod else "proxy"
    if mode == "proxy":
        return Connection(f"http://{url_host(host or 'localhost')}:{port or 8001}")
    if mode != "inCluster":
        raise ValueError(f"unknown mode {mode!r} (known: auto, proxy, inCluster)")
    h = host or env.get("KUBERNETES_SERVICE_HOST")
    p = port or env.get("KUBERNETES_SERVICE_PORT") or "443"
    if not h:
        raise ValueError("mode inCluster needs host, or KUBERNETES_SERVICE_HOST in the environment")
    return Connection(f"https://{url_host(h)}:{p}", token_file=token_file, ca_file=ca_file)


# -- backoff -------------------------------------------------------------------------


class Backoff:
    """Jittered exponential backoff: ``min * 2**n`` capped at ``max``, drawn from
    ``[d/2, d]`` (equal jitter) so that many watches do not retry in step."""

    def __init__(self, minimum: float, maximum: float, rng: random.Random | None = None) -> None:
        self.minimum = minimum
        self.maximum = maximum
        self.failures = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        d = min(self.maximum, self.minimum * (2 ** min(self.failures, 60)))
        self.failures += 1
        return self._rng.uniform(d / 2, d)

    def reset(self) -> None:
        self.failures = 0


# -- HTTP ----------------------------------------------------------------------------


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    return float(value) if value.isdigit() else None


def _http_error(response: httpx.Response, body: bytes, what: str) -> ApiError:
    code = response.status_code
    try:
        status = parse_status(loads(body, "status"))
    except Malformed:
        status = Status(code, response.reason_phrase, body[:200].decode("utf-8", "replace"))
    if status.code != code:
        status = attrs.evolve(status, code=code)
    message = f"{what}: HTTP {status.show()}"
    if code == 401:
        message += " (the service account token was refused)"
    elif code == 403:
        message += " (RBAC: the namer needs get, list and watch on this resource)"
    return ApiError(f"http_{code}", message, status=status, retry_after=_retry_after(response))


@attrs.define(eq=False)
class _Shared:
    client: httpx.AsyncClient
    users: int


class KubeApi:
    """HTTP calls to the Kubernetes API (list and watch), with their timeouts."""

    def __init__(
        self,
        conn: Connection,
        metrics: Scope,
        *,
        request_timeout: float = 10.0,
        watch_timeout: int = 300,
    ) -> None:
        self.conn = conn
        self.metrics = metrics
        self.request_timeout = request_timeout
        self.watch_timeout = watch_timeout
        self._ssl: ssl.SSLContext | None = None
        self._clients: list[_Shared] = []
        self._lock = trio.Lock()
        self._rng = random.Random()

    async def _ssl_context(self) -> ssl.SSLContext:
        """The TLS context (in-cluster: trusting the CA file), built once."""
        async with self._lock:
            if self._ssl is None:
                ca_file = self.conn.ca_file
                if ca_file is None:
                    # plain HTTP: a context that is never used (no CA bundle to load)
                    self._ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                else:
                    try:
                        self._ssl = await trio.to_thread.run_sync(
                            partial(ssl.create_default_context, cafile=ca_file)
                        )
                    except (OSError, ssl.SSLError) as e:
                        raise ApiError(
                            "credentials", f"cannot load the CA file {ca_file}: {e}"
                        ) from None
            return self._ssl

    async def acquire(self) -> httpx.AsyncClient:
        """A client for one reflector (its list and watch share one connection); give
        it back with :meth:`release`.

        Each watch holds a connection for minutes, and httpcore's pool does work
        linear in its connections for every request: so the reflectors share clients
        in groups of :data:`WATCHES_PER_CLIENT` rather than all using one.
        """
        for shared in self._clients:
            if shared.users < WATCHES_PER_CLIENT:
                shared.users += 1
                return shared.client
        client = httpx.AsyncClient(
            base_url=self.conn.base_url,
            verify=await self._ssl_context(),
            trust_env=False,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=WATCHES_PER_CLIENT),
            timeout=httpx.Timeout(self.request_timeout),
            headers={"Accept": "application/json", "User-Agent": "linkpy"},
        )
        self._clients.append(_Shared(client, 1))
        return client

    async def release(self, client: httpx.AsyncClient) -> None:
        for shared in self._clients:
            if shared.client is client:
                shared.users -= 1
                if shared.users == 0:
                    self._clients.remove(shared)
                    with trio.move_on_after(1.0) as scope:
                        scope.shield = True
                        await client.aclose()
                return

    @property
    def clients(self) -> int:
        """How many HTTP clients (connection pools) are open."""
        return len(self._clients)

    async def _headers(self) -> dict[str, str]:
        if self.conn.token_file is None:
            return {}
        try:
            token = (await trio.Path(self.conn.token_file).read_text()).strip()
        except OSError as e:
            raise ApiError(
                "credentials", f"cannot read the token file {self.conn.token_file}: {e.strerror}"
            ) from None
        return {"Authorization": f"Bearer {token}"}

    async def list(
        self, client: httpx.AsyncClient, path: str, params: Mapping[str, str]
    ) -> ListPage:
        """Every object of a selection (following ``continue``), at one resourceVersion."""
        self.metrics.counter("requests", "list").incr()
        items: list[Mapping[str, Any]] = []
        nulls: list[str] = []
        cont: str | None = None
        while True:
            q = dict(params, limit=str(LIST_PAGE))
            if cont:
                q["continue"] = cont
            body = await self._get(client, path, q)
            page = parse_or_raise(partial(parse_list, body), f"list {path}")
            items.extend(page.items)
            nulls.extend(page.nulls)
            cont = page.continue_token
            if not cont:
                return attrs.evolve(page, items=tuple(items), nulls=tuple(nulls))

    async def _get(self, client: httpx.AsyncClient, path: str, params: Mapping[str, str]) -> bytes:
        headers = await self._headers()
        what = f"list {path}"
        try:
            with trio.fail_after(self.request_timeout):
                response = await client.get(path, params=params, headers=headers)
        except trio.TooSlowError:
            raise ApiError(
                "timeout", f"{what}: no answer within {self.request_timeout:g}s"
            ) from None
        except httpx.TimeoutException as e:
            raise ApiError("timeout", f"{what}: {type(e).__name__}") from None
        except httpx.TransportError as e:
            raise ApiError("connection", f"{what}: {type(e).__name__}: {e}") from None
        if response.status_code == 410:
            raise Expired(f"{what}: HTTP 410 (continue token or resourceVersion too old)")
        if response.status_code != 200:
            raise _http_error(response, response.content, what)
        return response.content

    @asynccontextmanager
    async def watch(
        self,
        client: httpx.AsyncClient,
        path: str,
        params: Mapping[str, str],
        resource_version: str,
    ) -> AsyncIterator[AsyncIterator[WatchEvent]]:
        """A watch stream of the selection from ``resource_version`` (bookmarks allowed)."""
        self.metrics.counter("requests", "watch").incr()
        headers = await self._headers()
        timeout = int(self.watch_timeout * self._rng.uniform(1.0, 1.25))
        q = dict(
            params,
            watch="1",
            resourceVersion=resource_version,
            allowWatchBookmarks="true",
            timeoutSeconds=str(timeout),
        )
        what = f"watch {path}"
        request = client.build_request(
            "GET",
            path,
            params=q,
            headers=headers,
            timeout=httpx.Timeout(self.request_timeout, read=timeout + WATCH_SLACK),
        )
        try:
            with trio.fail_after(self.request_timeout):
                response = await client.send(request, stream=True)
        except trio.TooSlowError:
            raise ApiError(
                "timeout", f"{what}: no answer within {self.request_timeout:g}s"
            ) from None
        except httpx.TimeoutException as e:
            raise ApiError("timeout", f"{what}: {type(e).__name__}") from None
        except httpx.TransportError as e:
            raise ApiError("connection", f"{what}: {type(e).__name__}: {e}") from None
        try:
            if response.status_code == 410:
                raise Expired(f"{what}: HTTP 410 (resourceVersion {resource_version} too old)")
            if response.status_code != 200:
                try:
                    with trio.fail_after(self.request_timeout):
                        body = await response.aread()
                except (trio.TooSlowError, httpx.HTTPError):
                    body = b""
                raise _http_error(response, body, what)
            yield self._events(response, what)
        finally:
            await response.aclose()

    async def _events(self, response: httpx.Response, what: str) -> AsyncIterator[WatchEvent]:
        lines = response.aiter_lines()
        while True:
            try:
                line = await anext(lines)
            except StopAsyncIteration:
                return
            except httpx.ReadTimeout:
                raise ApiError("timeout", f"{what}: the stream was silent too long") from None
            except httpx.TransportError as e:
                raise ApiError(
                    "connection", f"{what}: stream cut: {type(e).__name__}: {e}"
                ) from None
            except httpx.StreamError as e:
                raise ApiError("connection", f"{what}: {type(e).__name__}: {e}") from None
            if not line.strip():
                continue
            yield parse_or_raise(partial(parse_event, line), what)


def parse_or_raise(fn: Callable[[], R], what: str) -> R:
    try:
        return fn()
    except Malformed as e:
        raise ApiError("decode", f"{what}: malformed: {e}", relist=True) from None


# -- reflector -----------------------------------------------------------------------


@attrs.frozen
class Selection:
    """What a reflector lists and watches, and how it reads each object."""

    #: the collection path, e.g. ``/apis/discovery.k8s.io/v1/namespaces/prod/endpointslices``
    path: str
    #: ``labelSelector`` / ``fieldSelector``
    params: Mapping[str, str]
    parse: Callable[[object], Decoded]
    #: ``endpointslices``, ``endpoints``, ``services`` (for logs and the namer state)
    resource: str


@attrs.define
class WatchStatus:
    """What ``/namer_state`` shows of one reflector."""

    resource: str = ""
    resource_version: str | None = None
    objects: int = 0
    lists: int = 0
    watches: int = 0
    events: int = 0
    failures: int = 0
    last_error: str | None = None
    ok: bool = False

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


class Reflector:
    """List + watch one selection, publishing ``name -> Decoded`` on every change.

    ``publish(objects)`` is called with the complete current state after the first
    list and after every change; ``failed(error, ever_ok)`` after every failure.
    ``select()`` is asked at every (re)list, so a namer can switch API (EndpointSlices
    to Endpoints) between lists.  Runs until cancelled; never raises otherwise.
    """

    def __init__(
        self,
        api: KubeApi,
        describe: str,
        select: Callable[[], Selection],
        publish: Callable[[Mapping[str, Decoded]], None],
        failed: Callable[[ApiError, Selection], None],
        backoff: Backoff,
        metrics: Scope,
        status: WatchStatus | None = None,
    ) -> None:
        self.api = api
        self.describe = describe
        self.select = select
        self.publish = publish
        self.failed = failed
        self.backoff = backoff
        self.metrics = metrics
        self.status = status or WatchStatus()
        self._quiet: str | None = None
        self._nulls_noted = False
        self._http: httpx.AsyncClient | None = None

    async def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = await self.api.acquire()
        return self._http

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            if self._http is not None:
                await self.api.release(self._http)

    async def _run(self) -> None:
        objects: dict[str, Decoded] = {}
        sel = self.select()
        need_list = True
        expired_in_a_row = 0
        while True:
            try:
                current = self.select()
                if current != sel:  # the namer switched API: start over
                    sel, need_list = current, True
                if need_list:
                    self.status.resource = sel.resource
                    objects, rv = await self._list(sel)
                    need_list = False
                    self.status.lists += 1
                    self._set_ok(rv, objects)
                    self.publish(objects)
                started = trio.current_time()
                since = self.status.resource_version
                assert since is not None
                count = await self._watch(sel, since, objects)
                expired_in_a_row = 0
                if count == 0 and trio.current_time() - started < 1.0:
                    # a server ending watches at once: do not spin
                    await trio.sleep(self.backoff.next())
            except Expired as e:
                self.metrics.counter("watch", "expired").incr()
                log.info("%s: %s; listing again", self.describe, e)
                need_list = True
                expired_in_a_row += 1
                if expired_in_a_row > 1:
                    await trio.sleep(self.backoff.next())
            except ApiError as e:
                need_list = need_list or e.relist
                await self._failure(e, sel)

    async def _list(self, sel: Selection) -> tuple[dict[str, Decoded], str]:
        page = await self.api.list(await self._client(), sel.path, sel.params)
        objects: dict[str, Decoded] = {}
        nulls = list(page.nulls)
        for item in page.items:
            d = parse_or_raise(partial(sel.parse, item), f"list {sel.path}")
            objects[d.name] = d
            nulls.extend(d.nulls)
        self._note_nulls(nulls)
        return objects, page.resource_version

    async def _watch(self, sel: Selection, rv: str, objects: dict[str, Decoded]) -> int:
        """Follow one watch stream; returns how many events it carried."""
        count = 0
        self.status.watches += 1
        async with self.api.watch(await self._client(), sel.path, sel.params, rv) as events:
            async for ev in events:
                count += 1
                new_rv = ev.resource_version
                if ev.type == "BOOKMARK":
                    self.metrics.counter("watch", "bookmarks").incr()
                    if new_rv:
                        self.status.resource_version = new_rv
                    continue
                if ev.type == "ERROR":
                    status = parse_status(ev.object)
                    if status.code == 410:
                        raise Expired(f"watch: {status.show()}")
                    self.metrics.counter("errors", "watch_event").incr()
                    raise ApiError("watch_event", f"watch {sel.path}: ERROR event {status.show()}")
                d = parse_or_raise(partial(sel.parse, ev.object), f"watch {sel.path}: {ev.type}")
                self._note_nulls(d.nulls)
                self.metrics.counter("watch", "events").incr()
                self.status.events += 1
                if ev.type == "DELETED":
                    objects.pop(d.name, None)
                else:
                    objects[d.name] = d
                if new_rv:
                    self.status.resource_version = new_rv
                self.status.objects = len(objects)
                self.publish(objects)
                self._recovered()
        return count

    def _set_ok(self, rv: str, objects: Mapping[str, Decoded]) -> None:
        self.status.resource_version = rv
        self.status.objects = len(objects)
        self.status.ok = True
        self._recovered()

    def _recovered(self) -> None:
        if self.backoff.failures:
            log.info("%s: recovered after %d failure(s)", self.describe, self.status.failures or 1)
        self.backoff.reset()
        self._quiet = None

    def _note_nulls(self, nulls: list[str] | tuple[str, ...]) -> None:
        if not nulls:
            return
        self.metrics.counter("decode", "null_lists").incr(len(nulls))
        level = logging.DEBUG if self._nulls_noted else logging.INFO
        self._nulls_noted = True
        log.log(level, "%s: null read as an empty list at %s", self.describe, ", ".join(nulls))

    async def _failure(self, e: ApiError, sel: Selection) -> None:
        if e.kind != "watch_event":  # counted where it is seen
            self.metrics.counter("errors", e.kind).incr()
        self.status.failures += 1
        self.status.last_error = str(e)
        delay = self.backoff.next()
        if e.retry_after is not None:
            delay = max(delay, e.retry_after)
        keep = "keeping the last good answer" if self.status.ok else "no answer yet"
        # The first failure of a run of them is a warning, and so is each change of
        # kind; repeats of the same kind are debug lines.
        level = logging.DEBUG if self._quiet == e.kind else logging.WARNING
        self._quiet = e.kind
        log.log(level, "%s: %s; %s; retrying in %.2fs", self.describe, e, keep, delay)
        self.failed(e, sel)
        await trio.sleep(delay)
