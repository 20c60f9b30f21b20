"""FakeMarathon: Marathon's REST API (v2) and its event stream.

Served (under an optional ``prefix``, e.g. ``/marathon`` behind DC/OS's admin router):
``GET /v2/apps`` (``embed``, ``id``, ``label``), ``/v2/apps/<id>`` (tasks always
embedded), ``/v2/apps/<group>/*``, ``/v2/apps/<id>/tasks``, ``/v2/tasks``,
``/v2/events`` (Server-Sent Events), ``/v2/info``, ``/v2/leader`` and ``/ping``; in
DC/OS mode also ``POST /acs/api/v1/auth/login`` (at the root).

The event stream is Marathon's: ``Accept: text/event-stream`` required (else 405),
``Connection: close`` (not chunked), ``event: <type>`` / ``data: <json>`` framed with
CRLF, a bare CRLF keepalive every :attr:`FakeMarathon.keepalive_interval` seconds,
``event_stream_attached`` first, ``?event_type=`` filters.

Scripting (synchronous; changes emit the events Marathon would)::

    marathon = FakeMarathon()
    await nursery.start(marathon.serve)
    marathon.add_app("/web", health_checks=1)
    t = marathon.add_task("/web", "srv1.example.com", [31000], alive=True)
    marathon.update_task(t, state="TASK_KILLED")
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import random
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import attrs
import trio

from ._http import (
    FakeServer,
    Headers,
    Request,
    Response,
    Stream,
    StreamResponse,
    json_response,
    text_response,
)

Obj = dict[str, Any]

#: Mesos task state -> Marathon instance condition (``instance_changed_event``).
CONDITIONS = {
    "TASK_STAGING": "Staging",
    "TASK_STARTING": "Starting",
    "TASK_RUNNING": "Running",
    "TASK_KILLING": "Killing",
    "TASK_FINISHED": "Finished",
    "TASK_FAILED": "Failed",
    "TASK_KILLED": "Killed",
    "TASK_LOST": "Unreachable",
    "TASK_ERROR": "Error",
    "TASK_UNREACHABLE": "Unreachable",
    "TASK_GONE": "Gone",
    "TASK_DROPPED": "Dropped",
    "TASK_UNKNOWN": "Unknown",
}

#: ``WWW-Authenticate`` of Marathon's HTTP basic auth (``--http_credentials``).
BASIC_REALM = 'basic realm="Mesosphere"'


def _timestamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def normalize_id(app_id: str) -> str:
    """``a/b/app`` or ``/a/b/app/`` -> ``/a/b/app``."""
    return "/" + app_id.strip("/")


@attrs.define
class _Task:
    task_id: str
    instance_id: str
    app_id: str
    host: str
    ports: list[int]
    ip_addresses: list[str]
    state: str
    alive: list[bool | None] | None  # one per health check; None: no results yet
    staged_at: str
    version: str
    slave_id: str = "agent0"


class _Subscriber:
    """One open event stream."""

    def __init__(self, types: Iterable[str]) -> None:
        self.types = frozenset(types)
        self.pending: list[bytes] = []
        self.dropped = False
        self._wake = trio.Event()

    def offer(self, event_type: str, frame: bytes) -> None:
        if not self.types or event_type in self.types:
            self.push(frame)

    def push(self, frame: bytes) -> None:
        self.pending.append(frame)
        self._wake.set()

    def drop(self) -> None:
        self.dropped = True
        self._wake.set()

    def take(self) -> list[bytes]:
        out, self.pending = self.pending, []
        self._wake = trio.Event()
        return out

    async def wait(self) -> None:
        if not self.pending and not self.dropped:
            await self._wake.wait()


class FakeMarathon(FakeServer):
    """A Marathon leader on a loopback port.

    Auth: ``http_credentials=("user", "pass")`` turns on HTTP basic auth on every
    path; ``dcos_accounts={"uid": "password"}`` turns on DC/OS token auth (log in at
    ``POST /acs/api/v1/auth/login`` with ``{"uid", "password"}`` or ``{"uid",
    "token"}`` -- the service-login JWT's signature is not checked -- then send
    ``Authorization: token=<token>``).
    """

    kind = "marathon"

    def __init__(
        self,
        *,
        prefix: str = "",
        http_credentials: tuple[str, str] | None = None,
        dcos_accounts: Mapping[str, str] | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.prefix = prefix.rstrip("/")
        self.http_credentials = http_credentials
        self.dcos_accounts = dict(dcos_accounts) if dcos_accounts is not None else None
        #: Seconds between keepalive CRLFs on event streams (Jetty's default: 10).
        self.keepalive_interval = 10.0
        self._random = random.Random(seed)
        self._apps: dict[str, Obj] = {}
        self._tasks: dict[str, list[_Task]] = {}
        self._subscribers: set[_Subscriber] = set()
        self._dcos_tokens: set[str] = set()
        self._token_serial = 0
        p = self.prefix
        r = self.router
        r.add("GET", p + "/ping", self._ping)
        r.add("GET", p + "/v2/info", self._info)
        r.add("GET", p + "/v2/leader", self._leader)
        r.add("GET", p + "/v2/events", self._events)
        r.add("GET", p + "/v2/tasks", self._all_tasks)
        r.add("GET", p + "/v2/apps", self._list_apps)
        r.add("GET", p + "/v2/apps/{id:path}/tasks", self._app_tasks)
        r.add("GET", p + "/v2/apps/{id:path}", self._show_app)
        r.add("POST", "/acs/api/v1/auth/login", self._login)

    # -- scripting: apps ------------------------------------------------------

    def add_app(
        self,
        app_id: str,
        *,
        instances: int | None = None,
        service_ports: Sequence[int] | None = None,
        ip_address_ports: Sequence[int] | None = None,
        container_ports: Sequence[int] | None = None,
        health_checks: int | Sequence[Mapping[str, Any]] = 0,
        labels: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Obj:
        """Create or replace an app definition (tasks are kept); emits ``api_post_event``.

        ``service_ports`` become ``portDefinitions`` (host networking; default one
        port); ``ip_address_ports`` the legacy IP-per-task
        ``ipAddress.discovery.ports``; ``container_ports`` Docker bridge
        ``container.portMappings``.  ``health_checks`` is a count of default HTTP
        checks or a list of check definitions.  ``extra`` is merged in verbatim.
        """
        aid = normalize_id(app_id)
        if service_ports is None:
            service_ports = [10000 + len(self._apps)]
        app: Obj = {
            "id": aid,
            "cmd": "sleep 1000",
            "instances": instances,
            "cpus": 0.1,
            "mem": 64.0,
            "disk": 0.0,
            "labels": dict(labels or {}),
            "portDefinitions": [
                {"port": port, "protocol": "tcp", "name": f"port{i}", "labels": {}}
                for i, port in enumerate(service_ports)
            ],
            "requirePorts": False,
            "networks": [{"mode": "host"}],
            "healthChecks": (
                [
                    {
                        "protocol": "MESOS_HTTP",
                        "path": "/health",
                        "portIndex": 0,
                        "intervalSeconds": 5,
                        "timeoutSeconds": 2,
                        "maxConsecutiveFailures": 3,
                    }
                    for _ in range(health_checks)
                ]
                if isinstance(health_checks, int)
                else [dict(h) for h in health_checks]
            ),
            "version": _timestamp(),
        }
        if ip_address_ports is not None:
            app["ipAddress"] = {
                "groups": [],
                "labels": {},
                "discovery": {
                    "ports": [
                        {"number": n, "name": f"port{i}", "protocol": "tcp"}
                        for i, n in enumerate(ip_address_ports)
                    ]
                },
            }
            app["networks"] = [{"mode": "container", "name": "dcos"}]
            app["portDefinitions"] = []
        if container_ports is not None:
            app["container"] = {
                "type": "DOCKER",
                "docker": {"image": "example/app"},
                "portMappings": [
                    {
                        "containerPort": n,
                        "hostPort": 0,
                        "servicePort": 0,
                        "protocol": "tcp",
                        "name": f"port{i}",
                    }
                    for i, n in enumerate(container_ports)
                ],
            }
            app["networks"] = [{"mode": "container/bridge"}]
            app["portDefinitions"] = []
        app.update(copy.deepcopy(dict(extra or {})))
        self._apps[aid] = app
        self._tasks.setdefault(aid, [])
        self._publish(
            "api_post_event",
            {
                "clientIp": "127.0.0.1",
                "uri": f"/v2/apps{aid}",
                "appDefinition": self._app_json(aid, tasks=False),
            },
        )
        self._publish("deployment_success", {"id": str(self._uuid()), "plan": {"id": aid}})
        return copy.deepcopy(app)

    def remove_app(self, app_id: str) -> None:
        """Delete an app: its tasks are killed, then ``app_terminated_event``."""
        aid = normalize_id(app_id)
        if aid not in self._apps:
            raise KeyError(aid)
        for task in list(self._tasks.get(aid, [])):
            self.remove_task(task.task_id)
        del self._apps[aid]
        self._tasks.pop(aid, None)
        self._publish("app_terminated_event", {"appId": aid})

    def app(self, app_id: str) -> Obj | None:
        """The app as ``GET /v2/apps/<id>`` would show it (None if unknown)."""
        aid = normalize_id(app_id)
        return self._app_json(aid, tasks=True) if aid in self._apps else None

    # -- scripting: tasks -----------------------------------------------------

    def add_task(
        self,
        app_id: str,
        host: str = "srv1.example.com",
        ports: Sequence[int] = (31000,),
        *,
        ip_addresses: Sequence[str] = (),
        state: str = "TASK_RUNNING",
        alive: bool | Sequence[bool | None] | None = None,
    ) -> str:
        """Start a task of an existing app; returns its task ID.

        ``alive``: None (no health results yet), a bool for every health check of
        the app, or one entry per check.  Emits ``status_update_event`` and
        ``instance_changed_event`` (and the health events when ``alive`` is set).
        """
        aid = normalize_id(app_id)
        if aid not in self._apps:
            raise KeyError(aid)
        instance_id = f"{aid.strip('/').replace('/', '_')}.instance-{self._uuid()}"
        task = _Task(
            task_id=f"{instance_id}._app.1",
            instance_id=instance_id,
            app_id=aid,
            host=host,
            ports=list(ports),
            ip_addresses=list(ip_addresses),
            state=state,
            alive=self._alive(aid, alive),
            staged_at=_timestamp(),
            version=self._apps[aid]["version"],
        )
        self._tasks[aid].append(task)
        self._status_events(task)
        if task.alive is not None:
            self._health_events(task)
        return task.task_id

    def set_tasks(self, app_id: str, tasks: Iterable[Mapping[str, Any]]) -> list[str]:
        """Replace all tasks of an app by ``add_task(**spec)`` for each spec."""
        aid = normalize_id(app_id)
        for task in list(self._tasks.get(aid, [])):
            self.remove_task(task.task_id)
        return [self.add_task(aid, **spec) for spec in tasks]

    def update_task(
        self,
        task_id: str,
        *,
        state: str | None = None,
        alive: bool | Sequence[bool | None] | None = None,
        clear_health: bool = False,
        host: str | None = None,
        ports: Sequence[int] | None = None,
        ip_addresses: Sequence[str] | None = None,
    ) -> None:
        """Change a task.  A new ``state`` (or address) emits ``status_update_event`` +
        ``instance_changed_event``; new health (``alive``, or ``clear_health`` to drop
        all results) emits ``health_status_changed_event`` +
        ``instance_health_changed_event``."""
        task = self._task(task_id)
        address_changed = False
        if host is not None:
            task.host, address_changed = host, True
        if ports is not None:
            task.ports, address_changed = list(ports), True
        if ip_addresses is not None:
            task.ip_addresses, address_changed = list(ip_addresses), True
        if (state is not None and state != task.state) or address_changed:
            task.state = state or task.state
            self._status_events(task)
        if alive is not None or clear_health:
            task.alive = None if clear_health else self._alive(task.app_id, alive)
            self._health_events(task)

    def remove_task(self, task_id: str) -> None:
        """Kill a task: ``TASK_KILLED`` events, and it disappears from the app."""
        task = self._task(task_id)
        task.state = "TASK_KILLED"
        self._tasks[task.app_id].remove(task)
        self._status_events(task)

    def emit(self, event_type: str, payload: Mapping[str, Any] | None = None) -> None:
        """Publish an arbitrary event (``eventType`` and ``timestamp`` are added)."""
        self._publish(event_type, dict(payload or {}))

    def emit_raw(self, frame: bytes, event_type: str = "") -> None:
        """Write ``frame`` verbatim on every event stream (malformed events, odd framing);
        ``event_type`` is what ``?event_type=`` filters see (empty: no filter drops it)."""
        for sub in list(self._subscribers):
            if not sub.types or not event_type or event_type in sub.types:
                sub.push(frame)

    # -- scripting: faults and auth -------------------------------------------

    def drop_event_streams(self) -> None:
        """Close every event stream abruptly."""
        for sub in list(self._subscribers):
            sub.drop()

    @property
    def open_event_streams(self) -> int:
        return len(self._subscribers)

    def restart(self) -> None:
        """A Marathon restart: connections drop; state (in ZooKeeper) survives."""
        self.drop_connections()

    def expire_tokens(self) -> None:
        """DC/OS mode: every issued token expires (next use: 401; log in again)."""
        self._dcos_tokens.clear()

    # -- internals ------------------------------------------------------------

    def _uuid(self) -> uuid.UUID:
        return uuid.UUID(int=self._random.getrandbits(128), version=4)

    def _task(self, task_id: str) -> _Task:
        for tasks in self._tasks.values():
            for task in tasks:
                if task.task_id == task_id:
                    return task
        raise KeyError(task_id)

    def _alive(
        self, aid: str, alive: bool | Sequence[bool | None] | None
    ) -> list[bool | None] | None:
        if alive is None:
            return None
        if isinstance(alive, bool):
            return [alive] * max(1, len(self._apps[aid]["healthChecks"]))
        return list(alive)

    def _publish(self, event_type: str, payload: Obj) -> None:
        data = {**payload, "eventType": event_type, "timestamp": _timestamp()}
        frame = f"event: {event_type}\r\ndata: {json.dumps(data, separators=(',', ':'))}\r\n\r\n"
        for sub in list(self._subscribers):
            sub.offer(event_type, frame.encode())

    def _status_events(self, task: _Task) -> None:
        self._publish(
            "status_update_event",
            {
                "slaveId": task.slave_id,
                "taskId": task.task_id,
                "taskStatus": task.state,
                "message": "",
                "appId": task.app_id,
                "host": task.host,
                "ipAddresses": [{"ipAddress": ip, "protocol": "IPv4"} for ip in task.ip_addresses],
                "ports": list(task.ports),
                "version": task.version,
            },
        )
        self._publish(
            "instance_changed_event",
            {
                "instanceId": task.instance_id,
                "condition": CONDITIONS.get(task.state, "Unknown"),
                "runSpecId": task.app_id,
                "agentId": task.slave_id,
                "host": task.host,
                "runSpecVersion": task.version,
            },
        )

    def _health_events(self, task: _Task) -> None:
        healthy = self._healthy(task)
        self._publish(
            "health_status_changed_event",
            {
                "appId": task.app_id,
                "taskId": task.task_id,
                "instanceId": task.instance_id,
                "version": task.version,
                "alive": healthy,
            },
        )
        self._publish(
            "instance_health_changed_event",
            {
                "instanceId": task.instance_id,
                "runSpecId": task.app_id,
                "runSpecVersion": task.version,
                "healthy": healthy,
            },
        )

    def _healthy(self, task: _Task) -> bool:
        checks = len(self._apps[task.app_id]["healthChecks"])
        results = task.alive or []
        return task.state == "TASK_RUNNING" and sum(1 for a in results if a) >= checks

    def _task_json(self, task: _Task) -> Obj:
        out: Obj = {
            "id": task.task_id,
            "appId": task.app_id,
            "host": task.host,
            "ports": list(task.ports),
            "servicePorts": [p["port"] for p in self._apps[task.app_id]["portDefinitions"]],
            "ipAddresses": [{"ipAddress": ip, "protocol": "IPv4"} for ip in task.ip_addresses],
            "state": task.state,
            "slaveId": task.slave_id,
            "agentId": task.slave_id,
            "stagedAt": task.staged_at,
            "startedAt": task.staged_at if task.state == "TASK_RUNNING" else None,
            "version": task.version,
            "localVolumes": [],
            "region": "primary",
            "zone": "a",
            "role": "*",
        }
        if task.alive is not None:
            out["healthCheckResults"] = [
                {
                    "alive": bool(a),
                    "consecutiveFailures": 0 if a else 1,
                    "firstSuccess": task.staged_at if a else None,
                    "lastFailure": None if a else task.staged_at,
                    "lastSuccess": task.staged_at if a else None,
                    "lastFailureCause": None if a else "503 Service Unavailable",
                    "instanceId": task.instance_id,
                }
                for a in task.alive
                if a is not None
            ]
        return out

    def _app_json(self, aid: str, *, tasks: bool) -> Obj:
        app = copy.deepcopy(self._apps[aid])
        all_tasks = self._tasks.get(aid, [])
        running = [t for t in all_tasks if t.state == "TASK_RUNNING"]
        healthy = [t for t in running if self._healthy(t)]
        with_health = app["healthChecks"] != []
        app.update(
            {
                "tasksStaged": sum(t.state in ("TASK_STAGING", "TASK_STARTING") for t in all_tasks),
                "tasksRunning": len(running),
                "tasksHealthy": len(healthy) if with_health else 0,
                "tasksUnhealthy": (
                    sum(1 for t in running if t.alive and not self._healthy(t))
                    if with_health
                    else 0
                ),
                "deployments": [],
            }
        )
        if app["instances"] is None:
            app["instances"] = len(all_tasks)
        if tasks:
            app["tasks"] = [self._task_json(t) for t in all_tasks]
        return app

    @staticmethod
    def _embeds(request: Request) -> set[str]:
        out = set()
        for value in request.params("embed"):
            for prefix in ("group.apps.", "apps.", "app."):
                if value.startswith(prefix):
                    value = value[len(prefix) :]
                    break
            out.add(value)
        return out

    # -- HTTP -----------------------------------------------------------------

    def error_response(
        self, status: int, message: str | None = None, headers: Headers = ()
    ) -> Response:
        """Marathon's errors are ``{"message": ...}``."""
        return json_response({"message": message or _reason(status)}, status, headers)

    def not_found(self, request: Request) -> Response:
        return self.error_response(404, "HTTP 404 Not Found")

    def method_not_allowed(self, request: Request) -> Response:
        return self.error_response(405, "HTTP 405 Method Not Allowed")

    def check_request(self, request: Request) -> Response | None:
        if self.http_credentials is not None:
            user, password = self.http_credentials
            expected = base64.b64encode(f"{user}:{password}".encode()).decode()
            auth = request.header("authorization") or ""
            scheme, _, value = auth.partition(" ")
            if scheme.lower() != "basic" or value.strip() != expected:
                return json_response(
                    {"message": "Invalid username or password."},
                    401,
                    [("WWW-Authenticate", BASIC_REALM)],
                )
        if self.dcos_accounts is not None and request.path != "/acs/api/v1/auth/login":
            auth = request.header("authorization") or ""
            if not auth.startswith("token=") or auth[len("token=") :] not in self._dcos_tokens:
                return json_response(
                    {
                        "title": "Unauthorized",
                        "description": "Authentication token missing, invalid or expired.",
                        "code": "ERR_INVALID_AUTH_TOKEN",
                    },
                    401,
                    [("WWW-Authenticate", "acsjwt")],
                )
        return None

    async def _login(self, request: Request, args: Mapping[str, str]) -> Response:
        if self.dcos_accounts is None:
            return self.not_found(request)
        try:
            body = request.json()
            uid = body["uid"]
        except (ValueError, KeyError, TypeError):
            return json_response(
                {
                    "title": "Bad Request",
                    "description": "Request has bad JSON.",
                    "code": "ERR_INVALID_DATA",
                },
                400,
            )
        ok = uid in self.dcos_accounts and (
            body.get("password") == self.dcos_accounts[uid] or _jwt_uid(body.get("token")) == uid
        )
        if not ok:
            return json_response(
                {
                    "title": "Unauthorized",
                    "description": "Invalid credentials.",
                    "code": "ERR_INVALID_CREDENTIALS",
                },
                401,
                [("WWW-Authenticate", "acsjwt")],
            )
        self._token_serial += 1
        token = f"dcos-token-{self._token_serial}"
        self._dcos_tokens.add(token)
        return json_response({"token": token})

    async def _ping(self, request: Request, args: Mapping[str, str]) -> Response:
        return text_response("pong")

    async def _info(self, request: Request, args: Mapping[str, str]) -> Response:
        return json_response(
            {
                "name": "marathon",
                "version": "1.11.24",
                "leader": self._leader_address(),
                "frameworkId": "fake-framework-0000",
                "elected": True,
                "http_config": {"http_port": self.port, "https_port": 8443},
                "event_subscriber": {"type": "http_callback", "http_endpoints": []},
            }
        )

    def _leader_address(self) -> str:
        return f"{self.host}:{self.port}"

    async def _leader(self, request: Request, args: Mapping[str, str]) -> Response:
        return json_response({"leader": self._leader_address()})

    async def _list_apps(self, request: Request, args: Mapping[str, str]) -> Response:
        embed_tasks = "tasks" in self._embeds(request)
        id_filter = (request.param("id") or "").lower()
        label = request.param("label")
        apps = []
        for aid in sorted(self._apps):
            if id_filter and id_filter not in aid.lower():
                continue
            if label and not _label_matches(self._apps[aid]["labels"], label):
                continue
            apps.append(self._app_json(aid, tasks=embed_tasks))
        return json_response({"apps": apps})

    async def _show_app(self, request: Request, args: Mapping[str, str]) -> Response:
        raw = args["id"]
        if raw == "*" or raw.endswith("/*"):
            group = normalize_id(raw[:-1])
            inside = [a for a in sorted(self._apps) if a.startswith(group.rstrip("/") + "/")]
            if not inside and group != "/":
                return self.error_response(404, f"Group '{group}' does not exist")
            return json_response({"*": [self._app_json(a, tasks=True) for a in inside]})
        aid = normalize_id(raw)
        if aid not in self._apps:
            return self.error_response(404, f"App '{aid}' does not exist")
        return json_response({"app": self._app_json(aid, tasks=True)})

    async def _app_tasks(self, request: Request, args: Mapping[str, str]) -> Response:
        aid = normalize_id(args["id"])
        if aid not in self._apps:
            return self.error_response(404, f"App '{aid}' does not exist")
        return json_response({"tasks": [self._task_json(t) for t in self._tasks[aid]]})

    async def _all_tasks(self, request: Request, args: Mapping[str, str]) -> Response:
        status = request.param("status")
        tasks = [
            self._task_json(t)
            for aid in sorted(self._tasks)
            for t in self._tasks[aid]
            if status is None or t.state == f"TASK_{status.upper()}"
        ]
        return json_response({"tasks": tasks})

    async def _events(self, request: Request, args: Mapping[str, str]) -> Response | StreamResponse:
        if "text/event-stream" not in request.header_values("accept"):
            return self.error_response(405, "HTTP 405 Method Not Allowed")
        sub = _Subscriber(request.params("event_type"))

        async def produce(out: Stream) -> None:
            self._subscribers.add(sub)
            self._publish("event_stream_attached", {"remoteAddress": "127.0.0.1"})
            try:
                next_beat = trio.current_time() + self.keepalive_interval
                while True:
                    for frame in sub.take():
                        await out.send(frame)
                    if sub.dropped:
                        out.drop()
                    with trio.move_on_at(next_beat) as scope:
                        await sub.wait()
                    if scope.cancelled_caught:
                        await out.send(b"\r\n")
                        next_beat += self.keepalive_interval
            finally:
                self._subscribers.discard(sub)
                self._publish("event_stream_detached", {"remoteAddress": "127.0.0.1"})

        return StreamResponse(
            200,
            produce,
            [("Content-Type", "text/event-stream; charset=UTF-8"), ("Cache-Control", "no-cache")],
            close_delimited=True,
        )

    # -- command line seeding -------------------------------------------------

    def load(self, data: Mapping[str, Any]) -> None:
        """Seed from a mapping (the ``--load`` file)::

        apps:
          - id: /web
            health_checks: 1
            tasks:
              - {host: srv1.example.com, ports: [31000], alive: true}
              - {host: srv2.example.com, ports: [31001], state: TASK_STAGING}
        """
        for spec in data.get("apps", []):
            spec = dict(spec)
            tasks = spec.pop("tasks", [])
            aid = spec.pop("id")
            self.add_app(aid, **spec)
            for t in tasks:
                self.add_task(aid, **t)


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _label_matches(labels: Mapping[str, str], selector: str) -> bool:
    for term in selector.split(","):
        key, op, value = term.partition("==")
        if not op:
            key, op, value = term.partition("!=")
            if op:
                if labels.get(key.strip()) == value.strip():
                    return False
                continue
            if key.strip() not in labels:
                return False
            continue
        if labels.get(key.strip()) != value.strip():
            return False
    return True


def _jwt_uid(token: object) -> str | None:
    """The ``uid`` claim of a JWT (signature not verified), or None."""
    if not isinstance(token, str) or token.count(".") != 2:
        return None
    payload = token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, binascii.Error):
        return None
    uid = claims.get("uid") if isinstance(claims, dict) else None
    return uid if isinstance(uid, str) else None


__all__ = ["BASIC_REALM", "CONDITIONS", "FakeMarathon", "normalize_id"]
