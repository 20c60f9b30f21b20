"""gRPC through the h2 router: grpcio client and server, all four call kinds."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc  # type: ignore[import-untyped]  # (grpcio ships no type stubs)
import pytest
import trio

from linkpy.config.load import load
from linkpy.errors import ConfigError
from linkpy.proto.h2 import REFUSED_STREAM
from linkpy.router.classifiers import FAILURE, RETRYABLE_FAILURE
from linkpy.router.grpc import (
    GrpcAlwaysRetryable,
    GrpcCompliant,
    GrpcDefault,
    GrpcNeverRetryable,
    GrpcRetryableStatusCodes,
)
from linkpy.transport.h2 import StreamReset

from ..conftest import StartLinker, write_disco
from .conftest import h2_config, h2_port, metric, settled
from .peers import EchoService, GrpcServer, channel


class _Port:
    def __init__(self, port: int) -> None:
        self.port = port


def disco_to(d: Path, name: str, *servers: GrpcServer) -> None:
    write_disco(d, name, *(_Port(s.port) for s in servers))  # type: ignore[arg-type]


async def test_unary_streaming_and_bidi_calls(
    start_linker: StartLinker, disco: Path, grpc_echo: GrpcServer
) -> None:
    disco_to(disco, "test.Echo", grpc_echo)
    linker = await start_linker(h2_config(disco))
    port = h2_port(linker)

    def calls() -> tuple[bytes, list[bytes], bytes, list[bytes]]:
        with channel(port) as ch:
            unary = ch.unary_unary("/test.Echo/Unary")(b"hello", timeout=10)
            server = list(ch.unary_stream("/test.Echo/ServerStream")(b"5", timeout=10))
            client = ch.stream_unary("/test.Echo/ClientStream")(
                iter([b"a", b"b", b"c"]), timeout=10
            )
            bidi = list(ch.stream_stream("/test.Echo/Bidi")(iter([b"x", b"y"]), timeout=10))
            return unary, server, client, bidi

    unary, server, client, bidi = await trio.to_thread.run_sync(calls)
    assert unary == b"hello"
    assert server == [b"msg %d" % i for i in range(5)]
    assert client == b"a|b|c"
    assert bidi == [b"echo x", b"echo y"]
    seen = grpc_echo.service.metadata[0]
    assert seen["l5d-dst-service"] == "/svc/test.Echo"
    assert seen["l5d-dst-client"] == "/#/io.l5d.fs/test.Echo"
    assert metric(linker, "rt/h2/client/#/io.l5d.fs/test.Echo/connects") == 1  # multiplexed
    assert await settled(linker) == 0


@pytest.mark.parametrize("windows", ["default", "small"])
async def test_message_larger_than_the_flow_control_window(
    start_linker: StartLinker, disco: Path, grpc_echo: GrpcServer, windows: str
) -> None:
    disco_to(disco, "test.Echo", grpc_echo)
    extra = server = ""
    if windows == "small":
        extra = (
            "  client:\n    initialStreamWindowBytes: 16384\n"
            "    initialConnectionWindowBytes: 65535\n    maxFrameBytes: 16384\n"
        )
        server = "    initialStreamWindowBytes: 8192\n    maxFrameBytes: 16384\n"
    linker = await start_linker(h2_config(disco, extra=extra, server=server))
    port = h2_port(linker)
    big = bytes(range(256)) * 8192  # 2 MiB: 32 times the default window

    def call() -> tuple[bytes, list[bytes]]:
        with channel(port) as ch:
            one = ch.unary_unary("/test.Echo/Unary")(big, timeout=30)
            many = list(ch.stream_stream("/test.Echo/Bidi")(iter([big, big[:1000]]), timeout=30))
            return one, many

    one, many = await trio.to_thread.run_sync(call)
    assert one == big
    assert many == [b"echo " + big, b"echo " + big[:1000]]
    assert await settled(linker) == 0


async def test_long_lived_stream_keeps_flowing_under_load(
    start_linker: StartLinker, disco: Path, grpc_echo: GrpcServer
) -> None:
    """A bidirectional stream exchanges messages while 1,000 other calls come and go."""
    disco_to(disco, "test.Echo", grpc_echo)
    linker = await start_linker(h2_config(disco))
    port = h2_port(linker)
    exchanged: list[bytes] = []
    go = trio.Event()

    def long_stream(token: trio.lowlevel.TrioToken) -> None:
        queue: list[bytes] = []
        cond = __import__("threading").Condition()
        stop = [False]

        def requests() -> Iterator[bytes]:
            i = 0
            while True:
                with cond:
                    while not queue and not stop[0]:
                        cond.wait()
                    if stop[0] and not queue:
                        return
                    queue.pop()
                yield b"tick %d" % i
                i += 1

        with channel(port) as ch:
            responses = ch.stream_stream("/test.Echo/Bidi")(requests(), timeout=60)
            for n in range(200):
                with cond:
                    queue.append(b"")
                    cond.notify()
                exchanged.append(next(responses))
                if n == 10:
                    trio.from_thread.run_sync(go.set, trio_token=token)
            with cond:
                stop[0] = True
                cond.notify()
            assert list(responses) == []

    def unary_calls() -> int:
        with channel(port) as ch:
            stub = ch.unary_unary("/test.Echo/Unary")
            futures = [stub.future(b"%d" % i, timeout=30) for i in range(1000)]
            return sum(1 for i, f in enumerate(futures) if f.result() == b"%d" % i)

    token = trio.lowlevel.current_trio_token()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.to_thread.run_sync, long_stream, token)
        await go.wait()
        assert await trio.to_thread.run_sync(unary_calls) == 1000
    assert exchanged == [b"echo tick %d" % i for i in range(200)]
    assert await settled(linker) == 0


async def test_grpc_status_passes_through_and_drives_retries(
    start_linker: StartLinker, disco: Path, grpc_echo: GrpcServer
) -> None:
    disco_to(disco, "test.Echo", grpc_echo)
    extra = (
        "  service:\n    responseClassifier:\n      kind: io.l5d.h2.grpc.default\n"
        "    retries:\n      budget: {minRetriesPerSec: 5, percentCanRetry: 0.0}\n"
    )
    linker = await start_linker(h2_config(disco, extra=extra))
    port = h2_port(linker)
    grpc_echo.service.fail_first = 1

    def call() -> bytes:
        with channel(port) as ch:
            return ch.unary_unary("/test.Echo/Flaky")(b"ok", timeout=10)  # type: ignore[no-any-return]

    assert await trio.to_thread.run_sync(call) == b"ok"
    assert grpc_echo.service.calls == 2  # the UNAVAILABLE answer was retried
    assert metric(linker, "rt/h2/service/svc/test.Echo/retries/total") == 1

    # a never-retryable classifier lets the status through to the client
    grpc_echo.service.calls = 0
    extra2 = "  service:\n    responseClassifier:\n      kind: io.l5d.h2.grpc.neverRetryable\n"
    other = await start_linker(h2_config(disco, extra=extra2))

    def failing() -> grpc.StatusCode:
        with channel(h2_port(other)) as ch:
            try:
                ch.unary_unary("/test.Echo/Flaky")(b"ok", timeout=10)
            except grpc.RpcError as e:
                return e.code()
        return grpc.StatusCode.OK

    assert await trio.to_thread.run_sync(failing) == grpc.StatusCode.UNAVAILABLE
    assert metric(other, "rt/h2/service/svc/test.Echo/failures") == 1
    assert await settled(linker) == 0


async def test_routing_error_gives_grpc_status(start_linker: StartLinker, disco: Path) -> None:
    linker = await start_linker(h2_config(disco))

    def call() -> tuple[grpc.StatusCode, str, dict[str, str]]:
        with channel(h2_port(linker)) as ch:
            try:
                ch.unary_unary("/nowhere.Service/Method")(b"x", timeout=10)
            except grpc.RpcError as e:
                meta = dict(e.trailing_metadata())
                return e.code(), e.details(), meta
        raise AssertionError("the call succeeded")

    code, details, meta = await trio.to_thread.run_sync(call)
    assert code == grpc.StatusCode.UNAVAILABLE
    assert "No hosts are available for /svc/nowhere.Service" in details
    assert "l5d-err" in meta
    assert await settled(linker) == 0


async def test_failure_accrual_follows_grpc_status(start_linker: StartLinker, disco: Path) -> None:
    bad = GrpcServer(EchoService(fail_first=1_000_000))
    good = GrpcServer(EchoService())
    bad.start()
    good.start()
    try:
        disco_to(disco, "test.Echo", bad, good)
        extra = (
            "  client:\n    failureAccrual:\n      kind: io.l5d.consecutiveFailures\n"
            "      failures: 2\n"
            "  service:\n    responseClassifier:\n      kind: io.l5d.h2.grpc.neverRetryable\n"
        )
        linker = await start_linker(h2_config(disco, extra=extra))

        def calls() -> list[grpc.StatusCode]:
            codes = []
            with channel(h2_port(linker)) as ch:
                stub = ch.unary_unary("/test.Echo/Flaky")
                for _ in range(30):
                    try:
                        stub(b"x", timeout=10)
                        codes.append(grpc.StatusCode.OK)
                    except grpc.RpcError as e:
                        codes.append(e.code())
            return codes

        codes = await trio.to_thread.run_sync(calls)
    finally:
        await trio.to_thread.run_sync(bad.stop)
        await trio.to_thread.run_sync(good.stop)
    # the failing endpoint is taken out after two grpc-status 14 answers
    assert bad.service.calls <= 2
    assert codes.count(grpc.StatusCode.UNAVAILABLE) == bad.service.calls
    assert codes.count(grpc.StatusCode.OK) == 30 - bad.service.calls


def test_grpc_classifier_rules() -> None:
    class Resp:
        def __init__(self, status: bytes | None) -> None:
            self.status = status

        def header(self, name: bytes) -> bytes | None:
            return self.status if name == b"grpc-status" else None

    default = GrpcDefault().mk()
    assert default(b"POST", 200, response=Resp(b"0")).success
    assert default(b"POST", 200, response=Resp(b"14")) == RETRYABLE_FAILURE
    assert default(b"POST", 200, response=Resp(b"13")) == FAILURE
    assert default(b"POST", 200, response=Resp(None)).success  # no status yet
    codes = GrpcRetryableStatusCodes(retryableStatusCodes=[4, 8]).mk()
    assert codes(b"POST", 200, response=Resp(b"8")) == RETRYABLE_FAILURE
    assert codes(b"POST", 200, response=Resp(b"14")) == FAILURE
    assert GrpcAlwaysRetryable().mk()(b"POST", None) == RETRYABLE_FAILURE
    assert GrpcNeverRetryable().mk()(b"POST", 200, response=Resp(b"14")) == FAILURE
    compliant = GrpcCompliant().mk()
    assert compliant(b"POST", 503, response=Resp(None)) == RETRYABLE_FAILURE
    assert compliant(b"POST", 500, response=Resp(None)) == FAILURE
    refused = StreamReset(REFUSED_STREAM)
    assert compliant(b"POST", None, error=refused) == RETRYABLE_FAILURE
    assert default(b"POST", None, error=refused) == FAILURE
    wider = GrpcDefault(successStatusCodes=[0, 5]).mk()
    assert wider(b"POST", 200, response=Resp(b"5")).success
    # a downstream linker's l5d-success-class wins
    assert default(b"POST", 200, success_class=b"1.0", response=Resp(b"14")).success


def test_success_codes_must_list_ok() -> None:
    text = """
