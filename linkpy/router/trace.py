"""Trace context: Finagle's ``l5d-ctx-trace`` and Zipkin's B3 headers.

Each request forwarded is a new span of the incoming trace (or the root of a new trace):
same trace id, a new span id, the incoming span as its parent.  ``l5d-ctx-trace`` is
the base64 of Finagle's 32-byte TraceId (span, parent, trace, flags, big-endian);
``l5d-sample`` overrides the sampling decision; with ``tracePropagator: io.l5d.zipkin``
the ``x-b3-*`` headers are read and written instead.
"""

from __future__ import annotations

import base64
import binascii
import random
import struct
from typing import Final

import attrs

from ..proto.http1 import Headers

DEBUG: Final = 1
SAMPLING_KNOWN: Final = 2
SAMPLED: Final = 4

_rand = random.Random()
_pack = struct.Struct(">QQQQ").pack


def _new_id() -> int:
    return _rand.getrandbits(64) or 1


def new_root() -> tuple[int, bytes]:
    """A new root trace's id and its ``l5d-ctx-trace`` value: ``TraceId.root()``'s,
    without making the TraceId (the routers make it only for telemetry:
    :meth:`TraceId.of_root`)."""
    span = _new_id()
    return span, binascii.b2a_base64(_pack(span, span, span, 0), newline=False)


@attrs.frozen
class TraceId:
    trace_id: int
    parent_id: int
    span_id: int
    sampled: bool | None = None
    flags: int = 0

    @classmethod
    def root(cls, sampled: bool | None = None) -> TraceId:
        return cls.of_root(_new_id(), sampled)

    @classmethod
    def of_root(cls, span: int, sampled: bool | None = None) -> TraceId:
        """The root span ``span`` (its trace, parent and span id)."""
        return cls(span, span, span, sampled)

    def child(self) -> TraceId:
        return TraceId(self.trace_id, self.span_id, _new_id(), self.sampled, self.flags)

    # -- l5d-ctx-trace ----------------------------------------------------------------

    def to_l5d(self) -> bytes:
        flags = self.flags
        if self.sampled is True:
            flags |= SAMPLING_KNOWN | SAMPLED
        elif self.sampled is False:
            flags |= SAMPLING_KNOWN
        raw = _pack(self.span_id, self.parent_id, self.trace_id, flags)
        return binascii.b2a_base64(raw, newline=False)  # (base64.b64encode's core)

    @classmethod
    def from_l5d(cls, value: bytes) -> TraceId | None:
        try:
            raw = base64.b64decode(value.strip(), validate=True)
        except (ValueError, TypeError):
            return None
        if len(raw) not in (32, 40):
            return None
        span, parent, trace, flags = struct.unpack(">QQQQ", raw[:32])
        sampled = bool(flags & SAMPLED) if flags & SAMPLING_KNOWN else None
        return cls(trace, parent, span, sampled, flags & ~(SAMPLING_KNOWN | SAMPLED))

    # -- B3 -----------------------------------------------------------------------

    def to_b3(self) -> Headers:
        out: Headers = [
            (b"x-b3-traceid", b"%016x" % self.trace_id),
            (b"x-b3-spanid", b"%016x" % self.span_id),
            (b"x-b3-parentspanid", b"%016x" % self.parent_id),
        ]
        if self.sampled is not None:
            out.append((b"x-b3-sampled", b"1" if self.sampled else b"0"))
        if self.flags & DEBUG:
            out.append((b"x-b3-flags", b"1"))
        return out

    @classmethod
    def from_b3(cls, get: dict[bytes, bytes]) -> TraceId | None:
        try:
            trace = int(get[b"x-b3-traceid"][-16:], 16)
            span = int(get[b"x-b3-spanid"], 16)
        except (KeyError, ValueError):
            return None
        try:
            parent = int(get.get(b"x-b3-parentspanid", b"%x" % span), 16)
        except ValueError:
            parent = span
        sampled_h = get.get(b"x-b3-sampled")
        sampled = None if sampled_h is None else sampled_h.strip().lower() in (b"1", b"true")
        flags = DEBUG if get.get(b"x-b3-flags", b"").strip() == b"1" else 0
        return cls(trace, parent, span, sampled, flags)

    def show(self) -> str:
        return f"{self.trace_id:016x}.{self.span_id:016x}<:{self.parent_id:016x}"


TRACE_HEADERS: Final = frozenset(
    {
        b"l5d-ctx-trace",
        b"l5d-sample",
        b"x-b3-traceid",
        b"x-b3-spanid",
        b"x-b3-parentspanid",
        b"x-b3-sampled",
        b"x-b3-flags",
    }
)


def incoming(headers: Headers, zipkin: bool) -> TraceId | None:
    """The trace context of a request (removing nothing; the router rewrites it)."""
    found: dict[bytes, bytes] = {}
    for k, v in headers:
        lk = k.lower()
        if lk in TRACE_HEADERS:
            found[lk] = v
    if not found:
        return None
    tid = TraceId.from_b3(found) if zipkin else None
    if tid is None and b"l5d-ctx-trace" in found:
        tid = TraceId.from_l5d(found[b"l5d-ctx-trace"])
    if tid is None and not zipkin:
        tid = TraceId.from_b3(found)
    sample = found.get(b"l5d-sample")
    if sample is not None:
        try:
            rate = float(sample)
        except ValueError:
            rate = -1.0
        if 0.0 <= rate <= 1.0:
            decided = _rand.random() < rate
            tid = attrs.evolve(tid, sampled=decided) if tid is not None else TraceId.root(decided)
    return tid


def outgoing(tid: TraceId, zipkin: bool) -> Headers:
    """The headers carrying ``tid`` downstream."""
    if zipkin:
        return tid.to_b3()
    return [(b"l5d-ctx-trace", tid.to_l5d())]
