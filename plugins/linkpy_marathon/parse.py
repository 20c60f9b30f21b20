"""Marathon's JSON to values: pure functions, tolerant of what real servers send.

Unknown fields are ignored (Marathon adds fields in every release: ``checkResult``,
``role``, ``cpus`` on tasks...).  A document of the wrong *shape* -- not an object,
``"apps": null``, ``"tasks"`` missing -- raises :class:`BadPayload`, so that the namer
keeps its last good answer instead of reading "no apps".  Inside a good document, an
entry that cannot be used (a task without a host, a port that is not a number) is
skipped and reported in the returned warnings.

python-marathon's models are not used here: they reject real payloads (see
``docs/namers/marathon.md``, "python-marathon").
"""

from __future__ import annotations

import re
from collections.abc import Container, Iterable, Mapping
from typing import Any

import attrs

from linkpy.naming import Address, Path


class BadPayload(ValueError):
    """A JSON document that is not what the endpoint returns."""


#: A segment of a Marathon app id: lowercase DNS-like labels (Marathon's PathId rule).
_SEGMENT = re.compile(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?\Z")


#: app id -> Path, for the ids every poll of a big cluster parses again
_PATHS: dict[str, Path | None] = {}
_MAX_PATHS = 100_000


def app_path(app_id: object) -> Path | None:
    """``/a/b/users`` -> ``Path(a, b, users)`` (lower-cased), or None when it is no app id."""
    if not isinstance(app_id, str):
        return None
    try:
        return _PATHS[app_id]
    except KeyError:
        pass
    segments = app_id.lower().strip("/").split("/")
    path = Path.utf8(*segments) if all(_SEGMENT.match(s) for s in segments) else None
    if len(_PATHS) >= _MAX_PATHS:
        _PATHS.clear()
    _PATHS[app_id] = path
    return path


@attrs.frozen
class Task:
    """What discovery needs of one task."""

    id: str
    host: str | None
    ports: tuple[int, ...]
    ip_addresses: tuple[str, ...]
    state: str | None
    #: how many of its health check results say ``alive: true``
    alive: int


@attrs.frozen
class App:
    """What discovery needs of one app (``GET /v2/apps/<id>?embed=app.tasks``)."""

    id: Path
    #: ``ipAddress.discovery.ports[].number`` (legacy IP-per-task)
    discovery_ports: tuple[int, ...]
    #: ``container.portMappings[].containerPort`` when the app is on a container network
    container_ports: tuple[int, ...]
    health_checks: int
    tasks: tuple[Task, ...]


def _port(v: object) -> int | None:
    if isinstance(v, int) and not isinstance(v, bool) and 0 < v < 65536:
        return v
    return None


def _list(v: object) -> list[Any]:
    return v if isinstance(v, list) else []


def _dict(v: object) -> Mapping[str, Any]:
    return v if isinstance(v, dict) else {}


def parse_app_ids(doc: object) -> tuple[frozenset[Path], list[str]]:
    """The app ids of ``GET /v2/apps`` (``{"apps": [...]}``), and warnings."""
    if not isinstance(doc, dict) or not isinstance(doc.get("apps"), list):
        raise BadPayload(f'expected {{"apps": [...]}}, got {_describe(doc)}')
    ids = set()
    warnings = []
    for i, app in enumerate(doc["apps"]):
        path = app_path(app.get("id")) if isinstance(app, dict) else None
        if path is None:
            warnings.append(f"apps[{i}]: no usable id ({_describe(app)})")
            continue
        ids.add(path)
    return frozenset(ids), warnings


def parse_app(doc: object) -> tuple[App, list[str]]:
    """One app with its tasks (``{"app": {...}}``), and warnings."""
    if not isinstance(doc, dict) or not isinstance(doc.get("app"), dict):
        raise BadPayload(f'expected {{"app": {{...}}}}, got {_describe(doc)}')
    app = doc["app"]
    path = app_path(app.get("id"))
    if path is None:
        raise BadPayload(f"the app has no usable id ({_describe(app.get('id'))})")
    if not isinstance(app.get("tasks"), list):
        raise BadPayload(f"the app has no task list (tasks: {_describe(app.get('tasks'))})")
    warnings: list[str] = []
    discovery = _dict(_dict(app.get("ipAddress")).get("discovery"))
    discovery_ports = _ports(p.get("number") for p in map(_dict, _list(discovery.get("ports"))))
    container_ports: tuple[int, ...] = ()
    networks = [_dict(n).get("mode") for n in _list(app.get("networks"))]
    if "container" in networks:
        mappings = _list(_dict(app.get("container")).get("portMappings"))
        container_ports = _ports(m.get("containerPort") for m in map(_dict, mappings))
    tasks = []
    for i, t in enumerate(app["tasks"]):
        if not isinstance(t, dict):
            warnings.append(f"tasks[{i}]: not an object ({_describe(t)})")
            continue
        host = t.get("host")
        ips = tuple(
            a["ipAddress"]
            for a in map(_dict, _list(t.get("ipAddresses")))
            if isinstance(a.get("ipAddress"), str) and a["ipAddress"]
        )
        results = _list(t.get("healthCheckResults"))
        state = t.get("state")
        tasks.append(
            Task(
                id=str(t.get("id", f"#{i}")),
                host=host if isinstance(host, str) and host else None,
                ports=tuple(p for p in map(_port, _list(t.get("ports"))) if p is not None),
                ip_addresses=ips,
                state=state if isinstance(state, str) else None,
                alive=sum(1 for r in results if isinstance(r, dict) and r.get("alive") is True),
            )
        )
    return (
        App(
            id=path,
            discovery_ports=discovery_ports,
            container_ports=container_ports,
            health_checks=len(_list(app.get("healthChecks"))),
            tasks=tuple(tasks),
        ),
        warnings,
    )


def parse_apps(
    doc: object, wanted: Container[Path]
) -> tuple[frozenset[Path], dict[Path, dict[str, Any]], list[str]]:
    """``GET /v2/apps?embed=apps.tasks``: every app id, the ``wanted`` apps' JSON (each
    to read with ``parse_app({"app": ...})``), and warnings.  A wanted app without a
    task list means the server did not embed them: BadPayload."""
    if not isinstance(doc, dict) or not isinstance(doc.get("apps"), list):
        raise BadPayload(f'expected {{"apps": [...]}}, got {_describe(doc)}')
    ids = set()
    apps: dict[Path, dict[str, Any]] = {}
    warnings = []
    for i, entry in enumerate(doc["apps"]):
        path = app_path(entry.get("id")) if isinstance(entry, dict) else None
        if path is None:
            warnings.append(f"apps[{i}]: no usable id ({_describe(entry)})")
            continue
        ids.add(path)
        if path in wanted:
            assert isinstance(entry, dict)
            if not isinstance(entry.get("tasks"), list):
                raise BadPayload(f"the app {path.show()} has no task list")
            apps[path] = entry
    return frozenset(ids), apps, warnings


def _ports(values: Iterable[object]) -> tuple[int, ...]:
    return tuple(p for p in map(_port, values) if p is not None)


RUNNING = "TASK_RUNNING"


def healthy(task: Task, health_checks: int) -> bool:
    """Linkerd's rule: running, and at least one ``alive`` result per health check."""
    return task.state == RUNNING and task.alive >= health_checks


def addresses(app: App, *, use_health_check: bool) -> tuple[frozenset[Address], list[str]]:
    """The endpoints of an app's tasks, and why some tasks gave none.

    A task is used when it is ``TASK_RUNNING`` (a task in any other state -- staging,
    killing -- gets no traffic; a task without a state, from an old Marathon, counts as
    running unless ``use_health_check``), and with ``use_health_check`` when
    :func:`healthy`.  Its address is, as in Linkerd: with IP-per-task
    (``ipAddress.discovery.ports``) the task's first IP and the first discovery port;
    on a container network (``networks: [{mode: container}]``) the task's first IP and
    the first ``containerPort``; else the task's ``host`` and its first host port.
    """
    skipped: list[str] = []
    out = set()
    if app.discovery_ports:
        ip_port: int | None = app.discovery_ports[0]
    elif app.container_ports:
        ip_port = app.container_ports[0]
    else:
        ip_port = None
    for task in app.tasks:
        if use_health_check:
            if not healthy(task, app.health_checks):
                continue
        elif task.state is not None and task.state != RUNNING:
            continue
        if ip_port is not None:
            if not task.ip_addresses:
                skipped.append(f"task {task.id} has no IP address")
                continue
            out.add(Address(task.ip_addresses[0], ip_port))
        else:
            if task.host is None or not task.ports:
                skipped.append(f"task {task.id} has no host and port")
                continue
            out.add(Address(task.host, task.ports[0]))
    return frozenset(out), skipped


def event_app(doc: Mapping[str, Any]) -> Path | None:
    """The app an event is about, read from the raw JSON (the fallback of
    :mod:`linkpy_marathon.events` when python-marathon rejects an event)."""
    for key in ("appId", "runSpecId"):
        path = app_path(doc.get(key))
        if path is not None:
            return path
    definition = doc.get("appDefinition")
    if isinstance(definition, dict):
        return app_path(definition.get("id"))
    return None


def _describe(v: object) -> str:
    if v is None:
        return "null"
    if isinstance(v, dict):
        keys = ", ".join(sorted(str(k) for k in v)[:5])
        return f"an object with keys [{keys}]"
    if isinstance(v, list):
        return f"a list of {len(v)}"
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."
