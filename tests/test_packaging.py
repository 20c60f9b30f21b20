"""setup.cfg lists every package, and the entry-point groups of DESIGN.md."""

from __future__ import annotations

import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def setup_cfg() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return cfg


def test_every_package_is_listed() -> None:
    cfg = setup_cfg()
    listed = set(cfg["options"]["packages"].split())
    dirs = {
        ".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "linkpy").rglob("__init__.py")
    }
    plugin_dirs = {p.parent.name for p in (ROOT / "plugins").glob("*/__init__.py")}
    assert dirs | plugin_dirs == listed
    mapping = cfg["options"]["package_dir"]
    for name in plugin_dirs:
        assert f"{name} = plugins/{name}" in mapping


def test_entry_point_groups() -> None:
    groups = set(setup_cfg()["options.entry_points"])
    assert {
        "console_scripts",
        "linkpy.namers",
        "linkpy.identifiers",
        "linkpy.transformers",
        "linkpy.telemeters",
        "linkpy.classifiers",
    } <= groups


def test_runtime_dependencies_are_bounded_and_documented() -> None:
    reqs = setup_cfg()["options"]["install_requires"].split()
    doc = (ROOT / "docs" / "dependencies.md").read_text()
    for req in reqs:
        name, _, bound = req.partition(">=")
        assert bound, f"{req} has no lower bound"
        assert f"| {name} | {bound} |" in doc, f"{name} is not explained in docs/dependencies.md"
