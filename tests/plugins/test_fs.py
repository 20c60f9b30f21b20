"""The file namer: parsing, live edits, Neg for a missing file."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from linkpy.metrics import Metrics
from linkpy.naming import AddrBound, Address, Bound, Leaf, Neg, Ok, Pending
from linkpy.naming import Path as NPath
from linkpy.plugin import NamerContext
from linkpy_fs import FsConfig, FsNamer, parse_file


@pytest.mark.parametrize(
    ("text", "entries", "bad"),
    [
        ("127.0.0.1 8080\n", [("127.0.0.1", 8080, 1.0)], 0),
        (
            "# comment\n\n10.0.0.1 80 2.5\n10.0.0.2 81 * 0.5\n",
            [("10.0.0.1", 80, 2.5), ("10.0.0.2", 81, 0.5)],
            0,
        ),
        ("host 80 # trailing comment\n", [("host", 80, 1.0)], 0),
        ("justahost\n127.0.0.1 99999\n127.0.0.1 80 -1\n127.0.0.1 80 x\n", [], 4),
    ],
)
def test_parse_file(text: str, entries: list[tuple[str, int, float]], bad: int) -> None:
    got, errors = parse_file(text)
    assert got == entries
    assert len(errors) == bad


def namer(root: Path) -> FsNamer:
    n = FsConfig(rootDir=str(root), pollIntervalMs=10).mk(NamerContext(metrics=Metrics()))
    n.prefix = NPath.read("/#/io.l5d.fs")
    assert isinstance(n, FsNamer)
    return n


async def test_lookups_follow_the_directory(tmp_path: Path, nursery: trio.Nursery) -> None:
    (tmp_path / "users").write_text("127.0.0.1 8080\n127.0.0.1 8081 3\n")
    fs = namer(tmp_path)
    early = fs.lookup(NPath.read("/users"))
    assert early.sample() is Pending  # nothing scanned yet
    await nursery.start(fs.run)
    users = fs.lookup(NPath.read("/users/v1"))
    st = users.sample()
    assert isinstance(st, Ok) and isinstance(st.value, Leaf)
    bound = st.value.value
    assert isinstance(bound, Bound)
    assert bound.id == NPath.read("/#/io.l5d.fs/users")
    assert bound.residual == NPath.read("/v1")
    assert bound.sample() == AddrBound(
        [Address("127.0.0.1", 8080), Address("127.0.0.1", 8081, 3.0)]
    )
    assert early.sample() != Pending
    missing = fs.lookup(NPath.read("/web"))
    assert missing.sample() == Ok(Neg)
    seen: list[object] = []
    missing.observe(seen.append)
    users.observe(seen.append)

    # a new file: the Neg lookup becomes bound
    (tmp_path / "web").write_text("127.0.0.1 9000\n")
    while missing.sample() == Ok(Neg):
        await missing.wait_change(missing.version)
    assert isinstance(missing.sample(), Ok)

    # an edit: the address var changes, the tree does not
    addr = bound.addr
    assert hasattr(addr, "wait_change")
    version = addr.version  # type: ignore[attr-defined]
    (tmp_path / "users").write_text("127.0.0.1 7000\n")
    await addr.wait_change(version)
    assert bound.sample() == AddrBound([Address("127.0.0.1", 7000)])
    assert users.sample() == st

    # a deletion: Neg again
    (tmp_path / "users").unlink()
    await users.wait_change(users.version)
    assert users.sample() == Ok(Neg)
    assert fs.bound_names() == ["/#/io.l5d.fs/web"]


async def test_a_missing_directory_is_neg_and_counted(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    fs = namer(tmp_path / "nope")
    await nursery.start(fs.run)
    assert fs.lookup(NPath.read("/users")).sample() == Ok(Neg)
    assert fs.metrics.counter("errors").value == 1


async def test_unused_lookups_are_forgotten(tmp_path: Path) -> None:
    # A scanner asking for junk names must not make the namer grow (Linkerd #1766).
    fs = namer(tmp_path)
    await fs._rescan()
    for i in range(100):
        fs.lookup(NPath.utf8(f"junk{i}"))
    kept = fs.lookup(NPath.read("/kept"))
    kept.observe(lambda _: None)
    await fs._rescan()
    assert list(fs._trees) == [NPath.read("/kept")]
