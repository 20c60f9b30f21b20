"""The file namer.

``/#/io.l5d.fs/<file>/<residual...>`` binds to the addresses listed in ``rootDir/<file>``:
one address per line, ``host port`` with an optional weight (``host port 2.5`` or
Linkerd's ``host port * 2.5``); blank lines and ``#`` comments are ignored.  A missing
file is Neg (so a dtab can fall back).  Edits, new and deleted files take effect
without a restart: the directory is scanned every ``pollIntervalMs`` in a worker thread
(host names are resolved there too), and only changed files are announced.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from typing import Any

import attrs
import trio

from linkpy.activity import Var
from linkpy.naming import (
    Addr,
    AddrBound,
    Address,
    Bound,
    Leaf,
    Name,
    NameTree,
    Neg,
    Ok,
    Path,
    Pending,
    State,
)
from linkpy.plugin import Activity, Namer, NamerConfig, NamerContext

log = logging.getLogger("linkpy.namer.fs")


@attrs.frozen(kw_only=True)
class FsConfig(NamerConfig):
    """``kind: io.l5d.fs``."""

    #: the directory holding one file per service (relative paths are relative to
    #: the working directory, as in Linkerd)
    rootDir: str
    #: how often the directory is scanned for changes
    pollIntervalMs: int = 200

    default_prefix = "/io.l5d.fs"

    def mk(self, ctx: NamerContext) -> Namer:
        return FsNamer(self.rootDir, ctx, poll_interval=self.pollIntervalMs / 1000.0)


def parse_file(text: str) -> tuple[list[tuple[str, int, float]], list[str]]:
    """The (host, port, weight) entries of a file, and a message per bad line."""
    entries: list[tuple[str, int, float]] = []
    errors: list[str] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        if len(words) == 4 and words[2] == "*":
            words = [words[0], words[1], words[3]]
        try:
            if len(words) not in (2, 3):
                raise ValueError("expected 'host port [weight]'")
            port = int(words[1])
            if not 0 < port < 65536:
                raise ValueError(f"port {port} out of range")
            weight = float(words[2]) if len(words) == 3 else 1.0
            if weight < 0 or weight != weight:
                raise ValueError(f"bad weight {words[2]}")
            entries.append((words[0], port, weight))
        except ValueError as e:
            errors.append(f"line {n}: {e}: {raw.strip()!r}")
    return entries, errors


def _resolve(host: str) -> list[str]:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        return [host]
    except OSError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return []
    return sorted({str(i[4][0]) for i in infos})


Scan = tuple[dict[str, tuple[float, int]] | None, dict[str, Addr], list[str]]


def _scan(root: str, known: Mapping[str, tuple[float, int]]) -> Scan:
    """Runs in a worker thread: the files' stamps (None when the directory cannot be
    read), the Addrs of the files that changed, and warnings."""
    stamps: dict[str, tuple[float, int]] = {}
    changed: dict[str, Addr] = {}
    warnings: list[str] = []
    try:
        entries = list(os.scandir(root))
    except OSError as e:
        return None, {}, [f"cannot read {root}: {e.strerror}"]
    for entry in entries:
        if entry.name.startswith(".") or not entry.is_file():
            continue
        try:
            st = entry.stat()
        except OSError:
            continue
        stamp = (st.st_mtime, st.st_size)
        stamps[entry.name] = stamp
        if known.get(entry.name) == stamp:
            continue
        try:
            with open(entry.path, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError as e:
            warnings.append(f"cannot read {entry.path}: {e.strerror}")
            continue
        parsed, errors = parse_file(text)
        warnings.extend(f"{entry.path} {e}" for e in errors)
        addresses = []
        for host, port, weight in parsed:
            ips = _resolve(host)
            if not ips:
                warnings.append(f"{entry.path}: cannot resolve {host}")
            addresses += [Address(ip, port, weight) for ip in ips]
        changed[entry.name] = AddrBound(addresses)
    return stamps, changed, warnings


class FsNamer(Namer):
    """Watches a directory of files."""

    def __init__(self, root: str, ctx: NamerContext, *, poll_interval: float = 0.2) -> None:
        self.root = root
        self.poll_interval = poll_interval
        self.metrics = ctx.metrics
        self.ready = False
        self._stamps: dict[str, tuple[float, int]] = {}
        self._addrs: dict[str, Var[Addr]] = {}
        self._trees: dict[Path, Activity] = {}
        self._updates = ctx.metrics.counter("updates")
        self._warnings = ctx.metrics.counter("errors")
        self._last_warnings: set[str] = set()

    def lookup(self, path: Path) -> Activity:
        var = self._trees.get(path)
        if var is None:
            var = Var(self._tree(path))
            self._trees[path] = var
        return var

    def _tree(self, path: Path) -> State[NameTree[Name]]:
        if not self.ready:
            return Pending
        if not path.elems:
            return Ok(Neg)
        name = path.elems[0].decode("utf-8", "replace")
        addr = self._addrs.get(name)
        if addr is None:
            return Ok(Neg)
        bound = Bound(self.prefix.concat(Path((path.elems[0],))), path.drop(1), addr)
        return Ok(Leaf(bound))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self._rescan()
        task_status.started()
        while True:
            await trio.sleep(self.poll_interval)
            await self._rescan()

    async def _rescan(self) -> None:
        stamps, changed, warnings = await trio.to_thread.run_sync(
            _scan, self.root, dict(self._stamps)
        )
        new_warnings = set(warnings) - self._last_warnings
        for w in sorted(new_warnings):
            log.warning("io.l5d.fs: %s", w)
            self._warnings.incr()
        self._last_warnings = set(warnings)
        if stamps is None:
            # the directory is gone or unreadable: keep the last good answers
            if not self.ready:
                self.ready = True
                for path, tree in list(self._trees.items()):
                    tree.set(self._tree(path))
            return
        self._stamps = stamps
        existence_changed = not self.ready
        for name, addr in changed.items():
            var = self._addrs.get(name)
            if var is None:
                self._addrs[name] = Var(addr)
                existence_changed = True
            else:
                var.set(addr)
            self._updates.incr()
        for name in [n for n in self._addrs if n not in stamps]:
            self._addrs.pop(name).set(Addr.Neg)
            existence_changed = True
        self.ready = True
        if existence_changed:
            for path, tree in list(self._trees.items()):
                tree.set(self._tree(path))
        # forget the lookups nobody follows any more
        for path in [p for p, v in self._trees.items() if not v.observed]:
            del self._trees[path]

    def bound_names(self) -> list[str]:
        return sorted(self.prefix.concat(Path.utf8(n)).show() for n in self._addrs)

    def state(self) -> Mapping[str, Any]:
        return {
            "rootDir": self.root,
            "files": {n: _addr_state(v.sample()) for n, v in sorted(self._addrs.items())},
        }


def _addr_state(addr: Addr) -> list[str] | str:
    if isinstance(addr, AddrBound):
        return sorted(a.show() for a in addr.addresses)
    return repr(addr)
