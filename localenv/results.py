"""Figures that test suites leave for `make reliability` to print: one JSON file per topic in the
results directory, `$LAUNCH_AGENT_RESULTS_DIR` or `build/results` of the repository."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def results_dir() -> Path:
    path = Path(os.environ.get("LAUNCH_AGENT_RESULTS_DIR") or REPO / "build" / "results")
    path.mkdir(parents=True, exist_ok=True)
    return path


def write(name: str, figures: dict[str, Any]) -> Path:
    """`<results>/<name>.json`, replaced whole (never half-written)."""
    path = results_dir() / f"{name}.json"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def read(name: str) -> dict[str, Any] | None:
    path = results_dir() / f"{name}.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
