"""Trace context: l5d-ctx-trace (Finagle) and B3 (Zipkin) propagation."""

from __future__ import annotations

from pathlib import Path

import httpx

from linkpy.router.trace import TraceId, incoming

from ..conftest import MakeBackend, StartLinker, fs_config, router_url, write_disco


def test_l5d_trace_round_trip() -> None:
    tid = TraceId(0x1111, 0x2222, 0x3333, True, 0)
    assert TraceId.from_l5d(tid.to_l5d()) == tid
    unknown = TraceId(1, 2, 3, None)
    assert TraceId.from_l5d(unknown.to_l5d()) == unknown
    assert TraceId.from_l5d(b"not base64!") is None
    assert TraceId.from_l5d(b"AAAA") is None


def test_child_keeps_the_trace() -> None:
    parent = TraceId.root(sampled=True)
    child = parent.child()
    assert child.trace_id == parent.trace_id
    assert child.parent_id == parent.span_id
    assert child.span_id != parent.span_id
    assert child.sampled is True


def test_b3_and_l5d_sample() -> None:
    headers = [
        (b"X-B3-TraceId", b"463ac35c9f6413ad48485a3953bb6124"),
        (b"X-B3-SpanId", b"a2fb4a1d1a96d312"),
        (b"X-B3-Sampled", b"1"),
    ]
    tid = incoming(headers, zipkin=True)
    assert tid is not None
    assert tid.trace_id == 0x48485A3953BB6124  # the low 64 bits
    assert tid.span_id == 0xA2FB4A1D1A96D312 and tid.sampled is True
    forced = incoming([(b"l5d-sample", b"1.0")], zipkin=False)
    assert forced is not None and forced.sampled is True
    never = incoming([(b"l5d-sample", b"0")], zipkin=False)
    assert never is not None and never.sampled is False


async def test_trace_context_propagates(
    backend: MakeBackend, start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    b = await backend("b")
    write_disco(disco, "web", b)
    linker = await start_linker(fs_config(disco))
    url = router_url(linker)
    await http.get(url + "/", headers={"Host": "web"})
    root = TraceId.from_l5d((b.seen[0].header("l5d-ctx-trace") or "").encode())
    assert root is not None
    assert root.span_id == root.parent_id == root.trace_id and root.sampled is None
    assert b.seen[0].header("l5d-reqid") == f"{root.trace_id:016x}"
    upstream = TraceId(0xABC, 0xABC, 0xDEF, True)
    await http.get(url + "/", headers={"Host": "web", "l5d-ctx-trace": upstream.to_l5d().decode()})
    child = TraceId.from_l5d((b.seen[1].header("l5d-ctx-trace") or "").encode())
    assert child is not None
    assert child.trace_id == 0xABC and child.parent_id == 0xDEF and child.sampled is True
    assert len(b.seen[1].all("l5d-ctx-trace")) == 1


async def test_b3_propagation_with_the_zipkin_propagator(
    backend: MakeBackend, start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    b = await backend("b")
    write_disco(disco, "web", b)
    linker = await start_linker(
        fs_config(disco, extra="  tracePropagator: {kind: io.l5d.zipkin}\n")
    )
    await http.get(
        router_url(linker) + "/",
        headers={
            "Host": "web",
            "x-b3-traceid": "0000000000000abc",
            "x-b3-spanid": "0000000000000def",
        },
    )
    seen = b.seen[0]
    assert seen.header("x-b3-traceid") == "0000000000000abc"
    assert seen.header("x-b3-parentspanid") == "0000000000000def"
    assert seen.header("x-b3-spanid") not in (None, "0000000000000def")
    assert seen.header("l5d-ctx-trace") is None
