"""The Marathon REST client of the namer: httpx on trio, nothing blocks the loop.

:class:`MarathonApi` sends the three requests the namer needs -- ``GET /v2/apps``,
``GET /v2/apps/<id>?embed=app.tasks`` and the ``GET /v2/events`` stream -- plus the
DC/OS login, with the authentication of :mod:`linkpy_marathon.auth`.  Every failure
becomes an :class:`ApiError` whose ``kind`` names it for the metrics
(``http_500``, ``http_401``, ``timeout``, ``connection``, ``truncated``,
``malformed_json``, ``bad_payload``, ``login``, ``idle``, ``ended``).

- Every request has a deadline (``requestTimeoutMs``), headers and body included, so a
  server that hangs costs one timeout, not a stuck watch.
- Bodies are read up to :data:`MAX_BODY` bytes.
- Redirects (a standby Marathon points at the leader) are followed by hand, at most
  three, sending the credentials again (httpx drops them on a change of host).
- ``Host`` is forced to the configured ``host`` on requests to Marathon, as Linkerd
  does (so ``dst`` can name an address while the Host header names the service).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator, Callable, Container, Mapping, Sequence
from typing import Any, cast

import httpx
import trio

from linkpy.metrics import Counter
from linkpy.naming import Path

from .auth import Auth, LoginError
from .parse import App, BadPayload, parse_app, parse_app_ids, parse_apps
from .sse import SseDecoder, SseError, SseEvent

#: The largest response body read (a /v2/apps of thousands of apps is a few MB).
MAX_BODY = 64 * 1024 * 1024
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_HOPS = 3

Params = Sequence[tuple[str, str]]


class ApiError(Exception):
    """A request that gave no usable answer."""

    def __init__(self, kind: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status


def _status_error(what: str, status: int, body: bytes) -> ApiError:
    detail = ""
    try:
        doc = json.loads(body)
        if isinstance(doc, dict):
            msg = doc.get("message") or doc.get("description") or doc.get("title")
            if isinstance(msg, str):
                detail = f": {msg[:200]}"
    except ValueError:
        text = body[:200].decode("utf-8", "replace").strip()
        detail = f": {text}" if text else ""
    return ApiError(f"http_{status}", f"{what}: HTTP {status}{detail}", status)


class MarathonApi:
    """Requests to one Marathon (``base_url`` + ``uri_prefix``)."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        base_url: str,
        host_header: str | None,
        uri_prefix: str = "",
        auth: Auth | None = None,
        timeout: float = 10.0,
        sni_hostname: str | None = None,
        requests: Counter | None = None,
        concurrency: int = 16,
    ) -> None:
        self.client = client
        self.base_url = base_url.rstrip("/")
        self.host_header = host_header
        self.uri_prefix = uri_prefix.rstrip("/")
        self.auth = auth or Auth()
        self.timeout = timeout
        self._extensions = {"sni_hostname": sni_hostname} if sni_hostname else {}
        self._requests = requests
        #: REST requests in flight at once (the event stream is not counted): a burst of
        #: watches starting together queues here, not in Marathon or the pool
        self._limiter = trio.CapacityLimiter(concurrency)

    def url(self, path: str) -> str:
        return f"{self.base_url}{self.uri_prefix}{path}"

    # -- the calls ------------------------------------------------------------

    async def app_ids(self) -> tuple[frozenset[Path], list[str]]:
        """``GET /v2/apps``: every app id."""
        doc = await self.get_json("/v2/apps")
        try:
            return parse_app_ids(doc)
        except BadPayload as e:
            raise ApiError("bad_payload", f"GET /v2/apps: {e}") from None

    async def apps_with_tasks(
        self, wanted: Container[Path]
    ) -> tuple[frozenset[Path], dict[Path, dict[str, Any]], list[str]]:
        """``GET /v2/apps?embed=apps.tasks``: every app id, and the wanted apps' JSON."""
        doc = await self.get_json("/v2/apps", [("embed", "apps.tasks")])
        try:
            return parse_apps(doc, wanted)
        except BadPayload as e:
            raise ApiError("bad_payload", f"GET /v2/apps?embed=apps.tasks: {e}") from None

    async def app(self, app: Path) -> tuple[App, list[str]] | None:
        """``GET /v2/apps/<id>?embed=app.tasks``: the app and its tasks (None: 404)."""
        path = "/v2/apps" + app_url_path(app)
        try:
            doc = await self.get_json(path, [("embed", "app.tasks")])
        except ApiError as e:
            if e.status == 404:
                return None
            raise
        try:
            return parse_app(doc)
        except BadPayload as e:
            raise ApiError("bad_payload", f"GET {path}: {e}") from None

    async def get_json(self, path: str, params: Params = ()) -> Any:
        status, body = await self._authed("GET", self.url(path), params, None, {})
        if status != 200:
            raise _status_error(f"GET {path}", status, body)
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError) as e:
            raise ApiError("malformed_json", f"GET {path}: the body is not JSON ({e})") from None

    async def login(self, url: str, payload: Mapping[str, Any]) -> Any:
        """POST the DC/OS login (an absolute URL, or a path on the Marathon host)."""
        target = url if url.startswith(("http://", "https://")) else self.base_url + url
        try:
            status, body = await self._exchange("POST", target, (), dict(payload), {})
        except ApiError as e:
            raise ApiError("login", f"login at {url}: {e}") from None
        if status != 200:
            raise ApiError("login", str(_status_error(f"login at {url}", status, body)), status)
        try:
            return json.loads(body)
        except ValueError:
            raise ApiError("login", f"login at {url}: the body is not JSON") from None

    async def stream_events(
        self,
        types: Sequence[str],
        *,
        idle: float,
        on_connect: Callable[[], None],
        on_event: Callable[[SseEvent], None],
    ) -> None:
        """Follow ``GET /v2/events`` until it breaks; always ends with an ApiError.

        ``on_connect`` runs once the server accepted the stream (200), ``on_event`` for
        each event.  ``idle``: the most seconds without a byte (Marathon sends a
        keepalive every 10 s) before the stream counts as dead.
        """
        params = [("event_type", t) for t in types]
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        url = self.url("/v2/events")
        for attempt in (0, 1):
            auth = await self._auth_headers()
            async with contextlib.AsyncExitStack() as stack:
                response = await self._open(
                    stack,
                    "GET",
                    url,
                    params,
                    None,
                    {**headers, **auth},
                    "GET /v2/events",
                    streaming=True,
                )
                if response.status_code == 401 and attempt == 0 and await self._rejected(auth):
                    continue
                if response.status_code != 200:
                    body = await _read(response, 64 * 1024, "GET /v2/events")
                    raise _status_error("GET /v2/events", response.status_code, body)
                on_connect()
                await self._follow(stack, response, idle, on_event)
        raise ApiError("http_401", "GET /v2/events: HTTP 401 after a new login", 401)

    async def _follow(
        self,
        stack: contextlib.AsyncExitStack,
        response: httpx.Response,
        idle: float,
        on_event: Callable[[SseEvent], None],
    ) -> None:
        decoder = SseDecoder()
        chunks = cast("AsyncGenerator[bytes, None]", response.aiter_bytes())
        stack.push_async_callback(chunks.aclose)
        while True:
            chunk = b""
            with trio.move_on_after(idle):
                try:
                    chunk = await chunks.__anext__()
                except StopAsyncIteration:
                    if decoder.partial:
                        raise ApiError(
                            "truncated", "the event stream ended in the middle of an event"
                        ) from None
                    raise ApiError("ended", "the server closed the event stream") from None
                except httpx.TransportError as e:
                    raise ApiError("truncated", f"the event stream broke: {_describe(e)}") from None
            if not chunk:
                raise ApiError("idle", f"nothing on the event stream for {idle:g}s")
            try:
                events = decoder.feed(chunk)
            except SseError as e:
                raise ApiError("bad_payload", f"the event stream: {e}") from None
            for event in events:
                on_event(event)

    # -- plumbing -------------------------------------------------------------

    async def _auth_headers(self) -> dict[str, str]:
        try:
            return await self.auth.headers(self.login)
        except LoginError as e:
            raise ApiError("login", str(e)) from None

    async def _rejected(self, used: Mapping[str, str]) -> bool:
        try:
            return await self.auth.rejected(used, self.login)
        except LoginError as e:
            raise ApiError("login", str(e)) from None

    async def _authed(
        self,
        method: str,
        url: str,
        params: Params,
        body: object,
        headers: Mapping[str, str],
    ) -> tuple[int, bytes]:
        for attempt in (0, 1):
            auth = await self._auth_headers()
            status, data = await self._exchange(method, url, params, body, {**headers, **auth})
            if status == 401 and attempt == 0 and await self._rejected(auth):
                continue
            return status, data
        raise AssertionError("unreachable")  # pragma: no cover

    async def _exchange(
        self,
        method: str,
        url: str,
        params: Params,
        body: object,
        headers: Mapping[str, str],
    ) -> tuple[int, bytes]:
        what = f"{method} {_short(url)}"
        async with self._limiter, contextlib.AsyncExitStack() as stack:
            with _deadline(self.timeout, what):
                response = await self._open(stack, method, url, params, body, headers, what)
                data = await _read(response, MAX_BODY, what)
        return response.status_code, data

    async def _open(
        self,
        stack: contextlib.AsyncExitStack,
        method: str,
        url: str,
        params: Params,
        body: object,
        headers: Mapping[str, str],
        what: str,
        *,
        streaming: bool = False,
    ) -> httpx.Response:
        """Send a request and return its response (body unread), following redirects.

        ``streaming``: no read timeout (the caller watches the stream's idleness).
        """
        for _ in range(_MAX_HOPS + 1):
            h = dict(headers)
            if self.host_header and url.startswith(self.base_url + "/"):
                h["Host"] = self.host_header
            request = self.client.build_request(
                method,
                url,
                params=list(params) or None,
                json=body,
                headers=h,
                extensions=self._extensions if url.startswith(self.base_url + "/") else {},
                timeout=httpx.Timeout(self.timeout, read=None) if streaming else self.timeout,
            )
            if self._requests is not None:
                self._requests.incr()
            try:
                with _deadline(self.timeout, what):
                    response = await self.client.send(request, stream=True)
            except httpx.TimeoutException as e:
                raise ApiError("timeout", f"{what}: {_describe(e)}") from None
            except httpx.TransportError as e:
                raise ApiError("connection", f"{what}: {_describe(e)}") from None
            stack.push_async_callback(response.aclose)
            location = response.headers.get("location")
            if response.status_code not in _REDIRECTS or not location:
                return response
            url = str(response.url.join(location))
            params = ()
            if response.status_code == 303:
                method, body = "GET", None
        raise ApiError("redirects", f"{what}: more than {_MAX_HOPS} redirects")


