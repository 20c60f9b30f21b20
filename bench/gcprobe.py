"""An experiment for the latency scenario: linkpy's garbage-collector pauses.

Runs ``linkpy run CONFIG`` (linkpy.cli.main, unchanged) in this process with a
``gc.callbacks`` hook that times every collection, and writes the pauses per generation
to ``--out`` when the router exits (those from ``--freeze-after`` seconds on).  With
``--freeze``, ``gc.freeze()`` is called once, ``--freeze-after`` seconds after start
(the router is serving by then): the objects
alive at that point (modules, config, routing tables) leave the collector's generations,
so that later full collections do not walk them, as performance.md 7.2 suggests.

    python -m bench.gcprobe --out gc.json [--freeze] -- run bench/out/linkpy/http.yaml
"""

from __future__ import annotations

import argparse
import atexit
import gc
import json
import threading
import time
from typing import Any


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--freeze", action="store_true")
    p.add_argument("--freeze-after", type=float, default=2.0)
    p.add_argument("linkpy_args", nargs=argparse.REMAINDER)
    args = p.parse_args()
    pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
    started = [0.0]
    #: Collections are counted from then on (start-up's are not), with or without freeze.
    measure_from = time.monotonic() + args.freeze_after

    def hook(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        elif time.monotonic() >= measure_from:
            pauses[int(info["generation"])].append(time.perf_counter() - started[0])

    def write() -> None:
        out = {
            str(g): {"count": len(v), "max_ms": max(v, default=0) * 1000, "total_ms": sum(v) * 1000}
            for g, v in pauses.items()
        }
        out["frozen"] = {"count": gc.get_freeze_count(), "max_ms": 0.0, "total_ms": 0.0}
        with open(args.out, "w") as f:
            json.dump(out, f)

    gc.callbacks.append(hook)
    atexit.register(write)
    if args.freeze:
        timer = threading.Timer(args.freeze_after, gc.freeze)
        timer.daemon = True
        timer.start()
    from linkpy.cli import main as linkpy_main

    rest = [a for a in args.linkpy_args if a != "--"]
    return linkpy_main(rest)


if __name__ == "__main__":
    raise SystemExit(main())
