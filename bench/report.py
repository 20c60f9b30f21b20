"""Writes docs/benchmarks.md from the results the scenarios saved.

Every scenario saves ``bench/results/<name>.json``: a title, the machine it ran on,
the date, the commands, one or more tables, notes, and the targets it checks.  This
module renders all of them; no figure in docs/benchmarks.md is typed by hand.
"""

from __future__ import annotations

import functools
import json
import math
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

#: performance.md 3.2: one trio checkpoint (``await trio.sleep(0)``) on the reference box.
REFERENCE_CHECKPOINT_US = 2.7

CALIBRATE = """
import time, trio
async def main():
    n = 50000
    best = 1e9
    for _ in range(3):
        t = time.process_time()
        for _ in range(n):
            await trio.sleep(0)
        best = min(best, (time.process_time() - t) / n * 1e6)
    print(best)
trio.run(main)
t = time.process_time()
for i in range(3000000):
    pass
print((time.process_time() - t) / 3)
"""


def scenarios() -> list[str]:
    from bench import SCENARIOS

    return list(SCENARIOS)


@functools.cache
def machine() -> dict[str, str]:
    """The machine, the versions, and how fast the box is today (measured once per run)."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for dist in ("trio", "httptools", "h11", "hpack", "attrs", "py-spy"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    from . import tools

    tv = tools.tool_versions()
    cal = subprocess.run(
        tools.pinned(tools.router_cpu(), [sys.executable, "-c", CALIBRATE]),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    mem = ""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem = f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB"
    return {
        "cpu": cpu or platform.processor(),
        "cores": str(os.cpu_count()),
        "memory": mem,
        "kernel": platform.release(),
        "os": _os_name(),
        "python": platform.python_version(),
        "versions": ", ".join(f"{k} {v}" for k, v in versions.items()),
        "tools": ", ".join(f"{k} {v}" for k, v in tv.items()),
        "commit": _git_commit(),
        "pinning": tools.pinning(),
        "checkpoint_us": f"{float(cal[0]):.2f}",
        "loop_s": f"{float(cal[1]):.3f}",
    }


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.system()


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "linkpy", "plugins"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return out.stdout.strip() + (" (linkpy/ modified)" if dirty else "")
    except OSError:
        return ""


def target(
    label: str,
    measured: float,
    op: str,
    goal: float,
    *,
    unit: str = "",
    why: str = "",
) -> dict[str, Any]:
    """A target checked by a scenario: ``measured op goal`` (op is ``>=`` or ``<=``)."""
    if math.isnan(measured):
        met = False
    else:
        met = measured >= goal if op == ">=" else measured <= goal
    return {
        "label": label,
        "measured": measured,
        "op": op,
        "goal": goal,
        "unit": unit,
        "met": met,
        "why": why,
    }


#: What would close a missed target, by the start of its label: the harness's words for
#: the *what would close it* column (no figures: those come from the runs).
CLOSE: dict[str, str] = {
    "HTTP/1.1 requests/s": "Not on this box's core for any trio router: the pass-through "
    "proxy, which does nothing but the four socket calls, stays below the goal (its row "
    "in the HTTP/1.1 table). A faster core, or an interpreter built with PGO and LTO, "
    "raises both; on one core, fewer Python calls per request (see *Where the time "
    "goes*); beyond one core, one router process per core (SO_REUSEPORT).",
    "HTTP/1.1 linkpy / pass-through": "Fewer Python calls per request in the service "
    "stack, the attempt and the header rewrite (see *Where the time goes*).",
    "added p99": "A quieter box first: compare the pass-through proxy's tails in the "
    "same run, and the same rate in the GC experiment of the latency scenario. On the "
    "router's side, less CPU per request at low load, where each request waits for "
    "two wake-ups from epoll and runs with cold caches.",
    "HTTP/2 requests/s": "Less CPU per request in the codec (HPACK's work per header, "
    "on both connections) and in the wake-ups of the stream's task (see the h2 "
    "profile); compare the gap with the min–max of the runs, which this box spreads "
    "wider than that.",
    "RSS": "Fewer modules kept after start-up (importlib.metadata, yaml and cattrs are "
    "only needed to load and reload the config), and less per connection (the cancel "
    "scope and trio's wait frames of an idle connection).",
    "cached binding": "A binding cache keyed by the name alone when no local dtab is "
    "set (no tuple key per request).",
    "throughput lost": "Fewer Python steps per access log line: the log's task "
    "formats each batch on the router's thread (every 200 ms), and only the write goes "
    "to a worker thread.",
}


def _close(t: dict[str, Any]) -> str:
    if t["met"]:
        return ""
    for start, text in CLOSE.items():
        if t["label"].startswith(start):
            return text
    return ""


def _gap(t: dict[str, Any]) -> str:
    m, g, unit = t["measured"], t["goal"], t["unit"]
    if isinstance(m, float) and math.isnan(m):
        return "not measured"
    if t["op"] == ">=":
        if m >= g:
            return f"met ({m / g:.2f}× the goal)" if g else "met"
        return f"short by {_num(g - m)} {unit} (at {m / g * 100:.0f} % of the goal)".replace(
            "  ", " "
        )
    if m <= g:
        return f"met ({_num(g - m)} {unit} to spare)".replace("  ", " ")
    return f"over by {_num(m - g)} {unit} ({m / g:.1f}× the goal)".replace("  ", " ")


def save(
    name: str,
    title: str,
    tables: Sequence[dict[str, Any]],
    notes: Sequence[str] = (),
    command: str = "",
    commands: Sequence[str] = (),
    targets: Sequence[dict[str, Any]] = (),
) -> None:
    """Save one scenario's results (each table: ``{"columns": [...], "rows": [[...]]}``)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = {
        "title": title,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "command": command or "tox -e bench -- " + name,
        "commands": list(commands),
        "tables": list(tables),
        "notes": list(notes),
        "targets": list(targets),
    }
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")


