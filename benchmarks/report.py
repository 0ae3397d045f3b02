"""Results: per scenario and figure `ours`, `official`, `floor` (median, min, max, n over the
repetitions), `ratio` (ours / official) and `ratio_floor` (ours / floor); lower is better for
every figure. Written as JSON under benchmarks/results/<date>.json and printed as a markdown
table; a run that lost or failed runs is listed as a failure, never averaged in.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.stats import spread

RESULTS = Path(__file__).resolve().parent / "results"
SIDES = ("ours", "official", "floor")


@dataclass
class Figure:
    """One row: a figure's samples for each side, and why a side has none."""

    name: str
    unit: str
    samples: dict[str, list[float]] = field(default_factory=dict)
    failures: dict[str, list[str]] = field(default_factory=dict)
    target: str = ""

    def add(self, side: str, value: float | None) -> None:
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            self.samples.setdefault(side, []).append(float(value))

    def fail(self, side: str, why: str) -> None:
        self.failures.setdefault(side, []).append(why)

    def doc(self) -> dict[str, Any]:
        out: dict[str, Any] = {"unit": self.unit}
        for side in SIDES:
            out[side] = spread(self.samples.get(side, []))
            if self.failures.get(side):
                out.setdefault("failures", {})[side] = self.failures[side]
        ours, official, floor = (out[s]["median"] if out[s] else None for s in SIDES)
        out["ratio"] = ours / official if ours is not None and official else None
        out["ratio_floor"] = ours / floor if ours is not None and floor else None
        if self.target:
            out["target"] = self.target
        return out


@dataclass
class Scenario:
    name: str
    title: str
    figures: dict[str, Figure] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    series: dict[str, Any] = field(default_factory=dict)

    def figure(self, name: str, unit: str, target: str = "") -> Figure:
        if name not in self.figures:
            self.figures[name] = Figure(name, unit, target=target)
        return self.figures[name]

    def doc(self) -> dict[str, Any]:
        return {"title": self.title, "figures": {k: f.doc() for k, f in self.figures.items()},
                "notes": self.notes, "runs": self.runs}


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0.0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem, 1), "python": platform.python_version(),
            "kernel": platform.release()}


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                              cwd=RESULTS.parent).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _cell(s: dict[str, Any] | None, failures: list[str] | None, unit: str) -> str:
    if s is None:
        return f"FAILED ({len(failures)})" if failures else "—"
    digits = 0 if s["median"] >= 100 else 1 if s["median"] >= 10 else 2 if s["median"] >= 0.1 else 3
    text = f"{s['median']:.{digits}f}"
    if s["n"] > 1:
        text += f" ({s['min']:.{digits}f}-{s['max']:.{digits}f})"
    if failures:
        text += f" +{len(failures)} failed"
    return text


def _ratio(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}x"


def table(doc: dict[str, Any]) -> str:
    lines = ["| scenario | figure | ours | official | floor | ours/official | ours/floor |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for scenario in doc["scenarios"].values():
        for name, fig in scenario["figures"].items():
            fails = fig.get("failures", {})
            cells = [_cell(fig[s], fails.get(s), fig["unit"]) for s in SIDES]
            lines.append(f"| {scenario['title']} | {name} ({fig['unit']}) | " + " | ".join(cells)
                         + f" | {_ratio(fig['ratio'])} | {_ratio(fig['ratio_floor'])} |")
    return "\n".join(lines)


def notes(doc: dict[str, Any]) -> str:
    out = []
    for scenario in doc["scenarios"].values():
        for note in scenario["notes"]:
            out.append(f"- {scenario['title']}: {note}")
        for name, fig in scenario["figures"].items():
            for side, whys in fig.get("failures", {}).items():
                for why in dict.fromkeys(whys):
                    out.append(f"- {scenario['title']}, {name}, {side}: {why.splitlines()[0][:300]}")
    return "\n".join(out)


def document(scenarios: list[Scenario], started: dt.datetime, load_before: list[float], settings: dict[str, Any],
             wandb_version: str) -> dict[str, Any]:
    return {
        "date": started.strftime("%Y-%m-%d"), "started": started.isoformat(timespec="seconds"),
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(), "load_average_before": load_before, "load_average_after": load_average(),
        "commit": commit(), "official_wandb": wandb_version, "settings": settings,
        "scenarios": {s.name: s.doc() for s in scenarios},
    }


def json_text(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=1, default=float) + "\n"


def write(doc: dict[str, Any], directory: Path = RESULTS) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{doc['date']}.json"
    if path.exists():  # a second run on the same day keeps the first
        path = directory / f"{doc['date']}-{doc['started'][11:19].replace(':', '')}.json"
    path.write_text(json_text(doc))
    return path
