"""An incremental Server-Sent Events decoder (the framing of Marathon's ``/v2/events``).

Bytes go in as they arrive (:meth:`SseDecoder.feed`), whole events come out.  Lines may
end with CRLF (Marathon's Jetty), LF (a proxy such as DC/OS's admin router may rewrite
them) or CR, and a terminator may be split across two reads.  A blank line ends an
event; a blank line with no ``data`` before it is a keepalive (Jetty sends a bare CRLF
every 10 s) and yields nothing.  ``:`` comment lines and the ``id``/``retry`` fields are
ignored.
"""

from __future__ import annotations

import re

import attrs

_EOL = re.compile(rb"\r\n|\r|\n")


class SseError(ValueError):
    """The stream broke the framing rules (a line or an event over the size limit)."""


@attrs.frozen
class SseEvent:
    #: the ``event:`` field (``message`` when absent, as the spec says)
    type: str
    #: the ``data:`` lines joined with ``\n``
    data: str


class SseDecoder:
    """Splits a byte stream into :class:`SseEvent` values."""

    def __init__(self, *, max_event: int = 16 * 1024 * 1024) -> None:
        self.max_event = max_event
        self._pending = b""
        self._after_cr = False
        self._type = ""
        self._data: list[str] = []
        self._size = 0
        #: blank lines that ended no event (keepalives)
        self.keepalives = 0

    @property
    def partial(self) -> bool:
        """Whether an event is half-received (the stream ended in the middle of one)."""
        return bool(self._pending or self._data or self._type)

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """The events completed by ``chunk``."""
        if self._after_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]  # the LF of a CRLF whose CR ended the previous read
        self._after_cr = False
        if not chunk:
            return []
        data = self._pending + chunk
        lines = _EOL.split(data)
        self._pending = lines.pop()
        if data.endswith(b"\r"):
            self._after_cr = True
        if len(self._pending) > self.max_event:
            raise SseError(f"a line of more than {self.max_event} bytes")
        events = []
        for raw in lines:
            event = self._line(raw)
            if event is not None:
                events.append(event)
        return events

    def _line(self, raw: bytes) -> SseEvent | None:
        if not raw:
            if not self._data:
                self._type = ""
                self.keepalives += 1
                return None
            event = SseEvent(self._type or "message", "\n".join(self._data))
            self._type = ""
            self._data = []
            self._size = 0
            return event
        if raw.startswith(b":"):
            return None
        line = raw.decode("utf-8", "replace")
        field, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if field == "event":
            self._type = value
        elif field == "data":
            self._size += len(raw)
            if self._size > self.max_event:
                raise SseError(f"an event of more than {self.max_event} bytes")
            self._data.append(value)
        return None
