"""Writes docs/benchmarks.md from the results the scenarios saved.

Every scenario saves ``bench/results/<name>.json``: a title, the machine it ran on,
the date, the command, and one or more tables.  This module renders all of them; no
figure in docs/benchmarks.md is typed by hand.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "benchmarks.md"

#: The order sections appear in (others follow alphabetically).
ORDER = ["http1", "latency", "h2", "memory", "naming", "balancing", "discovery"]


def machine() -> dict[str, str]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for dist in ("trio", "httptools", "h2", "attrs"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return {
        "cpu": cpu or platform.processor(),
        "cores": str(os.cpu_count()),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": ", ".join(f"{k} {v}" for k, v in versions.items()),
        "commit": _git_commit(),
    }


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        return out.stdout.strip()
    except OSError:
        return ""


def save(
    name: str,
    title: str,
    tables: Sequence[dict[str, Any]],
    notes: Sequence[str] = (),
    command: str = "",
) -> None:
    """Save one scenario's results (each table: ``{"columns": [...], "rows": [[...]]}``)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = {
        "title": title,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "command": command or "tox -e bench -- " + name,
        "tables": list(tables),
        "notes": list(notes),
    }
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=1) + "\n")


def _cell(v: Any) -> str:
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) >= 100:
            return f"{v:,.0f}"
        if abs(v) >= 1:
            return f"{v:.2f}"
        return f"{v:.3g}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def render() -> str:
    out = [
        "# Benchmarks",
        "",
        "Written by the harness in `bench/` (`tox -e bench`, see bench/README.md); every",
        "figure below comes from a run, beside its baseline measured in the same run on the",
        "same machine. Re-run a single scenario with `tox -e bench -- <scenario>`.",
        "",
    ]
    files = {p.stem: p for p in RESULTS.glob("*.json")}
    names = [n for n in ORDER if n in files] + sorted(n for n in files if n not in ORDER)
    for name in names:
        data = json.loads(files[name].read_text())
        m = data["machine"]
        out += [f"## {data['title']}", ""]
        for table in data["tables"]:
            if table.get("caption"):
                out += [table["caption"], ""]
            cols = table["columns"]
            out.append("| " + " | ".join(cols) + " |")
            out.append("|" + "|".join("---" for _ in cols) + "|")
            for row in table["rows"]:
                out.append("| " + " | ".join(_cell(c) for c in row) + " |")
            out.append("")
        for note in data.get("notes", []):
            out += [note, ""]
        out += [
            f"*Run {data['date']} on {m['cpu']} ({m['cores']} cores), Linux {m['kernel']},"
            f" Python {m['python']}; {m['versions']}; commit {m['commit']}."
            f" Command: `{data['command']}`.*",
            "",
        ]
    return "\n".join(out)


def write() -> None:
    DOC.write_text(render())


if __name__ == "__main__":
    write()
    sys.exit(0)
