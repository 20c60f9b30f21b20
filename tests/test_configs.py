"""Every example config in configs/ is valid and builds."""

from __future__ import annotations

from pathlib import Path

import pytest

from linkpy.cli import main
from linkpy.config.load import load_file
from linkpy.linker import Linker

from .conftest import ROOT

#: Linker configs (configs/k8s and configs/marathon hold deployment manifests).
CONFIGS = sorted(
    p
    for p in (ROOT / "configs").rglob("*.yaml")
    if "k8s" not in p.parts and "marathon" not in p.parts
)


def test_there_are_examples() -> None:
    assert any(p.name == "quickstart.yaml" for p in CONFIGS)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_example_config(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    assert main(["check", str(path)]) == 0
    Linker(load_file(str(path)))  # builds without opening a socket