routers:
- protocol: h2
  servers: [{port: 0}]
  service:
    responseClassifier:
      kind: io.l5d.h2.grpc.default
      successStatusCodes: [5]
"""
    with pytest.raises(ConfigError, match="successStatusCodes must list 0"):
        load(text)


async def test_streamed_request_is_replayed_within_the_retry_buffer(
    start_linker: StartLinker, disco: Path, grpc_echo: GrpcServer
) -> None:
    disco_to(disco, "test.Echo", grpc_echo)
    extra = (
        "  service:\n    responseClassifier:\n      kind: io.l5d.h2.grpc.default\n"
        "    retries:\n      budget: {minRetriesPerSec: 5, percentCanRetry: 0.0}\n"
    )
    linker = await start_linker(h2_config(disco, extra=extra))
    port = h2_port(linker)

    def messages(*parts: bytes) -> Iterator[bytes]:
        for p in parts:
            yield p
            time.sleep(0.05)  # the body streams: later parts arrive after the first attempt

    def call(*parts: bytes) -> tuple[grpc.StatusCode, bytes]:
        with channel(port) as ch:
            try:
                reply = ch.stream_unary("/test.Echo/FlakyStream")(messages(*parts), timeout=10)
            except grpc.RpcError as e:
                return e.code(), b""
            return grpc.StatusCode.OK, reply

    # the first attempt fails with UNAVAILABLE: the retry replays what was sent so far
    grpc_echo.service.fail_first = 1
    assert await trio.to_thread.run_sync(call, b"a", b"b", b"c") == (grpc.StatusCode.OK, b"a|b|c")
    assert grpc_echo.service.calls == 2
    assert metric(linker, "rt/h2/service/svc/test.Echo/retries/total") == 1
    # a body past retryBufferSize.requestBytes (16383) cannot be replayed
    grpc_echo.service.calls = 0
    big = b"x" * 20000
    assert await trio.to_thread.run_sync(call, big, b"tail") == (grpc.StatusCode.UNAVAILABLE, b"")
    assert grpc_echo.service.calls == 1
    assert await settled(linker) == 0
