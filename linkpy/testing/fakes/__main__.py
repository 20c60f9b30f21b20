"""``python -m linkpy.testing.fakes {consul,kubernetes,marathon}``: run one emulator.

It listens on ``--host`` (default 127.0.0.1) and ``--port`` (default 0: an ephemeral
port), prints ``<kind> emulator listening on http://HOST:PORT`` and serves until
SIGINT or SIGTERM (then exits with status 0).  ``--load FILE`` (YAML or JSON) seeds
it; see each emulator's ``load`` method for the file format.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import trio
import yaml

from ._http import FakeServer
from .consul import FakeConsul
from .kubernetes import FakeKubernetes
from .marathon import FakeMarathon

_EXAMPLES = """\
--load files (YAML or JSON), one example per kind:

  consul:      services:
                 - {name: web, address: 10.0.0.1, port: 8080, tags: [prod],
                    checks: {"service:web": passing}}
  kubernetes:  endpoints:
                 - {namespace: prod, name: web, addresses: [10.0.0.1], ports: {http: 8080}}
               endpointslices:
                 - {namespace: prod, name: web-1, service: web, ports: {http: 8080},
                    endpoints: [{address: 10.0.0.1, node_name: n1}]}
  marathon:    apps:
                 - {id: /web, tasks: [{host: srv1.example.com, ports: [31000]}]}
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m linkpy.testing.fakes",
        description="Run an emulator of a discovery backend's HTTP API.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="kind", metavar="KIND", required=True)
    consul = sub.add_parser("consul", help="the Consul HTTP API (v1)")
    consul.add_argument("--datacenter", default="dc1", help="the agent's datacenter (dc1)")
    k8s = sub.add_parser("kubernetes", help="the Kubernetes API (endpoints, slices, ...)")
    k8s.add_argument(
        "--mode",
        choices=["proxy", "in-cluster", "open"],
        default="proxy",
        help="kubectl proxy (no auth, Host checked), in-cluster (bearer token), open",
    )
    k8s.add_argument("--token", default="fake-service-account-token", help="in-cluster token")
    marathon = sub.add_parser("marathon", help="the Marathon REST API (v2) and event stream")
    marathon.add_argument("--prefix", default="", help="serve under this path (e.g. /marathon)")
    marathon.add_argument("--http-credentials", metavar="USER:PASS", help="HTTP basic auth")
    for s in (consul, k8s, marathon):
        s.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
        s.add_argument("--port", type=int, default=0, help="port (0: any free port)")
        s.add_argument("--load", metavar="FILE", type=Path, help="YAML/JSON file seeding state")
    return p


def make_fake(args: argparse.Namespace) -> FakeServer:
    """The emulator the arguments ask for, seeded from ``--load``."""
    fake: FakeConsul | FakeKubernetes | FakeMarathon
    if args.kind == "consul":
        fake = FakeConsul(datacenter=args.datacenter)
    elif args.kind == "kubernetes":
        fake = FakeKubernetes(mode=args.mode, token=args.token)
    else:
        credentials = None
        if args.http_credentials:
            user, _, password = args.http_credentials.partition(":")
            credentials = (user, password)
        fake = FakeMarathon(prefix=args.prefix, http_credentials=credentials)
    if args.load is not None:
        data: Any = yaml.safe_load(args.load.read_text())
        if not isinstance(data, Mapping):
            raise SystemExit(f"{args.load}: expected a mapping at the top level")
        fake.load(data)
    return fake


async def run(
    args: argparse.Namespace, *, task_status: trio.TaskStatus[FakeServer] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve the emulator until cancelled; ``task_status.started(fake)`` once listening."""
    fake = make_fake(args)
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(fake.serve, args.host, args.port))
        print(f"{fake.kind} emulator listening on {fake.url}", flush=True)
        task_status.started(fake)


async def serve_until_signalled(args: argparse.Namespace) -> None:
    """Run the emulator until SIGINT or SIGTERM, then stop cleanly."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(run, args)
            async for signum in signals:
                print(f"stopped ({signal.Signals(signum).name})", file=sys.stderr)
                nursery.cancel_scope.cancel()
                break


def main(argv: Sequence[str] | None = None) -> int:
    trio.run(serve_until_signalled, build_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