def app_url_path(app: Path) -> str:
    """``Path(a, b)`` -> ``/a/b`` with each segment percent-encoded."""
    from urllib.parse import quote

    return "".join("/" + quote(e.decode("utf-8", "replace"), safe="") for e in app.elems)


@contextlib.contextmanager
def _deadline(seconds: float, what: str) -> Any:
    try:
        with trio.fail_after(seconds):
            yield
    except trio.TooSlowError:
        raise ApiError("timeout", f"{what}: no answer in {seconds:g}s") from None


async def _read(response: httpx.Response, limit: int, what: str) -> bytes:
    data = bytearray()
    try:
        async for chunk in response.aiter_bytes():
            data += chunk
            if len(data) > limit:
                raise ApiError("too_large", f"{what}: the body is over {limit} bytes")
    except httpx.TimeoutException as e:
        raise ApiError("timeout", f"{what}: {_describe(e)}") from None
    except httpx.TransportError as e:
        raise ApiError("truncated", f"{what}: the body was cut short ({_describe(e)})") from None
    return bytes(data)


def _describe(e: BaseException) -> str:
    """``Type: message``, taking the message of the cause when httpx gives none (as for
    a TLS failure: ``ConnectError`` caused by ``SSLCertVerificationError``)."""
    text = str(e)
    cause = e.__cause__ or e.__context__
    if not text and cause is not None and cause is not e:
        return f"{type(e).__name__} ({_describe(cause)})"
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _short(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")
