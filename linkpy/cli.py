"""The ``linkpy`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="linkpy", description="A Linkerd-1.x-style service-mesh router on trio."
    )
    p.add_argument("--version", action="version", version=f"linkpy {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("demo", help="run a router with two local demo backends")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command is None:
        build_parser().print_help()
        return 2
    print("linkpy: the router is not built yet; see the README.", file=sys.stderr)
    return 2
