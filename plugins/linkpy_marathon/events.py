"""What an event of Marathon's stream means for discovery.

The namer uses the stream as Marathon's docs advise: as a signal that something
changed, after which it re-reads the app (events may come out of order, and a dropped
slow consumer misses some).  :func:`classify` says which app an event concerns and
whether the set of app ids may have changed.

The events are decoded with python-marathon's ``EventFactory`` (the models the card
asks for): it reads the discovery events of real servers correctly.  Where it fails --
a type it does not know raises ``MarathonError``, a missing ``timestamp`` or an
unexpected nested field raises ``TypeError`` -- the namer reads the two fields it needs
from the JSON itself (:func:`linkpy_marathon.parse.event_app`), and says so in the
``fallback`` flag so that the metric shows it.
"""

from __future__ import annotations

import json
from typing import Any, Final, Literal

import attrs
from marathon.exceptions import MarathonError  # type: ignore[import-untyped]
from marathon.models.events import EventFactory  # type: ignore[import-untyped]

from linkpy.naming import Path

from .parse import app_path, event_app

#: Events that change one app's tasks (its address set).
TASK_EVENTS: Final = frozenset({"status_update_event", "instance_changed_event"})
#: Events that change one app's health (matter with ``useHealthCheck`` only).
HEALTH_EVENTS: Final = frozenset({"health_status_changed_event", "instance_health_changed_event"})
#: Events after which the set of app ids may differ.
APP_SET_EVENTS: Final = frozenset(
    {
        "api_post_event",
        "app_terminated_event",
        "deployment_success",
        "deployment_failed",
        "group_change_success",
    }
)
ATTACHED: Final = "event_stream_attached"


def subscribed(use_health_check: bool) -> list[str]:
    """The ``event_type`` values to ask the stream for (Marathon >= 1.3.7 filters).

    One event per kind of change: Marathon >= 1.4 follows every ``status_update_event``
    with an ``instance_changed_event`` (and every ``health_status_changed_event`` with
    an ``instance_health_changed_event``) about the same task, and asking for both would
    re-read the app twice per change.  The twins are still understood when a Marathon
    that does not filter sends them.
    """
    types = {"status_update_event", ATTACHED} | APP_SET_EVENTS
    if use_health_check:
        types.add("health_status_changed_event")
    return sorted(types)


class BadEvent(ValueError):
    """An event whose data is not a JSON object."""


@attrs.frozen
class Signal:
    """What to re-read after an event."""

    kind: Literal["app", "app_set", "attached", "ignored"]
    #: the app it concerns (None: unknown, or an app-set event about no one app)
    app: Path | None = None
    #: python-marathon rejected the event; its fields were read from the JSON directly
    fallback: bool = False


_factory = EventFactory()


def classify(event_type: str, data: str, *, use_health_check: bool) -> Signal:
    """The meaning of one event (``event:`` name and ``data:`` JSON)."""
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise BadEvent(f"{event_type}: data is not JSON ({e})") from None
    if not isinstance(doc, dict):
        raise BadEvent(f"{event_type}: data is not a JSON object")
    etype = doc.get("eventType")
    if not isinstance(etype, str) or not etype:
        etype = event_type
    if etype == ATTACHED:
        return Signal("attached")
    if etype in TASK_EVENTS or (use_health_check and etype in HEALTH_EVENTS):
        kind: Literal["app", "app_set"] = "app"
    elif etype in APP_SET_EVENTS:
        kind = "app_set"
    else:
        return Signal("ignored")
    app, fallback = _app_of(etype, doc)
    return Signal(kind, app, fallback)


def _app_of(etype: str, doc: dict[str, Any]) -> tuple[Path | None, bool]:
    try:
        event = _factory.process({**doc, "eventType": etype})
    except (MarathonError, TypeError, ValueError, AttributeError, KeyError):
        return event_app(doc), True
    for attr in ("app_id", "run_spec_id"):
        path = app_path(getattr(event, attr, None))
        if path is not None:
            return path, False
    definition = getattr(event, "app_definition", None)
    if isinstance(definition, dict):
        return app_path(definition.get("id")), False
    return None, False
