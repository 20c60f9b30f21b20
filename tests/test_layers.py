"""The layering rules of DESIGN.md section 2, checked on the import statements."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "linkpy"

#: Modules no pure layer may import (no I/O, no event loop).
IO_MODULES = {
    "trio",
    "socket",
    "ssl",
    "selectors",
    "asyncio",
    "threading",
    "subprocess",
    "httpx",
    "urllib.request",
    "http.client",
    "multiprocessing",
}

#: For each layer: the linkpy modules it may import.
ALLOWED: dict[str, set[str]] = {
    "naming": {"linkpy.errors", "linkpy.naming"},
    "proto": {"linkpy.errors", "linkpy.proto", "linkpy.naming"},
}


def imports_of(path: Path) -> set[str]:
    """Absolute names of every module a file imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(), str(path))
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    package = parts if path.name == "__init__.py" else parts[:-1]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
    return out


def files(layer: str) -> list[Path]:
    return sorted((PKG / layer).rglob("*.py"))


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_pure_layers_do_no_io(layer: str) -> None:
    found = files(layer)
    assert found or layer == "proto"
    for f in found:
        for mod in imports_of(f):
            top = mod.split(".")[0]
            assert mod not in IO_MODULES and top not in IO_MODULES, f"{f}: imports {mod}"
            if top == "linkpy":
                assert any(mod == a or mod.startswith(a + ".") for a in ALLOWED[layer]), (
                    f"{f}: the {layer} layer may not import {mod}"
                )


def test_naming_imports_without_trio() -> None:
    # Importing the pure core in a fresh interpreter loads no I/O module.
    import subprocess

    loaded_by_attrs = {"threading"}  # attrs itself imports threading (for a lock)
    code = (
        "import sys, linkpy.naming; "
        f"bad = [m for m in {sorted(IO_MODULES - loaded_by_attrs)!r} if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
