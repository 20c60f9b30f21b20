"""Per-path resilience through the router: real sockets, h11 backends, httpx."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from urllib.parse import unquote_plus

import httpx
import trio

from ..backends import Reply, Seen
from ..conftest import MakeBackend, StartLinker, admin_url, fs_config, router_url, write_disco


def status_handler(status: int):  # type: ignore[no-untyped-def]
    async def handle(req: Seen) -> Reply:
        return Reply(status, b"%d" % status)

    return handle


async def metrics(http: httpx.AsyncClient, linker: object) -> dict[str, float]:
    return (await http.get(admin_url(linker) + "/admin/metrics.json")).json()  # type: ignore[arg-type,no-any-return]


async def test_failing_endpoint_is_ejected_then_revived_by_a_probe(
    backend: MakeBackend, start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    healthy = True

    async def flaky(req: Seen) -> Reply:
        return Reply(200, b"bad-ok") if healthy else Reply(500, b"bad-500")

    good = await backend("good")
    bad = await backend("bad", flaky)
    write_disco(disco, "web", good, bad)
    extra = (
        "  client:\n    failureAccrual:\n"
        "      kind: io.l5d.consecutiveFailures\n      failures: 3\n"
        "      backoff: {kind: constant, ms: 300}\n"
    )
    linker = await start_linker(fs_config(disco, extra=extra))
    url = router_url(linker)
    healthy = False
    statuses: Counter[int] = Counter()
    for _ in range(60):
        r = await http.get(url + "/", headers={"Host": "web"})
        statuses[r.status_code] += 1
    m = await metrics(http, linker)
    probes = m.get("rt/out/client/#/io.l5d.fs/web/failure_accrual/probes", 0)
    # ejected after exactly 3 failures (plus the probes its backoff let through)
    assert len(bad.seen) == 3 + probes
    assert statuses == {200: 60 - 3 - probes, 500: 3 + probes}
    assert m["rt/out/client/#/io.l5d.fs/web/failure_accrual/removals"] == 1
    healthy = True
    # after the backoff, one request probes it; success revives it
    with trio.fail_after(10):
        while True:
            await http.get(url + "/", headers={"Host": "web"})
            m = await metrics(http, linker)
            if m.get("rt/out/client/#/io.l5d.fs/web/failure_accrual/revivals") == 1:
                break
            await trio.sleep(0.05)
    before = len(bad.seen)
    for _ in range(40):
        await http.get(url + "/", headers={"Host": "web"})
    assert len(bad.seen) > before + 5  # back in the balancer
    assert m["rt/out/client/#/io.l5d.fs/web/failure_accrual/probes"] >= 1


async def test_two_prefixes_two_accrual_policies_on_the_same_endpoint(
    backend: MakeBackend, start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    b = await backend("b", status_handler(500))
    write_disco(disco, "a", b)
    dtab = f"/svc/a => /#/io.l5d.fs/a; /svc/b => /$/inet/127.0.0.1/{b.port};"
    extra = (
        "  client:\n    kind: io.l5d.static\n    configs:\n"
        "    - prefix: /#/io.l5d.fs\n"
        "      failureAccrual: {kind: io.l5d.consecutiveFailures, failures: 1}\n"
        "    - prefix: /$/inet\n      failureAccrual: {kind: none}\n"
    )
    linker = await start_linker(fs_config(disco, dtab=dtab, extra=extra))
    for host in ("a", "b"):
        for _ in range(5):
            r = await http.get(router_url(linker) + "/", headers={"Host": host})
            assert r.status_code == 500
    m = await metrics(http, linker)
    assert m["rt/out/client/#/io.l5d.fs/a/failure_accrual/removals"] == 1
    assert m.get(f"rt/out/client/$/inet/127.0.0.1/{b.port}/failure_accrual/removals", 0) == 0
    assert m[f"rt/out/client/$/inet/127.0.0.1/{b.port}/failures"] == 5


def fail_first_time() -> object:
    """503 the first time an x-id is seen, 200 afterwards."""
    seen: set[str] = set()

    async def handle(req: Seen) -> Reply:
        key = req.header("x-id") or ""
        if key not in seen:
            seen.add(key)
            return Reply(503, b"try again")
        return Reply(200, b"ok " + req.body)

    return handle


async def test_retryable_get_succeeds_and_post_is_not_retried(
    backend: MakeBackend, start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    b = await backend("b", fail_first_time())
    write_disco(disco, "web", b)
    extra = "  service:\n    responseClassifier: {kind: io.l5d.http.retryableRead5XX}\n"
    linker = await start_linker(fs_config(disco, extra=extra))
    url = router_url(linker)
    r = await http.get(url + "/", headers={"Host": "web", "x-id": "1"})
    assert r.status_code == 200
    assert r.headers["l5d-success-class"] == "1.0"
    assert len(b.seen) == 2
    r = await http.post(url + "/", headers={"Host": "web", "x-id": "2"}, content=b"data")
    assert r.status_code == 503
    assert r.headers["l5d-success-class"] == "0.0"
    assert len(b.seen) == 3
    m = await metrics(http, linker)
    assert m["rt/out/service/svc/web/retries/total"] == 1
    assert m["rt/out/service/svc/web/requests"] == 2
    assert m["rt/out/service/svc/web/success"] == 1
    assert m["rt/out/service/svc/web/failures"] == 1


async def test_a_body_that_fits_the_buffer_is_replayed(
    backend: MakeBackend, start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    b = await backend("b", fail_first_time())
    write_disco(disco, "web", b)
    extra = (
        "  service:\n    responseClassifier: {kind: io.l5d.http.retryableAll5XX}\n"
        "    retryBufferSize: {requestBytes: 1000}\n"
    )
    linker = await start_linker(fs_config(disco, extra=extra))
    url = router_url(linker)

    async def chunked() -> object:
        yield b"part1;"
        yield b"part2"

    r = await http.post(url + "/", headers={"Host": "web", "x-id": "1"}, content=chunked())  # type: ignore[arg-type]
    assert r.status_code == 200
    assert r.text == "ok part1;part2"
    assert [s.body for s in b.seen] == [b"part1;part2", b"part1;part2"]
    # a body larger than the buffer streams once and is not retried
    r = await http.post(url + "/", headers={"Host": "web", "x-id": "2"}, content=b"x" * 5000)
    assert r.status_code == 503
    assert len(b.seen) == 3 and b.seen[2].body == b"x" * 5000


async def test_l5d_retryable_from_downstream_makes_a_failure_retryable(
    backend: MakeBackend, start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    calls = 0

    async def handle(req: Seen) -> Reply:
        nonlocal calls
        calls += 1
        if calls == 1:
            return Reply(502, b"not delivered", headers=[("l5d-retryable", "true")])
        return Reply(200, b"ok")

    b = await backend("b", handle)
    write_disco(disco, "web", b)
    linker = await start_linker(fs_config(disco))
    r = await http.post(router_url(linker) + "/", headers={"Host": "web"}, content=b"x")
    assert r.status_code == 200 and calls == 2


async def test_success_class_from_downstream_wins(
    backend: MakeBackend, start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    async def handle(req: Seen) -> Reply:
        return Reply(500, b"fine really", headers=[("l5d-success-class", "1.0")])

    b = await backend("b", handle)
    write_disco(disco, "web", b)
    linker = await start_linker(fs_config(disco))
    r = await http.get(router_url(linker) + "/", headers={"Host": "web"})
    assert r.status_code == 500 and r.headers["l5d-success-class"] == "1.0"
    m = await metrics(http, linker)
    assert m["rt/out/service/svc/web/success"] == 1


async def test_timeouts_answer_503(
    backend: MakeBackend, start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    async def slow(req: Seen) -> Reply:
        await trio.sleep(5)
        return Reply(200, b"late")

    b = await backend("b", slow)
    write_disco(disco, "web", b)
    write_disco(disco, "total", b)
    extra = (
        "  client:\n    kind: io.l5d.static\n    configs:\n"
        "    - prefix: /#/io.l5d.fs/web\n      requestAttemptTimeoutMs: 100\n"
        "  service:\n    kind: io.l5d.static\n    configs:\n"
        "    - prefix: /svc/total\n      totalTimeoutMs: 150\n"
    )
    linker = await start_linker(fs_config(disco, extra=extra))
    r = await http.get(router_url(linker) + "/", headers={"Host": "web"})
    assert r.status_code == 503
    assert "request attempt timeout" in unquote_plus(r.headers["l5d-err"])
    r = await http.get(router_url(linker) + "/", headers={"Host": "total"})
    assert r.status_code == 503
    assert r.text == "exceeded 150ms total timeout for /svc/total"


async def test_deadline_is_propagated(
    backend: MakeBackend, start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    b = await backend("b")
    write_disco(disco, "web", b)
    extra = "  service:\n    totalTimeoutMs: 2000\n"
    linker = await start_linker(fs_config(disco, extra=extra))
    upstream = "1000 9000000000000000000"
    await http.get(router_url(linker) + "/", headers={"Host": "web", "l5d-ctx-deadline": upstream})
    start, deadline = (int(x) for x in (b.seen[0].header("l5d-ctx-deadline") or "").split())
    assert start > 1000  # the later start
    assert deadline < 9000000000000000000  # the stricter deadline (ours, 2 s from now)


async def test_deadline_without_a_timeout_is_passed_on(
    backend: MakeBackend, start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    """No totalTimeoutMs: an incoming deadline goes on as it came; none is made up."""
    b = await backend("b")
    write_disco(disco, "web", b)
    linker = await start_linker(fs_config(disco))
    upstream = "1000 9000000000000000000"
    await http.get(router_url(linker) + "/", headers={"Host": "web", "l5d-ctx-deadline": upstream})
    await http.get(router_url(linker) + "/", headers={"Host": "web"})
    assert b.seen[0].header("l5d-ctx-deadline") == upstream
    assert b.seen[1].header("l5d-ctx-deadline") is None


async def test_endpoint_weights_split_traffic(
    backend: MakeBackend, start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    heavy = await backend("heavy")
    light = await backend("light")
    write_disco(disco, "web", (heavy, 3.0), (light, 1.0))
    extra = "  client:\n    loadBalancer: {kind: roundRobin}\n"
    linker = await start_linker(fs_config(disco, extra=extra))
    counts: Counter[str] = Counter()
    for _ in range(400):
        r = await http.get(router_url(linker) + "/", headers={"Host": "web"})
        counts[r.text.split()[0]] += 1
    assert counts == {"heavy": 300, "light": 100}


async def test_clear_context_hides_linker_error_details(
    start_linker: StartLinker, disco: Path, http: httpx.AsyncClient
) -> None:
    linker = await start_linker(fs_config(disco, server="    clearContext: true\n"))
    r = await http.get(router_url(linker) + "/", headers={"Host": "nothing"})
    assert r.status_code == 502
    for h in ("l5d-err", "l5d-success-class", "l5d-retryable"):
        assert h not in r.headers
    assert r.content == b""
