"""The ``linkpy`` command line (also ``python -m linkpy``).

linkpy run CONFIG                  serve until SIGTERM/SIGINT, then drain and exit 0
linkpy check CONFIG                exit 0 if the config is valid, 2 with the errors if not
linkpy dtab delegate --dtab DTAB [--config CONFIG] PATH
                                   print the /delegator.json tree of PATH
linkpy demo                        a router on the embedded default with two backends
"""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import sys
from collections.abc import Callable, Sequence

import trio

from . import __version__
from .errors import ConfigError, ParseError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="linkpy",
        description="A Linkerd-1.x-style service-mesh router on trio.",
    )
    p.add_argument("--version", action="version", version=f"linkpy {__version__}")
    p.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log verbosity (default INFO)",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser("run", help="serve the routers of a config file until SIGTERM/SIGINT")
    run.add_argument("config", help="the config file (YAML or JSON; - for standard input)")

    check = sub.add_parser("check", help="validate a config file (exit 0 if valid, 2 if not)")
    check.add_argument("config", help="the config file")

    dtab = sub.add_parser("dtab", help="dtab tools")
    dsub = dtab.add_subparsers(dest="dtab_command", metavar="DTAB_COMMAND", required=True)
    dele = dsub.add_parser(
        "delegate",
        help="print how a path binds through a dtab (the /delegator.json tree)",
        description="Print the delegation tree of PATH through DTAB, as /delegator.json shows it. "
        "With --config, the config's namers bind the names (and its first router's dtab is "
        "prepended unless --router names another).",
    )
    dele.add_argument("--dtab", default="", help="the dtab (default: empty)")
    dele.add_argument("--config", help="a config file whose namers to use")
    dele.add_argument("--router", help="the router whose dtab to prepend (default: the first)")
    dele.add_argument(
        "--no-router-dtab", action="store_true", help="use only --dtab, not the router's dtab"
    )
    dele.add_argument("path", help="the path, e.g. /svc/users")

    demo = sub.add_parser(
        "demo",
        help="run a router on the embedded quickstart config with two demo backends",
        description="Start two tiny local backends, describe them to the file namer, and "
        "run a router on 127.0.0.1:4140 (admin 127.0.0.1:9990) until Ctrl-C.",
    )
    demo.add_argument("--port", type=int, default=4140, help="router port (default 4140)")
    demo.add_argument("--admin-port", type=int, default=9990, help="admin port (default 9990)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # httpx logs every request at INFO: each namer watch reconnecting would be a line
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        if args.command == "run":
            return trio.run(_run, args.config)
        if args.command == "check":
            return _check(args.config)
        if args.command == "dtab":
            return trio.run(_delegate, args)
        if args.command == "demo":
            from .demo import run_demo

            return trio.run(run_demo, args.port, args.admin_port)
    except ConfigError as e:
        print(f"linkpy: invalid config:\n{e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 2


def _check(path: str) -> int:
    from .config.load import load_file

    cfg = load_file(path)
    routers = ", ".join(r.name for r in cfg.routers)
    print(f"{path}: valid ({len(cfg.routers)} router(s): {routers}; {len(cfg.namers)} namer(s))")
    return 0


def os_errors(group: BaseExceptionGroup[OSError]) -> list[OSError]:
    """The OSErrors of a (nested) exception group."""
    out: list[OSError] = []
    for e in group.exceptions:
        if isinstance(e, BaseExceptionGroup):
            out += os_errors(e)
        elif isinstance(e, OSError):
            out.append(e)
    return out


#: Allocations (less deallocations) between two young-generation collections.
GC_YOUNG_THRESHOLD = 10_000


def tune_gc() -> None:
    """Once the linker serves: keep the collector off the hot path.

    What start-up built (config, plugins, dtabs, metrics) lives as long as the
    process: ``gc.freeze()`` moves it out of the collected generations, so full
    collections stop walking it.  Requests allocate many short-lived containers
    (an HTTP/2 request: h2 frames, events, stream state) that reference counting
    frees; with Python's default threshold (700) young collections ran about every
    15 proxied h2 requests and took some 5 % of the CPU.  A larger threshold makes
    them rare; cyclic garbage is still collected.
    """
    gc.collect()
    gc.freeze()
    _, mid, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, mid, old)


async def serve_until_signalled(linker: object, on_ready: Callable[[], None] | None = None) -> None:
    from .linker import Linker

    assert isinstance(linker, Linker)
    log = logging.getLogger("linkpy")
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async with trio.open_nursery() as nursery:

            async def run(
                *, task_status: trio.TaskStatus[object] = trio.TASK_STATUS_IGNORED
            ) -> None:
                await linker.run(task_status=task_status)
                # stopped otherwise than by a signal (/admin/shutdown): stop waiting for one
                nursery.cancel_scope.cancel()

            await nursery.start(run)
            tune_gc()
            if on_ready is not None:
                on_ready()

            async def on_signal() -> None:
                async for signum in signals:
                    if signum == signal.SIGHUP:
                        try:
                            await linker.reload()
                        except ConfigError as e:
                            log.error("reload refused, the running config stays:\n%s", e)
                        continue
                    log.info(
                        "received %s: draining (grace %.1fs)",
                        signal.Signals(signum).name,
                        linker.shutdown_grace,
                    )
                    await linker.shutdown()
                    return

            nursery.start_soon(on_signal)


async def _run(config_path: str) -> int:
    from .config.load import load_file
    from .linker import Linker

    cfg = load_file(config_path)
    linker = Linker(cfg)
    failed: list[OSError] = []
    try:
        await serve_until_signalled(linker)
    except* OSError as group:
        failed.extend(os_errors(group))
    if failed:
        print(f"linkpy: cannot serve: {failed[0]}", file=sys.stderr)
        return 1
    logging.getLogger("linkpy").info("stopped")
    return 0


async def _delegate(args: argparse.Namespace) -> int:
    import json

    from .admin.handlers import explain
    from .config.load import load_file
    from .config.schema import LinkerConfig, ProtocolName, RouterConfig, ServerConfig
    from .linker import Linker
    from .naming import Dtab, Path, delegate_json

    if args.dtab_command != "delegate":
        return 2
    try:
        dtab = Dtab.read(args.dtab)
    except ParseError as e:
        print(f"Invalid dtab: {e}", file=sys.stderr)
        return 2
    try:
        path = Path.read(args.path)
    except ParseError as e:
        print(f"Invalid path: {e}", file=sys.stderr)
        return 2
    if args.config:
        cfg = load_file(args.config)
    else:
        cfg = LinkerConfig(
            routers=[RouterConfig(protocol=ProtocolName("http"), servers=[ServerConfig(port=0)])]
        )
    routers = {r.name: r for r in cfg.routers}
    router = routers.get(args.router) if args.router else cfg.routers[0]
    if router is None:
        print(f"no router labelled {args.router!r} (known: {', '.join(routers)})", file=sys.stderr)
        return 2
    if args.config and not args.no_router_dtab:
        dtab = Dtab.read(router.dtab) + dtab
    linker = Linker(cfg)
    interp = next(rt.router.interpreter for rt in linker.routers if rt.router.label == router.name)
    async with trio.open_nursery() as nursery:
        await nursery.start(linker.inet.run)
        for _, namer in linker.namers:
            await nursery.start(namer.run)
        tree = await explain(interp, dtab, path)
        nursery.cancel_scope.cancel()
    if tree is None:
        print("Request timed out.", file=sys.stderr)
        return 1
    if isinstance(tree, BaseException):
        print(str(tree), file=sys.stderr)
        return 1
    print(json.dumps(delegate_json(tree), indent=2))
    return 0
