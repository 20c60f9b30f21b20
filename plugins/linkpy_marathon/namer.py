"""The Marathon namer: ``/#/io.l5d.marathon/<app id...>[/residual]``.

Three kinds of background work, all started by lookups and closed when no lookup is
followed any more (:class:`~linkpy.watches.Watches`):

- the **app list** (``GET /v2/apps``, every ``ttlMs`` +- ``jitterMs``): which paths
  name an app.  The path is lower-cased and its *shortest* prefix that is an app id
  wins; the rest is the residual (Linkerd's rule).
- one **app watch** per app looked up (``GET /v2/apps/<id>?embed=app.tasks`` at the
  same interval): its address set, in a :class:`~linkpy.activity.Var` of
  :class:`~linkpy.naming.Addr` that changes in place.  With many apps watched
  (:data:`BULK_MIN_WATCHED`, :data:`BULK_RATIO`) the periodic read is one
  ``GET /v2/apps?embed=apps.tasks`` for the list and every watched app instead.
- the **event stream** (``GET /v2/events``, while the app list is followed): each
  task, health or app event wakes the watch it concerns at once, so a change reaches
  the balancers in milliseconds instead of up to ``ttlMs`` (Linkerd only polled:
  issue #1823).  After every (re)connection all watches re-read, since events may
  have been missed; polling goes on as the safety net.

An unknown path, an app that is gone and an app with no usable task are ``Ok(Neg)``
(so that a dtab alternative takes over, as in Linkerd).  Failures never replace a
good answer: before the first success a lookup is ``Failed``; after it, the last good
app list and address sets stay, and each failure is logged once (and its recovery),
counted under ``failures/<kind>``, and retried with jittered exponential backoff.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from typing import Any

import httpx
import trio

from linkpy.activity import Var
from linkpy.errors import NamingError
from linkpy.naming import (
    Addr,
    AddrBound,
    AddrFailed,
    Bound,
    Failed,
    Leaf,
    Name,
    NameTree,
    Neg,
    Ok,
    Path,
    Pending,
    State,
)
from linkpy.plugin import Activity, Namer, NamerContext
from linkpy.watches import Watches

from .api import ApiError, MarathonApi
from .auth import Auth
from .config import MarathonConfig
from .events import BadEvent, classify, subscribed
from .parse import BadPayload, addresses, parse_app
from .sse import SseEvent

log = logging.getLogger("linkpy.namer.marathon")

#: Lookups kept for paths nobody follows (beyond this, the unfollowed ones are dropped).
MAX_LOOKUPS = 10_000
#: The periodic re-read is one ``GET /v2/apps?embed=apps.tasks`` instead of one request
#: per app once at least this many apps are watched...
BULK_MIN_WATCHED = 8
#: ...and at least one app in this many is (a router watching 10 apps of a Marathon
#: of 5,000 does better with 10 small requests than with one of every app's tasks).
BULK_RATIO = 50
#: New watches beyond this many reading their app at once wait for a bulk read instead.
BURST = 16
_APPS = "apps"

AppSet = State[frozenset[Path]]


class MarathonUnavailable(NamingError):
    """Marathon has not answered yet (no good answer to keep)."""


class _Backoff:
    """Equal-jittered exponential backoff: ``low`` doubling up to ``high``."""

    def __init__(self, low: float, high: float) -> None:
        self.low = low
        self.high = max(low, high)
        self._next = low

    def next(self) -> float:
        d = self._next
        self._next = min(self.high, d * 2)
        return d / 2 + random.uniform(0, d / 2)

    def reset(self) -> None:
        self._next = self.low


class _Source:
    """One thing the namer reads: logs its failures once per kind, and its recovery."""

    __slots__ = ("what", "failing", "failures", "fetches", "warnings")

    def __init__(self, what: str) -> None:
        self.what = what
        self.failing: str | None = None
        self.failures = 0
        self.fetches = 0
        self.warnings: frozenset[str] = frozenset()

    def failed(self, e: ApiError, keeping: str) -> None:
        self.failures += 1
        if self.failing != e.kind:
            log.warning("io.l5d.marathon: %s (%s; counted in failures/%s)", e, keeping, e.kind)
        else:
            log.debug("io.l5d.marathon: %s (again)", e)
        self.failing = e.kind

    def ok(self) -> None:
        self.fetches += 1
        if self.failing is not None:
            log.info(
                "io.l5d.marathon: %s works again (after %d failures)", self.what, self.failures
            )
        self.failing = None
        self.failures = 0

    def warn(self, warnings: list[str]) -> int:
        """Log the warnings not seen in the previous answer; return how many are new."""
        now = frozenset(warnings)
        new = now - self.warnings
        for w in sorted(new)[:10]:
            log.warning("io.l5d.marathon: %s: %s", self.what, w)
        self.warnings = now
        return len(new)


class MarathonNamer(Namer):
    """Resolves app ids to the addresses of their tasks."""

    def __init__(self, config: MarathonConfig, ctx: NamerContext, *, auth: Auth) -> None:
        self.config = config
        self.auth = auth
        self.ttl = config.ttlMs / 1000.0
        self.jitter = config.jitterMs / 1000.0
        self.timeout = config.requestTimeoutMs / 1000.0
        self._ssl = config.ssl_context(ctx.config_dir)
        idle = config.watchIdleTtlMs / 1000.0
        self._apps_watches: Watches[str, AppSet] = Watches(
            self._watch_apps, lambda _: Pending, idle=idle, name="io.l5d.marathon app list"
        )
        self._app_watches: Watches[Path, Addr] = Watches(
            self._watch_app, lambda _: Addr.Pending, idle=idle, name="io.l5d.marathon app"
        )
        self._lookups: dict[Path, _Lookup] = {}
        self._wakes: dict[Path, trio.Event] = {}
        self._sources: dict[Path, _Source] = {}
        self._apps_wake = trio.Event()
        self._known_apps: frozenset[Path] = frozenset()
        #: the last app list read also brought the watched apps' tasks
        self._bulk = False
        #: the server embeds tasks in /v2/apps (cleared if it turns out not to)
        self._bulk_supported = True
        #: watches reading their app for the first time
        self._starting = 0
        self._api: MarathonApi | None = None
        self._stream_connected = False
        self._last_event: float | None = None
        self._malformed_logged_at = -1e9

        m = ctx.metrics
        self._m_requests = m.counter("requests")
        self._m_updates = m.counter("updates")
        self._m_warnings = m.counter("warnings")
        self._m_failures = m.scope("failures")
        m.gauge("apps", fn=lambda: float(len(self._known_apps)))
        m.gauge("watches", fn=lambda: float(self._app_watches.open))
        m.gauge("lookups", fn=lambda: float(len(self._lookups)))
        m.gauge("bulk", fn=lambda: 1.0 if self._bulk else 0.0)
        es = m.scope("event_stream")
        self._m_connects = es.counter("connects")
        self._m_disconnects = es.counter("disconnects")
        self._m_events = es.counter("events")
        self._m_ignored = es.counter("ignored")
        self._m_malformed = es.counter("malformed")
        self._m_fallback = es.counter("fallback_parses")
        self._m_stream_failures = es.scope("failures")
        es.gauge("connected", fn=lambda: 1.0 if self._stream_connected else 0.0)

    # -- lookups --------------------------------------------------------------

    def lookup(self, path: Path) -> Activity:
        var = self._lookups.get(path)
        if var is None:
            if len(self._lookups) >= MAX_LOOKUPS:
                self._prune_lookups()
            var = _Lookup(self, path)
            self._lookups[path] = var
        return var

    def _prune_lookups(self) -> None:
        self._lookups = {p: v for p, v in self._lookups.items() if v.observed}

    def apps_var(self) -> Var[AppSet]:
        """The app list (its poller and the event stream run while this is followed)."""
        return self._apps_watches.get(_APPS)

    def addr_var(self, app: Path) -> Var[Addr]:
        """The address set of one app (its watch runs while this is followed)."""
        return self._app_watches.get(app)

    @staticmethod
    def match(path: Path, apps: frozenset[Path]) -> Path | None:
        """The shortest prefix of ``path`` (lower-cased already) that is an app id."""
        for n in range(1, len(path.elems) + 1):
            prefix = path.take(n)
            if prefix in apps:
                return prefix
        return None

    # -- running --------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        cfg = self.config
        async with httpx.AsyncClient(
            verify=self._ssl if self._ssl is not None else False,
            trust_env=False,
            follow_redirects=False,
            timeout=httpx.Timeout(self.timeout),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
            headers={"User-Agent": "linkpy", "Accept": "application/json"},
        ) as client:
            self._api = MarathonApi(
                client,
                base_url=cfg.base_url(),
                host_header=cfg.host,
                uri_prefix=cfg.uriPrefix,
                auth=self.auth,
                timeout=self.timeout,
                sni_hostname=cfg.sni_hostname() if cfg.dst or cfg.tls else None,
                requests=self._m_requests,
            )
            async with trio.open_nursery() as nursery:
                await nursery.start(self._apps_watches.run)
                await nursery.start(self._app_watches.run)
                nursery.start_soon(self._housekeeping)
                task_status.started()

    async def _housekeeping(self) -> None:
        while True:
            await trio.sleep(max(1.0, self.config.watchIdleTtlMs / 1000.0))
            self._prune_lookups()

    def _next_ttl(self) -> float:
        return max(0.001, self.ttl + random.uniform(-self.jitter, self.jitter))

    def _failure(self, e: ApiError) -> None:
        self._m_failures.counter(e.kind).incr()

    @property
    def api(self) -> MarathonApi:
        assert self._api is not None, "the namer is not running"
        return self._api

    # -- the app list ---------------------------------------------------------

    async def _watch_apps(self, _: str, var: Var[AppSet]) -> None:
        async with trio.open_nursery() as nursery:
            if self.config.useEventStream:
                nursery.start_soon(self._follow_events)
            await self._poll_apps(var)

    async def _poll_apps(self, var: Var[AppSet]) -> None:
        source = _Source("GET /v2/apps")
        backoff = _Backoff(0.05, max(self.ttl, 1.0))
        while True:
            self._apps_wake = wake = trio.Event()
            bulk = self._bulk_wanted()
            try:
                if bulk:
                    watched = self._app_watches.vars()
                    ids, apps, warnings = await self.api.apps_with_tasks(watched)
                else:
                    ids, warnings = await self.api.app_ids()
            except ApiError as e:
                self._bulk = False
                if bulk and e.kind == "bad_payload" and "no task list" in str(e):
                    log.warning("io.l5d.marathon: %s; reading apps one by one instead", e)
                    self._bulk_supported = False
                    continue
                self._failure(e)
                good = isinstance(var.sample(), Ok)
                source.failed(e, "keeping the last app list" if good else "no app list yet")
                if not good:
                    var.set(Failed(MarathonUnavailable(f"Marathon's app list: {e}")))
                await trio.sleep(backoff.next())
                continue
            except Exception:  # a bug must not stop discovery
                log.exception("io.l5d.marathon: reading the app list failed")
                self._m_failures.counter("internal").incr()
                await trio.sleep(backoff.next())
                continue
            backoff.reset()
            source.ok()
            self._m_warnings.incr(source.warn(warnings))
            self._known_apps = ids
            var.set(Ok(ids))
            self._bulk = bulk
            if bulk:
                await self._apply(watched, apps)
            with trio.move_on_after(self._next_ttl()):
                await wake.wait()

    def _bulk_wanted(self) -> bool:
        watched = self._app_watches.open
        return (
            self._bulk_supported
            and watched >= BULK_MIN_WATCHED
            and watched * BULK_RATIO >= len(self._known_apps)
        )

    async def _apply(
        self, watched: Mapping[Path, Var[Addr]], apps: Mapping[Path, dict[str, Any]]
    ) -> None:
        """Publish the addresses a bulk read brought (an app missing from it is gone).

        The apps are parsed here, a checkpoint every 50, so that a re-read of
        thousands of apps does not hold the loop while it is parsed."""
        for n, (path, var) in enumerate(watched.items()):
            if n % 50 == 49:
                await trio.lowlevel.checkpoint()
            entry = apps.get(path)
            source = self._sources.get(path)
            if entry is None:
                new: Addr = Addr.Neg
            else:
                try:
                    app, warnings = parse_app({"app": entry})
                except BadPayload as e:
                    if source is not None:
                        err = ApiError("bad_payload", f"GET /v2/apps?embed=apps.tasks: {e}")
                        self._failure(err)
                        source.failed(err, "keeping the last addresses")
                    continue
                found, skipped = addresses(app, use_health_check=self.config.useHealthCheck)
                if source is not None:
                    self._m_warnings.incr(source.warn(warnings + skipped))
                new = AddrBound(found) if found else Addr.Neg
            if new != var.sample():
                self._m_updates.incr()
                var.set(new)

    def _poke_app_set(self) -> None:
        self._apps_wake.set()

    # -- one app --------------------------------------------------------------

    async def _watch_app(self, app: Path, var: Var[Addr]) -> None:
        source = self._sources[app] = _Source(f"GET /v2/apps{app.show()}")
        backoff = _Backoff(0.05, max(self.ttl, 1.0))
        wake = trio.Event()
        first = True
        try:
            while True:
                self._wakes[app] = wake = trio.Event()
                if first and self._starting >= BURST and self._bulk_wanted():
                    # Many watches start at once (a router's first requests): one bulk
                    # read answers them all, rather than a request each.
                    self._poke_app_set()
                    first = False
                    await self._wait(wake, self._next_ttl())
                    continue  # an event, or the bulk reads failed: read the app itself
                try:
                    self._starting += first
                    try:
                        new = await self._read_app(app, source)
                    finally:
                        self._starting -= first
                except ApiError as e:
                    self._failure(e)
                    st = var.sample()
                    good = isinstance(st, AddrBound) or st is Addr.Neg
                    source.failed(e, "keeping the last addresses" if good else "no addresses yet")
                    if not good:
                        var.set(AddrFailed(MarathonUnavailable(f"Marathon app {app.show()}: {e}")))
                    await trio.sleep(backoff.next())
                    continue
                except Exception:  # a bug must not stop the watch
                    log.exception("io.l5d.marathon: reading app %s failed", app.show())
                    self._m_failures.counter("internal").incr()
                    await trio.sleep(backoff.next())
                    continue
                backoff.reset()
                if new != var.sample():
                    self._m_updates.incr()
                    var.set(new)
                # The first interval is drawn from (0, ttl]: watches started together
                # (a router's first requests) then poll spread out, not in bursts.
                delay = self._next_ttl() * (random.uniform(0.1, 1.0) if first else 1.0)
                first = False
                await self._wait(wake, delay)
        finally:
            if self._wakes.get(app) is wake:
                del self._wakes[app]
            if self._sources.get(app) is source:
                del self._sources[app]

    async def _wait(self, wake: trio.Event, delay: float) -> None:
        """Until ``wake`` is set, or ``delay`` seconds pass and the app is due for a
        periodic read: while the app list brings every watched app's tasks (bulk), the
        timer has nothing to do and only events make an app read."""
        while True:
            with trio.move_on_after(delay):
                await wake.wait()
            if wake.is_set() or not self._bulk:
                return
            delay = self._next_ttl()

    async def _read_app(self, app: Path, source: _Source) -> Addr:
        result = await self.api.app(app)
        source.ok()
        if result is None:  # deleted since the app list was read
            self._poke_app_set()
            return Addr.Neg
        info, warnings = result
        found, skipped = addresses(info, use_health_check=self.config.useHealthCheck)
        self._m_warnings.incr(source.warn(warnings + skipped))
        return AddrBound(found) if found else Addr.Neg

    def _poke(self, app: Path) -> None:
        wake = self._wakes.get(app)
        if wake is not None:
            wake.set()

    # -- the event stream -----------------------------------------------------

    async def _follow_events(self) -> None:
        source = _Source("GET /v2/events")
        backoff = _Backoff(0.1, max(self.ttl, 30.0))
        types = subscribed(self.config.useHealthCheck)
        idle = self.config.eventStreamIdleTimeoutMs / 1000.0
        while True:
            started = trio.current_time()

            def opened() -> None:
                self._stream_connected = True
                self._m_connects.incr()
                source.ok()
                log.info("io.l5d.marathon: following Marathon's event stream")
                self._resync()

            try:
                await self.api.stream_events(
                    types, idle=idle, on_connect=opened, on_event=self._on_event
                )
            except ApiError as e:
                self._m_stream_failures.counter(e.kind).incr()
                source.failed(e, "polling every ttlMs meanwhile")
            except Exception:  # a bug must not stop discovery
                log.exception("io.l5d.marathon: the event stream failed")
                self._m_stream_failures.counter("internal").incr()
            finally:
                if self._stream_connected:
                    self._stream_connected = False
                    self._m_disconnects.incr()
            if trio.current_time() - started >= 10.0:
                backoff.reset()
            await trio.sleep(backoff.next())

    def _resync(self) -> None:
        """Re-read everything: events may have been missed while the stream was down."""
        self._poke_app_set()
        for wake in self._wakes.values():
            wake.set()

    def _on_event(self, event: SseEvent) -> None:
        self._m_events.incr()
        self._last_event = trio.current_time()
        try:
            signal = classify(event.type, event.data, use_health_check=self.config.useHealthCheck)
        except BadEvent as e:
            self._m_malformed.incr()
            now = trio.current_time()
            if now - self._malformed_logged_at >= 10.0:
                self._malformed_logged_at = now
                log.warning("io.l5d.marathon: a malformed event was dropped: %s", e)
            return
        if signal.fallback:
            self._m_fallback.incr()
        if signal.kind == "ignored":
            self._m_ignored.incr()
            return
        if signal.kind == "app_set":
            self._poke_app_set()
        if signal.app is not None:
            self._poke(signal.app)
            if signal.app not in self._known_apps:
                self._poke_app_set()

    # -- admin ----------------------------------------------------------------

    def bound_names(self) -> list[str]:
        return sorted(self.prefix.concat(app).show() for app in self._known_apps)

    def state(self) -> Mapping[str, Any]:
        watches = {}
        for app, var in sorted(self._app_watches.vars().items(), key=lambda kv: kv[0].show()):
            source = self._sources.get(app)
            watches[app.show()] = {
                "addr": _addr_state(var.sample()),
                "fetches": source.fetches if source else 0,
                "failing": source.failing if source else None,
            }
        last = self._last_event
        return {
            "marathon": self.config.base_url() + self.config.uriPrefix,
            "auth": self.auth.kind,
            "apps": len(self._known_apps),
            "resync": "bulk" if self._bulk else "per app",
            "lookups": len(self._lookups),
            "watches": watches,
            "eventStream": {
                "enabled": self.config.useEventStream,
                "connected": self._stream_connected,
                "secondsSinceLastEvent": None if last is None else trio.current_time() - last,
            },
        }

    @property
    def open_watches(self) -> int:
        """Pollers running (the app list's counts once; the event stream goes with it)."""
        return self._apps_watches.open + self._app_watches.open


def _addr_state(addr: Addr) -> list[str] | str:
    if isinstance(addr, AddrBound):
        return sorted(a.show() for a in addr.addresses)
    return repr(addr)


def _addr_of(st: object) -> object:
    if isinstance(st, Ok) and isinstance(st.value, Leaf) and isinstance(st.value.value, Bound):
        return st.value.value.addr
    return None


class _Lookup(Var[State[NameTree[Name]]]):
    """The activity of one looked-up path: the app list and its app's Addr, combined.

    It follows its sources only while it is followed itself (so that an unfollowed
    lookup lets the watches close); sampled while unfollowed, it computes afresh.  Its
    value changes when the name's existence does (Pending, Neg, Leaf, Failed); address
    changes go through the bound name's Addr var, not through this one.
    """

    __slots__ = ("_namer", "_path", "_lower", "_apps", "_apps_stop", "_app", "_addr", "_addr_stop")

    def __init__(self, namer: MarathonNamer, path: Path) -> None:
        self._namer = namer
        self._path = path
        self._lower = Path.of(*(e.lower() for e in path.elems))
        self._apps: Var[AppSet] | None = None
        self._apps_stop: Any = None
        self._app: Path | None = None
        self._addr: Var[Addr] | None = None
        self._addr_stop: Any = None
        super().__init__(Pending, on_active=self._active)

    def sample(self) -> State[NameTree[Name]]:
        if self._apps_stop is None:
            return self._compute(follow=False)
        return self._value

    def _active(self, active: bool) -> None:
        if active:
            self._apps = self._namer.apps_var()
            self._apps_stop = self._apps.observe(self._refresh)
            self._refresh()
            return
        if self._apps_stop is not None:
            self._apps_stop()
        self._apps_stop = None
        self._apps = None
        self._follow(None, None)

    def _refresh(self, _: object = None) -> None:
        if self._apps_stop is None:
            return
        st = self._compute(follow=True)
        old = self._value
        if st == old and _addr_of(st) is not _addr_of(old):
            # The same name with a new Addr var: the app's watch was closed while
            # nobody followed this lookup and started again.  Whoever follows it now
            # sampled the new one already, so nobody needs telling.
            self._value = st
            return
        Var.set(self, st)

    def _follow(self, app: Path | None, addr: Var[Addr] | None) -> None:
        if app == self._app and addr is self._addr:
            return
        if self._addr_stop is not None:
            self._addr_stop()
        self._app, self._addr = app, addr
        self._addr_stop = addr.observe(self._refresh) if addr is not None else None

    def _compute(self, *, follow: bool) -> State[NameTree[Name]]:
        namer = self._namer
        if not self._lower.elems:
            return Ok(Neg)
        apps = self._apps if follow and self._apps is not None else namer.apps_var()
        known = apps.sample()
        if not isinstance(known, Ok):
            if follow:
                self._follow(None, None)
            return known
        app = namer.match(self._lower, known.value)
        if app is None:
            if follow:
                self._follow(None, None)
            return Ok(Neg)
        addr_var = namer.addr_var(app)
        if follow:
            self._follow(app, addr_var)
        addr = addr_var.sample()
        if addr is Addr.Pending:
            return Pending
        if isinstance(addr, AddrFailed):
            return Failed(addr.cause)
        if not isinstance(addr, AddrBound):
            return Ok(Neg)
        bound = Bound(namer.prefix.concat(app), self._path.drop(len(app.elems)), addr_var)
        return Ok(Leaf(bound))