def _num(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def _cell(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        return _num(v)
    if isinstance(v, int):
        return f"{v:,}"
    if v is None:
        return "–"
    return str(v)


def _load() -> list[tuple[str, dict[str, Any]]]:
    files = {p.stem: p for p in RESULTS.glob("*.json")}
    order = scenarios()
    names = [n for n in order if n in files] + sorted(n for n in files if n not in order)
    return [(n, json.loads(files[n].read_text())) for n in names]


def _table(table: dict[str, Any]) -> list[str]:
    out: list[str] = []
    if table.get("caption"):
        out += [table["caption"], ""]
    cols = table["columns"]
    out.append("| " + " | ".join(cols) + " |")
    out.append("|" + "|".join("---" for _ in cols) + "|")
    for row in table["rows"]:
        out.append("| " + " | ".join(_cell(c) for c in row) + " |")
    out.append("")
    return out


def render() -> str:
    results = _load()
    out = [
        "# Benchmarks",
        "",
        "Written by the harness in `bench/` (`tox -e bench`, see bench/README.md); every",
        "figure below comes from a run, beside its baseline measured in the same run on the",
        "same machine. Re-run a single scenario with `tox -e bench -- <scenario>`.",
        "",
    ]
    rows: list[list[Any]] = []
    for name, data in results:
        for t in data.get("targets", []):
            goal = f"{t['op'].replace('>=', '≥').replace('<=', '≤')} {_num(t['goal'])} {t['unit']}"
            measured = (
                f"{_cell(t['measured'])} {t['unit']}"
                if not (isinstance(t["measured"], float) and math.isnan(t["measured"]))
                else "–"
            )
            rows.append(
                [
                    t["label"],
                    goal.strip(),
                    measured.strip(),
                    "yes" if t["met"] else "**no**",
                    _gap(t),
                    t.get("why", ""),
                    _close(t),
                    f"[{name}](#{name})",
                ]
            )
    if rows:
        out += ["## Targets", ""]
        out += _table(
            {
                "caption": "The targets of issue 8 (one core for the router), as measured in "
                "the scenarios below. Where one is missed, the last columns say by how much, "
                "what the measurements show and what would close the gap; *Where the time "
                "goes* has the profile.",
                "columns": [
                    "target",
                    "goal",
                    "measured",
                    "met",
                    "gap",
                    "what shows",
                    "what would close it",
                    "scenario",
                ],
                "rows": rows,
            }
        )
    if results:
        m = results[0][1]["machine"]
        out += [
            "## Machine",
            "",
            f"- CPU: {m['cpu']}, {m['cores']} cores, {m.get('memory', '')}; "
            f"{m.get('os', '')}, Linux {m['kernel']}",
            f"- Python {m['python']}; {m['versions']}",
            f"- Tools: {m.get('tools', '')}",
            f"- Pinning: {m.get('pinning', '')}",
            f"- Speed of this box during the run: one trio checkpoint (`await trio.sleep(0)`) "
            f"costs {m.get('checkpoint_us', '?')} µs of CPU (performance.md measured "
            f"{REFERENCE_CHECKPOINT_US} µs on its reference box); an empty Python loop "
            f"costs {float(m.get('loop_s', 'nan')) * 1000:.0f} ns per 10,000 iterations.",
            "",
        ]
    for name, data in results:
        m = data["machine"]
        out += [f'<a id="{name}"></a>', "", f"## {data['title']}", ""]
        for table in data["tables"]:
            out += _table(table)
        for note in data.get("notes", []):
            out += [note, ""]
        cmds = data.get("commands", [])
        if cmds:
            out += ["Commands:", "", "```"] + cmds + ["```", ""]
        out += [
            f"*Run {data['date']} on {m['cpu']} ({m['cores']} cores), Linux {m['kernel']},"
            f" Python {m['python']}; commit {m['commit']}."
            f" Command: `{data['command']}`.*",
            "",
        ]
    return "\n".join(out)


def write() -> None:
    DOC.write_text(render())


if __name__ == "__main__":  # python bench/report.py: re-render from bench/results
    sys.path.insert(0, str(ROOT))
    write()
    sys.exit(0)
