"""The examples of docs/dtabs.md bind as the page says."""

from __future__ import annotations

import re
from pathlib import Path as FsPath

import pytest
import yaml

from linkpy.naming import (
    AddrBound,
    Address,
    Bound,
    Dtab,
    Empty,
    Fail,
    Leaf,
    Name,
    NameTree,
    Neg,
    Ok,
    Path,
    State,
    bind,
)

from .naming.helpers import configured

DOC = FsPath(__file__).resolve().parent.parent / "docs" / "dtabs.md"
FILES = {"users", "web", "web-v2"}


def fs_namer(rest: Path) -> State[NameTree[Name]]:
    """The file namer over a directory holding FILES."""
    if not rest.elems or rest.elems[0].decode() not in FILES:
        return Ok(Neg)
    name = rest.elems[0].decode()
    addr = AddrBound([Address("127.0.0.1", 8000 + len(name))])
    return Ok(Leaf(Bound(Path.utf8("#", "io.l5d.fs", name), rest.drop(1), addr)))


def examples() -> list[dict[str, str]]:
    blocks = re.findall(r"```example\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) >= 10
    return [yaml.safe_load(b) for b in blocks]


@pytest.mark.parametrize("example", examples(), ids=lambda e: str(e["path"]))
def test_dtab_example(example: dict[str, str]) -> None:
    dtab = Dtab.read(example["dtab"])
    r = bind(dtab, Path.read(example["path"]), configured(**{"io.l5d.fs": fs_namer}))
    assert isinstance(r.state, Ok), r.state
    tree = r.state.value
    expected = example["binds"].strip()
    if expected == "neg":
        assert tree.eval() is None and tree.simplified() is Neg
    elif expected == "fail":
        assert tree is Fail
    elif expected == "empty":
        assert tree is Empty
    else:
        got = {(b.id_show(), b.residual.show()) for b in tree.eval() or ()}
        want = set()
        for item in expected.split(","):
            words = item.split()
            want.add((words[0], words[2] if len(words) == 3 else "/"))
        assert got == want
